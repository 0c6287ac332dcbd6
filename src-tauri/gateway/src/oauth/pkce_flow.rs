//! Authorization code + PKCE (S256) login: the browser signs in at the provider and comes back
//! to a listener on 127.0.0.1, or (headless) the user pastes the address the browser ended on.
//!
//! [`PkceLogin::start`] binds the callback port and builds the authorize URL (random `state`,
//! S256 challenge); the window opens that URL in the system browser and then awaits
//! [`PkceLogin::wait_for_callback`]. [`PkceLogin::finish_with_pasted`] takes the callback URL
//! instead; a [`PasteSlot`] hands a pasted URL to a login already waiting, so the user can paste
//! while the listener waits (the browser ran on another machine). Either way the `state` is
//! checked, the code exchanged for a [`TokenSet`], and storing it is left to the caller
//! ([`super::TokenStore::save`]).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::{
    Endpoints, OAuthError, REDIRECT_URI_PLACEHOLDER, TokenBody, TokenSet, http, now_ms, token_error,
};

/// What reaches a waiting login: the listener's callback, or a pasted one (already parsed, or
/// why it could not be).
type Callback = Result<HashMap<String, String>, OAuthError>;

/// One login under way. Dropping it stops the listener.
pub struct PkceLogin {
    endpoints: Endpoints,
    client: reqwest::Client,
    authorize_url: String,
    redirect_uri: String,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
    listener: Option<TcpListener>,
    /// The listener and every [`PasteSlot`] send here; [`Self::wait_for_callback`] takes the
    /// first callback.
    callbacks: mpsc::Sender<Callback>,
    received: Option<mpsc::Receiver<Callback>>,
}

/// Hands a pasted callback URL to a login waiting in [`PkceLogin::wait_for_callback`], which
/// then finishes with it as if the browser had come back.
#[derive(Debug, Clone)]
pub struct PasteSlot {
    callbacks: mpsc::Sender<Callback>,
}

impl PasteSlot {
    /// Passes the pasted address (or Anthropic's `code#state` text) on; text that is no
    /// callback ends the login with [`OAuthError::BadCallback`]. `false` when the login is no
    /// longer waiting (a callback already came, it timed out, or it was dropped).
    pub fn paste(&self, pasted: &str) -> bool {
        self.callbacks.try_send(parse_pasted(pasted)).is_ok()
    }
}

impl std::fmt::Debug for PkceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkceLogin")
            .field("authorize_url", &self.authorize_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("listening", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl PkceLogin {
    /// Binds the callback port on 127.0.0.1 and prepares the authorize URL. A port in use comes
    /// back as [`OAuthError::PortBusy`].
    pub async fn start(client: reqwest::Client, endpoints: Endpoints) -> Result<Self, OAuthError> {
        check_path(&endpoints)?;
        let port = endpoints.redirect_port;
        let listener =
            TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::AddrInUse => OAuthError::PortBusy { port },
                    _ => OAuthError::Listen {
                        port,
                        detail: e.to_string(),
                    },
                })?;
        let bound = listener
            .local_addr()
            .map_err(|e| OAuthError::Listen {
                port,
                detail: e.to_string(),
            })?
            .port();
        let mut login = Self::prepare(client, endpoints, bound)?;
        login.listener = Some(listener);
        Ok(login)
    }

    /// Prepares the authorize URL without listening, for a machine whose browser cannot reach
    /// this one: the user pastes the callback URL into [`Self::finish_with_pasted`].
    pub fn start_paste_only(
        client: reqwest::Client,
        endpoints: Endpoints,
    ) -> Result<Self, OAuthError> {
        check_path(&endpoints)?;
        let port = endpoints.redirect_port;
        Self::prepare(client, endpoints, port)
    }

    fn prepare(
        client: reqwest::Client,
        endpoints: Endpoints,
        port: u16,
    ) -> Result<Self, OAuthError> {
        let redirect_uri = endpoints.redirect_uri(port);
        let oauth =
            endpoints
                .client()?
                .set_redirect_uri(RedirectUrl::new(redirect_uri.clone()).map_err(|e| {
                    OAuthError::Config {
                        detail: format!("redirect URI: {e}"),
                    }
                })?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = oauth
            .authorize_url(CsrfToken::new_random)
            .map_err(|e| OAuthError::Config {
                detail: e.to_string(),
            })?
            .add_scopes(endpoints.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        for (name, value) in &endpoints.extra_authorize_params {
            let value = if value == REDIRECT_URI_PLACEHOLDER {
                redirect_uri.clone()
            } else {
                value.clone()
            };
            request = request.add_extra_param(name.clone(), value);
        }
        let (url, state) = request.url();
        let (callbacks, received) = mpsc::channel(1);
        Ok(Self {
            endpoints,
            client,
            authorize_url: url.to_string(),
            redirect_uri,
            state,
            verifier,
            listener: None,
            callbacks,
            received: Some(received),
        })
    }

    /// The page to open in the system browser.
    pub fn authorize_url(&self) -> &str {
        &self.authorize_url
    }

    /// Where the provider sends the browser back to.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// A way to paste the callback URL while [`Self::wait_for_callback`] waits.
    pub fn paste_slot(&self) -> PasteSlot {
        PasteSlot {
            callbacks: self.callbacks.clone(),
        }
    }

    /// Waits (at most `timeout`) for the browser to come back to the listener or for a pasted
    /// callback through a [`PasteSlot`], whichever is first, then exchanges the code. A login
    /// started with [`Self::start_paste_only`] waits for a paste only.
    pub async fn wait_for_callback(mut self, timeout: Duration) -> Result<TokenSet, OAuthError> {
        let Some(mut receiver) = self.received.take() else {
            return Err(OAuthError::Config {
                detail: "this login has already been waited for; log in again".to_owned(),
            });
        };
        let server = self.listener.take().map(|listener| {
            let (stop, stopped) = oneshot::channel::<()>();
            let router = axum::Router::new()
                .route(&self.endpoints.redirect_path, get(callback))
                .with_state(CallbackState {
                    sender: self.callbacks.clone(),
                    state: self.state.secret().clone(),
                });
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
            (stop, task)
        });
        let received = tokio::time::timeout(timeout, receiver.recv()).await;
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            // The page has been answered; an idle browser connection must not keep the port.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                task.abort();
            });
        }
        match received {
            Ok(Some(Ok(params))) => self.finish(&params).await,
            Ok(Some(Err(error))) => Err(error),
            Ok(None) | Err(_) => Err(OAuthError::TimedOut {
                secs: timeout.as_secs(),
            }),
        }
    }

    /// Finishes the login with the address the browser ended on, pasted by the user. Also takes
    /// the `code#state` text that Anthropic's hosted callback page shows.
    pub async fn finish_with_pasted(self, pasted: &str) -> Result<TokenSet, OAuthError> {
        let params = parse_pasted(pasted)?;
        self.finish(&params).await
    }

    async fn finish(self, params: &HashMap<String, String>) -> Result<TokenSet, OAuthError> {
        let code = check_callback(params, self.state.secret())?;
        let oauth = self.endpoints.client()?.set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| OAuthError::Config {
                detail: format!("redirect URI: {e}"),
            })?,
        );
        let body = self.endpoints.token_body;
        let client = self.client.clone();
        let send = |request| http::send(client.clone(), body, request);
        let mut request = oauth
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(self.verifier);
        if body == TokenBody::Json {
            request = request.add_extra_param("state", self.state.secret().clone());
        }
        let response = request.request_async(&send).await.map_err(token_error)?;
        Ok(TokenSet::from_response(&response, now_ms()))
    }
}

fn check_path(endpoints: &Endpoints) -> Result<(), OAuthError> {
    if endpoints.redirect_path.starts_with('/') {
        Ok(())
    } else {
        Err(OAuthError::Config {
            detail: format!(
                "the callback path `{}` must start with /",
                endpoints.redirect_path
            ),
        })
    }
}

#[derive(Clone)]
struct CallbackState {
    sender: mpsc::Sender<Callback>,
    state: String,
}

async fn callback(
    State(callback): State<CallbackState>,
    Query(params): Query<HashMap<String, String>>,
) -> Html<&'static str> {
    let page = match check_callback(&params, &callback.state) {
        Ok(_) => "<h1>Signed in</h1><p>You can close this tab and return to FlexiProxy.</p>",
        Err(_) => "<h1>Sign-in did not finish</h1><p>Return to FlexiProxy to see why.</p>",
    };
    let _ = callback.sender.try_send(Ok(params));
    Html(page)
}

/// The code of a callback whose `state` is ours; the provider's refusal otherwise.
fn check_callback(params: &HashMap<String, String>, expected: &str) -> Result<String, OAuthError> {
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").cloned();
        return Err(if error == "access_denied" {
            OAuthError::Denied {
                detail: description.unwrap_or_else(|| error.clone()),
            }
        } else {
            OAuthError::Provider {
                error: error.clone(),
                description,
            }
        });
    }
    if params.get("state").map(String::as_str) != Some(expected) {
        return Err(OAuthError::StateMismatch);
    }
    params
        .get("code")
        .filter(|code| !code.is_empty())
        .cloned()
        .ok_or_else(|| OAuthError::BadCallback {
            detail: "it has no code".to_owned(),
        })
}

fn parse_pasted(pasted: &str) -> Result<HashMap<String, String>, OAuthError> {
    let pasted = pasted.trim();
    if let Ok(url) = oauth2::url::Url::parse(pasted) {
        let mut params: HashMap<String, String> = url.query_pairs().into_owned().collect();
        // Some providers put the answer in the fragment.
        if !params.contains_key("code")
            && !params.contains_key("error")
            && let Some(fragment) = url.fragment()
        {
            params.extend(oauth2::url::form_urlencoded::parse(fragment.as_bytes()).into_owned());
        }
        return Ok(params);
    }
    match pasted.split_once('#') {
        Some((code, state)) if !code.is_empty() && !code.contains(char::is_whitespace) => {
            Ok(HashMap::from([
                ("code".to_owned(), code.to_owned()),
                ("state".to_owned(), state.to_owned()),
            ]))
        }
        _ => Err(OAuthError::BadCallback {
            detail: "it is neither a URL nor a code#state pair".to_owned(),
        }),
    }
}
