//! The OpenAI-compatible API family (Chat Completions, legacy Completions, Embeddings).
//!
//! Two uses. On the same-protocol path `relay` forwards the body as bytes and this module only
//! says which endpoints exist and reads token usage from a response body or stream chunk
//! without building the whole message ([`response_usage`], [`chunk_usage`]). On a translated
//! path it converts Chat Completions to and from `canonical`: [`request_to_canonical`],
//! [`request_from_canonical`], [`response_to_canonical`], [`response_from_canonical`], and the
//! streaming [`StreamDecoder`] (provider chunks to canonical events) and [`StreamEncoder`]
//! (canonical events to client chunks). All wire types are private.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ExtraFields, to_json};
use crate::canonical::TokenUsage;
use crate::canonical::{
    DecodeError, Effort, FinishReason, Image, Message, Part, Reasoning, ReasoningConfig, Request,
    Response, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, merge_usage,
};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;
use crate::{Protocol, json_schema};

/// The OpenAI-compatible endpoints the gateway relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The path below the provider's base URL (which ends in `/v1` or similar).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
        }
    }

    /// The name recorded in usage rows.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }

    /// Whether the endpoint streams and accepts `stream_options.include_usage`.
    pub fn streams(self) -> bool {
        !matches!(self, Self::Embeddings)
    }
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for TokenUsage {
    fn from(wire: WireUsage) -> Self {
        Self {
            input: wire.prompt_tokens,
            output: wire.completion_tokens,
            cached: wire.prompt_tokens_details.and_then(|d| d.cached_tokens),
            reasoning: wire
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens),
        }
    }
}

#[derive(Deserialize)]
struct UsageCarrier {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
}

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

// ---------------------------------------------------------------------------------------------
// Translation: Chat Completions to and from the canonical model.
//
// Used when a Chat Completions client reaches a provider of another protocol, or a Chat
// Completions provider serves a client of another protocol. Only `choices[0]` is read and
// written (`n > 1` has no counterpart elsewhere). OpenAI-compatible hosts differ in what they
// accept, so what is written sticks to the common core: `max_tokens` (except for OpenAI's
// reasoning models, which refuse it and want `max_completion_tokens`), string content where
// there are no images, and reasoning text as DeepSeek's `reasoning_content`.

/// Fields this module writes itself when encoding, so a client's copy in `extra` is not merged.
const OWN_FIELDS: [&str; 2] = ["stream_options", "max_completion_tokens"];

#[derive(Deserialize)]
struct InChatRequest {
    model: String,
    messages: Vec<InChatMessage>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<InStop>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    reasoning_effort: Option<String>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InStop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InChatContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
struct InChatMessage {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Option<InChatContent>,
    #[serde(default)]
    tool_calls: Option<Vec<InToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    /// DeepSeek and most reasoning hosts put reasoning text here.
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct InToolCall {
    #[serde(default)]
    id: String,
    function: InFunction,
}

#[derive(Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct InFunctionTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// Decodes a client's Chat Completions request.
pub fn request_to_canonical(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: InChatRequest = serde_json::from_slice(body)?;
    let mut request = Request {
        model: wire.model,
        parallel_tool_calls: wire.parallel_tool_calls,
        max_tokens: wire.max_completion_tokens.or(wire.max_tokens),
        temperature: wire.temperature,
        top_p: wire.top_p,
        stop: match wire.stop {
            None => Vec::new(),
            Some(InStop::One(stop)) => vec![stop],
            Some(InStop::Many(stops)) => stops,
        },
        stream: wire.stream.unwrap_or(false),
        extra: wire.extra,
        origin: Some(Protocol::OpenAiChat),
        ..Request::default()
    };
    if let Some(effort) = wire.reasoning_effort {
        let effort = Effort::parse(&effort).ok_or_else(|| {
            DecodeError::Invalid(format!(
                "reasoning_effort `{effort}` is not one of none, minimal, low, medium, high"
            ))
        })?;
        request.reasoning = Some(ReasoningConfig {
            effort: Some(effort),
            budget_tokens: None,
        });
    }
    for (i, message) in wire.messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        match message.role.as_str() {
            "system" | "developer" => {
                for part in chat_content(message.content, &at)? {
                    match part {
                        Part::Text { text } => request.system.push(text),
                        _ => {
                            return Err(DecodeError::Invalid(format!(
                                "{at}: system messages may only hold text"
                            )));
                        }
                    }
                }
            }
            "user" => request.messages.push(Message {
                role: Role::User,
                content: chat_content(message.content, &at)?,
            }),
            "assistant" => request.messages.push(Message {
                role: Role::Assistant,
                content: assistant_parts(message, &at)?,
            }),
            "tool" => {
                let call_id = message.tool_call_id.ok_or_else(|| {
                    DecodeError::Invalid(format!("{at}: a tool message needs `tool_call_id`"))
                })?;
                request.messages.push(Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id,
                        content: chat_content(message.content, &at)?,
                        is_error: false,
                    }],
                });
            }
            other => {
                return Err(DecodeError::Invalid(format!(
                    "{at}.role is `{other}`; use system, developer, user, assistant or tool"
                )));
            }
        }
    }
    for (i, tool) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) == Some("function") {
            let function = tool.get("function").ok_or_else(|| {
                DecodeError::Invalid(format!("tools[{i}]: a function tool needs `function`"))
            })?;
            let def = InFunctionTool::deserialize(function)
                .map_err(|e| DecodeError::Invalid(format!("tools[{i}].function: {e}")))?;
            request.tools.push(Tool {
                name: def.name,
                description: def.description,
                // A tool without parameters takes none; every target wants a schema.
                parameters: def
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            });
        } else {
            request.native_tools.push(tool);
        }
    }
    request.tool_choice = match wire.tool_choice {
        None | Some(Value::Null) => None,
        Some(choice) => Some(tool_choice(&choice)?),
    };
    request.response_format = match wire.response_format {
        None | Some(Value::Null) => None,
        Some(format) => response_format_from_wire(&format)?,
    };
    Ok(request)
}

/// Reads Chat Completions' `response_format` (`text`, `json_object`, `json_schema`).
pub fn response_format_from_wire(format: &Value) -> Result<Option<ResponseFormat>, DecodeError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let spec = format.get("json_schema").ok_or_else(|| {
                DecodeError::Invalid(
                    "response_format: `json_schema` needs a `json_schema` object".into(),
                )
            })?;
            Ok(Some(ResponseFormat::JsonSchema {
                name: spec
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .to_owned(),
                schema: spec
                    .get("schema")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
                strict: spec.get("strict").and_then(Value::as_bool),
            }))
        }
        _ => Err(DecodeError::Invalid(
            "response_format.type must be text, json_object or json_schema".into(),
        )),
    }
}

/// Chat Completions' `response_format` for a canonical one.
pub fn response_format_to_wire(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::JsonObject => serde_json::json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            let mut spec = serde_json::json!({"name": name, "schema": schema});
            if let Some(strict) = strict {
                spec["strict"] = Value::Bool(*strict);
            }
            serde_json::json!({"type": "json_schema", "json_schema": spec})
        }
    }
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, DecodeError> {
    match choice {
        Value::String(s) if s == "auto" => Ok(ToolChoice::Auto),
        Value::String(s) if s == "none" => Ok(ToolChoice::None),
        Value::String(s) if s == "required" => Ok(ToolChoice::Required),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Named(name.to_owned()))
            .ok_or_else(|| {
                DecodeError::Invalid(
                    "tool_choice object must be {\"type\":\"function\",\"function\":{\"name\":…}}"
                        .into(),
                )
            }),
        _ => Err(DecodeError::Invalid(
            "tool_choice must be auto, none, required or a named function".into(),
        )),
    }
}

/// An assistant turn's parts in answer order: reasoning, text (a refusal as text), tool calls.
/// The same for a past turn in a request and for a provider's answer.
fn assistant_parts(message: InChatMessage, at: &str) -> Result<Vec<Part>, DecodeError> {
    let mut content = Vec::new();
    if let Some(text) = message.reasoning_content.filter(|t| !t.is_empty()) {
        content.push(Part::Reasoning(Reasoning {
            text,
            signature: None,
            encrypted: None,
            issuer: None,
        }));
    }
    content.extend(chat_content(message.content, at)?);
    if let Some(refusal) = message.refusal {
        content.push(Part::Text { text: refusal });
    }
    for call in message.tool_calls.unwrap_or_default() {
        content.push(Part::ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
        });
    }
    Ok(content)
}

fn chat_content(content: Option<InChatContent>, at: &str) -> Result<Vec<Part>, DecodeError> {
    match content {
        None => Ok(Vec::new()),
        Some(InChatContent::Text(text)) if text.is_empty() => Ok(Vec::new()),
        Some(InChatContent::Text(text)) => Ok(vec![Part::Text { text }]),
        Some(InChatContent::Parts(parts)) => parts
            .into_iter()
            .enumerate()
            .map(|(j, part)| chat_part(part, &format!("{at}.content[{j}]")))
            .collect(),
    }
}

fn chat_part(part: Value, at: &str) -> Result<Part, DecodeError> {
    let text_of = |key: &str| part.get(key).and_then(Value::as_str).map(str::to_owned);
    match part.get("type").and_then(Value::as_str) {
        Some("text") => text_of("text")
            .map(|text| Part::Text { text })
            .ok_or_else(|| DecodeError::Invalid(format!("{at}: a text part needs `text`"))),
        Some("refusal") => Ok(Part::Text {
            text: text_of("refusal").unwrap_or_default(),
        }),
        Some("image_url") => {
            let url = part
                .get("image_url")
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    DecodeError::Invalid(format!("{at}: an image_url part needs `image_url.url`"))
                })?;
            Ok(Part::Image(Image::from_url(url)))
        }
        _ => Ok(Part::Unknown(part)),
    }
}

/// Whether a Chat Completions client asked for the final usage chunk
/// (`stream_options.include_usage`); the gateway always asks the provider for it.
pub fn client_wants_usage(request: &Request) -> bool {
    request
        .extra
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[derive(Serialize)]
struct OutChatRequest<'a> {
    model: &'a str,
    messages: Vec<OutChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<IncludeUsage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutChatTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutChatToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(flatten)]
    extra: Option<ExtraFields<'a>>,
}

#[derive(Serialize)]
struct IncludeUsage {
    include_usage: bool,
}

#[derive(Serialize)]
struct OutChatMessage<'a> {
    role: &'static str,
    /// `null` for an assistant turn that only calls tools.
    content: Option<OutChatContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutChatContent<'a> {
    Text(String),
    Parts(Vec<OutChatPart<'a>>),
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutChatPart<'a> {
    Typed(OutTypedPart<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutTypedPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImageUrl },
}

#[derive(Serialize)]
struct OutImageUrl {
    url: String,
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

impl<'a> OutToolCall<'a> {
    fn function(id: &'a str, name: &'a str, arguments: &'a str) -> Self {
        Self {
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
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutChatTool<'a> {
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: OutFunctionDef<'a>,
    },
    Native(&'a Value),
}

#[derive(Serialize)]
struct OutFunctionDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: Cow<'a, Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutChatToolChoice<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: OutNamed<'a>,
    },
}

#[derive(Serialize)]
struct OutNamed<'a> {
    name: &'a str,
}

/// Encodes a request for a Chat Completions provider. Streams always ask for the final usage
/// chunk, which is where usage is read from.
pub fn request_from_canonical(request: &Request) -> Vec<u8> {
    let native = request.origin == Some(Protocol::OpenAiChat);
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    let system: Vec<&str> = request
        .system
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if !system.is_empty() {
        messages.push(OutChatMessage {
            role: "system",
            content: Some(OutChatContent::Text(system.join("\n\n"))),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
    }
    for message in &request.messages {
        match message.role {
            Role::Assistant => messages.extend(assistant_out(&message.content)),
            Role::User | Role::Tool => user_out(&message.content, native, &mut messages),
        }
    }
    let mut tools: Vec<OutChatTool<'_>> = request
        .tools
        .iter()
        .map(|tool| OutChatTool::Function {
            kind: "function",
            function: OutFunctionDef {
                name: &tool.name,
                description: tool.description.as_deref(),
                parameters: json_schema::object_at_top_cow(&tool.parameters),
            },
        })
        .collect();
    if native {
        tools.extend(request.native_tools.iter().map(OutChatTool::Native));
    }
    let has_tools = !tools.is_empty();
    let reasoning_model = is_openai_reasoning_model(&request.model);
    let wire = OutChatRequest {
        model: &request.model,
        messages,
        max_tokens: request.max_tokens.filter(|_| !reasoning_model),
        max_completion_tokens: request.max_tokens.filter(|_| reasoning_model),
        // Reasoning models accept only their default sampling.
        temperature: request.temperature.filter(|_| !reasoning_model),
        top_p: request.top_p.filter(|_| !reasoning_model),
        stop: &request.stop,
        stream: request.stream,
        stream_options: request.stream.then_some(IncludeUsage {
            include_usage: true,
        }),
        tools,
        tool_choice: request.tool_choice.as_ref().filter(|_| has_tools).map(
            |choice| match choice {
                ToolChoice::Auto => OutChatToolChoice::Mode("auto"),
                ToolChoice::None => OutChatToolChoice::Mode("none"),
                ToolChoice::Required => OutChatToolChoice::Mode("required"),
                ToolChoice::Named(name) => OutChatToolChoice::Named {
                    kind: "function",
                    function: OutNamed { name },
                },
            },
        ),
        // OpenAI refuses `parallel_tool_calls` without tools.
        parallel_tool_calls: request.parallel_tool_calls.filter(|_| has_tools),
        // Only when reasoning is asked for, and from a foreign client not for OpenAI's models
        // known not to reason, which refuse the field: clients like Claude Code ask for
        // thinking on every request, whatever model the adapter names.
        reasoning_effort: request
            .reasoning
            .filter(|r| !r.is_off() && (native || !known_not_to_reason(&request.model)))
            .and_then(|r| r.effort_or_derived())
            .map(Effort::as_str),
        response_format: request
            .response_format
            .as_ref()
            .map(response_format_to_wire),
        extra: (native && !request.extra.is_empty())
            .then_some(ExtraFields::new(&request.extra, &OWN_FIELDS)),
    };
    to_json(&wire)
}

/// OpenAI's reasoning models (o1, o3, o4-mini, gpt-5…), which refuse `max_tokens` and
/// non-default sampling. Matched on the name after any `vendor/` prefix, as routers spell it.
fn is_openai_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let family = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '.']))
    };
    ["o1", "o3", "o4", "gpt-5"].into_iter().any(family) && !name.contains("-chat")
}

/// OpenAI's chat models without reasoning (gpt-4o, gpt-4.1, gpt-3.5, chatgpt-4o,
/// gpt-5-chat…), which refuse `reasoning_effort`. Other hosts' models either reason or ignore
/// the field, so it is only held back from these.
fn known_not_to_reason(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    ["gpt-4", "gpt-3.5", "chatgpt-", "gpt-5-chat"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// An assistant turn: text joined, tool calls listed. Reasoning is not sent: Chat Completions
/// has no input field for it, and signatures from other providers mean nothing here. Other
/// parts (refusals, audio) have no input form either and are left out.
fn assistant_out(parts: &[Part]) -> Option<OutChatMessage<'_>> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in parts {
        match part {
            Part::Text { text: t } => {
                if !text.is_empty() && !t.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(t);
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => tool_calls.push(OutToolCall::function(id, name, arguments)),
            _ => {}
        }
    }
    let content = (!text.is_empty()).then_some(OutChatContent::Text(text));
    if content.is_none() && tool_calls.is_empty() {
        return None;
    }
    Some(OutChatMessage {
        role: "assistant",
        content,
        tool_calls,
        tool_call_id: None,
    })
}

/// A user or tool turn: each tool result becomes a `tool` message (they must directly follow
/// the assistant's calls), then what remains becomes one user message. Images inside tool
/// results, which `tool` messages cannot hold, go into that user message.
fn user_out<'a>(parts: &'a [Part], native: bool, messages: &mut Vec<OutChatMessage<'a>>) {
    let mut rest: Vec<OutChatPart<'a>> = Vec::new();
    for part in parts {
        match part {
            Part::ToolResult {
                call_id,
                content,
                is_error,
            } => {
                let mut text = String::new();
                if *is_error {
                    text.push_str("Error: ");
                }
                for inner in content {
                    match inner {
                        Part::Text { text: t } => text.push_str(t),
                        Part::Image(image) => rest.push(image_part(image)),
                        _ => {}
                    }
                }
                messages.push(OutChatMessage {
                    role: "tool",
                    content: Some(OutChatContent::Text(text)),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call_id),
                });
            }
            Part::Text { text } => rest.push(OutChatPart::Typed(OutTypedPart::Text { text })),
            Part::Image(image) => rest.push(image_part(image)),
            Part::Unknown(value) if native => rest.push(OutChatPart::Raw(value)),
            _ => {}
        }
    }
    if rest.is_empty() {
        return;
    }
    // Plain text goes as a string: not every OpenAI-compatible host takes content parts.
    let all_text = rest
        .iter()
        .all(|p| matches!(p, OutChatPart::Typed(OutTypedPart::Text { .. })));
    let content = if all_text {
        let texts: Vec<&str> = rest
            .iter()
            .filter_map(|p| match p {
                OutChatPart::Typed(OutTypedPart::Text { text }) => Some(*text),
                _ => None,
            })
            .collect();
        OutChatContent::Text(texts.join("\n\n"))
    } else {
        OutChatContent::Parts(rest)
    };
    messages.push(OutChatMessage {
        role: "user",
        content: Some(content),
        tool_calls: Vec::new(),
        tool_call_id: None,
    });
}

fn image_part(image: &Image) -> OutChatPart<'_> {
    OutChatPart::Typed(OutTypedPart::ImageUrl {
        image_url: OutImageUrl {
            url: image.to_url(),
        },
    })
}

fn finish_from_openai(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn finish_to_openai(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

#[derive(Deserialize)]
struct InChatResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    choices: Vec<InChatChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct InChatChoice {
    message: InChatMessage,
    #[serde(default)]
    finish_reason: Option<String>,
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

#[derive(Serialize)]
struct OutChatResponse<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OutChatChoice<'a>; 1],
    usage: OutChatUsage,
}

#[derive(Serialize)]
struct OutChatChoice<'a> {
    index: u32,
    message: OutResponseMessage<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct OutResponseMessage<'a> {
    role: &'static str,
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
}

#[derive(Serialize)]
struct OutChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<OutCached>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<OutReasoningTokens>,
}

#[derive(Serialize)]
struct OutCached {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct OutReasoningTokens {
    reasoning_tokens: u64,
}

impl OutChatUsage {
    fn from_canonical(usage: &TokenUsage) -> Self {
        let prompt = usage.input.unwrap_or(0);
        let completion = usage.output.unwrap_or(0);
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: usage
                .cached
                .map(|cached_tokens| OutCached { cached_tokens }),
            completion_tokens_details: usage
                .reasoning
                .map(|reasoning_tokens| OutReasoningTokens { reasoning_tokens }),
        }
    }
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
            Part::ToolCall {
                id,
                name,
                arguments,
            } => tool_calls.push(OutToolCall::function(id, name, arguments)),
            _ => {}
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

// Stream: Chat Completions chunks -> canonical events.

#[derive(Deserialize)]
struct InChunk {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<InChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct InChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<InChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct InChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter and some vLLM versions name reasoning text `reasoning`.
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<InToolCallDelta>>,
}

#[derive(Deserialize)]
struct InToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<InFunctionDelta>,
}

#[derive(Deserialize)]
struct InFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Text(usize),
    Reasoning(usize),
    Tool,
}

/// Turns a provider's Chat Completions chunks into canonical events. Feed it whole SSE events
/// (from [`sse::EventSplitter`](super::sse::EventSplitter)); call [`StreamDecoder::finish`]
/// when the upstream body ends.
///
/// Canonical part indices are handed out in order of appearance: text and reasoning keep one
/// index while they continue and get a new one after another part came between; each tool
/// call gets its own, found again by its OpenAI `index` (or by a changed `id` at the same
/// index, which some hosts send for parallel calls).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    done: bool,
    finished: bool,
    next: usize,
    current: Option<Current>,
    /// OpenAI tool-call index -> (canonical index, call id).
    tools: HashMap<usize, (usize, String)>,
    response_id: String,
}

impl StreamDecoder {
    /// Whether `[DONE]` (or an error) was seen.
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
        let Some(data) = super::sse::data(event) else {
            return Ok(Vec::new());
        };
        if data.trim_ascii() == b"[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        let chunk: InChunk = serde_json::from_slice(&data)?;
        let mut out = Vec::new();
        if let Some(error) = chunk.error {
            self.done = true;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            out.push(StreamEvent::Error { message });
            return Ok(out);
        }
        if !self.started {
            self.started = true;
            self.response_id.clone_from(&chunk.id);
            out.push(StreamEvent::MessageStart {
                id: chunk.id,
                model: chunk.model,
            });
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                self.delta(delta, &mut out);
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                out.push(StreamEvent::Finish(finish_from_openai(&reason)));
            }
        }
        if let Some(usage) = chunk.usage {
            out.push(StreamEvent::Usage(usage.into()));
        }
        Ok(out)
    }

    fn delta(&mut self, delta: InChunkDelta, out: &mut Vec<StreamEvent>) {
        if let Some(text) = delta
            .reasoning_content
            .or(delta.reasoning)
            .filter(|t| !t.is_empty())
        {
            let index = match self.current {
                Some(Current::Reasoning(index)) => index,
                _ => self.allocate(),
            };
            self.current = Some(Current::Reasoning(index));
            out.push(StreamEvent::ReasoningDelta { index, text });
        }
        for text in [delta.content, delta.refusal]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            let index = match self.current {
                Some(Current::Text(index)) => index,
                _ => self.allocate(),
            };
            self.current = Some(Current::Text(index));
            out.push(StreamEvent::TextDelta { index, text });
        }
        for (position, call) in delta.tool_calls.into_iter().flatten().enumerate() {
            let key = call.index.unwrap_or(position);
            let (name, arguments) = match call.function {
                Some(f) => (f.name, f.arguments),
                None => (None, None),
            };
            let known = self
                .tools
                .get(&key)
                .filter(|(_, id)| {
                    call.id
                        .as_ref()
                        .is_none_or(|new| new.is_empty() || new == id)
                })
                .map(|(index, _)| *index);
            let index = match known {
                Some(index) => index,
                None => {
                    let index = self.allocate();
                    let id = call
                        .id
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| format!("call_{}_{key}", self.response_id));
                    self.tools.insert(key, (index, id.clone()));
                    self.current = Some(Current::Tool);
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id,
                        name: name.unwrap_or_default(),
                    });
                    index
                }
            };
            if let Some(fragment) = arguments.filter(|a| !a.is_empty()) {
                out.push(StreamEvent::ToolCallArgsDelta { index, fragment });
            }
        }
    }

    /// Called when the upstream body ends: an error event unless the stream was complete
    /// (`[DONE]`, or at least a finish reason from hosts that omit `[DONE]`).
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        if self.done || self.finished {
            self.done = true;
            return Vec::new();
        }
        self.done = true;
        vec![StreamEvent::Error {
            message: "the provider's stream ended before its last chunk ([DONE])".into(),
        }]
    }
}

// Stream: canonical events -> Chat Completions chunks.

#[derive(Serialize)]
struct OutChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<OutChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutChatUsage>,
}

#[derive(Serialize)]
struct OutChunkChoice<'a> {
    index: u32,
    delta: OutChunkDelta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct OutChunkDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[OutToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct OutToolCallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunctionDelta<'a>,
}

#[derive(Serialize)]
struct OutFunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct OutStreamError<'a> {
    error: OutStreamErrorBody<'a>,
}

#[derive(Serialize)]
struct OutStreamErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    code: Option<()>,
}

/// Turns canonical events into Chat Completions chunks (`data: {…}` events, then
/// `data: [DONE]`) for a client. Tool calls are numbered 0, 1, … in order of appearance.
/// Usage is sent as the final `choices: []` chunk, and only when the client asked for it.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    ended: bool,
    finish_sent: bool,
    /// Canonical part index -> OpenAI tool-call index.
    tools: HashMap<usize, usize>,
    usage: TokenUsage,
}

impl StreamEncoder {
    /// `model` and a generated id are used if the upstream's stream names none;
    /// `include_usage` is the client's `stream_options.include_usage`.
    pub fn new(model: impl Into<String>, created: u64, include_usage: bool) -> Self {
        Self {
            id: "chatcmpl-flexiproxy".to_owned(),
            model: model.into(),
            created,
            include_usage,
            started: false,
            ended: false,
            finish_sent: false,
            tools: HashMap::new(),
            usage: TokenUsage::default(),
        }
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
                        self.id.clone_from(id);
                    }
                    if !model.is_empty() {
                        self.model.clone_from(model);
                    }
                    self.start(out);
                }
            }
            StreamEvent::TextDelta { text, .. } => {
                self.start(out);
                self.chunk(
                    out,
                    OutChunkDelta {
                        content: Some(text),
                        ..OutChunkDelta::default()
                    },
                    None,
                );
            }
            StreamEvent::ReasoningDelta { text, .. } => {
                self.start(out);
                self.chunk(
                    out,
                    OutChunkDelta {
                        reasoning_content: Some(text),
                        ..OutChunkDelta::default()
                    },
                    None,
                );
            }
            // Signatures are only meaningful to the provider that made them.
            StreamEvent::ReasoningSignature { .. } => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.start(out);
                let next = self.tools.len();
                let tool = *self.tools.entry(*index).or_insert(next);
                self.chunk(
                    out,
                    tool_delta(OutToolCallDelta {
                        index: tool,
                        id: Some(id),
                        kind: Some("function"),
                        function: OutFunctionDelta {
                            name: Some(name),
                            arguments: "",
                        },
                    }),
                    None,
                );
            }
            StreamEvent::ToolCallArgsDelta { index, fragment } => {
                self.start(out);
                let next = self.tools.len();
                let tool = *self.tools.entry(*index).or_insert(next);
                self.chunk(
                    out,
                    tool_delta(OutToolCallDelta {
                        index: tool,
                        id: None,
                        kind: None,
                        function: OutFunctionDelta {
                            name: None,
                            arguments: fragment,
                        },
                    }),
                    None,
                );
            }
            StreamEvent::Usage(usage) => merge_usage(&mut self.usage, usage),
            StreamEvent::Finish(reason) => {
                self.start(out);
                if !self.finish_sent {
                    self.finish_sent = true;
                    self.chunk(
                        out,
                        OutChunkDelta::default(),
                        Some(finish_to_openai(reason)),
                    );
                }
            }
            StreamEvent::Error { message } => {
                self.ended = true;
                // The OpenAI SDKs raise an APIError for a data event holding `error`.
                write_data(
                    out,
                    &OutStreamError {
                        error: OutStreamErrorBody {
                            message,
                            kind: "upstream_error",
                            code: None,
                        },
                    },
                );
            }
        }
    }

    /// Ends the client's stream: the finish chunk if none was sent, the usage chunk if asked
    /// for, and `data: [DONE]`. Does nothing after an error event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        if !self.finish_sent {
            self.finish_sent = true;
            self.chunk(out, OutChunkDelta::default(), Some("stop"));
        }
        if self.include_usage {
            write_data(
                out,
                &OutChunk {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    choices: Vec::new(),
                    usage: Some(OutChatUsage::from_canonical(&self.usage)),
                },
            );
        }
        self.ended = true;
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// The first chunk, as OpenAI sends it: the role and empty content.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.chunk(
            out,
            OutChunkDelta {
                role: Some("assistant"),
                content: Some(""),
                ..OutChunkDelta::default()
            },
            None,
        );
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: OutChunkDelta<'_>, finish: Option<&'static str>) {
        write_data(
            out,
            &OutChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: vec![OutChunkChoice {
                    index: 0,
                    delta,
                    logprobs: None,
                    finish_reason: finish,
                }],
                usage: None,
            },
        );
    }
}

fn tool_delta(call: OutToolCallDelta<'_>) -> OutChunkDelta<'_> {
    OutChunkDelta {
        tool_calls: Some([call]),
        ..OutChunkDelta::default()
    }
}

fn write_data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    // Writing our wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// OpenAI Chat Completions (and the OpenAI-compatible family) on the wire.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiChat;

impl Wire for OpenAiChat {
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
        response_from_canonical(response, view.created)
    }
    fn response_usage(&self, body: &[u8]) -> Option<TokenUsage> {
        response_usage(body)
    }
    fn event_usage(&self, data: &[u8]) -> Option<TokenUsage> {
        chunk_usage(data).usage
    }
    fn stream_decoder(&self) -> Box<dyn DecodeStream> {
        Box::new(StreamDecoder::default())
    }
    fn stream_encoder(&self, view: &ClientView) -> Box<dyn EncodeStream> {
        Box::new(StreamEncoder::new(
            view.model.clone(),
            view.created,
            view.include_usage,
        ))
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        crate::openai_responses::report_body(report)
    }
    fn client_view(&self, request: &Request, created: u64) -> ClientView {
        ClientView {
            include_usage: client_wants_usage(request),
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

    #[test]
    fn reads_usage_with_details() {
        let body = br#"{"id":"x","choices":[{"index":0}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        assert_eq!(
            response_usage(body),
            Some(TokenUsage {
                input: Some(12),
                output: Some(5),
                cached: Some(4),
                reasoning: Some(2)
            })
        );
        assert_eq!(response_usage(br#"{"data":[]}"#), None);
    }

    #[test]
    fn tells_the_usage_only_chunk_from_content_chunks() {
        let plain = br#"{"choices":[{"delta":{"content":"hi"}}],"usage":null}"#;
        assert_eq!(chunk_usage(plain), ChunkUsage::default());
        let last = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let read = chunk_usage(last);
        assert!(read.usage_only);
        assert_eq!(read.usage.unwrap().input, Some(3));
        let mixed =
            br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        assert!(!chunk_usage(mixed).usage_only);
        assert_eq!(chunk_usage(b"[DONE]"), ChunkUsage::default());
    }

    use serde_json::json;

    fn decode_request(value: &Value) -> Result<Request, DecodeError> {
        request_to_canonical(value.to_string().as_bytes())
    }

    #[test]
    fn requests_decode_system_images_tool_calls_and_limits() {
        let request = decode_request(&json!({
            "model": "gpt",
            "messages": [
                {"role": "system", "content": "s1"},
                {"role": "developer", "content": [{"type": "text", "text": "s2"}]},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {"type": "input_audio", "input_audio": {"data": "..", "format": "wav"}}
                ]},
                {"role": "assistant", "content": null, "reasoning_content": "hm", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "done"}
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "stop": ["a", "b"],
            "reasoning_effort": "low",
            "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}]
        }))
        .unwrap();
        assert_eq!(request.system, vec!["s1", "s2"]);
        assert_eq!(request.max_tokens, Some(20), "max_completion_tokens wins");
        assert_eq!(request.stop, vec!["a", "b"]);
        assert_eq!(request.reasoning.unwrap().effort, Some(Effort::Low));
        assert_eq!(request.tool_choice, Some(ToolChoice::Required));
        assert_eq!(request.tools[0].parameters["type"], "object");
        let user = &request.messages[0].content;
        assert_eq!(
            user[0],
            Part::Image(Image::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            })
        );
        assert_eq!(
            user[1],
            Part::Image(Image::Url {
                url: "https://x/y.png".into()
            })
        );
        assert!(matches!(user[2], Part::Unknown(_)));
        let assistant = &request.messages[1].content;
        assert!(
            matches!(&assistant[0], Part::Reasoning(r) if r.text == "hm" && r.issuer.is_none())
        );
        assert!(matches!(&assistant[1], Part::ToolCall { id, .. } if id == "call_1"));
        assert_eq!(request.messages[2].role, Role::Tool);
    }

    #[test]
    fn bad_requests_are_typed_errors_with_a_hint() {
        let err = decode_request(&json!({"model": "m", "messages": [], "reasoning_effort": "max"}))
            .unwrap_err();
        assert!(err.to_string().contains("reasoning_effort"));
        assert!(
            decode_request(&json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}))
                .is_err()
        );
        assert!(decode_request(&json!({"model": "m", "messages": [], "tool_choice": 3})).is_err());
        assert!(request_to_canonical(b"[]").is_err());
    }

    #[test]
    fn foreign_requests_drop_signatures_and_foreign_fields() {
        let request = Request {
            model: "m".into(),
            messages: vec![Message {
                role: Role::Assistant,
                content: vec![
                    Part::Reasoning(Reasoning {
                        text: "t".into(),
                        signature: Some("sig".into()),
                        encrypted: None,
                        issuer: Some(Protocol::AnthropicMessages),
                    }),
                    Part::ToolCall {
                        id: "toolu_1".into(),
                        name: "f".into(),
                        arguments: String::new(),
                    },
                ],
            }],
            stream: true,
            reasoning: Some(ReasoningConfig {
                effort: None,
                budget_tokens: Some(0),
            }),
            parallel_tool_calls: Some(false),
            extra: Map::from_iter([("top_k".to_owned(), json!(3))]),
            origin: Some(Protocol::AnthropicMessages),
            ..Request::default()
        };
        let out: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "m",
                "messages": [{"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]}],
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
    }

    #[test]
    fn client_stream_options_are_not_copied_over_the_gateways_own() {
        let request = decode_request(&json!({
            "model": "m", "messages": [], "stream": true,
            "stream_options": {"include_usage": false}, "seed": 1
        }))
        .unwrap();
        assert!(!client_wants_usage(&request));
        let out: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        assert_eq!(out["seed"], 1);
    }

    fn decode_stream(chunks: &[Value]) -> Vec<StreamEvent> {
        let mut decoder = StreamDecoder::default();
        let mut events = Vec::new();
        for chunk in chunks {
            let event = format!("data: {chunk}\n\n");
            events.extend(decoder.decode(event.as_bytes()).unwrap());
        }
        events.extend(decoder.decode(b"data: [DONE]\n\n").unwrap());
        assert!(decoder.is_done());
        events.extend(decoder.finish());
        events
    }

    #[test]
    fn interleaved_parallel_calls_keep_their_parts_and_missing_ids_are_made() {
        let delta = |calls: Value| json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": calls}}]});
        let events = decode_stream(&[
            delta(
                json!([{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{\"x\""}}]),
            ),
            delta(json!([{"index": 1, "function": {"name": "g", "arguments": "{"}}])),
            delta(json!([{"index": 0, "function": {"arguments": ":1}"}}])),
            delta(json!([{"index": 1, "function": {"arguments": "}"}}])),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
        ]);
        assert_eq!(
            events,
            vec![
                StreamEvent::MessageStart {
                    id: "c1".into(),
                    model: "m".into()
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_a".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallArgsDelta {
                    index: 0,
                    fragment: "{\"x\"".into()
                },
                StreamEvent::ToolCallStart {
                    index: 1,
                    id: "call_c1_1".into(),
                    name: "g".into()
                },
                StreamEvent::ToolCallArgsDelta {
                    index: 1,
                    fragment: "{".into()
                },
                StreamEvent::ToolCallArgsDelta {
                    index: 0,
                    fragment: ":1}".into()
                },
                StreamEvent::ToolCallArgsDelta {
                    index: 1,
                    fragment: "}".into()
                },
                StreamEvent::Finish(FinishReason::ToolCalls),
                StreamEvent::Usage(TokenUsage {
                    input: Some(5),
                    output: Some(2),
                    cached: None,
                    reasoning: None
                }),
            ]
        );
    }

    #[test]
    fn text_after_a_tool_call_is_a_new_part_and_errors_end_the_stream() {
        let text = |t: &str| json!({"choices": [{"index": 0, "delta": {"content": t}}]});
        let events = decode_stream(&[
            text("a"),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "k", "function": {"name": "f"}}]}}]}),
            text("b"),
        ]);
        let indices: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta { index, .. } | StreamEvent::ToolCallStart { index, .. } => {
                    Some(*index)
                }
                _ => None,
            })
            .collect();
        assert_eq!(indices, vec![0, 1, 2]);

        let mut decoder = StreamDecoder::default();
        let events = decoder
            .decode(br#"data: {"error":{"message":"overloaded","type":"server_error"}}"#)
            .unwrap();
        assert_eq!(
            events,
            vec![StreamEvent::Error {
                message: "overloaded".into()
            }]
        );
        assert!(decoder.finish().is_empty());
        assert!(
            StreamDecoder::default()
                .decode(b"data: {not json}\n\n")
                .is_err()
        );
    }

    #[test]
    fn the_encoder_sends_usage_only_when_asked_and_drops_signatures() {
        let events = [
            StreamEvent::MessageStart {
                id: "msg_1".into(),
                model: "claude".into(),
            },
            StreamEvent::ReasoningSignature {
                index: 0,
                signature: "sig".into(),
            },
            StreamEvent::TextDelta {
                index: 1,
                text: "hi".into(),
            },
            StreamEvent::Usage(TokenUsage {
                input: Some(3),
                output: Some(1),
                cached: None,
                reasoning: None,
            }),
            StreamEvent::Finish(FinishReason::Length),
        ];
        for include_usage in [false, true] {
            let mut encoder = StreamEncoder::new("m", 1, include_usage);
            let mut out = Vec::new();
            for event in &events {
                encoder.encode(event, &mut out);
            }
            encoder.finish(&mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("sig"));
            assert!(text.contains(r#""finish_reason":"length""#));
            assert_eq!(
                text.contains(r#""usage":{"prompt_tokens":3"#),
                include_usage
            );
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert_eq!(
                text.matches("data: ").count(),
                4 + usize::from(include_usage)
            );
        }
    }

    #[test]
    fn responses_map_usage_and_finish_reasons() {
        let body = json!({
            "id": "c", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "content_filter"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 1}}
        });
        let response = response_to_canonical(body.to_string().as_bytes()).unwrap();
        assert_eq!(response.finish, Some(FinishReason::ContentFilter));
        assert_eq!(response.usage.reasoning, Some(1));
        let back: Value = serde_json::from_slice(&response_from_canonical(&response, 5)).unwrap();
        assert_eq!(back["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(back["usage"]["total_tokens"], 10);
        assert_eq!(
            back["usage"]["completion_tokens_details"]["reasoning_tokens"],
            1
        );
        assert!(response_to_canonical(br#"{"choices":[]}"#).is_err());
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_default_sampling() {
        for (model, reasoning) in [
            ("o3", true),
            ("o4-mini", true),
            ("openai/gpt-5.1", true),
            ("gpt-5-mini", true),
            ("gpt-5-chat-latest", false),
            ("gpt-4o", false),
            ("deepseek-chat", false),
            ("o30-lookalike", false),
        ] {
            assert_eq!(is_openai_reasoning_model(model), reasoning, "{model}");
        }
        let request = Request {
            model: "o4-mini".into(),
            max_tokens: Some(100),
            temperature: Some(0.2),
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::text("hi")],
            }],
            ..Request::default()
        };
        let mut request = request;
        request.reasoning = Some(ReasoningConfig {
            effort: None,
            budget_tokens: Some(10_000),
        });
        let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(body["reasoning_effort"], "medium");
        for model in ["gpt-4o", "openai/gpt-4.1-mini", "gpt-5-chat-latest"] {
            request.model = model.into();
            let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
            assert!(body.get("reasoning_effort").is_none(), "{model}: {body}");
        }
        request.model = "deepseek-reasoner".into();
        let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(body["reasoning_effort"], "medium");
        request.model = "o4-mini".into();
        let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(body["max_completion_tokens"], 100);
        assert!(body.get("max_tokens").is_none() && body.get("temperature").is_none());
    }
}
