//! FlexiProxy's gateway: one local address in front of every LLM provider the user has a key
//! for. This crate is the whole proxy and knows nothing of Tauri, so it builds, tests and runs
//! headless anywhere; the desktop app (`src-tauri/app`) only wires it into a tray.
//!
//! The map, from the outside in:
//! - `cli` / `config`: command line and environment, validated into [`Settings`];
//!   `config_file`: the declarative file for headless use (providers, keys, routes), watched.
//! - `lifecycle`: [`Gateway::start`] brings the parts up in order; [`RunningGateway`] stops them.
//! - `server`: the axum router: client API (`/v1`), management API (`/api`), web UI;
//!   `drain`: the requests in flight at shutdown, cut after the grace period.
//! - `relay`: the failover loop over a request's candidates, and the same-protocol fast path
//!   from client to provider and back.
//! - `routing`: which provider, model and credential serve a request (pools, limits,
//!   strategies, cooldowns); `discovery`: which models each provider serves.
//! - `path_segment`: values from clients or providers (model names) made into exactly one
//!   encoded URL path segment, or refused.
//! - `translate`: the translated path (a client and a provider of different protocols).
//! - `canonical`: the one internal model of a chat exchange (request, response, stream events)
//!   that translation between protocols goes through.
//! - `protocol`: wire formats (`openai_chat`, `anthropic_messages`) with their conversions to
//!   and from `canonical`, SSE framing, in-place JSON edits.
//! - `presets`: the well-known providers the UI offers to add (base URL, protocol, key page).
//! - `registry`: providers, credentials, routes and adapters in memory for the request path;
//!   `destination`: the rules for URLs a key or token may be sent to.
//! - `access`: adapter keys, the management token, the Host/Origin guard.
//! - `usage`: per-request records written off the request path; summaries and statistics;
//!   `usage_export`: the history as CSV.
//! - `provider_test`: one small real call to a provider, to check its URL, key and model.
//! - `oauth`: subscription logins (PKCE with a loopback callback, device flow) and their tokens
//!   in the keychain, refreshed one at a time per account; `logins`: the logins under way that
//!   the management API starts; `accounts`: the logged-in accounts.
//! - `store`: the SQLite file and its migrations. `secrets`: keychain and the `Secret` type.
//! - `tool_setup`: snippets for the user's coding tools, and writing (and undoing) their config
//!   files so they use the gateway.
//! - `error`: one error type, rendered in each caller's protocol.
//! - `subscription`: request shaping for subscription accounts (Claude, Codex, Gemini CLI,
//!   Qwen, Copilot, iFlow): each kind's endpoint, headers and body envelope.
//! - `host`: what the desktop app embedding the gateway offers the API (start at login).
//! - `single_flight`: one spawned run per key whose result every caller shares (OAuth
//!   refreshes, Copilot mints), so a caller that goes away cannot cut the work short.

pub mod access;
mod account_relay;
pub mod accounts;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod destination;
pub mod discovery;
pub mod drain;
pub mod error;
pub mod host;
pub mod lifecycle;
pub mod logins;
pub mod oauth;
pub mod open_files;
pub mod path_segment;
pub mod presets;
pub mod provider_test;
pub mod registry;
pub mod relay;
pub mod routing;
pub mod secrets;
pub mod server;
mod single_flight;
pub mod state;
pub mod store;
pub mod subscription;
pub mod tls;
pub mod token_count;
pub mod tool_setup;
pub mod translate;
mod upstream_body;
pub mod usage;
pub mod usage_export;

pub use config::{SecretsMode, Settings};
pub use lifecycle::{Gateway, RunningGateway, SecretsStatus, StartError};
pub use secrets::Secret;
