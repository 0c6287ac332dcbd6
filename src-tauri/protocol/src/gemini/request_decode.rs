//! A Gemini client's `generateContent` body into a canonical [`Request`].
//!
//! Also home to the part decoder every Gemini reader shares: [`Calls`] gives results their
//! call's id (and makes ids for calls Gemini sent without one), and `decode_part` turns one
//! part into canonical parts. `response` and `stream_decode` call both for a provider's
//! answer, so a part means the same thing in a request, a whole answer and a stream chunk;
//! `count_tokens` decodes its inner request through `request_from_wire`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::wire::{InFunctionDeclaration, InPart, InRequest, InSystem};
use super::{GENERATED_ID, PROTOCOL};
use crate::canonical::{
    DecodeError, Effort, Image, Message, Part, Reasoning, ReasoningConfig, Request, ResponseFormat,
    Role, Tool, ToolChoice,
};
use crate::json_schema;

// ---------------------------------------------------------------------------------------------
// Request: Gemini -> canonical.

/// Decodes a client's `generateContent` / `streamGenerateContent` body. `model` stays empty
/// and `stream` false: both are in the URL, which the caller reads.
pub fn request_to_canonical(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: InRequest = serde_json::from_slice(body)?;
    request_from_wire(wire)
}

pub(super) fn request_from_wire(wire: InRequest) -> Result<Request, DecodeError> {
    let mut request = Request {
        extra: wire.extra,
        origin: Some(PROTOCOL),
        ..Request::default()
    };
    // A `model` in the body (countTokens' inner request) is the URL's business.
    request.extra.remove("model");
    match wire.system_instruction {
        None => {}
        Some(InSystem::Text(text)) => request.system.push(text),
        Some(InSystem::Content { parts }) => {
            // Gemini takes only text here; anything else has nowhere to go.
            request.system.extend(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .map(str::to_owned),
            );
        }
    }
    let mut calls = Calls::default();
    for (i, content) in wire.contents.into_iter().enumerate() {
        let at = format!("contents[{i}]");
        let role = match content.role.as_deref() {
            // The role may be left out of a single-turn request.
            None | Some("user") => Role::User,
            Some("model") => Role::Assistant,
            // Older clients put function responses in a `function` turn.
            Some("function" | "tool") => Role::Tool,
            Some(other) => {
                return Err(DecodeError::Invalid(format!(
                    "{at}.role is `{other}`; use `user` or `model`"
                )));
            }
        };
        let mut parts = Vec::with_capacity(content.parts.len());
        for (j, part) in content.parts.into_iter().enumerate() {
            decode_part(part, &format!("{at}.parts[{j}]"), &mut calls, &mut parts)?;
        }
        if !parts.is_empty() {
            request.messages.push(Message {
                role,
                content: parts,
            });
        }
    }
    for (i, mut tool) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        let declarations = tool
            .remove("functionDeclarations")
            .or_else(|| tool.remove("function_declarations"));
        if let Some(declarations) = declarations {
            let declarations =
                Vec::<InFunctionDeclaration>::deserialize(declarations).map_err(|e| {
                    DecodeError::Invalid(format!("tools[{i}].functionDeclarations: {e}"))
                })?;
            request.tools.extend(declarations.into_iter().map(|d| Tool {
                name: d.name,
                description: d.description,
                parameters: match (d.parameters_json_schema, d.parameters) {
                    (Some(schema), _) => schema,
                    (None, Some(schema)) => json_schema::from_gemini(&schema),
                    (None, None) => Tool::no_parameters(),
                },
            }));
        }
        // Google Search, code execution, URL context, …: run by Gemini itself.
        if !tool.is_empty() {
            request.native_tools.push(Value::Object(tool));
        }
    }
    if let Some(mut config) = wire.tool_config {
        let calling = config
            .remove("functionCallingConfig")
            .or_else(|| config.remove("function_calling_config"));
        if let Some(calling) = calling {
            request.tool_choice = tool_choice(&calling)?;
        }
        if !config.is_empty() {
            request
                .extra
                .insert("toolConfig".into(), Value::Object(config));
        }
    }
    if let Some(config) = wire.generation_config {
        generation_config(config, &mut request)?;
    }
    Ok(request)
}

/// Reads `functionCallingConfig`: `ANY` with one allowed name forces that tool; `VALIDATED`
/// (calls or text, checked against the schemas) is closest to auto.
fn tool_choice(config: &Value) -> Result<Option<ToolChoice>, DecodeError> {
    let mode = config.get("mode").and_then(Value::as_str).unwrap_or("AUTO");
    let allowed: Vec<&str> = config
        .get("allowedFunctionNames")
        .or_else(|| config.get("allowed_function_names"))
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Ok(Some(match mode.to_ascii_uppercase().as_str() {
        "AUTO" | "VALIDATED" | "MODE_UNSPECIFIED" => ToolChoice::Auto,
        "NONE" => ToolChoice::None,
        "ANY" => match allowed.as_slice() {
            [name] => ToolChoice::Named((*name).to_owned()),
            _ => ToolChoice::Required,
        },
        other => {
            return Err(DecodeError::Invalid(format!(
                "toolConfig.functionCallingConfig.mode is `{other}`; use AUTO, ANY, NONE or VALIDATED"
            )));
        }
    }))
}

/// Takes the first of `names` out of `map`.
fn take(map: &mut Map<String, Value>, names: &[&str]) -> Option<Value> {
    names.iter().find_map(|name| map.remove(*name))
}

fn number<T: for<'de> Deserialize<'de>>(value: Value, at: &str) -> Result<T, DecodeError> {
    // Protobuf JSON writes 64-bit integers as strings.
    let value = match value {
        Value::String(text) => match (text.parse::<i64>(), text.parse::<f64>()) {
            (Ok(integer), _) => Value::from(integer),
            (Err(_), Ok(float)) => Value::from(float),
            _ => Value::String(text),
        },
        other => other,
    };
    T::deserialize(value).map_err(|e| DecodeError::Invalid(format!("{at}: {e}")))
}

/// Reads `generationConfig` into the request; what has no canonical home stays in
/// `extra["generationConfig"]`.
fn generation_config(
    mut config: Map<String, Value>,
    request: &mut Request,
) -> Result<(), DecodeError> {
    let at = |name: &str| format!("generationConfig.{name}");
    if let Some(value) = take(&mut config, &["maxOutputTokens", "max_output_tokens"]) {
        request.max_tokens = Some(number(value, &at("maxOutputTokens"))?);
    }
    if let Some(value) = take(&mut config, &["temperature"]) {
        request.temperature = Some(number(value, &at("temperature"))?);
    }
    if let Some(value) = take(&mut config, &["topP", "top_p"]) {
        request.top_p = Some(number(value, &at("topP"))?);
    }
    if let Some(value) = take(&mut config, &["stopSequences", "stop_sequences"]) {
        request.stop = Vec::<String>::deserialize(value)
            .map_err(|e| DecodeError::Invalid(format!("{}: {e}", at("stopSequences"))))?;
    }
    // Only JSON output has a canonical form; `text/x.enum` and friends stay Gemini's.
    let mime = config
        .get("responseMimeType")
        .or_else(|| config.get("response_mime_type"))
        .and_then(Value::as_str);
    if mime == Some("application/json") {
        take(&mut config, &["responseMimeType", "response_mime_type"]);
        let json_schema = take(&mut config, &["responseJsonSchema", "response_json_schema"]);
        let schema = take(&mut config, &["responseSchema", "response_schema"]);
        request.response_format = Some(match (json_schema, schema) {
            (Some(schema), _) => ResponseFormat::JsonSchema {
                name: "response".into(),
                schema,
                strict: None,
            },
            (None, Some(schema)) => ResponseFormat::JsonSchema {
                name: "response".into(),
                schema: json_schema::from_gemini(&schema),
                strict: None,
            },
            (None, None) => ResponseFormat::JsonObject,
        });
    }
    if let Some(thinking) = take(&mut config, &["thinkingConfig", "thinking_config"]) {
        let Value::Object(mut thinking) = thinking else {
            return Err(DecodeError::Invalid(format!(
                "{} must be an object",
                at("thinkingConfig")
            )));
        };
        let budget = take(&mut thinking, &["thinkingBudget", "thinking_budget"])
            .map(|v| number::<i64>(v, &at("thinkingConfig.thinkingBudget")))
            .transpose()?;
        let level = take(&mut thinking, &["thinkingLevel", "thinking_level"]);
        let include =
            take(&mut thinking, &["includeThoughts", "include_thoughts"]).and_then(|v| v.as_bool());
        request.reasoning = match (budget, level) {
            (Some(0), _) => Some(ReasoningConfig {
                effort: None,
                budget_tokens: Some(0),
            }),
            // -1: the model decides.
            (Some(budget), _) if budget < 0 => Some(ReasoningConfig::default()),
            (Some(budget), _) => Some(ReasoningConfig {
                effort: None,
                budget_tokens: u64::try_from(budget).ok(),
            }),
            (None, Some(level)) => Some(ReasoningConfig {
                effort: level.as_str().and_then(thinking_level),
                budget_tokens: None,
            }),
            (None, None) if include == Some(true) => Some(ReasoningConfig::default()),
            (None, None) => None,
        };
        // Thinking with its summaries hidden has no canonical form; a Gemini target keeps it.
        if include == Some(false) {
            thinking.insert("includeThoughts".into(), Value::Bool(false));
        }
        if !thinking.is_empty() {
            config.insert("thinkingConfig".into(), Value::Object(thinking));
        }
    }
    if !config.is_empty() {
        request
            .extra
            .insert("generationConfig".into(), Value::Object(config));
    }
    Ok(())
}

fn thinking_level(level: &str) -> Option<Effort> {
    Some(match level.to_ascii_uppercase().as_str() {
        "MINIMAL" => Effort::Minimal,
        "LOW" => Effort::Low,
        "MEDIUM" => Effort::Medium,
        "HIGH" | "XHIGH" => Effort::High,
        _ => return None,
    })
}

/// Tool calls seen so far in one request or answer, to give results their call's id.
#[derive(Debug, Default)]
pub(super) struct Calls {
    /// (id, name, answered)
    list: Vec<(String, String, bool)>,
    /// `None` while decoding a request (ids by position are unique within it); an answer's
    /// `responseId` otherwise, so ids stay unique across the turns of a conversation.
    seed: Option<String>,
    made: usize,
}

impl Calls {
    pub(super) fn for_answer(response_id: &str) -> Self {
        let seed: String = response_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            seed: Some(seed),
            ..Self::default()
        }
    }

    /// The call's id: Gemini's own, else a deterministic one.
    fn call(&mut self, id: Option<String>, name: &str, arguments: &str) -> String {
        let id = match id.filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => {
                let n = self.made;
                self.made += 1;
                match self.seed.as_deref() {
                    None => format!("{GENERATED_ID}{n}"),
                    Some("") => format!("{GENERATED_ID}{:016x}_{n}", fnv1a(&[name, arguments])),
                    Some(seed) => format!("{GENERATED_ID}{seed}_{n}"),
                }
            }
        };
        self.list.push((id.clone(), name.to_owned(), false));
        id
    }

    /// The id of the call a `functionResponse` answers: the one with its id, else the earliest
    /// unanswered call of its name (Gemini CLI gives responses ids its calls did not have).
    fn answer(&mut self, id: Option<&str>, name: &str) -> String {
        let by_id = id.and_then(|id| self.list.iter().position(|(i, _, _)| i == id));
        let found = by_id.or_else(|| {
            self.list
                .iter()
                .position(|(_, n, answered)| n == name && !answered)
        });
        match found {
            Some(at) => {
                self.list[at].2 = true;
                self.list[at].0.clone()
            }
            None => match id.filter(|id| !id.is_empty()) {
                Some(id) => id.to_owned(),
                None => {
                    let n = self.made;
                    self.made += 1;
                    format!("{GENERATED_ID}result_{n}")
                }
            },
        }
    }
}

/// FNV-1a over `texts`: a stable, dependency-free seed for generated ids.
fn fnv1a(texts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for text in texts {
        for byte in text.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The part kinds with a canonical counterpart; any other part is kept as [`Part::Unknown`].
fn known_part(part: &Value) -> bool {
    const KINDS: [&str; 9] = [
        "text",
        "inlineData",
        "inline_data",
        "fileData",
        "file_data",
        "functionCall",
        "function_call",
        "functionResponse",
        "function_response",
    ];
    let Some(object) = part.as_object() else {
        return false;
    };
    if !KINDS.iter().any(|kind| object.contains_key(*kind)) {
        return false;
    }
    // Inline data other than images (PDF, audio, video) has no canonical form.
    let blob = object
        .get("inlineData")
        .or_else(|| object.get("inline_data"));
    match blob.and_then(|b| b.get("mimeType").or_else(|| b.get("mime_type"))) {
        Some(mime) => mime.as_str().is_some_and(|m| m.starts_with("image/")),
        None => true,
    }
}

/// Decodes one part into `out` (sometimes two canonical parts: a signature and its part).
pub(super) fn decode_part(
    value: Value,
    at: &str,
    calls: &mut Calls,
    out: &mut Vec<Part>,
) -> Result<(), DecodeError> {
    if !known_part(&value) {
        out.push(Part::Unknown(value));
        return Ok(());
    }
    let part =
        InPart::deserialize(value).map_err(|e| DecodeError::Invalid(format!("{at}: {e}")))?;
    let signature = part.thought_signature.filter(|s| !s.is_empty());
    if part.thought == Some(true) {
        out.push(Part::Reasoning(Reasoning {
            text: part.text.unwrap_or_default(),
            signature,
            encrypted: None,
            issuer: Some(PROTOCOL),
        }));
        return Ok(());
    }
    // A signature on an ordinary part belongs to the model's hidden reasoning before it.
    if let Some(signature) = signature {
        out.push(Part::Reasoning(Reasoning {
            text: String::new(),
            signature: None,
            encrypted: Some(signature),
            issuer: Some(PROTOCOL),
        }));
    }
    if let Some(call) = part.function_call {
        let arguments = call.args.map_or_else(|| "{}".to_owned(), |a| a.to_string());
        let id = calls.call(call.id, &call.name, &arguments);
        out.push(Part::ToolCall {
            id,
            name: call.name,
            arguments,
        });
    } else if let Some(response) = part.function_response {
        let call_id = calls.answer(response.id.as_deref(), &response.name);
        let (mut content, is_error) = result_content(response.response.as_ref());
        for extra in response.parts.unwrap_or_default() {
            let mut inner = Vec::new();
            decode_part(
                extra,
                &format!("{at}.functionResponse.parts"),
                calls,
                &mut inner,
            )?;
            content.extend(inner.into_iter().filter(|p| matches!(p, Part::Image(_))));
        }
        out.push(Part::ToolResult {
            call_id,
            content,
            is_error,
        });
    } else if let Some(blob) = part.inline_data {
        out.push(Part::Image(Image::Base64 {
            media_type: blob.mime_type,
            data: blob.data,
        }));
    } else if let Some(file) = part.file_data {
        let image = match &file.mime_type {
            Some(mime) => mime.starts_with("image/"),
            None => image_type(&file.file_uri).is_some(),
        };
        out.push(if image {
            Part::Image(Image::Url { url: file.file_uri })
        } else {
            Part::Unknown(serde_json::json!({"fileData": {
                "mimeType": file.mime_type,
                "fileUri": file.file_uri,
            }}))
        });
    } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
        out.push(Part::Text { text });
    }
    Ok(())
}

/// A `functionResponse.response` as result content: the text when it is only
/// `{"output"|"content"|"result": "…"}` (or `{"error": "…"}`), else the object as JSON text.
fn result_content(response: Option<&Value>) -> (Vec<Part>, bool) {
    let Some(response) = response else {
        return (Vec::new(), false);
    };
    let is_error = response.get("error").is_some_and(|e| !e.is_null());
    let text = match response {
        Value::String(text) => text.clone(),
        Value::Object(object) if object.len() == 1 => {
            let (key, value) = object
                .iter()
                .next()
                .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
            match (key, value) {
                ("output" | "content" | "result" | "error", Value::String(text)) => text.clone(),
                _ => response.to_string(),
            }
        }
        other => other.to_string(),
    };
    (vec![Part::Text { text }], is_error)
}

/// The image media type a URL's extension names.
pub(super) fn image_type(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}
