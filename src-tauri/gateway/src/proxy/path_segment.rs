//! One URL path segment made from a value the gateway does not control.
//!
//! Model names come from clients (a request body, a Gemini URL), from a provider's model list
//! and from configuration, and some go into an upstream URL (Gemini's
//! `/models/{model}:generateContent`). Pasted in as they are, `../`, `?`, `#` or `%2e%2e`
//! would take the provider's key to another endpoint of its host. Every such value goes
//! through [`PathSegment`]: it becomes exactly one percent-encoded segment (everything but
//! RFC 3986's unreserved characters is escaped, so no `/`, `?`, `#`, `:` or `%` is left to
//! mean anything), or it is refused when no segment can stand for it (empty, `.`, `..`,
//! control characters, absurdly long). `send::UpstreamPath` (and through it `provider_test`
//! and `token_count`) and the Gemini CLI login's operation polling build their URLs with it.

use std::fmt;

/// The longest value accepted; model names are a few dozen bytes.
pub const MAX_SEGMENT_BYTES: usize = 512;

/// A value percent-encoded as one URL path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSegment(String);

/// Why a value cannot be a path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("it is empty")]
    Empty,
    #[error("`.` and `..` name nothing (they would climb the provider's URL path)")]
    DotSegment,
    #[error("it contains a control character")]
    Control,
    #[error("it is longer than {MAX_SEGMENT_BYTES} bytes")]
    TooLong,
}

impl PathSegment {
    /// `value` as one encoded segment, or why it cannot be one.
    pub fn new(value: &str) -> Result<Self, SegmentError> {
        if value.is_empty() {
            return Err(SegmentError::Empty);
        }
        if value.len() > MAX_SEGMENT_BYTES {
            return Err(SegmentError::TooLong);
        }
        // Unescaped, these are the dot segments URL parsers (and servers) resolve; escaped as
        // `%2E` they are still resolved by WHATWG parsers, so they are refused, not encoded.
        if value == "." || value == ".." {
            return Err(SegmentError::DotSegment);
        }
        if value.chars().any(char::is_control) {
            return Err(SegmentError::Control);
        }
        let mut out = String::with_capacity(value.len());
        for &byte in value.as_bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        Ok(Self(out))
    }

    /// A relative path whose `/`-separated parts each become one segment (a long-running
    /// operation's name, `operations/abc`).
    pub fn path(value: &str) -> Result<String, SegmentError> {
        let parts: Result<Vec<Self>, SegmentError> = value.split('/').map(Self::new).collect();
        Ok(parts?
            .iter()
            .map(Self::as_str)
            .collect::<Vec<_>>()
            .join("/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: &str) -> String {
        PathSegment::new(value).unwrap().to_string()
    }

    #[test]
    fn model_names_stay_readable() {
        for name in [
            "gemini-2.5-flash",
            "gemini-1.5-pro-002",
            "a_b~c.d",
            "Qwen3.5",
        ] {
            assert_eq!(encoded(name), name);
        }
    }

    #[test]
    fn anything_that_means_something_in_a_url_is_escaped() {
        assert_eq!(encoded("../admin"), "..%2Fadmin");
        assert_eq!(encoded("%2e%2e"), "%252e%252e");
        assert_eq!(encoded("m?key=x"), "m%3Fkey%3Dx");
        assert_eq!(encoded("m#frag"), "m%23frag");
        assert_eq!(encoded("a/b"), "a%2Fb");
        assert_eq!(
            encoded("m:streamGenerateContent"),
            "m%3AstreamGenerateContent"
        );
        assert_eq!(encoded("a b\\c"), "a%20b%5Cc");
        assert_eq!(encoded("模型"), "%E6%A8%A1%E5%9E%8B");
    }

    #[test]
    fn what_cannot_be_a_segment_is_refused() {
        assert_eq!(PathSegment::new(""), Err(SegmentError::Empty));
        assert_eq!(PathSegment::new("."), Err(SegmentError::DotSegment));
        assert_eq!(PathSegment::new(".."), Err(SegmentError::DotSegment));
        assert_eq!(PathSegment::new("a\nb"), Err(SegmentError::Control));
        assert_eq!(PathSegment::new("a\u{7f}"), Err(SegmentError::Control));
        assert_eq!(PathSegment::new("a\u{85}"), Err(SegmentError::Control));
        assert_eq!(
            PathSegment::new(&"x".repeat(MAX_SEGMENT_BYTES + 1)),
            Err(SegmentError::TooLong)
        );
        assert!(PathSegment::new("...").is_ok());
    }

    #[test]
    fn paths_are_encoded_part_by_part() {
        assert_eq!(
            PathSegment::path("operations/abc-1").unwrap(),
            "operations/abc-1"
        );
        assert_eq!(
            PathSegment::path("operations/a?b").unwrap(),
            "operations/a%3Fb"
        );
        assert_eq!(
            PathSegment::path("operations/../../x"),
            Err(SegmentError::DotSegment)
        );
        assert_eq!(PathSegment::path("/x"), Err(SegmentError::Empty));
    }
}
