//! The token-count details OpenAI's two APIs share. Chat Completions' usage
//! (`prompt_tokens`, `completion_tokens`, `…_tokens_details`) and Responses' usage
//! (`input_tokens`, `output_tokens`, `…_tokens_details`) name their counts differently, so
//! `openai_chat::wire` and `openai_responses::wire` each keep their own usage type; the detail
//! objects inside (`{"cached_tokens"}`, `{"reasoning_tokens"}`) and the way the four counts
//! map onto [`TokenUsage`] are the same in both, and live here once.

use serde::{Deserialize, Serialize};

use crate::canonical::TokenUsage;

/// `{"cached_tokens": n}` as a provider sends it (prompt / input details).
#[derive(Deserialize)]
pub(crate) struct InCachedTokens {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    cached_tokens: Option<u64>,
}

/// `{"reasoning_tokens": n}` as a provider sends it (completion / output details).
#[derive(Deserialize)]
pub(crate) struct InReasoningTokens {
    #[serde(default, deserialize_with = "crate::canonical::wire_count")]
    reasoning_tokens: Option<u64>,
}

/// `{"cached_tokens": n}` as the gateway writes it.
#[derive(Serialize)]
pub(crate) struct OutCachedTokens {
    cached_tokens: u64,
}

/// `{"reasoning_tokens": n}` as the gateway writes it.
#[derive(Serialize)]
pub(crate) struct OutReasoningTokens {
    reasoning_tokens: u64,
}

/// The canonical usage of an OpenAI usage object. Both APIs count like the canonical model:
/// input includes cached tokens, output includes reasoning tokens.
pub(crate) fn to_canonical(
    input: Option<u64>,
    output: Option<u64>,
    cached: Option<InCachedTokens>,
    reasoning: Option<InReasoningTokens>,
) -> TokenUsage {
    TokenUsage {
        input,
        output,
        cached: cached.and_then(|d| d.cached_tokens),
        reasoning: reasoning.and_then(|d| d.reasoning_tokens),
    }
}

/// The input, output and total counts an OpenAI usage object writes (unknown counts as 0).
pub(crate) fn totals(usage: &TokenUsage) -> (u64, u64, u64) {
    let input = usage.input.unwrap_or(0);
    let output = usage.output.unwrap_or(0);
    (input, output, input.saturating_add(output))
}

impl OutCachedTokens {
    pub(crate) fn new(cached_tokens: u64) -> Self {
        Self { cached_tokens }
    }
}

impl OutReasoningTokens {
    pub(crate) fn new(reasoning_tokens: u64) -> Self {
        Self { reasoning_tokens }
    }
}
