//! The usage recorder: hands finished requests to a writer thread so a slow disk never delays
//! a response.
//!
//! `proxy::meter` hands a finished [`UsageRecord`] to the [`Recorder`], which only puts it on a
//! bounded channel (microseconds). A dedicated writer thread drains the channel in batches
//! through its own [`UsageWriter`] (for SQLite, its own connection, one transaction per batch).
//! When usage statistics are switched off nothing is enqueued at all.
//!
//! What a crash can lose: a record is committed at most [`GATHER`] (plus the time of one
//! commit) after it is handed over, so `kill -9` loses the records of about the last 50 ms.
//! A batch whose write fails is kept and retried with backoff ([`RETRY_FIRST`] doubling to
//! [`RETRY_MAX`]), holding at most [`KEEP`] records while the disk stays broken; past that
//! (and the channel's [`QUEUE`]) new records are dropped and counted in the log. At shutdown
//! the writer retries for [`STOP_RETRY`] at most, then says how many records it could not
//! write.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::UsageRecord;
use crate::store::{StoreError, UsageStore, UsageWriter};

/// How many written records a live subscriber may fall behind before it is told it missed some.
pub const LIVE_BACKLOG: usize = 1024;
/// How many records may wait for the writer before new ones are dropped (and counted).
pub const QUEUE: usize = 16_384;
/// The most records written in one transaction.
pub(in crate::store) const BATCH: usize = 4096;
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
    /// Starts the writer thread on its own writer to `db`.
    pub fn start(db: &dyn UsageStore, enabled: bool) -> Result<Self, StoreError> {
        let mut sink = db.usage_writer()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        let announce = live.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let writer = std::thread::Builder::new()
            .name("flexiproxy-usage".into())
            .spawn(move || write_loop(&mut *sink, &rx, &announce, &stop))
            .map_err(StoreError::WriterThread)?;
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
    sink: &mut dyn UsageWriter,
    rx: &Receiver<Message>,
    live: &broadcast::Sender<Arc<UsageRecord>>,
    stopping: &AtomicBool,
) {
    let mut writer = Writer {
        sink,
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
    sink: &'a mut dyn UsageWriter,
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
            match self.sink.append(&batch[..n]) {
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

#[cfg(test)]
mod broken_disk {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    use crate::store::Database;
    use crate::store::sqlite::scratch_db;
    use crate::store::sqlite::usage::tests::record_for_tests;

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

    /// A recorder whose database refuses every write, already handed `count` records.
    fn recording_onto_a_broken_disk(name: &str, count: u64) -> (Database, Recorder) {
        let db = scratch_db(name);
        let recorder = Recorder::start(&db, true).unwrap();
        break_writes(&db);
        for n in 0..count {
            recorder.record(record_for_tests("p", n));
        }
        (db, recorder)
    }

    fn rows(db: &Database) -> i64 {
        db.usage_summary(i64::MIN).unwrap().today.requests
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
        let (db, recorder) = recording_onto_a_broken_disk("retry", 300);
        // Several attempts fail meanwhile (100, 200, 400 ms waits).
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(rows(&db), 0);
        mend(&db);
        wait_for_rows(&db, 300);
        // New records still go through after the recovery.
        recorder.record(record_for_tests("p", 1));
        recorder.flush_and_stop();
        assert_eq!(rows(&db), 301);
        assert_eq!(recorder.dropped(), 0);
    }

    #[test]
    fn a_disk_that_stays_broken_costs_the_newest_records_not_memory() {
        let sent = KEEP + QUEUE + 5_000;
        let (db, recorder) = recording_onto_a_broken_disk("bounded", sent as u64);
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
        let (db, recorder) = recording_onto_a_broken_disk("stop", 10);
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
