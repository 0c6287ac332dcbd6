//! What a stolen management token cannot do: turn the gateway's configuration into its secrets.
//!
//! The gateway runs in-process (memory secret store) in front of two loopback servers that
//! record every header they receive: the provider's real host and an "attacker" on another
//! port. With the management token alone, the tests move a provider (and an adapter's URL) to
//! the attacker and make the gateway call it, name arbitrary environment variables as keys,
//! and point subscription endpoints elsewhere; no key, variable or token may come out. The
//! Python suite (`tests/e2e/test_hostile_mgmt.py`) repeats the main attacks on the real binary.
#![allow(clippy::unwrap_used, reason = "tests")]

mod scratch;
mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flexiproxy_gateway::store::secrets::{MemoryStore, SecretStore};
use flexiproxy_gateway::store::{AccountRow, AccountStore, Database};
use flexiproxy_gateway::{RunningGateway, Settings};
use scratch::TempDir;
use serde_json::{Value, json};
use support::in_process::{self, Management, assert_error_says};

const HOME_KEY: &str = "sk-home-secret-0123456789abcdef";
const SECOND_KEY: &str = "sk-second-secret-0123456789abcd";

/// One request a recording server received: its path and every header value, as text.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Hit>>>);

impl Recorder {
    fn hits(&self) -> Vec<Hit> {
        self.0.lock().unwrap().clone()
    }

    /// Whether any request carried `secret` in any header.
    fn saw(&self, secret: &str) -> bool {
        self.hits()
            .iter()
            .any(|h| h.headers.iter().any(|(_, v)| v.contains(secret)))
    }

    /// The credential headers of the requests to `path_end`.
    fn credentials_at(&self, path_end: &str) -> Vec<String> {
        self.hits()
            .iter()
            .filter(|h| h.path.ends_with(path_end))
            .map(|h| {
                h.headers
                    .iter()
                    .filter(|(n, _)| matches!(n.as_str(), "authorization" | "x-api-key"))
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

/// An OpenAI-compatible server on loopback that records what it is sent; returns its `/v1` URL.
async fn recording_server(recorder: Recorder) -> String {
    async fn answer(
        axum::extract::State(recorder): axum::extract::State<Recorder>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        _body: Bytes,
    ) -> Response {
        recorder.0.lock().unwrap().push(Hit {
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        });
        if method == Method::GET {
            return axum::Json(json!({"object": "list", "data": [{"id": "m"}]})).into_response();
        }
        axum::Json(json!({"id": "c", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
        .into_response()
    }
    let app = Router::new().fallback(answer).with_state(recorder);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

struct Fixture {
    gateway: RunningGateway,
    secrets: Arc<MemoryStore>,
    http: reqwest::Client,
    manage: Management,
    home: String,
    home_seen: Recorder,
    attacker: String,
    attacker_seen: Recorder,
    dir: TempDir,
}

async fn fixture_with(configure: impl FnOnce(&mut Settings, &std::path::Path)) -> Fixture {
    let home_seen = Recorder::default();
    let attacker_seen = Recorder::default();
    let home = recording_server(home_seen.clone()).await;
    let attacker = recording_server(attacker_seen.clone()).await;
    let dir = TempDir::new("stolen-token");
    std::fs::create_dir_all(dir.path()).unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let mut settings = in_process::settings(&dir.path().join("data"), secrets.clone());
    configure(&mut settings, dir.path());
    let (gateway, token) = in_process::start(settings).await;
    let http = reqwest::Client::new();
    Fixture {
        manage: Management::new(http.clone(), &gateway, &token),
        gateway,
        secrets,
        http,
        home,
        home_seen,
        attacker,
        attacker_seen,
        dir,
    }
}

async fn fixture() -> Fixture {
    fixture_with(|_, _| {}).await
}

impl Fixture {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.manage.call(method, path, body).await
    }

    /// `PUT /api/accounts/endpoints` with `body`.
    async fn put_endpoints(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, "/api/accounts/endpoints", Some(body))
            .await
    }

    async fn put_provider(&self, id: &str, body: Value) -> Value {
        self.manage
            .expect(
                Method::PUT,
                &format!("/api/providers/{id}"),
                Some(body),
                StatusCode::OK,
            )
            .await
    }

    /// A provider `p` at the real host with two keys (`default` and `k2`), and an adapter.
    async fn provider_with_two_keys(&self) -> String {
        self.put_provider(
            "p",
            json!({"url": self.home, "api_key": HOME_KEY, "discovery": "off", "models": ["m"]}),
        )
        .await;
        self.manage
            .expect(
                Method::POST,
                "/api/providers/p/credentials",
                Some(json!({"id": "k2", "api_key": SECOND_KEY})),
                StatusCode::CREATED,
            )
            .await;
        self.manage.adapter_key("p", "m").await
    }

    /// Asks for an adapter for `m` of provider `p` with its own `base_url`.
    async fn adapter_at(&self, base_url: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/adapters",
            Some(json!({"provider_id": "p", "model_id": "m", "base_url": base_url})),
        )
        .await
    }

    async fn chat(&self, adapter_key: &str) -> StatusCode {
        self.http
            .post(format!("{}/v1/chat/completions", self.gateway.base_url()))
            .bearer_auth(adapter_key)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn test_provider(&self, credential: &str) -> Value {
        self.manage
            .expect(
                Method::POST,
                "/api/providers/p/test",
                Some(json!({"model": "m", "credential": credential})),
                StatusCode::OK,
            )
            .await
    }
}

#[tokio::test]
async fn a_provider_moved_to_another_host_loses_its_keys() {
    let f = fixture().await;
    let adapter_key = f.provider_with_two_keys().await;
    assert_eq!(f.chat(&adapter_key).await, StatusCode::OK);
    assert!(f.home_seen.saw(HOME_KEY) || f.home_seen.saw(SECOND_KEY));

    // The attack: same provider, the attacker's host, no key given.
    let moved = f.put_provider("p", json!({"url": f.attacker})).await;
    assert_eq!(
        moved["keys_cleared"],
        json!(["p/default", "p/k2"]),
        "{moved}"
    );
    let notice = moved["notice"].as_str().unwrap();
    assert!(
        notice.contains("cleared") && notice.contains("p/k2"),
        "{notice}"
    );
    for credential in moved["credentials"].as_array().unwrap() {
        assert!(credential["key_source"].is_null(), "{credential}");
        assert!(credential["key_hint"].is_null(), "{credential}");
    }
    assert_eq!(moved["has_api_key"], false, "{moved}");
    // Gone from the secret store too, not only unlinked.
    assert!(f.secrets.get("credential:p/default").unwrap().is_none());
    assert!(f.secrets.get("credential:p/k2").unwrap().is_none());

    // Every way to make the gateway call the provider now reaches the attacker without a key.
    f.test_provider("default").await;
    f.test_provider("k2").await;
    f.chat(&adapter_key).await;
    f.call(Method::POST, "/api/providers/p/discover", None)
        .await;
    assert!(
        !f.attacker_seen.hits().is_empty(),
        "the attacker was called"
    );
    assert!(
        !f.attacker_seen.saw(HOME_KEY),
        "{:?}",
        f.attacker_seen.hits()
    );
    assert!(
        !f.attacker_seen.saw(SECOND_KEY),
        "{:?}",
        f.attacker_seen.hits()
    );

    // Moving back does not bring the keys back either.
    let back = f.put_provider("p", json!({"url": f.home})).await;
    assert_eq!(back["keys_cleared"], json!([]), "{back}");
    assert_eq!(back["has_api_key"], false);
}

#[tokio::test]
async fn a_key_given_with_the_move_is_the_new_hosts_and_the_others_are_cleared() {
    let f = fixture().await;
    f.provider_with_two_keys().await;
    let new_key = "sk-new-host-key-0123456789abcdef";
    let moved = f
        .put_provider("p", json!({"url": f.attacker, "api_key": new_key}))
        .await;
    assert_eq!(moved["keys_cleared"], json!(["p/k2"]), "{moved}");
    assert_eq!(moved["has_api_key"], true, "{moved}");
    f.test_provider("default").await;
    f.test_provider("k2").await;
    assert_eq!(
        f.attacker_seen.credentials_at("/chat/completions"),
        [format!("Bearer {new_key}"), String::new()]
    );
    assert!(!f.attacker_seen.saw(HOME_KEY) && !f.attacker_seen.saw(SECOND_KEY));
}

#[tokio::test]
async fn a_new_path_or_protocol_on_the_same_host_keeps_the_keys() {
    let f = fixture().await;
    f.provider_with_two_keys().await;
    let other_path = f.home.replace("/v1", "/other/v1/");
    let kept = f
        .put_provider("p", json!({"url": other_path, "protocol": "openai_chat"}))
        .await;
    assert!(kept.get("keys_cleared").is_none(), "{kept}");
    assert_eq!(kept["has_api_key"], true);
    // The scheme's case does not make another server.
    let upper = f.home.replace("http://", "HTTP://");
    let kept = f.put_provider("p", json!({"url": upper})).await;
    assert!(kept.get("keys_cleared").is_none(), "{kept}");
    f.test_provider("default").await;
    assert_eq!(
        f.home_seen.credentials_at("/chat/completions"),
        [format!("Bearer {HOME_KEY}")]
    );
}

#[tokio::test]
async fn provider_urls_carry_no_password() {
    let f = fixture().await;
    let with_password = f.home.replace("http://", "http://user:hunter2@");
    let (status, body) = f
        .call(
            Method::PUT,
            "/api/providers/p",
            Some(json!({"url": with_password})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("user name or password"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn adapter_urls_stay_on_their_providers_host() {
    let f = fixture().await;
    f.provider_with_two_keys().await;
    let (status, body) = f.adapter_at(&f.attacker).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error_says(&body, "must be on the host of provider `p`");

    // On the provider's host it is fine (another path of the same server).
    let (status, adapter) = f.adapter_at(&f.home).await;
    assert_eq!(status, StatusCode::CREATED, "{adapter}");
    let key = adapter["api_key"].as_str().unwrap();
    // The provider moves, with a key for its new host: the adapter's old URL must not get it.
    let new_key = "sk-new-host-key-0123456789abcdef";
    f.put_provider("p", json!({"url": f.attacker, "api_key": new_key}))
        .await;
    let before = f.home_seen.hits().len();
    assert_eq!(f.chat(key).await, StatusCode::OK);
    assert_eq!(
        f.home_seen.hits().len(),
        before,
        "nothing more reached the old host"
    );
    assert!(!f.home_seen.saw(new_key));
    assert!(
        f.attacker_seen.saw(new_key),
        "the request went to the provider's URL"
    );
}

#[tokio::test]
async fn env_references_name_only_variables_the_user_allowed() {
    let f = fixture_with(|settings, dir| {
        settings.allowed_env = vec!["FP_FROM_THE_COMMAND_LINE".into()];
        let config = dir.join("config.toml");
        std::fs::write(&config, "allowed_env = [\"FP_FROM_THE_CONFIG_FILE\"]\n").unwrap();
        settings.config_file = Some(config);
    })
    .await;
    f.put_provider("p", json!({"url": f.home, "discovery": "off"}))
        .await;
    for refused in [
        "HOME",
        "PATH",
        "AWS_SECRET_ACCESS_KEY",
        "FLEXIPROXY_MANAGEMENT_TOKEN",
        "FLEXIPROXY_CONFIG",
        "FLEXIPROXY_DATA_DIR",
    ] {
        let key = format!("env:{refused}");
        let attempts = [
            (
                Method::PUT,
                "/api/providers/p".to_owned(),
                json!({"url": f.home, "api_key": key}),
            ),
            (
                Method::POST,
                "/api/providers/p/credentials".to_owned(),
                json!({"id": "x", "api_key": key}),
            ),
            (
                Method::PUT,
                "/api/providers/q".to_owned(),
                json!({"url": f.attacker, "api_key": key}),
            ),
        ];
        for (method, path, body) in attempts {
            let (status, answer) = f.call(method, &path, Some(body)).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{path} {refused}: {answer}"
            );
            let message = answer["error"]["message"].as_str().unwrap();
            if refused.starts_with("FLEXIPROXY_") {
                assert!(
                    message.contains("management token") || message.contains("own settings"),
                    "{message}"
                );
            } else {
                assert!(
                    message.contains(&format!("--allow-env {refused}"))
                        && message.contains("allowed_env"),
                    "{message}"
                );
            }
        }
    }
    // Nothing was saved: no provider `q`, no credential `x`, `p` still keyless.
    let (status, _) = f.call(Method::GET, "/api/providers/q", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, p) = f.call(Method::GET, "/api/providers/p", None).await;
    assert_eq!(p["has_api_key"], false, "{p}");
    assert_eq!(p["credentials"].as_array().unwrap().len(), 1, "{p}");

    // A credential changed to a refused name is refused as well.
    let (status, _) = f
        .call(
            Method::POST,
            "/api/providers/p/credentials",
            Some(json!({"id": "ok", "api_key": "env:FLEXIPROXY_TEST_UNSET_VAR"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = f
        .call(
            Method::PATCH,
            "/api/providers/p/credentials/ok",
            Some(json!({"api_key": "env:HOME"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // Allowed: the prefix, the command line's names, the config file's names.
    for allowed in [
        "FLEXIPROXY_TEST_UNSET_VAR",
        "FP_FROM_THE_COMMAND_LINE",
        "FP_FROM_THE_CONFIG_FILE",
    ] {
        let (status, answer) = f
            .call(
                Method::PATCH,
                "/api/providers/p/credentials/ok",
                Some(json!({"api_key": format!("env:{allowed}")})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{allowed}: {answer}");
        assert_eq!(answer["key_source"], format!("env:{allowed}"));
    }
    let _ = &f.dir;
}

/// An account row as a login leaves it (its tokens in the secret store under `oauth:<id>`).
fn insert_account(f: &Fixture, id: &str, kind: &str) {
    let db = Database::open(&f.dir.path().join("data")).unwrap();
    db.put_account(&AccountRow {
        id: id.into(),
        kind: kind.into(),
        provider_id: format!("{kind}-account"),
        label: format!("{id}@example.com"),
        email: None,
        account_id: None,
        plan: None,
        project: None,
        created_at: 1,
        refreshed_at: None,
        expires_at: None,
        last_error: None,
        needs_login: false,
    })
    .unwrap();
    f.secrets
        .set(
            &format!("oauth:{id}"),
            &flexiproxy_gateway::Secret::new("{\"refresh\":\"rt-secret\"}"),
        )
        .unwrap();
}

#[tokio::test]
async fn account_endpoints_are_https_or_this_machine() {
    let f = fixture().await;
    let (_, current) = f.call(Method::GET, "/api/accounts/endpoints", None).await;
    let login = |field: &str, value: &str| {
        let mut endpoints = current["login"]["claude"].clone();
        endpoints[field] = json!(value);
        json!({"login": {"claude": endpoints}})
    };
    let api = |field: &str, value: &str| {
        let mut api = current["api"].clone();
        api[field] = json!(value);
        json!({"api": api})
    };
    let refused = [
        (
            login("token_url", "http://evil.example/token"),
            "login.claude.token_url",
        ),
        (
            login("token_url", "http://192.168.1.20/token"),
            "login.claude.token_url",
        ),
        (
            login("authorize_url", "http://evil.example/auth"),
            "login.claude.authorize_url",
        ),
        (
            login("redirect_host", "evil.example"),
            "login.claude.redirect_host",
        ),
        (
            login("token_url", "https://u:p@auth.example/token"),
            "login.claude.token_url",
        ),
        (api("github_api", "http://10.0.0.1"), "api.github_api"),
        (
            api("iflow_user_info", "http://evil.example/info"),
            "api.iflow_user_info",
        ),
    ];
    for (body, field) in refused {
        let (status, answer) = f.put_endpoints(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    let (_, after) = f.call(Method::GET, "/api/accounts/endpoints", None).await;
    assert_eq!(after, current, "nothing refused was saved");
    for ok in [
        login("token_url", "http://127.0.0.1:9/token"),
        login("token_url", "http://localhost:9/token"),
        login("token_url", "https://auth.example/token"),
        api("claude", "http://[::1]:9"),
    ] {
        let (status, answer) = f.put_endpoints(ok).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

#[tokio::test]
async fn moving_where_an_accounts_tokens_go_signs_it_out() {
    let f = fixture().await;
    insert_account(&f, "copilot-ada", "copilot");
    insert_account(&f, "claude-bob", "claude");
    let (_, current) = f.call(Method::GET, "/api/accounts/endpoints", None).await;

    // Same server, another client id: nobody is signed out.
    let mut claude = current["login"]["claude"].clone();
    claude["client_id"] = json!("another-client");
    let (status, answer) = f.put_endpoints(json!({"login": {"claude": claude}})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["signed_out"], json!([]), "{answer}");

    // The GitHub API root (where Copilot's GitHub token goes) moves to another https server.
    let mut api = current["api"].clone();
    api["github_api"] = json!("https://attacker.example");
    let (status, answer) = f.put_endpoints(json!({"api": api})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["signed_out"], json!(["copilot-ada"]), "{answer}");
    assert!(answer["notice"].as_str().unwrap().contains("copilot-ada"));
    assert!(f.secrets.get("oauth:copilot-ada").unwrap().is_none());
    assert!(f.secrets.get("oauth:claude-bob").unwrap().is_some());

    // The claude token endpoint moves: claude's account goes too.
    let mut claude = current["login"]["claude"].clone();
    claude["token_url"] = json!("https://attacker.example/token");
    let (_, answer) = f.put_endpoints(json!({"login": {"claude": claude}})).await;
    assert_eq!(answer["signed_out"], json!(["claude-bob"]), "{answer}");
    let (_, accounts) = f.call(Method::GET, "/api/accounts", None).await;
    assert_eq!(accounts["accounts"], json!([]), "{accounts}");
}
