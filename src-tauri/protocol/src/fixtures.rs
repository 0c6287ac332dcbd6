//! Canonical values for the protocol modules' unit tests: one-line constructors for the
//! [`StreamEvent`]s, tool calls, tool results, images and signed reasoning every protocol's
//! tests spell out, [`encode_stream`], which writes events through a protocol's encoder, and
//! [`decode_stream`], which runs an SSE text through a protocol's decoder the way the gateway
//! does (split into events, decoded one at a time, finished).
//!
//! Each protocol's `tests` module uses them, so a fixture reads as the values it holds rather
//! than as struct literals repeated in every protocol.

use crate::Protocol;
use crate::canonical::{Image, Part, Reasoning, StreamEvent, TokenUsage};
use crate::codec::{DecodeStream, EncodeStream};
use crate::sse::EventSplitter;

impl Part {
    pub(crate) fn tool_call(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    pub(crate) fn base64_image(media_type: &str, data: &str) -> Self {
        Self::Image(Image::Base64 {
            media_type: media_type.into(),
            data: data.into(),
        })
    }

    /// A tool's result of one text part; `is_error` when the tool failed.
    pub(crate) fn tool_result(call_id: impl Into<String>, text: &str, is_error: bool) -> Self {
        Self::ToolResult {
            call_id: call_id.into(),
            content: vec![Self::text(text)],
            is_error,
        }
    }

    /// Reasoning text with the signature `issuer` gave it.
    pub(crate) fn signed_reasoning(
        text: impl Into<String>,
        signature: impl Into<String>,
        issuer: Protocol,
    ) -> Self {
        Self::Reasoning(Reasoning::signed(text, signature, issuer))
    }
}

impl Reasoning {
    /// Reasoning text with the signature `issuer` gave it.
    pub(crate) fn signed(
        text: impl Into<String>,
        signature: impl Into<String>,
        issuer: Protocol,
    ) -> Self {
        Self {
            text: text.into(),
            signature: Some(signature.into()),
            encrypted: None,
            issuer: Some(issuer),
        }
    }
}

impl StreamEvent {
    pub(crate) fn start(id: impl Into<String>, model: impl Into<String>) -> Self {
        Self::MessageStart {
            id: id.into(),
            model: model.into(),
        }
    }

    pub(crate) fn text(index: usize, text: impl Into<String>) -> Self {
        Self::TextDelta {
            index,
            text: text.into(),
        }
    }

    pub(crate) fn reasoning(index: usize, text: impl Into<String>) -> Self {
        Self::ReasoningDelta {
            index,
            text: text.into(),
        }
    }

    pub(crate) fn signature(index: usize, signature: impl Into<String>) -> Self {
        Self::ReasoningSignature {
            index,
            signature: signature.into(),
        }
    }

    pub(crate) fn tool_call(index: usize, id: impl Into<String>, name: impl Into<String>) -> Self {
        Self::ToolCallStart {
            index,
            id: id.into(),
            name: name.into(),
        }
    }

    pub(crate) fn arguments(index: usize, fragment: impl Into<String>) -> Self {
        Self::ToolCallArgsDelta {
            index,
            fragment: fragment.into(),
        }
    }
}

/// The arguments text of tool call `wanted`: its fragments among `events`, joined.
pub(crate) fn arguments_of(events: &[StreamEvent], wanted: usize) -> String {
    let fragments = events.iter().filter_map(|event| match event {
        StreamEvent::ToolCallArgsDelta { index, fragment } if *index == wanted => {
            Some(fragment.as_str())
        }
        _ => None,
    });
    fragments.collect()
}

/// Token counts in the canonical model's order: input, output, cached, reasoning.
pub(crate) fn usage(
    input: Option<u64>,
    output: Option<u64>,
    cached: Option<u64>,
    reasoning: Option<u64>,
) -> TokenUsage {
    TokenUsage {
        input,
        output,
        cached,
        reasoning,
    }
}

/// The events `decoder` reads when fed `events`, each one whole SSE event.
pub(crate) fn feed(
    decoder: &mut impl DecodeStream,
    events: impl IntoIterator<Item = String>,
) -> Vec<StreamEvent> {
    let mut decoded = Vec::new();
    for event in events {
        decoded.extend(decoder.decode(event.as_bytes()).unwrap());
    }
    decoded
}

/// The events `decoder` reads from the SSE text `sse_text`, which must be a whole stream
/// (its decoder is done at the end); [`DecodeStream::finish`] adds nothing then.
pub(crate) fn decode_stream(mut decoder: impl DecodeStream, sse_text: &str) -> Vec<StreamEvent> {
    let mut splitter = EventSplitter::default();
    let mut events = Vec::new();
    for event in splitter
        .push(bytes::Bytes::copy_from_slice(sse_text.as_bytes()))
        .unwrap()
    {
        events.extend(decoder.decode(&event).unwrap());
    }
    assert!(decoder.is_done());
    events.extend(decoder.finish());
    events
}

/// The text `encoder` writes for `events` and its closing events. It is finished twice: a
/// second finish must add nothing.
pub(crate) fn encode_stream(mut encoder: impl EncodeStream, events: &[StreamEvent]) -> String {
    let mut out = Vec::new();
    for event in events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    encoder.finish(&mut out);
    String::from_utf8(out).unwrap()
}
