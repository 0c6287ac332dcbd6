//! Whole (non-streaming) Responses answers, the usage they report, and OpenAI's error body.
//!
//! [`response_usage`] and [`event_usage`] read token counts without building the answer, for
//! the gateway's usage records. [`response_to_canonical`] and
//! [`response_from_canonical_with_custom_tools`] convert the `response` object. The rules the
//! stream files share with them live here too, so a streamed answer gets the same finish
//! reason, status and ids as a whole one: `OutputSeen` and `finish_from_status` read a
//! provider's finish, `status_of`, `response_id` and `item_id` write a client's.
//! [`report_body`] is the error body every OpenAI client reads, Chat Completions clients
//! included.

use serde::Deserialize;
use serde_json::Value;

use super::PROTOCOL;
use super::request::{
    client_encrypted, content_part, custom_input, is_content_part, reasoning_part,
};
use super::wire::{
    InCustomToolCall, InFunctionCall, InOutputMessage, InReasoningItem, InResponse, OutError,
    OutErrorBody, OutIncomplete, OutOutput, OutOutputItem, OutResponse, OutUsage, UsageOnly,
    output_text, summary,
};
use crate::canonical::{DecodeError, FinishReason, Part, Response, TokenUsage};
use crate::codec::ErrorReport;
use crate::to_json;

// ---------------------------------------------------------------------------------------------
// Usage.

/// Usage from a whole (non-streaming) response body.
pub fn response_usage(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<UsageOnly>(body)
        .ok()?
        .usage
        .map(Into::into)
}

/// Usage from one stream event's `data`: the `response` object of `response.completed`,
/// `response.incomplete` or `response.failed`. Events without `"usage"` (all the deltas) are
/// recognised without parsing; `"usage":null` (in `response.created`) gives `None`.
pub fn event_usage(data: &[u8]) -> Option<TokenUsage> {
    memchr::memmem::find(data, b"\"usage\"")?;
    let wire: UsageOnly = serde_json::from_slice(data).ok()?;
    wire.response
        .and_then(|r| r.usage)
        .or(wire.usage)
        .map(Into::into)
}

// ---------------------------------------------------------------------------------------------
// Response: Responses -> canonical.

/// What an answer's output items say about how it ended.
#[derive(Debug, Default)]
pub(super) struct OutputSeen {
    pub(super) tool_calls: bool,
    pub(super) refusal: bool,
}

/// Decodes a provider's non-streaming Responses answer.
pub fn response_to_canonical(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: InResponse = serde_json::from_slice(body)?;
    let mut content = Vec::new();
    let mut seen = OutputSeen::default();
    for (i, item) in wire.output.into_iter().enumerate() {
        output_item_parts(item, &format!("output[{i}]"), &mut seen, &mut content)?;
    }
    Ok(Response {
        id: wire.id,
        model: wire.model,
        content,
        finish: finish_from_status(
            wire.status.as_deref(),
            wire.incomplete_details.and_then(|d| d.reason).as_deref(),
            &seen,
        ),
        stop_sequence: None,
        usage: wire.usage.map(Into::into).unwrap_or_default(),
        origin: Some(PROTOCOL),
    })
}

fn output_item_parts(
    item: Value,
    at: &str,
    seen: &mut OutputSeen,
    content: &mut Vec<Part>,
) -> Result<(), DecodeError> {
    let invalid = |e: serde_json::Error| DecodeError::Invalid(format!("{at}: {e}"));
    match item.get("type").and_then(Value::as_str) {
        Some("message") => {
            let message = InOutputMessage::deserialize(&item).map_err(invalid)?;
            for (j, part) in message.content.into_iter().enumerate() {
                if part.get("type").and_then(Value::as_str) == Some("refusal") {
                    seen.refusal = true;
                }
                content.push(content_part(part, &format!("{at}.content[{j}]"))?);
            }
        }
        Some("reasoning") => {
            let reasoning = InReasoningItem::deserialize(&item).map_err(invalid)?;
            content.push(reasoning_part(reasoning));
        }
        Some("function_call") => {
            let call = InFunctionCall::deserialize(&item).map_err(invalid)?;
            seen.tool_calls = true;
            content.push(call.into());
        }
        Some("custom_tool_call") => {
            let call = InCustomToolCall::deserialize(&item).map_err(invalid)?;
            seen.tool_calls = true;
            content.push(call.into());
        }
        _ => content.push(Part::Unknown(item)),
    }
    Ok(())
}

/// The canonical finish reason of a `response` with `status`. A completed answer that calls
/// tools stopped for them; a refusal counts as the provider's filter.
pub(super) fn finish_from_status(
    status: Option<&str>,
    incomplete_reason: Option<&str>,
    seen: &OutputSeen,
) -> Option<FinishReason> {
    match status {
        None | Some("completed") => Some(if seen.tool_calls {
            FinishReason::ToolCalls
        } else if seen.refusal {
            FinishReason::ContentFilter
        } else {
            FinishReason::Stop
        }),
        Some("incomplete") => Some(match incomplete_reason {
            Some("max_output_tokens") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            Some(other) => FinishReason::Other(other.to_owned()),
            None => FinishReason::Other("incomplete".to_owned()),
        }),
        Some("in_progress" | "queued") => None,
        Some(other) => Some(FinishReason::Other(other.to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// Response: canonical -> Responses (shared by the whole answer and the stream's events).

/// The terminal status of an answer that ended for `finish`.
pub(super) fn status_of(finish: Option<&FinishReason>) -> (&'static str, Option<OutIncomplete>) {
    match finish {
        Some(FinishReason::Length) => (
            "incomplete",
            Some(OutIncomplete {
                reason: "max_output_tokens",
            }),
        ),
        Some(FinishReason::ContentFilter) => (
            "incomplete",
            Some(OutIncomplete {
                reason: "content_filter",
            }),
        ),
        _ => ("completed", None),
    }
}

/// A response id as Responses clients expect it (`resp_…`), from the upstream's id.
pub(super) fn response_id(id: &str) -> String {
    if id.is_empty() {
        "resp_flexiproxy".to_owned()
    } else if id.starts_with("resp_") {
        id.to_owned()
    } else {
        format!("resp_{id}")
    }
}

/// An output item's id: deterministic, unique within the response (`msg_<id>_<n>`, …).
pub(super) fn item_id(prefix: &str, response_id: &str, output_index: usize) -> String {
    let base = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{base}_{output_index}")
}

/// Encodes an answer for a Responses client; `created` is usually
/// [`openai_chat::unix_now`](crate::openai_chat::unix_now). Tool calls are all
/// `function_call` items; see [`response_from_canonical_with_custom_tools`].
pub fn response_from_canonical(response: &Response, created: u64) -> Vec<u8> {
    response_from_canonical_with_custom_tools(response, created, &[])
}

/// [`response_from_canonical`] for a client that declared the custom tools `custom_tools`
/// (from [`custom_tool_names`]): their calls become `custom_tool_call` items with the text.
///
/// [`custom_tool_names`]: super::custom_tool_names
pub fn response_from_canonical_with_custom_tools(
    response: &Response,
    created: u64,
    custom_tools: &[String],
) -> Vec<u8> {
    let native = response.origin == Some(PROTOCOL);
    let id = response_id(&response.id);
    // Item ids first, so the items below can borrow them.
    let ids: Vec<String> = response
        .content
        .iter()
        .enumerate()
        .map(|(n, part)| {
            let prefix = match part {
                Part::Reasoning(_) => "rs",
                Part::ToolCall { name, .. } if custom_tools.contains(name) => "ctc",
                Part::ToolCall { .. } => "fc",
                _ => "msg",
            };
            item_id(prefix, &id, n)
        })
        .collect();
    let mut output: Vec<OutOutput<'_>> = Vec::new();
    for (part, item_id) in response.content.iter().zip(&ids) {
        match part {
            Part::Text { text } => {
                // Adjacent text parts share one message item.
                if let Some(OutOutput::Item(OutOutputItem::Message { content, .. })) =
                    output.last_mut()
                {
                    content.push(output_text(text));
                } else {
                    output.push(OutOutput::Item(OutOutputItem::Message {
                        id: item_id,
                        status: "completed",
                        role: "assistant",
                        content: vec![output_text(text)],
                    }));
                }
            }
            Part::Reasoning(reasoning) => {
                output.push(OutOutput::Item(OutOutputItem::Reasoning {
                    id: item_id,
                    summary: summary(&reasoning.text),
                    encrypted_content: client_encrypted(reasoning),
                }));
            }
            Part::ToolCall {
                id: call_id,
                name,
                arguments,
            } => output.push(OutOutput::Item(call_item(
                item_id,
                call_id,
                name,
                arguments,
                custom_tools.contains(name),
            ))),
            Part::Unknown(value) if native && !is_content_part(value) => {
                output.push(OutOutput::Raw(value));
            }
            _ => {}
        }
    }
    let (status, incomplete_details) = status_of(response.finish.as_ref());
    let model = &response.model;
    to_json(&OutResponse {
        id: &id,
        object: "response",
        created_at: created,
        status,
        error: None,
        incomplete_details,
        instructions: None,
        model,
        output,
        parallel_tool_calls: true,
        tool_choice: "auto",
        tools: [],
        usage: Some(OutUsage::from_canonical(&response.usage)),
    })
}

fn call_item<'a>(
    id: &'a str,
    call_id: &'a str,
    name: &'a str,
    arguments: &'a str,
    custom: bool,
) -> OutOutputItem<'a> {
    if custom {
        OutOutputItem::CustomToolCall {
            id,
            status: "completed",
            call_id,
            name,
            input: custom_input(arguments),
        }
    } else {
        OutOutputItem::FunctionCall {
            id,
            status: "completed",
            // Clients parse the arguments as JSON; "" is not.
            arguments: if arguments.is_empty() {
                "{}"
            } else {
                arguments
            },
            call_id,
            name,
        }
    }
}

/// OpenAI's `error.type` for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// The error body OpenAI clients read: `{"error":{"message","type","param","code"}}`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    report_body(&ErrorReport {
        status,
        message,
        code: None,
        kind: None,
    })
}

/// OpenAI's error body (Chat Completions and Responses clients read the same shape), with the
/// report's code and kind where it has them, else the ones its status implies.
pub fn report_body(report: &ErrorReport<'_>) -> Vec<u8> {
    to_json(&OutError {
        error: OutErrorBody {
            message: report.message,
            kind: report.kind.unwrap_or_else(|| error_type(report.status)),
            param: None,
            // The codes clients act on: Codex retries `rate_limit_exceeded` and server errors.
            code: report.code.or(match report.status {
                429 => Some("rate_limit_exceeded"),
                500..=599 => Some("server_error"),
                _ => None,
            }),
        },
    })
}
