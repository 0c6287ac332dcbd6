//! Anthropic Messages (`POST /v1/messages`) to and from the canonical model.
//!
//! Used when a client speaking Anthropic reaches a provider of another protocol, or the other
//! way round; Anthropic-to-Anthropic traffic takes the byte-forwarding fast path and never comes
//! here. The wire types are private: callers see [`canonical`](crate::canonical) values, JSON bytes and SSE bytes.
//!
//! - [`request_to_canonical`] / [`request_from_canonical`]: the request both ways.
//! - [`response_to_canonical`] / [`response_from_canonical`]: the non-streaming answer.
//! - [`StreamDecoder`]: Anthropic SSE events from a provider into [`StreamEvent`]s.
//! - [`StreamEncoder`]: [`StreamEvent`]s into the SSE events the official SDKs parse
//!   (`message_start`, `content_block_start/delta/stop` with block indices, `message_delta`,
//!   `message_stop`, `ping`, `error`).
//! - [`error_body`] / [`error_type`]: the `{"type":"error","error":{…}}` body.
//!
//! What this format carries that the canonical model does not (`cache_control`, `citations`,
//! `metadata`, `top_k`, server tools, document blocks) is kept in `extra`, `native_tools` and
//! [`Part::Unknown`], and only written back to an Anthropic provider.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::to_json;
use crate::canonical::TokenUsage;
use crate::canonical::{
    DecodeError, FinishReason, Image, Message, Part, Reasoning, ReasoningConfig, Request, Response,
    ResponseFormat, Role, StreamEvent, Tool, ToolChoice, merge_usage, untag_proof,
};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;
use crate::sse;
use crate::{Protocol, json_schema};

const PROTOCOL: Protocol = Protocol::AnthropicMessages;

/// `max_tokens` is required by Anthropic and optional everywhere else. 4096 is the largest
/// output every Claude model accepts (the oldest cap at 4096), so a default never makes the
/// provider reject the request; clients that want longer answers say so.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Budget used when the client asks for reasoning without saying how much.
const DEFAULT_THINKING_BUDGET: u64 = 8192;

// ---------------------------------------------------------------------------------------------
// Wire types: what we read.

#[derive(Deserialize)]
struct InRequest {
    model: String,
    #[serde(default)]
    system: Option<InContent>,
    messages: Vec<InMessage>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    #[serde(default)]
    thinking: Option<InThinking>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// Anthropic allows a plain string wherever a list of blocks goes.
#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: InContent,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InThinking {
    Enabled {
        #[serde(default)]
        budget_tokens: Option<u64>,
    },
    Disabled,
    /// Newer models decide their own budget (`adaptive`); any future kind means "on".
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct InTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    input_schema: Value,
}

/// The block types with a canonical counterpart; every other type becomes [`Part::Unknown`].
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InBlock {
    Text {
        text: String,
    },
    Image {
        source: InImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Option<Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<InContent>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
}

const KNOWN_BLOCKS: [&str; 6] = [
    "text",
    "image",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// `file` (Files API) and future kinds: the whole block is kept as unknown.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct InUsage {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    cache_read_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    cache_creation_input_tokens: Option<u64>,
}

impl InUsage {
    /// Anthropic's `input_tokens` leaves out cache reads and writes; canonical input counts all.
    fn to_canonical(&self) -> TokenUsage {
        let parts = [
            self.input_tokens,
            self.cache_read_input_tokens,
            self.cache_creation_input_tokens,
        ];
        let input = parts.iter().any(Option::is_some).then(|| {
            parts
                .iter()
                .flatten()
                .fold(0u64, |sum, n| sum.saturating_add(*n))
                .min(crate::canonical::MAX_TOKENS)
        });
        TokenUsage {
            input,
            output: self.output_tokens,
            cached: self.cache_read_input_tokens,
            reasoning: None,
        }
    }
}

#[derive(Deserialize)]
struct InResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: InUsage,
}

// ---------------------------------------------------------------------------------------------
// Request: Anthropic -> canonical.

/// Decodes a client's Anthropic Messages request.
pub fn request_to_canonical(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: InRequest = serde_json::from_slice(body)?;
    let mut request = Request {
        model: wire.model,
        max_tokens: wire.max_tokens,
        temperature: wire.temperature,
        top_p: wire.top_p,
        stop: wire.stop_sequences.unwrap_or_default(),
        stream: wire.stream.unwrap_or(false),
        extra: wire.extra,
        origin: Some(PROTOCOL),
        ..Request::default()
    };
    if let Some(system) = wire.system {
        push_system(&mut request.system, system, "system")?;
    }
    for (i, message) in wire.messages.into_iter().enumerate() {
        let role = match message.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // Claude Code puts system text inside `messages`; it belongs with the system prompt.
            "system" => {
                push_system(
                    &mut request.system,
                    message.content,
                    &format!("messages[{i}]"),
                )?;
                continue;
            }
            other => {
                return Err(DecodeError::Invalid(format!(
                    "messages[{i}].role is `{other}`; use `user` or `assistant`"
                )));
            }
        };
        let content = content_to_parts(message.content, &format!("messages[{i}].content"))?;
        request.messages.push(Message { role, content });
    }
    for (i, tool) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        let custom = tool
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "custom");
        if custom {
            let def = InTool::deserialize(&tool)
                .map_err(|e| DecodeError::Invalid(format!("tools[{i}]: {e}")))?;
            request.tools.push(Tool {
                name: def.name,
                description: def.description,
                parameters: def.input_schema,
            });
        } else {
            request.native_tools.push(tool);
        }
    }
    if let Some(choice) = wire.tool_choice {
        let (choice, disable_parallel) = match choice {
            InToolChoice::Auto {
                disable_parallel_tool_use,
            } => (ToolChoice::Auto, disable_parallel_tool_use),
            InToolChoice::Any {
                disable_parallel_tool_use,
            } => (ToolChoice::Required, disable_parallel_tool_use),
            InToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (ToolChoice::Named(name), disable_parallel_tool_use),
            InToolChoice::None => (ToolChoice::None, None),
        };
        request.tool_choice = Some(choice);
        request.parallel_tool_calls = disable_parallel.map(|disable| !disable);
    }
    request.reasoning = wire.thinking.map(|thinking| match thinking {
        InThinking::Enabled { budget_tokens } => ReasoningConfig {
            effort: None,
            budget_tokens,
        },
        InThinking::Disabled => ReasoningConfig {
            effort: None,
            budget_tokens: Some(0),
        },
        InThinking::Other => ReasoningConfig::default(),
    });
    Ok(request)
}

fn push_system(system: &mut Vec<String>, content: InContent, at: &str) -> Result<(), DecodeError> {
    match content {
        InContent::Text(text) => system.push(text),
        InContent::Blocks(blocks) => {
            for (j, block) in blocks.iter().enumerate() {
                match block.get("text").and_then(Value::as_str) {
                    // Claude Code's billing line is for Anthropic's servers; other providers
                    // would only read it as part of the prompt.
                    Some(text) if text.starts_with("x-anthropic-billing-header:") => {}
                    Some(text) => system.push(text.to_owned()),
                    None => {
                        return Err(DecodeError::Invalid(format!(
                            "{at}[{j}]: system blocks must be text blocks"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn content_to_parts(content: InContent, at: &str) -> Result<Vec<Part>, DecodeError> {
    match content {
        InContent::Text(text) => Ok(vec![Part::Text { text }]),
        InContent::Blocks(blocks) => blocks
            .into_iter()
            .enumerate()
            .map(|(j, block)| block_to_part(block, &format!("{at}[{j}]")))
            .collect(),
    }
}

fn block_to_part(block: Value, at: &str) -> Result<Part, DecodeError> {
    let known = block
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| KNOWN_BLOCKS.contains(&t));
    if !known {
        return Ok(Part::Unknown(block));
    }
    let typed =
        InBlock::deserialize(&block).map_err(|e| DecodeError::Invalid(format!("{at}: {e}")))?;
    Ok(match typed {
        InBlock::Text { text } => Part::Text { text },
        InBlock::Image { source } => match source {
            InImageSource::Base64 { media_type, data } => {
                Part::Image(Image::Base64 { media_type, data })
            }
            InImageSource::Url { url } => Part::Image(Image::Url { url }),
            InImageSource::Other => Part::Unknown(block),
        },
        InBlock::ToolUse { id, name, input } => Part::ToolCall {
            id,
            name,
            arguments: match input {
                Some(input) => input.to_string(),
                None => "{}".to_owned(),
            },
        },
        InBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => Part::ToolResult {
            call_id: tool_use_id,
            content: match content {
                Some(content) => content_to_parts(content, &format!("{at}.content"))?,
                None => Vec::new(),
            },
            is_error: is_error.unwrap_or(false),
        },
        InBlock::Thinking {
            thinking,
            signature,
        } => Part::Reasoning(Reasoning {
            text: thinking,
            // An empty signature is what this gateway sends for reasoning it could not sign.
            signature: signature.filter(|s| !s.is_empty()),
            encrypted: None,
            issuer: Some(PROTOCOL),
        }),
        InBlock::RedactedThinking { data } => Part::Reasoning(Reasoning {
            text: String::new(),
            signature: None,
            encrypted: Some(data),
            issuer: Some(PROTOCOL),
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// Wire types: what we write.

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<OutBlock<'a>>,
    messages: Vec<OutMessage<'a>>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<OutThinking>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Vec<OutPart<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutPart<'a> {
    Block(OutBlock<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: OutImageSource<'a>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: Input<'a>,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        content: Vec<OutPart<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

/// A tool call's arguments as a JSON object: the model's text verbatim when it is one, `{}`
/// otherwise (Anthropic requires an object; an unfinished or invalid call has nothing usable).
#[derive(Serialize)]
#[serde(untagged)]
enum Input<'a> {
    Raw(&'a RawValue),
    Empty(EmptyObject),
}

struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

fn input(arguments: &str) -> Input<'_> {
    match serde_json::from_str::<&RawValue>(arguments) {
        Ok(raw) if raw.get().starts_with('{') => Input::Raw(raw),
        _ => Input::Empty(EmptyObject),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutTool<'a> {
    Custom {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
        input_schema: Cow<'a, Value>,
    },
    Native(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutToolChoice<'a> {
    Auto {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    Any {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    Tool {
        name: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    None,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutThinking {
    Enabled { budget_tokens: u64 },
}

/// Anthropic tool ids must match `^[a-zA-Z0-9_-]+$`; other protocols' ids (`functions.x:0`)
/// are made valid by replacing every other character, so a call and its result stay paired.
fn tool_id(id: &str) -> Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(valid) {
        Cow::Borrowed(id)
    } else if id.is_empty() {
        Cow::Borrowed("toolu_missing")
    } else {
        Cow::Owned(id.chars().map(|c| if valid(c) { c } else { '_' }).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Request: canonical -> Anthropic.

/// Encodes a request for an Anthropic Messages provider.
pub fn request_from_canonical(request: &Request) -> Vec<u8> {
    let native = request.origin == Some(PROTOCOL);
    let mut max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut temperature = request.temperature;
    let mut top_p = request.top_p;

    // Anthropic refuses forced tool use together with thinking; the forced tool is what the
    // client's program depends on, so thinking gives way.
    let forced_tool = matches!(
        request.tool_choice,
        Some(ToolChoice::Required | ToolChoice::Named(_))
    );
    let thinking = match request.reasoning {
        Some(reasoning) if !reasoning.is_off() && !forced_tool && !unsigned_tool_turn(request) => {
            let budget = reasoning
                .budget_or_derived()
                .unwrap_or(DEFAULT_THINKING_BUDGET)
                .max(1024);
            // The budget is part of max_tokens and must be smaller than it.
            if max_tokens <= budget {
                max_tokens =
                    budget.saturating_add(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
            }
            // With thinking on, Anthropic accepts only the default temperature and top_p >= 0.95.
            temperature = None;
            top_p = top_p.filter(|p| *p >= 0.95);
            Some(OutThinking::Enabled {
                budget_tokens: budget,
            })
        }
        _ => None,
    };

    let mut tools: Vec<OutTool<'_>> = request
        .tools
        .iter()
        .map(|tool| OutTool::Custom {
            name: &tool.name,
            description: tool.description.as_deref(),
            input_schema: json_schema::object_at_top_cow(&tool.parameters),
        })
        .collect();
    if native {
        tools.extend(request.native_tools.iter().map(OutTool::Native));
    }
    let disable_parallel_tool_use = request.parallel_tool_calls == Some(false);
    let tool_choice = if tools.is_empty() {
        None
    } else {
        match &request.tool_choice {
            Some(ToolChoice::Auto) => Some(OutToolChoice::Auto {
                disable_parallel_tool_use,
            }),
            Some(ToolChoice::None) => Some(OutToolChoice::None),
            Some(ToolChoice::Required) => Some(OutToolChoice::Any {
                disable_parallel_tool_use,
            }),
            Some(ToolChoice::Named(name)) => Some(OutToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            }),
            None if disable_parallel_tool_use => Some(OutToolChoice::Auto {
                disable_parallel_tool_use,
            }),
            None => None,
        }
    };

    // Anthropic has no general JSON mode; the constraint travels as an instruction.
    let format_instruction = request
        .response_format
        .as_ref()
        .map(ResponseFormat::instruction);
    let wire = OutRequest {
        model: &request.model,
        system: request
            .system
            .iter()
            .chain(&format_instruction)
            .filter(|text| !text.is_empty())
            .map(|text| OutBlock::Text { text })
            .collect(),
        messages: messages_out(&request.messages, native),
        max_tokens,
        temperature,
        top_p,
        stop_sequences: &request.stop,
        stream: request.stream,
        tools,
        tool_choice,
        thinking,
        extra: (native && !request.extra.is_empty()).then_some(&request.extra),
    };
    to_json(&wire)
}

/// Whether the conversation continues a tool loop whose assistant turn called tools without
/// Anthropic-signed thinking before it. With thinking on, Anthropic requires that turn to start with its own
/// thinking block; a client of another protocol cannot send one back (Chat Completions has no
/// field for it, and other providers' reasoning is not Anthropic's), so thinking stays off for
/// such a request rather than have it refused.
fn unsigned_tool_turn(request: &Request) -> bool {
    // Only a tool loop still under way needs it: once the user wrote again, Anthropic drops
    // earlier turns' thinking anyway.
    let continues_tool_loop = request.messages.last().is_some_and(|m| {
        m.content
            .iter()
            .any(|part| matches!(part, Part::ToolResult { .. }))
    });
    if !continues_tool_loop {
        return false;
    }
    let Some(last) = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
    else {
        return false;
    };
    let calls_tools = last
        .content
        .iter()
        .any(|part| matches!(part, Part::ToolCall { .. }));
    // A signature proves its thinking text: without the text (a client that kept only the
    // signature) it is refused like none at all. Redacted thinking carries its own data.
    let signed = last.content.iter().any(|part| {
        matches!(part, Part::Reasoning(r) if r.signed_for(PROTOCOL)
            && (r.encrypted.is_some() || (r.signature.is_some() && !r.text.is_empty())))
    });
    calls_tools && !signed
}

/// Messages in Anthropic's shape: tool messages become user messages, messages of the same
/// role are merged (results of parallel calls must share one user turn), tool results lead
/// their message, and messages left empty are skipped (Anthropic refuses empty content).
fn messages_out(messages: &[Message], native: bool) -> Vec<OutMessage<'_>> {
    let mut out: Vec<OutMessage<'_>> = Vec::with_capacity(messages.len());
    for message in messages {
        let role = match message.role {
            Role::Assistant => "assistant",
            Role::User | Role::Tool => "user",
        };
        let mut content: Vec<OutPart<'_>> = message
            .content
            .iter()
            .filter_map(|part| part_out(part, native))
            .collect();
        if content.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.append(&mut content),
            _ => out.push(OutMessage { role, content }),
        }
    }
    for message in &mut out {
        if message.role == "user" {
            // A stable sort keeps everything else in order.
            message
                .content
                .sort_by_key(|part| !matches!(part, OutPart::Block(OutBlock::ToolResult { .. })));
        }
    }
    out
}

fn part_out(part: &Part, native: bool) -> Option<OutPart<'_>> {
    let block = match part {
        Part::Text { text } if text.is_empty() => return None,
        Part::Text { text } => OutBlock::Text { text },
        Part::Image(image) => OutBlock::Image {
            source: image_source(image),
        },
        Part::ToolCall {
            id,
            name,
            arguments,
        } => OutBlock::ToolUse {
            id: tool_id(id),
            name,
            input: input(arguments),
        },
        Part::ToolResult {
            call_id,
            content,
            is_error,
        } => OutBlock::ToolResult {
            tool_use_id: tool_id(call_id),
            content: content
                .iter()
                .filter_map(|part| part_out(part, native))
                .collect(),
            is_error: *is_error,
        },
        // Reasoning goes back only with the proof Anthropic made for it; anything else would be
        // rejected, so it is left out.
        Part::Reasoning(reasoning) if reasoning.signed_for(PROTOCOL) => {
            match (&reasoning.encrypted, &reasoning.signature) {
                (Some(data), _) => OutBlock::RedactedThinking { data },
                (None, Some(signature)) => OutBlock::Thinking {
                    thinking: &reasoning.text,
                    signature,
                },
                (None, None) => return None,
            }
        }
        Part::Reasoning(_) => return None,
        Part::Unknown(raw) if native => return Some(OutPart::Raw(raw)),
        Part::Unknown(_) => return None,
    };
    Some(OutPart::Block(block))
}

fn image_source(image: &Image) -> OutImageSource<'_> {
    match image {
        Image::Base64 { media_type, data } => OutImageSource::Base64 { media_type, data },
        Image::Url { url } => OutImageSource::Url { url },
    }
}

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
    let content = wire
        .content
        .into_iter()
        .enumerate()
        .map(|(i, block)| block_to_part(block, &format!("content[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
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

fn finish_from_anthropic(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn finish_to_anthropic(finish: &FinishReason, stop_sequence: Option<&str>) -> &'static str {
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
struct OutUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
}

impl OutUsage {
    fn from_canonical(usage: &TokenUsage) -> Self {
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
struct ErrorObject<'a> {
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    message: Cow<'a, str>,
}

#[derive(Deserialize)]
struct InError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
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

// ---------------------------------------------------------------------------------------------
// Stream: Anthropic SSE -> canonical events.

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InEvent {
    MessageStart {
        message: InStartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Value,
    },
    ContentBlockDelta {
        index: usize,
        delta: InDelta,
    },
    ContentBlockStop {
        #[allow(dead_code, reason = "read so a malformed stop is an error")]
        index: usize,
    },
    MessageDelta {
        delta: InMessageDelta,
        #[serde(default)]
        usage: Option<InUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: InError,
    },
    /// Event types added after this was written are skipped, as the SDKs do.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct InStartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<InUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct InMessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Turns a provider's Anthropic SSE events into canonical events. Feed it whole events (from
/// [`sse::EventSplitter`]); call [`StreamDecoder::finish`] when the upstream body ends.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    /// `message_stop` or `error` was seen: the stream ended properly.
    done: bool,
    /// Input usage from `message_start`, kept to fill in what `message_delta` leaves out.
    usage: TokenUsage,
}

impl StreamDecoder {
    /// Whether the upstream has said its last word; the caller can finish the client's stream.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decodes one whole SSE event.
    pub fn decode(&mut self, event: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        let Some(data) = sse::data(event) else {
            return Ok(Vec::new());
        };
        let wire: InEvent = serde_json::from_slice(&data)?;
        let mut out = Vec::new();
        match wire {
            InEvent::MessageStart { message } => {
                out.push(StreamEvent::MessageStart {
                    id: message.id,
                    model: message.model,
                });
                if let Some(usage) = message.usage {
                    self.usage = usage.to_canonical();
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            InEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let kind = content_block.get("type").and_then(Value::as_str);
                let text = |key: &str| {
                    content_block
                        .get(key)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                };
                match kind {
                    Some("text") => {
                        if let Some(text) = text("text") {
                            out.push(StreamEvent::TextDelta { index, text });
                        }
                    }
                    Some("tool_use") => {
                        let (Some(id), Some(name)) = (
                            content_block.get("id").and_then(Value::as_str),
                            content_block.get("name").and_then(Value::as_str),
                        ) else {
                            return Err(DecodeError::Invalid(
                                "tool_use block without id or name".into(),
                            ));
                        };
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: id.to_owned(),
                            name: name.to_owned(),
                        });
                        // Anthropic starts with `input: {}` and streams the real input; a
                        // non-empty start input is the whole input.
                        if let Some(input) = content_block
                            .get("input")
                            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            out.push(StreamEvent::ToolCallArgsDelta {
                                index,
                                fragment: input.to_string(),
                            });
                        }
                    }
                    Some("thinking") => {
                        if let Some(text) = text("thinking") {
                            out.push(StreamEvent::ReasoningDelta { index, text });
                        }
                        if let Some(signature) = text("signature") {
                            out.push(StreamEvent::ReasoningSignature { index, signature });
                        }
                    }
                    // Redacted thinking and server-tool blocks have no stream counterpart.
                    _ => {}
                }
            }
            InEvent::ContentBlockDelta { index, delta } => match delta {
                InDelta::TextDelta { text } => out.push(StreamEvent::TextDelta { index, text }),
                // Anthropic opens each tool input with an empty fragment; it carries nothing.
                InDelta::InputJsonDelta { partial_json } if partial_json.is_empty() => {}
                InDelta::InputJsonDelta { partial_json } => {
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: partial_json,
                    });
                }
                InDelta::ThinkingDelta { thinking } => out.push(StreamEvent::ReasoningDelta {
                    index,
                    text: thinking,
                }),
                InDelta::SignatureDelta { signature } => {
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
                InDelta::Other => {}
            },
            InEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    merge_usage(&mut self.usage, &usage.to_canonical());
                    out.push(StreamEvent::Usage(self.usage));
                }
                if let Some(reason) = delta.stop_reason {
                    out.push(StreamEvent::Finish(finish_from_anthropic(&reason)));
                }
            }
            InEvent::MessageStop => self.done = true,
            InEvent::Error { error } => {
                self.done = true;
                out.push(StreamEvent::Error {
                    message: format!("{}: {}", error.kind, error.message),
                });
            }
            InEvent::ContentBlockStop { .. } | InEvent::Ping | InEvent::Other => {}
        }
        Ok(out)
    }

    /// Called when the upstream body ends: an error event if it ended before `message_stop`.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        vec![StreamEvent::Error {
            message: "the provider's stream ended before its last event (message_stop)".into(),
        }]
    }
}

// ---------------------------------------------------------------------------------------------
// Stream: canonical events -> Anthropic SSE.

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutEvent<'a> {
    MessageStart {
        message: OutStartMessage<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: OutStartBlock<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: OutDelta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: OutMessageDelta,
        usage: OutUsage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorObject<'a>,
    },
}

impl OutEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
            Self::Error { .. } => "error",
        }
    }
}

#[derive(Serialize)]
struct OutStartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutStartBlock<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: EmptyObject,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum OutDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct OutMessageDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    ToolUse,
    Thinking,
}

/// Turns canonical events into Anthropic SSE bytes for a client.
///
/// Blocks are numbered from 0 in the order their parts first appear, and one block is open at
/// a time: a new part closes the previous block, as Anthropic's own streams do. A late delta
/// for an already closed block (a provider interleaving parallel tool calls) is still sent
/// with that block's index; the SDKs accumulate deltas by index. The closing `message_delta`
/// waits for [`StreamEncoder::finish`], so usage that arrives after the finish reason (OpenAI's
/// final usage chunk) is included.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    started: bool,
    ended: bool,
    /// Canonical part index -> (block index, kind).
    blocks: HashMap<usize, (usize, BlockKind)>,
    open: Option<usize>,
    next_block: usize,
    finish: Option<FinishReason>,
    usage: TokenUsage,
}

impl StreamEncoder {
    /// `model` names the model in `message_start` if the upstream's stream does not.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            started: false,
            ended: false,
            blocks: HashMap::new(),
            open: None,
            next_block: 0,
            finish: None,
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
                    let model = if model.is_empty() { None } else { Some(model) };
                    self.start(id, model.map(String::as_str), out);
                }
            }
            StreamEvent::TextDelta { index, text } => {
                let block = self.block(*index, BlockKind::Text, out);
                write_event(
                    out,
                    &OutEvent::ContentBlockDelta {
                        index: block,
                        delta: OutDelta::Text { text },
                    },
                );
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.open_block(*index, BlockKind::ToolUse, Some((id, name)), out);
            }
            StreamEvent::ToolCallArgsDelta { index, fragment } => {
                let block = self.block(*index, BlockKind::ToolUse, out);
                write_event(
                    out,
                    &OutEvent::ContentBlockDelta {
                        index: block,
                        delta: OutDelta::InputJson {
                            partial_json: fragment,
                        },
                    },
                );
            }
            StreamEvent::ReasoningDelta { index, text } => {
                let block = self.block(*index, BlockKind::Thinking, out);
                write_event(
                    out,
                    &OutEvent::ContentBlockDelta {
                        index: block,
                        delta: OutDelta::Thinking { thinking: text },
                    },
                );
            }
            StreamEvent::ReasoningSignature { index, signature } => {
                let block = self.block(*index, BlockKind::Thinking, out);
                write_event(
                    out,
                    &OutEvent::ContentBlockDelta {
                        index: block,
                        delta: OutDelta::Signature { signature },
                    },
                );
            }
            StreamEvent::Usage(usage) => merge_usage(&mut self.usage, usage),
            StreamEvent::Finish(reason) => self.finish = Some(reason.clone()),
            StreamEvent::Error { message } => {
                self.ensure_started(out);
                self.ended = true;
                write_event(
                    out,
                    &OutEvent::Error {
                        error: ErrorObject {
                            kind: Cow::Borrowed("api_error"),
                            message: Cow::Borrowed(message),
                        },
                    },
                );
            }
        }
    }

    /// Ends the client's stream: closes the open block, sends `message_delta` (stop reason and
    /// usage) and `message_stop`. Does nothing after an error event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ensure_started(out);
        self.close_open(out);
        self.ended = true;
        let stop_reason = self
            .finish
            .as_ref()
            .map_or("end_turn", |f| finish_to_anthropic(f, None));
        write_event(
            out,
            &OutEvent::MessageDelta {
                delta: OutMessageDelta {
                    stop_reason,
                    stop_sequence: None,
                },
                usage: OutUsage::from_canonical(&self.usage),
            },
        );
        write_event(out, &OutEvent::MessageStop);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start("msg_flexiproxy", None, out);
        }
    }

    fn start(&mut self, id: &str, model: Option<&str>, out: &mut Vec<u8>) {
        self.started = true;
        let model = model.unwrap_or(&self.model);
        write_event(
            out,
            &OutEvent::MessageStart {
                message: OutStartMessage {
                    id,
                    kind: "message",
                    role: "assistant",
                    model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: OutUsage::from_canonical(&self.usage),
                },
            },
        );
        write_event(out, &OutEvent::Ping);
    }

    /// The block for part `index`, opened (with an empty start) if this is its first event.
    fn block(&mut self, index: usize, kind: BlockKind, out: &mut Vec<u8>) -> usize {
        self.ensure_started(out);
        match self.blocks.get(&index) {
            Some(&(block, _)) => block,
            None => self.open_block(index, kind, None, out),
        }
    }

    fn open_block(
        &mut self,
        index: usize,
        kind: BlockKind,
        tool: Option<(&String, &String)>,
        out: &mut Vec<u8>,
    ) -> usize {
        if let Some(&(block, _)) = self.blocks.get(&index) {
            return block;
        }
        self.close_open(out);
        let block = self.next_block;
        self.next_block += 1;
        self.blocks.insert(index, (block, kind));
        self.open = Some(block);
        let content_block = match kind {
            BlockKind::Text => OutStartBlock::Text { text: "" },
            BlockKind::Thinking => OutStartBlock::Thinking {
                thinking: "",
                signature: "",
            },
            BlockKind::ToolUse => {
                let (id, name) = match tool {
                    Some((id, name)) => (tool_id(id), name.as_str()),
                    // Arguments before their start: the provider skipped the start event.
                    None => (Cow::Owned(format!("toolu_flexiproxy_{index}")), ""),
                };
                OutStartBlock::ToolUse {
                    id,
                    name,
                    input: EmptyObject,
                }
            }
        };
        write_event(
            out,
            &OutEvent::ContentBlockStart {
                index: block,
                content_block,
            },
        );
        block
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.open.take() {
            write_event(out, &OutEvent::ContentBlockStop { index: block });
        }
    }
}

fn write_event(out: &mut Vec<u8>, event: &OutEvent<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing our wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, event);
    out.extend_from_slice(b"\n\n");
}

/// Anthropic Messages on the wire.
#[derive(Debug, Clone, Copy)]
pub struct AnthropicMessages;

impl Wire for AnthropicMessages {
    fn decode_request(&self, body: &[u8]) -> Result<Request, DecodeError> {
        request_to_canonical(body)
    }
    fn encode_request(&self, request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
        Ok(request_from_canonical(request))
    }
    fn decode_response(&self, body: &[u8]) -> Result<Response, DecodeError> {
        response_to_canonical(body)
    }
    fn encode_response(&self, response: &Response, _view: &ClientView) -> Vec<u8> {
        response_from_canonical(response)
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
        Box::new(StreamEncoder::new(view.model.clone()))
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        error_body(error_type(report.status), report.message)
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
    use serde_json::json;

    fn decode(value: &Value) -> Request {
        request_to_canonical(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn system_message_inside_messages_is_folded_into_system() {
        let request = decode(&json!({
            "model": "claude",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "system", "content": "you are Claude Code"},
                {"role": "user", "content": "hi"}
            ]
        }));
        assert_eq!(request.system, vec!["be brief", "you are Claude Code"]);
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].content, vec![Part::text("hi")]);
    }

    #[test]
    fn blocks_decode_to_typed_parts_and_unknown_ones_are_kept() {
        let request = decode(&json!({
            "model": "claude",
            "max_tokens": 100,
            "top_k": 5,
            "messages": [
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "plan", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "file", "is_error": true},
                    {"type": "document", "source": {"type": "text", "data": "x"}}
                ]}
            ],
            "tools": [
                {"name": "read", "input_schema": {"type": "object"}},
                {"type": "web_search_20250305", "name": "web_search"}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 2048}
        }));
        assert_eq!(request.extra.get("top_k"), Some(&json!(5)));
        assert_eq!(request.tools.len(), 1);
        assert_eq!(request.native_tools.len(), 1);
        assert_eq!(request.tool_choice, Some(ToolChoice::Required));
        assert_eq!(request.parallel_tool_calls, Some(false));
        assert_eq!(request.reasoning.unwrap().budget_tokens, Some(2048));
        let assistant = &request.messages[0].content;
        assert!(
            matches!(&assistant[0], Part::Reasoning(r) if r.signature.as_deref() == Some("sig"))
        );
        assert_eq!(
            assistant[1],
            Part::ToolCall {
                id: "toolu_1".into(),
                name: "read".into(),
                arguments: r#"{"path":"a"}"#.into()
            }
        );
        let user = &request.messages[1].content;
        assert_eq!(
            user[0],
            Part::ToolResult {
                call_id: "toolu_1".into(),
                content: vec![Part::text("file")],
                is_error: true
            }
        );
        assert!(matches!(&user[1], Part::Unknown(v) if v["type"] == "document"));
    }

    #[test]
    fn malformed_requests_are_typed_errors() {
        for body in [
            &b"{"[..],
            br#"{"model":"m"}"#,
            br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_use"}]}]}"#,
            br#"{"model":"m","messages":[],"tool_choice":{"type":"sometimes"}}"#,
        ] {
            assert!(
                request_to_canonical(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn request_round_trip_keeps_what_anthropic_sent() {
        let original = json!({
            "model": "claude",
            "max_tokens": 100,
            "metadata": {"user_id": "u"},
            "system": [{"type": "text", "text": "s"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "ok"}]}
                ]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]
        });
        let request = decode(&original);
        let back: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn foreign_requests_get_defaults_and_no_foreign_signatures() {
        let request = Request {
            model: "claude".into(),
            messages: vec![
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Reasoning(Reasoning {
                            text: "t".into(),
                            signature: Some("openai-sig".into()),
                            encrypted: None,
                            issuer: Some(Protocol::OpenAiResponses),
                        }),
                        Part::ToolCall {
                            id: "functions.read:0".into(),
                            name: "read".into(),
                            arguments: "not json".into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: "functions.read:0".into(),
                        content: vec![Part::text("r")],
                        is_error: false,
                    }],
                },
                Message {
                    role: Role::User,
                    content: vec![Part::text("thanks")],
                },
            ],
            temperature: Some(0.2),
            reasoning: Some(ReasoningConfig {
                effort: Some(crate::canonical::Effort::High),
                budget_tokens: None,
            }),
            extra: Map::from_iter([("seed".to_owned(), json!(1))]),
            origin: Some(Protocol::OpenAiChat),
            ..Request::default()
        };
        let out: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(
            out["thinking"],
            json!({"type": "enabled", "budget_tokens": 32768})
        );
        assert_eq!(out["max_tokens"], json!(32768 + DEFAULT_MAX_TOKENS));
        assert!(out.get("temperature").is_none());
        assert!(out.get("seed").is_none(), "OpenAI-only fields stay behind");
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"type": "tool_use", "id": "functions_read_0", "name": "read", "input": {}}])
        );
        // The tool message and the next user message share one user turn, result first.
        assert_eq!(
            out["messages"][1],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "functions_read_0", "content": [{"type": "text", "text": "r"}]},
                {"type": "text", "text": "thanks"}
            ]})
        );
    }

    #[test]
    fn response_usage_and_stop_reasons_map_both_ways() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 2}
        });
        let response = response_to_canonical(body.to_string().as_bytes()).unwrap();
        assert_eq!(response.finish, Some(FinishReason::ToolCalls));
        assert_eq!(response.usage.input, Some(42));
        assert_eq!(response.usage.cached, Some(30));
        let back: Value = serde_json::from_slice(&response_from_canonical(&response)).unwrap();
        assert_eq!(back["stop_reason"], "tool_use");
        assert_eq!(back["usage"]["input_tokens"], 12);
        assert_eq!(back["usage"]["cache_read_input_tokens"], 30);
        assert_eq!(back["content"], body["content"]);
        for (name, reason) in [
            ("end_turn", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
        ] {
            assert_eq!(finish_from_anthropic(name), reason);
            assert_eq!(finish_to_anthropic(&reason, None), name);
        }
        assert_eq!(
            finish_to_anthropic(&FinishReason::Stop, Some("###")),
            "stop_sequence"
        );
    }

    #[test]
    fn error_body_has_anthropic_shape() {
        let body: Value =
            serde_json::from_slice(&error_body(error_type(429), "slow down")).unwrap();
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
    }

    fn encode_all(events: &[StreamEvent]) -> String {
        let mut encoder = StreamEncoder::new("m");
        let mut out = Vec::new();
        for event in events {
            encoder.encode(event, &mut out);
        }
        encoder.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn decode_all(sse_text: &str) -> Vec<StreamEvent> {
        let mut splitter = sse::EventSplitter::default();
        let mut decoder = StreamDecoder::default();
        let mut events = Vec::new();
        for event in splitter
            .push(bytes::Bytes::copy_from_slice(sse_text.as_bytes()))
            .unwrap()
        {
            events.extend(decoder.decode(&event).unwrap());
        }
        assert!(decoder.is_done());
        events.extend(decoder.finish());
        events
    }

    #[test]
    fn encoder_output_decodes_to_the_same_events() {
        let events = vec![
            StreamEvent::MessageStart {
                id: "msg_1".into(),
                model: "m".into(),
            },
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
            StreamEvent::ToolCallStart {
                index: 2,
                id: "toolu_a".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallArgsDelta {
                index: 2,
                fragment: "{\"a\":".into(),
            },
            StreamEvent::ToolCallArgsDelta {
                index: 2,
                fragment: "1}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(TokenUsage {
                input: Some(9),
                output: Some(4),
                cached: None,
                reasoning: None,
            }),
        ];
        let text = encode_all(&events);
        assert!(text.starts_with("event: message_start\ndata: {\"type\":\"message_start\""));
        assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        let decoded = decode_all(&text);
        let mut expected = events;
        // The decoder reports usage where Anthropic puts it: zero at the start, all at the end.
        expected.insert(
            1,
            StreamEvent::Usage(TokenUsage {
                input: Some(0),
                output: Some(0),
                cached: None,
                reasoning: None,
            }),
        );
        expected.swap(8, 9);
        assert_eq!(decoded, expected);
    }

    #[test]
    fn an_error_ends_the_stream_with_an_error_event() {
        let mut encoder = StreamEncoder::new("m");
        let mut out = Vec::new();
        encoder.encode(
            &StreamEvent::TextDelta {
                index: 0,
                text: "par".into(),
            },
            &mut out,
        );
        encoder.encode(
            &StreamEvent::Error {
                message: "upstream broke".into(),
            },
            &mut out,
        );
        encoder.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"upstream broke\"}}\n\n"
        ));
        assert!(!text.contains("message_stop"));
    }

    #[test]
    fn usage_is_read_on_the_side() {
        let start = br#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":20,"cache_read_input_tokens":4,"output_tokens":1}}}"#;
        let usage = event_usage(start).unwrap();
        assert_eq!(
            (usage.input, usage.cached, usage.output),
            (Some(24), Some(4), Some(1))
        );
        let delta = br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#;
        let usage = event_usage(delta).unwrap();
        assert_eq!((usage.input, usage.output), (None, Some(5)));
        assert_eq!(event_usage(br#"{"type":"ping"}"#), None);
        let whole = br#"{"content":[],"usage":{"input_tokens":3,"output_tokens":2}}"#;
        assert_eq!(response_usage(whole).unwrap().output, Some(2));
    }

    #[test]
    fn a_cut_stream_decodes_to_an_error() {
        let mut decoder = StreamDecoder::default();
        let events = decoder
            .decode(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\"}}\n\n")
            .unwrap();
        assert_eq!(events.len(), 1);
        assert!(!decoder.is_done());
        assert!(matches!(
            decoder.finish().as_slice(),
            [StreamEvent::Error { .. }]
        ));
    }

    #[test]
    fn thinking_stays_off_after_an_unsigned_tool_turn() {
        let mut request = Request {
            model: "claude-x".into(),
            reasoning: Some(ReasoningConfig {
                effort: Some(crate::canonical::Effort::Low),
                budget_tokens: None,
            }),
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![Part::text("weather?")],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![Part::ToolCall {
                        id: "toolu_1".into(),
                        name: "get_weather".into(),
                        arguments: "{}".into(),
                    }],
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: "toolu_1".into(),
                        content: vec![Part::text("sunny")],
                        is_error: false,
                    }],
                },
            ],
            ..Request::default()
        };
        let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert!(body.get("thinking").is_none(), "{body}");

        // With Anthropic's own signed thinking before the call, thinking stays on.
        request.messages[1].content.insert(
            0,
            Part::Reasoning(Reasoning {
                text: "hm".into(),
                signature: Some("sig".into()),
                encrypted: None,
                issuer: Some(PROTOCOL),
            }),
        );
        let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert_eq!(body["thinking"]["type"], "enabled", "{body}");
    }
}
