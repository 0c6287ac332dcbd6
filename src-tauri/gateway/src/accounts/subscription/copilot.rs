//! GitHub Copilot accounts (a GitHub device-flow login): the GitHub OAuth token is exchanged
//! for a short-lived Copilot token, and chat goes to the Copilot API with editor headers.
//!
//! The mint is `GET <github api>/copilot_internal/v2/token` with `Authorization: token
//! <github token>`; it answers `{token, expires_at (unix seconds), refresh_in, endpoints:
//! {api}}`, where `endpoints.api` is the Copilot API root for this account (individual,
//! business and enterprise plans differ). [`CopilotTokens`] keeps the minted token until
//! shortly before `expires_at` and mints one at a time, in a task of its own: concurrent
//! requests wait for the mint in flight instead of starting their own, and no lock is held
//! while it runs. The mint goes through the side path's client (`oauth::SideHttp`: no
//! redirects, which would carry the GitHub token elsewhere; a time limit; a capped answer). A 401 from the Copilot API means the token was
//! revoked early; [`CopilotTokens::invalidate`] drops it so the next request mints again.
//!
//! Chat is OpenAI chat completions at `<endpoints.api>/chat/completions` with `Authorization:
//! Bearer <copilot token>` and the headers the Copilot editor plugins send
//! ([`EditorHeaders`]): `editor-version`, `editor-plugin-version`, `copilot-integration-id`,
//! `user-agent` and `openai-intent`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::{AccountKind, Call, Endpoints, ShapeError, Upstream};
use crate::accounts::oauth::{SideError, SideHttp};
use crate::accounts::single_flight::SingleFlight;
use crate::store::secrets::Secret;

/// The GitHub API root the mint is under.
pub const DEFAULT_GITHUB_API: &str = "https://api.github.com";
/// The Copilot API root when the mint names none.
pub const DEFAULT_COPILOT_API: &str = "https://api.githubcopilot.com";
/// How long before `expires_at` a token is replaced.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// The editor identity sent to GitHub and Copilot. Copilot serves only known integrations,
/// so these name VS Code's Copilot Chat; they are settings so a user can follow new versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorHeaders {
    pub editor_version: String,
    pub editor_plugin_version: String,
    pub integration_id: String,
    pub user_agent: String,
    pub openai_intent: String,
}

impl Default for EditorHeaders {
    fn default() -> Self {
        Self {
            editor_version: "vscode/1.99.3".to_owned(),
            editor_plugin_version: "copilot-chat/0.26.7".to_owned(),
            integration_id: "vscode-chat".to_owned(),
            user_agent: "GitHubCopilotChat/0.26.7".to_owned(),
            openai_intent: "conversation-panel".to_owned(),
        }
    }
}

impl EditorHeaders {
    fn insert(&self, headers: &mut HeaderMap, with_integration: bool) -> Result<(), ShapeError> {
        let kind = AccountKind::Copilot;
        super::fact_header(
            headers,
            kind,
            "editor-version",
            "editor version",
            &self.editor_version,
        )?;
        super::fact_header(
            headers,
            kind,
            "editor-plugin-version",
            "editor plugin version",
            &self.editor_plugin_version,
        )?;
        let agent =
            HeaderValue::try_from(self.user_agent.as_str()).map_err(|_| ShapeError::Header {
                kind,
                what: "user agent",
            })?;
        headers.insert(header::USER_AGENT, agent);
        if with_integration {
            super::fact_header(
                headers,
                kind,
                "copilot-integration-id",
                "integration id",
                &self.integration_id,
            )?;
            super::fact_header(
                headers,
                kind,
                "openai-intent",
                "intent",
                &self.openai_intent,
            )?;
        }
        Ok(())
    }
}

/// A minted Copilot token with where to use it.
#[derive(Debug, Clone)]
pub struct CopilotToken {
    pub token: Secret,
    /// The Copilot API root for this account.
    pub api_base: String,
    pub expires_at: SystemTime,
    pub editor: Arc<EditorHeaders>,
}

impl CopilotToken {
    fn fresh(&self, margin: Duration, now: SystemTime) -> bool {
        self.expires_at
            .checked_sub(margin)
            .is_some_and(|deadline| now < deadline)
    }
}

pub(super) fn upstream(token: &CopilotToken, call: Call<'_>) -> Result<Upstream, ShapeError> {
    let mut headers = super::bearer_headers(AccountKind::Copilot, &token.token, call.stream)?;
    token.editor.insert(&mut headers, true)?;
    Ok(Upstream::plain(
        super::join(&token.api_base, "/chat/completions"),
        headers,
    ))
}

/// Why no Copilot token could be minted; messages say what the user can do. `Clone` so one
/// failed mint can be handed to every request waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MintError {
    #[error("could not reach GitHub to get a Copilot token: {0}")]
    Unreachable(String),
    #[error("GitHub refused the saved login (401); log in to GitHub Copilot again")]
    LoginRejected,
    #[error(
        "GitHub says this account has no Copilot access ({status}): {message}; check the Copilot subscription on github.com"
    )]
    NoCopilot { status: u16, message: String },
    #[error("GitHub answered the Copilot token request with {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("GitHub's Copilot token answer was not understood: {0}")]
    BadAnswer(String),
    #[error("the GitHub token cannot be sent in an HTTP header; log in to GitHub Copilot again")]
    BadToken,
    #[error("the Copilot token request to GitHub failed: {0}")]
    Endpoint(SideError),
    #[error("the Copilot token mint did not finish: {0}")]
    Lost(String),
}

impl From<SideError> for MintError {
    fn from(error: SideError) -> Self {
        if error.is_transient() {
            Self::Unreachable(error.to_string())
        } else {
            Self::Endpoint(error)
        }
    }
}

#[derive(Deserialize)]
struct MintAnswer {
    token: String,
    expires_at: u64,
    #[serde(default)]
    endpoints: Option<MintEndpoints>,
}

#[derive(Deserialize)]
struct MintEndpoints {
    #[serde(default)]
    api: Option<String>,
}

type MintResult = Result<CopilotToken, MintError>;

/// What a mint needs, shared with the task that runs it.
#[derive(Debug)]
struct Minter {
    http: SideHttp,
    mint_url: String,
    copilot_default: String,
    github_token: Secret,
    editor: Arc<EditorHeaders>,
}

/// The token kept between mints.
#[derive(Debug, Default)]
struct Cached {
    token: Option<CopilotToken>,
    /// Bumped by [`CopilotTokens::invalidate`]: a mint started before does not fill the cache.
    generation: u64,
}

/// The Copilot token of one GitHub login: minted on first use, kept until shortly before it
/// expires, minted again after. Share one per account (it is `Send + Sync`). One mint runs at
/// a time, in a task of its own ([`SingleFlight`]): concurrent requests wait for it, and a
/// request that goes away does not cut it short. No lock is held while it runs.
#[derive(Debug)]
pub struct CopilotTokens {
    minter: Arc<Minter>,
    margin: Duration,
    cached: Arc<Mutex<Cached>>,
    mints: SingleFlight<(), MintResult>,
}

impl CopilotTokens {
    pub fn new(http: SideHttp, endpoints: &Endpoints, github_token: Secret) -> Self {
        Self {
            minter: Arc::new(Minter {
                http,
                mint_url: super::join(&endpoints.github_api, "/copilot_internal/v2/token"),
                copilot_default: endpoints.copilot_default.clone(),
                github_token,
                editor: Arc::new(EditorHeaders::default()),
            }),
            margin: DEFAULT_MARGIN,
            cached: Arc::default(),
            mints: SingleFlight::default(),
        }
    }

    pub fn with_editor(mut self, editor: EditorHeaders) -> Self {
        if let Some(minter) = Arc::get_mut(&mut self.minter) {
            minter.editor = Arc::new(editor);
        }
        self
    }

    /// How long before expiry a token is replaced.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A Copilot token good for at least the margin: the cached one, or a fresh mint.
    pub async fn current(&self) -> MintResult {
        let generation = {
            let cached = self.cached();
            if let Some(token) = cached
                .token
                .as_ref()
                .filter(|t| t.fresh(self.margin, SystemTime::now()))
            {
                return Ok(token.clone());
            }
            cached.generation
        };
        let minter = Arc::clone(&self.minter);
        let cache = Arc::clone(&self.cached);
        self.mints
            .run((), move || async move {
                let minted = minter.mint().await;
                if let Ok(token) = &minted {
                    let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
                    if cached.generation == generation {
                        cached.token = Some(token.clone());
                    }
                }
                minted
            })
            .await
            .unwrap_or_else(|lost| Err(MintError::Lost(lost.to_string())))
    }

    /// Drops the cached token (after Copilot answered 401), so the next call mints.
    pub fn invalidate(&self) {
        let mut cached = self.cached();
        cached.token = None;
        cached.generation = cached.generation.wrapping_add(1);
    }
}

impl Minter {
    async fn mint(&self) -> MintResult {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::try_from(format!("token {}", self.github_token.expose()))
            .map_err(|_| MintError::BadToken)?;
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        self.editor
            .insert(&mut headers, false)
            .map_err(|e| MintError::BadAnswer(e.to_string()))?;
        let answer = self
            .http
            .send(self.http.client().get(&self.mint_url).headers(headers))
            .await?;
        let status = answer.status.as_u16();
        let body = answer.body;
        match status {
            200..=299 => {}
            401 => return Err(MintError::LoginRejected),
            403 | 404 => {
                return Err(MintError::NoCopilot {
                    status,
                    message: message(&body),
                });
            }
            _ => {
                return Err(MintError::Refused {
                    status,
                    message: message(&body),
                });
            }
        }
        let answer: MintAnswer =
            serde_json::from_slice(&body).map_err(|e| MintError::BadAnswer(e.to_string()))?;
        // The mint names the API host the Copilot token goes to; one that would carry it in
        // clear (or is no URL) is not trusted with it, and the configured default serves.
        let api_base = answer
            .endpoints
            .and_then(|e| e.api)
            .filter(|api| !api.is_empty())
            .filter(|api| {
                match crate::config::destination::check_account_endpoint("endpoints.api", api) {
                    Ok(()) => true,
                    Err(refusal) => {
                        tracing::warn!(%refusal, "Copilot token names an API address not used");
                        false
                    }
                }
            })
            .unwrap_or_else(|| self.copilot_default.clone());
        Ok(CopilotToken {
            token: Secret::new(answer.token),
            api_base,
            expires_at: UNIX_EPOCH
                .checked_add(Duration::from_secs(answer.expires_at))
                .unwrap_or(UNIX_EPOCH),
            editor: Arc::clone(&self.editor),
        })
    }
}

/// GitHub's `message` field, or the start of the body.
fn message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        message: String,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| b.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use serde_json::json;

    use super::*;
    use crate::accounts::subscription::test_upstream::{header, send, spawn};
    use crate::accounts::subscription::{Account, upstream as shape};

    /// A GitHub + Copilot stand-in: mints `tid-<n>` tokens living `lifetime` seconds, naming
    /// itself as the Copilot API, and serves chat for the latest token.
    #[derive(Clone)]
    struct Stand {
        mints: Arc<AtomicUsize>,
        lifetime: u64,
        base: Arc<std::sync::OnceLock<String>>,
        mint_delay: Duration,
        /// The API root the mint names instead of the stand-in itself.
        names_api: Option<&'static str>,
    }

    impl Stand {
        fn new(lifetime: u64) -> Self {
            Self {
                mints: Arc::default(),
                lifetime,
                base: Arc::default(),
                mint_delay: Duration::ZERO,
                names_api: None,
            }
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    async fn mint(State(stand): State<Stand>, headers: HeaderMap) -> (StatusCode, String) {
        let editor = EditorHeaders::default();
        if header(&headers, "authorization") != "token gho_github"
            || header(&headers, "editor-version") != editor.editor_version
            || header(&headers, "user-agent") != editor.user_agent
        {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"message":"Bad credentials"}"#.into(),
            );
        }
        // Counted before the delay: a mint whose caller gave up has still happened at GitHub.
        let n = stand.mints.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(stand.mint_delay).await;
        let answer = json!({
            "token": format!("tid-{n}"),
            "expires_at": now() + stand.lifetime,
            "refresh_in": 1500,
            "endpoints": {"api": stand.names_api.unwrap_or_else(|| stand.base.get().unwrap())}
        });
        (StatusCode::OK, answer.to_string())
    }

    async fn chat(State(stand): State<Stand>, headers: HeaderMap) -> (StatusCode, String) {
        let editor = EditorHeaders::default();
        let latest = format!("Bearer tid-{}", stand.mints.load(Ordering::SeqCst));
        if header(&headers, "authorization") != latest
            || header(&headers, "editor-version") != editor.editor_version
            || header(&headers, "editor-plugin-version") != editor.editor_plugin_version
            || header(&headers, "copilot-integration-id") != editor.integration_id
            || header(&headers, "user-agent") != editor.user_agent
            || header(&headers, "openai-intent") != editor.openai_intent
        {
            return (StatusCode::UNAUTHORIZED, "headers".into());
        }
        (
            StatusCode::OK,
            r#"{"object":"chat.completion","choices":[]}"#.into(),
        )
    }

    /// The token cache for the test's GitHub login, minting at `endpoints`.
    fn github_tokens(endpoints: &Endpoints) -> CopilotTokens {
        CopilotTokens::new(SideHttp::for_tests(), endpoints, Secret::new("gho_github"))
    }

    /// A stand-in whose mint answers after `delay`, and a shared token cache minting there.
    async fn slow_mint(delay: Duration) -> (Stand, Arc<CopilotTokens>) {
        let mut stand = Stand::new(1800);
        stand.mint_delay = delay;
        let endpoints = start(stand.clone()).await;
        (stand, Arc::new(github_tokens(&endpoints)))
    }

    async fn start(stand: Stand) -> Endpoints {
        let router = Router::new()
            .route("/copilot_internal/v2/token", get(mint))
            .route("/chat/completions", post(chat))
            .with_state(stand.clone());
        let base = spawn(router).await;
        stand.base.set(base.clone()).unwrap();
        Endpoints {
            github_api: base,
            copilot_default: "http://127.0.0.1:9".into(),
            ..Endpoints::default()
        }
    }

    const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    const CALL: Call<'static> = Call {
        model: "gpt-4.1",
        stream: false,
    };

    #[tokio::test]
    async fn mint_then_chat_at_the_endpoint_the_mint_names() {
        let stand = Stand::new(1800);
        let endpoints = start(stand.clone()).await;
        let tokens = github_tokens(&endpoints);
        let token = tokens.current().await.unwrap();
        assert_eq!(&token.api_base, stand.base.get().unwrap());
        let shaped = shape(&Account::Copilot(token), &endpoints, CALL).unwrap();
        assert!(!format!("{shaped:?} {tokens:?}").contains("tid-1"));
        assert!(!format!("{tokens:?}").contains("gho_github"));
        let (status, answer) = send(&shaped, CHAT).await;
        assert_eq!(status, 200, "{answer:?}");

        // Still fresh: no second mint.
        tokens.current().await.unwrap();
        assert_eq!(stand.mints.load(Ordering::SeqCst), 1);
        tokens.invalidate();
        assert_eq!(tokens.current().await.unwrap().token.expose(), "tid-2");
    }

    #[tokio::test]
    async fn an_api_root_that_would_carry_the_token_in_clear_is_not_used() {
        let stand = Stand {
            names_api: Some("http://203.0.113.9:8080"),
            ..Stand::new(1800)
        };
        let endpoints = start(stand.clone()).await;
        let tokens = github_tokens(&endpoints);
        let token = tokens.current().await.unwrap();
        assert_eq!(token.api_base, endpoints.copilot_default);
    }

    #[tokio::test]
    async fn a_token_inside_the_margin_is_minted_again() {
        // Tokens live 30 s and are replaced 60 s ahead: each one is already due.
        let stand = Stand::new(30);
        let endpoints = start(stand.clone()).await;
        let tokens = github_tokens(&endpoints);
        assert_eq!(tokens.current().await.unwrap().token.expose(), "tid-1");
        let second = tokens.current().await.unwrap();
        assert_eq!(second.token.expose(), "tid-2");
        let shaped = shape(&Account::Copilot(second), &endpoints, CALL).unwrap();
        assert_eq!(send(&shaped, CHAT).await.0, 200);

        let lenient = github_tokens(&endpoints).with_margin(Duration::from_secs(5));
        lenient.current().await.unwrap();
        lenient.current().await.unwrap();
        assert_eq!(stand.mints.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_mint() {
        let (stand, tokens) = slow_mint(Duration::from_millis(50)).await;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let tokens = Arc::clone(&tokens);
                tokio::spawn(async move { tokens.current().await.unwrap() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().token.expose(), "tid-1");
        }
        assert_eq!(stand.mints.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_mint_whose_request_goes_away_still_fills_the_cache() {
        let (stand, tokens) = slow_mint(Duration::from_millis(300)).await;
        let waiting = {
            let tokens = Arc::clone(&tokens);
            tokio::spawn(async move { tokens.current().await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting.abort();
        tokio::time::sleep(Duration::from_millis(600)).await;
        // The mint went on without its caller: the next request finds its token.
        assert_eq!(tokens.current().await.unwrap().token.expose(), "tid-1");
        assert_eq!(stand.mints.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_rejected_login_says_to_log_in_again() {
        let endpoints = start(Stand::new(1800)).await;
        let tokens = CopilotTokens::new(
            SideHttp::for_tests(),
            &endpoints,
            Secret::new("gho_revoked"),
        );
        let err = tokens.current().await.unwrap_err();
        assert!(matches!(err, MintError::LoginRejected), "{err}");
        assert!(!err.to_string().contains("gho_"));
    }
}
