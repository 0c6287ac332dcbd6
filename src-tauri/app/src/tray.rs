//! The tray icon and its menu: a status line saying where the gateway listens (or why it is not
//! running), "Open dashboard", "Copy base URL" and "Quit".
//!
//! Menu actions call into [`crate::window`] (show the dashboard) and [`crate::desktop::quit`]
//! (graceful shutdown); the base URL comes from the [`Shell`] state. On Linux the icon is an
//! AppIndicator (libayatana-appindicator3, loaded at run time), which always opens the menu on
//! click; on Windows and macOS a left click opens the dashboard and a right click the menu.

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};
use tauri_plugin_clipboard_manager::ClipboardExt;

use crate::desktop::{GatewayStatus, Shell};
use crate::window;

const TRAY_ID: &str = "main";
const STATUS: &str = "status";
const OPEN_DASHBOARD: &str = "open-dashboard";
const COPY_BASE_URL: &str = "copy-base-url";
const QUIT: &str = "quit";

/// Longest status line before it is cut: menus do not wrap, and errors can be long.
const MAX_STATUS_CHARS: usize = 90;

/// Drawn for the 16–24 px a tray gives it: thicker strokes than the app icon.
const TRAY_ICON: Image<'static> = tauri::include_image!("../../icons/tray.png");

/// The disabled first line of the menu.
fn status_line(status: &GatewayStatus) -> String {
    let line = match status {
        GatewayStatus::Running { addr, .. } => format!("Gateway running on {addr}"),
        GatewayStatus::Failed(error) => format!("Gateway not running: {error}"),
    };
    if line.chars().count() <= MAX_STATUS_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_STATUS_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn tooltip(status: &GatewayStatus) -> String {
    match status {
        GatewayStatus::Running { addr, .. } => format!("FlexiProxy — {addr}"),
        GatewayStatus::Failed(_) => "FlexiProxy — gateway not running".to_owned(),
    }
}

pub fn create(app: &AppHandle, status: &GatewayStatus) -> tauri::Result<TrayIcon> {
    let running = matches!(status, GatewayStatus::Running { .. });
    let menu = Menu::with_items(
        app,
        &[
            &MenuItem::with_id(app, STATUS, status_line(status), false, None::<&str>)?,
            // Enabled even when the gateway failed: the window then explains why.
            &MenuItem::with_id(app, OPEN_DASHBOARD, "Open dashboard", true, None::<&str>)?,
            &MenuItem::with_id(app, COPY_BASE_URL, "Copy base URL", running, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?,
        ],
    )?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(TRAY_ICON)
        .tooltip(tooltip(status))
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                window::show(tray.app_handle());
            }
        })
        .build(app)
}

fn on_menu(app: &AppHandle, id: &str) {
    match id {
        OPEN_DASHBOARD => window::show(app),
        COPY_BASE_URL => copy_base_url(app),
        QUIT => crate::desktop::quit(app, 0),
        _ => {}
    }
}

fn copy_base_url(app: &AppHandle) {
    let Some(base_url) = app
        .try_state::<Shell>()
        .and_then(|shell| shell.status().base_url())
    else {
        return;
    };
    match app.clipboard().write_text(base_url.as_str()) {
        Ok(()) => tracing::info!(%base_url, "base URL copied to the clipboard"),
        Err(error) => tracing::warn!("cannot copy the base URL to the clipboard: {error}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tauri::Url;

    use super::*;

    #[test]
    fn status_line_names_the_address() {
        let status = GatewayStatus::Running {
            addr: "127.0.0.1:8317".parse().unwrap(),
            url: Url::parse("http://127.0.0.1:8317").unwrap(),
        };
        assert_eq!(status_line(&status), "Gateway running on 127.0.0.1:8317");
    }

    #[test]
    fn long_errors_are_cut() {
        let status = GatewayStatus::Failed("port 8317 is busy ".repeat(20));
        let line = status_line(&status);
        assert_eq!(line.chars().count(), MAX_STATUS_CHARS);
        assert!(line.starts_with("Gateway not running: port 8317"));
        assert!(line.ends_with('…'));
    }
}
