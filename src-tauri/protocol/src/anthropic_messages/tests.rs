//! Unit tests of the Anthropic Messages codec: requests both ways (system folding, typed and
//! unknown blocks, defaults and signatures for foreign requests, thinking after an unsigned
//! tool turn), whole answers and error bodies, the usage readers, and streams (encoder output
//! decoding back to the same events, errors and cut streams). Translations between protocols
//! are tested in the crate's `tests/translation*.rs`.

use serde_json::{Map, Value, json};

use super::response::{finish_from_anthropic, finish_to_anthropic};
use super::*;
use crate::canonical::{
    FinishReason, Message, Part, ReasoningConfig, Role, StreamEvent, ToolChoice,
};
use crate::fixtures::{decode_stream, encode_stream, usage};

fn decode(value: &Value) -> Request {
    request_to_canonical(value.to_string().as_bytes()).unwrap()
}

#[test]
fn system_message_inside_messages_is_folded_into_system() {
    let request = decode(&json!({
        "model": "claude",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "system", "content": "you are Claude Code"},
            {"role": "user", "content": "hi"}
        ]
    }));
    assert_eq!(request.system, vec!["be brief", "you are Claude Code"]);
    assert_eq!(request.messages.len(), 1);
    assert_eq!(request.messages[0].content, vec![Part::text("hi")]);
}

#[test]
fn blocks_decode_to_typed_parts_and_unknown_ones_are_kept() {
    let request = decode(&json!({
        "model": "claude",
        "max_tokens": 100,
        "top_k": 5,
        "messages": [
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "plan", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "file", "is_error": true},
                {"type": "document", "source": {"type": "text", "data": "x"}}
            ]}
        ],
        "tools": [
            {"name": "read", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }));
    assert_eq!(request.extra.get("top_k"), Some(&json!(5)));
    assert_eq!(request.tools.len(), 1);
    assert_eq!(request.native_tools.len(), 1);
    assert_eq!(request.tool_choice, Some(ToolChoice::Required));
    assert_eq!(request.parallel_tool_calls, Some(false));
    assert_eq!(request.reasoning.unwrap().budget_tokens, Some(2048));
    let assistant = &request.messages[0].content;
    assert!(matches!(&assistant[0], Part::Reasoning(r) if r.signature.as_deref() == Some("sig")));
    assert_eq!(
        assistant[1],
        Part::tool_call("toolu_1", "read", r#"{"path":"a"}"#)
    );
    let user = &request.messages[1].content;
    assert_eq!(user[0], Part::tool_result("toolu_1", "file", true));
    assert!(matches!(&user[1], Part::Unknown(v) if v["type"] == "document"));
}

#[test]
fn malformed_requests_are_typed_errors() {
    for body in [
        &b"{"[..],
        br#"{"model":"m"}"#,
        br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
        br#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_use"}]}]}"#,
        br#"{"model":"m","messages":[],"tool_choice":{"type":"sometimes"}}"#,
    ] {
        assert!(
            request_to_canonical(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn request_round_trip_keeps_what_anthropic_sent() {
    let original = json!({
        "model": "claude",
        "max_tokens": 100,
        "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "s"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "ok"}]}
            ]}
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}]
    });
    let request = decode(&original);
    let back: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(back, original);
}

#[test]
fn foreign_requests_get_defaults_and_no_foreign_signatures() {
    let request = Request {
        model: "claude".into(),
        messages: vec![
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::signed_reasoning("t", "openai-sig", Protocol::OpenAiResponses),
                    Part::tool_call("functions.read:0", "read", "not json"),
                ],
            },
            Message {
                role: Role::Tool,
                content: vec![Part::tool_result("functions.read:0", "r", false)],
            },
            Message {
                role: Role::User,
                content: vec![Part::text("thanks")],
            },
        ],
        temperature: Some(0.2),
        reasoning: Some(ReasoningConfig {
            effort: Some(crate::canonical::Effort::High),
            budget_tokens: None,
        }),
        extra: Map::from_iter([("seed".to_owned(), json!(1))]),
        origin: Some(Protocol::OpenAiChat),
        ..Request::default()
    };
    let out: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 32768})
    );
    assert_eq!(out["max_tokens"], json!(32768 + DEFAULT_MAX_TOKENS));
    assert!(out.get("temperature").is_none());
    assert!(out.get("seed").is_none(), "OpenAI-only fields stay behind");
    assert_eq!(
        out["messages"][0]["content"],
        json!([{"type": "tool_use", "id": "functions_read_0", "name": "read", "input": {}}])
    );
    // The tool message and the next user message share one user turn, result first.
    assert_eq!(
        out["messages"][1],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "functions_read_0", "content": [{"type": "text", "text": "r"}]},
            {"type": "text", "text": "thanks"}
        ]})
    );
}

#[test]
fn response_usage_and_stop_reasons_map_both_ways() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 2}
    });
    let response = response_to_canonical(body.to_string().as_bytes()).unwrap();
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
    assert_eq!(response.usage.input, Some(42));
    assert_eq!(response.usage.cached, Some(30));
    let back: Value = serde_json::from_slice(&response_from_canonical(&response)).unwrap();
    assert_eq!(back["stop_reason"], "tool_use");
    assert_eq!(back["usage"]["input_tokens"], 12);
    assert_eq!(back["usage"]["cache_read_input_tokens"], 30);
    assert_eq!(back["content"], body["content"]);
    for (name, reason) in [
        ("end_turn", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
    ] {
        assert_eq!(finish_from_anthropic(name), reason);
        assert_eq!(finish_to_anthropic(&reason, None), name);
    }
    assert_eq!(
        finish_to_anthropic(&FinishReason::Stop, Some("###")),
        "stop_sequence"
    );
}

#[test]
fn error_body_has_anthropic_shape() {
    let body: Value = serde_json::from_slice(&error_body(error_type(429), "slow down")).unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
}

fn encode_all(events: &[StreamEvent]) -> String {
    encode_stream(StreamEncoder::new("m"), events)
}

#[test]
fn encoder_output_decodes_to_the_same_events() {
    let events = vec![
        StreamEvent::start("msg_1", "m"),
        StreamEvent::reasoning(0, "think"),
        StreamEvent::signature(0, "sig"),
        StreamEvent::text(1, "hi"),
        StreamEvent::tool_call(2, "toolu_a", "f"),
        StreamEvent::arguments(2, "{\"a\":"),
        StreamEvent::arguments(2, "1}"),
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(usage(Some(9), Some(4), None, None)),
    ];
    let text = encode_all(&events);
    assert!(text.starts_with("event: message_start\ndata: {\"type\":\"message_start\""));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    let decoded = decode_stream(StreamDecoder::default(), &text);
    let mut expected = events;
    // The decoder reports usage where Anthropic puts it: zero at the start, all at the end.
    expected.insert(1, StreamEvent::Usage(usage(Some(0), Some(0), None, None)));
    expected.swap(8, 9);
    assert_eq!(decoded, expected);
}

#[test]
fn an_error_ends_the_stream_with_an_error_event() {
    let mut encoder = StreamEncoder::new("m");
    let mut out = Vec::new();
    encoder.encode(&StreamEvent::text(0, "par"), &mut out);
    encoder.encode(
        &StreamEvent::Error {
            message: "upstream broke".into(),
        },
        &mut out,
    );
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"upstream broke\"}}\n\n"
    ));
    assert!(!text.contains("message_stop"));
}

#[test]
fn usage_is_read_on_the_side() {
    let start = br#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":20,"cache_read_input_tokens":4,"output_tokens":1}}}"#;
    let usage = event_usage(start).unwrap();
    assert_eq!(
        (usage.input, usage.cached, usage.output),
        (Some(24), Some(4), Some(1))
    );
    let delta = br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#;
    let usage = event_usage(delta).unwrap();
    assert_eq!((usage.input, usage.output), (None, Some(5)));
    assert_eq!(event_usage(br#"{"type":"ping"}"#), None);
    let whole = br#"{"content":[],"usage":{"input_tokens":3,"output_tokens":2}}"#;
    assert_eq!(response_usage(whole).unwrap().output, Some(2));
}

#[test]
fn a_cut_stream_decodes_to_an_error() {
    let mut decoder = StreamDecoder::default();
    let events = decoder
        .decode(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\"}}\n\n")
        .unwrap();
    assert_eq!(events.len(), 1);
    assert!(!decoder.is_done());
    assert!(matches!(
        decoder.finish().as_slice(),
        [StreamEvent::Error { .. }]
    ));
}

#[test]
fn thinking_stays_off_after_an_unsigned_tool_turn() {
    let mut request = Request {
        model: "claude-x".into(),
        reasoning: Some(ReasoningConfig {
            effort: Some(crate::canonical::Effort::Low),
            budget_tokens: None,
        }),
        messages: vec![
            Message {
                role: Role::User,
                content: vec![Part::text("weather?")],
            },
            Message {
                role: Role::Assistant,
                content: vec![Part::tool_call("toolu_1", "get_weather", "{}")],
            },
            Message {
                role: Role::Tool,
                content: vec![Part::tool_result("toolu_1", "sunny", false)],
            },
        ],
        ..Request::default()
    };
    let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert!(body.get("thinking").is_none(), "{body}");

    // With Anthropic's own signed thinking before the call, thinking stays on.
    request.messages[1]
        .content
        .insert(0, Part::signed_reasoning("hm", "sig", PROTOCOL));
    let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(body["thinking"]["type"], "enabled", "{body}");
}
