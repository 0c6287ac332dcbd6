//! Unit tests of `openai_responses`: request decoding and encoding (custom tools, reasoning
//! proof, what a client of another protocol gets), answers and their finish reasons, usage and
//! error bodies, and the stream decoder and encoder. The translation's round trips against
//! other protocols are in the crate's `tests/` (translation, decoder_fuzz).

use serde_json::{Map, Value, json};

use super::request::{client_encrypted, custom_arguments, custom_input, reasoning_part};
use super::stream_decode::json_string_body;
use super::wire::{InReasoningItem, InText};
use super::*;
use crate::canonical::{
    FinishReason, Image, Message, Part, ProofKind, Reasoning, ReasoningConfig, ResponseFormat,
    Role, StreamEvent, ToolChoice, untag_proof,
};
use crate::fixtures::{arguments_of, decode_stream, encode_stream, feed, usage};

fn decode(value: &Value) -> Result<Request, DecodeError> {
    request_to_canonical(value.to_string().as_bytes())
}

fn encode(request: &Request) -> Value {
    serde_json::from_slice(&request_from_canonical(request)).unwrap()
}

#[test]
fn string_input_easy_messages_and_choices_decode() {
    let request =
        decode(&json!({"model": "m", "input": "hi", "instructions": "be brief"})).unwrap();
    assert_eq!(request.system, ["be brief"]);
    assert_eq!(request.messages[0].content, [Part::text("hi")]);
    assert_eq!(request.origin, Some(PROTOCOL));

    let request = decode(&json!({
        "model": "m",
        "input": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [
                {"type": "input_image", "image_url": "https://x/y.png"},
                {"type": "input_image", "file_id": "file-1"},
                {"type": "input_file", "file_id": "file-2"}
            ]},
            {"role": "user", "content": "again"},
            {"type": "item_reference", "id": "msg_1"}
        ],
        "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
        "reasoning": {"effort": null, "summary": "auto"},
        "user": "u1"
    }))
    .unwrap();
    assert_eq!(request.system, ["s"]);
    // Every user message is its own turn; the reference is kept for a Responses provider.
    assert_eq!(request.messages.len(), 3);
    let user = &request.messages[0].content;
    assert_eq!(
        user[0],
        Part::Image(Image::Url {
            url: "https://x/y.png".into()
        })
    );
    assert!(matches!(&user[1], Part::Unknown(v) if v["file_id"] == "file-1"));
    assert!(matches!(&user[2], Part::Unknown(_)));
    assert!(
        matches!(&request.messages[2].content[0], Part::Unknown(v) if v["type"] == "item_reference")
    );
    assert_eq!(request.tool_choice, None);
    assert_eq!(request.extra["tool_choice"]["type"], "allowed_tools");
    assert_eq!(
        request.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "out".into(),
            schema: json!({"type": "object"}),
            strict: Some(true)
        })
    );
    assert_eq!(request.reasoning, Some(ReasoningConfig::default()));
    assert_eq!(request.extra["user"], "u1");

    // Kept items and the client's own tool choice go back only to a Responses provider.
    let out = encode(&request);
    assert_eq!(out["tool_choice"]["type"], "allowed_tools");
    assert_eq!(
        out["input"][2],
        json!({"type": "item_reference", "id": "msg_1"})
    );
    assert_eq!(
        out["input"][0]["content"][1],
        json!({"type": "input_image", "file_id": "file-1"})
    );
    assert_eq!(out["reasoning"], json!({"summary": "auto"}));
    assert_eq!(out["text"]["format"]["strict"], true);
    assert!(
        out.get("store").is_none(),
        "the client's store default applies"
    );
}

#[test]
fn named_tool_choices_and_custom_tools() {
    let request = decode(&json!({
        "model": "m",
        "tools": [
            {"type": "custom", "name": "patch", "format": {"type": "text"}},
            {"type": "function", "name": "f", "parameters": null}
        ],
        "tool_choice": {"type": "custom", "name": "patch"}
    }))
    .unwrap();
    assert_eq!(request.tool_choice, Some(ToolChoice::Named("patch".into())));
    assert_eq!(custom_tool_names(&request), ["patch"]);
    assert_eq!(request.tools[0].description, None);
    assert_eq!(request.tools[1].parameters["type"], "object");
    let out = encode(&request);
    assert_eq!(
        out["tool_choice"],
        json!({"type": "custom", "name": "patch"})
    );
    // The custom tool goes as sent, not also as a function.
    let tools = out["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["name"], "f");
    assert_eq!(tools[1]["type"], "custom");

    let mut foreign = request;
    foreign.origin = Some(Protocol::OpenAiChat);
    assert!(custom_tool_names(&foreign).is_empty());
}

#[test]
fn bad_requests_are_typed_errors_with_a_hint() {
    for (body, hint) in [
        (
            json!({"model": "m", "reasoning": {"effort": "max"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            "role",
        ),
        (json!({"model": "m", "input": [{"content": "x"}]}), "`type`"),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
            "call_id",
        ),
        (json!({"model": "m", "tool_choice": 3}), "tool_choice"),
        (
            json!({"model": "m", "tool_choice": {"type": "function"}}),
            "name",
        ),
        (
            json!({"model": "m", "text": {"format": {"type": "yaml"}}}),
            "text.format",
        ),
        (
            json!({"model": "m", "input": [{"role": "developer", "content": [{"type": "input_image", "image_url": "u"}]}]}),
            "only hold text",
        ),
    ] {
        let err = decode(&body).unwrap_err().to_string();
        assert!(err.contains(hint), "{err} should mention {hint}");
    }
    assert!(request_to_canonical(b"[]").is_err());
}

#[test]
fn foreign_requests_get_safe_defaults() {
    let request = Request {
        model: "gpt-5".into(),
        system: vec!["s1".into(), String::new(), "s2".into()],
        messages: vec![
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::signed_reasoning("t", "sig", Protocol::AnthropicMessages),
                    Part::Reasoning(Reasoning {
                        text: "summary only".into(),
                        signature: None,
                        encrypted: None,
                        issuer: Some(PROTOCOL),
                    }),
                    Part::Unknown(json!({"type": "server_tool_use"})),
                    Part::tool_call("toolu_1", "f", ""),
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    Part::text("look"),
                    Part::ToolResult {
                        call_id: "toolu_1".into(),
                        content: vec![
                            Part::text("chart:"),
                            Part::base64_image("image/png", "AAAA"),
                        ],
                        is_error: false,
                    },
                ],
            },
        ],
        max_tokens: Some(1),
        stop: vec!["END".into()],
        stream: true,
        reasoning: Some(ReasoningConfig {
            effort: None,
            budget_tokens: Some(0),
        }),
        tool_choice: Some(ToolChoice::Required),
        parallel_tool_calls: Some(false),
        extra: Map::from_iter([("top_k".to_owned(), json!(3))]),
        origin: Some(Protocol::AnthropicMessages),
        ..Request::default()
    };
    let out = encode(&request);
    assert_eq!(
        out,
        json!({
            "model": "gpt-5",
            "instructions": "s1\n\ns2",
            "input": [
                {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "toolu_1", "output": [
                    {"type": "input_text", "text": "chart:"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}
                ]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}]}
            ],
            "max_output_tokens": 16,
            "stream": true,
            "store": false
        })
    );

    // Reasoning asked for without a level: the provider's default level.
    let mut asked = request;
    asked.reasoning = Some(ReasoningConfig {
        effort: None,
        budget_tokens: Some(3000),
    });
    assert_eq!(encode(&asked)["reasoning"], json!({"effort": "low"}));
    asked.reasoning = Some(ReasoningConfig::default());
    assert_eq!(encode(&asked)["reasoning"], json!({}));
}

#[test]
fn foreign_reasoning_proof_reaches_clients_tagged() {
    let anthropic = Reasoning::signed("t", "sig.with.dots", Protocol::AnthropicMessages);
    let wrapped = client_encrypted(&anthropic).unwrap().into_owned();
    assert_eq!(
        untag_proof(&wrapped),
        Some((
            Protocol::AnthropicMessages,
            ProofKind::Signature,
            "sig.with.dots".to_owned()
        ))
    );
    // Read back from a client, then adopted as the translated path does: Anthropic's again.
    let item = |encrypted: &str| InReasoningItem {
        summary: vec![InText { text: "t".into() }],
        content: None,
        encrypted_content: Some(encrypted.to_owned()),
    };
    let Part::Reasoning(mut back) = reasoning_part(item(&wrapped)) else {
        panic!("reasoning");
    };
    back.adopt_tag();
    assert_eq!(back, anthropic);
    // Already tagged proofs are not tagged twice; a Responses provider's own goes as is.
    let tagged = Reasoning {
        signature: Some(wrapped.clone()),
        ..anthropic.clone()
    };
    assert_eq!(client_encrypted(&tagged).as_deref(), Some(wrapped.as_str()));
    let own = Reasoning {
        signature: None,
        encrypted: Some("gAAAA".into()),
        issuer: Some(PROTOCOL),
        ..anthropic
    };
    assert_eq!(client_encrypted(&own).as_deref(), Some("gAAAA"));
    let unsigned = Reasoning {
        issuer: None,
        ..own
    };
    assert_eq!(client_encrypted(&unsigned), None);
}

#[test]
fn custom_tool_text_comes_out_of_the_arguments() {
    assert_eq!(custom_input(r#"{"input":"a\nb"}"#), "a\nb");
    assert_eq!(custom_input(r#"{"patch":"x"}"#), r#"{"patch":"x"}"#);
    assert_eq!(custom_input("not json"), "not json");
    assert_eq!(custom_arguments("say \"hi\""), r#"{"input":"say \"hi\""}"#);
    assert_eq!(json_string_body("a\"\n\u{1}é"), "a\\\"\\n\\u0001é");
}

#[test]
fn answers_map_status_to_finish_reasons() {
    let answer = |status: &str, reason: Option<&str>, output: Value| {
        let body = json!({"id": "r", "status": status, "incomplete_details": reason.map(|r| json!({"reason": r})), "output": output});
        response_to_canonical(body.to_string().as_bytes()).unwrap()
    };
    let call = json!([{"type": "custom_tool_call", "call_id": "c", "name": "patch", "input": "x"}]);
    let response = answer("completed", None, call);
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
    assert_eq!(
        response.content[0],
        Part::tool_call("c", "patch", r#"{"input":"x"}"#)
    );
    let refusal = json!([{"type": "message", "content": [{"type": "refusal", "refusal": "no"}]}]);
    let response = answer("completed", None, refusal);
    assert_eq!(response.finish, Some(FinishReason::ContentFilter));
    assert_eq!(response.content, [Part::text("no")]);
    assert_eq!(
        answer("incomplete", Some("content_filter"), json!([])).finish,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(
        answer("failed", None, json!([])).finish,
        Some(FinishReason::Other("failed".into()))
    );
    assert!(response_to_canonical(br#"{"id":"r"}"#).is_err());

    // Back out to a Responses client: the custom call is text again.
    let response = answer(
        "completed",
        None,
        json!([{"type": "custom_tool_call", "call_id": "c", "name": "patch", "input": "x"}]),
    );
    let out: Value = serde_json::from_slice(&response_from_canonical_with_custom_tools(
        &response,
        7,
        &["patch".to_owned()],
    ))
    .unwrap();
    assert_eq!(
        out["output"][0],
        json!({"type": "custom_tool_call", "id": "ctc_r_0", "status": "completed", "call_id": "c", "name": "patch", "input": "x"})
    );
    assert_eq!(out["id"], "resp_r");
    assert_eq!(out["created_at"], 7);
    let plain: Value = serde_json::from_slice(&response_from_canonical(&response, 7)).unwrap();
    assert_eq!(plain["output"][0]["arguments"], r#"{"input":"x"}"#);
}

#[test]
fn usage_is_read_on_the_side_and_errors_have_openai_shape() {
    let completed = br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":13}}}"#;
    assert_eq!(
        event_usage(completed),
        Some(TokenUsage {
            input: Some(10),
            output: Some(3),
            cached: Some(4),
            reasoning: Some(2)
        })
    );
    assert_eq!(
        event_usage(br#"{"type":"response.created","response":{"usage":null}}"#),
        None
    );
    assert_eq!(
        event_usage(br#"{"type":"response.output_text.delta","delta":"usage"}"#),
        None
    );
    assert_eq!(
        response_usage(br#"{"output":[],"usage":{"input_tokens":1,"output_tokens":2}}"#)
            .unwrap()
            .output,
        Some(2)
    );
    let body: Value = serde_json::from_slice(&error_body(429, "slow down")).unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
    );
    let body: Value = serde_json::from_slice(&error_body(400, "bad")).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], Value::Null);
}

fn decode_events(events: &[Value]) -> (Vec<StreamEvent>, StreamDecoder) {
    let mut decoder = StreamDecoder::default();
    let sse_events = events.iter().map(|event| {
        let kind = event["type"].as_str().unwrap_or("");
        format!("event: {kind}\ndata: {event}\n\n")
    });
    let out = feed(&mut decoder, sse_events);
    (out, decoder)
}

#[test]
fn custom_tool_input_streams_as_json_and_done_only_items_decode() {
    let (events, decoder) = decode_events(&[
        json!({"type": "response.created", "response": {"id": "r", "model": "m"}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "custom_tool_call", "id": "ctc", "call_id": "c1", "name": "patch", "input": ""}}),
        json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": "line \"1\"\n"}),
        json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": "line 2"}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "custom_tool_call", "id": "ctc", "call_id": "c1", "name": "patch", "input": "line \"1\"\nline 2"}}),
        // Items that only arrive done (no added, no deltas) still come through.
        json!({"type": "response.output_item.done", "output_index": 1, "item": {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}], "encrypted_content": "enc"}}),
        json!({"type": "response.output_item.done", "output_index": 2, "item": {"type": "message", "content": [{"type": "output_text", "text": "hello"}]}}),
        json!({"type": "response.output_item.done", "output_index": 3, "item": {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"a\":1}"}}),
        json!({"type": "response.output_text.annotation.added", "output_index": 2}),
        json!({"type": "response.completed", "response": {"id": "r", "status": "completed"}}),
    ]);
    assert!(decoder.is_done());
    let input: Value = serde_json::from_str(&arguments_of(&events, 0)).unwrap();
    assert_eq!(input, json!({"input": "line \"1\"\nline 2"}));
    assert!(events.contains(&StreamEvent::reasoning(1, "a\n\nb")));
    assert!(events.contains(&StreamEvent::signature(1, "enc")));
    assert!(events.contains(&StreamEvent::text(2, "hello")));
    assert!(events.contains(&StreamEvent::tool_call(3, "c2", "f")));
    assert_eq!(arguments_of(&events, 3), r#"{"a":1}"#);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish(FinishReason::ToolCalls))
    );
}

#[test]
fn provider_errors_end_the_stream() {
    for (event, message) in [
        (
            json!({"type": "response.failed", "response": {"id": "r", "status": "failed", "error": {"code": "server_error", "message": "boom"}}}),
            "boom",
        ),
        (
            json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": null}),
            "slow",
        ),
        (
            json!({"type": "error", "error": {"message": "nested"}}),
            "nested",
        ),
        (json!({"type": "error", "code": "only_code"}), "only_code"),
    ] {
        let (events, mut decoder) = decode_events(&[event]);
        assert_eq!(
            events,
            [StreamEvent::Error {
                message: message.into()
            }]
        );
        assert!(decoder.is_done());
        assert!(decoder.finish().is_empty());
    }
    let (events, _) = decode_events(&[
        json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": {"input_tokens": 1, "output_tokens": 2}}}),
    ]);
    assert_eq!(events[1], StreamEvent::Finish(FinishReason::Length));

    let mut decoder = StreamDecoder::default();
    assert!(decoder.decode(b"data: [DONE]\n\n").unwrap().is_empty());
    assert!(
        decoder
            .decode(br#"data: {"type":"response.function_call_arguments.delta","output_index":4,"delta":"{"}"#)
            .is_err()
    );
    assert!(decoder.decode(b"data: {oops}\n\n").is_err());
    assert!(matches!(
        decoder.finish().as_slice(),
        [StreamEvent::Error { .. }]
    ));
}

fn encode_all(events: &[StreamEvent], encoder: StreamEncoder) -> (String, Vec<Value>) {
    let text = encode_stream(encoder, events);
    let values = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.split_once("\ndata: ").unwrap().1).unwrap())
        .collect();
    (text, values)
}

#[test]
fn the_encoder_copes_with_a_missing_start_late_usage_and_signatures() {
    let events = [
        StreamEvent::reasoning(0, "think"),
        StreamEvent::signature(0, "sig"),
        StreamEvent::text(1, "hi"),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Usage(usage(Some(3), Some(1), None, None)),
    ];
    let (text, values) = encode_all(&events, StreamEncoder::new("m", 5));
    assert!(
        text.contains(r#""encrypted_content":"sig""#),
        "the proof rides in encrypted_content: {text}"
    );
    assert_eq!(values[0]["response"]["id"], "resp_flexiproxy");
    assert_eq!(values[0]["response"]["model"], "m");
    let last = values.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["usage"]["total_tokens"], 4);
    assert_eq!(
        values
            .iter()
            .filter(|v| v["type"] == "response.completed")
            .count(),
        1,
        "finish twice sends one terminal event"
    );
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value["sequence_number"], i);
    }

    let (_, values) = encode_all(&events, StreamEncoder::new("m", 5));
    let reasoning = &values
        .iter()
        .find(|v| v["type"] == "response.output_item.done")
        .unwrap()["item"];
    assert_eq!(reasoning["encrypted_content"], "sig");

    // Our decoder reads the encoder's stream back into the same parts.
    let (text, _) = encode_all(&events, StreamEncoder::new("m", 5));
    let decoded = decode_stream(StreamDecoder::default(), &text);
    let mut expected = vec![StreamEvent::start("resp_flexiproxy", "m")];
    expected.extend(events[..3].iter().cloned());
    expected.push(StreamEvent::Usage(usage(
        Some(3),
        Some(1),
        Some(0),
        Some(0),
    )));
    expected.push(StreamEvent::Finish(FinishReason::Stop));
    assert_eq!(decoded, expected);
}

#[test]
fn an_error_ends_the_stream_with_error_and_response_failed() {
    let events = [
        StreamEvent::tool_call(0, "call_1", "f"),
        StreamEvent::arguments(0, "{\"a\""),
        StreamEvent::Error {
            message: "upstream broke".into(),
        },
        StreamEvent::text(1, "ignored"),
    ];
    let (text, values) = encode_all(&events, StreamEncoder::new("m", 5));
    assert!(!text.contains("ignored") && !text.contains("response.completed"));
    let kinds: Vec<&str> = values.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "error",
            "response.failed"
        ]
    );
    assert_eq!(values[4]["message"], "upstream broke");
    let failed = &values[5]["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        json!({"code": "server_error", "message": "upstream broke"})
    );
    assert_eq!(failed["output"][0]["arguments"], "{\"a\"");
    assert_eq!(failed["output"][0]["status"], "incomplete");
}

#[test]
fn length_and_filter_stops_end_incomplete() {
    for (finish, reason) in [
        (FinishReason::Length, "max_output_tokens"),
        (FinishReason::ContentFilter, "content_filter"),
    ] {
        let (_, values) = encode_all(
            &[
                StreamEvent::start("msg_9", String::new()),
                StreamEvent::text(0, "cut"),
                StreamEvent::Finish(finish),
            ],
            StreamEncoder::new("fallback", 5),
        );
        let last = values.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["id"], "resp_msg_9");
        assert_eq!(last["response"]["model"], "fallback");
        assert_eq!(last["response"]["incomplete_details"]["reason"], reason);
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "cut");
    }
}
