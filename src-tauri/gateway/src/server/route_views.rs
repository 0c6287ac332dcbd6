//! The management API's routes (`/api/routes/…`): named lists of (provider, model) candidates
//! a client can ask for by name, with their strategy.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::error::{GatewayError, Rendered};
use crate::routing::registry::Source;
use crate::routing::{Candidate, Strategy};
use crate::state::AppState;
use crate::store::RouteRow;

use super::management::{
    ApiResult, blocking, invalid, non_empty, not_found, parse, reload, writable,
};

#[derive(Debug, Serialize)]
struct RouteView {
    name: String,
    strategy: Option<Strategy>,
    auto: bool,
    candidates: Vec<Candidate>,
    source: Source,
}

fn route_view(route: &crate::routing::registry::Route) -> RouteView {
    RouteView {
        name: route.name.clone(),
        strategy: route.strategy,
        auto: route.auto,
        candidates: route.candidates.clone(),
        source: route.source,
    }
}

pub(super) async fn list_routes(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = state.registry.snapshot();
    axum::Json(
        snapshot
            .routes()
            .into_iter()
            .map(|r| route_view(r))
            .collect::<Vec<_>>(),
    )
}

pub(super) async fn get_route(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let snapshot = state.registry.snapshot();
    let route = snapshot
        .route(&name)
        .ok_or_else(|| not_found(format!("route `{name}`")))?;
    Ok(axum::Json(route_view(route)))
}

/// A route candidate as the API takes it: `"provider/model"` or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CandidateInput {
    Short(String),
    Full {
        provider: String,
        model: String,
        /// Absent: 0, or the list position in an `auto` route.
        #[serde(default)]
        priority: Option<u32>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteInput {
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    auto: bool,
    candidates: Vec<CandidateInput>,
}

fn valid_route_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && !name.chars().any(char::is_whitespace)
}

pub(super) async fn put_route(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    if !valid_route_name(&name) {
        return Err(invalid("a route name is 1–128 characters without spaces"));
    }
    let snapshot = state.registry.snapshot();
    if let Some(existing) = snapshot.route(&name) {
        writable(existing.source, &format!("route `{name}`"))?;
    }
    let input: RouteInput = parse(&body)?;
    let strategy = match non_empty(input.strategy) {
        Some(raw) => Some(
            raw.parse::<Strategy>()
                .map_err(|e| invalid(e.to_string()))?,
        ),
        None => None,
    };
    if input.candidates.is_empty() {
        return Err(invalid(
            "a route needs at least one candidate (`provider/model`)",
        ));
    }
    let mut candidates = Vec::new();
    for (position, candidate) in input.candidates.into_iter().enumerate() {
        // In an auto route the list order is the order of preference.
        let implied = if input.auto {
            u32::try_from(position).unwrap_or(u32::MAX)
        } else {
            0
        };
        let candidate = match candidate {
            CandidateInput::Full {
                provider,
                model,
                priority,
            } => Candidate {
                provider,
                model,
                priority: priority.unwrap_or(implied),
            },
            CandidateInput::Short(text) => Candidate::parse(&text, implied).ok_or_else(|| {
                invalid(format!(
                    "candidate `{text}` must be `provider/model` or {{\"provider\", \"model\"}}"
                ))
            })?,
        };
        if snapshot.provider(&candidate.provider).is_none() {
            return Err(invalid(format!(
                "candidate {position} names provider `{}`, which is not registered",
                candidate.provider
            )));
        }
        candidates.push(candidate);
    }
    let row = RouteRow {
        name: name.clone(),
        strategy: strategy.map(|s| s.as_str().to_owned()),
        auto: input.auto,
        candidates,
        updated_at: now_ms(),
    };
    let db = state.db.clone();
    blocking(move || db.upsert_route(&row).map_err(Into::into)).await?;
    reload(&state).await?;
    tracing::info!(route = %name, "route saved");
    let snapshot = state.registry.snapshot();
    let route = snapshot
        .route(&name)
        .ok_or_else(|| Rendered::management(GatewayError::Internal("route vanished".into())))?;
    Ok(axum::Json(route_view(route)))
}

pub(super) async fn delete_route(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    if let Some(existing) = state.registry.snapshot().route(&name) {
        writable(existing.source, &format!("route `{name}`"))?;
    }
    let db = state.db.clone();
    let wanted = name.clone();
    let existed = blocking(move || db.delete_route(&wanted).map_err(Into::into)).await?;
    if !existed {
        return Err(not_found(format!("route `{name}`")));
    }
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}
