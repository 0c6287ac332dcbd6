//! The SQLite backend: one file (`flexiproxy.db`) in the data directory, in WAL mode so the
//! usage writer and the management API do not block each other.
//!
//! [`Database`] implements every trait of the storage seam (`crate::store::seam`), one table
//! group per file: `settings`, `providers` (with credentials, routes and discovered models),
//! `adapters`, `accounts`, `tool_setups`, `usage`. `schema` holds the numbered migrations and
//! the backup taken before an upgrade. Nothing outside `store/` sees a connection.

mod accounts;
mod adapters;
mod providers;
mod schema;
mod settings;
mod tool_setups;
pub(super) mod usage;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;

pub use schema::{BACKUP_DIR, DB_FILE, SCHEMA_VERSION, backup_path};

use crate::store::files::{private_dir, private_file, tighten};
use crate::store::{Storage, StoreError};
use schema::migrate;

/// The open database. One connection behind a mutex serves the management API, which is
/// low-volume; the usage writer opens its own connection (see `usage.rs`).
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Database {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
    ///
    /// The folder is made (or tightened to) 0700 and the database with its `-wal` and `-shm`
    /// files 0600, whatever the umask: see [`private_dir`].
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        private_dir(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        private_file(&path).map_err(|source| StoreError::DataDir {
            path: path.clone(),
            source,
        })?;
        let mut conn = Self::open_connection(&path)?;
        // SQLite makes `-wal` and `-shm` with the database's own mode; these may be left from
        // a version that did not tighten them.
        for companion in ["-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(companion);
            tighten(Path::new(&name), 0o600);
        }
        migrate(&mut conn, &path, data_dir)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// A new connection to the same file, configured like the main one.
    pub(in crate::store) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
        let wrap = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wrap(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `sql` on the shared connection and reads every row it returns with `read`.
    fn query<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map(params, read)?;
            rows.collect()
        })
    }

    /// Runs a statement that changes rows on the shared connection; returns how many changed.
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        self.write(|conn| conn.execute(sql, params))
    }

    /// Runs a read-only query on the shared connection (usage summaries).
    pub(in crate::store) fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        query(&self.conn()).map_err(|e| self.wrap(e))
    }

    /// Runs a statement that changes rows on the shared connection (clearing usage history).
    pub(in crate::store) fn write<T>(
        &self,
        change: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        change(&self.conn()).map_err(|e| self.wrap(e))
    }

    /// Runs statements on the shared connection, for tests elsewhere in the crate that set up
    /// or inspect rows no seam method reaches (a record as an older version wrote it).
    #[cfg(test)]
    pub(crate) fn raw_for_tests<T>(
        &self,
        run: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.write(run)
    }
}

impl Storage for Database {
    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// A JSON array of strings as stored; anything else reads as empty.
fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn to_json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

/// A fresh, not yet created folder for a test's files, named after `what`: the process, the
/// clock and a counter keep parallel tests and test runs apart.
#[cfg(test)]
pub(crate) fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "flexiproxy-{what}-{}-{}-{}",
        std::process::id(),
        crate::clock::now_ms(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// A fresh folder for a test database.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
pub(super) fn scratch() -> PathBuf {
    let dir = scratch_dir("store");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A new database in a folder of its own, named after `name`.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
pub(super) fn scratch_db(name: &str) -> Database {
    Database::open(&scratch_dir(&format!("store-{name}"))).unwrap()
}
