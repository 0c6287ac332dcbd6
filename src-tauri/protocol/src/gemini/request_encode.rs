//! A canonical [`Request`] into the body a Gemini provider takes.
//!
//! Also home to the part encoder every Gemini writer shares: `parts_out` writes canonical
//! parts for a provider or for a client ([`Audience`]: a provider is only sent what it may
//! accept, a client sees any reasoning), which `response` and `stream_encode` use to answer a
//! Gemini client. `count_tokens` wraps `out_request` for a provider's `countTokens`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::request_decode::image_type;
use super::wire::{
    OutBlob, OutContent, OutDeclaration, OutFields, OutFileData, OutFunctionCall,
    OutFunctionResponse, OutPart, OutRequest, OutResult, OutSystem, OutText, OutTool,
    gemini_issued,
};
use super::{MAX_THINKING_BUDGET, OWN_FIELDS, PROTOCOL, SKIP_SIGNATURE};
use crate::canonical::{
    Image, Message, Part, Request, ResponseFormat, ToolChoice, parse_data_url, untag_proof,
};
use crate::json_schema::SchemaTooLarge;
use crate::tool_arguments::ArgumentsObject;
use crate::turns::{self, Roles, Turn};
use crate::{ExtraFields, json_schema, to_json};

// ---------------------------------------------------------------------------------------------
// Request: canonical -> Gemini.

/// Encodes a request for a Gemini provider: the body of `generateContent` or
/// `streamGenerateContent` (no model, no stream flag: both go in the URL).
///
/// Fails only when the tools' schemas expand past the [`json_schema::Budget`] once their
/// references are inlined (Gemini takes no `$ref`): the client's 400.
pub fn request_from_canonical(request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
    Ok(to_json(&out_request(request)?))
}

pub(super) fn out_request(request: &Request) -> Result<OutRequest<'_>, SchemaTooLarge> {
    let native = request.origin == Some(PROTOCOL);
    let system: Vec<OutText<'_>> = request
        .system
        .iter()
        .filter(|text| !text.is_empty())
        .map(|text| OutText { text })
        .collect();

    // One budget for all the tools: a hundred tools just under a per-tool limit would
    // otherwise add up to what the limit is there to prevent.
    let mut budget = json_schema::Budget::default();
    let mut declarations: Vec<OutDeclaration<'_>> = Vec::with_capacity(request.tools.len());
    for tool in &request.tools {
        let parameters =
            parameters(&tool.parameters, &mut budget).map_err(|over| SchemaTooLarge {
                tool: tool.name.clone(),
                over,
            })?;
        declarations.push(OutDeclaration {
            name: &tool.name,
            description: tool.description.as_deref(),
            parameters,
        });
    }
    let has_functions = !declarations.is_empty();
    let mut tools = Vec::new();
    if has_functions {
        tools.push(OutTool::Functions {
            function_declarations: declarations,
        });
    }
    if native {
        tools.extend(request.native_tools.iter().map(OutTool::Native));
    }

    let mut tool_config = Map::new();
    if let Some(choice) = request.tool_choice.as_ref().filter(|_| has_functions) {
        let calling = match choice {
            ToolChoice::Auto => serde_json::json!({"mode": "AUTO"}),
            ToolChoice::None => serde_json::json!({"mode": "NONE"}),
            ToolChoice::Required => serde_json::json!({"mode": "ANY"}),
            ToolChoice::Named(name) => {
                serde_json::json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
        };
        tool_config.insert("functionCallingConfig".into(), calling);
    }
    if native {
        merge_leftovers(&mut tool_config, request.extra.get("toolConfig"));
    }

    Ok(OutRequest {
        contents: contents_out(&request.messages, native),
        system_instruction: (!system.is_empty()).then_some(OutSystem { parts: system }),
        tools,
        tool_config: (!tool_config.is_empty()).then_some(Value::Object(tool_config)),
        generation_config: generation_out(request, native),
        extra: (native && !request.extra.is_empty())
            .then_some(ExtraFields::new(&request.extra, &OWN_FIELDS)),
    })
}

/// A tool's parameters as Gemini takes them: one object schema, cleaned; none for a tool
/// without arguments, since Gemini refuses an object schema with no properties.
pub(super) fn parameters(
    schema: &Value,
    budget: &mut json_schema::Budget,
) -> Result<Option<Value>, json_schema::OverBudget> {
    let cleaned = json_schema::for_gemini(&json_schema::object_at_top(schema), budget)?;
    let empty_object = cleaned.get("properties").is_none()
        && cleaned.get("anyOf").is_none()
        && cleaned
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "object");
    Ok((!empty_object).then_some(cleaned))
}

fn generation_out(request: &Request, native: bool) -> Option<Map<String, Value>> {
    let mut config = Map::new();
    if let Some(max) = request.max_tokens {
        config.insert("maxOutputTokens".into(), max.into());
    }
    if let Some(temperature) = request.temperature {
        config.insert("temperature".into(), temperature.into());
    }
    if let Some(top_p) = request.top_p {
        config.insert("topP".into(), top_p.into());
    }
    if !request.stop.is_empty() {
        config.insert("stopSequences".into(), request.stop.clone().into());
    }
    match &request.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            config.insert("responseMimeType".into(), "application/json".into());
            // `responseJsonSchema` takes JSON Schema as is (unlike `responseSchema`).
            config.insert("responseJsonSchema".into(), schema.clone());
        }
    }
    if let Some(reasoning) = request.reasoning {
        let mut thinking = Map::new();
        if reasoning.is_off() {
            thinking.insert("thinkingBudget".into(), 0.into());
        } else {
            match (native, reasoning.budget_tokens, reasoning.effort) {
                // A Gemini client's `thinkingLevel` goes back as a level (Gemini 3 refuses a
                // level together with a budget).
                (true, None, Some(effort)) => {
                    thinking.insert(
                        "thinkingLevel".into(),
                        effort.as_str().to_ascii_uppercase().into(),
                    );
                }
                (true, Some(budget), _) => {
                    thinking.insert("thinkingBudget".into(), budget.into());
                }
                _ => {
                    let budget = reasoning.budget_or_derived().map_or(-1, |b| {
                        i64::try_from(b.min(MAX_THINKING_BUDGET)).unwrap_or(-1)
                    });
                    thinking.insert("thinkingBudget".into(), budget.into());
                }
            }
            // The client asked for reasoning, so it gets to see the summaries.
            thinking.insert("includeThoughts".into(), true.into());
        }
        config.insert("thinkingConfig".into(), Value::Object(thinking));
    }
    if native {
        merge_leftovers(&mut config, request.extra.get("generationConfig"));
    }
    (!config.is_empty()).then_some(config)
}

/// Merges a Gemini client's leftover config keys into ours (theirs win; they are only keys we
/// did not translate, or deliberate settings such as `includeThoughts: false`).
fn merge_leftovers(config: &mut Map<String, Value>, leftovers: Option<&Value>) {
    let Some(Value::Object(leftovers)) = leftovers else {
        return;
    };
    for (key, value) in leftovers {
        match (config.get_mut(key), value) {
            (Some(Value::Object(ours)), Value::Object(theirs)) => {
                for (k, v) in theirs {
                    ours.insert(k.clone(), v.clone());
                }
            }
            _ => {
                config.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Who the parts are written for: a provider (only what it may be sent) or a client.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Audience {
    Provider { native: bool },
    Client,
}

/// Contents in Gemini's shape: alternating `user` and `model` turns ([`turns::alternating`]),
/// each model turn's first function call signed.
fn contents_out(messages: &[Message], native: bool) -> Vec<OutContent<'_>> {
    // Gemini names a function response by its function; results only carry the call id.
    let names: HashMap<&str, &str> = messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|part| match part {
            Part::ToolCall { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    let roles = Roles {
        user: "user",
        model: "model",
    };
    let mut turns = turns::alternating(
        messages,
        roles,
        |message| parts_out(&message.content, Audience::Provider { native }, &names),
        OutPart::is_result,
    );
    for turn in &mut turns {
        if turn.role == roles.model
            && let Some(OutPart::Typed(first)) = turn.parts.iter_mut().find(|p| p.is_call())
            && first.thought_signature.is_none()
        {
            first.thought_signature = Some(SKIP_SIGNATURE);
        }
    }
    let content = |Turn { role, parts }| OutContent { role, parts };
    turns.into_iter().map(content).collect()
}

/// Canonical parts as Gemini parts. A text-less signed reasoning part goes onto the next part
/// (where Gemini put it); reasoning text becomes a `thought` part.
pub(super) fn parts_out<'a>(
    parts: &'a [Part],
    audience: Audience,
    names: &HashMap<&str, &'a str>,
) -> Vec<OutPart<'a>> {
    let mut out: Vec<OutPart<'a>> = Vec::with_capacity(parts.len());
    let mut pending: Option<&'a str> = None;
    for part in parts {
        let start = out.len();
        match part {
            Part::Reasoning(reasoning) => {
                let signed = reasoning.signed_for(PROTOCOL);
                let proof = reasoning
                    .signature
                    .as_deref()
                    .or(reasoning.encrypted.as_deref());
                // A client may also hold another provider's proof, tagged with its issuer
                // (`canonical::tag_proof`), to hand back later; never a bare foreign one.
                let signature = proof.filter(|proof| {
                    signed || (audience == Audience::Client && untag_proof(proof).is_some())
                });
                if reasoning.text.is_empty() {
                    if let Some(signature) = signature
                        && let Some(previous) = pending.replace(signature)
                    {
                        out.push(signature_only(previous));
                    }
                    continue;
                }
                // Providers only get Gemini's own thoughts back; clients see any reasoning.
                if audience != Audience::Client && !signed {
                    continue;
                }
                out.push(OutPart::Typed(OutFields {
                    text: Some(&reasoning.text),
                    thought: Some(true),
                    thought_signature: signature,
                    ..OutFields::default()
                }));
            }
            Part::Text { text } if text.is_empty() => {}
            Part::Text { text } => out.push(OutPart::Typed(OutFields {
                text: Some(text),
                ..OutFields::default()
            })),
            Part::Image(image) => out.push(OutPart::Typed(image_out(image))),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let id = match audience {
                    Audience::Client => Some(id.as_str()),
                    Audience::Provider { .. } => Some(id.as_str()).filter(|id| gemini_issued(id)),
                };
                out.push(OutPart::Typed(OutFields {
                    function_call: Some(OutFunctionCall {
                        id,
                        name,
                        args: ArgumentsObject::of(arguments),
                    }),
                    ..OutFields::default()
                }));
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
            } => {
                let text = Part::joined_text(content);
                out.push(OutPart::Typed(OutFields {
                    function_response: Some(OutFunctionResponse {
                        id: Some(call_id.as_str()).filter(|id| gemini_issued(id)),
                        name: names.get(call_id.as_str()).copied().unwrap_or(call_id),
                        response: if *is_error {
                            OutResult::Error(text)
                        } else {
                            OutResult::Output(text)
                        },
                    }),
                    ..OutFields::default()
                }));
                // Images a tool returned follow its response as ordinary parts.
                out.extend(Part::images(content).map(|image| OutPart::Typed(image_out(image))));
            }
            Part::Unknown(raw) if audience == (Audience::Provider { native: true }) => {
                out.push(OutPart::Raw(raw));
            }
            Part::Unknown(_) => {}
        }
        if let (Some(signature), Some(OutPart::Typed(first))) = (pending, out.get_mut(start)) {
            first.thought_signature = Some(signature);
            pending = None;
        }
    }
    if let Some(signature) = pending {
        out.push(signature_only(signature));
    }
    out
}

/// A signature with nothing after it to ride on, as Gemini sends it: on an empty text part.
pub(super) fn signature_only(signature: &str) -> OutPart<'_> {
    OutPart::Typed(OutFields {
        text: Some(""),
        thought_signature: Some(signature),
        ..OutFields::default()
    })
}

fn image_out(image: &Image) -> OutFields<'_> {
    match image {
        Image::Base64 { media_type, data } => OutFields {
            inline_data: Some(OutBlob {
                mime_type: media_type,
                data,
            }),
            ..OutFields::default()
        },
        Image::Url { url } => {
            let inline = parse_data_url(url).map(|(mime_type, data)| OutBlob { mime_type, data });
            match inline {
                Some(blob) => OutFields {
                    inline_data: Some(blob),
                    ..OutFields::default()
                },
                None => OutFields {
                    file_data: Some(OutFileData {
                        mime_type: image_type(url),
                        file_uri: url,
                    }),
                    ..OutFields::default()
                },
            }
        }
    }
}
