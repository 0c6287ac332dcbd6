//! Stream: Responses events -> canonical events.
//!
//! A provider's `response.*` SSE events, as the SSE splitter hands them over, become
//! [`StreamEvent`]s for the gateway's translated stream, whose encoder (any protocol's) writes
//! them for the client. Responses numbers output items and their content parts, and some
//! servers send an item only when it is done, so the decoder keeps, per output item, which
//! canonical part it is and what of it was already passed on.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::request::reasoning_part;
use super::response::{OutputSeen, finish_from_status};
use super::wire::{InEvent, InOutputMessage, InReasoningItem};
use crate::canonical::{DecodeError, Part, StreamEvent};
use crate::codec::DecodeStream;
use crate::stream_progress::{PartIndices, StreamEnd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Message,
    Reasoning,
    FunctionCall,
    CustomToolCall,
    Other,
}

/// What the decoder knows about one output item of the provider's answer.
#[derive(Debug)]
struct DecodedItem {
    kind: ItemKind,
    /// The canonical part of a reasoning item or tool call.
    index: Option<usize>,
    /// Deltas were decoded, so the item's `done` form repeats what was already sent.
    streamed: bool,
    /// The reasoning paragraph (summary or content part) deltas last came for.
    paragraph: Option<(bool, usize)>,
    /// A custom tool call's `{"input":"` was sent and its closing `"}` not yet.
    input_open: bool,
}

impl DecodedItem {
    fn new(kind: ItemKind) -> Self {
        Self {
            kind,
            index: None,
            streamed: false,
            paragraph: None,
            input_open: false,
        }
    }

    /// A call's whole payload on its `done` item (`arguments`, or a custom call's `input`),
    /// when no deltas brought it; the item counts as streamed from then on. `None` once
    /// deltas came, or when the payload is empty.
    fn unstreamed<'v>(&mut self, item: &'v Value, key: &str) -> Option<&'v str> {
        let payload = item
            .get(key)
            .and_then(Value::as_str)
            .filter(|payload| !self.streamed && !payload.is_empty())?;
        self.streamed = true;
        Some(payload)
    }
}

/// Turns a provider's Responses SSE events into canonical events. Feed it whole events (from
/// [`sse::EventSplitter`](crate::sse::EventSplitter)); call [`StreamDecoder::finish`] when the
/// upstream body ends.
///
/// Canonical parts are numbered in order of appearance: one per text (or refusal) content part
/// of a message item, one per reasoning item (its summary parts are joined by blank lines, as
/// [`response_to_canonical`] joins them), one per tool call. A custom tool call's text is
/// streamed as the JSON of `{"input": …}`, escaped as it arrives.
///
/// A reasoning item's `encrypted_content` (sent in its `response.output_item.done`) becomes a
/// [`StreamEvent::ReasoningSignature`] of that part: the canonical stream has no other event
/// for reasoning proof (the translated path tags it as encrypted reasoning).
///
/// [`response_to_canonical`]: super::response_to_canonical
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    end: StreamEnd,
    parts: PartIndices,
    /// Output index -> item.
    items: HashMap<usize, DecodedItem>,
    /// (output index, content index) -> canonical part of a text content part.
    texts: HashMap<(usize, usize), usize>,
    seen: OutputSeen,
}

impl StreamDecoder {
    fn item_added(&mut self, output_index: usize, item: &Value, out: &mut Vec<StreamEvent>) {
        let kind = item_kind(item);
        let mut decoded = DecodedItem::new(kind);
        match kind {
            ItemKind::FunctionCall | ItemKind::CustomToolCall => {
                let index = self.start_call(output_index, item, out);
                decoded.index = Some(index);
                let (key, opening) = if kind == ItemKind::CustomToolCall {
                    decoded.input_open = true;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: "{\"input\":\"".to_owned(),
                    });
                    ("input", true)
                } else {
                    ("arguments", false)
                };
                // Calls usually start empty; a non-empty start is the whole value so far.
                if let Some(value) = item
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                {
                    decoded.streamed = true;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: if opening {
                            json_string_body(value)
                        } else {
                            value.to_owned()
                        },
                    });
                }
            }
            ItemKind::Reasoning => decoded.index = Some(self.parts.allocate()),
            ItemKind::Message | ItemKind::Other => {}
        }
        self.items.insert(output_index, decoded);
    }

    /// Emits `ToolCallStart` for a call item and returns its canonical part.
    fn start_call(
        &mut self,
        output_index: usize,
        item: &Value,
        out: &mut Vec<StreamEvent>,
    ) -> usize {
        self.seen.tool_calls = true;
        let index = self.parts.allocate();
        let text = |key: &str| {
            item.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let id = text("call_id")
            .or_else(|| text("id"))
            .unwrap_or_else(|| format!("call_flexiproxy_{output_index}"));
        out.push(StreamEvent::ToolCallStart {
            index,
            id,
            name: text("name").unwrap_or_default(),
        });
        index
    }

    fn item_done(
        &mut self,
        output_index: usize,
        item: &Value,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), DecodeError> {
        let kind = item_kind(item);
        if !self.items.contains_key(&output_index) {
            // A provider that sends items only when done: start them now.
            self.item_added(output_index, &strip_call_payload(item), out);
        }
        let Some(decoded) = self.items.get_mut(&output_index) else {
            return Ok(());
        };
        let streamed = decoded.streamed;
        match (kind, decoded.index) {
            (ItemKind::Reasoning, Some(index)) => {
                let reasoning = InReasoningItem::deserialize(item)
                    .map_err(|e| DecodeError::Invalid(format!("reasoning item: {e}")))?;
                if !streamed {
                    let Part::Reasoning(whole) = reasoning_part(InReasoningItem {
                        summary: reasoning.summary,
                        content: reasoning.content,
                        encrypted_content: None,
                    }) else {
                        return Ok(());
                    };
                    if !whole.text.is_empty() {
                        out.push(StreamEvent::ReasoningDelta {
                            index,
                            text: whole.text,
                        });
                    }
                }
                if let Some(signature) = reasoning.encrypted_content.filter(|e| !e.is_empty()) {
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
            }
            (ItemKind::FunctionCall, Some(index)) => {
                if let Some(arguments) = decoded.unstreamed(item, "arguments") {
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: arguments.to_owned(),
                    });
                }
            }
            (ItemKind::CustomToolCall, Some(index)) => {
                if let Some(input) = decoded.unstreamed(item, "input") {
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: json_string_body(input),
                    });
                }
                if decoded.input_open {
                    decoded.input_open = false;
                    out.push(StreamEvent::ToolCallArgsDelta {
                        index,
                        fragment: "\"}".to_owned(),
                    });
                }
            }
            (ItemKind::Message, _) => {
                // Text that came without deltas arrives whole here.
                let message = InOutputMessage::deserialize(item)
                    .map_err(|e| DecodeError::Invalid(format!("message item: {e}")))?;
                for (content_index, part) in message.content.iter().enumerate() {
                    if self.texts.contains_key(&(output_index, content_index)) {
                        continue;
                    }
                    let kind = part.get("type").and_then(Value::as_str);
                    let key = if kind == Some("refusal") {
                        self.seen.refusal = true;
                        "refusal"
                    } else {
                        "text"
                    };
                    if let Some(text) = part
                        .get(key)
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                    {
                        self.text(output_index, content_index, text.to_owned(), out);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(
        &mut self,
        output_index: usize,
        content_index: usize,
        text: String,
        out: &mut Vec<StreamEvent>,
    ) {
        if text.is_empty() {
            return;
        }
        let index = match self.texts.get(&(output_index, content_index)) {
            Some(&index) => index,
            None => {
                let index = self.parts.allocate();
                self.texts.insert((output_index, content_index), index);
                index
            }
        };
        self.items
            .entry(output_index)
            .or_insert_with(|| DecodedItem::new(ItemKind::Message))
            .streamed = true;
        out.push(StreamEvent::TextDelta { index, text });
    }

    fn reasoning(
        &mut self,
        output_index: usize,
        paragraph: (bool, usize),
        text: String,
        out: &mut Vec<StreamEvent>,
    ) {
        if text.is_empty() {
            return;
        }
        if !self.items.contains_key(&output_index) {
            let mut item = DecodedItem::new(ItemKind::Reasoning);
            item.index = Some(self.parts.allocate());
            self.items.insert(output_index, item);
        }
        let Some(item) = self.items.get_mut(&output_index) else {
            return;
        };
        let Some(index) = item.index else {
            return;
        };
        // A new summary part continues the same canonical part after a blank line.
        if item.paragraph.is_some_and(|p| p != paragraph) {
            out.push(StreamEvent::ReasoningDelta {
                index,
                text: "\n\n".to_owned(),
            });
        }
        item.paragraph = Some(paragraph);
        item.streamed = true;
        out.push(StreamEvent::ReasoningDelta { index, text });
    }

    /// The canonical part of the call item at `output_index`.
    fn call_index(&self, output_index: usize, kind: ItemKind) -> Result<usize, DecodeError> {
        self.items
            .get(&output_index)
            .filter(|item| item.kind == kind)
            .and_then(|item| item.index)
            .ok_or_else(|| {
                DecodeError::Invalid(format!(
                    "tool-call arguments for output item {output_index}, which was not announced \
                     as a tool call"
                ))
            })
    }

    /// A piece of the payload of the call at `output_index` (which must be a call of `kind`),
    /// already in canonical arguments form; an empty piece is dropped.
    fn call_fragment(
        &mut self,
        output_index: usize,
        kind: ItemKind,
        fragment: String,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), DecodeError> {
        let index = self.call_index(output_index, kind)?;
        if !fragment.is_empty() {
            self.mark_streamed(output_index);
            out.push(StreamEvent::ToolCallArgsDelta { index, fragment });
        }
        Ok(())
    }

    fn mark_streamed(&mut self, output_index: usize) {
        if let Some(item) = self.items.get_mut(&output_index) {
            item.streamed = true;
        }
    }
}

impl DecodeStream for StreamDecoder {
    /// Whether the upstream has said its last word (`response.completed`, `response.incomplete`,
    /// `response.failed` or `error`).
    fn is_done(&self) -> bool {
        self.end.is_done()
    }

    /// Decodes one event's data.
    fn decode_data(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        // Some Responses-compatible servers end with Chat Completions' marker; the terminal
        // `response.*` event is what counts.
        if data.trim_ascii() == b"[DONE]" {
            return Ok(Vec::new());
        }
        let wire: InEvent = serde_json::from_slice(data)?;
        let mut out = Vec::new();
        match wire {
            InEvent::Created { response } | InEvent::InProgress { response } => {
                if !self.started {
                    self.started = true;
                    out.push(StreamEvent::MessageStart {
                        id: response.id,
                        model: response.model,
                    });
                }
            }
            InEvent::ItemAdded { output_index, item } => {
                self.item_added(output_index, &item, &mut out);
            }
            InEvent::ItemDone { output_index, item } => {
                self.item_done(output_index, &item, &mut out)?;
            }
            InEvent::TextDelta {
                output_index,
                content_index,
                delta,
            } => self.text(output_index, content_index, delta, &mut out),
            InEvent::RefusalDelta {
                output_index,
                content_index,
                delta,
            } => {
                self.seen.refusal = true;
                self.text(output_index, content_index, delta, &mut out);
            }
            InEvent::ArgsDelta {
                output_index,
                delta,
            } => self.call_fragment(output_index, ItemKind::FunctionCall, delta, &mut out)?,
            InEvent::ArgsDone {
                output_index,
                arguments,
            } => {
                // The whole arguments repeat the deltas; only a call that had none needs them.
                let streamed = self.items.get(&output_index).is_some_and(|i| i.streamed);
                let fragment = if streamed { String::new() } else { arguments };
                self.call_fragment(output_index, ItemKind::FunctionCall, fragment, &mut out)?;
            }
            InEvent::CustomInputDelta {
                output_index,
                delta,
            } => {
                let fragment = json_string_body(&delta);
                self.call_fragment(output_index, ItemKind::CustomToolCall, fragment, &mut out)?;
            }
            InEvent::SummaryDelta {
                output_index,
                summary_index,
                delta,
            } => self.reasoning(output_index, (true, summary_index), delta, &mut out),
            InEvent::ReasoningTextDelta {
                output_index,
                content_index,
                delta,
            } => self.reasoning(output_index, (false, content_index), delta, &mut out),
            InEvent::Completed { response } | InEvent::Incomplete { response } => {
                self.end.mark_done();
                if let Some(usage) = response.usage {
                    out.push(StreamEvent::Usage(usage.into()));
                }
                let reason = response.incomplete_details.and_then(|d| d.reason);
                if let Some(finish) =
                    finish_from_status(response.status.as_deref(), reason.as_deref(), &self.seen)
                {
                    out.push(StreamEvent::Finish(finish));
                }
            }
            InEvent::Failed { response } => {
                self.end.mark_done();
                if let Some(usage) = response.usage {
                    out.push(StreamEvent::Usage(usage.into()));
                }
                let message = response
                    .error
                    .as_ref()
                    .and_then(error_message)
                    .unwrap_or_else(|| "the provider's response failed".to_owned());
                out.push(StreamEvent::Error { message });
            }
            InEvent::Error {
                message,
                code,
                error,
            } => {
                self.end.mark_done();
                let message = message
                    .or_else(|| error.as_ref().and_then(error_message))
                    .or(code)
                    .unwrap_or_else(|| "the provider's stream reported an error".to_owned());
                out.push(StreamEvent::Error { message });
            }
            InEvent::Other => {}
        }
        Ok(out)
    }

    /// Called when the upstream body ends: an error event if it ended before its terminal
    /// `response.*` event.
    fn finish(&mut self) -> Vec<StreamEvent> {
        self.end.finish("its last event (response.completed)")
    }
}

fn item_kind(item: &Value) -> ItemKind {
    match item.get("type").and_then(Value::as_str) {
        Some("message") => ItemKind::Message,
        Some("reasoning") => ItemKind::Reasoning,
        Some("function_call") => ItemKind::FunctionCall,
        Some("custom_tool_call") => ItemKind::CustomToolCall,
        _ => ItemKind::Other,
    }
}

/// A call item without its arguments or input, to start it before its payload is sent.
fn strip_call_payload(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(object) = item.as_object_mut() {
        object.remove("arguments");
        object.remove("input");
    }
    item
}

/// `text` JSON-escaped without the quotes: a piece of a JSON string's body.
pub(super) fn json_string_body(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .map_or_else(String::new, str::to_owned)
}

fn error_message(error: &Value) -> Option<String> {
    error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
}
