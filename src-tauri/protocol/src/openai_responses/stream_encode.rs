//! Stream: canonical events -> Responses events.
//!
//! The gateway's translated stream (decoded from any protocol's provider) becomes the
//! `response.*` events the OpenAI SDKs and Codex CLI parse, each numbered by
//! `sequence_number`. Items are written with the same wire types as a whole answer, and the
//! terminal event carries the whole `response` object, so a client that reads the final
//! response finds what a non-streaming answer would have held.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::request::custom_input;
use super::response::{item_id, response_id, status_of};
use super::wire::{
    OutEvent, OutOutput, OutOutputItem, OutResponse, OutResponseError, OutSummary, OutUsage,
    Sequenced, output_text, summary,
};
use crate::canonical::StreamEvent;
use crate::closing::Closing;
use crate::codec::EncodeStream;

fn write_event(out: &mut Vec<u8>, sequence: &mut u64, event: &OutEvent<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing our wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(
        &mut *out,
        &Sequenced {
            event,
            sequence_number: *sequence,
        },
    );
    out.extend_from_slice(b"\n\n");
    *sequence += 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncKind {
    Message,
    Reasoning,
    FunctionCall,
    CustomToolCall,
}

/// One output item of the client's stream.
#[derive(Debug)]
struct EncItem {
    id: String,
    kind: EncKind,
    /// Message text, reasoning summary, call arguments or custom tool input.
    text: String,
    call_id: String,
    name: String,
    /// Reasoning proof for the client (`encrypted_content`).
    encrypted: Option<String>,
    /// `response.output_item.done` was sent.
    done: bool,
}

impl EncItem {
    /// The item as `output_item.added` shows it (`done` false) or as `output_item.done` and
    /// the final response do; an item a failure cut short is `incomplete` there.
    fn wire(&self, done: bool) -> OutOutputItem<'_> {
        let status = match (done, self.done) {
            (false, _) => "in_progress",
            (true, true) => "completed",
            (true, false) => "incomplete",
        };
        match self.kind {
            EncKind::Message => OutOutputItem::Message {
                id: &self.id,
                status,
                role: "assistant",
                content: if done {
                    vec![output_text(&self.text)]
                } else {
                    Vec::new()
                },
            },
            EncKind::Reasoning => OutOutputItem::Reasoning {
                id: &self.id,
                summary: if done {
                    summary(&self.text)
                } else {
                    Vec::new()
                },
                encrypted_content: self
                    .encrypted
                    .as_deref()
                    .filter(|_| done)
                    .map(Cow::Borrowed),
            },
            EncKind::FunctionCall => OutOutputItem::FunctionCall {
                id: &self.id,
                status,
                arguments: match (done, self.text.is_empty()) {
                    (false, _) => "",
                    (true, true) => "{}",
                    (true, false) => &self.text,
                },
                call_id: &self.call_id,
                name: &self.name,
            },
            EncKind::CustomToolCall => OutOutputItem::CustomToolCall {
                id: &self.id,
                status,
                call_id: &self.call_id,
                name: &self.name,
                input: if done {
                    custom_input(&self.text)
                } else {
                    Cow::Borrowed("")
                },
            },
        }
    }
}

/// The events that carry the whole response object.
#[derive(Clone, Copy)]
enum Lifecycle<'a> {
    Created,
    InProgress,
    /// `response.completed` or `response.incomplete`, by the finish reason.
    Terminal,
    Failed(&'a str),
}

/// Turns canonical events into the Responses SSE events a client parses.
///
/// The stream opens with `response.created` and `response.in_progress`. Each canonical part
/// becomes one output item, numbered by `output_index` in order of appearance: text a
/// `message` item with one `output_text` content part, reasoning a `reasoning` item with one
/// summary part, a tool call a `function_call` item (or `custom_tool_call` for the client's
/// custom tools). A text or reasoning item is finished (`…done` events) when the next item
/// starts; tool calls stay open until [`StreamEncoder::finish`], because a provider may
/// interleave the arguments of parallel calls. The terminal event (`response.completed`, or
/// `response.incomplete` after a length or content-filter stop) waits for `finish`, so usage
/// that arrives after the finish reason is included, and carries the whole response.
///
/// An [`StreamEvent::Error`] ends the stream with an `error` event and `response.failed`
/// (whose `response.error` Codex CLI reads).
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    custom_tools: HashSet<String>,
    started: bool,
    ended: bool,
    sequence: u64,
    items: Vec<EncItem>,
    /// Canonical part index -> output index.
    parts: HashMap<usize, usize>,
    /// The text or reasoning item still receiving deltas.
    open: Option<usize>,
    /// The usage and finish reason `finish` writes.
    closing: Closing,
}

impl StreamEncoder {
    /// `model` is named in the response if the upstream's stream names none; `created` is the
    /// response's `created_at` (usually [`openai_chat::unix_now`](crate::openai_chat::unix_now)).
    pub fn new(model: impl Into<String>, created: u64) -> Self {
        Self {
            id: response_id(""),
            model: model.into(),
            created,
            custom_tools: HashSet::new(),
            started: false,
            ended: false,
            sequence: 0,
            items: Vec::new(),
            parts: HashMap::new(),
            open: None,
            closing: Closing::default(),
        }
    }

    /// The client's custom tools (from [`custom_tool_names`]): their calls are sent as
    /// `custom_tool_call` items with the text of the `input` argument.
    ///
    /// [`custom_tool_names`]: super::custom_tool_names
    #[must_use]
    pub fn with_custom_tools(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.custom_tools.extend(names);
        self
    }

    /// Writes an event carrying the whole response object.
    fn lifecycle(&mut self, kind: Lifecycle<'_>, out: &mut Vec<u8>) {
        let (status, incomplete_details) = match kind {
            Lifecycle::Created | Lifecycle::InProgress => ("in_progress", None),
            Lifecycle::Terminal => status_of(self.closing.finish()),
            Lifecycle::Failed(_) => ("failed", None),
        };
        let started = matches!(kind, Lifecycle::Created | Lifecycle::InProgress);
        let response = OutResponse {
            id: &self.id,
            object: "response",
            created_at: self.created,
            status,
            error: match kind {
                Lifecycle::Failed(message) => Some(OutResponseError {
                    code: "server_error",
                    message,
                }),
                _ => None,
            },
            incomplete_details,
            instructions: None,
            model: &self.model,
            // The terminal events carry every item in its final form: clients (the SDKs'
            // `get_final_response`, Codex's usage) read the answer from there.
            output: if started {
                Vec::new()
            } else {
                self.items
                    .iter()
                    .map(|item| OutOutput::Item(item.wire(true)))
                    .collect()
            },
            parallel_tool_calls: true,
            tool_choice: "auto",
            tools: [],
            usage: (!started).then(|| OutUsage::from_canonical(self.closing.usage())),
        };
        let event = match kind {
            Lifecycle::Created => OutEvent::Created { response },
            Lifecycle::InProgress => OutEvent::InProgress { response },
            Lifecycle::Failed(_) => OutEvent::Failed { response },
            Lifecycle::Terminal if status == "completed" => OutEvent::Completed { response },
            Lifecycle::Terminal => OutEvent::Incomplete { response },
        };
        write_event(out, &mut self.sequence, &event);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.lifecycle(Lifecycle::Created, out);
        self.lifecycle(Lifecycle::InProgress, out);
    }

    /// The output index of the text or reasoning item for canonical part `index`, opened (and
    /// the previous one finished) if this is its first event.
    fn streaming_item(&mut self, index: usize, kind: EncKind, out: &mut Vec<u8>) -> usize {
        self.start(out);
        if let Some(&at) = self.parts.get(&index) {
            let item = &self.items[at];
            if item.kind == kind && !item.done {
                return at;
            }
        }
        if let Some(open) = self.open.take() {
            self.close(open, out);
        }
        let prefix = if kind == EncKind::Message {
            "msg"
        } else {
            "rs"
        };
        let at = self.push_item(index, kind, prefix, String::new(), String::new());
        self.open = Some(at);
        let item = &self.items[at];
        write_event(
            out,
            &mut self.sequence,
            &OutEvent::ItemAdded {
                output_index: at,
                item: item.wire(false),
            },
        );
        if kind == EncKind::Message {
            write_event(
                out,
                &mut self.sequence,
                &OutEvent::PartAdded {
                    item_id: &item.id,
                    output_index: at,
                    content_index: 0,
                    part: output_text(""),
                },
            );
        }
        at
    }

    fn open_call(
        &mut self,
        index: usize,
        call_id: String,
        name: String,
        out: &mut Vec<u8>,
    ) -> usize {
        self.start(out);
        if let Some(open) = self.open.take() {
            self.close(open, out);
        }
        let (kind, prefix) = if self.custom_tools.contains(&name) {
            (EncKind::CustomToolCall, "ctc")
        } else {
            (EncKind::FunctionCall, "fc")
        };
        let at = self.push_item(index, kind, prefix, call_id, name);
        write_event(
            out,
            &mut self.sequence,
            &OutEvent::ItemAdded {
                output_index: at,
                item: self.items[at].wire(false),
            },
        );
        at
    }

    fn push_item(
        &mut self,
        index: usize,
        kind: EncKind,
        prefix: &str,
        call_id: String,
        name: String,
    ) -> usize {
        let at = self.items.len();
        self.items.push(EncItem {
            id: item_id(prefix, &self.id, at),
            kind,
            text: String::new(),
            call_id,
            name,
            encrypted: None,
            done: false,
        });
        self.parts.insert(index, at);
        at
    }

    /// Sends the `…done` events of item `at`, once.
    fn close(&mut self, at: usize, out: &mut Vec<u8>) {
        let Some(item) = self.items.get_mut(at) else {
            return;
        };
        if item.done {
            return;
        }
        item.done = true;
        let item = &self.items[at];
        let sequence = &mut self.sequence;
        let id = item.id.as_str();
        match item.kind {
            EncKind::Message => {
                write_event(
                    out,
                    sequence,
                    &OutEvent::TextDone {
                        item_id: id,
                        output_index: at,
                        content_index: 0,
                        text: &item.text,
                        logprobs: [],
                    },
                );
                write_event(
                    out,
                    sequence,
                    &OutEvent::PartDone {
                        item_id: id,
                        output_index: at,
                        content_index: 0,
                        part: output_text(&item.text),
                    },
                );
            }
            EncKind::Reasoning if !item.text.is_empty() => {
                write_event(
                    out,
                    sequence,
                    &OutEvent::SummaryTextDone {
                        item_id: id,
                        output_index: at,
                        summary_index: 0,
                        text: &item.text,
                    },
                );
                write_event(
                    out,
                    sequence,
                    &OutEvent::SummaryPartDone {
                        item_id: id,
                        output_index: at,
                        summary_index: 0,
                        part: OutSummary {
                            kind: "summary_text",
                            text: &item.text,
                        },
                    },
                );
            }
            EncKind::Reasoning => {}
            EncKind::FunctionCall => write_event(
                out,
                sequence,
                &OutEvent::ArgsDone {
                    item_id: id,
                    output_index: at,
                    arguments: if item.text.is_empty() {
                        "{}"
                    } else {
                        &item.text
                    },
                },
            ),
            EncKind::CustomToolCall => {
                let input = custom_input(&item.text);
                if !input.is_empty() {
                    write_event(
                        out,
                        sequence,
                        &OutEvent::CustomInputDelta {
                            item_id: id,
                            output_index: at,
                            delta: &input,
                        },
                    );
                }
                write_event(
                    out,
                    sequence,
                    &OutEvent::CustomInputDone {
                        item_id: id,
                        output_index: at,
                        input: &input,
                    },
                );
            }
        }
        write_event(
            out,
            sequence,
            &OutEvent::ItemDone {
                output_index: at,
                item: item.wire(true),
            },
        );
    }
}

impl EncodeStream for StreamEncoder {
    /// Appends the SSE bytes for `event` to `out`.
    fn encode_open(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::MessageStart { id, model } => {
                if !self.started {
                    // An empty id keeps the default: `response_id` gives it for "".
                    self.id = response_id(id);
                    if !model.is_empty() {
                        self.model.clone_from(model);
                    }
                    self.start(out);
                }
            }
            StreamEvent::TextDelta { index, text } => {
                if text.is_empty() {
                    return;
                }
                let at = self.streaming_item(*index, EncKind::Message, out);
                let item = &mut self.items[at];
                item.text.push_str(text);
                write_event(
                    out,
                    &mut self.sequence,
                    &OutEvent::TextDelta {
                        item_id: &item.id,
                        output_index: at,
                        content_index: 0,
                        delta: text,
                        logprobs: [],
                    },
                );
            }
            StreamEvent::ReasoningDelta { index, text } => {
                if text.is_empty() {
                    return;
                }
                let at = self.streaming_item(*index, EncKind::Reasoning, out);
                let item = &mut self.items[at];
                if item.text.is_empty() {
                    write_event(
                        out,
                        &mut self.sequence,
                        &OutEvent::SummaryPartAdded {
                            item_id: &item.id,
                            output_index: at,
                            summary_index: 0,
                            part: OutSummary {
                                kind: "summary_text",
                                text: "",
                            },
                        },
                    );
                }
                item.text.push_str(text);
                write_event(
                    out,
                    &mut self.sequence,
                    &OutEvent::SummaryTextDelta {
                        item_id: &item.id,
                        output_index: at,
                        summary_index: 0,
                        delta: text,
                    },
                );
            }
            // Responses has one slot for reasoning proof; the translated path has tagged it
            // with its issuer, so it finds its way back to the provider that made it.
            StreamEvent::ReasoningSignature { index, signature } => {
                let at = self.streaming_item(*index, EncKind::Reasoning, out);
                self.items[at].encrypted = Some(signature.clone());
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                if !self.parts.contains_key(index) {
                    self.open_call(*index, id.clone(), name.clone(), out);
                }
            }
            StreamEvent::ToolCallArgsDelta { index, fragment } => {
                let at = match self.parts.get(index) {
                    Some(&at) => at,
                    // Arguments before their start: the provider skipped the start event.
                    None => self.open_call(
                        *index,
                        format!("call_flexiproxy_{index}"),
                        String::new(),
                        out,
                    ),
                };
                let item = &mut self.items[at];
                if item.done || fragment.is_empty() {
                    return;
                }
                item.text.push_str(fragment);
                // A custom tool's text is only known once its JSON is complete.
                if item.kind == EncKind::FunctionCall {
                    write_event(
                        out,
                        &mut self.sequence,
                        &OutEvent::ArgsDelta {
                            item_id: &item.id,
                            output_index: at,
                            delta: fragment,
                        },
                    );
                }
            }
            StreamEvent::Usage(usage) => self.closing.add_usage(usage),
            StreamEvent::Finish(reason) => self.closing.set_finish(reason),
            StreamEvent::Error { message } => {
                self.start(out);
                self.ended = true;
                write_event(
                    out,
                    &mut self.sequence,
                    &OutEvent::Error {
                        code: "server_error",
                        message,
                        param: None,
                    },
                );
                self.lifecycle(Lifecycle::Failed(message), out);
            }
        }
    }

    /// Ends the client's stream: finishes every open item and sends `response.completed` (or
    /// `response.incomplete`) with the whole response and its usage.
    fn end_stream(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        for at in 0..self.items.len() {
            self.close(at, out);
        }
        self.ended = true;
        self.lifecycle(Lifecycle::Terminal, out);
    }

    fn has_ended(&self) -> bool {
        self.ended
    }
}
