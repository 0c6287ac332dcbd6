//! Who may talk to the gateway: local access keys, the management token, and the Host/Origin
//! guard that keeps web pages in the user's browser away from the management API.
//!
//! Adapter keys (`fp-…`) are shown once and stored only as SHA-256 hashes; `registry` looks a
//! presented key up by its hash. The management token is compared by hash too, so timing does
//! not leak its prefix. [`HostGuard`] refuses requests whose `Host` is not this gateway's own
//! loopback address (DNS rebinding) or whose `Origin` is another site (cross-site requests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::store::secrets::{Secret, SecretError};

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
///
/// `Host` must name this gateway: `localhost` or an IP literal it really listens on, with its
/// port. IP literals are compared as addresses (`[::1]`, `[0:0:0:0:0:0:0:1]` and `127.0.0.1`
/// are what they are), names other than `localhost` never pass (DNS rebinding points a name the
/// attacker owns at this machine). On a wildcard bind (`0.0.0.0`, `::`) the addresses are the
/// machine's interface addresses, read at start and read again when a `Host` names an address
/// not seen yet (a new DHCP lease).
#[derive(Debug, Clone)]
pub struct HostGuard {
    port: u16,
    /// Addresses a `Host` may name, besides `localhost`.
    addresses: Arc<RwLock<Vec<IpAddr>>>,
    /// The families of interface addresses a wildcard bind answers on, else `None`.
    wildcard: Option<Wildcard>,
    /// `https` when the gateway serves TLS, for the `Origin` check.
    scheme: &'static str,
}

/// Which interface addresses a wildcard bind reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    /// `0.0.0.0`: IPv4 only.
    V4,
    /// `::`: IPv6, and IPv4 where the system maps it (the usual dual-stack default).
    Both,
}

/// Tauri's own webview origins, for a window that loads bundled pages.
const TAURI_ORIGINS: [&str; 2] = ["tauri://localhost", "http://tauri.localhost"];

impl HostGuard {
    /// Accepts `localhost` and the loopback addresses with `port` only.
    pub fn new(port: u16) -> Self {
        Self::listening_on(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), false)
    }

    /// Accepts the addresses the gateway really listens on at `listen`: the loopback ones
    /// always (a wildcard or loopback bind reaches them; with a specific address they are
    /// harmless), plus the bound address, or every interface address when it is a wildcard.
    pub fn listening_on(listen: SocketAddr, tls: bool) -> Self {
        let bind = listen.ip();
        let wildcard = match bind {
            IpAddr::V4(ip) if ip.is_unspecified() => Some(Wildcard::V4),
            IpAddr::V6(ip) if ip.is_unspecified() => Some(Wildcard::Both),
            _ => None,
        };
        let mut addresses = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        match wildcard {
            Some(wildcard) => addresses.extend(interface_addresses(wildcard)),
            None => addresses.push(bind),
        }
        addresses.sort();
        addresses.dedup();
        Self {
            port: listen.port(),
            addresses: Arc::new(RwLock::new(addresses)),
            wildcard,
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// Every `Host` value accepted now (for the start-up log line).
    pub fn accepted_hosts(&self) -> Vec<String> {
        let mut hosts = vec![format!("localhost:{}", self.port)];
        hosts.extend(
            self.addresses
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.port).to_string()),
        );
        hosts
    }

    /// Whether `host` (a `Host` value, `name:port`) names this gateway.
    fn accepts(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        if port != self.port {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let Ok(ip) = name.parse::<IpAddr>() else {
            return false;
        };
        let ip = canonical_ip(ip);
        let known = |addresses: &[IpAddr]| addresses.iter().any(|a| canonical_ip(*a) == ip);
        if known(
            &self
                .addresses
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            return true;
        }
        let Some(wildcard) = self.wildcard else {
            return false;
        };
        // An address not seen at start: the interfaces may have changed since.
        let fresh = interface_addresses(wildcard);
        if !known(&fresh) {
            return false;
        }
        let mut addresses = self
            .addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        addresses.extend(fresh);
        addresses.sort();
        addresses.dedup();
        true
    }

    fn accepts_origin(&self, origin: &str) -> bool {
        if TAURI_ORIGINS.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let Some((scheme, host)) = origin.split_once("://") else {
            return false;
        };
        scheme.eq_ignore_ascii_case(self.scheme) && !host.contains('/') && self.accepts(host)
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        match host {
            Some(host) if self.accepts(host) => {}
            Some(host) => {
                return Err(GatewayError::Forbidden(format!(
                    "Host `{host}` is not this gateway; use 127.0.0.1:{}",
                    self.port
                )));
            }
            None => return Err(GatewayError::Forbidden("the Host header is missing".into())),
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.accepts_origin(origin) {
                return Err(GatewayError::Forbidden(format!(
                    "requests from the web page at `{origin}` may not use the management API"
                )));
            }
        }
        Ok(())
    }
}

/// `name:port` or `[v6]:port` split; a `Host` without a port never names this gateway (it
/// never listens on 80 or 443 by default, and a client that reached it sends the port).
fn split_host(host: &str) -> Option<(&str, u16)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        (inside, after.strip_prefix(':')?)
    } else {
        let (name, port) = host.rsplit_once(':')?;
        if name.contains(':') {
            return None;
        }
        (name, port)
    };
    Some((name, port.parse().ok()?))
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.2`) as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The addresses of this machine's interfaces that a wildcard bind answers on.
fn interface_addresses(wildcard: Wildcard) -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces
            .iter()
            .map(if_addrs::Interface::ip)
            .filter(|ip| wildcard == Wildcard::Both || ip.is_ipv4())
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list this machine's network addresses");
            Vec::new()
        }
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

    /// Whether `guard` lets through a request addressed to `host`.
    fn host_passes(guard: &HostGuard, host: &str) -> bool {
        guard.check(&headers(&[("host", host)])).is_ok()
    }

    /// Whether `guard` lets through a request to 127.0.0.1:8317 from a page of `origin`.
    fn origin_passes(guard: &HostGuard, origin: &str) -> bool {
        guard
            .check(&headers(&[("host", "127.0.0.1:8317"), ("origin", origin)]))
            .is_ok()
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
        let guard = HostGuard::new(8317);
        assert!(host_passes(&guard, "127.0.0.1:8317"));
        assert!(host_passes(&guard, "LOCALHOST:8317"));
        assert!(!host_passes(&guard, "evil.example:8317"));
        assert!(!host_passes(&guard, "127.0.0.1:9999"));
        assert!(origin_passes(&guard, "http://127.0.0.1:8317"));
        assert!(!origin_passes(&guard, "https://evil.example"));
        assert!(!origin_passes(&guard, "null"));
    }

    #[test]
    fn ip_literals_are_compared_as_addresses_and_names_never_pass() {
        let guard = HostGuard::new(8317);
        for host in [
            "[::1]:8317",
            "[0:0:0:0:0:0:0:1]:8317",
            "[::ffff:127.0.0.1]:8317",
            "127.0.0.1:8317",
        ] {
            assert!(host_passes(&guard, host), "{host}");
        }
        for host in [
            "::1:8317",
            "[::1]",
            "127.0.0.1",
            "127.0.0.1:8317x",
            "127.0.0.1.evil.example:8317",
            "[::1]:9999",
            "10.1.2.3:8317",
        ] {
            assert!(!host_passes(&guard, host), "{host}");
        }
        assert!(origin_passes(&guard, "http://[::1]:8317"));
        assert!(origin_passes(&guard, "tauri://localhost"));
        assert!(!origin_passes(&guard, "https://127.0.0.1:8317"));
        assert!(!origin_passes(&guard, "http://127.0.0.1:8317/x"));
    }

    #[test]
    fn a_specific_bind_adds_its_own_address_in_brackets_when_v6() {
        let guard = HostGuard::listening_on("[fd00::5]:8400".parse().unwrap(), false);
        assert!(host_passes(&guard, "[fd00::5]:8400"));
        assert!(!host_passes(&guard, "[fd00::6]:8400"));
        assert!(
            guard
                .accepted_hosts()
                .contains(&"[fd00::5]:8400".to_owned())
        );
        let v4 = HostGuard::listening_on("192.0.2.7:8400".parse().unwrap(), false);
        assert!(host_passes(&v4, "192.0.2.7:8400"));
        assert!(!host_passes(&v4, "192.0.2.8:8400"));
    }

    #[test]
    fn a_wildcard_bind_accepts_every_interface_address_of_its_family() {
        let interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
            .unwrap()
            .iter()
            .map(if_addrs::Interface::ip)
            .collect();
        let v4 = HostGuard::listening_on("0.0.0.0:8401".parse().unwrap(), false);
        let both = HostGuard::listening_on("[::]:8401".parse().unwrap(), false);
        for ip in &interfaces {
            let host = SocketAddr::new(*ip, 8401).to_string();
            assert!(host_passes(&both, &host), "{host}");
            assert_eq!(
                host_passes(&v4, &host),
                ip.is_ipv4() || ip.is_loopback(),
                "{host}"
            );
        }
        // An address this machine does not have, and a name, stay out.
        assert!(!host_passes(&v4, "192.0.2.99:8401"));
        assert!(!host_passes(&v4, "evil.example:8401"));
    }
}
