//! The declarative config file for headless use (`--config PATH`, `FLEXIPROXY_CONFIG`): providers
//! with their credential pools, routes and adapters written in TOML (or JSON when the name ends
//! `.json`), parsed and validated into [`Declared`], and watched for edits with [`watch()`].
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
//!
//! The work is split by stage: `raw` is the file as written (the serde form), `syntax` renders
//! the parser's refusals, `validate` turns the raw form into [`Declared`], and `watch` polls the
//! file for edits. This module holds the typed result, the errors, and reading from disk.

mod raw;
mod syntax;
#[cfg(test)]
mod tests;
mod validate;
mod watch;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::routing::discovery::DiscoveryKind;
use crate::routing::{Candidate, Limits, RoutingSettings, Strategy};
use crate::store::secrets::SecretRef;
use flexiproxy_protocol::Protocol;

pub use watch::{WatchHandle, Watcher, watch};

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
    let raw: raw::RawFile = match format {
        Format::Toml => toml::from_str(text).map_err(|e| syntax::toml_error(text, &e))?,
        Format::Json => serde_json::from_str(text).map_err(|e| syntax::json_error(&e))?,
    };
    validate::Validator { format }.file(raw)
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
