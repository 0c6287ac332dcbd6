//! The declarative config file for headless use (`--config PATH`, `FLEXIPROXY_CONFIG`): providers
//! with their credential pools, routes and adapters written in TOML (or JSON when the name ends
//! `.json`), parsed and validated into [`Declared`], and watched for edits with [`watch`].
//!
//! This module only produces typed, validated data; `lifecycle`/`registry` apply it and resolve
//! the `env:NAME` key references (so a variable that is unset shows as an unusable key, not as a
//! rejected file; [`missing_env`] lists them for warnings). The routing vocabulary it fills in
//! (`Strategy`, `Limits`, `Candidate`, `RoutingSettings`) is `crate::routing`'s.
//!
//! Files are read by people who mistype: every field is checked (`deny_unknown_fields`), and
//! every error names the file and the place (`providers[2].credentials[0].key`, or the parser's
//! line and column) and says what to change. No error, and nothing in `Debug`, ever carries the
//! value of a key: literal keys are refused without being echoed, and the parser's own messages
//! are used without its source excerpt (which would print the offending line).

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::routing::discovery::DiscoveryKind;
use crate::routing::registry::valid_id;
use crate::routing::{Candidate, Limits, RoutingSettings, Strategy};
use crate::store::secrets::{SecretRef, valid_env_name};
use flexiproxy_protocol::Protocol;

/// Config files larger than this are refused: a pool of hundreds of keys is a few hundred KiB,
/// so anything bigger is most likely the wrong file.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Everything a config file declares, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// `None` when the file has no `[routing]` table (the stored settings stay in force).
    pub routing: Option<RoutingSettings>,
    pub providers: Vec<DeclaredProvider>,
    pub routes: Vec<DeclaredRoute>,
    pub adapters: Vec<DeclaredAdapter>,
    /// Environment variables the management API may name as `env:NAME` keys besides the
    /// `FLEXIPROXY_` ones (see `secrets::EnvAllowlist`), in file order without repeats.
    pub allowed_env: Vec<String>,
}

impl Declared {
    /// How many credentials all providers hold together.
    pub fn credential_count(&self) -> usize {
        self.providers.iter().map(|p| p.credentials.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredProvider {
    pub id: String,
    /// Without a trailing slash.
    pub url: String,
    pub protocol: Protocol,
    /// How its models are discovered (`auto`, `ocf` or `off` in the file).
    pub discovery: DiscoveryKind,
    /// Models the provider serves besides those discovered, in file order without repeats.
    pub models: Vec<String>,
    pub credentials: Vec<DeclaredCredential>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredCredential {
    /// Unique within the provider; `k1`, `k2`… by position when the file names none.
    pub id: String,
    pub label: String,
    /// Always [`SecretRef::Env`]; `None` for a keyless endpoint.
    pub key: Option<SecretRef>,
    pub enabled: bool,
    pub priority: u32,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredRoute {
    pub name: String,
    pub strategy: Option<Strategy>,
    pub auto: bool,
    /// In file order. In an `auto` route a candidate without its own priority has its position.
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredAdapter {
    pub name: String,
    /// The local access key the client tool sends, always [`SecretRef::Env`].
    pub key: SecretRef,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub strategy: Option<Strategy>,
}

/// The syntax a config file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// JSON when the file name ends `.json` (any case), TOML otherwise.
    pub fn of(path: &Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Toml,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Toml => "TOML",
            Self::Json => "JSON",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a config file was not accepted. `Display` says where and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error(
        "cannot read config file {}: {source}; check the path given with --config or \
         FLEXIPROXY_CONFIG",
        .file.display()
    )]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config file {} is missing (deleted, or renamed away without a replacement); restore it \
         or point --config / FLEXIPROXY_CONFIG at the right file",
        .file.display()
    )]
    Missing { file: PathBuf },
    #[error(
        "config file {} is larger than {MAX_FILE_BYTES} bytes; check that --config names the \
         right file",
        .file.display()
    )]
    TooLarge { file: PathBuf },
    #[error("config file {} is not UTF-8 text; save it as UTF-8", .file.display())]
    NotUtf8 { file: PathBuf },
    /// The parser refused the text: bad syntax, a wrong type, an unknown or missing field.
    #[error("{}:{line}:{column}: {message}", origin(.file.as_deref(), *.format))]
    Syntax {
        file: Option<PathBuf>,
        format: Format,
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        message: String,
    },
    /// The text parsed but breaks a rule; `location` is a path like `providers[0].url`.
    #[error("{}: {location}: {message}", origin(.file.as_deref(), *.format))]
    Invalid {
        file: Option<PathBuf>,
        format: Format,
        location: String,
        message: String,
    },
}

impl ConfigFileError {
    /// The file the error is about, when known.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Read { file, .. }
            | Self::Missing { file }
            | Self::TooLarge { file }
            | Self::NotUtf8 { file } => Some(file),
            Self::Syntax { file, .. } | Self::Invalid { file, .. } => file.as_deref(),
        }
    }

    fn in_file(mut self, path: &Path) -> Self {
        if let Self::Syntax { file, .. } | Self::Invalid { file, .. } = &mut self {
            *file = Some(path.to_owned());
        }
        self
    }
}

fn origin(file: Option<&Path>, format: Format) -> String {
    match file {
        Some(file) => format!("config file {}", file.display()),
        None => format!("config ({format})"),
    }
}

/// Parses and validates a config file's text. Errors carry no file name (see [`load`]).
pub fn parse(text: &str, format: Format) -> Result<Declared, ConfigFileError> {
    let raw: RawFile = match format {
        Format::Toml => toml::from_str(text).map_err(|e| toml_error(text, &e))?,
        Format::Json => serde_json::from_str(text).map_err(|e| json_error(&e))?,
    };
    Validator { format }.file(raw)
}

/// Reads, parses and validates the config file at `path` (format by extension, see
/// [`Format::of`]).
pub fn load(path: &Path) -> Result<Declared, ConfigFileError> {
    let bytes = read_capped(path)?;
    parse_bytes(path, bytes)
}

fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<Declared, ConfigFileError> {
    let text = String::from_utf8(bytes).map_err(|_| ConfigFileError::NotUtf8 {
        file: path.to_owned(),
    })?;
    parse(&text, Format::of(path)).map_err(|e| e.in_file(path))
}

fn read_capped(path: &Path) -> Result<Vec<u8>, ConfigFileError> {
    let read_error = |source| ConfigFileError::Read {
        file: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigFileError::TooLarge {
            file: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// The environment variables the file's `env:NAME` keys name that are unset or empty (what
/// `SecretRef::resolve` would fail on), each once, in file order.
pub fn missing_env(declared: &Declared) -> Vec<String> {
    let credential_keys = declared
        .providers
        .iter()
        .flat_map(|p| &p.credentials)
        .filter_map(|c| c.key.as_ref());
    let adapter_keys = declared.adapters.iter().map(|a| &a.key);
    let mut missing: Vec<String> = Vec::new();
    for key in credential_keys.chain(adapter_keys) {
        if let SecretRef::Env(var) = key {
            let set = matches!(std::env::var(var), Ok(value) if !value.is_empty());
            if !set && !missing.contains(var) {
                missing.push(var.clone());
            }
        }
    }
    missing
}

// ---------------------------------------------------------------------------------------------
// Parser errors

fn toml_error(text: &str, error: &toml::de::Error) -> ConfigFileError {
    let (line, column) = match error.span() {
        Some(span) => line_column(text, span.start),
        None => (1, 1),
    };
    ConfigFileError::Syntax {
        file: None,
        format: Format::Toml,
        line,
        column,
        message: scrub(error.message()),
    }
}

fn json_error(error: &serde_json::Error) -> ConfigFileError {
    // serde_json appends " at line L column C" to its message; the numbers are kept as fields.
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    ConfigFileError::Syntax {
        file: None,
        format: Format::Json,
        line: error.line().max(1),
        column: error.column().max(1),
        message: scrub(message),
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Makes a parser message safe to show: serde quotes an unexpected string value in full
/// (`invalid type: string "sk-…", expected u32`), and a key put in the wrong place must not end
/// up in a log. Such quotes become `a string`; messages are kept on one line.
fn scrub(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(QUOTED) {
        out.push_str(&rest[..start]);
        let after = &rest[start + QUOTED.len()..];
        let mut escaped = false;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        out.push_str("a string");
        rest = &after[end..];
    }
    out.push_str(rest);
    out.trim().replace('\n', "; ")
}

// ---------------------------------------------------------------------------------------------
// The file as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    routing: Option<RawRouting>,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    adapters: Vec<RawAdapter>,
    #[serde(default)]
    allowed_env: Vec<String>,
}

/// `RoutingSettings` field by field: its own serde form ignores unknown fields, and a mistyped
/// setting here must be an error. A test keeps the two in step.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    max_retries: Option<u32>,
    max_wait_ms: Option<u64>,
    default_strategy: Option<Strategy>,
    usage_gap_percent: Option<u32>,
    rate_limit_cooldown_ms: Option<u64>,
    failure_cooldown_ms: Option<u64>,
    auth_cooldown_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    id: String,
    url: String,
    protocol: Option<String>,
    discovery: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    credentials: Vec<RawCredential>,
}

/// `Debug` is derived for the lints' sake only; `key` holds a reference or a refused literal,
/// and the literal never reaches an error or a log because the raw form is never printed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    id: Option<String>,
    label: Option<String>,
    key: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    priority: u32,
    max_request_min: Option<u32>,
    max_request_day: Option<u32>,
    max_token_min: Option<u64>,
}

impl fmt::Debug for RawCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCredential")
            .field("id", &self.id)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    strategy: Option<Strategy>,
    #[serde(default)]
    auto: bool,
    candidates: Vec<RawCandidate>,
}

/// `"provider/model"` or `{provider, model, priority}`.
#[derive(Debug)]
enum RawCandidate {
    Text(String),
    Table(RawCandidateTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCandidateTable {
    provider: String,
    model: String,
    priority: Option<u32>,
}

impl<'de> Deserialize<'de> for RawCandidate {
    // By hand rather than `#[serde(untagged)]`, whose only error is "did not match any
    // variant": this way a table's own errors (unknown field, missing model) come through.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CandidateVisitor;

        impl<'de> Visitor<'de> for CandidateVisitor {
            type Value = RawCandidate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a candidate: \"provider/model\" or a table { provider, model, priority }",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(RawCandidate::Text(value.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawCandidateTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawCandidate::Table)
            }
        }

        deserializer.deserialize_any(CandidateVisitor)
    }
}

/// `Debug` by hand for the same reason as [`RawCredential`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdapter {
    name: String,
    key: String,
    provider: Option<String>,
    model: Option<String>,
    strategy: Option<Strategy>,
}

impl fmt::Debug for RawAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAdapter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

struct Validator {
    format: Format,
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

    fn file(&self, raw: RawFile) -> Result<Declared, ConfigFileError> {
        let routing = raw.routing.map(|r| self.routing(r)).transpose()?;

        let mut providers: Vec<DeclaredProvider> = Vec::with_capacity(raw.providers.len());
        let mut provider_at: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw.providers.into_iter().enumerate() {
            let at = format!("providers[{i}]");
            let provider = self.provider(&at, raw)?;
            if let Some(first) = provider_at.insert(provider.id.clone(), i) {
                return Err(self.invalid(
                    format!("{at}.id"),
                    format!(
                        "provider id `{}` is already used by providers[{first}]; give each \
                         provider its own id",
                        provider.id
                    ),
                ));
            }
            providers.push(provider);
        }
        let known = |id: &str| provider_at.contains_key(id);
        let known_list = || {
            let mut ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
            ids.sort_unstable();
            if ids.is_empty() {
                "this file declares no providers".to_owned()
            } else {
                format!("declared: {}", ids.join(", "))
            }
        };

        let mut routes: Vec<DeclaredRoute> = Vec::with_capacity(raw.routes.len());
        let mut route_at: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw.routes.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            let route = self.route(&at, raw)?;
            for (c, candidate) in route.candidates.iter().enumerate() {
                if !known(&candidate.provider) {
                    return Err(self.invalid(
                        format!("{at}.candidates[{c}]"),
                        format!(
                            "names provider `{}`, which this file does not declare ({}); add a \
                             [[providers]] entry with that id or fix the name",
                            candidate.provider,
                            known_list()
                        ),
                    ));
                }
            }
            if let Some(first) = route_at.insert(route.name.clone(), i) {
                return Err(self.invalid(
                    format!("{at}.name"),
                    format!(
                        "route `{}` is already defined by routes[{first}]; merge their \
                         candidates into one route or rename one",
                        route.name
                    ),
                ));
            }
            routes.push(route);
        }

        let mut adapters: Vec<DeclaredAdapter> = Vec::with_capacity(raw.adapters.len());
        let mut adapter_at: HashMap<String, usize> = HashMap::new();
        let mut adapter_key_at: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw.adapters.into_iter().enumerate() {
            let at = format!("adapters[{i}]");
            let adapter = self.adapter(&at, raw)?;
            if let Some(provider) = &adapter.provider
                && !known(provider)
            {
                return Err(self.invalid(
                    format!("{at}.provider"),
                    format!(
                        "names provider `{provider}`, which this file does not declare ({}); \
                         add a [[providers]] entry with that id, fix the name, or leave \
                         `provider` out to route by the client's model",
                        known_list()
                    ),
                ));
            }
            if let Some(first) = adapter_at.insert(adapter.name.clone(), i) {
                return Err(self.invalid(
                    format!("{at}.name"),
                    format!(
                        "adapter name `{}` is already used by adapters[{first}]; give each \
                         adapter its own name",
                        adapter.name
                    ),
                ));
            }
            if let Some(first) = adapter_key_at.insert(adapter.key.to_db(), i) {
                return Err(self.invalid(
                    format!("{at}.key"),
                    format!(
                        "adapters[{first}] already uses this key; a key identifies one adapter, \
                         so give each adapter its own environment variable"
                    ),
                ));
            }
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

    fn url(&self, at: &str, raw: &str) -> Result<String, ConfigFileError> {
        let trimmed = raw.trim();
        // The URL is not echoed: it may carry a user name and password.
        match reqwest::Url::parse(trimmed) {
            Ok(url) if !url.username().is_empty() || url.password().is_some() => Err(self.invalid(
                at,
                "carries a user name or password; keys do not belong in the file: remove \
                     them from the URL and give the key as a credential with key = \"env:NAME\"",
            )),
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some_and(|h| !h.is_empty()) =>
            {
                Ok(trimmed.trim_end_matches('/').to_owned())
            }
            _ => Err(self.invalid(
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
            .map(|key| self.env_key(&format!("{at}.key"), &key, true))
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
        let key = self.env_key(&format!("{at}.key"), &raw.key, false)?;
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

// ---------------------------------------------------------------------------------------------
// Watching

/// Polls one config file and reports content changes. Each [`Watcher::poll`] stats the path
/// afresh (so an editor's write-to-temp-then-rename is seen) and reads it when it may have
/// changed; a change is reported only when the content's hash differs from what was last
/// reported. A file that is missing on one poll is given one more poll to come back (the gap in
/// some editors' saves) before it is reported as missing.
///
/// [`watch`] runs one on a timer; it is public so the polling rules can be driven step by step.
#[derive(Debug)]
pub struct Watcher {
    path: PathBuf,
    /// The stat of the last read, to skip reading an unchanged file.
    last_stat: Option<Stat>,
    /// When the last read happened (see [`Watcher::may_have_changed`]).
    last_read: Option<SystemTime>,
    reported: Option<Seen>,
    missing_since_last_poll: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    modified: Option<SystemTime>,
    len: u64,
    /// The inode on Unix: a rename-over gives a new one even when time and size match.
    inode: u64,
}

/// What was last reported: content by hash, or a failure by kind (so a persisting failure is
/// reported once).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Content([u8; 32]),
    Failure(String),
}

/// A file modified this close to (or after) the last read may have changed again within the
/// file system's timestamp granularity, so it is read again even if its stat looks the same.
const RACY_WINDOW: Duration = Duration::from_secs(2);

impl Watcher {
    /// Takes the file's current content as the baseline: only later changes are reported. Call
    /// it before the initial [`load`], so an edit landing between the two costs one redundant
    /// report instead of going unnoticed.
    pub fn new(path: PathBuf) -> Self {
        let mut watcher = Self {
            path,
            last_stat: None,
            last_read: None,
            reported: None,
            missing_since_last_poll: true,
        };
        // The baseline's outcome is what the caller's own load sees; it is not reported.
        let _ = watcher.poll();
        watcher
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the file once: `Some` when its content (or its readability) changed since the last
    /// report, with the parse result of the new content.
    pub fn poll(&mut self) -> Option<Result<Declared, ConfigFileError>> {
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.last_stat = None;
                if !self.missing_since_last_poll {
                    self.missing_since_last_poll = true;
                    return None;
                }
                let file = self.path.clone();
                return self.report_failure("missing", || ConfigFileError::Missing { file });
            }
            Err(source) => {
                self.last_stat = None;
                let (file, kind) = (self.path.clone(), format!("{:?}", source.kind()));
                return self.report_failure(&kind, || ConfigFileError::Read { file, source });
            }
        };
        self.missing_since_last_poll = false;
        let stat = Stat {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: inode(&metadata),
        };
        if !self.may_have_changed(stat) {
            return None;
        }
        let read_at = SystemTime::now();
        let bytes = match read_capped(&self.path) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.last_stat = None;
                let kind = match &error {
                    ConfigFileError::Read { source, .. } => format!("{:?}", source.kind()),
                    _ => "too large".to_owned(),
                };
                return self.report_failure(&kind, || error);
            }
        };
        self.last_stat = Some(stat);
        self.last_read = Some(read_at);
        let seen = Seen::Content(Sha256::digest(&bytes).into());
        if self.reported.as_ref() == Some(&seen) {
            return None;
        }
        self.reported = Some(seen);
        Some(parse_bytes(&self.path, bytes))
    }

    fn may_have_changed(&self, stat: Stat) -> bool {
        if self.last_stat != Some(stat) {
            return true;
        }
        match (stat.modified, self.last_read) {
            (Some(modified), Some(read)) => modified + RACY_WINDOW > read,
            _ => true,
        }
    }

    fn report_failure(
        &mut self,
        kind: &str,
        error: impl FnOnce() -> ConfigFileError,
    ) -> Option<Result<Declared, ConfigFileError>> {
        let seen = Seen::Failure(kind.to_owned());
        if self.reported.as_ref() == Some(&seen) {
            return None;
        }
        self.reported = Some(seen);
        Some(Err(error()))
    }
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_metadata: &std::fs::Metadata) -> u64 {
    0
}

/// The shortest polling interval; `tokio::time::interval` refuses zero.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Watches `path` on a tokio task, polling every `interval`, and calls `on_change` with the
/// parse result whenever the file's content changes (see [`Watcher`] for the rules). The
/// baseline is taken before this returns, so call it before the initial [`load`]. Must be
/// called inside a tokio runtime. Dropping the handle stops the task.
pub fn watch(
    path: PathBuf,
    interval: Duration,
    on_change: impl Fn(Result<Declared, ConfigFileError>) + Send + 'static,
) -> WatchHandle {
    let mut watcher = Watcher::new(path);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(MIN_INTERVAL));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate and the baseline was just taken.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            // File reads and parsing stay off the async workers.
            let polled = tokio::task::spawn_blocking(move || {
                let change = watcher.poll();
                (watcher, change)
            })
            .await;
            let Ok((returned, change)) = polled else {
                tracing::error!("config file watcher stopped: its poll failed");
                return;
            };
            watcher = returned;
            if let Some(change) = change {
                on_change(change);
            }
        }
    });
    WatchHandle { task }
}

/// Stops the watching task when dropped.
#[derive(Debug)]
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// Stops watching (the same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a failed unwrap or panic is a failed test, with its location"
)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<Declared, ConfigFileError> {
        parse(text, Format::Toml)
    }

    fn ok(text: &str) -> Declared {
        match toml(text) {
            Ok(declared) => declared,
            Err(e) => panic!("expected a valid config, got: {e}"),
        }
    }

    /// The error's message; asserts it is an error.
    fn err(text: &str) -> String {
        match toml(text) {
            Ok(declared) => panic!("expected an error, got {declared:?}"),
            Err(e) => e.to_string(),
        }
    }

    const OPENAI: &str = "[[providers]]\nid = \"openai\"\nurl = \"https://api.openai.com/v1/\"\n";

    #[test]
    fn an_empty_file_declares_nothing() {
        assert_eq!(ok(""), Declared::default());
        assert_eq!(parse("{}", Format::Json).unwrap(), Declared::default());
    }

    #[test]
    fn provider_defaults_and_url_without_trailing_slash() {
        let declared = ok(OPENAI);
        let provider = &declared.providers[0];
        assert_eq!(provider.id, "openai");
        assert_eq!(provider.url, "https://api.openai.com/v1");
        assert_eq!(provider.protocol, Protocol::OpenAiChat);
        assert_eq!(provider.discovery, "auto");
        assert!(provider.models.is_empty() && provider.credentials.is_empty());
        assert_eq!(declared.routing, None);
    }

    #[test]
    fn provider_fields_are_read() {
        let declared = ok(r#"
            [[providers]]
            id = "claude"
            url = "http://127.0.0.1:9000"
            protocol = "anthropic_messages"
            discovery = "off"
            models = ["a", "b", "a"]
        "#);
        let provider = &declared.providers[0];
        assert_eq!(provider.protocol, Protocol::AnthropicMessages);
        assert_eq!(provider.discovery, "off");
        assert_eq!(provider.models, ["a", "b"]);
    }

    #[test]
    fn unknown_fields_are_errors_with_line_and_column() {
        let e = err("[[providers]]\nid = \"x\"\nurl = \"http://h\"\nprotocl = \"gemini\"\n");
        assert!(e.contains("config (TOML):4:1:"), "{e}");
        assert!(e.contains("unknown field `protocl`"), "{e}");
        assert!(e.contains("`protocol`"), "expected fields listed: {e}");
        let e = err("[routing]\nmax_retrys = 2\n");
        assert!(e.contains("unknown field `max_retrys`"), "{e}");
        let e = err(&format!(
            "{OPENAI}[[providers.credentials]]\napi_key = \"sk-live-1\"\n"
        ));
        assert!(e.contains("unknown field `api_key`"), "{e}");
        assert!(!e.contains("sk-live-1"), "{e}");
        let json = r#"{"providers": [{"id": "x", "url": "http://h", "modles": []}]}"#;
        let e = parse(json, Format::Json).unwrap_err().to_string();
        assert!(e.starts_with("config (JSON):1:"), "{e}");
        assert!(e.contains("unknown field `modles`"), "{e}");
        let e = err("colour = 1\n");
        assert!(e.contains(":1:1: unknown field `colour`"), "{e}");
    }

    #[test]
    fn syntax_errors_carry_the_position() {
        match toml("[[providers]]\nid = \"x\nurl = 1\n") {
            Err(ConfigFileError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        match parse(
            "{\n  \"providers\": [\n    {\"id\": 1}\n  ]\n}",
            Format::Json,
        ) {
            Err(e @ ConfigFileError::Syntax { line: 3, .. }) => {
                let text = e.to_string();
                assert!(text.starts_with("config (JSON):3:"), "{text}");
                assert!(!text.contains("at line"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        let e = err("[[providers]]\nid = \"x\"\n");
        assert!(e.contains("missing field `url`"), "{e}");
        let e = err("[[adapters]]\nname = \"a\"\n");
        assert!(e.contains("missing field `key`"), "{e}");
    }

    #[test]
    fn provider_ids_are_checked() {
        for bad in ["", "open ai", "a/b", &"x".repeat(65)] {
            let e = err(&format!(
                "[[providers]]\nid = \"{bad}\"\nurl = \"http://h\"\n"
            ));
            assert!(e.contains("providers[0].id: "), "{e}");
            assert!(e.contains("1–64 characters"), "{e}");
        }
        ok(&format!(
            "[[providers]]\nid = \"{}\"\nurl = \"http://h\"\n",
            "A.b_c-9".repeat(9).chars().take(64).collect::<String>()
        ));
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        for bad in [
            "ftp://h/v1",
            "api.openai.com/v1",
            "http://",
            "file:///tmp/x",
            "",
        ] {
            let e = err(&format!("[[providers]]\nid = \"x\"\nurl = \"{bad}\"\n"));
            assert!(
                e.contains("providers[0].url: must be an http(s) URL"),
                "{e}"
            );
        }
        let e = err("[[providers]]\nid = \"x\"\nurl = \"https://me:sk-secret-9@h/v1\"\n");
        assert!(e.contains("user name or password"), "{e}");
        assert!(!e.contains("sk-secret-9"), "{e}");
        assert_eq!(
            ok("[[providers]]\nid = \"x\"\nurl = \"http://127.0.0.1:11434//\"\n").providers[0].url,
            "http://127.0.0.1:11434"
        );
    }

    #[test]
    fn protocol_and_discovery_are_checked() {
        let e = err(&format!("{OPENAI}protocol = \"openai\"\n"));
        assert!(
            e.contains("providers[0].protocol: unknown protocol `openai`"),
            "{e}"
        );
        let e = err(&format!("{OPENAI}discovery = \"on\"\n"));
        assert!(
            e.contains("providers[0].discovery: unknown discovery `on`"),
            "{e}"
        );
        assert_eq!(
            ok(&format!("{OPENAI}discovery = \"ocf\"\n")).providers[0].discovery,
            "ocf"
        );
        let e = err(&format!("{OPENAI}models = [\"\"]\n"));
        assert!(e.contains("providers[0].models[0]: is empty"), "{e}");
    }

    #[test]
    fn duplicate_provider_ids_are_errors() {
        let e = err(&format!("{OPENAI}{OPENAI}"));
        assert!(
            e.contains("providers[1].id: provider id `openai` is already used by providers[0]"),
            "{e}"
        );
    }

    #[test]
    fn credentials_default_ids_labels_and_flags() {
        let declared = ok(&format!(
            "{OPENAI}[[providers.credentials]]\nkey = \"env:K_ONE\"\n\
             [[providers.credentials]]\nid = \"team\"\nlabel = \"Team key\"\nenabled = false\n\
             priority = 2\nmax_request_min = 60\nmax_request_day = 1000\nmax_token_min = 100000\n\
             [[providers.credentials]]\n"
        ));
        let creds = &declared.providers[0].credentials;
        assert_eq!(creds.len(), 3);
        assert_eq!(
            (creds[0].id.as_str(), creds[0].label.as_str()),
            ("k1", "k1")
        );
        assert_eq!(creds[0].key, Some(SecretRef::Env("K_ONE".into())));
        assert!(creds[0].enabled);
        assert_eq!(creds[0].priority, 0);
        assert!(creds[0].limits.is_unlimited());
        assert_eq!(
            (creds[1].id.as_str(), creds[1].label.as_str()),
            ("team", "Team key")
        );
        assert!(!creds[1].enabled);
        assert_eq!(creds[1].priority, 2);
        assert_eq!(
            creds[1].limits,
            Limits {
                max_request_min: Some(60),
                max_request_day: Some(1000),
                max_token_min: Some(100_000)
            }
        );
        assert_eq!(creds[2].id, "k3");
        assert_eq!(creds[2].key, None, "no key: a keyless endpoint");
        assert_eq!(declared.credential_count(), 3);
    }

    #[test]
    fn credential_ids_are_unique_within_a_provider_only() {
        let e = err(&format!(
            "{OPENAI}[[providers.credentials]]\n[[providers.credentials]]\nid = \"k1\"\n"
        ));
        assert!(
            e.contains("providers[0].credentials[1].id: credential id `k1` is already used"),
            "{e}"
        );
        let e = err(&format!(
            "{OPENAI}[[providers.credentials]]\nid = \"a/b\"\n"
        ));
        assert!(e.contains("providers[0].credentials[0].id: "), "{e}");
        let two = format!(
            "{OPENAI}[[providers.credentials]]\n[[providers]]\nid = \"groq\"\nurl = \"https://g\"\n\
             [[providers.credentials]]\n"
        );
        let declared = ok(&two);
        assert_eq!(declared.providers[1].credentials[0].id, "k1");
    }

    #[test]
    fn literal_keys_are_refused_without_being_echoed() {
        let secret = "sk-proj-AbC123xyz987";
        let text = format!(
            "{OPENAI}[[providers.credentials]]\n[[providers.credentials]]\n\
             [[providers.credentials]]\nkey = \"{secret}\"\n"
        );
        let error = toml(&text).unwrap_err();
        let shown = error.to_string();
        assert!(
            shown.contains("providers[0].credentials[2].key: holds a literal key"),
            "{shown}"
        );
        assert!(shown.contains("env:NAME"), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(!format!("{error:?}").contains(secret));

        let e = err(&format!("[[adapters]]\nname = \"a\"\nkey = \"{secret}\"\n"));
        assert!(e.contains("adapters[0].key: holds a literal key"), "{e}");
        assert!(!e.contains(secret), "{e}");
        assert!(!e.contains("leave `key` out"), "adapters need a key: {e}");
    }

    #[test]
    fn env_references_must_name_a_variable() {
        for bad in ["env:", "env:1ABC", "env:A-B", "env:sk-live-777"] {
            let e = err(&format!(
                "{OPENAI}[[providers.credentials]]\nkey = \"{bad}\"\n"
            ));
            assert!(
                e.contains("providers[0].credentials[0].key: `env:` must be followed"),
                "{e}"
            );
            assert!(!e.contains("sk-live-777"), "{e}");
        }
        let e = err(&format!(
            "{OPENAI}[[providers.credentials]]\nkey = \"store:provider:x\"\n"
        ));
        assert!(e.contains("keychain entry"), "{e}");
        let e = err(&format!("{OPENAI}[[providers.credentials]]\nkey = \"\"\n"));
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn misplaced_key_values_are_scrubbed_from_parser_messages() {
        let secret = "sk-ant-api03-SeCrEt";
        let e = err(&format!(
            "{OPENAI}[[providers.credentials]]\npriority = \"{secret}\"\n"
        ));
        assert!(e.contains("invalid type: a string"), "{e}");
        assert!(!e.contains(secret), "{e}");
        let e = parse(&format!("{{\"providers\": \"{secret}\"}}"), Format::Json)
            .unwrap_err()
            .to_string();
        assert!(!e.contains(secret), "{e}");
        assert_eq!(
            scrub(r#"x string "a\"b" y string "c""#),
            "x a string y a string"
        );
    }

    #[test]
    fn zero_limits_are_refused() {
        let e = err(&format!(
            "{OPENAI}[[providers.credentials]]\nmax_token_min = 0\n"
        ));
        assert!(
            e.contains("providers[0].credentials[0].max_token_min: is 0"),
            "{e}"
        );
    }

    #[test]
    fn routing_settings_merge_onto_defaults() {
        let declared = ok("[routing]\nmax_wait_ms = 2000\ndefault_strategy = \"fill-first\"\n");
        let routing = declared.routing.unwrap();
        assert_eq!(routing.max_wait_ms, 2000);
        assert_eq!(routing.default_strategy, Strategy::FillFirst);
        assert_eq!(routing.max_retries, RoutingSettings::default().max_retries);
        assert_eq!(ok("[routing]\n").routing, Some(RoutingSettings::default()));
        let e = err("[routing]\nusage_gap_percent = 101\n");
        assert!(e.contains("routing.usage_gap_percent"), "{e}");
        let e = err("[routing]\ndefault_strategy = \"random\"\n");
        assert!(e.contains("unknown variant `random`"), "{e}");
    }

    #[test]
    fn routing_mirror_knows_every_routing_setting() {
        // Fails when `RoutingSettings` gains a field that `RawRouting` does not accept.
        let all = serde_json::to_string(&RoutingSettings {
            max_retries: 7,
            max_wait_ms: 8,
            default_strategy: Strategy::LeastUsed,
            usage_gap_percent: 9,
            rate_limit_cooldown_ms: 10,
            failure_cooldown_ms: 11,
            auth_cooldown_ms: 12,
        })
        .unwrap();
        let declared = parse(&format!("{{\"routing\": {all}}}"), Format::Json).unwrap();
        assert_eq!(
            serde_json::to_string(&declared.routing.unwrap()).unwrap(),
            all
        );
    }

    const TWO_PROVIDERS: &str = "[[providers]]\nid = \"openai\"\nurl = \"https://o\"\n\
                                 [[providers]]\nid = \"openrouter\"\nurl = \"https://r\"\n";

    #[test]
    fn candidates_as_strings_split_at_the_first_slash() {
        let declared = ok(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"gpt-latest\"\nstrategy = \"fill-first\"\n\
             candidates = [\"openai/gpt-4o\", \"openrouter/openai/gpt-4o\"]\n"
        ));
        let route = &declared.routes[0];
        assert_eq!(route.name, "gpt-latest");
        assert_eq!(route.strategy, Some(Strategy::FillFirst));
        assert!(!route.auto);
        assert_eq!(
            route.candidates,
            [
                Candidate {
                    provider: "openai".into(),
                    model: "gpt-4o".into(),
                    priority: 0
                },
                Candidate {
                    provider: "openrouter".into(),
                    model: "openai/gpt-4o".into(),
                    priority: 0
                },
            ]
        );
    }

    #[test]
    fn candidates_as_tables() {
        let declared = ok(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/gpt-4o\", \
             {{ provider = \"openrouter\", model = \"openai/gpt-4o\", priority = 1 }}, \
             {{ provider = \"openai\", model = \"o3\" }}]\n"
        ));
        let c = &declared.routes[0].candidates;
        assert_eq!((c[1].model.as_str(), c[1].priority), ("openai/gpt-4o", 1));
        assert_eq!(c[2].priority, 0);
        let e = err(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\n\
             candidates = [{{ provider = \"openai\", modle = \"x\" }}]\n"
        ));
        assert!(e.contains("unknown field `modle`"), "{e}");
        let e = err(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [3]\n"
        ));
        assert!(e.contains("\"provider/model\" or a table"), "{e}");
    }

    #[test]
    fn auto_routes_take_list_position_as_priority() {
        let declared = ok(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"auto\"\nauto = true\ncandidates = \
             [\"openai/a\", \"openrouter/b\", {{ provider = \"openai\", model = \"c\", priority = 0 }}, \
             {{ provider = \"openai\", model = \"d\" }}]\n"
        ));
        let route = &declared.routes[0];
        assert!(route.auto);
        let priorities: Vec<u32> = route.candidates.iter().map(|c| c.priority).collect();
        assert_eq!(priorities, [0, 1, 0, 3]);
    }

    #[test]
    fn route_rules() {
        for bad in ["\"openai\"", "\"/gpt\"", "\"openai/\""] {
            let e = err(&format!(
                "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/x\", {bad}]\n"
            ));
            assert!(e.contains("routes[0].candidates[1]: "), "{e}");
            assert!(e.contains("\"provider/model\""), "{e}");
        }
        let e = err(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = []\n"
        ));
        assert!(e.contains("routes[0].candidates: is empty"), "{e}");
        let e = err(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"my route\"\ncandidates = [\"openai/x\"]\n"
        ));
        assert!(e.contains("routes[0].name: "), "{e}");
        let e = err(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/x\"]\n\
             [[routes]]\nname = \"r\"\ncandidates = [\"openai/y\"]\n"
        ));
        assert!(
            e.contains("routes[1].name: route `r` is already defined by routes[0]"),
            "{e}"
        );
    }

    #[test]
    fn unknown_providers_in_routes_and_adapters_are_errors() {
        let e = err(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/x\", \"groq/llama\"]\n"
        ));
        assert!(
            e.contains("routes[0].candidates[1]: names provider `groq`"),
            "{e}"
        );
        assert!(e.contains("declared: openai, openrouter"), "{e}");
        let e = err("[[adapters]]\nname = \"a\"\nkey = \"env:A\"\nprovider = \"anthropic\"\n");
        assert!(
            e.contains("adapters[0].provider: names provider `anthropic`"),
            "{e}"
        );
        assert!(e.contains("declares no providers"), "{e}");
    }

    #[test]
    fn adapters() {
        let declared = ok(&format!(
            "{TWO_PROVIDERS}[[adapters]]\nname = \"claude-code\"\nkey = \"env:FP_CLAUDE\"\n\
             provider = \"openai\"\nmodel = \"gpt-4o\"\nstrategy = \"least-used\"\n\
             [[adapters]]\nname = \"any\"\nkey = \"env:FP_ANY\"\n"
        ));
        assert_eq!(
            declared.adapters[0],
            DeclaredAdapter {
                name: "claude-code".into(),
                key: SecretRef::Env("FP_CLAUDE".into()),
                provider: Some("openai".into()),
                model: Some("gpt-4o".into()),
                strategy: Some(Strategy::LeastUsed),
            }
        );
        assert_eq!(declared.adapters[1].provider, None);
        assert_eq!(declared.adapters[1].model, None);
        let e = err(
            "[[adapters]]\nname = \"a\"\nkey = \"env:A\"\n[[adapters]]\nname = \"a\"\nkey = \"env:B\"\n",
        );
        assert!(
            e.contains("adapters[1].name: adapter name `a` is already used by adapters[0]"),
            "{e}"
        );
        let e = err(
            "[[adapters]]\nname = \"a\"\nkey = \"env:A\"\n[[adapters]]\nname = \"b\"\nkey = \"env:A\"\n",
        );
        assert!(
            e.contains("adapters[1].key: adapters[0] already uses this key"),
            "{e}"
        );
        let e = err("[[adapters]]\nname = \"a\"\nkey = \"env:A\"\nmodel = \"\"\n");
        assert!(e.contains("adapters[0].model: is empty"), "{e}");
    }

    #[test]
    fn allowed_env_names_are_checked_and_kept_once() {
        let declared = ok(&format!(
            "allowed_env = [\"DEEPSEEK_KEY\", \"_X1\", \"DEEPSEEK_KEY\"]\n{OPENAI}"
        ));
        assert_eq!(declared.allowed_env, ["DEEPSEEK_KEY", "_X1"]);
        let e = err("allowed_env = [\"OK\", \"env:DEEPSEEK_KEY\"]\n");
        assert!(
            e.contains("allowed_env[1]: `env:DEEPSEEK_KEY` is not an environment"),
            "{e}"
        );
        let e = err("allowed_env = [\"K=sk-live-123\"]\n");
        assert!(
            e.contains("allowed_env[0]") && !e.contains("sk-live-123"),
            "{e}"
        );
        let e = err("allowed_env = [\"FLEXIPROXY_MANAGEMENT_TOKEN\"]\n");
        assert!(e.contains("management token"), "{e}");
        let json = r#"{"allowed_env": ["A_KEY"]}"#;
        assert_eq!(parse(json, Format::Json).unwrap().allowed_env, ["A_KEY"]);
    }

    #[test]
    fn missing_env_lists_unset_variables_once() {
        let set = std::env::vars()
            .find(|(name, value)| !value.is_empty() && valid_env_name(name))
            .map(|(name, _)| name)
            .unwrap();
        let unset = "FLEXIPROXY_TEST_SURELY_UNSET_4711";
        let declared = ok(&format!(
            "{OPENAI}[[providers.credentials]]\nkey = \"env:{unset}\"\n\
             [[providers.credentials]]\nkey = \"env:{set}\"\n[[providers.credentials]]\n\
             [[adapters]]\nname = \"a\"\nkey = \"env:{unset}\"\n"
        ));
        assert_eq!(missing_env(&declared), [unset]);
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("/etc/fp/config.json")), Format::Json);
        assert_eq!(Format::of(Path::new("CONFIG.JSON")), Format::Json);
        assert_eq!(Format::of(Path::new("config.toml")), Format::Toml);
        assert_eq!(Format::of(Path::new("config")), Format::Toml);
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/config")
            .join(name)
    }

    #[test]
    fn the_example_files_parse_and_agree() {
        let from_toml = load(&fixture("example.toml")).unwrap();
        let from_json = load(&fixture("example.json")).unwrap();
        assert_eq!(from_toml, from_json);
        assert!(from_toml.routing.is_some());
        assert!(from_toml.providers.len() >= 3, "{from_toml:?}");
        assert!(from_toml.credential_count() >= 3);
        assert!(from_toml.routes.iter().any(|r| r.auto));
        assert!(!from_toml.adapters.is_empty());
        assert_eq!(from_toml.allowed_env, ["DEEPSEEK_API_KEY"]);
    }

    #[test]
    fn load_names_the_file_in_errors() {
        let dir = scratch("load");
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[[providers]]\nid = \"x\"\nurl = \"ftp://h\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "config file {}: providers[0].url:",
                path.display()
            )),
            "{e}"
        );
        std::fs::write(&path, "oops =\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("config file {}:1:", path.display())),
            "{e}"
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(load(&path), Err(ConfigFileError::NotUtf8 { .. })));
        let e = load(&dir.join("absent.toml")).unwrap_err();
        assert!(matches!(e, ConfigFileError::Read { .. }));
        assert!(e.to_string().contains("--config"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    // --- watching

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flexiproxy-config-file-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config_with(provider: &str) -> String {
        format!("[[providers]]\nid = \"{provider}\"\nurl = \"http://127.0.0.1:1\"\n")
    }

    fn provider_of(change: Option<Result<Declared, ConfigFileError>>) -> String {
        match change {
            Some(Ok(declared)) => declared.providers[0].id.clone(),
            other => panic!("expected a valid change, got {other:?}"),
        }
    }

    /// Replaces the file the way editors that save atomically do.
    fn rename_over(path: &Path, text: &str) {
        let temp = path.with_extension("toml.tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }

    #[test]
    fn watcher_reports_content_changes_only() {
        let dir = scratch("poll");
        let path = dir.join("config.toml");
        std::fs::write(&path, config_with("a")).unwrap();
        let mut watcher = Watcher::new(path.clone());
        assert!(watcher.poll().is_none(), "the baseline is not a change");

        std::fs::write(&path, config_with("a")).unwrap();
        assert!(watcher.poll().is_none(), "same content rewritten");

        std::fs::write(&path, config_with("b")).unwrap();
        assert_eq!(provider_of(watcher.poll()), "b");
        assert!(watcher.poll().is_none());

        std::fs::write(&path, "[[providers]]\nid = \"b\"\n").unwrap();
        match watcher.poll() {
            Some(Err(e)) => assert!(e.to_string().contains("missing field `url`"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(
            watcher.poll().is_none(),
            "a persisting bad edit is reported once"
        );

        std::fs::write(&path, config_with("b")).unwrap();
        assert_eq!(
            provider_of(watcher.poll()),
            "b",
            "fixed back to the last good content"
        );

        rename_over(&path, config_with("b").as_str());
        assert!(
            watcher.poll().is_none(),
            "rename-over with the same content"
        );
        rename_over(&path, config_with("c").as_str());
        assert_eq!(provider_of(watcher.poll()), "c");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn watcher_tolerates_a_brief_absence() {
        let dir = scratch("absence");
        let path = dir.join("config.toml");
        std::fs::write(&path, config_with("a")).unwrap();
        let mut watcher = Watcher::new(path.clone());

        std::fs::remove_file(&path).unwrap();
        assert!(watcher.poll().is_none(), "missing once: maybe mid-save");
        std::fs::write(&path, config_with("a")).unwrap();
        assert!(watcher.poll().is_none(), "back with the same content");

        std::fs::remove_file(&path).unwrap();
        assert!(watcher.poll().is_none());
        match watcher.poll() {
            Some(Err(ConfigFileError::Missing { file })) => assert_eq!(file, path),
            other => panic!("{other:?}"),
        }
        assert!(watcher.poll().is_none(), "reported once");
        std::fs::write(&path, config_with("a")).unwrap();
        assert_eq!(
            provider_of(watcher.poll()),
            "a",
            "back after being reported missing"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn watcher_starting_without_a_file_reports_its_arrival() {
        let dir = scratch("arrival");
        let path = dir.join("config.json");
        let mut watcher = Watcher::new(path.clone());
        assert!(
            watcher.poll().is_none(),
            "still missing: the caller's load already said so"
        );
        std::fs::write(&path, r#"{"providers": [{"id": "j", "url": "http://h"}]}"#).unwrap();
        assert_eq!(provider_of(watcher.poll()), "j");
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn next(
        changes: &mut tokio::sync::mpsc::UnboundedReceiver<Result<Declared, ConfigFileError>>,
    ) -> Option<Result<Declared, ConfigFileError>> {
        tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn watch_task_calls_back_on_changes_and_stops_when_dropped() {
        let dir = scratch("task");
        let path = dir.join("config.toml");
        std::fs::write(&path, config_with("a")).unwrap();
        let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let handle = watch(path.clone(), Duration::from_millis(20), move |change| {
            let _ = sender.send(change);
        });

        std::fs::write(&path, config_with("a")).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(changes.try_recv().is_err(), "same content: no call");

        std::fs::write(&path, config_with("b")).unwrap();
        assert_eq!(provider_of(next(&mut changes).await), "b");

        std::fs::write(&path, "[[providers]]\nid = 5\n").unwrap();
        assert!(matches!(next(&mut changes).await, Some(Err(_))));

        rename_over(&path, &config_with("c"));
        assert_eq!(provider_of(next(&mut changes).await), "c");

        drop(handle);
        std::fs::write(&path, config_with("d")).unwrap();
        // The aborted task drops the callback and with it the sender.
        assert!(
            next(&mut changes).await.is_none(),
            "no calls after the handle is dropped"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
