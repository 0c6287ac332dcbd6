//! Golden fixtures for OpenAI Responses through the canonical model, both as the client's
//! protocol (Codex CLI, `client.responses`) and as the provider's, and malformed-input checks
//! for its decoders.
//!
//! Each pair under `tests/fixtures/translation/responses_*` is `<name>.in.*` (what one side
//! sends) and `<name>.out.*` (what the other side must receive); some tests read the inputs of
//! the other protocols' fixtures (`anthropic_*`, `openai_*`). Requests and responses are
//! compared as JSON values, streams byte for byte, since SDKs parse the framing. Besides the
//! comparison each test asserts the behaviour that matters (ids, items, custom tools, reasoning
//! proof, usage, finish reasons) so a wrong golden file cannot hide a regression.
//!
//! To regenerate the `.out` files after an intended change, run with `FLEXIPROXY_BLESS=1` and
//! review the diff.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

use bytes::Bytes;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::TokenUsage;
use flexiproxy_protocol::canonical::{
    Effort, FinishReason, Part, ProofKind, Reasoning, Role, StreamEvent, ToolChoice, tag_proof,
    untag_proof,
};
use flexiproxy_protocol::codec::{DecodeStream as _, EncodeStream as _};
use flexiproxy_protocol::sse::{self, EventSplitter};
use flexiproxy_protocol::{
    anthropic_messages as anthropic, openai_chat as openai, openai_responses as responses,
};
use serde_json::{Value, json};

#[macro_use]
mod golden;

use golden::{
    CREATED, Translate, canonical_stream, check_mangled, encode_everywhere, feed_stream, golden,
    mangled, pretty, sse_events,
};

fn encode_responses(events: &[StreamEvent], mut encoder: responses::StreamEncoder) -> String {
    let mut out = Vec::new();
    for event in events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    String::from_utf8(out).unwrap()
}

/// The `data` of every event of an encoded Responses stream, checking the framing: each event
/// names its type in `event:` and in `data.type`, and `sequence_number` counts from 0.
fn parsed_events(text: &str) -> Vec<Value> {
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

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

// ---------------------------------------------------------------------------------------------
// A Responses client (Codex CLI) in front of other providers.

#[test]
fn responses_client_request_to_chat_and_anthropic() {
    let input = fixture!("responses_client_request.in.json");
    let request = responses::request_to_canonical(input.1.as_bytes()).unwrap();

    // Instructions and the developer message are system text; tool items join their turns.
    assert_eq!(request.system.len(), 2);
    let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert!(matches!(
        &request.messages[1].content[0],
        Part::Reasoning(Reasoning {
            encrypted: Some(_),
            issuer: Some(Protocol::OpenAiResponses),
            ..
        })
    ));
    assert_eq!(
        request.messages[3].content[1],
        Part::ToolCall {
            id: "call_Ef56".into(),
            name: "apply_patch".into(),
            arguments: json!({"input": "*** Begin Patch\n*** Update File: Cargo.toml\n@@\n [package]\n+rust-version = \"1.90\"\n*** End Patch"}).to_string(),
        }
    );
    assert_eq!(responses::custom_tool_names(&request), ["apply_patch"]);
    assert_eq!(request.tools.len(), 2, "shell and apply_patch as functions");
    assert_eq!(
        request.native_tools.len(),
        2,
        "apply_patch as sent, web_search"
    );
    assert_eq!(request.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(request.reasoning.unwrap().effort, Some(Effort::High));
    assert_eq!(request.max_tokens, Some(8000));
    assert_eq!(
        request.extra["prompt_cache_key"],
        "0199a213-81c0-7800-8aa1-bbab2a035a53"
    );

    let out = openai::request_from_canonical(&request);
    golden(
        fixture!("responses_client_request_to_openai.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(
        messages[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    // The assistant turn holds its text and both parallel calls; the results follow in order.
    assert_eq!(messages[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(messages[3]["tool_call_id"], "call_Ab12");
    assert_eq!(messages[4]["tool_call_id"], "call_Cd34");
    // The freeform tool is a function taking `input`; its call and result pair up.
    let patch_tool = &out["tools"][1]["function"];
    assert_eq!(patch_tool["name"], "apply_patch");
    assert_eq!(patch_tool["parameters"]["required"], json!(["input"]));
    assert!(
        patch_tool["description"]
            .as_str()
            .unwrap()
            .contains("lark grammar")
    );
    assert_eq!(messages[5]["tool_calls"][0]["id"], "call_Ef56");
    assert_eq!(messages[6]["tool_call_id"], "call_Ef56");
    assert_eq!(
        out["tools"].as_array().unwrap().len(),
        2,
        "web_search stays behind"
    );
    assert!(!out.to_string().contains("gAAAAABoEncryptedBlobFromOpenAI"));
    assert!(out.get("prompt_cache_key").is_none() && out.get("store").is_none());
    assert_eq!(out["reasoning_effort"], "high");

    let out = anthropic::request_from_canonical(&request);
    golden(
        fixture!("responses_client_request_to_anthropic.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(out["thinking"]["budget_tokens"], 32768);
    assert_eq!(
        messages[1]["content"][1]["input"],
        json!({"command": ["cat", "Cargo.toml"], "workdir": "/repo"})
    );
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "call_Ab12");
    // The custom tool's call goes as `input: {"input": <patch>}` and its result follows.
    assert_eq!(messages[3]["content"][1]["name"], "apply_patch");
    assert!(
        messages[3]["content"][1]["input"]["input"]
            .as_str()
            .unwrap()
            .starts_with("*** Begin Patch")
    );
    assert_eq!(messages[4]["content"][0]["tool_use_id"], "call_Ef56");
    assert!(!out.to_string().contains("gAAAAABoEncryptedBlobFromOpenAI"));
}

#[test]
fn responses_client_request_to_a_responses_provider_keeps_what_it_sent() {
    let input = fixture!("responses_client_request.in.json");
    let request = responses::request_to_canonical(input.1.as_bytes()).unwrap();
    let out = responses::request_from_canonical(&request);
    golden(
        fixture!("responses_client_request_to_responses.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    let original: Value = serde_json::from_str(input.1).unwrap();
    // Everything the canonical model has no home for comes back as the client sent it.
    for key in [
        "store",
        "include",
        "prompt_cache_key",
        "reasoning",
        "text",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "stream",
    ] {
        assert_eq!(out[key], original[key], "{key}");
    }
    assert_eq!(
        out["tools"][1], original["tools"][1],
        "the custom tool as sent"
    );
    assert_eq!(out["tools"][2], json!({"type": "web_search"}));
    let items = out["input"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message",
            "reasoning",
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output",
            "message",
            "custom_tool_call",
            "custom_tool_call_output",
            "message"
        ]
    );
    assert_eq!(
        items[1]["encrypted_content"],
        "gAAAAABoEncryptedBlobFromOpenAI=="
    );
    assert_eq!(items[8]["input"], original["input"][9]["input"]);
    assert_eq!(out["instructions"].as_str().unwrap().lines().count(), 3);
}

#[test]
fn foreign_requests_to_a_responses_provider() {
    let input = fixture!("anthropic_to_openai_request.in.json");
    let request = anthropic::request_to_canonical(input.1.as_bytes()).unwrap();
    let out = responses::request_from_canonical(&request);
    golden(
        fixture!("responses_from_anthropic_request.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    // Nothing to store for a conversation the client keeps itself; Anthropic-only fields and
    // the signed thinking stay behind.
    assert_eq!(out["store"], false);
    assert!(out.get("metadata").is_none() && out.get("stop").is_none());
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    assert_eq!(out["reasoning"], json!({"effort": "medium"}));
    assert!(out["instructions"].as_str().unwrap().contains("/repo"));
    let tools = out["tools"].as_array().unwrap();
    assert!(
        tools
            .iter()
            .all(|t| t["type"] == "function" && t["strict"] == false)
    );
    let items = out["input"].as_array().unwrap();
    let calls: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls[0]["call_id"], "toolu_01A09q90qw90lq917835lq9");
    let results: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .collect();
    assert_eq!(results[1]["output"], "Error: No such file");

    let input = fixture!("openai_to_anthropic_request.in.json");
    let request = openai::request_to_canonical(input.1.as_bytes()).unwrap();
    let out = responses::request_from_canonical(&request);
    golden(
        fixture!("responses_from_openai_request.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["max_output_tokens"], 1024);
    assert_eq!(out["parallel_tool_calls"], false);
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "name": "get_weather"})
    );
    assert!(out.get("seed").is_none() && out.get("stream_options").is_none());
    let image = out["input"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "input_image")
        .unwrap();
    assert_eq!(
        image["image_url"],
        "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
    );
}

#[test]
fn a_chat_provider_stream_reaches_a_responses_client_with_its_custom_tool() {
    let input = fixture!("responses_from_openai_stream.in.txt");
    let events = canonical_stream(Protocol::OpenAiChat, input.1);
    let encoder = responses::StreamEncoder::new("gpt-5-codex", CREATED)
        .with_custom_tools(["apply_patch".to_owned()]);
    let text = encode_responses(&events, encoder);
    golden(fixture!("responses_from_openai_stream.out.txt"), &text);

    let sent = parsed_events(&text);
    assert_eq!(sent[0]["type"], "response.created");
    assert_eq!(sent[1]["type"], "response.in_progress");
    let done = of_type(&sent, "response.output_item.done");
    let kinds: Vec<&str> = done
        .iter()
        .map(|e| e["item"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["reasoning", "message", "custom_tool_call", "function_call"]
    );
    // The freeform tool's call carries the patch as text, not as JSON.
    let patch = &done[2]["item"];
    assert_eq!(patch["call_id"], "call_patch");
    assert_eq!(
        patch["input"],
        "*** Begin Patch\n*** Update File: src/lib.rs\n@@\n-    n - 1\n+    n\n*** End Patch"
    );
    assert_eq!(
        done[3]["item"]["arguments"],
        r#"{"command":["cargo","test"]}"#
    );
    assert_eq!(
        of_type(&sent, "response.custom_tool_call_input.done")[0]["input"],
        patch["input"]
    );
    // Text deltas add up to the message; the terminal event holds every item and the usage
    // that arrived after the finish reason.
    let deltas: String = of_type(&sent, "response.output_text.delta")
        .iter()
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "I'll fix the \"off by one\" bug.");
    let last = sent.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["id"], "resp_chatcmpl-codex1");
    assert_eq!(last["response"]["output"].as_array().unwrap().len(), 4);
    assert_eq!(
        last["response"]["usage"],
        json!({
            "input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024},
            "output_tokens": 90, "output_tokens_details": {"reasoning_tokens": 20},
            "total_tokens": 1290
        })
    );

    // Our own decoder reads the same answer back.
    let again = canonical_stream(Protocol::OpenAiResponses, &text);
    assert!(again.contains(&StreamEvent::ToolCallStart {
        index: 2,
        id: "call_patch".into(),
        name: "apply_patch".into()
    }));
    assert_eq!(
        again.last(),
        Some(&StreamEvent::Finish(FinishReason::ToolCalls))
    );
}

#[test]
fn an_anthropic_stream_reaches_a_responses_client_with_its_signature_kept() {
    let input = fixture!("anthropic_stream_to_openai_stream.in.txt");
    // Tagged with their issuer, as the translated path does for clients of another protocol.
    let events: Vec<StreamEvent> = canonical_stream(Protocol::AnthropicMessages, input.1)
        .into_iter()
        .map(|event| match event {
            StreamEvent::ReasoningSignature { index, signature } => {
                StreamEvent::ReasoningSignature {
                    index,
                    signature: tag_proof(
                        Protocol::AnthropicMessages,
                        ProofKind::Signature,
                        &signature,
                    ),
                }
            }
            other => other,
        })
        .collect();
    let encoder = responses::StreamEncoder::new("claude-sonnet-4-5", CREATED);
    let text = encode_responses(&events, encoder);
    golden(fixture!("responses_from_anthropic_stream.out.txt"), &text);

    let sent = parsed_events(&text);
    let reasoning = &of_type(&sent, "response.output_item.done")[0]["item"];
    assert_eq!(reasoning["type"], "reasoning");
    let encrypted = reasoning["encrypted_content"].as_str().unwrap();
    let (issuer, kind, proof) = untag_proof(encrypted).unwrap();
    assert_eq!(
        (issuer, kind),
        (Protocol::AnthropicMessages, ProofKind::Signature)
    );
    assert!(proof.starts_with("EqQBCgIYAhIM"));

    // When Codex sends the item back, it is Anthropic's signed thinking again.
    let body = json!({
        "model": "m",
        "input": [{"type": "reasoning", "id": reasoning["id"], "summary": reasoning["summary"], "encrypted_content": encrypted}]
    });
    let mut request = responses::request_to_canonical(body.to_string().as_bytes()).unwrap();
    request.adopt_signature_tags();
    let Part::Reasoning(back) = &request.messages[0].content[0] else {
        panic!("a reasoning part");
    };
    assert!(back.signed_for(Protocol::AnthropicMessages));
    assert!(
        back.signature
            .as_deref()
            .unwrap()
            .starts_with("EqQBCgIYAhIM")
    );
    let thinking: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ReasoningDelta { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(back.text, thinking);
    let to_anthropic: Value =
        serde_json::from_slice(&anthropic::request_from_canonical(&request)).unwrap();
    assert_eq!(
        to_anthropic["messages"][0]["content"][0]["type"],
        "thinking"
    );
}

// ---------------------------------------------------------------------------------------------
// A Responses provider behind clients of other protocols.

#[test]
fn a_responses_provider_stream_decodes_and_reaches_other_clients() {
    let input = fixture!("responses_provider_stream.in.txt");
    let events = canonical_stream(Protocol::OpenAiResponses, input.1);
    assert_eq!(
        events[0],
        StreamEvent::MessageStart {
            id: "resp_0a1b2c3d4e5f".into(),
            model: "gpt-5-2025-08-07".into()
        }
    );
    let reasoning: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ReasoningDelta { index: 0, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasoning,
        "**Planning the lookup**\n\nThe user wants the weather in two cities; I can query both \
         at once.\n\n**Choosing units**\n\nCelsius for both."
    );
    assert!(events.contains(&StreamEvent::ReasoningSignature {
        index: 0,
        signature: "gAAAAABoEncryptedReasoning0a1b==".into()
    }));
    let args = |wanted: usize| -> String {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallArgsDelta { index, fragment } if *index == wanted => {
                    Some(fragment.as_str())
                }
                _ => None,
            })
            .collect()
    };
    assert!(events.contains(&StreamEvent::ToolCallStart {
        index: 2,
        id: "call_paris".into(),
        name: "get_weather".into()
    }));
    assert_eq!(args(2), r#"{"city":"Paris","unit":"c"}"#);
    assert_eq!(args(3), r#"{"city":"Tokyo","unit":"c"}"#);
    let tail = &events[events.len() - 2..];
    assert_eq!(
        tail,
        [
            StreamEvent::Usage(TokenUsage {
                input: Some(812),
                output: Some(164),
                cached: Some(512),
                reasoning: Some(96)
            }),
            StreamEvent::Finish(FinishReason::ToolCalls)
        ]
    );

    let mut to_anthropic = anthropic::StreamEncoder::new("claude-sonnet-4-5");
    let mut to_openai = openai::StreamEncoder::new("gpt-5", CREATED, true);
    let (mut a, mut o) = (Vec::new(), Vec::new());
    for event in &events {
        to_anthropic.encode(event, &mut a);
        to_openai.encode(event, &mut o);
    }
    to_anthropic.finish(&mut a);
    to_openai.finish(&mut o);
    let a = String::from_utf8(a).unwrap();
    let o = String::from_utf8(o).unwrap();
    golden(fixture!("responses_stream_to_anthropic_stream.out.txt"), &a);
    golden(fixture!("responses_stream_to_openai_stream.out.txt"), &o);
    assert!(a.contains(
        r#""usage":{"input_tokens":300,"output_tokens":164,"cache_read_input_tokens":512}"#
    ));
    assert!(o.contains(r#""finish_reason":"tool_calls""#));
    assert!(!o.contains("gAAAAABoEncryptedReasoning0a1b"));
}

#[test]
fn a_responses_provider_answer_reaches_other_clients() {
    let input = fixture!("responses_provider_response.in.json");
    let response = responses::response_to_canonical(input.1.as_bytes()).unwrap();
    assert_eq!(response.finish, Some(FinishReason::Length));
    assert_eq!(response.usage.cached, Some(150));
    assert!(matches!(
        &response.content[0],
        Part::Reasoning(Reasoning { encrypted: Some(e), issuer: Some(Protocol::OpenAiResponses), .. }) if e == "gAAAAABoWholeAnswerBlob=="
    ));
    assert!(matches!(&response.content[2], Part::Unknown(v) if v["type"] == "web_search_call"));

    let out = anthropic::response_from_canonical(&response);
    golden(
        fixture!("responses_response_to_anthropic.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["stop_reason"], "max_tokens");
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 50, "output_tokens": 300, "cache_read_input_tokens": 150})
    );
    assert!(
        out["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["text"] == "Tokyo is warmer: 24 °C against 18 °C in")
    );
    assert!(!out.to_string().contains("gAAAAABoWholeAnswerBlob"));

    let out = openai::response_from_canonical(&response, CREATED);
    golden(
        fixture!("responses_response_to_openai.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["choices"][0]["finish_reason"], "length");
    assert_eq!(
        out["choices"][0]["message"]["reasoning_content"],
        "Comparing the two temperatures."
    );
}

#[test]
fn an_anthropic_answer_reaches_a_responses_client() {
    let input = fixture!("anthropic_to_openai_response.in.json");
    let response = anthropic::response_to_canonical(input.1.as_bytes()).unwrap();
    let out = responses::response_from_canonical(&response, CREATED);
    golden(
        fixture!("responses_from_anthropic_response.out.json"),
        &pretty(&out),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["object"], "response");
    assert_eq!(out["status"], "completed");
    let output = out["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    let tagged = untag_proof(output[0]["encrypted_content"].as_str().unwrap()).unwrap();
    assert_eq!(tagged.0, Protocol::AnthropicMessages);
    let calls: Vec<&Value> = output
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls[0]["call_id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(out["usage"]["input_tokens"], 130);
    assert_eq!(out["usage"]["input_tokens_details"]["cached_tokens"], 100);
    assert_eq!(
        out["usage"]["total_tokens"],
        130 + out["usage"]["output_tokens"].as_u64().unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed input: decoders return errors, never panic, and encoders accept whatever events a
// decoder let through.

#[test]
fn decoders_survive_malformed_requests_and_responses() {
    let cases: [(&str, Translate); 2] = [
        (fixture!("responses_client_request.in.json").1, |b| {
            responses::request_to_canonical(b)
                .map(|r| {
                    responses::request_from_canonical(&r);
                    anthropic::request_from_canonical(&r);
                    openai::request_from_canonical(&r)
                })
                .is_ok()
        }),
        (fixture!("responses_provider_response.in.json").1, |b| {
            responses::response_to_canonical(b)
                .map(|r| {
                    responses::response_from_canonical_with_custom_tools(
                        &r,
                        CREATED,
                        &["apply_patch".to_owned()],
                    );
                    anthropic::response_from_canonical(&r)
                })
                .is_ok()
        }),
    ];
    check_mangled(&cases, 21);
}

#[test]
fn the_stream_decoder_survives_malformed_streams() {
    let input = fixture!("responses_provider_stream.in.txt").1;
    for body in mangled(input, 23) {
        encode_everywhere(&feed_stream(Protocol::OpenAiResponses, &body));
    }
}

#[test]
fn a_truncated_stream_ends_with_an_error_not_silence() {
    let input = fixture!("responses_provider_stream.in.txt").1;
    let cut = &input[..input.find("event: response.completed").unwrap()];
    let mut decoder = responses::StreamDecoder::default();
    let mut events = Vec::new();
    for event in sse_events(cut) {
        events.extend(decoder.decode(&event).unwrap());
    }
    assert!(!decoder.is_done());
    events.extend(decoder.finish());
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })));
    let text = encode_responses(&events, responses::StreamEncoder::new("m", CREATED));
    let sent = parsed_events(&text);
    let last = sent.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(sent[sent.len() - 2]["type"], "error");
    assert!(of_type(&sent, "response.completed").is_empty());
}
