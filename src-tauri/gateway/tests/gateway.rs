//! The gateway started in-process on port 0 in front of a small upstream on loopback that
//! speaks OpenAI Chat Completions (`/v1/chat/completions`) and Anthropic Messages
//! (`/v1/messages`), driven over real HTTP. These tests pin the behaviour users see: model
//! rewriting, key handling, streaming without buffering, usage recorded (and stripped when the
//! client did not ask), disconnects cancelling the upstream, errors that name the provider in
//! the client's own shape, and Anthropic clients translated onto an OpenAI provider (tools,
//! streams, cut-off streams) or forwarded as bytes to an Anthropic one. The Python end-to-end suite under `tests/e2e` repeats the important paths with the
//! official SDK against the real binary.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

mod scratch;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use flexiproxy_gateway::RunningGateway;
use flexiproxy_gateway::store::secrets::MemoryStore;
use futures_util::StreamExt;
use reqwest::Method;
use scratch::TempDir;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::in_process::{self, Management};

#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    auth: Vec<String>,
    /// `x-api-key` and `anthropic-version` as the Anthropic upstream received them.
    anthropic_headers: Vec<(String, String)>,
    /// Set when a streaming response's body was dropped before its end.
    stream_cancelled: bool,
}

type SeenRef = Arc<Mutex<Seen>>;

impl Seen {
    /// Keeps the JSON body an upstream received; returns it for the answer.
    fn keep(&mut self, body: &Bytes) -> Value {
        let value: Value = serde_json::from_slice(body).unwrap();
        self.bodies.push(value.clone());
        value
    }
}

/// A request header as the upstream received it, empty when missing.
fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// An upstream's whole JSON answer.
fn json_reply(reply: &Value) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(reply.to_string()))
        .unwrap()
}

/// An upstream's streamed answer.
fn event_stream(body: Body) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

async fn upstream_chat(
    axum::extract::State(seen): axum::extract::State<SeenRef>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value = {
        let mut seen = seen.lock().unwrap();
        seen.auth.push(header_text(&headers, "authorization"));
        seen.keep(&body)
    };
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 3}});
    let last = &value["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap_or(&Value::Null);
    if let Some(status) = last["content"]
        .as_str()
        .and_then(|c| c.strip_prefix("status:"))
    {
        return Response::builder()
            .status(status.parse::<u16>().unwrap())
            .header("content-type", "application/json")
            .header("retry-after", "7")
            .body(Body::from(
                r#"{"error":{"message":"upstream says no","type":"x"}}"#,
            ))
            .unwrap();
    }
    if last["content"] == "break" {
        // One chunk, then the connection breaks.
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": "hel"}}]});
        let parts: Vec<Result<String, std::io::Error>> = vec![
            Ok(format!("data: {chunk}\n\n")),
            Err(std::io::Error::other("upstream crashed")),
        ];
        return event_stream(Body::from_stream(futures_util::stream::iter(parts).then(
            |part| async move {
                // Let the first chunk go out before the break.
                if part.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                part
            },
        )));
    }
    if value["tools"].is_array() && last["role"] == "user" && value["stream"] == true {
        let start = json!({"id": "c3", "model": value["model"], "choices": [{"index": 0,
            "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_abc",
            "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]});
        let args1 = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "{\"city\":"}}]}}]});
        let args2 = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "\"Paris\"}"}}]}, "finish_reason": "tool_calls"}]});
        let text: String = [start, args1, args2, json!({"choices": [], "usage": usage})]
            .iter()
            .map(|chunk| format!("data: {chunk}\n\n"))
            .chain(["data: [DONE]\n\n".to_owned()])
            .collect();
        return event_stream(Body::from(text));
    }
    if value["tools"].is_array() && last["role"] == "user" {
        let call = json!({"id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}});
        let reply = json!({"id": "c2", "object": "chat.completion", "model": value["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [call]}, "finish_reason": "tool_calls"}], "usage": usage});
        return json_reply(&reply);
    }
    if value["stream"] != true {
        let reply = json!({"id": "c1", "object": "chat.completion", "model": value["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
            "finish_reason": "stop"}], "usage": usage});
        return json_reply(&reply);
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
    event_stream(Body::from_stream(stream))
}

/// The Anthropic events of a streamed answer with one content block in two deltas.
const ONE_BLOCK_STREAM: [&str; 8] = [
    "message_start",
    "ping",
    "content_block_start",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

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
    manage: Management,
    adapter_key: String,
    _dir: TempDir,
}

/// A minimal Anthropic Messages upstream: a fixed answer, streamed or whole.
async fn upstream_messages(
    axum::extract::State(seen): axum::extract::State<SeenRef>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value = {
        let mut seen = seen.lock().unwrap();
        seen.anthropic_headers.push((
            header_text(&headers, "x-api-key"),
            header_text(&headers, "anthropic-version"),
        ));
        seen.keep(&body)
    };
    if value["stream"] != true {
        let reply = json!({"id": "msg_1", "type": "message", "role": "assistant",
            "model": value["model"], "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn", "stop_sequence": null, "x_unknown": 1,
            "usage": {"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 4}});
        return json_reply(&reply);
    }
    event_stream(Body::from(ANTHROPIC_STREAM))
}

/// Anthropic's token count: a fixed number, so a test can tell it from an estimate.
async fn upstream_count_tokens(
    axum::extract::State(seen): axum::extract::State<SeenRef>,
    body: Bytes,
) -> axum::Json<Value> {
    seen.lock().unwrap().keep(&body);
    axum::Json(json!({"input_tokens": 42}))
}

const ANTHROPIC_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-up\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

async fn start_upstream(seen: SeenRef) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream_chat))
        .route("/v1/messages", post(upstream_messages))
        .route("/v1/messages/count_tokens", post(upstream_count_tokens))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

async fn fixture() -> Fixture {
    let seen = SeenRef::default();
    let upstream = start_upstream(seen.clone()).await;
    let dir = TempDir::new("it");
    let (gateway, token) = in_process::start(in_process::settings(
        dir.path(),
        Arc::new(MemoryStore::default()),
    ))
    .await;
    let http = reqwest::Client::new();
    let manage = Management::new(http.clone(), &gateway, &token);
    manage
        .provider(
            "local",
            json!({"url": upstream, "api_key": "sk-upstream-secret-123456"}),
        )
        .await;
    Fixture {
        adapter_key: manage.adapter_key("local", "upstream-model").await,
        gateway,
        seen,
        http,
        manage,
        _dir: dir,
    }
}

/// The JSON answer to `request`, whatever its status.
async fn answer_json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.base_url())
    }

    /// Ends every cooldown of provider `local`'s credentials.
    async fn reset_credentials(&self) {
        let credentials: Value = self.manage.get("/api/providers/local/credentials").await;
        for credential in credentials.as_array().unwrap() {
            let id = credential["id"].as_str().unwrap();
            let (status, _) = self
                .manage
                .call(
                    Method::POST,
                    &format!("/api/providers/local/credentials/{id}/reset"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }

    /// Re-registers the provider at a port nothing listens on.
    async fn point_provider_at_a_closed_port(&self) {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        self.manage
            .provider(
                "local",
                json!({"url": format!("http://127.0.0.1:{port}/v1")}),
            )
            .await;
    }

    /// POSTs `body` to the chat endpoint with `key` as a bearer token.
    async fn chat(&self, key: &str, body: &'static str) -> reqwest::Response {
        self.http
            .post(self.url(CHAT))
            .bearer_auth(key)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The usage rows recorded so far.
    async fn recent_now(&self) -> Vec<Value> {
        self.manage.get("/api/usage/recent").await
    }

    async fn recent(&self) -> Vec<Value> {
        // The writer is asynchronous: wait until it caught up.
        for _ in 0..50 {
            let rows = self.recent_now().await;
            if !rows.is_empty() {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Vec::new()
    }
}

/// The OpenAI chat endpoint.
const CHAT: &str = "/v1/chat/completions";

/// Checks that an error answer names provider `local` and does not carry its key.
fn assert_names_the_provider_not_its_key(error: &Value) {
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("`local`"), "{message}");
    assert!(!message.contains("sk-upstream"), "{message}");
}

#[tokio::test]
async fn chat_is_forwarded_with_model_and_key_rewritten() {
    let f = fixture().await;
    let body = r#"{"model":"whatever","messages":[{"role":"user","content":"hi"}],"x_vendor":{"keep":[1,2]}}"#;
    let response = f
        .http
        .post(f.url(CHAT))
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
        .post(f.url(CHAT))
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
    let missing = f.http.post(f.url(CHAT)).body("{}").send().await.unwrap();
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

    f.point_provider_at_a_closed_port().await;
    // The adapter has no URL of its own, so it follows the provider's new (dead) one.
    let down = f
        .chat(&f.adapter_key, r#"{"model":"m","messages":[]}"#)
        .await;
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    let body: Value = down.json().await.unwrap();
    assert_names_the_provider_not_its_key(&body);
}

#[tokio::test]
async fn management_api_refuses_foreign_hosts_and_missing_tokens() {
    let f = fixture().await;
    let no_token = f.http.get(f.url("/api/providers")).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    // A foreign host, then a cross-site origin, each with the right token.
    for (name, value) in [
        ("host", "attacker.example"),
        ("origin", "https://attacker.example"),
    ] {
        let refused = f
            .manage
            .request(Method::GET, "/api/providers")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    let listed: Value = f.manage.get("/api/providers").await;
    assert_eq!(listed[0]["key_hint"], "sk-u…(25 chars)");
    assert!(!listed.to_string().contains("secret-123456"));
}

/// POSTs an Anthropic Messages body as Claude Code does (`?beta=true`, `x-api-key`).
async fn anthropic(f: &Fixture, key: &str, body: &Value) -> reqwest::Response {
    f.http
        .post(f.url("/v1/messages?beta=true"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anthropic_client_on_openai_provider_with_a_tool_round_trip() {
    let f = fixture().await;
    let tools = json!([{"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"]}}]);
    let first = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a weather bot."}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"}
        ],
        "tools": tools,
    });
    let response = anthropic(&f, &f.adapter_key, &first).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["type"], "message");
    assert_eq!(reply["role"], "assistant");
    assert_eq!(reply["stop_reason"], "tool_use");
    assert_eq!(reply["content"][0]["type"], "tool_use");
    assert_eq!(reply["content"][0]["id"], "call_abc");
    assert_eq!(reply["content"][0]["name"], "get_weather");
    assert_eq!(reply["content"][0]["input"], json!({"city": "Paris"}));
    // 11 prompt tokens of which 3 cached: Anthropic counts the uncached part as input.
    assert_eq!(reply["usage"]["input_tokens"], 8);
    assert_eq!(reply["usage"]["cache_read_input_tokens"], 3);
    assert_eq!(reply["usage"]["output_tokens"], 7);
    {
        let seen = f.seen.lock().unwrap();
        let sent = &seen.bodies[0];
        assert_eq!(sent["model"], "upstream-model");
        assert_eq!(seen.auth[0], "Bearer sk-upstream-secret-123456");
        assert_eq!(sent["messages"][0]["role"], "system");
        let system = sent["messages"][0]["content"].as_str().unwrap();
        assert!(
            system.contains("You are a weather bot.") && system.contains("Be brief."),
            "{sent}"
        );
        assert_eq!(
            sent["messages"][1],
            json!({"role": "user", "content": "Weather in Paris?"})
        );
        assert_eq!(sent["messages"].as_array().unwrap().len(), 2, "{sent}");
        assert_eq!(sent["tools"][0]["type"], "function");
        assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(
            sent["tools"][0]["function"]["parameters"]["required"],
            json!(["city"])
        );
        assert_eq!(sent["max_tokens"], 1024);
        assert!(sent.get("stream_options").is_none());
    }

    let second = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are a weather bot.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [reply["content"][0].clone()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc",
                "content": [{"type": "text", "text": "sunny, 21 C"}]}]}
        ],
        "tools": tools,
    });
    let response = f
        .http
        .post(f.url("/v1/messages"))
        .bearer_auth(&f.adapter_key)
        .json(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply["content"][0],
        json!({"type": "text", "text": "hello"})
    );
    assert_eq!(reply["stop_reason"], "end_turn");
    {
        let seen = f.seen.lock().unwrap();
        let sent = &seen.bodies[1];
        let messages = sent["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 4, "{sent}");
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[2]["tool_calls"][0]["id"], "call_abc");
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        let arguments: Value = serde_json::from_str(
            messages[2]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(arguments, json!({"city": "Paris"}));
        assert_eq!(messages[3]["role"], "tool");
        assert_eq!(messages[3]["tool_call_id"], "call_abc");
        assert!(
            messages[3]["content"].to_string().contains("sunny, 21 C"),
            "{sent}"
        );
    }
    let rows = f.recent().await;
    assert_eq!(rows[0]["endpoint"], "messages");
    assert_eq!(rows[0]["outcome"], "completed");
}

/// The `event:` names of an SSE body, in order, with each event's data.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    n.clone_into(&mut name);
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn anthropic_stream_from_openai_provider_is_framed_as_anthropic() {
    let f = fixture().await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let response = anthropic(&f, &f.adapter_key, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ONE_BLOCK_STREAM, "{text}");
    assert_eq!(events[0].1["message"]["role"], "assistant");
    assert_eq!(events[2].1["index"], 0);
    assert_eq!(events[2].1["content_block"]["type"], "text");
    assert_eq!(
        events[3].1["delta"],
        json!({"type": "text_delta", "text": "hel"})
    );
    assert_eq!(events[4].1["delta"]["text"], "lo");
    assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[6].1["usage"]["output_tokens"], 7);
    assert_eq!(events[6].1["usage"]["input_tokens"], 8);
    {
        let seen = f.seen.lock().unwrap();
        assert_eq!(seen.bodies[0]["stream"], true);
        assert_eq!(seen.bodies[0]["stream_options"]["include_usage"], true);
        assert_eq!(seen.bodies[0]["model"], "upstream-model");
    }
    let rows = f.recent().await;
    assert_eq!(rows[0]["endpoint"], "messages");
    assert_eq!(rows[0]["stream"], true);
    assert_eq!(rows[0]["input_tokens"], 11);
    assert_eq!(rows[0]["output_tokens"], 7);
    assert_eq!(rows[0]["cached_tokens"], 3);
    assert_eq!(rows[0]["outcome"], "completed");
}

#[tokio::test]
async fn anthropic_stream_is_translated_as_it_arrives() {
    let f = fixture().await;
    let started = Instant::now();
    let body = json!({"model": "m", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "slow"}]});
    let response = anthropic(&f, &f.adapter_key, &body).await;
    let mut body = response.bytes_stream();
    let mut seen_text = String::new();
    while !seen_text.contains("\"hel\"") {
        let chunk = body.next().await.unwrap().unwrap();
        seen_text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "first delta waited for later ones: {:?}",
        started.elapsed()
    );
    drop(body);
    let rows = f.recent().await;
    assert_eq!(rows[0]["outcome"], "client_closed");
}

#[tokio::test]
async fn anthropic_errors_are_in_anthropic_shape() {
    let f = fixture().await;
    let body = json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});

    let bad_key = anthropic(&f, "fp-not-a-key", &body).await;
    assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);
    let error: Value = bad_key.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "authentication_error");

    let invalid = anthropic(&f, &f.adapter_key, &json!({"model": "m", "messages": 3})).await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let error: Value = invalid.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let limited = json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "status:429"}]});
    let limited = anthropic(&f, &f.adapter_key, &limited).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");
    let error: Value = limited.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream says no")
    );

    // The only key now rests for the 7 s the provider asked for: the next request is refused
    // here, with the time left, without bothering the provider.
    let again = anthropic(
        &f,
        &f.adapter_key,
        &json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = again.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=7).contains(&wait), "retry-after {wait}");
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    f.reset_credentials().await;

    let broken = json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "status:503"}]});
    let broken = anthropic(&f, &f.adapter_key, &broken).await;
    assert_eq!(broken.status(), StatusCode::BAD_GATEWAY);
    let error: Value = broken.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`local`") && message.contains("503"),
        "{message}"
    );

    f.point_provider_at_a_closed_port().await;
    let down = anthropic(&f, &f.adapter_key, &body).await;
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    let error: Value = down.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    assert_names_the_provider_not_its_key(&error);
}

#[tokio::test]
async fn anthropic_stream_carries_tool_calls_and_ends_with_an_error_when_cut() {
    let f = fixture().await;
    let body = json!({"model": "m", "max_tokens": 100, "stream": true,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let text = anthropic(&f, &f.adapter_key, &body)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ONE_BLOCK_STREAM, "{text}");
    assert_eq!(
        events[2].1["content_block"],
        json!({"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {}})
    );
    let arguments: String = events[3..5]
        .iter()
        .map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(arguments, r#"{"city":"Paris"}"#);
    assert_eq!(events[6].1["delta"]["stop_reason"], "tool_use");

    let cut = json!({"model": "m", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "break"}]});
    let text = anthropic(&f, &f.adapter_key, &cut)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{text}");
    assert_eq!(data["type"], "error");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`local`"),
        "{text}"
    );
    assert!(!text.contains("message_stop"), "{text}");
    assert!(text.contains("\"hel\""), "{text}");
}

impl Fixture {
    /// Registers the test upstream again as an `anthropic_messages` provider; returns the key
    /// of an adapter for it.
    async fn anthropic_provider_key(&self) -> String {
        let providers: Value = self.manage.get("/api/providers").await;
        let upstream = providers[0]["url"].as_str().unwrap();
        self.manage
            .provider(
                "claude",
                json!({"url": upstream, "api_key": "sk-ant-upstream-7890",
                "protocol": "anthropic_messages"}),
            )
            .await;
        self.manage.adapter_key("claude", "claude-up").await
    }
}

#[tokio::test]
async fn anthropic_client_on_anthropic_provider_is_forwarded_as_bytes() {
    let f = fixture().await;
    let key = &f.anthropic_provider_key().await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
        "metadata": {"user_id": "u1"}, "messages": [{"role": "user", "content": "hi"}]});
    let text = anthropic(&f, key, &body).await.text().await.unwrap();
    assert_eq!(text, ANTHROPIC_STREAM);
    {
        let seen = f.seen.lock().unwrap();
        assert_eq!(seen.bodies[0]["model"], "claude-up");
        assert_eq!(seen.bodies[0]["metadata"], json!({"user_id": "u1"}));
        assert_eq!(
            seen.anthropic_headers[0],
            ("sk-ant-upstream-7890".to_owned(), "2023-06-01".to_owned())
        );
    }
    let rows = f.recent().await;
    assert_eq!(rows[0]["provider_id"], "claude");
    assert_eq!(rows[0]["input_tokens"], 20);
    assert_eq!(rows[0]["output_tokens"], 5);
    assert_eq!(rows[0]["outcome"], "completed");

    let whole = json!({"model": "x", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}]});
    let reply: Value = anthropic(&f, key, &whole).await.json().await.unwrap();
    assert_eq!(reply["x_unknown"], 1);
    assert_eq!(reply["usage"]["input_tokens"], 20);
}

#[tokio::test]
async fn openai_client_on_anthropic_provider_is_translated() {
    let f = fixture().await;
    let key = f.anthropic_provider_key().await;
    let whole: Value = answer_json(f.http.post(f.url(CHAT)).bearer_auth(&key).json(
        &json!({"model": "gpt-4o", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"}]}),
    ))
    .await;
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["content"], "hi");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");
    // Anthropic's input excludes cache reads; OpenAI's prompt_tokens include them.
    assert_eq!(whole["usage"]["prompt_tokens"], 24);
    assert_eq!(whole["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    {
        let seen = f.seen.lock().unwrap();
        let sent = &seen.bodies[0];
        assert_eq!(sent["model"], "claude-up");
        assert_eq!(sent["system"][0]["text"], "be brief");
        assert_eq!(
            sent["max_tokens"], 4096,
            "Anthropic requires max_tokens: {sent}"
        );
        assert_eq!(seen.anthropic_headers[0].1, "2023-06-01");
    }

    let text = f
        .http
        .post(f.url(CHAT))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "hi");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5, "{text}");
    let rows = f.recent().await;
    assert_eq!(rows[0]["provider_id"], "claude");
    assert_eq!(rows[0]["endpoint"], "chat.completions");
}

#[tokio::test]
async fn token_counts_are_forwarded_or_estimated() {
    let f = fixture().await;
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": "count these words"}]});
    let estimated = f
        .http
        .post(f.url("/v1/messages/count_tokens?beta=true"))
        .header("x-api-key", &f.adapter_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(estimated.status(), StatusCode::OK);
    assert_eq!(estimated.headers()["x-flexiproxy-estimate"], "true");
    let count: Value = estimated.json().await.unwrap();
    assert!(count["input_tokens"].as_u64().unwrap() > 3, "{count}");

    let key = f.anthropic_provider_key().await;
    let forwarded = f
        .http
        .post(f.url("/v1/messages/count_tokens"))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), StatusCode::OK);
    assert!(forwarded.headers().get("x-flexiproxy-estimate").is_none());
    assert_eq!(forwarded.json::<Value>().await.unwrap()["input_tokens"], 42);
    let last_model = f.seen.lock().unwrap().bodies.last().unwrap()["model"].clone();
    assert_eq!(last_model, "claude-up");
    // Counting is not a generation: no usage row.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rows = f.recent_now().await;
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn model_lists_come_in_each_protocols_shape() {
    let f = fixture().await;
    let openai: Value =
        answer_json(f.http.get(f.url("/v1/models")).bearer_auth(&f.adapter_key)).await;
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["data"][0]["id"], "upstream-model");

    let anthropic: Value = answer_json(
        f.http
            .get(f.url("/v1/models"))
            .header("x-api-key", &f.adapter_key)
            .header("anthropic-version", "2023-06-01"),
    )
    .await;
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(anthropic["has_more"], false);
    assert!(
        anthropic["data"][0]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let gemini = f
        .http
        .get(f.url(&format!("/v1beta/models?key={}", f.adapter_key)))
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status(), StatusCode::OK);
    let gemini: Value = gemini.json().await.unwrap();
    assert_eq!(gemini["models"][0]["name"], "models/upstream-model");

    // google-genai lists under /v1 by default, with its key in x-goog-api-key.
    let under_v1: Value = answer_json(
        f.http
            .get(f.url("/v1/models"))
            .header("x-goog-api-key", &f.adapter_key),
    )
    .await;
    assert_eq!(under_v1["models"][0]["name"], "models/upstream-model");

    let refused = f
        .http
        .get(f.url("/v1beta/models?key=fp-wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], 401);
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn the_window_loads_its_modules_and_presets() {
    let f = fixture().await;
    let module = f.http.get(f.url("/lib/dom.js")).send().await.unwrap();
    assert_eq!(module.status(), StatusCode::OK);
    let kind = module.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/javascript"), "{kind}");
    for missing in ["/lib/nope.js", "/lib/..%2Fapp.js", "/lib/"] {
        let r = f.http.get(f.url(missing)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    let no_token = f.http.get(f.url("/api/presets")).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let presets: Value = f.manage.get("/api/presets").await;
    let ids: Vec<&str> = presets
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 12, "{ids:?}");
    assert_eq!(presets[1]["protocol"], "anthropic_messages");
    assert_eq!(
        presets[2]["url"],
        "https://generativelanguage.googleapis.com/v1beta"
    );
}
