//! Secrets: provider API keys and the management token.
//!
//! A [`Secret`] is a string that never prints: `Debug` and `Display` show a redacted hint and
//! it has no `Serialize`, so it cannot end up in logs, SQLite rows or JSON bodies by accident.
//! Secrets are kept behind the [`SecretStore`] trait: the OS keychain ([`Keychain`]) in the app,
//! [`MemoryStore`] in tests, and [`EnvOnly`] for headless machines without a keychain, which
//! reads nothing itself and refuses to store anything (secrets then come from `env:NAME`
//! references, resolved by [`SecretRef`]). `store` only ever holds a reference, never the value.
//! Which variables a reference given through the management API may name is
//! [`EnvAllowlist`]'s rule.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A secret value. Redacted in `Debug`/`Display`; read it with [`Secret::expose`] only where it is
/// sent on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The value itself: call this only to put it in an outgoing header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A hint safe to show: the first few characters of a key that has a recognisable prefix
    /// and its length, e.g. `sk-p…(51 chars)`. Keys shorter than 16 characters show no characters.
    pub fn hint(&self) -> String {
        let len = self.0.chars().count();
        if len < 16 {
            return format!("…({len} chars)");
        }
        let head: String = self.0.chars().take(4).collect();
        format!("{head}…({len} chars)")
    }

    /// A fresh random secret: `prefix` followed by 32 random bytes in hex.
    pub fn generate(prefix: &str) -> Result<Self, SecretError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        let mut value = String::with_capacity(prefix.len() + 64);
        value.push_str(prefix);
        for byte in bytes {
            value.push_str(&format!("{byte:02x}"));
        }
        Ok(Self::new(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be read or written. Messages say what the user can do about it and
/// never contain the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no OS keychain is reachable ({detail}). On Linux the keychain is the Secret Service: \
         install and unlock gnome-keyring or KeePassXC in a desktop session, or start with \
         --secrets env to use environment variables instead"
    )]
    Unavailable { detail: String },
    #[error(
        "the OS keychain is locked ({detail}); unlock it (log in to the desktop session or run \
         `gnome-keyring-daemon --unlock`) and try again"
    )]
    Locked { detail: String },
    #[error(
        "this gateway has no keychain, so it cannot store `{name}`; give it as an env:NAME reference instead"
    )]
    ReadOnly { name: String },
    #[error(
        "environment variable `{var}` named by the reference env:{var} is not set or not valid UTF-8"
    )]
    MissingEnv { var: String },
    #[error("the keychain failed on `{name}`: {detail}")]
    Backend { name: String, detail: String },
    #[error("could not draw random bytes: {0}")]
    Random(String),
}

/// Where secrets live. Names are plain identifiers such as `provider:openai` or
/// `management-token`; values are [`Secret`]s.
///
/// Implementations may block (the keychain talks to D-Bus): call them from
/// `tokio::task::spawn_blocking` on the async side.
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// A short name for messages: "OS keychain", "memory", "environment only".
    fn kind(&self) -> &'static str;
    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError>;
    fn set(&self, name: &str, value: &Secret) -> Result<(), SecretError>;
    fn delete(&self, name: &str) -> Result<(), SecretError>;
    /// Whether `set` can succeed at all; false for [`EnvOnly`].
    fn writable(&self) -> bool {
        true
    }
}

/// The OS keychain through `keyring`: Secret Service on Linux, Keychain on macOS, Credential
/// Manager on Windows. Every entry uses the service name given at construction, so two data
/// directories (e.g. tests) can keep separate entries.
#[derive(Debug, Clone)]
pub struct Keychain {
    service: String,
}

impl Keychain {
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    /// Checks that the keychain answers, so the app can say so at start-up instead of failing on
    /// the first request. A missing entry is a healthy answer.
    pub fn probe(&self) -> Result<(), SecretError> {
        self.get("probe").map(|_| ())
    }

    fn entry(&self, name: &str) -> Result<keyring::Entry, SecretError> {
        keyring::Entry::new(&self.service, name).map_err(|e| map_keyring_error(name, &e))
    }
}

/// Whether a keychain error means the keychain is locked: it says so, or the prompt that would
/// unlock it was dismissed (by the user, or because no prompter could be shown: gnome-keyring
/// without a session's prompter answers a locked item's read that way).
fn says_locked(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    detail.contains("locked") || detail.contains("prompt dismissed")
}

fn map_keyring_error(name: &str, error: &keyring::Error) -> SecretError {
    let detail = error.to_string();
    match error {
        keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_) => {
            if says_locked(&detail) {
                SecretError::Locked { detail }
            } else {
                SecretError::Unavailable { detail }
            }
        }
        _ if says_locked(&detail) => SecretError::Locked { detail },
        _ => SecretError::Backend {
            name: name.to_owned(),
            detail,
        },
    }
}

impl SecretStore for Keychain {
    fn kind(&self) -> &'static str {
        "OS keychain"
    }

    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        match self.entry(name)?.get_password() {
            Ok(value) => Ok(Some(Secret::new(value))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring_error(name, &e)),
        }
    }

    fn set(&self, name: &str, value: &Secret) -> Result<(), SecretError> {
        self.entry(name)?
            .set_password(value.expose())
            .map_err(|e| map_keyring_error(name, &e))
    }

    fn delete(&self, name: &str) -> Result<(), SecretError> {
        match self.entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring_error(name, &e)),
        }
    }
}

/// Secrets in process memory, gone at exit. For tests and for benchmarks.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Secret>>,
}

impl SecretStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries.get(name).cloned())
    }

    fn set(&self, name: &str, value: &Secret) -> Result<(), SecretError> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(name.to_owned(), value.clone());
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), SecretError> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(name);
        Ok(())
    }
}

/// For a headless machine with no keychain: stores nothing, so no secret is ever written in
/// clear. Keys are given as `env:NAME` references instead.
#[derive(Debug, Clone)]
pub struct EnvOnly {
    /// Why the keychain is not used, repeated in errors.
    pub reason: String,
}

impl SecretStore for EnvOnly {
    fn kind(&self) -> &'static str {
        "environment only"
    }

    fn get(&self, _name: &str) -> Result<Option<Secret>, SecretError> {
        Ok(None)
    }

    fn set(&self, name: &str, _value: &Secret) -> Result<(), SecretError> {
        Err(SecretError::ReadOnly {
            name: name.to_owned(),
        })
    }

    fn delete(&self, _name: &str) -> Result<(), SecretError> {
        Ok(())
    }

    fn writable(&self) -> bool {
        false
    }
}

/// Where a provider's key comes from, as recorded in the database: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// In the secret store under this entry name.
    Stored(String),
    /// In this environment variable (`env:NAME`), read when needed.
    Env(String),
}

impl SecretRef {
    /// The prefix that marks a key given as a reference to an environment variable.
    pub const ENV_PREFIX: &'static str = "env:";

    /// Parses the database form (`store:NAME` or `env:NAME`).
    pub fn parse(raw: &str) -> Option<Self> {
        if let Some(var) = raw.strip_prefix(Self::ENV_PREFIX) {
            return Some(Self::Env(var.to_owned()));
        }
        raw.strip_prefix("store:")
            .map(|name| Self::Stored(name.to_owned()))
    }

    /// The database form.
    pub fn to_db(&self) -> String {
        match self {
            Self::Stored(name) => format!("store:{name}"),
            Self::Env(var) => format!("{}{var}", Self::ENV_PREFIX),
        }
    }

    /// Reads the secret this reference points at.
    pub fn resolve(&self, store: &dyn SecretStore) -> Result<Option<Secret>, SecretError> {
        match self {
            Self::Stored(name) => store.get(name),
            Self::Env(var) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
                _ => Err(SecretError::MissingEnv { var: var.clone() }),
            },
        }
    }
}

/// Whether `name` is a well-formed environment variable name: letters, digits and `_`, not
/// starting with a digit.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 256
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The environment variables an `env:NAME` key reference given through the management API may
/// name. Without this, whoever holds the management token could read any variable of the
/// gateway's process (`env:AWS_SECRET_ACCESS_KEY` as a provider's key, sent to a host of their
/// choosing). Allowed: names starting with [`EnvAllowlist::PREFIX`], and the names the user
/// listed (`--allow-env`, `allowed_env` in the config file). The gateway's own settings
/// (`FLEXIPROXY_PORT`, the management token's variable, …) are never keys. The config file's
/// own `env:NAME` keys need no listing: the file is the user's, not the API caller's.
#[derive(Debug, Clone, Default)]
pub struct EnvAllowlist {
    names: std::collections::BTreeSet<String>,
    /// The gateway's own settings variables: refused whatever the lists say.
    reserved: std::collections::BTreeSet<String>,
}

impl EnvAllowlist {
    /// Variables whose names start with this are always allowed.
    pub const PREFIX: &'static str = "FLEXIPROXY_";

    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: names.into_iter().map(|n| n.as_ref().to_owned()).collect(),
            reserved: std::collections::BTreeSet::new(),
        }
    }

    /// Also refuses these names (the gateway's settings variables, see
    /// `config::setting_variables`).
    #[must_use]
    pub fn reserving<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.reserved
            .extend(names.into_iter().map(|n| n.as_ref().to_owned()));
        self
    }

    pub fn allows(&self, name: &str) -> bool {
        name != crate::config::MANAGEMENT_TOKEN_ENV
            && !self.reserved.contains(name)
            && (name.starts_with(Self::PREFIX) || self.names.contains(name))
    }

    /// Checks the variable an API caller named; the error says how the user allows it.
    pub fn check(&self, name: &str) -> Result<(), EnvRefusal> {
        if !valid_env_name(name) {
            return Err(EnvRefusal::Malformed);
        }
        if name == crate::config::MANAGEMENT_TOKEN_ENV {
            return Err(EnvRefusal::ManagementToken);
        }
        if self.reserved.contains(name) {
            return Err(EnvRefusal::Setting {
                name: name.to_owned(),
            });
        }
        if self.allows(name) {
            Ok(())
        } else {
            Err(EnvRefusal::NotAllowed {
                name: name.to_owned(),
            })
        }
    }
}

/// Why an `env:NAME` reference from the management API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvRefusal {
    #[error(
        "`env:` must be followed by an environment variable name: letters, digits and `_`, not \
         starting with a digit (e.g. env:FLEXIPROXY_OPENAI_KEY)"
    )]
    Malformed,
    #[error(
        "env:{} is the management token, not a provider key",
        crate::config::MANAGEMENT_TOKEN_ENV
    )]
    ManagementToken,
    #[error("env:{name} is one of the gateway's own settings, not a provider key")]
    Setting { name: String },
    #[error(
        "env:{name} is not a variable this gateway lets the API read: an env: key may name only \
         variables starting with {prefix} (e.g. env:{prefix}{name}) or ones you allowed when \
         starting the gateway: `--allow-env {name}` (or FLEXIPROXY_ALLOW_ENV={name}), or \
         allowed_env = [\"{name}\"] in the config file",
        prefix = EnvAllowlist::PREFIX
    )]
    NotAllowed { name: String },
}

/// The secret store chosen for this process, shared by every part of the gateway.
pub type SharedSecretStore = Arc<dyn SecretStore>;

/// A test double: a [`MemoryStore`] whose next `n` writes are refused as a locked keychain
/// would refuse them, to test what survives a failed save.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RefusingStore {
    inner: Arc<MemoryStore>,
    refusals: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl RefusingStore {
    /// What has been written, without the refusals: the keychain as the next start sees it.
    pub(crate) fn inner_store(&self) -> SharedSecretStore {
        self.inner.clone()
    }

    /// Refuses the next `n` writes.
    pub(crate) fn refuse_next(&self, n: usize) {
        self.refusals.store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
impl SecretStore for RefusingStore {
    fn kind(&self) -> &'static str {
        "refusing test store"
    }

    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        self.inner.get(name)
    }

    fn set(&self, name: &str, value: &Secret) -> Result<(), SecretError> {
        use std::sync::atomic::Ordering;
        let refused = self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(SecretError::Locked {
                detail: "test: the collection is locked".to_owned(),
            });
        }
        self.inner.set(name, value)
    }

    fn delete(&self, name: &str) -> Result<(), SecretError> {
        self.inner.delete(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_keyring_is_told_from_a_missing_one() {
        let failure = |text: &str| keyring::Error::PlatformFailure(text.to_owned().into());
        let locked = map_keyring_error(
            "x",
            &failure("Cannot create an item in a locked collection"),
        );
        assert!(matches!(locked, SecretError::Locked { .. }), "{locked}");
        let dismissed = map_keyring_error("x", &failure("SS error: prompt dismissed"));
        assert!(
            matches!(dismissed, SecretError::Locked { .. }),
            "{dismissed}"
        );
        let missing = map_keyring_error(
            "x",
            &failure("no secret service provider or dbus session found"),
        );
        assert!(
            matches!(missing, SecretError::Unavailable { .. }),
            "{missing}"
        );
    }

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("sk-live-0123456789abcdef");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert!(!format!("{secret:?}").contains("0123"));
        assert_eq!(secret.hint(), "sk-l…(24 chars)");
        assert_eq!(Secret::new("short").hint(), "…(5 chars)");
    }

    #[test]
    fn generated_secrets_are_distinct_and_prefixed() {
        let a = Secret::generate("fp-").unwrap();
        let b = Secret::generate("fp-").unwrap();
        assert!(a.expose().starts_with("fp-"));
        assert_eq!(a.expose().len(), 3 + 64);
        assert_ne!(a, b);
    }

    #[test]
    fn references_round_trip_and_resolve() {
        let store = MemoryStore::default();
        store.set("provider:x", &Secret::new("k1")).unwrap();
        let stored = SecretRef::parse("store:provider:x").unwrap();
        assert_eq!(stored.to_db(), "store:provider:x");
        assert_eq!(stored.resolve(&store).unwrap().unwrap().expose(), "k1");

        let missing = SecretRef::parse("env:FLEXIPROXY_TEST_UNSET_VARIABLE").unwrap();
        assert!(matches!(
            missing.resolve(&store),
            Err(SecretError::MissingEnv { .. })
        ));
        assert_eq!(SecretRef::parse("plain"), None);
    }

    #[test]
    fn env_references_are_limited_to_allowed_names() {
        let allowed = EnvAllowlist::new(["DEEPSEEK_KEY"]);
        assert!(allowed.check("FLEXIPROXY_OPENAI_KEY").is_ok());
        assert!(allowed.check("DEEPSEEK_KEY").is_ok());
        for refused in [
            "HOME",
            "PATH",
            "AWS_SECRET_ACCESS_KEY",
            "DEEPSEEK_KEY2",
            "flexiproxy_x",
        ] {
            let e = allowed.check(refused).unwrap_err();
            assert_eq!(
                e,
                EnvRefusal::NotAllowed {
                    name: refused.into()
                }
            );
            let message = e.to_string();
            assert!(
                message.contains(&format!("--allow-env {refused}")),
                "{message}"
            );
            assert!(message.contains("allowed_env"), "{message}");
        }
        assert_eq!(
            EnvAllowlist::new(["FLEXIPROXY_MANAGEMENT_TOKEN"]).check("FLEXIPROXY_MANAGEMENT_TOKEN"),
            Err(EnvRefusal::ManagementToken)
        );
        let reserving = EnvAllowlist::new(["FLEXIPROXY_CONFIG"]).reserving(["FLEXIPROXY_CONFIG"]);
        assert_eq!(
            reserving.check("FLEXIPROXY_CONFIG"),
            Err(EnvRefusal::Setting {
                name: "FLEXIPROXY_CONFIG".into()
            })
        );
        assert!(reserving.check("FLEXIPROXY_OPENAI_KEY").is_ok());
        for malformed in ["", "1A", "A-B", "A B", "sk-live-1234"] {
            assert_eq!(
                allowed.check(malformed),
                Err(EnvRefusal::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn env_only_refuses_to_store() {
        let store = EnvOnly {
            reason: "none".into(),
        };
        let err = store.set("provider:x", &Secret::new("k")).unwrap_err();
        assert!(err.to_string().contains("env:NAME"));
        assert!(!store.writable());
    }
}
