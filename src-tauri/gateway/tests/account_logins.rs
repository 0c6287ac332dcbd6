//! Subscription logins through the management API, against the real gateway started in-process
//! and a real OAuth 2 / OpenID Connect server (the npm `oidc-provider`, started by `support`):
//! kind `claude` logs in with the browser (PKCE), kind `qwen` with a device code, both pointed
//! at the local server through `PUT /api/accounts/endpoints`. A reqwest client with cookies
//! plays the browser; the server's test route plays the user approving a device code.
//!
//! Shown over HTTP: a login adds an account whose provider the registry serves, the accounts
//! event fires, refresh works until the provider refuses the refresh token (409, needs login),
//! logging out removes tokens, credential and provider; denials, a foreign state and a busy
//! callback port are reported with their messages; a pasted callback finishes a login whose
//! listener is waiting; a cancelled login lets its port go. Skipped without Node or the npm
//! package, except under CI.
#![allow(clippy::unwrap_used, reason = "tests")]

mod scratch;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use flexiproxy_gateway::RunningGateway;
use flexiproxy_gateway::accounts::oauth::{Flow, SideHttp, TokenStore};
use flexiproxy_gateway::store::secrets::{MemoryStore, SecretStore, SharedSecretStore};
use reqwest::StatusCode;
use scratch::TempDir;
use serde_json::{Value, json};
use support::in_process::{self, Management, assert_error_says};
use support::oidc::{OidcServer, browser, browser_stopping_at_callback, start};

struct Fixture {
    gateway: RunningGateway,
    manage: Management,
    secrets: Arc<MemoryStore>,
    server: OidcServer,
    _dir: TempDir,
}

/// The gateway with a scratch data folder and an in-memory secret store, its `claude` logins
/// pointed at the OIDC server's client `client_id` and its `qwen` logins at the device flow.
async fn fixture(client_id: &str) -> Option<Fixture> {
    let server = start().await?;
    let scratch = TempDir::new("logins");
    let secrets = Arc::new(MemoryStore::default());
    let (gateway, token) =
        in_process::start(in_process::settings(scratch.path(), secrets.clone())).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let fixture = Fixture {
        manage: Management::new(http, &gateway, &token),
        gateway,
        secrets,
        _dir: scratch,
        server,
    };
    let pkce = fixture.server.endpoints(client_id, Flow::Pkce);
    let device = fixture.server.endpoints("flexiproxy", Flow::Device);
    let (status, body) = fixture
        .call(
            reqwest::Method::PUT,
            "/api/accounts/endpoints",
            Some(json!({"login": {"claude": pkce, "qwen": device}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["login"]["claude"]["client_id"], client_id);
    assert_eq!(body["login"]["qwen"]["flow"], "device");
    // Kinds not named keep their public defaults.
    assert_eq!(body["login"]["codex"]["redirect_port"], 1455);
    Some(fixture)
}

impl Fixture {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.manage.call(method, path, body).await
    }

    async fn start_login(&self, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, "/api/logins", Some(body))
            .await
    }

    /// Starts a login that must be accepted (201); returns it.
    async fn login_started(&self, body: Value) -> Value {
        let (status, login) = self.start_login(body).await;
        assert_eq!(status, StatusCode::CREATED, "{login}");
        login
    }

    /// `POST /api/accounts/{id}/refresh`.
    async fn refresh(&self, id: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/accounts/{id}/refresh"),
            None,
        )
        .await
    }

    /// `DELETE /api/accounts/{id}`: logging the account out.
    async fn log_out(&self, id: &str) -> StatusCode {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/accounts/{id}"),
            None,
        )
        .await
        .0
    }

    /// Hands login `id` the callback address `url` as the user pastes it.
    async fn paste_callback(&self, id: &str, url: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/logins/{id}/callback"),
            Some(json!({"url": url})),
        )
        .await
    }

    /// Polls the login until it is done, failed or cancelled.
    async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, login) = self
                .call(reqwest::Method::GET, &format!("/api/logins/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{login}");
            if ["done", "failed", "cancelled"].contains(&login["status"].as_str().unwrap()) {
                return login;
            }
            assert!(Instant::now() < deadline, "login still {login}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn accounts(&self) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, "/api/accounts", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn provider_ids(&self) -> Vec<String> {
        let (status, body) = self
            .call(reqwest::Method::GET, "/api/providers", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The live event stream, opened.
    async fn events(&self) -> reqwest::Response {
        let response = self
            .manage
            .request(reqwest::Method::GET, "/api/events")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response
    }
}

async fn next_accounts_event(events: &mut reqwest::Response) {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: accounts\ndata: {}\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.chunk()).await;
        assert!(chunk.is_ok(), "no accounts event in {seen:?}");
        let chunk = chunk.unwrap().unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn browser_login_adds_a_served_account_refreshes_and_logs_out() {
    let Some(fixture) = fixture("flexiproxy").await else {
        return;
    };
    let mut events = fixture.events().await;

    let login = fixture.login_started(json!({"kind": "claude"})).await;
    assert_eq!(login["status"], "waiting");
    assert_eq!(login["flow"], "pkce");
    assert_eq!(login["kind"], "claude");
    assert!(login["expires_at"].as_i64().unwrap() > 0);
    assert!(login.get("user_code").is_none());
    let redirect = login["redirect_uri"].as_str().unwrap();
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    let authorize = login["authorize_url"].as_str().unwrap();
    assert!(authorize.starts_with(&fixture.server.issuer));

    let page = browser().get(authorize).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("Signed in"));
    let done = fixture.settled(login["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["account"]["email"], "ada@example.com");
    let id = done["account"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "claude-ada");
    next_accounts_event(&mut events).await;

    let listed = fixture.accounts().await;
    let account = &listed["accounts"][0];
    assert_eq!(account["id"], id);
    assert_eq!(account["kind"], "claude");
    assert_eq!(account["kind_label"], "Claude (Anthropic account)");
    assert_eq!(account["provider_id"], "claude-account");
    assert_eq!(account["label"], "ada@example.com");
    assert_eq!(account["needs_login"], false);
    assert_eq!(
        account["next_refresh_at"].as_i64().unwrap(),
        account["expires_at"].as_i64().unwrap() - 5 * 60 * 1000
    );
    let kinds = listed["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 6);
    assert!(kinds.contains(&json!({"kind": "qwen", "label": "Qwen", "flow": "device"})));
    assert!(
        fixture
            .provider_ids()
            .await
            .contains(&"claude-account".to_owned())
    );
    let text = listed.to_string();
    let stored = TokenStore::new(
        fixture.secrets.clone() as SharedSecretStore,
        SideHttp::standard().unwrap(),
    )
    .load(&id)
    .await
    .unwrap()
    .unwrap();
    assert!(
        !text.contains(stored.access.expose()),
        "no token in answers"
    );

    // A refresh gives new tokens; a refresh token the provider has seen before is refused.
    let (status, refreshed) = fixture.refresh(&id).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["id"], id);
    assert_eq!(refreshed["needs_login"], false);
    let store = TokenStore::new(
        fixture.secrets.clone() as SharedSecretStore,
        SideHttp::standard().unwrap(),
    );
    let mut stale = store.load(&id).await.unwrap().unwrap();
    assert_ne!(stale.access, stored.access);
    stale.refresh = stored.refresh.clone();
    store.save(&id, &stale).await.unwrap();
    let (status, refused) = fixture.refresh(&id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_error_says(&refused, "log in to it again");
    let account = &fixture.accounts().await["accounts"][0];
    assert_eq!(account["needs_login"], true, "{account}");
    assert!(account["last_error"].as_str().unwrap().contains("again"));

    assert_eq!(fixture.log_out(&id).await, StatusCode::NO_CONTENT);
    assert!(
        fixture
            .secrets
            .get(&TokenStore::entry_name(&id))
            .unwrap()
            .is_none()
    );
    assert_eq!(fixture.accounts().await["accounts"], json!([]));
    assert!(
        !fixture
            .provider_ids()
            .await
            .contains(&"claude-account".to_owned())
    );
    assert_eq!(fixture.log_out(&id).await, StatusCode::NOT_FOUND);
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn device_login_approved_and_denied() {
    let Some(fixture) = fixture("flexiproxy").await else {
        return;
    };
    let login = fixture.login_started(json!({"kind": "qwen"})).await;
    assert_eq!(login["flow"], "device");
    assert_eq!(login["status"], "waiting");
    assert!(login.get("authorize_url").is_none());
    assert!(
        login["verification_uri"]
            .as_str()
            .unwrap()
            .starts_with(&fixture.server.issuer)
    );
    assert!(login["verification_uri_complete"].is_string());
    fixture
        .server
        .decide_device(login["user_code"].as_str().unwrap(), "approve")
        .await;
    let done = fixture.settled(login["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["account"]["kind"], "qwen");
    assert_eq!(done["account"]["provider_id"], "qwen-account");
    assert!(
        fixture
            .provider_ids()
            .await
            .contains(&"qwen-account".to_owned())
    );

    let login = fixture.login_started(json!({"kind": "qwen"})).await;
    fixture
        .server
        .decide_device(login["user_code"].as_str().unwrap(), "deny")
        .await;
    let failed = fixture.settled(login["id"].as_str().unwrap()).await;
    assert_declined(&failed);
    assert!(failed.get("account").is_none());

    // A device login takes no pasted callback.
    let (status, refused) = fixture
        .start_login(json!({"kind": "qwen", "paste": true}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn browser_denial_is_reported() {
    let Some(fixture) = fixture("flexiproxy-deny").await else {
        return;
    };
    let login = fixture.login_started(json!({"kind": "claude"})).await;
    let _ = browser()
        .get(login["authorize_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let failed = fixture.settled(login["id"].as_str().unwrap()).await;
    assert_declined(&failed);
    assert_eq!(fixture.accounts().await["accounts"], json!([]));
    fixture.gateway.shutdown().await;
}

/// A login the user declined: failed, and saying so.
fn assert_declined(failed: &Value) {
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("the sign-in was declined"),
        "{failed}"
    );
}

/// Where the browser was sent back to, as the user would copy it from the address bar.
async fn callback_address(authorize: &str) -> String {
    let answer = browser_stopping_at_callback()
        .get(authorize)
        .send()
        .await
        .unwrap();
    answer.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn pasted_callbacks_finish_or_fail_the_login() {
    let Some(fixture) = fixture("flexiproxy").await else {
        return;
    };
    // Headless: no listener, a callback with someone else's state.
    let login = fixture
        .login_started(json!({"kind": "claude", "paste": true}))
        .await;
    let address = callback_address(login["authorize_url"].as_str().unwrap()).await;
    let mut foreign = reqwest::Url::parse(&address).unwrap();
    let code = foreign
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    foreign
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "someone-elses");
    let id = login["id"].as_str().unwrap();
    let (status, failed) = fixture.paste_callback(id, foreign.as_str()).await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("state mismatch"),
        "{failed}"
    );
    let (status, _) = fixture.paste_callback(id, &address).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished login takes no paste"
    );

    // The listener waits, but the browser ran elsewhere: the pasted address finishes it.
    let login = fixture.login_started(json!({"kind": "claude"})).await;
    let address = callback_address(login["authorize_url"].as_str().unwrap()).await;
    let id = login["id"].as_str().unwrap();
    let (status, done) = fixture.paste_callback(id, &address).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["account"]["email"], "ada@example.com");

    let (status, _) = fixture
        .call(
            reqwest::Method::POST,
            "/api/logins/0000000000000000/callback",
            Some(json!({"url": address})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn busy_port_is_a_conflict_and_cancel_lets_the_port_go() {
    let Some(fixture) = fixture("flexiproxy").await else {
        return;
    };
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut endpoints = fixture.server.endpoints("flexiproxy", Flow::Pkce);
    endpoints.redirect_port = port;
    let (status, body) = fixture
        .call(
            reqwest::Method::PUT,
            "/api/accounts/endpoints",
            Some(json!({"login": {"claude": endpoints}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, busy) = fixture.start_login(json!({"kind": "claude"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert_error_says(&busy, &format!("port {port} on 127.0.0.1 is taken"));

    drop(taken);
    let login = fixture.login_started(json!({"kind": "claude"})).await;
    // A second login of the kind replaces the first, on the same fixed port.
    let second = fixture.login_started(json!({"kind": "claude"})).await;
    let first = fixture.settled(login["id"].as_str().unwrap()).await;
    assert_eq!(first["status"], "cancelled");

    let id = second["id"].as_str().unwrap();
    let (status, _) = fixture
        .call(reqwest::Method::DELETE, &format!("/api/logins/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(fixture.settled(id).await["status"], "cancelled");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the cancelled login keeps its port"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Forgetting a finished login.
    let (status, _) = fixture
        .call(reqwest::Method::DELETE, &format!("/api/logins/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = fixture
        .call(reqwest::Method::GET, &format!("/api/logins/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Unknown kinds and relogins of unknown accounts are refused.
    let (status, _) = fixture.start_login(json!({"kind": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = fixture
        .start_login(json!({"kind": "claude", "relogin": "claude-nobody"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    fixture.gateway.shutdown().await;
}
