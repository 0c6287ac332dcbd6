//! OpenAI Responses (`POST /v1/responses`) to and from the canonical model.
//!
//! Used when a Responses client (Codex CLI, the OpenAI SDKs' `client.responses`) reaches a
//! provider of another protocol, or a Responses provider (`{base}/responses`) serves a client
//! of another protocol; Responses-to-Responses traffic takes the byte-forwarding fast path and
//! never comes here. The wire types are private: callers see [`canonical`](crate::canonical)
//! values, JSON bytes and SSE bytes.
//!
//! - [`request_to_canonical`] / [`request_from_canonical`]: the request both ways. Input items
//!   become messages: `message` items by role, `function_call` / `custom_tool_call` items join
//!   the assistant turn, their outputs form tool turns, `reasoning` items become
//!   [`Reasoning`] parts issued by this protocol.
//! - [`response_to_canonical`] / [`response_from_canonical`]: the non-streaming `response`
//!   object.
//! - [`StreamDecoder`]: a provider's `response.*` events into [`StreamEvent`]s.
//! - [`StreamEncoder`]: [`StreamEvent`]s into the events the OpenAI SDKs and Codex CLI parse
//!   (`response.created`, output items with their content parts and deltas, and a terminal
//!   `response.completed` / `response.incomplete` / `response.failed` carrying the whole
//!   response), each with `type` and an increasing `sequence_number`.
//! - [`error_body`]: OpenAI's `{"error":{"message","type","param","code"}}`.
//!
//! Custom (freeform) tools, which Codex uses for `apply_patch`, take one string of text
//! instead of a JSON object. Other protocols only know JSON tools, so a custom tool becomes a
//! function taking `{"input": "<text>"}`, and its calls come back to the client as
//! `custom_tool_call` items with the text: [`custom_tool_names`] reads the names from a decoded
//! request, and [`StreamEncoder::with_custom_tools`] /
//! [`response_from_canonical_with_custom_tools`] take them.
//!
//! Reasoning that another protocol signed (Anthropic thinking signatures) travels to a
//! Responses client inside `encrypted_content`, tagged with its issuer
//! ([`canonical::tag_proof`](crate::canonical::tag_proof)), so that when the client sends the
//! item back it decodes to the issuer's own reasoning again. Responses has no stop sequences: canonical `stop`
//! is not sent to a Responses provider.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{ExtraFields, to_json};
use crate::Protocol;
use crate::canonical::TokenUsage;
use crate::canonical::{
    DecodeError, Effort, FinishReason, Image, Message, Part, ProofKind, Reasoning, ReasoningConfig,
    Request, Response, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, merge_usage, tag_proof,
    untag_proof,
};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;
use crate::sse;

const PROTOCOL: Protocol = Protocol::OpenAiResponses;

/// OpenAI refuses `max_output_tokens` below 16; clients of other protocols sometimes ask for
/// one token (quota probes), which must not turn into a 400.
const MIN_OUTPUT_TOKENS: u64 = 16;

// ---------------------------------------------------------------------------------------------
// Usage.

#[derive(Deserialize, Default)]
struct InUsage {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InInputDetails>,
    #[serde(default)]
    output_tokens_details: Option<InOutputDetails>,
}

#[derive(Deserialize)]
struct InInputDetails {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct InOutputDetails {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    reasoning_tokens: Option<u64>,
}

impl From<InUsage> for TokenUsage {
    /// Responses counts like the canonical model: input includes cached tokens, output
    /// includes reasoning tokens.
    fn from(wire: InUsage) -> Self {
        Self {
            input: wire.input_tokens,
            output: wire.output_tokens,
            cached: wire.input_tokens_details.and_then(|d| d.cached_tokens),
            reasoning: wire.output_tokens_details.and_then(|d| d.reasoning_tokens),
        }
    }
}

#[derive(Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<InUsage>,
    #[serde(default)]
    response: Option<Box<UsageOnly>>,
}

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
// Request: Responses -> canonical.

/// Fields this module writes itself when encoding for a Responses provider; a client's copy in
/// `extra` is merged into them rather than written twice.
const OWN_FIELDS: [&str; 3] = ["text", "reasoning", "tool_choice"];

#[derive(Deserialize)]
struct InRequest {
    model: String,
    #[serde(default)]
    input: Option<InInput>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// `input` is a plain string (one user message) or a list of items.
#[derive(Deserialize)]
#[serde(untagged)]
enum InInput {
    Text(String),
    Items(Vec<Value>),
}

/// Message content: a plain string or a list of content parts.
#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
struct InMessageItem {
    role: String,
    content: InContent,
}

#[derive(Deserialize)]
struct InFunctionCall {
    call_id: String,
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct InCustomToolCall {
    call_id: String,
    name: String,
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
struct InToolOutput {
    call_id: String,
    output: InContent,
}

#[derive(Deserialize)]
struct InReasoningItem {
    #[serde(default)]
    summary: Vec<InText>,
    #[serde(default)]
    content: Option<Vec<InText>>,
    #[serde(default)]
    encrypted_content: Option<String>,
}

#[derive(Deserialize)]
struct InText {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct InFunctionTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct InCustomTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    format: Option<Value>,
}

/// Decodes a client's Responses request.
///
/// `reasoning` and `text` are also kept whole in `extra` (their `summary`, `verbosity`, … have
/// no canonical home); [`request_from_canonical`] merges them back for a Responses provider.
/// A `tool_choice` the canonical model cannot express (`allowed_tools`, a hosted tool) stays in
/// `extra` as sent.
pub fn request_to_canonical(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: InRequest = serde_json::from_slice(body)?;
    let mut request = Request {
        model: wire.model,
        parallel_tool_calls: wire.parallel_tool_calls,
        max_tokens: wire.max_output_tokens,
        temperature: wire.temperature,
        top_p: wire.top_p,
        stream: wire.stream.unwrap_or(false),
        extra: wire.extra,
        origin: Some(PROTOCOL),
        ..Request::default()
    };
    if let Some(instructions) = wire.instructions.filter(|s| !s.is_empty()) {
        request.system.push(instructions);
    }
    match wire.input {
        None => {}
        Some(InInput::Text(text)) => request.messages.push(Message {
            role: Role::User,
            content: vec![Part::Text { text }],
        }),
        Some(InInput::Items(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                input_item(item, &format!("input[{i}]"), &mut request)?;
            }
        }
    }
    for (i, tool) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let def = InFunctionTool::deserialize(&tool)
                    .map_err(|e| DecodeError::Invalid(format!("tools[{i}]: {e}")))?;
                request.tools.push(Tool {
                    name: def.name,
                    description: def.description,
                    // A tool without parameters takes none; every target wants a schema.
                    parameters: def
                        .parameters
                        .filter(|p| !p.is_null())
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
            }
            Some("custom") => {
                let def = InCustomTool::deserialize(&tool)
                    .map_err(|e| DecodeError::Invalid(format!("tools[{i}]: {e}")))?;
                request.tools.push(custom_tool(def));
                // Kept as sent too: it marks the name as custom (`custom_tool_names`) and a
                // Responses provider gets the real definition, grammar included.
                request.native_tools.push(tool);
            }
            _ => request.native_tools.push(tool),
        }
    }
    match wire.tool_choice {
        None | Some(Value::Null) => {}
        Some(choice) => match tool_choice(&choice)? {
            Some(choice) => request.tool_choice = Some(choice),
            None => {
                request.extra.insert("tool_choice".into(), choice);
            }
        },
    }
    if let Some(reasoning) = wire.reasoning.filter(|r| !r.is_null()) {
        let effort = match reasoning.get("effort") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(Effort::parse(name).ok_or_else(|| {
                DecodeError::Invalid(format!(
                    "reasoning.effort `{name}` is not one of none, minimal, low, medium, high"
                ))
            })?),
            Some(_) => {
                return Err(DecodeError::Invalid(
                    "reasoning.effort must be a string".into(),
                ));
            }
        };
        request.reasoning = Some(ReasoningConfig {
            effort,
            budget_tokens: None,
        });
        request.extra.insert("reasoning".into(), reasoning);
    }
    if let Some(text) = wire.text.filter(|t| !t.is_null()) {
        if let Some(format) = text.get("format").filter(|f| !f.is_null()) {
            request.response_format = response_format_from_wire(format)?;
        }
        request.extra.insert("text".into(), text);
    }
    Ok(request)
}

/// A custom tool as a function taking its text as `input`. Its grammar, if any, goes into the
/// description: a model behind another protocol can only follow it as an instruction.
fn custom_tool(def: InCustomTool) -> Tool {
    let grammar = def
        .format
        .as_ref()
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar"))
        .and_then(|f| {
            let definition = f.get("definition").and_then(Value::as_str)?;
            let syntax = f.get("syntax").and_then(Value::as_str).unwrap_or("lark");
            Some(format!(
                "The `input` text must match this {syntax} grammar:\n{definition}"
            ))
        });
    let description = match (def.description, grammar) {
        (Some(d), Some(g)) => Some(format!("{d}\n\n{g}")),
        (d, g) => d.or(g),
    };
    Tool {
        name: def.name,
        description,
        parameters: json!({
            "type": "object",
            "properties": {"input": {"type": "string"}},
            "required": ["input"]
        }),
    }
}

/// The names of the custom (freeform) tools a decoded Responses request declared. Pass them to
/// [`StreamEncoder::with_custom_tools`] / [`response_from_canonical_with_custom_tools`] so
/// calls of those tools reach the client as `custom_tool_call` items with their text.
pub fn custom_tool_names(request: &Request) -> Vec<String> {
    if request.origin != Some(PROTOCOL) {
        return Vec::new();
    }
    request
        .native_tools
        .iter()
        .filter(|tool| tool.get("type").and_then(Value::as_str) == Some("custom"))
        .filter_map(|tool| tool.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// `Ok(None)`: a valid choice the canonical model has no form for (`allowed_tools`, hosted
/// tools such as `{"type":"web_search_preview"}`).
fn tool_choice(choice: &Value) -> Result<Option<ToolChoice>, DecodeError> {
    match choice {
        Value::String(s) if s == "auto" => Ok(Some(ToolChoice::Auto)),
        Value::String(s) if s == "none" => Ok(Some(ToolChoice::None)),
        Value::String(s) if s == "required" => Ok(Some(ToolChoice::Required)),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => o
                .get("name")
                .and_then(Value::as_str)
                .map(|name| Some(ToolChoice::Named(name.to_owned())))
                .ok_or_else(|| {
                    DecodeError::Invalid(
                        "tool_choice: a named function needs `name` ({\"type\":\"function\",\"name\":…})"
                            .into(),
                    )
                }),
            Some(_) => Ok(None),
            None => Err(DecodeError::Invalid(
                "tool_choice object needs a `type`".into(),
            )),
        },
        _ => Err(DecodeError::Invalid(
            "tool_choice must be auto, none, required or {\"type\":\"function\",\"name\":…}"
                .into(),
        )),
    }
}

/// Reads `text.format` (`text`, `json_object`, or a flat `json_schema`).
fn response_format_from_wire(format: &Value) -> Result<Option<ResponseFormat>, DecodeError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => Ok(Some(ResponseFormat::JsonSchema {
            name: format
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("response")
                .to_owned(),
            schema: format.get("schema").cloned().unwrap_or_else(|| json!({})),
            strict: format.get("strict").and_then(Value::as_bool),
        })),
        _ => Err(DecodeError::Invalid(
            "text.format.type must be text, json_object or json_schema".into(),
        )),
    }
}

fn response_format_to_wire(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            let mut wire = json!({"type": "json_schema", "name": name, "schema": schema});
            if let Some(strict) = strict {
                wire["strict"] = Value::Bool(*strict);
            }
            wire
        }
    }
}

/// Adds `parts` to the turn `role` continues: model output (assistant) and tool results
/// arrive as one item each and belong together; every user message is its own turn.
fn push_to_turn(messages: &mut Vec<Message>, role: Role, parts: impl IntoIterator<Item = Part>) {
    match messages
        .last_mut()
        .filter(|last| role != Role::User && last.role == role)
    {
        Some(last) => last.content.extend(parts),
        None => messages.push(Message {
            role,
            content: parts.into_iter().collect(),
        }),
    }
}

fn input_item(item: Value, at: &str, request: &mut Request) -> Result<(), DecodeError> {
    let invalid = |e: serde_json::Error| DecodeError::Invalid(format!("{at}: {e}"));
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        // Items without `type` but with a `role` are messages (the SDKs' "easy" form).
        Some("message") | None if item.get("role").is_some() => {
            let message = InMessageItem::deserialize(&item).map_err(invalid)?;
            let at = format!("{at}.content");
            match message.role.as_str() {
                "system" | "developer" => {
                    for part in content_parts(message.content, &at)? {
                        match part {
                            Part::Text { text } => request.system.push(text),
                            _ => {
                                return Err(DecodeError::Invalid(format!(
                                    "{at}: system and developer messages may only hold text"
                                )));
                            }
                        }
                    }
                }
                "user" => {
                    let content = content_parts(message.content, &at)?;
                    request.messages.push(Message {
                        role: Role::User,
                        content,
                    });
                }
                "assistant" => {
                    let content = content_parts(message.content, &at)?;
                    push_to_turn(&mut request.messages, Role::Assistant, content);
                }
                other => {
                    return Err(DecodeError::Invalid(format!(
                        "{at}.role is `{other}`; use user, assistant, system or developer"
                    )));
                }
            }
        }
        None => {
            return Err(DecodeError::Invalid(format!(
                "{at}: an input item needs a `type` (or a `role` for a message)"
            )));
        }
        Some("function_call") => {
            let call = InFunctionCall::deserialize(&item).map_err(invalid)?;
            let call = Part::ToolCall {
                id: call.call_id,
                name: call.name,
                arguments: call.arguments,
            };
            push_to_turn(&mut request.messages, Role::Assistant, [call]);
        }
        Some("custom_tool_call") => {
            let call = InCustomToolCall::deserialize(&item).map_err(invalid)?;
            let call = Part::ToolCall {
                id: call.call_id,
                name: call.name,
                arguments: custom_arguments(&call.input),
            };
            push_to_turn(&mut request.messages, Role::Assistant, [call]);
        }
        Some("function_call_output" | "custom_tool_call_output") => {
            let output = InToolOutput::deserialize(&item).map_err(invalid)?;
            let content = content_parts(output.output, &format!("{at}.output"))?;
            let result = Part::ToolResult {
                call_id: output.call_id,
                content,
                is_error: false,
            };
            push_to_turn(&mut request.messages, Role::Tool, [result]);
        }
        Some("reasoning") => {
            let reasoning = InReasoningItem::deserialize(&item).map_err(invalid)?;
            let reasoning = reasoning_part(reasoning);
            push_to_turn(&mut request.messages, Role::Assistant, [reasoning]);
        }
        // Hosted tool calls and their results, item references, …: only meaningful to a
        // Responses provider. Calls are model output; the rest is what the client adds.
        Some(other) => {
            let role = if other.ends_with("_call") {
                Role::Assistant
            } else {
                Role::User
            };
            push_to_turn(&mut request.messages, role, [Part::Unknown(item)]);
        }
    }
    Ok(())
}

/// Canonical arguments of a custom tool call: its text as the `input` of a JSON object.
fn custom_arguments(input: &str) -> String {
    json!({ "input": input }).to_string()
}

/// The text of a custom tool call from canonical arguments: `input` when the model answered
/// with the object the tool was declared as, the arguments verbatim otherwise.
fn custom_input(arguments: &str) -> Cow<'_, str> {
    let parsed: Option<Map<String, Value>> = serde_json::from_str(arguments).ok();
    let input = parsed.and_then(|mut o| match o.remove("input") {
        Some(Value::String(input)) => Some(input),
        _ => None,
    });
    input.map_or(Cow::Borrowed(arguments), Cow::Owned)
}

fn reasoning_part(item: InReasoningItem) -> Part {
    let mut texts: Vec<String> = item.summary.into_iter().map(|s| s.text).collect();
    if texts.is_empty() {
        texts = item
            .content
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.text)
            .collect();
    }
    let mut reasoning = Reasoning {
        text: texts.join("\n\n"),
        signature: None,
        encrypted: None,
        issuer: None,
    };
    // A tagged proof from another protocol (see `client_encrypted`) is read back by
    // `Request::adopt_signature_tags` on the translated path; here every proof is this
    // protocol's own.
    reasoning.encrypted = item.encrypted_content.filter(|e| !e.is_empty());
    reasoning.issuer = Some(PROTOCOL);
    Part::Reasoning(reasoning)
}

/// What a Responses client may receive as `encrypted_content` for a reasoning part: a
/// Responses provider's own content as it is, another protocol's proof tagged with its issuer
/// (the translated path tags answers before they get here; a proof that is not tagged yet is
/// tagged now, so a foreign one never reaches the client bare).
fn client_encrypted(reasoning: &Reasoning) -> Option<Cow<'_, str>> {
    let issuer = reasoning.issuer?;
    let (kind, proof) = match (&reasoning.encrypted, &reasoning.signature) {
        (Some(data), _) => (ProofKind::Encrypted, data),
        (None, Some(signature)) => (ProofKind::Signature, signature),
        (None, None) => return None,
    };
    if issuer == PROTOCOL || untag_proof(proof).is_some() {
        Some(Cow::Borrowed(proof))
    } else {
        Some(Cow::Owned(tag_proof(issuer, kind, proof)))
    }
}

fn content_parts(content: InContent, at: &str) -> Result<Vec<Part>, DecodeError> {
    match content {
        InContent::Text(text) if text.is_empty() => Ok(Vec::new()),
        InContent::Text(text) => Ok(vec![Part::Text { text }]),
        InContent::Parts(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(j, part)| content_part(part, &format!("{at}[{j}]")))
            .collect(),
    }
}

fn content_part(part: Value, at: &str) -> Result<Part, DecodeError> {
    let text_of = |key: &str| part.get(key).and_then(Value::as_str).map(str::to_owned);
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text") => text_of("text")
            .map(|text| Part::Text { text })
            .ok_or_else(|| DecodeError::Invalid(format!("{at}: a text part needs `text`"))),
        Some("refusal") => Ok(Part::Text {
            text: text_of("refusal").unwrap_or_default(),
        }),
        // An image by `file_id` has no counterpart elsewhere and stays unknown.
        Some("input_image") => Ok(match text_of("image_url") {
            Some(url) => Part::Image(Image::from_url(&url)),
            None => Part::Unknown(part),
        }),
        _ => Ok(Part::Unknown(part)),
    }
}

/// Whether a kept [`Part::Unknown`] is a content part (inside a message) rather than a whole
/// input item: content part types are `input_…`, `output_…` and `refusal`, item types never.
fn is_content_part(value: &Value) -> bool {
    value
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("input_") || t.starts_with("output_") || t == "refusal")
}

// ---------------------------------------------------------------------------------------------
// Request: canonical -> Responses.

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<String>,
    input: Vec<OutItem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<bool>,
    /// With `store: false` the reasoning of one turn reaches the next only as encrypted
    /// content, which the provider sends only when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    include: Option<[&'static str; 1]>,
    #[serde(flatten)]
    extra: Option<ExtraFields<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutItem<'a> {
    Typed(OutTypedItem<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutTypedItem<'a> {
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
enum OutContent<'a> {
    Typed(OutTypedContent<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutTypedContent<'a> {
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
enum OutToolOutput<'a> {
    Text(String),
    Parts(Vec<OutContent<'a>>),
}

#[derive(Serialize)]
struct OutSummary<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

fn summary(text: &str) -> Vec<OutSummary<'_>> {
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
enum OutTool<'a> {
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

/// Encodes a request for a Responses provider.
///
/// `store` is `false` unless the client itself speaks Responses (then its own `store`, in
/// `extra`, is sent): a translated request has no stored conversation to continue. Reasoning
/// goes back only when a Responses provider issued it and returned its encrypted content.
pub fn request_from_canonical(request: &Request) -> Vec<u8> {
    let native = request.origin == Some(PROTOCOL);
    let custom: HashSet<&str> = if native {
        request
            .native_tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("custom"))
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect()
    } else {
        HashSet::new()
    };
    let system: Vec<&str> = request
        .system
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();

    let mut input = Vec::with_capacity(request.messages.len());
    let mut custom_calls: HashSet<&str> = HashSet::new();
    for message in &request.messages {
        match message.role {
            Role::Assistant => {
                assistant_items(
                    &message.content,
                    native,
                    &custom,
                    &mut custom_calls,
                    &mut input,
                );
            }
            Role::User | Role::Tool => {
                user_items(&message.content, native, &custom_calls, &mut input);
            }
        }
    }

    let mut tools: Vec<OutTool<'_>> = request
        .tools
        .iter()
        .filter(|tool| !custom.contains(tool.name.as_str()))
        .map(|tool| OutTool::Function {
            kind: "function",
            name: &tool.name,
            description: tool.description.as_deref(),
            parameters: &tool.parameters,
            strict: false,
        })
        .collect();
    if native {
        tools.extend(request.native_tools.iter().map(OutTool::Native));
    }
    let has_tools = !tools.is_empty();
    let tool_choice = match &request.tool_choice {
        Some(_) if !has_tools => None,
        Some(ToolChoice::Auto) => Some(json!("auto")),
        Some(ToolChoice::None) => Some(json!("none")),
        Some(ToolChoice::Required) => Some(json!("required")),
        Some(ToolChoice::Named(name)) => {
            let kind = if custom.contains(name.as_str()) {
                "custom"
            } else {
                "function"
            };
            Some(json!({"type": kind, "name": name}))
        }
        None if native => request.extra.get("tool_choice").cloned(),
        None => None,
    };

    let wire = OutRequest {
        model: &request.model,
        instructions: (!system.is_empty()).then(|| system.join("\n\n")),
        input,
        tools,
        tool_choice,
        // OpenAI refuses `parallel_tool_calls` without tools.
        parallel_tool_calls: request.parallel_tool_calls.filter(|_| has_tools),
        max_output_tokens: request.max_tokens.map(|n| n.max(MIN_OUTPUT_TOKENS)),
        temperature: request.temperature,
        top_p: request.top_p,
        reasoning: reasoning_out(request, native),
        text: text_out(request, native),
        stream: request.stream,
        store: (!native).then_some(false),
        include: (!native && reasoning_out(request, native).is_some())
            .then_some(["reasoning.encrypted_content"]),
        extra: (native && !request.extra.is_empty())
            .then_some(ExtraFields::new(&request.extra, &OWN_FIELDS)),
    };
    to_json(&wire)
}

/// `reasoning` for the provider: only when asked for and not off (models without reasoning
/// refuse the field). A Responses client's own object keeps its other keys (`summary`).
fn reasoning_out(request: &Request, native: bool) -> Option<Value> {
    let reasoning = request.reasoning?;
    let effort = reasoning.effort_or_derived().map(|e| json!(e.as_str()));
    let own = request.extra.get("reasoning").and_then(Value::as_object);
    if let Some(own) = own.filter(|_| native) {
        // The client's level as sent, or as the gateway changed it.
        let mut object = own.clone();
        match effort {
            Some(effort) => object.insert("effort".into(), effort),
            None => object.remove("effort"),
        };
        return Some(Value::Object(object));
    }
    if reasoning.is_off() {
        return None;
    }
    let mut object = Map::new();
    if let Some(effort) = effort {
        object.insert("effort".into(), effort);
    }
    Some(Value::Object(object))
}

/// `text` for the provider: the format, flat, plus a Responses client's other keys
/// (`verbosity`).
fn text_out(request: &Request, native: bool) -> Option<Value> {
    let mut object = if native {
        request
            .extra
            .get("text")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    } else {
        Map::new()
    };
    match &request.response_format {
        Some(format) => {
            object.insert("format".into(), response_format_to_wire(format));
        }
        None => {
            object.remove("format");
        }
    }
    (!object.is_empty()).then_some(Value::Object(object))
}

/// An assistant turn as items, in order: runs of text as one message, then each reasoning
/// part and tool call as its own item.
fn assistant_items<'a>(
    parts: &'a [Part],
    native: bool,
    custom: &HashSet<&str>,
    custom_calls: &mut HashSet<&'a str>,
    items: &mut Vec<OutItem<'a>>,
) {
    let mut text: Vec<OutContent<'a>> = Vec::new();
    let flush = |text: &mut Vec<OutContent<'a>>, items: &mut Vec<OutItem<'a>>| {
        if !text.is_empty() {
            items.push(OutItem::Typed(OutTypedItem::Message {
                role: "assistant",
                content: std::mem::take(text),
            }));
        }
    };
    for part in parts {
        match part {
            Part::Text { text: t } if t.is_empty() => {}
            Part::Text { text: t } => {
                text.push(OutContent::Typed(OutTypedContent::OutputText { text: t }));
            }
            Part::Unknown(value) if native && is_content_part(value) => {
                text.push(OutContent::Raw(value));
            }
            Part::Unknown(value) if native => {
                flush(&mut text, items);
                items.push(OutItem::Raw(value));
            }
            // OpenAI needs the encrypted content to use reasoning again; summaries alone it
            // would take as a reference to a stored item.
            Part::Reasoning(reasoning) if reasoning.signed_for(PROTOCOL) => {
                if let Some(encrypted) = reasoning
                    .encrypted
                    .as_ref()
                    .or(reasoning.signature.as_ref())
                {
                    flush(&mut text, items);
                    items.push(OutItem::Typed(OutTypedItem::Reasoning {
                        summary: summary(&reasoning.text),
                        encrypted_content: Some(encrypted),
                    }));
                }
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                flush(&mut text, items);
                if custom.contains(name.as_str()) {
                    custom_calls.insert(id);
                    items.push(OutItem::Typed(OutTypedItem::CustomToolCall {
                        call_id: id,
                        name,
                        input: custom_input(arguments),
                    }));
                } else {
                    items.push(OutItem::Typed(OutTypedItem::FunctionCall {
                        call_id: id,
                        name,
                        // An empty string is not valid JSON; providers reject it.
                        arguments: if arguments.is_empty() {
                            "{}"
                        } else {
                            arguments
                        },
                    }));
                }
            }
            Part::ToolResult { .. } => {
                flush(&mut text, items);
                tool_output(part, custom_calls, items);
            }
            _ => {}
        }
    }
    flush(&mut text, items);
}

/// A user or tool turn: tool results first (each must follow its call), then the rest as one
/// user message, then items kept from a Responses client.
fn user_items<'a>(
    parts: &'a [Part],
    native: bool,
    custom_calls: &HashSet<&'a str>,
    items: &mut Vec<OutItem<'a>>,
) {
    let mut content: Vec<OutContent<'a>> = Vec::new();
    let mut raw: Vec<&'a Value> = Vec::new();
    for part in parts {
        match part {
            Part::ToolResult { .. } => tool_output(part, custom_calls, items),
            Part::Text { text } if text.is_empty() => {}
            Part::Text { text } => {
                content.push(OutContent::Typed(OutTypedContent::InputText { text }));
            }
            Part::Image(image) => content.push(image_content(image)),
            Part::Unknown(value) if native && is_content_part(value) => {
                content.push(OutContent::Raw(value));
            }
            Part::Unknown(value) if native => raw.push(value),
            _ => {}
        }
    }
    if !content.is_empty() {
        items.push(OutItem::Typed(OutTypedItem::Message {
            role: "user",
            content,
        }));
    }
    items.extend(raw.into_iter().map(OutItem::Raw));
}

fn image_content(image: &Image) -> OutContent<'_> {
    OutContent::Typed(OutTypedContent::InputImage {
        image_url: image.to_url(),
        detail: "auto",
    })
}

/// A tool result as `function_call_output` (or `custom_tool_call_output` for a custom tool's
/// call): a string when it is all text, content parts when it holds images.
fn tool_output<'a>(part: &'a Part, custom_calls: &HashSet<&'a str>, items: &mut Vec<OutItem<'a>>) {
    let Part::ToolResult {
        call_id,
        content,
        is_error,
    } = part
    else {
        return;
    };
    let has_image = content.iter().any(|p| matches!(p, Part::Image(_)));
    let output = if has_image {
        let mut parts = Vec::with_capacity(content.len());
        for inner in content {
            match inner {
                Part::Text { text } => {
                    parts.push(OutContent::Typed(OutTypedContent::InputText { text }));
                }
                Part::Image(image) => parts.push(image_content(image)),
                _ => {}
            }
        }
        OutToolOutput::Parts(parts)
    } else {
        let mut text = String::new();
        if *is_error {
            text.push_str("Error: ");
        }
        for inner in content {
            if let Part::Text { text: t } = inner {
                text.push_str(t);
            }
        }
        OutToolOutput::Text(text)
    };
    items.push(OutItem::Typed(if custom_calls.contains(call_id.as_str()) {
        OutTypedItem::CustomToolCallOutput { call_id, output }
    } else {
        OutTypedItem::FunctionCallOutput { call_id, output }
    }));
}

// ---------------------------------------------------------------------------------------------
// Response: Responses -> canonical.

#[derive(Deserialize)]
struct InResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    status: Option<String>,
    output: Vec<Value>,
    #[serde(default)]
    incomplete_details: Option<InIncomplete>,
    #[serde(default)]
    usage: Option<InUsage>,
}

#[derive(Deserialize)]
struct InIncomplete {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct InOutputMessage {
    #[serde(default)]
    content: Vec<Value>,
}

/// What an answer's output items say about how it ended.
#[derive(Debug, Default)]
struct OutputSeen {
    tool_calls: bool,
    refusal: bool,
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
            content.push(Part::ToolCall {
                id: call.call_id,
                name: call.name,
                arguments: call.arguments,
            });
        }
        Some("custom_tool_call") => {
            let call = InCustomToolCall::deserialize(&item).map_err(invalid)?;
            seen.tool_calls = true;
            content.push(Part::ToolCall {
                id: call.call_id,
                name: call.name,
                arguments: custom_arguments(&call.input),
            });
        }
        _ => content.push(Part::Unknown(item)),
    }
    Ok(())
}

/// The canonical finish reason of a `response` with `status`. A completed answer that calls
/// tools stopped for them; a refusal counts as the provider's filter.
fn finish_from_status(
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

#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    error: Option<OutResponseError<'a>>,
    incomplete_details: Option<OutIncomplete>,
    instructions: Option<()>,
    model: &'a str,
    output: Vec<OutOutput<'a>>,
    parallel_tool_calls: bool,
    tool_choice: &'static str,
    tools: [(); 0],
    usage: Option<OutUsage>,
}

#[derive(Serialize)]
struct OutResponseError<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct OutIncomplete {
    reason: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutOutput<'a> {
    Item(OutOutputItem<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutOutputItem<'a> {
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
struct OutOutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
}

fn output_text(text: &str) -> OutOutputText<'_> {
    OutOutputText {
        kind: "output_text",
        text,
        annotations: [],
    }
}

#[derive(Serialize)]
struct OutUsage {
    input_tokens: u64,
    input_tokens_details: OutCached,
    output_tokens: u64,
    output_tokens_details: OutReasoningTokens,
    total_tokens: u64,
}

#[derive(Serialize)]
struct OutCached {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct OutReasoningTokens {
    reasoning_tokens: u64,
}

impl OutUsage {
    fn from_canonical(usage: &TokenUsage) -> Self {
        let input = usage.input.unwrap_or(0);
        let output = usage.output.unwrap_or(0);
        Self {
            input_tokens: input,
            input_tokens_details: OutCached {
                cached_tokens: usage.cached.unwrap_or(0),
            },
            output_tokens: output,
            output_tokens_details: OutReasoningTokens {
                reasoning_tokens: usage.reasoning.unwrap_or(0),
            },
            total_tokens: input.saturating_add(output),
        }
    }
}

/// The terminal status of an answer that ended for `finish`.
fn status_of(finish: Option<&FinishReason>) -> (&'static str, Option<OutIncomplete>) {
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
fn response_id(id: &str) -> String {
    if id.is_empty() {
        "resp_flexiproxy".to_owned()
    } else if id.starts_with("resp_") {
        id.to_owned()
    } else {
        format!("resp_{id}")
    }
}

/// An output item's id: deterministic, unique within the response (`msg_<id>_<n>`, …).
fn item_id(prefix: &str, response_id: &str, output_index: usize) -> String {
    let base = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{base}_{output_index}")
}

/// Encodes an answer for a Responses client; `created` is usually
/// [`openai_chat::unix_now`](super::openai_chat::unix_now). Tool calls are all
/// `function_call` items; see [`response_from_canonical_with_custom_tools`].
pub fn response_from_canonical(response: &Response, created: u64) -> Vec<u8> {
    response_from_canonical_with_custom_tools(response, created, &[])
}

/// [`response_from_canonical`] for a client that declared the custom tools `custom_tools`
/// (from [`custom_tool_names`]): their calls become `custom_tool_call` items with the text.
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

#[derive(Serialize)]
struct OutError<'a> {
    error: OutErrorBody<'a>,
}

#[derive(Serialize)]
struct OutErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: Option<&'a str>,
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

// ---------------------------------------------------------------------------------------------
// Stream: Responses events -> canonical events.

#[derive(Deserialize)]
#[serde(tag = "type")]
enum InEvent {
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
struct InStreamResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    incomplete_details: Option<InIncomplete>,
    #[serde(default)]
    usage: Option<InUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Message,
    Reasoning,
    FunctionCall,
    CustomToolCall,
    Other,
}

/// What the decoder knows about one output item of the provider's answer.
#[derive(Debug)]
struct DecodedItem {
    kind: ItemKind,
    /// The canonical part of a reasoning item or tool call.
    index: Option<usize>,
    /// Deltas were decoded, so the item's `done` form repeats what was already sent.
    streamed: bool,
    /// The reasoning paragraph (summary or content part) deltas last came for.
    paragraph: Option<(bool, usize)>,
    /// A custom tool call's `{"input":"` was sent and its closing `"}` not yet.
    input_open: bool,
}

impl DecodedItem {
    fn new(kind: ItemKind) -> Self {
        Self {
            kind,
            index: None,
            streamed: false,
            paragraph: None,
            input_open: false,
        }
    }
}

/// Turns a provider's Responses SSE events into canonical events. Feed it whole events (from
/// [`sse::EventSplitter`]); call [`StreamDecoder::finish`] when the upstream body ends.
///
/// Canonical parts are numbered in order of appearance: one per text (or refusal) content part
/// of a message item, one per reasoning item (its summary parts are joined by blank lines, as
/// [`response_to_canonical`] joins them), one per tool call. A custom tool call's text is
/// streamed as the JSON of `{"input": …}`, escaped as it arrives.
///
/// A reasoning item's `encrypted_content` (sent in its `response.output_item.done`) becomes a
/// [`StreamEvent::ReasoningSignature`] of that part: the canonical stream has no other event
/// for reasoning proof (the translated path tags it as encrypted reasoning).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    done: bool,
    next: usize,
    /// Output index -> item.
    items: HashMap<usize, DecodedItem>,
    /// (output index, content index) -> canonical part of a text content part.
    texts: HashMap<(usize, usize), usize>,
    seen: OutputSeen,
}

impl StreamDecoder {
    /// Whether the upstream has said its last word (`response.completed`, `response.incomplete`,
    /// `response.failed` or `error`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn allocate(&mut self) -> usize {
        let index = self.next;
        self.next += 1;
        index
    }

    /// Decodes one whole SSE event.
    pub fn decode(&mut self, event: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        let Some(data) = sse::data(event) else {
            return Ok(Vec::new());
        };
        // Some Responses-compatible servers end with Chat Completions' marker; the terminal
        // `response.*` event is what counts.
        if data.trim_ascii() == b"[DONE]" {
            return Ok(Vec::new());
        }
        let wire: InEvent = serde_json::from_slice(&data)?;
        let mut out = Vec::new();
        match wire {
            InEvent::Created { response } | InEvent::InProgress { response } => {
                if !self.started {
                    self.started = true;
                    out.push(StreamEvent::MessageStart {
                        id: response.id,
                        model: response.model,
                    });
                }
            }
            InEvent::ItemAdded { output_index, item } => {
                self.item_added(output_index, &item, &mut out);
            }
            InEvent::ItemDone { output_index, item } => {
                self.item_done(output_index, &item, &mut out)?;
            }
            InEvent::TextDelta {
                output_index,
                content_index,
                delta,
            } => self.text(output_index, content_index, delta, &mut out),
            InEvent::RefusalDelta {
                output_index,
                content_index,
                delta,
            } => {
                self.seen.refusal = true;
                self.text(output_index, content_index, delta, &mut out);
            }
            InEvent::ArgsDelta {
                output_index,
                delta,
            } => {
                let index = self.call_index(output_index, ItemKind::FunctionCall)?;
                if !delta.is_empty() {
                    self.mark_streamed(output_index);
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: delta,
                    });
                }
            }
            InEvent::ArgsDone {
                output_index,
                arguments,
            } => {
                let index = self.call_index(output_index, ItemKind::FunctionCall)?;
                let streamed = self.items.get(&output_index).is_some_and(|i| i.streamed);
                if !streamed && !arguments.is_empty() {
                    self.mark_streamed(output_index);
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: arguments,
                    });
                }
            }
            InEvent::CustomInputDelta {
                output_index,
                delta,
            } => {
                let index = self.call_index(output_index, ItemKind::CustomToolCall)?;
                if !delta.is_empty() {
                    self.mark_streamed(output_index);
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: json_string_body(&delta),
                    });
                }
            }
            InEvent::SummaryDelta {
                output_index,
                summary_index,
                delta,
            } => self.reasoning(output_index, (true, summary_index), delta, &mut out),
            InEvent::ReasoningTextDelta {
                output_index,
                content_index,
                delta,
            } => self.reasoning(output_index, (false, content_index), delta, &mut out),
            InEvent::Completed { response } | InEvent::Incomplete { response } => {
                self.done = true;
                if let Some(usage) = response.usage {
                    out.push(StreamEvent::Usage(usage.into()));
                }
                let reason = response.incomplete_details.and_then(|d| d.reason);
                if let Some(finish) =
                    finish_from_status(response.status.as_deref(), reason.as_deref(), &self.seen)
                {
                    out.push(StreamEvent::Finish(finish));
                }
            }
            InEvent::Failed { response } => {
                self.done = true;
                if let Some(usage) = response.usage {
                    out.push(StreamEvent::Usage(usage.into()));
                }
                let message = response
                    .error
                    .as_ref()
                    .and_then(error_message)
                    .unwrap_or_else(|| "the provider's response failed".to_owned());
                out.push(StreamEvent::Error { message });
            }
            InEvent::Error {
                message,
                code,
                error,
            } => {
                self.done = true;
                let message = message
                    .or_else(|| error.as_ref().and_then(error_message))
                    .or(code)
                    .unwrap_or_else(|| "the provider's stream reported an error".to_owned());
                out.push(StreamEvent::Error { message });
            }
            InEvent::Other => {}
        }
        Ok(out)
    }

    fn item_added(&mut self, output_index: usize, item: &Value, out: &mut Vec<StreamEvent>) {
        let kind = item_kind(item);
        let mut decoded = DecodedItem::new(kind);
        match kind {
            ItemKind::FunctionCall | ItemKind::CustomToolCall => {
                let index = self.start_call(output_index, item, out);
                decoded.index = Some(index);
                let (key, opening) = if kind == ItemKind::CustomToolCall {
                    decoded.input_open = true;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: "{\"input\":\"".to_owned(),
                    });
                    ("input", true)
                } else {
                    ("arguments", false)
                };
                // Calls usually start empty; a non-empty start is the whole value so far.
                if let Some(value) = item
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                {
                    decoded.streamed = true;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: if opening {
                            json_string_body(value)
                        } else {
                            value.to_owned()
                        },
                    });
                }
            }
            ItemKind::Reasoning => decoded.index = Some(self.allocate()),
            ItemKind::Message | ItemKind::Other => {}
        }
        self.items.insert(output_index, decoded);
    }

    /// Emits `ToolCallStart` for a call item and returns its canonical part.
    fn start_call(
        &mut self,
        output_index: usize,
        item: &Value,
        out: &mut Vec<StreamEvent>,
    ) -> usize {
        self.seen.tool_calls = true;
        let index = self.allocate();
        let text = |key: &str| {
            item.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let id = text("call_id")
            .or_else(|| text("id"))
            .unwrap_or_else(|| format!("call_flexiproxy_{output_index}"));
        out.push(StreamEvent::ToolCallStart {
            index,
            id,
            name: text("name").unwrap_or_default(),
        });
        index
    }

    fn item_done(
        &mut self,
        output_index: usize,
        item: &Value,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), DecodeError> {
        let kind = item_kind(item);
        if !self.items.contains_key(&output_index) {
            // A provider that sends items only when done: start them now.
            self.item_added(output_index, &strip_call_payload(item), out);
        }
        let Some(decoded) = self.items.get_mut(&output_index) else {
            return Ok(());
        };
        let streamed = decoded.streamed;
        match (kind, decoded.index) {
            (ItemKind::Reasoning, Some(index)) => {
                let reasoning = InReasoningItem::deserialize(item)
                    .map_err(|e| DecodeError::Invalid(format!("reasoning item: {e}")))?;
                if !streamed {
                    let Part::Reasoning(whole) = reasoning_part(InReasoningItem {
                        summary: reasoning.summary,
                        content: reasoning.content,
                        encrypted_content: None,
                    }) else {
                        return Ok(());
                    };
                    if !whole.text.is_empty() {
                        out.push(StreamEvent::ReasoningDelta {
                            index,
                            text: whole.text,
                        });
                    }
                }
                if let Some(signature) = reasoning.encrypted_content.filter(|e| !e.is_empty()) {
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
            }
            (ItemKind::FunctionCall, Some(index)) => {
                if let Some(arguments) = item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .filter(|a| !streamed && !a.is_empty())
                {
                    decoded.streamed = true;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: arguments.to_owned(),
                    });
                }
            }
            (ItemKind::CustomToolCall, Some(index)) => {
                if let Some(input) = item
                    .get("input")
                    .and_then(Value::as_str)
                    .filter(|i| !streamed && !i.is_empty())
                {
                    decoded.streamed = true;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: json_string_body(input),
                    });
                }
                if decoded.input_open {
                    decoded.input_open = false;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: "\"}".to_owned(),
                    });
                }
            }
            (ItemKind::Message, _) => {
                // Text that came without deltas arrives whole here.
                let message = InOutputMessage::deserialize(item)
                    .map_err(|e| DecodeError::Invalid(format!("message item: {e}")))?;
                for (content_index, part) in message.content.iter().enumerate() {
                    if self.texts.contains_key(&(output_index, content_index)) {
                        continue;
                    }
                    let kind = part.get("type").and_then(Value::as_str);
                    let key = if kind == Some("refusal") {
                        self.seen.refusal = true;
                        "refusal"
                    } else {
                        "text"
                    };
                    if let Some(text) = part
                        .get(key)
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                    {
                        self.text(output_index, content_index, text.to_owned(), out);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(
        &mut self,
        output_index: usize,
        content_index: usize,
        text: String,
        out: &mut Vec<StreamEvent>,
    ) {
        if text.is_empty() {
            return;
        }
        let index = match self.texts.get(&(output_index, content_index)) {
            Some(&index) => index,
            None => {
                let index = self.allocate();
                self.texts.insert((output_index, content_index), index);
                index
            }
        };
        self.items
            .entry(output_index)
            .or_insert_with(|| DecodedItem::new(ItemKind::Message))
            .streamed = true;
        out.push(StreamEvent::TextDelta { index, text });
    }

    fn reasoning(
        &mut self,
        output_index: usize,
        paragraph: (bool, usize),
        text: String,
        out: &mut Vec<StreamEvent>,
    ) {
        if text.is_empty() {
            return;
        }
        if !self.items.contains_key(&output_index) {
            let mut item = DecodedItem::new(ItemKind::Reasoning);
            item.index = Some(self.allocate());
            self.items.insert(output_index, item);
        }
        let Some(item) = self.items.get_mut(&output_index) else {
            return;
        };
        let Some(index) = item.index else {
            return;
        };
        // A new summary part continues the same canonical part after a blank line.
        if item.paragraph.is_some_and(|p| p != paragraph) {
            out.push(StreamEvent::ReasoningDelta {
                index,
                text: "\n\n".to_owned(),
            });
        }
        item.paragraph = Some(paragraph);
        item.streamed = true;
        out.push(StreamEvent::ReasoningDelta { index, text });
    }

    /// The canonical part of the call item at `output_index`.
    fn call_index(&self, output_index: usize, kind: ItemKind) -> Result<usize, DecodeError> {
        self.items
            .get(&output_index)
            .filter(|item| item.kind == kind)
            .and_then(|item| item.index)
            .ok_or_else(|| {
                DecodeError::Invalid(format!(
                    "tool-call arguments for output item {output_index}, which was not announced \
                     as a tool call"
                ))
            })
    }

    fn mark_streamed(&mut self, output_index: usize) {
        if let Some(item) = self.items.get_mut(&output_index) {
            item.streamed = true;
        }
    }

    /// Called when the upstream body ends: an error event if it ended before its terminal
    /// `response.*` event.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        vec![StreamEvent::Error {
            message: "the provider's stream ended before its last event (response.completed)"
                .into(),
        }]
    }
}

fn item_kind(item: &Value) -> ItemKind {
    match item.get("type").and_then(Value::as_str) {
        Some("message") => ItemKind::Message,
        Some("reasoning") => ItemKind::Reasoning,
        Some("function_call") => ItemKind::FunctionCall,
        Some("custom_tool_call") => ItemKind::CustomToolCall,
        _ => ItemKind::Other,
    }
}

/// A call item without its arguments or input, to start it before its payload is sent.
fn strip_call_payload(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(object) = item.as_object_mut() {
        object.remove("arguments");
        object.remove("input");
    }
    item
}

/// `text` JSON-escaped without the quotes: a piece of a JSON string's body.
fn json_string_body(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .map_or_else(String::new, str::to_owned)
}

fn error_message(error: &Value) -> Option<String> {
    error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Stream: canonical events -> Responses events.

#[derive(Serialize)]
#[serde(tag = "type")]
enum OutEvent<'a> {
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
    fn name(&self) -> &'static str {
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
struct Sequenced<'a> {
    #[serde(flatten)]
    event: &'a OutEvent<'a>,
    sequence_number: u64,
}

fn write_event(out: &mut Vec<u8>, sequence: &mut u64, event: &OutEvent<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing our wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(
        &mut *out,
        &Sequenced {
            event,
            sequence_number: *sequence,
        },
    );
    out.extend_from_slice(b"\n\n");
    *sequence += 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncKind {
    Message,
    Reasoning,
    FunctionCall,
    CustomToolCall,
}

/// One output item of the client's stream.
#[derive(Debug)]
struct EncItem {
    id: String,
    kind: EncKind,
    /// Message text, reasoning summary, call arguments or custom tool input.
    text: String,
    call_id: String,
    name: String,
    /// Reasoning proof for the client (`encrypted_content`).
    encrypted: Option<String>,
    /// `response.output_item.done` was sent.
    done: bool,
}

impl EncItem {
    /// The item as `output_item.added` shows it (`done` false) or as `output_item.done` and
    /// the final response do; an item a failure cut short is `incomplete` there.
    fn wire(&self, done: bool) -> OutOutputItem<'_> {
        let status = match (done, self.done) {
            (false, _) => "in_progress",
            (true, true) => "completed",
            (true, false) => "incomplete",
        };
        match self.kind {
            EncKind::Message => OutOutputItem::Message {
                id: &self.id,
                status,
                role: "assistant",
                content: if done {
                    vec![output_text(&self.text)]
                } else {
                    Vec::new()
                },
            },
            EncKind::Reasoning => OutOutputItem::Reasoning {
                id: &self.id,
                summary: if done {
                    summary(&self.text)
                } else {
                    Vec::new()
                },
                encrypted_content: self
                    .encrypted
                    .as_deref()
                    .filter(|_| done)
                    .map(Cow::Borrowed),
            },
            EncKind::FunctionCall => OutOutputItem::FunctionCall {
                id: &self.id,
                status,
                arguments: match (done, self.text.is_empty()) {
                    (false, _) => "",
                    (true, true) => "{}",
                    (true, false) => &self.text,
                },
                call_id: &self.call_id,
                name: &self.name,
            },
            EncKind::CustomToolCall => OutOutputItem::CustomToolCall {
                id: &self.id,
                status,
                call_id: &self.call_id,
                name: &self.name,
                input: if done {
                    custom_input(&self.text)
                } else {
                    Cow::Borrowed("")
                },
            },
        }
    }
}

/// The events that carry the whole response object.
#[derive(Clone, Copy)]
enum Lifecycle<'a> {
    Created,
    InProgress,
    /// `response.completed` or `response.incomplete`, by the finish reason.
    Terminal,
    Failed(&'a str),
}

/// Turns canonical events into the Responses SSE events a client parses.
///
/// The stream opens with `response.created` and `response.in_progress`. Each canonical part
/// becomes one output item, numbered by `output_index` in order of appearance: text a
/// `message` item with one `output_text` content part, reasoning a `reasoning` item with one
/// summary part, a tool call a `function_call` item (or `custom_tool_call` for the client's
/// custom tools). A text or reasoning item is finished (`…done` events) when the next item
/// starts; tool calls stay open until [`StreamEncoder::finish`], because a provider may
/// interleave the arguments of parallel calls. The terminal event (`response.completed`, or
/// `response.incomplete` after a length or content-filter stop) waits for `finish`, so usage
/// that arrives after the finish reason is included, and carries the whole response.
///
/// An [`StreamEvent::Error`] ends the stream with an `error` event and `response.failed`
/// (whose `response.error` Codex CLI reads).
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    custom_tools: HashSet<String>,
    started: bool,
    ended: bool,
    sequence: u64,
    items: Vec<EncItem>,
    /// Canonical part index -> output index.
    parts: HashMap<usize, usize>,
    /// The text or reasoning item still receiving deltas.
    open: Option<usize>,
    finish: Option<FinishReason>,
    usage: TokenUsage,
}

impl StreamEncoder {
    /// `model` is named in the response if the upstream's stream names none; `created` is the
    /// response's `created_at` (usually [`openai_chat::unix_now`](super::openai_chat::unix_now)).
    pub fn new(model: impl Into<String>, created: u64) -> Self {
        Self {
            id: response_id(""),
            model: model.into(),
            created,
            custom_tools: HashSet::new(),
            started: false,
            ended: false,
            sequence: 0,
            items: Vec::new(),
            parts: HashMap::new(),
            open: None,
            finish: None,
            usage: TokenUsage::default(),
        }
    }

    /// The client's custom tools (from [`custom_tool_names`]): their calls are sent as
    /// `custom_tool_call` items with the text of the `input` argument.
    #[must_use]
    pub fn with_custom_tools(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.custom_tools.extend(names);
        self
    }

    /// Appends the SSE bytes for `event` to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match event {
            StreamEvent::MessageStart { id, model } => {
                if !self.started {
                    if !id.is_empty() {
                        self.id = response_id(id);
                    }
                    if !model.is_empty() {
                        self.model.clone_from(model);
                    }
                    self.start(out);
                }
            }
            StreamEvent::TextDelta { index, text } => {
                if text.is_empty() {
                    return;
                }
                let at = self.streaming_item(*index, EncKind::Message, out);
                let item = &mut self.items[at];
                item.text.push_str(text);
                write_event(
                    out,
                    &mut self.sequence,
                    &OutEvent::TextDelta {
                        item_id: &item.id,
                        output_index: at,
                        content_index: 0,
                        delta: text,
                        logprobs: [],
                    },
                );
            }
            StreamEvent::ReasoningDelta { index, text } => {
                if text.is_empty() {
                    return;
                }
                let at = self.streaming_item(*index, EncKind::Reasoning, out);
                let item = &mut self.items[at];
                if item.text.is_empty() {
                    write_event(
                        out,
                        &mut self.sequence,
                        &OutEvent::SummaryPartAdded {
                            item_id: &item.id,
                            output_index: at,
                            summary_index: 0,
                            part: OutSummary {
                                kind: "summary_text",
                                text: "",
                            },
                        },
                    );
                }
                item.text.push_str(text);
                write_event(
                    out,
                    &mut self.sequence,
                    &OutEvent::SummaryTextDelta {
                        item_id: &item.id,
                        output_index: at,
                        summary_index: 0,
                        delta: text,
                    },
                );
            }
            // Responses has one slot for reasoning proof; the translated path has tagged it
            // with its issuer, so it finds its way back to the provider that made it.
            StreamEvent::ReasoningSignature { index, signature } => {
                let at = self.streaming_item(*index, EncKind::Reasoning, out);
                self.items[at].encrypted = Some(signature.clone());
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                if !self.parts.contains_key(index) {
                    self.open_call(*index, id.clone(), name.clone(), out);
                }
            }
            StreamEvent::ToolCallArgsDelta { index, fragment } => {
                let at = match self.parts.get(index) {
                    Some(&at) => at,
                    // Arguments before their start: the provider skipped the start event.
                    None => self.open_call(
                        *index,
                        format!("call_flexiproxy_{index}"),
                        String::new(),
                        out,
                    ),
                };
                let item = &mut self.items[at];
                if item.done || fragment.is_empty() {
                    return;
                }
                item.text.push_str(fragment);
                // A custom tool's text is only known once its JSON is complete.
                if item.kind == EncKind::FunctionCall {
                    write_event(
                        out,
                        &mut self.sequence,
                        &OutEvent::ArgsDelta {
                            item_id: &item.id,
                            output_index: at,
                            delta: fragment,
                        },
                    );
                }
            }
            StreamEvent::Usage(usage) => merge_usage(&mut self.usage, usage),
            StreamEvent::Finish(reason) => self.finish = Some(reason.clone()),
            StreamEvent::Error { message } => {
                self.start(out);
                self.ended = true;
                write_event(
                    out,
                    &mut self.sequence,
                    &OutEvent::Error {
                        code: "server_error",
                        message,
                        param: None,
                    },
                );
                self.lifecycle(Lifecycle::Failed(message), out);
            }
        }
    }

    /// Ends the client's stream: finishes every open item and sends `response.completed` (or
    /// `response.incomplete`) with the whole response and its usage. Does nothing after an
    /// error event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        for at in 0..self.items.len() {
            self.close(at, out);
        }
        self.ended = true;
        self.lifecycle(Lifecycle::Terminal, out);
    }

    /// Writes an event carrying the whole response object.
    fn lifecycle(&mut self, kind: Lifecycle<'_>, out: &mut Vec<u8>) {
        let (status, incomplete_details) = match kind {
            Lifecycle::Created | Lifecycle::InProgress => ("in_progress", None),
            Lifecycle::Terminal => status_of(self.finish.as_ref()),
            Lifecycle::Failed(_) => ("failed", None),
        };
        let started = matches!(kind, Lifecycle::Created | Lifecycle::InProgress);
        let response = OutResponse {
            id: &self.id,
            object: "response",
            created_at: self.created,
            status,
            error: match kind {
                Lifecycle::Failed(message) => Some(OutResponseError {
                    code: "server_error",
                    message,
                }),
                _ => None,
            },
            incomplete_details,
            instructions: None,
            model: &self.model,
            // The terminal events carry every item in its final form: clients (the SDKs'
            // `get_final_response`, Codex's usage) read the answer from there.
            output: if started {
                Vec::new()
            } else {
                self.items
                    .iter()
                    .map(|item| OutOutput::Item(item.wire(true)))
                    .collect()
            },
            parallel_tool_calls: true,
            tool_choice: "auto",
            tools: [],
            usage: (!started).then(|| OutUsage::from_canonical(&self.usage)),
        };
        let event = match kind {
            Lifecycle::Created => OutEvent::Created { response },
            Lifecycle::InProgress => OutEvent::InProgress { response },
            Lifecycle::Failed(_) => OutEvent::Failed { response },
            Lifecycle::Terminal if status == "completed" => OutEvent::Completed { response },
            Lifecycle::Terminal => OutEvent::Incomplete { response },
        };
        write_event(out, &mut self.sequence, &event);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.lifecycle(Lifecycle::Created, out);
        self.lifecycle(Lifecycle::InProgress, out);
    }

    /// The output index of the text or reasoning item for canonical part `index`, opened (and
    /// the previous one finished) if this is its first event.
    fn streaming_item(&mut self, index: usize, kind: EncKind, out: &mut Vec<u8>) -> usize {
        self.start(out);
        if let Some(&at) = self.parts.get(&index) {
            let item = &self.items[at];
            if item.kind == kind && !item.done {
                return at;
            }
        }
        if let Some(open) = self.open.take() {
            self.close(open, out);
        }
        let prefix = if kind == EncKind::Message {
            "msg"
        } else {
            "rs"
        };
        let at = self.push_item(index, kind, prefix, String::new(), String::new());
        self.open = Some(at);
        let item = &self.items[at];
        write_event(
            out,
            &mut self.sequence,
            &OutEvent::ItemAdded {
                output_index: at,
                item: item.wire(false),
            },
        );
        if kind == EncKind::Message {
            write_event(
                out,
                &mut self.sequence,
                &OutEvent::PartAdded {
                    item_id: &item.id,
                    output_index: at,
                    content_index: 0,
                    part: output_text(""),
                },
            );
        }
        at
    }

    fn open_call(
        &mut self,
        index: usize,
        call_id: String,
        name: String,
        out: &mut Vec<u8>,
    ) -> usize {
        self.start(out);
        if let Some(open) = self.open.take() {
            self.close(open, out);
        }
        let (kind, prefix) = if self.custom_tools.contains(&name) {
            (EncKind::CustomToolCall, "ctc")
        } else {
            (EncKind::FunctionCall, "fc")
        };
        let at = self.push_item(index, kind, prefix, call_id, name);
        write_event(
            out,
            &mut self.sequence,
            &OutEvent::ItemAdded {
                output_index: at,
                item: self.items[at].wire(false),
            },
        );
        at
    }

    fn push_item(
        &mut self,
        index: usize,
        kind: EncKind,
        prefix: &str,
        call_id: String,
        name: String,
    ) -> usize {
        let at = self.items.len();
        self.items.push(EncItem {
            id: item_id(prefix, &self.id, at),
            kind,
            text: String::new(),
            call_id,
            name,
            encrypted: None,
            done: false,
        });
        self.parts.insert(index, at);
        at
    }

    /// Sends the `…done` events of item `at`, once.
    fn close(&mut self, at: usize, out: &mut Vec<u8>) {
        let Some(item) = self.items.get_mut(at) else {
            return;
        };
        if item.done {
            return;
        }
        item.done = true;
        let item = &self.items[at];
        let sequence = &mut self.sequence;
        let id = item.id.as_str();
        match item.kind {
            EncKind::Message => {
                write_event(
                    out,
                    sequence,
                    &OutEvent::TextDone {
                        item_id: id,
                        output_index: at,
                        content_index: 0,
                        text: &item.text,
                        logprobs: [],
                    },
                );
                write_event(
                    out,
                    sequence,
                    &OutEvent::PartDone {
                        item_id: id,
                        output_index: at,
                        content_index: 0,
                        part: output_text(&item.text),
                    },
                );
            }
            EncKind::Reasoning if !item.text.is_empty() => {
                write_event(
                    out,
                    sequence,
                    &OutEvent::SummaryTextDone {
                        item_id: id,
                        output_index: at,
                        summary_index: 0,
                        text: &item.text,
                    },
                );
                write_event(
                    out,
                    sequence,
                    &OutEvent::SummaryPartDone {
                        item_id: id,
                        output_index: at,
                        summary_index: 0,
                        part: OutSummary {
                            kind: "summary_text",
                            text: &item.text,
                        },
                    },
                );
            }
            EncKind::Reasoning => {}
            EncKind::FunctionCall => write_event(
                out,
                sequence,
                &OutEvent::ArgsDone {
                    item_id: id,
                    output_index: at,
                    arguments: if item.text.is_empty() {
                        "{}"
                    } else {
                        &item.text
                    },
                },
            ),
            EncKind::CustomToolCall => {
                let input = custom_input(&item.text);
                if !input.is_empty() {
                    write_event(
                        out,
                        sequence,
                        &OutEvent::CustomInputDelta {
                            item_id: id,
                            output_index: at,
                            delta: &input,
                        },
                    );
                }
                write_event(
                    out,
                    sequence,
                    &OutEvent::CustomInputDone {
                        item_id: id,
                        output_index: at,
                        input: &input,
                    },
                );
            }
        }
        write_event(
            out,
            sequence,
            &OutEvent::ItemDone {
                output_index: at,
                item: item.wire(true),
            },
        );
    }
}

/// OpenAI Responses on the wire.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiResponses;

impl Wire for OpenAiResponses {
    fn decode_request(&self, body: &[u8]) -> Result<Request, DecodeError> {
        request_to_canonical(body)
    }
    fn encode_request(&self, request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
        Ok(request_from_canonical(request))
    }
    fn decode_response(&self, body: &[u8]) -> Result<Response, DecodeError> {
        response_to_canonical(body)
    }
    fn encode_response(&self, response: &Response, view: &ClientView) -> Vec<u8> {
        response_from_canonical_with_custom_tools(response, view.created, &view.custom_tools)
    }
    fn response_usage(&self, body: &[u8]) -> Option<TokenUsage> {
        response_usage(body)
    }
    fn event_usage(&self, data: &[u8]) -> Option<TokenUsage> {
        event_usage(data)
    }
    fn stream_decoder(&self) -> Box<dyn DecodeStream> {
        Box::new(StreamDecoder::default())
    }
    fn stream_encoder(&self, view: &ClientView) -> Box<dyn EncodeStream> {
        Box::new(
            StreamEncoder::new(view.model.clone(), view.created)
                .with_custom_tools(view.custom_tools.clone()),
        )
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        report_body(report)
    }
    fn client_view(&self, request: &Request, created: u64) -> ClientView {
        ClientView {
            custom_tools: custom_tool_names(request),
            ..ClientView::plain(request, created)
        }
    }
}

impl DecodeStream for StreamDecoder {
    fn decode(&mut self, event: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        Self::decode(self, event)
    }
    fn is_done(&self) -> bool {
        Self::is_done(self)
    }
    fn finish(&mut self) -> Vec<StreamEvent> {
        Self::finish(self)
    }
}

impl EncodeStream for StreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        Self::encode(self, event, out);
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        Self::finish(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(value: &Value) -> Result<Request, DecodeError> {
        request_to_canonical(value.to_string().as_bytes())
    }

    fn encode(request: &Request) -> Value {
        serde_json::from_slice(&request_from_canonical(request)).unwrap()
    }

    #[test]
    fn string_input_easy_messages_and_choices_decode() {
        let request =
            decode(&json!({"model": "m", "input": "hi", "instructions": "be brief"})).unwrap();
        assert_eq!(request.system, ["be brief"]);
        assert_eq!(request.messages[0].content, [Part::text("hi")]);
        assert_eq!(request.origin, Some(PROTOCOL));

        let request = decode(&json!({
            "model": "m",
            "input": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [
                    {"type": "input_image", "image_url": "https://x/y.png"},
                    {"type": "input_image", "file_id": "file-1"},
                    {"type": "input_file", "file_id": "file-2"}
                ]},
                {"role": "user", "content": "again"},
                {"type": "item_reference", "id": "msg_1"}
            ],
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": null, "summary": "auto"},
            "user": "u1"
        }))
        .unwrap();
        assert_eq!(request.system, ["s"]);
        // Every user message is its own turn; the reference is kept for a Responses provider.
        assert_eq!(request.messages.len(), 3);
        let user = &request.messages[0].content;
        assert_eq!(
            user[0],
            Part::Image(Image::Url {
                url: "https://x/y.png".into()
            })
        );
        assert!(matches!(&user[1], Part::Unknown(v) if v["file_id"] == "file-1"));
        assert!(matches!(&user[2], Part::Unknown(_)));
        assert!(
            matches!(&request.messages[2].content[0], Part::Unknown(v) if v["type"] == "item_reference")
        );
        assert_eq!(request.tool_choice, None);
        assert_eq!(request.extra["tool_choice"]["type"], "allowed_tools");
        assert_eq!(
            request.response_format,
            Some(ResponseFormat::JsonSchema {
                name: "out".into(),
                schema: json!({"type": "object"}),
                strict: Some(true)
            })
        );
        assert_eq!(request.reasoning, Some(ReasoningConfig::default()));
        assert_eq!(request.extra["user"], "u1");

        // Kept items and the client's own tool choice go back only to a Responses provider.
        let out = encode(&request);
        assert_eq!(out["tool_choice"]["type"], "allowed_tools");
        assert_eq!(
            out["input"][2],
            json!({"type": "item_reference", "id": "msg_1"})
        );
        assert_eq!(
            out["input"][0]["content"][1],
            json!({"type": "input_image", "file_id": "file-1"})
        );
        assert_eq!(out["reasoning"], json!({"summary": "auto"}));
        assert_eq!(out["text"]["format"]["strict"], true);
        assert!(
            out.get("store").is_none(),
            "the client's store default applies"
        );
    }

    #[test]
    fn named_tool_choices_and_custom_tools() {
        let request = decode(&json!({
            "model": "m",
            "tools": [
                {"type": "custom", "name": "patch", "format": {"type": "text"}},
                {"type": "function", "name": "f", "parameters": null}
            ],
            "tool_choice": {"type": "custom", "name": "patch"}
        }))
        .unwrap();
        assert_eq!(request.tool_choice, Some(ToolChoice::Named("patch".into())));
        assert_eq!(custom_tool_names(&request), ["patch"]);
        assert_eq!(request.tools[0].description, None);
        assert_eq!(request.tools[1].parameters["type"], "object");
        let out = encode(&request);
        assert_eq!(
            out["tool_choice"],
            json!({"type": "custom", "name": "patch"})
        );
        // The custom tool goes as sent, not also as a function.
        let tools = out["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[0]["name"], "f");
        assert_eq!(tools[1]["type"], "custom");

        let mut foreign = request;
        foreign.origin = Some(Protocol::OpenAiChat);
        assert!(custom_tool_names(&foreign).is_empty());
    }

    #[test]
    fn bad_requests_are_typed_errors_with_a_hint() {
        for (body, hint) in [
            (
                json!({"model": "m", "reasoning": {"effort": "max"}}),
                "reasoning.effort",
            ),
            (
                json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
                "role",
            ),
            (json!({"model": "m", "input": [{"content": "x"}]}), "`type`"),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
                "call_id",
            ),
            (json!({"model": "m", "tool_choice": 3}), "tool_choice"),
            (
                json!({"model": "m", "tool_choice": {"type": "function"}}),
                "name",
            ),
            (
                json!({"model": "m", "text": {"format": {"type": "yaml"}}}),
                "text.format",
            ),
            (
                json!({"model": "m", "input": [{"role": "developer", "content": [{"type": "input_image", "image_url": "u"}]}]}),
                "only hold text",
            ),
        ] {
            let err = decode(&body).unwrap_err().to_string();
            assert!(err.contains(hint), "{err} should mention {hint}");
        }
        assert!(request_to_canonical(b"[]").is_err());
    }

    #[test]
    fn foreign_requests_get_safe_defaults() {
        let request = Request {
            model: "gpt-5".into(),
            system: vec!["s1".into(), String::new(), "s2".into()],
            messages: vec![
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Reasoning(Reasoning {
                            text: "t".into(),
                            signature: Some("sig".into()),
                            encrypted: None,
                            issuer: Some(Protocol::AnthropicMessages),
                        }),
                        Part::Reasoning(Reasoning {
                            text: "summary only".into(),
                            signature: None,
                            encrypted: None,
                            issuer: Some(PROTOCOL),
                        }),
                        Part::Unknown(json!({"type": "server_tool_use"})),
                        Part::ToolCall {
                            id: "toolu_1".into(),
                            name: "f".into(),
                            arguments: String::new(),
                        },
                    ],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        Part::text("look"),
                        Part::ToolResult {
                            call_id: "toolu_1".into(),
                            content: vec![
                                Part::text("chart:"),
                                Part::Image(Image::Base64 {
                                    media_type: "image/png".into(),
                                    data: "AAAA".into(),
                                }),
                            ],
                            is_error: false,
                        },
                    ],
                },
            ],
            max_tokens: Some(1),
            stop: vec!["END".into()],
            stream: true,
            reasoning: Some(ReasoningConfig {
                effort: None,
                budget_tokens: Some(0),
            }),
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(false),
            extra: Map::from_iter([("top_k".to_owned(), json!(3))]),
            origin: Some(Protocol::AnthropicMessages),
            ..Request::default()
        };
        let out = encode(&request);
        assert_eq!(
            out,
            json!({
                "model": "gpt-5",
                "instructions": "s1\n\ns2",
                "input": [
                    {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "toolu_1", "output": [
                        {"type": "input_text", "text": "chart:"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}
                    ]},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}]}
                ],
                "max_output_tokens": 16,
                "stream": true,
                "store": false
            })
        );

        // Reasoning asked for without a level: the provider's default level.
        let mut asked = request;
        asked.reasoning = Some(ReasoningConfig {
            effort: None,
            budget_tokens: Some(3000),
        });
        assert_eq!(encode(&asked)["reasoning"], json!({"effort": "low"}));
        asked.reasoning = Some(ReasoningConfig::default());
        assert_eq!(encode(&asked)["reasoning"], json!({}));
    }

    #[test]
    fn foreign_reasoning_proof_reaches_clients_tagged() {
        let anthropic = Reasoning {
            text: "t".into(),
            signature: Some("sig.with.dots".into()),
            encrypted: None,
            issuer: Some(Protocol::AnthropicMessages),
        };
        let wrapped = client_encrypted(&anthropic).unwrap().into_owned();
        assert_eq!(
            untag_proof(&wrapped),
            Some((
                Protocol::AnthropicMessages,
                ProofKind::Signature,
                "sig.with.dots".to_owned()
            ))
        );
        // Read back from a client, then adopted as the translated path does: Anthropic's again.
        let item = |encrypted: &str| InReasoningItem {
            summary: vec![InText { text: "t".into() }],
            content: None,
            encrypted_content: Some(encrypted.to_owned()),
        };
        let Part::Reasoning(mut back) = reasoning_part(item(&wrapped)) else {
            panic!("reasoning");
        };
        back.adopt_tag();
        assert_eq!(back, anthropic);
        // Already tagged proofs are not tagged twice; a Responses provider's own goes as is.
        let tagged = Reasoning {
            signature: Some(wrapped.clone()),
            ..anthropic.clone()
        };
        assert_eq!(client_encrypted(&tagged).as_deref(), Some(wrapped.as_str()));
        let own = Reasoning {
            signature: None,
            encrypted: Some("gAAAA".into()),
            issuer: Some(PROTOCOL),
            ..anthropic
        };
        assert_eq!(client_encrypted(&own).as_deref(), Some("gAAAA"));
        let unsigned = Reasoning {
            issuer: None,
            ..own
        };
        assert_eq!(client_encrypted(&unsigned), None);
    }

    #[test]
    fn custom_tool_text_comes_out_of_the_arguments() {
        assert_eq!(custom_input(r#"{"input":"a\nb"}"#), "a\nb");
        assert_eq!(custom_input(r#"{"patch":"x"}"#), r#"{"patch":"x"}"#);
        assert_eq!(custom_input("not json"), "not json");
        assert_eq!(custom_arguments("say \"hi\""), r#"{"input":"say \"hi\""}"#);
        assert_eq!(json_string_body("a\"\n\u{1}é"), "a\\\"\\n\\u0001é");
    }

    #[test]
    fn answers_map_status_to_finish_reasons() {
        let answer = |status: &str, reason: Option<&str>, output: Value| {
            let body = json!({"id": "r", "status": status, "incomplete_details": reason.map(|r| json!({"reason": r})), "output": output});
            response_to_canonical(body.to_string().as_bytes()).unwrap()
        };
        let call =
            json!([{"type": "custom_tool_call", "call_id": "c", "name": "patch", "input": "x"}]);
        let response = answer("completed", None, call);
        assert_eq!(response.finish, Some(FinishReason::ToolCalls));
        assert_eq!(
            response.content[0],
            Part::ToolCall {
                id: "c".into(),
                name: "patch".into(),
                arguments: r#"{"input":"x"}"#.into()
            }
        );
        let refusal =
            json!([{"type": "message", "content": [{"type": "refusal", "refusal": "no"}]}]);
        let response = answer("completed", None, refusal);
        assert_eq!(response.finish, Some(FinishReason::ContentFilter));
        assert_eq!(response.content, [Part::text("no")]);
        assert_eq!(
            answer("incomplete", Some("content_filter"), json!([])).finish,
            Some(FinishReason::ContentFilter)
        );
        assert_eq!(
            answer("failed", None, json!([])).finish,
            Some(FinishReason::Other("failed".into()))
        );
        assert!(response_to_canonical(br#"{"id":"r"}"#).is_err());

        // Back out to a Responses client: the custom call is text again.
        let response = answer(
            "completed",
            None,
            json!([{"type": "custom_tool_call", "call_id": "c", "name": "patch", "input": "x"}]),
        );
        let out: Value = serde_json::from_slice(&response_from_canonical_with_custom_tools(
            &response,
            7,
            &["patch".to_owned()],
        ))
        .unwrap();
        assert_eq!(
            out["output"][0],
            json!({"type": "custom_tool_call", "id": "ctc_r_0", "status": "completed", "call_id": "c", "name": "patch", "input": "x"})
        );
        assert_eq!(out["id"], "resp_r");
        assert_eq!(out["created_at"], 7);
        let plain: Value = serde_json::from_slice(&response_from_canonical(&response, 7)).unwrap();
        assert_eq!(plain["output"][0]["arguments"], r#"{"input":"x"}"#);
    }

    #[test]
    fn usage_is_read_on_the_side_and_errors_have_openai_shape() {
        let completed = br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":13}}}"#;
        assert_eq!(
            event_usage(completed),
            Some(TokenUsage {
                input: Some(10),
                output: Some(3),
                cached: Some(4),
                reasoning: Some(2)
            })
        );
        assert_eq!(
            event_usage(br#"{"type":"response.created","response":{"usage":null}}"#),
            None
        );
        assert_eq!(
            event_usage(br#"{"type":"response.output_text.delta","delta":"usage"}"#),
            None
        );
        assert_eq!(
            response_usage(br#"{"output":[],"usage":{"input_tokens":1,"output_tokens":2}}"#)
                .unwrap()
                .output,
            Some(2)
        );
        let body: Value = serde_json::from_slice(&error_body(429, "slow down")).unwrap();
        assert_eq!(
            body,
            json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
        );
        let body: Value = serde_json::from_slice(&error_body(400, "bad")).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], Value::Null);
    }

    fn decode_events(events: &[Value]) -> (Vec<StreamEvent>, StreamDecoder) {
        let mut decoder = StreamDecoder::default();
        let mut out = Vec::new();
        for event in events {
            let raw = format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap_or("")
            );
            out.extend(decoder.decode(raw.as_bytes()).unwrap());
        }
        (out, decoder)
    }

    fn args_of(events: &[StreamEvent], wanted: usize) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallArgsDelta { index, fragment } if *index == wanted => {
                    Some(fragment.as_str())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn custom_tool_input_streams_as_json_and_done_only_items_decode() {
        let (events, decoder) = decode_events(&[
            json!({"type": "response.created", "response": {"id": "r", "model": "m"}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "custom_tool_call", "id": "ctc", "call_id": "c1", "name": "patch", "input": ""}}),
            json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": "line \"1\"\n"}),
            json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": "line 2"}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "custom_tool_call", "id": "ctc", "call_id": "c1", "name": "patch", "input": "line \"1\"\nline 2"}}),
            // Items that only arrive done (no added, no deltas) still come through.
            json!({"type": "response.output_item.done", "output_index": 1, "item": {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}], "encrypted_content": "enc"}}),
            json!({"type": "response.output_item.done", "output_index": 2, "item": {"type": "message", "content": [{"type": "output_text", "text": "hello"}]}}),
            json!({"type": "response.output_item.done", "output_index": 3, "item": {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"a\":1}"}}),
            json!({"type": "response.output_text.annotation.added", "output_index": 2}),
            json!({"type": "response.completed", "response": {"id": "r", "status": "completed"}}),
        ]);
        assert!(decoder.is_done());
        let input: Value = serde_json::from_str(&args_of(&events, 0)).unwrap();
        assert_eq!(input, json!({"input": "line \"1\"\nline 2"}));
        assert!(events.contains(&StreamEvent::ReasoningDelta {
            index: 1,
            text: "a\n\nb".into()
        }));
        assert!(events.contains(&StreamEvent::ReasoningSignature {
            index: 1,
            signature: "enc".into()
        }));
        assert!(events.contains(&StreamEvent::TextDelta {
            index: 2,
            text: "hello".into()
        }));
        assert!(events.contains(&StreamEvent::ToolCallStart {
            index: 3,
            id: "c2".into(),
            name: "f".into()
        }));
        assert_eq!(args_of(&events, 3), r#"{"a":1}"#);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish(FinishReason::ToolCalls))
        );
    }

    #[test]
    fn provider_errors_end_the_stream() {
        for (event, message) in [
            (
                json!({"type": "response.failed", "response": {"id": "r", "status": "failed", "error": {"code": "server_error", "message": "boom"}}}),
                "boom",
            ),
            (
                json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": null}),
                "slow",
            ),
            (
                json!({"type": "error", "error": {"message": "nested"}}),
                "nested",
            ),
            (json!({"type": "error", "code": "only_code"}), "only_code"),
        ] {
            let (events, mut decoder) = decode_events(&[event]);
            assert_eq!(
                events,
                [StreamEvent::Error {
                    message: message.into()
                }]
            );
            assert!(decoder.is_done());
            assert!(decoder.finish().is_empty());
        }
        let (events, _) = decode_events(&[
            json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": {"input_tokens": 1, "output_tokens": 2}}}),
        ]);
        assert_eq!(events[1], StreamEvent::Finish(FinishReason::Length));

        let mut decoder = StreamDecoder::default();
        assert!(decoder.decode(b"data: [DONE]\n\n").unwrap().is_empty());
        assert!(
            decoder
                .decode(br#"data: {"type":"response.function_call_arguments.delta","output_index":4,"delta":"{"}"#)
                .is_err()
        );
        assert!(decoder.decode(b"data: {oops}\n\n").is_err());
        assert!(matches!(
            decoder.finish().as_slice(),
            [StreamEvent::Error { .. }]
        ));
    }

    fn encode_all(events: &[StreamEvent], encoder: StreamEncoder) -> (String, Vec<Value>) {
        let mut encoder = encoder;
        let mut out = Vec::new();
        for event in events {
            encoder.encode(event, &mut out);
        }
        encoder.finish(&mut out);
        encoder.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        let values = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.split_once("\ndata: ").unwrap().1).unwrap())
            .collect();
        (text, values)
    }

    #[test]
    fn the_encoder_copes_with_a_missing_start_late_usage_and_signatures() {
        let events = [
            StreamEvent::ReasoningDelta {
                index: 0,
                text: "think".into(),
            },
            StreamEvent::ReasoningSignature {
                index: 0,
                signature: "sig".into(),
            },
            StreamEvent::TextDelta {
                index: 1,
                text: "hi".into(),
            },
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(TokenUsage {
                input: Some(3),
                output: Some(1),
                cached: None,
                reasoning: None,
            }),
        ];
        let (text, values) = encode_all(&events, StreamEncoder::new("m", 5));
        assert!(
            text.contains(r#""encrypted_content":"sig""#),
            "the proof rides in encrypted_content: {text}"
        );
        assert_eq!(values[0]["response"]["id"], "resp_flexiproxy");
        assert_eq!(values[0]["response"]["model"], "m");
        let last = values.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        assert_eq!(last["response"]["usage"]["total_tokens"], 4);
        assert_eq!(
            values
                .iter()
                .filter(|v| v["type"] == "response.completed")
                .count(),
            1,
            "finish twice sends one terminal event"
        );
        for (i, value) in values.iter().enumerate() {
            assert_eq!(value["sequence_number"], i);
        }

        let (_, values) = encode_all(&events, StreamEncoder::new("m", 5));
        let reasoning = &values
            .iter()
            .find(|v| v["type"] == "response.output_item.done")
            .unwrap()["item"];
        assert_eq!(reasoning["encrypted_content"], "sig");

        // Our decoder reads the encoder's stream back into the same parts.
        let (text, _) = encode_all(&events, StreamEncoder::new("m", 5));
        let mut splitter = sse::EventSplitter::default();
        let mut decoder = StreamDecoder::default();
        let mut decoded = Vec::new();
        for event in splitter.push(bytes::Bytes::from(text)).unwrap() {
            decoded.extend(decoder.decode(&event).unwrap());
        }
        assert!(decoder.is_done());
        let mut expected = vec![StreamEvent::MessageStart {
            id: "resp_flexiproxy".into(),
            model: "m".into(),
        }];
        expected.extend(events[..3].iter().cloned());
        expected.push(StreamEvent::Usage(TokenUsage {
            input: Some(3),
            output: Some(1),
            cached: Some(0),
            reasoning: Some(0),
        }));
        expected.push(StreamEvent::Finish(FinishReason::Stop));
        assert_eq!(decoded, expected);
    }

    #[test]
    fn an_error_ends_the_stream_with_error_and_response_failed() {
        let events = [
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallArgsDelta {
                index: 0,
                fragment: "{\"a\"".into(),
            },
            StreamEvent::Error {
                message: "upstream broke".into(),
            },
            StreamEvent::TextDelta {
                index: 1,
                text: "ignored".into(),
            },
        ];
        let (text, values) = encode_all(&events, StreamEncoder::new("m", 5));
        assert!(!text.contains("ignored") && !text.contains("response.completed"));
        let kinds: Vec<&str> = values.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "error",
                "response.failed"
            ]
        );
        assert_eq!(values[4]["message"], "upstream broke");
        let failed = &values[5]["response"];
        assert_eq!(failed["status"], "failed");
        assert_eq!(
            failed["error"],
            json!({"code": "server_error", "message": "upstream broke"})
        );
        assert_eq!(failed["output"][0]["arguments"], "{\"a\"");
        assert_eq!(failed["output"][0]["status"], "incomplete");
    }

    #[test]
    fn length_and_filter_stops_end_incomplete() {
        for (finish, reason) in [
            (FinishReason::Length, "max_output_tokens"),
            (FinishReason::ContentFilter, "content_filter"),
        ] {
            let (_, values) = encode_all(
                &[
                    StreamEvent::MessageStart {
                        id: "msg_9".into(),
                        model: String::new(),
                    },
                    StreamEvent::TextDelta {
                        index: 0,
                        text: "cut".into(),
                    },
                    StreamEvent::Finish(finish),
                ],
                StreamEncoder::new("fallback", 5),
            );
            let last = values.last().unwrap();
            assert_eq!(last["type"], "response.incomplete");
            assert_eq!(last["response"]["id"], "resp_msg_9");
            assert_eq!(last["response"]["model"], "fallback");
            assert_eq!(last["response"]["incomplete_details"]["reason"], reason);
            assert_eq!(last["response"]["output"][0]["content"][0]["text"], "cut");
        }
    }
}
