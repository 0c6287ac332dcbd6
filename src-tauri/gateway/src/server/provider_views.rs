//! The management API's providers and their credentials (`/api/providers/…`): the views the UI
//! lists, creating, changing and deleting them, a credential's reset, a provider's model
//! discovery and test call (`routing::provider_check`).
//!
//! Provider keys are write-only: they go to the secret store (or are kept as `env:NAME`
//! references, checked against the allowlist) and only a hint ever comes back.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;

use std::sync::Arc;

use crate::clock::now_ms;
use crate::error::{GatewayError, Rendered};
use crate::routing::discovery::DiscoveryKind;
use crate::routing::provider_check;
use crate::routing::registry::{Credential, Provider, ProviderKey, Source, valid_id};
use crate::routing::{Health, Limits, Windows};
use crate::server::account_views;
use crate::state::AppState;
use crate::store::secrets::{EnvAllowlist, Secret, SecretRef, SecretStore};
use crate::store::{CredentialRow, ProviderRow};
use flexiproxy_protocol::Protocol;

use super::management::{
    ApiResult, blocking, invalid, non_empty, not_found, parse, reload, valid_url, writable,
};

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

pub(super) async fn list_providers(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
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

pub(super) async fn get_provider(
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

pub(super) async fn put_provider(
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

pub(super) async fn delete_provider(
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

fn find_credential(provider: &Provider, id: &str) -> ApiResult<Arc<Credential>> {
    provider
        .credentials
        .iter()
        .find(|c| c.id == id)
        .cloned()
        .ok_or_else(|| not_found(format!("credential `{id}` of provider `{}`", provider.id)))
}

pub(super) async fn list_credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    Ok(axum::Json(provider_view(&state, &provider).credentials))
}

pub(super) async fn get_credential(
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

pub(super) async fn create_credential(
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

pub(super) async fn update_credential(
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

pub(super) async fn delete_credential(
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

pub(super) async fn reset_credential(
    State(state): State<AppState>,
    Path((id, credential)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let provider = find_provider(&state, &id)?;
    let credential = find_credential(&provider, &credential)?;
    state.router.reset(&credential.key_id);
    tracing::info!(credential = %credential.key_id, "credential cooldown cleared");
    Ok(axum::Json(credential_view(&state, &credential, now_ms())))
}

pub(super) async fn discover_provider(
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
pub(super) async fn test_provider(
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
