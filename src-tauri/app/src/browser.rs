//! Opening the system's default browser, for the gateway's `POST /api/desktop/open` (a
//! subscription's sign-in page): `tauri-plugin-opener`, called from Rust only, so the window's
//! script gets no opener permission of its own. The gateway checked the URL (http/https only)
//! before it gets here. [`crate::desktop`] registers the plugin.

use flexiproxy_gateway::embedder::HostError;
use tauri::AppHandle;
use tauri_plugin_opener::OpenerExt;

/// Hands `url` to the system's default browser.
pub fn open(app: &AppHandle, url: &str) -> Result<(), HostError> {
    app.opener().open_url(url, None::<&str>).map_err(|error| {
        HostError(format!(
            "cannot open the browser ({error}); open the link on the page yourself"
        ))
    })
}
