//! "Test" on a provider: one small, real call that shows whether its URL, key and model work.
//!
//! The management API (`POST /api/providers/{id}/test`) picks a credential and a model with
//! [`choose`] and calls [`run`], which sends one short user message (at most
//! [`MAX_OUTPUT_TOKENS`] tokens back, not streamed) in the provider's own protocol: the body is
//! written by the same `protocol` encoders the translated path uses, the URL and the key's
//! header by `proxy::send`'s helpers, so the test exercises what real requests will. It runs beside
//! the request path, not through it: no usage row is written and a failure puts no credential
//! into cooldown. Whatever the provider answers comes back as a [`TestReport`] whose `error`
//! is a sentence for the user.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header;
use serde::Serialize;

use crate::accounts::Accounts;
use crate::accounts::subscription::Call;
use crate::error::GatewayError;
use crate::proxy::account_relay;
use crate::proxy::classify::describe;
use crate::proxy::send::{UpstreamPath, with_key};
use crate::routing::registry::{Credential, Provider, ProviderKey};
use flexiproxy_protocol::canonical::{Message, Part, Request, Role};
use flexiproxy_protocol::codec;
use flexiproxy_protocol::error_message::error_detail;

/// How long a test may take, from sending to the last byte of the answer.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// The answer's token limit: enough for "OK", cheap on any price list.
pub const MAX_OUTPUT_TOKENS: u64 = 16;
/// What the test asks.
const PROMPT: &str = "Reply with just the word OK.";
/// The most of an answer read; a test answer is a few hundred bytes.
const BODY_CAP: usize = 1024 * 1024;

/// Why a test could not be made; the messages say what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestError {
    #[error(
        "name a model to test with: provider `{provider}` declares no models and discovery found \
         none"
    )]
    NoModel { provider: String },
    #[error("provider `{provider}` has no credential `{credential}`")]
    UnknownCredential {
        provider: String,
        credential: String,
    },
    #[error(
        "provider `{provider}` has no enabled credential; enable one or name the credential to \
         test"
    )]
    NoEnabledCredential { provider: String },
    #[error("credential `{credential}` has no usable key: {reason}")]
    KeyUnavailable { credential: String, reason: String },
    /// The model cannot be put into the provider's URL (see `path_segment`).
    #[error("{0}")]
    BadModel(String),
}

impl From<TestError> for GatewayError {
    fn from(error: TestError) -> Self {
        match error {
            TestError::UnknownCredential { .. } => Self::NotFound(error.to_string()),
            _ => Self::Invalid(error.to_string()),
        }
    }
}

/// The credential and model to test with: the ones named, else the provider's first enabled
/// credential and its first declared model, then its first discovered one.
pub fn choose(
    provider: &Provider,
    model: Option<&str>,
    credential: Option<&str>,
) -> Result<(Arc<Credential>, String), TestError> {
    let credential = match credential {
        Some(id) => provider
            .credentials
            .iter()
            .find(|c| c.id == id || c.key_id == id)
            .ok_or_else(|| TestError::UnknownCredential {
                provider: provider.id.clone(),
                credential: id.to_owned(),
            })?,
        None => provider
            .credentials
            .iter()
            .find(|c| c.enabled)
            .ok_or_else(|| TestError::NoEnabledCredential {
                provider: provider.id.clone(),
            })?,
    };
    if let ProviderKey::Unavailable(reason) = &credential.key {
        return Err(TestError::KeyUnavailable {
            credential: credential.key_id.clone(),
            reason: reason.clone(),
        });
    }
    let model = model
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .or_else(|| provider.declared_models.first().map(String::as_str))
        .or_else(|| provider.discovered.models.first().map(String::as_str))
        .ok_or_else(|| TestError::NoModel {
            provider: provider.id.clone(),
        })?;
    Ok((credential.clone(), model.to_owned()))
}

/// What a test found. `ok` with the answer and its token counts, or not with `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestReport {
    pub ok: bool,
    pub model: String,
    /// `<provider>/<credential>`.
    pub credential: String,
    /// The provider's HTTP status; none when no answer came.
    pub status: Option<u16>,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Makes the call and reports what happened. Fails only when the call cannot be made (the
/// key is unavailable).
///
/// A subscription login (`accounts`, given when the gateway has them) is addressed and signed
/// by `account_relay` as real requests are.
pub async fn run(
    http: &reqwest::Client,
    accounts: Option<&Arc<Accounts>>,
    provider: &Provider,
    credential: &Credential,
    model: &str,
    timeout: Duration,
) -> Result<TestReport, TestError> {
    let protocol = provider.protocol;
    let question = Request {
        model: model.to_owned(),
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::text(PROMPT)],
        }],
        max_tokens: Some(MAX_OUTPUT_TOKENS),
        stream: false,
        ..Request::default()
    };
    let unavailable = |reason: String| TestError::KeyUnavailable {
        credential: credential.key_id.clone(),
        reason,
    };
    // The question has no tools, so no schema can be too large.
    let body = codec::encode_request(protocol, &question).unwrap_or_default();
    let (request, url, shaping) = match (&credential.key, accounts) {
        (ProviderKey::Account(account), Some(accounts)) => {
            let call = Call {
                model,
                stream: false,
            };
            let prepared =
                account_relay::prepare(accounts, http, account, call, &body.into(), None)
                    .await
                    .map_err(|e| unavailable(e.reason))?;
            (prepared.request, prepared.url, Some(prepared.shaping))
        }
        _ => {
            let endpoint = UpstreamPath::generate(protocol, model, false)
                .map_err(|e| TestError::BadModel(e.to_string()))?;
            let url = format!("{}{}", provider.url.trim_end_matches('/'), endpoint.path);
            let request = http
                .post(&url)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json")
                .body(body);
            let request = with_key(request, &provider.id, &credential.key, endpoint.style, None)
                .map_err(|e| unavailable(e.to_string()))?;
            (request, url, None)
        }
    };

    let mut report = TestReport {
        ok: false,
        model: model.to_owned(),
        credential: credential.key_id.clone(),
        status: None,
        latency_ms: 0,
        answer: None,
        input_tokens: None,
        output_tokens: None,
        error: None,
    };
    let started = Instant::now();
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status();
        if status.is_redirection() {
            return Ok((
                status,
                crate::proxy::classify::redirect_detail(&response).into_bytes(),
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() >= BODY_CAP {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, body))
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, body) = match result {
        Err(_) => {
            report.error = Some(format!(
                "no answer from {url} within {} s",
                timeout.as_secs()
            ));
            return Ok(report);
        }
        Ok(Err(e)) => {
            report.error = Some(format!("cannot reach {url}: {}", describe(&e)));
            return Ok(report);
        }
        Ok(Ok(answer)) => answer,
    };
    report.status = Some(status.as_u16());
    if status.is_redirection() {
        report.error = Some(format!(
            "the provider answered {status} with {}",
            String::from_utf8_lossy(&body)
        ));
        return Ok(report);
    }
    if !status.is_success() {
        report.error = Some(format!("the provider said: {}", error_detail(&body)));
        return Ok(report);
    }
    let body = match shaping.map(|shaping| account_relay::whole(&body, shaping)) {
        None => body,
        Some(Ok(whole)) => whole.to_vec(),
        Some(Err(reason)) => {
            report.error = Some(format!("the account's endpoint answered oddly: {reason}"));
            return Ok(report);
        }
    };
    match codec::decode_response(protocol, &body) {
        Ok(answer) => {
            let text: String = answer
                .content
                .iter()
                .filter_map(|part| match part {
                    Part::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            report.ok = true;
            report.answer = Some(text.trim().to_owned());
            report.input_tokens = answer.usage.input;
            report.output_tokens = answer.usage.output;
        }
        Err(e) => {
            report.error = Some(format!(
                "the provider answered HTTP {}, but not as {protocol} does: {e}; check the \
                 provider's protocol and URL",
                status.as_u16()
            ));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::routing::test_upstream;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    use serde_json::json;

    use crate::routing::Limits;
    use crate::routing::registry::{DiscoveredModels, Source};
    use crate::store::secrets::Secret;
    use flexiproxy_protocol::Protocol;
    use flexiproxy_protocol::canonical::TokenUsage;
    use flexiproxy_protocol::canonical::{FinishReason, Response};
    use flexiproxy_protocol::codec::ClientView;

    const GOOD_KEY: &str = "sk-test-good";

    /// The key a request carries, in whichever header its protocol uses.
    fn presented(headers: &HeaderMap) -> Option<String> {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        value("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| value("x-api-key"))
            .or_else(|| value("x-goog-api-key"))
            .map(str::to_owned)
    }

    /// A provider of `protocol` on loopback: answers "OK" to the good key, each protocol's 401
    /// error body to any other. Checks what the test sends on the way.
    async fn upstream(protocol: Protocol) -> String {
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let expected_path = match protocol {
                Protocol::OpenAiChat => "/v1/chat/completions",
                Protocol::OpenAiResponses => "/v1/responses",
                Protocol::AnthropicMessages => "/v1/messages",
                Protocol::Gemini => "/v1beta/models/tiny:generateContent",
            };
            if uri.path() != expected_path {
                return (StatusCode::NOT_FOUND, format!("no route {}", uri.path())).into_response();
            }
            if protocol == Protocol::AnthropicMessages {
                assert_eq!(headers["anthropic-version"], "2023-06-01");
            }
            if presented(&headers).as_deref() != Some(GOOD_KEY) {
                let error = match protocol {
                    Protocol::OpenAiChat | Protocol::OpenAiResponses => json!({"error": {
                        "message": "Incorrect API key provided", "type": "invalid_request_error",
                        "code": "invalid_api_key"}}),
                    Protocol::AnthropicMessages => json!({"type": "error", "error": {
                        "type": "authentication_error", "message": "invalid x-api-key"}}),
                    Protocol::Gemini => json!({"error": {"code": 401,
                        "message": "API key not valid", "status": "UNAUTHENTICATED"}}),
                };
                return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
            }
            let asked = codec::decode_request(protocol, &body).unwrap();
            assert_eq!(asked.max_tokens, Some(MAX_OUTPUT_TOKENS));
            assert!(!asked.stream);
            if protocol != Protocol::Gemini {
                assert_eq!(asked.model, "tiny");
            }
            let answer = Response {
                id: "answer-1".into(),
                model: "tiny".into(),
                content: vec![Part::text("OK")],
                finish: Some(FinishReason::Stop),
                stop_sequence: None,
                usage: TokenUsage {
                    input: Some(9),
                    output: Some(1),
                    cached: None,
                    reasoning: None,
                },
                origin: None,
            };
            let view = ClientView::of(protocol, &asked, 0);
            (
                [(header::CONTENT_TYPE, "application/json")],
                codec::encode_response(protocol, &answer, &view),
            )
                .into_response()
        };
        let app = Router::new().fallback(axum::routing::post(handler));
        let addr = test_upstream::serve(app).await;
        let base = if protocol == Protocol::Gemini {
            "v1beta"
        } else {
            "v1"
        };
        format!("http://{addr}/{base}")
    }

    fn credential(id: &str, key: ProviderKey, enabled: bool) -> Arc<Credential> {
        Arc::new(Credential {
            provider_id: "p".into(),
            id: id.into(),
            key_id: format!("p/{id}"),
            label: id.into(),
            key,
            key_hint: None,
            key_source: None,
            enabled,
            priority: 0,
            limits: Limits::default(),
            source: Source::Database,
            implicit: false,
        })
    }

    fn provider(protocol: Protocol, url: String, credentials: Vec<Arc<Credential>>) -> Provider {
        Provider {
            id: "p".into(),
            url,
            protocol,
            discovery: crate::routing::discovery::DiscoveryKind::Off,
            declared_models: Vec::new(),
            discovered: DiscoveredModels::default(),
            credentials,
            source: Source::Database,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ready(key: &str) -> ProviderKey {
        ProviderKey::Ready(Secret::new(key.to_owned()))
    }

    #[tokio::test]
    async fn every_protocol_answers_ok_and_reports_a_bad_key() {
        let http = reqwest::Client::new();
        for protocol in Protocol::ALL {
            let url = upstream(protocol).await;
            let p = provider(protocol, url, Vec::new());

            let good = credential("good", ready(GOOD_KEY), true);
            let report = run(&http, None, &p, &good, "tiny", TIMEOUT).await.unwrap();
            assert!(report.ok, "{protocol}: {report:?}");
            assert_eq!(report.status, Some(200));
            assert_eq!(report.answer.as_deref(), Some("OK"), "{protocol}");
            assert_eq!(report.input_tokens, Some(9), "{protocol}");
            assert_eq!(report.output_tokens, Some(1), "{protocol}");
            assert_eq!(report.credential, "p/good");
            assert_eq!(report.error, None);

            let bad = credential("bad", ready("sk-wrong"), true);
            let report = run(&http, None, &p, &bad, "tiny", TIMEOUT).await.unwrap();
            assert!(!report.ok);
            assert_eq!(report.status, Some(401), "{protocol}");
            let shown = serde_json::to_value(&report).unwrap();
            assert!(shown.get("answer").is_none());
            let error = report.error.unwrap();
            assert!(error.starts_with("the provider said: "), "{error}");
            assert!(
                [
                    "Incorrect API key provided",
                    "invalid x-api-key",
                    "API key not valid"
                ]
                .iter()
                .any(|m| error.ends_with(m)),
                "{protocol}: {error}"
            );
        }
    }

    /// A server that answers every request with `status` and `body`.
    async fn fixed(status: StatusCode, body: &'static str) -> String {
        let app = Router::new().fallback(move || async move { (status, body) });
        format!("http://{}/v1", test_upstream::serve(app).await)
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_named_by_url() {
        let addr = test_upstream::closed().await;
        let p = provider(
            Protocol::OpenAiChat,
            format!("http://{addr}/v1"),
            Vec::new(),
        );
        let c = credential("k", ready(GOOD_KEY), true);
        let report = run(&reqwest::Client::new(), None, &p, &c, "tiny", TIMEOUT)
            .await
            .unwrap();
        assert!(!report.ok);
        assert_eq!(report.status, None);
        let error = report.error.unwrap();
        assert!(
            error.starts_with(&format!("cannot reach http://{addr}/v1/chat/completions: ")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_silent_provider_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and never answers.
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let p = provider(
            Protocol::AnthropicMessages,
            format!("http://{addr}/v1"),
            Vec::new(),
        );
        let c = credential("k", ready(GOOD_KEY), true);
        let report = run(
            &reqwest::Client::new(),
            None,
            &p,
            &c,
            "tiny",
            Duration::from_millis(200),
        )
        .await
        .unwrap();
        assert!(!report.ok);
        assert!(report.error.unwrap().starts_with("no answer from http://"));
    }

    #[tokio::test]
    async fn answers_the_gateway_cannot_read_are_explained() {
        let c = credential("k", ready(GOOD_KEY), true);
        let http = reqwest::Client::new();

        let url = fixed(StatusCode::OK, r#"{"unexpected": true}"#).await;
        let p = provider(Protocol::AnthropicMessages, url, Vec::new());
        let report = run(&http, None, &p, &c, "tiny", TIMEOUT).await.unwrap();
        assert!(!report.ok);
        assert_eq!(report.status, Some(200));
        let error = report.error.unwrap();
        assert!(
            error.starts_with("the provider answered HTTP 200, but not as anthropic_messages"),
            "{error}"
        );

        let url = fixed(StatusCode::BAD_GATEWAY, "upstream down\n").await;
        let p = provider(Protocol::OpenAiChat, url, Vec::new());
        let report = run(&http, None, &p, &c, "tiny", TIMEOUT).await.unwrap();
        assert_eq!(report.status, Some(502));
        assert_eq!(
            report.error.as_deref(),
            Some("the provider said: upstream down")
        );
    }

    #[test]
    fn the_credential_and_model_are_chosen_in_order() {
        let off = credential("off", ready("a"), false);
        let on = credential("on", ready("b"), true);
        let mut p = provider(
            Protocol::OpenAiChat,
            "http://x/v1".into(),
            vec![off.clone(), on],
        );
        assert_eq!(
            choose(&p, None, None).unwrap_err(),
            TestError::NoModel {
                provider: "p".into()
            }
        );
        p.discovered.models = vec!["found".into()];
        let (c, m) = choose(&p, None, None).unwrap();
        assert_eq!((c.id.as_str(), m.as_str()), ("on", "found"));
        p.declared_models = vec!["declared".into()];
        assert_eq!(choose(&p, None, None).unwrap().1, "declared");
        assert_eq!(choose(&p, Some(" given "), None).unwrap().1, "given");
        // A disabled credential can still be tested by name (to see whether it works).
        assert_eq!(choose(&p, None, Some("off")).unwrap().0.id, "off");
        assert_eq!(choose(&p, None, Some("p/off")).unwrap().0.id, "off");
        assert!(matches!(
            choose(&p, None, Some("nope")),
            Err(TestError::UnknownCredential { .. })
        ));
        p.credentials = vec![off];
        assert!(matches!(
            choose(&p, None, None),
            Err(TestError::NoEnabledCredential { .. })
        ));
        p.credentials = vec![credential(
            "env",
            ProviderKey::Unavailable("FOO is not set".into()),
            true,
        )];
        assert_eq!(
            choose(&p, None, None).unwrap_err().to_string(),
            "credential `p/env` has no usable key: FOO is not set"
        );
    }
}
