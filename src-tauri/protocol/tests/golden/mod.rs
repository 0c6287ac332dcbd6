//! What the golden-fixture table (`translation.rs`) and the malformed-input checks on the same
//! fixtures (`malformed_input.rs`) share: reading and blessing fixtures under
//! `tests/fixtures/translation/`, feeding streams the way TCP delivers them, decoding and
//! encoding streams of any protocol through `protocol::codec`, and reading back a Responses
//! stream.
//!
//! Each test file uses part of it; what one file does not use is not dead code.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of these helpers"
)]

use bytes::Bytes;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::StreamEvent;
use flexiproxy_protocol::codec::{ClientView, StreamDecoder, StreamEncoder};
use flexiproxy_protocol::sse::{self, EventSplitter};
use serde_json::Value;

/// `(name, text)` of a fixture under `tests/fixtures/translation/`.
macro_rules! fixture {
    ($name:literal) => {
        (
            concat!("translation/", $name),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/translation/",
                $name
            )),
        )
    };
}

/// `(name, text)` of a fixture, as `fixture!` gives it.
pub type Fixture = (&'static str, &'static str);

/// `created` for OpenAI encoders: fixed, so outputs are byte-stable.
pub const CREATED: u64 = 1_700_000_000;

/// Compares `actual` with the golden file, or rewrites the file when blessing
/// (`FLEXIPROXY_BLESS=1`).
pub fn golden(expected: (&str, &str), actual: &str) {
    let (name, text) = expected;
    if std::env::var_os("FLEXIPROXY_BLESS").is_some() {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(path, actual).unwrap();
        return;
    }
    assert_eq!(actual, text, "golden file {name} differs");
}

/// A JSON body as the golden files keep it: pretty, with a final newline.
pub fn pretty(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap();
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

/// Feeds an SSE text in small pieces (events split across chunks, as TCP delivers them).
pub fn sse_events(text: &str) -> Vec<Bytes> {
    let mut splitter = EventSplitter::default();
    let mut events = Vec::new();
    for piece in text.as_bytes().chunks(7) {
        events.extend(splitter.push(Bytes::copy_from_slice(piece)).unwrap());
    }
    events.extend(splitter.finish());
    events
}

/// Decodes a whole, well-formed stream fixture of `protocol`.
pub fn canonical_stream(protocol: Protocol, text: &str) -> Vec<StreamEvent> {
    let mut decoder = StreamDecoder::new(protocol);
    let mut events = Vec::new();
    for event in sse_events(text) {
        events.extend(decoder.decode(&event).unwrap());
    }
    assert!(decoder.is_done(), "the {protocol} fixture ends properly");
    events.extend(decoder.finish());
    events
}

/// Canonical events, encoded as the stream a client of `client` reads.
pub fn encode_stream(client: Protocol, view: &ClientView, events: &[StreamEvent]) -> String {
    let mut encoder = StreamEncoder::new(client, view);
    let mut out = Vec::new();
    for event in events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    String::from_utf8(out).unwrap()
}

/// The `data` of every event of an encoded Responses stream, checking the framing: each event
/// names its type in `event:` and in `data.type`, and `sequence_number` counts from 0.
pub fn responses_events(text: &str) -> Vec<Value> {
    let mut values = Vec::new();
    for event in EventSplitter::default()
        .push(Bytes::copy_from_slice(text.as_bytes()))
        .unwrap()
    {
        let name = std::str::from_utf8(&event)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .strip_prefix("event: ")
            .unwrap()
            .to_owned();
        let data: Value = serde_json::from_slice(&sse::data(&event).unwrap()).unwrap();
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], values.len());
        values.push(data);
    }
    values
}

/// The events of `kind` among a Responses stream's.
pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}
