//! One libFuzzer target for every hostile-input surface of the gateway's protocol layer: the
//! bytes are an upstream SSE stream (cut into pieces whose sizes the first bytes choose) fed to
//! the splitter and every protocol's stream decoder; a client or provider body fed to every
//! request, response, usage and error reader; a JSON schema cleaned for Gemini within a small
//! budget; and a model name made into a URL path segment. The properties are the ones
//! `tests/hostile_input_fuzz.rs` checks with proptest: no panic, bounded work, the splitter's
//! pieces add up to the input, an encoded segment is one segment.
#![no_main]

use bytes::Bytes;
use flexiproxy_gateway::path_segment::PathSegment;
use flexiproxy_protocol::codec::{self, StreamDecoder};
use flexiproxy_protocol::json_schema::{self, Budget};
use flexiproxy_protocol::sse::{self, EventSplitter};
use flexiproxy_protocol::{Protocol, gemini, openai_chat};
use flexiproxy_protocol::error_message::error_detail;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    stream(input, usize::from(chunk % 64) + 1);
    bodies(input);
    if let Ok(schema) = serde_json::from_slice::<serde_json::Value>(input) {
        let mut budget = Budget::new(2_000, 64 * 1024);
        let top = json_schema::object_at_top(&schema);
        if json_schema::for_gemini(&top, &mut budget).is_ok() {
            assert!(budget.spent().0 <= 2_000);
        }
        let _ = json_schema::from_gemini(&schema);
    }
    if let Ok(name) = std::str::from_utf8(input)
        && let Ok(segment) = PathSegment::new(name)
    {
        let text = segment.as_str();
        assert!(text != "." && text != "..");
        assert!(!text.contains(['/', '?', '#', ':']));
    }
});

fn stream(input: &[u8], chunk: usize) {
    let mut splitter = EventSplitter::new(4096);
    let mut events = Vec::new();
    let mut fed = 0;
    for piece in input.chunks(chunk) {
        match splitter.push(Bytes::copy_from_slice(piece)) {
            Ok(done) => events.extend(done),
            Err(too_large) => {
                events.extend(too_large.events);
                break;
            }
        }
        fed += piece.len();
    }
    assert!(splitter.bytes_scanned() as usize <= input.len());
    if fed == input.len() {
        events.extend(splitter.finish());
        let total: usize = events.iter().map(Bytes::len).sum();
        assert_eq!(total, input.len(), "the events add up to the stream");
    }
    for protocol in Protocol::ALL {
        let mut decoder = StreamDecoder::new(protocol);
        for event in &events {
            let _ = decoder.decode(event);
            if let Some(data) = sse::data(event) {
                let _ = codec::event_usage(protocol, &data);
            }
        }
        let _ = decoder.finish();
    }
}

fn bodies(input: &[u8]) {
    for protocol in Protocol::ALL {
        if let Ok(request) = codec::decode_request(protocol, input) {
            for target in Protocol::ALL {
                let _ = codec::encode_request(target, &request);
            }
        }
        let _ = codec::decode_response(protocol, input);
        let _ = codec::response_usage(protocol, input);
    }
    let _ = openai_chat::chunk_usage(input);
    let _ = gemini::count_tokens_request_to_canonical(input);
    let _ = gemini::count_tokens_total(input);
    let _ = error_detail(input);
}
