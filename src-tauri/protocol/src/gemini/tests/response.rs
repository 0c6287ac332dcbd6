//! Whole answers both ways (usage, finish reasons, calls, and which reasoning a Gemini client
//! may see), the error body, and the usage the fast path reads from bytes it forwards.

use super::*;
use crate::canonical::{FinishReason, Part, Reasoning};
use crate::gemini::response::{finish_from_gemini, finish_to_gemini};

#[test]
fn responses_map_usage_finish_reasons_and_calls_both_ways() {
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "thinking", "thought": true},
                {"text": "calling"},
                {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "sig"}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30, "cachedContentTokenCount": 60, "totalTokenCount": 150},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp/1"
    });
    let response = response_to_canonical(body.to_string().as_bytes()).unwrap();
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
    assert_eq!(
        response.usage,
        TokenUsage {
            input: Some(100),
            output: Some(50),
            cached: Some(60),
            reasoning: Some(30)
        }
    );
    assert_eq!(
        (response.id.as_str(), response.model.as_str()),
        ("resp/1", "gemini-2.5-flash")
    );
    assert!(
        matches!(&response.content[3], Part::ToolCall { id, .. } if id == "gemini_fc_resp_1_0")
    );

    // Back to a Gemini client: the same parts, STOP, and the usage split again.
    let back: Value = serde_json::from_slice(&response_from_canonical(&response)).unwrap();
    assert_eq!(back["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        back["candidates"][0]["content"]["parts"],
        json!([
            {"text": "thinking", "thought": true},
            {"text": "calling"},
            {"functionCall": {"id": "gemini_fc_resp_1_0", "name": "f", "args": {"x": 1}}, "thoughtSignature": "sig"}
        ])
    );
    assert_eq!(
        back["usageMetadata"],
        json!({"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30, "cachedContentTokenCount": 60, "totalTokenCount": 150})
    );

    for (name, reason) in [
        ("MAX_TOKENS", FinishReason::Length),
        ("SAFETY", FinishReason::ContentFilter),
        (
            "MALFORMED_FUNCTION_CALL",
            FinishReason::Other("MALFORMED_FUNCTION_CALL".into()),
        ),
    ] {
        assert_eq!(finish_from_gemini(name, false), reason);
        assert_eq!(finish_to_gemini(&reason), name);
    }
    assert_eq!(
        finish_to_gemini(&FinishReason::Other("pause_turn".into())),
        "OTHER"
    );

    let blocked =
        br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5}}"#;
    let response = response_to_canonical(blocked).unwrap();
    assert_eq!(response.finish, Some(FinishReason::ContentFilter));
    assert!(response.content.is_empty());
    assert!(response_to_canonical(br#"{"candidates":[]}"#).is_err());
    assert!(
        response_to_canonical(
            br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#
        )
        .is_err()
    );
}

#[test]
fn foreign_answers_show_reasoning_without_foreign_signatures() {
    let response = Response {
        id: "msg_1".into(),
        model: "claude".into(),
        content: vec![
            Part::signed_reasoning("why", "anthropic-sig", Protocol::AnthropicMessages),
            Part::Reasoning(Reasoning {
                text: String::new(),
                signature: None,
                encrypted: Some("redacted".into()),
                issuer: Some(Protocol::AnthropicMessages),
            }),
            Part::tool_call("toolu_1", "f", ""),
        ],
        finish: Some(FinishReason::ToolCalls),
        usage: TokenUsage {
            input: Some(10),
            output: Some(5),
            cached: None,
            reasoning: None,
        },
        ..Response::default()
    };
    let out: Value = serde_json::from_slice(&response_from_canonical(&response)).unwrap();
    assert_eq!(
        out,
        json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "why", "thought": true},
                {"functionCall": {"id": "toolu_1", "name": "f", "args": {}}}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": "claude",
            "responseId": "msg_1"
        })
    );
}

#[test]
fn error_bodies_have_gemini_shape() {
    let body: Value = serde_json::from_slice(&error_body(429, "slow down")).unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
    );
    for (code, status) in [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (501, "UNIMPLEMENTED"),
        (502, "UNAVAILABLE"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (418, "FAILED_PRECONDITION"),
        (599, "UNKNOWN"),
    ] {
        assert_eq!(error_status(code), status, "{code}");
    }
}

#[test]
fn usage_is_read_on_the_side() {
    let chunk = br#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":7,"thoughtsTokenCount":3,"totalTokenCount":10}}"#;
    assert_eq!(
        event_usage(chunk),
        Some(TokenUsage {
            input: Some(7),
            output: Some(3),
            cached: None,
            reasoning: Some(3)
        })
    );
    assert_eq!(event_usage(br#"{"candidates":[]}"#), None);
    assert_eq!(event_usage(b"not json \"usageMetadata\""), None);
    assert_eq!(
        response_usage(br#"{"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2,"toolUsePromptTokenCount":4}}"#)
            .map(|u| (u.input, u.output)),
        Some((Some(5), Some(2)))
    );
}
