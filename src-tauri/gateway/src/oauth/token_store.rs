//! The tokens of logged-in accounts: one JSON secret per account in the keychain (through
//! [`SecretStore`](crate::secrets::SecretStore)), refreshed with the refresh-token grant, one
//! refresh at a time per account.
//!
//! The flows ([`super::pkce_flow`], [`super::device_flow`]) produce a [`TokenSet`]; the caller
//! saves it here under the account's id. Request paths ask [`TokenStore::fresh`] for a token
//! that is good for a while yet; a 401 upstream calls [`TokenStore::refresh`]. A refresh the
//! provider refuses comes back as [`OAuthError::NeedsLogin`], which the caller shows as "log in
//! again" rather than failing requests silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use oauth2::{RefreshToken, TokenResponse as _};
use serde::{Deserialize, Serialize};

use super::{Endpoints, OAuthError, ProviderTokenResponse, http, now_ms, token_error};
use crate::secrets::{Secret, SharedSecretStore};

/// How long before expiry a token counts as due for refresh: long enough that a request
/// started now does not outlive its token.
pub const REFRESH_AHEAD_MS: u64 = 5 * 60 * 1000;

/// What the provider said about the account, for the accounts list. Not secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The provider's account id (ChatGPT account id, Anthropic account uuid, OIDC subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The subscription plan, where the provider names it (ChatGPT's `chatgpt_plan_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Qwen's per-account API host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

impl AccountFacts {
    /// Keeps what `self` knows and takes what `newer` adds or changes.
    fn merged(self, newer: Self) -> Self {
        Self {
            email: newer.email.or(self.email),
            account_id: newer.account_id.or(self.account_id),
            plan: newer.plan.or(self.plan),
            resource_url: newer.resource_url.or(self.resource_url),
        }
    }
}

/// One account's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub access: Secret,
    pub refresh: Option<Secret>,
    /// When the access token expires, in ms since the Unix epoch; `None` when the provider did
    /// not say (GitHub's tokens do not expire).
    pub expires_at_ms: Option<u64>,
    pub facts: AccountFacts,
}

impl TokenSet {
    /// Whether the access token expires within [`REFRESH_AHEAD_MS`] of `now_ms` (or already has).
    pub fn needs_refresh(&self, now_ms: u64) -> bool {
        self.expires_at_ms
            .is_some_and(|at| at <= now_ms.saturating_add(REFRESH_AHEAD_MS))
    }

    /// The tokens of a token-endpoint answer received at `now_ms`.
    pub(crate) fn from_response(response: &ProviderTokenResponse, now_ms: u64) -> Self {
        let extra = response.extra_fields();
        let mut facts = extra
            .id_token
            .as_deref()
            .map(facts_from_id_token)
            .unwrap_or_default();
        if let Some(account) = &extra.account {
            let text = |key: &str| account.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            facts.email = text("email_address").or(facts.email);
            facts.account_id = text("uuid").or(facts.account_id);
        }
        facts.resource_url = extra.resource_url.clone();
        Self {
            access: Secret::new(response.access_token().secret().clone()),
            refresh: response
                .refresh_token()
                .map(|r| Secret::new(r.secret().clone())),
            expires_at_ms: response
                .expires_in()
                .map(|d| now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
            facts,
        }
    }
}

/// Reads email, account and plan from an ID token's claims. The signature is not checked: the
/// token came straight from the provider's token endpoint over TLS, and the facts are only shown.
fn facts_from_id_token(id_token: &str) -> AccountFacts {
    let claims = id_token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let Some(claims) = claims else {
        return AccountFacts::default();
    };
    let text = |value: &serde_json::Value, key: &str| {
        value.get(key).and_then(|v| v.as_str()).map(str::to_owned)
    };
    let openai = claims.get("https://api.openai.com/auth");
    AccountFacts {
        email: text(&claims, "email"),
        account_id: openai
            .and_then(|auth| text(auth, "chatgpt_account_id"))
            .or_else(|| text(&claims, "sub")),
        plan: openai.and_then(|auth| text(auth, "chatgpt_plan_type")),
        resource_url: None,
    }
}

/// The keychain form of a [`TokenSet`]; exists only while being written or read.
#[derive(Serialize, Deserialize)]
struct Stored {
    access: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
    #[serde(default)]
    facts: AccountFacts,
}

type RefreshResult = Result<TokenSet, OAuthError>;

/// Keeps and refreshes the tokens of every account.
#[derive(Clone)]
pub struct TokenStore {
    secrets: SharedSecretStore,
    http: reqwest::Client,
    /// The refresh under way per account: later callers await the same one.
    in_flight: Arc<Mutex<HashMap<String, Shared<BoxFuture<'static, RefreshResult>>>>>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("secrets", &self.secrets.kind())
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    pub fn new(secrets: SharedSecretStore, http: reqwest::Client) -> Self {
        Self {
            secrets,
            http,
            in_flight: Arc::default(),
        }
    }

    /// The secret-store entry of an account's tokens.
    pub fn entry_name(account: &str) -> String {
        format!("oauth:{account}")
    }

    /// The account's tokens, or `None` when it is not logged in.
    pub async fn load(&self, account: &str) -> Result<Option<TokenSet>, OAuthError> {
        load(&self.secrets, account).await
    }

    /// Stores the account's tokens, replacing any before.
    pub async fn save(&self, account: &str, tokens: &TokenSet) -> Result<(), OAuthError> {
        save(&self.secrets, account, tokens).await
    }

    /// Logging out: the tokens are deleted from the keychain.
    pub async fn delete(&self, account: &str) -> Result<(), OAuthError> {
        let secrets = self.secrets.clone();
        let name = Self::entry_name(account);
        blocking(move || secrets.delete(&name)).await
    }

    /// Tokens good for at least [`REFRESH_AHEAD_MS`] from `now_ms`: the stored ones, or
    /// refreshed ones when they are due.
    pub async fn fresh(
        &self,
        account: &str,
        endpoints: &Endpoints,
        now_ms: u64,
    ) -> Result<TokenSet, OAuthError> {
        match self.load(account).await? {
            Some(tokens) if !tokens.needs_refresh(now_ms) => Ok(tokens),
            Some(_) => self.refresh(account, endpoints).await,
            None => Err(not_logged_in(account)),
        }
    }

    /// Refreshes the account's tokens now (e.g. after a 401) and stores the result. While one
    /// refresh of an account is under way, other callers get its result instead of starting
    /// another: providers that rotate refresh tokens revoke the old one on first use, so a
    /// second refresh with it would fail and log the account out.
    pub async fn refresh(&self, account: &str, endpoints: &Endpoints) -> RefreshResult {
        let shared = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            in_flight
                .entry(account.to_owned())
                .or_insert_with(|| {
                    refresh_once(
                        self.secrets.clone(),
                        self.http.clone(),
                        account.to_owned(),
                        endpoints.clone(),
                    )
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let result = shared.clone().await;
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(account)
            .is_some_and(|current| current.ptr_eq(&shared))
        {
            in_flight.remove(account);
        }
        result
    }
}

fn not_logged_in(account: &str) -> OAuthError {
    OAuthError::NeedsLogin {
        account: account.to_owned(),
        detail: "no tokens are stored for it".to_owned(),
    }
}

async fn refresh_once(
    secrets: SharedSecretStore,
    client: reqwest::Client,
    account: String,
    endpoints: Endpoints,
) -> RefreshResult {
    let current = load(&secrets, &account)
        .await?
        .ok_or_else(|| not_logged_in(&account))?;
    let Some(refresh) = current.refresh.clone() else {
        return Err(OAuthError::NeedsLogin {
            account,
            detail: "the provider gave no refresh token".to_owned(),
        });
    };
    let oauth = endpoints.client()?;
    let body = endpoints.token_body;
    let send = |request| http::send(client.clone(), body, request);
    let token = RefreshToken::new(refresh.expose().to_owned());
    let response = oauth
        .exchange_refresh_token(&token)
        .request_async(&send)
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            // Only the provider's own refusal means the login is gone; an unreadable answer
            // (a proxy's error page) or a provider outage is worth retrying later.
            let refused = match &error {
                oauth2::RequestTokenError::ServerResponse(answer) => !matches!(
                    answer.error(),
                    oauth2::basic::BasicErrorResponseType::Extension(code)
                        if code == "server_error" || code == "temporarily_unavailable"
                ),
                _ => false,
            };
            return Err(match token_error(error) {
                OAuthError::Provider { error, description } if refused => OAuthError::NeedsLogin {
                    account,
                    detail: match description {
                        Some(d) => format!("{error}: {d}"),
                        None => error,
                    },
                },
                OAuthError::Denied { detail } => OAuthError::NeedsLogin { account, detail },
                other => other,
            });
        }
    };
    let mut fresh = TokenSet::from_response(&response, now_ms());
    // Providers that do not rotate refresh tokens leave it out of the answer: keep the old one.
    if fresh.refresh.is_none() {
        fresh.refresh = Some(refresh);
    }
    fresh.facts = current.facts.merged(fresh.facts);
    save(&secrets, &account, &fresh).await?;
    Ok(fresh)
}

async fn load(secrets: &SharedSecretStore, account: &str) -> Result<Option<TokenSet>, OAuthError> {
    let store = secrets.clone();
    let name = TokenStore::entry_name(account);
    let Some(secret) = blocking(move || store.get(&name)).await? else {
        return Ok(None);
    };
    let stored: Stored =
        serde_json::from_str(secret.expose()).map_err(|e| OAuthError::Storage {
            // serde's message names the place, never the content of the secret.
            detail: format!("the stored tokens of `{account}` are unreadable ({e}); log in again"),
        })?;
    Ok(Some(TokenSet {
        access: Secret::new(stored.access),
        refresh: stored.refresh.map(Secret::new),
        expires_at_ms: stored.expires_at_ms,
        facts: stored.facts,
    }))
}

async fn save(
    secrets: &SharedSecretStore,
    account: &str,
    tokens: &TokenSet,
) -> Result<(), OAuthError> {
    let stored = Stored {
        access: tokens.access.expose().to_owned(),
        refresh: tokens.refresh.as_ref().map(|r| r.expose().to_owned()),
        expires_at_ms: tokens.expires_at_ms,
        facts: tokens.facts.clone(),
    };
    let json = serde_json::to_string(&stored).map_err(|e| OAuthError::Storage {
        detail: e.to_string(),
    })?;
    let secret = Secret::new(json);
    let store = secrets.clone();
    let name = TokenStore::entry_name(account);
    blocking(move || store.set(&name, &secret)).await
}

/// Runs a secret-store call off the async threads (the keychain talks to D-Bus).
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, crate::secrets::SecretError> + Send + 'static,
) -> Result<T, OAuthError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| OAuthError::Storage {
            detail: e.to_string(),
        })?
        .map_err(|e| OAuthError::Storage {
            detail: e.to_string(),
        })
}
