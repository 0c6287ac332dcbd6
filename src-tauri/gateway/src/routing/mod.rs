//! Which provider, model and credential serve a request, and what happens when one fails.
//!
//! `policy` is the shared vocabulary (strategies, limits, candidates, settings).

pub mod policy;

pub use policy::{Candidate, Limits, RoutingSettings, Strategy};
