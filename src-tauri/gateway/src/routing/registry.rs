//! The providers, credentials, routes and adapters the request path reads, held in memory.
//!
//! Two sources feed it: `store` (what the management API and the UI change) and, on headless
//! machines, the declarative config file (`config_file`), whose entries are read-only here.
//! After every change the registry rebuilds a [`Snapshot`] from both (resolving every
//! credential's key through `secrets` once, not per request), adds what discovery found, and
//! swaps it in. A request takes the current snapshot with one short read lock and an `Arc`
//! clone and keeps it to the end, so a reload never changes a request in flight.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

use crate::config::file::Declared;
use crate::routing::discovery::{DiscoveryKind, OcfPeer};
use crate::routing::{Candidate, Limits, RoutingSettings, Strategy};
use crate::server::access::{KeyHash, hash_hex, hash_key, parse_hash_hex};
use crate::store::secrets::{EnvOnly, Secret, SecretRef, SecretStore};
use crate::store::{
    AdapterRow, ConfigStore, CredentialRow, ProviderRow, ProviderStore, RouteRow, StoreError,
};
use flexiproxy_protocol::Protocol;

/// Whether `id` has the form provider and credential ids take: 1–64 letters, digits, `.`, `_`
/// or `-` (they appear in URLs and in `<provider>/<credential>` names).
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The settings key holding the routing settings (JSON).
pub const ROUTING_SETTING: &str = "routing";

/// A credential's key as the request path sees it.
#[derive(Debug, Clone)]
pub enum ProviderKey {
    /// The provider needs no key (a local Ollama, vLLM, LM Studio).
    None,
    Ready(Secret),
    /// The key could not be read; the message says why and is shown to the client.
    Unavailable(String),
    /// A subscription account (`accounts`): its tokens are fetched, refreshed and shaped per
    /// request, not read once here.
    Account(String),
}

/// Where an entry comes from, and so whether the management API may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Database,
    Config,
}

/// One key in a provider's pool (or the keyless slot of a provider that needs none).
#[derive(Debug)]
pub struct Credential {
    pub provider_id: String,
    pub id: String,
    /// `<provider>/<id>`: the public name in usage rows, `/v1/usage` and logs.
    pub key_id: String,
    pub label: String,
    pub key: ProviderKey,
    pub key_hint: Option<String>,
    /// `keychain`, `env:NAME`, or none for keyless.
    pub key_source: Option<String>,
    pub enabled: bool,
    pub priority: u32,
    pub limits: Limits,
    pub source: Source,
    /// The keyless slot of a provider without credentials (not stored anywhere).
    pub implicit: bool,
}

/// What discovery last found for a provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveredModels {
    pub models: Vec<String>,
    pub peers: Vec<OcfPeer>,
    pub refreshed_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct Provider {
    pub id: String,
    /// The base URL, without a trailing slash (`https://api.deepseek.com/v1`).
    pub url: String,
    pub protocol: Protocol,
    pub discovery: DiscoveryKind,
    /// Models the user declared.
    pub declared_models: Vec<String>,
    pub discovered: DiscoveredModels,
    /// The pool, in order (priority, then age). Never empty: a provider without credentials
    /// has one keyless slot, so a local server needs no key entry.
    pub credentials: Vec<Arc<Credential>>,
    pub source: Source,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Provider {
    /// Declared and discovered models, sorted and without duplicates.
    pub fn models(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self
            .declared_models
            .iter()
            .chain(&self.discovered.models)
            .collect();
        all.into_iter().cloned().collect()
    }
}

#[derive(Debug)]
pub struct Adapter {
    pub create_time: i64,
    pub name: Option<String>,
    /// None: the provider follows from the client's model.
    pub provider_id: Option<String>,
    /// None: the client's model is used.
    pub model_id: Option<String>,
    /// Overrides the provider's URL for this adapter.
    pub base_url: Option<String>,
    pub strategy: Option<Strategy>,
    /// A redacted hint of the adapter's key, safe to show.
    pub key_hint: String,
    pub source: Source,
}

/// A model name clients may send that stands for one or more candidates: an alias, a group
/// with fallbacks, or an `auto` model.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub strategy: Option<Strategy>,
    /// An `auto` model: its candidates' priorities follow their list order (set where the
    /// route is written), so the first one available serves.
    pub auto: bool,
    pub candidates: Vec<Candidate>,
    pub source: Source,
}

/// Everything the request path needs, consistent at one point in time.
#[derive(Debug, Default)]
pub struct Snapshot {
    providers: HashMap<String, Arc<Provider>>,
    adapters_by_key: HashMap<KeyHash, Arc<Adapter>>,
    routes: HashMap<String, Arc<Route>>,
    /// Model name → ids of the providers that declare or discovered it, sorted.
    serving: HashMap<String, Vec<String>>,
    pub routing: RoutingSettings,
}

/// The snapshot's entries in the order of `key` (the maps hold them unordered).
fn sorted_by<'a, T>(
    entries: impl Iterator<Item = &'a Arc<T>>,
    key: impl Fn(&T) -> &String,
) -> Vec<&'a Arc<T>> {
    let mut all: Vec<_> = entries.collect();
    all.sort_by(|a, b| key(a).cmp(key(b)));
    all
}

impl Snapshot {
    pub fn adapter_for_key(&self, hash: &KeyHash) -> Option<&Arc<Adapter>> {
        self.adapters_by_key.get(hash)
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<Provider>> {
        self.providers.get(id)
    }

    /// Providers sorted by id.
    pub fn providers(&self) -> Vec<&Arc<Provider>> {
        sorted_by(self.providers.values(), |p| &p.id)
    }

    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.get(name)
    }

    /// Routes sorted by name.
    pub fn routes(&self) -> Vec<&Arc<Route>> {
        sorted_by(self.routes.values(), |r| &r.name)
    }

    /// The providers serving `model` (declared or discovered), sorted by id.
    pub fn serving(&self, model: &str) -> &[String] {
        self.serving.get(model).map_or(&[], Vec::as_slice)
    }

    /// Every model name a routing adapter accepts: routes, then served models.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.routes.keys().cloned().collect();
        names.extend(self.serving.keys().cloned());
        names.into_iter().collect()
    }

    /// Every adapter, in creation order.
    pub fn adapters(&self) -> Vec<&Arc<Adapter>> {
        let mut all: Vec<_> = self.adapters_by_key.values().collect();
        all.sort_by_key(|a| a.create_time);
        all
    }

    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    pub fn adapter_count(&self) -> usize {
        self.adapters_by_key.len()
    }
}

/// Entries declared outside the database (the config file), already validated and with their
/// keys resolved; `registry` merges them over the database's.
#[derive(Debug, Default)]
pub struct Layer {
    pub providers: Vec<(ProviderRow, Vec<CredentialRow>)>,
    pub routes: Vec<RouteRow>,
    /// Adapters with the hash of their key.
    pub adapters: Vec<(KeyHash, AdapterRow)>,
    pub routing: Option<RoutingSettings>,
    /// The file's `allowed_env`: variables the management API may name as `env:` keys.
    pub allowed_env: Vec<String>,
}

impl Layer {
    /// The config file's entries as the registry holds them. Adapter keys are read from the
    /// environment here (only their hashes are kept); an adapter whose variable is unset is
    /// left out and named in the returned warnings.
    pub fn from_declared(declared: &Declared) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let providers = declared
            .providers
            .iter()
            .map(|p| {
                let row = ProviderRow {
                    id: p.id.clone(),
                    url: p.url.clone(),
                    protocol: p.protocol,
                    discovery: p.discovery,
                    models: p.models.clone(),
                    created_at: 0,
                    updated_at: 0,
                };
                let pool = p
                    .credentials
                    .iter()
                    .map(|c| CredentialRow {
                        provider_id: p.id.clone(),
                        id: c.id.clone(),
                        label: c.label.clone(),
                        key_ref: c.key.as_ref().map(SecretRef::to_db),
                        key_hint: None,
                        enabled: c.enabled,
                        priority: c.priority,
                        limits: c.limits,
                        created_at: 0,
                    })
                    .collect();
                (row, pool)
            })
            .collect();
        let routes = declared
            .routes
            .iter()
            .map(|r| RouteRow {
                name: r.name.clone(),
                strategy: r.strategy.map(|s| s.as_str().to_owned()),
                auto: r.auto,
                candidates: r.candidates.clone(),
                updated_at: 0,
            })
            .collect();
        let mut adapters = Vec::new();
        for adapter in &declared.adapters {
            let env = EnvOnly {
                reason: "config file".into(),
            };
            let key = match adapter.key.resolve(&env) {
                Ok(Some(key)) => key,
                Ok(None) | Err(_) => {
                    warnings.push(format!(
                        "adapter `{}`: its key variable {} is not set, so the adapter is off",
                        adapter.name,
                        adapter.key.to_db()
                    ));
                    continue;
                }
            };
            let hash = hash_key(key.expose());
            let row = AdapterRow {
                create_time: config_adapter_id(&adapter.name),
                name: Some(adapter.name.clone()),
                provider_id: adapter.provider.clone(),
                model_id: adapter.model.clone(),
                base_url: None,
                strategy: adapter.strategy.map(|s| s.as_str().to_owned()),
                key_hash: hash_hex(&hash),
                key_hint: key.hint(),
            };
            adapters.push((hash, row));
        }
        let layer = Self {
            providers,
            routes,
            adapters,
            routing: declared.routing,
            allowed_env: declared.allowed_env.clone(),
        };
        (layer, warnings)
    }
}

/// A stable id for a config-file adapter (its usage rows keep it across reloads and
/// restarts): negative, so it never meets a database adapter's creation time.
fn config_adapter_id(name: &str) -> i64 {
    let digest = hash_key(name);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    -((i64::from_be_bytes(bytes) & i64::MAX) | 1)
}

/// The current snapshot, replaced wholesale on every change.
#[derive(Debug, Default)]
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
    /// The config file's entries, kept to rebuild with after database changes.
    layer: RwLock<Arc<Layer>>,
    /// Discovery results by provider id (also persisted in the database for its providers).
    discovered: RwLock<HashMap<String, DiscoveredModels>>,
    /// Held from reading the database to installing the snapshot: two rebuilds racing (a
    /// discovery round and a delete, say) would otherwise let the one that read first install
    /// last, bringing back what the other had just removed.
    rebuilding: std::sync::Mutex<()>,
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the routing settings come from the config file.
    pub fn routing_from_config(&self) -> bool {
        self.layer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .routing
            .is_some()
    }

    /// The variables the config file allows the management API to name as `env:` keys.
    pub fn config_allowed_env(&self) -> Vec<String> {
        self.layer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .allowed_env
            .clone()
    }

    /// Replaces the config file's entries with what `declared` says (call
    /// [`Registry::reload`] after). Returns the warnings (logged here too): adapters left out
    /// because their key variable is unset.
    pub fn set_config(&self, declared: &Declared) -> Vec<String> {
        let (layer, warnings) = Layer::from_declared(declared);
        for warning in &warnings {
            tracing::warn!("config file: {warning}");
        }
        *self.layer.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(layer);
        warnings
    }

    /// Records what a discovery that began at `found.refreshed_at` found (call
    /// [`Registry::reload`] after), and returns what is now held; `None` when a discovery that
    /// began later was recorded already. Discoveries overlap (one in the background after a
    /// save, one the user asked for): the older one, finishing last, must not replace the
    /// newer answer. A failed one keeps the models known so far, whatever its caller saw.
    pub fn record_discovery(
        &self,
        provider: &str,
        found: DiscoveredModels,
    ) -> Option<DiscoveredModels> {
        let mut held = self
            .discovered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let current = held.get(provider);
        if current.is_some_and(|current| current.refreshed_at > found.refreshed_at) {
            return None;
        }
        let found = match current {
            Some(current) if found.error.is_some() => DiscoveredModels {
                models: current.models.clone(),
                peers: current.peers.clone(),
                ..found
            },
            _ => found,
        };
        held.insert(provider.to_owned(), found.clone());
        Some(found)
    }

    pub fn discovered(&self, provider: &str) -> Option<DiscoveredModels> {
        self.discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(provider)
            .cloned()
    }

    /// Loads the discovery results saved in the database (at start).
    pub fn load_discovered(&self, db: &dyn ProviderStore) -> Result<(), StoreError> {
        let rows = db.discovered()?;
        let mut discovered = self
            .discovered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for row in rows {
            discovered.insert(
                row.provider_id,
                DiscoveredModels {
                    models: row.models,
                    peers: serde_json::from_str(&row.peers).unwrap_or_default(),
                    refreshed_at: Some(row.refreshed_at),
                    error: row.error,
                },
            );
        }
        Ok(())
    }

    /// Rebuilds the snapshot from the database and the config layer. Blocking (SQLite and the
    /// keychain): run it on a blocking thread.
    pub fn reload(
        &self,
        db: &dyn ConfigStore,
        secrets: &dyn SecretStore,
    ) -> Result<(), StoreError> {
        let _rebuilding = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let layer = self
            .layer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut credentials: HashMap<String, Vec<CredentialRow>> = HashMap::new();
        for row in db.credentials()? {
            credentials
                .entry(row.provider_id.clone())
                .or_default()
                .push(row);
        }
        let discovered = self
            .discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();

        let mut providers = HashMap::new();
        let database_providers = db.providers()?.into_iter().map(|row| {
            let pool = credentials.remove(&row.id).unwrap_or_default();
            (row, pool, Source::Database)
        });
        let config_providers = layer
            .providers
            .iter()
            .map(|(row, pool)| (row.clone(), pool.clone(), Source::Config));
        // Config entries come last, so a config provider replaces a database one of the
        // same id: the file is what the operator of a headless gateway means.
        for (row, pool, source) in database_providers.chain(config_providers) {
            let found = discovered.get(&row.id).cloned().unwrap_or_default();
            let provider = load_provider(row, pool, source, found, secrets);
            providers.insert(provider.id.clone(), Arc::new(provider));
        }

        let mut serving: HashMap<String, Vec<String>> = HashMap::new();
        for provider in providers.values() {
            for model in provider.models() {
                serving.entry(model).or_default().push(provider.id.clone());
            }
        }
        for ids in serving.values_mut() {
            ids.sort();
        }

        let mut routes = HashMap::new();
        let database_routes = db.routes()?.into_iter().map(|row| (row, Source::Database));
        let config_routes = layer.routes.iter().map(|row| (row.clone(), Source::Config));
        for (row, source) in database_routes.chain(config_routes) {
            let route = Route {
                strategy: parse_strategy(row.strategy.as_deref(), &row.name),
                name: row.name,
                auto: row.auto,
                candidates: row.candidates,
                source,
            };
            routes.insert(route.name.clone(), Arc::new(route));
        }

        let mut adapters_by_key = HashMap::new();
        for row in db.adapters()? {
            let Some(hash) = parse_hash_hex(&row.key_hash) else {
                tracing::warn!(
                    adapter = row.create_time,
                    "adapter has a malformed key hash; skipped"
                );
                continue;
            };
            let adapter = load_adapter(row, Source::Database, &providers);
            adapters_by_key.insert(hash, Arc::new(adapter));
        }
        for (hash, row) in &layer.adapters {
            let adapter = load_adapter(row.clone(), Source::Config, &providers);
            adapters_by_key.insert(*hash, Arc::new(adapter));
        }

        let routing = match layer.routing {
            Some(settings) => settings,
            None => db
                .setting(ROUTING_SETTING)?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
        };

        let snapshot = Arc::new(Snapshot {
            providers,
            adapters_by_key,
            routes,
            serving,
            routing,
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        Ok(())
    }
}

fn parse_strategy(raw: Option<&str>, owner: &str) -> Option<Strategy> {
    let raw = raw?;
    match raw.parse() {
        Ok(strategy) => Some(strategy),
        Err(e) => {
            tracing::warn!(%owner, error = %e, "stored strategy unknown; the default is used");
            None
        }
    }
}

fn load_adapter(
    row: AdapterRow,
    source: Source,
    providers: &HashMap<String, Arc<Provider>>,
) -> Adapter {
    Adapter {
        strategy: parse_strategy(row.strategy.as_deref(), &row.create_time.to_string()),
        base_url: adapter_base_url(&row, providers),
        create_time: row.create_time,
        name: row.name,
        provider_id: row.provider_id,
        model_id: row.model_id,
        key_hint: row.key_hint,
        source,
    }
}

/// An adapter's URL override, kept only while it is on its provider's origin: requests through
/// the adapter carry the provider's key, which belongs to that origin alone. The API refuses
/// another origin when the adapter is made; this catches a provider that moved since (its keys
/// were cleared then, and a new key for the new host must not go to the old one).
fn adapter_base_url(
    row: &AdapterRow,
    providers: &HashMap<String, Arc<Provider>>,
) -> Option<String> {
    let url = row.base_url.as_deref()?;
    let provider = providers.get(row.provider_id.as_deref()?)?;
    if crate::config::destination::same_origin(url, &provider.url) {
        Some(url.to_owned())
    } else {
        tracing::warn!(
            adapter = row.create_time,
            provider = %provider.id,
            "the adapter's base URL is not on its provider's host; ignored (requests go to the \
             provider's URL)"
        );
        None
    }
}

fn load_provider(
    row: ProviderRow,
    pool: Vec<CredentialRow>,
    source: Source,
    discovered: DiscoveredModels,
    secrets: &dyn SecretStore,
) -> Provider {
    let protocol = row.protocol;
    let mut credentials: Vec<Arc<Credential>> = pool
        .into_iter()
        .map(|c| Arc::new(load_credential(c, source, secrets)))
        .collect();
    if credentials.is_empty() {
        credentials.push(Arc::new(Credential {
            key_id: format!("{}/keyless", row.id),
            provider_id: row.id.clone(),
            id: "keyless".into(),
            label: "no key".into(),
            key: ProviderKey::None,
            key_hint: None,
            key_source: None,
            enabled: true,
            priority: 0,
            limits: Limits::default(),
            source,
            implicit: true,
        }));
    }
    credentials.sort_by_key(|c| c.priority);
    Provider {
        url: row.url.trim_end_matches('/').to_owned(),
        id: row.id,
        protocol,
        discovery: row.discovery,
        declared_models: row.models,
        discovered,
        credentials,
        source,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn load_credential(row: CredentialRow, source: Source, secrets: &dyn SecretStore) -> Credential {
    let key_id = format!("{}/{}", row.provider_id, row.id);
    if let Some(account) = row
        .key_ref
        .as_deref()
        .and_then(crate::accounts::account_of_key_ref)
    {
        return Credential {
            provider_id: row.provider_id,
            id: row.id,
            key_id,
            label: row.label,
            key: ProviderKey::Account(account.to_owned()),
            key_hint: None,
            key_source: Some("account".to_owned()),
            enabled: row.enabled,
            priority: row.priority,
            limits: row.limits,
            source,
            implicit: false,
        };
    }
    let reference = row.key_ref.as_deref().map(SecretRef::parse);
    let key_source = match &reference {
        Some(Some(SecretRef::Stored(_))) => Some("keychain".to_owned()),
        Some(Some(r @ SecretRef::Env(_))) => Some(r.to_db()),
        Some(None) | None => None,
    };
    let key = match reference {
        None => ProviderKey::None,
        Some(None) => ProviderKey::Unavailable(format!(
            "the stored key reference of credential `{key_id}` is malformed; set the key again"
        )),
        Some(Some(reference)) => match reference.resolve(secrets) {
            Ok(Some(secret)) => ProviderKey::Ready(secret),
            Ok(None) => ProviderKey::Unavailable(format!(
                "the key of credential `{key_id}` is missing from the {}; set it again",
                secrets.kind()
            )),
            Err(e) => {
                tracing::warn!(credential = %key_id, error = %e, "credential key unavailable");
                ProviderKey::Unavailable(e.to_string())
            }
        },
    };
    Credential {
        provider_id: row.provider_id,
        id: row.id,
        key_id,
        label: row.label,
        key,
        key_hint: row.key_hint,
        key_source,
        enabled: row.enabled,
        priority: row.priority,
        limits: row.limits,
        source,
        implicit: false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn found(models: &[&str], began: i64, error: Option<&str>) -> DiscoveredModels {
        DiscoveredModels {
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            peers: Vec::new(),
            refreshed_at: Some(began),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn an_older_discovery_finishing_last_does_not_replace_a_newer_answer() {
        let registry = Registry::default();
        // The user's discovery (began at 20) answers first; the one started in the background
        // when the provider was saved (began at 10, without a key yet) fails after it.
        assert!(
            registry
                .record_discovery("p", found(&["m"], 20, None))
                .is_some()
        );
        assert!(
            registry
                .record_discovery("p", found(&[], 10, Some("401")))
                .is_none()
        );
        assert!(
            registry
                .record_discovery("p", found(&["old"], 15, None))
                .is_none()
        );
        assert_eq!(registry.discovered("p").unwrap().models, ["m"]);
    }

    #[test]
    fn a_failed_discovery_keeps_the_models_known_so_far() {
        let registry = Registry::default();
        registry.record_discovery("p", found(&["m"], 10, None));
        let held = registry
            .record_discovery("p", found(&[], 20, Some("503")))
            .unwrap();
        assert_eq!(held.models, ["m"]);
        assert_eq!(held.error.as_deref(), Some("503"));
        assert_eq!(held.refreshed_at, Some(20));
    }
}
