//! The config file as written: serde types that mirror the file field by field, with every
//! table refusing unknown fields so a typo is an error rather than a silently ignored setting.
//! Nothing here is checked beyond types; `validate` turns these into [`super::Declared`].
//! Keys may sit in these types as refused literals, so none of them is ever printed whole.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::routing::Strategy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) routing: Option<RawRouting>,
    #[serde(default)]
    pub(super) providers: Vec<RawProvider>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) adapters: Vec<RawAdapter>,
    #[serde(default)]
    pub(super) allowed_env: Vec<String>,
}

/// `RoutingSettings` field by field: its own serde form ignores unknown fields, and a mistyped
/// setting here must be an error. A test keeps the two in step.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) max_retries: Option<u32>,
    pub(super) max_wait_ms: Option<u64>,
    pub(super) default_strategy: Option<Strategy>,
    pub(super) usage_gap_percent: Option<u32>,
    pub(super) rate_limit_cooldown_ms: Option<u64>,
    pub(super) failure_cooldown_ms: Option<u64>,
    pub(super) auth_cooldown_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) id: String,
    pub(super) url: String,
    pub(super) protocol: Option<String>,
    pub(super) discovery: Option<String>,
    #[serde(default)]
    pub(super) models: Vec<String>,
    #[serde(default)]
    pub(super) credentials: Vec<RawCredential>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub(super) id: Option<String>,
    pub(super) label: Option<String>,
    pub(super) key: Option<KeyText>,
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) priority: u32,
    pub(super) max_request_min: Option<u32>,
    pub(super) max_request_day: Option<u32>,
    pub(super) max_token_min: Option<u64>,
}

/// A `key` as written: an `env:NAME` reference, or a literal key that validation refuses
/// without echoing it. Its `Debug` never shows the text, so the raw types that hold one can
/// derive theirs.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct KeyText(pub(super) String);

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: String,
    pub(super) strategy: Option<Strategy>,
    #[serde(default)]
    pub(super) auto: bool,
    pub(super) candidates: Vec<RawCandidate>,
}

/// `"provider/model"` or `{provider, model, priority}`.
#[derive(Debug)]
pub(super) enum RawCandidate {
    Text(String),
    Table(RawCandidateTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCandidateTable {
    pub(super) provider: String,
    pub(super) model: String,
    pub(super) priority: Option<u32>,
}

impl<'de> Deserialize<'de> for RawCandidate {
    // By hand rather than `#[serde(untagged)]`, whose only error is "did not match any
    // variant": this way a table's own errors (unknown field, missing model) come through.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CandidateVisitor;

        impl<'de> Visitor<'de> for CandidateVisitor {
            type Value = RawCandidate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a candidate: \"provider/model\" or a table { provider, model, priority }",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(RawCandidate::Text(value.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawCandidateTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawCandidate::Table)
            }
        }

        deserializer.deserialize_any(CandidateVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdapter {
    pub(super) name: String,
    pub(super) key: KeyText,
    pub(super) provider: Option<String>,
    pub(super) model: Option<String>,
    pub(super) strategy: Option<Strategy>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
    use super::*;

    #[test]
    fn debug_never_shows_a_key() {
        let raw: RawFile = toml::from_str(
            "[[providers]]\nid = \"x\"\nurl = \"http://h\"\n[[providers.credentials]]\n\
             key = \"sk-live-41\"\n[[adapters]]\nname = \"a\"\nkey = \"sk-live-42\"\n",
        )
        .unwrap();
        let shown = format!("{raw:?}");
        assert!(!shown.contains("sk-live-4"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
