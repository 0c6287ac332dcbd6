//! Wire protocols the gateway speaks, one module per API, plus the framing they share.
//!
//! One module per protocol: `openai_chat` (the OpenAI-compatible family), `openai_responses`
//! (OpenAI Responses), `anthropic_messages` (Anthropic Messages) and `gemini` (Google's
//! `generateContent`); each converts its requests, responses and streams to and from
//! `canonical` (the translated path), and `codec` picks the module for a [`Protocol`].
//! `json_schema` cleans tool schemas into what each target accepts. `sse` splits event
//! streams; `rewrite` edits a JSON body's top-level fields in place for the same-protocol fast
//! path. [`Protocol`] names the protocol a provider speaks (stored with the provider and shown
//! in the API).

pub mod anthropic_messages;
pub mod codec;
pub mod gemini;
pub mod json_schema;
pub mod openai_chat;
pub mod openai_responses;
pub mod rewrite;
pub mod sse;

use std::fmt;
use std::str::FromStr;

/// The wire protocol of a provider, named after the API rather than the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    OpenAiChat,
    OpenAiResponses,
    AnthropicMessages,
    Gemini,
}

impl Protocol {
    pub const ALL: [Self; 4] = [
        Self::OpenAiChat,
        Self::OpenAiResponses,
        Self::AnthropicMessages,
        Self::Gemini,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAiChat => "openai_chat",
            Self::OpenAiResponses => "openai_responses",
            Self::AnthropicMessages => "anthropic_messages",
            Self::Gemini => "gemini",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name that is not one of [`Protocol::ALL`].
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown protocol `{0}`; use one of openai_chat, openai_responses, anthropic_messages, gemini"
)]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}
