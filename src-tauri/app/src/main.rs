//! `flexiproxy`, the program users install: FlexiProxy's gateway in a tray app with a dashboard
//! window, or the same gateway headless.
//!
//! This file only decides which of the two to run. `--headless`, or a Linux/BSD session with no
//! display at all, runs `flexiproxy_gateway::config::cli::run_headless` on a plain tokio runtime without
//! touching GTK (which would abort without a display). Everything else goes to
//! [`desktop::run_app`], which wires the gateway into the tray ([`tray`], with [`today`]'s token
//! count, [`autostart`] and accounts that need a login) and the window ([`window`]), with native
//! dialogs ([`dialog`]) for keychain problems, the about box and a taken port ([`port_offer`]);
//! the web UI opens sign-in pages in the system browser through [`browser`]. The gateway crate owns all
//! the logic; this crate stays a thin shell.

// Release builds on Windows are GUI programs: no console window pops up behind the tray app.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod autostart;
mod browser;
mod desktop;
mod dialog;
mod port_offer;
mod today;
mod tray;
mod window;

use std::process::ExitCode;

use clap::Parser;
use flexiproxy_gateway::config::cli::{self, Args};

/// How this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Tray icon, window, gateway in-process.
    Desktop,
    /// `--headless` was asked for.
    Headless,
    /// A desktop run was asked for, but there is no display to show it on.
    HeadlessNoDisplay,
}

fn choose_mode(headless_flag: bool, display: bool) -> Mode {
    match (headless_flag, display) {
        (true, _) => Mode::Headless,
        (false, false) => Mode::HeadlessNoDisplay,
        (false, true) => Mode::Desktop,
    }
}

/// Whether a graphical session is reachable. Only X11/Wayland platforms can lack one; macOS and
/// Windows always have a window server for a logged-in user.
fn display_available() -> bool {
    if cfg!(all(unix, not(target_os = "macos"))) {
        ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|var| std::env::var_os(var).is_some_and(|value| !value.is_empty()))
    } else {
        true
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    match choose_mode(
        args.headless || args.check_config || args.show_token,
        display_available(),
    ) {
        Mode::Desktop => desktop::run_app(args),
        Mode::Headless => headless(args),
        Mode::HeadlessNoDisplay => {
            tracing::warn!(
                "no display found (neither DISPLAY nor WAYLAND_DISPLAY is set): running the \
                 gateway headless, without tray icon or window"
            );
            headless(args)
        }
    }
}

/// Runs the headless gateway on its own runtime, so no GTK or Tauri code is ever initialised.
fn headless(args: Args) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(cli::run_headless(args)),
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_even_with_a_display() {
        assert_eq!(choose_mode(true, true), Mode::Headless);
        assert_eq!(choose_mode(true, false), Mode::Headless);
    }

    #[test]
    fn no_display_falls_back_to_headless() {
        assert_eq!(choose_mode(false, false), Mode::HeadlessNoDisplay);
        assert_eq!(choose_mode(false, true), Mode::Desktop);
    }
}
