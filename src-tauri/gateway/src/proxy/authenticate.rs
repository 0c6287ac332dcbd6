//! The request path's first step: the key the client presented names the adapter whose routes
//! the request may take. A request with no key or an unknown one ends here (401), before any
//! routing; the adapter found goes on to `plan`. `server` uses it too, for the client views
//! that need an adapter but send nothing upstream (model lists, pool views, token counts).

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::error::GatewayError;
use crate::routing::registry::{Adapter, Snapshot};
use crate::server::access::{hash_key, presented_key};

/// Finds the adapter that owns the key the client presented.
pub fn authenticate(
    snapshot: &Snapshot,
    headers: &HeaderMap,
) -> Result<Arc<Adapter>, GatewayError> {
    let key = presented_key(headers).ok_or(GatewayError::MissingKey)?;
    snapshot
        .adapter_for_key(&hash_key(key))
        .cloned()
        .ok_or(GatewayError::InvalidKey)
}
