//! Validation: turns the file as written (`raw`) into [`Declared`], checking what serde cannot
//! (ids, URLs, `env:NAME` key references, limits, names unique where they must be, routes and
//! adapters naming declared providers). Each refusal names its place (`routes[1].candidates[0]`)
//! and says what to write instead, and never echoes a value that may be a key.

use std::collections::HashMap;

use super::raw::{
    RawAdapter, RawCandidate, RawCredential, RawFile, RawProvider, RawRoute, RawRouting,
};
use super::{
    ConfigFileError, Declared, DeclaredAdapter, DeclaredCredential, DeclaredProvider,
    DeclaredRoute, Format,
};
use crate::config::destination::{UrlRefusal, parse_http};
use crate::routing::discovery::DiscoveryKind;
use crate::routing::registry::valid_id;
use crate::routing::{Candidate, Limits, RoutingSettings};
use crate::store::secrets::{SecretRef, valid_env_name};
use flexiproxy_protocol::Protocol;

pub(super) struct Validator {
    pub(super) format: Format,
}

impl Validator {
    fn invalid(&self, location: impl Into<String>, message: impl Into<String>) -> ConfigFileError {
        ConfigFileError::Invalid {
            file: None,
            format: self.format,
            location: location.into(),
            message: message.into(),
        }
    }

    pub(super) fn file(&self, raw: RawFile) -> Result<Declared, ConfigFileError> {
        let routing = raw.routing.map(|r| self.routing(r)).transpose()?;

        let mut providers: Vec<DeclaredProvider> = Vec::with_capacity(raw.providers.len());
        let mut provider_at: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw.providers.into_iter().enumerate() {
            let at = format!("providers[{i}]");
            let provider = self.provider(&at, raw)?;
            self.first_use(&mut provider_at, &provider.id, i, format!("{at}.id"), |first| {
                format!(
                    "provider id `{}` is already used by providers[{first}]; give each provider \
                     its own id",
                    provider.id
                )
            })?;
            providers.push(provider);
        }
        // Routes and adapters may only name providers this file declares.
        let declared = |at: String, id: &str, advice: &str| {
            if provider_at.contains_key(id) {
                return Ok(());
            }
            let mut ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
            ids.sort_unstable();
            let known = if ids.is_empty() {
                "this file declares no providers".to_owned()
            } else {
                format!("declared: {}", ids.join(", "))
            };
            Err(self.invalid(
                at,
                format!(
                    "names provider `{id}`, which this file does not declare ({known}); {advice}"
                ),
            ))
        };

        let mut routes: Vec<DeclaredRoute> = Vec::with_capacity(raw.routes.len());
        let mut route_at: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw.routes.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            let route = self.route(&at, raw)?;
            for (c, candidate) in route.candidates.iter().enumerate() {
                declared(
                    format!("{at}.candidates[{c}]"),
                    &candidate.provider,
                    "add a [[providers]] entry with that id or fix the name",
                )?;
            }
            self.first_use(
                &mut route_at,
                &route.name,
                i,
                format!("{at}.name"),
                |first| {
                    format!(
                        "route `{}` is already defined by routes[{first}]; merge their candidates \
                     into one route or rename one",
                        route.name
                    )
                },
            )?;
            routes.push(route);
        }

        let mut adapters: Vec<DeclaredAdapter> = Vec::with_capacity(raw.adapters.len());
        let mut adapter_at: HashMap<String, usize> = HashMap::new();
        let mut adapter_key_at: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw.adapters.into_iter().enumerate() {
            let at = format!("adapters[{i}]");
            let adapter = self.adapter(&at, raw)?;
            if let Some(provider) = &adapter.provider {
                declared(
                    format!("{at}.provider"),
                    provider,
                    "add a [[providers]] entry with that id, fix the name, or leave `provider` \
                     out to route by the client's model",
                )?;
            }
            self.first_use(
                &mut adapter_at,
                &adapter.name,
                i,
                format!("{at}.name"),
                |first| {
                    format!(
                        "adapter name `{}` is already used by adapters[{first}]; give each adapter \
                     its own name",
                        adapter.name
                    )
                },
            )?;
            let key = adapter.key.to_db();
            self.first_use(&mut adapter_key_at, &key, i, format!("{at}.key"), |first| {
                format!(
                    "adapters[{first}] already uses this key; a key identifies one adapter, so \
                     give each adapter its own environment variable"
                )
            })?;
            adapters.push(adapter);
        }

        let mut allowed_env: Vec<String> = Vec::with_capacity(raw.allowed_env.len());
        for (i, name) in raw.allowed_env.into_iter().enumerate() {
            if !valid_env_name(&name) {
                return Err(self.invalid(
                    format!("allowed_env[{i}]"),
                    format!(
                        "`{}` is not an environment variable name: letters, digits and `_`, not \
                         starting with a digit (write the name alone, e.g. \"DEEPSEEK_KEY\", not \
                         env:NAME or its value)",
                        if name.contains('=') || name.len() > 64 {
                            "…".to_owned()
                        } else {
                            shown(&name)
                        }
                    ),
                ));
            }
            if name == crate::config::MANAGEMENT_TOKEN_ENV {
                return Err(self.invalid(
                    format!("allowed_env[{i}]"),
                    "names the management token, which is never a provider key; remove it",
                ));
            }
            if !allowed_env.contains(&name) {
                allowed_env.push(name);
            }
        }

        Ok(Declared {
            routing,
            providers,
            routes,
            adapters,
            allowed_env,
        })
    }

    /// Refuses a second use of a name that must be unique in its list: `first_at` maps each
    /// name to the index that used it first, which `message` is given to name.
    fn first_use(
        &self,
        first_at: &mut HashMap<String, usize>,
        name: &str,
        index: usize,
        at: String,
        message: impl FnOnce(usize) -> String,
    ) -> Result<(), ConfigFileError> {
        match first_at.insert(name.to_owned(), index) {
            Some(first) => Err(self.invalid(at, message(first))),
            None => Ok(()),
        }
    }

    fn routing(&self, raw: RawRouting) -> Result<RoutingSettings, ConfigFileError> {
        let defaults = RoutingSettings::default();
        let settings = RoutingSettings {
            max_retries: raw.max_retries.unwrap_or(defaults.max_retries),
            max_wait_ms: raw.max_wait_ms.unwrap_or(defaults.max_wait_ms),
            default_strategy: raw.default_strategy.unwrap_or(defaults.default_strategy),
            usage_gap_percent: raw.usage_gap_percent.unwrap_or(defaults.usage_gap_percent),
            rate_limit_cooldown_ms: raw
                .rate_limit_cooldown_ms
                .unwrap_or(defaults.rate_limit_cooldown_ms),
            failure_cooldown_ms: raw
                .failure_cooldown_ms
                .unwrap_or(defaults.failure_cooldown_ms),
            auth_cooldown_ms: raw.auth_cooldown_ms.unwrap_or(defaults.auth_cooldown_ms),
        };
        if settings.usage_gap_percent > 100 {
            return Err(self.invalid(
                "routing.usage_gap_percent",
                "is a percentage: use a number from 0 to 100",
            ));
        }
        Ok(settings)
    }

    fn provider(&self, at: &str, raw: RawProvider) -> Result<DeclaredProvider, ConfigFileError> {
        if !valid_id(&raw.id) {
            return Err(self.invalid(
                format!("{at}.id"),
                format!(
                    "`{}` is not a valid provider id; use 1–64 characters of letters, digits, \
                     `.`, `_` or `-` (e.g. \"openai\")",
                    shown(&raw.id)
                ),
            ));
        }
        let url = self.url(&format!("{at}.url"), &raw.url)?;
        let protocol = match raw.protocol.as_deref() {
            None => Protocol::OpenAiChat,
            Some(name) => name
                .parse::<Protocol>()
                .map_err(|e| self.invalid(format!("{at}.protocol"), e.to_string()))?,
        };
        let discovery = match raw.discovery.as_deref() {
            None => DiscoveryKind::Auto,
            Some(kind) if let Ok(kind) = kind.parse::<DiscoveryKind>() => kind,
            Some(kind) => {
                return Err(self.invalid(
                    format!("{at}.discovery"),
                    format!(
                        "unknown discovery `{}`; use auto (the provider's model list), ocf \
                         (an OCF endpoint's table) or off",
                        shown(kind)
                    ),
                ));
            }
        };
        let mut models: Vec<String> = Vec::with_capacity(raw.models.len());
        for (m, model) in raw.models.into_iter().enumerate() {
            if model.trim().is_empty() {
                return Err(self.invalid(
                    format!("{at}.models[{m}]"),
                    "is empty; write the model name as the provider knows it, or remove it",
                ));
            }
            if !models.contains(&model) {
                models.push(model);
            }
        }
        let mut credentials: Vec<DeclaredCredential> = Vec::with_capacity(raw.credentials.len());
        for (c, raw) in raw.credentials.into_iter().enumerate() {
            let at = format!("{at}.credentials[{c}]");
            let credential = self.credential(&at, c, raw)?;
            if let Some(first) = credentials.iter().position(|x| x.id == credential.id) {
                return Err(self.invalid(
                    format!("{at}.id"),
                    format!(
                        "credential id `{}` is already used by credentials[{first}] of this \
                         provider (credentials without an id are named k1, k2… by position); \
                         give each credential its own id",
                        credential.id
                    ),
                ));
            }
            credentials.push(credential);
        }
        Ok(DeclaredProvider {
            id: raw.id,
            url,
            protocol,
            discovery,
            models,
            credentials,
        })
    }

    /// A provider's URL receives its keys, so it follows `destination`'s rule for such URLs
    /// (http(s), a host, no user info); the messages here speak of the file.
    fn url(&self, at: &str, raw: &str) -> Result<String, ConfigFileError> {
        // The URL is not echoed: it may carry a user name and password.
        match parse_http(at, raw, "https://api.openai.com/v1") {
            Ok(_) => Ok(raw.trim().trim_end_matches('/').to_owned()),
            Err(UrlRefusal::UserInfo { .. }) => Err(self.invalid(
                at,
                "carries a user name or password; keys do not belong in the file: remove \
                 them from the URL and give the key as a credential with key = \"env:NAME\"",
            )),
            Err(_) => Err(self.invalid(
                at,
                "must be an http(s) URL with a host, such as https://api.openai.com/v1 or \
                 http://127.0.0.1:11434/v1",
            )),
        }
    }

    fn credential(
        &self,
        at: &str,
        position: usize,
        raw: RawCredential,
    ) -> Result<DeclaredCredential, ConfigFileError> {
        let id = match raw.id {
            None => format!("k{}", position + 1),
            Some(id) if valid_id(&id) => id,
            Some(id) => {
                return Err(self.invalid(
                    format!("{at}.id"),
                    format!(
                        "`{}` is not a valid credential id; use 1–64 characters of letters, \
                         digits, `.`, `_` or `-`, or leave it out for k1, k2… by position",
                        shown(&id)
                    ),
                ));
            }
        };
        let label = match raw.label {
            None => id.clone(),
            Some(label) if label.trim().is_empty() => {
                return Err(self.invalid(
                    format!("{at}.label"),
                    "is empty; write a label or leave it out to use the id",
                ));
            }
            Some(label) => label,
        };
        let key = raw
            .key
            .map(|key| self.env_key(&format!("{at}.key"), &key.0, true))
            .transpose()?;
        let limits = Limits {
            max_request_min: self.limit(at, "max_request_min", raw.max_request_min)?,
            max_request_day: self.limit(at, "max_request_day", raw.max_request_day)?,
            max_token_min: self.limit(at, "max_token_min", raw.max_token_min)?,
        };
        Ok(DeclaredCredential {
            id,
            label,
            key,
            enabled: raw.enabled.unwrap_or(true),
            priority: raw.priority,
            limits,
        })
    }

    fn limit<T: Copy + PartialEq + Default>(
        &self,
        at: &str,
        field: &str,
        value: Option<T>,
    ) -> Result<Option<T>, ConfigFileError> {
        if value == Some(T::default()) {
            return Err(self.invalid(
                format!("{at}.{field}"),
                "is 0, which would make the credential unusable; leave the field out for no \
                 limit, or set enabled = false to switch the credential off",
            ));
        }
        Ok(value)
    }

    /// A key reference: `env:NAME` only. The value is never echoed, since a refused value is
    /// most likely the key itself.
    fn env_key(
        &self,
        at: &str,
        raw: &str,
        keyless_allowed: bool,
    ) -> Result<SecretRef, ConfigFileError> {
        let Some(var) = raw.strip_prefix(SecretRef::ENV_PREFIX) else {
            let keyless = if keyless_allowed {
                " (or leave `key` out for an endpoint that needs none)"
            } else {
                ""
            };
            let message = if raw.is_empty() {
                format!(
                    "is empty; write `env:NAME` to read the key from an environment variable{keyless}"
                )
            } else if raw.starts_with("store:") {
                "names a keychain entry; the file can only point at environment variables: \
                 write `env:NAME` (keys in the keychain are managed in the app)"
                    .to_owned()
            } else {
                format!(
                    "holds a literal key, which is refused because the file would keep it in \
                     plain text: put the key in an environment variable and write `env:NAME` \
                     here instead (e.g. env:OPENAI_API_KEY){keyless}"
                )
            };
            return Err(self.invalid(at, message));
        };
        if !valid_env_name(var) {
            return Err(self.invalid(
                at,
                "`env:` must be followed by an environment variable name: letters, digits and \
                 `_`, not starting with a digit (e.g. env:OPENAI_API_KEY)",
            ));
        }
        Ok(SecretRef::Env(var.to_owned()))
    }

    fn route(&self, at: &str, raw: RawRoute) -> Result<DeclaredRoute, ConfigFileError> {
        if !valid_name(&raw.name, 128) {
            return Err(self.invalid(
                format!("{at}.name"),
                "must be 1–128 characters without spaces or control characters: clients send \
                 it as the model name (e.g. \"gpt-latest\")",
            ));
        }
        if raw.candidates.is_empty() {
            return Err(self.invalid(
                format!("{at}.candidates"),
                "is empty; list at least one \"provider/model\"",
            ));
        }
        let mut candidates = Vec::with_capacity(raw.candidates.len());
        for (c, candidate) in raw.candidates.into_iter().enumerate() {
            let at = format!("{at}.candidates[{c}]");
            // In an auto route the list order is the order of preference.
            let implied = if raw.auto {
                u32::try_from(c).unwrap_or(u32::MAX)
            } else {
                0
            };
            candidates.push(match candidate {
                RawCandidate::Text(text) => {
                    let Some(candidate) = Candidate::parse(&text, implied) else {
                        return Err(self.invalid(
                            at,
                            format!(
                                "`{}` is not of the form \"provider/model\" (e.g. \
                                 \"openai/gpt-4o\"); or write a table {{ provider = \"…\", \
                                 model = \"…\" }}",
                                shown(&text)
                            ),
                        ));
                    };
                    candidate
                }
                RawCandidate::Table(table) => {
                    if table.model.trim().is_empty() {
                        return Err(self.invalid(
                            format!("{at}.model"),
                            "is empty; write the model name as the provider knows it",
                        ));
                    }
                    Candidate {
                        provider: table.provider,
                        model: table.model,
                        priority: table.priority.unwrap_or(implied),
                    }
                }
            });
        }
        Ok(DeclaredRoute {
            name: raw.name,
            strategy: raw.strategy,
            auto: raw.auto,
            candidates,
        })
    }

    fn adapter(&self, at: &str, raw: RawAdapter) -> Result<DeclaredAdapter, ConfigFileError> {
        if !valid_name(&raw.name, 64) {
            return Err(self.invalid(
                format!("{at}.name"),
                "must be 1–64 characters without spaces or control characters (e.g. \
                 \"claude-code\")",
            ));
        }
        let key = self.env_key(&format!("{at}.key"), &raw.key.0, false)?;
        if let Some(model) = &raw.model
            && model.trim().is_empty()
        {
            return Err(self.invalid(
                format!("{at}.model"),
                "is empty; name a model or a route, or leave `model` out to use the client's",
            ));
        }
        Ok(DeclaredAdapter {
            name: raw.name,
            key,
            provider: raw.provider,
            model: raw.model,
            strategy: raw.strategy,
        })
    }
}

/// Provider and credential ids: they appear in key ids (`provider/credential`) and URLs.
fn valid_name(name: &str, max_chars: usize) -> bool {
    let count = name.chars().count();
    (1..=max_chars).contains(&count) && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A user's value quoted back in an error, cut short so a pasted blob does not flood the log.
fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}…")
    }
}
