//! The HTTP server: one axum router for the client APIs (`/v1`), the management API (`/api`),
//! the web UI, and `/health`, served on the listener `lifecycle` bound.
//!
//! Connections are accepted by `listener` (connection cap, header and idle timeouts,
//! TCP_NODELAY). The body limit applies to every route; handlers render its rejection in their
//! caller's error shape.

pub mod access;
pub mod drain;
pub mod open_files;
pub mod tls;
pub mod usage_export;

mod account_views;
mod adapter_views;
mod assets;
mod client_api;
mod host_views;
mod listener;
mod management;
mod pool_views;
mod provider_views;
mod route_views;
mod settings_views;
mod tool_views;
mod usage_views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::state::AppState;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::openai_chat::Endpoint;

pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route(
            "/v1/chat/completions",
            client_api::relayed(Endpoint::ChatCompletions),
        )
        .route(
            "/v1/completions",
            client_api::relayed(Endpoint::Completions),
        )
        .route("/v1/embeddings", client_api::relayed(Endpoint::Embeddings))
        .route(
            "/v1/responses",
            client_api::answered(Protocol::OpenAiResponses, "responses"),
        )
        .route("/v1/models", get(client_api::models))
        .route(
            "/v1/models/{*rest}",
            get(client_api::model).post(client_api::gemini_action),
        )
        .route("/v1/endpoints", get(pool_views::endpoints))
        .route("/v1/usage", get(pool_views::usage))
        .route(
            "/v1/messages",
            client_api::answered(Protocol::AnthropicMessages, "messages"),
        )
        .route("/v1/messages/count_tokens", post(client_api::count_tokens))
        .route("/v1beta/models", get(client_api::gemini_models))
        .route(
            "/v1beta/models/{*rest}",
            get(client_api::gemini_models).post(client_api::gemini_action),
        )
        .route("/v1/{*rest}", axum::routing::any(client_api::not_found))
        .nest("/api", management::router(state.clone()))
        .route("/", get(assets::index))
        .route("/index.html", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/lib/{name}", get(assets::lib_module))
        .route("/style.css", get(assets::style))
        .route("/icon.png", get(assets::icon))
        .route(
            "/health",
            get(|| async {
                axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
            }),
        )
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.drain.clone(),
            drain::guard,
        ))
        .with_state(state)
}

/// The connection cap when the settings give none and `lifecycle` did not size one.
const FALLBACK_MAX_CONNECTIONS: usize = 1024;

/// Serves (over TLS with `tls`) until `stop` fires, then stops accepting and lets requests in
/// flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: oneshot::Receiver<()>,
) {
    let limits = listener::Limits::new(&state.settings.listener, FALLBACK_MAX_CONNECTIONS);
    listener::run(listener, router(state), limits, tls, stop).await;
}
