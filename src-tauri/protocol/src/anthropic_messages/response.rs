//! Whole answers: a provider's non-streaming message into a canonical [`Response`] and a
//! canonical one back for an Anthropic client, the usage readers the Anthropic-to-Anthropic
//! fast path runs on bytes it forwards untouched, and the error body Anthropic clients parse.
//!
//! The stop-reason mappings, `OutUsage` and the error shapes defined here are also what
//! `stream_decode` and `stream_encode` use: a stream's `message_delta` and `error` events carry
//! the same fields.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::PROTOCOL;
use super::request::{block_to_part, part_out};
use super::wire::{InResponse, InUsage, OutBlock, OutPart};
use crate::canonical::{
    DecodeError, FinishReason, Part, Response, TokenUsage, decode_each, untag_proof,
};
use crate::to_json;

// ---------------------------------------------------------------------------------------------
// Usage read on the side (the Anthropic-to-Anthropic fast path forwards bytes and reads only
// this).

#[derive(Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<InUsage>,
    #[serde(default)]
    message: Option<Box<UsageOnly>>,
}

/// Usage from a whole (non-streaming) Anthropic response body.
pub fn response_usage(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<UsageOnly>(body)
        .ok()?
        .usage
        .map(|u| u.to_canonical())
}

/// Usage from one stream event's `data`: `message_start` (under `message`) or `message_delta`
/// (top level). Events without `"usage"` are recognised without parsing. Merge the result
/// into what is known with [`merge_usage`]: `message_delta` usually carries only output.
///
/// [`merge_usage`]: crate::canonical::merge_usage
pub fn event_usage(data: &[u8]) -> Option<TokenUsage> {
    memchr::memmem::find(data, b"\"usage\"")?;
    let wire: UsageOnly = serde_json::from_slice(data).ok()?;
    wire.usage
        .or_else(|| wire.message.and_then(|m| m.usage))
        .map(|u| u.to_canonical())
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// Decodes a provider's non-streaming Anthropic answer.
pub fn response_to_canonical(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: InResponse = serde_json::from_slice(body)?;
    let content = decode_each(wire.content, "content", block_to_part)?;
    Ok(Response {
        id: wire.id,
        model: wire.model,
        content,
        finish: wire.stop_reason.as_deref().map(finish_from_anthropic),
        stop_sequence: wire.stop_sequence,
        usage: wire.usage.to_canonical(),
        origin: Some(PROTOCOL),
    })
}

pub(super) fn finish_from_anthropic(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

pub(super) fn finish_to_anthropic(
    finish: &FinishReason,
    stop_sequence: Option<&str>,
) -> &'static str {
    match finish {
        FinishReason::Stop if stop_sequence.is_some() => "stop_sequence",
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(other) => match other.as_str() {
            "pause_turn" => "pause_turn",
            _ => "end_turn",
        },
    }
}

#[derive(Serialize)]
pub(super) struct OutUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
}

impl OutUsage {
    pub(super) fn from_canonical(usage: &TokenUsage) -> Self {
        let cached = usage.cached.unwrap_or(0);
        Self {
            input_tokens: usage.input.unwrap_or(0).saturating_sub(cached),
            output_tokens: usage.output.unwrap_or(0),
            cache_read_input_tokens: usage.cached,
        }
    }
}

#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutPart<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'a str>,
    usage: OutUsage,
}

/// Encodes an answer for an Anthropic client.
pub fn response_from_canonical(response: &Response) -> Vec<u8> {
    let native = response.origin == Some(PROTOCOL);
    let content = response
        .content
        .iter()
        .filter_map(|part| match part {
            // The client is shown reasoning from any provider. The signature is Anthropic's
            // own, or another provider's proof tagged with its issuer (`canonical::tag_proof`)
            // for the client to hand back; a bare foreign one is never shown, and the field is
            // then empty (the SDK types require it). Anthropic's redacted thinking stays
            // redacted.
            Part::Reasoning(reasoning)
                if !(reasoning.signed_for(PROTOCOL) && reasoning.encrypted.is_some()) =>
            {
                let own = reasoning.signed_for(PROTOCOL);
                let signature = reasoning
                    .signature
                    .as_deref()
                    .or(reasoning.encrypted.as_deref())
                    .filter(|proof| own || untag_proof(proof).is_some())
                    .unwrap_or("");
                // Nothing to show and nothing to hand back: no block.
                if reasoning.text.is_empty() && signature.is_empty() {
                    return None;
                }
                Some(OutPart::Block(OutBlock::Thinking {
                    thinking: &reasoning.text,
                    signature,
                }))
            }
            other => part_out(other, native),
        })
        .collect();
    let stop_sequence = response.stop_sequence.as_deref();
    let wire = OutResponse {
        id: &response.id,
        kind: "message",
        role: "assistant",
        model: &response.model,
        content,
        stop_reason: response
            .finish
            .as_ref()
            .map(|f| finish_to_anthropic(f, stop_sequence)),
        stop_sequence,
        usage: OutUsage::from_canonical(&response.usage),
    };
    to_json(&wire)
}

/// Anthropic's `error.type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

#[derive(Serialize)]
struct OutError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
pub(super) struct ErrorObject<'a> {
    #[serde(rename = "type")]
    pub(super) kind: Cow<'a, str>,
    pub(super) message: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct InError {
    #[serde(rename = "type", default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) message: String,
}

/// The error body Anthropic clients read: `{"type":"error","error":{"type":…,"message":…}}`.
pub fn error_body(error_type: &str, message: &str) -> Vec<u8> {
    to_json(&OutError {
        kind: "error",
        error: ErrorObject {
            kind: Cow::Borrowed(error_type),
            message: Cow::Borrowed(message),
        },
    })
}
