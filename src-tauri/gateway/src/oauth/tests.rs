//! Tests of the flows and the token store against a small OAuth 2 server on 127.0.0.1 that
//! checks what a real one checks (PKCE S256, redirect URI, state in JSON exchanges, rotating
//! refresh tokens, device polling).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::device_flow::DeviceLogin;
use super::pkce_flow::PkceLogin;
use super::*;
use crate::secrets::{MemoryStore, Secret, SharedSecretStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Browser {
    Approve,
    Deny,
    WrongState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceOutcome {
    Approve,
    Deny,
    Expire,
}

#[derive(Debug)]
struct Server {
    browser: Browser,
    /// code -> (challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    valid_refresh: Vec<String>,
    rotate: bool,
    refresh_delay: Duration,
    refresh_calls: usize,
    issued: usize,
    pending_polls: usize,
    slow_down_once: bool,
    device_outcome: DeviceOutcome,
    device_challenge: Option<String>,
    /// Answer token errors with 200, as GitHub does.
    errors_with_200: bool,
    require_json_state: bool,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            browser: Browser::Approve,
            codes: HashMap::new(),
            valid_refresh: Vec::new(),
            rotate: true,
            refresh_delay: Duration::ZERO,
            refresh_calls: 0,
            issued: 0,
            pending_polls: 0,
            slow_down_once: false,
            device_outcome: DeviceOutcome::Approve,
            device_challenge: None,
            errors_with_200: false,
            require_json_state: false,
        }
    }
}

type Shared = Arc<Mutex<Server>>;

fn id_token() -> String {
    let claims = json!({
        "sub": "user-1",
        "email": "ada@example.com",
        "https://api.openai.com/auth": {"chatgpt_account_id": "acct-42", "chatgpt_plan_type": "plus"}
    });
    format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

async fn authorize(
    State(server): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut server = server.lock().unwrap();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    let redirect = q["redirect_uri"].clone();
    let state = q["state"].clone();
    let target = match server.browser {
        Browser::Approve | Browser::WrongState => {
            server.issued += 1;
            let code = format!("code-{}", server.issued);
            server.codes.insert(
                code.clone(),
                (q["code_challenge"].clone(), redirect.clone()),
            );
            let state = if server.browser == Browser::WrongState {
                "forged".to_owned()
            } else {
                state
            };
            format!("{redirect}?code={code}&state={state}")
        }
        Browser::Deny => format!("{redirect}?error=access_denied&state={state}"),
    };
    Redirect::to(&target).into_response()
}

fn error(server: &Server, code: &str) -> Response {
    let status = if server.errors_with_200 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, axum::Json(json!({"error": code}))).into_response()
}

fn issue(server: &mut Server, with_refresh: bool) -> Response {
    server.issued += 1;
    let n = server.issued;
    let mut body = json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token(),
    });
    if with_refresh {
        let refresh = format!("rt-{n}");
        server.valid_refresh.push(refresh.clone());
        body["refresh_token"] = json!(refresh);
    }
    axum::Json(body).into_response()
}

fn verifier_matches(verifier: Option<&String>, challenge: &str) -> bool {
    verifier.is_some_and(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == challenge)
}

async fn token(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let form: HashMap<String, String> = if json {
        let value: Value = serde_json::from_str(&body).unwrap();
        value
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    } else {
        oauth2::url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    };
    match form["grant_type"].as_str() {
        "authorization_code" => {
            let mut server = shared.lock().unwrap();
            if server.require_json_state && (!json || !form.contains_key("state")) {
                return error(&server, "invalid_request");
            }
            let Some((challenge, redirect)) = server.codes.remove(&form["code"]) else {
                return error(&server, "invalid_grant");
            };
            if !verifier_matches(form.get("code_verifier"), &challenge)
                || form.get("redirect_uri") != Some(&redirect)
            {
                return error(&server, "invalid_grant");
            }
            issue(&mut server, true)
        }
        "refresh_token" => {
            let delay = {
                let mut server = shared.lock().unwrap();
                server.refresh_calls += 1;
                server.refresh_delay
            };
            tokio::time::sleep(delay).await;
            let mut server = shared.lock().unwrap();
            let presented = &form["refresh_token"];
            if !server.valid_refresh.contains(presented) {
                return error(&server, "invalid_grant");
            }
            let rotate = server.rotate;
            if rotate {
                server.valid_refresh.retain(|r| r != presented);
            }
            issue(&mut server, rotate)
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let mut server = shared.lock().unwrap();
            assert_eq!(form["device_code"], "dev-1");
            if let Some(challenge) = server.device_challenge.clone()
                && !verifier_matches(form.get("code_verifier"), &challenge)
            {
                return error(&server, "invalid_grant");
            }
            if server.slow_down_once {
                server.slow_down_once = false;
                return error(&server, "slow_down");
            }
            if server.pending_polls > 0 {
                server.pending_polls -= 1;
                return error(&server, "authorization_pending");
            }
            match server.device_outcome {
                DeviceOutcome::Approve => issue(&mut server, true),
                DeviceOutcome::Deny => error(&server, "access_denied"),
                DeviceOutcome::Expire => error(&server, "expired_token"),
            }
        }
        _ => error(&shared.lock().unwrap(), "unsupported_grant_type"),
    }
}

async fn device(State(shared): State<Shared>, body: String) -> Response {
    let form: HashMap<String, String> = oauth2::url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut server = shared.lock().unwrap();
    server.device_challenge = form.get("code_challenge").cloned();
    axum::Json(json!({
        "device_code": "dev-1",
        "user_code": "ABCD-EFGH",
        "verification_uri": "http://127.0.0.1/device",
        "verification_uri_complete": "http://127.0.0.1/device?user_code=ABCD-EFGH",
        "expires_in": 600,
        "interval": 0
    }))
    .into_response()
}

/// Starts the server; returns its state and endpoints pointing at it.
async fn serve(server: Server, flow: Flow) -> (Shared, Endpoints) {
    let shared = Arc::new(Mutex::new(server));
    let app = Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/device", post(device))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let endpoints = Endpoints {
        authorize_url: format!("{base}/authorize"),
        token_url: format!("{base}/token"),
        device_url: Some(format!("{base}/device")),
        client_id: "test-client".to_owned(),
        client_secret: None,
        scopes: vec!["openid".to_owned(), "offline_access".to_owned()],
        redirect_host: "127.0.0.1".to_owned(),
        redirect_port: 0,
        redirect_path: "/callback".to_owned(),
        flow,
        extra_authorize_params: vec![
            ("access_type".to_owned(), "offline".to_owned()),
            ("redirect".to_owned(), REDIRECT_URI_PLACEHOLDER.to_owned()),
        ],
        token_body: TokenBody::Form,
        device_pkce: false,
    };
    (shared, endpoints)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Plays the browser: opens the authorize URL and follows the redirect to the listener.
async fn browse(url: &str) {
    let _ = http_client().get(url).send().await;
}

async fn pkce_login(server: Server, body: TokenBody) -> Result<TokenSet, OAuthError> {
    let (_shared, mut endpoints) = serve(server, Flow::Pkce).await;
    endpoints.token_body = body;
    let login = PkceLogin::start(http_client(), endpoints).await.unwrap();
    let url = login.authorize_url().to_owned();
    assert!(url.contains("access_type=offline"));
    let query: HashMap<String, String> = oauth2::url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["redirect"], query["redirect_uri"]);
    assert!(url.contains("code_challenge_method=S256"));
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_secs(10)));
    browse(&url).await;
    tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn pkce_login_gets_tokens_and_account_facts() {
    let tokens = pkce_login(Server::default(), TokenBody::Form)
        .await
        .unwrap();
    assert!(tokens.access.expose().starts_with("at-"));
    assert!(tokens.refresh.is_some());
    assert!(tokens.expires_at_ms.unwrap() > now_ms());
    assert_eq!(tokens.facts.email.as_deref(), Some("ada@example.com"));
    assert_eq!(tokens.facts.account_id.as_deref(), Some("acct-42"));
    assert_eq!(tokens.facts.plan.as_deref(), Some("plus"));
}

#[tokio::test]
async fn pkce_login_with_json_token_body_sends_state() {
    let server = Server {
        require_json_state: true,
        ..Server::default()
    };
    assert!(pkce_login(server, TokenBody::Json).await.is_ok());
}

#[tokio::test]
async fn pkce_denial_is_reported() {
    let server = Server {
        browser: Browser::Deny,
        ..Server::default()
    };
    let error = pkce_login(server, TokenBody::Form).await.unwrap_err();
    assert!(matches!(error, OAuthError::Denied { .. }), "{error:?}");
}

#[tokio::test]
async fn pkce_state_mismatch_is_reported() {
    let server = Server {
        browser: Browser::WrongState,
        ..Server::default()
    };
    let error = pkce_login(server, TokenBody::Form).await.unwrap_err();
    assert_eq!(error, OAuthError::StateMismatch);
}

#[tokio::test]
async fn pkce_busy_port_is_reported() {
    let (_shared, mut endpoints) = serve(Server::default(), Flow::Pkce).await;
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    endpoints.redirect_port = port;
    let error = PkceLogin::start(http_client(), endpoints)
        .await
        .unwrap_err();
    assert_eq!(error, OAuthError::PortBusy { port });
    assert!(error.to_string().contains("paste the callback URL"));
}

#[tokio::test]
async fn pkce_without_browser_times_out() {
    let (_shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let login = PkceLogin::start(http_client(), endpoints).await.unwrap();
    let error = login
        .wait_for_callback(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(error, OAuthError::TimedOut { .. }));
}

#[tokio::test]
async fn pkce_pasted_callback_url_finishes_the_login() {
    let (shared, mut endpoints) = serve(Server::default(), Flow::Pkce).await;
    // A port nothing listens on: the browser's redirect is not followed, the user copies it.
    endpoints.redirect_port = 9;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let login = PkceLogin::start_paste_only(http_client(), endpoints.clone()).unwrap();
    let answer = no_redirects
        .get(login.authorize_url())
        .send()
        .await
        .unwrap();
    let location = answer.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(location.starts_with("http://127.0.0.1:9/callback?"));
    let tokens = login.finish_with_pasted(&location).await.unwrap();
    assert!(tokens.access.expose().starts_with("at-"));

    // Anthropic's hosted page shows `code#state` instead of a URL.
    let login = PkceLogin::start_paste_only(http_client(), endpoints.clone()).unwrap();
    let answer = no_redirects
        .get(login.authorize_url())
        .send()
        .await
        .unwrap();
    let location = answer.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let query: HashMap<String, String> = oauth2::url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let pasted = format!("  {}#{}\n", query["code"], query["state"]);
    assert!(login.finish_with_pasted(&pasted).await.is_ok());

    let login = PkceLogin::start_paste_only(http_client(), endpoints).unwrap();
    let error = login
        .finish_with_pasted("not a callback")
        .await
        .unwrap_err();
    assert!(matches!(error, OAuthError::BadCallback { .. }));
    assert!(shared.lock().unwrap().codes.is_empty());
}

#[tokio::test]
async fn pkce_paste_reaches_a_login_whose_listener_waits() {
    let (_shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The listener waits, but the browser ran elsewhere: the user pastes where it ended.
    let login = PkceLogin::start(http_client(), endpoints.clone())
        .await
        .unwrap();
    let slot = login.paste_slot();
    let answer = no_redirects
        .get(login.authorize_url())
        .send()
        .await
        .unwrap();
    let location = answer.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_secs(10)));
    assert!(slot.paste(&location));
    let tokens = waiting.await.unwrap().unwrap();
    assert!(tokens.access.expose().starts_with("at-"));
    assert!(!slot.paste(&location), "the login no longer waits");

    // Without a listener the wait is for a paste only; text that is no callback ends it.
    let login = PkceLogin::start_paste_only(http_client(), endpoints).unwrap();
    let slot = login.paste_slot();
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_secs(10)));
    assert!(slot.paste("not a callback"));
    let error = waiting.await.unwrap().unwrap_err();
    assert!(matches!(error, OAuthError::BadCallback { .. }), "{error:?}");
}

async fn device_login(server: Server, pkce: bool) -> Result<TokenSet, OAuthError> {
    let (shared, mut endpoints) = serve(server, Flow::Device).await;
    endpoints.device_pkce = pkce;
    let login = DeviceLogin::start(http_client(), endpoints).await?;
    assert_eq!(login.user_code, "ABCD-EFGH");
    assert_eq!(login.verification_uri, "http://127.0.0.1/device");
    assert!(login.verification_uri_complete.is_some());
    assert_eq!(shared.lock().unwrap().device_challenge.is_some(), pkce);
    tokio::time::timeout(Duration::from_secs(20), login.finish())
        .await
        .unwrap()
}

#[tokio::test]
async fn device_login_polls_until_approved_with_pkce() {
    let server = Server {
        pending_polls: 3,
        ..Server::default()
    };
    let tokens = device_login(server, true).await.unwrap();
    assert!(tokens.access.expose().starts_with("at-"));
}

#[tokio::test]
async fn device_login_reads_errors_sent_with_200_like_github() {
    let server = Server {
        pending_polls: 2,
        errors_with_200: true,
        ..Server::default()
    };
    assert!(device_login(server, false).await.is_ok());
}

#[tokio::test]
async fn device_login_slows_down_when_asked() {
    let server = Server {
        slow_down_once: true,
        ..Server::default()
    };
    let started = std::time::Instant::now();
    assert!(device_login(server, false).await.is_ok());
    // RFC 8628: slow_down adds 5 s to the interval.
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[tokio::test]
async fn device_denial_and_expiry_are_reported() {
    let server = Server {
        pending_polls: 1,
        device_outcome: DeviceOutcome::Deny,
        ..Server::default()
    };
    let error = device_login(server, false).await.unwrap_err();
    assert!(matches!(error, OAuthError::Denied { .. }), "{error:?}");

    let server = Server {
        device_outcome: DeviceOutcome::Expire,
        ..Server::default()
    };
    assert_eq!(
        device_login(server, false).await.unwrap_err(),
        OAuthError::Expired
    );
}

fn store() -> TokenStore {
    let secrets: SharedSecretStore = Arc::new(MemoryStore::default());
    TokenStore::new(secrets, http_client())
}

/// Stores tokens that expired a minute ago, with a refresh token the server knows.
async fn expired_account(store: &TokenStore, shared: &Shared, refresh: &str) {
    shared
        .lock()
        .unwrap()
        .valid_refresh
        .push(refresh.to_owned());
    let tokens = TokenSet {
        access: Secret::new("old-access"),
        refresh: Some(Secret::new(refresh)),
        expires_at_ms: Some(now_ms() - 60_000),
        facts: AccountFacts {
            email: Some("kept@example.com".to_owned()),
            ..AccountFacts::default()
        },
    };
    store.save("acct", &tokens).await.unwrap();
}

#[tokio::test]
async fn expired_tokens_are_refreshed_and_rotation_kept() {
    let (shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let store = store();
    expired_account(&store, &shared, "rt-start").await;

    let fresh = store.fresh("acct", &endpoints, now_ms()).await.unwrap();
    assert!(fresh.access.expose().starts_with("at-"));
    assert!(!fresh.needs_refresh(now_ms()));
    let rotated = fresh.refresh.clone().unwrap();
    assert_ne!(rotated.expose(), "rt-start");
    assert_eq!(store.load("acct").await.unwrap().unwrap(), fresh);
    // The ID token's email wins over what was stored; the account id is added.
    assert_eq!(fresh.facts.account_id.as_deref(), Some("acct-42"));

    // Fresh tokens are served without another refresh; the rotated one refreshes again.
    store.fresh("acct", &endpoints, now_ms()).await.unwrap();
    assert_eq!(shared.lock().unwrap().refresh_calls, 1);
    let again = store.refresh("acct", &endpoints).await.unwrap();
    assert_ne!(again.refresh.unwrap(), rotated);
}

#[tokio::test]
async fn a_refresh_token_that_is_not_rotated_is_kept() {
    let (shared, endpoints) = serve(
        Server {
            rotate: false,
            ..Server::default()
        },
        Flow::Pkce,
    )
    .await;
    let store = store();
    expired_account(&store, &shared, "rt-long").await;
    let fresh = store.refresh("acct", &endpoints).await.unwrap();
    assert_eq!(fresh.refresh.unwrap().expose(), "rt-long");
    assert_eq!(fresh.facts.email.as_deref(), Some("ada@example.com"));
}

#[tokio::test]
async fn a_refused_refresh_means_log_in_again() {
    let (_shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let store = store();
    let tokens = TokenSet {
        access: Secret::new("old"),
        refresh: Some(Secret::new("rt-secret-value")),
        expires_at_ms: Some(0),
        facts: AccountFacts::default(),
    };
    store.save("acct", &tokens).await.unwrap();
    let error = store.fresh("acct", &endpoints, now_ms()).await.unwrap_err();
    assert!(error.needs_login(), "{error:?}");
    assert!(!error.to_string().contains("rt-secret-value"));
    // Not logged in at all: the same answer.
    assert!(
        store
            .refresh("other", &endpoints)
            .await
            .unwrap_err()
            .needs_login()
    );

    // A server that cannot be reached is not a reason to log in again.
    let mut unreachable = endpoints.clone();
    unreachable.token_url = "http://127.0.0.1:9/token".to_owned();
    let error = store.refresh("acct", &unreachable).await.unwrap_err();
    assert!(matches!(error, OAuthError::Unreachable { .. }), "{error:?}");
}

#[tokio::test]
async fn concurrent_refreshes_share_one_request() {
    let (shared, endpoints) = serve(
        Server {
            refresh_delay: Duration::from_millis(300),
            ..Server::default()
        },
        Flow::Pkce,
    )
    .await;
    let store = store();
    expired_account(&store, &shared, "rt-once").await;
    let calls = (0..5).map(|_| {
        let store = store.clone();
        let endpoints = endpoints.clone();
        tokio::spawn(async move { store.refresh("acct", &endpoints).await })
    });
    let results = futures_util::future::join_all(calls).await;
    let tokens: Vec<TokenSet> = results.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(shared.lock().unwrap().refresh_calls, 1);
    // The next refresh is a new one.
    store.refresh("acct", &endpoints).await.unwrap();
    assert_eq!(shared.lock().unwrap().refresh_calls, 2);
}

#[tokio::test]
async fn logout_deletes_the_tokens() {
    let store = store();
    let tokens = TokenSet {
        access: Secret::new("a"),
        refresh: None,
        expires_at_ms: None,
        facts: AccountFacts::default(),
    };
    store.save("acct", &tokens).await.unwrap();
    store.delete("acct").await.unwrap();
    assert_eq!(store.load("acct").await.unwrap(), None);
}

#[test]
fn refresh_is_due_ahead_of_expiry() {
    let tokens = TokenSet {
        access: Secret::new("a"),
        refresh: None,
        expires_at_ms: Some(1_000_000),
        facts: AccountFacts::default(),
    };
    assert!(!tokens.needs_refresh(1_000_000 - token_store::REFRESH_AHEAD_MS - 1));
    assert!(tokens.needs_refresh(1_000_000 - token_store::REFRESH_AHEAD_MS));
    assert!(tokens.needs_refresh(2_000_000));
    let forever = TokenSet {
        expires_at_ms: None,
        ..tokens
    };
    assert!(!forever.needs_refresh(u64::MAX));
}

#[test]
fn every_kind_has_usable_defaults() {
    for kind in AccountKind::ALL {
        let endpoints = kind.endpoints();
        assert!(endpoints.client().is_ok(), "{kind:?}");
        assert!(!endpoints.client_id.is_empty());
        assert!(endpoints.token_url.starts_with("https://"));
        match endpoints.flow {
            Flow::Pkce => {
                assert!(endpoints.authorize_url.starts_with("https://"));
                assert!(endpoints.redirect_port > 0 && endpoints.redirect_path.starts_with('/'));
            }
            Flow::Device => assert!(endpoints.device_url.is_some()),
        }
    }
    assert_eq!(AccountKind::Qwen.endpoints().flow, Flow::Device);
    assert_eq!(AccountKind::Copilot.endpoints().flow, Flow::Device);
    assert_eq!(AccountKind::Claude.endpoints().token_body, TokenBody::Json);
}
