//! The management API under `/api`: providers, adapters, settings, usage and status, as JSON
//! for the UI and for scripts.
//!
//! Every route sits behind [`guard`], which refuses foreign `Host`/`Origin` headers and checks
//! the management token before any handler runs. Provider keys are write-only: they go to the
//! secret store (or are kept as `env:NAME` references) and only a hint ever comes back.
//! Adapter keys are generated here, returned once, and stored as hashes. After each change the
//! in-memory `registry` is rebuilt so the next client request sees it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::{hash_hex, new_adapter_key};
use crate::error::{GatewayError, Rendered};
use crate::protocol::Protocol;
use crate::registry::ProviderKey;
use crate::secrets::{Secret, SecretRef};
use crate::state::AppState;
use crate::store::{AdapterRow, ProviderRow, now_ms};
use crate::usage;

type ApiResult<T> = Result<T, Rendered>;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/providers", get(list_providers))
        .route(
            "/providers/{id}",
            get(get_provider).post(put_provider).delete(delete_provider),
        )
        .route(
            "/adapters",
            get(list_adapters)
                .post(create_adapter)
                .delete(delete_adapter),
        )
        .route("/settings", get(get_settings).put(put_settings))
        .route("/usage/summary", get(usage_summary))
        .route("/usage/recent", get(usage_recent))
        .fallback(|| async {
            Rendered::management(GatewayError::NotFound("no such management endpoint".into()))
        })
        .layer(middleware::from_fn_with_state(state, guard))
}

/// Host/Origin check, then the management token.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Err(e) = state
        .guard
        .check(headers)
        .and_then(|()| state.auth.check(headers))
    {
        return Rendered::management(e).into_response();
    }
    next.run(request).await
}

/// Runs blocking store/keychain work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GatewayError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Rendered::management(GatewayError::Internal(e.to_string())))?
        .map_err(Rendered::management)
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| Rendered::management(GatewayError::Invalid(format!("request body: {e}"))))
}

fn invalid(message: impl Into<String>) -> Rendered {
    Rendered::management(GatewayError::Invalid(message.into()))
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = state.registry.snapshot();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "base_url": state.base_url,
        "listen": state.listen.to_string(),
        "data_dir": state.settings.data_dir,
        "secrets": state.secrets_status,
        "usage_enabled": state.recorder.enabled(),
        "providers": snapshot.provider_count(),
        "adapters": snapshot.adapter_count(),
    }))
}

#[derive(Debug, Serialize)]
struct ProviderView {
    id: String,
    url: String,
    protocol: String,
    has_api_key: bool,
    /// `keychain` (or the store's kind), `env:NAME`, or null.
    key_source: Option<String>,
    key_hint: Option<String>,
    /// Why the key cannot be used right now, if it cannot.
    key_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

fn provider_view(state: &AppState, row: ProviderRow) -> ProviderView {
    let key_source = row
        .key_ref
        .as_deref()
        .and_then(SecretRef::parse)
        .map(|r| match r {
            SecretRef::Stored(_) => "keychain".to_owned(),
            SecretRef::Env(_) => r.to_db(),
        });
    let key_error = state
        .registry
        .snapshot()
        .provider(&row.id)
        .and_then(|p| match &p.key {
            ProviderKey::Unavailable(reason) => Some(reason.clone()),
            ProviderKey::None | ProviderKey::Ready(_) => None,
        });
    ProviderView {
        has_api_key: row.key_ref.is_some(),
        key_source,
        key_hint: row.key_hint,
        key_error,
        id: row.id,
        url: row.url,
        protocol: row.protocol,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

async fn list_providers(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let db = state.db.clone();
    let rows = blocking(move || db.providers().map_err(Into::into)).await?;
    let views: Vec<_> = rows
        .into_iter()
        .map(|row| provider_view(&state, row))
        .collect();
    Ok(axum::Json(views))
}

async fn find_provider(state: &AppState, id: String) -> ApiResult<ProviderRow> {
    let db = state.db.clone();
    let wanted = id.clone();
    let row = blocking(move || Ok(db.providers()?.into_iter().find(|p| p.id == wanted))).await?;
    row.ok_or_else(|| Rendered::management(GatewayError::NotFound(format!("provider `{id}`"))))
}

async fn get_provider(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let row = find_provider(&state, id).await?;
    Ok(axum::Json(provider_view(&state, row)))
}

#[derive(Debug, Deserialize)]
struct ProviderInput {
    url: String,
    #[serde(default)]
    protocol: Option<String>,
    /// Absent or "": keep the current key. null: remove it. `env:NAME`: a reference.
    #[serde(default, deserialize_with = "present_or_null")]
    api_key: Option<Option<String>>,
}

/// Tells an absent field (outer `None`) from an explicit `null` (`Some(None)`).
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_url(field: &str, url: &str) -> Result<(), Rendered> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        _ => Err(invalid(format!(
            "`{field}` must be an http(s) URL such as https://api.openai.com/v1, not `{url}`"
        ))),
    }
}

/// The secret-store entry of a provider's key.
fn key_entry(id: &str) -> String {
    format!("provider:{id}")
}

async fn put_provider(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    if !valid_id(&id) {
        return Err(invalid(
            "provider id must be 1–64 characters of letters, digits, `.`, `_` or `-`",
        ));
    }
    let input: ProviderInput = parse(&body)?;
    valid_url("url", &input.url)?;
    let protocol = match input.protocol.as_deref() {
        None | Some("") => Protocol::OpenAiChat,
        Some(p) => p.parse::<Protocol>().map_err(|e| invalid(e.to_string()))?,
    };

    let db = state.db.clone();
    let secrets = state.secrets.clone();
    let row = blocking(move || {
        let existing = db.providers()?.into_iter().find(|p| p.id == id);
        let now = now_ms();
        let (key_ref, key_hint) = match input.api_key {
            None => existing
                .as_ref()
                .map(|p| (p.key_ref.clone(), p.key_hint.clone()))
                .unwrap_or_default(),
            Some(Some(key)) if key.is_empty() => existing
                .as_ref()
                .map(|p| (p.key_ref.clone(), p.key_hint.clone()))
                .unwrap_or_default(),
            Some(None) => {
                secrets.delete(&key_entry(&id))?;
                (None, None)
            }
            Some(Some(key)) => {
                if let Some(var) = key.strip_prefix(SecretRef::ENV_PREFIX) {
                    if var.is_empty() {
                        return Err(GatewayError::Invalid(
                            "`env:` must be followed by a variable name".into(),
                        ));
                    }
                    (Some(SecretRef::Env(var.to_owned()).to_db()), None)
                } else {
                    let secret = Secret::new(key.trim());
                    secrets.set(&key_entry(&id), &secret)?;
                    (
                        Some(SecretRef::Stored(key_entry(&id)).to_db()),
                        Some(secret.hint()),
                    )
                }
            }
        };
        let row = ProviderRow {
            id,
            url: input.url.trim_end_matches('/').to_owned(),
            protocol: protocol.as_str().to_owned(),
            key_ref,
            key_hint,
            created_at: existing.as_ref().map_or(now, |p| p.created_at),
            updated_at: now,
        };
        db.upsert_provider(&row)?;
        Ok(row)
    })
    .await?;
    state
        .reload_registry()
        .await
        .map_err(Rendered::management)?;
    tracing::info!(provider = %row.id, url = %row.url, "provider saved");
    Ok(axum::Json(provider_view(&state, row)))
}

async fn delete_provider(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let db = state.db.clone();
    let secrets = state.secrets.clone();
    let wanted = id.clone();
    let existed = blocking(move || {
        let existed = db.delete_provider(&wanted)?;
        if existed {
            secrets.delete(&key_entry(&wanted))?;
        }
        Ok(existed)
    })
    .await?;
    if !existed {
        return Err(Rendered::management(GatewayError::NotFound(format!(
            "provider `{id}`"
        ))));
    }
    state
        .reload_registry()
        .await
        .map_err(Rendered::management)?;
    tracing::info!(provider = %id, "provider deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct AdapterView {
    create_time: i64,
    provider_id: String,
    model_id: String,
    base_url: Option<String>,
    key_hint: String,
}

impl From<AdapterRow> for AdapterView {
    fn from(row: AdapterRow) -> Self {
        Self {
            create_time: row.create_time,
            provider_id: row.provider_id,
            model_id: row.model_id,
            base_url: row.base_url,
            key_hint: row.key_hint,
        }
    }
}

async fn list_adapters(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let db = state.db.clone();
    let rows = blocking(move || db.adapters().map_err(Into::into)).await?;
    Ok(axum::Json(
        rows.into_iter().map(AdapterView::from).collect::<Vec<_>>(),
    ))
}

#[derive(Debug, Deserialize)]
struct AdapterInput {
    provider_id: String,
    model_id: String,
    #[serde(default)]
    base_url: Option<String>,
}

async fn create_adapter(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: AdapterInput = parse(&body)?;
    if input.model_id.trim().is_empty() {
        return Err(invalid("`model_id` must not be empty"));
    }
    let base_url = input
        .base_url
        .filter(|u| !u.trim().is_empty())
        .map(|u| u.trim_end_matches('/').to_owned());
    if let Some(url) = &base_url {
        valid_url("base_url", url)?;
    }
    let provider = find_provider(&state, input.provider_id.clone())
        .await
        .map_err(|_| {
            invalid(format!(
                "provider `{}` is not registered; add it first (POST /api/providers/{})",
                input.provider_id, input.provider_id
            ))
        })?;
    let key = new_adapter_key().map_err(Rendered::management)?;
    let row = AdapterRow {
        create_time: now_ms(),
        provider_id: provider.id.clone(),
        model_id: input.model_id.trim().to_owned(),
        // No URL of its own: the adapter follows the provider's URL when that changes.
        base_url,
        key_hash: hash_hex(&key.hash),
        key_hint: key.hint,
    };
    let db = state.db.clone();
    let stored = row.clone();
    let create_time = blocking(move || db.insert_adapter(&stored).map_err(Into::into)).await?;
    state
        .reload_registry()
        .await
        .map_err(Rendered::management)?;
    tracing::info!(adapter = create_time, provider = %row.provider_id, model = %row.model_id, "adapter created");
    let view = AdapterView {
        create_time,
        ..AdapterView::from(row)
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "create_time": view.create_time,
            "provider_id": view.provider_id,
            "model_id": view.model_id,
            "base_url": view.base_url,
            "key_hint": view.key_hint,
            // Shown this once; only its hash is kept.
            "api_key": key.key.expose(),
        })),
    ))
}

#[derive(Debug, Deserialize)]
struct AdapterDelete {
    create_time: i64,
}

async fn delete_adapter(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: AdapterDelete = parse(&body)?;
    let db = state.db.clone();
    let existed =
        blocking(move || db.delete_adapter(input.create_time).map_err(Into::into)).await?;
    if !existed {
        return Err(Rendered::management(GatewayError::NotFound(format!(
            "adapter with create_time {}",
            input.create_time
        ))));
    }
    state
        .reload_registry()
        .await
        .map_err(Rendered::management)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize)]
struct SettingsView {
    usage_enabled: bool,
}

async fn get_settings(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(SettingsView {
        usage_enabled: state.recorder.enabled(),
    })
}

async fn put_settings(State(state): State<AppState>, body: Bytes) -> ApiResult<impl IntoResponse> {
    let input: SettingsView = parse(&body)?;
    let db = state.db.clone();
    let value = if input.usage_enabled { "true" } else { "false" };
    blocking(move || db.set_setting("usage_enabled", value).map_err(Into::into)).await?;
    state.recorder.set_enabled(input.usage_enabled);
    tracing::info!(usage_enabled = input.usage_enabled, "settings saved");
    Ok(axum::Json(input))
}

/// The start of "today" when the caller does not say: UTC midnight. The UI passes its own
/// local midnight as `since_ms`, since the browser knows the user's time zone.
fn utc_midnight_ms() -> i64 {
    let now = now_ms();
    now - now.rem_euclid(86_400_000)
}

#[derive(Debug, Deserialize)]
struct SummaryQuery {
    #[serde(default)]
    since_ms: Option<i64>,
}

async fn usage_summary(
    State(state): State<AppState>,
    Query(query): Query<SummaryQuery>,
) -> ApiResult<impl IntoResponse> {
    let db = state.db.clone();
    let since = query.since_ms.unwrap_or_else(utc_midnight_ms);
    let summary = blocking(move || usage::summary(&db, since).map_err(Into::into)).await?;
    Ok(axum::Json(summary))
}

#[derive(Debug, Deserialize)]
struct RecentQuery {
    #[serde(default)]
    limit: Option<u32>,
}

async fn usage_recent(
    State(state): State<AppState>,
    Query(query): Query<RecentQuery>,
) -> ApiResult<impl IntoResponse> {
    let db = state.db.clone();
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let rows = blocking(move || usage::recent(&db, limit).map_err(Into::into)).await?;
    Ok(axum::Json(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_are_restricted() {
        assert!(valid_id("deepseek"));
        assert!(valid_id("open.router_2-x"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(65)));
    }

    #[test]
    fn urls_must_be_http() {
        assert!(valid_url("url", "http://127.0.0.1:9/v1").is_ok());
        assert!(valid_url("url", "https://api.deepseek.com").is_ok());
        assert!(valid_url("url", "ftp://x").is_err());
        assert!(valid_url("url", "not a url").is_err());
    }
}
