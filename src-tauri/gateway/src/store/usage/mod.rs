//! Usage: one row per request, recorded off the request path and read back for the UI.
//!
//! This module holds what usage is, whatever keeps it: the [`UsageRecord`] `proxy::meter`
//! hands over, and the shapes the dashboard reads back — [`Summary`] and [`RecentRow`] for its
//! first view, [`Stats`] (totals, groups and a time series over a checked [`Window`]) for its
//! charts, pages of rows after a [`Cursor`] for the CSV export (`usage_export`). The
//! [`Recorder`] (see `recorder`) batches records onto a writer thread; reading and writing the
//! rows is the storage's part, behind [`crate::store::UsageStore`].

mod recorder;

pub use recorder::{
    GATHER, KEEP, LIVE_BACKLOG, QUEUE, RETRY_FIRST, RETRY_MAX, Recorder, STOP_RETRY,
};

use serde::Serialize;

use flexiproxy_protocol::canonical::TokenUsage;

/// How a request ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered 2xx and the whole body reached the client.
    Completed,
    /// The upstream answered with an error status, relayed to the client.
    UpstreamError,
    /// The gateway could not get an answer (unreachable, timeout, no key).
    Failed,
    /// The client hung up before the end; the upstream request was cancelled.
    ClientClosed,
    /// The upstream's body broke off mid-way.
    Interrupted,
    /// The gateway shut down while the request was still running after the grace period
    /// (`--shutdown-grace`) and cut it; the tokens are those seen until then.
    Shutdown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::UpstreamError => "upstream_error",
            Self::Failed => "failed",
            Self::ClientClosed => "client_closed",
            Self::Interrupted => "interrupted",
            Self::Shutdown => "shutdown",
        }
    }
}

/// One request as recorded. Holds no secrets and no message content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub ts_ms: i64,
    pub adapter: Option<i64>,
    pub provider_id: String,
    /// The credential's public id (`<provider>/<credential>`), when one was used.
    pub credential: Option<String>,
    pub model: String,
    pub endpoint: &'static str,
    pub stream: bool,
    pub status: u16,
    pub tokens: TokenUsage,
    pub latency_ms: u64,
    pub ttfb_ms: Option<u64>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// Totals since a point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub errors: i64,
}

impl Totals {
    pub(in crate::store) fn add(&self, other: &Self) -> Self {
        Self {
            requests: self.requests.saturating_add(other.requests),
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cached_tokens: self.cached_tokens.saturating_add(other.cached_tokens),
            errors: self.errors.saturating_add(other.errors),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderTotals {
    pub provider_id: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub today: Totals,
    pub by_provider: Vec<ProviderTotals>,
}

/// A recorded request as the UI lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentRow {
    pub ts_ms: i64,
    pub adapter: Option<i64>,
    /// Filled in by the view from the adapters it knows (see `server::usage_views`).
    pub adapter_label: String,
    pub provider_id: String,
    /// The credential's public id (`<provider>/<credential>`), when one was used.
    pub credential: Option<String>,
    pub model: String,
    pub endpoint: String,
    pub stream: bool,
    pub status: u16,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub latency_ms: i64,
    pub ttfb_ms: Option<i64>,
    pub outcome: String,
    pub error: Option<String>,
}

/// How many rows one page of the export reads: enough to keep an export's round trips few, small enough
/// that the shared connection is never held for long.
pub const PAGE: u32 = 1000;

/// Where the next page of the export starts: after this row, in (time, id) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub(in crate::store) ts_ms: i64,
    pub(in crate::store) id: i64,
}

impl Cursor {
    /// Before every row recorded at or after `since_ms`.
    pub fn start(since_ms: i64) -> Self {
        Self {
            ts_ms: since_ms,
            id: i64::MIN,
        }
    }
}

/// The most buckets one [`Stats`] answer may have (a day in minutes, a week in hours fit).
pub const MAX_BUCKETS: i64 = 2000;

/// The time range and bucket size of a [`Stats`] query, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub(in crate::store) since_ms: i64,
    pub(in crate::store) until_ms: i64,
    pub(in crate::store) bucket_ms: i64,
}

/// Why a [`Window`] was refused; the message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("`until_ms` ({until_ms}) must be later than `since_ms` ({since_ms})")]
    Empty { since_ms: i64, until_ms: i64 },
    #[error("`bucket_ms` must be at least 1, not {0}")]
    Bucket(i64),
    #[error(
        "{buckets} buckets of {bucket_ms} ms are too many (at most {MAX_BUCKETS}); ask for a \
         larger `bucket_ms` or a shorter range"
    )]
    TooMany { buckets: i64, bucket_ms: i64 },
}

impl Window {
    pub fn new(since_ms: i64, until_ms: i64, bucket_ms: i64) -> Result<Self, WindowError> {
        if until_ms <= since_ms {
            return Err(WindowError::Empty { since_ms, until_ms });
        }
        if bucket_ms < 1 {
            return Err(WindowError::Bucket(bucket_ms));
        }
        let span = until_ms.saturating_sub(since_ms);
        let buckets = span / bucket_ms + i64::from(span % bucket_ms != 0);
        if buckets > MAX_BUCKETS {
            return Err(WindowError::TooMany { buckets, bucket_ms });
        }
        Ok(Self {
            since_ms,
            until_ms,
            bucket_ms,
        })
    }

    /// How many buckets cover the range (the last one may reach past `until_ms`).
    pub(in crate::store) fn buckets(self) -> i64 {
        let span = self.until_ms - self.since_ms;
        span / self.bucket_ms + i64::from(span % self.bucket_ms != 0)
    }
}

/// Requests and tokens of one group (a provider, an adapter, a model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The provider id, the adapter id (`"none"` without one) or the model name.
    pub key: String,
    /// Adapters only: what the adapter serves, for people (set by the view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(flatten)]
    pub sums: Totals,
    /// Rounded to whole milliseconds; 0 for an empty group.
    pub avg_latency_ms: i64,
}

/// One step of the time series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start_ms: i64,
    #[serde(flatten)]
    pub sums: Totals,
}

/// What the dashboard's charts and tables show for a time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub since_ms: i64,
    pub until_ms: i64,
    pub bucket_ms: i64,
    pub totals: Totals,
    /// Each sorted by total tokens (input + output), most first.
    pub by_provider: Vec<Group>,
    pub by_adapter: Vec<Group>,
    pub by_model: Vec<Group>,
    /// Every bucket from `since_ms` to `until_ms`, in order, empty ones included.
    pub series: Vec<Bucket>,
}
