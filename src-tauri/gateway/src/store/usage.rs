//! Usage recording: one row per request, written off the request path.
//!
//! `proxy::meter` hands a finished [`UsageRecord`] to the [`Recorder`], which only puts it on a
//! bounded channel (microseconds). A dedicated writer thread with its own SQLite connection
//! drains the channel in batches, one transaction each, so a slow disk never delays a response.
//! When usage statistics are switched off nothing is enqueued at all.
//!
//! What a crash can lose: a record is committed at most [`GATHER`] (plus the time of one
//! commit) after it is handed over, so `kill -9` loses the records of about the last 50 ms.
//! A batch whose write fails is kept and retried with backoff ([`RETRY_FIRST`] doubling to
//! [`RETRY_MAX`]), holding at most [`KEEP`] records while the disk stays broken; past that
//! (and the channel's [`QUEUE`]) new records are dropped and counted in the log. At shutdown
//! the writer retries for [`STOP_RETRY`] at most, then says how many records it could not
//! write. What the UI shows is read back here
//! too: [`summary`] and [`recent`] for the dashboard's first view, [`stats`] (totals, groups and
//! a time series, aggregated by SQLite over the `ts_ms` index) for its charts, [`page`] for the
//! CSV export (`usage_export`), and [`delete`] to clear the history.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::{Database, StoreError};
use flexiproxy_protocol::canonical::{MAX_TOKENS, TokenUsage};

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

/// How many written records a live subscriber may fall behind before it is told it missed some.
pub const LIVE_BACKLOG: usize = 1024;
/// How many records may wait for the writer before new ones are dropped (and counted).
pub const QUEUE: usize = 16_384;
/// The most records written in one transaction.
const BATCH: usize = 4096;
/// How long the writer lets records gather after the first one arrives: the gathering window.
/// Short enough that the dashboard looks live, long enough to batch a busy second into a
/// handful of commits. It is also what a crash can lose: a record handed over longer ago than
/// this (plus one commit) is in the database file, so `kill -9` loses at most the records of
/// the last window (README, "Where things live").
pub const GATHER: Duration = Duration::from_millis(50);
/// The wait before retrying a write that failed; it doubles with each failure in a row up to
/// [`RETRY_MAX`], so a disk that stays broken is tried every few seconds, not in a hot loop.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// While writes fail, the most records the writer holds for the next attempt (tens of MB at
/// most). Beyond them the channel fills ([`QUEUE`] more), then new records are dropped and
/// counted with a warning: a disk that stays broken costs the newest history, never memory.
pub const KEEP: usize = 65_536;
/// At shutdown, how long the writer keeps retrying a failing write before it gives up (and
/// logs how many records were lost), so a broken disk cannot hold the exit forever.
pub const STOP_RETRY: Duration = Duration::from_secs(2);

/// The handle `proxy::meter` records through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

#[derive(Debug)]
struct RecorderInner {
    enabled: AtomicBool,
    /// Records refused because the writer was too far behind (or its disk broken).
    dropped: AtomicU64,
    /// Records that came after the writer stopped (a request outliving the shutdown).
    late: AtomicU64,
    /// Set by [`Recorder::flush_and_stop`]; the writer reads it too, since a `Stop` message
    /// cannot be queued while the channel is full (a broken disk).
    stopping: Arc<AtomicBool>,
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
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let writer = std::thread::Builder::new()
            .name("flexiproxy-usage".into())
            .spawn(move || write_loop(&conn, &rx, &announce, &stop))
            .map_err(|e| StoreError::DataDir {
                path: db.path().to_owned(),
                source: e,
            })?;
        Ok(Self {
            inner: Arc::new(RecorderInner {
                enabled: AtomicBool::new(enabled),
                dropped: AtomicU64::new(0),
                late: AtomicU64::new(0),
                stopping,
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
                    tracing::warn!(
                        dropped,
                        "usage writer is behind (or cannot write); records dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                let late = self.inner.late.fetch_add(1, Ordering::Relaxed) + 1;
                if late.is_power_of_two() {
                    tracing::warn!(late, "usage records after the writer stopped; not written");
                }
            }
        }
    }

    /// How many records were dropped because the writer could not keep up (or write at all).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Records as they are written from now on. A receiver that falls more than
    /// [`LIVE_BACKLOG`] records behind is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<UsageRecord>> {
        self.inner.live.subscribe()
    }

    /// Stops accepting records and waits until every queued one is written, or, when writes
    /// keep failing, for [`STOP_RETRY`] at most (the writer then logs how many it lost).
    pub fn flush_and_stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        // Wakes a writer waiting on an empty channel. A full channel cannot take it, but then
        // the writer is not waiting: it sees the flag.
        let _ = self.inner.tx.try_send(Message::Stop);
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
    stopping: &AtomicBool,
) {
    let mut writer = Writer {
        conn,
        rx,
        live,
        stopping,
        pending: VecDeque::with_capacity(BATCH),
        failures: 0,
        stop_at: None,
    };
    writer.run();
}

/// The writer thread's state: what it holds and how its writes are going.
struct Writer<'a> {
    conn: &'a Connection,
    rx: &'a Receiver<Message>,
    live: &'a broadcast::Sender<Arc<UsageRecord>>,
    stopping: &'a AtomicBool,
    /// Records taken from the channel and not yet committed, oldest first.
    pending: VecDeque<UsageRecord>,
    /// Failed attempts in a row (0 while writes succeed).
    failures: u32,
    /// When `Stop` came: from then on the writer only empties what it holds (retrying for
    /// [`STOP_RETRY`] at most).
    stop_at: Option<Instant>,
}

impl Writer<'_> {
    fn run(&mut self) {
        let mut behind = false;
        loop {
            if self.pending.is_empty() {
                if self.stopped() {
                    // Whatever is still queued goes too, unless the writes fail.
                    self.take(BATCH);
                    if self.pending.is_empty() {
                        return;
                    }
                    continue;
                }
                match self.rx.recv() {
                    Ok(Message::Record(first)) => self.pending.push_back(*first),
                    Ok(Message::Stop) | Err(_) => return,
                }
                // Let more records gather before writing. While this thread sleeps instead of
                // waiting on the channel, senders do not have to wake it, and one transaction
                // covers everything that arrived: under load that is one commit per window
                // instead of one per request. With a backlog there is nothing to wait for.
                if !behind {
                    std::thread::sleep(GATHER);
                }
            }
            self.take(if self.failures > 0 { KEEP } else { BATCH });
            let n = self.pending.len().min(BATCH);
            let batch = self.pending.make_contiguous();
            match write_batch(self.conn, &batch[..n]) {
                Ok(()) => {
                    if self.failures > 0 {
                        tracing::info!(
                            failures = self.failures,
                            "usage records are written again after failed attempts"
                        );
                        self.failures = 0;
                    }
                    // Announced once committed, so a live view that reads the summaries sees
                    // them.
                    for record in self.pending.drain(..n) {
                        // No subscriber is not an error.
                        let _ = self.live.send(Arc::new(record));
                    }
                    behind = n == BATCH || !self.pending.is_empty();
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let mut wait = retry_wait(self.failures);
                    if self.stopped() {
                        // Stopping: the last attempts come sooner, within STOP_RETRY.
                        let left = self
                            .stop_at
                            .map_or(Duration::ZERO, |at| STOP_RETRY.saturating_sub(at.elapsed()));
                        wait = wait.min(left);
                    }
                    if self.stop_at.is_some() && wait.is_zero() {
                        tracing::error!(
                            error = %e,
                            lost = self.pending.len(),
                            "could not write usage records before stopping; they are lost"
                        );
                        return;
                    }
                    // The first failure and then every doubling, not a line per attempt.
                    if self.failures.is_power_of_two() {
                        tracing::error!(
                            error = %e,
                            held = self.pending.len(),
                            attempts = self.failures,
                            retry_in = ?wait,
                            "could not write usage records; keeping them and retrying"
                        );
                    }
                    self.wait_out(wait);
                }
            }
        }
    }

    /// Moves records from the channel to `pending` until it holds `up_to`, or the channel is
    /// empty. `Stop` is noted; records that came before it are still taken.
    fn take(&mut self, up_to: usize) {
        while self.pending.len() < up_to {
            match self.rx.try_recv() {
                Ok(Message::Record(record)) => self.pending.push_back(*record),
                Ok(Message::Stop) => {
                    self.stop_at.get_or_insert_with(Instant::now);
                }
                Err(_) => break,
            }
        }
    }

    /// Whether the recorder is stopping (noting when it began).
    fn stopped(&mut self) -> bool {
        if self.stop_at.is_none() && self.stopping.load(Ordering::SeqCst) {
            self.stop_at = Some(Instant::now());
        }
        self.stop_at.is_some()
    }

    /// Waits `wait` before the next attempt, still taking records meanwhile (up to [`KEEP`])
    /// so senders do not see a full channel while there is room here. Looks at the stop flag
    /// every [`GATHER`], so a stop is not kept waiting by a long backoff.
    fn wait_out(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let slice = left.min(GATHER);
            if self.stopped() {
                let give_up = self.stop_at.map_or(until, |at| at + STOP_RETRY);
                if Instant::now() >= give_up {
                    return;
                }
                std::thread::sleep(slice);
                continue;
            }
            if self.pending.len() >= KEEP {
                std::thread::sleep(slice);
                continue;
            }
            match self.rx.recv_timeout(slice) {
                Ok(Message::Record(record)) => self.pending.push_back(*record),
                Ok(Message::Stop) => {
                    self.stop_at.get_or_insert_with(Instant::now);
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone: nothing more can come, so this is a stop.
                Err(RecvTimeoutError::Disconnected) => {
                    self.stop_at.get_or_insert_with(Instant::now);
                }
            }
        }
    }
}

/// The wait after `failures` failed attempts in a row: [`RETRY_FIRST`], doubling, at most
/// [`RETRY_MAX`].
fn retry_wait(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// Each credential's requests of the last day, `(key_id, start ms, tokens)`, to restore the
/// routing windows after a restart.
///
/// Runs at every start, so nothing a row holds may fail it: counts are clamped in SQL like
/// every other read, and a row whose columns cannot be read is skipped with a warning.
pub fn credential_history(
    db: &Database,
    since_ms: i64,
) -> Result<Vec<(String, i64, u64)>, StoreError> {
    db.read(|conn| {
        let mut stmt = conn.prepare(&format!(
            "SELECT credential, ts_ms, COALESCE({}, 0) + COALESCE({}, 0)
             FROM usage WHERE credential IS NOT NULL AND ts_ms >= ?1 ORDER BY ts_ms",
            count("input_tokens"),
            count("output_tokens"),
        ))?;
        let rows = stmt.query_map([since_ms], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            ))
        })?;
        readable(rows, "the routing windows")
    })
}

/// A token column as every read sees it: whatever the row holds (a count an older version
/// wrote unclamped, a real, text) as an integer in `0..=MAX_TOKENS`, `NULL` staying `NULL`.
/// Sums of these cannot overflow (see [`MAX_TOKENS`]).
fn count(column: &str) -> String {
    format!("MAX(MIN(CAST({column} AS INTEGER), {MAX_TOKENS}), 0)")
}

/// Whether reading a row failed on what one of its columns holds (the row is unreadable),
/// rather than on the database (the read cannot go on).
fn unreadable_row(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
    )
}

/// Collects rows, skipping those that cannot be read (one warning per read says how many); any
/// other error ends the read.
fn readable<T>(
    rows: impl Iterator<Item = rusqlite::Result<T>>,
    reading: &str,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    let mut skipped = 0_u64;
    let mut example = None;
    for row in rows {
        match row {
            Ok(row) => out.push(row),
            Err(e) if unreadable_row(&e) => {
                skipped += 1;
                example.get_or_insert_with(|| e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(example) = example {
        tracing::warn!(
            skipped,
            error = %example,
            "usage rows that cannot be read were left out of {reading}"
        );
    }
    Ok(out)
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
                r.tokens.input.map(stored_count),
                r.tokens.output.map(stored_count),
                r.tokens.cached.map(stored_count),
                r.tokens.reasoning.map(stored_count),
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

/// A token count as written: clamped per row, whoever built the record.
fn stored_count(value: u64) -> i64 {
    saturate(value.min(MAX_TOKENS))
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
    /// The five sums [`SUMS`] selects, starting at column `first`.
    fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            requests: row.get(first)?,
            input_tokens: row.get(first + 1)?,
            output_tokens: row.get(first + 2)?,
            cached_tokens: row.get(first + 3)?,
            errors: row.get(first + 4)?,
        })
    }

    fn add(&self, other: &Self) -> Self {
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

/// Totals for everything recorded since `since_ms`.
pub fn summary(db: &Database, since_ms: i64) -> Result<Summary, StoreError> {
    db.read(|conn| {
        let today = conn.query_row(
            &format!("SELECT {} FROM usage WHERE ts_ms >= ?1", sums()),
            [since_ms],
            |row| Totals::from_row(row, 0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT CAST(provider_id AS TEXT), COUNT(*), {}, {}
             FROM usage WHERE ts_ms >= ?1 GROUP BY provider_id ORDER BY provider_id",
            sum("input_tokens"),
            sum("output_tokens"),
        ))?;
        let by_provider = stmt.query_map([since_ms], |row| {
            Ok(ProviderTotals {
                provider_id: row.get(0)?,
                requests: row.get(1)?,
                input_tokens: row.get(2)?,
                output_tokens: row.get(3)?,
            })
        })?;
        let by_provider = readable(by_provider, "the summary")?;
        Ok(Summary { today, by_provider })
    })
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

/// The latest `limit` recorded requests, newest first.
pub fn recent(db: &Database, limit: u32) -> Result<Vec<RecentRow>, StoreError> {
    db.read(|conn| {
        let mut stmt = conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM usage ORDER BY id DESC LIMIT ?1",
            ROW_COLUMNS = row_columns()
        ))?;
        readable(stmt.query_map([limit], recent_row)?, "the recent requests")
    })
}

/// The columns [`recent_row`] reads, token counts clamped.
fn row_columns() -> String {
    format!(
        "ts_ms, adapter, provider_id, model, endpoint, stream, status, {}, {}, {}, latency_ms,
         ttfb_ms, outcome, error, credential",
        count("input_tokens"),
        count("output_tokens"),
        count("cached_tokens"),
    )
}

/// Reads the columns [`row_columns`] lists, in that order.
fn recent_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecentRow> {
    Ok(RecentRow {
        ts_ms: row.get(0)?,
        adapter: row.get(1)?,
        adapter_label: String::new(),
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
        credential: row.get(14)?,
    })
}

/// How many rows one [`page`] reads: enough to keep an export's round trips few, small enough
/// that the shared connection is never held for long.
pub const PAGE: u32 = 1000;

/// Where the next [`page`] starts: after this row, in (time, id) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    ts_ms: i64,
    id: i64,
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

/// A page of recorded requests after `after` and before `until_ms`, oldest first, and the
/// cursor for the next page (`None` when this was the last). The (time, id) order is the `ts_ms`
/// index's own (it ends in the row id), so each page is one index seek however deep the export
/// is. A row that cannot be read is left out (with a warning) but still moves the cursor on; a
/// cursor that cannot move (a row whose very time is unreadable) ends the export rather than
/// reading the same page again.
pub fn page(
    db: &Database,
    after: Cursor,
    until_ms: i64,
) -> Result<(Vec<RecentRow>, Option<Cursor>), StoreError> {
    db.read(|conn| {
        let mut stmt = conn.prepare(&format!(
            "SELECT {}, id FROM usage WHERE (ts_ms, id) > (?1, ?2) AND ts_ms < ?3
             ORDER BY ts_ms, id LIMIT ?4",
            row_columns()
        ))?;
        let mut next = after;
        let mut scanned: u32 = 0;
        let rows = stmt.query_map(params![after.ts_ms, after.id, until_ms, PAGE], |row| {
            scanned += 1;
            if let (Ok(ts_ms), Ok(id)) = (row.get::<_, i64>(0), row.get::<_, i64>(15)) {
                next = Cursor { ts_ms, id };
            }
            recent_row(row)
        })?;
        let rows = readable(rows, "the export")?;
        let more = scanned == PAGE && next != after;
        Ok((rows, more.then_some(next)))
    })
}

/// Deletes the recorded requests older than `before_ms` (all of them when `None`); returns how
/// many went.
pub fn delete(db: &Database, before_ms: Option<i64>) -> Result<u64, StoreError> {
    db.write(|conn| {
        let deleted = match before_ms {
            Some(before) => conn.execute("DELETE FROM usage WHERE ts_ms < ?1", [before])?,
            None => conn.execute("DELETE FROM usage", [])?,
        };
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    })
}

/// The most buckets one [`stats`] answer may have (a day in minutes, a week in hours fit).
pub const MAX_BUCKETS: i64 = 2000;

/// The time range and bucket size of a [`stats`] query, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    since_ms: i64,
    until_ms: i64,
    bucket_ms: i64,
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
    fn buckets(self) -> i64 {
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

/// The sums every aggregate selects, after its group column. Errors are the outcomes where the
/// request did not get its answer; a client hanging up, or a stream cut by the gateway's own
/// shutdown, is not the provider's error.
fn sums() -> String {
    format!(
        "COUNT(*), {}, {}, {},
         COALESCE(SUM(outcome IN ('failed', 'upstream_error', 'interrupted')), 0)",
        sum("input_tokens"),
        sum("output_tokens"),
        sum("cached_tokens"),
    )
}

/// The sum of a token column over a group, 0 when empty; cannot overflow (see [`count`]).
fn sum(column: &str) -> String {
    format!("COALESCE(SUM({}), 0)", count(column))
}

/// Aggregates the range in SQLite (one indexed range scan per grouping and one for the series;
/// no rows come to Rust).
pub fn stats(db: &Database, window: Window) -> Result<Stats, StoreError> {
    let Window {
        since_ms,
        until_ms,
        bucket_ms,
    } = window;
    db.read(|conn| {
        let range = "FROM usage WHERE ts_ms >= ?1 AND ts_ms < ?2";
        let grouped = |column: &str| -> rusqlite::Result<Vec<Group>> {
            let mut stmt = conn.prepare(&format!(
                "SELECT CAST(COALESCE({column}, 'none') AS TEXT), {SUMS},
                        COALESCE(CAST(ROUND(AVG(latency_ms)) AS INTEGER), 0)
                 {range} GROUP BY {column}
                 ORDER BY {INPUT} + {OUTPUT} DESC, COUNT(*) DESC, 1",
                SUMS = sums(),
                INPUT = sum("input_tokens"),
                OUTPUT = sum("output_tokens"),
            ))?;
            let groups = stmt.query_map([since_ms, until_ms], |row| {
                Ok(Group {
                    key: row.get(0)?,
                    label: None,
                    sums: Totals::from_row(row, 1)?,
                    avg_latency_ms: row.get(6)?,
                })
            })?;
            readable(groups, "the statistics")
        };
        let by_provider = grouped("provider_id")?;
        let by_adapter = grouped("adapter")?;
        let by_model = grouped("model")?;

        let mut series: Vec<Bucket> = (0..window.buckets())
            .map(|n| Bucket {
                start_ms: since_ms + n * bucket_ms,
                sums: Totals::default(),
            })
            .collect();
        let mut stmt = conn.prepare(&format!(
            "SELECT (ts_ms - ?1) / ?3 AS bucket, {} {range} GROUP BY bucket ORDER BY bucket",
            sums()
        ))?;
        let filled = stmt.query_map([since_ms, until_ms, bucket_ms], |row| {
            Ok((row.get::<_, i64>(0)?, Totals::from_row(row, 1)?))
        })?;
        for (index, sums) in readable(filled, "the statistics")? {
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| series.get_mut(i)) {
                slot.sums = sums;
            }
        }
        // Every row in the range falls in one bucket, so the buckets add up to the totals.
        let totals = series
            .iter()
            .fold(Totals::default(), |sum, b| sum.add(&b.sums));
        Ok(Stats {
            since_ms,
            until_ms,
            bucket_ms,
            totals,
            by_provider,
            by_adapter,
            by_model,
            series,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    pub(super) fn record_for_tests(provider: &str, input: u64) -> UsageRecord {
        record(provider, input)
    }

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

    /// A new database in a folder of its own: `name` and the thread keep parallel tests apart.
    pub(super) fn scratch_db(name: &str) -> Database {
        let dir = std::env::temp_dir().join(format!(
            "flexiproxy-usage-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Database::open(&dir).unwrap()
    }

    #[test]
    fn records_are_written_and_summarised() {
        let db = scratch_db("unit");
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

    /// Writes records directly (the recorder's batching is not under test here).
    fn write(db: &Database, records: &[UsageRecord]) {
        let conn = Database::open_connection(db.path()).unwrap();
        write_batch(&conn, records).unwrap();
    }

    fn at(
        ts_ms: i64,
        adapter: Option<i64>,
        provider: &str,
        model: &str,
        tokens: (u64, u64),
        latency_ms: u64,
        outcome: Outcome,
    ) -> UsageRecord {
        UsageRecord {
            ts_ms,
            adapter,
            model: model.into(),
            tokens: TokenUsage {
                input: Some(tokens.0),
                output: Some(tokens.1),
                cached: Some(tokens.0 / 2),
                reasoning: None,
            },
            latency_ms,
            outcome,
            ..record(provider, 0)
        }
    }

    #[test]
    fn stats_group_sort_and_fill_every_bucket() {
        let db = scratch_db("unit");
        write(
            &db,
            &[
                // Before the window: not counted.
                at(999, Some(7), "a", "m1", (1000, 1000), 1, Outcome::Completed),
                at(1_000, Some(7), "a", "m1", (10, 2), 100, Outcome::Completed),
                at(1_050, Some(7), "a", "m1", (20, 4), 200, Outcome::Completed),
                // Bucket 1 stays empty; bucket 2 has a request without an adapter.
                at(
                    1_250,
                    None,
                    "b",
                    "m2",
                    (100, 50),
                    31,
                    Outcome::UpstreamError,
                ),
                at(1_299, Some(8), "a", "m2", (0, 0), 40, Outcome::ClientClosed),
                // The last, partial bucket.
                at(1_300, Some(8), "a", "m2", (1, 1), 10, Outcome::Failed),
                // At `until`: not counted.
                at(
                    1_350,
                    Some(8),
                    "a",
                    "m2",
                    (1000, 1000),
                    1,
                    Outcome::Completed,
                ),
            ],
        );
        let s = stats(&db, Window::new(1_000, 1_350, 100).unwrap()).unwrap();
        assert_eq!(
            s.totals,
            Totals {
                requests: 5,
                input_tokens: 131,
                output_tokens: 57,
                cached_tokens: 5 + 10 + 50,
                errors: 2,
            }
        );
        // Sorted by input + output tokens, most first.
        let keys = |groups: &[Group]| groups.iter().map(|g| g.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&s.by_provider), ["b", "a"]);
        assert_eq!(keys(&s.by_adapter), ["none", "7", "8"]);
        assert_eq!(keys(&s.by_model), ["m2", "m1"]);
        let a = &s.by_provider[1];
        assert_eq!(
            (a.sums.requests, a.sums.input_tokens, a.sums.output_tokens),
            (4, 31, 7)
        );
        assert_eq!(a.sums.errors, 1);
        // (100 + 200 + 40 + 10) / 4 = 87.5, rounded.
        assert_eq!(a.avg_latency_ms, 88);
        let none = &s.by_adapter[0];
        assert_eq!(
            (none.sums.requests, none.sums.errors, none.avg_latency_ms),
            (1, 1, 31)
        );
        assert_eq!(none.label, None);

        let starts: Vec<i64> = s.series.iter().map(|b| b.start_ms).collect();
        assert_eq!(starts, [1_000, 1_100, 1_200, 1_300]);
        let requests: Vec<i64> = s.series.iter().map(|b| b.sums.requests).collect();
        assert_eq!(requests, [2, 0, 2, 1]);
        assert_eq!(s.series[1].sums.input_tokens, 0);
        assert_eq!(s.series[2].sums.output_tokens, 50);
        assert_eq!(s.series[2].sums.errors, 1);
        assert_eq!(s.series[3].sums.errors, 1);

        // An empty range still has its buckets, all zero.
        let empty = stats(&db, Window::new(10_000, 10_300, 100).unwrap()).unwrap();
        assert_eq!(empty.totals, Totals::default());
        assert!(empty.by_adapter.is_empty());
        assert_eq!(empty.series.len(), 3);
        assert!(empty.series.iter().all(|b| b.sums.requests == 0));
    }

    #[test]
    fn windows_are_checked() {
        assert_eq!(Window::new(0, 1, 1).unwrap().buckets(), 1);
        assert_eq!(Window::new(0, 2000, 1).unwrap().buckets(), 2000);
        assert!(matches!(
            Window::new(0, 2001, 1),
            Err(WindowError::TooMany { buckets: 2001, .. })
        ));
        assert!(matches!(
            Window::new(5, 5, 1),
            Err(WindowError::Empty { .. })
        ));
        assert!(matches!(Window::new(0, 5, 0), Err(WindowError::Bucket(0))));
        // A week in hours fits, a day in minutes too; a week in 5-minute steps does not.
        let (day, hour) = (86_400_000, 3_600_000);
        assert_eq!(Window::new(0, 7 * day, hour).unwrap().buckets(), 168);
        assert_eq!(Window::new(0, day, 60_000).unwrap().buckets(), 1440);
        assert!(Window::new(0, 7 * day, 300_000).is_err());
    }

    #[test]
    fn pages_cover_a_range_once_and_delete_clears() {
        let db = scratch_db("unit");
        let total = PAGE as i64 * 2 + 5;
        // Written newest first, and two rows per millisecond: pages follow time, then id.
        let records: Vec<UsageRecord> = (0..total)
            .rev()
            .map(|n| at(n / 2, None, "p", "m", (1, 1), 1, Outcome::Completed))
            .collect();
        write(&db, &records);
        let (mut seen, mut cursor, mut pages) = (Vec::new(), Cursor::start(3), 0);
        loop {
            let (rows, next) = page(&db, cursor, total / 2).unwrap();
            pages += 1;
            assert_eq!(next.is_none(), rows.len() < PAGE as usize);
            seen.extend(rows.into_iter().map(|r| r.ts_ms));
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let expected: Vec<i64> = (0..total)
            .map(|n| n / 2)
            .filter(|t| (3..total / 2).contains(t))
            .collect();
        // Full pages, then a short one (perhaps empty).
        assert_eq!(pages, expected.len() / PAGE as usize + 1);
        assert!(pages >= 2);
        assert_eq!(seen, expected);

        assert_eq!(delete(&db, Some(50)).unwrap(), 100);
        assert_eq!(summary(&db, 0).unwrap().today.requests, total - 100);
        assert_eq!(
            delete(&db, None).unwrap(),
            u64::try_from(total - 100).unwrap()
        );
        assert!(recent(&db, 10).unwrap().is_empty());
    }

    #[test]
    fn nothing_is_written_while_off() {
        let db = scratch_db("unit");
        let recorder = Recorder::start(&db, false).unwrap();
        recorder.record(record("a", 10));
        recorder.set_enabled(true);
        recorder.record(record("a", 1));
        recorder.flush_and_stop();
        assert_eq!(summary(&db, 0).unwrap().today.requests, 1);
    }
}

#[cfg(test)]
mod broken_disk {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    use super::tests::scratch_db;

    /// Makes every insert into `usage` fail, as a full or read-only disk would, from another
    /// connection (the writer's own is out of reach).
    fn break_writes(db: &Database) {
        db.write(|c| {
            c.execute_batch(
                "CREATE TRIGGER broken BEFORE INSERT ON usage
                 BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END;",
            )
        })
        .unwrap();
    }

    fn mend(db: &Database) {
        db.write(|c| c.execute_batch("DROP TRIGGER broken"))
            .unwrap();
    }

    fn rows(db: &Database) -> i64 {
        summary(db, i64::MIN).unwrap().today.requests
    }

    fn wait_for_rows(db: &Database, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while rows(db) < want {
            assert!(Instant::now() < deadline, "{} of {want} rows", rows(db));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_failed_batch_is_kept_and_retried_until_it_is_written() {
        let db = scratch_db("retry");
        let recorder = Recorder::start(&db, true).unwrap();
        break_writes(&db);
        for n in 0..300 {
            recorder.record(tests::record_for_tests("p", n));
        }
        // Several attempts fail meanwhile (100, 200, 400 ms waits).
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(rows(&db), 0);
        mend(&db);
        wait_for_rows(&db, 300);
        // New records still go through after the recovery.
        recorder.record(tests::record_for_tests("p", 1));
        recorder.flush_and_stop();
        assert_eq!(rows(&db), 301);
        assert_eq!(recorder.dropped(), 0);
    }

    #[test]
    fn a_disk_that_stays_broken_costs_the_newest_records_not_memory() {
        let db = scratch_db("bounded");
        let recorder = Recorder::start(&db, true).unwrap();
        break_writes(&db);
        let sent = KEEP + QUEUE + 5_000;
        for n in 0..sent {
            recorder.record(tests::record_for_tests("p", n as u64));
        }
        let dropped = recorder.dropped();
        assert!(dropped >= 5_000 - BATCH as u64, "dropped {dropped}");
        mend(&db);
        recorder.flush_and_stop();
        let written = rows(&db);
        // Everything that was not dropped was kept and written: nothing lost silently.
        assert_eq!(written + dropped as i64, sent as i64);
        assert!(written as usize <= KEEP + QUEUE + BATCH, "{written}");
    }

    #[test]
    fn a_stop_on_a_broken_disk_gives_up_after_its_retry_time() {
        let db = scratch_db("stop");
        let recorder = Recorder::start(&db, true).unwrap();
        break_writes(&db);
        for n in 0..10 {
            recorder.record(tests::record_for_tests("p", n));
        }
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        recorder.flush_and_stop();
        let took = started.elapsed();
        assert!(took >= STOP_RETRY / 2, "gave up at once: {took:?}");
        assert!(took < STOP_RETRY + Duration::from_secs(3), "{took:?}");
        mend(&db);
        assert_eq!(rows(&db), 0);
    }

    #[test]
    fn retry_waits_double_up_to_the_most() {
        assert_eq!(retry_wait(1), RETRY_FIRST);
        assert_eq!(retry_wait(2), RETRY_FIRST * 2);
        assert_eq!(retry_wait(4), RETRY_FIRST * 8);
        assert_eq!(retry_wait(40), RETRY_MAX);
        assert_eq!(retry_wait(u32::MAX), RETRY_MAX);
    }
}

#[cfg(test)]
mod hostile_counts {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    use super::tests::scratch_db;

    /// Rows as a version before the clamp wrote them: `u64` counts saturated to `i64::MAX`.
    fn poison(db: &Database, ts_ms: i64, credential: &str, value: i64) {
        db.write(|conn| {
            conn.execute(
                "INSERT INTO usage (ts_ms, adapter, provider_id, model, endpoint, stream, status,
                     input_tokens, output_tokens, cached_tokens, reasoning_tokens, latency_ms,
                     outcome, credential)
                 VALUES (?1, 1, 'p', 'm', 'chat.completions', 0, 200, ?2, ?2, ?2, ?2, 5,
                     'completed', ?3)",
                params![ts_ms, value, credential],
            )?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn old_rows_with_huge_counts_neither_break_sums_nor_the_start() {
        let db = scratch_db("old");
        for n in 0..3 {
            poison(&db, 1_000 + n, "p/k", i64::MAX);
        }
        let s = summary(&db, 0).unwrap();
        assert_eq!(s.today.requests, 3);
        assert_eq!(s.today.input_tokens, 3 * MAX_TOKENS as i64);
        assert_eq!(s.by_provider[0].output_tokens, 3 * MAX_TOKENS as i64);
        let st = stats(&db, Window::new(0, 2_000, 1_000).unwrap()).unwrap();
        assert_eq!(st.totals.cached_tokens, 3 * MAX_TOKENS as i64);
        assert_eq!(st.by_model[0].sums.input_tokens, 3 * MAX_TOKENS as i64);
        let rows = recent(&db, 10).unwrap();
        assert_eq!(rows[0].input_tokens, Some(MAX_TOKENS as i64));
        let (rows, _) = page(&db, Cursor::start(0), i64::MAX).unwrap();
        assert_eq!(rows.len(), 3);
        let history = credential_history(&db, 0).unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].2, 2 * MAX_TOKENS);
    }

    #[test]
    fn rows_of_any_type_are_read_or_skipped_never_fatal() {
        let db = scratch_db("types");
        poison(&db, 1_000, "p/k", -5);
        db.write(|conn| {
            // What no FlexiProxy wrote, but a hand-edited or damaged file may hold.
            conn.execute_batch(
                "INSERT INTO usage (ts_ms, provider_id, model, endpoint, stream, status,
                     input_tokens, output_tokens, latency_ms, outcome, credential)
                 VALUES (1001, 'p', 'm', 'e', 0, 200, 1e300, 'lots', 1, 'completed', 'p/k'),
                        (1002, 'p', 'm', 'e', 0, 200, 2.5, X'00', 1, 'completed', 'p/k'),
                        ('soon', 'p', 'm', 'e', 0, 200, 7, 7, 1, 'completed', 'p/k');",
            )?;
            Ok(())
        })
        .unwrap();
        let s = summary(&db, 0).unwrap();
        assert!(s.today.input_tokens >= 0);
        stats(&db, Window::new(0, 2_000, 1_000).unwrap()).unwrap();
        let rows = recent(&db, 10).unwrap();
        // The row whose time is text is left out; the others read, counts in range.
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].input_tokens, Some(2), "2.5 is cut to 2");
        assert_eq!(rows[0].output_tokens, Some(0), "a blob reads as 0");
        assert_eq!(rows[1].input_tokens, Some(MAX_TOKENS as i64), "1e300");
        assert_eq!(rows[1].output_tokens, Some(0), "text reads as 0");
        assert_eq!(rows[2].input_tokens, Some(0), "a negative count reads as 0");
        let (rows, next) = page(&db, Cursor::start(i64::MIN), i64::MAX).unwrap();
        assert_eq!((rows.len(), next), (3, None));
        let history = credential_history(&db, 0).unwrap();
        assert_eq!(history.len(), 3);
        assert!(
            history
                .iter()
                .all(|(_, _, tokens)| *tokens <= 2 * MAX_TOKENS)
        );
    }

    #[test]
    fn records_are_clamped_when_written() {
        let db = scratch_db("write");
        let recorder = Recorder::start(&db, true).unwrap();
        let mut record = tests::record_for_tests("p", u64::MAX);
        record.tokens.cached = Some(MAX_TOKENS + 1);
        recorder.record(record);
        recorder.flush_and_stop();
        let row = &recent(&db, 1).unwrap()[0];
        assert_eq!(row.input_tokens, Some(MAX_TOKENS as i64));
        assert_eq!(row.cached_tokens, Some(MAX_TOKENS as i64));
        assert_eq!(row.output_tokens, Some(2));
    }
}
