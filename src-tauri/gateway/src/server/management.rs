//! The management API under `/api`: providers, adapters, settings, usage and status, as JSON
//! for the UI and for scripts. The usage views and the event stream live in `usage_views`,
//! subscription accounts and their logins in `account_views`, both merged into this router; a
//! provider's test call is made by `provider_test`.
//!
//! Every route sits behind [`guard`], which refuses foreign `Host`/`Origin` headers and checks
//! the management token before any handler runs. Provider keys are write-only: they go to the
//! secret store (or are kept as `env:NAME` references) and only a hint ever comes back.
//! Adapter keys are generated here, returned once, and stored as hashes. After each change the
//! in-memory `registry` is rebuilt so the next client request sees it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use std::sync::Arc;

use serde_json::Value;

use crate::blocking;
use crate::clock::now_ms;
use crate::config::{ListenStatus, SavedListen};
use crate::error::{GatewayError, Rendered};
use crate::routing::discovery::DiscoveryKind;
use crate::routing::provider_check;
use crate::routing::registry::{
    Credential, Provider, ProviderKey, ROUTING_SETTING, Source, valid_id,
};
use crate::routing::{Candidate, Health, Limits, RoutingSettings, Strategy, Windows};
use crate::server::access::{hash_hex, new_adapter_key};
use crate::state::AppState;
use crate::store::secrets::{EnvAllowlist, Secret, SecretRef, SecretStore};
use crate::store::{AdapterRow, CredentialRow, ProviderRow, RouteRow};
use flexiproxy_protocol::Protocol;

use super::{account_views, host_views};

pub(super) type ApiResult<T> = Result<T, Rendered>;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/welcome/dismiss", post(dismiss_welcome))
        .route("/presets", get(presets))
        .route("/providers", get(list_providers))
        .route(
            "/providers/{id}",
            get(get_provider)
                .post(put_provider)
                .put(put_provider)
                .delete(delete_provider),
        )
        .route(
            "/providers/{id}/credentials",
            get(list_credentials).post(create_credential),
        )
        .route(
            "/providers/{id}/credentials/{credential}",
            get(get_credential)
                .patch(update_credential)
                .delete(delete_credential),
        )
        .route(
            "/providers/{id}/credentials/{credential}/reset",
            post(reset_credential),
        )
        .route("/providers/{id}/discover", post(discover_provider))
        .route("/providers/{id}/test", post(test_provider))
        .route("/routes", get(list_routes))
        .route(
            "/routes/{name}",
            get(get_route).put(put_route).delete(delete_route),
        )
        .route(
            "/adapters",
            get(list_adapters)
                .post(create_adapter)
                .delete(delete_adapter),
        )
        .route("/settings", get(get_settings).put(put_settings))
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

fn not_found(what: String) -> Rendered {
    Rendered::management(GatewayError::NotFound(what))
}

/// Rebuilds the registry so the next request sees a change.
async fn reload(state: &AppState) -> ApiResult<()> {
    state.reload_registry().await.map_err(Rendered::management)
}

fn invalid(message: impl Into<String>) -> Rendered {
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

#[derive(Debug, Serialize)]
struct ProviderView {
    id: String,
    url: String,
    protocol: String,
    discovery: String,
    /// Declared and discovered models.
    models: Vec<String>,
    declared_models: Vec<String>,
    discovered_at_ms: Option<i64>,
    discovery_error: Option<String>,
    peers: Vec<crate::routing::discovery::OcfPeer>,
    credentials: Vec<CredentialView>,
    /// Kept for clients of the single-key API: whether credential `default` has a key.
    has_api_key: bool,
    /// Of credential `default`: `keychain`, `env:NAME`, or null.
    key_source: Option<String>,
    key_hint: Option<String>,
    key_error: Option<String>,
    source: Source,
    created_at: i64,
    updated_at: i64,
    /// Only in the answer to a save that moved the provider to another host: the credentials
    /// (`provider/credential`) whose keys were cleared, since they belonged to the old host.
    #[serde(skip_serializing_if = "Option::is_none")]
    keys_cleared: Option<Vec<String>>,
    /// What the user should know about that save, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
}

#[derive(Debug, Serialize)]
struct CredentialView {
    id: String,
    key_id: String,
    provider_id: String,
    label: String,
    enabled: bool,
    priority: u32,
    key_hint: Option<String>,
    /// `keychain`, `env:NAME`, or null for keyless.
    key_source: Option<String>,
    limits: Limits,
    health: Health,
    windows: Windows,
    source: Source,
}

fn credential_view(state: &AppState, credential: &Credential, now: i64) -> CredentialView {
    let health = state.router.health(credential, now);
    CredentialView {
        id: credential.id.clone(),
        key_id: credential.key_id.clone(),
        provider_id: credential.provider_id.clone(),
        label: credential.label.clone(),
        enabled: credential.enabled,
        priority: credential.priority,
        key_hint: credential.key_hint.clone(),
        key_source: credential.key_source.clone(),
        limits: credential.limits,
        windows: health.windows,
        health,
        source: credential.source,
    }
}

fn provider_view(state: &AppState, provider: &Provider) -> ProviderView {
    let now = now_ms();
    let credentials: Vec<CredentialView> = provider
        .credentials
        .iter()
        .map(|c| credential_view(state, c, now))
        .collect();
    let default = provider
        .credentials
        .iter()
        .find(|c| c.id == DEFAULT_CREDENTIAL);
    ProviderView {
        id: provider.id.clone(),
        url: provider.url.clone(),
        protocol: provider.protocol.as_str().to_owned(),
        discovery: provider.discovery.as_str().to_owned(),
        models: provider.models(),
        declared_models: provider.declared_models.clone(),
        discovered_at_ms: provider.discovered.refreshed_at,
        discovery_error: provider.discovered.error.clone(),
        peers: provider.discovered.peers.clone(),
        has_api_key: default.is_some_and(|c| !matches!(c.key, ProviderKey::None)),
        key_source: default.and_then(|c| c.key_source.clone()),
        key_hint: default.and_then(|c| c.key_hint.clone()),
        key_error: default.and_then(|c| match &c.key {
            ProviderKey::Unavailable(reason) => Some(reason.clone()),
            ProviderKey::None | ProviderKey::Ready(_) | ProviderKey::Account(_) => None,
        }),
        credentials,
        source: provider.source,
        created_at: provider.created_at,
        updated_at: provider.updated_at,
        keys_cleared: None,
        notice: None,
    }
}

async fn list_providers(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let snapshot = state.registry.snapshot();
    let views: Vec<_> = snapshot
        .providers()
        .into_iter()
        .map(|p| provider_view(&state, p))
        .collect();
    Ok(axum::Json(views))
}

fn find_provider(state: &AppState, id: &str) -> ApiResult<Arc<Provider>> {
    state
        .registry
        .snapshot()
        .provider(id)
        .cloned()
        .ok_or_else(|| not_found(format!("provider `{id}`")))
}

/// Refuses to change what the config file declares: the file would win at the next reload.
fn writable(source: Source, what: &str) -> ApiResult<()> {
    match source {
        Source::Database => Ok(()),
        Source::Config => Err(Rendered::management(GatewayError::Conflict(format!(
            "{what} is defined in the config file; edit the file instead (it is reloaded when \
             it changes)"
        )))),
    }
}

async fn get_provider(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    Ok(axum::Json(provider_view(&state, &provider)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderInput {
    url: String,
    #[serde(default)]
    protocol: Option<String>,
    /// The key of credential `default`. Absent or "": keep it. null: remove the credential.
    /// `env:NAME`: a reference.
    #[serde(default, deserialize_with = "present_or_null")]
    api_key: Option<Option<String>>,
    /// `auto`, `ocf` or `off`; absent keeps the current setting.
    #[serde(default)]
    discovery: Option<String>,
    /// Models this provider serves, in addition to discovered ones; absent keeps the list.
    #[serde(default)]
    models: Option<Vec<String>>,
}

/// Tells an absent field (outer `None`) from an explicit `null` (`Some(None)`).
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// An upstream URL from the API: http(s) with a host and without user info (a password in the
/// URL would be shown back by every `GET`).
fn valid_url(field: &str, url: &str) -> Result<(), Rendered> {
    crate::config::destination::parse_http(field, url, "https://api.openai.com/v1")
        .map(drop)
        .map_err(|e| invalid(e.to_string()))
}

/// The variables an `env:NAME` key given through this API may name (see [`EnvAllowlist`]).
fn env_allowlist(state: &AppState) -> EnvAllowlist {
    EnvAllowlist::new(
        state
            .settings
            .allowed_env
            .iter()
            .cloned()
            .chain(state.registry.config_allowed_env()),
    )
    .reserving(crate::config::setting_variables())
}

/// The credential a provider's single `api_key` field manages.
const DEFAULT_CREDENTIAL: &str = "default";

/// The secret-store entry of a credential's key.
fn key_entry(provider: &str, credential: &str) -> String {
    format!("credential:{provider}/{credential}")
}

/// Checks a key given through the API before anything is stored: an `env:NAME` reference must
/// name a variable the user allowed.
fn check_key(allowed: &EnvAllowlist, key: &str) -> ApiResult<()> {
    match key.strip_prefix(SecretRef::ENV_PREFIX) {
        Some(var) => allowed.check(var).map_err(|e| invalid(e.to_string())),
        None => Ok(()),
    }
}

/// Stores `key` for a credential: an `env:NAME` reference as is (checked by [`check_key`]),
/// anything else in the secret store. Returns the reference and the hint to keep in the database.
fn store_key(
    secrets: &dyn SecretStore,
    provider: &str,
    credential: &str,
    key: &str,
) -> Result<(String, Option<String>), GatewayError> {
    if let Some(var) = key.strip_prefix(SecretRef::ENV_PREFIX) {
        return Ok((SecretRef::Env(var.to_owned()).to_db(), None));
    }
    let secret = Secret::new(key.trim());
    let entry = key_entry(provider, credential);
    secrets.set(&entry, &secret)?;
    Ok((SecretRef::Stored(entry).to_db(), Some(secret.hint())))
}

/// Deletes a credential's key from the secret store when it is kept there.
fn forget_key(secrets: &dyn SecretStore, row: &CredentialRow) -> Result<(), GatewayError> {
    if let Some(SecretRef::Stored(entry)) = row.key_ref.as_deref().and_then(SecretRef::parse) {
        secrets.delete(&entry)?;
    }
    Ok(())
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
    if let Some(existing) = state.registry.snapshot().provider(&id) {
        writable(existing.source, &format!("provider `{id}`"))?;
    }
    let input: ProviderInput = parse(&body)?;
    valid_url("url", &input.url)?;
    if let Some(Some(key)) = &input.api_key {
        check_key(&env_allowlist(&state), key)?;
    }
    let protocol = match input.protocol.as_deref() {
        None | Some("") => Protocol::OpenAiChat,
        Some(p) => p.parse::<Protocol>().map_err(|e| invalid(e.to_string()))?,
    };
    let discovery = input
        .discovery
        .as_deref()
        .map(|kind| kind.parse::<DiscoveryKind>())
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;

    let db = state.db.clone();
    let secrets = state.secrets.clone();
    let saved_id = id.clone();
    let (moved, cleared) = blocking(move || {
        let existing = db.providers()?.into_iter().find(|p| p.id == id);
        let now = now_ms();
        let moved = existing
            .as_ref()
            .filter(|old| !crate::config::destination::same_origin(&old.url, &input.url))
            .map(|old| (old.url.clone(), input.url.clone()));
        let new_default_key = matches!(&input.api_key, Some(Some(key)) if !key.is_empty());
        let row = ProviderRow {
            url: input.url.trim_end_matches('/').to_owned(),
            protocol,
            discovery: discovery
                .or_else(|| existing.as_ref().map(|p| p.discovery))
                .unwrap_or_default(),
            models: input
                .models
                .or_else(|| existing.as_ref().map(|p| p.models.clone()))
                .unwrap_or_default(),
            created_at: existing.as_ref().map_or(now, |p| p.created_at),
            updated_at: now,
            id,
        };
        db.upsert_provider(&row)?;
        // The keys were given for the old host: they do not follow the provider to a new one
        // (whoever holds the management token could otherwise move a provider to a server of
        // theirs and have its key sent there). The default key given in this same request is
        // for the new host and replaces its old one below.
        let mut cleared = Vec::new();
        if moved.is_some() {
            for credential in db.credentials()? {
                let replaced = new_default_key && credential.id == DEFAULT_CREDENTIAL;
                let is_account = credential
                    .key_ref
                    .as_deref()
                    .and_then(crate::accounts::account_of_key_ref)
                    .is_some();
                if credential.provider_id != row.id
                    || credential.key_ref.is_none()
                    || is_account
                    || replaced
                {
                    continue;
                }
                forget_key(&*secrets, &credential)?;
                cleared.push(format!("{}/{}", credential.provider_id, credential.id));
                db.upsert_credential(&CredentialRow {
                    key_ref: None,
                    key_hint: None,
                    ..credential
                })?;
            }
        }
        let current = db
            .credentials()?
            .into_iter()
            .find(|c| c.provider_id == row.id && c.id == DEFAULT_CREDENTIAL);
        match input.api_key {
            None => {}
            Some(Some(key)) if key.is_empty() => {}
            Some(None) => {
                if let Some(current) = current {
                    forget_key(&*secrets, &current)?;
                    db.delete_credential(&row.id, DEFAULT_CREDENTIAL)?;
                }
            }
            Some(Some(key)) => {
                let (key_ref, key_hint) = store_key(&*secrets, &row.id, DEFAULT_CREDENTIAL, &key)?;
                let credential = match current {
                    Some(current) => CredentialRow {
                        key_ref: Some(key_ref),
                        key_hint,
                        ..current
                    },
                    None => CredentialRow {
                        provider_id: row.id,
                        id: DEFAULT_CREDENTIAL.into(),
                        label: DEFAULT_CREDENTIAL.into(),
                        key_ref: Some(key_ref),
                        key_hint,
                        enabled: true,
                        priority: 0,
                        limits: Limits::default(),
                        created_at: now,
                    },
                };
                db.upsert_credential(&credential)?;
            }
        }
        Ok((moved, cleared))
    })
    .await?;
    for key_id in &cleared {
        // Its rests and failures were the old host's answers.
        state.router.reset(key_id);
    }
    reload(&state).await?;
    tracing::info!(provider = %saved_id, "provider saved");
    if let Some((from, to)) = &moved {
        tracing::warn!(
            provider = %saved_id,
            from = %crate::config::destination::origin(from).unwrap_or_default(),
            to = %crate::config::destination::origin(to).unwrap_or_default(),
            cleared = ?cleared,
            "provider moved to another host; the keys of the old host were cleared"
        );
    }
    state.discover_soon(&saved_id);
    let provider = find_provider(&state, &saved_id)?;
    let mut view = provider_view(&state, &provider);
    if moved.is_some() {
        view.notice = (!cleared.is_empty()).then(|| {
            format!(
                "The URL now points at another host, so the keys given for the old one were \
                 cleared ({}): a key is sent only to the host it was given for. Enter the key \
                 for the new host (api_key here, or PATCH …/credentials/<id> with api_key).",
                cleared.join(", ")
            )
        });
        view.keys_cleared = Some(cleared);
    }
    Ok(axum::Json(view))
}

async fn delete_provider(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    if let Some(existing) = state.registry.snapshot().provider(&id) {
        writable(existing.source, &format!("provider `{id}`"))?;
    }
    // A subscription provider's keys are logins: deleting it logs them out, so no tokens are
    // left behind in the keychain.
    if account_views::log_out_accounts(&state, |a| a.provider_id == id).await? {
        reload(&state).await?;
        let gone = state.registry.snapshot().provider(&id).is_none();
        if gone {
            tracing::info!(provider = %id, "provider deleted with its accounts");
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    let db = state.db.clone();
    let secrets = state.secrets.clone();
    let wanted = id.clone();
    let existed = blocking(move || {
        let pool: Vec<CredentialRow> = db
            .credentials()?
            .into_iter()
            .filter(|c| c.provider_id == wanted)
            .collect();
        let existed = db.delete_provider(&wanted)?;
        if existed {
            for credential in &pool {
                forget_key(&*secrets, credential)?;
            }
        }
        Ok(existed)
    })
    .await?;
    if !existed {
        return Err(not_found(format!("provider `{id}`")));
    }
    reload(&state).await?;
    tracing::info!(provider = %id, "provider deleted");
    Ok(StatusCode::NO_CONTENT)
}

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

async fn list_adapters(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
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

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

async fn create_adapter(
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

async fn delete_adapter(
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

async fn get_settings(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(settings_view(&state).await?))
}

async fn put_settings(State(state): State<AppState>, body: Bytes) -> ApiResult<impl IntoResponse> {
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

fn find_credential(provider: &Provider, id: &str) -> ApiResult<Arc<Credential>> {
    provider
        .credentials
        .iter()
        .find(|c| c.id == id)
        .cloned()
        .ok_or_else(|| not_found(format!("credential `{id}` of provider `{}`", provider.id)))
}

async fn list_credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    Ok(axum::Json(provider_view(&state, &provider).credentials))
}

async fn get_credential(
    State(state): State<AppState>,
    Path((id, credential)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    let credential = find_credential(&provider, &credential)?;
    Ok(axum::Json(credential_view(&state, &credential, now_ms())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialInput {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    label: Option<String>,
    /// The key, or `env:NAME`. Absent on update: keep it. null: keyless.
    #[serde(default, deserialize_with = "present_or_null")]
    api_key: Option<Option<String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    priority: Option<u32>,
    /// Each limit: a number sets it, null removes it, absent keeps it.
    #[serde(default, deserialize_with = "present_or_null_u64")]
    max_request_min: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null_u64")]
    max_request_day: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null_u64")]
    max_token_min: Option<Option<u64>>,
}

fn present_or_null_u64<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(Some)
}

fn limit_u32(
    name: &str,
    value: Option<Option<u64>>,
    current: Option<u32>,
) -> ApiResult<Option<u32>> {
    match value {
        None => Ok(current),
        Some(None) => Ok(None),
        Some(Some(n)) => u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| invalid(format!("`{name}` must be between 1 and {}", u32::MAX))),
    }
}

impl CredentialInput {
    /// The stored row after applying this input to `current` (or to a new credential).
    fn apply(self, current: CredentialRow) -> ApiResult<(CredentialRow, Option<Option<String>>)> {
        let limits = Limits {
            max_request_min: limit_u32(
                "max_request_min",
                self.max_request_min,
                current.limits.max_request_min,
            )?,
            max_request_day: limit_u32(
                "max_request_day",
                self.max_request_day,
                current.limits.max_request_day,
            )?,
            max_token_min: match self.max_token_min {
                None => current.limits.max_token_min,
                Some(None) => None,
                Some(Some(0)) => return Err(invalid("`max_token_min` must be at least 1")),
                Some(Some(n)) => Some(n),
            },
        };
        let row = CredentialRow {
            label: non_empty(self.label).unwrap_or(current.label),
            enabled: self.enabled.unwrap_or(current.enabled),
            priority: self.priority.unwrap_or(current.priority),
            limits,
            ..current
        };
        Ok((row, self.api_key))
    }
}

/// Writes a credential (and its key) and returns its view once the registry has it.
async fn save_credential(
    state: &AppState,
    row: CredentialRow,
    key: Option<Option<String>>,
) -> ApiResult<CredentialView> {
    let db = state.db.clone();
    let secrets = state.secrets.clone();
    let (provider_id, credential_id) = (row.provider_id.clone(), row.id.clone());
    let key_changed = matches!(&key, Some(Some(k)) if !k.is_empty()) || matches!(key, Some(None));
    blocking(move || {
        let mut row = row;
        match key {
            None => {}
            Some(Some(key)) if key.is_empty() => {}
            Some(None) => {
                forget_key(&*secrets, &row)?;
                row.key_ref = None;
                row.key_hint = None;
            }
            Some(Some(key)) => {
                let (key_ref, key_hint) = store_key(&*secrets, &row.provider_id, &row.id, &key)?;
                row.key_ref = Some(key_ref);
                row.key_hint = key_hint;
            }
        }
        db.upsert_credential(&row).map_err(Into::into)
    })
    .await?;
    if key_changed {
        // A new key starts afresh: an auth failure or cooldown was the old key's.
        state
            .router
            .reset(&format!("{provider_id}/{credential_id}"));
    }
    reload(state).await?;
    tracing::info!(credential = %format!("{provider_id}/{credential_id}"), "credential saved");
    let provider = find_provider(state, &provider_id)?;
    let credential = find_credential(&provider, &credential_id)?;
    Ok(credential_view(state, &credential, now_ms()))
}

async fn create_credential(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    writable(provider.source, &format!("provider `{id}`"))?;
    let input: CredentialInput = parse(&body)?;
    let taken: Vec<&str> = provider
        .credentials
        .iter()
        .filter(|c| !c.implicit)
        .map(|c| c.id.as_str())
        .collect();
    let credential_id = match non_empty(input.id.clone()) {
        Some(given) => {
            if !valid_id(&given) {
                return Err(invalid(
                    "credential id must be 1–64 characters of letters, digits, `.`, `_` or `-`",
                ));
            }
            if taken.contains(&given.as_str()) {
                return Err(Rendered::management(GatewayError::Conflict(format!(
                    "provider `{id}` already has a credential `{given}`; PATCH it instead"
                ))));
            }
            given
        }
        None => (1..)
            .map(|n| format!("k{n}"))
            .find(|candidate| !taken.contains(&candidate.as_str()))
            .unwrap_or_else(|| "k".into()),
    };
    let fresh = CredentialRow {
        provider_id: id.clone(),
        label: credential_id.clone(),
        id: credential_id,
        key_ref: None,
        key_hint: None,
        enabled: true,
        priority: 0,
        limits: Limits::default(),
        created_at: now_ms(),
    };
    let (row, key) = input.apply(fresh)?;
    if let Some(Some(key)) = &key {
        check_key(&env_allowlist(&state), key)?;
    }
    let view = save_credential(&state, row, key).await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn stored_credential(state: &AppState, provider: &str, id: &str) -> ApiResult<CredentialRow> {
    let db = state.db.clone();
    let (p, c) = (provider.to_owned(), id.to_owned());
    blocking(move || {
        Ok(db
            .credentials()?
            .into_iter()
            .find(|r| r.provider_id == p && r.id == c))
    })
    .await?
    .ok_or_else(|| not_found(format!("credential `{id}` of provider `{provider}`")))
}

async fn update_credential(
    State(state): State<AppState>,
    Path((id, credential)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    writable(provider.source, &format!("provider `{id}`"))?;
    let input: CredentialInput = parse(&body)?;
    if input.id.as_deref().is_some_and(|given| given != credential) {
        return Err(invalid(
            "a credential's id cannot change; create a new one instead",
        ));
    }
    let current = stored_credential(&state, &id, &credential).await?;
    let (row, key) = input.apply(current)?;
    if let Some(account) = row
        .key_ref
        .as_deref()
        .and_then(crate::accounts::account_of_key_ref)
        && key.is_some()
    {
        return Err(Rendered::management(GatewayError::Conflict(format!(
            "credential `{credential}` is the subscription login `{account}`, which has no key; \
             log in again from the Accounts page (POST /api/logins with `relogin`)"
        ))));
    }
    if let Some(Some(key)) = &key {
        check_key(&env_allowlist(&state), key)?;
    }
    Ok(axum::Json(save_credential(&state, row, key).await?))
}

async fn delete_credential(
    State(state): State<AppState>,
    Path((id, credential)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    writable(provider.source, &format!("provider `{id}`"))?;
    let current = stored_credential(&state, &id, &credential).await?;
    if account_views::log_out_accounts(&state, |a| a.provider_id == id && a.id == credential)
        .await?
    {
        reload(&state).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let db = state.db.clone();
    let secrets = state.secrets.clone();
    blocking(move || {
        forget_key(&*secrets, &current)?;
        db.delete_credential(&current.provider_id, &current.id)?;
        Ok(())
    })
    .await?;
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reset_credential(
    State(state): State<AppState>,
    Path((id, credential)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    let credential = find_credential(&provider, &credential)?;
    state.router.reset(&credential.key_id);
    tracing::info!(credential = %credential.key_id, "credential cooldown cleared");
    Ok(axum::Json(credential_view(&state, &credential, now_ms())))
}

async fn discover_provider(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    find_provider(&state, &id)?;
    state.discover(&id).await.map_err(Rendered::management)?;
    let provider = find_provider(&state, &id)?;
    Ok(axum::Json(json!({
        "models": provider.models(),
        "discovered": provider.discovered.models,
        "peers": provider.discovered.peers,
        "refreshed_at_ms": provider.discovered.refreshed_at,
        "error": provider.discovered.error,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestInput {
    #[serde(default)]
    model: Option<String>,
    /// The credential's id (or `<provider>/<id>`); absent: the first enabled one.
    #[serde(default)]
    credential: Option<String>,
}

/// `POST /api/providers/{id}/test`: one small real call (see `provider_test`). HTTP 200
/// whenever the call was made, whatever the provider answered.
async fn test_provider(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    let input: TestInput = if body.iter().all(u8::is_ascii_whitespace) {
        TestInput::default()
    } else {
        parse(&body)?
    };
    let chosen = provider_check::choose(
        &provider,
        input.model.as_deref(),
        input.credential.as_deref(),
    );
    let (credential, model) = chosen.map_err(Rendered::management)?;
    let report = provider_check::run(
        &state.http,
        Some(&state.accounts),
        &provider,
        &credential,
        &model,
        provider_check::TIMEOUT,
    )
    .await
    .map_err(Rendered::management)?;
    tracing::info!(
        provider = %id,
        credential = %report.credential,
        model = %report.model,
        ok = report.ok,
        status = ?report.status,
        "provider tested"
    );
    Ok(axum::Json(report))
}

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

async fn list_routes(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = state.registry.snapshot();
    axum::Json(
        snapshot
            .routes()
            .into_iter()
            .map(|r| route_view(r))
            .collect::<Vec<_>>(),
    )
}

async fn get_route(
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

async fn put_route(
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

async fn delete_route(
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
