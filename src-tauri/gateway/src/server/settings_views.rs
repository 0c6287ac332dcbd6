//! The management API's settings (`/api/settings`): usage recording, routing settings and the
//! saved listen address, read and written as one view.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::config::{ListenStatus, SavedListen};
use crate::error::{GatewayError, Rendered};
use crate::routing::RoutingSettings;
use crate::routing::registry::ROUTING_SETTING;
use crate::state::AppState;

use super::management::{ApiResult, blocking, invalid, parse, reload};

#[derive(Debug, Serialize)]
struct SettingsView {
    usage_enabled: bool,
    routing: RoutingSettings,
    /// Whether `routing` comes from the config file (and so cannot be changed here).
    routing_from_config: bool,
    listen: ListenStatus,
    data_dir: std::path::PathBuf,
    /// Where the store keeps its data: the SQLite file (in `data_dir`).
    database: String,
    /// What the user should know about these settings (an exposed listen address).
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsInput {
    #[serde(default)]
    usage_enabled: Option<bool>,
    /// Fields given replace the current ones; the others stay.
    #[serde(default)]
    routing: Option<serde_json::Map<String, Value>>,
    /// Saved for the next start; fields given replace the saved ones.
    #[serde(default)]
    listen: Option<ListenInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenInput {
    #[serde(default)]
    bind: Option<String>,
    #[serde(default)]
    port: Option<i64>,
}

async fn settings_view(state: &AppState) -> ApiResult<SettingsView> {
    let db = state.db.clone();
    let saved = blocking(move || SavedListen::load(&*db).map_err(Into::into)).await?;
    let listen = ListenStatus::new(
        state.listen,
        saved,
        state.settings.listen_given,
        state.settings.allow_remote,
    );
    Ok(SettingsView {
        usage_enabled: state.recorder.enabled(),
        routing: state.registry.snapshot().routing,
        routing_from_config: state.registry.routing_from_config(),
        warnings: listen.warnings(),
        listen,
        data_dir: state.settings.data_dir.clone(),
        database: state.db.location(),
    })
}

pub(super) async fn get_settings(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(settings_view(&state).await?))
}

pub(super) async fn put_settings(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: SettingsInput = parse(&body)?;
    let routing = match input.routing {
        None => None,
        Some(changes) => {
            if state.registry.routing_from_config() {
                return Err(Rendered::management(GatewayError::Conflict(
                    "the routing settings come from the config file; edit the file instead".into(),
                )));
            }
            let mut merged = match serde_json::to_value(state.registry.snapshot().routing) {
                Ok(Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            merged.extend(changes);
            let settings: RoutingSettings = serde_json::from_value(Value::Object(merged))
                .map_err(|e| invalid(format!("routing: {e}")))?;
            Some(settings)
        }
    };
    let listen = match input.listen {
        None => None,
        Some(listen) => Some(
            SavedListen::parse(listen.bind.as_deref(), listen.port)
                .map_err(|e| invalid(e.to_string()))?,
        ),
    };
    let db = state.db.clone();
    let usage = input.usage_enabled;
    blocking(move || {
        if let Some(listen) = listen {
            listen.save(&*db)?;
        }
        if let Some(enabled) = usage {
            db.set_setting("usage_enabled", if enabled { "true" } else { "false" })?;
        }
        if let Some(settings) = routing {
            let text = serde_json::to_string(&settings)
                .map_err(|e| GatewayError::Internal(e.to_string()))?;
            db.set_setting(ROUTING_SETTING, &text)?;
        }
        Ok(())
    })
    .await?;
    if let Some(enabled) = usage {
        state.recorder.set_enabled(enabled);
    }
    if routing.is_some() {
        reload(&state).await?;
    }
    if let Some(listen) = listen {
        tracing::info!(bind = ?listen.bind, port = ?listen.port, "listen address saved for the next start");
    }
    tracing::info!("settings saved");
    Ok(axum::Json(settings_view(&state).await?))
}
