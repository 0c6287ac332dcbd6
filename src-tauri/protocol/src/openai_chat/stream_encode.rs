//! Stream: canonical events -> Chat Completions chunks.
//!
//! The gateway's translated stream (decoded from any protocol's provider) becomes the
//! `chat.completion.chunk` events an OpenAI SDK parses: a role chunk first, one chunk per
//! delta, a finish chunk, the usage chunk when the client asked for it, then `data: [DONE]`.
//! Chunks and usage share their wire types and finish reasons with `response`.

use std::collections::HashMap;

use serde::Serialize;

use super::response::finish_to_openai;
use super::wire::{
    OutChatUsage, OutChunk, OutChunkChoice, OutChunkDelta, OutFunctionDelta, OutStreamError,
    OutStreamErrorBody, OutToolCallDelta,
};
use crate::canonical::{StreamEvent, TokenUsage, merge_usage};
use crate::codec::EncodeStream;

/// Turns canonical events into Chat Completions chunks (`data: {…}` events, then
/// `data: [DONE]`) for a client. Tool calls are numbered 0, 1, … in order of appearance.
/// Usage is sent as the final `choices: []` chunk, and only when the client asked for it.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    ended: bool,
    finish_sent: bool,
    /// Canonical part index -> OpenAI tool-call index.
    tools: HashMap<usize, usize>,
    usage: TokenUsage,
}

impl StreamEncoder {
    /// `model` and a generated id are used if the upstream's stream names none;
    /// `include_usage` is the client's `stream_options.include_usage`.
    pub fn new(model: impl Into<String>, created: u64, include_usage: bool) -> Self {
        Self {
            id: "chatcmpl-flexiproxy".to_owned(),
            model: model.into(),
            created,
            include_usage,
            started: false,
            ended: false,
            finish_sent: false,
            tools: HashMap::new(),
            usage: TokenUsage::default(),
        }
    }

    /// The first chunk, as OpenAI sends it: the role and empty content.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.chunk(
            out,
            OutChunkDelta {
                role: Some("assistant"),
                content: Some(""),
                ..OutChunkDelta::default()
            },
            None,
        );
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: OutChunkDelta<'_>, finish: Option<&'static str>) {
        let choice = OutChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        };
        self.write_chunk(out, vec![choice], None);
    }

    /// A tool-call delta for canonical part `index`: the call's id, type and name when it
    /// starts (`call` holds the id and name), an arguments fragment after that.
    fn tool_chunk(
        &mut self,
        index: usize,
        call: Option<(&str, &str)>,
        arguments: &str,
        out: &mut Vec<u8>,
    ) {
        self.start(out);
        let next = self.tools.len();
        let tool = *self.tools.entry(index).or_insert(next);
        let delta = OutToolCallDelta {
            index: tool,
            id: call.map(|(id, _)| id),
            kind: call.map(|_| "function"),
            function: OutFunctionDelta {
                name: call.map(|(_, name)| name),
                arguments,
            },
        };
        self.chunk(out, tool_delta(delta), None);
    }

    /// A `chat.completion.chunk` with this stream's id, time and model.
    fn write_chunk(
        &self,
        out: &mut Vec<u8>,
        choices: Vec<OutChunkChoice<'_>>,
        usage: Option<OutChatUsage>,
    ) {
        write_data(
            out,
            &OutChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices,
                usage,
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
                    if !id.is_empty() {
                        self.id.clone_from(id);
                    }
                    if !model.is_empty() {
                        self.model.clone_from(model);
                    }
                    self.start(out);
                }
            }
            StreamEvent::TextDelta { text, .. } => {
                self.start(out);
                self.chunk(
                    out,
                    OutChunkDelta {
                        content: Some(text),
                        ..OutChunkDelta::default()
                    },
                    None,
                );
            }
            StreamEvent::ReasoningDelta { text, .. } => {
                self.start(out);
                self.chunk(
                    out,
                    OutChunkDelta {
                        reasoning_content: Some(text),
                        ..OutChunkDelta::default()
                    },
                    None,
                );
            }
            // Signatures are only meaningful to the provider that made them.
            StreamEvent::ReasoningSignature { .. } => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.tool_chunk(*index, Some((id, name)), "", out);
            }
            StreamEvent::ToolCallArgsDelta { index, fragment } => {
                self.tool_chunk(*index, None, fragment, out);
            }
            StreamEvent::Usage(usage) => merge_usage(&mut self.usage, usage),
            StreamEvent::Finish(reason) => {
                self.start(out);
                if !self.finish_sent {
                    self.finish_sent = true;
                    self.chunk(
                        out,
                        OutChunkDelta::default(),
                        Some(finish_to_openai(reason)),
                    );
                }
            }
            StreamEvent::Error { message } => {
                self.ended = true;
                // The OpenAI SDKs raise an APIError for a data event holding `error`.
                write_data(
                    out,
                    &OutStreamError {
                        error: OutStreamErrorBody {
                            message,
                            kind: "upstream_error",
                            code: None,
                        },
                    },
                );
            }
        }
    }

    /// Ends the client's stream: the finish chunk if none was sent, the usage chunk if asked
    /// for, and `data: [DONE]`.
    fn end_stream(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        if !self.finish_sent {
            self.finish_sent = true;
            self.chunk(out, OutChunkDelta::default(), Some("stop"));
        }
        if self.include_usage {
            let usage = OutChatUsage::from_canonical(&self.usage);
            self.write_chunk(out, Vec::new(), Some(usage));
        }
        self.ended = true;
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn has_ended(&self) -> bool {
        self.ended
    }
}

fn tool_delta(call: OutToolCallDelta<'_>) -> OutChunkDelta<'_> {
    OutChunkDelta {
        tool_calls: Some([call]),
        ..OutChunkDelta::default()
    }
}

fn write_data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    // Writing our wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}
