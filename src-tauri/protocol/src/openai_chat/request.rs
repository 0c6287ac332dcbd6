//! Chat Completions requests to and from the canonical model: [`request_to_canonical`] for a
//! client's request, [`request_from_canonical`] for a provider's.
//!
//! Decoding reads every message role, content part and tool the family knows; what the
//! canonical model has no field for stays in `extra` (or `native_tools`) so that a Chat
//! Completions provider still gets it. Encoding writes the common core most OpenAI-compatible
//! hosts accept, and bends it for OpenAI's own models (reasoning models refuse `max_tokens`
//! and sampling, chat models refuse `reasoning_effort`). [`assistant_parts`] is shared with
//! `response`, which reads a provider's answer message the same way as a past assistant turn.

use serde::Deserialize;
use serde_json::Value;

use super::wire::{
    InChatContent, InChatMessage, InChatRequest, InStop, IncludeUsage, OutChatContent,
    OutChatMessage, OutChatPart, OutChatRequest, OutChatTool, OutChatToolChoice, OutFunctionDef,
    OutImageUrl, OutNamed, OutToolCall, OutTypedPart,
};
use crate::canonical::{
    DecodeError, Effort, Image, Message, Part, Reasoning, ReasoningConfig, Request, ResponseFormat,
    Role, ToolChoice,
};
use crate::openai_function::FunctionDefinition;
use crate::{ExtraFields, Protocol, json_schema, to_json};

/// Fields this module writes itself when encoding, so a client's copy in `extra` is not merged.
const OWN_FIELDS: [&str; 2] = ["stream_options", "max_completion_tokens"];

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
            "system" | "developer" => request
                .push_system(chat_content(message.content, &at)?)
                .map_err(|_| {
                    DecodeError::Invalid(format!("{at}: system messages may only hold text"))
                })?,
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
            let def = FunctionDefinition::deserialize(function)
                .map_err(|e| DecodeError::Invalid(format!("tools[{i}].function: {e}")))?;
            request.tools.push(def.into());
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
pub(super) fn assistant_parts(message: InChatMessage, at: &str) -> Result<Vec<Part>, DecodeError> {
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

/// Encodes a request for a Chat Completions provider. Streams always ask for the final usage
/// chunk, which is where usage is read from.
pub fn request_from_canonical(request: &Request) -> Vec<u8> {
    let native = request.origin == Some(Protocol::OpenAiChat);
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system_text() {
        messages.push(OutChatMessage {
            role: "system",
            content: Some(OutChatContent::Text(system)),
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
pub(super) fn is_openai_reasoning_model(model: &str) -> bool {
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
            _ => tool_calls.extend(OutToolCall::of(part)),
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
                text.push_str(&Part::joined_text(content));
                rest.extend(Part::images(content).map(image_part));
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
