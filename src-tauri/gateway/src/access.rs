//! Who may talk to the gateway: local access keys, the management token, and the Host/Origin
//! guard that keeps web pages in the user's browser away from the management API.
//!
//! Adapter keys (`fp-…`) are shown once and stored only as SHA-256 hashes; `registry` looks a
//! presented key up by its hash. The management token is compared by hash too, so timing does
//! not leak its prefix. [`HostGuard`] refuses requests whose `Host` is not this gateway's own
//! loopback address (DNS rebinding) or whose `Origin` is another site (cross-site requests).

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::secrets::{Secret, SecretError};

/// The prefix of every adapter key, so users and secret scanners can recognise them.
pub const ADAPTER_KEY_PREFIX: &str = "fp-";

/// SHA-256 of a key, the form keys are stored and looked up in.
pub type KeyHash = [u8; 32];

pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

pub fn hash_hex(hash: &KeyHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_hash_hex(hex: &str) -> Option<KeyHash> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A new adapter key with its hash and a hint that is safe to show later.
#[derive(Debug)]
pub struct NewKey {
    pub key: Secret,
    pub hash: KeyHash,
    pub hint: String,
}

pub fn new_adapter_key() -> Result<NewKey, SecretError> {
    let key = Secret::generate(ADAPTER_KEY_PREFIX)?;
    let hash = hash_key(key.expose());
    // The prefix and the last four characters identify a key in a list without revealing it.
    let value = key.expose();
    let hint = format!("{ADAPTER_KEY_PREFIX}…{}", &value[value.len() - 4..]);
    Ok(NewKey { key, hash, hint })
}

/// The key a client presented: `Authorization: Bearer …`, `x-api-key` as Anthropic clients
/// send it, or `x-goog-api-key` as Gemini clients do (their `?key=` form is moved into that
/// header by the Gemini handlers).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .or_else(|| headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()))
        .filter(|k| !k.is_empty())
}

/// Checks the management token on a request.
#[derive(Debug, Clone)]
pub struct ManagementAuth {
    token_hash: Option<KeyHash>,
}

impl ManagementAuth {
    /// `None` disables the management API (no keychain and no token in the environment).
    pub fn new(token: Option<&Secret>) -> Self {
        Self {
            token_hash: token.map(|t| hash_key(t.expose())),
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        let Some(expected) = &self.token_hash else {
            return Err(GatewayError::Forbidden(
                "the management API is off because no management token is available: no OS \
                 keychain is reachable and FLEXIPROXY_MANAGEMENT_TOKEN is not set"
                    .into(),
            ));
        };
        match presented_key(headers) {
            Some(token) if hash_key(token) == *expected => Ok(()),
            _ => Err(GatewayError::Unauthorized),
        }
    }
}

/// Refuses requests that did not come from this machine's own pages and tools.
#[derive(Debug, Clone)]
pub struct HostGuard {
    /// Accepted `Host` values (`127.0.0.1:8317`, `localhost:8317`, …).
    hosts: Vec<String>,
    /// Accepted `Origin` values (`http://127.0.0.1:8317`, the desktop window's origins, …).
    origins: Vec<String>,
}

impl HostGuard {
    /// Accepts the loopback names with `port`, plus `extra_hosts` (the bind address when the user
    /// chose a non-loopback one).
    pub fn new(port: u16, extra_hosts: &[String]) -> Self {
        let mut hosts: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|h| format!("{h}:{port}"))
            .collect();
        hosts.extend(extra_hosts.iter().map(|h| format!("{h}:{port}")));
        let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
        // Tauri's own webview origins, for a window that loads bundled pages.
        origins.extend(
            ["tauri://localhost", "http://tauri.localhost"]
                .iter()
                .map(|o| (*o).to_owned()),
        );
        Self { hosts, origins }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        match host {
            Some(host) if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) => {}
            Some(host) => {
                return Err(GatewayError::Forbidden(format!(
                    "Host `{host}` is not this gateway; use {}",
                    self.hosts[0]
                )));
            }
            None => return Err(GatewayError::Forbidden("the Host header is missing".into())),
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                return Err(GatewayError::Forbidden(format!(
                    "requests from the web page at `{origin}` may not use the management API"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn adapter_keys_hash_and_hint() {
        let new = new_adapter_key().unwrap();
        assert!(new.key.expose().starts_with("fp-"));
        assert_eq!(new.hash, hash_key(new.key.expose()));
        assert_eq!(parse_hash_hex(&hash_hex(&new.hash)), Some(new.hash));
        assert!(new.hint.starts_with("fp-…"));
        assert!(!new.key.expose().contains(&new.hint));
    }

    #[test]
    fn keys_come_from_bearer_or_x_api_key() {
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer fp-1")])),
            Some("fp-1")
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "fp-2")])),
            Some("fp-2")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Basic x")])),
            None
        );
    }

    #[test]
    fn management_token_is_checked() {
        let auth = ManagementAuth::new(Some(&Secret::new("tok")));
        assert!(
            auth.check(&headers(&[("authorization", "Bearer tok")]))
                .is_ok()
        );
        assert!(matches!(
            auth.check(&headers(&[("authorization", "Bearer nope")])),
            Err(GatewayError::Unauthorized)
        ));
        assert!(matches!(
            ManagementAuth::new(None).check(&headers(&[("authorization", "Bearer tok")])),
            Err(GatewayError::Forbidden(_))
        ));
    }

    #[test]
    fn foreign_hosts_and_origins_are_refused() {
        let guard = HostGuard::new(8317, &[]);
        assert!(guard.check(&headers(&[("host", "127.0.0.1:8317")])).is_ok());
        assert!(guard.check(&headers(&[("host", "LOCALHOST:8317")])).is_ok());
        assert!(
            guard
                .check(&headers(&[("host", "evil.example:8317")]))
                .is_err()
        );
        assert!(
            guard
                .check(&headers(&[("host", "127.0.0.1:9999")]))
                .is_err()
        );
        assert!(
            guard
                .check(&headers(&[
                    ("host", "127.0.0.1:8317"),
                    ("origin", "http://127.0.0.1:8317")
                ]))
                .is_ok()
        );
        assert!(
            guard
                .check(&headers(&[
                    ("host", "127.0.0.1:8317"),
                    ("origin", "https://evil.example")
                ]))
                .is_err()
        );
        assert!(
            guard
                .check(&headers(&[("host", "127.0.0.1:8317"), ("origin", "null")]))
                .is_err()
        );
    }
}
