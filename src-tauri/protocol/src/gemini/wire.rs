//! Gemini's bodies as serde sees them: the `In…` types read what clients and providers send
//! (camelCase, and the snake_case spellings REST samples use), the `Out…` types write what a
//! Gemini peer accepts. Keeping the shapes apart from the mapping lets the request, response
//! and stream code share one definition of a part, a call or a usage object; the decoders
//! (`request_decode`, `response`, `stream_decode`) and encoders (`request_encode`, `response`,
//! `stream_encode`) are where they meet the canonical model. Shapes used by one operation only
//! (`countTokens`, whole answers, stream chunks, error bodies) stay with that operation.
//!
//! The few functions here decide a field's shape rather than its meaning: a call's arguments
//! as the JSON object Gemini requires, and which tool-call ids Gemini may be sent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{FOREIGN_IDS, GENERATED_ID};
use crate::ExtraFields;
use crate::canonical::TokenUsage;
use crate::tool_arguments::ArgumentsObject;

// ---------------------------------------------------------------------------------------------
// Wire types: what we read.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InRequest {
    #[serde(default)]
    pub(super) contents: Vec<InContent>,
    #[serde(default, alias = "system_instruction")]
    pub(super) system_instruction: Option<InSystem>,
    #[serde(default)]
    pub(super) tools: Option<Vec<Map<String, Value>>>,
    #[serde(default, alias = "tool_config")]
    pub(super) tool_config: Option<Map<String, Value>>,
    #[serde(default, alias = "generation_config")]
    pub(super) generation_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub(super) extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct InContent {
    #[serde(default)]
    pub(super) role: Option<String>,
    #[serde(default)]
    pub(super) parts: Vec<Value>,
}

/// `systemInstruction` is a `Content`; some clients send a bare string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InSystem {
    Text(String),
    Content { parts: Vec<Value> },
}

/// One part, for the kinds with a canonical counterpart (see [`part_kind`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InPart {
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) thought: Option<bool>,
    #[serde(default, alias = "thought_signature")]
    pub(super) thought_signature: Option<String>,
    #[serde(default, alias = "inline_data")]
    pub(super) inline_data: Option<InBlob>,
    #[serde(default, alias = "file_data")]
    pub(super) file_data: Option<InFileData>,
    #[serde(default, alias = "function_call")]
    pub(super) function_call: Option<InFunctionCall>,
    #[serde(default, alias = "function_response")]
    pub(super) function_response: Option<InFunctionResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InBlob {
    #[serde(alias = "mime_type")]
    pub(super) mime_type: String,
    pub(super) data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InFileData {
    #[serde(default, alias = "mime_type")]
    pub(super) mime_type: Option<String>,
    #[serde(alias = "file_uri")]
    pub(super) file_uri: String,
}

#[derive(Deserialize)]
pub(super) struct InFunctionCall {
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) name: String,
    #[serde(default)]
    pub(super) args: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct InFunctionResponse {
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) name: String,
    #[serde(default)]
    pub(super) response: Option<Value>,
    /// Multimodal function responses (Gemini 3): images the tool returned.
    #[serde(default)]
    pub(super) parts: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InFunctionDeclaration {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) parameters: Option<Value>,
    #[serde(default, alias = "parameters_json_schema")]
    pub(super) parameters_json_schema: Option<Value>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(super) struct InUsage {
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
    pub(super) fn to_canonical(self) -> TokenUsage {
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
pub(super) struct InResponse {
    #[serde(default)]
    pub(super) candidates: Vec<InCandidate>,
    #[serde(default)]
    pub(super) usage_metadata: Option<InUsage>,
    #[serde(default)]
    pub(super) model_version: String,
    #[serde(default)]
    pub(super) response_id: String,
    #[serde(default)]
    pub(super) prompt_feedback: Option<InPromptFeedback>,
    #[serde(default)]
    pub(super) error: Option<InError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InCandidate {
    #[serde(default)]
    pub(super) content: Option<InCandidateContent>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    #[serde(default)]
    pub(super) index: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct InCandidateContent {
    #[serde(default)]
    pub(super) parts: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InPromptFeedback {
    #[serde(default)]
    pub(super) block_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InError {
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) status: String,
}

// ---------------------------------------------------------------------------------------------
// Wire types: what we write.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OutRequest<'a> {
    pub(super) contents: Vec<OutContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) system_instruction: Option<OutSystem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) generation_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub(super) extra: Option<ExtraFields<'a>>,
}

#[derive(Serialize)]
pub(super) struct OutSystem<'a> {
    pub(super) parts: Vec<OutText<'a>>,
}

#[derive(Serialize)]
pub(super) struct OutText<'a> {
    pub(super) text: &'a str,
}

#[derive(Serialize)]
pub(super) struct OutContent<'a> {
    pub(super) role: &'static str,
    pub(super) parts: Vec<OutPart<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
#[allow(
    clippy::large_enum_variant,
    reason = "parts are built once and serialised at once; boxing would add an allocation per part"
)]
pub(super) enum OutPart<'a> {
    Typed(OutFields<'a>),
    Raw(&'a Value),
}

/// A part: exactly one of the kinds, plus the optional `thought`/`thoughtSignature`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct OutFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) inline_data: Option<OutBlob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) file_data: Option<OutFileData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) function_call: Option<OutFunctionCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) function_response: Option<OutFunctionResponse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) thought_signature: Option<&'a str>,
}

impl OutPart<'_> {
    pub(super) fn is_call(&self) -> bool {
        matches!(self, OutPart::Typed(f) if f.function_call.is_some())
    }

    pub(super) fn is_result(&self) -> bool {
        matches!(self, OutPart::Typed(f) if f.function_response.is_some())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OutBlob<'a> {
    pub(super) mime_type: &'a str,
    pub(super) data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OutFileData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) mime_type: Option<&'a str>,
    pub(super) file_uri: &'a str,
}

#[derive(Serialize)]
pub(super) struct OutFunctionCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) args: ArgumentsObject<'a>,
}

#[derive(Serialize)]
pub(super) struct OutFunctionResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) response: OutResult,
}

/// `{"output": …}` or `{"error": …}`, the shapes Gemini's docs and Gemini CLI use.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum OutResult {
    Output(String),
    Error(String),
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutTool<'a> {
    Functions {
        #[serde(rename = "functionDeclarations")]
        function_declarations: Vec<OutDeclaration<'a>>,
    },
    Native(&'a Value),
}

#[derive(Serialize)]
pub(super) struct OutDeclaration<'a> {
    pub(super) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) parameters: Option<Value>,
}

/// Whether a tool-call id may have come from Gemini (and so may be sent back to it).
pub(super) fn gemini_issued(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with(GENERATED_ID)
        && !FOREIGN_IDS.iter().any(|prefix| id.starts_with(prefix))
}
