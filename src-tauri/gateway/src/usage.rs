//! Usage recording: one row per request, written off the request path.
//!
//! `relay` hands a finished [`UsageRecord`] to the [`Recorder`], which only puts it on a bounded
//! channel (microseconds). A dedicated writer thread with its own SQLite connection drains the
//! channel in batches, one transaction each, so a slow disk never delays a response. When usage
//! statistics are switched off nothing is enqueued at all. Summaries for the UI are read from
//! `store` by [`summary`] and [`recent`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::{Database, StoreError};

/// Token counts as the upstream reported them; `None` where it did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TokenUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cached: Option<u64>,
    pub reasoning: Option<u64>,
}

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
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::UpstreamError => "upstream_error",
            Self::Failed => "failed",
            Self::ClientClosed => "client_closed",
            Self::Interrupted => "interrupted",
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

/// How many written records a live subscriber may fall behind before it is told it missed some.
pub const LIVE_BACKLOG: usize = 1024;
/// How many records may wait for the writer before new ones are dropped (and counted).
const QUEUE: usize = 16_384;
/// The most records written in one transaction.
const BATCH: usize = 4096;
/// How long the writer lets records gather after the first one arrives. Short enough that the
/// dashboard looks live, long enough to batch a busy second into a handful of commits.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);

/// The handle `relay` records through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

#[derive(Debug)]
struct RecorderInner {
    enabled: AtomicBool,
    dropped: AtomicU64,
    tx: SyncSender<Message>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Records as they are committed, for live views (the dashboard, the tray).
    live: broadcast::Sender<Arc<UsageRecord>>,
}

enum Message {
    Record(Box<UsageRecord>),
    /// Write what came before, then end the writer.
    Stop,
}

impl Recorder {
    /// Starts the writer thread on its own connection to `db`.
    pub fn start(db: &Database, enabled: bool) -> Result<Self, StoreError> {
        let conn = Database::open_connection(db.path())?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        let announce = live.clone();
        let writer = std::thread::Builder::new()
            .name("flexiproxy-usage".into())
            .spawn(move || write_loop(&conn, &rx, &announce))
            .map_err(|e| StoreError::DataDir {
                path: db.path().to_owned(),
                source: e,
            })?;
        Ok(Self {
            inner: Arc::new(RecorderInner {
                enabled: AtomicBool::new(enabled),
                dropped: AtomicU64::new(0),
                tx,
                writer: std::sync::Mutex::new(Some(writer)),
                live,
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.inner.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Enqueues a record; never blocks. Does nothing while recording is off.
    pub fn record(&self, record: UsageRecord) {
        if !self.enabled() {
            return;
        }
        match self.inner.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "usage writer is behind; records dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Records as they are written from now on. A receiver that falls more than
    /// [`LIVE_BACKLOG`] records behind is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<UsageRecord>> {
        self.inner.live.subscribe()
    }

    /// Stops accepting records and waits until every queued one is written.
    pub fn flush_and_stop(&self) {
        // Blocks only while the queue is full, which is what flushing means.
        let _ = self.inner.tx.send(Message::Stop);
        let writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!("usage writer thread panicked");
        }
    }
}

fn write_loop(
    conn: &Connection,
    rx: &Receiver<Message>,
    live: &broadcast::Sender<Arc<UsageRecord>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut stop = false;
    let mut behind = false;
    while !stop {
        match rx.recv() {
            Ok(Message::Record(first)) => batch.push(*first),
            Ok(Message::Stop) | Err(_) => return,
        }
        // Let more records gather before writing. While this thread sleeps instead of waiting
        // on the channel, senders do not have to wake it, and one transaction covers everything
        // that arrived: under load that is one commit per window instead of one per request.
        // With a backlog (the last batch was full) there is nothing to wait for.
        if !behind {
            std::thread::sleep(GATHER);
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(Message::Record(record)) => batch.push(*record),
                Ok(Message::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        behind = batch.len() == BATCH;
        match write_batch(conn, &batch) {
            // Announced once committed, so a live view that reads the summaries sees them.
            Ok(()) => {
                for record in batch.drain(..) {
                    // No subscriber is not an error.
                    let _ = live.send(Arc::new(record));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "could not write usage records");
            }
        }
        batch.clear();
    }
}

/// Each credential's requests of the last day, `(key_id, start ms, tokens)`, to restore the
/// routing windows after a restart.
pub fn credential_history(
    db: &Database,
    since_ms: i64,
) -> Result<Vec<(String, i64, u64)>, StoreError> {
    db.read(|conn| {
        let mut stmt = conn.prepare(
            "SELECT credential, ts_ms, COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)
             FROM usage WHERE credential IS NOT NULL AND ts_ms >= ?1 ORDER BY ts_ms",
        )?;
        let rows = stmt.query_map([since_ms], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            ))
        })?;
        rows.collect()
    })
}

fn write_batch(conn: &Connection, batch: &[UsageRecord]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let mut stmt = conn.prepare(
            "INSERT INTO usage (ts_ms, adapter, provider_id, model, endpoint, stream, status,
                 input_tokens, output_tokens, cached_tokens, reasoning_tokens, latency_ms, ttfb_ms,
                 outcome, error, credential)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        for r in batch {
            stmt.execute(params![
                r.ts_ms,
                r.adapter,
                r.provider_id,
                r.model,
                r.endpoint,
                r.stream,
                r.status,
                r.tokens.input.map(saturate),
                r.tokens.output.map(saturate),
                r.tokens.cached.map(saturate),
                r.tokens.reasoning.map(saturate),
                saturate(r.latency_ms),
                r.ttfb_ms.map(saturate),
                r.outcome.as_str(),
                r.error,
                r.credential,
            ])?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn saturate(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
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

/// Totals for everything recorded since `since_ms`.
pub fn summary(db: &Database, since_ms: i64) -> Result<Summary, StoreError> {
    db.read(|conn| {
        let today = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                    COALESCE(SUM(cached_tokens), 0),
                    COALESCE(SUM(outcome IN ('failed', 'upstream_error', 'interrupted')), 0)
             FROM usage WHERE ts_ms >= ?1",
            [since_ms],
            |row| {
                Ok(Totals {
                    requests: row.get(0)?,
                    input_tokens: row.get(1)?,
                    output_tokens: row.get(2)?,
                    cached_tokens: row.get(3)?,
                    errors: row.get(4)?,
                })
            },
        )?;
        let mut stmt = conn.prepare(
            "SELECT provider_id, COUNT(*), COALESCE(SUM(input_tokens), 0),
                    COALESCE(SUM(output_tokens), 0)
             FROM usage WHERE ts_ms >= ?1 GROUP BY provider_id ORDER BY provider_id",
        )?;
        let by_provider = stmt
            .query_map([since_ms], |row| {
                Ok(ProviderTotals {
                    provider_id: row.get(0)?,
                    requests: row.get(1)?,
                    input_tokens: row.get(2)?,
                    output_tokens: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Summary { today, by_provider })
    })
}

/// A recorded request as the UI lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentRow {
    pub ts_ms: i64,
    pub adapter: Option<i64>,
    pub provider_id: String,
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

/// The latest `limit` recorded requests, newest first.
pub fn recent(db: &Database, limit: u32) -> Result<Vec<RecentRow>, StoreError> {
    db.read(|conn| {
        let mut stmt = conn.prepare(
            "SELECT ts_ms, adapter, provider_id, model, endpoint, stream, status, input_tokens,
                    output_tokens, cached_tokens, latency_ms, ttfb_ms, outcome, error
             FROM usage ORDER BY id DESC LIMIT ?1",
        )?;
        stmt.query_map([limit], |row| {
            Ok(RecentRow {
                ts_ms: row.get(0)?,
                adapter: row.get(1)?,
                provider_id: row.get(2)?,
                model: row.get(3)?,
                endpoint: row.get(4)?,
                stream: row.get(5)?,
                status: row.get(6)?,
                input_tokens: row.get(7)?,
                output_tokens: row.get(8)?,
                cached_tokens: row.get(9)?,
                latency_ms: row.get(10)?,
                ttfb_ms: row.get(11)?,
                outcome: row.get(12)?,
                error: row.get(13)?,
            })
        })?
        .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(provider: &str, input: u64) -> UsageRecord {
        UsageRecord {
            ts_ms: 1_000,
            adapter: Some(7),
            provider_id: provider.into(),
            credential: None,
            model: "m".into(),
            endpoint: "chat.completions",
            stream: true,
            status: 200,
            tokens: TokenUsage {
                input: Some(input),
                output: Some(2),
                cached: None,
                reasoning: None,
            },
            latency_ms: 12,
            ttfb_ms: Some(3),
            outcome: Outcome::Completed,
            error: None,
        }
    }

    fn scratch_db() -> Database {
        let dir = std::env::temp_dir().join(format!(
            "flexiproxy-usage-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Database::open(&dir).unwrap()
    }

    #[test]
    fn records_are_written_and_summarised() {
        let db = scratch_db();
        let recorder = Recorder::start(&db, true).unwrap();
        recorder.record(record("a", 10));
        recorder.record(record("a", 5));
        recorder.record(record("b", 1));
        recorder.flush_and_stop();
        let s = summary(&db, 0).unwrap();
        assert_eq!(s.today.requests, 3);
        assert_eq!(s.today.input_tokens, 16);
        assert_eq!(s.by_provider.len(), 2);
        assert_eq!(s.by_provider[0].input_tokens, 15);
        let rows = recent(&db, 2).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].provider_id, "b");
        assert_eq!(rows[0].outcome, "completed");
    }

    #[test]
    fn nothing_is_written_while_off() {
        let db = scratch_db();
        let recorder = Recorder::start(&db, false).unwrap();
        recorder.record(record("a", 10));
        recorder.set_enabled(true);
        recorder.record(record("a", 1));
        recorder.flush_and_stop();
        assert_eq!(summary(&db, 0).unwrap().today.requests, 1);
    }
}
