//! What can go wrong in the store: one error type for every backend's calls, so the seam's
//! signatures stay the same whichever backend answers.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot start the usage writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error(
        "the database {path} has schema version {found}, newer than this FlexiProxy understands \
         (up to {known}); run a newer FlexiProxy, or point --data-dir at another folder"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot back up the database {path} to {backup} before upgrading it from schema v{from} \
         to v{to} ({source}); the database was left as it was. Free some disk space or make \
         {} writable by this user, then start FlexiProxy again",
        backup.parent().unwrap_or(backup.as_path()).display()
    )]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        from: i64,
        to: i64,
        // Boxed: every store call returns this error type, so it stays small.
        source: Box<BackupError>,
    },
    #[error("database error in {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A stored value this version cannot read (edited by hand, or written by a newer
    /// version): an error rather than a guess, which would quietly change what is served.
    #[error(
        "the {table} row `{id}` in {path} has a {column} this version cannot read: {reason}; \
         fix the value or remove the row"
    )]
    Unreadable {
        path: PathBuf,
        table: &'static str,
        id: String,
        column: &'static str,
        reason: String,
    },
}

/// Why the copy taken before a schema upgrade could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}
