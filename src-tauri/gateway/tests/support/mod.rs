//! What the gateway's integration tests share: a gateway started in-process with its management
//! API, and the OAuth 2 / OpenID Connect server the login tests sign in to. Each test file
//! includes this module (`mod support;`, and `mod scratch;` for its data folder) and uses part
//! of it.
#![allow(clippy::unwrap_used, reason = "tests")]
#![allow(dead_code, reason = "each test file uses part of it")]

pub mod in_process;
pub mod oidc;
