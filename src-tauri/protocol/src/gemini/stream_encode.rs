//! Canonical [`StreamEvent`]s into the chunks a Gemini client reads, framed as SSE or as the
//! JSON array Google streams without `alt=sse` ([`Framing`], which follows the client's URL).
//!
//! Chunks are `response`'s candidate and usage shapes, their parts written by
//! `request_encode`'s part encoder for a client. What this file adds is the holding back of
//! function calls until their arguments are whole, since Gemini sends each call in one piece.
//! [`StreamEncoder`]'s methods are the codec's `EncodeStream` itself.

use serde::Serialize;

use super::request_encode::signature_only;
use super::response::{
    OutCandidate, OutError, OutErrorBody, OutUsage, error_status, finish_to_gemini,
};
use super::wire::{OutContent, OutFields, OutFunctionCall, OutPart};
use crate::canonical::{FinishReason, StreamEvent, TokenUsage, merge_usage, untag_proof};
use crate::codec::EncodeStream;
use crate::to_json;
use crate::tool_arguments::ArgumentsObject;

// ---------------------------------------------------------------------------------------------
// Stream: canonical events -> Gemini chunks.

/// How a client's stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `?alt=sse`: `data: {GenerateContentResponse}\r\n\r\n` per chunk (what the SDKs and
    /// Gemini CLI ask for).
    Sse,
    /// No `alt=sse`: one JSON array written element by element, `[{…}\n,{…}\n]`.
    JsonArray,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutChunk<'a> {
    candidates: [OutCandidate<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<OutUsage>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Debug)]
struct PendingCall {
    index: usize,
    id: String,
    name: String,
    arguments: String,
}

/// Turns canonical events into `GenerateContentResponse` chunks for a client.
///
/// Text and thoughts are sent as they come, one part per chunk. Gemini sends a function call
/// whole, with its arguments as an object, so calls are held until their arguments are
/// complete: until the next text, thought or finish event, or the end (parallel calls go out
/// together in one chunk, as Gemini sends them). The last chunk, written by
/// [`StreamEncoder::finish`], carries the finish reason and the usage, so usage that arrives
/// after the finish reason is included. Signatures from other providers are not forwarded:
/// a Gemini client would send them back as Gemini's own.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    id: String,
    framing: Framing,
    chunks: usize,
    ended: bool,
    calls: Vec<PendingCall>,
    usage: TokenUsage,
    usage_known: bool,
    finish: Option<FinishReason>,
}

impl StreamEncoder {
    /// `model` names the model in `modelVersion` if the upstream's stream does not; `framing`
    /// follows the client's URL (`alt=sse` or not).
    pub fn new(model: impl Into<String>, framing: Framing) -> Self {
        Self {
            model: model.into(),
            id: "flexiproxy".to_owned(),
            framing,
            chunks: 0,
            ended: false,
            calls: Vec::new(),
            usage: TokenUsage::default(),
            usage_known: false,
            finish: None,
        }
    }

    fn call(&mut self, index: usize) -> Option<&mut PendingCall> {
        self.calls.iter_mut().find(|c| c.index == index)
    }

    fn flush_calls(&mut self, out: &mut Vec<u8>) {
        if self.calls.is_empty() {
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        let parts = calls
            .iter()
            .map(|call| {
                OutPart::Typed(OutFields {
                    function_call: Some(OutFunctionCall {
                        id: Some(&call.id),
                        name: &call.name,
                        args: ArgumentsObject::of(&call.arguments),
                    }),
                    ..OutFields::default()
                })
            })
            .collect();
        self.chunk(parts, None, out);
    }

    fn chunk(&mut self, parts: Vec<OutPart<'_>>, finish: Option<&'static str>, out: &mut Vec<u8>) {
        let chunk = OutChunk {
            candidates: [OutCandidate {
                content: OutContent {
                    role: "model",
                    parts,
                },
                finish_reason: finish,
                index: 0,
            }],
            usage_metadata: self
                .usage_known
                .then(|| OutUsage::from_canonical(&self.usage)),
            model_version: &self.model,
            response_id: &self.id,
        };
        let bytes = to_json(&chunk);
        self.write_bytes(&bytes, out);
    }

    fn write(&mut self, value: &impl Serialize, out: &mut Vec<u8>) {
        let bytes = to_json(value);
        self.write_bytes(&bytes, out);
    }

    fn write_bytes(&mut self, json: &[u8], out: &mut Vec<u8>) {
        match self.framing {
            Framing::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\r\n\r\n");
            }
            Framing::JsonArray => {
                out.push(if self.chunks == 0 { b'[' } else { b',' });
                out.extend_from_slice(json);
                out.push(b'\n');
            }
        }
        self.chunks += 1;
    }

    /// Closes a JSON array (SSE needs nothing).
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.framing == Framing::JsonArray {
            if self.chunks == 0 {
                out.push(b'[');
            }
            out.push(b']');
        }
    }
}

impl EncodeStream for StreamEncoder {
    /// Appends the bytes for `event` to `out`.
    fn encode_open(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::MessageStart { id, model } => {
                if self.chunks == 0 {
                    if !id.is_empty() {
                        self.id.clone_from(id);
                    }
                    if !model.is_empty() {
                        self.model.clone_from(model);
                    }
                }
            }
            StreamEvent::TextDelta { text, .. } => {
                self.flush_calls(out);
                let part = OutPart::Typed(OutFields {
                    text: Some(text),
                    ..OutFields::default()
                });
                self.chunk(vec![part], None, out);
            }
            StreamEvent::ReasoningDelta { text, .. } => {
                self.flush_calls(out);
                let part = OutPart::Typed(OutFields {
                    text: Some(text),
                    thought: Some(true),
                    ..OutFields::default()
                });
                self.chunk(vec![part], None, out);
            }
            // Only tagged proofs reach the client (`canonical::tag_proof`): bare ones are
            // meaningful only to the provider that made them.
            StreamEvent::ReasoningSignature { signature, .. } => {
                if untag_proof(signature).is_some() {
                    self.flush_calls(out);
                    self.chunk(vec![signature_only(signature)], None, out);
                }
            }
            StreamEvent::ToolCallStart { index, id, name } => match self.call(*index) {
                Some(call) => {
                    call.id.clone_from(id);
                    call.name.clone_from(name);
                }
                None => self.calls.push(PendingCall {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                }),
            },
            StreamEvent::ToolCallArgsDelta { index, fragment } => match self.call(*index) {
                Some(call) => call.arguments.push_str(fragment),
                // Arguments before their start: the provider skipped the start event.
                None => self.calls.push(PendingCall {
                    index: *index,
                    id: format!("call_flexiproxy_{index}"),
                    name: String::new(),
                    arguments: fragment.clone(),
                }),
            },
            StreamEvent::Usage(usage) => {
                merge_usage(&mut self.usage, usage);
                self.usage_known = true;
            }
            StreamEvent::Finish(reason) => {
                self.flush_calls(out);
                self.finish = Some(reason.clone());
            }
            StreamEvent::Error { message } => {
                self.ended = true;
                // The SDKs raise an APIError for a chunk that is `{"error": …}`.
                let error = OutError {
                    error: OutErrorBody {
                        code: 500,
                        message,
                        status: error_status(500),
                    },
                };
                self.write(&error, out);
                self.close(out);
            }
        }
    }

    /// Ends the client's stream: held function calls, then the last chunk with the finish
    /// reason and usage (and the closing `]` of a JSON array).
    fn end_stream(&mut self, out: &mut Vec<u8>) {
        self.flush_calls(out);
        let reason = self.finish.as_ref().map_or("STOP", finish_to_gemini);
        let part = OutPart::Typed(OutFields {
            text: Some(""),
            ..OutFields::default()
        });
        self.usage_known = true;
        self.chunk(vec![part], Some(reason), out);
        self.ended = true;
        self.close(out);
    }

    fn has_ended(&self) -> bool {
        self.ended
    }
}
