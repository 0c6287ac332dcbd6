//! Read-only views of the routing state for clients and scripts: `GET /v1/endpoints` (which
//! endpoints serve which models) and `GET /v1/usage` (requests per provider and key against
//! their limits).
//!
//! They sit under `/v1` beside the client APIs, so a tool holding only an adapter key can see
//! whether its keys are near their limits; the management token works too (the dashboard). Keys
//! appear only by their public id (`<provider>/<credential>`), never by value. The numbers come
//! from `routing::Router`'s live windows, the same ones that decide where a request goes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::now_ms;
use crate::error::{GatewayError, Rendered};
use crate::proxy;
use crate::routing::registry::{Provider, Snapshot};
use crate::state::AppState;

/// The routing state and the time the view reads it at, for a caller with an adapter key or
/// the management token (the management API's Host/Origin guard applies to the token, as it
/// does under `/api`).
fn pool_now(state: &AppState, headers: &HeaderMap) -> Result<(Arc<Snapshot>, i64), Rendered> {
    let snapshot = state.registry.snapshot();
    if proxy::authenticate(&snapshot, headers).is_err() {
        state
            .guard
            .check(headers)
            .and_then(|()| state.auth.check(headers))
            .map_err(|e| match e {
                GatewayError::Unauthorized => Rendered::openai(GatewayError::MissingKey),
                other => Rendered::openai(other),
            })?;
    }
    Ok((snapshot, now_ms()))
}

#[derive(Debug, Serialize)]
struct EndpointView<'a> {
    id: &'a str,
    url: &'a str,
    protocol: &'a str,
    discovery: &'a str,
    models: Vec<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    peers: &'a [crate::routing::discovery::OcfPeer],
    discovered_at_ms: Option<i64>,
    discovery_error: Option<&'a str>,
    /// Enabled credentials (or the keyless slot).
    credentials: usize,
    /// Of those, how many could take a request now.
    available: usize,
}

/// `GET /v1/endpoints`.
pub async fn endpoints(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Rendered> {
    let (snapshot, now) = pool_now(&state, &headers)?;
    let views: Vec<EndpointView<'_>> = snapshot
        .providers()
        .into_iter()
        .map(|p| endpoint_view(&state, p, now))
        .collect();
    Ok(Json(json!({ "endpoints": views })))
}

fn endpoint_view<'a>(state: &AppState, provider: &'a Provider, now: i64) -> EndpointView<'a> {
    let enabled: Vec<_> = provider.credentials.iter().filter(|c| c.enabled).collect();
    let available = enabled
        .iter()
        .filter(|c| state.router.health(c, now).is_ready())
        .count();
    EndpointView {
        id: &provider.id,
        url: &provider.url,
        protocol: provider.protocol.as_str(),
        discovery: provider.discovery.as_str(),
        models: provider.models(),
        peers: &provider.discovered.peers,
        discovered_at_ms: provider.discovered.refreshed_at,
        discovery_error: provider.discovered.error.as_deref(),
        credentials: enabled.len(),
        available,
    }
}

/// `GET /v1/usage`: `overview` per provider and `details` per provider and key, over the last
/// 24 hours (the window daily limits count in).
pub async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Rendered> {
    let (snapshot, now) = pool_now(&state, &headers)?;
    let mut overview = Map::new();
    let mut details = Map::new();
    for provider in snapshot.providers() {
        let mut keys = Map::new();
        let mut total_requests: u64 = 0;
        // Capacity counts the keys that have a daily limit; their requests are what fills it.
        let mut capacity: Option<u64> = None;
        let mut limited_requests: u64 = 0;
        for credential in provider.credentials.iter() {
            let health = state.router.health(credential, now);
            let windows = health.windows;
            let limits = credential.limits;
            total_requests += u64::from(windows.req_day);
            if let Some(day) = limits.max_request_day {
                capacity = Some(capacity.unwrap_or(0) + u64::from(day));
                limited_requests += u64::from(windows.req_day);
            }
            keys.insert(
                credential.key_id.clone(),
                json!({
                    "label": credential.label,
                    "requests": windows.req_day,
                    "usage_percentage": percentage(u64::from(windows.req_day), limits.max_request_day.map(u64::from)),
                    "state": health.state,
                    "rate_limit_windows": windows,
                    "rate_limits": {
                        "max_request_min": limits.max_request_min,
                        "max_request_day": limits.max_request_day,
                        "max_token_min": limits.max_token_min,
                    },
                }),
            );
        }
        overview.insert(
            provider.id.clone(),
            json!({
                "total_requests": total_requests,
                "total_capacity": capacity,
                "usage_percentage": percentage(limited_requests, capacity),
            }),
        );
        details.insert(provider.id.clone(), Value::Object(keys));
    }
    Ok(Json(json!({ "overview": overview, "details": details })))
}

/// `used` of `capacity` in percent, rounded to two decimals; null without a capacity.
fn percentage(used: u64, capacity: Option<u64>) -> Option<f64> {
    let capacity = capacity.filter(|c| *c > 0)?;
    Some((used as f64 * 10_000.0 / capacity as f64).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_of_capacity_with_two_decimals() {
        assert_eq!(percentage(3, Some(100)), Some(3.0));
        assert_eq!(percentage(1, Some(3)), Some(33.33));
        assert_eq!(percentage(5, None), None);
        assert_eq!(percentage(5, Some(0)), None);
    }
}
