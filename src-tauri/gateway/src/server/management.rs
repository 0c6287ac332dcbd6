//! The management API under `/api`, as JSON for the UI and for scripts: this router, its guard,
//! status, and the pieces every view shares. The views live beside it, one file per thing they
//! manage: `provider_views` (providers and their credentials), `adapter_views`, `route_views`,
//! `settings_views`, `usage_views` (usage and the event stream), `account_views`
//! (subscription accounts and their logins), `tool_views`, `host_views` (the desktop).
//!
//! Every route sits behind [`guard`], which refuses foreign `Host`/`Origin` headers and checks
//! the management token before any handler runs. After each change the in-memory `registry` is
//! rebuilt so the next client request sees it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::blocking;
use crate::error::{GatewayError, Rendered};
use crate::routing::registry::Source;
use crate::state::AppState;

use super::{
    account_views, adapter_views, host_views, provider_views, route_views, settings_views,
};

pub(super) type ApiResult<T> = Result<T, Rendered>;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/welcome/dismiss", post(dismiss_welcome))
        .route("/presets", get(presets))
        .route("/providers", get(provider_views::list_providers))
        .route(
            "/providers/{id}",
            get(provider_views::get_provider)
                .post(provider_views::put_provider)
                .put(provider_views::put_provider)
                .delete(provider_views::delete_provider),
        )
        .route(
            "/providers/{id}/credentials",
            get(provider_views::list_credentials).post(provider_views::create_credential),
        )
        .route(
            "/providers/{id}/credentials/{credential}",
            get(provider_views::get_credential)
                .patch(provider_views::update_credential)
                .delete(provider_views::delete_credential),
        )
        .route(
            "/providers/{id}/credentials/{credential}/reset",
            post(provider_views::reset_credential),
        )
        .route(
            "/providers/{id}/discover",
            post(provider_views::discover_provider),
        )
        .route("/providers/{id}/test", post(provider_views::test_provider))
        .route("/routes", get(route_views::list_routes))
        .route(
            "/routes/{name}",
            get(route_views::get_route)
                .put(route_views::put_route)
                .delete(route_views::delete_route),
        )
        .route(
            "/adapters",
            get(adapter_views::list_adapters)
                .post(adapter_views::create_adapter)
                .delete(adapter_views::delete_adapter),
        )
        .route(
            "/settings",
            get(settings_views::get_settings).put(settings_views::put_settings),
        )
        .merge(super::usage_views::routes())
        .merge(account_views::routes())
        .route(
            "/desktop",
            get(host_views::get_desktop).put(host_views::put_desktop),
        )
        .route("/desktop/open", post(host_views::open_in_browser))
        .route("/tools", get(super::tool_views::list))
        .route("/tools/{tool}/apply", post(super::tool_views::apply))
        .route("/tools/{tool}/undo", post(super::tool_views::undo))
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
        // The body is never read, so the connection cannot be reused safely: say so, or a
        // client that sends its next request on it sees the server hang up without an answer.
        let mut response = Rendered::management(e).into_response();
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// Runs blocking store, keychain or file work off the async runtime (every management view
/// uses this one).
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GatewayError> + Send + 'static,
) -> ApiResult<T> {
    blocking::run(f)
        .await
        .map_err(|e| Rendered::management(GatewayError::from(e)))?
        .map_err(Rendered::management)
}

pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| Rendered::management(GatewayError::Invalid(format!("request body: {e}"))))
}

pub(super) fn not_found(what: String) -> Rendered {
    Rendered::management(GatewayError::NotFound(what))
}

/// Rebuilds the registry so the next request sees a change.
pub(super) async fn reload(state: &AppState) -> ApiResult<()> {
    state.reload_registry().await.map_err(Rendered::management)
}

pub(super) fn invalid(message: impl Into<String>) -> Rendered {
    Rendered::management(GatewayError::Invalid(message.into()))
}

async fn status(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let snapshot = state.registry.snapshot();
    // The first-run welcome belongs to the desktop app's window; a headless gateway has none.
    let welcome = if state.settings.host.is_some() {
        let db = state.db.clone();
        blocking(move || crate::lifecycle::welcome_pending(&*db).map_err(Into::into)).await?
    } else {
        false
    };
    Ok(axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "base_url": state.base_url,
        "listen": state.listen.to_string(),
        "data_dir": state.settings.data_dir,
        "secrets": state.secrets_status,
        "usage_enabled": state.recorder.enabled(),
        "config": *state.config.read().unwrap_or_else(std::sync::PoisonError::into_inner),
        "providers": snapshot.provider_count(),
        "adapters": snapshot.adapter_count(),
        "welcome": welcome,
    })))
}

/// `POST /api/welcome/dismiss`: the first-run welcome is not shown again.
async fn dismiss_welcome(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let db = state.db.clone();
    blocking(move || crate::lifecycle::dismiss_welcome(&*db).map_err(Into::into)).await?;
    tracing::info!("the welcome was dismissed");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/presets`: the providers the UI offers to add with one click.
async fn presets() -> impl IntoResponse {
    axum::Json(crate::config::presets::PRESETS)
}

pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// An upstream URL from the API: http(s) with a host and without user info (a password in the
/// URL would be shown back by every `GET`).
pub(super) fn valid_url(field: &str, url: &str) -> Result<(), Rendered> {
    crate::config::destination::parse_http(field, url, "https://api.openai.com/v1")
        .map(drop)
        .map_err(|e| invalid(e.to_string()))
}

/// Refuses to change what the config file declares: the file would win at the next reload.
pub(super) fn writable(source: Source, what: &str) -> ApiResult<()> {
    match source {
        Source::Database => Ok(()),
        Source::Config => Err(Rendered::management(GatewayError::Conflict(format!(
            "{what} is defined in the config file; edit the file instead (it is reloaded when \
             it changes)"
        )))),
    }
}
