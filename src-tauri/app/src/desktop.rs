//! The tray app's life cycle: start the gateway, build the tray and the window, stop and start
//! the gateway again from the tray, follow today's token count, keep running in the tray when
//! the window closes, and stop the gateway gracefully on Quit or a signal.
//!
//! The gateway is started in Tauri's `setup` hook, i.e. after the single-instance plugin has
//! run: a second launch hands over to the first instance (which shows its window) and exits
//! before it could try to bind the port a second time. The [`Shell`] state holds the running
//! gateway and the settings it was started with, so [`stop`] and [`start`] restart the same
//! gateway, and every way out ([`quit`], a signal, any other exit) shuts it down exactly once.
//! While a gateway runs, a task follows its usage records to keep [`crate::today`]'s count
//! live in the tray, seeded once from the database when it starts, and another follows its
//! subscription accounts (a watch channel the gateway bumps on every change) so the tray says
//! when some need a new login.
//!
//! At start the window opens only when there is something to see or do: the first run (its
//! dashboard carries a welcome), a gateway that could not start, or no tray icon to reach the
//! app by. Otherwise the app goes straight to the tray, and `--hidden` (the login entry) never
//! opens the window at start. A keychain that cannot be used and a port taken by another
//! program each get one native dialog ([`crate::dialog`], [`crate::port_offer`]).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flexiproxy_gateway::config::cli::Args;
use flexiproxy_gateway::lifecycle::KeychainProblem;
use flexiproxy_gateway::store::usage::UsageRecord;
use flexiproxy_gateway::{Gateway, RunningGateway, Secret, Settings};
use tauri::async_runtime::JoinHandle;
use tauri::{App, AppHandle, Manager, RunEvent, Url, WindowEvent};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use crate::autostart::DesktopHost;
use crate::dialog::AboutFacts;
use crate::today::{Counts, Day, Today};
use crate::{autostart, dialog, port_offer, tray, window};

/// The gateway's state, as the tray and the window show it.
#[derive(Debug, Clone)]
pub enum GatewayStatus {
    Running {
        /// Where it listens, e.g. `127.0.0.1:8317`.
        addr: SocketAddr,
        /// The base URL tools use and the window loads, e.g. `http://127.0.0.1:8317`.
        url: Url,
    },
    Starting,
    Stopping,
    /// Stopped from the tray; `addr` is where it listened.
    Stopped {
        addr: Option<SocketAddr>,
    },
    /// It could not start; the message says why and what to do.
    Failed(String),
}

impl GatewayStatus {
    /// The base URL as users copy it (no trailing slash), while the gateway runs.
    pub fn base_url(&self) -> Option<String> {
        match self {
            Self::Running { url, .. } => Some(url.as_str().trim_end_matches('/').to_owned()),
            _ => None,
        }
    }
}

/// How often the day count re-checks the date when nothing happens: a sleeping laptop does
/// not wake a timer set for midnight on time, so the roll-over is checked at least this often.
const DATE_CHECK: Duration = Duration::from_secs(60);
/// The least time between two updates of the tray's count: a burst of requests is one update.
const USAGE_REFRESH_GAP: Duration = Duration::from_millis(200);

/// App-wide state, managed by Tauri.
#[derive(Debug)]
pub struct Shell {
    /// What every start uses (with this app as the gateway's host); the error when the
    /// command line or environment was invalid. A port the user accepted instead of a taken
    /// `--port` replaces the given one here, for the rest of this run.
    settings: Mutex<Result<Settings, String>>,
    live: Mutex<Live>,
    quitting: AtomicBool,
}

#[derive(Debug)]
struct Live {
    status: GatewayStatus,
    /// Taken out (once) by whoever shuts the gateway down.
    gateway: Option<RunningGateway>,
    /// The management token of the running gateway, for the window's script.
    token: Option<Secret>,
    /// The secret store of the last gateway that started, for the about box.
    secrets_kind: Option<&'static str>,
    /// The task that follows the running gateway's usage.
    feed: Option<JoinHandle<()>>,
    /// The task that follows the running gateway's subscription accounts.
    accounts_feed: Option<JoinHandle<()>>,
    /// The labels of the accounts that need a new login, as last read.
    needs_login: Vec<String>,
    /// The shutdown under way after Stop, which Quit waits for (usage is flushed at its end).
    stopping: Option<JoinHandle<()>>,
    today: Today,
}

impl Shell {
    pub fn status(&self) -> GatewayStatus {
        self.live().status.clone()
    }

    /// The state and, while the gateway runs, its management token (for the window's script).
    pub fn status_and_token(&self) -> (GatewayStatus, Option<Secret>) {
        let live = self.live();
        (live.status.clone(), live.token.clone())
    }

    /// Today's totals as last counted.
    pub fn today(&self) -> Counts {
        self.live().today.counts()
    }

    /// The labels of the subscription accounts that need a new login (none while stopped).
    pub fn needs_login(&self) -> Vec<String> {
        self.live().needs_login.clone()
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings the next start uses.
    pub fn settings(&self) -> Result<Settings, String> {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Listens on `port` at every start for the rest of this run (an offer the user accepted
    /// when the port given on the command line was taken).
    pub fn use_port_for_this_run(&self, port: u16) {
        if let Ok(settings) = self
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            settings.port = port;
            // So the address saved in the database does not replace it at the next Start.
            settings.listen_given = true;
        }
    }

    /// What the about box shows.
    pub fn about_facts(&self) -> AboutFacts {
        let settings = self.settings();
        let live = self.live();
        AboutFacts {
            data_dir: settings
                .as_ref()
                .ok()
                .map(|s| s.data_dir.display().to_string()),
            secrets: live.secrets_kind.map(str::to_owned),
            config_file: settings
                .as_ref()
                .ok()
                .and_then(|s| s.config_file.as_ref())
                .map(|path| path.display().to_string()),
            base_url: live.status.base_url(),
        }
    }

    /// Takes the gateway out (for shutting it down) and ends its feeds.
    fn take_gateway(&self) -> Option<RunningGateway> {
        let mut live = self.live();
        live.end_feeds();
        live.token = None;
        live.gateway.take()
    }
}

impl Live {
    /// Stops following the gateway's usage and accounts; a stopped gateway has no accounts to
    /// log in to.
    fn end_feeds(&mut self) {
        for feed in [self.feed.take(), self.accounts_feed.take()]
            .into_iter()
            .flatten()
        {
            feed.abort();
        }
        self.needs_login.clear();
    }
}

/// Runs the tray app until the user quits; returns the process exit code.
pub fn run_app(args: Args) -> ExitCode {
    let built = tauri::Builder::default()
        // First, so a second instance leaves before anything else is set up.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            tracing::info!("FlexiProxy was launched again: showing the running instance");
            window::show(app);
        }))
        .plugin(tauri_plugin_clipboard_manager::init())
        // Native dialogs: keychain problems, a taken port, the about box (`crate::dialog`).
        .plugin(tauri_plugin_dialog::init())
        // Sign-in pages open in the system browser (`crate::browser`).
        .plugin(tauri_plugin_opener::init())
        .plugin(autostart::plugin())
        .register_uri_scheme_protocol(window::SCHEME, |context, _request| {
            window::local_page(context.app_handle())
        })
        .on_window_event(|window, event| {
            // Closing the dashboard only hides it: the gateway keeps serving from the tray.
            if let WindowEvent::CloseRequested { api, .. } = event
                && window.label() == window::MAIN
            {
                api.prevent_close();
                if let Err(error) = window.hide() {
                    tracing::warn!("cannot hide the window: {error}");
                }
            }
        })
        // Tauri panics if `setup` returns an error, so it handles every failure itself.
        .setup(move |app| {
            setup(app, &args);
            Ok(())
        })
        .build(tauri::generate_context!("../../tauri.conf.json"));
    let app = match built {
        Ok(app) => app,
        Err(error) => {
            tracing::error!("cannot start the desktop app: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = app.run_return(on_run_event);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn setup(app: &mut App, args: &Args) {
    // A menu-bar app on macOS: no Dock icon and no app menu, like other tray utilities.
    #[cfg(target_os = "macos")]
    app.set_activation_policy(tauri::ActivationPolicy::Accessory);

    let handle = app.handle().clone();
    // Listening for SIGTERM/SIGINT before the gateway starts, so a signal that arrives while
    // the rest is set up still stops it gracefully. The handlers are installed by the call,
    // which needs the runtime's context.
    let tauri::async_runtime::RuntimeHandle::Tokio(runtime) = tauri::async_runtime::handle();
    let signalled = {
        let _context = runtime.enter();
        flexiproxy_gateway::config::cli::shutdown_signal()
    };
    let signal_handle = handle.clone();
    tauri::async_runtime::spawn(async move {
        signalled.await;
        tracing::info!("termination signal received; quitting");
        quit(&signal_handle, 0);
    });
    let settings = Settings::from_args(args)
        .map(|mut settings| {
            settings.host = Some(Arc::new(DesktopHost::new(handle.clone())));
            settings
        })
        .map_err(|error| error.to_string());
    let first = match &settings {
        Ok(settings) => tauri::async_runtime::block_on(launch(settings.clone())),
        Err(error) => Err(Failure::message(error.clone())),
    };
    let listen_given = settings.as_ref().is_ok_and(|s| s.listen_given);
    app.manage(Shell {
        settings: Mutex::new(settings),
        live: Mutex::new(Live {
            status: GatewayStatus::Starting,
            gateway: None,
            token: None,
            secrets_kind: None,
            feed: None,
            accounts_feed: None,
            needs_login: Vec::new(),
            stopping: None,
            today: Today::new(Day::local_today(), Counts::default()),
        }),
        quitting: AtomicBool::new(false),
    });
    let Some(shell) = handle.try_state::<Shell>() else {
        return;
    };
    let start = match first {
        Ok((gateway, status)) => {
            let start = StartKind::of(&gateway, args.hidden);
            if let Some(problem) = gateway.secrets_status().keychain_problem {
                let detail = gateway.secrets_status().warning.clone().unwrap_or_default();
                dialog::keychain(&handle, problem, &detail, true);
            }
            install(&handle, &shell, gateway, status);
            start
        }
        Err(failure) => {
            if let Some(problem) = failure.keychain {
                dialog::keychain(&handle, problem, &failure.message, false);
            }
            if let Some((bind, port)) = failure.busy {
                port_offer::offer(&handle, bind, port, listen_given);
            }
            shell.live().status = GatewayStatus::Failed(failure.message);
            StartKind::Failed
        }
    };
    let (status, token) = shell.status_and_token();

    let tray_ok = match tray::create(&handle) {
        Ok(_) => true,
        Err(error) => {
            tracing::error!("cannot create the tray icon: {error}");
            false
        }
    };
    let visible = start.shows_window(args.hidden, tray_ok);
    let window_ok = match window::create(&handle, &status, token.as_ref(), visible) {
        Ok(_) => true,
        Err(error) => {
            tracing::error!("cannot create the dashboard window: {error}");
            false
        }
    };
    if !tray_ok && !window_ok {
        tracing::error!("neither a tray icon nor a window could be shown; exiting");
        quit(&handle, 1);
        return;
    }
    tracing::info!(
        window = if visible { "shown" } else { "in the tray" },
        "FlexiProxy started ({})",
        start.describe()
    );
}

/// What kind of start this is, for whether the window opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartKind {
    /// The first start with a window for this data folder: its dashboard has the welcome.
    FirstRun,
    /// A later start: the gateway serves, the app waits in the tray.
    Later,
    /// `--hidden` (the login entry): nothing recorded, so the first start without it is still
    /// the first run.
    Hidden,
    /// The gateway did not start: the window says why.
    Failed,
}

impl StartKind {
    /// Reads (and records) whether this is the first run. A failure to read counts as a later
    /// start: the window staying in the tray is the lesser harm.
    fn of(gateway: &RunningGateway, hidden: bool) -> Self {
        if hidden {
            return Self::Hidden;
        }
        match gateway.record_desktop_start() {
            Ok(true) => Self::FirstRun,
            Ok(false) => Self::Later,
            Err(error) => {
                tracing::warn!(
                    "cannot tell (or record) whether this is FlexiProxy's first run: {error}"
                );
                Self::Later
            }
        }
    }

    /// Whether the window opens at this start. `--hidden` keeps it closed even on a failure
    /// (the tray icon shows it), but not without a tray icon: the app could not be reached.
    fn shows_window(self, hidden: bool, tray_ok: bool) -> bool {
        if !tray_ok {
            return true;
        }
        if hidden {
            return false;
        }
        matches!(self, Self::FirstRun | Self::Failed)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::FirstRun => "first run",
            Self::Later => "a later start",
            Self::Hidden => "--hidden",
            Self::Failed => "the gateway did not start",
        }
    }
}

/// Why a gateway did not start: the message the tray and the window show, and what the app
/// can offer about it.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    /// The address whose port another program holds.
    busy: Option<(std::net::IpAddr, u16)>,
    keychain: Option<KeychainProblem>,
}

impl Failure {
    fn message(message: String) -> Self {
        Self {
            message,
            busy: None,
            keychain: None,
        }
    }
}

/// Starts a gateway.
async fn launch(settings: Settings) -> Result<(RunningGateway, GatewayStatus), Failure> {
    let gateway = Gateway::start(settings).await.map_err(|error| {
        tracing::error!("cannot start the gateway: {error}");
        Failure {
            message: error.to_string(),
            busy: error.busy_port(),
            keychain: error.keychain_problem(),
        }
    })?;
    if let Some(warning) = &gateway.secrets_status().warning {
        // The dashboard shows this too (via /api/status); the log is for people without it.
        tracing::warn!("{warning}");
    }
    if gateway.management_token().is_none() {
        tracing::warn!("no management token: the dashboard cannot manage providers or adapters");
    }
    match Url::parse(&gateway.base_url()) {
        Ok(url) => {
            let status = GatewayStatus::Running {
                addr: gateway.local_addr(),
                url,
            };
            Ok((gateway, status))
        }
        Err(error) => {
            // Cannot happen for an address the gateway formatted itself; say so if it does.
            let message = format!("the gateway reported an invalid base URL: {error}");
            tracing::error!("{message}");
            gateway.shutdown().await;
            Err(Failure::message(message))
        }
    }
}

/// Makes a started gateway the app's current one and starts following its usage. The
/// subscription is taken here, before anything is counted, so no record can slip between the
/// seed read from the database and the first live one.
fn install(app: &AppHandle, shell: &Shell, gateway: RunningGateway, status: GatewayStatus) {
    let usage = gateway.subscribe_usage();
    let accounts = gateway.subscribe_accounts();
    let mut live = shell.live();
    live.end_feeds();
    live.token = gateway.management_token();
    live.secrets_kind = Some(gateway.secrets_status().kind);
    live.gateway = Some(gateway);
    live.status = status;
    live.feed = Some(tauri::async_runtime::spawn(follow_usage(
        app.clone(),
        usage,
    )));
    live.accounts_feed = Some(tauri::async_runtime::spawn(follow_accounts(
        app.clone(),
        accounts,
    )));
}

/// Starts the gateway again with the same settings (from the tray), if it is stopped or failed.
pub fn start(app: &AppHandle) {
    let Some(shell) = app.try_state::<Shell>() else {
        return;
    };
    if shell.quitting.load(Ordering::SeqCst) {
        return;
    }
    {
        let mut live = shell.live();
        if !matches!(
            live.status,
            GatewayStatus::Stopped { .. } | GatewayStatus::Failed(_)
        ) {
            return;
        }
        live.status = GatewayStatus::Starting;
    }
    tray::refresh(app);
    let settings = shell.settings();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let outcome = match settings {
            Ok(settings) => launch(settings).await,
            Err(error) => Err(Failure::message(error)),
        };
        let Some(shell) = app.try_state::<Shell>() else {
            return;
        };
        match outcome {
            Ok((gateway, _)) if shell.quitting.load(Ordering::SeqCst) => {
                // Quit was chosen while it started: it must not outlive the app.
                gateway.shutdown().await;
                return;
            }
            Ok((gateway, status)) => {
                tracing::info!("gateway started from the tray");
                install(&app, &shell, gateway, status);
            }
            Err(failure) => shell.live().status = GatewayStatus::Failed(failure.message),
        }
        show_state(&app).await;
    });
}

/// Stops the gateway gracefully (from the tray), if it runs; the app stays in the tray.
pub fn stop(app: &AppHandle) {
    let Some(shell) = app.try_state::<Shell>() else {
        return;
    };
    {
        let mut live = shell.live();
        let GatewayStatus::Running { addr, .. } = live.status else {
            return;
        };
        live.status = GatewayStatus::Stopping;
        live.end_feeds();
        live.token = None;
        let gateway = live.gateway.take();
        let handle = app.clone();
        live.stopping = Some(tauri::async_runtime::spawn(async move {
            if let Some(gateway) = gateway {
                tracing::info!("stopping the gateway");
                gateway.shutdown().await;
            }
            if let Some(shell) = handle.try_state::<Shell>() {
                let mut live = shell.live();
                live.status = GatewayStatus::Stopped { addr: Some(addr) };
                live.stopping = None;
            }
            tracing::info!("gateway stopped from the tray");
            show_state(&handle).await;
        }));
    }
    tray::refresh(app);
}

/// Shows the current state in the tray and the window.
async fn show_state(app: &AppHandle) {
    tray::refresh(app);
    window::follow(app).await;
}

/// Keeps today's count up to date from the gateway's usage records until the gateway stops:
/// seeded once from the database, then record by record, starting from zero at local midnight.
async fn follow_usage(app: AppHandle, mut usage: Receiver<Arc<UsageRecord>>) {
    seed(&app).await;
    loop {
        tokio::select! {
            received = usage.recv() => {
                match received {
                    Ok(record) => count(&app, &record),
                    // Too far behind to know what was missed: read the day again.
                    Err(RecvError::Lagged(_)) => seed(&app).await,
                    Err(RecvError::Closed) => return,
                }
                // Take in the rest of a burst, then update the menu once.
                loop {
                    match usage.try_recv() {
                        Ok(record) => count(&app, &record),
                        Err(TryRecvError::Lagged(_)) => seed(&app).await,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => {
                            tray::refresh_usage(&app);
                            return;
                        }
                    }
                }
                tray::refresh_usage(&app);
                tokio::time::sleep(USAGE_REFRESH_GAP).await;
            }
            () = tokio::time::sleep(until_date_check(&app)) => {
                if roll(&app) {
                    tray::refresh_usage(&app);
                }
            }
        }
    }
}

/// Keeps the tray's "needs login" item up to date: reads the accounts once, then again each
/// time the gateway says they changed (a login, a log-out, a refresh that found the login gone),
/// until the gateway stops. No polling: the watch channel wakes this only on a change.
async fn follow_accounts(app: AppHandle, mut changes: watch::Receiver<u64>) {
    loop {
        // Marked seen before reading, so a change made during the read wakes the next turn.
        changes.borrow_and_update();
        let reader = app.clone();
        let read = tauri::async_runtime::spawn_blocking(move || {
            let shell = reader.try_state::<Shell>()?;
            let live = shell.live();
            Some(live.gateway.as_ref()?.accounts_needing_login())
        })
        .await;
        match read {
            Ok(Some(labels)) => {
                if let Some(shell) = app.try_state::<Shell>() {
                    shell.live().needs_login = labels;
                }
                tray::refresh_accounts(&app);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!("cannot read the accounts: {error}"),
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Reads today's totals so far from the running gateway's database (one query, off the async
/// runtime) and shows them.
async fn seed(app: &AppHandle) {
    let day = Day::local_today();
    let reader = app.clone();
    let read = tauri::async_runtime::spawn_blocking(move || {
        let shell = reader.try_state::<Shell>()?;
        let live = shell.live();
        let totals = live.gateway.as_ref()?.usage_since(day.start_ms);
        Some(totals)
    })
    .await;
    let Some(shell) = app.try_state::<Shell>() else {
        return;
    };
    match read {
        Ok(Some(Ok(totals))) => {
            shell.live().today = Today::new(day, Counts::from_totals(&totals));
        }
        Ok(Some(Err(error))) => {
            tracing::warn!("cannot read today's usage; counting from zero: {error}");
            shell.live().today.roll(day);
        }
        Ok(None) => {}
        Err(error) => tracing::warn!("cannot read today's usage: {error}"),
    }
    tray::refresh_usage(app);
}

fn count(app: &AppHandle, record: &UsageRecord) {
    if let Some(shell) = app.try_state::<Shell>() {
        let mut live = shell.live();
        live.today.roll(Day::local_today());
        live.today.add(record);
    }
}

/// Starts a new day at zero if the date changed; whether it did.
fn roll(app: &AppHandle) -> bool {
    app.try_state::<Shell>()
        .is_some_and(|shell| shell.live().today.roll(Day::local_today()))
}

/// How long to wait before the next date check: until midnight, at most [`DATE_CHECK`].
fn until_date_check(app: &AppHandle) -> Duration {
    let end_ms = app
        .try_state::<Shell>()
        .map_or(i64::MAX, |shell| shell.live().today.day().end_ms);
    wait_until(end_ms, chrono::Utc::now().timestamp_millis())
}

fn wait_until(end_ms: i64, now_ms: i64) -> Duration {
    let left = u64::try_from(end_ms.saturating_sub(now_ms)).unwrap_or(0);
    // A few milliseconds past midnight, so the check lands in the new day.
    Duration::from_millis(left.saturating_add(5)).min(DATE_CHECK)
}

/// Stops the gateway gracefully (in-flight requests finish, usage is flushed), then exits.
/// Safe to call more than once: only the first call does anything.
pub fn quit(app: &AppHandle, code: i32) {
    let Some(shell) = app.try_state::<Shell>() else {
        app.exit(code);
        return;
    };
    if shell.quitting.swap(true, Ordering::SeqCst) {
        return;
    }
    let gateway = shell.take_gateway();
    let stopping = shell.live().stopping.take();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Some(gateway) = gateway {
            tracing::info!("stopping the gateway");
            gateway.shutdown().await;
        }
        if let Some(stopping) = stopping {
            // A Stop from the tray is still flushing usage: let it finish.
            let _ = stopping.await;
        }
        app.exit(code);
    });
}

fn on_run_event(app: &AppHandle, event: RunEvent) {
    match event {
        // No window left (code None) is not a reason to stop: the tray keeps the app alive.
        // An explicit `exit(code)` comes with Some(code) and goes through.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            // Any exit that did not go through `quit` still stops the gateway properly.
            if let Some(gateway) = app.try_state::<Shell>().and_then(|s| s.take_gateway()) {
                tracing::info!("stopping the gateway");
                tauri::async_runtime::block_on(gateway.shutdown());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn base_url_only_while_running_and_without_trailing_slash() {
        let status = GatewayStatus::Running {
            addr: "127.0.0.1:8317".parse().unwrap(),
            url: Url::parse("http://127.0.0.1:8317").unwrap(),
        };
        assert_eq!(status.base_url().unwrap(), "http://127.0.0.1:8317");
        assert_eq!(GatewayStatus::Failed("x".into()).base_url(), None);
        assert_eq!(GatewayStatus::Stopped { addr: None }.base_url(), None);
        assert_eq!(GatewayStatus::Starting.base_url(), None);
    }

    #[test]
    fn the_window_opens_at_start_only_when_there_is_something_to_see_or_do() {
        // hidden flag, tray icon there → window shown
        assert!(StartKind::FirstRun.shows_window(false, true));
        assert!(StartKind::Failed.shows_window(false, true));
        assert!(!StartKind::Later.shows_window(false, true));
        // --hidden never opens it while a tray icon can reach the app...
        for kind in [StartKind::FirstRun, StartKind::Failed, StartKind::Hidden] {
            assert!(!kind.shows_window(true, true), "{kind:?}");
        }
        // ...and always without one.
        for kind in [StartKind::Later, StartKind::Hidden] {
            assert!(kind.shows_window(true, false), "{kind:?}");
            assert!(kind.shows_window(false, false), "{kind:?}");
        }
    }

    #[test]
    fn the_date_is_checked_at_midnight_or_every_minute() {
        let now = 1_000_000;
        assert_eq!(wait_until(now + 1_000, now), Duration::from_millis(1_005));
        assert_eq!(wait_until(now + 3_600_000, now), DATE_CHECK);
        assert_eq!(wait_until(now - 10, now), Duration::from_millis(5));
        assert_eq!(wait_until(i64::MAX, i64::MIN), DATE_CHECK);
    }
}
