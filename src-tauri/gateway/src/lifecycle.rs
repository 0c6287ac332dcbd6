//! Starting and stopping a gateway: the order in which its parts come up and go down.
//!
//! [`Gateway::start`] opens the database, chooses the secret store (saying plainly when no
//! keychain is reachable), makes sure a management token exists, loads the registry, starts the
//! usage writer, binds the listener (at the address saved in the settings unless the command
//! line gave one) and serves the router from `server`. The returned
//! [`RunningGateway`] is what the desktop app and the headless runner hold: its address, the
//! token for the window, and a graceful [`RunningGateway::shutdown`] that flushes usage.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::blocking::{self, TaskFailed};
use crate::config::{DEFAULT_BIND, MANAGEMENT_TOKEN_ENV, SavedListen, SecretsMode, Settings};
use crate::routing::Router;
use crate::routing::registry::Registry;
use crate::server::access::{HostGuard, ManagementAuth};
use crate::state::ConfigStatus;
use crate::state::{AppState, Shared};
use crate::store::secrets::{EnvOnly, Keychain, Secret, SecretError, SharedSecretStore};
use crate::store::usage::Recorder;
use crate::store::{Database, SettingStore, Storage, StoreError};

/// The keychain entry holding the management token.
pub const MANAGEMENT_TOKEN_ENTRY: &str = "management-token";

/// The setting that records the desktop app's first start with a window (milliseconds).
const DESKTOP_STARTED_SETTING: &str = "desktop_first_started_ms";
/// The setting that records that the welcome was dismissed (or its run is over).
const WELCOME_DISMISSED_SETTING: &str = "welcome_dismissed";

/// Whether the dashboard of a desktop gateway still shows its first-run welcome.
pub fn welcome_pending(db: &dyn SettingStore) -> Result<bool, StoreError> {
    Ok(db.setting(WELCOME_DISMISSED_SETTING)?.is_none())
}

/// Hides the first-run welcome for good.
pub fn dismiss_welcome(db: &dyn SettingStore) -> Result<(), StoreError> {
    db.set_setting(WELCOME_DISMISSED_SETTING, "true")
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Secrets(#[from] SecretError),
    #[error(
        "port {port} on {bind} is already in use ({source}); stop the other program, or start \
         FlexiProxy with --port <another port> (FLEXIPROXY_PORT)"
    )]
    PortBusy {
        bind: std::net::IpAddr,
        port: u16,
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {bind}: that opens the gateway to your network (in plain HTTP). \
         Start FlexiProxy with --allow-remote (or FLEXIPROXY_ALLOW_REMOTE=1) if other machines \
         must connect, or listen on 127.0.0.1"
    )]
    RemoteNotAllowed { bind: std::net::IpAddr },
    #[error("cannot listen on {bind}:{port}: {source}")]
    Bind {
        bind: std::net::IpAddr,
        port: u16,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::file::ConfigFileError),
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error(transparent)]
    Task(#[from] TaskFailed),
}

/// Which secret store is in use, and what the user should know about it.
#[derive(Debug, Clone, Serialize)]
pub struct SecretsStatus {
    pub kind: &'static str,
    pub writable: bool,
    /// Set when secrets cannot be stored: the message says what to do.
    pub warning: Option<String>,
    /// Why the keychain could not be used, when `auto` fell back to environment-only secrets
    /// because of it (not when the user chose `--secrets env`): the desktop app tells the user
    /// in a dialog what to do about it.
    pub keychain_problem: Option<KeychainProblem>,
}

/// What is wrong with the OS keychain, as far as the user can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeychainProblem {
    /// Nothing answers: on Linux no Secret Service on the session bus (no gnome-keyring or
    /// KeePassXC running, or no D-Bus session at all).
    Unavailable,
    /// It answers but is locked (the login keyring was not unlocked at login).
    Locked,
    /// It answered with some other error.
    Failed,
}

impl KeychainProblem {
    /// The problem behind a keychain error; `None` for errors that are not the keychain's.
    pub fn of(error: &SecretError) -> Option<Self> {
        match error {
            SecretError::Unavailable { .. } => Some(Self::Unavailable),
            SecretError::Locked { .. } => Some(Self::Locked),
            SecretError::Backend { .. } => Some(Self::Failed),
            SecretError::ReadOnly { .. }
            | SecretError::MissingEnv { .. }
            | SecretError::Random(_) => None,
        }
    }
}

impl StartError {
    /// The keychain problem that stopped the start, if that is what did.
    pub fn keychain_problem(&self) -> Option<KeychainProblem> {
        match self {
            Self::Secrets(error) => KeychainProblem::of(error),
            _ => None,
        }
    }

    /// The port that was taken, when another program holds the address to listen on.
    pub fn busy_port(&self) -> Option<(std::net::IpAddr, u16)> {
        match self {
            Self::PortBusy { bind, port, .. } => Some((*bind, *port)),
            _ => None,
        }
    }
}

/// Entry point for starting a gateway.
#[derive(Debug)]
pub struct Gateway;

/// The parts that hold state across restarts: the database, the secret store, the token.
struct Foundation {
    db: Arc<dyn Storage>,
    secrets: SharedSecretStore,
    status: SecretsStatus,
    management_token: Option<Secret>,
}

impl Foundation {
    async fn open(settings: &Settings) -> Result<Self, StartError> {
        let data_dir = settings.data_dir.clone();
        let db: Arc<dyn Storage> =
            Arc::new(blocking::run(move || Database::open(&data_dir)).await??);
        let (secrets, status) = {
            let db = db.clone();
            let mode = settings.secrets.clone();
            blocking::run(move || choose_secrets(&*db, &mode)).await??
        };
        let management_token = match &settings.management_token {
            Some(token) => Some(token.clone()),
            None => {
                let secrets = secrets.clone();
                blocking::run(move || management_token(&*secrets)).await??
            }
        };
        Ok(Self {
            db,
            secrets,
            status,
            management_token,
        })
    }
}

/// The management token a gateway with `settings` uses (created if it does not exist yet),
/// without starting it: for `flexiproxy --show-token`.
pub async fn management_token_for(settings: Settings) -> Result<Option<Secret>, StartError> {
    Ok(Foundation::open(&settings).await?.management_token)
}

impl Gateway {
    pub async fn start(mut settings: Settings) -> Result<RunningGateway, StartError> {
        // Before anything is opened: an address given at start that is not allowed is a
        // mistake to fix, not something to fall back from.
        if settings.listen_given && !settings.bind.is_loopback() && !settings.allow_remote {
            return Err(StartError::RemoteNotAllowed {
                bind: settings.bind,
            });
        }
        let Foundation {
            db,
            secrets,
            status,
            management_token,
        } = Foundation::open(&settings).await?;
        if !settings.listen_given {
            let db = db.clone();
            settings.apply_saved_listen(blocking::run(move || SavedListen::load(&*db)).await??);
            // Saved from the UI, where a stolen management token could have put it: it takes
            // the flag at start too. The desktop user keeps a gateway, on loopback, and the
            // settings view says why (`ListenStatus::warnings`).
            if !settings.bind.is_loopback() && !settings.allow_remote {
                tracing::warn!(
                    saved = %settings.bind,
                    "not listening on the saved address {}: listening beyond this machine needs \
                     --allow-remote (FLEXIPROXY_ALLOW_REMOTE=1) at start; listening on {} instead",
                    settings.bind,
                    DEFAULT_BIND
                );
                settings.bind = DEFAULT_BIND;
            }
        }

        let usage_enabled = match settings.usage {
            Some(forced) => forced,
            None => {
                let db = db.clone();
                blocking::run(move || db.setting("usage_enabled"))
                    .await??
                    .is_none_or(|v| v != "false")
            }
        };
        let recorder = Recorder::start(&*db, usage_enabled)?;

        let registry = Registry::default();
        let router = Arc::new(Router::default());
        let config = match &settings.config_file {
            None => None,
            Some(path) => {
                let path = path.clone();
                let declared = blocking::run(move || crate::config::file::load(&path)).await??;
                let warnings = registry.set_config(&declared);
                Some(ConfigStatus::loaded(
                    settings.config_file.clone().unwrap_or_default(),
                    warnings,
                ))
            }
        };
        let registry = {
            let db = db.clone();
            let secrets = secrets.clone();
            let router = router.clone();
            blocking::run(move || {
                registry.load_discovered(&*db)?;
                registry.reload(&*db, &*secrets)?;
                let now = crate::clock::now_ms();
                router.seed(
                    db.credential_history(now - crate::routing::ledger::DAY_MS)?,
                    now,
                );
                Ok::<_, StoreError>(registry)
            })
            .await??
        };

        let tls = settings
            .tls
            .as_ref()
            .map(crate::server::tls::acceptor)
            .transpose()?;
        let open_files = crate::server::open_files::raise();
        if settings.listener.max_connections.is_none() {
            settings.listener.max_connections =
                open_files.map(crate::server::open_files::OpenFiles::connection_cap);
        }
        tracing::info!(
            open_files = open_files.map(|o| o.soft),
            raised_from = open_files.and_then(|o| o.raised_from),
            max_connections = settings.listener.max_connections,
            header_timeout_s = settings.listener.header_timeout.as_secs(),
            idle_timeout_s = settings.listener.idle_timeout.as_secs(),
            "connection limits"
        );
        let listener = TcpListener::bind((settings.bind, settings.port))
            .await
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    StartError::PortBusy {
                        bind: settings.bind,
                        port: settings.port,
                        source,
                    }
                } else {
                    StartError::Bind {
                        bind: settings.bind,
                        port: settings.port,
                        source,
                    }
                }
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            bind: settings.bind,
            port: settings.port,
            source,
        })?;
        let host = if settings.bind.is_unspecified() || settings.bind.is_loopback() {
            "127.0.0.1".to_owned()
        } else {
            local_addr.ip().to_string()
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{host}:{}", local_addr.port());
        let guard = HostGuard::listening_on(local_addr, tls.is_some());
        if !settings.bind.is_loopback() {
            tracing::warn!(
                bind = %settings.bind,
                "listening beyond this machine (--allow-remote), {}: other machines on your \
                 network can reach this gateway (client requests still need an adapter key). \
                 The management token is accepted on requests addressed to Host: {}",
                if tls.is_some() {
                    "over TLS"
                } else {
                    "in plain HTTP (keys and answers cross the network readable; see --tls-cert)"
                },
                guard.accepted_hosts().join(", ")
            );
        }

        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            // A redirect would carry the provider's key (header or `?key=`) to wherever the
            // provider points: `proxy::classify` makes it a 502 naming the redirect instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("FlexiProxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::HttpClient(e.to_string()))?;

        let accounts = {
            let db = db.clone();
            let secrets = secrets.clone();
            // Logins and accounts talk to their endpoints through their own client: no
            // redirects, each call within the upstream timeout (at most 30 s), answers capped.
            let side = crate::accounts::oauth::SideHttp::new(
                settings.connect_timeout,
                settings.response_timeout,
            )
            .map_err(|e| StartError::HttpClient(e.to_string()))?;
            Arc::new(
                blocking::run(move || crate::accounts::Accounts::new(db, secrets, side)).await??,
            )
        };
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let refresher = tokio::spawn(accounts.clone().run_refresher(closing_rx.clone()));
        let drain = Arc::new(crate::server::drain::Drain::new(settings.shutdown_grace));
        let logins = Arc::new(crate::accounts::logins::Logins::default());
        let state: AppState = Arc::new(Shared {
            accounts: accounts.clone(),
            logins: logins.clone(),
            db: db.clone(),
            registry,
            router,
            secrets,
            recorder: recorder.clone(),
            http,
            auth: ManagementAuth::new(management_token.as_ref()),
            guard,
            base_url: base_url.clone(),
            listen: local_addr,
            secrets_status: status.clone(),
            config: std::sync::RwLock::new(config),
            closing: closing_rx,
            drain: drain.clone(),
            settings,
        });
        let config_watch = state.settings.config_file.clone().map(|path| {
            let state = state.clone();
            crate::config::file::watch(path, CONFIG_POLL, move |change| {
                let state = state.clone();
                tokio::spawn(async move { state.apply_config(change).await });
            })
        });
        let discovery = tokio::spawn(refresh_models(state.clone()));

        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(listener, state, tls, stop_rx));
        tracing::info!(%base_url, secrets = status.kind, usage = usage_enabled, "gateway started");
        Ok(RunningGateway {
            local_addr,
            base_url,
            management_token,
            secrets_status: status,
            recorder,
            db,
            stop: Some(stop_tx),
            server,
            _config_watch: config_watch,
            discovery,
            refresher,
            accounts,
            logins,
            closing,
            drain,
        })
    }
}

/// How long a shutdown waits for connections to close once their requests are cut: they end
/// at once, unless a client stopped reading.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How often the config file is checked for changes.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// How often every provider's model list is refreshed.
const DISCOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Discovers every provider's models shortly after start, then every
/// [`DISCOVERY_INTERVAL`].
async fn refresh_models(state: AppState) {
    let mut ticks = tokio::time::interval(DISCOVERY_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        state.discover_all().await;
    }
}

/// A gateway that is serving. Dropping it without [`RunningGateway::shutdown`] leaves the
/// server task running until the runtime ends.
#[derive(Debug)]
pub struct RunningGateway {
    local_addr: SocketAddr,
    base_url: String,
    management_token: Option<Secret>,
    secrets_status: SecretsStatus,
    recorder: Recorder,
    /// For the few summary reads the embedding app makes (the tray's seed of today's tokens).
    db: Arc<dyn Storage>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    /// Stops watching the config file when the gateway goes.
    _config_watch: Option<crate::config::file::WatchHandle>,
    discovery: JoinHandle<()>,
    /// Refreshes subscription tokens ahead of expiry.
    refresher: JoinHandle<()>,
    accounts: Arc<crate::accounts::Accounts>,
    /// Cancelled on shutdown, so no login keeps its callback port.
    logins: Arc<crate::accounts::logins::Logins>,
    closing: tokio::sync::watch::Sender<bool>,
    /// The requests in flight, cut when the grace period of a shutdown is over.
    drain: Arc<crate::server::drain::Drain>,
}

impl RunningGateway {
    /// Usage records as they are written (the tray's live token count).
    pub fn subscribe_usage(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<crate::store::usage::UsageRecord>> {
        self.recorder.subscribe()
    }

    /// Totals of everything recorded since `since_ms` (e.g. local midnight), read once from
    /// the database: the tray seeds its day count with this and then follows
    /// [`RunningGateway::subscribe_usage`], so it never reads SQLite per request. Blocks for
    /// one query: call it off the async runtime.
    pub fn usage_since(&self, since_ms: i64) -> Result<crate::store::usage::Totals, StoreError> {
        Ok(self.db.usage_summary(since_ms)?.today)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address to give tools, e.g. `http://127.0.0.1:8317`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn management_token(&self) -> Option<Secret> {
        self.management_token.clone()
    }

    /// Sees a new value whenever a subscription account is added, removed, refreshed or
    /// fails (the tray's "needs login" item).
    pub fn subscribe_accounts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.accounts.subscribe()
    }

    /// The labels of the subscription accounts that need a new login. Blocking (SQLite).
    pub fn accounts_needing_login(&self) -> Vec<String> {
        self.accounts.needing_login().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "accounts unreadable");
            Vec::new()
        })
    }

    pub fn secrets_status(&self) -> &SecretsStatus {
        &self.secrets_status
    }

    /// Records a desktop start that showed the window; whether it is the first with this data
    /// folder (the first run, whose window carries the welcome). At any later one the welcome
    /// is over, dismissed or not. Blocking (SQLite).
    pub fn record_desktop_start(&self) -> Result<bool, StoreError> {
        if self.db.setting(DESKTOP_STARTED_SETTING)?.is_some() {
            dismiss_welcome(&*self.db)?;
            Ok(false)
        } else {
            self.db
                .set_setting(DESKTOP_STARTED_SETTING, &crate::clock::now_ms().to_string())?;
            Ok(true)
        }
    }

    /// Stops accepting connections, lets requests in flight finish for the grace period
    /// (`Settings::shutdown_grace`), cuts those still running then (each is recorded as
    /// `shutdown`, see `drain`), and writes every usage record before it returns.
    pub async fn shutdown(mut self) {
        self.discovery.abort();
        self.refresher.abort();
        self.logins.cancel_all();
        self.accounts.close();
        let _ = self.closing.send(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let grace = self.drain.grace();
        if tokio::time::timeout(grace, &mut self.server).await.is_err() {
            tracing::warn!(
                in_flight = self.drain.in_flight(),
                "requests still running after the {}s shutdown grace; cutting them (recorded \
                 as `shutdown`)",
                grace.as_secs()
            );
            self.drain.cut();
            if tokio::time::timeout(CUT_WAIT, &mut self.server)
                .await
                .is_err()
            {
                // A client that stops reading holds its connection's writes, so its body is
                // never polled again to see the cut; its record is lost with it.
                tracing::error!(
                    in_flight = self.drain.in_flight(),
                    "connections still open {CUT_WAIT:?} after the cut; closing them"
                );
                self.server.abort();
            }
        }
        let recorder = self.recorder.clone();
        let _ = blocking::run(move || recorder.flush_and_stop()).await;
    }
}

fn choose_secrets(
    db: &dyn SettingStore,
    mode: &SecretsMode,
) -> Result<(SharedSecretStore, SecretsStatus), StartError> {
    let env_only = |reason: String, keychain_problem: Option<KeychainProblem>| {
        let warning = format!(
            "{}. Until then, provider keys can only be given as env:NAME references, and the \
             management API needs {MANAGEMENT_TOKEN_ENV}.",
            reason.trim_end_matches('.')
        );
        let store: SharedSecretStore = Arc::new(EnvOnly { reason });
        let status = SecretsStatus {
            kind: store.kind(),
            writable: false,
            warning: Some(warning),
            keychain_problem,
        };
        (store, status)
    };
    match mode {
        SecretsMode::Store(store) => {
            let status = SecretsStatus {
                kind: store.kind(),
                writable: store.writable(),
                warning: None,
                keychain_problem: None,
            };
            Ok((store.clone(), status))
        }
        SecretsMode::Env => Ok(env_only("secrets are set to environment only".into(), None)),
        SecretsMode::Keychain | SecretsMode::Auto => {
            let keychain = Keychain::new(format!("flexiproxy/{}", instance_id(db)?));
            match keychain.probe() {
                Ok(()) => {
                    let store: SharedSecretStore = Arc::new(keychain);
                    let status = SecretsStatus {
                        kind: store.kind(),
                        writable: true,
                        warning: None,
                        keychain_problem: None,
                    };
                    Ok((store, status))
                }
                // The caller shows the resulting warning (log line, window, UI banner).
                Err(e) if matches!(mode, SecretsMode::Auto) => {
                    let problem = KeychainProblem::of(&e);
                    Ok(env_only(e.to_string(), problem))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// A random id for this data directory, so two data directories on one machine keep separate
/// keychain entries.
fn instance_id(db: &dyn SettingStore) -> Result<String, StartError> {
    if let Some(id) = db.setting("instance_id")? {
        return Ok(id);
    }
    let id = Secret::generate("")?.expose()[..16].to_owned();
    db.set_setting("instance_id", &id)?;
    Ok(id)
}

fn management_token(
    secrets: &dyn crate::store::secrets::SecretStore,
) -> Result<Option<Secret>, StartError> {
    if !secrets.writable() {
        return Ok(None);
    }
    if let Some(token) = secrets.get(MANAGEMENT_TOKEN_ENTRY)? {
        return Ok(Some(token));
    }
    let token = Secret::generate("fpm-")?;
    secrets.set(MANAGEMENT_TOKEN_ENTRY, &token)?;
    tracing::info!("created a management token in the {}", secrets.kind());
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keychain_problems_are_told_apart_from_other_secret_errors() {
        let detail = || "x".to_owned();
        assert_eq!(
            KeychainProblem::of(&SecretError::Unavailable { detail: detail() }),
            Some(KeychainProblem::Unavailable)
        );
        assert_eq!(
            KeychainProblem::of(&SecretError::Locked { detail: detail() }),
            Some(KeychainProblem::Locked)
        );
        assert_eq!(
            KeychainProblem::of(&SecretError::Backend {
                name: "n".into(),
                detail: detail(),
            }),
            Some(KeychainProblem::Failed)
        );
        assert_eq!(
            KeychainProblem::of(&SecretError::MissingEnv { var: "V".into() }),
            None
        );
        let failed = StartError::Secrets(SecretError::Locked { detail: detail() });
        assert_eq!(failed.keychain_problem(), Some(KeychainProblem::Locked));
        assert_eq!(failed.busy_port(), None);
    }
}
