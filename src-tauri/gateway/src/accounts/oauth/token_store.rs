//! The tokens of logged-in accounts: one JSON secret per account in the keychain (through
//! [`SecretStore`](crate::store::secrets::SecretStore)), held in memory once read, refreshed with the
//! refresh-token grant, one refresh at a time per account.
//!
//! The flows ([`super::pkce_flow`], [`super::device_flow`]) produce a [`TokenSet`]; the caller
//! saves it here under the account's id. Request paths ask [`TokenStore::fresh`] for a token
//! that is good for a while yet; a 401 upstream calls [`TokenStore::refresh`]. A refresh the
//! provider refuses comes back as [`OAuthError::NeedsLogin`], which the caller shows as "log in
//! again" rather than failing requests silently.
//!
//! Providers that rotate refresh tokens revoke the old one when the new one is issued, so the
//! answer of a refresh must never be lost. A refresh therefore runs in a task of its own
//! ([`SingleFlight`]), not in the future of whoever asked: a client that hangs up while its
//! request waits for the refresh stops waiting, the refresh goes on, and every caller asking
//! meanwhile gets its result. The new tokens are held in memory (and used) before the keychain
//! is written; when the keychain refuses, they stay in memory, the account shows "tokens not
//! saved" ([`TokenStore::unsaved`]) and the save is tried again with backoff until it works or
//! the store is closed ([`TokenStore::close`], the gateway stopping).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::{RefreshToken, TokenResponse as _};
use serde::{Deserialize, Serialize};

use super::{Endpoints, OAuthError, ProviderTokenResponse, SideHttp, http, token_error};
use crate::accounts::single_flight::SingleFlight;
use crate::blocking::{self, TaskFailed};
use crate::clock::now_ms;
use crate::store::secrets::{Secret, SecretError, SharedSecretStore};

/// How long before expiry a token counts as due for refresh: long enough that a request
/// started now does not outlive its token.
pub const REFRESH_AHEAD_MS: i64 = 5 * 60 * 1000;

/// What the provider said about the account, for the accounts list. Not secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The provider's account id (ChatGPT account id, Anthropic account uuid, OIDC subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The subscription plan, where the provider names it (ChatGPT's `chatgpt_plan_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Qwen's per-account API host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

impl AccountFacts {
    /// Keeps what `self` knows and takes what `newer` adds or changes.
    fn merged(self, newer: Self) -> Self {
        Self {
            email: newer.email.or(self.email),
            account_id: newer.account_id.or(self.account_id),
            plan: newer.plan.or(self.plan),
            resource_url: newer.resource_url.or(self.resource_url),
        }
    }
}

/// One account's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub access: Secret,
    pub refresh: Option<Secret>,
    /// When the access token expires, in ms since the Unix epoch; `None` when the provider did
    /// not say (GitHub's tokens do not expire).
    pub expires_at_ms: Option<i64>,
    pub facts: AccountFacts,
}

impl TokenSet {
    /// Whether the access token expires within [`REFRESH_AHEAD_MS`] of `now_ms` (or already has).
    pub fn needs_refresh(&self, now_ms: i64) -> bool {
        self.expires_at_ms
            .is_some_and(|at| at <= now_ms.saturating_add(REFRESH_AHEAD_MS))
    }

    /// The tokens of a token-endpoint answer received at `now_ms`.
    pub(crate) fn from_response(response: &ProviderTokenResponse, now_ms: i64) -> Self {
        let extra = response.extra_fields();
        let mut facts = extra
            .id_token
            .as_deref()
            .map(facts_from_id_token)
            .unwrap_or_default();
        if let Some(account) = &extra.account {
            let text = |key: &str| account.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            facts.email = text("email_address").or(facts.email);
            facts.account_id = text("uuid").or(facts.account_id);
        }
        facts.resource_url = extra.resource_url.clone();
        Self {
            access: Secret::new(response.access_token().secret().clone()),
            refresh: response
                .refresh_token()
                .map(|r| Secret::new(r.secret().clone())),
            expires_at_ms: response
                .expires_in()
                .map(|d| now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
            facts,
        }
    }
}

/// Reads email, account and plan from an ID token's claims. The signature is not checked: the
/// token came straight from the provider's token endpoint over TLS, and the facts are only shown.
fn facts_from_id_token(id_token: &str) -> AccountFacts {
    let claims = id_token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let Some(claims) = claims else {
        return AccountFacts::default();
    };
    let text = |value: &serde_json::Value, key: &str| {
        value.get(key).and_then(|v| v.as_str()).map(str::to_owned)
    };
    let openai = claims.get("https://api.openai.com/auth");
    AccountFacts {
        email: text(&claims, "email"),
        account_id: openai
            .and_then(|auth| text(auth, "chatgpt_account_id"))
            .or_else(|| text(&claims, "sub")),
        plan: openai.and_then(|auth| text(auth, "chatgpt_plan_type")),
        resource_url: None,
    }
}

/// The keychain form of a [`TokenSet`]; exists only while being written or read.
#[derive(Serialize, Deserialize)]
struct Stored {
    access: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
    #[serde(default)]
    facts: AccountFacts,
}

type RefreshResult = Result<TokenSet, OAuthError>;

/// The first wait before a refused keychain save is tried again; doubled after each refusal.
const SAVE_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two tries of a keychain save.
const SAVE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Keeps and refreshes the tokens of every account. Clones share everything.
#[derive(Clone)]
pub struct TokenStore {
    inner: Arc<Inner>,
}

struct Inner {
    secrets: SharedSecretStore,
    http: SideHttp,
    /// Per account, the newest tokens: what requests use; the keychain follows.
    held: Mutex<HashMap<String, Held>>,
    refreshes: SingleFlight<String, RefreshResult>,
    /// Keychain writes and deletes of tokens, one at a time: a save tried again in the
    /// background cannot land after a log-out's delete or a new login's save.
    writes: tokio::sync::Mutex<()>,
    /// Turns true when the store is closed: background saves stop.
    closing: tokio::sync::watch::Sender<bool>,
    versions: AtomicU64,
}

/// One account's tokens in memory.
struct Held {
    tokens: TokenSet,
    /// Drawn from a store-wide counter whenever `tokens` change, so a writer can tell whether
    /// what it refreshed from, or saved, is still current.
    version: u64,
    /// Whether the keychain holds `tokens`.
    saved: bool,
    /// The keychain's refusal while `tokens` are not saved.
    unsaved: Option<String>,
    /// A background task is trying the save again.
    retrying: bool,
}

impl Held {
    /// Tokens the keychain holds as they are; a save retry already running keeps going (it
    /// finds nothing left to write).
    fn saved(tokens: TokenSet, version: u64, retrying: bool) -> Self {
        Self {
            tokens,
            version,
            saved: true,
            unsaved: None,
            retrying,
        }
    }
}

/// What one try to write an account's tokens to the keychain came to.
enum SaveOutcome {
    /// Written, or nothing (left) to write: already saved, or the account is gone.
    Done,
    /// Written, but newer tokens came meanwhile; their own refresh saves them next.
    Superseded,
    Refused(SecretError),
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("secrets", &self.inner.secrets.kind())
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    pub fn new(secrets: SharedSecretStore, http: SideHttp) -> Self {
        Self {
            inner: Arc::new(Inner {
                secrets,
                http,
                held: Mutex::default(),
                refreshes: SingleFlight::default(),
                writes: tokio::sync::Mutex::new(()),
                closing: tokio::sync::watch::Sender::new(false),
                versions: AtomicU64::new(1),
            }),
        }
    }

    /// The secret-store entry of an account's tokens.
    pub fn entry_name(account: &str) -> String {
        format!("oauth:{account}")
    }

    /// The account's tokens, or `None` when it is not logged in.
    pub async fn load(&self, account: &str) -> Result<Option<TokenSet>, OAuthError> {
        Ok(self.inner.current(account).await?.map(|(tokens, _)| tokens))
    }

    /// Stores the account's tokens, replacing any before. Fails when the keychain refuses them
    /// (the tokens are then not kept either: a login the user can repeat once the keychain
    /// works, rather than one that is gone at the next start).
    pub async fn save(&self, account: &str, tokens: &TokenSet) -> Result<(), OAuthError> {
        let inner = &self.inner;
        let _writing = inner.writes.lock().await;
        write(&inner.secrets, account, tokens)
            .await
            .map_err(OAuthError::from)?;
        let version = inner.next_version();
        let mut held = inner.held();
        let retrying = held.get(account).is_some_and(|h| h.retrying);
        held.insert(
            account.to_owned(),
            Held::saved(tokens.clone(), version, retrying),
        );
        Ok(())
    }

    /// Logging out: the tokens leave memory and the keychain.
    pub async fn delete(&self, account: &str) -> Result<(), OAuthError> {
        let inner = &self.inner;
        let _writing = inner.writes.lock().await;
        inner.held().remove(account);
        let secrets = inner.secrets.clone();
        let name = Self::entry_name(account);
        blocking::run(move || secrets.delete(&name))
            .await?
            .map_err(OAuthError::from)
    }

    /// Why the account's newest tokens are not in the keychain yet (they are in use and the
    /// save is being tried again), or `None` when they are saved.
    pub fn unsaved(&self, account: &str) -> Option<String> {
        self.inner
            .held()
            .get(account)
            .and_then(|h| h.unsaved.clone())
    }

    /// Stops trying saves again (the gateway is stopping): each pending one gets a last try.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Tokens good for at least [`REFRESH_AHEAD_MS`] from `now_ms`: the held ones, or refreshed
    /// ones when they are due.
    pub async fn fresh(
        &self,
        account: &str,
        endpoints: &Endpoints,
        now_ms: i64,
    ) -> Result<TokenSet, OAuthError> {
        match self.load(account).await? {
            Some(tokens) if !tokens.needs_refresh(now_ms) => Ok(tokens),
            Some(_) => self.refresh(account, endpoints).await,
            None => Err(not_logged_in(account)),
        }
    }

    /// Refreshes the account's tokens now (e.g. after a 401) and keeps the result. While one
    /// refresh of an account is under way, other callers get its result instead of starting
    /// another: providers that rotate refresh tokens revoke the old one on first use, so a
    /// second refresh with it would fail and log the account out. The refresh runs in its own
    /// task: a caller that goes away does not stop it.
    pub async fn refresh(&self, account: &str, endpoints: &Endpoints) -> RefreshResult {
        let inner = self.inner.clone();
        let owned = account.to_owned();
        let endpoints = endpoints.clone();
        self.inner
            .refreshes
            .run(account.to_owned(), move || {
                refresh_once(inner, owned, endpoints)
            })
            .await
            .unwrap_or_else(|lost| {
                Err(OAuthError::Storage {
                    detail: format!("the refresh of `{account}` did not finish: {lost}"),
                })
            })
    }
}

impl Inner {
    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed)
    }

    /// The account's tokens and their version: from memory, else read from the keychain and
    /// held from then on.
    async fn current(&self, account: &str) -> Result<Option<(TokenSet, u64)>, OAuthError> {
        if let Some(held) = self.held().get(account) {
            return Ok(Some((held.tokens.clone(), held.version)));
        }
        self.reread(account).await
    }

    /// What a refresh starts from. Held tokens that are not saved yet are the newest there are;
    /// otherwise the keychain is read again, so tokens changed there behind the gateway's back
    /// (another login of the same account, a keychain reset) are the ones used.
    async fn for_refresh(&self, account: &str) -> Result<Option<(TokenSet, u64)>, OAuthError> {
        if let Some(held) = self.held().get(account).filter(|h| !h.saved) {
            return Ok(Some((held.tokens.clone(), held.version)));
        }
        self.reread(account).await
    }

    /// Reads the keychain and holds what it has, unless tokens not saved yet came meanwhile.
    /// Under the write lock, so a save or delete cannot pass between the read and the hold.
    async fn reread(&self, account: &str) -> Result<Option<(TokenSet, u64)>, OAuthError> {
        let _writing = self.writes.lock().await;
        let stored = read(&self.secrets, account).await?;
        let version = self.next_version();
        let mut held = self.held();
        if let Some(h) = held.get(account).filter(|h| !h.saved) {
            return Ok(Some((h.tokens.clone(), h.version)));
        }
        let Some(tokens) = stored else {
            held.remove(account);
            return Ok(None);
        };
        match held.get_mut(account) {
            Some(h) if h.tokens == tokens => Ok(Some((h.tokens.clone(), h.version))),
            _ => {
                let retrying = held.get(account).is_some_and(|h| h.retrying);
                held.insert(
                    account.to_owned(),
                    Held::saved(tokens.clone(), version, retrying),
                );
                Ok(Some((tokens, version)))
            }
        }
    }

    /// One try to write the account's held tokens, when they are not saved yet. A background
    /// retry (`retry`) that finds nothing left to write stops under the same lock that
    /// [`persist`] checks, so no refused save is left without a retry.
    async fn save_held(&self, account: &str, retry: bool) -> SaveOutcome {
        let _writing = self.writes.lock().await;
        let pending = {
            let mut held = self.held();
            match held.get_mut(account) {
                Some(h) if !h.saved => Some((h.tokens.clone(), h.version)),
                Some(h) => {
                    h.retrying &= !retry;
                    None
                }
                None => None,
            }
        };
        let Some((tokens, version)) = pending else {
            return SaveOutcome::Done;
        };
        let result = write(&self.secrets, account, &tokens).await;
        let mut held = self.held();
        let Some(h) = held.get_mut(account) else {
            return SaveOutcome::Done;
        };
        match result {
            Ok(()) => {
                if h.version != version {
                    return SaveOutcome::Superseded;
                }
                h.saved = true;
                h.unsaved = None;
                h.retrying &= !retry;
                SaveOutcome::Done
            }
            Err(error) => {
                h.unsaved = Some(format!("tokens not saved: {error}"));
                SaveOutcome::Refused(error)
            }
        }
    }
}

/// Writes the account's held tokens now, or, when the keychain refuses, keeps trying in the
/// background.
async fn persist(inner: &Arc<Inner>, account: &str) {
    let SaveOutcome::Refused(error) = inner.save_held(account, false).await else {
        return;
    };
    tracing::warn!(
        %account,
        %error,
        "new tokens not saved to the keychain; they are in use and the save is tried again"
    );
    let start = {
        let mut held = inner.held();
        match held.get_mut(account) {
            Some(h) if !h.retrying => {
                h.retrying = true;
                true
            }
            _ => false,
        }
    };
    if start {
        tokio::spawn(retry_saving(Arc::downgrade(inner), account.to_owned()));
    }
}

/// Tries the account's save again with growing waits until it works, the account is gone, or
/// the store is closed (one last try then) or dropped.
async fn retry_saving(inner: Weak<Inner>, account: String) {
    let mut wait = SAVE_RETRY_FIRST;
    loop {
        let Some(mut closing) = inner.upgrade().map(|i| i.closing.subscribe()) else {
            return;
        };
        let closed = *closing.borrow_and_update()
            || tokio::select! {
                () = tokio::time::sleep(wait) => false,
                _ = closing.wait_for(|closed| *closed) => true,
            };
        let Some(store) = inner.upgrade() else {
            return;
        };
        match store.save_held(&account, true).await {
            SaveOutcome::Done => {
                tracing::info!(%account, "tokens saved to the keychain after all");
                return;
            }
            SaveOutcome::Refused(error) if closed => {
                if let Some(h) = store.held().get_mut(&account) {
                    h.retrying = false;
                }
                tracing::warn!(
                    %account,
                    %error,
                    "stopping with tokens not saved to the keychain; if the provider rotated \
                     them, the account needs a new login after the next start"
                );
                return;
            }
            // The next try (at once) finds the newer tokens saved or saves them.
            SaveOutcome::Superseded => continue,
            SaveOutcome::Refused(error) => {
                tracing::debug!(%account, %error, "keychain save refused again");
            }
        }
        wait = wait.saturating_mul(2).min(SAVE_RETRY_MAX);
    }
}

fn not_logged_in(account: &str) -> OAuthError {
    OAuthError::NeedsLogin {
        account: account.to_owned(),
        detail: "no tokens are stored for it".to_owned(),
    }
}

async fn refresh_once(inner: Arc<Inner>, account: String, endpoints: Endpoints) -> RefreshResult {
    let (current, version) = inner
        .for_refresh(&account)
        .await?
        .ok_or_else(|| not_logged_in(&account))?;
    let Some(refresh) = current.refresh.clone() else {
        return Err(OAuthError::NeedsLogin {
            account,
            detail: "the provider gave no refresh token".to_owned(),
        });
    };
    let oauth = endpoints.client()?;
    let body = endpoints.token_body;
    let send = |request| http::send(inner.http.clone(), body, request);
    let token = RefreshToken::new(refresh.expose().to_owned());
    let response = oauth
        .exchange_refresh_token(&token)
        .request_async(&send)
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            // Only the provider's own refusal means the login is gone; an unreadable answer
            // (a proxy's error page) or a provider outage is worth retrying later.
            let refused = match &error {
                oauth2::RequestTokenError::ServerResponse(answer) => !matches!(
                    answer.error(),
                    oauth2::basic::BasicErrorResponseType::Extension(code)
                        if code == "server_error" || code == "temporarily_unavailable"
                ),
                _ => false,
            };
            return Err(match token_error(error) {
                OAuthError::Provider { error, description } if refused => OAuthError::NeedsLogin {
                    account,
                    detail: match description {
                        Some(d) => format!("{error}: {d}"),
                        None => error,
                    },
                },
                OAuthError::Denied { detail } => OAuthError::NeedsLogin { account, detail },
                other => other,
            });
        }
    };
    let mut fresh = TokenSet::from_response(&response, now_ms());
    // Providers that do not rotate refresh tokens leave it out of the answer: keep the old one.
    if fresh.refresh.is_none() {
        fresh.refresh = Some(refresh);
    }
    fresh.facts = current.facts.merged(fresh.facts);
    // Held first: from here on requests use the new tokens, whatever the keychain does.
    {
        let mut held = inner.held();
        match held.get_mut(&account) {
            Some(h) if h.version == version => {
                h.tokens = fresh.clone();
                h.version = inner.next_version();
                h.saved = false;
            }
            // A new login gave the account other tokens meanwhile: they win.
            Some(h) => return Ok(h.tokens.clone()),
            None => {
                return Err(OAuthError::NeedsLogin {
                    account,
                    detail: "it was logged out while its tokens were refreshed".to_owned(),
                });
            }
        }
    }
    persist(&inner, &account).await;
    Ok(fresh)
}

async fn read(secrets: &SharedSecretStore, account: &str) -> Result<Option<TokenSet>, OAuthError> {
    let store = secrets.clone();
    let name = TokenStore::entry_name(account);
    let Some(secret) = blocking::run(move || store.get(&name))
        .await?
        .map_err(OAuthError::from)?
    else {
        return Ok(None);
    };
    let stored: Stored =
        serde_json::from_str(secret.expose()).map_err(|e| OAuthError::Storage {
            // serde's message names the place, never the content of the secret.
            detail: format!("the stored tokens of `{account}` are unreadable ({e}); log in again"),
        })?;
    Ok(Some(TokenSet {
        access: Secret::new(stored.access),
        refresh: stored.refresh.map(Secret::new),
        // Written unsigned by earlier releases, which let a provider's huge `expires_in`
        // saturate it: such an expiry is still "never" here.
        expires_at_ms: stored
            .expires_at_ms
            .map(|at| i64::try_from(at).unwrap_or(i64::MAX)),
        facts: stored.facts,
    }))
}

async fn write(
    secrets: &SharedSecretStore,
    account: &str,
    tokens: &TokenSet,
) -> Result<(), SecretError> {
    let stored = Stored {
        access: tokens.access.expose().to_owned(),
        refresh: tokens.refresh.as_ref().map(|r| r.expose().to_owned()),
        // A time before 1970 is as expired as 1970.
        expires_at_ms: tokens
            .expires_at_ms
            .map(|at| u64::try_from(at).unwrap_or(0)),
        facts: tokens.facts.clone(),
    };
    let json = serde_json::to_string(&stored).map_err(|e| SecretError::Backend {
        name: TokenStore::entry_name(account),
        detail: e.to_string(),
    })?;
    let secret = Secret::new(json);
    let store = secrets.clone();
    let name = TokenStore::entry_name(account);
    blocking::run(move || store.set(&name, &secret))
        .await
        .map_err(|e| SecretError::Backend {
            name: TokenStore::entry_name(account),
            detail: e.to_string(),
        })?
}

impl From<TaskFailed> for OAuthError {
    fn from(error: TaskFailed) -> Self {
        Self::Storage {
            detail: error.to_string(),
        }
    }
}

impl From<SecretError> for OAuthError {
    fn from(error: SecretError) -> Self {
        Self::Storage {
            detail: error.to_string(),
        }
    }
}
