//! Typed gateway settings, validated from the command line and the environment.
//!
//! `cli::Args` is the raw form (strings and flags, with `FLEXIPROXY_*` environment fallbacks);
//! [`Settings::from_args`] checks it once and produces the values `lifecycle` starts the gateway
//! with, so nothing downstream re-parses or second-guesses them. Library users (tests, the
//! benchmark) build [`Settings`] directly with [`Settings::new`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Args, SecretsArg, UsageArg};
use crate::host::Host;
use crate::secrets::{Secret, SharedSecretStore};

/// The port FlexiProxy listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8317;
/// The largest request body accepted (a long agent conversation with images fits).
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;
/// The environment variable that carries the management token on headless machines.
pub const MANAGEMENT_TOKEN_ENV: &str = "FLEXIPROXY_MANAGEMENT_TOKEN";

/// Where secrets are kept.
#[derive(Debug, Clone)]
pub enum SecretsMode {
    /// The OS keychain if it answers; otherwise environment references only, with a warning
    /// that the app, the log and the UI show.
    Auto,
    /// The OS keychain, or refuse to start.
    Keychain,
    /// No keychain: keys only as `env:NAME` references, the token from the environment.
    Env,
    /// A store supplied by the embedding program (tests use `MemoryStore`).
    Store(SharedSecretStore),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    pub data_dir: PathBuf,
    pub secrets: SecretsMode,
    /// Usage recording forced on or off; `None` keeps the stored setting (on by default).
    pub usage: Option<bool>,
    /// A management token given by the environment instead of the keychain.
    pub management_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub connect_timeout: Duration,
    /// How long to wait for an upstream's response headers (models can think for minutes).
    pub response_timeout: Duration,
    /// The declarative config file (`--config`, `FLEXIPROXY_CONFIG`), if any: see `config_file`.
    pub config_file: Option<PathBuf>,
    /// The desktop app embedding this gateway (`None` headless): see `host`.
    pub host: Option<Arc<dyn Host>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot find a home directory for FlexiProxy's data; pass --data-dir or set \
         FLEXIPROXY_DATA_DIR"
    )]
    NoDataDir,
    #[error(
        "{MANAGEMENT_TOKEN_ENV} is set but shorter than 16 characters; use a long random value"
    )]
    WeakToken,
}

impl Settings {
    /// Defaults for a gateway keeping its data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            data_dir,
            secrets: SecretsMode::Auto,
            usage: None,
            management_token: None,
            max_body_bytes: DEFAULT_MAX_BODY,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(600),
            config_file: None,
            host: None,
        }
    }

    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let data_dir = match &args.data_dir {
            Some(dir) => dir.clone(),
            None => default_data_dir().ok_or(ConfigError::NoDataDir)?,
        };
        let management_token = match std::env::var(MANAGEMENT_TOKEN_ENV) {
            Ok(token) if token.len() >= 16 => Some(Secret::new(token)),
            Ok(token) if !token.is_empty() => return Err(ConfigError::WeakToken),
            _ => None,
        };
        Ok(Self {
            bind: args.bind,
            port: args.port,
            secrets: match args.secrets {
                SecretsArg::Auto => SecretsMode::Auto,
                SecretsArg::Keychain => SecretsMode::Keychain,
                SecretsArg::Env => SecretsMode::Env,
            },
            usage: args.usage.map(|u| u == UsageArg::On),
            management_token,
            response_timeout: Duration::from_secs(args.upstream_timeout.max(1)),
            config_file: args.config.clone(),
            ..Self::new(data_dir)
        })
    }
}

/// The platform's per-user data folder: `~/.local/share/flexiproxy` on Linux,
/// `~/Library/Application Support/dev.flexiproxy.FlexiProxy` on macOS, `%APPDATA%` on Windows.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("dev", "flexiproxy", "FlexiProxy")
        .map(|dirs| dirs.data_dir().to_owned())
}
