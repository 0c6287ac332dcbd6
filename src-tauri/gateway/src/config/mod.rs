//! Typed gateway settings, validated from the command line and the environment.
//!
//! `cli::Args` is the raw form (strings and flags, with `FLEXIPROXY_*` environment fallbacks);
//! [`Settings::from_args`] checks it once and produces the values `lifecycle` starts the gateway
//! with, so nothing downstream re-parses or second-guesses them. Library users (tests, the
//! benchmark) build [`Settings`] directly with [`Settings::new`].
//!
//! The listen address is the one setting that also lives in the database: the UI saves it
//! ([`SavedListen`], `PUT /api/settings`) and `lifecycle` applies it at the next start, unless
//! the command line or the environment named an address ([`Settings::listen_given`]).

pub mod cli;
pub mod destination;
pub mod file;
pub mod presets;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::cli::{Args, SecretsArg, UsageArg};
use crate::embedder::Embedder;
use crate::store::secrets::{Secret, SharedSecretStore};
use crate::store::{Database, SettingStore, StoreError};

/// The port FlexiProxy listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8317;
/// The address FlexiProxy listens on unless told otherwise: this machine only.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The largest request body accepted (a long agent conversation with images fits).
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;
/// How long a stopping gateway lets requests in flight finish before it cuts them (and records
/// them as cut). Five seconds lets the answers that are nearly done finish, keeps Quit and a
/// service restart prompt, and leaves room inside `docker stop`'s 10 s (and systemd's 90 s)
/// before the SIGKILL for the cut and the last usage write. A long stream cannot be waited for
/// anyway: answers run for minutes.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The longest grace `--shutdown-grace` accepts (an hour).
pub const MAX_SHUTDOWN_GRACE_SECS: u64 = 3600;
/// The environment variable that carries the management token on headless machines.
pub const MANAGEMENT_TOKEN_ENV: &str = "FLEXIPROXY_MANAGEMENT_TOKEN";
/// How long a connection may take to send a whole request head (seconds).
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 20;
/// How long a connection with no request in flight is kept open (seconds).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;
/// How long a stream may go silent between two chunks (seconds): generous, since reasoning
/// models pause for minutes between chunks.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_SECS: u64 = 300;

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
    /// Whether whoever started the gateway chose `bind` and `port` (command line, environment,
    /// an embedding program). When not, the address saved in the database replaces them.
    pub listen_given: bool,
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
    /// How long a stop waits for requests in flight before it cuts them (`--shutdown-grace`).
    pub shutdown_grace: Duration,
    /// The largest SSE event read from a provider's stream (`--max-sse-event-bytes`).
    pub max_sse_event_bytes: usize,
    /// How long an upstream body may stay silent between two chunks once it has begun.
    pub stream_idle_timeout: Duration,
    /// The listener's limits: header read and idle timeouts, connection cap.
    pub listener: ListenerLimits,
    /// Listening on anything but loopback was allowed at start (`--allow-remote`), not only
    /// saved in the settings.
    pub allow_remote: bool,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<crate::server::tls::TlsFiles>,
    /// The declarative config file (`--config`, `FLEXIPROXY_CONFIG`), if any: see `config_file`.
    pub config_file: Option<PathBuf>,
    /// The desktop app embedding this gateway (`None` headless): see `host`.
    pub host: Option<Arc<dyn Embedder>>,
    /// Variables the management API may name as `env:NAME` keys besides the `FLEXIPROXY_` ones
    /// (`--allow-env`; the config file can add more): see `secrets::EnvAllowlist`.
    pub allowed_env: Vec<String>,
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
    #[error(
        "--allow-env: `{0}` is not an environment variable name (letters, digits and `_`, not \
         starting with a digit; the name alone, not env:NAME or its value)"
    )]
    AllowEnv(String),
    #[error("--tls-cert and --tls-key go together: give both (PEM files) or neither")]
    TlsPair,
}

impl Settings {
    /// Defaults for a gateway keeping its data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            bind: DEFAULT_BIND,
            port: DEFAULT_PORT,
            listen_given: true,
            data_dir,
            secrets: SecretsMode::Auto,
            usage: None,
            management_token: None,
            max_body_bytes: DEFAULT_MAX_BODY,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(600),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_sse_event_bytes: flexiproxy_protocol::sse::DEFAULT_MAX_EVENT_BYTES,
            stream_idle_timeout: Duration::from_secs(DEFAULT_STREAM_IDLE_TIMEOUT_SECS),
            listener: ListenerLimits::default(),
            allow_remote: false,
            tls: None,
            config_file: None,
            host: None,
            allowed_env: Vec::new(),
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
        let mut allowed_env = Vec::new();
        for name in args
            .allow_env
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
        {
            if !crate::store::secrets::valid_env_name(name) {
                let shown = if name.contains('=') { "…" } else { name };
                return Err(ConfigError::AllowEnv(shown.chars().take(64).collect()));
            }
            allowed_env.push(name.to_owned());
        }
        Ok(Self {
            allowed_env,
            bind: args.bind.unwrap_or(DEFAULT_BIND),
            port: args.port.unwrap_or(DEFAULT_PORT),
            listen_given: args.bind.is_some() || args.port.is_some(),
            secrets: match args.secrets {
                SecretsArg::Auto => SecretsMode::Auto,
                SecretsArg::Keychain => SecretsMode::Keychain,
                SecretsArg::Env => SecretsMode::Env,
            },
            usage: args.usage.map(|u| u == UsageArg::On),
            management_token,
            response_timeout: Duration::from_secs(args.upstream_timeout.max(1)),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            max_sse_event_bytes: usize::try_from(args.max_sse_event_bytes).unwrap_or(usize::MAX),
            stream_idle_timeout: Duration::from_secs(args.stream_idle_timeout.max(1)),
            listener: ListenerLimits {
                header_timeout: Duration::from_secs(args.header_timeout.max(1)),
                idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
                max_connections: args.max_connections.map(|n| n.max(1)),
            },
            allow_remote: args.allow_remote,
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(crate::server::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                (None, None) => None,
                _ => return Err(ConfigError::TlsPair),
            },
            config_file: args.config.clone(),
            ..Self::new(data_dir)
        })
    }

    /// Listens where the user saved, unless the address was given at start. Only what was
    /// saved replaces the defaults.
    pub fn apply_saved_listen(&mut self, saved: SavedListen) {
        if self.listen_given {
            return;
        }
        if let Some(bind) = saved.bind {
            self.bind = bind;
        }
        if let Some(port) = saved.port {
            self.port = port;
        }
    }
}

/// The environment variables the gateway reads as its own settings (every flag's variable, the
/// log filter, the management token): none of them is ever a provider key (see
/// `secrets::EnvAllowlist`). Read from the command line's definition, so a new flag is covered.
pub fn setting_variables() -> Vec<String> {
    use clap::CommandFactory as _;
    let mut names: Vec<String> = Args::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    names.extend(["FLEXIPROXY_LOG".to_owned(), MANAGEMENT_TOKEN_ENV.to_owned()]);
    names
}

/// What the listener allows each connection, so sockets that send nothing, or half a request,
/// cannot pile up (see `server::listener`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// A connection must send a whole request head within this long of opening, or of its
    /// first byte after the previous response.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// At most this many connections at once; `None` sizes it from the open-file limit.
    pub max_connections: Option<usize>,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            max_connections: None,
        }
    }
}

/// The settings keys of the saved listen address.
const LISTEN_BIND_SETTING: &str = "listen_bind";
const LISTEN_PORT_SETTING: &str = "listen_port";

/// The listen address saved from the UI, used at the next start without `--bind`/`--port`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavedListen {
    pub bind: Option<IpAddr>,
    pub port: Option<u16>,
}

/// A listen address the user asked for that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    #[error(
        "listen.bind must be an IP address such as 127.0.0.1 (this machine only), 0.0.0.0 (every \
         network) or ::1, not `{0}`"
    )]
    Bind(String),
    #[error("listen.port must be between 1 and 65535, not {0}")]
    Port(i64),
}

impl SavedListen {
    /// Reads the saved address. A value that does not parse (edited by hand) counts as not
    /// saved, with a warning, so the gateway still starts.
    pub fn load(db: &dyn SettingStore) -> Result<Self, StoreError> {
        let bind = db.setting(LISTEN_BIND_SETTING)?.and_then(|text| {
            let parsed = text.parse().ok();
            if parsed.is_none() {
                tracing::warn!(value = %text, "ignoring the saved listen address: not an IP address");
            }
            parsed
        });
        let port = db.setting(LISTEN_PORT_SETTING)?.and_then(|text| {
            let parsed = text.parse().ok().filter(|port| *port != 0);
            if parsed.is_none() {
                tracing::warn!(value = %text, "ignoring the saved listen port: not 1-65535");
            }
            parsed
        });
        Ok(Self { bind, port })
    }

    /// Saves the fields that are set; the others keep their saved value.
    pub fn save(self, db: &dyn SettingStore) -> Result<(), StoreError> {
        if let Some(bind) = self.bind {
            db.set_setting(LISTEN_BIND_SETTING, &bind.to_string())?;
        }
        if let Some(port) = self.port {
            db.set_setting(LISTEN_PORT_SETTING, &port.to_string())?;
        }
        Ok(())
    }

    /// Saves the fields that are set into the data folder's database while the gateway is not
    /// running (the desktop app, before it starts the gateway on a port the user picked).
    pub fn save_in(self, data_dir: &std::path::Path) -> Result<(), StoreError> {
        self.save(&Database::open(data_dir)?)
    }

    /// Checks an address from the API: an IP literal (no host names, which could change what
    /// they resolve to) and a port from 1 to 65535 (0 would move to a random port each start).
    pub fn parse(bind: Option<&str>, port: Option<i64>) -> Result<Self, ListenError> {
        let bind = bind
            .map(|text| {
                text.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| ListenError::Bind(text.to_owned()))
            })
            .transpose()?;
        let port = port
            .map(|n| {
                u16::try_from(n)
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or(ListenError::Port(n))
            })
            .transpose()?;
        Ok(Self { bind, port })
    }
}

/// Where the gateway listens now and where it will after a restart, for the settings view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenStatus {
    pub bind: IpAddr,
    pub port: u16,
    pub saved_bind: Option<IpAddr>,
    pub saved_port: Option<u16>,
    /// The address was given at start, so the saved one does not apply (until a start
    /// without `--bind`/`--port`/`FLEXIPROXY_BIND`/`FLEXIPROXY_PORT`).
    pub from_command_line: bool,
    /// The next start would listen elsewhere than now.
    pub restart_required: bool,
    /// The gateway was started with `--allow-remote`, so a saved non-loopback address applies
    /// (the warnings say so when not).
    #[serde(skip)]
    pub remote_allowed: bool,
}

impl ListenStatus {
    pub fn new(
        running: SocketAddr,
        saved: SavedListen,
        from_command_line: bool,
        remote_allowed: bool,
    ) -> Self {
        let next_bind = saved
            .bind
            .filter(|bind| remote_allowed || bind.is_loopback())
            .unwrap_or(DEFAULT_BIND);
        let next = (next_bind, saved.port.unwrap_or(DEFAULT_PORT));
        Self {
            bind: running.ip(),
            port: running.port(),
            saved_bind: saved.bind,
            saved_port: saved.port,
            from_command_line,
            restart_required: !from_command_line && next != (running.ip(), running.port()),
            remote_allowed,
        }
    }

    /// What the user should know about the saved address.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let exposed = self.saved_bind.filter(|bind| !bind.is_loopback());
        if let Some(bind) = exposed {
            warnings.push(format!(
                "Binding to {bind} exposes the gateway to your network: other machines can \
                 reach it (client requests still need an adapter key, the management API its \
                 token). Use 127.0.0.1 unless other machines must connect."
            ));
        }
        if let Some(bind) = exposed.filter(|_| !self.remote_allowed) {
            warnings.push(format!(
                "The saved address {bind} is not used: listening beyond this machine needs \
                 FlexiProxy started with --allow-remote (or FLEXIPROXY_ALLOW_REMOTE=1), so it \
                 listens on {DEFAULT_BIND}. Save 127.0.0.1, or start it with that flag."
            ));
        }
        if self.from_command_line && (self.saved_bind.is_some() || self.saved_port.is_some()) {
            warnings.push(
                "This gateway was started with --bind/--port (or FLEXIPROXY_BIND/\
                 FLEXIPROXY_PORT), which win over the saved address; the saved address applies \
                 when it starts without them."
                    .to_owned(),
            );
        }
        warnings
    }
}

/// The platform's per-user data folder: `~/.local/share/flexiproxy` on Linux,
/// `~/Library/Application Support/dev.flexiproxy.FlexiProxy` on macOS, `%APPDATA%` on Windows.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("dev", "flexiproxy", "FlexiProxy")
        .map(|dirs| dirs.data_dir().to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use clap::Parser as _;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("flexiproxy").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn listen_input_is_validated() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            SavedListen::parse(Some(" 127.0.0.1 "), Some(9000)),
            Ok(SavedListen {
                bind: Some(loopback),
                port: Some(9000)
            })
        );
        assert_eq!(
            SavedListen::parse(Some("::"), None).unwrap().bind,
            Some("::".parse().unwrap())
        );
        assert_eq!(SavedListen::parse(None, None), Ok(SavedListen::default()));
        assert_eq!(
            SavedListen::parse(Some("localhost"), None),
            Err(ListenError::Bind("localhost".into()))
        );
        for port in [0, -1, 65_536] {
            assert_eq!(
                SavedListen::parse(None, Some(port)),
                Err(ListenError::Port(port))
            );
        }
        assert_eq!(
            SavedListen::parse(None, Some(65_535)).unwrap().port,
            Some(65_535)
        );
    }

    #[test]
    fn the_saved_address_applies_only_without_flags() {
        let saved = SavedListen {
            bind: Some("0.0.0.0".parse().unwrap()),
            port: Some(9001),
        };
        let mut plain = Settings::from_args(&args(&["--data-dir", "/tmp/x"])).unwrap();
        assert!(!plain.listen_given);
        assert_eq!((plain.bind, plain.port), (DEFAULT_BIND, DEFAULT_PORT));
        plain.apply_saved_listen(saved);
        assert_eq!(plain.port, 9001);
        assert_eq!(plain.bind, saved.bind.unwrap());

        let mut flagged =
            Settings::from_args(&args(&["--data-dir", "/tmp/x", "--port", "0"])).unwrap();
        assert!(flagged.listen_given);
        flagged.apply_saved_listen(saved);
        assert_eq!((flagged.bind, flagged.port), (DEFAULT_BIND, 0));

        // Library users (tests, the benchmark) choose their address.
        let mut library = Settings::new("/tmp/x".into());
        library.apply_saved_listen(saved);
        assert_eq!(library.port, DEFAULT_PORT);

        // Only what was saved replaces the defaults.
        let mut port_only = Settings::from_args(&args(&["--data-dir", "/tmp/x"])).unwrap();
        port_only.apply_saved_listen(SavedListen {
            bind: None,
            port: Some(9002),
        });
        assert_eq!((port_only.bind, port_only.port), (DEFAULT_BIND, 9002));
    }

    #[test]
    fn the_settings_variables_are_known() {
        let names = setting_variables();
        for name in [
            "FLEXIPROXY_PORT",
            "FLEXIPROXY_CONFIG",
            "FLEXIPROXY_ALLOW_ENV",
            "FLEXIPROXY_LOG",
            MANAGEMENT_TOKEN_ENV,
        ] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
    }

    #[test]
    fn allowed_env_names_come_from_repeated_or_comma_separated_flags() {
        let settings = Settings::from_args(&args(&[
            "--data-dir",
            "/tmp/x",
            "--allow-env",
            "DEEPSEEK_KEY,GROQ_KEY",
            "--allow-env",
            "OTHER",
        ]))
        .unwrap();
        assert_eq!(settings.allowed_env, ["DEEPSEEK_KEY", "GROQ_KEY", "OTHER"]);
        let refused = Settings::from_args(&args(&[
            "--data-dir",
            "/tmp/x",
            "--allow-env",
            "K=sk-live-1",
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("--allow-env") && !refused.contains("sk-live-1"),
            "{refused}"
        );
    }

    #[test]
    fn remote_listening_and_tls_are_read_from_the_command_line() {
        let plain = Settings::from_args(&args(&["--data-dir", "/tmp/x"])).unwrap();
        assert!(!plain.allow_remote && plain.tls.is_none());
        assert_eq!(plain.listener, ListenerLimits::default());
        let remote = Settings::from_args(&args(&[
            "--data-dir",
            "/tmp/x",
            "--allow-remote",
            "--header-timeout",
            "0",
            "--max-connections",
            "50",
        ]))
        .unwrap();
        assert!(remote.allow_remote);
        // Zero would close every connection at once: clamped to a second.
        assert_eq!(remote.listener.header_timeout, Duration::from_secs(1));
        assert_eq!(remote.listener.max_connections, Some(50));
        assert!(matches!(
            Settings::from_args(&args(&["--data-dir", "/tmp/x", "--tls-cert", "c.pem"])),
            Err(ConfigError::TlsPair)
        ));
    }

    #[test]
    fn saved_addresses_round_trip_and_report_what_a_restart_changes() {
        let dir = std::env::temp_dir().join(format!("flexiproxy-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Database::open(&dir).unwrap();
        assert_eq!(SavedListen::load(&db).unwrap(), SavedListen::default());
        SavedListen::parse(None, Some(9100))
            .unwrap()
            .save(&db)
            .unwrap();
        SavedListen::parse(Some("0.0.0.0"), None)
            .unwrap()
            .save(&db)
            .unwrap();
        let saved = SavedListen::load(&db).unwrap();
        assert_eq!(saved.port, Some(9100));
        assert_eq!(saved.bind, Some("0.0.0.0".parse().unwrap()));
        db.set_setting("listen_port", "not a port").unwrap();
        assert_eq!(SavedListen::load(&db).unwrap().port, None);

        let running: SocketAddr = "127.0.0.1:8317".parse().unwrap();
        let status = ListenStatus::new(running, saved, false, true);
        assert!(status.restart_required);
        assert_eq!(status.warnings().len(), 1);
        assert!(status.warnings()[0].starts_with("Binding to 0.0.0.0 exposes the gateway"));
        // Without --allow-remote the saved wildcard is not used: only the port would change.
        let refused = ListenStatus::new(running, saved, false, false);
        assert!(refused.warnings()[0].starts_with("Binding to 0.0.0.0 exposes the gateway"));
        assert!(refused.warnings()[1].starts_with("The saved address 0.0.0.0 is not used"));
        assert!(refused.restart_required);
        let on_saved_port: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert!(!ListenStatus::new(on_saved_port, saved, false, false).restart_required);
        // Given on the command line: the saved address does not apply, so no restart helps.
        let flagged = ListenStatus::new(running, saved, true, true);
        assert!(!flagged.restart_required);
        assert_eq!(flagged.warnings().len(), 2);
        // Nothing saved, running on the defaults: nothing to do.
        let fresh = ListenStatus::new(running, SavedListen::default(), false, false);
        assert!(!fresh.restart_required);
        assert!(fresh.warnings().is_empty());
        let same = SavedListen {
            bind: Some(DEFAULT_BIND),
            port: Some(8317),
        };
        assert!(!ListenStatus::new(running, same, false, false).restart_required);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
