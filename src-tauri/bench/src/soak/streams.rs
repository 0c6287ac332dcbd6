//! The soak's clients: each one keeps a streamed request in flight through the gateway, one after
//! the other, until told to stop, and checks every stream the way a client SDK would.
//!
//! Clients rotate over the [`Flavour`]s (OpenAI chat on the same-protocol path, with and without
//! the usage chunk; Anthropic Messages and OpenAI Responses translated to the same `openai_chat`
//! upstream), and mix connection habits: some open a new connection for every stream, others keep
//! one alive for several (`KEEP_FOR`), as SDKs with and without a pool do.
//!
//! A stream counts as completed only when it answered 200, ended with its protocol's last event
//! (`data: [DONE]`, `message_stop`, `response.completed`), carried no error event, brought at
//! least one event per upstream chunk, and did all that before its deadline. Anything else is an
//! error of one [`ErrorKind`]. All figures are atomics in a shared [`Tally`], which the sampler in
//! [`crate::soak`] reads while the load runs.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;

use crate::load::{Target, connect};

/// How many streams a client sends on one connection before opening a new one, by client index
/// (modulo): about a third of all streams start on a fresh connection.
const KEEP_FOR: [u32; 4] = [1, 4, 8, 16];
/// How long a client waits after a failure before it tries again (no spinning on a dead gateway).
const BACKOFF: Duration = Duration::from_millis(200);
/// Longest time a TCP connect plus handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest SSE line a client accepts; a longer one is a broken stream, not a reason to grow.
const MAX_LINE: usize = 1 << 20;
/// How many distinct error messages are kept for the report.
const KEPT_MESSAGES: usize = 8;

/// How a stream of one protocol must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The last `data:` line is `[DONE]` (OpenAI chat).
    Done,
    /// The last `data:` line belongs to an event of this name.
    Event(&'static str),
}

/// One kind of client request.
#[derive(Debug, Clone)]
pub struct Flavour {
    /// Label in the report.
    pub name: &'static str,
    /// The gateway path and this client's headers.
    pub target: Target,
    /// The streamed request's body.
    pub body: Bytes,
    /// The event a complete stream ends with.
    pub ending: Ending,
}

/// What went wrong with one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No TCP connection or HTTP handshake.
    Connect,
    /// An answer other than 200.
    Status,
    /// The request could not be sent, or the body broke off.
    Broken,
    /// The body ended without its last event, carried an error event, or too few events.
    Ending,
    /// The stream did not finish before its deadline.
    Timeout,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [Self; 5] = [
        Self::Connect,
        Self::Status,
        Self::Broken,
        Self::Ending,
        Self::Timeout,
    ];

    /// Label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Status => "status",
            Self::Broken => "broken",
            Self::Ending => "bad ending",
            Self::Timeout => "timeout",
        }
    }
}

/// A failed stream: its kind and a message for the report.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Details, for the report.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.label(), self.message)
    }
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Everything the clients counted, shared with the sampler.
#[derive(Debug)]
pub struct Tally {
    /// Streams sent (a request written, or tried).
    pub started: AtomicU64,
    /// Streams that passed every check.
    pub completed: AtomicU64,
    /// Completed streams per flavour, in the order of the flavour list.
    pub per_flavour: Vec<AtomicU64>,
    /// Streams under way right now.
    pub in_flight: AtomicU64,
    /// Connections opened.
    pub connections: AtomicU64,
    /// Body bytes received.
    pub bytes: AtomicU64,
    /// Failures per [`ErrorKind::ALL`] entry.
    pub errors: [AtomicU64; ErrorKind::ALL.len()],
    messages: Mutex<Vec<String>>,
}

impl Tally {
    /// Counters for `flavours` kinds of request.
    pub fn new(flavours: usize) -> Self {
        Self {
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            per_flavour: (0..flavours).map(|_| AtomicU64::new(0)).collect(),
            in_flight: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: Default::default(),
            messages: Mutex::new(Vec::new()),
        }
    }

    /// Failures of every kind.
    pub fn error_total(&self) -> u64 {
        self.errors
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// The first distinct error messages (at most [`KEPT_MESSAGES`]).
    pub fn messages(&self) -> Vec<String> {
        self.messages
            .lock()
            .map(|kept| kept.clone())
            .unwrap_or_default()
    }

    /// Counts `failure` of a `flavour` stream and keeps its message if it is a new one.
    pub fn fail(&self, flavour: &Flavour, failure: &Failure) {
        let slot = ErrorKind::ALL
            .iter()
            .position(|kind| *kind == failure.kind)
            .unwrap_or(0);
        self.errors[slot].fetch_add(1, Ordering::Relaxed);
        let message = format!(
            "{} ({}): {}",
            flavour.name,
            failure.kind.label(),
            failure.message
        );
        if let Ok(mut kept) = self.messages.lock()
            && kept.len() < KEPT_MESSAGES
            && !kept.contains(&message)
        {
            kept.push(message);
        }
    }
}

/// What every client needs: the request kinds, the pacing-derived deadline, the shared counters
/// and the stop flag.
#[derive(Debug)]
pub struct Plan {
    /// The request kinds clients rotate over.
    pub flavours: Vec<Flavour>,
    /// Content chunks per upstream stream: a complete stream has at least this many events.
    pub chunks: u32,
    /// Longest time one stream may take, from sending the request to its last byte.
    pub stream_limit: Duration,
    /// Shared counters.
    pub tally: Tally,
    /// Set when the load ends: clients finish the stream they are in, then return.
    pub stop: AtomicBool,
}

/// Client number `index`: waits `delay` (the ramp), then streams until [`Plan::stop`].
pub async fn client(index: usize, delay: Duration, plan: Arc<Plan>) {
    tokio::time::sleep(delay).await;
    let mut habit = Habit::new(KEEP_FOR[index % KEEP_FOR.len()]);
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut scan = Scan::default();
    let mut round = 0usize;
    while !plan.stop.load(Ordering::Relaxed) {
        let slot = (index + round) % plan.flavours.len().max(1);
        let Some(flavour) = plan.flavours.get(slot) else {
            return;
        };
        round += 1;
        if habit.retire() {
            sender = None;
        }
        match stream_once(&mut sender, slot, &plan, &mut scan).await {
            Ok(fresh) => habit.served(fresh),
            Err(failure) => {
                // The connection's state is unknown after a failure: start the next one afresh.
                sender = None;
                habit.served(true);
                plan.tally.fail(flavour, &failure);
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// When a client lets its connection go: after `keep_for` streams on it.
#[derive(Debug)]
struct Habit {
    keep_for: u32,
    on_this_connection: u32,
}

impl Habit {
    fn new(keep_for: u32) -> Self {
        Self {
            keep_for: keep_for.max(1),
            on_this_connection: 0,
        }
    }

    /// Whether the connection has served its share: the next stream opens a new one.
    fn retire(&mut self) -> bool {
        let done = self.on_this_connection >= self.keep_for;
        if done {
            self.on_this_connection = 0;
        }
        done
    }

    /// One stream went over the connection (`fresh`: one it had to open, counting from there;
    /// after a failure, the connection is gone, so the next stream counts from a new one too).
    fn served(&mut self, fresh: bool) {
        self.on_this_connection = if fresh {
            1
        } else {
            self.on_this_connection + 1
        };
    }
}

/// One stream of flavour number `slot`, on `sender` when it is still usable or on a new
/// connection (left in `sender` for the next stream; `Ok(true)` says it is a new one). Counts it
/// in the tally when it completes; a failure is the caller's to count ([`Tally::fail`]).
pub async fn stream_once(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    slot: usize,
    plan: &Plan,
    scan: &mut Scan,
) -> Result<bool, Failure> {
    let tally = &plan.tally;
    let Some(flavour) = plan.flavours.get(slot) else {
        return Err(Failure::new(
            ErrorKind::Broken,
            format!("no flavour {slot}"),
        ));
    };
    let usable = match sender.as_mut() {
        // `ready` fails when the server closed the idle connection: open another, no error.
        Some(open) => open.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        *sender = None;
        let fresh = tokio::time::timeout(CONNECT_TIMEOUT, connect(&flavour.target))
            .await
            .map_err(|_| {
                Failure::new(
                    ErrorKind::Connect,
                    format!("no connection within {CONNECT_TIMEOUT:?}"),
                )
            })?
            .map_err(|err| Failure::new(ErrorKind::Connect, err.to_string()))?;
        tally.connections.fetch_add(1, Ordering::Relaxed);
        *sender = Some(fresh);
    }
    let Some(open) = sender.as_mut() else {
        return Err(Failure::new(ErrorKind::Connect, "no connection"));
    };
    let request = flavour
        .target
        .request(flavour.body.clone())
        .map_err(|err| Failure::new(ErrorKind::Broken, err.to_string()))?;
    tally.started.fetch_add(1, Ordering::Relaxed);
    tally.in_flight.fetch_add(1, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + plan.stream_limit;
    let outcome = tokio::time::timeout_at(
        deadline,
        receive(open, request, plan.chunks, scan, tally, flavour.ending),
    )
    .await
    .unwrap_or_else(|_| {
        Err(Failure::new(
            ErrorKind::Timeout,
            format!("the stream did not end within {:?}", plan.stream_limit),
        ))
    });
    tally.in_flight.fetch_sub(1, Ordering::Relaxed);
    outcome?;
    tally.completed.fetch_add(1, Ordering::Relaxed);
    if let Some(count) = tally.per_flavour.get(slot) {
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(!usable)
}

async fn receive(
    sender: &mut SendRequest<Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
    chunks: u32,
    scan: &mut Scan,
    tally: &Tally,
    ending: Ending,
) -> Result<(), Failure> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| Failure::new(ErrorKind::Broken, format!("sending: {err}")))?;
    let status = response.status();
    let mut body = response.into_body();
    if status != StatusCode::OK {
        let text = match body.collect().await {
            Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
                .chars()
                .take(300)
                .collect(),
            Err(err) => err.to_string(),
        };
        return Err(Failure::new(
            ErrorKind::Status,
            format!("HTTP {status}: {text}"),
        ));
    }
    scan.reset();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| Failure::new(ErrorKind::Broken, err.to_string()))?;
        if let Some(data) = frame.data_ref() {
            tally.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            scan.feed(data)
                .map_err(|message| Failure::new(ErrorKind::Ending, message))?;
        }
    }
    scan.verdict(ending, chunks)
        .map_err(|message| Failure::new(ErrorKind::Ending, message))
}

/// Incremental SSE reader of one stream: counts `data:` lines and remembers what the last one
/// was (its event name, whether it was `[DONE]`) and whether an error event went by. Linear in
/// the stream's size; the buffer is kept across streams of a client.
#[derive(Debug, Default)]
pub struct Scan {
    carry: Vec<u8>,
    event: String,
    data_lines: u32,
    last_event: String,
    last_was_done: bool,
    error: Option<String>,
}

impl Scan {
    fn reset(&mut self) {
        self.carry.clear();
        self.event.clear();
        self.data_lines = 0;
        self.last_event.clear();
        self.last_was_done = false;
        self.error = None;
    }

    /// Reads the complete lines of `data`, keeping a partial line for the next call.
    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        self.carry.extend_from_slice(data);
        let mut consumed = 0;
        while let Some(end) = newline(&self.carry[consumed..]) {
            let line = &self.carry[consumed..consumed + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            self.line(&line);
            consumed += end + 1;
        }
        self.carry.drain(..consumed);
        if self.carry.len() > MAX_LINE {
            return Err(format!("an SSE line longer than {MAX_LINE} bytes"));
        }
        Ok(())
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.event.clear();
        } else if let Some(name) = line.strip_prefix("event:") {
            self.event.clear();
            self.event.push_str(name.trim());
            if self.event == "error" && self.error.is_none() {
                self.error = Some(line.to_owned());
            }
        } else if let Some(payload) = line.strip_prefix("data:") {
            let payload = payload.trim_start();
            self.data_lines += 1;
            self.last_was_done = payload == "[DONE]";
            self.last_event.clone_from(&self.event);
            // OpenAI chat streams carry errors as a bare `data: {"error": …}`.
            if payload.starts_with("{\"error\"") && self.error.is_none() {
                self.error = Some(payload.chars().take(300).collect());
            }
        }
    }

    /// Whether what was read is a complete stream: one event per upstream chunk (`chunks`) at
    /// least, then the last event as `ending` says.
    fn verdict(&self, ending: Ending, chunks: u32) -> Result<(), String> {
        if let Some(error) = &self.error {
            return Err(format!("error event in the stream: {error}"));
        }
        if !self.carry.is_empty() {
            return Err("the stream ended inside a line".to_owned());
        }
        let ended = match ending {
            Ending::Done => self.last_was_done,
            Ending::Event(name) => self.last_event == name,
        };
        if !ended {
            let expected = match ending {
                Ending::Done => "data: [DONE]".to_owned(),
                Ending::Event(name) => format!("event: {name}"),
            };
            let last = if self.last_was_done {
                "data: [DONE]".to_owned()
            } else {
                format!("event {:?}", self.last_event)
            };
            return Err(format!(
                "the stream ended without `{expected}` (its last data line: {last}, {} data lines)",
                self.data_lines
            ));
        }
        // At least one event per upstream chunk, plus the last event.
        if self.data_lines <= chunks {
            return Err(format!(
                "{} data lines for {chunks} upstream chunks and the last event",
                self.data_lines
            ));
        }
        Ok(())
    }
}

fn newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(parts: &[&[u8]]) -> Scan {
        let mut scan = Scan::default();
        for part in parts {
            scan.feed(part).unwrap();
        }
        scan
    }

    #[test]
    fn a_chat_stream_ends_with_done_even_split_mid_line() {
        let scan = scanned(&[
            b"data: {\"a\":1}\n\nda",
            b"ta: {\"b\":2}\r\n\r\ndata: [DO",
            b"NE]\n\n",
        ]);
        assert_eq!(scan.verdict(Ending::Done, 2), Ok(()));
        assert!(
            scan.verdict(Ending::Done, 3).is_err(),
            "two chunks, three wanted"
        );
    }

    #[test]
    fn a_stream_cut_before_its_last_event_fails() {
        let scan = scanned(&[b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n"]);
        assert!(scan.verdict(Ending::Done, 1).is_err());
        let scan = scanned(&[
            b"event: message_start\ndata: {}\n\nevent: content_block_delta\ndata: {}\n\n",
        ]);
        assert!(scan.verdict(Ending::Event("message_stop"), 1).is_err());
        let scan = scanned(&[b"data: [DONE]\n\ndata: {\"late\":1}"]);
        assert!(scan.verdict(Ending::Done, 1).is_err(), "ends inside a line");
    }

    #[test]
    fn named_endings_are_the_last_data_lines_event() {
        let scan = scanned(&[
            b"event: response.created\ndata: {}\n\n",
            b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n",
        ]);
        assert_eq!(scan.verdict(Ending::Event("response.completed"), 1), Ok(()));
        assert!(
            scan.verdict(Ending::Event("response.completed"), 2)
                .is_err()
        );
        assert!(scan.verdict(Ending::Event("message_stop"), 1).is_err());
    }

    #[test]
    fn error_events_fail_whatever_follows() {
        let scan =
            scanned(&[b"data: {\"error\":{\"message\":\"upstream broke\"}}\n\ndata: [DONE]\n\n"]);
        assert!(scan.verdict(Ending::Done, 1).is_err());
        let scan = scanned(&[
            b"event: error\ndata: {\"type\":\"error\"}\n\nevent: message_stop\ndata: {}\n\n",
        ]);
        assert!(scan.verdict(Ending::Event("message_stop"), 1).is_err());
    }

    /// Replays `streams` streams that all succeed; returns the connections opened.
    fn connections_opened(keep_for: u32, streams: u32, server_closes_after: Option<u32>) -> u32 {
        let mut habit = Habit::new(keep_for);
        let (mut open, mut opened, mut on_it) = (false, 0, 0);
        for _ in 0..streams {
            if habit.retire() {
                open = false;
            }
            if server_closes_after.is_some_and(|n| on_it >= n) {
                open = false;
            }
            let fresh = !open;
            if fresh {
                opened += 1;
                on_it = 0;
                open = true;
            }
            on_it += 1;
            habit.served(fresh);
        }
        opened
    }

    #[test]
    fn a_connection_serves_its_share_then_a_new_one_opens() {
        assert_eq!(connections_opened(1, 12, None), 12);
        assert_eq!(connections_opened(4, 12, None), 3);
        assert_eq!(connections_opened(16, 12, None), 1);
        // The server closing a connection early starts a new share on the next one.
        assert_eq!(connections_opened(4, 12, Some(2)), 6);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut scan = Scan::default();
        let chunk = vec![b'x'; 64 * 1024];
        let refused = (0..(MAX_LINE / chunk.len() + 2)).any(|_| scan.feed(&chunk).is_err());
        assert!(refused);
    }
}
