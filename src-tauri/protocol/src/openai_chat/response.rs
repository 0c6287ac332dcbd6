//! Whole (non-streaming) Chat Completions answers, and the usage they report.
//!
//! [`response_usage`] and [`chunk_usage`] serve the same-protocol fast path: the gateway forwards
//! the bytes and only needs the token counts, read without building the message.
//! [`response_to_canonical`] and [`response_from_canonical`] serve the translated path; the
//! finish-reason mapping here is also what the two stream files use, so a finish reads the
//! same whether the answer streamed or not.

use super::request::assistant_parts;
use super::wire::{
    InChatResponse, OutChatChoice, OutChatResponse, OutChatUsage, OutResponseMessage, OutToolCall,
    UsageCarrier,
};
use crate::Protocol;
use crate::canonical::{DecodeError, FinishReason, Part, Response, TokenUsage};
use crate::to_json;

/// Usage from a whole (non-streaming) response body.
pub fn response_usage(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<UsageCarrier>(body)
        .ok()?
        .usage
        .map(Into::into)
}

/// What a stream chunk's `data` says about usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkUsage {
    pub usage: Option<TokenUsage>,
    /// The chunk carries only usage (`choices: []`): the one `include_usage` adds at the end.
    pub usage_only: bool,
}

/// Reads usage from one chunk's `data`. Most chunks carry no usage (or `"usage":null`); those
/// are recognised without parsing.
pub fn chunk_usage(data: &[u8]) -> ChunkUsage {
    if memchr::memmem::find(data, b"\"usage\"").is_none() {
        return ChunkUsage::default();
    }
    match serde_json::from_slice::<UsageCarrier>(data) {
        Ok(UsageCarrier {
            usage: Some(usage),
            choices,
        }) => ChunkUsage {
            usage: Some(usage.into()),
            usage_only: choices.is_none_or(|c| c.is_empty()),
        },
        _ => ChunkUsage::default(),
    }
}

pub(super) fn finish_from_openai(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

pub(super) fn finish_to_openai(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

/// Decodes a provider's non-streaming Chat Completions answer (its first choice).
pub fn response_to_canonical(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: InChatResponse = serde_json::from_slice(body)?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| DecodeError::Invalid("the response has no choices".into()))?;
    let content = assistant_parts(choice.message, "choices[0].message")?;
    Ok(Response {
        id: wire.id,
        model: wire.model,
        content,
        finish: choice.finish_reason.as_deref().map(finish_from_openai),
        stop_sequence: None,
        usage: wire.usage.map(Into::into).unwrap_or_default(),
        origin: Some(Protocol::OpenAiChat),
    })
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Encodes an answer for a Chat Completions client; `created` is usually [`unix_now`].
pub fn response_from_canonical(response: &Response, created: u64) -> Vec<u8> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for part in &response.content {
        match part {
            Part::Text { text: t } => text.push_str(t),
            // Reasoning text is shown; its signature never leaves for an OpenAI client.
            Part::Reasoning(r) => reasoning.push_str(&r.text),
            _ => tool_calls.extend(OutToolCall::of(part)),
        }
    }
    let wire = OutChatResponse {
        id: &response.id,
        object: "chat.completion",
        created,
        model: &response.model,
        choices: [OutChatChoice {
            index: 0,
            message: OutResponseMessage {
                role: "assistant",
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                tool_calls,
            },
            logprobs: None,
            finish_reason: response.finish.as_ref().map(finish_to_openai),
        }],
        usage: OutChatUsage::from_canonical(&response.usage),
    };
    to_json(&wire)
}
