//! Golden fixtures for protocol translation through the canonical model, and malformed-input
//! checks for the decoders.
//!
//! Each pair under `tests/fixtures/translation/` is `<name>.in.*` (what one side sends) and
//! `<name>.out.*` (what the other side must receive). Requests and responses are compared as
//! JSON values; streams byte for byte, since SDKs parse the framing. Besides the byte
//! comparison, each test asserts the behaviour that matters (ids, indices, usage, finish
//! reasons, signatures) so a wrong golden file cannot hide a regression.
//!
//! To regenerate the `.out` files after an intended change, run with `FLEXIPROXY_BLESS=1` and
//! review the diff.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::{FinishReason, Part, StreamEvent};
use flexiproxy_protocol::codec::{DecodeStream as _, EncodeStream as _};
use flexiproxy_protocol::{anthropic_messages as anthropic, openai_chat as openai};
use serde_json::{Value, json};

#[macro_use]
mod golden;

use golden::{
    CREATED, Translate, canonical_stream, check_mangled, encode_everywhere, feed_stream, golden,
    mangled, pretty, sse_events,
};

#[test]
fn anthropic_request_to_openai() {
    let input = fixture!("anthropic_to_openai_request.in.json");
    let request = anthropic::request_to_canonical(input.1.as_bytes()).unwrap();
    let out = openai::request_from_canonical(&request);
    golden(
        fixture!("anthropic_to_openai_request.out.json"),
        &pretty(&out),
    );

    let out: Value = serde_json::from_slice(&out).unwrap();
    let messages = out["messages"].as_array().unwrap();
    // Both system blocks and the system message inside `messages` become one system message.
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("The working directory is /repo.")
    );
    // The signed thinking block is not sent to an OpenAI provider.
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    // Tool-call ids stay as they were; each result is a tool message in call order, before
    // the user's text.
    let assistant = &messages[2];
    assert_eq!(
        assistant["tool_calls"][0]["id"],
        "toolu_01A09q90qw90lq917835lq9"
    );
    assert_eq!(
        assistant["tool_calls"][0]["function"]["arguments"],
        r#"{"file_path":"/repo/README.md"}"#
    );
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(messages[4]["tool_call_id"], "toolu_01B45r81pl22mk038495mz0");
    assert_eq!(messages[4]["content"], "Error: No such file");
    assert_eq!(messages[5]["role"], "user");
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["reasoning_effort"], "medium");
    // Anthropic-only fields stay behind.
    assert!(out.get("metadata").is_none());
}

#[test]
fn openai_request_to_anthropic() {
    let input = fixture!("openai_to_anthropic_request.in.json");
    let request = openai::request_to_canonical(input.1.as_bytes()).unwrap();
    assert!(openai::client_wants_usage(&request));
    let out = anthropic::request_from_canonical(&request);
    golden(
        fixture!("openai_to_anthropic_request.out.json"),
        &pretty(&out),
    );

    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        out["system"],
        json!([
            {"type": "text", "text": "You are a helpful assistant."},
            {"type": "text", "text": "Prefer metric units."}
        ])
    );
    assert_eq!(out["max_tokens"], 1024);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
    );
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(
        messages[0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="})
    );
    // Parallel calls keep their ids; both results share the next user turn, results first.
    assert_eq!(messages[1]["content"][0]["id"], "call_paris");
    assert_eq!(messages[1]["content"][1]["input"], json!({"city": "Tokyo"}));
    let results = &messages[2]["content"];
    assert_eq!(results[0]["tool_use_id"], "call_paris");
    assert_eq!(results[1]["tool_use_id"], "call_tokyo");
    assert_eq!(
        results[2],
        json!({"type": "text", "text": "Which is warmer?"})
    );
    assert_eq!(messages.len(), 3);
    // OpenAI-only fields stay behind.
    assert!(out.get("seed").is_none() && out.get("stream_options").is_none());
}

#[test]
fn openai_stream_to_anthropic_stream() {
    let input = fixture!("openai_stream_to_anthropic_stream.in.txt");
    let events = canonical_stream(Protocol::OpenAiChat, input.1);

    // Argument fragments reassemble per call; the two parallel calls keep distinct parts.
    let args = |id: &str| {
        let index = events
            .iter()
            .find_map(|e| match e {
                StreamEvent::ToolCallStart { index, id: i, .. } if i == id => Some(*index),
                _ => None,
            })
            .unwrap();
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallArgsDelta { index: i, fragment } if *i == index => {
                    Some(fragment.as_str())
                }
                _ => None,
            })
            .collect::<String>()
    };
    assert_eq!(args("call_paris"), r#"{"city": "Paris"}"#);
    assert_eq!(args("call_tokyo"), r#"{"city": "Tokyo"}"#);
    assert!(events.contains(&StreamEvent::Finish(FinishReason::ToolCalls)));

    let mut encoder = anthropic::StreamEncoder::new("claude-sonnet-4-5");
    let mut out = Vec::new();
    for event in &events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    golden(fixture!("openai_stream_to_anthropic_stream.out.txt"), &text);

    // Blocks are numbered 0.. in order, each started and stopped once.
    for (index, kind) in ["thinking", "text", "tool_use", "tool_use"]
        .iter()
        .enumerate()
    {
        let start = format!(
            "\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"{kind}\""
        );
        assert_eq!(text.matches(&start).count(), 1, "{start}");
        let stop = format!("{{\"type\":\"content_block_stop\",\"index\":{index}}}");
        assert_eq!(text.matches(&stop).count(), 1, "{stop}");
    }
    // Usage from OpenAI's final chunk arrives in message_delta: input without cached tokens.
    assert!(text.contains(
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":20,"output_tokens":42,"cache_read_input_tokens":100}}"#
    ));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[test]
fn anthropic_stream_to_openai_stream() {
    let input = fixture!("anthropic_stream_to_openai_stream.in.txt");
    let events = canonical_stream(Protocol::AnthropicMessages, input.1);
    let mut encoder = openai::StreamEncoder::new("claude-sonnet-4-5", CREATED, true);
    let mut out = Vec::new();
    for event in &events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    golden(fixture!("anthropic_stream_to_openai_stream.out.txt"), &text);

    // The signature never reaches an OpenAI client.
    assert!(!text.contains("EqQBCgIYAhIM"));
    // The round trip back through the OpenAI decoder gives the same calls, ids and usage.
    let again = canonical_stream(Protocol::OpenAiChat, &text);
    let starts: Vec<_> = again
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "toolu_01U2y2gK45rBnl3uOUsO8Vq7"
        ]
    );
    assert!(text.contains(r#""tool_calls":[{"index":1,"id":"toolu_01U2y2gK45rBnl3uOUsO8Vq7""#));
    assert!(text.contains(r#""finish_reason":"tool_calls""#));
    assert!(text.contains(
        r#""usage":{"prompt_tokens":125,"completion_tokens":89,"total_tokens":214,"prompt_tokens_details":{"cached_tokens":100}}"#
    ));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[test]
fn anthropic_response_to_openai() {
    let input = fixture!("anthropic_to_openai_response.in.json");
    let response = anthropic::response_to_canonical(input.1.as_bytes()).unwrap();
    let out = openai::response_from_canonical(&response, CREATED);
    golden(
        fixture!("anthropic_to_openai_response.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["id"],
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    );
    assert_eq!(out["usage"]["prompt_tokens"], 130);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
}

#[test]
fn openai_response_to_anthropic() {
    let input = fixture!("openai_to_anthropic_response.in.json");
    let response = openai::response_to_canonical(input.1.as_bytes()).unwrap();
    assert!(matches!(&response.content[0], Part::Reasoning(r) if r.signature.is_none()));
    let out = anthropic::response_from_canonical(&response);
    golden(
        fixture!("openai_to_anthropic_response.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["stop_reason"], "max_tokens");
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 50, "output_tokens": 30, "cache_read_input_tokens": 150})
    );
    assert_eq!(
        out["content"][0],
        json!({"type": "thinking", "thinking": "24 is more than 18.", "signature": ""})
    );
}

// Malformed input: decoders return errors, never panic, and encoders accept whatever events
// a decoder let through.

#[test]
fn decoders_survive_malformed_requests_and_responses() {
    let cases: [(&str, Translate); 4] = [
        (fixture!("anthropic_to_openai_request.in.json").1, |b| {
            anthropic::request_to_canonical(b)
                .map(|r| openai::request_from_canonical(&r))
                .is_ok()
        }),
        (fixture!("openai_to_anthropic_request.in.json").1, |b| {
            openai::request_to_canonical(b)
                .map(|r| anthropic::request_from_canonical(&r))
                .is_ok()
        }),
        (fixture!("anthropic_to_openai_response.in.json").1, |b| {
            anthropic::response_to_canonical(b)
                .map(|r| openai::response_from_canonical(&r, CREATED))
                .is_ok()
        }),
        (fixture!("openai_to_anthropic_response.in.json").1, |b| {
            openai::response_to_canonical(b)
                .map(|r| anthropic::response_from_canonical(&r))
                .is_ok()
        }),
    ];
    check_mangled(&cases, 1);
}

#[test]
fn stream_decoders_survive_malformed_streams() {
    let openai_in = fixture!("openai_stream_to_anthropic_stream.in.txt").1;
    for body in mangled(openai_in, 11) {
        let events = feed_stream(Protocol::OpenAiChat, &body);
        encode_everywhere(&events);
    }
    let anthropic_in = fixture!("anthropic_stream_to_openai_stream.in.txt").1;
    for body in mangled(anthropic_in, 12) {
        let events = feed_stream(Protocol::AnthropicMessages, &body);
        encode_everywhere(&events);
    }
}

#[test]
fn a_truncated_stream_ends_with_an_error_not_silence() {
    let openai_in = fixture!("openai_stream_to_anthropic_stream.in.txt").1;
    let cut = &openai_in[..openai_in.find("\"finish_reason\":\"tool_calls\"").unwrap()];
    let mut decoder = openai::StreamDecoder::default();
    let mut events = Vec::new();
    for event in sse_events(cut) {
        if let Ok(decoded) = decoder.decode(&event) {
            events.extend(decoded);
        }
    }
    events.extend(decoder.finish());
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })));
    let mut encoder = anthropic::StreamEncoder::new("m");
    let mut out = Vec::new();
    for event in &events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("}}\n\n") && text.contains("event: error\n"));
    assert!(!text.contains("message_stop"));
}
