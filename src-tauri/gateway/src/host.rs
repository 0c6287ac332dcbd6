//! The desktop host hook: what the program embedding the gateway can do for the management API
//! that the gateway cannot do itself, such as starting the app at login.
//!
//! The gateway crate knows nothing of Tauri, so the desktop app (`src-tauri/app`) implements
//! [`Host`] with its autostart plugin and passes it in `Settings::host`; `server::host_views`
//! serves it as `GET/PUT /api/desktop` for the web UI. A headless gateway has no host and says
//! so (`available: false`).

/// Desktop integration the embedding app provides. Calls may touch the file system or the OS
/// (the autostart entry), so the API runs them off the async runtime.
pub trait Host: Send + Sync + std::fmt::Debug {
    /// Whether the app starts at login.
    fn autostart(&self) -> Result<bool, HostError>;
    /// Turns starting at login on or off. The host also updates its own view of the setting
    /// (the tray's check item), so both sides agree whichever side changed it.
    fn set_autostart(&self, enabled: bool) -> Result<(), HostError>;
}

/// A host operation failed; the message says what failed and what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);
