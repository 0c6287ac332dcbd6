//! The tray app's life cycle: start the gateway, build the tray and the window, keep running
//! in the tray when the window closes, and stop the gateway gracefully on Quit or a signal.
//!
//! The gateway is started in Tauri's `setup` hook, i.e. after the single-instance plugin has
//! run: a second launch hands over to the first instance (which shows its window) and exits
//! before it could try to bind the port a second time. The [`Shell`] state holds the running
//! gateway so that every way out ([`quit`], a signal, any other exit) shuts it down exactly once.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use flexiproxy_gateway::cli::Args;
use flexiproxy_gateway::{Gateway, RunningGateway, Settings};
use tauri::{App, AppHandle, Manager, RunEvent, Url, WindowEvent};

use crate::{tray, window};

/// What the tray and the window show about the gateway.
#[derive(Debug, Clone)]
pub enum GatewayStatus {
    Running {
        /// Where it listens, e.g. `127.0.0.1:8317`.
        addr: SocketAddr,
        /// The base URL tools use and the window loads, e.g. `http://127.0.0.1:8317`.
        url: Url,
    },
    /// It could not start; the message says why and what to do.
    Failed(String),
}

impl GatewayStatus {
    /// The base URL as users copy it (no trailing slash).
    pub fn base_url(&self) -> Option<String> {
        match self {
            Self::Running { url, .. } => Some(url.as_str().trim_end_matches('/').to_owned()),
            Self::Failed(_) => None,
        }
    }
}

/// App-wide state, managed by Tauri.
#[derive(Debug)]
pub struct Shell {
    status: GatewayStatus,
    /// Taken out (once) by whoever shuts the gateway down.
    gateway: Mutex<Option<RunningGateway>>,
    quitting: AtomicBool,
}

impl Shell {
    pub fn status(&self) -> &GatewayStatus {
        &self.status
    }

    fn take_gateway(&self) -> Option<RunningGateway> {
        self.gateway
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
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
    let (gateway, status) = start_gateway(args);
    let token = gateway.as_ref().and_then(RunningGateway::management_token);
    app.manage(Shell {
        status: status.clone(),
        gateway: Mutex::new(gateway),
        quitting: AtomicBool::new(false),
    });
    let handle = app.handle();

    let tray_ok = match tray::create(handle, &status) {
        Ok(_) => true,
        Err(error) => {
            tracing::error!("cannot create the tray icon: {error}");
            false
        }
    };
    // Without a tray icon a hidden window could never be reached again: show it anyway.
    let visible = !args.hidden || !tray_ok;
    let window_ok = match window::create(handle, &status, token.as_ref(), visible) {
        Ok(_) => true,
        Err(error) => {
            tracing::error!("cannot create the dashboard window: {error}");
            false
        }
    };
    if !tray_ok && !window_ok {
        tracing::error!("neither a tray icon nor a window could be shown; exiting");
        quit(handle, 1);
        return;
    }

    let signal_handle = handle.clone();
    tauri::async_runtime::spawn(async move {
        flexiproxy_gateway::cli::shutdown_signal().await;
        tracing::info!("termination signal received; quitting");
        quit(&signal_handle, 0);
    });
}

/// Starts the gateway on Tauri's tokio runtime, where it lives until [`quit`].
fn start_gateway(args: &Args) -> (Option<RunningGateway>, GatewayStatus) {
    let settings = match Settings::from_args(args) {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!("cannot start the gateway: {error}");
            return (None, GatewayStatus::Failed(error.to_string()));
        }
    };
    let gateway = match tauri::async_runtime::block_on(Gateway::start(settings)) {
        Ok(gateway) => gateway,
        Err(error) => {
            tracing::error!("cannot start the gateway: {error}");
            return (None, GatewayStatus::Failed(error.to_string()));
        }
    };
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
            (Some(gateway), status)
        }
        Err(error) => {
            // Cannot happen for an address the gateway formatted itself; say so if it does.
            let message = format!("the gateway reported an invalid base URL: {error}");
            tracing::error!("{message}");
            tauri::async_runtime::block_on(gateway.shutdown());
            (None, GatewayStatus::Failed(message))
        }
    }
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
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Some(gateway) = gateway {
            tracing::info!("stopping the gateway");
            gateway.shutdown().await;
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
    fn base_url_has_no_trailing_slash() {
        let status = GatewayStatus::Running {
            addr: "127.0.0.1:8317".parse().unwrap(),
            url: Url::parse("http://127.0.0.1:8317").unwrap(),
        };
        assert_eq!(status.base_url().unwrap(), "http://127.0.0.1:8317");
        assert_eq!(GatewayStatus::Failed("x".into()).base_url(), None);
    }
}
