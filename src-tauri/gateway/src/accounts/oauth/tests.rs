//! Tests of the flows and the token store against a small OAuth 2 server on 127.0.0.1 that
//! checks what a real one checks (PKCE S256, redirect URI, state in JSON exchanges, rotating
//! refresh tokens, device polling).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::now_ms;
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
use crate::store::secrets::{MemoryStore, Secret, SharedSecretStore};

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
    /// Keeps a refresh's answer back this long after the rotation is done, as a slow provider
    /// whose answer is still on its way when the caller gives up.
    answer_delay: Duration,
    /// Device polls answered 503 before the real answer.
    unavailable_polls: usize,
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
            answer_delay: Duration::ZERO,
            unavailable_polls: 0,
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
            let (answer, delay) = {
                let mut server = shared.lock().unwrap();
                let presented = &form["refresh_token"];
                if !server.valid_refresh.contains(presented) {
                    return error(&server, "invalid_grant");
                }
                let rotate = server.rotate;
                if rotate {
                    server.valid_refresh.retain(|r| r != presented);
                }
                (issue(&mut server, rotate), server.answer_delay)
            };
            tokio::time::sleep(delay).await;
            answer
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let mut server = shared.lock().unwrap();
            assert_eq!(form["device_code"], "dev-1");
            if let Some(challenge) = server.device_challenge.clone()
                && !verifier_matches(form.get("code_verifier"), &challenge)
            {
                return error(&server, "invalid_grant");
            }
            if server.unavailable_polls > 0 {
                server.unavailable_polls -= 1;
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html>upstream unavailable</html>",
                )
                    .into_response();
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

/// Serves `app` on loopback at a free port for as long as the test runs; returns its address.
async fn spawn_app(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Starts the server; returns its state and endpoints pointing at it.
async fn serve(server: Server, flow: Flow) -> (Shared, Endpoints) {
    let shared = Arc::new(Mutex::new(server));
    let app = Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/device", post(device))
        .with_state(shared.clone());
    let base = format!("http://{}", spawn_app(app).await);
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

/// The gateway side of the tests: the side-path client as the gateway builds it.
fn side() -> SideHttp {
    SideHttp::new(Duration::from_secs(5), Duration::from_secs(10)).unwrap()
}

/// The browser: follows the provider's redirect to the callback listener.
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

/// Where the provider's authorize page sends the browser, read without following it (the
/// browser ran elsewhere and the user copies the address).
async fn redirect_location(authorize_url: &str) -> String {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = no_redirects.get(authorize_url).send().await.unwrap();
    answer.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn pkce_login(server: Server, body: TokenBody) -> Result<TokenSet, OAuthError> {
    let (_shared, mut endpoints) = serve(server, Flow::Pkce).await;
    endpoints.token_body = body;
    let login = PkceLogin::start(side(), endpoints).await.unwrap();
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
async fn pkce_callback_with_another_state_is_turned_away() {
    // The provider's redirect carries a state that is not this login's: the hit gets a 400 and
    // the login waits on (here until its short time limit).
    let server = Server {
        browser: Browser::WrongState,
        ..Server::default()
    };
    let (_shared, endpoints) = serve(server, Flow::Pkce).await;
    let login = PkceLogin::start(side(), endpoints).await.unwrap();
    let url = login.authorize_url().to_owned();
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_millis(1500)));
    let page = http_client().get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let error = waiting.await.unwrap().unwrap_err();
    assert!(matches!(error, OAuthError::TimedOut { .. }), "{error:?}");
}

#[tokio::test]
async fn a_web_page_cannot_abort_or_hijack_a_waiting_login() {
    let (shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let login = PkceLogin::start(side(), endpoints).await.unwrap();
    let url = login.authorize_url().to_owned();
    let callback = login.redirect_uri().to_owned();
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_secs(10)));
    // What any page the user has open can make the browser load.
    for query in [
        "error=access_denied",
        "error=access_denied&state=guessed",
        "code=attacker-code&state=guessed",
        "code=attacker-code",
        "",
    ] {
        let page = http_client()
            .get(format!("{callback}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(page.text().await.unwrap().contains("ignored"), "{query}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "a foreign hit ended the login");
    // The real sign-in still completes it, with the provider's code.
    browse(&url).await;
    let tokens = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(tokens.access.expose().starts_with("at-"));
    assert!(
        shared.lock().unwrap().codes.is_empty(),
        "the code was not exchanged"
    );
}

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn port_of(uri: &str) -> u16 {
    oauth2::url::Url::parse(uri).unwrap().port().unwrap()
}

async fn reachable(addr: (&str, u16)) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

#[tokio::test]
async fn the_listener_binds_where_the_redirect_uri_points() {
    let (_shared, mut endpoints) = serve(Server::default(), Flow::Pkce).await;
    let v6 = ipv6_loopback();

    // `localhost`: a browser may resolve it to either family.
    endpoints.redirect_host = "localhost".to_owned();
    let login = PkceLogin::start(side(), endpoints.clone()).await.unwrap();
    assert!(login.redirect_uri().starts_with("http://localhost:"));
    let port = port_of(login.redirect_uri());
    assert!(reachable(("127.0.0.1", port)).await);
    if v6 {
        assert!(
            reachable(("::1", port)).await,
            "no listener on [::1]:{port}"
        );
    }
    drop(login);

    // An IP address: exactly it.
    endpoints.redirect_host = "127.0.0.1".to_owned();
    let login = PkceLogin::start(side(), endpoints.clone()).await.unwrap();
    let port = port_of(login.redirect_uri());
    assert!(reachable(("127.0.0.1", port)).await);
    if v6 {
        assert!(!reachable(("::1", port)).await, "[::1]:{port} listens too");
    }
    drop(login);
    if v6 {
        endpoints.redirect_host = "::1".to_owned();
        let login = PkceLogin::start(side(), endpoints.clone()).await.unwrap();
        assert!(
            login.redirect_uri().starts_with("http://[::1]:"),
            "{}",
            login.redirect_uri()
        );
        let port = port_of(login.redirect_uri());
        assert!(reachable(("::1", port)).await);
        assert!(
            !reachable(("127.0.0.1", port)).await,
            "127.0.0.1:{port} listens too"
        );
    }

    // A name that is not this machine's loopback is refused.
    endpoints.redirect_host = "login.example.com".to_owned();
    let error = PkceLogin::start(side(), endpoints).await.unwrap_err();
    assert!(matches!(error, OAuthError::Config { .. }), "{error:?}");
}

#[tokio::test]
async fn pkce_busy_port_is_reported() {
    let (_shared, mut endpoints) = serve(Server::default(), Flow::Pkce).await;
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    endpoints.redirect_port = port;
    let error = PkceLogin::start(side(), endpoints).await.unwrap_err();
    assert_eq!(
        error,
        OAuthError::PortBusy {
            host: "127.0.0.1".to_owned(),
            port
        }
    );
    assert!(error.to_string().contains("paste the callback URL"));
}

#[tokio::test]
async fn pkce_without_browser_times_out() {
    let (_shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let login = PkceLogin::start(side(), endpoints).await.unwrap();
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

    let login = PkceLogin::start_paste_only(side(), endpoints.clone()).unwrap();
    let location = redirect_location(login.authorize_url()).await;
    assert!(location.starts_with("http://127.0.0.1:9/callback?"));
    let tokens = login.finish_with_pasted(&location).await.unwrap();
    assert!(tokens.access.expose().starts_with("at-"));

    // Anthropic's hosted page shows `code#state` instead of a URL.
    let login = PkceLogin::start_paste_only(side(), endpoints.clone()).unwrap();
    let location = redirect_location(login.authorize_url()).await;
    let query: HashMap<String, String> = oauth2::url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let pasted = format!("  {}#{}\n", query["code"], query["state"]);
    assert!(login.finish_with_pasted(&pasted).await.is_ok());

    let login = PkceLogin::start_paste_only(side(), endpoints).unwrap();
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

    // The listener waits, but the browser ran elsewhere: the user pastes where it ended.
    let login = PkceLogin::start(side(), endpoints.clone()).await.unwrap();
    let slot = login.paste_slot();
    let location = redirect_location(login.authorize_url()).await;
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_secs(10)));
    assert!(slot.paste(&location));
    let tokens = waiting.await.unwrap().unwrap();
    assert!(tokens.access.expose().starts_with("at-"));
    assert!(!slot.paste(&location), "the login no longer waits");

    // Without a listener the wait is for a paste only; text that is no callback ends it.
    let login = PkceLogin::start_paste_only(side(), endpoints).unwrap();
    let slot = login.paste_slot();
    let waiting = tokio::spawn(login.wait_for_callback(Duration::from_secs(10)));
    assert!(slot.paste("not a callback"));
    let error = waiting.await.unwrap().unwrap_err();
    assert!(matches!(error, OAuthError::BadCallback { .. }), "{error:?}");
}

async fn device_login(server: Server, pkce: bool) -> Result<TokenSet, OAuthError> {
    let (shared, mut endpoints) = serve(server, Flow::Device).await;
    endpoints.device_pkce = pkce;
    let login = DeviceLogin::start(side(), endpoints).await?;
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

/// A front for the server at `target` (`http://host:port`) that drops its first `drops`
/// connections without an answer (a connection reset mid-poll), then passes bytes through.
async fn flaky_front(target: &str, drops: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let target = target.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        let mut dropped = 0;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            if dropped < drops {
                dropped += 1;
                drop(socket);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
            });
        }
    });
    base
}

#[tokio::test]
async fn device_login_survives_a_dropped_connection_and_a_503_while_polling() {
    let server = Server {
        unavailable_polls: 1,
        pending_polls: 1,
        ..Server::default()
    };
    let (shared, mut endpoints) = serve(server, Flow::Device).await;
    let base = endpoints.token_url.trim_end_matches("/token").to_owned();
    endpoints.token_url = format!("{}/token", flaky_front(&base, 1).await);
    let login = DeviceLogin::start(side(), endpoints).await.unwrap();
    let tokens = tokio::time::timeout(Duration::from_secs(20), login.finish())
        .await
        .unwrap()
        .unwrap();
    assert!(tokens.access.expose().starts_with("at-"));
    assert_eq!(shared.lock().unwrap().unavailable_polls, 0);
}

#[tokio::test]
async fn device_login_stops_at_a_redirecting_token_endpoint() {
    let (_shared, mut endpoints) = serve(Server::default(), Flow::Device).await;
    let app = Router::new().route(
        "/token",
        post(|| async { Redirect::temporary("http://127.0.0.1:9/steal?device_code=x") }),
    );
    endpoints.token_url = format!("http://{}/token", spawn_app(app).await);
    let login = DeviceLogin::start(side(), endpoints).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), login.finish())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        error,
        OAuthError::Redirected {
            host: "127.0.0.1:9".to_owned()
        }
    );
    assert!(!error.to_string().contains("device_code"), "{error}");
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
    TokenStore::new(secrets, side())
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

/// A PKCE `server` and a store holding an expired account it can refresh with `refresh`.
async fn serve_expired(server: Server, refresh: &str) -> (Shared, Endpoints, TokenStore) {
    let (shared, endpoints) = serve(server, Flow::Pkce).await;
    let store = store();
    expired_account(&store, &shared, refresh).await;
    (shared, endpoints, store)
}

/// A refresh of the account on its own task, as a client's request would start it.
fn spawn_refresh(
    store: &TokenStore,
    endpoints: &Endpoints,
) -> tokio::task::JoinHandle<Result<TokenSet, OAuthError>> {
    let store = store.clone();
    let endpoints = endpoints.clone();
    tokio::spawn(async move { store.refresh("acct", &endpoints).await })
}

#[tokio::test]
async fn expired_tokens_are_refreshed_and_rotation_kept() {
    let (shared, endpoints, store) = serve_expired(Server::default(), "rt-start").await;

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
    let server = Server {
        rotate: false,
        ..Server::default()
    };
    let (_shared, endpoints, store) = serve_expired(server, "rt-long").await;
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

    // Neither is a provider outage nor a proxy's error page in place of the token answer.
    for (status, body) in [
        (400, r#"{"error":"server_error"}"#),
        (503, r#"{"error":"temporarily_unavailable"}"#),
        (502, "<html>bad gateway</html>"),
    ] {
        let app = Router::new().route(
            "/token",
            post(move || async move {
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    body,
                )
            }),
        );
        let mut outage = endpoints.clone();
        outage.token_url = format!("http://{}/token", spawn_app(app).await);
        let error = store.refresh("acct", &outage).await.unwrap_err();
        assert!(!error.needs_login(), "{status} {body}: {error:?}");
    }
}

#[tokio::test]
async fn concurrent_refreshes_share_one_request() {
    let server = Server {
        refresh_delay: Duration::from_millis(300),
        ..Server::default()
    };
    let (shared, endpoints, store) = serve_expired(server, "rt-once").await;
    let calls = (0..5).map(|_| spawn_refresh(&store, &endpoints));
    let results = futures_util::future::join_all(calls).await;
    let tokens: Vec<TokenSet> = results.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(shared.lock().unwrap().refresh_calls, 1);
    // The next refresh is a new one.
    store.refresh("acct", &endpoints).await.unwrap();
    assert_eq!(shared.lock().unwrap().refresh_calls, 2);
}

/// Waits (at most 10 s) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn a_refresh_whose_caller_goes_away_completes_and_keeps_the_rotated_token() {
    let server = Server {
        answer_delay: Duration::from_millis(600),
        ..Server::default()
    };
    let (shared, endpoints, store) = serve_expired(server, "rt-start").await;
    let caller = spawn_refresh(&store, &endpoints);
    // The provider has rotated (rt-start is revoked) and its answer is on its way when the
    // caller (a client's request) goes away.
    eventually("the refresh reached the provider", async || {
        shared.lock().unwrap().refresh_calls == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    caller.abort();
    eventually("the rotated refresh token is kept", async || {
        let held = store.load("acct").await.unwrap().unwrap();
        held.refresh.unwrap().expose() != "rt-start"
    })
    .await;
    let held = store.load("acct").await.unwrap().unwrap();
    let rotated = held.refresh.clone().unwrap();
    assert!(
        shared
            .lock()
            .unwrap()
            .valid_refresh
            .contains(&rotated.expose().to_owned())
    );
    // The next refresh uses it and works; the account is not logged out.
    let again = store.refresh("acct", &endpoints).await.unwrap();
    assert_ne!(again.refresh.unwrap(), rotated);
}

#[tokio::test]
async fn a_keychain_that_refuses_the_save_ends_with_the_new_tokens_saved_and_used() {
    let (shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let secrets = Arc::new(crate::store::secrets::RefusingStore::default());
    let store = TokenStore::new(secrets.clone(), side());
    expired_account(&store, &shared, "rt-start").await;
    secrets.refuse_next(2);
    let fresh = store.refresh("acct", &endpoints).await.unwrap();
    let unsaved = store.unsaved("acct").unwrap();
    assert!(
        unsaved.starts_with("tokens not saved:") && unsaved.contains("locked"),
        "{unsaved}"
    );
    // In use meanwhile: no second refresh with the revoked token.
    assert_eq!(store.load("acct").await.unwrap().unwrap(), fresh);
    assert_eq!(
        store.fresh("acct", &endpoints, now_ms()).await.unwrap(),
        fresh
    );
    assert_eq!(shared.lock().unwrap().refresh_calls, 1);
    // Saved once the keychain takes them (tried again after 1 s, then 2 s).
    // A store of its own reads the keychain as the next start would.
    let on_disk = || TokenStore::new(secrets.inner_store(), side());
    eventually("the new tokens reach the keychain", async || {
        on_disk().load("acct").await.unwrap().as_ref() == Some(&fresh)
    })
    .await;
    // The keychain write lands a moment before the store notes it: on a busy machine that
    // moment can be seen, so the note is waited for too (it must still come).
    eventually("the store notes the tokens as saved", async || {
        store.unsaved("acct").is_none()
    })
    .await;
    // What the next start reads refreshes fine.
    on_disk().refresh("acct", &endpoints).await.unwrap();
}

#[tokio::test]
async fn a_log_out_is_not_undone_by_a_save_tried_again() {
    let (shared, endpoints) = serve(Server::default(), Flow::Pkce).await;
    let secrets = Arc::new(crate::store::secrets::RefusingStore::default());
    let store = TokenStore::new(secrets.clone(), side());
    expired_account(&store, &shared, "rt-start").await;
    secrets.refuse_next(1);
    store.refresh("acct", &endpoints).await.unwrap();
    assert!(store.unsaved("acct").is_some());
    store.delete("acct").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.load("acct").await.unwrap(), None);
    assert_eq!(store.unsaved("acct"), None);
}

#[tokio::test]
async fn a_token_endpoint_that_redirects_or_floods_gives_a_clear_error() {
    let (_shared, endpoints, store) = serve_expired(Server::default(), "rt-start").await;
    let stolen = Arc::new(Mutex::new(Vec::<String>::new()));
    let collector = stolen.clone();
    let thief = Router::new().fallback(move |body: String| {
        collector.lock().unwrap().push(body);
        async { "ok" }
    });
    let thief_host = spawn_app(thief).await.to_string();
    let target = format!("http://{thief_host}/collect");
    let app = Router::new()
        .route(
            "/redirect",
            post(move || async move { Redirect::temporary(&target) }),
        )
        .route("/flood", post(|| async { vec![b' '; 2 * http::BODY_CAP] }));
    let base = format!("http://{}", spawn_app(app).await);

    let mut redirecting = endpoints.clone();
    redirecting.token_url = format!("{base}/redirect");
    let error = store.refresh("acct", &redirecting).await.unwrap_err();
    assert_eq!(error, OAuthError::Redirected { host: thief_host });
    assert!(!error.needs_login());
    assert!(
        stolen.lock().unwrap().is_empty(),
        "the refresh token was sent on"
    );

    let mut flooding = endpoints.clone();
    flooding.token_url = format!("{base}/flood");
    let error = store.refresh("acct", &flooding).await.unwrap_err();
    assert!(matches!(error, OAuthError::TooLarge { .. }), "{error:?}");
    assert!(error.to_string().contains("1024 KiB"), "{error}");

    // Neither cost the login: the real endpoint still refreshes with the stored token.
    store.refresh("acct", &endpoints).await.unwrap();
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
    assert!(!forever.needs_refresh(i64::MAX));
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
