//! The command line shared by the desktop app and the headless gateway, and the headless run.
//!
//! The app crate parses [`Args`] and either starts the tray app or calls [`run_headless`]; the
//! benchmark calls [`run_headless`] too, so `flexiproxy --headless` and every measurement run the
//! same code. Values are validated into `config::Settings`. Logs go to stderr, in the journal's
//! own format when systemd runs the gateway as a service (see [`journal`]).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the headless entry point talks to the terminal"
)]

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::config::Settings;
use crate::config::file;
use crate::lifecycle::Gateway;

mod journal;

/// Whether [`init_logging`] found stderr to be the systemd journal.
static TO_JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretsArg {
    /// The OS keychain when it answers; headless without one, `env:NAME` references only.
    Auto,
    /// The OS keychain or nothing: refuse to start without one.
    Keychain,
    /// No keychain: provider keys as `env:NAME` references, token from the environment.
    Env,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageArg {
    On,
    Off,
}

/// FlexiProxy: one local address for every LLM provider, in the protocol each tool speaks.
#[derive(Debug, Clone, Parser)]
#[command(name = "flexiproxy", version, about)]
pub struct Args {
    /// Run the gateway only, without tray or window.
    #[arg(long)]
    pub headless: bool,
    /// Start in the tray without opening the window.
    #[arg(long)]
    pub hidden: bool,
    /// Port to listen on (0 picks a free one) [default: the port saved in the settings, else
    /// 8317].
    #[arg(long, env = "FLEXIPROXY_PORT")]
    pub port: Option<u16>,
    /// Address to listen on. Anything but loopback exposes the gateway to your network
    /// [default: the address saved in the settings, else 127.0.0.1].
    #[arg(long, env = "FLEXIPROXY_BIND")]
    pub bind: Option<IpAddr>,
    /// Folder for the database [default: the platform's data folder].
    #[arg(long, env = "FLEXIPROXY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where API keys and the management token are kept.
    #[arg(long, env = "FLEXIPROXY_SECRETS", value_enum, default_value_t = SecretsArg::Auto)]
    pub secrets: SecretsArg,
    /// Record usage statistics [default: the saved setting, on for a new install].
    #[arg(long, env = "FLEXIPROXY_USAGE", value_enum)]
    pub usage: Option<UsageArg>,
    /// Seconds to wait for a provider's response headers before answering 504.
    #[arg(long, env = "FLEXIPROXY_UPSTREAM_TIMEOUT", default_value_t = 600)]
    pub upstream_timeout: u64,
    /// Seconds a stop (SIGTERM, Ctrl-C, Quit) lets requests in flight finish before it cuts
    /// them; cut requests are recorded as `shutdown` with the tokens seen so far.
    #[arg(
        long,
        env = "FLEXIPROXY_SHUTDOWN_GRACE",
        value_name = "SECONDS",
        default_value_t = crate::config::DEFAULT_SHUTDOWN_GRACE.as_secs(),
        value_parser = clap::value_parser!(u64).range(0..=crate::config::MAX_SHUTDOWN_GRACE_SECS)
    )]
    pub shutdown_grace: u64,
    /// The largest server-sent event accepted from a provider's stream, in bytes; a stream
    /// whose event grows past it ends with the protocol's error event.
    #[arg(
        long,
        env = "FLEXIPROXY_MAX_SSE_EVENT_BYTES",
        default_value_t = flexiproxy_protocol::sse::DEFAULT_MAX_EVENT_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(1024..=1 << 30)
    )]
    pub max_sse_event_bytes: u64,
    /// Seconds a provider's answer may stay silent between two chunks, once it has begun,
    /// before the client gets its protocol's error event. Separate from --upstream-timeout and
    /// generous: reasoning models pause for minutes between chunks.
    #[arg(long, env = "FLEXIPROXY_STREAM_IDLE_TIMEOUT", default_value_t = crate::config::DEFAULT_STREAM_IDLE_TIMEOUT_SECS)]
    pub stream_idle_timeout: u64,
    /// Seconds a client connection may take to send a whole request head (from connecting, or
    /// from its first byte after the previous answer) before it is closed.
    #[arg(long, env = "FLEXIPROXY_HEADER_TIMEOUT", default_value_t = crate::config::DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout: u64,
    /// Seconds a client connection with no request in flight stays open.
    #[arg(long, env = "FLEXIPROXY_IDLE_TIMEOUT", default_value_t = crate::config::DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout: u64,
    /// Most client connections served at once; more wait in the system's backlog [default:
    /// from the open-file limit].
    #[arg(long, env = "FLEXIPROXY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Allow listening on an address other than loopback (--bind, FLEXIPROXY_BIND or the
    /// address saved in the settings). Without it such a start is refused (a saved address
    /// falls back to 127.0.0.1 with a warning).
    #[arg(
        long,
        env = "FLEXIPROXY_ALLOW_REMOTE",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_remote: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key) instead of plain HTTP.
    #[arg(long, env = "FLEXIPROXY_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FLEXIPROXY_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Print the management token (to sign in to the web UI from a browser) and exit.
    #[arg(long)]
    pub show_token: bool,
    /// Providers, credentials, routes and adapters declared in a TOML file (JSON when the name
    /// ends .json), read-only in the UI and reloaded when the file changes.
    #[arg(long, env = "FLEXIPROXY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Environment variables the management API may name as `env:NAME` keys, besides those
    /// starting with FLEXIPROXY_ (repeat the flag, or separate names with commas).
    #[arg(
        long,
        env = "FLEXIPROXY_ALLOW_ENV",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub allow_env: Vec<String>,
    /// Check the --config file and exit (status 0 when valid, 1 with the reason otherwise)
    /// without starting the gateway.
    #[arg(long)]
    pub check_config: bool,
}

/// Logs to stderr, filtered by `FLEXIPROXY_LOG` (or `RUST_LOG`), `info` by default: with time,
/// level and (on a terminal) colours, or, when stderr is the systemd journal, with the syslog
/// priority prefix journald reads and nothing it adds itself.
pub fn init_logging() {
    let filter = std::env::var("FLEXIPROXY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let to_journal = *TO_JOURNAL.get_or_init(journal::stderr_is_journal);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = if to_journal {
        logs.with_ansi(false)
            .event_format(journal::JournalFormat::default())
            .try_init()
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}

/// Tells the user on stderr why the command failed (`error`) or what to look at (`warning`),
/// prefixed with the priority when stderr is the journal so these lines are filed like the logs.
fn tell(level: tracing::Level, message: &str) {
    let line = format!("flexiproxy: {message}");
    if TO_JOURNAL.get().copied().unwrap_or(false) {
        eprint!("{}", journal::prefixed(level, &line));
    } else {
        eprintln!("{line}");
    }
}

/// Runs the gateway without any window until SIGINT or SIGTERM.
///
/// Prints one line to stdout once listening (`FlexiProxy gateway listening on http://…`) so
/// scripts can wait for it and learn the port when `--port 0` was given.
pub async fn run_headless(args: Args) -> ExitCode {
    if args.check_config {
        return check_config(args.config.as_deref());
    }
    let settings = match Settings::from_args(&args) {
        Ok(settings) => settings,
        Err(e) => {
            tell(tracing::Level::ERROR, &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    if args.show_token {
        return show_token(settings).await;
    }
    let gateway = match Gateway::start(settings).await {
        Ok(gateway) => gateway,
        Err(e) => {
            tell(tracing::Level::ERROR, &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    if let Some(warning) = &gateway.secrets_status().warning {
        tracing::warn!("{warning}");
    }
    // Before the line below: whoever waits for it may send SIGTERM right after reading it.
    let signalled = shutdown_signal();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "FlexiProxy gateway listening on {}",
        gateway.base_url()
    );
    let _ = stdout.flush();
    drop(stdout);
    if gateway.management_token().is_some() {
        tracing::info!(
            "dashboard: open {}/ and sign in with the token `flexiproxy --show-token` prints",
            gateway.base_url()
        );
    }

    signalled.await;
    tracing::info!("shutting down");
    gateway.shutdown().await;
    ExitCode::SUCCESS
}

/// Validates the config file and prints a one-line summary, warning about `env:NAME` references
/// to unset variables (those keys would be unusable, but the file is still valid).
fn check_config(path: Option<&Path>) -> ExitCode {
    let Some(path) = path else {
        tell(
            tracing::Level::ERROR,
            "--check-config needs a file: pass --config PATH or set FLEXIPROXY_CONFIG",
        );
        return ExitCode::FAILURE;
    };
    match file::load(path) {
        Ok(declared) => {
            for var in file::missing_env(&declared) {
                tell(
                    tracing::Level::WARN,
                    &format!(
                        "warning: environment variable {var} is not set; keys given as \
                         env:{var} stay unusable until it is"
                    ),
                );
            }
            println!(
                "config OK: {} providers, {} credentials, {} routes, {} adapters",
                declared.providers.len(),
                declared.credential_count(),
                declared.routes.len(),
                declared.adapters.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tell(tracing::Level::ERROR, &e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Prints the management token the gateway with these settings would use.
async fn show_token(settings: Settings) -> ExitCode {
    match crate::lifecycle::management_token_for(settings).await {
        Ok(Some(token)) => {
            println!("{}", token.expose());
            ExitCode::SUCCESS
        }
        Ok(None) => {
            tell(
                tracing::Level::ERROR,
                "no management token: no OS keychain is reachable and \
                 FLEXIPROXY_MANAGEMENT_TOKEN is not set",
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            tell(tracing::Level::ERROR, &e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix (what `kill`, systemd and session logout send).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives between the two would otherwise kill the process with the default
/// action instead of shutting the gateway down. Call it from inside the tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_workspace_version() {
        let shown = Args::try_parse_from(["flexiproxy", "--version"]).unwrap_err();
        assert_eq!(shown.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(
            shown.to_string().trim_end(),
            format!("flexiproxy {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
