//! Server-sent events framing: splitting a byte stream into whole events.
//!
//! Upstreams write SSE in arbitrary TCP-sized pieces; an event may span many chunks and one
//! chunk may hold many events. [`EventSplitter`] turns chunks into whole events (each ending in
//! its blank line) without copying when a chunk holds only whole events, which is the common
//! case. the gateway uses it to read usage from a stream while relaying it, `translate` to decode
//! a provider's stream; protocol modules read an event's `data` with [`data`].
//!
//! The framing follows the WHATWG HTML "event stream interpretation": a line ends in CRLF, LF
//! or CR alone, and an event ends at an empty line. The splitter reads every byte once (it
//! remembers where its scan stopped and in which state, so an event that arrives one byte at a
//! time costs no more than one that arrives whole), and an event may not grow past a cap
//! ([`DEFAULT_MAX_EVENT_BYTES`] unless told otherwise): a provider that never ends its event
//! cannot make the gateway buffer without end.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// The largest event accepted by default: generous for Gemini's inline images and a Responses
/// `response.completed` that repeats the whole answer, small enough that a thousand streams
/// cannot exhaust memory with unfinished events.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// An event grew past the splitter's cap before its blank line came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the stream sent an event larger than the gateway's limit of {limit} bytes without ending it \
     (raise it with --max-sse-event-bytes if the provider really sends events this large)"
)]
pub struct EventTooLarge {
    /// The events the same chunk completed before the oversized one began, in order.
    pub events: Vec<Bytes>,
    pub limit: usize,
}

/// Reassembles whole SSE events from arbitrary chunks.
#[derive(Debug)]
pub struct EventSplitter {
    /// Bytes of the event being assembled (it started in an earlier chunk).
    partial: BytesMut,
    scan: Scan,
    max_event: usize,
    /// Set once an event went past the cap: nothing more is read.
    failed: bool,
    /// Bytes looked at, for tests that show the work is linear.
    scanned: u64,
}

impl Default for EventSplitter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

/// Where the line-end scan is inside the current event; carried from one chunk to the next.
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// The last byte was a CR: an LF now completes that CRLF and ends no new line.
    after_cr: bool,
    /// Nothing but the line end has been seen on the current line.
    line_empty: bool,
    /// The event has a non-empty line, so an empty line now ends it. Blank lines before any
    /// content stay with the event that follows, which keeps every byte in some event.
    has_content: bool,
}

impl Scan {
    const START: Self = Self {
        after_cr: false,
        line_empty: true,
        has_content: false,
    };

    /// Scans `buf` from `from`; the offset just past the blank line that ends the current
    /// event, if it is in `buf`. The state is left where the scan stopped.
    fn find_end(&mut self, buf: &[u8], from: usize, scanned: &mut u64) -> Option<usize> {
        let mut at = from;
        while at < buf.len() {
            let Some(found) = memchr::memchr2(b'\r', b'\n', &buf[at..]) else {
                *scanned += (buf.len() - at) as u64;
                if buf.len() > at {
                    self.content();
                }
                return None;
            };
            *scanned += (found + 1) as u64;
            if found > 0 {
                self.content();
            }
            let pos = at + found;
            at = pos + 1;
            if buf[pos] == b'\n' && self.after_cr {
                // The LF of a CRLF whose CR already ended the line.
                self.after_cr = false;
                continue;
            }
            self.after_cr = buf[pos] == b'\r';
            if self.line_empty && self.has_content {
                *self = Self::START;
                if buf[pos] == b'\r' {
                    if buf.get(at) == Some(&b'\n') {
                        // The rest of a CRLF belongs to the event it ends.
                        *scanned += 1;
                        return Some(at + 1);
                    }
                    // An event ending in CR at the end of what has arrived is handed over at
                    // once; an LF coming next (the rest of a CRLF) then opens the next event
                    // and is read as part of this line end, not as a blank line.
                    self.after_cr = true;
                }
                return Some(at);
            }
            self.line_empty = true;
        }
        None
    }

    fn content(&mut self) {
        self.after_cr = false;
        self.line_empty = false;
        self.has_content = true;
    }
}

impl EventSplitter {
    /// A splitter that refuses events longer than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            partial: BytesMut::new(),
            scan: Scan::START,
            max_event: max_event.max(1),
            failed: false,
            scanned: 0,
        }
    }

    /// Feeds one chunk and returns the events it completes, in order; or, when an event grew
    /// past the cap, the events completed before it. After that the splitter takes nothing more.
    pub fn push(&mut self, chunk: Bytes) -> Result<Vec<Bytes>, EventTooLarge> {
        let mut events = Vec::new();
        if self.failed {
            return Err(self.too_large(events));
        }
        if self.partial.is_empty() {
            // Whole events are slices of the chunk: no copy.
            let mut rest = chunk;
            while let Some(end) = self.scan.find_end(&rest, 0, &mut self.scanned) {
                if end > self.max_event {
                    return Err(self.too_large(events));
                }
                events.push(rest.split_to(end));
            }
            if rest.len() > self.max_event {
                return Err(self.too_large(events));
            }
            if !rest.is_empty() {
                self.partial.extend_from_slice(&rest);
            }
        } else {
            // The bytes before `from` were scanned when they arrived.
            let mut from = self.partial.len();
            self.partial.extend_from_slice(&chunk);
            while let Some(end) = self.scan.find_end(&self.partial, from, &mut self.scanned) {
                if end > self.max_event {
                    return Err(self.too_large(events));
                }
                events.push(self.partial.split_to(end).freeze());
                from = 0;
            }
            if self.partial.len() > self.max_event {
                return Err(self.too_large(events));
            }
        }
        Ok(events)
    }

    fn too_large(&mut self, events: Vec<Bytes>) -> EventTooLarge {
        self.failed = true;
        self.partial = BytesMut::new();
        EventTooLarge {
            events,
            limit: self.max_event,
        }
    }

    /// What is left when the stream ends: an event the upstream did not terminate.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.scan = Scan::START;
        (!self.partial.is_empty()).then(|| self.partial.split().freeze())
    }

    /// How many bytes the splitter has looked at so far (each byte once).
    pub fn bytes_scanned(&self) -> u64 {
        self.scanned
    }

    /// The cap on one event's size.
    pub fn max_event(&self) -> usize {
        self.max_event
    }
}

/// The lines of `event`, split at CRLF, LF or CR.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(at) => {
                let line = &rest[..at];
                let skip = if rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[at + skip..];
                Some(line)
            }
            None => {
                done = true;
                Some(rest)
            }
        }
    })
}

/// The value of a `data` field line (`data:value`, `data: value`, or a bare `data`).
fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(b"");
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The `data` of an event: its `data` lines joined by newlines (borrowed when there is one).
pub fn data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut values = lines(event).filter_map(data_value);
    let first = values.next()?;
    match values.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            for line in std::iter::once(second).chain(values) {
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

    fn split_all(splitter: &mut EventSplitter, pieces: &[&[u8]]) -> Vec<Bytes> {
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(splitter.push(Bytes::copy_from_slice(piece)).unwrap());
        }
        events.extend(splitter.finish());
        events
    }

    #[test]
    fn whole_events_in_one_chunk_are_sliced_not_copied() {
        let chunk = Bytes::from_static(b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        let mut splitter = EventSplitter::default();
        let events = splitter.push(chunk.clone()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].as_ptr(), chunk.as_ptr());
        assert_eq!(events[1].as_ptr(), chunk[15..].as_ptr());
        assert_eq!(&events[1][..], b"data: [DONE]\n\n");
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut splitter = EventSplitter::default();
        assert!(
            splitter
                .push(Bytes::from_static(b"data: {\"a\""))
                .unwrap()
                .is_empty()
        );
        let events = splitter
            .push(Bytes::from_static(b":1}\r\n\r\ndata: x\n"))
            .unwrap();
        assert_eq!(events, vec![Bytes::from_static(b"data: {\"a\":1}\r\n\r\n")]);
        let events = splitter.push(Bytes::from_static(b"\n")).unwrap();
        assert_eq!(events, vec![Bytes::from_static(b"data: x\n\n")]);
    }

    #[test]
    fn cr_lf_and_crlf_all_end_lines() {
        for (text, expected) in [
            (
                &b"data: a\r\rdata: b\r\r"[..],
                vec![&b"data: a\r\r"[..], b"data: b\r\r"],
            ),
            (
                b"data: a\n\ndata: b\n\n",
                vec![b"data: a\n\n", b"data: b\n\n"],
            ),
            (
                b"data: a\r\n\r\ndata: b\r\n\r\n",
                vec![b"data: a\r\n\r\n", b"data: b\r\n\r\n"],
            ),
            // Mixed: LF then CR, CRLF then LF, CR then CRLF.
            (
                b"data: a\n\rdata: b\r\n\ndata: c\r\r\n",
                vec![b"data: a\n\r", b"data: b\r\n\n", b"data: c\r\r\n"],
            ),
        ] {
            let mut whole = EventSplitter::default();
            let events = split_all(&mut whole, &[text]);
            let events: Vec<&[u8]> = events.iter().map(|e| &e[..]).collect();
            assert_eq!(events, expected, "{:?}", String::from_utf8_lossy(text));
            let datas: Vec<Vec<u8>> = events
                .iter()
                .filter_map(|e| data(e).map(|d| d.into_owned()))
                .collect();
            assert!(datas.len() >= 2 && datas.iter().all(|d| d.len() == 1));
        }
    }

    #[test]
    fn a_crlf_cut_between_its_cr_and_lf_ends_the_event_once() {
        let mut splitter = EventSplitter::default();
        let first = splitter.push(Bytes::from_static(b"data: a\r\n\r")).unwrap();
        // Handed over at the CR, without waiting for what follows.
        assert_eq!(first, vec![Bytes::from_static(b"data: a\r\n\r")]);
        let second = splitter
            .push(Bytes::from_static(b"\ndata: b\r\n\r\n"))
            .unwrap();
        // The LF completes the CRLF; it is no blank line of its own, so `b` is one event.
        assert_eq!(second, vec![Bytes::from_static(b"\ndata: b\r\n\r\n")]);
        assert_eq!(data(&second[0]).unwrap().as_ref(), b"b");
    }

    #[test]
    fn leading_blank_lines_stay_with_the_next_event() {
        let mut splitter = EventSplitter::default();
        let events = split_all(&mut splitter, &[b"\n\n\ndata: x\n\n\n"]);
        assert_eq!(
            events,
            vec![
                Bytes::from_static(b"\n\n\ndata: x\n\n"),
                Bytes::from_static(b"\n")
            ]
        );
    }

    #[test]
    fn data_lines_are_joined() {
        assert_eq!(
            data(b"event: x\ndata: a\r\ndata:b\n\n").unwrap().as_ref(),
            b"a\nb"
        );
        assert_eq!(data(b"data: a\rdata: b\r\r").unwrap().as_ref(), b"a\nb");
        assert_eq!(data(b"data\ndata: b\n\n").unwrap().as_ref(), b"\nb");
        assert_eq!(data(b": comment\n\n"), None);
        assert_eq!(data(b"datum: x\n\n"), None);
        assert_eq!(data(b"data: [DONE]\n\n").unwrap().as_ref(), b"[DONE]");
        assert_eq!(data(b"data: [DONE]").unwrap().as_ref(), b"[DONE]");
    }

    /// A 1 MiB event fed one byte per chunk: every byte is looked at once (the old splitter
    /// rescanned its buffer from the start on every chunk: about 5·10^11 bytes here).
    #[test]
    fn an_event_dribbled_byte_by_byte_is_scanned_once() {
        let mut text = b"data: ".to_vec();
        text.extend(std::iter::repeat_n(b'x', 1024 * 1024));
        text.extend_from_slice(b"\n\n");
        let whole = Bytes::from(text.clone());
        let mut splitter = EventSplitter::default();
        let mut events = Vec::new();
        for at in 0..whole.len() {
            events.extend(splitter.push(whole.slice(at..=at)).unwrap());
        }
        assert_eq!(events, vec![whole.clone()]);
        assert_eq!(splitter.bytes_scanned(), whole.len() as u64);

        // Lines of one byte: memchr finds a line end at every other byte.
        let lines: Vec<u8> = b"data: x\n".repeat(64 * 1024);
        let mut splitter = EventSplitter::default();
        for byte in &lines {
            assert!(
                splitter
                    .push(Bytes::copy_from_slice(&[*byte]))
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(splitter.bytes_scanned(), lines.len() as u64);
    }

    #[test]
    fn an_event_past_the_cap_ends_the_split() {
        let mut splitter = EventSplitter::new(64);
        let mut chunk = b"data: small\n\n".to_vec();
        chunk.extend(std::iter::repeat_n(b'y', 40));
        let events = splitter.push(Bytes::from(chunk)).unwrap();
        assert_eq!(events.len(), 1);
        let error = splitter
            .push(Bytes::from(vec![b'y'; 40]))
            .expect_err("80 bytes without a blank line");
        assert_eq!(error.limit, 64);
        assert!(error.events.is_empty());
        assert!(error.to_string().contains("64 bytes"));
        assert!(splitter.push(Bytes::from_static(b"\n\n")).is_err());
        assert_eq!(splitter.finish(), None);

        // The events before the oversized one in the same chunk are handed over with the error.
        let mut splitter = EventSplitter::new(64);
        let mut chunk = b"data: a\n\ndata: b\n\n".to_vec();
        chunk.extend(std::iter::repeat_n(b'z', 100));
        let error = splitter.push(Bytes::from(chunk)).unwrap_err();
        assert_eq!(error.events.len(), 2);

        // Exactly the cap is still fine; past it an event is refused however it arrives, so
        // the split never depends on how the stream was cut.
        let mut splitter = EventSplitter::new(64);
        assert!(
            splitter
                .push(Bytes::from(vec![b'q'; 64]))
                .unwrap()
                .is_empty()
        );
        let mut splitter = EventSplitter::new(64);
        let mut whole = vec![b'q'; 70];
        whole.extend_from_slice(b"\n\n");
        assert!(splitter.push(Bytes::from(whole)).is_err());
    }
}
