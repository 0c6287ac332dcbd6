//! The management API's usage views: the dashboard's summary, recent requests and statistics,
//! the CSV export, clearing the history, and the live event stream.
//!
//! Queries run in `usage` (SQLite does the aggregation); this module checks the parameters,
//! moves the blocking reads off the runtime, and names adapters for people: a usage row keeps
//! only the adapter's id, and its label (`provider · model`, or `routing`) comes from the
//! current registry snapshot when the row is read. The routes are merged into
//! `management::router`, behind its token guard.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::management::{ApiResult, blocking};
use crate::clock::now_ms;
use crate::error::{GatewayError, Rendered};
use crate::routing::registry::{Adapter, Snapshot};
use crate::server::usage_export;
use crate::state::AppState;
use crate::store::usage::{self, UsageRecord, Window};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(events))
        .route("/usage", axum::routing::delete(delete_usage))
        .route("/usage/summary", get(usage_summary))
        .route("/usage/recent", get(usage_recent))
        .route("/usage/stats", get(usage_stats))
        .route("/usage/export.csv", get(usage_export))
}

/// The label of a usage row without an adapter (management calls, tests of the gateway).
const NO_ADAPTER: &str = "no adapter";

/// What each adapter serves, for people: `openai · gpt-4o`; `openai · any model` when the
/// client picks the model; `routing` (or `routing · gpt-4o`) when the model picks the provider.
fn adapter_label(adapter: &Adapter) -> String {
    match (&adapter.provider_id, &adapter.model_id) {
        (Some(provider), Some(model)) => format!("{provider} · {model}"),
        (Some(provider), None) => format!("{provider} · any model"),
        (None, Some(model)) => format!("routing · {model}"),
        (None, None) => "routing".to_owned(),
    }
}

/// Labels for the adapters of one snapshot, by id.
#[derive(Debug, Default)]
struct AdapterLabels(HashMap<i64, String>);

impl AdapterLabels {
    fn of(snapshot: &Snapshot) -> Self {
        Self(
            snapshot
                .adapters()
                .into_iter()
                .map(|a| (a.create_time, adapter_label(a)))
                .collect(),
        )
    }

    /// The label of a row's adapter; an adapter deleted since says so.
    fn get(&self, adapter: Option<i64>) -> String {
        match adapter {
            None => NO_ADAPTER.to_owned(),
            Some(id) => self
                .0
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("deleted adapter {id}")),
        }
    }

    /// The label for a `by_adapter` key (the id as text, or `none`).
    fn for_key(&self, key: &str) -> String {
        self.get(key.parse().ok())
    }
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
    let summary = blocking(move || db.usage_summary(since).map_err(Into::into)).await?;
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
    let mut rows = blocking(move || db.recent_usage(limit).map_err(Into::into)).await?;
    let labels = AdapterLabels::of(&state.registry.snapshot());
    for row in &mut rows {
        row.adapter_label = labels.get(row.adapter);
    }
    Ok(axum::Json(rows))
}

/// An hour: the dashboard's bucket unless it asks for another.
const DEFAULT_BUCKET_MS: i64 = 3_600_000;

#[derive(Debug, Deserialize)]
struct StatsQuery {
    #[serde(default)]
    since_ms: Option<i64>,
    #[serde(default)]
    until_ms: Option<i64>,
    #[serde(default)]
    bucket_ms: Option<i64>,
}

async fn usage_stats(
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> ApiResult<impl IntoResponse> {
    let window = Window::new(
        query.since_ms.unwrap_or_else(utc_midnight_ms),
        query.until_ms.unwrap_or_else(now_ms),
        query.bucket_ms.unwrap_or(DEFAULT_BUCKET_MS),
    )
    .map_err(|e| Rendered::management(GatewayError::Invalid(e.to_string())))?;
    let db = state.db.clone();
    let mut stats = blocking(move || db.usage_stats(window).map_err(Into::into)).await?;
    let labels = AdapterLabels::of(&state.registry.snapshot());
    for group in &mut stats.by_adapter {
        group.label = Some(labels.for_key(&group.key));
    }
    Ok(axum::Json(stats))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    #[serde(default)]
    since_ms: Option<i64>,
    #[serde(default)]
    until_ms: Option<i64>,
}

/// `GET /api/usage/export.csv`: every row in the range (all by default), oldest first, written
/// a page at a time as the client reads, so a large history is never held in memory.
async fn usage_export(State(state): State<AppState>, Query(query): Query<ExportQuery>) -> Response {
    struct Export {
        state: AppState,
        labels: AdapterLabels,
        until_ms: i64,
        cursor: usage::Cursor,
        /// Nothing is left: the last page was short, or reading failed.
        done: bool,
    }
    let export = Export {
        labels: AdapterLabels::of(&state.registry.snapshot()),
        state,
        until_ms: query.until_ms.unwrap_or(i64::MAX),
        cursor: usage::Cursor::start(query.since_ms.unwrap_or(i64::MIN)),
        done: false,
    };
    let header = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(usage_export::HEADER.as_bytes()))
    });
    let rows = futures_util::stream::unfold(export, |mut export| async move {
        if export.done {
            return None;
        }
        let db = export.state.db.clone();
        let (after, until) = (export.cursor, export.until_ms);
        let page = crate::blocking::run(move || db.usage_page(after, until))
            .await
            .map_err(|e| e.to_string())
            .and_then(|read| read.map_err(|e| e.to_string()));
        match page {
            Ok((rows, next)) => {
                match next {
                    Some(cursor) => export.cursor = cursor,
                    None => export.done = true,
                }
                let mut text = String::with_capacity(rows.len() * 160);
                for row in &rows {
                    usage_export::push_row(&mut text, row, &export.labels.get(row.adapter));
                }
                Some((Ok(Bytes::from(text)), export))
            }
            Err(error) => {
                // The status line is sent already; breaking the body off is how the client
                // learns the file is incomplete.
                tracing::error!(%error, "usage export stopped");
                export.done = true;
                Some((Err(std::io::Error::other(error)), export))
            }
        }
    });
    let disposition = format!(
        "attachment; filename=\"{}\"",
        usage_export::file_name(now_ms())
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(futures_util::StreamExt::chain(
            header, rows,
        )))
        .unwrap_or_else(|e| {
            Rendered::management(GatewayError::Internal(e.to_string())).into_response()
        })
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    before_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Deleted {
    deleted: u64,
}

/// `DELETE /api/usage`: clears the history (`?before_ms=` keeps the newer rows). Records still
/// queued for the writer are written afterwards; the credentials' limit windows, already in
/// memory, are not changed.
async fn delete_usage(
    State(state): State<AppState>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<impl IntoResponse> {
    let db = state.db.clone();
    let deleted = blocking(move || db.delete_usage(query.before_ms).map_err(Into::into)).await?;
    tracing::info!(deleted, before_ms = ?query.before_ms, "usage history cleared");
    Ok(axum::Json(Deleted { deleted }))
}

/// A `usage` event: the record as written, with its adapter's label.
#[derive(Debug, Serialize)]
struct UsageEvent<'a> {
    #[serde(flatten)]
    record: &'a UsageRecord,
    adapter_label: String,
}

/// How often an idle event stream sends a comment, so proxies and the browser keep it open.
const EVENTS_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /api/events`: server-sent events for live views. `ready` once connected; `usage` with
/// each request's record as soon as it is written (so the summaries already include it);
/// `lagged` with how many were missed when the reader fell behind (refetch the summaries);
/// `accounts` (data `{}`) when a subscription account is added, removed, refreshed or fails
/// (refetch `/api/accounts`). Views react to these instead of polling the database.
async fn events(State(state): State<AppState>) -> Response {
    use tokio::sync::broadcast::error::RecvError;

    struct Feed {
        state: AppState,
        records: tokio::sync::broadcast::Receiver<Arc<UsageRecord>>,
        accounts: tokio::sync::watch::Receiver<u64>,
        closing: tokio::sync::watch::Receiver<bool>,
        started: bool,
        usage_enabled: bool,
    }
    let feed = Feed {
        records: state.recorder.subscribe(),
        accounts: state.accounts.subscribe(),
        closing: state.closing.clone(),
        started: false,
        // With statistics off nothing is recorded, so no `usage` events will come.
        usage_enabled: state.recorder.enabled(),
        state,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        if !feed.started {
            feed.started = true;
            let ready = format!(
                "event: ready\ndata: {}\n\n",
                json!({ "usage_enabled": feed.usage_enabled })
            );
            return Some((Ok::<_, std::convert::Infallible>(Bytes::from(ready)), feed));
        }
        if *feed.closing.borrow() {
            return None;
        }
        let chunk = tokio::select! {
            _ = feed.closing.changed() => return None,
            changed = feed.accounts.changed() => match changed {
                Ok(()) => Bytes::from_static(b"event: accounts\ndata: {}\n\n"),
                // The accounts live as long as the gateway's state, which this feed holds.
                Err(_) => return None,
            },
            next = tokio::time::timeout(EVENTS_KEEPALIVE, feed.records.recv()) => match next {
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                Ok(Ok(record)) => {
                    // The snapshot is read per event: adapters come and go while a view is open.
                    let label = AdapterLabels::of(&feed.state.registry.snapshot())
                        .get(record.adapter);
                    let event = UsageEvent { record: &record, adapter_label: label };
                    match serde_json::to_string(&event) {
                        Ok(data) => Bytes::from(format!("event: usage\ndata: {data}\n\n")),
                        Err(_) => Bytes::from_static(b": unreadable record\n\n"),
                    }
                }
                Ok(Err(RecvError::Lagged(missed))) => {
                    Bytes::from(format!("event: lagged\ndata: {}\n\n", json!({ "missed": missed })))
                }
                Ok(Err(RecvError::Closed)) => return None,
            },
        };
        Some((Ok(chunk), feed))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| {
            Rendered::management(GatewayError::Internal(e.to_string())).into_response()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::registry::Source;

    fn adapter(provider: Option<&str>, model: Option<&str>) -> Adapter {
        Adapter {
            create_time: 1,
            name: None,
            provider_id: provider.map(str::to_owned),
            model_id: model.map(str::to_owned),
            base_url: None,
            strategy: None,
            key_hint: "fp-…".into(),
            source: Source::Database,
        }
    }

    #[test]
    fn adapters_are_labelled_by_what_they_serve() {
        assert_eq!(
            adapter_label(&adapter(Some("openai"), Some("gpt-4o"))),
            "openai · gpt-4o"
        );
        assert_eq!(
            adapter_label(&adapter(Some("openai"), None)),
            "openai · any model"
        );
        assert_eq!(adapter_label(&adapter(None, None)), "routing");
        assert_eq!(
            adapter_label(&adapter(None, Some("fast"))),
            "routing · fast"
        );
        let labels = AdapterLabels(HashMap::from([(5, "a · b".to_owned())]));
        assert_eq!(labels.get(Some(5)), "a · b");
        assert_eq!(labels.get(None), NO_ADAPTER);
        assert_eq!(labels.for_key("none"), NO_ADAPTER);
        assert_eq!(labels.for_key("5"), "a · b");
        assert_eq!(labels.get(Some(6)), "deleted adapter 6");
    }
}
