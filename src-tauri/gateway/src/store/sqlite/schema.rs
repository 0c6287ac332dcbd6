//! The SQLite schema: the numbered migrations, the version check and the copy taken before an
//! upgrade.
//!
//! The schema version lives in `PRAGMA user_version`; a database written by a newer
//! FlexiProxy is refused rather than guessed at, and an older one is copied to `backups/` (see
//! [`backup_path`]) before the first migration touches it, so an upgrade that goes wrong can be
//! undone by putting the copy back.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::store::files::{private_dir, private_file};
use crate::store::{BackupError, StoreError};

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

pub(super) fn migrate(
    conn: &mut Connection,
    path: &Path,
    data_dir: &Path,
) -> Result<(), StoreError> {
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
    use crate::store::sqlite::{Database, scratch};
    use crate::store::{AdapterStore, ProviderStore, SettingStore, ToolSetupRow, ToolSetupStore};
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
    const V3_FIXTURE: &str = include_str!("../../../../../tests/fixtures/store/v3.sql");

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

    /// A data folder whose database an older FlexiProxy left at schema `version`: the first
    /// `version` migrations, then `rows` as that version wrote them.
    fn folder_at_version(version: usize, rows: &str) -> PathBuf {
        let dir = scratch();
        let mut conn = Database::open_connection(&dir.join(DB_FILE)).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..version] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", i64::try_from(version).unwrap())
            .unwrap();
        tx.execute_batch(rows).unwrap();
        tx.commit().unwrap();
        dir
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
    fn version_two_gains_tool_setups_and_keeps_its_rows() {
        let dir = folder_at_version(
            2,
            "INSERT INTO providers (id, url, protocol, created_at, updated_at)
                 VALUES ('ds', 'http://x/v1', 'openai_chat', 7, 7);
             INSERT INTO adapters (create_time, provider_id, model_id, key_hash, key_hint)
                 VALUES (9, 'ds', 'deepseek-chat', 'h', 'fp-…');",
        );

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

    #[test]
    fn version_one_keys_become_default_credentials() {
        let dir = folder_at_version(
            1,
            "INSERT INTO providers VALUES ('ds', 'http://x/v1', 'openai_chat',
                 'store:provider:ds', 'sk-d…(30 chars)', 7, 7);
             INSERT INTO providers VALUES ('ollama', 'http://y/v1', 'openai_chat', NULL, NULL, 8, 8);
             INSERT INTO adapters VALUES (9, 'ds', 'deepseek-chat', NULL, 'h', 'fp-…');",
        );

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
