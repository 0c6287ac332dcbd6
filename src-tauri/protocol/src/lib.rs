//! FlexiProxy's wire protocols: what every API the gateway speaks looks like on the wire, and
//! how each converts to and from one canonical model. Pure: no HTTP, storage or async runtime,
//! so the gateway (which owns transport, routing and the ledger) is its only consumer and the
//! compiler keeps it that way.
//!
//! One module per protocol: `openai_chat` (the OpenAI-compatible family), `openai_responses`
//! (OpenAI Responses), `anthropic_messages` (Anthropic Messages) and `gemini` (Google's
//! `generateContent`); each converts its requests, responses and streams to and from
//! [`canonical`] (the translated path), and `codec` picks the module for a [`Protocol`].
//! `openai_function` and `openai_usage` hold the tool definitions and usage details both
//! OpenAI APIs share; `stream_progress` what every stream decoder keeps; `closing` what the
//! Anthropic and Responses stream encoders hold for their closing events; `turns` the
//! alternating turns Anthropic and Gemini want. `json_schema` cleans tool schemas into what
//! each target accepts. `sse` splits event streams; `rewrite` edits a JSON body's top-level
//! fields in place for the same-protocol fast path. [`Protocol`] names the protocol a provider
//! speaks (stored with the provider and shown in the API).

pub mod anthropic_messages;
pub mod canonical;
mod closing;
pub mod codec;
pub mod error_message;
#[cfg(test)]
mod fixtures;
pub mod gemini;
pub mod json_schema;
pub mod openai_chat;
mod openai_function;
pub mod openai_responses;
mod openai_usage;
pub mod rewrite;
pub mod sse;
mod stream_progress;
mod tool_arguments;
mod turns;

use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

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

impl Protocol {
    /// The protocol's implementation: the list of every protocol's [`codec::Wire`].
    pub fn wire(self) -> &'static dyn codec::Wire {
        match self {
            Self::OpenAiChat => &openai_chat::OpenAiChat,
            Self::OpenAiResponses => &openai_responses::OpenAiResponses,
            Self::AnthropicMessages => &anthropic_messages::AnthropicMessages,
            Self::Gemini => &gemini::Gemini,
        }
    }
}

/// A protocol equals its wire name (`"openai_chat"`, …): how it is stored and shown.
impl PartialEq<&str> for Protocol {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
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

/// A wire body as JSON bytes. The protocol modules' wire types serialise infallibly (string
/// keys only, no custom failing impls), so an error cannot happen and would give an empty body.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// A request's `extra` fields for an encoder that re-emits them (same-protocol targets), less
/// the fields the encoder writes itself, so a client's copy is not written twice.
struct ExtraFields<'a> {
    fields: &'a Map<String, Value>,
    own: &'static [&'static str],
}

impl<'a> ExtraFields<'a> {
    fn new(fields: &'a Map<String, Value>, own: &'static [&'static str]) -> Self {
        Self { fields, own }
    }
}

impl Serialize for ExtraFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.fields {
            if !self.own.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}
