//! The storage seam: what the gateway reads and writes, whatever keeps it.
//!
//! One trait per table group — settings, providers (with their credentials, routes and
//! discovered models), adapters, accounts, tool set-ups, usage — each followed by the row
//! types it speaks, and [`Storage`] over all of them, which is what `AppState` holds. A
//! function that needs one group asks for that trait alone (`Registry::reload` takes a
//! [`ConfigStore`]). SQLite ([`crate::store::Database`]) is the one backend today; another
//! (PostgreSQL) implements the same traits, so nothing here names a SQLite type: rows are plain
//! values and every failure is a [`StoreError`]. Each trait is `Debug` so the holders of one
//! (`tools::Workspace`, `AppState`) can derive it.
//!
//! The methods are synchronous. Every caller already runs them off the async threads
//! (`spawn_blocking`, the start-up sequence, the usage writer's own thread), the SQLite driver
//! is blocking, and each call is one short round trip; an async seam would only move the
//! `spawn_blocking` inside each backend.

use std::fmt::Debug;

use crate::routing::discovery::DiscoveryKind;
use crate::routing::{Candidate, Limits};
use crate::store::StoreError;
use crate::store::usage::{Cursor, RecentRow, Stats, Summary, UsageRecord, Window};
use flexiproxy_protocol::Protocol;

/// Everything the gateway keeps: what `AppState` holds.
pub trait Storage: ConfigStore + AccountStore + ToolSetupStore + UsageStore + Send + Sync {
    /// Where the data is, for people (the settings view): the SQLite file's path.
    fn location(&self) -> String;
}

/// The configuration kept in the store: settings, providers and adapters. What the registry
/// loads and the management API edits.
pub trait ConfigStore: SettingStore + ProviderStore + AdapterStore {}

impl<T: SettingStore + ProviderStore + AdapterStore + ?Sized> ConfigStore for T {}

/// Named values (`usage_enabled`, the listen address, the instance id, …), kept as text.
pub trait SettingStore: Debug {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// Providers with their credential pools, the model routes and the last discovery results.
pub trait ProviderStore: Debug {
    /// Every provider, by id. A row whose protocol or discovery kind this version cannot read
    /// is [`StoreError::Unreadable`], never a guess.
    fn providers(&self) -> Result<Vec<ProviderRow>, StoreError>;
    /// Inserts or replaces a provider, keeping its original `created_at`.
    fn upsert_provider(&self, row: &ProviderRow) -> Result<(), StoreError>;
    /// Deletes a provider with its credentials and discovered models; returns whether it
    /// existed.
    fn delete_provider(&self, id: &str) -> Result<bool, StoreError>;
    /// Every provider's credentials, in pool order (priority, then age).
    fn credentials(&self) -> Result<Vec<CredentialRow>, StoreError>;
    /// Inserts or replaces a credential, keeping its original `created_at`.
    fn upsert_credential(&self, row: &CredentialRow) -> Result<(), StoreError>;
    /// Deletes one credential; returns whether it existed.
    fn delete_credential(&self, provider_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Every model route, by name.
    fn routes(&self) -> Result<Vec<RouteRow>, StoreError>;
    fn upsert_route(&self, row: &RouteRow) -> Result<(), StoreError>;
    fn delete_route(&self, name: &str) -> Result<bool, StoreError>;
    fn discovered(&self) -> Result<Vec<DiscoveredRow>, StoreError>;
    /// Saves a discovery result. A failed refresh keeps the models found last time and only
    /// records the error, so a provider that is briefly down keeps its routes; a result for a
    /// provider deleted meanwhile is dropped.
    fn save_discovered(&self, row: &DiscoveredRow) -> Result<(), StoreError>;
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

/// The local keys clients use, each serving a provider and model (or the client's own).
pub trait AdapterStore: Debug {
    /// Every adapter, oldest first.
    fn adapters(&self) -> Result<Vec<AdapterRow>, StoreError>;
    /// Inserts an adapter. `create_time` identifies it, so when two adapters are created in
    /// the same millisecond the later one moves to the next free millisecond; the stored value
    /// is returned.
    fn insert_adapter(&self, row: &AdapterRow) -> Result<i64, StoreError>;
    /// Deletes an adapter; returns whether it existed.
    fn delete_adapter(&self, create_time: i64) -> Result<bool, StoreError>;
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

/// Subscription accounts logged in from the window (their tokens are in the secret store).
pub trait AccountStore: Debug {
    /// Every subscription account, oldest first.
    fn accounts(&self) -> Result<Vec<AccountRow>, StoreError>;
    fn account(&self, id: &str) -> Result<Option<AccountRow>, StoreError>;
    /// Inserts or replaces an account (a new login, or a re-login of the same account).
    fn put_account(&self, row: &AccountRow) -> Result<(), StoreError>;
    /// Deletes an account; returns whether it existed.
    fn delete_account(&self, id: &str) -> Result<bool, StoreError>;
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

/// The writes FlexiProxy made into other programs' config files, kept so they can be undone.
pub trait ToolSetupStore: Debug {
    /// The set-ups not undone yet, oldest first; for one tool, or all with `None`.
    fn active_tool_setups(&self, tool: Option<&str>) -> Result<Vec<ToolSetupRow>, StoreError>;
    /// Records one apply's write into a tool's file; returns its id.
    fn insert_tool_setup(&self, row: &ToolSetupRow) -> Result<i64, StoreError>;
    fn mark_tool_setup_undone(&self, id: i64, undone_at: i64) -> Result<(), StoreError>;
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

/// The usage history: one row per request (see [`crate::store::usage`]).
pub trait UsageStore: Debug {
    /// A writer of its own for the recorder's thread, so appending never waits behind the
    /// management API's reads.
    fn usage_writer(&self) -> Result<Box<dyn UsageWriter>, StoreError>;
    /// Totals for everything recorded since `since_ms`.
    fn usage_summary(&self, since_ms: i64) -> Result<Summary, StoreError>;
    /// The latest `limit` recorded requests, newest first.
    fn recent_usage(&self, limit: u32) -> Result<Vec<RecentRow>, StoreError>;
    /// Totals, groups and a time series over `window`, every bucket present.
    fn usage_stats(&self, window: Window) -> Result<Stats, StoreError>;
    /// A page of at most [`crate::store::usage::PAGE`] recorded requests after `after` and
    /// before `until_ms`, oldest first, and the cursor for the next page (`None` when this was
    /// the last).
    fn usage_page(
        &self,
        after: Cursor,
        until_ms: i64,
    ) -> Result<(Vec<RecentRow>, Option<Cursor>), StoreError>;
    /// Deletes the recorded requests older than `before_ms` (all of them when `None`); returns
    /// how many went.
    fn delete_usage(&self, before_ms: Option<i64>) -> Result<u64, StoreError>;
    /// Each credential's requests since `since_ms`, `(key_id, start ms, tokens)`, oldest
    /// first, to restore the routing windows after a restart. Runs at every start, so nothing a
    /// row holds may fail it.
    fn credential_history(&self, since_ms: i64) -> Result<Vec<(String, i64, u64)>, StoreError>;
}

/// Appends batches of usage records, all or nothing per batch; owned by the recorder's writer
/// thread (hence `Send`).
pub trait UsageWriter: Send {
    fn append(&mut self, batch: &[UsageRecord]) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{adapter_row, provider_row};
    use crate::store::sqlite::scratch_db;
    use crate::store::sqlite::usage::tests::record_for_tests;

    /// Writes one row of each group through the seam alone and reads each back, checking that
    /// every group sees its own rows and no other group's: what any backend must do.
    fn each_group_keeps_its_own_rows(store: &dyn Storage) {
        let provider = provider_row("deepseek", "deepseek-chat");
        store.upsert_provider(&provider).unwrap();
        let credential = CredentialRow {
            provider_id: "deepseek".into(),
            id: "k1".into(),
            label: "work".into(),
            key_ref: Some("env:DEEPSEEK_KEY".into()),
            key_hint: None,
            enabled: true,
            priority: 0,
            limits: Limits::default(),
            created_at: 2,
        };
        store.upsert_credential(&credential).unwrap();
        let adapter = AdapterRow {
            name: Some("chat".into()),
            ..adapter_row(10, "deepseek", "hash")
        };
        assert_eq!(store.insert_adapter(&adapter).unwrap(), 10);
        let account = AccountRow {
            id: "claude-ada".into(),
            kind: "claude".into(),
            provider_id: "claude-account".into(),
            label: "ada@example.com".into(),
            email: Some("ada@example.com".into()),
            account_id: None,
            plan: Some("max".into()),
            project: None,
            created_at: 3,
            refreshed_at: None,
            expires_at: None,
            last_error: None,
            needs_login: false,
        };
        store.put_account(&account).unwrap();
        let setup = ToolSetupRow {
            id: 0,
            tool: "codex".into(),
            path: "/home/ada/.codex/config.toml".into(),
            adapter: Some(10),
            previous: "{}".into(),
            created_file: true,
            backup_path: None,
            written_sha256: "00".into(),
            applied_at: 4,
            undone_at: None,
        };
        let setup_id = store.insert_tool_setup(&setup).unwrap();
        store.set_setting("usage_enabled", "false").unwrap();

        assert_eq!(store.providers().unwrap(), [provider]);
        assert_eq!(store.credentials().unwrap(), [credential]);
        assert_eq!(store.adapters().unwrap(), [adapter]);
        assert_eq!(store.accounts().unwrap(), std::slice::from_ref(&account));
        assert_eq!(store.account("claude-ada").unwrap(), Some(account));
        assert_eq!(
            store.active_tool_setups(Some("codex")).unwrap(),
            [ToolSetupRow {
                id: setup_id,
                ..setup
            }]
        );
        assert!(store.active_tool_setups(Some("aider")).unwrap().is_empty());
        assert_eq!(
            store.setting("usage_enabled").unwrap().as_deref(),
            Some("false")
        );
        assert!(store.routes().unwrap().is_empty());
        assert!(store.discovered().unwrap().is_empty());
        assert_eq!(store.usage_summary(i64::MIN).unwrap().today.requests, 0);

        // Usage goes in through the writer the recorder would own, and comes back out of every
        // read: the summary, the recent list, the export's pages, the routing windows.
        let mut record = record_for_tests("deepseek", 5);
        record.credential = Some("deepseek/k1".into());
        store
            .usage_writer()
            .unwrap()
            .append(std::slice::from_ref(&record))
            .unwrap();
        assert_eq!(store.usage_summary(i64::MIN).unwrap().today.input_tokens, 5);
        assert_eq!(store.recent_usage(10).unwrap()[0].provider_id, "deepseek");
        let (page, _) = store.usage_page(Cursor::start(0), i64::MAX).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(
            store.credential_history(0).unwrap(),
            [("deepseek/k1".to_owned(), record.ts_ms, 7)]
        );
        let stats = store
            .usage_stats(Window::new(0, 2_000, 1_000).unwrap())
            .unwrap();
        assert_eq!(stats.totals.requests, 1);
        assert_eq!(store.delete_usage(None).unwrap(), 1);
        assert!(store.recent_usage(10).unwrap().is_empty());

        // Deleting in one group leaves the others as they were.
        assert!(store.delete_account("claude-ada").unwrap());
        assert!(!store.delete_provider("claude-account").unwrap());
        assert_eq!(store.providers().unwrap().len(), 1);
        store.mark_tool_setup_undone(setup_id, 5).unwrap();
        assert!(store.active_tool_setups(None).unwrap().is_empty());
        assert_eq!(store.adapters().unwrap().len(), 1);
        assert!(store.delete_adapter(10).unwrap());
        assert_eq!(store.credentials().unwrap().len(), 1);
    }

    #[test]
    fn the_sqlite_database_keeps_each_group_through_the_seam() {
        let db = scratch_db("seam");
        each_group_keeps_its_own_rows(&db);
    }
}
