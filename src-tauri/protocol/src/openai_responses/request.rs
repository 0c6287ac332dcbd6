//! Responses requests to and from the canonical model: [`request_to_canonical`] for a
//! client's request, [`request_from_canonical`] for a provider's, and [`custom_tool_names`],
//! which tells the encoders of the answer which of a client's tools are custom.
//!
//! Input items become canonical messages and back, and custom tools become functions taking
//! `{"input": …}` for other protocols. The item and content-part conversions here
//! (`content_part`, `reasoning_part`, `custom_arguments` and the `Part`s of function and
//! custom tool calls towards canonical;
//! `custom_input`, `client_encrypted` and `is_content_part` back) are shared with `response`
//! and the two stream files: a provider's output items take the same forms as the input items
//! a client sends back.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::PROTOCOL;
use super::wire::{
    InContent, InCustomTool, InCustomToolCall, InFunctionCall, InInput, InMessageItem,
    InReasoningItem, InRequest, InToolOutput, OutContent, OutItem, OutRequest, OutTool,
    OutToolOutput, OutTypedContent, OutTypedItem, summary,
};
use crate::canonical::{
    DecodeError, Effort, Image, Message, Part, ProofKind, Reasoning, ReasoningConfig, Request,
    ResponseFormat, Role, Tool, ToolChoice, decode_each, tag_proof, untag_proof,
};
use crate::openai_function::FunctionDefinition;
use crate::{ExtraFields, to_json};

// ---------------------------------------------------------------------------------------------
// Request: Responses -> canonical.

/// Fields this module writes itself when encoding for a Responses provider; a client's copy in
/// `extra` is merged into them rather than written twice.
const OWN_FIELDS: [&str; 3] = ["text", "reasoning", "tool_choice"];

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
                let def = FunctionDefinition::deserialize(&tool)
                    .map_err(|e| DecodeError::Invalid(format!("tools[{i}]: {e}")))?;
                request.tools.push(def.into());
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
///
/// [`StreamEncoder::with_custom_tools`]: super::StreamEncoder::with_custom_tools
/// [`response_from_canonical_with_custom_tools`]: super::response_from_canonical_with_custom_tools
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
                "system" | "developer" => request
                    .push_system(content_parts(message.content, &at)?)
                    .map_err(|_| {
                        DecodeError::Invalid(format!(
                            "{at}: system and developer messages may only hold text"
                        ))
                    })?,
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
            push_to_turn(&mut request.messages, Role::Assistant, [call.into()]);
        }
        Some("custom_tool_call") => {
            let call = InCustomToolCall::deserialize(&item).map_err(invalid)?;
            push_to_turn(&mut request.messages, Role::Assistant, [call.into()]);
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

impl From<InFunctionCall> for Part {
    fn from(call: InFunctionCall) -> Self {
        Part::ToolCall {
            id: call.call_id,
            name: call.name,
            arguments: call.arguments,
        }
    }
}

/// A custom tool's call carries text; canonically it is a call with `{"input": text}`.
impl From<InCustomToolCall> for Part {
    fn from(call: InCustomToolCall) -> Self {
        Part::ToolCall {
            id: call.call_id,
            name: call.name,
            arguments: custom_arguments(&call.input),
        }
    }
}

/// Canonical arguments of a custom tool call: its text as the `input` of a JSON object.
pub(super) fn custom_arguments(input: &str) -> String {
    json!({ "input": input }).to_string()
}

/// The text of a custom tool call from canonical arguments: `input` when the model answered
/// with the object the tool was declared as, the arguments verbatim otherwise.
pub(super) fn custom_input(arguments: &str) -> Cow<'_, str> {
    let parsed: Option<Map<String, Value>> = serde_json::from_str(arguments).ok();
    let input = parsed.and_then(|mut o| match o.remove("input") {
        Some(Value::String(input)) => Some(input),
        _ => None,
    });
    input.map_or(Cow::Borrowed(arguments), Cow::Owned)
}

pub(super) fn reasoning_part(item: InReasoningItem) -> Part {
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
pub(super) fn client_encrypted(reasoning: &Reasoning) -> Option<Cow<'_, str>> {
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
        InContent::Parts(parts) => decode_each(parts, at, content_part),
    }
}

pub(super) fn content_part(part: Value, at: &str) -> Result<Part, DecodeError> {
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
pub(super) fn is_content_part(value: &Value) -> bool {
    value
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("input_") || t.starts_with("output_") || t == "refusal")
}

// ---------------------------------------------------------------------------------------------
// Request: canonical -> Responses.

/// OpenAI refuses `max_output_tokens` below 16; clients of other protocols sometimes ask for
/// one token (quota probes), which must not turn into a 400.
const MIN_OUTPUT_TOKENS: u64 = 16;

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
        instructions: request.system_text(),
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
        text.push_str(&Part::joined_text(content));
        OutToolOutput::Text(text)
    };
    items.push(OutItem::Typed(if custom_calls.contains(call_id.as_str()) {
        OutTypedItem::CustomToolCallOutput { call_id, output }
    } else {
        OutTypedItem::FunctionCallOutput { call_id, output }
    }));
}
