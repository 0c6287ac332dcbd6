//! FlexiProxy's gateway: one local address in front of every LLM provider the user has a key
//! for. This crate is the whole proxy and knows nothing of Tauri, so it builds, tests and runs
//! headless anywhere; the desktop app (`src-tauri/app`) only wires it into a tray.
//!
//! The map: a few spine modules and one folder per wing.
//! - `config`: command line and environment (`cli`), validated into [`Settings`]; the
//!   declarative file for headless use (`file`), watched; the provider `presets`; and the
//!   `destination` rules for URLs a key or token may be sent to.
//! - `lifecycle`: [`Gateway::start`] brings the parts up in order; [`RunningGateway`] stops them.
//!   `state`: what every handler shares.
//! - `server`: the HTTP surface: the listener, the client API (`/v1`), the management API
//!   (`/api`), the web UI, `access` (adapter keys, management token, Host/Origin guard),
//!   `drain` (requests in flight at shutdown), TLS, the CSV export.
//! - `proxy`: the request path: failover over candidates, the same-protocol fast path, the
//!   translated path, subscription-account shaping, token counting.
//! - `routing`: which provider, model and credential serve a request (pools, limits,
//!   strategies, cooldowns); the in-memory `registry`; model `discovery`; `provider_check`.
//! - `accounts`: subscription logins (`logins`, `oauth`), the logged-in accounts, per-kind
//!   request shaping (`subscription`), refreshes run once per account (`single_flight`).
//! - `store`: the SQLite file and its migrations, the usage ledger (`usage`), the keychain
//!   and the `Secret` type (`secrets`).
//! - `tools`: snippets for the user's coding tools, and writing (and undoing) their config
//!   files so they use the gateway.
//! - `error`: one error type, rendered in each caller's protocol.
//! - `embedder`: what the program embedding the gateway (the desktop app) offers the API.
//!
//! The wire protocols and the canonical model live in the `flexiproxy-protocol` crate.

pub mod accounts;
pub mod blocking;
pub mod clock;
pub mod config;
pub mod embedder;
pub mod error;
pub mod lifecycle;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod state;
pub mod store;
pub mod tools;

pub use config::{SecretsMode, Settings};
pub use lifecycle::{Gateway, RunningGateway, SecretsStatus, StartError};
pub use store::secrets::Secret;
