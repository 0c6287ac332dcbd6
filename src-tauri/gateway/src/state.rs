//! The state every request handler shares: built once by `lifecycle`, read by `server`,
//! `relay` and the management API through an `Arc`.

use std::sync::Arc;

use crate::access::{HostGuard, ManagementAuth};
use crate::config::Settings;
use crate::lifecycle::SecretsStatus;
use crate::registry::Registry;
use crate::secrets::SharedSecretStore;
use crate::store::Database;
use crate::usage::Recorder;

#[derive(Debug)]
pub struct Shared {
    pub db: Arc<Database>,
    pub registry: Registry,
    pub secrets: SharedSecretStore,
    pub recorder: Recorder,
    /// One client for every upstream call, so connections are reused.
    pub http: reqwest::Client,
    pub auth: ManagementAuth,
    pub guard: HostGuard,
    pub base_url: String,
    /// The address the listener is bound to.
    pub listen: std::net::SocketAddr,
    pub secrets_status: SecretsStatus,
    pub settings: Settings,
}

pub type AppState = Arc<Shared>;

impl Shared {
    /// Rebuilds the registry after a management change (blocking work moved off the runtime).
    pub async fn reload_registry(self: &Arc<Self>) -> Result<(), crate::error::GatewayError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || state.registry.reload(&state.db, &*state.secrets))
            .await
            .map_err(|e| crate::error::GatewayError::Internal(e.to_string()))?
            .map_err(Into::into)
    }
}
