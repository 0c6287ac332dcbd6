//! Rows as the store's unit tests write them: the seam's own test and the SQLite tables' tests
//! start from the same provider and adapter, and change only what a test is about.

use crate::routing::discovery::DiscoveryKind;
use crate::store::{AdapterRow, ProviderRow};
use flexiproxy_protocol::Protocol;

/// An OpenAI-compatible provider at a local address serving `model`, created at 1.
pub(crate) fn provider_row(id: &str, model: &str) -> ProviderRow {
    ProviderRow {
        id: id.into(),
        url: "http://127.0.0.1:1/v1".into(),
        protocol: Protocol::OpenAiChat,
        discovery: DiscoveryKind::Auto,
        models: vec![model.into()],
        created_at: 1,
        updated_at: 1,
    }
}

/// An adapter pinned to `provider_id` alone, with its key's hash.
pub(crate) fn adapter_row(create_time: i64, provider_id: &str, key_hash: &str) -> AdapterRow {
    AdapterRow {
        create_time,
        name: None,
        provider_id: Some(provider_id.into()),
        model_id: None,
        base_url: None,
        strategy: None,
        key_hash: key_hash.into(),
        key_hint: "fp-…".into(),
    }
}
