//! Token counts as providers report them, and the bounds every count is held to.
//!
//! Each wire protocol reads its usage object into [`TokenUsage`] through [`wire_count`], so a
//! count no honest provider sends (negative, past `u64`, text) neither fails an otherwise good
//! answer nor reaches the gateway's ledger unbounded; `merge_usage` (in `canonical`) folds a
//! stream's partial reports into one. The gateway's usage ledger stores what this yields.

use serde::Serialize;

/// Token counts as the upstream reported them; `None` where it did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TokenUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cached: Option<u64>,
    pub reasoning: Option<u64>,
}

/// The largest token count one request is recorded with; larger counts are taken as this.
///
/// A thousand times the longest context window on offer (about a million tokens), so no honest
/// count is ever cut, and small enough that no sum over the usage table can overflow: SQLite's
/// `SUM` raises "integer overflow" past `i64::MAX`, which at this bound takes more than nine
/// billion rows. Counts from a provider are clamped to `0..=MAX_TOKENS` when they are read
/// ([`wire_count`]), when a record is finished (the gateway's meter) and when a row is written; rows
/// an older version wrote unclamped are clamped the same way when they are read back.
pub const MAX_TOKENS: u64 = 1_000_000_000;

impl TokenUsage {
    /// Every count capped at [`MAX_TOKENS`].
    #[must_use]
    pub fn clamped(self) -> Self {
        let clamp = |n: Option<u64>| n.map(|n| n.min(MAX_TOKENS));
        Self {
            input: clamp(self.input),
            output: clamp(self.output),
            cached: clamp(self.cached),
            reasoning: clamp(self.reasoning),
        }
    }
}

/// Reads a token count from a provider's usage object (`#[serde(deserialize_with)]` on every
/// wire protocol's usage fields), so that a count no honest provider sends neither fails the
/// decoding of an otherwise good answer nor reaches the ledger as it is: a negative number
/// reads as 0, a huge one (an integer past `u64`, `1e300`) as [`MAX_TOKENS`], a fraction is cut
/// to its whole part, a number in a string is read as that number, and anything else (`null`,
/// text, `true`, an object) as no count at all.
pub fn wire_count<'de, D>(deserializer: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    deserializer.deserialize_any(WireCount)
}

struct WireCount;

impl WireCount {
    fn real(value: f64) -> Option<u64> {
        if value.is_nan() {
            None
        } else if value <= 0.0 {
            Some(0)
        } else if value >= MAX_TOKENS as f64 {
            Some(MAX_TOKENS)
        } else {
            // In range, so the cast is exact after cutting the fraction.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked to be within 0..MAX_TOKENS just above"
            )]
            Some(value.trunc() as u64)
        }
    }
}

impl<'de> serde::de::Visitor<'de> for WireCount {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a token count")
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Some(value.min(MAX_TOKENS)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Some(u64::try_from(value).unwrap_or(0).min(MAX_TOKENS)))
    }

    fn visit_u128<E>(self, value: u128) -> Result<Self::Value, E> {
        Ok(Some(
            u64::try_from(value).unwrap_or(u64::MAX).min(MAX_TOKENS),
        ))
    }

    fn visit_i128<E>(self, value: i128) -> Result<Self::Value, E> {
        Ok(Some(
            u64::try_from(value.max(0))
                .unwrap_or(u64::MAX)
                .min(MAX_TOKENS),
        ))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Self::real(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        let value = value.trim();
        Ok(match value.parse::<u64>() {
            Ok(n) => Some(n.min(MAX_TOKENS)),
            Err(_) => value.parse::<f64>().ok().and_then(Self::real),
        })
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each provider protocol's whole answer and usage event with hostile counts: the answer
    /// still decodes and every count read is in range.
    #[test]
    fn every_protocol_reads_hostile_counts_clamped() {
        use crate::{Protocol, codec};
        let answers = [
            (
                Protocol::OpenAiChat,
                r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10000000000000000000,"completion_tokens":-3,"total_tokens":1e300,"prompt_tokens_details":{"cached_tokens":"12"}}}"#,
            ),
            (
                Protocol::OpenAiResponses,
                r#"{"id":"r","object":"response","created_at":1,"model":"m","status":"completed","output":[{"type":"message","id":"m1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"hi","annotations":[]}]}],"usage":{"input_tokens":10000000000000000000,"output_tokens":-3,"total_tokens":1e300,"input_tokens_details":{"cached_tokens":"12"},"output_tokens_details":{"reasoning_tokens":1e300}}}"#,
            ),
            (
                Protocol::AnthropicMessages,
                r#"{"id":"a","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10000000000000000000,"output_tokens":-3,"cache_read_input_tokens":"12","cache_creation_input_tokens":1e300}}"#,
            ),
            (
                Protocol::Gemini,
                r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":10000000000000000000,"candidatesTokenCount":-3,"cachedContentTokenCount":"12","thoughtsTokenCount":1e300}}"#,
            ),
        ];
        for (protocol, body) in answers {
            let decoded = codec::decode_response(protocol, body.as_bytes())
                .unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
            let usage = codec::response_usage(protocol, body.as_bytes()).unwrap();
            for found in [decoded.usage, usage] {
                // Anthropic's and Gemini's sums of parts are clamped too.
                assert_eq!(found.input, Some(MAX_TOKENS), "{protocol:?}");
                assert_eq!(found.cached, Some(12), "{protocol:?}");
                assert!(
                    found.output.is_some_and(|n| n <= MAX_TOKENS),
                    "{protocol:?}: {found:?}"
                );
            }
            if protocol != Protocol::AnthropicMessages {
                let event = codec::event_usage(protocol, body.as_bytes()).unwrap();
                assert_eq!(event.input, Some(MAX_TOKENS), "{protocol:?}");
            }
        }
        let delta = br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1e300}}"#;
        assert_eq!(
            codec::event_usage(Protocol::AnthropicMessages, delta).and_then(|u| u.output),
            Some(MAX_TOKENS)
        );
    }

    #[test]
    fn wire_counts_are_clamped_and_never_fail_the_answer() {
        #[derive(serde::Deserialize)]
        struct Usage {
            #[serde(default, deserialize_with = "wire_count")]
            n: Option<u64>,
        }
        let read = |json: &str| serde_json::from_str::<Usage>(json).unwrap().n;
        assert_eq!(read(r#"{"n": 12}"#), Some(12));
        assert_eq!(read(r#"{"n": 10000000000000000000}"#), Some(MAX_TOKENS));
        assert_eq!(read(r#"{"n": 100000000000000000000000}"#), Some(MAX_TOKENS));
        assert_eq!(read(r#"{"n": 1e300}"#), Some(MAX_TOKENS));
        assert_eq!(read(r#"{"n": -5}"#), Some(0));
        assert_eq!(read(r#"{"n": -1e300}"#), Some(0));
        assert_eq!(read(r#"{"n": 7.9}"#), Some(7));
        assert_eq!(read(r#"{"n": "42"}"#), Some(42));
        assert_eq!(read(r#"{"n": "1e19"}"#), Some(MAX_TOKENS));
        assert_eq!(read(r#"{"n": "lots"}"#), None);
        assert_eq!(read(r#"{"n": null}"#), None);
        assert_eq!(read(r#"{"n": true}"#), None);
        assert_eq!(read(r#"{"n": {"a": [1, 2]}}"#), None);
        assert_eq!(read(r#"{"n": [1]}"#), None);
        assert_eq!(read(r#"{}"#), None);
    }
}
