//! Counting a request's input tokens before sending it: Anthropic's
//! `POST /v1/messages/count_tokens` and Gemini's `:countTokens`, for a provider of any protocol.
//!
//! A provider that counts (Anthropic, Gemini) is asked: as bytes when it speaks the client's
//! protocol, else with the request translated through `canonical`. OpenAI-protocol providers
//! have no counting endpoint (nor do subscription logins here), so the gateway estimates from the text and says so in the
//! `x-flexiproxy-estimate: true` header; agents use the count to decide when to compact their
//! context, where a close estimate is what they need. Counting is not a generation: it leaves
//! no usage record.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::error::GatewayError;
use crate::proxy::ClientRequest;
use crate::proxy::authenticate::authenticate;
use crate::proxy::classify::redirect_error;
use crate::proxy::send::{self, Opened, UpstreamPath};
use crate::proxy::translate;
use crate::proxy::upstream_body::Silence;
use crate::routing;
use crate::routing::registry::{Provider, ProviderKey};
use crate::state::AppState;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::{Part, Request};
use flexiproxy_protocol::rewrite::{TopLevel, json_string, splice};
use flexiproxy_protocol::{codec, gemini};

/// The header that marks a locally estimated count.
pub const ESTIMATE_HEADER: &str = "x-flexiproxy-estimate";

/// The most bytes of a provider's count answer read.
const COUNT_BODY_CAP: usize = 1024 * 1024;
/// The longest a token count may take upstream, headers and body.
const COUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Fields Anthropic's count endpoint accepts; the rest of an encoded request is refused there.
const ANTHROPIC_COUNT_FIELDS: [&str; 6] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
];

/// Answers a count request from an Anthropic or Gemini client.
pub(crate) async fn count(
    state: &AppState,
    headers: &HeaderMap,
    client: ClientRequest,
) -> Result<Response, GatewayError> {
    let snapshot = state.registry.snapshot();
    let adapter = authenticate(&snapshot, headers)?;
    let plan = routing::plan(&snapshot, &adapter, || client.requested_model())?;
    // Counting is not a generation: it takes the target a request would use now, without
    // counting against its limits, and does not fail over.
    let chosen = state
        .router
        .peek(&plan, now_ms())
        .unwrap_or(&plan.targets[0])
        .clone();
    let provider = chosen.provider.clone();
    // Subscription logins are only shaped for generations, so their counts are estimated too.
    let counts_upstream = !matches!(chosen.credential.key, ProviderKey::Account(_));
    let endpoint =
        UpstreamPath::count_tokens(provider.protocol, &chosen.model)?.filter(|_| counts_upstream);
    let Some(endpoint) = endpoint else {
        let request = decode_for_count(&client)?;
        let mut response = answer(client.protocol, estimate(&request)).into_response();
        response
            .headers_mut()
            .insert(ESTIMATE_HEADER, HeaderValue::from_static("true"));
        return Ok(response);
    };
    let outgoing = if provider.protocol == client.protocol {
        same_protocol_body(&client, &chosen.model)?
    } else {
        let mut request = decode_for_count(&client)?;
        request.model.clone_from(&chosen.model);
        translated_body(provider.protocol, &request)?
    };
    let url = send::upstream_url(&adapter, &provider, &endpoint.path);
    let http = send::upstream_request(
        state,
        &chosen,
        &url,
        endpoint.style,
        false,
        (provider.protocol == client.protocol).then_some(headers),
    )?;
    // A count is quick work: the whole exchange, body included, is bounded by
    // COUNT_TIMEOUT (or the response timeout when shorter), and the body by COUNT_BODY_CAP.
    let limit = state.settings.response_timeout.min(COUNT_TIMEOUT);
    let exchange = async {
        let upstream =
            send::send_unmetered(state, http.body(outgoing), url.clone(), &provider.id).await?;
        if let Some(error) = redirect_error(&provider.id, &upstream) {
            return Err(error);
        }
        let silence = Silence {
            first: limit,
            between: limit,
        };
        let mut opened = Opened::new(upstream, silence);
        let body = opened.read_capped(COUNT_BODY_CAP).await.map_err(|e| {
            GatewayError::UpstreamInvalid {
                provider: provider.id.clone(),
                reason: format!("the token count broke off: {}", e.describe()),
            }
        })?;
        Ok((opened.status, body))
    };
    let (status, body) = tokio::time::timeout(limit, exchange).await.map_err(|_| {
        GatewayError::UpstreamTimeout {
            provider: provider.id.clone(),
            url,
            seconds: limit.as_secs(),
        }
    })??;
    if !status.is_success() {
        return Err(GatewayError::UpstreamStatus {
            provider: provider.id.clone(),
            status: status.as_u16(),
            detail: flexiproxy_protocol::error_message::error_detail(
                &body[..body.len().min(COUNT_BODY_CAP)],
            ),
            retry_after: None,
        });
    }
    let tokens = read_count(provider.protocol, &body, &provider)?;
    Ok(answer(client.protocol, tokens).into_response())
}

/// Decodes a count request; Gemini's may wrap a whole `generateContentRequest`.
fn decode_for_count(client: &ClientRequest) -> Result<Request, GatewayError> {
    if client.protocol != Protocol::Gemini {
        return translate::decode(client);
    }
    let mut request =
        gemini::count_tokens_request_to_canonical(&client.body).map_err(translate::bad_request)?;
    request.adopt_signature_tags();
    Ok(request)
}

/// The client's own count request for a provider of its protocol: Anthropic's gets the
/// adapter's model; Gemini's names the model in the URL, and inside a `generateContentRequest`.
fn same_protocol_body(client: &ClientRequest, model: &str) -> Result<Bytes, GatewayError> {
    let top = TopLevel::scan(&client.body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    if client.protocol == Protocol::Gemini {
        if top.get("generateContentRequest").is_none() {
            return Ok(client.body.clone());
        }
        let mut value: Value = serde_json::from_slice(&client.body)
            .map_err(|e| GatewayError::BadJson(e.to_string()))?;
        value["generateContentRequest"]["model"] = Value::String(format!("models/{model}"));
        return serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(e.to_string()));
    }
    Ok(splice(
        &client.body,
        vec![top.set("model", json_string(model))],
    ))
}

/// A canonical request as the count body of a provider of another protocol.
fn translated_body(protocol: Protocol, request: &Request) -> Result<Bytes, GatewayError> {
    let invalid =
        |e: flexiproxy_protocol::json_schema::SchemaTooLarge| GatewayError::Invalid(e.to_string());
    if protocol == Protocol::Gemini {
        return gemini::count_tokens_request_from_canonical(request)
            .map(Bytes::from)
            .map_err(invalid);
    }
    let encoded = codec::encode_request(protocol, request).map_err(invalid)?;
    Ok(match serde_json::from_slice::<Value>(&encoded) {
        Ok(Value::Object(mut fields)) => {
            fields.retain(|key, _| ANTHROPIC_COUNT_FIELDS.contains(&key.as_str()));
            Bytes::from(Value::Object(fields).to_string())
        }
        _ => Bytes::from(encoded),
    })
}

/// The count in a provider's answer (`input_tokens` or `totalTokens`).
fn read_count(protocol: Protocol, body: &[u8], provider: &Provider) -> Result<u64, GatewayError> {
    let count = if protocol == Protocol::Gemini {
        gemini::count_tokens_total(body)
    } else {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|value| value.get("input_tokens").and_then(Value::as_u64))
    };
    count.ok_or_else(|| GatewayError::UpstreamInvalid {
        provider: provider.id.clone(),
        reason: "the token count answer has no count".to_owned(),
    })
}

/// A count in the client's shape.
fn answer(protocol: Protocol, tokens: u64) -> impl IntoResponse {
    let body = if protocol == Protocol::Gemini {
        gemini::count_tokens_body(tokens)
    } else {
        json!({ "input_tokens": tokens }).to_string().into_bytes()
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
}

/// Tokens an image costs in the estimate: about what a medium-sized image costs on the
/// providers that publish their formula.
const IMAGE_TOKENS: u64 = 1_000;
/// Framing tokens per message (role markers, separators).
const MESSAGE_TOKENS: u64 = 4;

/// An estimate of a request's input tokens: about four bytes of ASCII per token (what BPE
/// tokenizers average on English and code), one token per non-ASCII character (CJK scripts
/// take about one each), plus fixed costs for images and message framing.
pub fn estimate(request: &Request) -> u64 {
    let mut text = TextSize::default();
    for system in &request.system {
        text.add(system);
    }
    let mut fixed = 0;
    for message in &request.messages {
        fixed += MESSAGE_TOKENS;
        for part in &message.content {
            fixed += part_size(part, &mut text);
        }
    }
    for tool in &request.tools {
        text.add(&tool.name);
        text.add(tool.description.as_deref().unwrap_or_default());
        text.add(&tool.parameters.to_string());
    }
    text.tokens() + fixed
}

/// Adds a part's text to `text`; returns its fixed cost.
fn part_size(part: &Part, text: &mut TextSize) -> u64 {
    match part {
        Part::Text { text: t } => text.add(t),
        Part::Image(_) => return IMAGE_TOKENS,
        Part::ToolCall {
            name, arguments, ..
        } => {
            text.add(name);
            text.add(arguments);
        }
        Part::ToolResult { content, .. } => {
            return content.iter().map(|part| part_size(part, text)).sum();
        }
        Part::Reasoning(reasoning) => text.add(&reasoning.text),
        Part::Unknown(value) => text.add(&value.to_string()),
    }
    0
}

#[derive(Default)]
struct TextSize {
    ascii_bytes: u64,
    other_chars: u64,
}

impl TextSize {
    fn add(&mut self, text: &str) {
        let ascii = text.bytes().filter(u8::is_ascii).count() as u64;
        self.ascii_bytes += ascii;
        if ascii as usize != text.len() {
            self.other_chars += text.chars().filter(|c| !c.is_ascii()).count() as u64;
        }
    }

    fn tokens(&self) -> u64 {
        self.ascii_bytes.div_ceil(4) + self.other_chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flexiproxy_protocol::canonical::{Image, Message, Role};

    #[test]
    fn estimates_grow_with_text_images_and_scripts() {
        let mut request = Request {
            system: vec!["You are terse.".into()],
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::text("What is the capital of France?")],
            }],
            ..Request::default()
        };
        let short = estimate(&request);
        // 14 + 30 ASCII bytes → 11 tokens, plus one message.
        assert_eq!(short, 11 + MESSAGE_TOKENS);

        request.messages[0].content.push(Part::Image(Image::Url {
            url: "https://example.com/a.png".into(),
        }));
        assert_eq!(estimate(&request), short + IMAGE_TOKENS);

        let cjk = Request {
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::text("東京はどこですか")],
            }],
            ..Request::default()
        };
        assert_eq!(estimate(&cjk), 8 + MESSAGE_TOKENS);
    }

    #[test]
    fn anthropic_count_bodies_keep_only_what_the_endpoint_accepts() {
        let request = Request {
            model: "claude-x".into(),
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::text("hi")],
            }],
            max_tokens: Some(10),
            temperature: Some(0.5),
            ..Request::default()
        };
        let body: Value = serde_json::from_slice(
            &translated_body(Protocol::AnthropicMessages, &request).unwrap(),
        )
        .unwrap();
        assert_eq!(body["model"], "claude-x");
        assert!(body.get("max_tokens").is_none(), "{body}");
        assert!(body.get("temperature").is_none(), "{body}");

        let body: Value =
            serde_json::from_slice(&translated_body(Protocol::Gemini, &request).unwrap()).unwrap();
        assert_eq!(body["generateContentRequest"]["model"], "models/claude-x");
        assert!(
            body["generateContentRequest"]["contents"].is_array(),
            "{body}"
        );
    }
}
