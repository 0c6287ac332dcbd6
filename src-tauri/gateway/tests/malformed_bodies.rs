//! The gateway's answer to malformed client bodies: a 4xx in the client's own protocol, from
//! the gateway itself (the upstream never sees them), on a connection that stays usable. The
//! decoders' own properties are fuzzed in the protocol crate's `decoder_fuzz.rs`.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

mod scratch;
mod support;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response as HttpResponse;
use axum::routing::post;
use flexiproxy_gateway::store::secrets::MemoryStore;
use flexiproxy_protocol::anthropic_messages;
use scratch::TempDir;
use serde_json::{Value, json};
use support::in_process::{self, Management};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/translation/", $name))
    };
}

/// An OpenAI-compatible upstream that answers every chat request and counts them.
async fn start_upstream(calls: Arc<std::sync::atomic::AtomicUsize>) -> String {
    let answer = move || {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reply = json!({"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
            "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
        async move {
            HttpResponse::builder()
                .header("content-type", "application/json")
                .body(Body::from(reply.to_string()))
                .unwrap()
        }
    };
    let app = Router::new().route("/v1/chat/completions", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

/// Bodies no endpoint accepts: not JSON, not an object, cut short, not UTF-8, too deep.
fn malformed_anywhere() -> Vec<Vec<u8>> {
    let request = fixture!("openai_to_anthropic_request.in.json").as_bytes();
    vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"a string\"".to_vec(),
        b"42".to_vec(),
        b"{\"model\":\"m\",}".to_vec(),
        b"{\"model\":\"m\"}{\"model\":\"n\"}".to_vec(),
        b"{\"model\":\"\xff\xfe\",\"messages\":[]}".to_vec(),
        b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}".to_vec(),
        request[..request.len() / 2].to_vec(),
        [b"{\"model\":".as_slice(), &[b'['; 100_000]].concat(),
    ]
}

/// JSON objects an Anthropic Messages client should be told are wrong.
fn malformed_messages() -> Vec<Vec<u8>> {
    let nested = format!(
        "{{\"model\":\"m\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":{}hi{}}}]}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    [
        r#"{"model":"m","max_tokens":10,"messages":3}"#,
        r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"\ud800"}]}"#,
        r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":5}]}"#,
        r#"{"model":"m","max_tokens":10,"messages":[{"role":"wizard","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":"ten","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":1e400,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":18446744073709551616,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":["m"],"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":7}]}]}"#,
        r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tools":{"name":"x"}}"#,
        nested.as_str(),
    ]
    .iter()
    .map(|body| body.as_bytes().to_vec())
    .collect()
}

/// JSON objects the OpenAI-compatible fast path must refuse itself (it validates only what it
/// edits: the body is an object, and `stream_options` on a stream).
fn malformed_chat() -> Vec<Vec<u8>> {
    [
        r#"{"model":"m","stream":true,"stream_options":"yes","messages":[]}"#,
        r#"{"model":"m","stream":true,"stream_options":[true],"messages":[]}"#,
    ]
    .iter()
    .map(|body| body.as_bytes().to_vec())
    .collect()
}

/// Sends JSON `body` with `request` to `endpoint` and checks that the gateway refuses it with a
/// 4xx; returns the error answer and the start of the body, as messages show it.
async fn refused(request: reqwest::RequestBuilder, endpoint: &str, body: &[u8]) -> (Value, String) {
    let answer = request
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    let answer = answer
        .map_err(|err| format!("{endpoint} {shown:?}: {err}"))
        .unwrap();
    let status = answer.status();
    let error: Value = answer.json().await.unwrap();
    assert!(
        status.is_client_error(),
        "{endpoint} {shown:?}: {status} {error}"
    );
    (error, shown)
}

#[tokio::test]
async fn gateway_answers_malformed_bodies_with_4xx_in_the_clients_shape() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = start_upstream(Arc::clone(&calls)).await;
    let dir = TempDir::new("fuzz");
    let mut settings = in_process::settings(dir.path(), Arc::new(MemoryStore::default()));
    // Small enough that a test body can exceed it.
    settings.max_body_bytes = 256 * 1024;
    let (gateway, token) = in_process::start(settings).await;
    let base = gateway.base_url();
    let http = reqwest::Client::new();
    let manage = Management::new(http.clone(), &gateway, &token);
    manage
        .provider(
            "local",
            json!({"url": upstream, "protocol": "openai_chat", "api_key": "sk-up"}),
        )
        .await;
    let key = manage.adapter_key("local", "upstream-model").await;

    let too_large = [
        b"{\"model\":\"m\",\"x\":\"".as_slice(),
        &[b'a'; 300 * 1024],
        b"\"}",
    ]
    .concat();
    let mut anthropic_bodies = malformed_anywhere();
    anthropic_bodies.extend(malformed_messages());
    anthropic_bodies.push(too_large.clone());
    let mut openai_bodies = malformed_anywhere();
    openai_bodies.extend(malformed_chat());
    openai_bodies.push(too_large);

    // One client, so every answer also shows that the keep-alive connection survived.
    for body in &anthropic_bodies {
        if body.len() <= 256 * 1024 {
            // The gateway's 400 must be the decoder's verdict, not a coincidence.
            assert!(
                anthropic_messages::request_to_canonical(body).is_err(),
                "the decoder accepts {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        let request = http
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01");
        let (error, shown) = refused(request, "/v1/messages", body).await;
        assert_eq!(error["type"], "error", "/v1/messages {shown:?}: {error}");
        assert!(
            error["error"]["type"].is_string() && error["error"]["message"].is_string(),
            "/v1/messages {shown:?}: {error}"
        );
    }
    for body in &openai_bodies {
        let request = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key);
        let (error, shown) = refused(request, "/v1/chat/completions", body).await;
        assert!(
            error["error"]["message"].is_string() && error["error"]["type"].is_string(),
            "/v1/chat/completions {shown:?}: {error}"
        );
        assert!(
            error.get("type").is_none(),
            "OpenAI shape, not Anthropic: {error}"
        );
    }
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a malformed body reached the upstream"
    );

    // And the gateway still answers well-formed requests on both endpoints.
    let fine = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
    let fine = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
    drop(gateway);
}
