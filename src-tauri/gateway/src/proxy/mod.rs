//! The request path: a client's request through routing, translation (or the same-protocol
//! fast path), the upstream call and back, with its usage metered.
//!
//! `relay` runs the failover loop over a request's candidates and the fast path;
//! `translate` the translated path (client and provider of different protocols);
//! `account_relay` the shaping of a request for a subscription account; `token_count` counts a
//! request's input tokens for the count endpoints; `upstream_body` reads a provider's body
//! with caps and idle timeouts; `path_segment` makes client values into one URL segment.

pub(crate) mod account_relay;
pub mod path_segment;
pub mod relay;
pub mod token_count;
pub mod translate;
pub(crate) mod upstream_body;
