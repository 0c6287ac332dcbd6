//! The subscription accounts the gateway serves requests with: the bridge between a finished
//! login (`oauth`), the request path (`proxy`, through `subscription`'s shaping) and what the
//! window shows about each account's health.
//!
//! A logged-in account is a credential like an API key: it sits in the pool of its kind's
//! provider (`claude-account`, `codex-account`, …, created with the first login of that kind),
//! with the key reference `oauth:<account id>`, so pools, strategies, cooldowns and failover
//! apply to it unchanged. Its tokens are one secret in the keychain (`oauth::TokenStore`), read
//! once and kept in memory; the `accounts` table (`store`) holds what is shown: label, plan,
//! project, when the tokens were refreshed and expire, the last error, and whether the login is
//! gone and the user must log in again.
//!
//! Tokens are refreshed ahead of expiry by [`Accounts::run_refresher`] (one task in the
//! gateway), on demand when a request finds them due, and after an upstream 401
//! ([`Accounts::rejected`]); `TokenStore` makes that one refresh at a time per account, in a
//! task of its own, and the bookkeeping after it (the row, iFlow's key) runs in a spawned task
//! too: a client that hangs up mid-refresh cannot lose the rotated tokens or leave the row
//! behind. A refresh the provider refuses marks the account `needs_login`, which the UI and
//! tray show; new tokens the keychain refused are in use and shown as not saved
//! ([`Accounts::unsaved`]) while the save is tried again.
//!
//! Every call besides the model requests (token endpoints, profile and user info, the Copilot
//! mint, Code Assist set-up) goes through one [`SideHttp`]: no redirects, a time limit per call
//! and a cap per answer. No lock here is held across one of those calls.
//!
//! Every endpoint (login and API) is a setting with the public default
//! ([`EndpointSettings`]), so tests and users behind a proxy can point it elsewhere.

pub mod logins;
pub mod oauth;
pub(crate) mod single_flight;
pub mod subscription;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::oauth::{
    AccountKind, OAuthError, SideHttp, TokenSet, TokenStore, token_store,
};
use crate::accounts::subscription::{copilot::CopilotTokens, gemini_cli};
use crate::blocking::{self, TaskFailed};
use crate::clock::now_ms;
use crate::config::destination::{
    UrlRefusal, check_account_endpoint, check_loopback_host, same_origin,
};
use crate::routing::discovery::DiscoveryKind;
use crate::store::secrets::{Secret, SecretError, SharedSecretStore};
use crate::store::{AccountRow, CredentialRow, ProviderRow, Storage, StoreError};

/// The settings key of [`EndpointSettings`] (JSON).
pub const ENDPOINTS_SETTING: &str = "account_endpoints";

/// The prefix of a credential's key reference that names an account instead of a key.
pub const KEY_REF_PREFIX: &str = "oauth:";

/// How long the refresher waits after a refresh that failed for a reason other than a refused
/// login (the network, the provider's 5xx) before it tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);
/// The longest the refresher sleeps without looking again, so a clock change or a resume from
/// suspend is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(300);
/// The shortest sleep, so a token with a lifetime shorter than the refresh margin does not
/// make the refresher spin.
const MIN_SLEEP: Duration = Duration::from_secs(5);

/// Login and API endpoints that replace the public defaults. Saved as one setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointSettings {
    /// Per kind, the whole login configuration (see `oauth::Endpoints`).
    pub login: BTreeMap<AccountKind, oauth::Endpoints>,
    /// The API roots requests are shaped for.
    pub api: subscription::Endpoints,
}

impl EndpointSettings {
    /// A kind's login configuration under these settings: its override, else the default.
    fn login_of(&self, kind: AccountKind) -> oauth::Endpoints {
        self.login
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| kind.endpoints())
    }

    /// Checks every URL an account's tokens or its login's code go to: https (plain http only
    /// on this machine), no user info, and a callback host on this machine. The refusal names
    /// the field (`login.codex.token_url`, `api.github_api`).
    pub fn check(&self) -> Result<(), UrlRefusal> {
        for kind in AccountKind::ALL {
            let login = self.login_of(kind);
            let at = |field: &str| format!("login.{kind}.{field}");
            if !login.authorize_url.is_empty() {
                check_account_endpoint(&at("authorize_url"), &login.authorize_url)?;
            }
            check_account_endpoint(&at("token_url"), &login.token_url)?;
            if let Some(device) = &login.device_url {
                check_account_endpoint(&at("device_url"), device)?;
            }
            check_loopback_host(&at("redirect_host"), &login.redirect_host)?;
            for (field, url) in api_urls(kind, &self.api) {
                check_account_endpoint(&format!("api.{field}"), url)?;
            }
        }
        Ok(())
    }

    /// The kinds whose accounts' tokens would go to another server under `next`: a token
    /// endpoint (refresh tokens) or an API root (access tokens, Copilot's GitHub token) whose
    /// origin changes. Their accounts must sign in again: tokens stay with the server they
    /// were issued for.
    pub fn kinds_moved(&self, next: &Self) -> Vec<AccountKind> {
        AccountKind::ALL
            .into_iter()
            .filter(|&kind| {
                let token_moved = !same_origin(
                    &self.login_of(kind).token_url,
                    &next.login_of(kind).token_url,
                );
                let api_moved = api_urls(kind, &self.api)
                    .iter()
                    .zip(api_urls(kind, &next.api))
                    .any(|((_, old), (_, new))| !same_origin(old, new));
                token_moved || api_moved
            })
            .collect()
    }
}

/// The API endpoints a kind's requests (with its tokens) go to, by setting name.
fn api_urls(kind: AccountKind, api: &subscription::Endpoints) -> Vec<(&'static str, &str)> {
    match kind {
        AccountKind::Claude => vec![("claude", &api.claude)],
        AccountKind::Codex => vec![("codex", &api.codex)],
        AccountKind::GeminiCli => vec![("code_assist", &api.code_assist)],
        AccountKind::Qwen => vec![("qwen_default", &api.qwen_default)],
        AccountKind::Copilot => vec![
            ("github_api", &api.github_api),
            ("copilot_default", &api.copilot_default),
        ],
        AccountKind::Iflow => vec![
            ("iflow", &api.iflow),
            ("iflow_user_info", &api.iflow_user_info),
        ],
    }
}

/// The provider a kind's accounts are pooled in.
pub fn provider_id(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Claude => "claude-account",
        AccountKind::Codex => "codex-account",
        AccountKind::GeminiCli => "gemini-cli-account",
        AccountKind::Qwen => "qwen-account",
        AccountKind::Copilot => "copilot-account",
        AccountKind::Iflow => "iflow-account",
    }
}

/// The models a kind's provider starts with; the user can change the list like any provider's.
/// These name what each subscription served when this was written and will age.
pub fn default_models(kind: AccountKind) -> &'static [&'static str] {
    match kind {
        AccountKind::Claude => &["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"],
        AccountKind::Codex => &["gpt-5", "gpt-5-codex"],
        AccountKind::GeminiCli => &["gemini-2.5-pro", "gemini-2.5-flash"],
        AccountKind::Qwen => &["qwen3-coder-plus", "qwen3-coder-flash"],
        AccountKind::Copilot => &["gpt-4.1", "gpt-5", "claude-sonnet-4"],
        AccountKind::Iflow => &["qwen3-coder-plus", "kimi-k2", "glm-4.6"],
    }
}

/// The API root shown as a kind's provider URL.
fn api_root(kind: AccountKind, api: &subscription::Endpoints) -> String {
    match kind {
        AccountKind::Claude => api.claude.clone(),
        AccountKind::Codex => api.codex.clone(),
        AccountKind::GeminiCli => api.code_assist.clone(),
        AccountKind::Qwen => api.qwen_default.clone(),
        AccountKind::Copilot => api.copilot_default.clone(),
        AccountKind::Iflow => api.iflow.clone(),
    }
}

/// Why an account could not serve a request or be changed. Messages name the account and say
/// what the user can do; none contains a token.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no account `{0}` is logged in")]
    Unknown(String),
    #[error("account `{account}` needs a new login: {detail}")]
    NeedsLogin { account: String, detail: String },
    #[error("account `{account}`: {source}")]
    OAuth {
        account: String,
        #[source]
        source: OAuthError,
    },
    #[error("account `{account}`: {detail}")]
    Upstream { account: String, detail: String },
    #[error("setting up the {kind} account failed: {detail}")]
    Setup { kind: AccountKind, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the account's secrets could not be kept: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Task(#[from] TaskFailed),
}

impl AccountError {
    /// The token store's `source` error, for the account `account`.
    fn oauth(account: &str, source: OAuthError) -> Self {
        Self::OAuth {
            account: account.to_owned(),
            source,
        }
    }

    /// Whether only a new login helps (shown in the UI and tray).
    pub fn needs_login(&self) -> bool {
        matches!(self, Self::NeedsLogin { .. })
            || matches!(self, Self::OAuth { source, .. } if source.needs_login())
    }
}

/// What one account needs at request time, kept in memory after the first read.
#[derive(Default)]
struct Live {
    /// The account's row as last read or written, so requests do not query SQLite.
    row: Option<AccountRow>,
    /// iFlow: the API key from the user info.
    api_key: Option<Secret>,
    /// Copilot: the minted-token cache over the GitHub token.
    copilot: Option<Arc<CopilotTokens>>,
    /// The usage windows the endpoint reported with its last answer (kept in memory only:
    /// they are stale after a restart anyway).
    quota: Vec<subscription::QuotaWindow>,
}

/// The subscription accounts of one gateway. Shared through `state::Shared`.
pub struct Accounts {
    db: Arc<dyn Storage>,
    secrets: SharedSecretStore,
    tokens: TokenStore,
    side: SideHttp,
    endpoints: RwLock<EndpointSettings>,
    live: Mutex<HashMap<String, Live>>,
    /// Bumped on every change of an account's health or the list; the tray, the UI's event
    /// stream and the refresher watch it.
    changed: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    /// Reads the endpoint settings. Blocking (SQLite). `side` carries every call of the
    /// logins and accounts besides the model requests.
    pub fn new(
        db: Arc<dyn Storage>,
        secrets: SharedSecretStore,
        side: SideHttp,
    ) -> Result<Self, StoreError> {
        let endpoints = match db.setting(ENDPOINTS_SETTING)? {
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored account endpoints unreadable; defaults used");
                EndpointSettings::default()
            }),
            None => EndpointSettings::default(),
        };
        // Saved before these rules existed: a plain-http endpoint elsewhere would get tokens.
        let endpoints = match endpoints.check() {
            Ok(()) => endpoints,
            Err(e) => {
                tracing::warn!(error = %e, "stored account endpoints refused; defaults used");
                EndpointSettings::default()
            }
        };
        Ok(Self {
            tokens: TokenStore::new(secrets.clone(), side.clone()),
            db,
            secrets,
            side,
            endpoints: RwLock::new(endpoints),
            live: Mutex::default(),
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The client of the logins' and accounts' side path (`oauth::SideHttp`).
    pub fn side_http(&self) -> &SideHttp {
        &self.side
    }

    /// Why the account's newest tokens are not in the keychain yet (they are in use; the save
    /// is tried again), or `None`.
    pub fn unsaved(&self, id: &str) -> Option<String> {
        self.tokens.unsaved(id)
    }

    /// The gateway is stopping: pending keychain saves get a last try and stop.
    pub fn close(&self) {
        self.tokens.close();
    }

    /// A receiver that sees a new value after every change of the accounts or their health.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What is kept in memory per account.
    fn live(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn endpoint_settings(&self) -> EndpointSettings {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the endpoint settings and saves them. Blocking (SQLite).
    pub fn set_endpoint_settings(&self, settings: EndpointSettings) -> Result<(), AccountError> {
        let text = serde_json::to_string(&settings).map_err(|e| AccountError::Setup {
            kind: AccountKind::Claude,
            detail: e.to_string(),
        })?;
        self.db.set_setting(ENDPOINTS_SETTING, &text)?;
        *self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner) = settings;
        // Copilot mints go to the GitHub API root: drop the caches built on the old one.
        for live in self.live().values_mut() {
            live.copilot = None;
        }
        Ok(())
    }

    /// The login configuration of a kind: the setting, else the public default.
    pub fn login_endpoints(&self, kind: AccountKind) -> oauth::Endpoints {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .login
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| kind.endpoints())
    }

    pub fn api_endpoints(&self) -> subscription::Endpoints {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .api
            .clone()
    }

    /// Every account, oldest first. Blocking (SQLite).
    pub fn list(&self) -> Result<Vec<AccountRow>, AccountError> {
        Ok(self.db.accounts()?)
    }

    /// The labels of the accounts that need a new login. Blocking (SQLite).
    pub fn needing_login(&self) -> Result<Vec<String>, AccountError> {
        Ok(self
            .db
            .accounts()?
            .into_iter()
            .filter(|a| a.needs_login)
            .map(|a| a.label)
            .collect())
    }

    fn kind_of(row: &AccountRow) -> Result<AccountKind, AccountError> {
        AccountKind::from_id(&row.kind).ok_or_else(|| AccountError::Setup {
            kind: AccountKind::Claude,
            detail: format!("account `{}` has an unknown kind `{}`", row.id, row.kind),
        })
    }

    /// The account as a request needs it: fresh tokens (refreshed first when due) and the
    /// facts its endpoint wants. Copilot accounts get their minted Copilot token.
    pub async fn for_request(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<subscription::Account, AccountError> {
        let row = self.row_blocking(id).await?;
        if row.needs_login {
            return Err(AccountError::NeedsLogin {
                account: id.to_owned(),
                detail: row
                    .last_error
                    .unwrap_or_else(|| "the login has expired".to_owned()),
            });
        }
        let kind = Self::kind_of(&row)?;
        let tokens = self.tokens_for(id, kind).await?;
        let missing = |what: &str| AccountError::NeedsLogin {
            account: id.to_owned(),
            detail: format!("the login did not record {what}"),
        };
        Ok(match kind {
            AccountKind::Claude => subscription::Account::Claude {
                access: tokens.access,
            },
            AccountKind::Codex => subscription::Account::Codex {
                access: tokens.access,
                account_id: tokens
                    .facts
                    .account_id
                    .clone()
                    .ok_or_else(|| missing("the ChatGPT account id"))?,
            },
            AccountKind::GeminiCli => subscription::Account::GeminiCli {
                access: tokens.access,
                project: row
                    .project
                    .clone()
                    .ok_or_else(|| missing("the Code Assist project"))?,
            },
            AccountKind::Qwen => subscription::Account::Qwen {
                access: tokens.access,
                resource_url: tokens.facts.resource_url.clone(),
            },
            AccountKind::Copilot => {
                let mint = self.copilot(id, &tokens);
                match mint.current().await {
                    Ok(token) => subscription::Account::Copilot(token),
                    Err(e) => {
                        let error = copilot_error(id, &e);
                        self.record_failure(id, &error).await;
                        return Err(error);
                    }
                }
            }
            AccountKind::Iflow => subscription::Account::Iflow {
                api_key: self.iflow_key(id).await?,
            },
        })
    }

    /// Keeps the usage windows an answer for the account reported; the UI is told when they
    /// change.
    pub fn note_quota(&self, id: &str, quota: Vec<subscription::QuotaWindow>) {
        if quota.is_empty() {
            return;
        }
        let changed = {
            let mut live = self.live();
            let entry = live.entry(id.to_owned()).or_default();
            let changed = entry.quota != quota;
            entry.quota = quota;
            changed
        };
        if changed {
            self.notify();
        }
    }

    /// The usage windows last reported for the account.
    pub fn quota(&self, id: &str) -> Vec<subscription::QuotaWindow> {
        self.live()
            .get(id)
            .map(|l| l.quota.clone())
            .unwrap_or_default()
    }

    /// After the account's endpoint answered 401: drops what may be stale (Copilot's minted
    /// token) or refreshes the tokens now. `Ok` means a retry with the account may succeed.
    pub async fn rejected(self: &Arc<Self>, id: &str) -> Result<(), AccountError> {
        let row = self.row_blocking(id).await?;
        let kind = Self::kind_of(&row)?;
        if kind == AccountKind::Copilot {
            let mint = self.live().get(id).and_then(|l| l.copilot.clone());
            if let Some(mint) = mint {
                mint.invalidate();
            }
            return Ok(());
        }
        self.refresh(id).await.map(drop)
    }

    /// Refreshes the account's tokens now and records the outcome on its row. A Copilot
    /// account's GitHub login does not expire: its short-lived Copilot token is minted anew.
    /// Runs in a task of its own: the caller going away (a client hanging up) does not stop it
    /// between the new tokens and the row that records them.
    pub async fn refresh(self: &Arc<Self>, id: &str) -> Result<AccountRow, AccountError> {
        let this = Arc::clone(self);
        let owned = id.to_owned();
        tokio::spawn(async move { this.refresh_now(&owned).await })
            .await
            .map_err(|e| AccountError::Upstream {
                account: id.to_owned(),
                detail: format!("the refresh did not finish: {e}"),
            })?
    }

    async fn refresh_now(&self, id: &str) -> Result<AccountRow, AccountError> {
        let row = self.row_blocking(id).await?;
        let kind = Self::kind_of(&row)?;
        if kind == AccountKind::Copilot {
            return self.remint(row).await;
        }
        let endpoints = self.login_endpoints(kind);
        match self.tokens.refresh(id, &endpoints).await {
            Ok(tokens) => {
                if kind == AccountKind::Iflow {
                    // iFlow may hand out a new key with new tokens.
                    if let Err(e) = self.read_iflow_key(id, &tokens.access).await {
                        let error = AccountError::Upstream {
                            account: id.to_owned(),
                            detail: e.to_string(),
                        };
                        self.record_failure(id, &error).await;
                        return Err(error);
                    }
                }
                let mut row = row;
                row.refreshed_at = Some(now_ms());
                row.expires_at = tokens.expires_at_ms;
                row.last_error = None;
                row.needs_login = false;
                if let Some(plan) = tokens.facts.plan.clone() {
                    row.plan = Some(plan);
                }
                self.put_row(row.clone()).await?;
                Ok(row)
            }
            Err(source) => {
                let error = AccountError::oauth(id, source);
                self.record_failure(id, &error).await;
                Err(error)
            }
        }
    }

    async fn remint(&self, mut row: AccountRow) -> Result<AccountRow, AccountError> {
        let tokens = self.stored_tokens(&row.id).await?;
        let mint = self.copilot(&row.id, &tokens);
        mint.invalidate();
        if let Err(e) = mint.current().await {
            let error = copilot_error(&row.id, &e);
            self.record_failure(&row.id, &error).await;
            return Err(error);
        }
        row.refreshed_at = Some(now_ms());
        row.last_error = None;
        row.needs_login = false;
        self.put_row(row.clone()).await?;
        Ok(row)
    }

    /// Notes a failure on the account's row: the message, and whether only a login helps.
    pub async fn record_failure(&self, id: &str, error: &AccountError) {
        let Ok(mut row) = self.row_blocking(id).await else {
            return;
        };
        row.last_error = Some(error.to_string());
        row.needs_login = row.needs_login || error.needs_login();
        if let Err(e) = self.put_row(row).await {
            tracing::warn!(account = %id, error = %e, "account health not recorded");
        }
    }

    /// Tokens of the account that are not due for refresh: from memory, the keychain, or a
    /// refresh.
    async fn tokens_for(
        self: &Arc<Self>,
        id: &str,
        kind: AccountKind,
    ) -> Result<TokenSet, AccountError> {
        let tokens = self.stored_tokens(id).await?;
        // GitHub's tokens do not expire; Copilot's short-lived token is minted from them.
        if kind != AccountKind::Copilot && tokens.needs_refresh(now_ms()) {
            self.refresh(id).await?;
            return self.stored_tokens(id).await;
        }
        Ok(tokens)
    }

    /// The account's tokens as `TokenStore` holds them (from memory after the first keychain
    /// read; the newest ones, saved or not).
    async fn stored_tokens(&self, id: &str) -> Result<TokenSet, AccountError> {
        let loaded = self
            .tokens
            .load(id)
            .await
            .map_err(|source| AccountError::oauth(id, source))?;
        let Some(tokens) = loaded else {
            let error = AccountError::NeedsLogin {
                account: id.to_owned(),
                detail: format!("its tokens are missing from the {}", self.secrets.kind()),
            };
            self.record_failure(id, &error).await;
            return Err(error);
        };
        Ok(tokens)
    }

    fn copilot(&self, id: &str, tokens: &TokenSet) -> Arc<CopilotTokens> {
        let api = self.api_endpoints();
        let mut live = self.live();
        let entry = live.entry(id.to_owned()).or_default();
        entry
            .copilot
            .get_or_insert_with(|| {
                Arc::new(CopilotTokens::new(
                    self.side.clone(),
                    &api,
                    tokens.access.clone(),
                ))
            })
            .clone()
    }

    /// The secret-store entry of an iFlow account's API key.
    fn api_key_entry(id: &str) -> String {
        format!("{}:api-key", TokenStore::entry_name(id))
    }

    async fn iflow_key(&self, id: &str) -> Result<Secret, AccountError> {
        let cached = self.live().get(id).and_then(|l| l.api_key.clone());
        if let Some(key) = cached {
            return Ok(key);
        }
        let secrets = self.secrets.clone();
        let name = Self::api_key_entry(id);
        let stored = blocking::run(move || secrets.get(&name)).await??;
        let key = stored.ok_or_else(|| AccountError::NeedsLogin {
            account: id.to_owned(),
            detail: "its iFlow API key is missing; log in again".to_owned(),
        })?;
        self.live().entry(id.to_owned()).or_default().api_key = Some(key.clone());
        Ok(key)
    }

    async fn read_iflow_key(
        &self,
        id: &str,
        access: &Secret,
    ) -> Result<subscription::iflow::UserInfo, AccountError> {
        let api = self.api_endpoints();
        let info = subscription::iflow::user_info(&self.side, &api.iflow_user_info, access)
            .await
            .map_err(|e| AccountError::Setup {
                kind: AccountKind::Iflow,
                detail: e.to_string(),
            })?;
        let secrets = self.secrets.clone();
        let name = Self::api_key_entry(id);
        let key = info.api_key.clone();
        blocking::run(move || secrets.set(&name, &key)).await??;
        self.live().entry(id.to_owned()).or_default().api_key = Some(info.api_key.clone());
        Ok(info)
    }

    /// Adds the account a finished login produced (or, with `relogin`, gives an existing
    /// account new tokens): runs the kind's set-up (Gemini's Code Assist project, iFlow's API
    /// key, a first Copilot mint), stores the tokens in the keychain, the row in SQLite and the
    /// account's credential in its kind's provider (created on the first login of the kind).
    /// The caller reloads the registry.
    pub async fn add(
        &self,
        kind: AccountKind,
        tokens: TokenSet,
        relogin: Option<&str>,
    ) -> Result<AccountRow, AccountError> {
        let existing = match relogin {
            Some(id) => Some(self.row_blocking(id).await?),
            None => None,
        };
        let id = match &existing {
            Some(row) => row.id.clone(),
            None => self.new_id(kind, &tokens).await?,
        };
        let api = self.api_endpoints();
        let setup = |detail: String| AccountError::Setup { kind, detail };
        let mut label = tokens
            .facts
            .email
            .clone()
            .or_else(|| tokens.facts.account_id.clone());
        let mut plan = tokens.facts.plan.clone();
        let mut project = existing.as_ref().and_then(|r| r.project.clone());
        match kind {
            AccountKind::GeminiCli => {
                let found = gemini_cli::setup_project(
                    &self.side,
                    &api.code_assist,
                    &tokens.access,
                    project.as_deref(),
                    gemini_cli::Polling::default(),
                )
                .await
                .map_err(|e| setup(e.to_string()))?;
                project = Some(found.project_id);
                plan = found.tier_name.or(Some(found.tier_id));
            }
            AccountKind::Iflow => {
                let info = self.read_iflow_key(&id, &tokens.access).await?;
                label = label.or(info.contact);
            }
            AccountKind::Copilot => {
                let mint = CopilotTokens::new(self.side.clone(), &api, tokens.access.clone());
                mint.current()
                    .await
                    .map_err(|e| setup(copilot_error(&id, &e).to_string()))?;
            }
            AccountKind::Claude => {
                plan = plan
                    .or(subscription::claude::plan(&self.side, &api.claude, &tokens.access).await);
            }
            AccountKind::Codex | AccountKind::Qwen => {}
        }
        self.tokens
            .save(&id, &tokens)
            .await
            .map_err(|source| AccountError::oauth(&id, source))?;
        let now = now_ms();
        let row = AccountRow {
            id: id.clone(),
            kind: kind.id().to_owned(),
            provider_id: provider_id(kind).to_owned(),
            label: label.unwrap_or_else(|| id.clone()),
            email: tokens.facts.email.clone(),
            account_id: tokens.facts.account_id.clone(),
            plan,
            project,
            created_at: existing.as_ref().map_or(now, |r| r.created_at),
            refreshed_at: Some(now),
            expires_at: tokens.expires_at_ms,
            last_error: None,
            needs_login: false,
        };
        // A Copilot mint cache holds the old GitHub token.
        self.live().entry(id.clone()).or_default().copilot = None;
        let db = self.db.clone();
        let stored = row.clone();
        let provider = ProviderRow {
            id: provider_id(kind).to_owned(),
            url: api_root(kind, &api),
            protocol: kind.protocol(),
            discovery: DiscoveryKind::Off,
            models: default_models(kind)
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            created_at: now,
            updated_at: now,
        };
        blocking::run(move || {
            if !db.providers()?.iter().any(|p| p.id == provider.id) {
                db.upsert_provider(&provider)?;
            }
            let has_credential = db
                .credentials()?
                .iter()
                .any(|c| c.provider_id == provider.id && c.id == stored.id);
            if !has_credential {
                db.upsert_credential(&CredentialRow {
                    provider_id: provider.id.clone(),
                    id: stored.id.clone(),
                    label: stored.label.clone(),
                    key_ref: Some(format!("{KEY_REF_PREFIX}{}", stored.id)),
                    key_hint: None,
                    enabled: true,
                    priority: 0,
                    limits: crate::routing::Limits::default(),
                    created_at: now,
                })?;
            }
            db.put_account(&stored)
        })
        .await??;
        self.cache_row(row.clone());
        self.notify();
        Ok(row)
    }

    /// Logs the account out: its tokens leave the keychain, its row and its credential go.
    /// The kind's provider goes with its last account. The caller reloads the registry.
    pub async fn log_out(&self, id: &str) -> Result<(), AccountError> {
        let row = self.row_blocking(id).await?;
        self.tokens
            .delete(id)
            .await
            .map_err(|source| AccountError::oauth(id, source))?;
        let secrets = self.secrets.clone();
        let name = Self::api_key_entry(id);
        blocking::run(move || secrets.delete(&name)).await??;
        self.live().remove(id);
        let db = self.db.clone();
        blocking::run(move || {
            db.delete_credential(&row.provider_id, &row.id)?;
            db.delete_account(&row.id)?;
            let others = db
                .accounts()?
                .iter()
                .any(|a| a.provider_id == row.provider_id);
            let pool = db
                .credentials()?
                .iter()
                .any(|c| c.provider_id == row.provider_id);
            if !others && !pool {
                db.delete_provider(&row.provider_id)?;
            }
            Ok::<_, StoreError>(())
        })
        .await??;
        self.notify();
        Ok(())
    }

    /// A new, readable account id: the kind and the email's name (`claude-ada`), numbered when
    /// taken.
    async fn new_id(&self, kind: AccountKind, tokens: &TokenSet) -> Result<String, AccountError> {
        let who = tokens
            .facts
            .email
            .as_deref()
            .and_then(|e| e.split('@').next())
            .or(tokens.facts.account_id.as_deref())
            .unwrap_or("account");
        let slug: String = who
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let base = format!("{}-{}", kind.id().replace('_', "-"), slug.trim_matches('-'));
        let db = self.db.clone();
        let taken: Vec<String> = blocking::run(move || db.accounts())
            .await??
            .into_iter()
            .map(|a| a.id)
            .collect();
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        Ok(candidate)
    }

    /// One account's row (from memory once read).
    pub async fn account(&self, id: &str) -> Result<AccountRow, AccountError> {
        self.row_blocking(id).await
    }

    async fn row_blocking(&self, id: &str) -> Result<AccountRow, AccountError> {
        let cached = self.live().get(id).and_then(|l| l.row.clone());
        if let Some(row) = cached {
            return Ok(row);
        }
        let db = self.db.clone();
        let key = id.to_owned();
        let row = blocking::run(move || db.account(&key))
            .await??
            .ok_or_else(|| AccountError::Unknown(id.to_owned()))?;
        self.cache_row(row.clone());
        Ok(row)
    }

    fn cache_row(&self, row: AccountRow) {
        let id = row.id.clone();
        self.live().entry(id).or_default().row = Some(row);
    }

    async fn put_row(&self, row: AccountRow) -> Result<(), AccountError> {
        let db = self.db.clone();
        let stored = row.clone();
        blocking::run(move || db.put_account(&stored)).await??;
        self.cache_row(row);
        self.notify();
        Ok(())
    }

    /// Refreshes, one after another, the accounts whose tokens expire within the refresh
    /// margin; returns when the next one will be due. Accounts that need a login are left
    /// alone.
    pub async fn refresh_due(self: &Arc<Self>) -> Duration {
        let rows = {
            let db = self.db.clone();
            match blocking::run(move || db.accounts()).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "accounts unreadable; refresh postponed");
                    return RETRY_AFTER_FAILURE;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accounts unreadable; refresh postponed");
                    return RETRY_AFTER_FAILURE;
                }
            }
        };
        let mut next = MAX_SLEEP;
        let ahead = token_store::REFRESH_AHEAD_MS;
        for row in rows {
            let Some(expires_at) = row.expires_at else {
                continue;
            };
            if row.needs_login || row.kind == AccountKind::Copilot.id() {
                continue;
            }
            let due_in = expires_at.saturating_sub(ahead).saturating_sub(now_ms());
            if due_in > 0 {
                next = next.min(Duration::from_millis(u64::try_from(due_in).unwrap_or(0)));
                continue;
            }
            match self.refresh(&row.id).await {
                Ok(_) => tracing::info!(account = %row.id, "tokens refreshed ahead of expiry"),
                Err(e) => {
                    tracing::warn!(account = %row.id, error = %e, "refresh failed");
                    next = next.min(RETRY_AFTER_FAILURE);
                }
            }
        }
        next.max(MIN_SLEEP)
    }

    /// The background refresher: refreshes tokens ahead of expiry until `closing` turns true.
    /// Wakes early when an account changes (a new login may expire sooner).
    pub async fn run_refresher(self: Arc<Self>, mut closing: tokio::sync::watch::Receiver<bool>) {
        let mut changed = self.subscribe();
        loop {
            let sleep = self.refresh_due().await;
            changed.borrow_and_update();
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                _ = changed.changed() => {}
                _ = closing.changed() => {}
            }
            if *closing.borrow() {
                self.close();
                return;
            }
        }
    }
}

fn copilot_error(id: &str, error: &subscription::copilot::MintError) -> AccountError {
    use subscription::copilot::MintError;
    match error {
        MintError::LoginRejected | MintError::BadToken => AccountError::NeedsLogin {
            account: id.to_owned(),
            detail: format!("GitHub refused the login for a Copilot token: {error}"),
        },
        _ => AccountError::Upstream {
            account: id.to_owned(),
            detail: error.to_string(),
        },
    }
}

/// Whether a credential's key reference names an account, and which.
pub fn account_of_key_ref(key_ref: &str) -> Option<&str> {
    key_ref.strip_prefix(KEY_REF_PREFIX)
}

#[cfg(test)]
mod tests;
