//! Google Gemini (`generateContent`, `streamGenerateContent`, `countTokens`) to and from the
//! canonical model.
//!
//! Used when a Gemini client (the google-genai SDKs, Gemini CLI) reaches a provider of another
//! protocol, or a Gemini provider (`generativelanguage.googleapis.com/v1beta`) serves a client
//! of another protocol; Gemini-to-Gemini traffic takes the byte-forwarding fast path. Gemini
//! bodies carry no model (it is in the URL), so [`request_to_canonical`] leaves
//! [`Request::model`] empty and [`request_from_canonical`] writes none; the caller names the
//! model in the URL. Whether a request streams is also in the URL (`:streamGenerateContent`),
//! so the caller sets [`Request::stream`]. All wire types are private.
//!
//! - [`request_to_canonical`] / [`request_from_canonical`]: the request both ways (camelCase
//!   and the snake_case spellings REST samples use are both read).
//! - [`response_to_canonical`] / [`response_from_canonical`]: a whole `GenerateContentResponse`.
//! - [`StreamDecoder`]: a provider's `?alt=sse` stream, one whole response chunk per event.
//! - [`StreamEncoder`]: chunks for a client, as SSE or as the streamed JSON array Google sends
//!   without `alt=sse` ([`Framing`]).
//! - [`count_tokens_request_to_canonical`], [`count_tokens_request_from_canonical`],
//!   [`count_tokens_body`], [`count_tokens_total`]: `countTokens`.
//! - [`error_body`] / [`error_status`]: `{"error":{"code","message","status"}}`.
//!
//! Mapping decisions worth knowing:
//! - Usage: Gemini's `candidatesTokenCount` leaves out thinking, canonical output includes it:
//!   output = candidates + thoughts, reasoning = thoughts, input = prompt (+ tool-use prompt),
//!   which already counts `cachedContentTokenCount`. The encoders invert this.
//! - Thought signatures: a `thought: true` part becomes [`Reasoning`] with its signature. A
//!   signature on any other part (Gemini 3 signs the first function call of a step) becomes a
//!   text-less [`Reasoning`] with the signature in `encrypted`, just before that part, and goes
//!   back onto the part that follows it. Function calls that reach a Gemini provider without a
//!   signature (history from another provider) carry Google's documented placeholder
//!   [`SKIP_SIGNATURE`], which Gemini 3 requires.
//! - Tool-call ids: Gemini may or may not give ids. Missing ones are made deterministically
//!   (prefix `gemini_fc_`); results are matched to calls by id, else by name in order. Only ids
//!   that may have come from Gemini are sent to a Gemini provider (not ours, not another
//!   provider's `toolu_…`/`call_…`), since Gemini matches by name and order anyway.
//! - Tool schemas go out cleaned by [`json_schema::for_gemini`]; Gemini clients' OpenAPI-style
//!   schemas come in through [`json_schema::from_gemini`].
//! - `generationConfig` and `toolConfig` keys without a canonical home are kept in
//!   [`Request::extra`] under those names and merged back only for a Gemini target; other
//!   top-level fields (`safetySettings`, `cachedContent`, `labels`, …) are kept as they are.

use std::collections::HashMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{ExtraFields, to_json};
use crate::canonical::TokenUsage;
use crate::canonical::{
    DecodeError, Effort, FinishReason, Image, Message, Part, Reasoning, ReasoningConfig, Request,
    Response, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, merge_usage, parse_data_url,
    untag_proof,
};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;
use crate::{Protocol, json_schema, sse};

const PROTOCOL: Protocol = Protocol::Gemini;

/// Google's documented stand-in signature for function calls Gemini did not produce (history
/// from another model): Gemini 3 refuses a step whose first function call has no signature.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Prefix of the tool-call ids this module makes for calls Gemini sent without one.
const GENERATED_ID: &str = "gemini_fc_";

/// Id prefixes of other providers' tool calls; such ids are not sent to Gemini.
const FOREIGN_IDS: [&str; 5] = ["toolu_", "call_", "fc_", "functions.", "chatcmpl"];

/// The largest thinking budget every Gemini 2.5 model accepts (Flash and Flash-Lite stop at
/// 24576, Pro at 32768); budgets derived from another protocol are capped here. Gemini 3 maps
/// budgets to its levels itself.
const MAX_THINKING_BUDGET: u64 = 24_576;

/// Fields of a request body this module writes itself, so a client's copy in `extra` is not
/// written twice (`generationConfig`/`toolConfig` leftovers are merged into ours instead).
const OWN_FIELDS: [&str; 9] = [
    "contents",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "tool_config",
    "generationConfig",
    "generation_config",
    "model",
];

/// Gemini's finish reasons, passed through when a Gemini answer is re-encoded for Gemini.
const FINISH_REASONS: [&str; 24] = [
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "OTHER",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "MALFORMED_FUNCTION_CALL",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_OTHER",
    "NO_IMAGE",
    "IMAGE_RECITATION",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
    "MISSING_THOUGHT_SIGNATURE",
    "MALFORMED_RESPONSE",
    "MODEL_ARMOR",
    "FINISH_REASON_UNSPECIFIED",
    "ESCALATION",
    "CONTINUATION",
    "PUP_LIMITED_DISABLED",
];

// ---------------------------------------------------------------------------------------------
// Wire types: what we read.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InRequest {
    #[serde(default)]
    contents: Vec<InContent>,
    #[serde(default, alias = "system_instruction")]
    system_instruction: Option<InSystem>,
    #[serde(default)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default, alias = "tool_config")]
    tool_config: Option<Map<String, Value>>,
    #[serde(default, alias = "generation_config")]
    generation_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct InContent {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Value>,
}

/// `systemInstruction` is a `Content`; some clients send a bare string.
#[derive(Deserialize)]
#[serde(untagged)]
enum InSystem {
    Text(String),
    Content { parts: Vec<Value> },
}

/// One part, for the kinds with a canonical counterpart (see [`part_kind`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InPart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, alias = "thought_signature")]
    thought_signature: Option<String>,
    #[serde(default, alias = "inline_data")]
    inline_data: Option<InBlob>,
    #[serde(default, alias = "file_data")]
    file_data: Option<InFileData>,
    #[serde(default, alias = "function_call")]
    function_call: Option<InFunctionCall>,
    #[serde(default, alias = "function_response")]
    function_response: Option<InFunctionResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InBlob {
    #[serde(alias = "mime_type")]
    mime_type: String,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InFileData {
    #[serde(default, alias = "mime_type")]
    mime_type: Option<String>,
    #[serde(alias = "file_uri")]
    file_uri: String,
}

#[derive(Deserialize)]
struct InFunctionCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
struct InFunctionResponse {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    response: Option<Value>,
    /// Multimodal function responses (Gemini 3): images the tool returned.
    #[serde(default)]
    parts: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InFunctionDeclaration {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default, alias = "parameters_json_schema")]
    parameters_json_schema: Option<Value>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct InUsage {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    prompt_token_count: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    candidates_token_count: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    cached_content_token_count: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    thoughts_token_count: Option<u64>,
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    tool_use_prompt_token_count: Option<u64>,
}

impl InUsage {
    /// Gemini counts thinking apart from the answer; canonical output holds both.
    fn to_canonical(self) -> TokenUsage {
        let sum = |a: Option<u64>, b: Option<u64>| {
            (a.is_some() || b.is_some()).then(|| {
                a.unwrap_or(0)
                    .saturating_add(b.unwrap_or(0))
                    .min(crate::canonical::MAX_TOKENS)
            })
        };
        TokenUsage {
            input: sum(self.prompt_token_count, self.tool_use_prompt_token_count),
            output: sum(self.candidates_token_count, self.thoughts_token_count),
            cached: self.cached_content_token_count,
            reasoning: self.thoughts_token_count,
        }
    }
}

/// A `GenerateContentResponse`: a whole answer, or one stream chunk.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InResponse {
    #[serde(default)]
    candidates: Vec<InCandidate>,
    #[serde(default)]
    usage_metadata: Option<InUsage>,
    #[serde(default)]
    model_version: String,
    #[serde(default)]
    response_id: String,
    #[serde(default)]
    prompt_feedback: Option<InPromptFeedback>,
    #[serde(default)]
    error: Option<InError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InCandidate {
    #[serde(default)]
    content: Option<InCandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Deserialize)]
struct InCandidateContent {
    #[serde(default)]
    parts: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InPromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize)]
struct InError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

// ---------------------------------------------------------------------------------------------
// Request: Gemini -> canonical.

/// Decodes a client's `generateContent` / `streamGenerateContent` body. `model` stays empty
/// and `stream` false: both are in the URL, which the caller reads.
pub fn request_to_canonical(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: InRequest = serde_json::from_slice(body)?;
    request_from_wire(wire)
}

fn request_from_wire(wire: InRequest) -> Result<Request, DecodeError> {
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
                    (None, None) => serde_json::json!({"type": "object", "properties": {}}),
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
struct Calls {
    /// (id, name, answered)
    list: Vec<(String, String, bool)>,
    /// `None` while decoding a request (ids by position are unique within it); an answer's
    /// `responseId` otherwise, so ids stay unique across the turns of a conversation.
    seed: Option<String>,
    made: usize,
}

impl Calls {
    fn for_answer(response_id: &str) -> Self {
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
fn decode_part(
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
fn image_type(url: &str) -> Option<&'static str> {
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

// ---------------------------------------------------------------------------------------------
// Wire types: what we write.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutRequest<'a> {
    contents: Vec<OutContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<OutSystem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    extra: Option<ExtraFields<'a>>,
}

#[derive(Serialize)]
struct OutSystem<'a> {
    parts: Vec<OutText<'a>>,
}

#[derive(Serialize)]
struct OutText<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct OutContent<'a> {
    role: &'static str,
    parts: Vec<OutPart<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
#[allow(
    clippy::large_enum_variant,
    reason = "parts are built once and serialised at once; boxing would add an allocation per part"
)]
enum OutPart<'a> {
    Typed(OutFields<'a>),
    Raw(&'a Value),
}

/// A part: exactly one of the kinds, plus the optional `thought`/`thoughtSignature`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct OutFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<OutBlob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<OutFileData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<OutFunctionCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_response: Option<OutFunctionResponse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<&'a str>,
}

impl OutPart<'_> {
    fn is_call(&self) -> bool {
        matches!(self, OutPart::Typed(f) if f.function_call.is_some())
    }

    fn is_result(&self) -> bool {
        matches!(self, OutPart::Typed(f) if f.function_response.is_some())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutBlob<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFileData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<&'a str>,
    file_uri: &'a str,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    name: &'a str,
    args: Args<'a>,
}

#[derive(Serialize)]
struct OutFunctionResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    name: &'a str,
    response: OutResult,
}

/// `{"output": …}` or `{"error": …}`, the shapes Gemini's docs and Gemini CLI use.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum OutResult {
    Output(String),
    Error(String),
}

/// A tool call's arguments as a JSON object: the model's text verbatim when it is one, `{}`
/// otherwise (Gemini requires an object; invalid or unfinished JSON has nothing usable).
#[derive(Serialize)]
#[serde(untagged)]
enum Args<'a> {
    Raw(&'a RawValue),
    Empty(EmptyObject),
}

struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

fn args(arguments: &str) -> Args<'_> {
    match serde_json::from_str::<&RawValue>(arguments) {
        Ok(raw) if raw.get().starts_with('{') => Args::Raw(raw),
        _ => Args::Empty(EmptyObject),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutTool<'a> {
    Functions {
        #[serde(rename = "functionDeclarations")]
        function_declarations: Vec<OutDeclaration<'a>>,
    },
    Native(&'a Value),
}

#[derive(Serialize)]
struct OutDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

/// Whether a tool-call id may have come from Gemini (and so may be sent back to it).
fn gemini_issued(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with(GENERATED_ID)
        && !FOREIGN_IDS.iter().any(|prefix| id.starts_with(prefix))
}

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

fn out_request(request: &Request) -> Result<OutRequest<'_>, SchemaTooLarge> {
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
fn parameters(
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
enum Audience {
    Provider { native: bool },
    Client,
}

/// Contents in Gemini's shape: roles `user`/`model`, consecutive turns of one role merged
/// (Gemini wants them to alternate), function responses leading their turn, each model
/// turn's first function call signed.
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
    let mut out: Vec<OutContent<'_>> = Vec::with_capacity(messages.len());
    for message in messages {
        let role = match message.role {
            Role::Assistant => "model",
            Role::User | Role::Tool => "user",
        };
        let mut parts = parts_out(&message.content, Audience::Provider { native }, &names);
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.parts.append(&mut parts),
            _ => out.push(OutContent { role, parts }),
        }
    }
    for content in &mut out {
        if content.role == "user" {
            // A stable sort keeps everything else in order.
            content.parts.sort_by_key(|part| !part.is_result());
        } else if let Some(OutPart::Typed(first)) = content.parts.iter_mut().find(|p| p.is_call())
            && first.thought_signature.is_none()
        {
            first.thought_signature = Some(SKIP_SIGNATURE);
        }
    }
    out
}

/// Canonical parts as Gemini parts. A text-less signed reasoning part goes onto the next part
/// (where Gemini put it); reasoning text becomes a `thought` part.
fn parts_out<'a>(
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
                        args: args(arguments),
                    }),
                    ..OutFields::default()
                }));
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
            } => {
                let mut text = String::new();
                let mut images = Vec::new();
                for inner in content {
                    match inner {
                        Part::Text { text: t } => text.push_str(t),
                        Part::Image(image) => images.push(OutPart::Typed(image_out(image))),
                        _ => {}
                    }
                }
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
                out.extend(images);
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
fn signature_only(signature: &str) -> OutPart<'_> {
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

// ---------------------------------------------------------------------------------------------
// countTokens.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InCountTokens {
    #[serde(default, alias = "generate_content_request")]
    generate_content_request: Option<InRequest>,
    #[serde(default)]
    contents: Vec<InContent>,
}

/// Decodes a client's `countTokens` body: `{"contents": […]}` or
/// `{"generateContentRequest": {…}}` (which also counts system instruction and tools).
pub fn count_tokens_request_to_canonical(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: InCountTokens = serde_json::from_slice(body)?;
    match wire.generate_content_request {
        Some(inner) => request_from_wire(inner),
        None => request_from_wire(InRequest {
            contents: wire.contents,
            system_instruction: None,
            tools: None,
            tool_config: None,
            generation_config: None,
            extra: Map::new(),
        }),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutCountTokens<'a> {
    generate_content_request: OutCountRequest<'a>,
}

#[derive(Serialize)]
struct OutCountRequest<'a> {
    model: String,
    #[serde(flatten)]
    request: OutRequest<'a>,
}

/// Encodes a `countTokens` body for a Gemini provider. It names the model
/// (`models/{request.model}`): the inner request must, although the URL does too.
pub fn count_tokens_request_from_canonical(request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
    let model = request.model.trim_start_matches("models/");
    Ok(to_json(&OutCountTokens {
        generate_content_request: OutCountRequest {
            model: format!("models/{model}"),
            request: out_request(request)?,
        },
    }))
}

/// The `countTokens` answer for a Gemini client.
pub fn count_tokens_body(total: u64) -> Vec<u8> {
    to_json(&serde_json::json!({ "totalTokens": total }))
}

/// `totalTokens` from a Gemini provider's `countTokens` answer.
pub fn count_tokens_total(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Total {
        total_tokens: Option<u64>,
    }
    serde_json::from_slice::<Total>(body).ok()?.total_tokens
}

// ---------------------------------------------------------------------------------------------
// Usage read on the side (the Gemini-to-Gemini fast path forwards bytes and reads only this).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageOnly {
    #[serde(default)]
    usage_metadata: Option<InUsage>,
}

/// Usage from a whole (non-streaming) Gemini response body.
pub fn response_usage(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<UsageOnly>(body)
        .ok()?
        .usage_metadata
        .map(InUsage::to_canonical)
}

/// Usage from one stream event's `data` (one chunk). Gemini repeats cumulative usage in every
/// chunk; the last one is the total. Chunks without `"usageMetadata"` are skipped unparsed.
pub fn event_usage(data: &[u8]) -> Option<TokenUsage> {
    memchr::memmem::find(data, b"\"usageMetadata\"")?;
    response_usage(data)
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// Decodes a provider's whole `GenerateContentResponse` (its first candidate).
pub fn response_to_canonical(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: InResponse = serde_json::from_slice(body)?;
    if let Some(error) = wire.error {
        return Err(DecodeError::Invalid(format!(
            "the provider answered with an error: {} {}",
            error.status, error.message
        )));
    }
    let blocked = wire
        .prompt_feedback
        .and_then(|f| f.block_reason)
        .filter(|_| wire.candidates.is_empty());
    let mut calls = Calls::for_answer(&wire.response_id);
    let mut content = Vec::new();
    let finish = if let Some(candidate) = first_candidate(wire.candidates) {
        for (j, part) in candidate
            .content
            .map(|c| c.parts)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            decode_part(
                part,
                &format!("candidates[0].content.parts[{j}]"),
                &mut calls,
                &mut content,
            )?;
        }
        let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall { .. }));
        candidate
            .finish_reason
            .as_deref()
            .map(|r| finish_from_gemini(r, has_calls))
    } else if blocked.is_some() {
        // The prompt itself was refused: no candidates, only the reason.
        Some(FinishReason::ContentFilter)
    } else {
        return Err(DecodeError::Invalid(
            "the response has no candidates".into(),
        ));
    };
    Ok(Response {
        id: wire.response_id,
        model: wire.model_version,
        content,
        finish,
        stop_sequence: None,
        usage: wire.usage_metadata.unwrap_or_default().to_canonical(),
        origin: Some(PROTOCOL),
    })
}

/// Candidate 0 (`candidateCount` above one has no counterpart elsewhere).
fn first_candidate(candidates: Vec<InCandidate>) -> Option<InCandidate> {
    candidates
        .into_iter()
        .find(|c| c.index.is_none_or(|i| i == 0))
}

/// Gemini says `STOP` also when the answer is function calls.
fn finish_from_gemini(reason: &str, has_calls: bool) -> FinishReason {
    match reason {
        "STOP" if has_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn finish_to_gemini(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Other(other) => FINISH_REASONS
            .iter()
            .find(|known| *known == other)
            .copied()
            .unwrap_or("OTHER"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutUsage {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_content_token_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thoughts_token_count: Option<u64>,
}

impl OutUsage {
    fn from_canonical(usage: &TokenUsage) -> Self {
        let input = usage.input.unwrap_or(0);
        let output = usage.output.unwrap_or(0);
        Self {
            prompt_token_count: input,
            candidates_token_count: output.saturating_sub(usage.reasoning.unwrap_or(0)),
            total_token_count: input.saturating_add(output),
            cached_content_token_count: usage.cached,
            thoughts_token_count: usage.reasoning,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutResponse<'a> {
    candidates: [OutCandidate<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<OutUsage>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutCandidate<'a> {
    content: OutContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
}

/// Encodes an answer for a Gemini client.
pub fn response_from_canonical(response: &Response) -> Vec<u8> {
    let names = HashMap::new();
    let wire = OutResponse {
        candidates: [OutCandidate {
            content: OutContent {
                role: "model",
                parts: parts_out(&response.content, Audience::Client, &names),
            },
            finish_reason: Some(response.finish.as_ref().map_or("STOP", finish_to_gemini)),
            index: 0,
        }],
        usage_metadata: Some(OutUsage::from_canonical(&response.usage)),
        model_version: &response.model,
        response_id: &response.id,
    };
    to_json(&wire)
}

/// Gemini's `status` for an HTTP status (google.rpc.Code names).
pub fn error_status(code: u16) -> &'static str {
    match code {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        // No google.rpc.Code means "bad gateway"; the provider behind is unavailable to us.
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        other if (400..500).contains(&other) => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    }
}

#[derive(Serialize)]
struct OutError<'a> {
    error: OutErrorBody<'a>,
}

#[derive(Serialize)]
struct OutErrorBody<'a> {
    code: u16,
    message: &'a str,
    status: &'static str,
}

/// The error body Gemini clients read: `{"error":{"code":…,"message":…,"status":…}}`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    to_json(&OutError {
        error: OutErrorBody {
            code: status,
            message,
            status: error_status(status),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Stream: Gemini SSE -> canonical events.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Text(usize),
    Reasoning(usize),
    Tool,
}

/// Turns a provider's `?alt=sse` stream into canonical events. Feed it whole SSE events (from
/// [`sse::EventSplitter`]); call [`StreamDecoder::finish`] when the upstream body ends.
///
/// Every event is a whole `GenerateContentResponse` chunk. Text and thoughts keep one part
/// index while they continue; each function call (Gemini sends them whole) gets its own and
/// arrives as a start plus one argument fragment. A signature on a thought part is sent with
/// it; one on the part right after a thought (a function call's) completes that thought. Any
/// other signature is dropped: a stream has no event for a signature without reasoning (nor
/// for one on a part already closed), and no other protocol's client could send it back to
/// Gemini anyway.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    done: bool,
    next: usize,
    current: Option<Current>,
    /// The last reasoning part and whether it has its signature.
    last_reasoning: Option<(usize, bool)>,
    calls: Option<Calls>,
    saw_calls: bool,
    usage: Option<TokenUsage>,
}

impl StreamDecoder {
    /// Whether the chunk with the finish reason (or an error) was seen.
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
        if data.trim_ascii().is_empty() {
            return Ok(Vec::new());
        }
        let chunk: InResponse = serde_json::from_slice(&data)?;
        let mut out = Vec::new();
        if let Some(error) = chunk.error {
            self.done = true;
            let message = if error.status.is_empty() {
                error.message
            } else {
                format!("{}: {}", error.status, error.message)
            };
            out.push(StreamEvent::Error { message });
            return Ok(out);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::MessageStart {
                id: chunk.response_id.clone(),
                model: chunk.model_version.clone(),
            });
        }
        let calls = self
            .calls
            .get_or_insert_with(|| Calls::for_answer(&chunk.response_id));
        let mut finish = None;
        let blocked = chunk.prompt_feedback.and_then(|f| f.block_reason).is_some();
        if let Some(candidate) = first_candidate(chunk.candidates) {
            let mut parts = Vec::new();
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                decode_part(part, "candidates[0].content.parts", calls, &mut parts)?;
            }
            for part in parts {
                self.part(part, &mut out);
            }
            finish = candidate
                .finish_reason
                .map(|reason| finish_from_gemini(&reason, self.saw_calls));
        } else if blocked {
            // The prompt itself was refused: no candidates, only the reason.
            finish = Some(FinishReason::ContentFilter);
        }
        if let Some(usage) = chunk.usage_metadata.map(InUsage::to_canonical)
            && self.usage != Some(usage)
        {
            self.usage = Some(usage);
            out.push(StreamEvent::Usage(usage));
        }
        if let Some(reason) = finish {
            self.done = true;
            out.push(StreamEvent::Finish(reason));
        }
        Ok(out)
    }

    fn part(&mut self, part: Part, out: &mut Vec<StreamEvent>) {
        match part {
            Part::Reasoning(reasoning) if reasoning.text.is_empty() => {
                // A signature riding on the part right after a thought completes that thought.
                if let (Some(signature), Some(Current::Reasoning(index)), Some((_, false))) = (
                    reasoning.encrypted.or(reasoning.signature),
                    self.current,
                    self.last_reasoning,
                ) {
                    self.last_reasoning = Some((index, true));
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
            }
            Part::Reasoning(reasoning) => {
                let index = match self.current {
                    Some(Current::Reasoning(index)) => index,
                    _ => self.allocate(),
                };
                self.current = Some(Current::Reasoning(index));
                let signed = reasoning.signature.is_some();
                self.last_reasoning = Some((index, signed));
                out.push(StreamEvent::ReasoningDelta {
                    index,
                    text: reasoning.text,
                });
                if let Some(signature) = reasoning.signature {
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
            }
            Part::Text { text } => {
                let index = match self.current {
                    Some(Current::Text(index)) => index,
                    _ => self.allocate(),
                };
                self.current = Some(Current::Text(index));
                out.push(StreamEvent::TextDelta { index, text });
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let index = self.allocate();
                self.current = Some(Current::Tool);
                self.saw_calls = true;
                out.push(StreamEvent::ToolCallStart { index, id, name });
                out.push(StreamEvent::ToolCallArgsDelta {
                    index,
                    fragment: arguments,
                });
            }
            // Images, results and unknown parts have no stream event.
            _ => {}
        }
    }

    /// Called when the upstream body ends: an error event unless a finish reason (or an error)
    /// was seen.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        vec![StreamEvent::Error {
            message: "the provider's stream ended before its last chunk (one with finishReason)"
                .into(),
        }]
    }
}

// ---------------------------------------------------------------------------------------------
// Stream: canonical events -> Gemini chunks.

/// How a client's stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `?alt=sse`: `data: {GenerateContentResponse}\r\n\r\n` per chunk (what the SDKs and
    /// Gemini CLI ask for).
    Sse,
    /// No `alt=sse`: one JSON array written element by element, `[{…}\n,{…}\n]`.
    JsonArray,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutChunk<'a> {
    candidates: [OutCandidate<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<OutUsage>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Debug)]
struct PendingCall {
    index: usize,
    id: String,
    name: String,
    arguments: String,
}

/// Turns canonical events into `GenerateContentResponse` chunks for a client.
///
/// Text and thoughts are sent as they come, one part per chunk. Gemini sends a function call
/// whole, with its arguments as an object, so calls are held until their arguments are
/// complete: until the next text, thought or finish event, or the end (parallel calls go out
/// together in one chunk, as Gemini sends them). The last chunk, written by
/// [`StreamEncoder::finish`], carries the finish reason and the usage, so usage that arrives
/// after the finish reason is included. Signatures from other providers are not forwarded:
/// a Gemini client would send them back as Gemini's own.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    id: String,
    framing: Framing,
    chunks: usize,
    ended: bool,
    calls: Vec<PendingCall>,
    usage: TokenUsage,
    usage_known: bool,
    finish: Option<FinishReason>,
}

impl StreamEncoder {
    /// `model` names the model in `modelVersion` if the upstream's stream does not; `framing`
    /// follows the client's URL (`alt=sse` or not).
    pub fn new(model: impl Into<String>, framing: Framing) -> Self {
        Self {
            model: model.into(),
            id: "flexiproxy".to_owned(),
            framing,
            chunks: 0,
            ended: false,
            calls: Vec::new(),
            usage: TokenUsage::default(),
            usage_known: false,
            finish: None,
        }
    }

    /// Appends the bytes for `event` to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match event {
            StreamEvent::MessageStart { id, model } => {
                if self.chunks == 0 {
                    if !id.is_empty() {
                        self.id.clone_from(id);
                    }
                    if !model.is_empty() {
                        self.model.clone_from(model);
                    }
                }
            }
            StreamEvent::TextDelta { text, .. } => {
                self.flush_calls(out);
                let part = OutPart::Typed(OutFields {
                    text: Some(text),
                    ..OutFields::default()
                });
                self.chunk(vec![part], None, out);
            }
            StreamEvent::ReasoningDelta { text, .. } => {
                self.flush_calls(out);
                let part = OutPart::Typed(OutFields {
                    text: Some(text),
                    thought: Some(true),
                    ..OutFields::default()
                });
                self.chunk(vec![part], None, out);
            }
            // Only tagged proofs reach the client (`canonical::tag_proof`): bare ones are
            // meaningful only to the provider that made them.
            StreamEvent::ReasoningSignature { signature, .. } => {
                if untag_proof(signature).is_some() {
                    self.flush_calls(out);
                    self.chunk(vec![signature_only(signature)], None, out);
                }
            }
            StreamEvent::ToolCallStart { index, id, name } => match self.call(*index) {
                Some(call) => {
                    call.id.clone_from(id);
                    call.name.clone_from(name);
                }
                None => self.calls.push(PendingCall {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                }),
            },
            StreamEvent::ToolCallArgsDelta { index, fragment } => match self.call(*index) {
                Some(call) => call.arguments.push_str(fragment),
                // Arguments before their start: the provider skipped the start event.
                None => self.calls.push(PendingCall {
                    index: *index,
                    id: format!("call_flexiproxy_{index}"),
                    name: String::new(),
                    arguments: fragment.clone(),
                }),
            },
            StreamEvent::Usage(usage) => {
                merge_usage(&mut self.usage, usage);
                self.usage_known = true;
            }
            StreamEvent::Finish(reason) => {
                self.flush_calls(out);
                self.finish = Some(reason.clone());
            }
            StreamEvent::Error { message } => {
                self.ended = true;
                // The SDKs raise an APIError for a chunk that is `{"error": …}`.
                let error = OutError {
                    error: OutErrorBody {
                        code: 500,
                        message,
                        status: error_status(500),
                    },
                };
                self.write(&error, out);
                self.close(out);
            }
        }
    }

    /// Ends the client's stream: held function calls, then the last chunk with the finish
    /// reason and usage (and the closing `]` of a JSON array). Does nothing after an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.flush_calls(out);
        let reason = self.finish.as_ref().map_or("STOP", finish_to_gemini);
        let part = OutPart::Typed(OutFields {
            text: Some(""),
            ..OutFields::default()
        });
        self.usage_known = true;
        self.chunk(vec![part], Some(reason), out);
        self.ended = true;
        self.close(out);
    }

    fn call(&mut self, index: usize) -> Option<&mut PendingCall> {
        self.calls.iter_mut().find(|c| c.index == index)
    }

    fn flush_calls(&mut self, out: &mut Vec<u8>) {
        if self.calls.is_empty() {
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        let parts = calls
            .iter()
            .map(|call| {
                OutPart::Typed(OutFields {
                    function_call: Some(OutFunctionCall {
                        id: Some(&call.id),
                        name: &call.name,
                        args: args(&call.arguments),
                    }),
                    ..OutFields::default()
                })
            })
            .collect();
        self.chunk(parts, None, out);
    }

    fn chunk(&mut self, parts: Vec<OutPart<'_>>, finish: Option<&'static str>, out: &mut Vec<u8>) {
        let chunk = OutChunk {
            candidates: [OutCandidate {
                content: OutContent {
                    role: "model",
                    parts,
                },
                finish_reason: finish,
                index: 0,
            }],
            usage_metadata: self
                .usage_known
                .then(|| OutUsage::from_canonical(&self.usage)),
            model_version: &self.model,
            response_id: &self.id,
        };
        let bytes = to_json(&chunk);
        self.write_bytes(&bytes, out);
    }

    fn write(&mut self, value: &impl Serialize, out: &mut Vec<u8>) {
        let bytes = to_json(value);
        self.write_bytes(&bytes, out);
    }

    fn write_bytes(&mut self, json: &[u8], out: &mut Vec<u8>) {
        match self.framing {
            Framing::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\r\n\r\n");
            }
            Framing::JsonArray => {
                out.push(if self.chunks == 0 { b'[' } else { b',' });
                out.extend_from_slice(json);
                out.push(b'\n');
            }
        }
        self.chunks += 1;
    }

    /// Closes a JSON array (SSE needs nothing).
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.framing == Framing::JsonArray {
            if self.chunks == 0 {
                out.push(b'[');
            }
            out.push(b']');
        }
    }
}

/// Google's `generateContent` on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Gemini;

impl Wire for Gemini {
    fn decode_request(&self, body: &[u8]) -> Result<Request, DecodeError> {
        request_to_canonical(body)
    }
    fn encode_request(&self, request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
        request_from_canonical(request)
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
        Box::new(StreamEncoder::new(view.model.clone(), view.gemini_framing))
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        error_body(report.status, report.message)
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

    fn encode(request: &Request) -> Value {
        serde_json::from_slice(&request_from_canonical(request).unwrap()).unwrap()
    }

    #[test]
    fn requests_decode_parts_tools_and_config() {
        let request = decode(&json!({
            "system_instruction": {"parts": [{"text": "be brief"}, {"text": "use tools"}]},
            "contents": [
                {"parts": [
                    {"text": "what is this?"},
                    {"inline_data": {"mime_type": "image/png", "data": "iVBOR"}},
                    {"fileData": {"mimeType": "application/pdf", "fileUri": "files/abc"}},
                    {"fileData": {"fileUri": "https://x/y.jpg"}}
                ]},
                {"role": "model", "parts": [
                    {"text": "plan", "thought": true, "thoughtSignature": "sig-a"},
                    {"functionCall": {"name": "read", "args": {"path": "a"}}, "thoughtSignature": "sig-b"},
                    {"functionCall": {"id": "g1", "name": "read", "args": {"path": "b"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "g1", "name": "read", "response": {"output": "B"}}},
                    {"functionResponse": {"id": "client-made", "name": "read", "response": {"error": "no such file"}}}
                ]}
            ],
            "tools": [
                {"functionDeclarations": [
                    {"name": "read", "description": "Read", "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING"}}, "required": ["path"]}},
                    {"name": "now"}
                ]},
                {"googleSearch": {}}
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read"]}},
            "generationConfig": {
                "maxOutputTokens": 100, "temperature": 0.5, "top_p": 0.9, "stopSequences": ["END"],
                "topK": 40, "candidateCount": 1,
                "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        }));
        assert_eq!(request.model, "");
        assert_eq!(request.system, vec!["be brief", "use tools"]);
        assert_eq!(
            (request.max_tokens, request.temperature, request.top_p),
            (Some(100), Some(0.5), Some(0.9))
        );
        assert_eq!(request.stop, vec!["END"]);
        assert_eq!(request.reasoning.unwrap().budget_tokens, Some(2048));
        assert_eq!(request.tool_choice, Some(ToolChoice::Named("read".into())));
        assert_eq!(
            request.tools[0].parameters,
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
        );
        assert_eq!(request.tools[1].parameters["type"], "object");
        assert_eq!(request.native_tools, vec![json!({"googleSearch": {}})]);
        assert_eq!(
            request.extra["generationConfig"],
            json!({"topK": 40, "candidateCount": 1})
        );
        assert!(request.extra.contains_key("safetySettings"));

        let user = &request.messages[0].content;
        assert_eq!(
            user[1],
            Part::Image(Image::Base64 {
                media_type: "image/png".into(),
                data: "iVBOR".into()
            })
        );
        assert!(matches!(&user[2], Part::Unknown(v) if v["fileData"]["fileUri"] == "files/abc"));
        assert_eq!(
            user[3],
            Part::Image(Image::Url {
                url: "https://x/y.jpg".into()
            })
        );

        let model = &request.messages[1].content;
        assert!(matches!(&model[0], Part::Reasoning(r)
            if r.text == "plan" && r.signature.as_deref() == Some("sig-a") && r.issuer == Some(Protocol::Gemini)));
        // The call's signature rides before it, as reasoning without text.
        assert!(matches!(&model[1], Part::Reasoning(r)
            if r.text.is_empty() && r.encrypted.as_deref() == Some("sig-b")));
        assert_eq!(
            model[2],
            Part::ToolCall {
                id: "gemini_fc_0".into(),
                name: "read".into(),
                arguments: r#"{"path":"a"}"#.into()
            }
        );
        assert!(matches!(&model[3], Part::ToolCall { id, .. } if id == "g1"));

        // By id first; a response whose id matches no call answers the earliest open call of
        // its name (Gemini CLI numbers responses itself).
        let results = &request.messages[2].content;
        assert_eq!(
            results[0],
            Part::ToolResult {
                call_id: "g1".into(),
                content: vec![Part::text("B")],
                is_error: false
            }
        );
        assert_eq!(
            results[1],
            Part::ToolResult {
                call_id: "gemini_fc_0".into(),
                content: vec![Part::text("no such file")],
                is_error: true
            }
        );
    }

    #[test]
    fn thinking_config_maps_budgets_levels_and_hidden_thoughts() {
        let reasoning = |config: Value| {
            decode(&json!({"contents": [], "generationConfig": {"thinkingConfig": config}}))
        };
        assert!(
            reasoning(json!({"thinkingBudget": 0}))
                .reasoning
                .unwrap()
                .is_off()
        );
        assert_eq!(
            reasoning(json!({"thinkingBudget": -1})).reasoning,
            Some(ReasoningConfig::default())
        );
        assert_eq!(
            reasoning(json!({"thinkingLevel": "low"}))
                .reasoning
                .unwrap()
                .effort,
            Some(Effort::Low)
        );
        let hidden = reasoning(json!({"thinkingBudget": "512", "includeThoughts": false}));
        assert_eq!(hidden.reasoning.unwrap().budget_tokens, Some(512));
        assert_eq!(
            hidden.extra["generationConfig"],
            json!({"thinkingConfig": {"includeThoughts": false}})
        );
        // Back to Gemini, the client's own setting wins over "show the thoughts".
        assert_eq!(
            encode(&hidden)["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 512, "includeThoughts": false})
        );
        let level = reasoning(json!({"thinkingLevel": "HIGH", "includeThoughts": true}));
        assert_eq!(
            encode(&level)["generationConfig"]["thinkingConfig"],
            json!({"thinkingLevel": "HIGH", "includeThoughts": true})
        );
        assert_eq!(reasoning(json!({})).reasoning, None);
    }

    #[test]
    fn a_gemini_request_survives_the_round_trip() {
        let original = json!({
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                {"role": "model", "parts": [
                    {"text": "t", "thought": true, "thoughtSignature": "sig1"},
                    {"functionCall": {"id": "abc", "name": "f", "args": {"a": 1}}, "thoughtSignature": "sig2"},
                    {"functionCall": {"name": "g", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "abc", "name": "f", "response": {"output": "ok"}}},
                    {"functionResponse": {"name": "g", "response": {"error": "bad"}}}
                ]},
                {"role": "model", "parts": [{"text": "done", "thoughtSignature": "sig3"}, {"executableCode": {"language": "PYTHON", "code": "1"}}]}
            ],
            "systemInstruction": {"parts": [{"text": "s"}]},
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}, {"name": "g"}]}, {"codeExecution": {}}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}, "retrievalConfig": {"languageCode": "en"}},
            "generationConfig": {"maxOutputTokens": 10, "seed": 7, "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
            "cachedContent": "cachedContents/x"
        });
        let back = encode(&decode(&original));
        assert_eq!(back, original);
    }

    #[test]
    fn foreign_requests_get_gemini_shapes_and_no_foreign_state() {
        let request = Request {
            model: "gemini-2.5-pro".into(),
            system: vec!["sys".into(), ResponseFormat::JsonObject.instruction()],
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![
                        Part::text("look"),
                        Part::Image(Image::Url {
                            url: "data:image/jpeg;base64,/9j/".into(),
                        }),
                        Part::Image(Image::Url {
                            url: "https://x/cat.webp?s=1".into(),
                        }),
                    ],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Reasoning(Reasoning {
                            text: "hm".into(),
                            signature: Some("anthropic-sig".into()),
                            encrypted: None,
                            issuer: Some(Protocol::AnthropicMessages),
                        }),
                        Part::ToolCall {
                            id: "toolu_1".into(),
                            name: "read".into(),
                            arguments: "not json".into(),
                        },
                        Part::ToolCall {
                            id: "toolu_2".into(),
                            name: "list".into(),
                            arguments: r#"{"dir":"/"}"#.into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: "toolu_1".into(),
                        content: vec![Part::text("file")],
                        is_error: false,
                    }],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        Part::text("and?"),
                        Part::ToolResult {
                            call_id: "toolu_2".into(),
                            content: vec![Part::text("denied")],
                            is_error: true,
                        },
                    ],
                },
            ],
            tools: vec![
                Tool {
                    name: "read".into(),
                    description: Some("Read a file".into()),
                    parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": false, "$schema": "x"}),
                },
                Tool {
                    name: "list".into(),
                    description: None,
                    parameters: json!({"type": "object", "properties": {}}),
                },
            ],
            native_tools: vec![json!({"type": "web_search_20250305"})],
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(false),
            max_tokens: Some(1000),
            reasoning: Some(ReasoningConfig {
                effort: Some(Effort::High),
                budget_tokens: None,
            }),
            response_format: Some(ResponseFormat::JsonSchema {
                name: "r".into(),
                schema: json!({"type": "object", "additionalProperties": false}),
                strict: Some(true),
            }),
            extra: Map::from_iter([("metadata".to_owned(), json!({"user_id": "u"}))]),
            origin: Some(Protocol::AnthropicMessages),
            ..Request::default()
        };
        let out = encode(&request);
        assert_eq!(
            out["contents"],
            json!([
                {"role": "user", "parts": [
                    {"text": "look"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
                    {"fileData": {"mimeType": "image/webp", "fileUri": "https://x/cat.webp?s=1"}}
                ]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "read", "args": {}}, "thoughtSignature": SKIP_SIGNATURE},
                    {"functionCall": {"name": "list", "args": {"dir": "/"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "read", "response": {"output": "file"}}},
                    {"functionResponse": {"name": "list", "response": {"error": "denied"}}},
                    {"text": "and?"}
                ]}
            ])
        );
        assert_eq!(
            out["tools"],
            json!([{"functionDeclarations": [
                {"name": "read", "description": "Read a file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
                {"name": "list"}
            ]}])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        assert_eq!(
            out["generationConfig"],
            json!({
                "maxOutputTokens": 1000,
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "additionalProperties": false},
                "thinkingConfig": {"thinkingBudget": MAX_THINKING_BUDGET, "includeThoughts": true}
            })
        );
        assert_eq!(out["systemInstruction"]["parts"][0], json!({"text": "sys"}));
        assert!(out.get("metadata").is_none() && out.get("model").is_none());
        assert!(!out.to_string().contains("anthropic-sig"));

        let mut off = request;
        off.reasoning = Some(ReasoningConfig {
            effort: Some(Effort::None),
            budget_tokens: None,
        });
        off.tool_choice = Some(ToolChoice::Named("read".into()));
        let out = encode(&off);
        assert_eq!(
            out["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 0})
        );
        assert_eq!(
            out["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["read"]})
        );
    }

    #[test]
    fn tool_parameters_are_one_object_or_none() {
        let union = json!({"oneOf": [
            {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "string"}}, "required": ["kind"]},
            {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]}
        ]});
        assert_eq!(
            parameters(&union, &mut json_schema::Budget::default()).unwrap(),
            Some(json!({
                "type": "object",
                "properties": {"kind": {"type": "string", "enum": ["a"]}, "x": {"type": "string"}},
                "required": ["kind"]
            }))
        );
        assert_eq!(
            parameters(&json!({}), &mut json_schema::Budget::default()).unwrap(),
            None
        );
        assert_eq!(
            parameters(
                &json!({"type": "object", "properties": {}}),
                &mut json_schema::Budget::default()
            )
            .unwrap(),
            None
        );
        assert_eq!(
            parameters(
                &json!({"type": "object", "additionalProperties": {"type": "string"}}),
                &mut json_schema::Budget::default()
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn ids_sent_to_gemini_are_only_ones_it_may_have_made() {
        assert!(gemini_issued("abc123"));
        assert!(gemini_issued("read_file-1755899286321-24a24f35db1c2"));
        for foreign in [
            "",
            "gemini_fc_0",
            "toolu_01A",
            "call_abc",
            "fc_123",
            "functions.read:0",
        ] {
            assert!(!gemini_issued(foreign), "{foreign}");
        }
    }

    #[test]
    fn malformed_requests_are_typed_errors() {
        for body in [
            &b"{"[..],
            b"[]",
            br#"{"contents":[{"role":"robot","parts":[]}]}"#,
            br#"{"contents":[{"parts":[{"functionCall":{"args":{}}}]}]}"#,
            br#"{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png"}}]}]}"#,
            br#"{"contents":[],"toolConfig":{"functionCallingConfig":{"mode":"SOMETIMES"}}}"#,
            br#"{"contents":[],"generationConfig":{"maxOutputTokens":"many"}}"#,
            br#"{"contents":[],"generationConfig":{"thinkingConfig":3}}"#,
            br#"{"contents":[],"tools":[{"functionDeclarations":[{"description":"x"}]}]}"#,
        ] {
            assert!(
                request_to_canonical(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn responses_map_usage_finish_reasons_and_calls_both_ways() {
        let body = json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "thinking", "thought": true},
                    {"text": "calling"},
                    {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "sig"}
                ]},
                "finishReason": "STOP",
                "index": 0
            }],
            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30, "cachedContentTokenCount": 60, "totalTokenCount": 150},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "resp/1"
        });
        let response = response_to_canonical(body.to_string().as_bytes()).unwrap();
        assert_eq!(response.finish, Some(FinishReason::ToolCalls));
        assert_eq!(
            response.usage,
            TokenUsage {
                input: Some(100),
                output: Some(50),
                cached: Some(60),
                reasoning: Some(30)
            }
        );
        assert_eq!(
            (response.id.as_str(), response.model.as_str()),
            ("resp/1", "gemini-2.5-flash")
        );
        assert!(
            matches!(&response.content[3], Part::ToolCall { id, .. } if id == "gemini_fc_resp_1_0")
        );

        // Back to a Gemini client: the same parts, STOP, and the usage split again.
        let back: Value = serde_json::from_slice(&response_from_canonical(&response)).unwrap();
        assert_eq!(back["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            back["candidates"][0]["content"]["parts"],
            json!([
                {"text": "thinking", "thought": true},
                {"text": "calling"},
                {"functionCall": {"id": "gemini_fc_resp_1_0", "name": "f", "args": {"x": 1}}, "thoughtSignature": "sig"}
            ])
        );
        assert_eq!(
            back["usageMetadata"],
            json!({"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30, "cachedContentTokenCount": 60, "totalTokenCount": 150})
        );

        for (name, reason) in [
            ("MAX_TOKENS", FinishReason::Length),
            ("SAFETY", FinishReason::ContentFilter),
            (
                "MALFORMED_FUNCTION_CALL",
                FinishReason::Other("MALFORMED_FUNCTION_CALL".into()),
            ),
        ] {
            assert_eq!(finish_from_gemini(name, false), reason);
            assert_eq!(finish_to_gemini(&reason), name);
        }
        assert_eq!(
            finish_to_gemini(&FinishReason::Other("pause_turn".into())),
            "OTHER"
        );

        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5}}"#;
        let response = response_to_canonical(blocked).unwrap();
        assert_eq!(response.finish, Some(FinishReason::ContentFilter));
        assert!(response.content.is_empty());
        assert!(response_to_canonical(br#"{"candidates":[]}"#).is_err());
        assert!(
            response_to_canonical(
                br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn foreign_answers_show_reasoning_without_foreign_signatures() {
        let response = Response {
            id: "msg_1".into(),
            model: "claude".into(),
            content: vec![
                Part::Reasoning(Reasoning {
                    text: "why".into(),
                    signature: Some("anthropic-sig".into()),
                    encrypted: None,
                    issuer: Some(Protocol::AnthropicMessages),
                }),
                Part::Reasoning(Reasoning {
                    text: String::new(),
                    signature: None,
                    encrypted: Some("redacted".into()),
                    issuer: Some(Protocol::AnthropicMessages),
                }),
                Part::ToolCall {
                    id: "toolu_1".into(),
                    name: "f".into(),
                    arguments: String::new(),
                },
            ],
            finish: Some(FinishReason::ToolCalls),
            usage: TokenUsage {
                input: Some(10),
                output: Some(5),
                cached: None,
                reasoning: None,
            },
            ..Response::default()
        };
        let out: Value = serde_json::from_slice(&response_from_canonical(&response)).unwrap();
        assert_eq!(
            out,
            json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "why", "thought": true},
                    {"functionCall": {"id": "toolu_1", "name": "f", "args": {}}}
                ]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
                "modelVersion": "claude",
                "responseId": "msg_1"
            })
        );
    }

    #[test]
    fn error_bodies_have_gemini_shape() {
        let body: Value = serde_json::from_slice(&error_body(429, "slow down")).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
        );
        for (code, status) in [
            (400, "INVALID_ARGUMENT"),
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (429, "RESOURCE_EXHAUSTED"),
            (500, "INTERNAL"),
            (501, "UNIMPLEMENTED"),
            (502, "UNAVAILABLE"),
            (503, "UNAVAILABLE"),
            (504, "DEADLINE_EXCEEDED"),
            (418, "FAILED_PRECONDITION"),
            (599, "UNKNOWN"),
        ] {
            assert_eq!(error_status(code), status, "{code}");
        }
    }

    #[test]
    fn usage_is_read_on_the_side() {
        let chunk = br#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":7,"thoughtsTokenCount":3,"totalTokenCount":10}}"#;
        assert_eq!(
            event_usage(chunk),
            Some(TokenUsage {
                input: Some(7),
                output: Some(3),
                cached: None,
                reasoning: Some(3)
            })
        );
        assert_eq!(event_usage(br#"{"candidates":[]}"#), None);
        assert_eq!(event_usage(b"not json \"usageMetadata\""), None);
        assert_eq!(
            response_usage(br#"{"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2,"toolUsePromptTokenCount":4}}"#)
                .map(|u| (u.input, u.output)),
            Some((Some(5), Some(2)))
        );
    }

    #[test]
    fn count_tokens_both_ways() {
        let plain =
            count_tokens_request_to_canonical(br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#)
                .unwrap();
        assert_eq!(plain.messages[0].content, vec![Part::text("hi")]);
        let wrapped = count_tokens_request_to_canonical(
            br#"{"generateContentRequest":{"model":"models/gemini-2.5-flash","contents":[{"parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"s"}]}}}"#,
        )
        .unwrap();
        assert_eq!(wrapped.system, vec!["s"]);
        assert!(wrapped.extra.is_empty());
        let mut request = wrapped;
        request.model = "gemini-2.5-pro".into();
        let out: Value =
            serde_json::from_slice(&count_tokens_request_from_canonical(&request).unwrap())
                .unwrap();
        assert_eq!(
            out,
            json!({"generateContentRequest": {
                "model": "models/gemini-2.5-pro",
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "systemInstruction": {"parts": [{"text": "s"}]}
            }})
        );
        assert_eq!(count_tokens_body(42), br#"{"totalTokens":42}"#);
        assert_eq!(
            count_tokens_total(br#"{"totalTokens":42,"promptTokensDetails":[]}"#),
            Some(42)
        );
        assert_eq!(count_tokens_total(b"{}"), None);
    }

    fn sse(chunks: &[Value]) -> Vec<StreamEvent> {
        let mut decoder = StreamDecoder::default();
        let mut events = Vec::new();
        for chunk in chunks {
            let event = format!("data: {chunk}\r\n\r\n");
            events.extend(decoder.decode(event.as_bytes()).unwrap());
        }
        events.extend(decoder.finish());
        events
    }

    #[test]
    fn stream_parts_get_indices_and_calls_arrive_whole() {
        let parts = |parts: Value| json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}], "responseId": "r1", "modelVersion": "gemini-2.5-pro", "usageMetadata": {"promptTokenCount": 10}});
        let events = sse(&[
            parts(json!([{"text": "let me ", "thought": true}])),
            parts(json!([{"text": "think", "thought": true}])),
            parts(json!([
                {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"},
                {"functionCall": {"id": "x9", "name": "g", "args": {}}}
            ])),
            // Not right after a thought: nothing to give it to.
            parts(json!([{"text": "Sure.", "thoughtSignature": "late"}])),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 22}}),
        ]);
        assert_eq!(
            events,
            vec![
                StreamEvent::MessageStart {
                    id: "r1".into(),
                    model: "gemini-2.5-pro".into()
                },
                StreamEvent::ReasoningDelta {
                    index: 0,
                    text: "let me ".into()
                },
                StreamEvent::Usage(TokenUsage {
                    input: Some(10),
                    ..TokenUsage::default()
                }),
                StreamEvent::ReasoningDelta {
                    index: 0,
                    text: "think".into()
                },
                // The call's signature completes the thought right before it.
                StreamEvent::ReasoningSignature {
                    index: 0,
                    signature: "sig".into()
                },
                StreamEvent::ToolCallStart {
                    index: 1,
                    id: "gemini_fc_r1_0".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallArgsDelta {
                    index: 1,
                    fragment: r#"{"a":1}"#.into()
                },
                StreamEvent::ToolCallStart {
                    index: 2,
                    id: "x9".into(),
                    name: "g".into()
                },
                StreamEvent::ToolCallArgsDelta {
                    index: 2,
                    fragment: "{}".into()
                },
                StreamEvent::TextDelta {
                    index: 3,
                    text: "Sure.".into()
                },
                StreamEvent::Usage(TokenUsage {
                    input: Some(10),
                    output: Some(12),
                    cached: None,
                    reasoning: Some(7)
                }),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn cut_streams_and_error_chunks_end_in_errors() {
        let mut decoder = StreamDecoder::default();
        decoder
            .decode(
                b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\n",
            )
            .unwrap();
        assert!(!decoder.is_done());
        assert!(matches!(
            decoder.finish().as_slice(),
            [StreamEvent::Error { .. }]
        ));

        let mut decoder = StreamDecoder::default();
        let events = decoder
            .decode(
                br#"data: {"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
            )
            .unwrap();
        assert_eq!(
            events,
            vec![StreamEvent::Error {
                message: "UNAVAILABLE: overloaded".into()
            }]
        );
        assert!(decoder.is_done() && decoder.finish().is_empty());
        assert!(
            StreamDecoder::default()
                .decode(b"data: {nope}\n\n")
                .is_err()
        );
        assert!(
            StreamDecoder::default()
                .decode(b": keep-alive\n\n")
                .unwrap()
                .is_empty()
        );
    }

    fn encode_all(framing: Framing, events: &[StreamEvent]) -> String {
        let mut encoder = StreamEncoder::new("m", framing);
        let mut out = Vec::new();
        for event in events {
            encoder.encode(event, &mut out);
        }
        encoder.finish(&mut out);
        encoder.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_encoder_holds_calls_until_complete_and_ends_with_usage() {
        let events = [
            StreamEvent::ReasoningDelta {
                index: 0,
                text: "hm".into(),
            },
            StreamEvent::ReasoningSignature {
                index: 0,
                signature: "foreign".into(),
            },
            StreamEvent::TextDelta {
                index: 1,
                text: "hi".into(),
            },
            StreamEvent::ToolCallStart {
                index: 2,
                id: "call_a".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallStart {
                index: 3,
                id: "call_b".into(),
                name: "g".into(),
            },
            StreamEvent::ToolCallArgsDelta {
                index: 2,
                fragment: "{\"x\":".into(),
            },
            StreamEvent::ToolCallArgsDelta {
                index: 3,
                fragment: "{}".into(),
            },
            StreamEvent::ToolCallArgsDelta {
                index: 2,
                fragment: "1}".into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(TokenUsage {
                input: Some(9),
                output: Some(4),
                cached: Some(2),
                reasoning: Some(1),
            }),
        ];
        let text = encode_all(Framing::Sse, &events);
        let chunks: Vec<Value> = text
            .split("\r\n\r\n")
            .filter(|c| !c.is_empty())
            .map(|c| serde_json::from_str(c.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(chunks.len(), 4, "{text}");
        assert!(!text.contains("foreign"));
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"],
            json!([{"text": "hm", "thought": true}])
        );
        assert_eq!(
            chunks[2]["candidates"][0]["content"]["parts"],
            json!([
                {"functionCall": {"id": "call_a", "name": "f", "args": {"x": 1}}},
                {"functionCall": {"id": "call_b", "name": "g", "args": {}}}
            ])
        );
        assert!(chunks[2].get("usageMetadata").is_none());
        assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            chunks[3]["usageMetadata"],
            json!({"promptTokenCount": 9, "candidatesTokenCount": 3, "thoughtsTokenCount": 1, "cachedContentTokenCount": 2, "totalTokenCount": 13})
        );
        assert_eq!(chunks[3]["modelVersion"], "m");

        // The same chunks as one JSON array.
        let array = encode_all(Framing::JsonArray, &events);
        assert!(array.starts_with("[{") && array.ends_with("}\n]"));
        let parsed: Vec<Value> = serde_json::from_str(&array).unwrap();
        assert_eq!(parsed, chunks);
    }

    #[test]
    fn an_error_ends_the_stream_in_either_framing() {
        let events = [
            StreamEvent::MessageStart {
                id: "r".into(),
                model: "up".into(),
            },
            StreamEvent::TextDelta {
                index: 0,
                text: "par".into(),
            },
            StreamEvent::Error {
                message: "upstream broke".into(),
            },
            StreamEvent::TextDelta {
                index: 0,
                text: "ignored".into(),
            },
        ];
        let text = encode_all(Framing::Sse, &events);
        assert!(text.contains(r#""modelVersion":"up","responseId":"r""#));
        assert!(text.ends_with(
            "data: {\"error\":{\"code\":500,\"message\":\"upstream broke\",\"status\":\"INTERNAL\"}}\r\n\r\n"
        ));
        assert!(!text.contains("ignored") && !text.contains("finishReason"));
        let array = encode_all(Framing::JsonArray, &events);
        let parsed: Vec<Value> = serde_json::from_str(&array).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1]["error"]["message"], "upstream broke");
        let only_error = encode_all(Framing::JsonArray, &events[2..3]);
        assert_eq!(
            only_error,
            "[{\"error\":{\"code\":500,\"message\":\"upstream broke\",\"status\":\"INTERNAL\"}}\n]"
        );
    }

    #[test]
    fn encoder_output_decodes_to_the_same_content() {
        let events = vec![
            StreamEvent::MessageStart {
                id: "r".into(),
                model: "m".into(),
            },
            StreamEvent::ReasoningDelta {
                index: 0,
                text: "a".into(),
            },
            StreamEvent::TextDelta {
                index: 1,
                text: "b".into(),
            },
            StreamEvent::ToolCallStart {
                index: 2,
                id: "k1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallArgsDelta {
                index: 2,
                fragment: "{\"q\":2}".into(),
            },
            StreamEvent::Usage(TokenUsage {
                input: Some(3),
                output: Some(2),
                cached: None,
                reasoning: None,
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ];
        let text = encode_all(Framing::Sse, &events);
        let mut splitter = sse::EventSplitter::default();
        let mut decoder = StreamDecoder::default();
        let mut decoded = Vec::new();
        for event in splitter.push(bytes::Bytes::from(text)).unwrap() {
            decoded.extend(decoder.decode(&event).unwrap());
        }
        assert!(decoder.is_done());
        // Usage rides on the chunk with the calls (known by then) and is not repeated by the
        // last chunk; everything else comes back as it went in.
        assert_eq!(decoded, events);
    }
}
