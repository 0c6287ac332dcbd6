//! Streams both ways: the decoder's part indices, whole calls and error endings, the encoder's
//! held calls and last chunk in both framings, and encoder output decoding back to the events
//! it was given.

use super::*;
use crate::canonical::{FinishReason, StreamEvent};
use crate::fixtures::{decode_stream, encode_stream, feed, usage};

fn sse(chunks: &[Value]) -> Vec<StreamEvent> {
    let mut decoder = StreamDecoder::default();
    let sse_events = chunks.iter().map(|chunk| format!("data: {chunk}\r\n\r\n"));
    let mut events = feed(&mut decoder, sse_events);
    events.extend(decoder.finish());
    events
}

#[test]
fn stream_parts_get_indices_and_calls_arrive_whole() {
    let parts = |parts: Value| json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}], "responseId": "r1", "modelVersion": "gemini-2.5-pro", "usageMetadata": {"promptTokenCount": 10}});
    let events = sse(&[
        parts(json!([{"text": "let me ", "thought": true}])),
        parts(json!([{"text": "think", "thought": true}])),
        parts(json!([
            {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"},
            {"functionCall": {"id": "x9", "name": "g", "args": {}}}
        ])),
        // Not right after a thought: nothing to give it to.
        parts(json!([{"text": "Sure.", "thoughtSignature": "late"}])),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 22}}),
    ]);
    assert_eq!(
        events,
        vec![
            StreamEvent::start("r1", "gemini-2.5-pro"),
            StreamEvent::reasoning(0, "let me "),
            StreamEvent::Usage(TokenUsage {
                input: Some(10),
                ..TokenUsage::default()
            }),
            StreamEvent::reasoning(0, "think"),
            // The call's signature completes the thought right before it.
            StreamEvent::signature(0, "sig"),
            StreamEvent::tool_call(1, "gemini_fc_r1_0", "f"),
            StreamEvent::arguments(1, r#"{"a":1}"#),
            StreamEvent::tool_call(2, "x9", "g"),
            StreamEvent::arguments(2, "{}"),
            StreamEvent::text(3, "Sure."),
            StreamEvent::Usage(usage(Some(10), Some(12), None, Some(7))),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[test]
fn cut_streams_and_error_chunks_end_in_errors() {
    let mut decoder = StreamDecoder::default();
    decoder
        .decode(b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\n")
        .unwrap();
    assert!(!decoder.is_done());
    assert!(matches!(
        decoder.finish().as_slice(),
        [StreamEvent::Error { .. }]
    ));

    let mut decoder = StreamDecoder::default();
    let events = decoder
        .decode(br#"data: {"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#)
        .unwrap();
    assert_eq!(
        events,
        vec![StreamEvent::Error {
            message: "UNAVAILABLE: overloaded".into()
        }]
    );
    assert!(decoder.is_done() && decoder.finish().is_empty());
    assert!(
        StreamDecoder::default()
            .decode(b"data: {nope}\n\n")
            .is_err()
    );
    assert!(
        StreamDecoder::default()
            .decode(b": keep-alive\n\n")
            .unwrap()
            .is_empty()
    );
}

fn encode_all(framing: Framing, events: &[StreamEvent]) -> String {
    encode_stream(StreamEncoder::new("m", framing), events)
}

#[test]
fn the_encoder_holds_calls_until_complete_and_ends_with_usage() {
    let events = [
        StreamEvent::reasoning(0, "hm"),
        StreamEvent::signature(0, "foreign"),
        StreamEvent::text(1, "hi"),
        StreamEvent::tool_call(2, "call_a", "f"),
        StreamEvent::tool_call(3, "call_b", "g"),
        StreamEvent::arguments(2, "{\"x\":"),
        StreamEvent::arguments(3, "{}"),
        StreamEvent::arguments(2, "1}"),
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(usage(Some(9), Some(4), Some(2), Some(1))),
    ];
    let text = encode_all(Framing::Sse, &events);
    let chunks: Vec<Value> = text
        .split("\r\n\r\n")
        .filter(|c| !c.is_empty())
        .map(|c| serde_json::from_str(c.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(chunks.len(), 4, "{text}");
    assert!(!text.contains("foreign"));
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"],
        json!([{"text": "hm", "thought": true}])
    );
    assert_eq!(
        chunks[2]["candidates"][0]["content"]["parts"],
        json!([
            {"functionCall": {"id": "call_a", "name": "f", "args": {"x": 1}}},
            {"functionCall": {"id": "call_b", "name": "g", "args": {}}}
        ])
    );
    assert!(chunks[2].get("usageMetadata").is_none());
    assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        chunks[3]["usageMetadata"],
        json!({"promptTokenCount": 9, "candidatesTokenCount": 3, "thoughtsTokenCount": 1, "cachedContentTokenCount": 2, "totalTokenCount": 13})
    );
    assert_eq!(chunks[3]["modelVersion"], "m");

    // The same chunks as one JSON array.
    let array = encode_all(Framing::JsonArray, &events);
    assert!(array.starts_with("[{") && array.ends_with("}\n]"));
    let parsed: Vec<Value> = serde_json::from_str(&array).unwrap();
    assert_eq!(parsed, chunks);
}

#[test]
fn an_error_ends_the_stream_in_either_framing() {
    let events = [
        StreamEvent::start("r", "up"),
        StreamEvent::text(0, "par"),
        StreamEvent::Error {
            message: "upstream broke".into(),
        },
        StreamEvent::text(0, "ignored"),
    ];
    let text = encode_all(Framing::Sse, &events);
    assert!(text.contains(r#""modelVersion":"up","responseId":"r""#));
    assert!(text.ends_with(
        "data: {\"error\":{\"code\":500,\"message\":\"upstream broke\",\"status\":\"INTERNAL\"}}\r\n\r\n"
    ));
    assert!(!text.contains("ignored") && !text.contains("finishReason"));
    let array = encode_all(Framing::JsonArray, &events);
    let parsed: Vec<Value> = serde_json::from_str(&array).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1]["error"]["message"], "upstream broke");
    let only_error = encode_all(Framing::JsonArray, &events[2..3]);
    assert_eq!(
        only_error,
        "[{\"error\":{\"code\":500,\"message\":\"upstream broke\",\"status\":\"INTERNAL\"}}\n]"
    );
}

#[test]
fn encoder_output_decodes_to_the_same_content() {
    let events = vec![
        StreamEvent::start("r", "m"),
        StreamEvent::reasoning(0, "a"),
        StreamEvent::text(1, "b"),
        StreamEvent::tool_call(2, "k1", "f"),
        StreamEvent::arguments(2, "{\"q\":2}"),
        StreamEvent::Usage(usage(Some(3), Some(2), None, None)),
        StreamEvent::Finish(FinishReason::ToolCalls),
    ];
    let text = encode_all(Framing::Sse, &events);
    let decoded = decode_stream(StreamDecoder::default(), &text);
    // Usage rides on the chunk with the calls (known by then) and is not repeated by the
    // last chunk; everything else comes back as it went in.
    assert_eq!(decoded, events);
}
