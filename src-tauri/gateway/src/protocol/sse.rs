//! Server-sent events framing: splitting a byte stream into whole events.
//!
//! Upstreams write SSE in arbitrary TCP-sized pieces; an event may span two chunks and one
//! chunk may hold many events. [`EventSplitter`] turns chunks into whole events (each ending in
//! its blank line) without copying when a chunk holds only whole events, which is the common
//! case. `relay` uses it to read usage from a stream while relaying it; protocol modules read an
//! event's `data` with [`data`].

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// Reassembles whole SSE events from arbitrary chunks.
#[derive(Debug, Default)]
pub struct EventSplitter {
    partial: BytesMut,
}

impl EventSplitter {
    /// Feeds one chunk and returns the events it completes, in order.
    pub fn push(&mut self, chunk: Bytes) -> Vec<Bytes> {
        let mut events = Vec::new();
        if self.partial.is_empty() {
            let mut rest = chunk;
            while let Some(end) = event_end(&rest) {
                events.push(rest.split_to(end));
            }
            if !rest.is_empty() {
                self.partial.extend_from_slice(&rest);
            }
        } else {
            self.partial.extend_from_slice(&chunk);
            while let Some(end) = event_end(&self.partial) {
                events.push(self.partial.split_to(end).freeze());
            }
        }
        events
    }

    /// What is left when the stream ends: an event the upstream did not terminate.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.partial.is_empty()).then(|| self.partial.split().freeze())
    }
}

/// The offset just past the blank line that ends the first event in `buf`, if there is one.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = memmem::find(buf, b"\n\n").map(|i| i + 2);
    let crlf = memmem::find(buf, b"\n\r\n").map(|i| i + 3);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `data` of an event: its `data:` lines joined by newlines (borrowed when there is one).
pub fn data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut lines = event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value));
    let first = lines.next()?;
    match lines.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            for line in std::iter::once(second).chain(lines) {
                joined.push(b'\n');
                joined.extend_from_slice(line);
            }
            Some(Cow::Owned(joined))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_events_in_one_chunk_are_sliced_not_copied() {
        let chunk = Bytes::from_static(b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        let mut splitter = EventSplitter::default();
        let events = splitter.push(chunk.clone());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].as_ptr(), chunk.as_ptr());
        assert_eq!(&events[1][..], b"data: [DONE]\n\n");
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut splitter = EventSplitter::default();
        assert!(
            splitter
                .push(Bytes::from_static(b"data: {\"a\""))
                .is_empty()
        );
        let events = splitter.push(Bytes::from_static(b":1}\r\n\r\ndata: x\n"));
        assert_eq!(events, vec![Bytes::from_static(b"data: {\"a\":1}\r\n\r\n")]);
        let events = splitter.push(Bytes::from_static(b"\n"));
        assert_eq!(events, vec![Bytes::from_static(b"data: x\n\n")]);
    }

    #[test]
    fn data_lines_are_joined() {
        assert_eq!(
            data(b"event: x\ndata: a\r\ndata:b\n\n").unwrap().as_ref(),
            b"a\nb"
        );
        assert_eq!(data(b": comment\n\n"), None);
        assert_eq!(data(b"data: [DONE]\n\n").unwrap().as_ref(), b"[DONE]");
    }
}
