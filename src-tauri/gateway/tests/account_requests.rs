//! Requests through subscription accounts, over real HTTP with the gateway started in-process:
//! clients of other protocols reach a Claude, a Codex and a Gemini CLI account, and a stand-in
//! for all three endpoints (plus the token endpoint) checks what each kind must carry.
//!
//! The accounts are seeded as a finished login leaves them (tokens in the secret store, the
//! `accounts` row, the credential `oauth:<id>` in the kind's provider, endpoint settings
//! pointing at the stand-in), so this shows the request path on its own; the logins themselves
//! are shown by `account_logins.rs` and the end-to-end tests.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

mod scratch;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flexiproxy_gateway::RunningGateway;
use flexiproxy_gateway::routing::Limits;
use flexiproxy_gateway::routing::discovery::DiscoveryKind;
use flexiproxy_gateway::store::secrets::{MemoryStore, Secret, SecretError, SecretStore};
use flexiproxy_gateway::store::{
    AccountRow, AccountStore, CredentialRow, Database, ProviderRow, ProviderStore, SettingStore,
};
use reqwest::Method;
use scratch::TempDir;
use serde_json::{Value, json};
use support::in_process::{self, Management};

/// What the stand-in saw and which access token is current.
#[derive(Default)]
struct Seen {
    /// (path, authorization, selected headers, body)
    requests: Vec<(String, String, HeaderMap, Value)>,
    refreshes: Vec<String>,
    /// The access token the stand-in accepts; others get 401.
    valid: String,
    /// Refresh tokens the token endpoint refuses.
    revoked: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"message": "token expired"}})),
    )
        .into_response()
}

fn sse(events: &[Value]) -> Response {
    let mut body = String::new();
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    ([("content-type", "text/event-stream")], body).into_response()
}

/// The usage windows the Codex backend reports on every answer.
const CODEX_QUOTA: [(&str, &str); 5] = [
    ("x-codex-primary-used-percent", "37.5"),
    ("x-codex-primary-window-minutes", "300"),
    ("x-codex-primary-reset-at", "1900000000"),
    ("x-codex-secondary-used-percent", "12"),
    ("x-codex-secondary-window-minutes", "10080"),
];

async fn record(seen: &Shared, path: &str, headers: &HeaderMap, body: &Bytes) -> bool {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut seen = seen.lock().unwrap();
    let ok = auth == format!("Bearer {}", seen.valid);
    seen.requests
        .push((path.to_owned(), auth, headers.clone(), body));
    ok
}

async fn claude(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !record(&seen, "/claude/v1/messages", &headers, &body).await {
        return unauthorized();
    }
    axum::Json(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "hello from claude"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 11, "output_tokens": 3}
    }))
    .into_response()
}

async fn codex(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !record(&seen, "/codex/responses", &headers, &body).await {
        return unauthorized();
    }
    let message = json!({"type": "message", "id": "m1", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": "hello from codex", "annotations": []}]});
    let mut answer = sse(&[
        json!({"type": "response.created", "response": {"id": "r1", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "m1", "role": "assistant", "content": [], "status": "in_progress"}}),
        json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "item_id": "m1", "delta": "hello from codex"}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": message}),
        json!({"type": "response.completed", "response": {"id": "r1", "object": "response", "status": "completed", "model": "gpt-x", "output": [],
            "usage": {"input_tokens": 7, "output_tokens": 4, "total_tokens": 11}}}),
    ]);
    for (name, value) in CODEX_QUOTA {
        answer
            .headers_mut()
            .insert(name, axum::http::HeaderValue::from_static(value));
    }
    answer
}

async fn code_assist(
    State(seen): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !record(&seen, &format!("/ca/{method}"), &headers, &body).await {
        return unauthorized();
    }
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "hello from gemini"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}
    });
    if method.starts_with("v1internal:streamGenerateContent") {
        sse(&[json!({"response": answer})])
    } else {
        axum::Json(json!({"response": answer})).into_response()
    }
}

async fn token(
    State(seen): State<Shared>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let refresh = form.get("refresh_token").cloned().unwrap_or_default();
    let mut seen = seen.lock().unwrap();
    seen.refreshes.push(refresh.clone());
    if seen.revoked.contains(&refresh) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_grant", "error_description": "refresh token revoked"}),
            ),
        )
            .into_response();
    }
    let access = format!("fresh-{}", seen.refreshes.len());
    seen.valid.clone_from(&access);
    axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": format!("r-{}", seen.refreshes.len())
    }))
    .into_response()
}

async fn stand_in(seen: Shared) -> String {
    let app = Router::new()
        .route("/claude/v1/messages", post(claude))
        .route("/codex/responses", post(codex))
        .route("/ca/{method}", post(code_assist))
        .route("/token", post(token))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

struct Fixture {
    gateway: RunningGateway,
    manage: Management,
    http: reqwest::Client,
    seen: Shared,
    secrets: Arc<Keyring>,
    dir: TempDir,
    keys: std::collections::HashMap<&'static str, String>,
}

/// A secret store that can be locked, as a desktop keychain is until the session unlocks it.
#[derive(Debug, Default)]
struct Keyring {
    entries: MemoryStore,
    locked: AtomicBool,
}

impl Keyring {
    fn check(&self) -> Result<(), SecretError> {
        if self.locked.load(Ordering::SeqCst) {
            return Err(SecretError::Locked {
                detail: "the collection is locked".into(),
            });
        }
        Ok(())
    }
}

impl SecretStore for Keyring {
    fn kind(&self) -> &'static str {
        "test keyring"
    }
    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        self.check()?;
        self.entries.get(name)
    }
    fn set(&self, name: &str, value: &Secret) -> Result<(), SecretError> {
        self.check()?;
        self.entries.set(name, value)
    }
    fn delete(&self, name: &str) -> Result<(), SecretError> {
        self.check()?;
        self.entries.delete(name)
    }
}

/// (kind, account id, provider, protocol, model)
const ACCOUNTS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "claude",
        "claude-ada",
        "claude-account",
        "anthropic_messages",
        "claude-x",
    ),
    (
        "codex",
        "codex-ada",
        "codex-account",
        "openai_responses",
        "gpt-x",
    ),
    (
        "gemini_cli",
        "gemini-cli-ada",
        "gemini-cli-account",
        "gemini",
        "gemini-x",
    ),
];

async fn start(access: &str, valid: &str) -> Fixture {
    let seen: Shared = Arc::new(Mutex::new(Seen {
        valid: valid.to_owned(),
        ..Seen::default()
    }));
    let base = stand_in(seen.clone()).await;
    let scratch = TempDir::new("accounts");
    let dir = scratch.path().to_path_buf();
    let secrets = Arc::new(Keyring::default());
    {
        let db = Database::open(&dir).unwrap();
        let mut login = serde_json::Map::new();
        for (kind, id, provider, protocol, model) in ACCOUNTS {
            db.upsert_provider(&ProviderRow {
                id: provider.into(),
                url: base.clone(),
                protocol: protocol.parse().unwrap(),
                discovery: DiscoveryKind::Off,
                models: vec![model.into()],
                created_at: 1,
                updated_at: 1,
            })
            .unwrap();
            db.upsert_credential(&CredentialRow {
                provider_id: provider.into(),
                id: id.into(),
                label: "ada@example.com".into(),
                key_ref: Some(format!("oauth:{id}")),
                key_hint: None,
                enabled: true,
                priority: 0,
                limits: Limits::default(),
                created_at: 1,
            })
            .unwrap();
            db.put_account(&AccountRow {
                id: id.into(),
                kind: kind.into(),
                provider_id: provider.into(),
                label: "ada@example.com".into(),
                email: Some("ada@example.com".into()),
                account_id: Some("acct-1".into()),
                plan: None,
                project: Some("proj-7".into()),
                created_at: 1,
                refreshed_at: Some(1),
                expires_at: None,
                last_error: None,
                needs_login: false,
            })
            .unwrap();
            let stored = json!({"access": access, "refresh": format!("r0-{id}"),
                "facts": {"email": "ada@example.com", "account_id": "acct-1"}});
            secrets
                .set(&format!("oauth:{id}"), &Secret::new(stored.to_string()))
                .unwrap();
            let mut endpoints = serde_json::to_value(
                flexiproxy_gateway::accounts::oauth::AccountKind::from_id(kind)
                    .unwrap()
                    .endpoints(),
            )
            .unwrap();
            endpoints["token_url"] = json!(format!("{base}/token"));
            endpoints["token_body"] = json!("form");
            login.insert(kind.into(), endpoints);
        }
        let settings = json!({"login": login, "api": {
            "claude": format!("{base}/claude"),
            "codex": format!("{base}/codex"),
            "code_assist": format!("{base}/ca"),
        }});
        db.set_setting("account_endpoints", &settings.to_string())
            .unwrap();
    }
    let (gateway, token) = in_process::start(in_process::settings(&dir, secrets.clone())).await;
    let http = reqwest::Client::new();
    let manage = Management::new(http.clone(), &gateway, &token);
    let mut keys = std::collections::HashMap::new();
    for (kind, _, provider, _, model) in ACCOUNTS {
        keys.insert(kind, manage.adapter_key(provider, model).await);
    }
    Fixture {
        gateway,
        manage,
        http,
        seen,
        secrets,
        dir: scratch,
        keys,
    }
}

impl Fixture {
    async fn post(&self, kind: &str, path: &str, body: Value) -> (StatusCode, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.gateway.base_url()))
            .bearer_auth(&self.keys[kind])
            .header("x-goog-api-key", &self.keys[kind])
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// An OpenAI chat client's request, through the account of `kind`.
    async fn chat(&self, kind: &str, stream: bool) -> (StatusCode, String) {
        let body = json!({"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]});
        self.post(kind, "/v1/chat/completions", body).await
    }

    /// A management call with the token: its status and JSON answer (`null` when none).
    async fn manage(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.manage.call(method, path, body).await
    }

    fn requests(&self) -> Vec<(String, String, HeaderMap, Value)> {
        self.seen.lock().unwrap().requests.clone()
    }
}

#[tokio::test]
async fn each_kind_is_addressed_signed_and_wrapped_for_its_endpoint() {
    let f = start("good", "good").await;

    // OpenAI chat client → Claude account (translated to Messages).
    let (status, body) = f.chat("claude", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("hello from claude"), "{body}");
    let (path, auth, headers, _) = f.requests().pop().unwrap();
    assert_eq!(path, "/claude/v1/messages");
    assert_eq!(auth, "Bearer good");
    assert!(
        headers["anthropic-beta"]
            .to_str()
            .unwrap()
            .contains("oauth-2025-04-20")
    );
    assert!(headers.get("x-api-key").is_none());
    let (_, _, _, sent) = f.requests().pop().unwrap();
    assert_eq!(
        sent["system"][0]["text"], "You are Claude Code, Anthropic's official CLI for Claude.",
        "{sent}"
    );

    // Anthropic client → Codex account: the endpoint only streams; the whole answer is
    // collected from it.
    let (status, body) = f
        .post(
            "codex",
            "/v1/messages",
            json!({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["content"][0]["text"], "hello from codex", "{body}");
    assert_eq!(answer["usage"]["output_tokens"], 4);
    let (path, _, headers, sent) = f.requests().pop().unwrap();
    assert_eq!(path, "/codex/responses");
    assert_eq!(headers["chatgpt-account-id"], "acct-1");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["store"], false);
    assert_eq!(sent["model"], "gpt-x");

    // The backend's usage windows show on the account.
    let (_, accounts) = f.manage(Method::GET, "/api/accounts", None).await;
    let codex = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "codex-ada")
        .unwrap();
    assert_eq!(
        codex["quota"],
        json!([
            {"name": "primary", "used_percent": 37.5, "window_minutes": 300, "resets_at_ms": 1_900_000_000_000_i64},
            {"name": "secondary", "used_percent": 12.0, "window_minutes": 10080, "resets_at_ms": null}
        ])
    );

    // The same, streamed: the client gets Anthropic events.
    let (status, body) = f
        .post(
            "codex",
            "/v1/messages",
            json!({"model": "m", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("event: message_start"), "{body}");
    assert!(body.contains("hello from codex"), "{body}");

    // OpenAI chat client → Gemini CLI account: wrapped for Code Assist, unwrapped back.
    let (status, body) = f.chat("gemini_cli", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("hello from gemini"), "{body}");
    let (path, _, _, sent) = f.requests().pop().unwrap();
    assert_eq!(path, "/ca/v1internal:generateContent");
    assert_eq!(sent["project"], "proj-7");
    assert_eq!(sent["model"], "gemini-x");
    assert!(sent["request"]["contents"].is_array(), "{sent}");

    // A Gemini client streaming from the same account: each event unwrapped as it comes.
    let (status, body) = f
        .post(
            "gemini_cli",
            "/v1beta/models/m:streamGenerateContent?alt=sse",
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("hello from gemini"), "{body}");
    assert!(!body.contains("\"response\""), "{body}");
    assert_eq!(
        f.requests().pop().unwrap().0,
        "/ca/v1internal:streamGenerateContent"
    );

    // A Gemini client reading the stream as a JSON array gets one, from the SSE-only endpoint.
    let (status, body) = f
        .post(
            "gemini_cli",
            "/v1beta/models/m:streamGenerateContent",
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let array: Value = serde_json::from_str(&body).unwrap();
    assert!(array.to_string().contains("hello from gemini"), "{body}");
    assert!(array.is_array(), "{body}");

    // Claude Code counts tokens before it sends: a login's count is estimated locally.
    let (status, body) = f
        .post(
            "claude",
            "/v1/messages/count_tokens",
            json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("input_tokens"), "{body}");

    // No usage row, log or answer carries a token; every request was recorded with its
    // account as the credential.
    let (_, usage) = f.manage(Method::GET, "/v1/usage", None).await;
    let text = usage.to_string();
    assert!(!text.contains("good"), "{text}");
    assert!(f.seen.lock().unwrap().refreshes.is_empty());
}

#[tokio::test]
async fn a_401_refreshes_the_login_once_and_the_request_goes_through() {
    let f = start("stale", "not-yet").await;
    let (status, body) = f.chat("claude", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("hello from claude"), "{body}");
    let requests = f.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].1, "Bearer stale");
    assert_eq!(requests[1].1, "Bearer fresh-1");
    assert_eq!(f.seen.lock().unwrap().refreshes, vec!["r0-claude-ada"]);
    // The new tokens are kept in the secret store, rotated refresh token included.
    let stored = f.secrets.get("oauth:claude-ada").unwrap().unwrap();
    let stored: Value = serde_json::from_str(stored.expose()).unwrap();
    assert_eq!(stored["access"], "fresh-1");
    assert_eq!(stored["refresh"], "r-1");

    // The next request uses the new token straight away.
    let (status, _) = f.chat("claude", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.requests().len(), 3);
    assert_eq!(f.seen.lock().unwrap().refreshes.len(), 1);
}

#[tokio::test]
async fn a_refused_refresh_marks_the_account_and_tells_the_client_to_log_in() {
    let f = start("stale", "not-yet").await;
    f.seen
        .lock()
        .unwrap()
        .revoked
        .push("r0-claude-ada".to_owned());
    let (status, body) = f.chat("claude", false).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("claude-ada"), "{message}");
    assert!(message.contains("log in"), "{message}");
    assert!(!message.contains("stale"), "{message}");

    let db = Database::open(f.dir.path()).unwrap();
    let row = db.account("claude-ada").unwrap().unwrap();
    assert!(row.needs_login);
    assert!(
        row.last_error.as_deref().unwrap().contains("revoked"),
        "{row:?}"
    );
    assert_eq!(f.gateway.accounts_needing_login(), vec!["ada@example.com"]);

    // Later requests do not hammer the token endpoint: the account waits for a new login.
    let (status, _) = f.chat("claude", false).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(f.seen.lock().unwrap().refreshes.len(), 1);
}

#[tokio::test]
async fn a_logins_credential_takes_no_key_and_deleting_its_provider_logs_out() {
    let f = start("good", "good").await;
    let credential = "/api/providers/claude-account/credentials/claude-ada";
    let (status, answer) = f
        .manage(
            Method::PATCH,
            credential,
            Some(json!({"api_key": "sk-something"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(answer.to_string().contains("log in again"), "{answer}");
    // Limits and switching it off work as for any key.
    let (status, _) = f
        .manage(Method::PATCH, credential, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = f.chat("claude", false).await;
    assert_ne!(status, StatusCode::OK, "a disabled login serves nothing");

    let (status, _) = f
        .manage(Method::DELETE, "/api/providers/claude-account", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(f.secrets.get("oauth:claude-ada").unwrap().is_none());
    let db = Database::open(f.dir.path()).unwrap();
    assert!(db.account("claude-ada").unwrap().is_none());
    assert!(db.account("codex-ada").unwrap().is_some());
    let (status, _) = f
        .manage(Method::GET, "/api/providers/claude-account", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Deleting a login's credential is logging it out.
    let (status, _) = f
        .manage(
            Method::DELETE,
            "/api/providers/codex-account/credentials/codex-ada",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(f.secrets.get("oauth:codex-ada").unwrap().is_none());
    assert!(db.account("codex-ada").unwrap().is_none());
}

/// A body the gateway cannot shape for an account is the client's fault (or ours), never the
/// account's: the client gets a 400, and the account serves the next request at once instead of
/// resting in a cooldown as if its endpoint had failed.
#[tokio::test]
async fn a_body_that_cannot_be_shaped_does_not_rest_the_account() {
    let f = start("good", "good").await;
    for bad in ["not json", "[1, 2]", "\"text\""] {
        let response = f
            .http
            .post(format!(
                "{}/v1beta/models/gemini-x:generateContent",
                f.gateway.base_url()
            ))
            .header("x-goog-api-key", &f.keys["gemini_cli"])
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
    }
    let (status, provider) = f
        .manage(Method::GET, "/api/providers/gemini-cli-account", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{provider}");
    assert_eq!(
        provider["credentials"][0]["health"]["state"], "ready",
        "{provider}"
    );
    let good = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let (status, body) = f
        .post(
            "gemini_cli",
            "/v1beta/models/gemini-x:generateContent",
            good,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("hello from gemini"), "{body}");
    // Nothing malformed reached the account's endpoint.
    assert_eq!(f.requests().len(), 1);
}

/// A keychain that cannot be read is the gateway's trouble, not the account's: the client is
/// told why, and once the keychain opens the account serves at once, never having rested as if
/// its endpoint had failed.
#[tokio::test]
async fn a_locked_keychain_does_not_rest_the_account() {
    let f = start("good", "good").await;
    f.secrets.locked.store(true, Ordering::SeqCst);
    let (status, body) = f.chat("claude", false).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("locked"), "{body}");
    let (_, provider) = f
        .manage(Method::GET, "/api/providers/claude-account", None)
        .await;
    assert_eq!(
        provider["credentials"][0]["health"]["state"], "ready",
        "{provider}"
    );
    assert!(f.requests().is_empty());

    f.secrets.locked.store(false, Ordering::SeqCst);
    let (status, body) = f.chat("claude", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
