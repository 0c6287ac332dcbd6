//! Authorization code + PKCE (S256) login: the browser signs in at the provider and comes back
//! to a listener on this machine, or (headless) the user pastes the address the browser ended
//! on.
//!
//! [`PkceLogin::start`] binds the callback port where the redirect URI points (`localhost`: both
//! 127.0.0.1 and ::1, since a browser may try either; an IP address: exactly it) and builds the
//! authorize URL (random `state`, S256 challenge); the window opens that URL in the system
//! browser and then awaits [`PkceLogin::wait_for_callback`]. [`PkceLogin::finish_with_pasted`]
//! takes the callback URL instead; a [`PasteSlot`] hands a pasted URL to a login already
//! waiting, so the user can paste while the listener waits (the browser ran on another
//! machine). Either way the `state` is checked, the code exchanged for a [`TokenSet`], and
//! storing it is left to the caller ([`super::TokenStore::save`]).
//!
//! Any web page the user has open can make the browser load `http://localhost:PORT/callback`
//! with whatever query it likes. The listener therefore only hears callbacks that carry this
//! login's `state`: anything else (a forged `error=access_denied`, a code of another login) gets
//! a small 400 page and the login keeps waiting for the real one.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{
    Endpoints, OAuthError, REDIRECT_URI_PLACEHOLDER, SideHttp, TokenBody, TokenSet, http,
    token_error,
};
use crate::clock::now_ms;

/// How many times a random callback port is drawn again when its IPv6 twin is taken.
const RANDOM_PORT_TRIES: usize = 8;

/// What reaches a waiting login: the listener's callback, or a pasted one (already parsed, or
/// why it could not be).
type Callback = Result<HashMap<String, String>, OAuthError>;

/// One login under way. Dropping it stops the listener.
pub struct PkceLogin {
    endpoints: Endpoints,
    client: SideHttp,
    authorize_url: String,
    redirect_uri: String,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
    /// One per address the redirect host names; empty for a paste-only login.
    listeners: Vec<TcpListener>,
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
            .field(
                "listening",
                &self
                    .listeners
                    .iter()
                    .filter_map(|l| l.local_addr().ok())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl PkceLogin {
    /// Binds the callback port where the redirect URI points and prepares the authorize URL. A
    /// port in use comes back as [`OAuthError::PortBusy`].
    pub async fn start(client: SideHttp, endpoints: Endpoints) -> Result<Self, OAuthError> {
        check_path(&endpoints)?;
        let (listeners, bound) = bind_callback(&endpoints).await?;
        let mut login = Self::prepare(client, endpoints, bound)?;
        login.listeners = listeners;
        Ok(login)
    }

    /// Prepares the authorize URL without listening, for a machine whose browser cannot reach
    /// this one: the user pastes the callback URL into [`Self::finish_with_pasted`].
    pub fn start_paste_only(client: SideHttp, endpoints: Endpoints) -> Result<Self, OAuthError> {
        check_path(&endpoints)?;
        let port = endpoints.redirect_port;
        Self::prepare(client, endpoints, port)
    }

    fn prepare(client: SideHttp, endpoints: Endpoints, port: u16) -> Result<Self, OAuthError> {
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
            listeners: Vec::new(),
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
        let hits = CallbackState {
            sender: self.callbacks.clone(),
            state: self.state.secret().clone(),
            path: self.endpoints.redirect_path.clone(),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let servers: Vec<_> = std::mem::take(&mut self.listeners)
            .into_iter()
            .map(|listener| tokio::spawn(serve_callback(listener, hits.clone(), stopped.clone())))
            .collect();
        // Dropping the wait (a cancelled login) drops `stop`, which stops the servers too.
        let received = tokio::time::timeout(timeout, receiver.recv()).await;
        let _ = stop.send(true);
        if !servers.is_empty() {
            // The page has been answered; an idle browser connection must not keep the port.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                for server in servers {
                    server.abort();
                }
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
    /// The redirect URI's path: the only address the listener answers.
    path: String,
}

/// The loopback listener: plain HTTP/1 on hyper, one connection task each, until `stopped`
/// flips (then it stops accepting; connections already open finish unless the caller aborts
/// this task, which drops them all with it).
async fn serve_callback(
    listener: TcpListener,
    hits: CallbackState,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let hits = hits.clone();
        connections.spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let answer = answer_callback(&hits, request.method(), request.uri());
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// One hit on the listener: the callback path answered by [`callback`], anything else 404 (or
/// 405 for the path with another method).
fn answer_callback(
    hits: &CallbackState,
    method: &Method,
    uri: &hyper::Uri,
) -> hyper::Response<Full<Bytes>> {
    let (status, page) = if uri.path() != hits.path {
        (StatusCode::NOT_FOUND, "")
    } else if method != Method::GET && method != Method::HEAD {
        (StatusCode::METHOD_NOT_ALLOWED, "")
    } else {
        let params = uri
            .query()
            .map(|query| {
                reqwest::Url::parse(&format!("http://callback/?{query}"))
                    .map(|url| url.query_pairs().into_owned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        callback(hits, params)
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(page.as_bytes())));
    *response.status_mut() = status;
    if !page.is_empty() {
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    response
}

/// The loopback callback. Only a hit carrying this login's `state` reaches the login (the
/// provider always sends it back, with a code or with its refusal); any other hit is some page
/// or program guessing, and is turned away without ending the wait.
fn callback(
    callback: &CallbackState,
    params: HashMap<String, String>,
) -> (StatusCode, &'static str) {
    if !state_matches(&params, &callback.state) {
        tracing::warn!("a callback without this login's state was ignored");
        return (
            StatusCode::BAD_REQUEST,
            "<h1>Not this sign-in</h1><p>This address does not belong to the sign-in \
             FlexiProxy is waiting for; it was ignored.</p>",
        );
    }
    let page = match check_callback(&params, &callback.state) {
        Ok(_) => "<h1>Signed in</h1><p>You can close this tab and return to FlexiProxy.</p>",
        Err(_) => "<h1>Sign-in did not finish</h1><p>Return to FlexiProxy to see why.</p>",
    };
    let _ = callback.sender.try_send(Ok(params));
    (StatusCode::OK, page)
}

/// Whether the callback carries `expected` as its `state`, compared in constant time.
fn state_matches(params: &HashMap<String, String>, expected: &str) -> bool {
    let Some(got) = params.get("state") else {
        return false;
    };
    got.len() == expected.len()
        && got
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Where the callback listener binds, from the redirect URI's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallbackHost {
    /// `localhost`: 127.0.0.1, and ::1 where the machine has IPv6.
    Localhost,
    Ip(IpAddr),
}

fn callback_host(endpoints: &Endpoints) -> Result<CallbackHost, OAuthError> {
    let host = endpoints.redirect_host.trim();
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(CallbackHost::Localhost);
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(CallbackHost::Ip)
        .map_err(|_| OAuthError::Config {
            detail: format!(
                "the callback host `{host}` must be `localhost` or an IP address of this machine"
            ),
        })
}

/// Binds the callback listeners; they and the port bound (the chosen one when
/// `redirect_port` is 0).
async fn bind_callback(endpoints: &Endpoints) -> Result<(Vec<TcpListener>, u16), OAuthError> {
    let port = endpoints.redirect_port;
    match callback_host(endpoints)? {
        CallbackHost::Ip(ip) => {
            let listener = bind_one(SocketAddr::new(ip, port)).await?;
            let bound = bound_port(&listener, port)?;
            Ok((vec![listener], bound))
        }
        CallbackHost::Localhost => {
            let tries = if port == 0 { RANDOM_PORT_TRIES } else { 1 };
            for _ in 0..tries {
                let v4 = bind_one(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await?;
                let bound = bound_port(&v4, port)?;
                match TcpListener::bind((Ipv6Addr::LOCALHOST, bound)).await {
                    Ok(v6) => return Ok((vec![v4, v6], bound)),
                    // The free IPv4 port is taken on IPv6 (by a program a browser trying ::1
                    // would reach): draw another, or refuse a fixed one.
                    Err(e) if e.kind() == ErrorKind::AddrInUse => {
                        if port != 0 {
                            return Err(OAuthError::PortBusy {
                                host: Ipv6Addr::LOCALHOST.to_string(),
                                port,
                            });
                        }
                    }
                    // No IPv6 loopback on this machine: browsers will use 127.0.0.1.
                    Err(e) => {
                        tracing::debug!(error = %e, "no IPv6 loopback for the login callback");
                        return Ok((vec![v4], bound));
                    }
                }
            }
            Err(OAuthError::Listen {
                port,
                detail: "no port is free on both 127.0.0.1 and ::1".to_owned(),
            })
        }
    }
}

async fn bind_one(addr: SocketAddr) -> Result<TcpListener, OAuthError> {
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        ErrorKind::AddrInUse => OAuthError::PortBusy {
            host: addr.ip().to_string(),
            port: addr.port(),
        },
        _ => OAuthError::Listen {
            port: addr.port(),
            detail: format!("{}: {e}", addr.ip()),
        },
    })
}

fn bound_port(listener: &TcpListener, port: u16) -> Result<u16, OAuthError> {
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| OAuthError::Listen {
            port,
            detail: e.to_string(),
        })
}

/// The code of a callback whose `state` is ours; the provider's refusal otherwise. The state
/// is checked first: a refusal that is not this login's does not end it.
fn check_callback(params: &HashMap<String, String>, expected: &str) -> Result<String, OAuthError> {
    if !state_matches(params, expected) {
        return Err(OAuthError::StateMismatch);
    }
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
