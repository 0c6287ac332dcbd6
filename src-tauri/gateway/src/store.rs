//! The SQLite database: schema, numbered migrations and the rows the gateway keeps.
//!
//! One file (`flexiproxy.db`) in the data directory, in WAL mode so the usage writer and the
//! management API do not block each other. The schema version lives in `PRAGMA user_version`;
//! a database written by a newer FlexiProxy is refused rather than guessed at. Secrets never come
//! here: providers keep a [`crate::secrets::SecretRef`] and adapters the SHA-256 of their key.
//! `registry` loads these rows into memory for the request path; `usage` writes its own table.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

/// Each entry moves the schema from version `index` to `index + 1`. Append only: a released
/// migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: providers, adapters, usage, settings.
    "CREATE TABLE settings (
         key   TEXT PRIMARY KEY,
         value TEXT NOT NULL
     );
     CREATE TABLE providers (
         id         TEXT PRIMARY KEY,
         url        TEXT NOT NULL,
         protocol   TEXT NOT NULL,
         key_ref    TEXT,
         key_hint   TEXT,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL
     );
     CREATE TABLE adapters (
         create_time INTEGER PRIMARY KEY,
         provider_id TEXT NOT NULL,
         model_id    TEXT NOT NULL,
         base_url    TEXT,
         key_hash    TEXT NOT NULL UNIQUE,
         key_hint    TEXT NOT NULL
     );
     CREATE TABLE usage (
         id               INTEGER PRIMARY KEY,
         ts_ms            INTEGER NOT NULL,
         adapter          INTEGER,
         provider_id      TEXT NOT NULL,
         model            TEXT NOT NULL,
         endpoint         TEXT NOT NULL,
         stream           INTEGER NOT NULL,
         status           INTEGER NOT NULL,
         input_tokens     INTEGER,
         output_tokens    INTEGER,
         cached_tokens    INTEGER,
         reasoning_tokens INTEGER,
         latency_ms       INTEGER NOT NULL,
         ttfb_ms          INTEGER,
         outcome          TEXT NOT NULL,
         error            TEXT
     );
     CREATE INDEX usage_ts ON usage (ts_ms);",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Milliseconds since the Unix epoch: the unit of every timestamp in the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "flexiproxy.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    #[error("database error in {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// A provider as stored: where it is, what protocol it speaks and where its key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRow {
    pub id: String,
    pub url: String,
    pub protocol: String,
    /// A [`crate::secrets::SecretRef`] in its database form, or none for keyless providers.
    pub key_ref: Option<String>,
    /// A redacted hint of the key (`sk-p…(51 chars)`), safe to show.
    pub key_hint: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An adapter as stored: the local key's hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterRow {
    pub create_time: i64,
    pub provider_id: String,
    pub model_id: String,
    pub base_url: Option<String>,
    pub key_hash: String,
    pub key_hint: String,
}

/// The open database. One connection behind a mutex serves the management API, which is
/// low-volume; the usage writer opens its own connection with [`Database::open_connection`].
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Database {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Self::open_connection(&path)?;
        migrate(&mut conn, &path)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// A new connection to the same file, configured like the main one.
    pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
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

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.wrap(e))
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    pub fn providers(&self) -> Result<Vec<ProviderRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, url, protocol, key_ref, key_hint, created_at, updated_at
                 FROM providers ORDER BY id",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(ProviderRow {
                    id: row.get(0)?,
                    url: row.get(1)?,
                    protocol: row.get(2)?,
                    key_ref: row.get(3)?,
                    key_hint: row.get(4)?,
                    created_at: row.get(5)?,
                    updated_at: row.get(6)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Inserts or replaces a provider, keeping its original `created_at`.
    pub fn upsert_provider(&self, row: &ProviderRow) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO providers (id, url, protocol, key_ref, key_hint, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET url = excluded.url, protocol = excluded.protocol,
                     key_ref = excluded.key_ref, key_hint = excluded.key_hint,
                     updated_at = excluded.updated_at",
                params![
                    row.id,
                    row.url,
                    row.protocol,
                    row.key_ref,
                    row.key_hint,
                    row.created_at,
                    row.updated_at
                ],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    /// Deletes a provider; returns whether it existed.
    pub fn delete_provider(&self, id: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute("DELETE FROM providers WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|e| self.wrap(e))
    }

    pub fn adapters(&self) -> Result<Vec<AdapterRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT create_time, provider_id, model_id, base_url, key_hash, key_hint
                 FROM adapters ORDER BY create_time",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(AdapterRow {
                    create_time: row.get(0)?,
                    provider_id: row.get(1)?,
                    model_id: row.get(2)?,
                    base_url: row.get(3)?,
                    key_hash: row.get(4)?,
                    key_hint: row.get(5)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Inserts an adapter. `create_time` identifies it, so when two adapters are created in the
    /// same millisecond the later one moves to the next free millisecond; the stored value is
    /// returned.
    pub fn insert_adapter(&self, row: &AdapterRow) -> Result<i64, StoreError> {
        let conn = self.conn();
        let latest: Option<i64> = conn
            .query_row("SELECT MAX(create_time) FROM adapters", [], |r| r.get(0))
            .map_err(|e| self.wrap(e))?;
        let create_time = match latest {
            Some(latest) if latest >= row.create_time => latest + 1,
            _ => row.create_time,
        };
        conn.execute(
            "INSERT INTO adapters (create_time, provider_id, model_id, base_url, key_hash, key_hint)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                create_time,
                row.provider_id,
                row.model_id,
                row.base_url,
                row.key_hash,
                row.key_hint
            ],
        )
        .map_err(|e| self.wrap(e))?;
        Ok(create_time)
    }

    /// Deletes an adapter; returns whether it existed.
    pub fn delete_adapter(&self, create_time: i64) -> Result<bool, StoreError> {
        self.conn()
            .execute("DELETE FROM adapters WHERE create_time = ?1", [create_time])
            .map(|n| n > 0)
            .map_err(|e| self.wrap(e))
    }

    /// Runs a read-only query on the shared connection (usage summaries).
    pub fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        query(&self.conn()).map_err(|e| self.wrap(e))
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let wrap = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(wrap)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(wrap)?;
        tx.execute_batch(sql).map_err(wrap)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        tracing::info!(version = index + 1, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flexiproxy-store-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn migrates_a_new_database_and_reopens_it() {
        let dir = scratch();
        let db = Database::open(&dir).unwrap();
        let version: i64 = db
            .read(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = db
            .read(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(db);
        Database::open(&dir).unwrap();
    }

    #[test]
    fn refuses_a_newer_schema_with_a_clear_message() {
        let dir = scratch();
        drop(Database::open(&dir).unwrap());
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Database::open(&dir).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }));
        assert!(err.to_string().contains("newer than this FlexiProxy"));
    }

    #[test]
    fn providers_and_adapters_round_trip() {
        let db = Database::open(&scratch()).unwrap();
        let provider = ProviderRow {
            id: "openai".into(),
            url: "http://127.0.0.1:1/v1".into(),
            protocol: "openai_chat".into(),
            key_ref: Some("store:provider:openai".into()),
            key_hint: Some("sk-a…(20 chars)".into()),
            created_at: 1,
            updated_at: 1,
        };
        db.upsert_provider(&provider).unwrap();
        db.upsert_provider(&ProviderRow {
            url: "http://127.0.0.1:2/v1".into(),
            created_at: 5,
            updated_at: 5,
            ..provider
        })
        .unwrap();
        let rows = db.providers().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].url, "http://127.0.0.1:2/v1");
        assert_eq!(rows[0].created_at, 1, "created_at survives an update");

        let adapter = AdapterRow {
            create_time: 100,
            provider_id: "openai".into(),
            model_id: "gpt-4o".into(),
            base_url: None,
            key_hash: "h1".into(),
            key_hint: "fp-1…".into(),
        };
        assert_eq!(db.insert_adapter(&adapter).unwrap(), 100);
        let second = AdapterRow {
            key_hash: "h2".into(),
            ..adapter
        };
        assert_eq!(db.insert_adapter(&second).unwrap(), 101, "same ms moves on");
        assert!(db.delete_adapter(100).unwrap());
        assert!(!db.delete_adapter(100).unwrap());
        assert_eq!(db.adapters().unwrap().len(), 1);
        assert!(db.delete_provider("openai").unwrap());
    }
}
