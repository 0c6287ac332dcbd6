//! A provider's Anthropic SSE events into canonical [`StreamEvent`]s.
//!
//! The event shapes (`message_start`, `content_block_*`, `message_delta`, …) live here since
//! nothing else reads them; blocks started mid-stream decode through `request`'s block reader
//! and usage through the same `InUsage` as a whole answer. `mod.rs` plugs [`StreamDecoder`]
//! into the codec's `DecodeStream`.

use serde::Deserialize;
use serde_json::Value;

use super::response::{InError, finish_from_anthropic};
use super::wire::InUsage;
use crate::canonical::{DecodeError, StreamEvent, TokenUsage, merge_usage};
use crate::codec::DecodeStream;
use crate::stream_progress::StreamEnd;

// ---------------------------------------------------------------------------------------------
// Stream: Anthropic SSE -> canonical events.

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InEvent {
    MessageStart {
        message: InStartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Value,
    },
    ContentBlockDelta {
        index: usize,
        delta: InDelta,
    },
    ContentBlockStop {
        #[allow(dead_code, reason = "read so a malformed stop is an error")]
        index: usize,
    },
    MessageDelta {
        delta: InMessageDelta,
        #[serde(default)]
        usage: Option<InUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: InError,
    },
    /// Event types added after this was written are skipped, as the SDKs do.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct InStartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<InUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct InMessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Turns a provider's Anthropic SSE events into canonical events. Feed it whole events (from
/// [`sse::EventSplitter`](crate::sse::EventSplitter)); call [`StreamDecoder::finish`] when the
/// upstream body ends.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    /// `message_stop` or `error` was seen: the stream ended properly.
    end: StreamEnd,
    /// Input usage from `message_start`, kept to fill in what `message_delta` leaves out.
    usage: TokenUsage,
}

impl DecodeStream for StreamDecoder {
    /// Whether the upstream has said its last word; the caller can finish the client's stream.
    fn is_done(&self) -> bool {
        self.end.is_done()
    }

    /// Decodes one event's data.
    fn decode_data(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        let wire: InEvent = serde_json::from_slice(data)?;
        let mut out = Vec::new();
        match wire {
            InEvent::MessageStart { message } => {
                out.push(StreamEvent::MessageStart {
                    id: message.id,
                    model: message.model,
                });
                if let Some(usage) = message.usage {
                    self.usage = usage.to_canonical();
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            InEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let kind = content_block.get("type").and_then(Value::as_str);
                let text = |key: &str| {
                    content_block
                        .get(key)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                };
                match kind {
                    Some("text") => {
                        if let Some(text) = text("text") {
                            out.push(StreamEvent::TextDelta { index, text });
                        }
                    }
                    Some("tool_use") => {
                        let (Some(id), Some(name)) = (
                            content_block.get("id").and_then(Value::as_str),
                            content_block.get("name").and_then(Value::as_str),
                        ) else {
                            return Err(DecodeError::Invalid(
                                "tool_use block without id or name".into(),
                            ));
                        };
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: id.to_owned(),
                            name: name.to_owned(),
                        });
                        // Anthropic starts with `input: {}` and streams the real input; a
                        // non-empty start input is the whole input.
                        if let Some(input) = content_block
                            .get("input")
                            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            out.push(StreamEvent::ToolCallArgsDelta {
                                index,
                                fragment: input.to_string(),
                            });
                        }
                    }
                    Some("thinking") => {
                        if let Some(text) = text("thinking") {
                            out.push(StreamEvent::ReasoningDelta { index, text });
                        }
                        if let Some(signature) = text("signature") {
                            out.push(StreamEvent::ReasoningSignature { index, signature });
                        }
                    }
                    // Redacted thinking and server-tool blocks have no stream counterpart.
                    _ => {}
                }
            }
            InEvent::ContentBlockDelta { index, delta } => match delta {
                InDelta::TextDelta { text } => out.push(StreamEvent::TextDelta { index, text }),
                // Anthropic opens each tool input with an empty fragment; it carries nothing.
                InDelta::InputJsonDelta { partial_json } if partial_json.is_empty() => {}
                InDelta::InputJsonDelta { partial_json } => {
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: partial_json,
                    });
                }
                InDelta::ThinkingDelta { thinking } => out.push(StreamEvent::ReasoningDelta {
                    index,
                    text: thinking,
                }),
                InDelta::SignatureDelta { signature } => {
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
                InDelta::Other => {}
            },
            InEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    merge_usage(&mut self.usage, &usage.to_canonical());
                    out.push(StreamEvent::Usage(self.usage));
                }
                if let Some(reason) = delta.stop_reason {
                    out.push(StreamEvent::Finish(finish_from_anthropic(&reason)));
                }
            }
            InEvent::MessageStop => self.end.mark_done(),
            InEvent::Error { error } => {
                self.end.mark_done();
                out.push(StreamEvent::Error {
                    message: format!("{}: {}", error.kind, error.message),
                });
            }
            InEvent::ContentBlockStop { .. } | InEvent::Ping | InEvent::Other => {}
        }
        Ok(out)
    }

    /// Called when the upstream body ends: an error event if it ended before `message_stop`.
    fn finish(&mut self) -> Vec<StreamEvent> {
        self.end.finish("its last event (message_stop)")
    }
}
