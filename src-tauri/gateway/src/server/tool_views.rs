//! The tool set-up API under `/api/tools` (behind the management guard): the snippets and
//! status of every tool for an adapter, and applying or undoing a tool's config-file set-up.
//!
//! The work is `tool_setup`'s; this module checks what the caller sent. A set-up always points
//! the tool at this gateway's own address, so a `base_url` that names another one is refused;
//! the key must be the named adapter's (checked against the hash the registry holds). The key
//! is held as a [`Secret`] from the moment the body is read and goes only into the tool's file:
//! a body that does not parse gets a message naming the fields, never echoing them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::management::{ApiResult, blocking};
use crate::error::{GatewayError, Rendered};
use crate::routing::registry::Adapter;
use crate::server::access::hash_key;
use crate::state::AppState;
use crate::store::secrets::Secret;
use crate::tools::{
    self, FileChange, Home, KEY_PLACEHOLDER, Snippet, Status, Target, Tool, ToolSetupError,
    Workspace,
};

fn fail(error: impl Into<GatewayError>) -> Rendered {
    Rendered::management(error)
}

impl From<ToolSetupError> for GatewayError {
    fn from(error: ToolSetupError) -> Self {
        match error {
            ToolSetupError::Store(e) => Self::Store(e),
            ToolSetupError::UnknownTool(_) | ToolSetupError::NothingToUndo(_) => {
                Self::NotFound(error.to_string())
            }
            ToolSetupError::NotWritable(_) => Self::Invalid(error.to_string()),
            ToolSetupError::InvalidFile { .. }
            | ToolSetupError::BackupMissing { .. }
            | ToolSetupError::DanglingLink { .. }
            | ToolSetupError::ChangedSince { .. }
            | ToolSetupError::UnreadableRecord { .. } => Self::Conflict(error.to_string()),
            ToolSetupError::NoHome | ToolSetupError::Io { .. } => Self::Internal(error.to_string()),
        }
    }
}

fn tool(id: &str) -> ApiResult<Tool> {
    Tool::parse(id).ok_or_else(|| fail(ToolSetupError::UnknownTool(id.to_owned())))
}

fn adapter(state: &AppState, id: i64) -> ApiResult<std::sync::Arc<Adapter>> {
    state
        .registry
        .snapshot()
        .adapters()
        .into_iter()
        .find(|a| a.create_time == id)
        .cloned()
        .ok_or_else(|| {
            fail(GatewayError::NotFound(format!(
                "adapter {id}; GET /api/adapters lists them (`create_time` is the id)"
            )))
        })
}

fn home() -> ApiResult<Home> {
    Home::from_env().ok_or_else(|| fail(ToolSetupError::NoHome))
}

#[derive(Debug, Deserialize)]
pub struct ToolsQuery {
    #[serde(default)]
    adapter: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ToolView {
    id: &'static str,
    name: &'static str,
    protocol: &'static str,
    writable: bool,
    config_path: Option<std::path::PathBuf>,
    snippet: Snippet,
    status: Status,
}

/// `GET /api/tools?adapter=<id>`: every tool, in the UI's order, with its snippet for that
/// adapter (its model; the key as `{{KEY}}`) and whether its files point here.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ToolsQuery>,
) -> ApiResult<Json<Vec<ToolView>>> {
    let model = match query.adapter.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => {
            let id = raw.parse::<i64>().map_err(|_| {
                fail(GatewayError::Invalid(format!(
                    "`adapter` must be an adapter id (its create_time), not `{raw}`"
                )))
            })?;
            adapter(&state, id)?.model_id.clone()
        }
    };
    let home = home()?;
    let db = state.db.clone();
    let base_url = state.base_url.clone();
    let statuses = {
        let home = home.clone();
        blocking(move || Ok(tools::statuses(&*db, &home, &base_url)?)).await?
    };
    let target = Target {
        base_url: &state.base_url,
        key: KEY_PLACEHOLDER,
        model: model.as_deref(),
    };
    let views = statuses
        .into_iter()
        .map(|(tool, status)| ToolView {
            id: tool.id(),
            name: tool.name(),
            protocol: tool.protocol().as_str(),
            writable: tool.writable(),
            config_path: tool.config_path(&home),
            snippet: tools::snippet(tool, &target),
            status,
        })
        .collect();
    Ok(Json(views))
}

/// The body of `POST /api/tools/{tool}/apply`. No `Debug`: it holds the key.
struct ApplyInput {
    adapter: i64,
    key: Secret,
    base_url: Option<String>,
}

impl ApplyInput {
    fn parse(body: &[u8]) -> ApiResult<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            adapter: i64,
            key: String,
            #[serde(default)]
            base_url: Option<String>,
        }
        // serde's messages can quote the value they choked on, which may be the key.
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            fail(GatewayError::Invalid(format!(
                "request body (line {} column {}): expected {{\"adapter\": <adapter id>, \
                 \"key\": \"fp-…\"}}",
                e.line(),
                e.column()
            )))
        })?;
        Ok(Self {
            adapter: raw.adapter,
            key: Secret::new(raw.key),
            base_url: raw.base_url,
        })
    }
}

/// `POST /api/tools/{tool}/apply` `{"adapter": <id>, "key": "fp-…"}`.
pub async fn apply(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let tool = tool(&id)?;
    if !tool.writable() {
        return Err(fail(ToolSetupError::NotWritable(tool.name())));
    }
    let input = ApplyInput::parse(&body)?;
    if let Some(url) = input.base_url.as_deref().map(str::trim)
        && !url.is_empty()
        && !tools::same_origin(url, &state.base_url)
    {
        return Err(fail(GatewayError::Invalid(format!(
            "FlexiProxy points {} at itself, {}; `base_url` {url} is another address. Leave \
             `base_url` out, or set the tool up by hand from its snippet",
            tool.name(),
            state.base_url
        ))));
    }
    let adapter = adapter(&state, input.adapter)?;
    let owner = state
        .registry
        .snapshot()
        .adapter_for_key(&hash_key(input.key.expose()))
        .map(|a| a.create_time);
    if owner != Some(adapter.create_time) {
        return Err(fail(GatewayError::Invalid(format!(
            "that is not the key of adapter {}: send the key FlexiProxy showed when the adapter \
             was created (keys are shown once; create a new adapter if it is lost)",
            adapter.create_time
        ))));
    }
    let home = home()?;
    let db = state.db.clone();
    let data_dir = state.settings.data_dir.clone();
    let base_url = state.base_url.clone();
    let model = adapter.model_id.clone();
    let adapter_id = adapter.create_time;
    let key = input.key;
    let changes: Vec<FileChange> = blocking(move || {
        let target = Target {
            base_url: &base_url,
            key: key.expose(),
            model: model.as_deref(),
        };
        let ws = Workspace {
            db: &*db,
            data_dir: &data_dir,
            home: &home,
        };
        Ok(tools::apply(ws, tool, &target, Some(adapter_id))?)
    })
    .await?;
    let changed: Vec<&String> = changes.iter().flat_map(|c| &c.changed).collect();
    Ok(Json(json!({
        "tool": tool.id(),
        "path": changes.first().map(|c| &c.path),
        "backup_path": changes.iter().find_map(|c| c.backup_path.as_ref()),
        "changed": changed,
        "files": changes,
    })))
}

/// `POST /api/tools/{tool}/undo`.
pub async fn undo(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let tool = tool(&id)?;
    let home = home()?;
    let db = state.db.clone();
    let data_dir = state.settings.data_dir.clone();
    let undone = blocking(move || {
        let ws = Workspace {
            db: &*db,
            data_dir: &data_dir,
            home: &home,
        };
        Ok(tools::undo(ws, tool)?)
    })
    .await?;
    Ok(Json(json!({
        "tool": tool.id(),
        "path": undone.paths.first(),
        "paths": undone.paths,
        "restored": true,
        "remaining": undone.remaining,
    })))
}
