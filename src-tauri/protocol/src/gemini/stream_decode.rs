//! A Gemini provider's `?alt=sse` stream into canonical [`StreamEvent`]s.
//!
//! Every event is a whole response chunk, so its parts decode through `request_decode`'s part
//! decoder and its finish reason through `response`, exactly as a whole answer's would. What
//! is particular to a stream lives here: part indices that last while text or a thought
//! continues, and signatures that complete the thought before them. [`StreamDecoder`]'s
//! methods are the codec's `DecodeStream` itself, so the gateway reaches it through `mod.rs`.

use super::request_decode::{Calls, decode_part};
use super::response::{finish_from_gemini, first_candidate};
use super::wire::{InResponse, InUsage};
use crate::canonical::{DecodeError, FinishReason, Part, StreamEvent, TokenUsage};
use crate::codec::DecodeStream;
use crate::stream_progress::{DeltaParts, StreamEnd};

// ---------------------------------------------------------------------------------------------
// Stream: Gemini SSE -> canonical events.

/// Turns a provider's `?alt=sse` stream into canonical events. Feed it whole SSE events (from
/// [`sse::EventSplitter`](crate::sse::EventSplitter)); call [`StreamDecoder::finish`] when the
/// upstream body ends.
///
/// Every event is a whole `GenerateContentResponse` chunk. Text and thoughts keep one part
/// index while they continue; each function call (Gemini sends them whole) gets its own and
/// arrives as a start plus one argument fragment. A signature on a thought part is sent with
/// it; one on the part right after a thought (a function call's) completes that thought. Any
/// other signature is dropped: a stream has no event for a signature without reasoning (nor
/// for one on a part already closed), and no other protocol's client could send it back to
/// Gemini anyway.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    end: StreamEnd,
    parts: DeltaParts,
    /// The last reasoning part and whether it has its signature.
    last_reasoning: Option<(usize, bool)>,
    calls: Option<Calls>,
    saw_calls: bool,
    usage: Option<TokenUsage>,
}

impl StreamDecoder {
    fn part(&mut self, part: Part, out: &mut Vec<StreamEvent>) {
        match part {
            Part::Reasoning(reasoning) if reasoning.text.is_empty() => {
                // A signature riding on the part right after a thought completes that thought.
                if let (Some(signature), Some(index), Some((_, false))) = (
                    reasoning.encrypted.or(reasoning.signature),
                    self.parts.reasoning_in_progress(),
                    self.last_reasoning,
                ) {
                    self.last_reasoning = Some((index, true));
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
            }
            Part::Reasoning(reasoning) => {
                let index = self.parts.reasoning();
                let signed = reasoning.signature.is_some();
                self.last_reasoning = Some((index, signed));
                out.push(StreamEvent::ReasoningDelta {
                    index,
                    text: reasoning.text,
                });
                if let Some(signature) = reasoning.signature {
                    out.push(StreamEvent::ReasoningSignature { index, signature });
                }
            }
            Part::Text { text } => {
                let index = self.parts.text();
                out.push(StreamEvent::TextDelta { index, text });
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let index = self.parts.tool_call();
                self.saw_calls = true;
                out.push(StreamEvent::ToolCallStart { index, id, name });
                out.push(StreamEvent::ToolCallArgsDelta {
                    index,
                    fragment: arguments,
                });
            }
            // Images, results and unknown parts have no stream event.
            _ => {}
        }
    }
}

impl DecodeStream for StreamDecoder {
    /// Whether the chunk with the finish reason (or an error) was seen.
    fn is_done(&self) -> bool {
        self.end.is_done()
    }

    /// Decodes one event's data.
    fn decode_data(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        if data.trim_ascii().is_empty() {
            return Ok(Vec::new());
        }
        let chunk: InResponse = serde_json::from_slice(data)?;
        let mut out = Vec::new();
        if let Some(error) = chunk.error {
            self.end.mark_done();
            let message = if error.status.is_empty() {
                error.message
            } else {
                format!("{}: {}", error.status, error.message)
            };
            out.push(StreamEvent::Error { message });
            return Ok(out);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::MessageStart {
                id: chunk.response_id.clone(),
                model: chunk.model_version.clone(),
            });
        }
        let calls = self
            .calls
            .get_or_insert_with(|| Calls::for_answer(&chunk.response_id));
        let mut finish = None;
        let blocked = chunk.prompt_feedback.and_then(|f| f.block_reason).is_some();
        if let Some(candidate) = first_candidate(chunk.candidates) {
            let mut parts = Vec::new();
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                decode_part(part, "candidates[0].content.parts", calls, &mut parts)?;
            }
            for part in parts {
                self.part(part, &mut out);
            }
            finish = candidate
                .finish_reason
                .map(|reason| finish_from_gemini(&reason, self.saw_calls));
        } else if blocked {
            // The prompt itself was refused: no candidates, only the reason.
            finish = Some(FinishReason::ContentFilter);
        }
        if let Some(usage) = chunk.usage_metadata.map(InUsage::to_canonical)
            && self.usage != Some(usage)
        {
            self.usage = Some(usage);
            out.push(StreamEvent::Usage(usage));
        }
        if let Some(reason) = finish {
            self.end.mark_done();
            out.push(StreamEvent::Finish(reason));
        }
        Ok(out)
    }

    /// Called when the upstream body ends: an error event unless a finish reason (or an error)
    /// was seen.
    fn finish(&mut self) -> Vec<StreamEvent> {
        self.end.finish("its last chunk (one with finishReason)")
    }
}
