//! The routing vocabulary every part agrees on: how a pool is balanced ([`Strategy`]), how much
//! one credential may be used ([`Limits`]), one place a model can be served ([`Candidate`]) and
//! the knobs of retry and cooldown ([`RoutingSettings`]).
//!
//! `registry` holds these in its snapshot, `config_file` and the management API produce them,
//! and the rest of `routing` acts on them. Plain data with serde forms, so the config file, the
//! database and the API spell them the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How requests are spread over the candidates of one priority tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Each available candidate in turn.
    #[default]
    RoundRobin,
    /// The first available candidate in order until it is unavailable (limit, cooldown).
    FillFirst,
    /// The least used candidate, keeping the gap in usage between candidates within
    /// [`RoutingSettings::usage_gap_percent`].
    LeastUsed,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::FillFirst => "fill-first",
            Self::LeastUsed => "least-used",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy `{0}`; use round-robin, fill-first or least-used")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "round-robin" | "roundrobin" => Ok(Self::RoundRobin),
            "fill-first" | "fillfirst" => Ok(Self::FillFirst),
            "least-used" | "leastused" => Ok(Self::LeastUsed),
            _ => Err(UnknownStrategy(s.to_owned())),
        }
    }
}

/// A credential's limits; `None` is unlimited. Windows slide: a minute is the last 60 s, a day
/// the last 24 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_day: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_min: Option<u64>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.max_request_min.is_none()
            && self.max_request_day.is_none()
            && self.max_token_min.is_none()
    }
}

/// Test support: limits of one kind only.
#[cfg(test)]
impl Limits {
    pub fn requests_per_minute(n: u32) -> Self {
        Self {
            max_request_min: Some(n),
            ..Self::default()
        }
    }

    pub fn requests_per_day(n: u32) -> Self {
        Self {
            max_request_day: Some(n),
            ..Self::default()
        }
    }

    pub fn tokens_per_minute(n: u64) -> Self {
        Self {
            max_token_min: Some(n),
            ..Self::default()
        }
    }
}

/// One place a routed model can be served: a provider and the model name it knows it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub provider: String,
    pub model: String,
    /// The tier: 0 is tried first; tier 1 only when nothing in tier 0 is available, and so on.
    #[serde(default)]
    pub priority: u32,
}

impl Candidate {
    /// `"provider/model"`, split at the first `/` (model names may hold more, as in
    /// `openrouter/openai/gpt-4o`); `None` when either side is empty.
    pub fn parse(text: &str, priority: u32) -> Option<Self> {
        let (provider, model) = text
            .split_once('/')
            .filter(|(p, m)| !p.is_empty() && !m.trim().is_empty())?;
        Some(Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            priority,
        })
    }
}

/// Retry, wait and cooldown settings for the whole gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingSettings {
    /// Further attempts after the first one fails (on another credential or provider).
    pub max_retries: u32,
    /// The longest a request waits for a candidate to come free (a cooldown or a limit window
    /// ending) before the client gets 429, in milliseconds.
    pub max_wait_ms: u64,
    /// The strategy of adapters and routes that name none.
    pub default_strategy: Strategy,
    /// `least-used` switches away from the candidate it used last only once that candidate's
    /// usage is more than this many percentage points above the least used one.
    pub usage_gap_percent: u32,
    /// Cooldown after a 429 that came without `retry-after`, in milliseconds.
    pub rate_limit_cooldown_ms: u64,
    /// Cooldown after a 5xx, a timeout or a connection failure, in milliseconds.
    pub failure_cooldown_ms: u64,
    /// Cooldown after a 401/403: the key is likely wrong or revoked, so it rests for long.
    pub auth_cooldown_ms: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_wait_ms: 0,
            default_strategy: Strategy::RoundRobin,
            usage_gap_percent: 5,
            rate_limit_cooldown_ms: 30_000,
            failure_cooldown_ms: 10_000,
            auth_cooldown_ms: 30 * 60_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_in_their_usual_spellings() {
        assert_eq!("round-robin".parse(), Ok(Strategy::RoundRobin));
        assert_eq!("fill_first".parse(), Ok(Strategy::FillFirst));
        assert_eq!("Least-Used".parse(), Ok(Strategy::LeastUsed));
        assert!("random".parse::<Strategy>().is_err());
    }

    #[test]
    fn candidates_split_at_the_first_slash() {
        let c = Candidate::parse("openrouter/openai/gpt-4o", 2).unwrap();
        assert_eq!(
            (c.provider.as_str(), c.model.as_str(), c.priority),
            ("openrouter", "openai/gpt-4o", 2)
        );
        assert_eq!(Candidate::parse("gpt-4o", 0), None);
        assert_eq!(Candidate::parse("/gpt-4o", 0), None);
        assert_eq!(Candidate::parse("openai/ ", 0), None);
    }

    #[test]
    fn settings_fill_missing_fields_with_defaults() {
        let settings: RoutingSettings = serde_json::from_str(r#"{"max_retries":1}"#).unwrap();
        assert_eq!(settings.max_retries, 1);
        assert_eq!(
            settings.auth_cooldown_ms,
            RoutingSettings::default().auth_cooldown_ms
        );
    }
}
