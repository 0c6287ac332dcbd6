//! Anthropic Messages bodies as serde sees them: the `In…` types read a client's request and a
//! provider's answer, the `Out…` types write what Anthropic accepts. Keeping the shapes apart
//! from the mapping lets `request` (both directions) and `response` share one definition of a
//! block, a tool or a usage object; stream events have shapes of their own and stay in
//! `stream_decode` and `stream_encode`, as do the whole-answer and error shapes in `response`.
//!
//! The few functions here decide a field's shape rather than its meaning: a call's arguments
//! as the JSON object Anthropic requires, and tool ids made to match Anthropic's pattern.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::TokenUsage;
use crate::tool_arguments::ArgumentsObject;

// ---------------------------------------------------------------------------------------------
// Wire types: what we read.

#[derive(Deserialize)]
pub(super) struct InRequest {
    pub(super) model: String,
    #[serde(default)]
    pub(super) system: Option<InContent>,
    pub(super) messages: Vec<InMessage>,
    #[serde(default)]
    pub(super) max_tokens: Option<u64>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(default)]
    pub(super) tools: Option<Vec<Value>>,
    #[serde(default)]
    pub(super) tool_choice: Option<InToolChoice>,
    #[serde(default)]
    pub(super) thinking: Option<InThinking>,
    #[serde(flatten)]
    pub(super) extra: Map<String, Value>,
}

/// Anthropic allows a plain string wherever a list of blocks goes.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InContent {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Deserialize)]
pub(super) struct InMessage {
    pub(super) role: String,
    pub(super) content: InContent,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum InToolChoice {
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
pub(super) enum InThinking {
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
pub(super) struct InTool {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    pub(super) input_schema: Value,
}

/// The block types with a canonical counterpart; every other type becomes [`Part::Unknown`].
///
/// [`Part::Unknown`]: crate::canonical::Part::Unknown
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum InBlock {
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

pub(super) const KNOWN_BLOCKS: [&str; 6] = [
    "text",
    "image",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum InImageSource {
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
pub(super) struct InUsage {
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
    pub(super) fn to_canonical(&self) -> TokenUsage {
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
pub(super) struct InResponse {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) model: String,
    pub(super) content: Vec<Value>,
    #[serde(default)]
    pub(super) stop_reason: Option<String>,
    #[serde(default)]
    pub(super) stop_sequence: Option<String>,
    #[serde(default)]
    pub(super) usage: InUsage,
}

// ---------------------------------------------------------------------------------------------
// Wire types: what we write.

#[derive(Serialize)]
pub(super) struct OutRequest<'a> {
    pub(super) model: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) system: Vec<OutBlock<'a>>,
    pub(super) messages: Vec<OutMessage<'a>>,
    pub(super) max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) thinking: Option<OutThinking>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(super) extra: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
pub(super) struct OutMessage<'a> {
    pub(super) role: &'static str,
    pub(super) content: Vec<OutPart<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutPart<'a> {
    Block(OutBlock<'a>),
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: OutImageSource<'a>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: ArgumentsObject<'a>,
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
pub(super) enum OutImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutTool<'a> {
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
pub(super) enum OutToolChoice<'a> {
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
pub(super) enum OutThinking {
    Enabled { budget_tokens: u64 },
}

/// Anthropic tool ids must match `^[a-zA-Z0-9_-]+$`; other protocols' ids (`functions.x:0`)
/// are made valid by replacing every other character, so a call and its result stay paired.
pub(super) fn tool_id(id: &str) -> Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(valid) {
        Cow::Borrowed(id)
    } else if id.is_empty() {
        Cow::Borrowed("toolu_missing")
    } else {
        Cow::Owned(id.chars().map(|c| if valid(c) { c } else { '_' }).collect())
    }
}
