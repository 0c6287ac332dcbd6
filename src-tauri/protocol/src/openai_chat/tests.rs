//! Unit tests of `openai_chat`: usage reading, request decoding and encoding, the stream
//! decoder and encoder, and whole answers. They go through the module's public functions, as
//! the gateway does, except for `is_openai_reasoning_model`, whose name matching is pinned
//! down directly. The translation's round trips against other protocols are in the crate's
//! `tests/` (translation, decoder_fuzz).

use serde_json::{Map, Value};

use super::request::is_openai_reasoning_model;
use super::*;
use crate::Protocol;
use crate::canonical::{
    Effort, FinishReason, Image, Message, Part, ReasoningConfig, Role, StreamEvent, ToolChoice,
};
use crate::fixtures::{feed, usage};

#[test]
fn reads_usage_with_details() {
    let body = br#"{"id":"x","choices":[{"index":0}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
    assert_eq!(
        response_usage(body),
        Some(TokenUsage {
            input: Some(12),
            output: Some(5),
            cached: Some(4),
            reasoning: Some(2)
        })
    );
    assert_eq!(response_usage(br#"{"data":[]}"#), None);
}

#[test]
fn tells_the_usage_only_chunk_from_content_chunks() {
    let plain = br#"{"choices":[{"delta":{"content":"hi"}}],"usage":null}"#;
    assert_eq!(chunk_usage(plain), ChunkUsage::default());
    let last = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    let read = chunk_usage(last);
    assert!(read.usage_only);
    assert_eq!(read.usage.unwrap().input, Some(3));
    let mixed = br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    assert!(!chunk_usage(mixed).usage_only);
    assert_eq!(chunk_usage(b"[DONE]"), ChunkUsage::default());
}

use serde_json::json;

fn decode_request(value: &Value) -> Result<Request, DecodeError> {
    request_to_canonical(value.to_string().as_bytes())
}

#[test]
fn requests_decode_system_images_tool_calls_and_limits() {
    let request = decode_request(&json!({
        "model": "gpt",
        "messages": [
            {"role": "system", "content": "s1"},
            {"role": "developer", "content": [{"type": "text", "text": "s2"}]},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "input_audio", "input_audio": {"data": "..", "format": "wav"}}
            ]},
            {"role": "assistant", "content": null, "reasoning_content": "hm", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"}
        ],
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "stop": ["a", "b"],
        "reasoning_effort": "low",
        "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "f"}}]
    }))
    .unwrap();
    assert_eq!(request.system, vec!["s1", "s2"]);
    assert_eq!(request.max_tokens, Some(20), "max_completion_tokens wins");
    assert_eq!(request.stop, vec!["a", "b"]);
    assert_eq!(request.reasoning.unwrap().effort, Some(Effort::Low));
    assert_eq!(request.tool_choice, Some(ToolChoice::Required));
    assert_eq!(request.tools[0].parameters["type"], "object");
    let user = &request.messages[0].content;
    assert_eq!(user[0], Part::base64_image("image/png", "AAAA"));
    assert_eq!(
        user[1],
        Part::Image(Image::Url {
            url: "https://x/y.png".into()
        })
    );
    assert!(matches!(user[2], Part::Unknown(_)));
    let assistant = &request.messages[1].content;
    assert!(matches!(&assistant[0], Part::Reasoning(r) if r.text == "hm" && r.issuer.is_none()));
    assert!(matches!(&assistant[1], Part::ToolCall { id, .. } if id == "call_1"));
    assert_eq!(request.messages[2].role, Role::Tool);
}

#[test]
fn bad_requests_are_typed_errors_with_a_hint() {
    let err = decode_request(&json!({"model": "m", "messages": [], "reasoning_effort": "max"}))
        .unwrap_err();
    assert!(err.to_string().contains("reasoning_effort"));
    assert!(
        decode_request(&json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}))
            .is_err()
    );
    assert!(decode_request(&json!({"model": "m", "messages": [], "tool_choice": 3})).is_err());
    assert!(request_to_canonical(b"[]").is_err());
}

#[test]
fn foreign_requests_drop_signatures_and_foreign_fields() {
    let request = Request {
        model: "m".into(),
        messages: vec![Message {
            role: Role::Assistant,
            content: vec![
                Part::signed_reasoning("t", "sig", Protocol::AnthropicMessages),
                Part::tool_call("toolu_1", "f", ""),
            ],
        }],
        stream: true,
        reasoning: Some(ReasoningConfig {
            effort: None,
            budget_tokens: Some(0),
        }),
        parallel_tool_calls: Some(false),
        extra: Map::from_iter([("top_k".to_owned(), json!(3))]),
        origin: Some(Protocol::AnthropicMessages),
        ..Request::default()
    };
    let out: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(
        out,
        json!({
            "model": "m",
            "messages": [{"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ]}],
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[test]
fn client_stream_options_are_not_copied_over_the_gateways_own() {
    let request = decode_request(&json!({
        "model": "m", "messages": [], "stream": true,
        "stream_options": {"include_usage": false}, "seed": 1
    }))
    .unwrap();
    assert!(!client_wants_usage(&request));
    let out: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["seed"], 1);
}

fn decode_stream(chunks: &[Value]) -> Vec<StreamEvent> {
    let mut decoder = StreamDecoder::default();
    let sse_events = chunks.iter().map(|chunk| format!("data: {chunk}\n\n"));
    let done = "data: [DONE]\n\n".to_owned();
    let mut events = feed(&mut decoder, sse_events.chain([done]));
    assert!(decoder.is_done());
    events.extend(decoder.finish());
    events
}

#[test]
fn interleaved_parallel_calls_keep_their_parts_and_missing_ids_are_made() {
    let delta = |calls: Value| json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": calls}}]});
    let events = decode_stream(&[
        delta(
            json!([{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{\"x\""}}]),
        ),
        delta(json!([{"index": 1, "function": {"name": "g", "arguments": "{"}}])),
        delta(json!([{"index": 0, "function": {"arguments": ":1}"}}])),
        delta(json!([{"index": 1, "function": {"arguments": "}"}}])),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
    ]);
    assert_eq!(
        events,
        vec![
            StreamEvent::start("c1", "m"),
            StreamEvent::tool_call(0, "call_a", "f"),
            StreamEvent::arguments(0, "{\"x\""),
            StreamEvent::tool_call(1, "call_c1_1", "g"),
            StreamEvent::arguments(1, "{"),
            StreamEvent::arguments(0, ":1}"),
            StreamEvent::arguments(1, "}"),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(usage(Some(5), Some(2), None, None)),
        ]
    );
}

#[test]
fn text_after_a_tool_call_is_a_new_part_and_errors_end_the_stream() {
    let text = |t: &str| json!({"choices": [{"index": 0, "delta": {"content": t}}]});
    let events = decode_stream(&[
        text("a"),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "k", "function": {"name": "f"}}]}}]}),
        text("b"),
    ]);
    let indices: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { index, .. } | StreamEvent::ToolCallStart { index, .. } => {
                Some(*index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(indices, vec![0, 1, 2]);

    let mut decoder = StreamDecoder::default();
    let events = decoder
        .decode(br#"data: {"error":{"message":"overloaded","type":"server_error"}}"#)
        .unwrap();
    assert_eq!(
        events,
        vec![StreamEvent::Error {
            message: "overloaded".into()
        }]
    );
    assert!(decoder.finish().is_empty());
    assert!(
        StreamDecoder::default()
            .decode(b"data: {not json}\n\n")
            .is_err()
    );
}

#[test]
fn the_encoder_sends_usage_only_when_asked_and_drops_signatures() {
    let events = [
        StreamEvent::start("msg_1", "claude"),
        StreamEvent::signature(0, "sig"),
        StreamEvent::text(1, "hi"),
        StreamEvent::Usage(usage(Some(3), Some(1), None, None)),
        StreamEvent::Finish(FinishReason::Length),
    ];
    for include_usage in [false, true] {
        let mut encoder = StreamEncoder::new("m", 1, include_usage);
        let mut out = Vec::new();
        for event in &events {
            encoder.encode(event, &mut out);
        }
        encoder.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("sig"));
        assert!(text.contains(r#""finish_reason":"length""#));
        assert_eq!(
            text.contains(r#""usage":{"prompt_tokens":3"#),
            include_usage
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(
            text.matches("data: ").count(),
            4 + usize::from(include_usage)
        );
    }
}

#[test]
fn responses_map_usage_and_finish_reasons() {
    let body = json!({
        "id": "c", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 1}}
    });
    let response = response_to_canonical(body.to_string().as_bytes()).unwrap();
    assert_eq!(response.finish, Some(FinishReason::ContentFilter));
    assert_eq!(response.usage.reasoning, Some(1));
    let back: Value = serde_json::from_slice(&response_from_canonical(&response, 5)).unwrap();
    assert_eq!(back["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(back["usage"]["total_tokens"], 10);
    assert_eq!(
        back["usage"]["completion_tokens_details"]["reasoning_tokens"],
        1
    );
    assert!(response_to_canonical(br#"{"choices":[]}"#).is_err());
}

#[test]
fn reasoning_models_get_max_completion_tokens_and_default_sampling() {
    for (model, reasoning) in [
        ("o3", true),
        ("o4-mini", true),
        ("openai/gpt-5.1", true),
        ("gpt-5-mini", true),
        ("gpt-5-chat-latest", false),
        ("gpt-4o", false),
        ("deepseek-chat", false),
        ("o30-lookalike", false),
    ] {
        assert_eq!(is_openai_reasoning_model(model), reasoning, "{model}");
    }
    let request = Request {
        model: "o4-mini".into(),
        max_tokens: Some(100),
        temperature: Some(0.2),
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::text("hi")],
        }],
        ..Request::default()
    };
    let mut request = request;
    request.reasoning = Some(ReasoningConfig {
        effort: None,
        budget_tokens: Some(10_000),
    });
    let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(body["reasoning_effort"], "medium");
    for model in ["gpt-4o", "openai/gpt-4.1-mini", "gpt-5-chat-latest"] {
        request.model = model.into();
        let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
        assert!(body.get("reasoning_effort").is_none(), "{model}: {body}");
    }
    request.model = "deepseek-reasoner".into();
    let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(body["reasoning_effort"], "medium");
    request.model = "o4-mini".into();
    let body: Value = serde_json::from_slice(&request_from_canonical(&request)).unwrap();
    assert_eq!(body["max_completion_tokens"], 100);
    assert!(body.get("max_tokens").is_none() && body.get("temperature").is_none());
}
