//! Whole answers: a provider's `GenerateContentResponse` into a canonical [`Response`] and a
//! canonical one back for a Gemini client, the usage readers the Gemini-to-Gemini fast path
//! runs on bytes it forwards untouched, and the error body Gemini clients parse.
//!
//! A stream chunk is one of these responses, so the finish-reason mappings, the candidate,
//! usage and error shapes defined here are also what `stream_decode` and `stream_encode` use.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::request_decode::{Calls, decode_part};
use super::request_encode::{Audience, parts_out};
use super::wire::{InCandidate, InResponse, InUsage, OutContent};
use super::{FINISH_REASONS, PROTOCOL};
use crate::canonical::{DecodeError, FinishReason, Part, Response, TokenUsage};
use crate::to_json;

// ---------------------------------------------------------------------------------------------
// Usage read on the side (the Gemini-to-Gemini fast path forwards bytes and reads only this).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageOnly {
    #[serde(default)]
    usage_metadata: Option<InUsage>,
}

/// Usage from a whole (non-streaming) Gemini response body.
pub fn response_usage(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<UsageOnly>(body)
        .ok()?
        .usage_metadata
        .map(InUsage::to_canonical)
}

/// Usage from one stream event's `data` (one chunk). Gemini repeats cumulative usage in every
/// chunk; the last one is the total. Chunks without `"usageMetadata"` are skipped unparsed.
pub fn event_usage(data: &[u8]) -> Option<TokenUsage> {
    memchr::memmem::find(data, b"\"usageMetadata\"")?;
    response_usage(data)
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// Decodes a provider's whole `GenerateContentResponse` (its first candidate).
pub fn response_to_canonical(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: InResponse = serde_json::from_slice(body)?;
    if let Some(error) = wire.error {
        return Err(DecodeError::Invalid(format!(
            "the provider answered with an error: {} {}",
            error.status, error.message
        )));
    }
    let blocked = wire
        .prompt_feedback
        .and_then(|f| f.block_reason)
        .filter(|_| wire.candidates.is_empty());
    let mut calls = Calls::for_answer(&wire.response_id);
    let mut content = Vec::new();
    let finish = if let Some(candidate) = first_candidate(wire.candidates) {
        for (j, part) in candidate
            .content
            .map(|c| c.parts)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            decode_part(
                part,
                &format!("candidates[0].content.parts[{j}]"),
                &mut calls,
                &mut content,
            )?;
        }
        let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall { .. }));
        candidate
            .finish_reason
            .as_deref()
            .map(|r| finish_from_gemini(r, has_calls))
    } else if blocked.is_some() {
        // The prompt itself was refused: no candidates, only the reason.
        Some(FinishReason::ContentFilter)
    } else {
        return Err(DecodeError::Invalid(
            "the response has no candidates".into(),
        ));
    };
    Ok(Response {
        id: wire.response_id,
        model: wire.model_version,
        content,
        finish,
        stop_sequence: None,
        usage: wire.usage_metadata.unwrap_or_default().to_canonical(),
        origin: Some(PROTOCOL),
    })
}

/// Candidate 0 (`candidateCount` above one has no counterpart elsewhere).
pub(super) fn first_candidate(candidates: Vec<InCandidate>) -> Option<InCandidate> {
    candidates
        .into_iter()
        .find(|c| c.index.is_none_or(|i| i == 0))
}

/// Gemini says `STOP` also when the answer is function calls.
pub(super) fn finish_from_gemini(reason: &str, has_calls: bool) -> FinishReason {
    match reason {
        "STOP" if has_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

pub(super) fn finish_to_gemini(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Other(other) => FINISH_REASONS
            .iter()
            .find(|known| *known == other)
            .copied()
            .unwrap_or("OTHER"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OutUsage {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_content_token_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thoughts_token_count: Option<u64>,
}

impl OutUsage {
    pub(super) fn from_canonical(usage: &TokenUsage) -> Self {
        let input = usage.input.unwrap_or(0);
        let output = usage.output.unwrap_or(0);
        Self {
            prompt_token_count: input,
            candidates_token_count: output.saturating_sub(usage.reasoning.unwrap_or(0)),
            total_token_count: input.saturating_add(output),
            cached_content_token_count: usage.cached,
            thoughts_token_count: usage.reasoning,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutResponse<'a> {
    candidates: [OutCandidate<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<OutUsage>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OutCandidate<'a> {
    pub(super) content: OutContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) finish_reason: Option<&'static str>,
    pub(super) index: u32,
}

/// Encodes an answer for a Gemini client.
pub fn response_from_canonical(response: &Response) -> Vec<u8> {
    let names = HashMap::new();
    let wire = OutResponse {
        candidates: [OutCandidate {
            content: OutContent {
                role: "model",
                parts: parts_out(&response.content, Audience::Client, &names),
            },
            finish_reason: Some(response.finish.as_ref().map_or("STOP", finish_to_gemini)),
            index: 0,
        }],
        usage_metadata: Some(OutUsage::from_canonical(&response.usage)),
        model_version: &response.model,
        response_id: &response.id,
    };
    to_json(&wire)
}

/// Gemini's `status` for an HTTP status (google.rpc.Code names).
pub fn error_status(code: u16) -> &'static str {
    match code {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        // No google.rpc.Code means "bad gateway"; the provider behind is unavailable to us.
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        other if (400..500).contains(&other) => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    }
}

#[derive(Serialize)]
pub(super) struct OutError<'a> {
    pub(super) error: OutErrorBody<'a>,
}

#[derive(Serialize)]
pub(super) struct OutErrorBody<'a> {
    pub(super) code: u16,
    pub(super) message: &'a str,
    pub(super) status: &'static str,
}

/// The error body Gemini clients read: `{"error":{"code":…,"message":…,"status":…}}`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    to_json(&OutError {
        error: OutErrorBody {
            code: status,
            message,
            status: error_status(status),
        },
    })
}
