//! The management API of subscription accounts and their logins: `/api/accounts` (list,
//! refresh, log out, endpoints) and `/api/logins` (start, follow, paste the callback, cancel).
//!
//! Accounts live in `accounts`, the logins under way in `logins`; this module parses, maps
//! their errors to statuses (a login that is gone is 409, a provider failing 502) and renders
//! what the window shows. No answer ever carries a token. Merged into `management::router`,
//! behind its token guard.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::management::{ApiResult, blocking, parse};
use crate::accounts::logins::{LoginError, LoginView, Status};
use crate::accounts::oauth::{self, AccountKind, Flow, OAuthError, token_store};
use crate::accounts::subscription::{self, QuotaWindow};
use crate::accounts::{AccountError, EndpointSettings};
use crate::error::{GatewayError, Rendered};
use crate::state::AppState;
use crate::store::AccountRow;

/// How long `POST /api/logins/{id}/callback` waits for the code exchange and the account's
/// set-up before it answers with the login as it stands.
const PASTE_OUTCOME_WAIT: Duration = Duration::from_secs(60);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts", get(list))
        .route("/accounts/endpoints", get(get_endpoints).put(put_endpoints))
        .route("/accounts/{id}", axum::routing::delete(log_out))
        .route("/accounts/{id}/refresh", post(refresh))
        .route("/logins", post(start_login))
        .route("/logins/{id}", get(get_login).delete(cancel_login))
        .route("/logins/{id}/callback", post(paste_callback))
}

/// An account as the window shows it.
#[derive(Debug, Serialize)]
struct AccountView {
    id: String,
    kind: String,
    kind_label: String,
    provider_id: String,
    label: String,
    email: Option<String>,
    account_id: Option<String>,
    plan: Option<String>,
    project: Option<String>,
    created_at: i64,
    refreshed_at: Option<i64>,
    expires_at: Option<i64>,
    /// When the refresher renews the tokens: [`token_store::REFRESH_AHEAD_MS`] before expiry.
    next_refresh_at: Option<i64>,
    last_error: Option<String>,
    needs_login: bool,
    /// "tokens not saved: <keychain error>" while the account's newest tokens (in use) are not
    /// in the keychain yet; the gateway keeps trying. `None` when they are saved.
    tokens_not_saved: Option<String>,
    /// Usage windows the provider reported with its last answer (Codex), else empty.
    quota: Vec<QuotaWindow>,
}

impl AccountView {
    /// The view with what the gateway holds in memory about the account.
    fn live(state: &AppState, row: AccountRow) -> Self {
        let quota = state.accounts.quota(&row.id);
        let tokens_not_saved = state.accounts.unsaved(&row.id);
        Self {
            quota,
            tokens_not_saved,
            ..Self::from(row)
        }
    }
}

impl From<AccountRow> for AccountView {
    fn from(row: AccountRow) -> Self {
        let ahead = token_store::REFRESH_AHEAD_MS;
        let kind_label = AccountKind::from_id(&row.kind)
            .map_or_else(|| row.kind.clone(), |k| k.label().to_owned());
        Self {
            next_refresh_at: row.expires_at.map(|t| t.saturating_sub(ahead)),
            kind_label,
            id: row.id,
            kind: row.kind,
            provider_id: row.provider_id,
            label: row.label,
            email: row.email,
            account_id: row.account_id,
            plan: row.plan,
            project: row.project,
            created_at: row.created_at,
            refreshed_at: row.refreshed_at,
            expires_at: row.expires_at,
            last_error: row.last_error,
            needs_login: row.needs_login,
            tokens_not_saved: None,
            quota: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
struct KindView {
    kind: AccountKind,
    label: &'static str,
    flow: Flow,
}

#[derive(Debug, Serialize)]
struct LoginJson {
    id: String,
    kind: AccountKind,
    flow: Flow,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorize_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification_uri_complete: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<AccountView>,
}

impl From<LoginView> for LoginJson {
    fn from(view: LoginView) -> Self {
        Self {
            id: view.id,
            kind: view.kind,
            flow: view.flow,
            status: view.status,
            authorize_url: view.authorize_url,
            redirect_uri: view.redirect_uri,
            user_code: view.user_code,
            verification_uri: view.verification_uri,
            verification_uri_complete: view.verification_uri_complete,
            expires_at: view.expires_at,
            error: view.error,
            account: view.account.map(AccountView::from),
        }
    }
}

/// `GET`/`PUT /api/accounts/endpoints`: every kind's effective login endpoints and the API
/// roots. A `PUT` may name only some kinds; the others keep theirs.
#[derive(Debug, Serialize)]
struct EndpointsView {
    login: BTreeMap<AccountKind, oauth::Endpoints>,
    api: subscription::Endpoints,
    /// Only in the answer to a `PUT` that moved endpoints: the accounts signed out because their
    /// tokens would now go to another server.
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_out: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsInput {
    #[serde(default)]
    login: BTreeMap<AccountKind, oauth::Endpoints>,
    api: Option<subscription::Endpoints>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginInput {
    kind: AccountKind,
    relogin: Option<String>,
    #[serde(default)]
    paste: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasteInput {
    url: String,
}

/// Logs out the accounts `which` picks (deleting a login's credential or provider through the
/// providers API does this); returns whether there were any. The caller reloads the registry.
pub(super) async fn log_out_accounts(
    state: &AppState,
    which: impl Fn(&AccountRow) -> bool,
) -> ApiResult<bool> {
    let accounts = state.accounts.clone();
    let chosen: Vec<String> = blocking(move || accounts.list().map_err(account_error))
        .await?
        .into_iter()
        .filter(|a| which(a))
        .map(|a| a.id)
        .collect();
    for id in &chosen {
        state
            .accounts
            .log_out(id)
            .await
            .map_err(|e| Rendered::management(account_error(e)))?;
    }
    Ok(!chosen.is_empty())
}

fn account_error(error: AccountError) -> GatewayError {
    if error.needs_login() {
        return GatewayError::Conflict(error.to_string());
    }
    match error {
        AccountError::Unknown(_) => GatewayError::NotFound(error.to_string()),
        AccountError::Store(e) => GatewayError::Store(e),
        AccountError::Secret(e) => GatewayError::Secret(e),
        AccountError::Task(e) => GatewayError::Internal(e.to_string()),
        AccountError::NeedsLogin { .. }
        | AccountError::OAuth { .. }
        | AccountError::Upstream { .. }
        | AccountError::Setup { .. } => GatewayError::Account(error.to_string()),
    }
}

fn login_error(error: &LoginError) -> Rendered {
    let message = error.to_string();
    Rendered::management(match error {
        LoginError::Unknown(_) => GatewayError::NotFound(message),
        LoginError::NoPaste { .. } => GatewayError::Invalid(message),
        LoginError::NotWaiting(_) | LoginError::Finishing(_) => GatewayError::Conflict(message),
        LoginError::OAuth(OAuthError::PortBusy { .. } | OAuthError::Listen { .. }) => {
            GatewayError::Conflict(message)
        }
        LoginError::OAuth(OAuthError::Config { .. }) => GatewayError::Invalid(message),
        LoginError::OAuth(_) => GatewayError::Account(message),
        LoginError::Random(_) => GatewayError::Internal(message),
    })
}

/// `GET /api/accounts`: every account, and the kinds one can log in to.
async fn list(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let accounts = state.accounts.clone();
    let rows = blocking(move || accounts.list().map_err(account_error)).await?;
    let kinds: Vec<KindView> = AccountKind::ALL
        .into_iter()
        .map(|kind| KindView {
            kind,
            label: kind.label(),
            flow: state.accounts.login_endpoints(kind).flow,
        })
        .collect();
    let accounts: Vec<AccountView> = rows
        .into_iter()
        .map(|row| AccountView::live(&state, row))
        .collect();
    Ok(Json(
        serde_json::json!({ "accounts": accounts, "kinds": kinds }),
    ))
}

/// `POST /api/accounts/{id}/refresh`: new tokens now (for Copilot, a new Copilot token).
async fn refresh(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountView>> {
    let row = state
        .accounts
        .refresh(&id)
        .await
        .map_err(|e| Rendered::management(account_error(e)))?;
    Ok(Json(AccountView::live(&state, row)))
}

async fn account_row(state: &AppState, id: &str) -> ApiResult<AccountRow> {
    state
        .accounts
        .account(id)
        .await
        .map_err(|e| Rendered::management(account_error(e)))
}

/// `DELETE /api/accounts/{id}`: logs out; the tokens leave the keychain, the credential and
/// the row go (and the kind's provider with its last account).
async fn log_out(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state
        .accounts
        .log_out(&id)
        .await
        .map_err(|e| Rendered::management(account_error(e)))?;
    state
        .reload_registry()
        .await
        .map_err(Rendered::management)?;
    tracing::info!(account = %id, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

fn endpoints_view(state: &AppState) -> EndpointsView {
    EndpointsView {
        login: AccountKind::ALL
            .into_iter()
            .map(|kind| (kind, state.accounts.login_endpoints(kind)))
            .collect(),
        api: state.accounts.api_endpoints(),
        signed_out: None,
        notice: None,
    }
}

async fn get_endpoints(State(state): State<AppState>) -> Json<EndpointsView> {
    Json(endpoints_view(&state))
}

async fn put_endpoints(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<Json<EndpointsView>> {
    let input: EndpointsInput = parse(&body)?;
    let mut settings: EndpointSettings = state.accounts.endpoint_settings();
    for (kind, endpoints) in input.login {
        if endpoints.flow == Flow::Device && endpoints.device_url.is_none() {
            return Err(Rendered::management(GatewayError::Invalid(format!(
                "login.{kind}: a device login needs a device_url"
            ))));
        }
        settings.login.insert(kind, endpoints);
    }
    if let Some(api) = input.api {
        settings.api = api;
    }
    settings
        .check()
        .map_err(|e| Rendered::management(GatewayError::Invalid(e.to_string())))?;
    // Tokens stay with the server that issued them: whoever holds the management token must
    // not be able to point a kind's token endpoint or API root at a server of theirs and have
    // the refresher (or the next request) hand it the account's tokens. The accounts go first,
    // before any refresh can read the new endpoints.
    let moved = state.accounts.endpoint_settings().kinds_moved(&settings);
    let mut signed_out = Vec::new();
    if !moved.is_empty() {
        let ids: Vec<String> = {
            let accounts = state.accounts.clone();
            let kinds: Vec<&'static str> = moved.iter().map(|k| k.id()).collect();
            blocking(move || accounts.list().map_err(account_error))
                .await?
                .into_iter()
                .filter(|a| kinds.contains(&a.kind.as_str()))
                .map(|a| a.id)
                .collect()
        };
        for id in ids {
            state
                .accounts
                .log_out(&id)
                .await
                .map_err(|e| Rendered::management(account_error(e)))?;
            signed_out.push(id);
        }
    }
    let accounts = state.accounts.clone();
    blocking(move || {
        accounts
            .set_endpoint_settings(settings)
            .map_err(account_error)
    })
    .await?;
    let mut view = endpoints_view(&state);
    if !signed_out.is_empty() {
        state
            .reload_registry()
            .await
            .map_err(Rendered::management)?;
        tracing::warn!(accounts = ?signed_out, "account endpoints moved to another server; their accounts were signed out");
        view.notice = Some(format!(
            "These accounts were signed out, since their tokens would now go to another server: \
             {}. Log in again to use them with the new endpoints.",
            signed_out.join(", ")
        ));
    }
    view.signed_out = Some(signed_out);
    tracing::info!("account endpoints changed");
    Ok(Json(view))
}

/// `POST /api/logins`: starts a login; the answer says what to open or type.
async fn start_login(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let input: LoginInput = parse(&body)?;
    if let Some(id) = &input.relogin {
        let row = account_row(&state, id).await?;
        if row.kind != input.kind.id() {
            return Err(Rendered::management(GatewayError::Invalid(format!(
                "account `{id}` is a {} account; log in to it with kind `{}`",
                row.kind, row.kind
            ))));
        }
    }
    let view = state
        .logins
        .start(&state, input.kind, input.relogin, input.paste)
        .await
        .map_err(|e| login_error(&e))?;
    tracing::info!(login = %view.id, kind = %view.kind, "login started");
    Ok((StatusCode::CREATED, Json(LoginJson::from(view))).into_response())
}

/// `GET /api/logins/{id}`: where the login is (the window polls this).
async fn get_login(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<LoginJson>> {
    let view = state.logins.get(&id).map_err(|e| login_error(&e))?;
    Ok(Json(view.into()))
}

/// `POST /api/logins/{id}/callback`: finishes a browser login with the address the browser
/// ended on; answers with the login done or failed.
async fn paste_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<LoginJson>> {
    let input: PasteInput = parse(&body)?;
    let view = state
        .logins
        .paste(&id, &input.url, PASTE_OUTCOME_WAIT)
        .await
        .map_err(|e| login_error(&e))?;
    Ok(Json(view.into()))
}

/// `DELETE /api/logins/{id}`: cancels a waiting login (or forgets a finished one).
async fn cancel_login(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.logins.cancel(&id).map_err(|e| login_error(&e))?;
    Ok(StatusCode::NO_CONTENT)
}
