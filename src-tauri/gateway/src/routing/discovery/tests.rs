//! Tests of model discovery: each kind's model-list URL and parser over fixtures, then stand-in
//! providers on loopback for auth headers, pagination, caps, timeouts and errors that name the
//! place without the key.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;

use super::*;
use crate::routing::test_upstream;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/discovery/",
            $name
        ))
        .as_slice()
    };
}

const OPENAI: &[u8] = fixture!("openai_models.json");
const ANTHROPIC_1: &[u8] = fixture!("anthropic_models_page1.json");
const ANTHROPIC_2: &[u8] = fixture!("anthropic_models_page2.json");
const GEMINI_1: &[u8] = fixture!("gemini_models_page1.json");
const GEMINI_2: &[u8] = fixture!("gemini_models_page2.json");
const DNT: &[u8] = fixture!("ocf_dnt_table.json");

const GEMINI_TOKEN: &str = "Ch1tb2RlbHMvZ2VtaW5pLTIuNS1mbGFzaA==";
const KEY: &str = "sk-test-0123456789abcdef";

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn kind_names_round_trip_and_reject_others() {
    for kind in DiscoveryKind::ALL {
        assert_eq!(kind.as_str().parse::<DiscoveryKind>().unwrap(), kind);
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{kind}\""));
        assert_eq!(serde_json::from_str::<DiscoveryKind>(&json).unwrap(), kind);
    }
    assert_eq!(DiscoveryKind::default(), DiscoveryKind::Auto);
    let error = "OCF".parse::<DiscoveryKind>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown discovery `OCF`; use one of auto, ocf, off"
    );
}

#[test]
fn models_url_per_kind() {
    use DiscoveryKind::{Auto, Ocf, Off};
    for (url, kind, expected) in [
        (
            "https://api.openai.com/v1",
            Auto,
            Some("https://api.openai.com/v1/models"),
        ),
        (
            "https://api.anthropic.com/v1/",
            Auto,
            Some("https://api.anthropic.com/v1/models"),
        ),
        (
            "https://generativelanguage.googleapis.com/v1beta",
            Auto,
            Some("https://generativelanguage.googleapis.com/v1beta/models"),
        ),
        (
            "http://140.238.1.2:8092/v1/service/llm/v1",
            Ocf,
            Some("http://140.238.1.2:8092/v1/dnt/table"),
        ),
        (
            "https://ocf.example.org/v1",
            Ocf,
            Some("https://ocf.example.org/v1/dnt/table"),
        ),
        ("not a url", Ocf, None),
        ("https://api.openai.com/v1", Off, None),
    ] {
        assert_eq!(models_url(url, kind).as_deref(), expected, "{url} {kind}");
    }
}

#[test]
fn openai_list_from_fixture() {
    for protocol in [Protocol::OpenAiChat, Protocol::OpenAiResponses] {
        let page = parse_model_page(protocol, OPENAI).unwrap();
        assert_eq!(
            page.models,
            strings(&[
                "gpt-4o-mini",
                "text-embedding-3-small",
                "gpt-4o",
                "o3-mini",
                "ft:gpt-4o-mini-2024-07-18:acme::9xYzAbCd",
            ])
        );
        assert_eq!(page.next, None);
    }
}

#[test]
fn openai_list_tolerates_odd_entries_and_bare_arrays() {
    let body = br#"{"object":"list","data":[{"id":"a"},{"id":null},{"object":"model"},7,{"id":" "},{"id":"b"}]}"#;
    let page = parse_model_page(Protocol::OpenAiChat, body).unwrap();
    assert_eq!(page.models, strings(&["a", "b"]));
    let bare = br#"[{"id":"meta-llama/Llama-3.3-70B-Instruct-Turbo","type":"chat"}]"#;
    let page = parse_model_page(Protocol::OpenAiChat, bare).unwrap();
    assert_eq!(
        page.models,
        strings(&["meta-llama/Llama-3.3-70B-Instruct-Turbo"])
    );
}

#[test]
fn anthropic_pages_from_fixtures() {
    let first = parse_model_page(Protocol::AnthropicMessages, ANTHROPIC_1).unwrap();
    assert_eq!(
        first.models,
        strings(&["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"])
    );
    assert_eq!(first.next.as_deref(), Some("claude-opus-4-1-20250805"));
    let last = parse_model_page(Protocol::AnthropicMessages, ANTHROPIC_2).unwrap();
    assert_eq!(
        last.models,
        strings(&["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"])
    );
    assert_eq!(last.next, None);
    let no_cursor = br#"{"data":[],"has_more":true,"last_id":null}"#;
    let page = parse_model_page(Protocol::AnthropicMessages, no_cursor).unwrap();
    assert_eq!(page, ModelPage::default());
}

#[test]
fn gemini_pages_from_fixtures_drop_models_that_cannot_chat() {
    let first = parse_model_page(Protocol::Gemini, GEMINI_1).unwrap();
    assert_eq!(
        first.models,
        strings(&["gemini-2.0-flash", "gemini-2.5-flash"])
    );
    assert_eq!(first.next.as_deref(), Some(GEMINI_TOKEN));
    let last = parse_model_page(Protocol::Gemini, GEMINI_2).unwrap();
    assert_eq!(last.models, strings(&["gemini-2.5-pro", "gemma-3-27b-it"]));
    assert_eq!(last.next, None);
    let empty = parse_model_page(Protocol::Gemini, b"{}").unwrap();
    assert_eq!(empty, ModelPage::default());
}

#[test]
fn unreadable_bodies_say_what_is_wrong() {
    let html = b"<html><body>Not here</body></html>";
    for protocol in Protocol::ALL {
        let error = parse_model_page(protocol, html).unwrap_err();
        assert!(
            matches!(error, DiscoveryError::Unreadable { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("not JSON"), "{error}");
    }
    let error = parse_model_page(Protocol::OpenAiChat, br#"{"models":[]}"#).unwrap_err();
    assert!(error.to_string().contains("`data` list"), "{error}");
    let error = parse_model_page(Protocol::Gemini, br#"{"models":{}}"#).unwrap_err();
    assert!(
        error.to_string().contains("`models` is not a list"),
        "{error}"
    );
    let error = parse_dnt_table(b"[]").unwrap_err();
    assert!(error.to_string().contains("OCF node table"), "{error}");
}

#[test]
fn dnt_table_from_fixture() {
    let peers = parse_dnt_table(DNT).unwrap();
    assert_eq!(
        peers,
        vec![
            OcfPeer {
                id: "QmOldBinaryPeer4kXg2fRzL7nW9cVbT5yH3jM8pQ1sA6dE".to_owned(),
                models: strings(&["legacy/Llama-70B"]),
            },
            OcfPeer {
                id: "QmPneGvHmWMngc8BboFasEJQ7D2aN9C65iMDwgCRGaTazs".to_owned(),
                models: strings(&["Qwen/Qwen3-8B"]),
            },
            OcfPeer {
                id: "QmZk3vWbQ8hNnE5sGtY7uR2pLxC4dF6aJ9mK1oHqS8eT3w".to_owned(),
                models: strings(&["Qwen/Qwen3-8B", "swiss-ai/Apertus-8B"]),
            },
        ]
    );
}

#[test]
fn dnt_table_tolerates_odd_peers() {
    let body = br#"{
        "/QmNoId": {"service": [{"identity_group": ["model=m1", "model=m1", "model="]}]},
        "/QmNullGroup": {"id": "QmNullGroup", "service": [{"name": "llm", "identity_group": null}]},
        "/QmNumbers": {"id": 5, "service": [{"identity_group": [1, null, "model=m2"]}]},
        "/QmSingle": {"id": "QmSingle", "service": {"identity_group": ["model=m3"]}},
        "/QmNull": null,
        "/": {"service": [{"identity_group": ["model=lost"]}]}
    }"#;
    let peers = parse_dnt_table(body).unwrap();
    assert_eq!(
        peers,
        vec![
            OcfPeer {
                id: "QmNoId".to_owned(),
                models: strings(&["m1"])
            },
            OcfPeer {
                id: "QmNumbers".to_owned(),
                models: strings(&["m2"])
            },
            OcfPeer {
                id: "QmSingle".to_owned(),
                models: strings(&["m3"])
            },
        ]
    );
    assert_eq!(parse_dnt_table(b"{}").unwrap(), Vec::new());
}

#[test]
fn error_detail_finds_the_message_and_stays_short() {
    let status = StatusCode::UNAUTHORIZED;
    let anthropic = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    assert_eq!(error_detail(anthropic, status), "invalid x-api-key");
    assert_eq!(
        error_detail(br#"{"error":"no such route"}"#, status),
        "no such route"
    );
    assert_eq!(error_detail(b"  Bad\n  gateway  ", status), "Bad gateway");
    assert_eq!(error_detail(b"", status), "Unauthorized");
    let long = "x".repeat(500);
    let detail = error_detail(long.as_bytes(), status);
    assert_eq!(detail.chars().count(), MAX_DETAIL_CHARS + 1);
    assert!(detail.ends_with('…'));
}

/// What the local provider saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    uri: String,
    headers: HeaderMap,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, uri: &Uri, headers: &HeaderMap) {
    log.lock().unwrap().push(Seen {
        uri: uri.to_string(),
        headers: headers.clone(),
    });
}

fn json(body: &'static [u8]) -> axum::response::Response {
    ([("content-type", "application/json")], body).into_response()
}

async fn openai(State(log): State<Log>, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    record(&log, &uri, &headers);
    json(OPENAI)
}

async fn anthropic(
    State(log): State<Log>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> axum::response::Response {
    record(&log, &uri, &headers);
    match query.get("after_id").map(String::as_str) {
        None => json(ANTHROPIC_1),
        Some("claude-opus-4-1-20250805") => json(ANTHROPIC_2),
        Some(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn gemini(
    State(log): State<Log>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> axum::response::Response {
    record(&log, &uri, &headers);
    match query.get("pageToken").map(String::as_str) {
        None => json(GEMINI_1),
        Some(GEMINI_TOKEN) => json(GEMINI_2),
        Some(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn endless(State(log): State<Log>, uri: Uri, headers: HeaderMap) -> axum::response::Response {
    record(&log, &uri, &headers);
    let n = log.lock().unwrap().len();
    let body = format!(r#"{{"models":[{{"name":"models/m{n}"}}],"nextPageToken":"t{n}"}}"#);
    ([("content-type", "application/json")], body).into_response()
}

async fn stuck(State(log): State<Log>, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    record(&log, &uri, &headers);
    json(br#"{"data":[{"id":"only"}],"has_more":true,"last_id":"only"}"#)
}

async fn table(State(log): State<Log>, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    record(&log, &uri, &headers);
    json(DNT)
}

async fn denied(headers: HeaderMap) -> axum::response::Response {
    // Like OpenAI's 401, which quotes the key it refused.
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_owned();
    let body = serde_json::json!({"error": {
        "message": format!("Incorrect API key provided: {presented}."),
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "{}"
}

async fn html() -> axum::response::Response {
    (
        [("content-type", "text/html")],
        "<!doctype html><title>Welcome</title>",
    )
        .into_response()
}

async fn provider() -> (SocketAddr, Log) {
    let log = Log::default();
    let router = Router::new()
        .route("/openai/v1/models", get(openai))
        .route("/anthropic/v1/models", get(anthropic))
        .route("/gemini/v1beta/models", get(gemini))
        .route("/endless/v1beta/models", get(endless))
        .route("/stuck/v1/models", get(stuck))
        .route("/v1/dnt/table", get(table))
        .route("/denied/v1/models", get(denied))
        .route("/slow/v1/models", get(slow))
        .route("/html/v1/models", get(html))
        .with_state(log.clone());
    (test_upstream::serve(router).await, log)
}

/// The stand-in provider and the URL of `path` on it.
async fn provider_at(path: &str) -> (String, SocketAddr, Log) {
    let (addr, log) = provider().await;
    (format!("http://{addr}{path}"), addr, log)
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// `discover` at `url` with the test key.
async fn ask(
    url: &str,
    protocol: Protocol,
    kind: DiscoveryKind,
) -> Result<Discovered, DiscoveryError> {
    let key = Secret::new(KEY);
    discover(
        &reqwest::Client::new(),
        url,
        protocol,
        kind,
        Some(&key),
        TIMEOUT,
    )
    .await
}

/// The same without a key (a local server, or a check that fails before any request).
async fn ask_keyless(
    url: &str,
    protocol: Protocol,
    kind: DiscoveryKind,
) -> Result<Discovered, DiscoveryError> {
    discover(&reqwest::Client::new(), url, protocol, kind, None, TIMEOUT).await
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn openai_list_with_bearer_key() {
    let (url, _, log) = provider_at("/openai/v1").await;
    let found = ask(&url, Protocol::OpenAiChat, DiscoveryKind::Auto)
        .await
        .unwrap();
    assert_eq!(
        found.models,
        strings(&[
            "ft:gpt-4o-mini-2024-07-18:acme::9xYzAbCd",
            "gpt-4o",
            "gpt-4o-mini",
            "o3-mini",
            "text-embedding-3-small",
        ])
    );
    assert!(found.peers.is_empty());
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/openai/v1/models");
    assert_eq!(
        header(&seen[0], "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(header(&seen[0], "x-api-key"), None);
}

#[tokio::test]
async fn keyless_provider_gets_no_auth_header() {
    let (url, _, log) = provider_at("/openai/v1/").await;
    let http = reqwest::Client::new();
    let found = ask_keyless(&url, Protocol::OpenAiChat, DiscoveryKind::Auto)
        .await
        .unwrap();
    assert_eq!(found.models.len(), 5);
    let empty = Secret::new("");
    discover(
        &http,
        &url,
        Protocol::OpenAiChat,
        DiscoveryKind::Auto,
        Some(&empty),
        TIMEOUT,
    )
    .await
    .unwrap();
    for seen in log.lock().unwrap().iter() {
        assert_eq!(header(seen, "authorization"), None);
    }
}

#[tokio::test]
async fn anthropic_pages_followed_with_its_headers() {
    let (url, _, log) = provider_at("/anthropic/v1").await;
    let found = ask(&url, Protocol::AnthropicMessages, DiscoveryKind::Auto)
        .await
        .unwrap();
    assert_eq!(
        found.models,
        strings(&[
            "claude-3-5-haiku-20241022",
            "claude-opus-4-1-20250805",
            "claude-sonnet-4-20250514",
            "claude-sonnet-4-5-20250929",
        ])
    );
    let seen = log.lock().unwrap().clone();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "/anthropic/v1/models?limit=1000",
            "/anthropic/v1/models?limit=1000&after_id=claude-opus-4-1-20250805",
        ]
    );
    for seen in &seen {
        assert_eq!(header(seen, "x-api-key"), Some(KEY));
        assert_eq!(header(seen, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(seen, "authorization"), None);
    }
}

#[tokio::test]
async fn gemini_pages_followed_with_its_header() {
    let (url, _, log) = provider_at("/gemini/v1beta").await;
    let found = ask(&url, Protocol::Gemini, DiscoveryKind::Auto)
        .await
        .unwrap();
    assert_eq!(
        found.models,
        strings(&[
            "gemini-2.0-flash",
            "gemini-2.5-flash",
            "gemini-2.5-pro",
            "gemma-3-27b-it"
        ])
    );
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri, "/gemini/v1beta/models?pageSize=1000");
    assert_eq!(
        seen[1].uri,
        "/gemini/v1beta/models?pageSize=1000&pageToken=Ch1tb2RlbHMvZ2VtaW5pLTIuNS1mbGFzaA%3D%3D"
    );
    for seen in &seen {
        assert_eq!(header(seen, "x-goog-api-key"), Some(KEY));
        assert_eq!(header(seen, "authorization"), None);
    }
}

#[tokio::test]
async fn pages_stop_at_the_cap() {
    let (url, _, log) = provider_at("/endless/v1beta").await;
    let found = ask_keyless(&url, Protocol::Gemini, DiscoveryKind::Auto)
        .await
        .unwrap();
    assert_eq!(found.models.len(), MAX_PAGES);
    assert_eq!(log.lock().unwrap().len(), MAX_PAGES);
}

#[tokio::test]
async fn repeated_cursor_is_not_followed_again() {
    let (url, _, log) = provider_at("/stuck/v1").await;
    let found = ask_keyless(&url, Protocol::AnthropicMessages, DiscoveryKind::Auto)
        .await
        .unwrap();
    assert_eq!(found.models, strings(&["only"]));
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn ocf_table_read_at_the_origin_with_bearer_key() {
    let (url, _, log) = provider_at("/v1/service/llm/v1").await;
    let found = ask(&url, Protocol::OpenAiChat, DiscoveryKind::Ocf)
        .await
        .unwrap();
    assert_eq!(
        found.models,
        strings(&["Qwen/Qwen3-8B", "legacy/Llama-70B", "swiss-ai/Apertus-8B"])
    );
    assert_eq!(found.peers, parse_dnt_table(DNT).unwrap());
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/v1/dnt/table");
    assert_eq!(
        header(&seen[0], "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn refused_key_is_a_status_error_without_the_key() {
    let (url, addr, _log) = provider_at("/denied/v1").await;
    let error = ask(&url, Protocol::OpenAiChat, DiscoveryKind::Auto)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DiscoveryError::Status { status: 401, .. }),
        "{error:?}"
    );
    assert!(error.is_auth_failure());
    let text = error.to_string();
    assert!(!text.contains(KEY), "{text}");
    assert!(!format!("{error:?}").contains(KEY));
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(
        text.contains("Incorrect API key provided: <redacted>."),
        "{text}"
    );
    assert!(text.contains("check the provider's API key"), "{text}");
    assert!(
        text.contains(&format!("http://{addr}/denied/v1/models")),
        "{text}"
    );
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    let addr = test_upstream::closed().await;
    let url = format!("http://{addr}/v1");
    let error = ask(&url, Protocol::OpenAiChat, DiscoveryKind::Auto)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DiscoveryError::Unreachable { .. }),
        "{error:?}"
    );
    if let DiscoveryError::Unreachable { url: at, reason } = &error {
        assert_eq!(at, &format!("http://{addr}/v1/models"));
        assert!(reason.contains("connection"), "{reason}");
    }
    assert!(!error.to_string().contains(KEY));
}

#[tokio::test]
async fn slow_provider_times_out_within_the_bound() {
    let (url, addr, _log) = provider_at("/slow/v1").await;
    let http = reqwest::Client::new();
    let bound = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let error = discover(
        &http,
        &url,
        Protocol::OpenAiChat,
        DiscoveryKind::Auto,
        None,
        bound,
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        error,
        DiscoveryError::TimedOut {
            url: format!("http://{addr}/slow/v1/models"),
            after: bound,
        }
    );
}

#[tokio::test]
async fn html_page_is_unreadable_and_named() {
    let (url, addr, _log) = provider_at("/html/v1").await;
    let error = ask_keyless(&url, Protocol::OpenAiChat, DiscoveryKind::Auto)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DiscoveryError::Unreadable { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "the answer from http://{addr}/html/v1/models is not a readable model list"
        )),
        "{error}"
    );
}

#[tokio::test]
async fn off_and_bad_urls_fail_before_any_request() {
    let http = reqwest::Client::new();
    let error = ask_keyless(
        "https://api.openai.com/v1",
        Protocol::OpenAiChat,
        DiscoveryKind::Off,
    )
    .await
    .unwrap_err();
    assert_eq!(error, DiscoveryError::Off);
    for (url, kind) in [
        ("api.openai.com/v1", DiscoveryKind::Auto),
        ("ftp://example.org/v1", DiscoveryKind::Auto),
        ("localhost:8092", DiscoveryKind::Ocf),
    ] {
        let error = discover(&http, url, Protocol::OpenAiChat, kind, None, TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(error, DiscoveryError::InvalidUrl { .. }),
            "{url}: {error:?}"
        );
    }
    let error = ask_keyless(
        "http://user:hunter2@127.0.0.1:1/v1",
        Protocol::OpenAiChat,
        DiscoveryKind::Auto,
    )
    .await
    .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}
