//! `countTokens` both ways: the client's two body shapes, the body a provider gets, and the
//! total read from its answer.

use super::*;
use crate::canonical::Part;

#[test]
fn count_tokens_both_ways() {
    let plain =
        count_tokens_request_to_canonical(br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#).unwrap();
    assert_eq!(plain.messages[0].content, vec![Part::text("hi")]);
    let wrapped = count_tokens_request_to_canonical(
        br#"{"generateContentRequest":{"model":"models/gemini-2.5-flash","contents":[{"parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"s"}]}}}"#,
    )
    .unwrap();
    assert_eq!(wrapped.system, vec!["s"]);
    assert!(wrapped.extra.is_empty());
    let mut request = wrapped;
    request.model = "gemini-2.5-pro".into();
    let out: Value =
        serde_json::from_slice(&count_tokens_request_from_canonical(&request).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({"generateContentRequest": {
            "model": "models/gemini-2.5-pro",
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "systemInstruction": {"parts": [{"text": "s"}]}
        }})
    );
    assert_eq!(count_tokens_body(42), br#"{"totalTokens":42}"#);
    assert_eq!(
        count_tokens_total(br#"{"totalTokens":42,"promptTokensDetails":[]}"#),
        Some(42)
    );
    assert_eq!(count_tokens_total(b"{}"), None);
}
