//! Golden fixtures for Gemini (`generateContent` / `streamGenerateContent`) translation through
//! the canonical model, and malformed-input checks for its decoders.
//!
//! Fixtures live beside the other protocols' under `tests/fixtures/translation/`, named
//! `gemini_*`: `<name>.in.*` is what one side sends, `<name>.out.*` what the other side must
//! receive. Requests and responses are compared as pretty JSON, streams byte for byte (clients
//! parse the framing). Each test also asserts the behaviour that matters (ids, signatures,
//! usage arithmetic, finish reasons, schema cleaning) so a wrong golden file cannot hide a
//! regression.
//!
//! To regenerate the `.out` files after an intended change, run with `FLEXIPROXY_BLESS=1` and
//! review the diff.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::TokenUsage;
use flexiproxy_protocol::canonical::{FinishReason, Part, StreamEvent};
use flexiproxy_protocol::codec::{DecodeStream as _, EncodeStream as _};
use flexiproxy_protocol::gemini::{self, Framing};
use flexiproxy_protocol::{anthropic_messages as anthropic, openai_chat as openai};
use serde_json::{Value, json};

#[macro_use]
mod golden;

use golden::{
    CREATED, Translate, canonical_stream, check_mangled, encode_everywhere, feed_stream, golden,
    mangled, pretty, sse_events,
};

fn gemini_stream(events: &[StreamEvent], framing: Framing) -> String {
    let mut encoder = gemini::StreamEncoder::new("gemini-2.5-pro", framing);
    let mut out = Vec::new();
    for event in events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    String::from_utf8(out).unwrap()
}

/// The chunks of a Gemini SSE text.
fn sse_chunks(text: &str) -> Vec<Value> {
    text.split("\r\n\r\n")
        .filter(|event| !event.is_empty())
        .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

/// The arguments a stream gave the tool call with `id`, reassembled.
fn call_arguments(events: &[StreamEvent], id: &str) -> String {
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
        .collect()
}

fn call_ids(events: &[StreamEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

// Requests.

#[test]
fn gemini_request_to_gemini() {
    let input = fixture!("gemini_request.in.json");
    let request = gemini::request_to_canonical(input.1.as_bytes()).unwrap();
    assert!(request.model.is_empty(), "the model is in the URL");
    let out = gemini::request_from_canonical(&request).unwrap();
    golden(fixture!("gemini_request.out.json"), &pretty(&out));

    let out: Value = serde_json::from_slice(&out).unwrap();
    let declarations = &out["tools"][0]["functionDeclarations"];
    // JSON Schema from `parametersJsonSchema` arrives cleaned into `parameters`: references
    // inlined, nulls as `nullable`, unknown keywords gone.
    let read = &declarations[0]["parameters"];
    assert_eq!(
        read["properties"]["offset"],
        json!({"type": "integer", "nullable": true})
    );
    assert_eq!(
        read["properties"]["encoding"],
        json!({"type": "string", "enum": ["utf-8", "latin-1"], "title": "Encoding", "nullable": true})
    );
    assert_eq!(read["properties"]["range"]["description"], "Lines to read.");
    assert_eq!(read["properties"]["range"]["required"], json!(["start"]));
    for keyword in [
        "additionalProperties",
        "$schema",
        "$defs",
        "$ref",
        "pattern",
        "exclusiveMinimum",
        "default",
        "minLength",
        "propertyOrdering",
    ] {
        assert!(
            !declarations.to_string().contains(keyword),
            "{keyword} left in the declarations"
        );
    }
    assert!(
        declarations[2].get("parameters").is_none(),
        "a tool without arguments declares no parameters"
    );
    // The history keeps Gemini's signatures where Gemini put them; the call that had one
    // needs no placeholder.
    let model = &out["contents"][1];
    assert_eq!(model["role"], "model");
    assert_eq!(
        model["parts"][1]["thoughtSignature"],
        "CiIBVKhc7l5mzkoZSRQfFeCS44vjuGk3o7tGrA=="
    );
    assert!(!out.to_string().contains(gemini::SKIP_SIGNATURE));
    // Responses answer their calls by name; the ids made for id-less calls stay here.
    let results = &out["contents"][2]["parts"];
    assert_eq!(
        results[1]["functionResponse"],
        json!({"name": "list_directory", "response": {"error": "Permission denied"}})
    );
    assert!(!out.to_string().contains("gemini_fc_"));
    // What only Gemini knows comes back to Gemini.
    assert_eq!(out["tools"][1], json!({"googleSearch": {}}));
    assert_eq!(out["generationConfig"]["topK"], 64);
    assert_eq!(
        out["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
    assert!(out.get("safetySettings").is_some() && out.get("labels").is_some());
}

#[test]
fn gemini_request_to_anthropic_and_openai() {
    let input = fixture!("gemini_request.in.json");
    let mut request = gemini::request_to_canonical(input.1.as_bytes()).unwrap();
    request.model = "claude-sonnet-4-5".into();
    request.stream = true;
    let out = anthropic::request_from_canonical(&request);
    golden(
        fixture!("gemini_to_anthropic_request.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["system"][1]["text"], "The project is in /repo.");
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );
    let messages = out["messages"].as_array().unwrap();
    // Gemini's thought and signatures stay with Gemini.
    assert!(!out.to_string().contains("CiIBVKhc7l5mzkoZSRQ"));
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "tool_use", "id": "gemini_fc_0", "name": "read_file", "input": {"absolute_path": "/repo/README.md"}})
    );
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "gemini_fc_0");
    assert_eq!(messages[2]["content"][1]["tool_use_id"], "gemini_fc_1");
    assert_eq!(messages[2]["content"][1]["is_error"], true);
    // The OpenAPI-style schema reads as JSON Schema.
    assert_eq!(
        out["tools"][1]["input_schema"]["properties"]["ignore"],
        json!({"type": ["array", "null"], "items": {"type": "string"}})
    );
    assert_eq!(out["tools"].as_array().unwrap().len(), 3, "no googleSearch");
    assert!(out.get("safetySettings").is_none());

    request.model = "gpt-4.1".into();
    let out = openai::request_from_canonical(&request);
    golden(fixture!("gemini_to_openai_request.out.json"), &pretty(&out));
    let out: Value = serde_json::from_slice(&out).unwrap();
    // gpt-4.1 does not reason and would refuse `reasoning_effort`.
    assert!(out.get("reasoning_effort").is_none(), "{out}");
    assert_eq!(out["messages"][3]["tool_call_id"], "gemini_fc_0");
    assert_eq!(out["messages"][4]["content"], "Error: Permission denied");
    assert_eq!(out["max_tokens"], 8192);
}

#[test]
fn anthropic_request_to_gemini() {
    let input = fixture!("anthropic_to_openai_request.in.json");
    let request = anthropic::request_to_canonical(input.1.as_bytes()).unwrap();
    let out = gemini::request_from_canonical(&request).unwrap();
    golden(
        fixture!("gemini_from_anthropic_request.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert!(out.get("model").is_none() && out.get("stream").is_none());
    assert_eq!(
        out["systemInstruction"]["parts"][2]["text"],
        "The working directory is /repo."
    );
    // Claude's signed thinking is not Gemini's; the history's first call gets the placeholder
    // Gemini 3 asks for, and Anthropic's ids are not sent.
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    let model = &out["contents"][1]["parts"];
    assert_eq!(model[0], json!({"text": "Reading both files."}));
    assert_eq!(model[1]["thoughtSignature"], gemini::SKIP_SIGNATURE);
    assert!(model[2].get("thoughtSignature").is_none());
    assert!(!out.to_string().contains("toolu_"));
    let user = &out["contents"][2]["parts"];
    assert_eq!(
        user[1]["functionResponse"],
        json!({"name": "Read", "response": {"error": "No such file"}})
    );
    assert_eq!(user[2], json!({"text": "Summarise, please."}));
    assert_eq!(
        out["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 10000, "includeThoughts": true})
    );
    assert_eq!(
        out["generationConfig"]["stopSequences"],
        json!(["</answer>"])
    );
    assert_eq!(
        out["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert!(out.get("metadata").is_none());
}

#[test]
fn openai_request_to_gemini() {
    let input = fixture!("openai_to_anthropic_request.in.json");
    let request = openai::request_to_canonical(input.1.as_bytes()).unwrap();
    let out = gemini::request_from_canonical(&request).unwrap();
    golden(
        fixture!("gemini_from_openai_request.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    let contents = out["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "user, model, user: turns alternate");
    assert_eq!(
        contents[0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}})
    );
    assert_eq!(
        contents[1]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    let user = &contents[2]["parts"];
    assert_eq!(
        user[0]["functionResponse"]["response"]["output"],
        "18 C, cloudy"
    );
    assert_eq!(
        user[1]["functionResponse"]["response"]["output"],
        "24 C, sunny"
    );
    assert_eq!(user[2], json!({"text": "Which is warmer?"}));
    assert_eq!(
        out["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
    );
    assert_eq!(out["generationConfig"]["maxOutputTokens"], 1024);
    assert!(out.get("seed").is_none() && out.get("stream_options").is_none());
}

// Streams.

#[test]
fn gemini_stream_to_anthropic_and_openai() {
    let input = fixture!("gemini_stream.in.txt");
    let events = canonical_stream(Protocol::Gemini, input.1);

    // Thoughts, text, then the two calls Gemini sent whole in one chunk, each its own part.
    let ids = call_ids(&events);
    assert_eq!(
        ids,
        [
            "gemini_fc_8_LTaJ-XJ9Oe_uMPsZWTsQQ_0",
            "gemini_fc_8_LTaJ-XJ9Oe_uMPsZWTsQQ_1"
        ]
    );
    assert_eq!(
        call_arguments(&events, ids[1]),
        r#"{"city":"Tokyo","units":"metric"}"#
    );
    // The first call's signature came after the text, when the thought was long closed: a
    // stream has nowhere to put it (and no other client could send it back to Gemini).
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, StreamEvent::ReasoningSignature { .. }))
    );
    assert_eq!(
        events[events.len() - 2],
        StreamEvent::Usage(TokenUsage {
            input: Some(1480),
            output: Some(41 + 96),
            cached: Some(1024),
            reasoning: Some(96),
        })
    );
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish(FinishReason::ToolCalls))
    );

    let mut encoder = anthropic::StreamEncoder::new("gemini-2.5-pro");
    let mut out = Vec::new();
    for event in &events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    golden(fixture!("gemini_stream_to_anthropic.out.txt"), &text);
    assert!(!text.contains("signature_delta"));
    // Anthropic's input leaves the cached tokens out.
    assert!(text.contains(
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":456,"output_tokens":137,"cache_read_input_tokens":1024}}"#
    ));

    let mut encoder = openai::StreamEncoder::new("gemini-2.5-pro", CREATED, true);
    let mut out = Vec::new();
    for event in &events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    golden(fixture!("gemini_stream_to_openai.out.txt"), &text);
    assert!(text.contains(
        r#""usage":{"prompt_tokens":1480,"completion_tokens":137,"total_tokens":1617,"prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":96}}"#
    ));
    assert!(text.contains(r#""finish_reason":"tool_calls""#));
}

#[test]
fn anthropic_stream_to_gemini_in_both_framings() {
    let input = fixture!("anthropic_stream_to_openai_stream.in.txt");
    let events = canonical_stream(Protocol::AnthropicMessages, input.1);

    let text = gemini_stream(&events, Framing::Sse);
    golden(fixture!("gemini_stream_from_anthropic.out.txt"), &text);
    let array = gemini_stream(&events, Framing::JsonArray);
    golden(fixture!("gemini_stream_from_anthropic.out.json"), &array);

    // Both framings carry the same chunks; the array is one JSON document.
    let chunks = sse_chunks(&text);
    let parsed: Vec<Value> = serde_json::from_str(&array).unwrap();
    assert_eq!(parsed, chunks);
    // Claude's signature never reaches a Gemini client, the text does.
    assert!(!text.contains("EqQBCgIYAhIM"));
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"],
        json!([{"text": "Two cities, two calls.", "thought": true}])
    );
    // The calls go out whole, together, with their ids and arguments as objects.
    let calls = chunks
        .iter()
        .find(|c| c.to_string().contains("functionCall"))
        .unwrap();
    assert_eq!(
        calls["candidates"][0]["content"]["parts"][1]["functionCall"]["id"],
        "toolu_01U2y2gK45rBnl3uOUsO8Vq7"
    );
    assert!(calls["candidates"][0]["content"]["parts"][0]["functionCall"]["args"].is_object());
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 125);
    assert_eq!(last["usageMetadata"]["cachedContentTokenCount"], 100);

    // Read back by the Gemini decoder: same calls, ids and arguments.
    let again = canonical_stream(Protocol::Gemini, &text);
    assert_eq!(call_ids(&again), call_ids(&events));
    for id in call_ids(&events) {
        let before: Value = serde_json::from_str(&call_arguments(&events, id)).unwrap();
        let after: Value = serde_json::from_str(&call_arguments(&again, id)).unwrap();
        assert_eq!(before, after);
    }
    assert_eq!(
        again.last(),
        Some(&StreamEvent::Finish(FinishReason::ToolCalls))
    );
}

#[test]
fn openai_stream_to_gemini() {
    let input = fixture!("openai_stream_to_anthropic_stream.in.txt");
    let events = canonical_stream(Protocol::OpenAiChat, input.1);
    let text = gemini_stream(&events, Framing::Sse);
    golden(fixture!("gemini_stream_from_openai.out.txt"), &text);
    let chunks = sse_chunks(&text);
    // Interleaved argument fragments are held until complete, then sent as objects.
    let calls: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().unwrap())
        .filter_map(|p| p.get("functionCall"))
        .collect();
    assert_eq!(
        calls,
        [
            &json!({"id": "call_paris", "name": "get_weather", "args": {"city": "Paris"}}),
            &json!({"id": "call_tokyo", "name": "get_weather", "args": {"city": "Tokyo"}})
        ]
    );
    // OpenAI's usage arrives after its finish reason and still makes the last chunk.
    let last = chunks.last().unwrap();
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 120);
    assert_eq!(last["usageMetadata"]["cachedContentTokenCount"], 100);
}

// Whole answers.

#[test]
fn gemini_response_to_anthropic_and_openai() {
    let input = fixture!("gemini_response.in.json");
    let response = gemini::response_to_canonical(input.1.as_bytes()).unwrap();
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
    // The signature on the text part rides before it.
    assert!(matches!(&response.content[1], Part::Reasoning(r) if r.encrypted.is_some()));

    let out = anthropic::response_from_canonical(&response);
    golden(
        fixture!("gemini_response_to_anthropic.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 82, "output_tokens": 180, "cache_read_input_tokens": 128})
    );
    assert_eq!(out["content"][2]["id"], "9w3kq2xa");
    assert!(!out.to_string().contains("EpYCCpMCAb4"));

    let out = openai::response_from_canonical(&response, CREATED);
    golden(
        fixture!("gemini_response_to_openai.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out["usage"]["completion_tokens"], 180);
    assert_eq!(
        out["usage"]["completion_tokens_details"]["reasoning_tokens"],
        145
    );
}

#[test]
fn anthropic_response_to_gemini() {
    let input = fixture!("anthropic_to_openai_response.in.json");
    let response = anthropic::response_to_canonical(input.1.as_bytes()).unwrap();
    let out = gemini::response_from_canonical(&response);
    golden(
        fixture!("gemini_response_from_anthropic.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    let candidate = &out["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    let usage = &out["usageMetadata"];
    assert_eq!(
        usage["totalTokenCount"],
        usage["promptTokenCount"].as_u64().unwrap()
            + usage["candidatesTokenCount"].as_u64().unwrap()
    );
    assert_eq!(usage["cachedContentTokenCount"], 100);
}

// Malformed input: decoders return errors, never panic, and encoders accept whatever events
// a decoder let through.

#[test]
fn gemini_decoders_survive_malformed_requests_and_responses() {
    let cases: [(&str, Translate); 3] = [
        (fixture!("gemini_request.in.json").1, |b| {
            gemini::request_to_canonical(b)
                .map(|r| {
                    let _ = gemini::request_from_canonical(&r);
                    anthropic::request_from_canonical(&r);
                    openai::request_from_canonical(&r);
                })
                .is_ok()
        }),
        (fixture!("gemini_response.in.json").1, |b| {
            gemini::response_to_canonical(b)
                .map(|r| {
                    gemini::response_from_canonical(&r);
                    anthropic::response_from_canonical(&r);
                    openai::response_from_canonical(&r, CREATED);
                })
                .is_ok()
        }),
        (fixture!("anthropic_to_openai_request.in.json").1, |b| {
            anthropic::request_to_canonical(b)
                .map(|r| {
                    let _ = gemini::request_from_canonical(&r);
                })
                .is_ok()
        }),
    ];
    check_mangled(&cases, 21);
}

#[test]
fn the_gemini_stream_decoder_survives_malformed_streams() {
    let input = fixture!("gemini_stream.in.txt").1;
    for body in mangled(input, 31) {
        encode_everywhere(&feed_stream(Protocol::Gemini, &body));
    }
}

#[test]
fn a_truncated_gemini_stream_ends_with_an_error_not_silence() {
    let input = fixture!("gemini_stream.in.txt").1;
    let cut = &input[..input.find("\"finishReason\"").unwrap()];
    let mut decoder = gemini::StreamDecoder::default();
    let mut events = Vec::new();
    for event in sse_events(cut) {
        if let Ok(decoded) = decoder.decode(&event) {
            events.extend(decoded);
        }
    }
    events.extend(decoder.finish());
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })));
    for framing in [Framing::Sse, Framing::JsonArray] {
        let text = gemini_stream(&events, framing);
        assert!(text.contains(r#"{"error":{"code":500,"#));
        assert!(!text.contains("\"finishReason\""));
    }
    let array = gemini_stream(&events, Framing::JsonArray);
    assert!(serde_json::from_str::<Vec<Value>>(&array).is_ok());
}
