//! The state every request handler shares: built once by `lifecycle`, read by `server`,
//! `proxy` and the management API through an `Arc`.

use std::sync::{Arc, PoisonError};

use crate::clock::now_ms;
use crate::config::Settings;
use crate::lifecycle::SecretsStatus;
use crate::routing::Router;
use crate::routing::discovery::{self, DiscoveryKind};
use crate::routing::registry::{DiscoveredModels, ProviderKey, Registry, Source};
use crate::server::access::{HostGuard, ManagementAuth};
use crate::store::secrets::SharedSecretStore;
use crate::store::usage::Recorder;
use crate::store::{DiscoveredRow, Storage};

#[derive(Debug)]
pub struct Shared {
    pub db: Arc<dyn Storage>,
    pub registry: Registry,
    /// Credential windows, cooldowns and strategy positions (shared with usage meters).
    pub router: Arc<Router>,
    pub secrets: SharedSecretStore,
    /// Subscription accounts: their tokens, health and endpoints.
    pub accounts: Arc<crate::accounts::Accounts>,
    /// Subscription logins under way (the management API's `/api/logins`).
    pub logins: Arc<crate::accounts::logins::Logins>,
    pub recorder: Recorder,
    /// One client for every upstream call, so connections are reused.
    pub http: reqwest::Client,
    pub auth: ManagementAuth,
    pub guard: HostGuard,
    pub base_url: String,
    /// The address the listener is bound to.
    pub listen: std::net::SocketAddr,
    pub secrets_status: SecretsStatus,
    /// Turns true when the gateway begins to stop: long-lived responses (the live event
    /// stream) end then, so a graceful shutdown does not wait on them.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// The requests in flight, cut when the shutdown's grace period is over.
    pub drain: Arc<crate::server::drain::Drain>,
    /// The config file's state, when one is in use.
    pub config: std::sync::RwLock<Option<ConfigStatus>>,
    pub settings: Settings,
}

/// What `GET /api/status` says about the config file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigStatus {
    pub path: std::path::PathBuf,
    /// When the running config was read.
    pub loaded_at_ms: i64,
    /// Why the last edit was rejected (the running config is the one before it).
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

impl ConfigStatus {
    pub fn loaded(path: std::path::PathBuf, warnings: Vec<String>) -> Self {
        Self {
            path,
            loaded_at_ms: now_ms(),
            error: None,
            warnings,
        }
    }
}

pub type AppState = Arc<Shared>;

impl Shared {
    /// Rebuilds the registry after a management change (blocking work moved off the runtime).
    pub async fn reload_registry(self: &Arc<Self>) -> Result<(), crate::error::GatewayError> {
        let state = self.clone();
        crate::blocking::run(move || state.registry.reload(&*state.db, &*state.secrets))
            .await?
            .map_err(Into::into)
    }

    /// Refreshes one provider's model list now and rebuilds the snapshot.
    pub async fn discover(self: &Arc<Self>, id: &str) -> Result<(), crate::error::GatewayError> {
        self.fetch_models(id).await?;
        self.reload_registry().await
    }

    /// Asks one provider for its models (with its first usable key) and keeps the result in
    /// the registry (and the database, for the database's providers), without rebuilding the
    /// snapshot. A failed refresh keeps the models found before and records why, so a
    /// provider that is briefly down keeps its routes.
    async fn fetch_models(self: &Arc<Self>, id: &str) -> Result<(), crate::error::GatewayError> {
        let snapshot = self.registry.snapshot();
        let Some(provider) = snapshot.provider(id).cloned() else {
            return Ok(());
        };
        let kind = provider.discovery;
        if kind == DiscoveryKind::Off {
            return Ok(());
        }
        let key = provider.credentials.iter().find_map(|c| match &c.key {
            ProviderKey::Ready(key) if c.enabled => Some(key.clone()),
            _ => None,
        });
        let now = now_ms();
        let result = discovery::discover(
            &self.http,
            &provider.url,
            provider.protocol,
            kind,
            key.as_ref(),
            DISCOVERY_TIMEOUT,
        )
        .await;
        let found = match result {
            Ok(found) => DiscoveredModels {
                models: found.models,
                peers: found.peers,
                refreshed_at: Some(now),
                error: None,
            },
            Err(error) => {
                tracing::warn!(provider = %id, %error, "model discovery failed");
                DiscoveredModels {
                    refreshed_at: Some(now),
                    error: Some(error.to_string()),
                    ..provider.discovered.clone()
                }
            }
        };
        let Some(found) = self.registry.record_discovery(id, found) else {
            return Ok(());
        };
        if provider.source == Source::Database {
            let db = self.db.clone();
            let row = DiscoveredRow {
                provider_id: id.to_owned(),
                models: found.models,
                peers: serde_json::to_string(&found.peers).unwrap_or_else(|_| "[]".into()),
                refreshed_at: now,
                error: found.error,
            };
            crate::blocking::run(move || db.save_discovered(&row)).await??;
        }
        Ok(())
    }

    /// [`Shared::discover`] in the background (after a provider is saved).
    pub fn discover_soon(self: &Arc<Self>, id: &str) {
        let state = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = state.discover(&id).await {
                tracing::warn!(provider = %id, %error, "could not save discovered models");
            }
        });
    }

    /// Refreshes every provider's models.
    pub async fn discover_all(self: &Arc<Self>) {
        let ids = self
            .registry
            .snapshot()
            .providers()
            .into_iter()
            .map(|p| p.id.clone())
            .collect();
        self.discover_many(ids).await;
    }

    /// Refreshes these providers' models one after another, then rebuilds the snapshot once
    /// (a rebuild reads the database and every key, so not once per provider).
    async fn discover_many(self: &Arc<Self>, ids: Vec<String>) {
        for id in &ids {
            if let Err(error) = self.fetch_models(id).await {
                tracing::warn!(provider = %id, %error, "could not save discovered models");
            }
        }
        if let Err(error) = self.reload_registry().await {
            tracing::warn!(%error, "could not apply discovered models");
        }
    }

    /// Applies an edit of the config file: a valid one replaces the config layer and the
    /// snapshot (requests in flight keep theirs); a bad one is logged and shown in the status,
    /// and the running config stays.
    pub async fn apply_config(
        self: &Arc<Self>,
        change: Result<crate::config::file::Declared, crate::config::file::ConfigFileError>,
    ) {
        let path = self.settings.config_file.clone().unwrap_or_default();
        let declared = match change {
            Ok(declared) => declared,
            Err(error) => {
                tracing::warn!(%error, "config file edit rejected; the running config is kept");
                let mut status = self.config.write().unwrap_or_else(PoisonError::into_inner);
                let status = status.get_or_insert_with(|| ConfigStatus::loaded(path, Vec::new()));
                status.error = Some(error.to_string());
                return;
            }
        };
        let warnings = self.registry.set_config(&declared);
        if let Err(error) = self.reload_registry().await {
            tracing::error!(%error, "could not apply the config file");
            let mut status = self.config.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(status) = status.as_mut() {
                status.error = Some(error.to_string());
            }
            return;
        }
        tracing::info!(
            providers = declared.providers.len(),
            routes = declared.routes.len(),
            adapters = declared.adapters.len(),
            "config file reloaded"
        );
        *self.config.write().unwrap_or_else(PoisonError::into_inner) =
            Some(ConfigStatus::loaded(path, warnings));
        let state = self.clone();
        let ids = declared.providers.into_iter().map(|p| p.id).collect();
        tokio::spawn(async move { state.discover_many(ids).await });
    }
}

/// How long one provider's model discovery may take.
const DISCOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
