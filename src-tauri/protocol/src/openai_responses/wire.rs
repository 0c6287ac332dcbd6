//! OpenAI Responses on the wire, as serde reads and writes it: the request with its input
//! items and tools, the `response` object with its output items and usage, the error body, and
//! the stream's `response.*` events.
//!
//! `In…` types are what the gateway reads (a client's request, a provider's answer or event).
//! Items whose shape depends on their `type` arrive as [`Value`] and are read one by one where
//! they are converted, so an item type this code does not know is kept rather than refused.
//! `Out…` types are what it writes, borrowing from the canonical values they encode; the
//! answer's types serve both the whole answer and the stream, whose terminal event carries the
//! whole response. All are private to `openai_responses`: `request`, `response` and the two
//! stream files convert them to and from [`canonical`](crate::canonical).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ExtraFields;
use crate::canonical::TokenUsage;
use crate::openai_usage::{
    self, InCachedTokens, InReasoningTokens, OutCachedTokens, OutReasoningTokens,
};

// ---------------------------------------------------------------------------------------------
// Usage, in answers and in the stream's terminal events.

#[derive(Deserialize, Default)]
pub(super) struct InUsage {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    pub(super) input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    pub(super) output_tokens: Option<u64>,
    #[serde(default)]
    pub(super) input_tokens_details: Option<InCachedTokens>,
    #[serde(default)]
    pub(super) output_tokens_details: Option<InReasoningTokens>,
}

impl From<InUsage> for TokenUsage {
    fn from(wire: InUsage) -> Self {
        openai_usage::to_canonical(
            wire.input_tokens,
            wire.output_tokens,
            wire.input_tokens_details,
            wire.output_tokens_details,
        )
    }
}

#[derive(Deserialize)]
pub(super) struct UsageOnly {
    #[serde(default)]
    pub(super) usage: Option<InUsage>,
    #[serde(default)]
    pub(super) response: Option<Box<UsageOnly>>,
}

// ---------------------------------------------------------------------------------------------
// Requests: what a client sends.

#[derive(Deserialize)]
pub(super) struct InRequest {
    pub(super) model: String,
    #[serde(default)]
    pub(super) input: Option<InInput>,
    #[serde(default)]
    pub(super) instructions: Option<String>,
    #[serde(default)]
    pub(super) tools: Option<Vec<Value>>,
    #[serde(default)]
    pub(super) tool_choice: Option<Value>,
    #[serde(default)]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub(super) max_output_tokens: Option<u64>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) reasoning: Option<Value>,
    #[serde(default)]
    pub(super) text: Option<Value>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(flatten)]
    pub(super) extra: Map<String, Value>,
}

/// `input` is a plain string (one user message) or a list of items.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InInput {
    Text(String),
    Items(Vec<Value>),
}

/// Message content: a plain string or a list of content parts.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
pub(super) struct InMessageItem {
    pub(super) role: String,
    pub(super) content: InContent,
}

#[derive(Deserialize)]
pub(super) struct InFunctionCall {
    pub(super) call_id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) arguments: String,
}

#[derive(Deserialize)]
pub(super) struct InCustomToolCall {
    pub(super) call_id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) input: String,
}

#[derive(Deserialize)]
pub(super) struct InToolOutput {
    pub(super) call_id: String,
    pub(super) output: InContent,
}

#[derive(Deserialize)]
pub(super) struct InReasoningItem {
    #[serde(default)]
    pub(super) summary: Vec<InText>,
    #[serde(default)]
    pub(super) content: Option<Vec<InText>>,
    #[serde(default)]
    pub(super) encrypted_content: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InText {
    #[serde(default)]
    pub(super) text: String,
}

#[derive(Deserialize)]
pub(super) struct InCustomTool {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) format: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Requests: what a provider is sent.

#[derive(Serialize)]
pub(super) struct OutRequest<'a> {
    pub(super) model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) instructions: Option<String>,
    pub(super) input: Vec<OutItem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) text: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) store: Option<bool>,
    /// With `store: false` the reasoning of one turn reaches the next only as encrypted
    /// content, which the provider sends only when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) include: Option<[&'static str; 1]>,
    #[serde(flatten)]
    pub(super) extra: Option<ExtraFields<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutItem<'a> {
    Typed(OutTypedItem<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutTypedItem<'a> {
    Message {
        role: &'static str,
        content: Vec<OutContent<'a>>,
    },
    /// Without `id`: an item id refers to a stored response, and there is none.
    Reasoning {
        summary: Vec<OutSummary<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<&'a str>,
    },
    FunctionCall {
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
    CustomToolCall {
        call_id: &'a str,
        name: &'a str,
        input: Cow<'a, str>,
    },
    FunctionCallOutput {
        call_id: &'a str,
        output: OutToolOutput<'a>,
    },
    CustomToolCallOutput {
        call_id: &'a str,
        output: OutToolOutput<'a>,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutContent<'a> {
    Typed(OutTypedContent<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutTypedContent<'a> {
    InputText {
        text: &'a str,
    },
    OutputText {
        text: &'a str,
    },
    InputImage {
        image_url: String,
        detail: &'static str,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutToolOutput<'a> {
    Text(String),
    Parts(Vec<OutContent<'a>>),
}

#[derive(Serialize)]
pub(super) struct OutSummary<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: &'a str,
}

pub(super) fn summary(text: &str) -> Vec<OutSummary<'_>> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![OutSummary {
            kind: "summary_text",
            text,
        }]
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutTool<'a> {
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
        parameters: &'a Value,
        /// Responses makes function tools strict by default, which refuses the schemas most
        /// clients write (no `additionalProperties: false`); other protocols are never strict.
        strict: bool,
    },
    Native(&'a Value),
}

// ---------------------------------------------------------------------------------------------
// Answers: what a provider sends.

#[derive(Deserialize)]
pub(super) struct InResponse {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) model: String,
    #[serde(default)]
    pub(super) status: Option<String>,
    pub(super) output: Vec<Value>,
    #[serde(default)]
    pub(super) incomplete_details: Option<InIncomplete>,
    #[serde(default)]
    pub(super) usage: Option<InUsage>,
}

#[derive(Deserialize)]
pub(super) struct InIncomplete {
    #[serde(default)]
    pub(super) reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InOutputMessage {
    #[serde(default)]
    pub(super) content: Vec<Value>,
}

// ---------------------------------------------------------------------------------------------
// Answers: what a client is sent (the whole answer and the stream's terminal events), and
// the error body.

#[derive(Serialize)]
pub(super) struct OutResponse<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created_at: u64,
    pub(super) status: &'static str,
    pub(super) error: Option<OutResponseError<'a>>,
    pub(super) incomplete_details: Option<OutIncomplete>,
    pub(super) instructions: Option<()>,
    pub(super) model: &'a str,
    pub(super) output: Vec<OutOutput<'a>>,
    pub(super) parallel_tool_calls: bool,
    pub(super) tool_choice: &'static str,
    pub(super) tools: [(); 0],
    pub(super) usage: Option<OutUsage>,
}

#[derive(Serialize)]
pub(super) struct OutResponseError<'a> {
    pub(super) code: &'static str,
    pub(super) message: &'a str,
}

#[derive(Serialize)]
pub(super) struct OutIncomplete {
    pub(super) reason: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutOutput<'a> {
    Item(OutOutputItem<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutOutputItem<'a> {
    Message {
        id: &'a str,
        status: &'static str,
        role: &'static str,
        content: Vec<OutOutputText<'a>>,
    },
    Reasoning {
        id: &'a str,
        summary: Vec<OutSummary<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<Cow<'a, str>>,
    },
    FunctionCall {
        id: &'a str,
        status: &'static str,
        arguments: &'a str,
        call_id: &'a str,
        name: &'a str,
    },
    CustomToolCall {
        id: &'a str,
        status: &'static str,
        call_id: &'a str,
        name: &'a str,
        input: Cow<'a, str>,
    },
}

#[derive(Serialize)]
pub(super) struct OutOutputText<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: &'a str,
    pub(super) annotations: [(); 0],
}

pub(super) fn output_text(text: &str) -> OutOutputText<'_> {
    OutOutputText {
        kind: "output_text",
        text,
        annotations: [],
    }
}

#[derive(Serialize)]
pub(super) struct OutUsage {
    pub(super) input_tokens: u64,
    pub(super) input_tokens_details: OutCachedTokens,
    pub(super) output_tokens: u64,
    pub(super) output_tokens_details: OutReasoningTokens,
    pub(super) total_tokens: u64,
}

impl OutUsage {
    /// Responses always writes both details, 0 where there is no count.
    pub(super) fn from_canonical(usage: &TokenUsage) -> Self {
        let (input_tokens, output_tokens, total_tokens) = openai_usage::totals(usage);
        Self {
            input_tokens,
            input_tokens_details: OutCachedTokens::new(usage.cached.unwrap_or(0)),
            output_tokens,
            output_tokens_details: OutReasoningTokens::new(usage.reasoning.unwrap_or(0)),
            total_tokens,
        }
    }
}

#[derive(Serialize)]
pub(super) struct OutError<'a> {
    pub(super) error: OutErrorBody<'a>,
}

#[derive(Serialize)]
pub(super) struct OutErrorBody<'a> {
    pub(super) message: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'a str,
    pub(super) param: Option<()>,
    pub(super) code: Option<&'a str>,
}

// ---------------------------------------------------------------------------------------------
// Stream: a provider's events.

#[derive(Deserialize)]
#[serde(tag = "type")]
pub(super) enum InEvent {
    #[serde(rename = "response.created")]
    Created { response: InStreamResponse },
    #[serde(rename = "response.in_progress")]
    InProgress { response: InStreamResponse },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        #[serde(default)]
        output_index: usize,
        item: Value,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        #[serde(default)]
        output_index: usize,
        item: Value,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        #[serde(default)]
        output_index: usize,
        #[serde(default)]
        content_index: usize,
        delta: String,
    },
    #[serde(rename = "response.refusal.delta")]
    RefusalDelta {
        #[serde(default)]
        output_index: usize,
        #[serde(default)]
        content_index: usize,
        delta: String,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgsDelta {
        #[serde(default)]
        output_index: usize,
        delta: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgsDone {
        #[serde(default)]
        output_index: usize,
        #[serde(default)]
        arguments: String,
    },
    #[serde(rename = "response.custom_tool_call_input.delta")]
    CustomInputDelta {
        #[serde(default)]
        output_index: usize,
        delta: String,
    },
    #[serde(rename = "response.reasoning_summary_text.delta")]
    SummaryDelta {
        #[serde(default)]
        output_index: usize,
        #[serde(default)]
        summary_index: usize,
        delta: String,
    },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta {
        #[serde(default)]
        output_index: usize,
        #[serde(default)]
        content_index: usize,
        delta: String,
    },
    #[serde(rename = "response.completed")]
    Completed { response: InStreamResponse },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: InStreamResponse },
    #[serde(rename = "response.failed")]
    Failed { response: InStreamResponse },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<String>,
        /// Some servers nest the fields as in an error body.
        #[serde(default)]
        error: Option<Value>,
    },
    /// Annotations, hosted-tool progress, part boundaries, `response.queued`, and event types
    /// added after this was written carry nothing the canonical stream needs.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct InStreamResponse {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) model: String,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) incomplete_details: Option<InIncomplete>,
    #[serde(default)]
    pub(super) usage: Option<InUsage>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Stream: a client's events.

#[derive(Serialize)]
#[serde(tag = "type")]
pub(super) enum OutEvent<'a> {
    #[serde(rename = "response.created")]
    Created { response: OutResponse<'a> },
    #[serde(rename = "response.in_progress")]
    InProgress { response: OutResponse<'a> },
    #[serde(rename = "response.completed")]
    Completed { response: OutResponse<'a> },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: OutResponse<'a> },
    #[serde(rename = "response.failed")]
    Failed { response: OutResponse<'a> },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        output_index: usize,
        item: OutOutputItem<'a>,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        output_index: usize,
        item: OutOutputItem<'a>,
    },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        part: OutOutputText<'a>,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        part: OutOutputText<'a>,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        delta: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        text: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.reasoning_summary_part.added")]
    SummaryPartAdded {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        part: OutSummary<'a>,
    },
    #[serde(rename = "response.reasoning_summary_part.done")]
    SummaryPartDone {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        part: OutSummary<'a>,
    },
    #[serde(rename = "response.reasoning_summary_text.delta")]
    SummaryTextDelta {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.reasoning_summary_text.done")]
    SummaryTextDone {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        text: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgsDelta {
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgsDone {
        item_id: &'a str,
        output_index: usize,
        arguments: &'a str,
    },
    #[serde(rename = "response.custom_tool_call_input.delta")]
    CustomInputDelta {
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.custom_tool_call_input.done")]
    CustomInputDone {
        item_id: &'a str,
        output_index: usize,
        input: &'a str,
    },
    #[serde(rename = "error")]
    Error {
        code: &'static str,
        message: &'a str,
        param: Option<()>,
    },
}

impl OutEvent<'_> {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Failed { .. } => "response.failed",
            Self::ItemAdded { .. } => "response.output_item.added",
            Self::ItemDone { .. } => "response.output_item.done",
            Self::PartAdded { .. } => "response.content_part.added",
            Self::PartDone { .. } => "response.content_part.done",
            Self::TextDelta { .. } => "response.output_text.delta",
            Self::TextDone { .. } => "response.output_text.done",
            Self::SummaryPartAdded { .. } => "response.reasoning_summary_part.added",
            Self::SummaryPartDone { .. } => "response.reasoning_summary_part.done",
            Self::SummaryTextDelta { .. } => "response.reasoning_summary_text.delta",
            Self::SummaryTextDone { .. } => "response.reasoning_summary_text.done",
            Self::ArgsDelta { .. } => "response.function_call_arguments.delta",
            Self::ArgsDone { .. } => "response.function_call_arguments.done",
            Self::CustomInputDelta { .. } => "response.custom_tool_call_input.delta",
            Self::CustomInputDone { .. } => "response.custom_tool_call_input.done",
            Self::Error { .. } => "error",
        }
    }
}

#[derive(Serialize)]
pub(super) struct Sequenced<'a> {
    #[serde(flatten)]
    pub(super) event: &'a OutEvent<'a>,
    pub(super) sequence_number: u64,
}
