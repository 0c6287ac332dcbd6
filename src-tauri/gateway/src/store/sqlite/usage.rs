//! Usage rows in SQLite: the batches the recorder's writer appends, and the summaries, pages,
//! statistics and rate-window history read back from them.
//!
//! Every read clamps token counts in SQL (see [`count`]) and skips a row it cannot read with a
//! warning (see [`readable`]): these run at start-up and on every dashboard refresh, so nothing
//! a row holds may fail them. Aggregates run in SQLite over the `ts_ms` index; no rows come to
//! Rust for a sum.

use std::path::PathBuf;

use rusqlite::{Connection, params};

use super::Database;
use crate::store::usage::{
    Bucket, Cursor, Group, PAGE, ProviderTotals, RecentRow, Stats, Summary, Totals, UsageRecord,
    Window,
};
use crate::store::{StoreError, UsageStore, UsageWriter};
use flexiproxy_protocol::canonical::MAX_TOKENS;

impl UsageStore for Database {
    fn usage_writer(&self) -> Result<Box<dyn UsageWriter>, StoreError> {
        Ok(Box::new(SqliteUsageWriter {
            conn: Database::open_connection(self.path())?,
            path: self.path().to_owned(),
        }))
    }

    fn usage_summary(&self, since_ms: i64) -> Result<Summary, StoreError> {
        self.read(|conn| {
            let today = conn.query_row(
                &format!("SELECT {} FROM usage WHERE ts_ms >= ?1", sums()),
                [since_ms],
                |row| totals(row, 0),
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

    /// The latest `limit` recorded requests, newest first.
    fn recent_usage(&self, limit: u32) -> Result<Vec<RecentRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {ROW_COLUMNS} FROM usage ORDER BY id DESC LIMIT ?1",
                ROW_COLUMNS = row_columns()
            ))?;
            readable(stmt.query_map([limit], recent_row)?, "the recent requests")
        })
    }

    /// Aggregates the range in SQLite (one indexed range scan per grouping and one for the series;
    /// no rows come to Rust).
    fn usage_stats(&self, window: Window) -> Result<Stats, StoreError> {
        let Window {
            since_ms,
            until_ms,
            bucket_ms,
        } = window;
        self.read(|conn| {
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
                        sums: totals(row, 1)?,
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
                Ok((row.get::<_, i64>(0)?, totals(row, 1)?))
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

    /// The (time, id) order is the `ts_ms` index's own (it ends in the row id), so each page is
    /// one index seek however deep the export is. A row that cannot be read is left out (with a
    /// warning) but still moves the cursor on; a cursor that cannot move (a row whose very time
    /// is unreadable) ends the export rather than reading the same page again.
    fn usage_page(
        &self,
        after: Cursor,
        until_ms: i64,
    ) -> Result<(Vec<RecentRow>, Option<Cursor>), StoreError> {
        self.read(|conn| {
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
    fn delete_usage(&self, before_ms: Option<i64>) -> Result<u64, StoreError> {
        self.write(|conn| {
            let deleted = match before_ms {
                Some(before) => conn.execute("DELETE FROM usage WHERE ts_ms < ?1", [before])?,
                None => conn.execute("DELETE FROM usage", [])?,
            };
            Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
        })
    }

    /// Runs at every start, so nothing a row holds may fail it: counts are clamped in SQL like
    /// every other read, and a row whose columns cannot be read is skipped with a warning.
    fn credential_history(&self, since_ms: i64) -> Result<Vec<(String, i64, u64)>, StoreError> {
        self.read(|conn| {
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
}

/// The recorder's writer: a connection of its own, so its transactions never wait on the
/// management API's (the database is in WAL mode).
struct SqliteUsageWriter {
    path: PathBuf,
    conn: Connection,
}

impl UsageWriter for SqliteUsageWriter {
    fn append(&mut self, batch: &[UsageRecord]) -> Result<(), StoreError> {
        write_batch(&self.conn, batch).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }
}

/// The five sums [`sums`] selects, starting at column `first`.
fn totals(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Totals> {
    Ok(Totals {
        requests: row.get(first)?,
        input_tokens: row.get(first + 1)?,
        output_tokens: row.get(first + 2)?,
        cached_tokens: row.get(first + 3)?,
        errors: row.get(first + 4)?,
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

#[cfg(test)]
pub(in crate::store) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::store::sqlite::scratch_db;
    use crate::store::usage::{Outcome, Recorder, WindowError};
    use flexiproxy_protocol::canonical::TokenUsage;

    pub(in crate::store) fn record_for_tests(provider: &str, input: u64) -> UsageRecord {
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

    #[test]
    fn records_are_written_and_summarised() {
        let db = scratch_db("unit");
        let recorder = Recorder::start(&db, true).unwrap();
        recorder.record(record("a", 10));
        recorder.record(record("a", 5));
        recorder.record(record("b", 1));
        recorder.flush_and_stop();
        let s = db.usage_summary(0).unwrap();
        assert_eq!(s.today.requests, 3);
        assert_eq!(s.today.input_tokens, 16);
        assert_eq!(s.by_provider.len(), 2);
        assert_eq!(s.by_provider[0].input_tokens, 15);
        let rows = db.recent_usage(2).unwrap();
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
        let s = db
            .usage_stats(Window::new(1_000, 1_350, 100).unwrap())
            .unwrap();
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
        let empty = db
            .usage_stats(Window::new(10_000, 10_300, 100).unwrap())
            .unwrap();
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
            let (rows, next) = db.usage_page(cursor, total / 2).unwrap();
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

        assert_eq!(db.delete_usage(Some(50)).unwrap(), 100);
        assert_eq!(db.usage_summary(0).unwrap().today.requests, total - 100);
        assert_eq!(
            db.delete_usage(None).unwrap(),
            u64::try_from(total - 100).unwrap()
        );
        assert!(db.recent_usage(10).unwrap().is_empty());
    }

    #[test]
    fn nothing_is_written_while_off() {
        let db = scratch_db("unit");
        let recorder = Recorder::start(&db, false).unwrap();
        recorder.record(record("a", 10));
        recorder.set_enabled(true);
        recorder.record(record("a", 1));
        recorder.flush_and_stop();
        assert_eq!(db.usage_summary(0).unwrap().today.requests, 1);
    }
}

#[cfg(test)]
mod hostile_counts {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::store::usage::Recorder;

    use crate::store::sqlite::scratch_db;

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
        let s = db.usage_summary(0).unwrap();
        assert_eq!(s.today.requests, 3);
        assert_eq!(s.today.input_tokens, 3 * MAX_TOKENS as i64);
        assert_eq!(s.by_provider[0].output_tokens, 3 * MAX_TOKENS as i64);
        let st = db
            .usage_stats(Window::new(0, 2_000, 1_000).unwrap())
            .unwrap();
        assert_eq!(st.totals.cached_tokens, 3 * MAX_TOKENS as i64);
        assert_eq!(st.by_model[0].sums.input_tokens, 3 * MAX_TOKENS as i64);
        let rows = db.recent_usage(10).unwrap();
        assert_eq!(rows[0].input_tokens, Some(MAX_TOKENS as i64));
        let (rows, _) = db.usage_page(Cursor::start(0), i64::MAX).unwrap();
        assert_eq!(rows.len(), 3);
        let history = db.credential_history(0).unwrap();
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
        let s = db.usage_summary(0).unwrap();
        assert!(s.today.input_tokens >= 0);
        db.usage_stats(Window::new(0, 2_000, 1_000).unwrap())
            .unwrap();
        let rows = db.recent_usage(10).unwrap();
        // The row whose time is text is left out; the others read, counts in range.
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].input_tokens, Some(2), "2.5 is cut to 2");
        assert_eq!(rows[0].output_tokens, Some(0), "a blob reads as 0");
        assert_eq!(rows[1].input_tokens, Some(MAX_TOKENS as i64), "1e300");
        assert_eq!(rows[1].output_tokens, Some(0), "text reads as 0");
        assert_eq!(rows[2].input_tokens, Some(0), "a negative count reads as 0");
        let (rows, next) = db.usage_page(Cursor::start(i64::MIN), i64::MAX).unwrap();
        assert_eq!((rows.len(), next), (3, None));
        let history = db.credential_history(0).unwrap();
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
        let row = &db.recent_usage(1).unwrap()[0];
        assert_eq!(row.input_tokens, Some(MAX_TOKENS as i64));
        assert_eq!(row.cached_tokens, Some(MAX_TOKENS as i64));
        assert_eq!(row.output_tokens, Some(2));
    }
}
