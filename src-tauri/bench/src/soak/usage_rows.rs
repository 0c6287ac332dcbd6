//! Reads back what the gateway recorded: the `usage` table of `flexiproxy.db` in its data folder,
//! after it has shut down gracefully (every queued row is written by then). The soak compares the
//! rows with the streams its clients saw complete: a row lost under load, or one recorded as
//! failed for a stream the client received whole, shows up here.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::BenchError;

/// Rows of the usage table, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRows {
    /// All rows.
    pub total: u64,
    /// `(outcome, rows)`, most frequent first.
    pub by_outcome: Vec<(String, u64)>,
}

impl UsageRows {
    /// Rows with outcome `completed`.
    pub fn completed(&self) -> u64 {
        self.by_outcome
            .iter()
            .find(|(outcome, _)| outcome == "completed")
            .map_or(0, |(_, rows)| *rows)
    }
}

/// Counts the usage rows in the gateway database at `db`.
pub fn read(db: &Path) -> Result<UsageRows, BenchError> {
    let failed = |err: rusqlite::Error| {
        BenchError::Unexpected(format!("reading the usage rows of {}: {err}", db.display()))
    };
    // Read-write open: a WAL left by a gateway that did not close cleanly is replayed, not
    // ignored. The gateway has exited; nothing else uses this scratch database.
    let connection = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    let mut query = connection
        .prepare("SELECT outcome, COUNT(*) FROM usage GROUP BY outcome ORDER BY COUNT(*) DESC")
        .map_err(failed)?;
    let by_outcome = query
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(failed)?
        .map(|row| row.map(|(outcome, rows)| (outcome, u64::try_from(rows).unwrap_or(0))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    Ok(UsageRows {
        total: by_outcome.iter().map(|(_, rows)| rows).sum(),
        by_outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_by_outcome() {
        let dir = std::env::temp_dir().join(format!(
            "flexiproxy-bench-usage-rows-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("flexiproxy.db");
        let _ = std::fs::remove_file(&db);
        let connection = Connection::open(&db).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE usage (id INTEGER PRIMARY KEY, outcome TEXT NOT NULL);
                 INSERT INTO usage (outcome) VALUES
                   ('completed'), ('completed'), ('completed'), ('client_closed');",
            )
            .unwrap();
        drop(connection);
        let rows = read(&db).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(rows.total, 4);
        assert_eq!(rows.completed(), 3);
        assert_eq!(rows.by_outcome[1], ("client_closed".to_owned(), 1));
    }

    #[test]
    fn a_missing_database_is_an_error_not_zero_rows() {
        let missing = std::env::temp_dir().join("flexiproxy-bench-no-such-dir/flexiproxy.db");
        assert!(read(&missing).is_err());
    }
}
