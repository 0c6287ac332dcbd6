//! The OAuth flows and the token store against a real OAuth 2 / OpenID Connect server: the npm
//! `oidc-provider` on 127.0.0.1 (`tests/e2e/node/scripts/oidc_server.mjs`, started by the shared
//! `support` module).
//!
//! The server enforces PKCE S256, rotates public clients' refresh tokens and runs the device
//! grant; the script stands in for the user (signs in and consents, or declines). The tests use
//! only the gateway's public `oauth` API, as the app will. Without Node or the npm package they
//! are skipped with a note, except under CI (`CI` set), where that is a failure.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flexiproxy_gateway::accounts::oauth::device_flow::DeviceLogin;
use flexiproxy_gateway::accounts::oauth::pkce_flow::PkceLogin;
use flexiproxy_gateway::accounts::oauth::{Flow, OAuthError, SideHttp, TokenStore};
use flexiproxy_gateway::clock::now_ms;
use flexiproxy_gateway::store::secrets::{MemoryStore, SharedSecretStore};
use support::oidc::{OidcServer, browser, start};

async fn browser_login(
    server: &OidcServer,
    client_id: &str,
) -> Result<flexiproxy_gateway::accounts::oauth::TokenSet, OAuthError> {
    let login = PkceLogin::start(
        SideHttp::standard().unwrap(),
        server.endpoints(client_id, Flow::Pkce),
    )
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
    let store = TokenStore::new(secrets.clone(), SideHttp::standard().unwrap());
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
    let login = PkceLogin::start_paste_only(
        SideHttp::standard().unwrap(),
        server.endpoints("flexiproxy", Flow::Pkce),
    )
    .unwrap();
    let url = login.authorize_url().to_owned();
    // The browser's last hop is to 127.0.0.1:0, which it cannot open: the user copies it.
    let answer = support::oidc::browser_stopping_at_callback()
        .get(&url)
        .send()
        .await
        .unwrap();
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
) -> Result<flexiproxy_gateway::accounts::oauth::TokenSet, OAuthError> {
    let login = DeviceLogin::start(
        SideHttp::standard().unwrap(),
        server.endpoints("flexiproxy", Flow::Device),
    )
    .await
    .unwrap();
    assert!(login.verification_uri.starts_with(&server.issuer));
    assert!(login.verification_uri_complete.is_some());
    server.decide_device(&login.user_code, outcome).await;
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
