//! The providers and adapters the request path reads, held in memory.
//!
//! `store` is the source of truth; after every management change the registry rebuilds a
//! [`Snapshot`] from it (resolving provider keys through `secrets` once, not per request) and
//! swaps it in. A request takes the current snapshot with one short read lock and an `Arc`
//! clone, then looks its adapter up by key hash without touching SQLite or the keychain.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::access::{KeyHash, parse_hash_hex};
use crate::protocol::Protocol;
use crate::secrets::{Secret, SecretRef, SecretStore};
use crate::store::{Database, ProviderRow, StoreError};

/// A provider's key as the request path sees it.
#[derive(Debug, Clone)]
pub enum ProviderKey {
    /// The provider needs no key (a local Ollama, vLLM, LM Studio).
    None,
    Ready(Secret),
    /// The key could not be read; the message says why and is shown to the client.
    Unavailable(String),
}

#[derive(Debug)]
pub struct Provider {
    pub id: String,
    /// The base URL, without a trailing slash (`https://api.deepseek.com/v1`).
    pub url: String,
    pub protocol: Protocol,
    pub key: ProviderKey,
}

#[derive(Debug)]
pub struct Adapter {
    pub create_time: i64,
    pub provider_id: String,
    pub model_id: String,
    /// Overrides the provider's URL for this adapter.
    pub base_url: Option<String>,
}

/// Everything the request path needs, consistent at one point in time.
#[derive(Debug, Default)]
pub struct Snapshot {
    providers: HashMap<String, Arc<Provider>>,
    adapters_by_key: HashMap<KeyHash, Arc<Adapter>>,
}

impl Snapshot {
    pub fn adapter_for_key(&self, hash: &KeyHash) -> Option<&Arc<Adapter>> {
        self.adapters_by_key.get(hash)
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<Provider>> {
        self.providers.get(id)
    }

    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    pub fn adapter_count(&self) -> usize {
        self.adapters_by_key.len()
    }
}

/// The current snapshot, replaced wholesale on every change.
#[derive(Debug, Default)]
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds the snapshot from the database. Blocking (SQLite and the keychain): run it on a
    /// blocking thread.
    pub fn reload(&self, db: &Database, secrets: &dyn SecretStore) -> Result<(), StoreError> {
        let providers = db
            .providers()?
            .into_iter()
            .map(|row| {
                let provider = load_provider(row, secrets);
                (provider.id.clone(), Arc::new(provider))
            })
            .collect();
        let adapters_by_key = db
            .adapters()?
            .into_iter()
            .filter_map(|row| {
                let Some(hash) = parse_hash_hex(&row.key_hash) else {
                    tracing::warn!(
                        adapter = row.create_time,
                        "adapter has a malformed key hash; skipped"
                    );
                    return None;
                };
                let adapter = Adapter {
                    create_time: row.create_time,
                    provider_id: row.provider_id,
                    model_id: row.model_id,
                    base_url: row.base_url,
                };
                Some((hash, Arc::new(adapter)))
            })
            .collect();
        let snapshot = Arc::new(Snapshot {
            providers,
            adapters_by_key,
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        Ok(())
    }
}

fn load_provider(row: ProviderRow, secrets: &dyn SecretStore) -> Provider {
    let key = match row.key_ref.as_deref().map(SecretRef::parse) {
        None => ProviderKey::None,
        Some(None) => ProviderKey::Unavailable(format!(
            "the stored key reference for `{}` is malformed; set the key again",
            row.id
        )),
        Some(Some(reference)) => match reference.resolve(secrets) {
            Ok(Some(secret)) => ProviderKey::Ready(secret),
            Ok(None) => ProviderKey::Unavailable(format!(
                "the key is missing from the {}; set it again for provider `{}`",
                secrets.kind(),
                row.id
            )),
            Err(e) => {
                tracing::warn!(provider = %row.id, error = %e, "provider key unavailable");
                ProviderKey::Unavailable(e.to_string())
            }
        },
    };
    let protocol = row.protocol.parse().unwrap_or_else(|e| {
        tracing::warn!(provider = %row.id, error = %e, "unknown protocol; treated as openai_chat");
        Protocol::OpenAiChat
    });
    Provider {
        url: row.url.trim_end_matches('/').to_owned(),
        id: row.id,
        protocol,
        key,
    }
}
