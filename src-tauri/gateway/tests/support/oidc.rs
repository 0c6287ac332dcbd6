//! What the tests that log in to a real OAuth 2 / OpenID Connect server share: the npm
//! `oidc-provider` on 127.0.0.1 (`tests/e2e/node/scripts/oidc_server.mjs`, installed by
//! `.ci/setup` with the other npm packages of the end-to-end tests), and its endpoints.
//!
//! Without Node or the npm package a test is skipped with a note, except under CI (`CI` set),
//! where that is a failure.
#![allow(clippy::print_stderr, reason = "the skip note")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use flexiproxy_gateway::accounts::oauth::{Endpoints, Flow, TokenBody};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/node");

pub struct OidcServer {
    pub issuer: String,
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
pub async fn start() -> Option<OidcServer> {
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
    /// The server's endpoints for one of its clients (`flexiproxy`, or `flexiproxy-deny`,
    /// which the simulated user declines).
    pub fn endpoints(&self, client_id: &str, flow: Flow) -> Endpoints {
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

    /// Decides a pending device login as the user would on the verification page.
    pub async fn decide_device(&self, user_code: &str, outcome: &str) {
        let decided = client()
            .post(format!("{}/test/device", self.issuer))
            .query(&[("user_code", user_code), ("outcome", outcome)])
            .send()
            .await
            .unwrap();
        let status = decided.status();
        assert!(
            status.is_success(),
            "{status}: {}",
            decided.text().await.unwrap()
        );
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// The user's browser: keeps the provider's cookies across its redirects and ends on the
/// login's callback listener.
pub fn browser() -> reqwest::Client {
    browser_builder().build().unwrap()
}

/// What every browser of these tests is: one that keeps cookies and gives up after 15 s.
fn browser_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(15))
}

/// A browser whose last hop, to the callback, is not followed: the user copies that address.
pub fn browser_stopping_at_callback() -> reqwest::Client {
    browser_builder()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().path() == "/callback" {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap()
}
