//! The management API's adapters (`/api/adapters`): the local keys clients present, each bound
//! to a provider or route and model. A key is generated here, returned once, and stored as a
//! hash.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::now_ms;
use crate::error::Rendered;
use crate::routing::Strategy;
use crate::routing::registry::Source;
use crate::server::access::{hash_hex, new_adapter_key};
use crate::state::AppState;
use crate::store::AdapterRow;

use super::management::{
    ApiResult, blocking, invalid, non_empty, not_found, parse, reload, valid_url,
};

#[derive(Debug, Serialize)]
struct AdapterView {
    create_time: i64,
    name: Option<String>,
    provider_id: Option<String>,
    model_id: Option<String>,
    base_url: Option<String>,
    strategy: Option<Strategy>,
    key_hint: String,
    source: Source,
}

pub(super) async fn list_adapters(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let views: Vec<AdapterView> = state
        .registry
        .snapshot()
        .adapters()
        .into_iter()
        .map(|a| AdapterView {
            create_time: a.create_time,
            name: a.name.clone(),
            provider_id: a.provider_id.clone(),
            model_id: a.model_id.clone(),
            base_url: a.base_url.clone(),
            strategy: a.strategy,
            key_hint: a.key_hint.clone(),
            source: a.source,
        })
        .collect();
    Ok(axum::Json(views))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdapterInput {
    /// Absent: the provider follows from the model the client names.
    #[serde(default)]
    provider_id: Option<String>,
    /// Absent: the client's model is used (routed when there is no provider).
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

pub(super) async fn create_adapter(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: AdapterInput = parse(&body)?;
    let base_url = non_empty(input.base_url).map(|u| u.trim_end_matches('/').to_owned());
    if let Some(url) = &base_url {
        valid_url("base_url", url)?;
    }
    let provider_id = non_empty(input.provider_id);
    if let Some(provider) = &provider_id
        && state.registry.snapshot().provider(provider).is_none()
    {
        return Err(invalid(format!(
            "provider `{provider}` is not registered; add it first (PUT /api/providers/{provider})"
        )));
    }
    if base_url.is_some() && provider_id.is_none() {
        return Err(invalid(
            "`base_url` overrides a provider's URL, so it needs `provider_id`",
        ));
    }
    if let (Some(url), Some(provider)) = (&base_url, &provider_id)
        && let Some(provider) = state.registry.snapshot().provider(provider)
        && !crate::config::destination::same_origin(url, &provider.url)
    {
        return Err(invalid(format!(
            "`base_url` must be on the host of provider `{}` ({}): requests through the adapter \
             carry that provider's key, which is for its host alone. For another server, add it \
             as a provider with its own key",
            provider.id,
            crate::config::destination::origin(&provider.url)
                .unwrap_or_else(|| provider.url.clone())
        )));
    }
    let strategy = match non_empty(input.strategy) {
        Some(raw) => Some(
            raw.parse::<Strategy>()
                .map_err(|e| invalid(e.to_string()))?,
        ),
        None => None,
    };
    let key = new_adapter_key().map_err(Rendered::management)?;
    let row = AdapterRow {
        create_time: now_ms(),
        name: non_empty(input.name),
        provider_id,
        model_id: non_empty(input.model_id),
        // No URL of its own: the adapter follows the provider's URL when that changes.
        base_url,
        strategy: strategy.map(|s| s.as_str().to_owned()),
        key_hash: hash_hex(&key.hash),
        key_hint: key.hint,
    };
    let db = state.db.clone();
    let stored = row.clone();
    let create_time = blocking(move || db.insert_adapter(&stored).map_err(Into::into)).await?;
    reload(&state).await?;
    tracing::info!(
        adapter = create_time,
        provider = row.provider_id.as_deref().unwrap_or("(routed)"),
        model = row.model_id.as_deref().unwrap_or("(from the request)"),
        "adapter created"
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "create_time": create_time,
            "name": row.name,
            "provider_id": row.provider_id,
            "model_id": row.model_id,
            "base_url": row.base_url,
            "strategy": strategy,
            "key_hint": row.key_hint,
            "source": Source::Database,
            // Shown this once; only its hash is kept.
            "api_key": key.key.expose(),
        })),
    ))
}

#[derive(Debug, Deserialize)]
struct AdapterDelete {
    create_time: i64,
}

pub(super) async fn delete_adapter(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: AdapterDelete = parse(&body)?;
    let db = state.db.clone();
    let existed =
        blocking(move || db.delete_adapter(input.create_time).map_err(Into::into)).await?;
    if !existed {
        return Err(not_found(format!(
            "adapter with create_time {}",
            input.create_time
        )));
    }
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}
