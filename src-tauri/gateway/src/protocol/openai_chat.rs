//! The OpenAI-compatible API family (Chat Completions, legacy Completions, Embeddings) as the
//! gateway needs it on the same-protocol path: which endpoints exist, and reading token usage
//! from a response body or a stream chunk without building the whole message.
//!
//! The wire types here are private and partial on purpose: the body itself is forwarded as
//! bytes by `relay`; these types only pick `usage` (and whether a chunk is the usage-only one
//! that `stream_options.include_usage` adds) out of it.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::usage::TokenUsage;

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
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
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
}
