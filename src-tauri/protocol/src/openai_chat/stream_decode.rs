//! Stream: Chat Completions chunks -> canonical events.
//!
//! A provider's `chat.completion.chunk` events, as the SSE splitter hands them over, become
//! [`StreamEvent`]s for the gateway's translated stream, whose encoder (any protocol's) writes
//! them for the client. The decoder keeps the state chunks leave implicit: which canonical
//! part a text, reasoning or tool-call delta continues, and whether the stream ended properly.

use std::collections::HashMap;

use serde_json::Value;

use super::response::finish_from_openai;
use super::wire::{InChunk, InChunkDelta};
use crate::canonical::{DecodeError, StreamEvent};
use crate::codec::DecodeStream;
use crate::stream_progress::{DeltaParts, StreamEnd};

/// Turns a provider's Chat Completions chunks into canonical events. Feed it whole SSE events
/// (from [`sse::EventSplitter`](crate::sse::EventSplitter)); call [`StreamDecoder::finish`]
/// when the upstream body ends.
///
/// Canonical part indices are handed out in order of appearance: text and reasoning keep one
/// index while they continue and get a new one after another part came between; each tool
/// call gets its own, found again by its OpenAI `index` (or by a changed `id` at the same
/// index, which some hosts send for parallel calls).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    end: StreamEnd,
    finished: bool,
    parts: DeltaParts,
    /// OpenAI tool-call index -> (canonical index, call id).
    tools: HashMap<usize, (usize, String)>,
    response_id: String,
}

impl StreamDecoder {
    fn delta(&mut self, delta: InChunkDelta, out: &mut Vec<StreamEvent>) {
        if let Some(text) = delta
            .reasoning_content
            .or(delta.reasoning)
            .filter(|t| !t.is_empty())
        {
            let index = self.parts.reasoning();
            out.push(StreamEvent::ReasoningDelta { index, text });
        }
        for text in [delta.content, delta.refusal]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            let index = self.parts.text();
            out.push(StreamEvent::TextDelta { index, text });
        }
        for (position, call) in delta.tool_calls.into_iter().flatten().enumerate() {
            let key = call.index.unwrap_or(position);
            let (name, arguments) = match call.function {
                Some(f) => (f.name, f.arguments),
                None => (None, None),
            };
            let known = self
                .tools
                .get(&key)
                .filter(|(_, id)| {
                    call.id
                        .as_ref()
                        .is_none_or(|new| new.is_empty() || new == id)
                })
                .map(|(index, _)| *index);
            let index = match known {
                Some(index) => index,
                None => {
                    let index = self.parts.tool_call();
                    let id = call
                        .id
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| format!("call_{}_{key}", self.response_id));
                    self.tools.insert(key, (index, id.clone()));
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id,
                        name: name.unwrap_or_default(),
                    });
                    index
                }
            };
            if let Some(fragment) = arguments.filter(|a| !a.is_empty()) {
                out.push(StreamEvent::ToolCallArgsDelta { index, fragment });
            }
        }
    }
}

impl DecodeStream for StreamDecoder {
    /// Whether `[DONE]` (or an error) was seen.
    fn is_done(&self) -> bool {
        self.end.is_done()
    }

    /// Decodes one event's data.
    fn decode_data(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        if data.trim_ascii() == b"[DONE]" {
            self.end.mark_done();
            return Ok(Vec::new());
        }
        let chunk: InChunk = serde_json::from_slice(data)?;
        let mut out = Vec::new();
        if let Some(error) = chunk.error {
            self.end.mark_done();
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            out.push(StreamEvent::Error { message });
            return Ok(out);
        }
        if !self.started {
            self.started = true;
            self.response_id.clone_from(&chunk.id);
            out.push(StreamEvent::MessageStart {
                id: chunk.id,
                model: chunk.model,
            });
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                self.delta(delta, &mut out);
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                out.push(StreamEvent::Finish(finish_from_openai(&reason)));
            }
        }
        if let Some(usage) = chunk.usage {
            out.push(StreamEvent::Usage(usage.into()));
        }
        Ok(out)
    }

    /// Called when the upstream body ends: an error event unless the stream was complete
    /// (`[DONE]`, or at least a finish reason from hosts that omit `[DONE]`).
    fn finish(&mut self) -> Vec<StreamEvent> {
        // A finish reason without `[DONE]` counts as complete: some hosts omit the marker.
        if self.finished {
            self.end.mark_done();
        }
        self.end.finish("its last chunk ([DONE])")
    }
}
