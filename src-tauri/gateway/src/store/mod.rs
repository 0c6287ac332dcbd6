//! The SQLite database: schema, numbered migrations and the rows the gateway keeps.
//!
//! One file (`flexiproxy.db`) in the data directory, in WAL mode so the usage writer and the
//! management API do not block each other. The schema version lives in `PRAGMA user_version`;
//! a database written by a newer FlexiProxy is refused rather than guessed at, and an older one is
//! copied to `backups/` (see [`backup_path`]) before the first migration touches it, so an upgrade
//! that goes wrong can be undone by putting the copy back. Secrets never come
//! here: providers keep a [`crate::store::secrets::SecretRef`] and adapters the SHA-256 of their key.
//! `registry` loads these rows into memory for the request path; `usage` writes its own table.

pub mod secrets;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use crate::routing::discovery::{DiscoveryKind, UnknownDiscoveryKind};
use crate::routing::{Candidate, Limits};
use flexiproxy_protocol::{Protocol, UnknownProtocol};

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
    // 2: credential pools, model routes, discovery, adapters that route by the client's model.
    "CREATE TABLE credentials (
         provider_id     TEXT NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
         id              TEXT NOT NULL,
         label           TEXT NOT NULL,
         key_ref         TEXT,
         key_hint        TEXT,
         enabled         INTEGER NOT NULL DEFAULT 1,
         priority        INTEGER NOT NULL DEFAULT 0,
         max_request_min INTEGER,
         max_request_day INTEGER,
         max_token_min   INTEGER,
         created_at      INTEGER NOT NULL,
         PRIMARY KEY (provider_id, id)
     );
     INSERT INTO credentials (provider_id, id, label, key_ref, key_hint, created_at)
         SELECT id, 'default', 'default', key_ref, key_hint, created_at
         FROM providers WHERE key_ref IS NOT NULL;
     UPDATE providers SET key_ref = NULL, key_hint = NULL;
     ALTER TABLE providers ADD COLUMN discovery TEXT NOT NULL DEFAULT 'auto';
     ALTER TABLE providers ADD COLUMN models TEXT NOT NULL DEFAULT '[]';
     CREATE TABLE discovered_models (
         provider_id  TEXT PRIMARY KEY REFERENCES providers (id) ON DELETE CASCADE,
         models       TEXT NOT NULL,
         peers        TEXT NOT NULL,
         refreshed_at INTEGER NOT NULL,
         error        TEXT
     );
     CREATE TABLE routes (
         name       TEXT PRIMARY KEY,
         strategy   TEXT,
         auto       INTEGER NOT NULL DEFAULT 0,
         candidates TEXT NOT NULL,
         updated_at INTEGER NOT NULL
     );
     CREATE TABLE adapters_v2 (
         create_time INTEGER PRIMARY KEY,
         name        TEXT,
         provider_id TEXT,
         model_id    TEXT,
         base_url    TEXT,
         strategy    TEXT,
         key_hash    TEXT NOT NULL UNIQUE,
         key_hint    TEXT NOT NULL
     );
     INSERT INTO adapters_v2 (create_time, provider_id, model_id, base_url, key_hash, key_hint)
         SELECT create_time, provider_id, model_id, base_url, key_hash, key_hint FROM adapters;
     DROP TABLE adapters;
     ALTER TABLE adapters_v2 RENAME TO adapters;
     ALTER TABLE usage ADD COLUMN credential TEXT;
     CREATE INDEX usage_credential_ts ON usage (credential, ts_ms);",
    // 3: tool set-ups FlexiProxy wrote into other programs' config files, so they can be undone.
    // `previous` holds, per owned key, whether it was there and (for keys that are not secret)
    // its value; secret values stay only in the backup file.
    "CREATE TABLE tool_setups (
         id             INTEGER PRIMARY KEY,
         tool           TEXT NOT NULL,
         path           TEXT NOT NULL,
         adapter        INTEGER,
         previous       TEXT NOT NULL,
         created_file   INTEGER NOT NULL,
         backup_path    TEXT,
         written_sha256 TEXT NOT NULL,
         applied_at     INTEGER NOT NULL,
         undone_at      INTEGER
     );
     CREATE INDEX tool_setups_active ON tool_setups (tool, undone_at);",
    // 4: subscription accounts logged in from the window. The tokens are in the secret store
    // (`oauth:<id>`); this row holds what is shown and the health of the login. Each account
    // is served as a credential (`key_ref` `oauth:<id>`) of its kind's provider.
    "CREATE TABLE accounts (
         id           TEXT PRIMARY KEY,
         kind         TEXT NOT NULL,
         provider_id  TEXT NOT NULL,
         label        TEXT NOT NULL,
         email        TEXT,
         account_id   TEXT,
         plan         TEXT,
         project      TEXT,
         created_at   INTEGER NOT NULL,
         refreshed_at INTEGER,
         expires_at   INTEGER,
         last_error   TEXT,
         needs_login  INTEGER NOT NULL DEFAULT 0
     );",
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

/// Creates `dir` (and missing parents) readable by this user alone (0700), or tightens it to
/// that when it exists with group or world bits. The database holds the adapters' key hashes,
/// every request's metadata and OAuth account names; other local users have no business there.
/// The mode is set explicitly, so it does not depend on the umask.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        tighten(dir, 0o700);
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates `path` as an empty file readable by this user alone (0600) unless it exists, in
/// which case it is tightened to that. SQLite would create it 0644 minus the umask.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // The umask may have taken bits the mode asked for; never more than 0600 either way.
        tighten(path, 0o600);
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Takes group and world bits off `path` (to `mode` at most) when it has any; a file that is
/// not there is fine, and a file this user cannot change is left with a warning (the gateway
/// still starts: the folder around it is what keeps others out).
fn tighten(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let current = meta.permissions().mode() & 0o7777;
        if current & !mode == 0 {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode)) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                from = format!("{current:o}"),
                to = format!("{:o}", current & mode),
                "made private to this user"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                mode = format!("{current:o}"),
                error = %e,
                "cannot make this private to this user; other users of this machine may read it"
            ),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
    }
}

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "flexiproxy.db";

/// Folder inside the data directory that holds the copies taken before schema upgrades.
pub const BACKUP_DIR: &str = "backups";

/// Where the copy of a database at schema `version`, taken at `stamp` (UTC, `YYYYmmddTHHMMSSZ`),
/// goes: `<data_dir>/backups/flexiproxy-v<version>-<stamp>.db`.
pub fn backup_path(data_dir: &Path, version: i64, stamp: &str) -> PathBuf {
    data_dir
        .join(BACKUP_DIR)
        .join(format!("flexiproxy-v{version}-{stamp}.db"))
}

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

/// A provider as stored: where it is, what protocol it speaks and where its key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRow {
    pub id: String,
    pub url: String,
    pub protocol: Protocol,
    /// How models are discovered.
    pub discovery: DiscoveryKind,
    /// Models the user declared, in addition to discovered ones.
    pub models: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One key (or keyless slot) in a provider's pool. The key itself is only referenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub provider_id: String,
    /// Unique within the provider; `<provider>/<id>` is the public, non-secret name.
    pub id: String,
    pub label: String,
    /// A [`crate::store::secrets::SecretRef`] in its database form, or none for keyless providers.
    pub key_ref: Option<String>,
    /// A redacted hint of the key (`sk-p…(51 chars)`), safe to show.
    pub key_hint: Option<String>,
    pub enabled: bool,
    pub priority: u32,
    pub limits: Limits,
    pub created_at: i64,
}

/// A model route as stored; candidates are kept as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    pub name: String,
    pub strategy: Option<String>,
    pub auto: bool,
    pub candidates: Vec<Candidate>,
    pub updated_at: i64,
}

/// The last discovery result for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredRow {
    pub provider_id: String,
    pub models: Vec<String>,
    /// OCF peers as JSON (`[{"id", "models"}]`), kept opaque here.
    pub peers: String,
    pub refreshed_at: i64,
    pub error: Option<String>,
}

/// An adapter as stored: the local key's hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterRow {
    pub create_time: i64,
    pub name: Option<String>,
    /// None: the provider comes from the client's model (routes, prefixes, discovery).
    pub provider_id: Option<String>,
    /// None: the client's model is used.
    pub model_id: Option<String>,
    pub base_url: Option<String>,
    pub strategy: Option<String>,
    pub key_hash: String,
    pub key_hint: String,
}

/// A tool's config file FlexiProxy wrote into: enough to undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSetupRow {
    pub id: i64,
    /// The tool's id (`claude-code`, `codex`, …).
    pub tool: String,
    pub path: String,
    /// The adapter whose key was written (its `create_time`).
    pub adapter: Option<i64>,
    /// JSON: each owned key's state before this write and a digest of what it wrote, and the
    /// file's permissions before and after (see `tool_setup`).
    pub previous: String,
    /// FlexiProxy created the file (it did not exist before).
    pub created_file: bool,
    /// The copy of the file as it was before this write.
    pub backup_path: Option<String>,
    /// SHA-256 (hex) of the bytes this write left, to tell whether anyone edited since.
    pub written_sha256: String,
    pub applied_at: i64,
    pub undone_at: Option<i64>,
}

/// A subscription account (see schema version 4). Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Also the id of its credential in the provider's pool.
    pub id: String,
    /// `oauth::AccountKind::id` (`claude`, `codex`, …).
    pub kind: String,
    pub provider_id: String,
    /// What the user sees: the email, else the provider's account id.
    pub label: String,
    pub email: Option<String>,
    pub account_id: Option<String>,
    /// The subscription plan or tier, where the provider names it.
    pub plan: Option<String>,
    /// Gemini CLI: the Code Assist project requests are billed to.
    pub project: Option<String>,
    pub created_at: i64,
    /// When the tokens were last obtained (login or refresh).
    pub refreshed_at: Option<i64>,
    /// When the access token expires; `None` when it does not.
    pub expires_at: Option<i64>,
    /// Why the last refresh or request with this account failed.
    pub last_error: Option<String>,
    /// The login is gone (refresh refused, tokens missing): only a new login helps.
    pub needs_login: bool,
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
                "SELECT id, url, protocol, discovery, models, created_at, updated_at
                 FROM providers ORDER BY id",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    ProviderRow {
                        id: row.get(0)?,
                        url: row.get(1)?,
                        protocol: Protocol::OpenAiChat,
                        discovery: DiscoveryKind::default(),
                        models: json_list(&row.get::<_, String>(4)?),
                        created_at: row.get(5)?,
                        updated_at: row.get(6)?,
                    },
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| self.wrap(e))?;
        let mut providers = Vec::new();
        for read in rows {
            let (mut provider, protocol, discovery) = read.map_err(|e| self.wrap(e))?;
            let unreadable = |column, reason: String| StoreError::Unreadable {
                path: self.path.clone(),
                table: "providers",
                id: provider.id.clone(),
                column,
                reason,
            };
            provider.protocol = protocol
                .parse()
                .map_err(|e: UnknownProtocol| unreadable("protocol", e.to_string()))?;
            provider.discovery = discovery
                .parse()
                .map_err(|e: UnknownDiscoveryKind| unreadable("discovery", e.to_string()))?;
            providers.push(provider);
        }
        Ok(providers)
    }

    /// Inserts or replaces a provider, keeping its original `created_at`.
    pub fn upsert_provider(&self, row: &ProviderRow) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO providers (id, url, protocol, discovery, models, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET url = excluded.url, protocol = excluded.protocol,
                     discovery = excluded.discovery, models = excluded.models,
                     updated_at = excluded.updated_at",
                params![
                    row.id,
                    row.url,
                    row.protocol.as_str(),
                    row.discovery.as_str(),
                    to_json_list(&row.models),
                    row.created_at,
                    row.updated_at
                ],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    /// Deletes a provider with its credentials and discovered models; returns whether it
    /// existed.
    pub fn delete_provider(&self, id: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute("DELETE FROM providers WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|e| self.wrap(e))
    }

    /// Every provider's credentials, in pool order (priority, then age).
    pub fn credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT provider_id, id, label, key_ref, key_hint, enabled, priority,
                        max_request_min, max_request_day, max_token_min, created_at
                 FROM credentials ORDER BY provider_id, priority, created_at, id",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(CredentialRow {
                    provider_id: row.get(0)?,
                    id: row.get(1)?,
                    label: row.get(2)?,
                    key_ref: row.get(3)?,
                    key_hint: row.get(4)?,
                    enabled: row.get(5)?,
                    priority: row.get(6)?,
                    limits: Limits {
                        max_request_min: row.get(7)?,
                        max_request_day: row.get(8)?,
                        max_token_min: row
                            .get::<_, Option<i64>>(9)?
                            .and_then(|n| u64::try_from(n).ok()),
                    },
                    created_at: row.get(10)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Inserts or replaces a credential, keeping its original `created_at`.
    pub fn upsert_credential(&self, row: &CredentialRow) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO credentials (provider_id, id, label, key_ref, key_hint, enabled,
                     priority, max_request_min, max_request_day, max_token_min, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (provider_id, id) DO UPDATE SET label = excluded.label,
                     key_ref = excluded.key_ref, key_hint = excluded.key_hint,
                     enabled = excluded.enabled, priority = excluded.priority,
                     max_request_min = excluded.max_request_min,
                     max_request_day = excluded.max_request_day,
                     max_token_min = excluded.max_token_min",
                params![
                    row.provider_id,
                    row.id,
                    row.label,
                    row.key_ref,
                    row.key_hint,
                    row.enabled,
                    row.priority,
                    row.limits.max_request_min,
                    row.limits.max_request_day,
                    row.limits
                        .max_token_min
                        .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    row.created_at
                ],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    /// Deletes one credential; returns whether it existed.
    pub fn delete_credential(&self, provider_id: &str, id: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute(
                "DELETE FROM credentials WHERE provider_id = ?1 AND id = ?2",
                [provider_id, id],
            )
            .map(|n| n > 0)
            .map_err(|e| self.wrap(e))
    }

    pub fn routes(&self) -> Result<Vec<RouteRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, strategy, auto, candidates, updated_at FROM routes ORDER BY name",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |row| {
                let candidates: String = row.get(3)?;
                Ok(RouteRow {
                    name: row.get(0)?,
                    strategy: row.get(1)?,
                    auto: row.get(2)?,
                    candidates: serde_json::from_str(&candidates).unwrap_or_default(),
                    updated_at: row.get(4)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    pub fn upsert_route(&self, row: &RouteRow) -> Result<(), StoreError> {
        let candidates = serde_json::to_string(&row.candidates).unwrap_or_else(|_| "[]".into());
        self.conn()
            .execute(
                "INSERT INTO routes (name, strategy, auto, candidates, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET strategy = excluded.strategy,
                     auto = excluded.auto, candidates = excluded.candidates,
                     updated_at = excluded.updated_at",
                params![row.name, row.strategy, row.auto, candidates, row.updated_at],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    pub fn delete_route(&self, name: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute("DELETE FROM routes WHERE name = ?1", [name])
            .map(|n| n > 0)
            .map_err(|e| self.wrap(e))
    }

    pub fn discovered(&self) -> Result<Vec<DiscoveredRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT provider_id, models, peers, refreshed_at, error FROM discovered_models",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(DiscoveredRow {
                    provider_id: row.get(0)?,
                    models: json_list(&row.get::<_, String>(1)?),
                    peers: row.get(2)?,
                    refreshed_at: row.get(3)?,
                    error: row.get(4)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Saves a discovery result. A failed refresh keeps the models found last time and only
    /// records the error, so a provider that is briefly down keeps its routes.
    pub fn save_discovered(&self, row: &DiscoveredRow) -> Result<(), StoreError> {
        let conn = self.conn();
        let result = if row.error.is_some() {
            conn.execute(
                "INSERT INTO discovered_models (provider_id, models, peers, refreshed_at, error)
                 VALUES (?1, '[]', '[]', ?2, ?3)
                 ON CONFLICT (provider_id) DO UPDATE SET refreshed_at = excluded.refreshed_at,
                     error = excluded.error",
                params![row.provider_id, row.refreshed_at, row.error],
            )
        } else {
            conn.execute(
                "INSERT INTO discovered_models (provider_id, models, peers, refreshed_at, error)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT (provider_id) DO UPDATE SET models = excluded.models,
                     peers = excluded.peers, refreshed_at = excluded.refreshed_at, error = NULL",
                params![
                    row.provider_id,
                    to_json_list(&row.models),
                    row.peers,
                    row.refreshed_at
                ],
            )
        };
        // A provider deleted while its discovery ran has nothing to attach the result to.
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(())
            }
            Err(e) => Err(self.wrap(e)),
        }
    }

    pub fn adapters(&self) -> Result<Vec<AdapterRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT create_time, name, provider_id, model_id, base_url, strategy, key_hash,
                        key_hint
                 FROM adapters ORDER BY create_time",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(AdapterRow {
                    create_time: row.get(0)?,
                    name: row.get(1)?,
                    provider_id: row.get(2)?,
                    model_id: row.get(3)?,
                    base_url: row.get(4)?,
                    strategy: row.get(5)?,
                    key_hash: row.get(6)?,
                    key_hint: row.get(7)?,
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
            "INSERT INTO adapters (create_time, name, provider_id, model_id, base_url, strategy,
                 key_hash, key_hint)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                create_time,
                row.name,
                row.provider_id,
                row.model_id,
                row.base_url,
                row.strategy,
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

    /// The set-ups not undone yet, oldest first; for one tool, or all with `None`.
    pub fn active_tool_setups(&self, tool: Option<&str>) -> Result<Vec<ToolSetupRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, tool, path, adapter, previous, created_file, backup_path,
                        written_sha256, applied_at, undone_at
                 FROM tool_setups
                 WHERE undone_at IS NULL AND (?1 IS NULL OR tool = ?1)
                 ORDER BY id",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([tool], |row| {
                Ok(ToolSetupRow {
                    id: row.get(0)?,
                    tool: row.get(1)?,
                    path: row.get(2)?,
                    adapter: row.get(3)?,
                    previous: row.get(4)?,
                    created_file: row.get(5)?,
                    backup_path: row.get(6)?,
                    written_sha256: row.get(7)?,
                    applied_at: row.get(8)?,
                    undone_at: row.get(9)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Records one apply's write into a tool's file; returns its id.
    pub fn insert_tool_setup(&self, row: &ToolSetupRow) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO tool_setups (tool, path, adapter, previous, created_file, backup_path,
                 written_sha256, applied_at, undone_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.tool,
                row.path,
                row.adapter,
                row.previous,
                row.created_file,
                row.backup_path,
                row.written_sha256,
                row.applied_at,
                row.undone_at
            ],
        )
        .map_err(|e| self.wrap(e))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn mark_tool_setup_undone(&self, id: i64, undone_at: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE tool_setups SET undone_at = ?2 WHERE id = ?1",
                params![id, undone_at],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    /// Every subscription account, oldest first.
    pub fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        self.account_rows(None)
    }

    pub fn account(&self, id: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(self.account_rows(Some(id))?.pop())
    }

    fn account_rows(&self, id: Option<&str>) -> Result<Vec<AccountRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, kind, provider_id, label, email, account_id, plan, project,
                        created_at, refreshed_at, expires_at, last_error, needs_login
                 FROM accounts WHERE (?1 IS NULL OR id = ?1)
                 ORDER BY created_at, id",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([id], |row| {
                Ok(AccountRow {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    provider_id: row.get(2)?,
                    label: row.get(3)?,
                    email: row.get(4)?,
                    account_id: row.get(5)?,
                    plan: row.get(6)?,
                    project: row.get(7)?,
                    created_at: row.get(8)?,
                    refreshed_at: row.get(9)?,
                    expires_at: row.get(10)?,
                    last_error: row.get(11)?,
                    needs_login: row.get(12)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Inserts or replaces an account (a new login, or a re-login of the same account).
    pub fn put_account(&self, row: &AccountRow) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO accounts (id, kind, provider_id, label, email, account_id,
                     plan, project, created_at, refreshed_at, expires_at, last_error, needs_login)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    row.id,
                    row.kind,
                    row.provider_id,
                    row.label,
                    row.email,
                    row.account_id,
                    row.plan,
                    row.project,
                    row.created_at,
                    row.refreshed_at,
                    row.expires_at,
                    row.last_error,
                    row.needs_login
                ],
            )
            .map(drop)
            .map_err(|e| self.wrap(e))
    }

    /// Deletes an account; returns whether it existed.
    pub fn delete_account(&self, id: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute("DELETE FROM accounts WHERE id = ?1", [id])
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

    /// Runs a statement that changes rows on the shared connection (clearing usage history).
    pub fn write<T>(
        &self,
        change: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        change(&self.conn()).map_err(|e| self.wrap(e))
    }
}

/// A JSON array of strings as stored; anything else reads as empty.
fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn to_json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn migrate(conn: &mut Connection, path: &Path, data_dir: &Path) -> Result<(), StoreError> {
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
    // Version 0 is a file this run just created (or an empty one): nothing to keep.
    if found > 0 && found < SCHEMA_VERSION {
        let backup =
            back_up(conn, data_dir, found).map_err(|(backup, source)| StoreError::Backup {
                path: path.to_owned(),
                backup,
                from: found,
                to: SCHEMA_VERSION,
                source: Box::new(source),
            })?;
        tracing::info!(
            "backed up the database to {} before upgrading it from schema v{found} to v{SCHEMA_VERSION}",
            backup.display()
        );
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

/// Writes a consistent copy of the database (schema `version`) into `backups/` and returns its
/// path, or the path it was meant to have and why it could not be written.
///
/// `VACUUM INTO` reads through this connection, so pages still in the `-wal` file are in the
/// copy, and the copy is one self-contained file. It is written under a temporary name and
/// renamed when complete, so a full disk never leaves a truncated file that looks like a backup.
fn back_up(
    conn: &Connection,
    data_dir: &Path,
    version: i64,
) -> Result<PathBuf, (PathBuf, BackupError)> {
    // SQLite's clock: the stamp is UTC without pulling in a date library.
    let stamp: String = conn
        .query_row("SELECT strftime('%Y%m%dT%H%M%SZ', 'now')", [], |row| {
            row.get(0)
        })
        .map_err(|e| (backup_path(data_dir, version, "unknown"), e.into()))?;
    let backup = backup_path(data_dir, version, &stamp);
    let partial = backup.with_extension("db.partial");
    let copy = || -> Result<(), BackupError> {
        private_dir(&data_dir.join(BACKUP_DIR))?;
        // A leftover from an attempt that died half-way; VACUUM INTO refuses a file with
        // content, so it goes, and an empty private one takes its place for the copy.
        if let Err(e) = std::fs::remove_file(&partial)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e.into());
        }
        private_file(&partial)?;
        // SQLite takes the file name as text.
        let target = partial.to_str().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the data directory's path is not valid UTF-8",
            )
        })?;
        if let Err(e) = conn.execute("VACUUM INTO ?1", [target]) {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
        std::fs::rename(&partial, &backup)?;
        Ok(())
    };
    match copy() {
        Ok(()) => Ok(backup),
        Err(e) => Err((backup, e)),
    }
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
        assert!(
            !dir.join(BACKUP_DIR).exists(),
            "neither a new database nor a current one is backed up"
        );
    }

    /// A database as FlexiProxy left it at schema version 3 (see tests/fixtures/README.md).
    const V3_FIXTURE: &str = include_str!("../../../../tests/fixtures/store/v3.sql");

    /// Every table and index with its SQL, to compare two schemas.
    fn schema(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn backups(dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir.join(BACKUP_DIR)) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        found.sort();
        found
    }

    #[test]
    fn the_v3_fixture_is_what_migrations_1_to_3_make() {
        let built = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            built.execute_batch(sql).unwrap();
        }
        let fixture = Connection::open_in_memory().unwrap();
        fixture.execute_batch(V3_FIXTURE).unwrap();
        assert_eq!(user_version(&fixture), 3);
        assert_eq!(schema(&fixture), schema(&built));
    }

    #[test]
    fn upgrading_backs_up_the_old_database_first_and_keeps_its_data() {
        let dir = scratch();
        // Another process (an older FlexiProxy, say) still has it open in WAL mode with its last
        // write only in the -wal file: the backup must hold that write too.
        let old = Connection::open(dir.join(DB_FILE)).unwrap();
        old.execute_batch(V3_FIXTURE).unwrap();
        old.pragma_update(None, "journal_mode", "WAL").unwrap();
        old.execute(
            "INSERT INTO settings (key, value) VALUES ('written_last', 'yes')",
            [],
        )
        .unwrap();
        let wal = dir.join(format!("{DB_FILE}-wal"));
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the write is in the WAL"
        );

        let db = Database::open(&dir).unwrap();
        let found = backups(&dir);
        assert_eq!(found.len(), 1, "one backup: {found:?}");
        let name = found[0].file_name().unwrap().to_str().unwrap().to_owned();
        let stamp = name
            .strip_prefix("flexiproxy-v3-")
            .and_then(|rest| rest.strip_suffix(".db"))
            .unwrap_or_else(|| panic!("backup named {name}"));
        assert_eq!(stamp.len(), "20250101T000000Z".len(), "{name}");
        assert!(stamp.starts_with("20") && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T');

        // The data came through the migration.
        assert_eq!(db.read(|c| Ok(user_version(c))).unwrap(), SCHEMA_VERSION);
        let providers = db.providers().unwrap();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].id, "legacy");
        assert_eq!(providers[0].models, ["legacy-model"]);
        let credentials = db.credentials().unwrap();
        assert_eq!(credentials.len(), 1);
        assert_eq!(credentials[0].key_ref.as_deref(), Some("env:FP_LEGACY_KEY"));
        assert_eq!(db.adapters().unwrap().len(), 1);
        assert_eq!(db.routes().unwrap()[0].name, "legacy-route");
        assert_eq!(db.setting("written_last").unwrap().as_deref(), Some("yes"));

        // The backup is the old database, whole, still at the old version.
        let copy = Connection::open(&found[0]).unwrap();
        assert_eq!(user_version(&copy), 3);
        let fixture = Connection::open_in_memory().unwrap();
        fixture.execute_batch(V3_FIXTURE).unwrap();
        assert_eq!(schema(&copy), schema(&fixture));
        let (provider, last): (String, String) = copy
            .query_row(
                "SELECT (SELECT id FROM providers), \
                 (SELECT value FROM settings WHERE key = 'written_last')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((provider.as_str(), last.as_str()), ("legacy", "yes"));
        drop(copy);
        drop(old);

        // Opening it again (current now) makes no second backup.
        drop(db);
        Database::open(&dir).unwrap();
        assert_eq!(backups(&dir), found);
    }

    #[test]
    fn a_failed_backup_stops_the_upgrade_and_says_what_to_do() {
        let dir = scratch();
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .execute_batch(V3_FIXTURE)
            .unwrap();
        // A file where the backups folder should be: the copy cannot be written.
        std::fs::write(dir.join(BACKUP_DIR), b"not a folder").unwrap();

        let err = Database::open(&dir).unwrap_err();
        let StoreError::Backup {
            from, to, backup, ..
        } = &err
        else {
            panic!("expected a backup error, got {err:?}");
        };
        assert_eq!((*from, *to), (3, SCHEMA_VERSION));
        assert!(backup.starts_with(dir.join(BACKUP_DIR)), "{backup:?}");
        let message = err.to_string();
        assert!(
            message.contains("before upgrading it from schema v3"),
            "{message}"
        );
        assert!(message.contains("Free some disk space"), "{message}");
        assert!(
            message.contains(&dir.join(BACKUP_DIR).display().to_string()),
            "{message}"
        );

        // Nothing was migrated.
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        assert_eq!(user_version(&conn), 3);
        drop(conn);

        // Once the folder can be written, the upgrade goes ahead.
        std::fs::remove_file(dir.join(BACKUP_DIR)).unwrap();
        Database::open(&dir).unwrap();
        assert_eq!(backups(&dir).len(), 1);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A new data folder, its database and the database's companions are private whatever the
    /// umask (the test process's is the usual 022); an existing folder and files left open to
    /// others by an older version are tightened; an upgrade's backup is private too.
    #[cfg(unix)]
    #[test]
    fn the_data_folder_and_database_files_are_private_to_the_user() {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let parent = scratch();
        let dir = parent.join("new").join("data");
        let db = Database::open(&dir).unwrap();
        db.set_setting("k", "v").unwrap();
        let wal = dir.join(format!("{DB_FILE}-wal"));
        let shm = dir.join(format!("{DB_FILE}-shm"));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&parent.join("new")), 0o700, "missing parents too");
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        assert_eq!(mode(&wal), 0o600, "SQLite gives -wal the database's mode");
        assert_eq!(mode(&shm), 0o600);
        drop(db);

        // As an older version (or a umask of 0) left them.
        set(&dir, 0o777);
        for file in [dir.join(DB_FILE), wal.clone(), shm.clone()] {
            if file.exists() {
                set(&file, 0o666);
            }
        }
        let db = Database::open(&dir).unwrap();
        db.set_setting("k", "w").unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&shm), 0o600);
        drop(db);

        // An upgrade's backup, in its own private folder.
        let old = scratch();
        Connection::open(old.join(DB_FILE))
            .unwrap()
            .execute_batch(V3_FIXTURE)
            .unwrap();
        set(&old.join(DB_FILE), 0o644);
        Database::open(&old).unwrap();
        let found = backups(&old);
        assert_eq!(found.len(), 1);
        assert_eq!(mode(&old.join(BACKUP_DIR)), 0o700);
        assert_eq!(mode(&found[0]), 0o600);
        assert_eq!(mode(&old.join(DB_FILE)), 0o600);
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
    fn providers_credentials_routes_and_adapters_round_trip() {
        let db = Database::open(&scratch()).unwrap();
        let provider = ProviderRow {
            id: "openai".into(),
            url: "http://127.0.0.1:1/v1".into(),
            protocol: Protocol::OpenAiChat,
            discovery: DiscoveryKind::Auto,
            models: vec!["gpt-4o".into()],
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
        assert_eq!(rows[0].models, ["gpt-4o"]);
        assert_eq!(rows[0].created_at, 1, "created_at survives an update");

        let credential = CredentialRow {
            provider_id: "openai".into(),
            id: "k1".into(),
            label: "personal".into(),
            key_ref: Some("store:credential:openai/k1".into()),
            key_hint: Some("sk-a…(20 chars)".into()),
            enabled: true,
            priority: 1,
            limits: Limits {
                max_request_min: Some(3),
                max_request_day: None,
                max_token_min: Some(1000),
            },
            created_at: 2,
        };
        db.upsert_credential(&credential).unwrap();
        assert_eq!(db.credentials().unwrap(), [credential]);

        db.upsert_route(&RouteRow {
            name: "gpt-latest".into(),
            strategy: Some("fill-first".into()),
            auto: false,
            candidates: vec![Candidate {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                priority: 0,
            }],
            updated_at: 3,
        })
        .unwrap();
        assert_eq!(db.routes().unwrap()[0].candidates[0].model, "gpt-4o");

        db.save_discovered(&DiscoveredRow {
            provider_id: "openai".into(),
            models: vec!["a".into(), "b".into()],
            peers: "[]".into(),
            refreshed_at: 4,
            error: None,
        })
        .unwrap();
        db.save_discovered(&DiscoveredRow {
            provider_id: "openai".into(),
            models: vec![],
            peers: "[]".into(),
            refreshed_at: 5,
            error: Some("down".into()),
        })
        .unwrap();
        let found = db.discovered().unwrap();
        assert_eq!(
            found[0].models,
            ["a", "b"],
            "a failed refresh keeps the models"
        );
        assert_eq!(found[0].error.as_deref(), Some("down"));

        let adapter = AdapterRow {
            create_time: 100,
            name: None,
            provider_id: Some("openai".into()),
            model_id: Some("gpt-4o".into()),
            base_url: None,
            strategy: None,
            key_hash: "h1".into(),
            key_hint: "fp-1…".into(),
        };
        assert_eq!(db.insert_adapter(&adapter).unwrap(), 100);
        let second = AdapterRow {
            key_hash: "h2".into(),
            provider_id: None,
            model_id: None,
            ..adapter
        };
        assert_eq!(db.insert_adapter(&second).unwrap(), 101, "same ms moves on");
        assert!(db.delete_adapter(100).unwrap());
        assert!(!db.delete_adapter(100).unwrap());
        assert_eq!(db.adapters().unwrap().len(), 1);
        assert!(db.delete_provider("openai").unwrap());
        assert!(
            db.credentials().unwrap().is_empty(),
            "credentials go with it"
        );
        assert!(db.discovered().unwrap().is_empty());
    }

    #[test]
    fn accounts_round_trip_and_replace() {
        let dir = scratch();
        let db = Database::open(&dir).unwrap();
        assert!(db.accounts().unwrap().is_empty());
        let mut row = AccountRow {
            id: "claude-ada".into(),
            kind: "claude".into(),
            provider_id: "claude-account".into(),
            label: "ada@example.com".into(),
            email: Some("ada@example.com".into()),
            account_id: Some("u-1".into()),
            plan: None,
            project: None,
            created_at: 5,
            refreshed_at: Some(5),
            expires_at: Some(3_600_005),
            last_error: None,
            needs_login: false,
        };
        db.put_account(&row).unwrap();
        row.needs_login = true;
        row.last_error = Some("refresh refused".into());
        db.put_account(&row).unwrap();
        assert_eq!(db.accounts().unwrap(), vec![row.clone()]);
        assert_eq!(db.account("claude-ada").unwrap(), Some(row));
        assert!(db.delete_account("claude-ada").unwrap());
        assert!(!db.delete_account("claude-ada").unwrap());
        assert_eq!(db.account("claude-ada").unwrap(), None);
    }

    #[test]
    fn version_two_gains_tool_setups_and_keeps_its_rows() {
        let dir = scratch();
        let path = dir.join(DB_FILE);
        let mut conn = Database::open_connection(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[0]).unwrap();
        tx.execute_batch(MIGRATIONS[1]).unwrap();
        tx.pragma_update(None, "user_version", 2).unwrap();
        tx.execute_batch(
            "INSERT INTO providers (id, url, protocol, created_at, updated_at)
                 VALUES ('ds', 'http://x/v1', 'openai_chat', 7, 7);
             INSERT INTO adapters (create_time, provider_id, model_id, key_hash, key_hint)
                 VALUES (9, 'ds', 'deepseek-chat', 'h', 'fp-…');",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let db = Database::open(&dir).unwrap();
        let version: i64 = db
            .read(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(db.providers().unwrap()[0].id, "ds");
        assert_eq!(db.adapters().unwrap()[0].create_time, 9);
        assert!(db.active_tool_setups(None).unwrap().is_empty());

        let row = ToolSetupRow {
            id: 0,
            tool: "codex".into(),
            path: "/h/.codex/config.toml".into(),
            adapter: Some(9),
            previous: r#"{"model":{"state":"absent"}}"#.into(),
            created_file: true,
            backup_path: None,
            written_sha256: "ab".into(),
            applied_at: 10,
            undone_at: None,
        };
        let first = db.insert_tool_setup(&row).unwrap();
        let second = db
            .insert_tool_setup(&ToolSetupRow {
                written_sha256: "cd".into(),
                applied_at: 11,
                ..row
            })
            .unwrap();
        let active = db.active_tool_setups(Some("codex")).unwrap();
        assert_eq!(active.len(), 2);
        assert_eq!(active[1].written_sha256, "cd");
        assert_eq!(active[1].applied_at, 11);
        assert!(db.active_tool_setups(Some("aider")).unwrap().is_empty());
        db.mark_tool_setup_undone(second, 12).unwrap();
        assert_eq!(db.active_tool_setups(None).unwrap()[0].id, first);
        db.mark_tool_setup_undone(first, 13).unwrap();
        assert!(db.active_tool_setups(None).unwrap().is_empty());
    }

    /// A protocol or discovery kind this version cannot read is an error naming the row and
    /// the column, never a guess (it used to be served as openai_chat with a log line).
    #[test]
    fn an_unreadable_provider_kind_is_an_error_naming_the_row() {
        let dir = scratch();
        let db = Database::open(&dir).unwrap();
        db.write(|c| {
            c.execute_batch(
                "INSERT INTO providers (id, url, protocol, discovery, models, created_at, updated_at)
                 VALUES ('fine', 'http://x/v1', 'gemini', 'off', '[]', 1, 1),
                        ('odd', 'http://y/v1', 'openai', 'auto', '[]', 1, 1);",
            )
        })
        .unwrap();
        let error = db.providers().unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, StoreError::Unreadable { id, column: "protocol", .. } if id == "odd"),
            "{message}"
        );
        assert!(message.contains("unknown protocol `openai`"), "{message}");
        db.write(|c| {
            c.execute_batch(
                "UPDATE providers SET protocol = 'openai_chat', discovery = 'sometimes'
                 WHERE id = 'odd'",
            )
        })
        .unwrap();
        let error = db.providers().unwrap_err();
        assert!(
            matches!(
                &error,
                StoreError::Unreadable {
                    column: "discovery",
                    ..
                }
            ),
            "{error}"
        );
        db.write(|c| c.execute_batch("UPDATE providers SET discovery = 'ocf' WHERE id = 'odd'"))
            .unwrap();
        let read = db.providers().unwrap();
        assert_eq!(read[0].protocol, Protocol::Gemini);
        assert_eq!(read[1].discovery, DiscoveryKind::Ocf);
    }

    #[test]
    fn version_one_keys_become_default_credentials() {
        let dir = scratch();
        let path = dir.join(DB_FILE);
        let mut conn = Database::open_connection(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[0]).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.execute_batch(
            "INSERT INTO providers VALUES ('ds', 'http://x/v1', 'openai_chat',
                 'store:provider:ds', 'sk-d…(30 chars)', 7, 7);
             INSERT INTO providers VALUES ('ollama', 'http://y/v1', 'openai_chat', NULL, NULL, 8, 8);
             INSERT INTO adapters VALUES (9, 'ds', 'deepseek-chat', NULL, 'h', 'fp-…');",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let db = Database::open(&dir).unwrap();
        let credentials = db.credentials().unwrap();
        assert_eq!(credentials.len(), 1);
        assert_eq!(credentials[0].provider_id, "ds");
        assert_eq!(credentials[0].id, "default");
        assert_eq!(credentials[0].key_ref.as_deref(), Some("store:provider:ds"));
        assert!(credentials[0].enabled);
        let adapters = db.adapters().unwrap();
        assert_eq!(adapters[0].model_id.as_deref(), Some("deepseek-chat"));
        assert_eq!(db.providers().unwrap()[0].discovery, "auto");
    }
}
