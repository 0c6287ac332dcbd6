//! Canonical [`StreamEvent`]s into the SSE events the Anthropic SDKs parse: `message_start`,
//! numbered `content_block_start/delta/stop`, `message_delta`, `message_stop`, `ping` and
//! `error`.
//!
//! The event shapes live here; stop reasons, usage and the error object come from `response`,
//! tool ids from `wire`, so a streamed answer says what a whole one would. `mod.rs` plugs
//! [`StreamEncoder`] into the codec's `EncodeStream`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use super::response::{ErrorObject, OutUsage, finish_to_anthropic};
use super::wire::tool_id;
use crate::canonical::StreamEvent;
use crate::closing::Closing;
use crate::codec::EncodeStream;
use crate::tool_arguments::EmptyObject;

// ---------------------------------------------------------------------------------------------
// Stream: canonical events -> Anthropic SSE.

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutEvent<'a> {
    MessageStart {
        message: OutStartMessage<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: OutStartBlock<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: OutDelta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: OutMessageDelta,
        usage: OutUsage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorObject<'a>,
    },
}

impl OutEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
            Self::Error { .. } => "error",
        }
    }
}

#[derive(Serialize)]
struct OutStartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutStartBlock<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: EmptyObject,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum OutDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct OutMessageDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    ToolUse,
    Thinking,
}

/// Turns canonical events into Anthropic SSE bytes for a client.
///
/// Blocks are numbered from 0 in the order their parts first appear, and one block is open at
/// a time: a new part closes the previous block, as Anthropic's own streams do. A late delta
/// for an already closed block (a provider interleaving parallel tool calls) is still sent
/// with that block's index; the SDKs accumulate deltas by index. The closing `message_delta`
/// waits for [`StreamEncoder::finish`], so usage that arrives after the finish reason (OpenAI's
/// final usage chunk) is included.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    started: bool,
    ended: bool,
    /// Canonical part index -> (block index, kind).
    blocks: HashMap<usize, (usize, BlockKind)>,
    open: Option<usize>,
    next_block: usize,
    /// The usage and finish reason `finish` writes.
    closing: Closing,
}

impl StreamEncoder {
    /// `model` names the model in `message_start` if the upstream's stream does not.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            started: false,
            ended: false,
            blocks: HashMap::new(),
            open: None,
            next_block: 0,
            closing: Closing::default(),
        }
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start("msg_flexiproxy", None, out);
        }
    }

    fn start(&mut self, id: &str, model: Option<&str>, out: &mut Vec<u8>) {
        self.started = true;
        let model = model.unwrap_or(&self.model);
        write_event(
            out,
            &OutEvent::MessageStart {
                message: OutStartMessage {
                    id,
                    kind: "message",
                    role: "assistant",
                    model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: OutUsage::from_canonical(self.closing.usage()),
                },
            },
        );
        write_event(out, &OutEvent::Ping);
    }

    /// The block for part `index`, opened (with an empty start) if this is its first event.
    /// A `content_block_delta` for canonical part `index`, opening its block if needed.
    fn delta(&mut self, index: usize, kind: BlockKind, delta: OutDelta<'_>, out: &mut Vec<u8>) {
        let block = self.block(index, kind, out);
        write_event(
            out,
            &OutEvent::ContentBlockDelta {
                index: block,
                delta,
            },
        );
    }

    fn block(&mut self, index: usize, kind: BlockKind, out: &mut Vec<u8>) -> usize {
        self.ensure_started(out);
        match self.blocks.get(&index) {
            Some(&(block, _)) => block,
            None => self.open_block(index, kind, None, out),
        }
    }

    fn open_block(
        &mut self,
        index: usize,
        kind: BlockKind,
        tool: Option<(&String, &String)>,
        out: &mut Vec<u8>,
    ) -> usize {
        if let Some(&(block, _)) = self.blocks.get(&index) {
            return block;
        }
        self.close_open(out);
        let block = self.next_block;
        self.next_block += 1;
        self.blocks.insert(index, (block, kind));
        self.open = Some(block);
        let content_block = match kind {
            BlockKind::Text => OutStartBlock::Text { text: "" },
            BlockKind::Thinking => OutStartBlock::Thinking {
                thinking: "",
                signature: "",
            },
            BlockKind::ToolUse => {
                let (id, name) = match tool {
                    Some((id, name)) => (tool_id(id), name.as_str()),
                    // Arguments before their start: the provider skipped the start event.
                    None => (Cow::Owned(format!("toolu_flexiproxy_{index}")), ""),
                };
                OutStartBlock::ToolUse {
                    id,
                    name,
                    input: EmptyObject,
                }
            }
        };
        write_event(
            out,
            &OutEvent::ContentBlockStart {
                index: block,
                content_block,
            },
        );
        block
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.open.take() {
            write_event(out, &OutEvent::ContentBlockStop { index: block });
        }
    }
}

impl EncodeStream for StreamEncoder {
    /// Appends the SSE bytes for `event` to `out`.
    fn encode_open(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::MessageStart { id, model } => {
                if !self.started {
                    let model = if model.is_empty() { None } else { Some(model) };
                    self.start(id, model.map(String::as_str), out);
                }
            }
            StreamEvent::TextDelta { index, text } => {
                self.delta(*index, BlockKind::Text, OutDelta::Text { text }, out);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.open_block(*index, BlockKind::ToolUse, Some((id, name)), out);
            }
            StreamEvent::ToolCallArgsDelta { index, fragment } => {
                let delta = OutDelta::InputJson {
                    partial_json: fragment,
                };
                self.delta(*index, BlockKind::ToolUse, delta, out);
            }
            StreamEvent::ReasoningDelta { index, text } => {
                let delta = OutDelta::Thinking { thinking: text };
                self.delta(*index, BlockKind::Thinking, delta, out);
            }
            StreamEvent::ReasoningSignature { index, signature } => {
                let delta = OutDelta::Signature { signature };
                self.delta(*index, BlockKind::Thinking, delta, out);
            }
            StreamEvent::Usage(usage) => self.closing.add_usage(usage),
            StreamEvent::Finish(reason) => self.closing.set_finish(reason),
            StreamEvent::Error { message } => {
                self.ensure_started(out);
                self.ended = true;
                write_event(
                    out,
                    &OutEvent::Error {
                        error: ErrorObject {
                            kind: Cow::Borrowed("api_error"),
                            message: Cow::Borrowed(message),
                        },
                    },
                );
            }
        }
    }

    /// Ends the client's stream: closes the open block, sends `message_delta` (stop reason and
    /// usage) and `message_stop`.
    fn end_stream(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close_open(out);
        self.ended = true;
        let stop_reason = self
            .closing
            .finish()
            .map_or("end_turn", |f| finish_to_anthropic(f, None));
        write_event(
            out,
            &OutEvent::MessageDelta {
                delta: OutMessageDelta {
                    stop_reason,
                    stop_sequence: None,
                },
                usage: OutUsage::from_canonical(self.closing.usage()),
            },
        );
        write_event(out, &OutEvent::MessageStop);
    }

    fn has_ended(&self) -> bool {
        self.ended
    }
}

fn write_event(out: &mut Vec<u8>, event: &OutEvent<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing our wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, event);
    out.extend_from_slice(b"\n\n");
}
