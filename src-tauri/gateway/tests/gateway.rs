//! The gateway started in-process on port 0 in front of a small OpenAI-speaking upstream on
//! loopback, driven over real HTTP. These tests pin the relay's behaviour that users see:
//! model rewriting, key handling, streaming without buffering, usage recorded (and stripped when
//! the client did not ask), disconnects cancelling the upstream, and errors that name the
//! provider. The Python end-to-end suite under `tests/e2e` repeats the important paths with the
//! official SDK against the real binary.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use flexiproxy_gateway::secrets::MemoryStore;
use flexiproxy_gateway::{Gateway, RunningGateway, SecretsMode, Settings};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    auth: Vec<String>,
    /// Set when a streaming response's body was dropped before its end.
    stream_cancelled: bool,
}

type SeenRef = Arc<Mutex<Seen>>;

async fn upstream_chat(
    axum::extract::State(seen): axum::extract::State<SeenRef>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap();
    {
        let mut seen = seen.lock().unwrap();
        seen.bodies.push(value.clone());
        seen.auth.push(
            headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
        );
    }
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 3}});
    if value["stream"] != true {
        let reply = json!({"id": "c1", "object": "chat.completion", "model": value["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
            "finish_reason": "stop"}], "usage": usage});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(reply.to_string()))
            .unwrap();
    }
    let include_usage = value["stream_options"]["include_usage"] == true;
    let slow = value["messages"][0]["content"] == "slow";
    let guard = CancelGuard(seen, false);
    let stream = async_stream(move |tx| async move {
        let mut guard = guard;
        for word in ["hel", "lo"] {
            let chunk =
                json!({"choices": [{"index": 0, "delta": {"content": word}}], "usage": null});
            tx.send(format!("data: {chunk}\n\n")).await.ok();
            if slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        if slow {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        if include_usage {
            let chunk = json!({"choices": [], "usage": usage});
            tx.send(format!("data: {chunk}\n\n")).await.ok();
        }
        tx.send("data: [DONE]\n\n".to_owned()).await.ok();
        guard.1 = true;
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Marks the stream cancelled if it is dropped before it finished.
struct CancelGuard(SeenRef, bool);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.lock().unwrap().stream_cancelled = true;
        }
    }
}

/// A body stream fed by a task; dropping the stream ends the task (the upstream's view of a
/// client hanging up).
fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = Result<String, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(f(tx));
    let abort = AbortOnDrop(task);
    futures_util::stream::unfold((rx, abort), |(mut rx, abort)| async move {
        rx.recv().await.map(|s| (Ok(s), (rx, abort)))
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Fixture {
    gateway: RunningGateway,
    seen: SeenRef,
    http: reqwest::Client,
    adapter_key: String,
    token: String,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "flexiproxy-it-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn start_upstream(seen: SeenRef) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream_chat))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

async fn fixture() -> Fixture {
    let seen = SeenRef::default();
    let upstream = start_upstream(seen.clone()).await;
    let dir = tempdir::Dir::new();
    let mut settings = Settings::new(dir.0.clone());
    settings.port = 0;
    settings.secrets = SecretsMode::Store(Arc::new(MemoryStore::default()));
    let gateway = Gateway::start(settings).await.unwrap();
    let token = gateway.management_token().unwrap().expose().to_owned();
    let http = reqwest::Client::new();
    let base = gateway.base_url();
    let response = http
        .post(format!("{base}/api/providers/local"))
        .bearer_auth(&token)
        .json(&json!({"url": upstream, "api_key": "sk-upstream-secret-123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let adapter: Value = http
        .post(format!("{base}/api/adapters"))
        .bearer_auth(&token)
        .json(&json!({"provider_id": "local", "model_id": "upstream-model"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Fixture {
        adapter_key: adapter["api_key"].as_str().unwrap().to_owned(),
        gateway,
        seen,
        http,
        token,
        _dir: dir,
    }
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.base_url())
    }

    /// POSTs `body` to the chat endpoint with `key` as a bearer token.
    async fn chat(&self, key: &str, body: &'static str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn recent(&self) -> Vec<Value> {
        // The writer is asynchronous: wait until it caught up.
        for _ in 0..50 {
            let rows: Vec<Value> = self
                .http
                .get(self.url("/api/usage/recent"))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !rows.is_empty() {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Vec::new()
    }
}

#[tokio::test]
async fn chat_is_forwarded_with_model_and_key_rewritten() {
    let f = fixture().await;
    let body = r#"{"model":"whatever","messages":[{"role":"user","content":"hi"}],"x_vendor":{"keep":[1,2]}}"#;
    let response = f
        .http
        .post(f.url("/v1/chat/completions"))
        .bearer_auth(&f.adapter_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "hello");
    {
        let seen = f.seen.lock().unwrap();
        assert_eq!(seen.bodies[0]["model"], "upstream-model");
        assert_eq!(seen.bodies[0]["x_vendor"], json!({"keep": [1, 2]}));
        assert_eq!(seen.auth[0], "Bearer sk-upstream-secret-123456");
    }
    let rows = f.recent().await;
    assert_eq!(rows[0]["input_tokens"], 11);
    assert_eq!(rows[0]["output_tokens"], 7);
    assert_eq!(rows[0]["cached_tokens"], 3);
    assert_eq!(rows[0]["outcome"], "completed");
    assert_eq!(rows[0]["provider_id"], "local");
}

#[tokio::test]
async fn stream_usage_is_recorded_and_hidden_unless_asked() {
    let f = fixture().await;
    let text = f
        .http
        .post(f.url("/v1/chat/completions"))
        .header("x-api-key", &f.adapter_key)
        .body(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("hel") && text.ends_with("data: [DONE]\n\n"));
    assert!(
        !text.contains("prompt_tokens"),
        "usage chunk leaked: {text}"
    );
    assert_eq!(
        f.seen.lock().unwrap().bodies[0]["stream_options"]["include_usage"],
        true
    );
    let rows = f.recent().await;
    assert_eq!(rows[0]["input_tokens"], 11);
    assert_eq!(rows[0]["stream"], true);

    let text = f.chat(&f.adapter_key, r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#).await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("\"prompt_tokens\":11"),
        "usage chunk missing: {text}"
    );
}

#[tokio::test]
async fn streams_are_relayed_as_they_arrive_and_cancelled_on_hang_up() {
    let f = fixture().await;
    let started = Instant::now();
    let response = f
        .chat(
            &f.adapter_key,
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"slow"}]}"#,
        )
        .await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("hel"));
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "first chunk waited for later ones: {:?}",
        started.elapsed()
    );
    drop(body);
    let mut cancelled = false;
    for _ in 0..40 {
        if f.seen.lock().unwrap().stream_cancelled {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cancelled,
        "upstream stream kept running after the client left"
    );
    let rows = f.recent().await;
    assert_eq!(rows[0]["outcome"], "client_closed");
}

#[tokio::test]
async fn errors_are_in_openai_shape_and_name_the_provider() {
    let f = fixture().await;
    let missing = f
        .http
        .post(f.url("/v1/chat/completions"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key");

    let bad = f
        .chat(&f.adapter_key, r#"{"model": "m", "messages": ["#)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    // Point the provider at a closed port.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    f.http
        .post(f.url("/api/providers/local"))
        .bearer_auth(&f.token)
        .json(&json!({"url": format!("http://127.0.0.1:{port}/v1")}))
        .send()
        .await
        .unwrap();
    // The adapter has no URL of its own, so it follows the provider's new (dead) one.
    let down = f
        .chat(&f.adapter_key, r#"{"model":"m","messages":[]}"#)
        .await;
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    let body: Value = down.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`local`"), "{message}");
    assert!(!message.contains("sk-upstream"), "{message}");
}

#[tokio::test]
async fn management_api_refuses_foreign_hosts_and_missing_tokens() {
    let f = fixture().await;
    let no_token = f.http.get(f.url("/api/providers")).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let foreign = f
        .http
        .get(f.url("/api/providers"))
        .bearer_auth(&f.token)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let cross_site = f
        .http
        .get(f.url("/api/providers"))
        .bearer_auth(&f.token)
        .header("origin", "https://attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let listed: Value = f
        .http
        .get(f.url("/api/providers"))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["key_hint"], "sk-u…(25 chars)");
    assert!(!listed.to_string().contains("secret-123456"));
}
