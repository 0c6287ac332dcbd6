//! Chat Completions on the wire, as serde reads and writes it: the request, the provider's
//! whole answer, its stream chunks, and the usage object all three carry.
//!
//! `In…` types are what the gateway reads (a client's request, a provider's answer or chunk);
//! they default what hosts leave out, since OpenAI-compatible servers differ in what they send.
//! `Out…` types are what it writes, borrowing from the canonical values they encode. All are
//! private to `openai_chat`: `request`, `response` and the two stream files convert them to
//! and from [`canonical`](crate::canonical), so no other module depends on the wire's shape.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ExtraFields;
use crate::canonical::{Part, TokenUsage};
use crate::openai_usage::{
    self, InCachedTokens, InReasoningTokens, OutCachedTokens, OutReasoningTokens,
};

// ---------------------------------------------------------------------------------------------
// Usage, in answers and chunks.

#[derive(Deserialize)]
pub(super) struct WireUsage {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    pub(super) prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    pub(super) completion_tokens: Option<u64>,
    #[serde(default)]
    pub(super) prompt_tokens_details: Option<InCachedTokens>,
    #[serde(default)]
    pub(super) completion_tokens_details: Option<InReasoningTokens>,
}

impl From<WireUsage> for TokenUsage {
    fn from(wire: WireUsage) -> Self {
        openai_usage::to_canonical(
            wire.prompt_tokens,
            wire.completion_tokens,
            wire.prompt_tokens_details,
            wire.completion_tokens_details,
        )
    }
}

#[derive(Deserialize)]
pub(super) struct UsageCarrier {
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
    #[serde(default)]
    pub(super) choices: Option<Vec<IgnoredAny>>,
}

// ---------------------------------------------------------------------------------------------
// Requests: what a client sends.

#[derive(Deserialize)]
pub(super) struct InChatRequest {
    pub(super) model: String,
    pub(super) messages: Vec<InChatMessage>,
    #[serde(default)]
    pub(super) tools: Option<Vec<Value>>,
    #[serde(default)]
    pub(super) tool_choice: Option<Value>,
    #[serde(default)]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub(super) max_tokens: Option<u64>,
    #[serde(default)]
    pub(super) max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) stop: Option<InStop>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(default)]
    pub(super) reasoning_effort: Option<String>,
    #[serde(default)]
    pub(super) response_format: Option<Value>,
    #[serde(flatten)]
    pub(super) extra: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InStop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InChatContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
pub(super) struct InChatMessage {
    #[serde(default)]
    pub(super) role: String,
    #[serde(default)]
    pub(super) content: Option<InChatContent>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<InToolCall>>,
    #[serde(default)]
    pub(super) tool_call_id: Option<String>,
    /// DeepSeek and most reasoning hosts put reasoning text here.
    #[serde(default)]
    pub(super) reasoning_content: Option<String>,
    #[serde(default)]
    pub(super) refusal: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InToolCall {
    #[serde(default)]
    pub(super) id: String,
    pub(super) function: InFunction,
}

#[derive(Deserialize)]
pub(super) struct InFunction {
    pub(super) name: String,
    #[serde(default)]
    pub(super) arguments: String,
}

// ---------------------------------------------------------------------------------------------
// Requests: what a provider is sent.

#[derive(Serialize)]
pub(super) struct OutChatRequest<'a> {
    pub(super) model: &'a str,
    pub(super) messages: Vec<OutChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stream_options: Option<IncludeUsage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<OutChatTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<OutChatToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) response_format: Option<Value>,
    #[serde(flatten)]
    pub(super) extra: Option<ExtraFields<'a>>,
}

#[derive(Serialize)]
pub(super) struct IncludeUsage {
    pub(super) include_usage: bool,
}

#[derive(Serialize)]
pub(super) struct OutChatMessage<'a> {
    pub(super) role: &'static str,
    /// `null` for an assistant turn that only calls tools.
    pub(super) content: Option<OutChatContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutChatContent<'a> {
    Text(String),
    Parts(Vec<OutChatPart<'a>>),
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutChatPart<'a> {
    Typed(OutTypedPart<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutTypedPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImageUrl },
}

#[derive(Serialize)]
pub(super) struct OutImageUrl {
    pub(super) url: String,
}

#[derive(Serialize)]
pub(super) struct OutToolCall<'a> {
    pub(super) id: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
pub(super) struct OutFunctionCall<'a> {
    pub(super) name: &'a str,
    pub(super) arguments: &'a str,
}

impl<'a> OutToolCall<'a> {
    /// The call a canonical [`Part::ToolCall`] is; `None` for any other part.
    pub(super) fn of(part: &'a Part) -> Option<Self> {
        let Part::ToolCall {
            id,
            name,
            arguments,
        } = part
        else {
            return None;
        };
        Some(Self {
            id,
            kind: "function",
            function: OutFunctionCall {
                name,
                // An empty string is not valid JSON; providers reject it.
                arguments: if arguments.is_empty() {
                    "{}"
                } else {
                    arguments
                },
            },
        })
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutChatTool<'a> {
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: OutFunctionDef<'a>,
    },
    Native(&'a Value),
}

#[derive(Serialize)]
pub(super) struct OutFunctionDef<'a> {
    pub(super) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<&'a str>,
    pub(super) parameters: Cow<'a, Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutChatToolChoice<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: OutNamed<'a>,
    },
}

#[derive(Serialize)]
pub(super) struct OutNamed<'a> {
    pub(super) name: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Whole answers.

#[derive(Deserialize)]
pub(super) struct InChatResponse {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) model: String,
    pub(super) choices: Vec<InChatChoice>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(super) struct InChatChoice {
    pub(super) message: InChatMessage,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Serialize)]
pub(super) struct OutChatResponse<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: [OutChatChoice<'a>; 1],
    pub(super) usage: OutChatUsage,
}

#[derive(Serialize)]
pub(super) struct OutChatChoice<'a> {
    pub(super) index: u32,
    pub(super) message: OutResponseMessage<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
pub(super) struct OutResponseMessage<'a> {
    pub(super) role: &'static str,
    pub(super) content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tool_calls: Vec<OutToolCall<'a>>,
}

#[derive(Serialize)]
pub(super) struct OutChatUsage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) prompt_tokens_details: Option<OutCachedTokens>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) completion_tokens_details: Option<OutReasoningTokens>,
}

impl OutChatUsage {
    /// Chat Completions leaves out the details it has no count for.
    pub(super) fn from_canonical(usage: &TokenUsage) -> Self {
        let (prompt_tokens, completion_tokens, total_tokens) = openai_usage::totals(usage);
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens,
            prompt_tokens_details: usage.cached.map(OutCachedTokens::new),
            completion_tokens_details: usage.reasoning.map(OutReasoningTokens::new),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stream chunks.

#[derive(Deserialize)]
pub(super) struct InChunk {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) model: String,
    #[serde(default)]
    pub(super) choices: Vec<InChunkChoice>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct InChunkChoice {
    #[serde(default)]
    pub(super) index: u32,
    #[serde(default)]
    pub(super) delta: Option<InChunkDelta>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InChunkDelta {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) reasoning_content: Option<String>,
    /// OpenRouter and some vLLM versions name reasoning text `reasoning`.
    #[serde(default)]
    pub(super) reasoning: Option<String>,
    #[serde(default)]
    pub(super) refusal: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<InToolCallDelta>>,
}

#[derive(Deserialize)]
pub(super) struct InToolCallDelta {
    #[serde(default)]
    pub(super) index: Option<usize>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) function: Option<InFunctionDelta>,
}

#[derive(Deserialize)]
pub(super) struct InFunctionDelta {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) arguments: Option<String>,
}

#[derive(Serialize)]
pub(super) struct OutChunk<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: Vec<OutChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<OutChatUsage>,
}

#[derive(Serialize)]
pub(super) struct OutChunkChoice<'a> {
    pub(super) index: u32,
    pub(super) delta: OutChunkDelta<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
pub(super) struct OutChunkDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_calls: Option<[OutToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
pub(super) struct OutToolCallDelta<'a> {
    pub(super) index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<&'static str>,
    pub(super) function: OutFunctionDelta<'a>,
}

#[derive(Serialize)]
pub(super) struct OutFunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
    pub(super) arguments: &'a str,
}

#[derive(Serialize)]
pub(super) struct OutStreamError<'a> {
    pub(super) error: OutStreamErrorBody<'a>,
}

#[derive(Serialize)]
pub(super) struct OutStreamErrorBody<'a> {
    pub(super) message: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) code: Option<()>,
}
