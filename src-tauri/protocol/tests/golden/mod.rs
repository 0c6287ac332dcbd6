//! What the golden-fixture tests (`translation*.rs`) share: reading and blessing fixtures under
//! `tests/fixtures/translation/`, feeding streams the way TCP delivers them, decoding and
//! encoding streams of any protocol through `protocol::codec`, and the mangled inputs the
//! malformed-input checks feed the decoders.
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
use flexiproxy_protocol::gemini::Framing;
use flexiproxy_protocol::sse::EventSplitter;
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

/// Decodes a possibly broken stream; a garbled event is an `Err` (the relay would end the
/// client's stream with an error there), anything else goes on.
pub fn feed_stream(protocol: Protocol, input: &[u8]) -> Vec<StreamEvent> {
    let mut splitter = EventSplitter::default();
    let mut decoder = StreamDecoder::new(protocol);
    let mut chunks = splitter
        .push(Bytes::copy_from_slice(input))
        .unwrap_or_default();
    chunks.extend(splitter.finish());
    let mut events = Vec::new();
    for event in chunks {
        if let Ok(decoded) = decoder.decode(&event) {
            events.extend(decoded);
        }
    }
    events.extend(decoder.finish());
    events
}

/// Encodes `events` for a client of every protocol (Responses with a custom tool, Gemini in
/// both framings); each encoder must take whatever a decoder let through.
pub fn encode_everywhere(events: &[StreamEvent]) {
    let mut out = Vec::new();
    for protocol in Protocol::ALL {
        let framings: &[Framing] = if protocol == Protocol::Gemini {
            &[Framing::Sse, Framing::JsonArray]
        } else {
            &[Framing::Sse]
        };
        for &framing in framings {
            let view = ClientView {
                model: "m".to_owned(),
                created: CREATED,
                include_usage: true,
                gemini_framing: framing,
                custom_tools: vec!["apply_patch".to_owned()],
            };
            let mut encoder = StreamEncoder::new(protocol, &view);
            for event in events {
                encoder.encode(event, &mut out);
            }
            encoder.finish(&mut out);
        }
    }
}

/// A small deterministic generator (no extra dependency for randomness).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next()).unwrap() % n.max(1)
    }
}

/// Truncations at every 3rd byte and garbled copies (bytes replaced, removed, duplicated).
pub fn mangled(input: &str, seed: u64) -> Vec<Vec<u8>> {
    let bytes = input.as_bytes();
    let mut out: Vec<Vec<u8>> = (0..bytes.len())
        .step_by(3)
        .map(|n| bytes[..n].to_vec())
        .collect();
    let mut rng = Lcg(seed);
    const NASTY: &[u8] = b"{}[]\":,\\\n 0-e\xff\x00nulltrue";
    for _ in 0..300 {
        let mut copy = bytes.to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(copy.len());
            match rng.below(3) {
                0 => copy[at] = NASTY[rng.below(NASTY.len())],
                1 => {
                    copy.remove(at);
                }
                _ => {
                    let end = (at + rng.below(40)).min(copy.len());
                    let dup = copy[at..end].to_vec();
                    copy.splice(at..at, dup);
                }
            }
        }
        out.push(copy);
    }
    out
}

/// Decodes a body and encodes it for other sides; whether decoding succeeded.
pub type Translate = fn(&[u8]) -> bool;

/// Runs each case on mangled copies of its input (seeds from `first_seed`): some must fail to
/// decode (the mangling is real), none may panic, and the intact input must decode.
pub fn check_mangled(cases: &[(&str, Translate)], first_seed: u64) {
    for (seed, (input, run)) in (first_seed..).zip(cases) {
        let mut errors = 0;
        for body in mangled(input, seed) {
            if !run(&body) {
                errors += 1;
            }
        }
        assert!(errors > 0, "mangling must produce some errors");
        assert!(run(input.as_bytes()));
    }
}
