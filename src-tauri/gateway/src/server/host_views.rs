//! `GET/PUT /api/desktop`: the desktop app's own settings (start at login) for the web UI, and
//! `POST /api/desktop/open`: the system browser opened on a page (a subscription's sign-in page).
//!
//! They exist only when the gateway runs inside the desktop app, which passes its
//! [`crate::embedder::Embedder`] in `Settings::host`; a headless gateway answers `available: false` and
//! refuses changes and opening with 409 (the web UI then shows a plain link). Registered in the
//! management router, so the token and the Host/Origin guard apply. The host keeps the tray in
//! step with changes made here.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::management::{blocking, parse};
use crate::embedder::{Embedder, HostError, browser_url};
use crate::error::{GatewayError, Rendered};
use crate::state::AppState;

/// What both routes answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesktopView {
    /// Whether a desktop app hosts this gateway.
    pub available: bool,
    /// Whether the app starts at login; `null` without a desktop app.
    pub autostart: Option<bool>,
}

/// The body `PUT /api/desktop` accepts; absent fields stay as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DesktopInput {
    autostart: Option<bool>,
}

/// The body `POST /api/desktop/open` accepts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenInput {
    url: String,
}

pub(super) async fn get_desktop(
    State(state): State<AppState>,
) -> Result<Json<DesktopView>, Rendered> {
    let view = match state.settings.host.clone() {
        None => headless(),
        Some(host) => read(host).await?,
    };
    Ok(Json(view))
}

pub(super) async fn put_desktop(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<DesktopView>, Rendered> {
    let input: DesktopInput = parse(&body)?;
    let Some(host) = state.settings.host.clone() else {
        return Err(Rendered::management(GatewayError::Conflict(
            "this gateway runs headless, without the desktop app: start it at login with your \
             service manager (e.g. a systemd user unit) instead"
                .into(),
        )));
    };
    if let Some(enabled) = input.autostart {
        let setter = host.clone();
        run(move || setter.set_autostart(enabled)).await?;
        tracing::info!(autostart = enabled, "start at login changed from the API");
    }
    Ok(Json(read(host).await?))
}

/// Opens the system browser on an `http`/`https` page; 204 once the host handed it over.
pub(super) async fn open_in_browser(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<StatusCode, Rendered> {
    let input: OpenInput = parse(&body)?;
    let url = browser_url(&input.url)
        .map_err(|e| Rendered::management(GatewayError::Invalid(e.to_string())))?;
    let Some(host) = state.settings.host.clone() else {
        return Err(Rendered::management(GatewayError::Conflict(
            "this gateway runs headless, without the desktop app, so it cannot open a browser: \
             open the link yourself"
                .into(),
        )));
    };
    let target = url.to_string();
    run(move || host.open_url(&target)).await?;
    // The address only: its query can carry a login's state, which the log has no use for.
    tracing::info!(
        host = url.host_str().unwrap_or_default(),
        "opened the browser from the API"
    );
    Ok(StatusCode::NO_CONTENT)
}

fn headless() -> DesktopView {
    DesktopView {
        available: false,
        autostart: None,
    }
}

async fn read(host: Arc<dyn Embedder>) -> Result<DesktopView, Rendered> {
    let autostart = run(move || host.autostart()).await?;
    Ok(DesktopView {
        available: true,
        autostart: Some(autostart),
    })
}

/// Host calls may write files or ask the OS: kept off the async runtime.
async fn run<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, Rendered> {
    blocking(move || call().map_err(|e| GatewayError::Internal(e.0))).await
}
