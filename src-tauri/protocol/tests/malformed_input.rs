//! Malformed input to the decoders of the golden fixtures (`translation.rs`): mangled copies of
//! each fixture's input must decode to an error or to something every encoder accepts, never a
//! panic; and a stream cut short must end the client's stream with an error, not silence.
//!
//! The properties over arbitrary input are in `decoder_fuzz.rs`; these stay close to the real
//! bodies, with fixed seeds so a failure is reproducible.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

use bytes::Bytes;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::StreamEvent;
use flexiproxy_protocol::codec::{self, ClientView, StreamDecoder};
use flexiproxy_protocol::gemini::Framing;
use flexiproxy_protocol::sse::EventSplitter;
use serde_json::Value;

#[macro_use]
mod golden;

use golden::{CREATED, Fixture, encode_stream, of_type, responses_events, sse_events};

const CHAT: Protocol = Protocol::OpenAiChat;
const RESPONSES: Protocol = Protocol::OpenAiResponses;
const ANTHROPIC: Protocol = Protocol::AnthropicMessages;
const GEMINI: Protocol = Protocol::Gemini;

// Whole bodies: decoders return errors, never panic, and encoders accept whatever a decoder
// let through.

/// A fixture's body, mangled and decoded as `from`'s request or answer, then encoded for each
/// of `to`; its seed keeps the mangled copies the same from run to run.
struct MangledBody {
    from: Protocol,
    answer: bool,
    input: Fixture,
    seed: u64,
    to: &'static [Protocol],
}

impl MangledBody {
    /// Decodes a body and encodes it for the other sides; whether decoding succeeded.
    fn translate(&self, body: &[u8]) -> bool {
        if self.answer {
            let view = ClientView {
                custom_tools: vec!["apply_patch".to_owned()],
                ..view("m", Framing::Sse)
            };
            codec::decode_response(self.from, body)
                .map(|response| {
                    for &to in self.to {
                        codec::encode_response(to, &response, &view);
                    }
                })
                .is_ok()
        } else {
            codec::decode_request(self.from, body)
                .map(|request| {
                    for &to in self.to {
                        // Too large a schema is an answer, not a crash.
                        let _ = codec::encode_request(to, &request);
                    }
                })
                .is_ok()
        }
    }
}

#[test]
fn every_decoder_survives_malformed_requests_and_responses() {
    const fn body(
        from: Protocol,
        answer: bool,
        input: Fixture,
        seed: u64,
        to: &'static [Protocol],
    ) -> MangledBody {
        MangledBody {
            from,
            answer,
            input,
            seed,
            to,
        }
    }
    let (request, answer) = (false, true);
    let bodies = [
        body(
            ANTHROPIC,
            request,
            fixture!("anthropic_to_openai_request.in.json"),
            1,
            &[CHAT],
        ),
        body(
            CHAT,
            request,
            fixture!("openai_to_anthropic_request.in.json"),
            2,
            &[ANTHROPIC],
        ),
        body(
            ANTHROPIC,
            answer,
            fixture!("anthropic_to_openai_response.in.json"),
            3,
            &[CHAT],
        ),
        body(
            CHAT,
            answer,
            fixture!("openai_to_anthropic_response.in.json"),
            4,
            &[ANTHROPIC],
        ),
        body(
            GEMINI,
            request,
            fixture!("gemini_request.in.json"),
            21,
            &[GEMINI, ANTHROPIC, CHAT],
        ),
        body(
            GEMINI,
            answer,
            fixture!("gemini_response.in.json"),
            22,
            &[GEMINI, ANTHROPIC, CHAT],
        ),
        body(
            ANTHROPIC,
            request,
            fixture!("anthropic_to_openai_request.in.json"),
            23,
            &[GEMINI],
        ),
        body(
            RESPONSES,
            request,
            fixture!("responses_client_request.in.json"),
            21,
            &[RESPONSES, ANTHROPIC, CHAT],
        ),
        body(
            RESPONSES,
            answer,
            fixture!("responses_provider_response.in.json"),
            22,
            &[RESPONSES, ANTHROPIC],
        ),
    ];
    for body in &bodies {
        let (name, input) = body.input;
        // Some copies must fail to decode (the mangling is real); none may panic.
        let errors = mangled(input, body.seed)
            .iter()
            .filter(|copy| !body.translate(copy))
            .count();
        assert!(
            errors > 0,
            "mangling must produce some errors ({name}, seed {})",
            body.seed
        );
        assert!(body.translate(input.as_bytes()), "{name} decodes intact");
    }
}

// Streams.

/// Decodes a possibly broken stream; a garbled event is an `Err` (the relay would end the
/// client's stream with an error there), anything else goes on.
/// Each provider's stream fixture, mangled with its own seed: whatever its decoder lets
/// through, every client's encoder takes.
#[test]
fn every_stream_decoder_survives_malformed_streams() {
    let streams = [
        (
            CHAT,
            fixture!("openai_stream_to_anthropic_stream.in.txt").1,
            11,
        ),
        (
            ANTHROPIC,
            fixture!("anthropic_stream_to_openai_stream.in.txt").1,
            12,
        ),
        (GEMINI, fixture!("gemini_stream.in.txt").1, 31),
        (
            RESPONSES,
            fixture!("responses_provider_stream.in.txt").1,
            23,
        ),
    ];
    for (provider, input, seed) in streams {
        for body in mangled(input, seed) {
            encode_everywhere(&feed_stream(provider, &body));
        }
    }
}

/// A provider's stream cut short.
struct Cut {
    /// Every event decoded, then what the decoder's end gave.
    events: Vec<StreamEvent>,
    /// How many whole events would not decode (the relay would end there).
    garbled: usize,
    /// Whether the decoder took the stream for complete before its end.
    done_before_the_end: bool,
}

/// Decodes `input` cut just before `marker`, one whole event at a time as the relay does, and
/// ends it: the last event must be an error, not silence.
fn decode_cut(provider: Protocol, input: &str, marker: &str) -> Cut {
    let cut = &input[..input.find(marker).unwrap()];
    let mut decoder = StreamDecoder::new(provider);
    let mut events = Vec::new();
    let mut garbled = 0;
    for event in sse_events(cut) {
        match decoder.decode(&event) {
            Ok(decoded) => events.extend(decoded),
            Err(_) => garbled += 1,
        }
    }
    let done_before_the_end = decoder.is_done();
    events.extend(decoder.finish());
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })));
    Cut {
        events,
        garbled,
        done_before_the_end,
    }
}

/// The client's view for a stream of `model`, with nothing protocol-specific.
fn view(model: &str, gemini_framing: Framing) -> ClientView {
    ClientView {
        model: model.to_owned(),
        created: CREATED,
        include_usage: false,
        gemini_framing,
        custom_tools: Vec::new(),
    }
}

#[test]
fn a_truncated_chat_stream_ends_with_an_error_not_silence() {
    let input = fixture!("openai_stream_to_anthropic_stream.in.txt").1;
    let cut = decode_cut(CHAT, input, "\"finish_reason\":\"tool_calls\"");
    let text = encode_stream(ANTHROPIC, &view("m", Framing::Sse), &cut.events);
    assert!(text.ends_with("}}\n\n") && text.contains("event: error\n"));
    assert!(!text.contains("message_stop"));
}

#[test]
fn a_truncated_gemini_stream_ends_with_an_error_not_silence() {
    let input = fixture!("gemini_stream.in.txt").1;
    let cut = decode_cut(GEMINI, input, "\"finishReason\"");
    let gemini_stream =
        |framing| encode_stream(GEMINI, &view("gemini-2.5-pro", framing), &cut.events);
    for framing in [Framing::Sse, Framing::JsonArray] {
        let text = gemini_stream(framing);
        assert!(text.contains(r#"{"error":{"code":500,"#));
        assert!(!text.contains("\"finishReason\""));
    }
    let array = gemini_stream(Framing::JsonArray);
    assert!(serde_json::from_str::<Vec<Value>>(&array).is_ok());
}

#[test]
fn a_truncated_responses_stream_ends_with_an_error_not_silence() {
    let input = fixture!("responses_provider_stream.in.txt").1;
    let cut = decode_cut(RESPONSES, input, "event: response.completed");
    assert_eq!(cut.garbled, 0, "every whole event before the cut decodes");
    assert!(!cut.done_before_the_end);
    let text = encode_stream(RESPONSES, &view("m", Framing::Sse), &cut.events);
    let sent = responses_events(&text);
    let last = sent.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(sent[sent.len() - 2]["type"], "error");
    assert!(of_type(&sent, "response.completed").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Mangling and feeding.

/// Decodes a possibly broken stream; a garbled event is an `Err` (the relay would end the
/// client's stream with an error there), anything else goes on.
fn feed_stream(protocol: Protocol, input: &[u8]) -> Vec<StreamEvent> {
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
fn encode_everywhere(events: &[StreamEvent]) {
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
            encode_stream(protocol, &view, events);
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
fn mangled(input: &str, seed: u64) -> Vec<Vec<u8>> {
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
