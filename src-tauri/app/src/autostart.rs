//! Start at login: `tauri-plugin-autostart` (on Linux an XDG autostart entry,
//! `~/.config/autostart/FlexiProxy.desktop`), switched from the tray's check item and from the web
//! UI through the gateway's desktop host hook (`GET/PUT /api/desktop`).
//!
//! Both ways end in [`set`], which changes the entry and then refreshes the tray's check item,
//! so the menu and the API always agree. A login start runs `flexiproxy --hidden`: the app comes
//! up in the tray without opening its window.

use flexiproxy_gateway::host::{Host, HostError};
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Manager, Wry};
use tauri_plugin_autostart::AutoLaunchManager;

/// What the login entry passes: start in the tray only.
pub const LAUNCH_ARGS: [&str; 1] = ["--hidden"];

/// The plugin, set to launch with [`LAUNCH_ARGS`].
pub fn plugin() -> TauriPlugin<Wry> {
    tauri_plugin_autostart::Builder::new()
        .args(LAUNCH_ARGS)
        .build()
}

/// Whether the app starts at login.
pub fn enabled(app: &AppHandle) -> Result<bool, HostError> {
    manager(app)?.is_enabled().map_err(|error| {
        HostError(format!(
            "cannot tell whether FlexiProxy starts at login: {error}"
        ))
    })
}

/// Turns starting at login on or off, then shows the result in the tray.
pub fn set(app: &AppHandle, enable: bool) -> Result<(), HostError> {
    let result = {
        let manager = manager(app)?;
        if enable {
            manager.enable()
        } else {
            manager.disable()
        }
    };
    // The check item shows what is true now, whether or not the change worked.
    crate::tray::refresh_autostart(app);
    result.map_err(|error| HostError(change_failed(enable, &error.to_string())))?;
    tracing::info!(enabled = enable, "start at login changed");
    Ok(())
}

/// The tray's "Start at login" item was clicked: flip what is true now (not what the item
/// shows, which the menu toggles on its own before telling us).
pub fn toggle(app: &AppHandle) {
    let outcome = enabled(app).and_then(|now| set(app, !now));
    if let Err(error) = outcome {
        tracing::warn!("{error}");
        crate::tray::refresh_autostart(app);
    }
}

fn manager(app: &AppHandle) -> Result<tauri::State<'_, AutoLaunchManager>, HostError> {
    app.try_state::<AutoLaunchManager>().ok_or_else(|| {
        HostError("start at login is not available: the autostart plugin did not load".into())
    })
}

fn change_failed(enable: bool, reason: &str) -> String {
    let what = if enable { "turn on" } else { "turn off" };
    format!(
        "cannot {what} start at login: {reason}; check that your autostart folder \
         (~/.config/autostart on Linux) is writable"
    )
}

/// The gateway's view of the desktop app (`Settings::host`), for `GET/PUT /api/desktop` and
/// `POST /api/desktop/open` (which [`crate::browser`] serves).
#[derive(Debug)]
pub struct DesktopHost {
    app: AppHandle,
}

impl DesktopHost {
    pub fn new(app: AppHandle) -> Self {
        Self { app }
    }
}

impl Host for DesktopHost {
    fn autostart(&self) -> Result<bool, HostError> {
        enabled(&self.app)
    }

    fn set_autostart(&self, enabled: bool) -> Result<(), HostError> {
        set(&self.app, enabled)
    }

    fn open_url(&self, url: &str) -> Result<(), HostError> {
        crate::browser::open(&self.app, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_start_stays_in_the_tray() {
        assert_eq!(LAUNCH_ARGS, ["--hidden"]);
    }

    #[test]
    fn a_failed_change_says_what_to_check() {
        let message = change_failed(true, "permission denied");
        assert!(message.starts_with("cannot turn on start at login: permission denied"));
        assert!(message.contains("~/.config/autostart"));
        assert!(change_failed(false, "x").starts_with("cannot turn off"));
    }
}
