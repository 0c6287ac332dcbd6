//! What every provider-stream decoder keeps besides its protocol's own state: whether the
//! stream has said its last word ([`StreamEnd`]) and which canonical part index comes next
//! ([`PartIndices`], and [`DeltaParts`] for wires whose text and reasoning deltas carry no
//! part index).
//!
//! Each protocol's `StreamDecoder` (`<protocol>/stream_decode.rs`) embeds these and answers
//! the codec's `DecodeStream::is_done` and `DecodeStream::finish` through [`StreamEnd`], so the
//! rule "a body that ends before its terminal event is an error" is written once. The error
//! text still names each protocol's own terminal event: a log then says which one never came.

use crate::canonical::StreamEvent;

/// Whether a provider's stream ended properly: its terminal event (or an error) was seen.
#[derive(Debug, Default)]
pub(crate) struct StreamEnd {
    done: bool,
}

impl StreamEnd {
    /// Whether the terminal event (or an error) was seen.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The terminal event (or an error) arrived.
    pub(crate) fn mark_done(&mut self) {
        self.done = true;
    }

    /// The upstream body ended: nothing if the stream was complete, else one error event whose
    /// message is "the provider's stream ended before " followed by `last_event`, the
    /// protocol's name for what it was waiting for. Either way the stream is done afterwards,
    /// so a second call adds nothing.
    pub(crate) fn finish(&mut self, last_event: &str) -> Vec<StreamEvent> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        vec![StreamEvent::Error {
            message: format!("the provider's stream ended before {last_event}"),
        }]
    }
}

/// Canonical part indices, handed out in order of appearance (protocols whose wire has no
/// index of its own for a part, or whose indices do not map one to one onto canonical parts).
#[derive(Debug, Default)]
pub(crate) struct PartIndices {
    next: usize,
}

impl PartIndices {
    /// The next unused index.
    pub(crate) fn allocate(&mut self) -> usize {
        let index = self.next;
        self.next += 1;
        index
    }
}

/// Canonical part indices for a wire that streams text and reasoning as bare deltas (Chat
/// Completions, Gemini): a delta continues the part of its kind that came last, and opens a
/// new part once another part came between; a tool call is a part of its own.
#[derive(Debug, Default)]
pub(crate) struct DeltaParts {
    indices: PartIndices,
    /// The kind and index of the part the last delta went to; `None` after a tool call.
    continuing: Option<(Delta, usize)>,
}

/// What a bare delta carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delta {
    Text,
    Reasoning,
}

impl DeltaParts {
    /// The index of a text delta's part.
    pub(crate) fn text(&mut self) -> usize {
        self.delta(Delta::Text)
    }

    /// The index of a reasoning delta's part.
    pub(crate) fn reasoning(&mut self) -> usize {
        self.delta(Delta::Reasoning)
    }

    /// The index of a new tool call; text or reasoning after it open new parts.
    pub(crate) fn tool_call(&mut self) -> usize {
        self.continuing = None;
        self.indices.allocate()
    }

    /// The reasoning part the last delta went to, if the last delta was reasoning.
    pub(crate) fn reasoning_in_progress(&self) -> Option<usize> {
        self.continuing
            .filter(|(kind, _)| *kind == Delta::Reasoning)
            .map(|(_, index)| index)
    }

    fn delta(&mut self, kind: Delta) -> usize {
        match self.continuing {
            Some((last, index)) if last == kind => index,
            _ => {
                let index = self.indices.allocate();
                self.continuing = Some((kind, index));
                index
            }
        }
    }
}
