//! The request path: a client's request through routing, translation (or the same-protocol
//! fast path), the upstream call and back, with its usage metered.
//!
//! One file per phase, in the order a request meets them: `request` is what the client asked
//! for; `authenticate` finds the adapter its key names; `plan` runs the failover loop over the
//! request's candidates and, for each, one attempt through the phases below; `prepare` shapes
//! the body for the candidate (the same-protocol fast path, or `translate` for a client and a
//! provider of different protocols); `send` builds and sends the upstream request
//! (`account_relay` for a subscription account); `classify` reads the answer (try elsewhere,
//! or a redirect never followed); `deliver` relays the answer to the client; `meter` records
//! the exchange once.
//!
//! Beside the path: `token_count` counts a request's input tokens for the count endpoints;
//! `upstream_body` reads a provider's body with caps and idle timeouts; `path_segment` makes
//! client values into one URL segment.

pub(crate) mod account_relay;
pub(crate) mod authenticate;
pub(crate) mod classify;
pub(crate) mod deliver;
pub(crate) mod meter;
pub mod path_segment;
pub(crate) mod plan;
pub(crate) mod prepare;
pub(crate) mod request;
pub(crate) mod send;
pub mod token_count;
pub mod translate;
pub(crate) mod upstream_body;

pub use authenticate::authenticate;
pub(crate) use plan::answer;
pub use plan::forward;
pub(crate) use request::{ClientRequest, GeminiCall};
