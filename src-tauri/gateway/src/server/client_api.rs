//! The client-facing API, all with an adapter key: the OpenAI-compatible endpoints under `/v1`
//! (Chat Completions, Responses, completions, embeddings, models) that Cursor, aider, Codex and
//! the OpenAI SDKs call; Anthropic Messages (`/v1/messages`, `?beta=true` too, and
//! `count_tokens`) for Claude Code and the Anthropic SDKs; Gemini's
//! `models/{model}:generateContent|streamGenerateContent|countTokens` under `/v1beta` and `/v1`
//! for Gemini CLI and the google-genai SDKs; model lists in each protocol's shape.
//!
//! Handlers only turn axum's extractors into `proxy` / `token_count` calls and render failures
//! in the caller's error shape; body-size and body-read rejections become 413/400 with a
//! message that says what went wrong.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{MethodRouter, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ErrorShape, GatewayError, Rendered};
use crate::proxy;
use crate::proxy::token_count;
use crate::proxy::{ClientRequest, GeminiCall};
use crate::routing::registry::{Adapter, Snapshot};
use crate::server::access::presented_key;
use crate::state::AppState;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::gemini::Framing;
use flexiproxy_protocol::openai_chat::Endpoint;

fn body_or_error(
    state: &AppState,
    shape: ErrorShape,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Rendered> {
    body.map_err(|rejection| Rendered {
        shape,
        error: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::BodyTooLarge {
                limit: state.settings.max_body_bytes,
            }
        } else {
            GatewayError::Invalid(format!("could not read the request body: {rejection}"))
        },
    })
}

async fn forward(
    state: AppState,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rendered> {
    let body = body_or_error(&state, ErrorShape::OPENAI, body)?;
    proxy::forward(&state, endpoint, &headers, body)
        .await
        .map_err(Rendered::openai)
}

/// `POST` for an OpenAI endpoint relayed as it is: Chat Completions, completions, embeddings.
pub fn relayed(endpoint: Endpoint) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              headers: HeaderMap,
              body: Result<Bytes, BytesRejection>| async move {
            forward(state, endpoint, headers, body).await
        },
    )
}

/// `POST` for a request of `protocol`, answered by a provider of any protocol (Anthropic
/// Messages, OpenAI Responses); `endpoint` names it in usage rows.
pub fn answered(protocol: Protocol, endpoint: &'static str) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              headers: HeaderMap,
              body: Result<Bytes, BytesRejection>| async move {
            answer_in(&state, &headers, body, protocol, endpoint).await
        },
    )
}

/// A request of `protocol` (its endpoint named `endpoint` in usage rows), answered through
/// `proxy::answer` and refused in the protocol's own error shape.
async fn answer_in(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    protocol: Protocol,
    endpoint: &'static str,
) -> Result<Response, Rendered> {
    let shape = ErrorShape::Client(protocol);
    let body = body_or_error(state, shape, body)?;
    let client = ClientRequest {
        protocol,
        endpoint,
        body,
        gemini: None,
    };
    proxy::answer(state, headers, client)
        .await
        .map_err(|e| Rendered::new(shape, e))
}

/// Anthropic's token count, forwarded or estimated.
pub async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rendered> {
    let body = body_or_error(&state, ErrorShape::ANTHROPIC, body)?;
    let client = ClientRequest {
        protocol: Protocol::AnthropicMessages,
        endpoint: "count_tokens",
        body,
        gemini: None,
    };
    token_count::count(&state, &headers, client)
        .await
        .map_err(Rendered::anthropic)
}

/// Gemini's query parameters: `alt=sse` picks SSE framing, `key` carries the API key.
#[derive(Debug, Default, Deserialize)]
pub struct GeminiQuery {
    #[serde(default)]
    alt: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// Gemini clients may send their key as `?key=`; it joins the headers the key is read from.
fn with_query_key(mut headers: HeaderMap, query: &GeminiQuery) -> HeaderMap {
    if let Some(key) = &query.key
        && presented_key(&headers).is_none()
        && let Ok(value) = HeaderValue::from_str(key)
    {
        headers.insert("x-goog-api-key", value);
    }
    headers
}

/// `POST …/models/{model}:{method}` from a Gemini client.
pub async fn gemini_action(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    Query(query): Query<GeminiQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rendered> {
    let body = body_or_error(&state, ErrorShape::GEMINI, body)?;
    let headers = with_query_key(headers, &query);
    let gemini_error = |e| Rendered::new(ErrorShape::GEMINI, e);
    let Some((model, method)) = rest.rsplit_once(':') else {
        return Err(gemini_error(GatewayError::NotFound(format!(
            "`models/{rest}` names no method; use models/MODEL:generateContent, \
             :streamGenerateContent or :countTokens"
        ))));
    };
    let framing = if query.alt.as_deref() == Some("sse") {
        Framing::Sse
    } else {
        Framing::JsonArray
    };
    let call = |stream| GeminiCall {
        model: model.to_owned(),
        stream,
        framing,
    };
    let (endpoint, call) = match method {
        "generateContent" => ("generate_content", call(false)),
        "streamGenerateContent" => ("generate_content", call(true)),
        "countTokens" => ("count_tokens", call(false)),
        other => {
            return Err(gemini_error(GatewayError::NotFound(format!(
                "method `{other}`; this gateway serves generateContent, streamGenerateContent \
                 and countTokens"
            ))));
        }
    };
    let is_count = method == "countTokens";
    let client = ClientRequest {
        protocol: Protocol::Gemini,
        endpoint,
        body,
        gemini: Some(call),
    };
    let result = if is_count {
        token_count::count(&state, &headers, client).await
    } else {
        proxy::answer(&state, &headers, client).await
    };
    result.map_err(gemini_error)
}

/// Whether a `GET /v1/models…` comes from a Gemini client: google-genai lists models under
/// `/v1` by default, with its key in `x-goog-api-key` (or `?key=`) and no `Authorization`.
fn gemini_client(headers: &HeaderMap, query: &GeminiQuery) -> bool {
    !headers.contains_key(header::AUTHORIZATION)
        && !headers.contains_key("anthropic-version")
        && (headers.contains_key("x-goog-api-key") || query.key.is_some())
}

/// Who asks for an OpenAI- or Anthropic-shaped model list: the adapter its key names, and
/// whether it speaks Anthropic (it sends `anthropic-version`), which is also the shape a
/// refusal takes.
struct ListCaller {
    snapshot: Arc<Snapshot>,
    adapter: Arc<Adapter>,
    anthropic: bool,
}

impl ListCaller {
    fn of(state: &AppState, headers: &HeaderMap) -> Result<Self, Rendered> {
        let anthropic = headers.contains_key("anthropic-version");
        let shape = if anthropic {
            ErrorShape::ANTHROPIC
        } else {
            ErrorShape::OPENAI
        };
        let snapshot = state.registry.snapshot();
        let adapter =
            proxy::authenticate(&snapshot, headers).map_err(|e| Rendered::new(shape, e))?;
        Ok(Self {
            snapshot,
            adapter,
            anthropic,
        })
    }
}

/// `GET /v1/models`: OpenAI's list, Anthropic's when the client sends `anthropic-version` (the
/// Anthropic SDKs always do), Gemini's for a Gemini client.
pub async fn models(
    state: State<AppState>,
    query: Query<GeminiQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, Rendered> {
    if gemini_client(&headers, &query) {
        return gemini_models(state, None, query, headers).await;
    }
    let ListCaller {
        snapshot,
        adapter,
        anthropic,
    } = ListCaller::of(&state, &headers)?;
    let offered = offered_models(&snapshot, &adapter);
    Ok(Json(if anthropic {
        let data: Vec<Value> = offered
            .iter()
            .map(|m| anthropic_model(&adapter, m))
            .collect();
        json!({
            "data": data,
            "has_more": false,
            "first_id": offered.first().map(|m| &m.id),
            "last_id": offered.last().map(|m| &m.id),
        })
    } else {
        let data: Vec<Value> = offered.iter().map(|m| openai_model(&adapter, m)).collect();
        json!({ "object": "list", "data": data })
    }))
}

/// A model an adapter's clients may name, and who serves it.
#[derive(Debug)]
struct Offered {
    id: String,
    owner: String,
}

/// The models a client of `adapter` may name: its own model when it pins one; the provider's
/// models when it pins only a provider; every route and served model when it routes.
fn offered_models(snapshot: &Snapshot, adapter: &Adapter) -> Vec<Offered> {
    match (&adapter.provider_id, &adapter.model_id) {
        (provider, Some(model)) => vec![Offered {
            id: model.clone(),
            owner: provider.clone().unwrap_or_else(|| "flexiproxy".into()),
        }],
        (Some(provider), None) => snapshot
            .provider(provider)
            .map(|p| p.models())
            .unwrap_or_default()
            .into_iter()
            .map(|id| Offered {
                id,
                owner: provider.clone(),
            })
            .collect(),
        (None, None) => snapshot
            .model_names()
            .into_iter()
            .map(|id| {
                let owner = match snapshot.serving(&id) {
                    [only] => only.clone(),
                    _ => "flexiproxy".into(),
                };
                Offered { id, owner }
            })
            .collect(),
    }
}

/// `GET /v1/models/{id}`: one model, in the shape [`models`] picks.
pub async fn model(
    state: State<AppState>,
    requested: Path<String>,
    query: Query<GeminiQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, Rendered> {
    if gemini_client(&headers, &query) {
        return gemini_models(state, Some(requested), query, headers).await;
    }
    let ListCaller {
        snapshot,
        adapter,
        anthropic,
    } = ListCaller::of(&state, &headers)?;
    let offered = named_model(&snapshot, &adapter, &requested.0);
    Ok(Json(if anthropic {
        anthropic_model(&adapter, &offered)
    } else {
        openai_model(&adapter, &offered)
    }))
}

/// `GET /v1beta/models` (and `/v1beta/models/{id}`): Gemini's shape.
pub async fn gemini_models(
    State(state): State<AppState>,
    rest: Option<Path<String>>,
    Query(query): Query<GeminiQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, Rendered> {
    let headers = with_query_key(headers, &query);
    let snapshot = state.registry.snapshot();
    let adapter = proxy::authenticate(&snapshot, &headers)
        .map_err(|e| Rendered::new(ErrorShape::GEMINI, e))?;
    let gemini = |m: &Offered| {
        json!({
            "name": format!("models/{}", m.id),
            "baseModelId": m.id,
            "version": "flexiproxy",
            "displayName": m.id,
            "description": format!("{} via FlexiProxy provider `{}`", m.id, m.owner),
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        })
    };
    Ok(Json(match rest {
        Some(Path(id)) => {
            let id = id.strip_prefix("models/").unwrap_or(&id);
            gemini(&named_model(&snapshot, &adapter, id))
        }
        None => {
            let models: Vec<Value> = offered_models(&snapshot, &adapter)
                .iter()
                .map(gemini)
                .collect();
            json!({ "models": models })
        }
    }))
}

/// One model by name: a pinned adapter answers every name with its model (that is what a
/// request naming it would reach); a routing adapter describes the name itself.
fn named_model(snapshot: &Snapshot, adapter: &Adapter, requested: &str) -> Offered {
    if adapter.model_id.is_some()
        && let Some(first) = offered_models(snapshot, adapter).into_iter().next()
    {
        return first;
    }
    let owner = adapter
        .provider_id
        .clone()
        .unwrap_or_else(|| match snapshot.serving(requested) {
            [only] => only.clone(),
            _ => "flexiproxy".into(),
        });
    Offered {
        id: requested.to_owned(),
        owner,
    }
}

fn openai_model(adapter: &Adapter, model: &Offered) -> Value {
    json!({
        "id": model.id,
        "object": "model",
        "created": adapter.create_time / 1000,
        "owned_by": model.owner,
    })
}

fn anthropic_model(adapter: &Adapter, model: &Offered) -> Value {
    let created = rfc3339(adapter.create_time);
    json!({
        "type": "model",
        "id": model.id,
        "display_name": model.id,
        "created_at": created,
    })
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2025-01-31T12:00:00Z`).
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub async fn not_found() -> Rendered {
    Rendered::openai(GatewayError::NotFound(
        "this gateway serves /v1/chat/completions, /v1/responses, /v1/completions, \
         /v1/embeddings, /v1/messages, /v1/messages/count_tokens, /v1/models and Gemini's \
         /v1beta/models/MODEL:generateContent"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
