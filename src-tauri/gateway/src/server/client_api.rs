//! The client-facing API under `/v1`: the OpenAI-compatible endpoints Cursor, aider, `llm` and
//! the OpenAI SDKs call, and Anthropic Messages (`/v1/messages`, `?beta=true` too) for Claude
//! Code and the Anthropic SDKs, all with an adapter key.
//!
//! Handlers only turn axum's extractors into `relay` calls and render failures in the caller's
//! error shape (OpenAI's, or Anthropic's on `/v1/messages`); body-size and body-read rejections become 413/400 with a message that
//! says what went wrong.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::error::{ErrorShape, GatewayError, Rendered};
use crate::protocol::openai_chat::Endpoint;
use crate::relay;
use crate::state::AppState;

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
    let body = body_or_error(&state, ErrorShape::OpenAi, body)?;
    relay::forward(&state, endpoint, &headers, body)
        .await
        .map_err(Rendered::openai)
}

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rendered> {
    forward(state, Endpoint::ChatCompletions, headers, body).await
}

pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rendered> {
    forward(state, Endpoint::Completions, headers, body).await
}

pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rendered> {
    forward(state, Endpoint::Embeddings, headers, body).await
}

/// Anthropic Messages, for an `anthropic_messages` or `openai_chat` provider.
pub async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rendered> {
    let body = body_or_error(&state, ErrorShape::Anthropic, body)?;
    relay::messages(&state, &headers, body)
        .await
        .map_err(Rendered::anthropic)
}

/// The models this key can use: its adapter's model.
pub async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Rendered> {
    let adapter =
        relay::authenticate(&state.registry.snapshot(), &headers).map_err(Rendered::openai)?;
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": adapter.model_id,
            "object": "model",
            "created": adapter.create_time / 1000,
            "owned_by": adapter.provider_id,
        }]
    })))
}

pub async fn not_found() -> Rendered {
    Rendered::openai(GatewayError::NotFound(
        "this gateway serves /v1/chat/completions, /v1/completions, /v1/embeddings, \
         /v1/messages and /v1/models"
            .into(),
    ))
}
