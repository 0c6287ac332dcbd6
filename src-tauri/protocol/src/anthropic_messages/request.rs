//! The request both ways: a client's Messages body into a canonical [`Request`], and a
//! canonical request into the body an Anthropic provider takes.
//!
//! Decoding keeps what the canonical model has no place for (`cache_control`, `metadata`,
//! server tools, document blocks) in `extra`, `native_tools` and [`Part::Unknown`]; encoding
//! writes it back only when the request came from an Anthropic client, fills in what Anthropic
//! requires and other protocols may leave out (`max_tokens`, a thinking budget), and leaves
//! thinking off where Anthropic would refuse the conversation.

use serde::Deserialize;
use serde_json::Value;

use super::wire::{
    InBlock, InContent, InImageSource, InRequest, InThinking, InTool, InToolChoice, KNOWN_BLOCKS,
    OutBlock, OutImageSource, OutMessage, OutPart, OutRequest, OutThinking, OutTool, OutToolChoice,
    tool_id,
};
use super::{DEFAULT_MAX_TOKENS, DEFAULT_THINKING_BUDGET, PROTOCOL};
use crate::canonical::{
    DecodeError, Image, Message, Part, Reasoning, ReasoningConfig, Request, ResponseFormat, Role,
    Tool, ToolChoice, decode_each,
};
use crate::tool_arguments::ArgumentsObject;
use crate::turns::{self, Roles, Turn};
use crate::{json_schema, to_json};

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
        InContent::Blocks(blocks) => decode_each(blocks, at, block_to_part),
    }
}

pub(super) fn block_to_part(block: Value, at: &str) -> Result<Part, DecodeError> {
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

/// Messages in Anthropic's shape: alternating `user` and `assistant` turns
/// ([`turns::alternating`]).
fn messages_out(messages: &[Message], native: bool) -> Vec<OutMessage<'_>> {
    let roles = Roles {
        user: "user",
        model: "assistant",
    };
    let turns = turns::alternating(
        messages,
        roles,
        |message| {
            let parts = message.content.iter();
            parts.filter_map(|part| part_out(part, native)).collect()
        },
        |part| matches!(part, OutPart::Block(OutBlock::ToolResult { .. })),
    );
    let message = |Turn { role, parts }| OutMessage {
        role,
        content: parts,
    };
    turns.into_iter().map(message).collect()
}

pub(super) fn part_out(part: &Part, native: bool) -> Option<OutPart<'_>> {
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
            input: ArgumentsObject::of(arguments),
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
