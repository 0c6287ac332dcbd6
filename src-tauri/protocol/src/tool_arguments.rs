//! A tool call's arguments as the JSON object a wire requires, written from the model's text.
//!
//! Canonical tool calls carry their arguments as text (OpenAI sends them as a string, and a
//! stream builds them up in fragments). Gemini's `functionCall.args` and Anthropic's
//! `tool_use.input` must be objects, so their encoders (`gemini/wire.rs`,
//! `anthropic_messages/wire.rs` and the stream encoders) write [`ArgumentsObject`]: the text
//! verbatim, without reparsing it into a `Value`, when it is an object, and `{}` otherwise.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A tool call's arguments as a JSON object: the model's text verbatim when it is one, `{}`
/// otherwise (invalid or unfinished JSON, or another kind of value, has nothing usable).
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ArgumentsObject<'a> {
    Raw(&'a RawValue),
    Empty(EmptyObject),
}

impl<'a> ArgumentsObject<'a> {
    /// The object in `arguments`, or `{}`.
    pub(crate) fn of(arguments: &'a str) -> Self {
        match serde_json::from_str::<&RawValue>(arguments) {
            Ok(raw) if raw.get().starts_with('{') => Self::Raw(raw),
            _ => Self::Empty(EmptyObject),
        }
    }
}

/// `{}`, written without allocating a map; also the placeholder `input` of an Anthropic
/// `tool_use` block whose arguments follow as deltas.
pub(crate) struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}
