//! The store: what the gateway keeps between runs, behind the storage seam.
//!
//! `seam` is the seam: one trait per table group (settings, providers with their
//! credentials, routes and discovered models, adapters, accounts, tool set-ups, usage) with the
//! row types each speaks, and [`Storage`] over all of them. Callers outside `store/` hold an
//! `Arc<dyn Storage>` (or the one trait they need) and never see SQL. [`Database`] (`sqlite`) is
//! the one backend: a SQLite file with numbered migrations, opened at start-up. Secrets never
//! come here: providers keep a [`secrets::SecretRef`] and adapters the SHA-256 of their key;
//! [`secrets`] is the keychain. [`usage`] records one row per request off the request path.

mod error;
mod files;
#[cfg(test)]
mod fixtures;
mod seam;
pub mod secrets;
mod sqlite;
pub mod usage;

pub use error::{BackupError, StoreError};
pub use files::{private_dir, private_file};
pub use seam::{
    AccountRow, AccountStore, AdapterRow, AdapterStore, ConfigStore, CredentialRow, DiscoveredRow,
    ProviderRow, ProviderStore, RouteRow, SettingStore, Storage, ToolSetupRow, ToolSetupStore,
    UsageStore, UsageWriter,
};
#[cfg(test)]
pub(crate) use sqlite::scratch_dir;
pub use sqlite::{BACKUP_DIR, DB_FILE, Database, SCHEMA_VERSION, backup_path};
