//! The OAuth flows and the token store against a real OAuth 2 / OpenID Connect server: the npm
//! `oidc-provider` on 127.0.0.1 (`tests/e2e/node/scripts/oidc_server.mjs`, installed by
//! `.ci/setup` with the other npm packages of the end-to-end tests).
//!
//! The server enforces PKCE S256, rotates public clients' refresh tokens and runs the device
//! grant; the script stands in for the user (signs in and consents, or declines). The tests use
//! only the gateway's public `oauth` API, as the app will. Without Node or the npm package they
//! are skipped with a note, except under CI (`CI` set), where that is a failure.
#![allow(clippy::unwrap_used, reason = "tests")]
#![allow(clippy::print_stderr, reason = "the skip note")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use flexiproxy_gateway::oauth::device_flow::DeviceLogin;
use flexiproxy_gateway::oauth::pkce_flow::PkceLogin;
use flexiproxy_gateway::oauth::{Endpoints, Flow, OAuthError, TokenBody, TokenStore, now_ms};
use flexiproxy_gateway::secrets::{MemoryStore, SharedSecretStore};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/node");

struct OidcServer {
    issuer: String,
    /// Held so the server lives as long as the test; it exits when its stdin closes.
    _child: Child,
}

fn node_binary(dir: &Path) -> PathBuf {
    let runtime = dir.join(".runtime/bin/node");
    if runtime.is_file() {
        runtime
    } else {
        PathBuf::from("node")
    }
}

/// Starts the server, or `None` (test skipped) when Node or the package is missing outside CI.
async fn start() -> Option<OidcServer> {
    let dir = Path::new(NODE_DIR);
    let missing = if dir.join("node_modules/oidc-provider").is_dir() {
        None
    } else {
        Some("tests/e2e/node has no node_modules/oidc-provider (run .ci/setup)")
    };
    let spawned = match missing {
        None => Command::new(node_binary(dir))
            .arg("scripts/oidc_server.mjs")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok(),
        Some(_) => None,
    };
    let Some(mut child) = spawned else {
        let why = missing.unwrap_or("node could not be started");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return None;
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let issuer = serde_json::from_str::<serde_json::Value>(&first).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    Some(OidcServer {
        issuer,
        _child: child,
    })
}

impl OidcServer {
    fn endpoints(&self, client_id: &str, flow: Flow) -> Endpoints {
        Endpoints {
            authorize_url: format!("{}/auth", self.issuer),
            token_url: format!("{}/token", self.issuer),
            device_url: Some(format!("{}/device/auth", self.issuer)),
            client_id: client_id.to_owned(),
            client_secret: None,
            scopes: vec!["openid".into(), "email".into(), "offline_access".into()],
            // RFC 8252: a native client's loopback redirect takes any port.
            redirect_host: "127.0.0.1".to_owned(),
            redirect_port: 0,
            redirect_path: "/callback".to_owned(),
            flow,
            // oidc-provider grants offline_access (a refresh token) only with explicit consent.
            extra_authorize_params: vec![("prompt".into(), "consent".into())],
            token_body: TokenBody::Form,
            device_pkce: false,
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// The user's browser: keeps the provider's cookies across its redirects and ends on the
/// login's callback listener.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn browser_login(
    server: &OidcServer,
    client_id: &str,
) -> Result<flexiproxy_gateway::oauth::TokenSet, OAuthError> {
    let login = PkceLogin::start(client(), server.endpoints(client_id, Flow::Pkce))
        .await
        .unwrap();
    let url = login.authorize_url().to_owned();
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_secs(20)));
    let _ = browser().get(&url).send().await;
    waiting.await.unwrap()
}

#[tokio::test]
async fn pkce_login_refresh_and_refresh_failure() {
    let Some(server) = start().await else { return };
    let tokens = browser_login(&server, "flexiproxy").await.unwrap();
    assert_eq!(tokens.facts.email.as_deref(), Some("ada@example.com"));
    assert_eq!(tokens.facts.account_id.as_deref(), Some("ada"));
    assert!(
        tokens.refresh.is_some(),
        "offline_access gives a refresh token"
    );
    assert!(tokens.expires_at_ms.unwrap() > now_ms());

    let secrets: SharedSecretStore = Arc::new(MemoryStore::default());
    let store = TokenStore::new(secrets.clone(), client());
    let endpoints = server.endpoints("flexiproxy", Flow::Pkce);
    store.save("ada", &tokens).await.unwrap();
    let first = tokens.refresh.clone().unwrap();

    // Two refreshes at once: one request, and the rotated token is what is stored.
    let (a, b) = tokio::join!(
        store.refresh("ada", &endpoints),
        store.refresh("ada", &endpoints)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_ne!(a.access, tokens.access);
    let rotated = a.refresh.clone().unwrap();
    assert_ne!(
        rotated, first,
        "oidc-provider rotates public clients' refresh tokens"
    );
    assert_eq!(store.load("ada").await.unwrap().unwrap(), a);
    assert_eq!(a.facts.email.as_deref(), Some("ada@example.com"));

    // The rotated token refreshes again.
    let again = store.refresh("ada", &endpoints).await.unwrap();
    assert_ne!(again.refresh.clone().unwrap(), rotated);

    // Replaying a used refresh token is refused (and revokes the grant): log in again.
    let mut stale = again.clone();
    stale.refresh = Some(first);
    store.save("ada", &stale).await.unwrap();
    let error = store.refresh("ada", &endpoints).await.unwrap_err();
    assert!(error.needs_login(), "{error:?}");
}

#[tokio::test]
async fn pkce_denial_at_the_provider() {
    let Some(server) = start().await else { return };
    let error = browser_login(&server, "flexiproxy-deny").await.unwrap_err();
    assert!(matches!(error, OAuthError::Denied { .. }), "{error:?}");
}

#[tokio::test]
async fn pkce_pasted_callback_with_a_foreign_state_is_refused() {
    let Some(server) = start().await else { return };
    let login =
        PkceLogin::start_paste_only(client(), server.endpoints("flexiproxy", Flow::Pkce)).unwrap();
    let url = login.authorize_url().to_owned();
    // The browser's last hop is to 127.0.0.1:0, which it cannot open: the user copies it.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().path() == "/callback" {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap();
    let answer = browser.get(&url).send().await.unwrap();
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let mut callback = reqwest::Url::parse(&location).unwrap();
    let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
    callback
        .query_pairs_mut()
        .clear()
        .append_pair("code", &query["code"])
        .append_pair("state", "someone-elses");
    let error = login
        .finish_with_pasted(callback.as_str())
        .await
        .unwrap_err();
    assert_eq!(error, OAuthError::StateMismatch);
}

async fn device_login(
    server: &OidcServer,
    outcome: &str,
) -> Result<flexiproxy_gateway::oauth::TokenSet, OAuthError> {
    let login = DeviceLogin::start(client(), server.endpoints("flexiproxy", Flow::Device))
        .await
        .unwrap();
    assert!(login.verification_uri.starts_with(&server.issuer));
    assert!(login.verification_uri_complete.is_some());
    let decided = client()
        .post(format!("{}/test/device", server.issuer))
        .query(&[
            ("user_code", login.user_code.as_str()),
            ("outcome", outcome),
        ])
        .send()
        .await
        .unwrap();
    let status = decided.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        decided.text().await.unwrap()
    );
    tokio::time::timeout(Duration::from_secs(30), login.finish())
        .await
        .unwrap()
}

#[tokio::test]
async fn device_login_approved_and_denied() {
    let Some(server) = start().await else { return };
    let tokens = device_login(&server, "approve").await.unwrap();
    assert!(tokens.refresh.is_some());
    assert_eq!(tokens.facts.account_id.as_deref(), Some("ada"));
    let error = device_login(&server, "deny").await.unwrap_err();
    assert!(matches!(error, OAuthError::Denied { .. }), "{error:?}");
}
