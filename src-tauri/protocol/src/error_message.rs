//! The message inside a provider's error body, whichever protocol (or none) it speaks: what the
//! gateway shows the user when an upstream refuses, bounded so a hostile body cannot flood an
//! error answer or a log line.

/// The message inside an upstream error body (`{"error":{"message"}}`, `{"message"}`,
/// `{"error":"…"}`), else the start of the body as text.
pub fn error_detail(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            // Gemini sometimes wraps its error in a one-element array.
            let value = value.get(0).cloned().unwrap_or(value);
            let error = value.get("error").unwrap_or(&value);
            error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .or_else(|| error.as_str())
                .map(str::to_owned)
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.is_empty() {
        return "no error message".to_owned();
    }
    let mut end = text.len().min(500);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_come_from_the_body() {
        assert_eq!(
            error_detail(br#"{"error":{"message":"Insufficient Balance","type":"x"}}"#),
            "Insufficient Balance"
        );
        assert_eq!(error_detail(br#"{"error":"nope"}"#), "nope");
        assert_eq!(error_detail(b"Bad Gateway\n"), "Bad Gateway");
        assert_eq!(error_detail(b""), "no error message");
    }
}
