//! Tool set-up: pointing the user's coding tools at this gateway, and taking that back.
//!
//! For each tool the UI offers (Claude Code, Codex, Gemini CLI, the SDKs, IDE assistants,
//! aider) this module gives a copy-ready [`Snippet`] built from the gateway's own address and an
//! adapter's model. Four tools read a config file FlexiProxy can write for the user
//! (`claude_code`, `codex`, `gemini_cli`, `aider`: one module per tool, saying which file and
//! which keys); [`apply`] writes only those keys ("owned keys"), keeping everything else in the
//! file as the user wrote it, after copying the previous file to `<data_dir>/tool-backups/`. A
//! file that receives the adapter key is made readable by the user alone.
//!
//! Every apply that changes a file is one record (`store`'s `tool_setups`): the file's state
//! before it (backup, owned keys, permissions) and after it (the bytes' hash, each owned key's
//! digest). [`undo`] takes back the latest apply only, like an editor's undo: the file as
//! FlexiProxy left it gets its bytes from before that apply; a file edited since keeps the
//! edits and only the owned keys go back, and only while they still hold what FlexiProxy wrote;
//! otherwise undo refuses and names the backup. So undo never destroys bytes it did not write,
//! and a second undo goes back past the apply before.
//!
//! The formats' editors (`json_doc`, `toml_doc`, `line_doc`) refuse a file they cannot read
//! instead of overwriting it; `files` writes atomically. The adapter key goes into the tool's
//! file and nowhere else: not into the record (secret previous values stay in the backup only),
//! not into errors or logs. `server::tool_views` is the HTTP face of this module.

mod aider;
mod claude_code;
mod codex;
mod files;
mod gemini_cli;
mod json_doc;
mod line_doc;
mod snippets;
mod toml_doc;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::now_ms;
use crate::store::{StoreError, ToolSetupRow, ToolSetupStore};
use flexiproxy_protocol::Protocol;

pub use files::BACKUP_DIR;

/// What the UI puts in a snippet where the adapter's key goes, when it has the key.
pub const KEY_PLACEHOLDER: &str = "{{KEY}}";
/// What a snippet says for the model when the adapter takes the model from the client.
pub const MODEL_PLACEHOLDER: &str = "<model>";

/// Every tool the UI offers, in the order it shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    ClaudeCode,
    Codex,
    GeminiCli,
    OpenAiSdk,
    AnthropicSdk,
    GoogleGenai,
    Cursor,
    Continue,
    Cline,
    Aider,
}

impl Tool {
    pub const ALL: [Self; 10] = [
        Self::ClaudeCode,
        Self::Codex,
        Self::GeminiCli,
        Self::OpenAiSdk,
        Self::AnthropicSdk,
        Self::GoogleGenai,
        Self::Cursor,
        Self::Continue,
        Self::Cline,
        Self::Aider,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
            Self::GeminiCli => "gemini-cli",
            Self::OpenAiSdk => "openai-sdk",
            Self::AnthropicSdk => "anthropic-sdk",
            Self::GoogleGenai => "google-genai",
            Self::Cursor => "cursor",
            Self::Continue => "continue",
            Self::Cline => "cline",
            Self::Aider => "aider",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ClaudeCode => "Claude Code",
            Self::Codex => "Codex CLI",
            Self::GeminiCli => "Gemini CLI",
            Self::OpenAiSdk => "OpenAI SDK",
            Self::AnthropicSdk => "Anthropic SDK",
            Self::GoogleGenai => "Google Gen AI SDK",
            Self::Cursor => "Cursor",
            Self::Continue => "Continue",
            Self::Cline => "Cline",
            Self::Aider => "aider",
        }
    }

    /// The API the tool speaks to the gateway.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::ClaudeCode | Self::AnthropicSdk => Protocol::AnthropicMessages,
            Self::Codex => Protocol::OpenAiResponses,
            Self::GeminiCli | Self::GoogleGenai => Protocol::Gemini,
            Self::OpenAiSdk | Self::Cursor | Self::Continue | Self::Cline | Self::Aider => {
                Protocol::OpenAiChat
            }
        }
    }

    /// Whether FlexiProxy writes the tool's config file (else the snippet is copied by hand).
    pub fn writable(self) -> bool {
        matches!(
            self,
            Self::ClaudeCode | Self::Codex | Self::GeminiCli | Self::Aider
        )
    }

    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The files FlexiProxy writes for this tool, with the keys it owns in each.
    fn files(self, home: &Home, target: &Target<'_>) -> Vec<ConfigFile> {
        match self {
            Self::ClaudeCode => claude_code::files(home, target),
            Self::Codex => codex::files(home, target),
            Self::GeminiCli => gemini_cli::files(home, target),
            Self::Aider => aider::files(home, target),
            _ => Vec::new(),
        }
    }

    /// The format of one of this tool's files (for undo, which has only the path).
    fn format(self, path: &Path) -> Option<Format> {
        match self {
            Self::ClaudeCode => Some(claude_code::FORMAT),
            Self::Codex => Some(codex::FORMAT),
            Self::GeminiCli => Some(gemini_cli::format(path)),
            Self::Aider => Some(aider::FORMAT),
            _ => None,
        }
    }

    /// The file the UI names for this tool.
    pub fn config_path(self, home: &Home) -> Option<PathBuf> {
        match self {
            Self::ClaudeCode => Some(claude_code::path(home)),
            Self::Codex => Some(codex::path(home)),
            Self::GeminiCli => Some(gemini_cli::env_path(home)),
            Self::Aider => Some(aider::path(home)),
            _ => None,
        }
    }

    /// The gateway address the tool's files point it at now (origin form, no `/v1`).
    fn configured_url(self, home: &Home) -> Result<Option<String>, ToolSetupError> {
        match self {
            Self::ClaudeCode => claude_code::configured_url(home),
            Self::Codex => codex::configured_url(home),
            Self::GeminiCli => gemini_cli::configured_url(home),
            Self::Aider => aider::configured_url(home),
            _ => Ok(None),
        }
    }
}

/// Where the user's config files live: the home folder of the user the gateway runs as
/// (`$HOME` on Unix) and Codex's own `CODEX_HOME` when set.
#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
    pub codex_home: Option<PathBuf>,
}

impl Home {
    /// The gateway process's home; `None` when there is none.
    pub fn from_env() -> Option<Self> {
        let dir = directories::BaseDirs::new()?.home_dir().to_owned();
        let codex_home = std::env::var_os("CODEX_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Some(Self { dir, codex_home })
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            codex_home: None,
        }
    }
}

/// What a tool is pointed at: the gateway's origin (`http://127.0.0.1:8317`), the adapter's key
/// (or [`KEY_PLACEHOLDER`] in snippets) and its model (`None`: the tool's own choice).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub base_url: &'a str,
    pub key: &'a str,
    pub model: Option<&'a str>,
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Target<'_> {
    fn model_or_placeholder(&self) -> &str {
        self.model.unwrap_or(MODEL_PLACEHOLDER)
    }

    /// The OpenAI-style base URL (`…/v1`).
    fn v1(&self) -> String {
        format!("{}/v1", self.base_url.trim_end_matches('/'))
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snippet {
    /// `sh`, `toml`, `json`, `yaml` or `text`.
    pub language: &'static str,
    pub text: String,
}

/// Copy-ready settings for `tool` (with [`KEY_PLACEHOLDER`] as `target.key` for the UI).
pub fn snippet(tool: Tool, target: &Target<'_>) -> Snippet {
    match tool {
        Tool::ClaudeCode => claude_code::snippet(target),
        Tool::Codex => codex::snippet(target),
        Tool::GeminiCli => gemini_cli::snippet(target),
        Tool::Aider => aider::snippet(target),
        other => snippets::snippet(other, target),
    }
}

/// A file format FlexiProxy can edit in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json(json_doc::Dialect),
    Toml,
    Lines(line_doc::Style),
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::Json(_) => "JSON",
            Self::Toml => "TOML",
            Self::Lines(line_doc::Style::DotEnv) => "a .env file",
            Self::Lines(line_doc::Style::Yaml) => "YAML",
        }
    }
}

/// A key FlexiProxy owns in a tool's file and the value it writes there.
#[derive(Clone)]
struct OwnedKey {
    path: &'static [&'static str],
    value: Value,
    /// The value (now or before) may be a key: it is kept out of the database.
    secret: bool,
}

impl std::fmt::Debug for OwnedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedKey")
            .field("path", &self.path)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl OwnedKey {
    fn new(path: &'static [&'static str], value: impl Into<Value>) -> Self {
        Self {
            path,
            value: value.into(),
            secret: false,
        }
    }

    fn secret(path: &'static [&'static str], value: impl Into<Value>) -> Self {
        Self {
            secret: true,
            ..Self::new(path, value)
        }
    }
}

/// One file a tool reads and the keys FlexiProxy owns in it.
#[derive(Debug, Clone)]
struct ConfigFile {
    path: PathBuf,
    format: Format,
    keys: Vec<OwnedKey>,
}

/// Why a file cannot be edited: its format's parser said so (at a line, when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub line: Option<usize>,
    pub message: String,
}

/// A parsed config file of any supported format.
#[derive(Debug)]
enum Doc {
    Json(json_doc::JsonDoc),
    Toml(toml_doc::TomlDoc),
    Lines(line_doc::LineDoc),
}

impl Doc {
    fn parse(format: Format, text: &str) -> Result<Self, Invalid> {
        Ok(match format {
            Format::Json(dialect) => Self::Json(json_doc::JsonDoc::parse(text, dialect)?),
            Format::Toml => Self::Toml(toml_doc::TomlDoc::parse(text)?),
            Format::Lines(style) => Self::Lines(line_doc::LineDoc::parse(text, style)),
        })
    }

    fn get(&self, path: &[&str]) -> Option<Value> {
        match self {
            Self::Json(doc) => doc.get(path),
            Self::Toml(doc) => doc.get(path),
            Self::Lines(doc) => doc.get(path.first()?),
        }
    }

    fn set(&mut self, path: &[&str], value: &Value) {
        match self {
            Self::Json(doc) => doc.set(path, value),
            Self::Toml(doc) => doc.set(path, value),
            Self::Lines(doc) => {
                if let Some(key) = path.first() {
                    doc.set(key, value);
                }
            }
        }
    }

    fn remove(&mut self, path: &[&str]) {
        match self {
            Self::Json(doc) => doc.remove(path),
            Self::Toml(doc) => doc.remove(path),
            Self::Lines(doc) => {
                if let Some(key) = path.first() {
                    doc.remove(key);
                }
            }
        }
    }

    /// Puts `path` back as it is in `from` (removing it when `from` lacks it), keeping the
    /// original's layout where the format allows.
    fn restore(&mut self, path: &[&str], from: &Self) {
        match (self, from) {
            (Self::Toml(doc), Self::Toml(from)) => doc.restore(path, from),
            (Self::Lines(doc), Self::Lines(from)) => {
                if let Some(key) = path.first() {
                    doc.restore(key, from);
                }
            }
            (doc, from) => match from.get(path) {
                Some(value) => doc.set(path, &value),
                None => doc.remove(path),
            },
        }
    }

    fn check_editable(&self, path: &[&str]) -> Result<(), Invalid> {
        match (self, path.first()) {
            (Self::Lines(doc), Some(key)) => doc.check_editable(key),
            _ => Ok(()),
        }
    }

    fn render(&self) -> String {
        match self {
            Self::Json(doc) => doc.render(),
            Self::Toml(doc) => doc.render(),
            Self::Lines(doc) => doc.render(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Json(doc) => doc.is_empty(),
            Self::Toml(doc) => doc.is_empty(),
            Self::Lines(doc) => doc.is_empty(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolSetupError {
    #[error("no tool `{0}`; GET /api/tools lists them")]
    UnknownTool(String),
    #[error("{0} is set up by hand: copy its snippet into its settings")]
    NotWritable(&'static str),
    #[error("cannot find your home folder, where the tools keep their settings; set HOME")]
    NoHome,
    #[error(
        "{path} is not valid {format}{}: {message}. FlexiProxy does not overwrite a file it \
         cannot read: fix it (or move it away) and try again",
        line.map(|l| format!(" (line {l})")).unwrap_or_default()
    )]
    InvalidFile {
        path: PathBuf,
        format: &'static str,
        line: Option<usize>,
        message: String,
    },
    #[error("FlexiProxy has not set up {0}, so there is nothing to undo")]
    NothingToUndo(&'static str),
    #[error(
        "FlexiProxy's record of its change to {path} cannot be read ({reason}), so undo cannot \
         tell what it wrote and left the file alone. {}",
        match .backup {
            Some(backup) => format!(
                "The file as it was before FlexiProxy's change is kept at {}: copy back what you \
                 need by hand",
                backup.display()
            ),
            None => "Remove FlexiProxy's settings from it by hand if you no longer want them"
                .to_owned(),
        }
    )]
    UnreadableRecord {
        path: PathBuf,
        reason: String,
        backup: Option<PathBuf>,
    },
    #[error(
        "{path} is a symbolic link to {target}, which does not exist; FlexiProxy does not replace \
         a link with a file. Create {target} (it will be written through the link), or remove \
         the link, then try again",
        target = .target.display()
    )]
    DanglingLink { path: PathBuf, target: PathBuf },
    #[error(
        "{path} was changed since FlexiProxy set it up: {} no longer hold what FlexiProxy \
         wrote, so undo would overwrite those changes and left the file alone. {}",
        .keys.join(", "),
        match .backup {
            Some(backup) => format!(
                "The file as it was before FlexiProxy's change is kept at {}: copy back what \
                 you need by hand",
                backup.display()
            ),
            None => "FlexiProxy created this file; remove its settings by hand if you no \
                     longer want them"
                .to_owned(),
        }
    )]
    ChangedSince {
        path: PathBuf,
        keys: Vec<String>,
        backup: Option<PathBuf>,
    },
    #[error(
        "the backup of {path} ({backup}) is gone, so the values before FlexiProxy's change \
         cannot be restored; edit the file by hand"
    )]
    BackupMissing { path: PathBuf, backup: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state of one owned key before an apply, as the database keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PreviousKey {
    key: String,
    present: bool,
    /// Only for keys that are not secret; a secret one is read back from the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    /// The [`value_digest`] of what the apply wrote (a digest, so a key is never stored), to
    /// tell later whether the key still holds it. `None` in records made before undo checked
    /// this (they are undone key by key, never as a whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Previous {
    keys: Vec<PreviousKey>,
    /// Parent objects/tables that did not exist: removed again on undo when left empty.
    #[serde(default)]
    absent_parents: Vec<String>,
    /// The file's permission bits before the apply (Unix; none for a new file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode_before: Option<u32>,
    /// Its permission bits as the apply left them: undo puts `mode_before` back only over these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode_after: Option<u32>,
}

impl Previous {
    fn of(doc: Option<&Doc>, keys: &[OwnedKey]) -> Self {
        let mut previous = Self::default();
        for key in keys {
            let value = doc.and_then(|d| d.get(key.path));
            previous.keys.push(PreviousKey {
                key: key.path.join("."),
                present: value.is_some(),
                value: if key.secret { None } else { value },
                written: None,
            });
            for depth in (1..key.path.len()).rev() {
                let parent = &key.path[..depth];
                let name = parent.join(".");
                if doc.and_then(|d| d.get(parent)).is_none()
                    && !previous.absent_parents.contains(&name)
                {
                    previous.absent_parents.push(name);
                }
            }
        }
        previous
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A digest of an owned key's value (or its absence) that does not depend on the order of an
/// object's members, so the same value read back from any of the formats compares equal.
fn value_digest(value: Option<&Value>) -> String {
    fn canonical(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (name, member) in members {
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    canonical(member, out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    canonical(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    match value {
        Some(value) => canonical(value, &mut text),
        None => text.push_str("absent"),
    }
    sha256_hex(text.as_bytes())
}

/// Applies and undoes are one at a time: two at once could read the same old file and lose a
/// write, or record the wrong previous values.
static EDITS: Mutex<()> = Mutex::new(());

/// What [`apply`] and [`undo`] need: the database for the records, the data folder for the
/// backups, and the user's home.
#[derive(Debug, Clone, Copy)]
pub struct Workspace<'a> {
    pub db: &'a dyn ToolSetupStore,
    pub data_dir: &'a Path,
    pub home: &'a Home,
}

/// One file [`apply`] wrote or checked.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: PathBuf,
    /// The copy of the file as it was just before this write (none when it did not exist or
    /// nothing changed).
    pub backup_path: Option<PathBuf>,
    /// Owned keys whose value changed (`env.ANTHROPIC_BASE_URL`, …).
    pub changed: Vec<String>,
    pub created: bool,
    /// The file holds the adapter key, so it is readable and writable by the user alone (0600).
    pub private: bool,
}

/// Writes the owned keys of `tool` for `target` (the adapter `adapter`). All files are read
/// and checked before any is written, so an unreadable one leaves every file as it was. Each
/// file this changes gets its own record, so [`undo`] can take back this apply alone.
pub fn apply(
    ws: Workspace<'_>,
    tool: Tool,
    target: &Target<'_>,
    adapter: Option<i64>,
) -> Result<Vec<FileChange>, ToolSetupError> {
    if !tool.writable() {
        return Err(ToolSetupError::NotWritable(tool.name()));
    }
    let _edits = EDITS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut plans = Vec::new();
    for file in tool.files(ws.home, target) {
        let original = files::read(&file.path)?;
        let text = original
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let invalid = |e: Invalid| ToolSetupError::InvalidFile {
            path: file.path.clone(),
            format: file.format.name(),
            line: e.line,
            message: e.message,
        };
        let mut doc = Doc::parse(file.format, &text).map_err(invalid)?;
        for key in &file.keys {
            doc.check_editable(key.path).map_err(invalid)?;
        }
        let previous = Previous::of(original.is_some().then_some(&doc), &file.keys);
        let mut changed = Vec::new();
        for key in &file.keys {
            if doc.get(key.path).as_ref() != Some(&key.value) {
                doc.set(key.path, &key.value);
                changed.push(key.path.join("."));
            }
        }
        plans.push((file, original, doc, previous, changed));
    }

    // The records of one apply share its time, which tells applies apart: strictly later than
    // any apply still on record, even within the same millisecond.
    let active = ws.db.active_tool_setups(Some(tool.id()))?;
    let now = active
        .iter()
        .map(|r| r.applied_at.saturating_add(1))
        .fold(now_ms(), i64::max);
    let mut results = Vec::new();
    for (file, original, doc, mut previous, changed) in plans {
        let private = file.keys.iter().any(|k| k.secret);
        if changed.is_empty() {
            // Already set up, perhaps by an older version that kept the file readable by others.
            if private {
                files::make_private(&file.path)?;
            }
            results.push(FileChange {
                path: file.path,
                backup_path: None,
                changed,
                created: false,
                private,
            });
            continue;
        }
        let backup_path = match &original {
            Some(bytes) => Some(files::backup(
                ws.data_dir,
                tool.id(),
                &file.path,
                bytes,
                now,
            )?),
            None => None,
        };
        let bytes = doc.render().into_bytes();
        previous.mode_before = files::mode_of(&file.path);
        let mode = if private {
            files::Mode::Private
        } else {
            files::Mode::Keep
        };
        files::write_atomic(&file.path, &bytes, mode)?;
        previous.mode_after = files::mode_of(&file.path);
        // What each owned key holds as read back from the written text, in the form undo
        // will read it in.
        let written = Doc::parse(file.format, &String::from_utf8_lossy(&bytes)).ok();
        for (record, key) in previous.keys.iter_mut().zip(&file.keys) {
            let value = written.as_ref().and_then(|d| d.get(key.path));
            record.written = Some(value_digest(value.as_ref()));
        }
        ws.db.insert_tool_setup(&ToolSetupRow {
            id: 0,
            tool: tool.id().to_owned(),
            path: file.path.to_string_lossy().into_owned(),
            adapter,
            previous: serde_json::to_string(&previous).unwrap_or_default(),
            created_file: original.is_none(),
            backup_path: backup_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            written_sha256: sha256_hex(&bytes),
            applied_at: now,
            undone_at: None,
        })?;
        tracing::info!(tool = tool.id(), path = %file.path.display(), keys = ?changed, "tool set up");
        results.push(FileChange {
            path: file.path,
            backup_path,
            changed,
            created: original.is_none(),
            private,
        });
    }
    Ok(results)
}

/// What [`undo`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Undone {
    /// The files put back.
    pub paths: Vec<PathBuf>,
    /// Earlier applies still on record: as many more undos go further back.
    pub remaining: usize,
}

/// One file's part of an undo, decided before any file is touched.
enum UndoStep {
    /// Replace the file with these bytes (and these permissions, when known).
    Write { bytes: Vec<u8>, mode: files::Mode },
    /// Remove the file FlexiProxy created.
    Remove,
    /// The file is already as it was before the apply.
    Nothing,
}

/// Takes back the latest apply of `tool` (see the module's comment); returns the files put
/// back. If any file of that apply cannot be put back without losing someone else's change,
/// no file is touched and the error says which and where the backup is.
pub fn undo(ws: Workspace<'_>, tool: Tool) -> Result<Undone, ToolSetupError> {
    let _edits = EDITS.lock().unwrap_or_else(PoisonError::into_inner);
    let records = ws.db.active_tool_setups(Some(tool.id()))?;
    let Some(latest) = records.iter().map(|r| r.applied_at).max() else {
        return Err(ToolSetupError::NothingToUndo(tool.name()));
    };
    let mut steps = Vec::new();
    for record in records.iter().filter(|r| r.applied_at == latest) {
        let path = PathBuf::from(&record.path);
        let step = plan_undo(tool, record, &path)?;
        steps.push((record, path, step));
    }
    let mut paths = Vec::new();
    for (record, path, step) in steps {
        match step {
            UndoStep::Write { bytes, mode } => files::write_atomic(&path, &bytes, mode)?,
            UndoStep::Remove => files::remove(&path)?,
            UndoStep::Nothing => {}
        }
        ws.db.mark_tool_setup_undone(record.id, now_ms())?;
        tracing::info!(tool = tool.id(), path = %path.display(), "tool set-up undone");
        paths.push(path);
    }
    let mut earlier: Vec<i64> = records
        .iter()
        .map(|r| r.applied_at)
        .filter(|&t| t != latest)
        .collect();
    earlier.sort_unstable();
    earlier.dedup();
    Ok(Undone {
        paths,
        remaining: earlier.len(),
    })
}

fn plan_undo(tool: Tool, record: &ToolSetupRow, path: &Path) -> Result<UndoStep, ToolSetupError> {
    let backup_path = record.backup_path.as_ref().map(PathBuf::from);
    let backup = match &backup_path {
        Some(backup) => files::read(backup)?,
        None => None,
    };
    let missing_backup = || ToolSetupError::BackupMissing {
        path: path.to_owned(),
        backup: record.backup_path.clone().unwrap_or_default(),
    };
    // A record that cannot be read must not pass for one that says "nothing to restore": undo
    // would then skip the file (or remove one FlexiProxy did not create) without a word.
    let previous: Previous =
        serde_json::from_str(&record.previous).map_err(|e| ToolSetupError::UnreadableRecord {
            path: path.to_owned(),
            reason: e.to_string(),
            backup: backup_path.clone(),
        })?;
    // Records from before per-key digests may stand for several applies (the first one's
    // backup, the last one's hash): restoring that backup whole could drop what changed between
    // them, so such records are undone key by key.
    let checked = previous.keys.iter().all(|k| k.written.is_some());
    let current = files::read(path)?;
    // The permissions from before, unless someone changed them since the apply.
    let mode = match (previous.mode_before, previous.mode_after) {
        (Some(before), Some(after)) if files::mode_of(path) == Some(after) => {
            files::Mode::Exactly(before)
        }
        _ => files::Mode::Keep,
    };
    let untouched = current
        .as_deref()
        .is_some_and(|bytes| sha256_hex(bytes) == record.written_sha256);
    match &current {
        None if record.created_file => return Ok(UndoStep::Nothing),
        // The user deleted the file: what stood before FlexiProxy's change comes back whole.
        None => {
            return Ok(UndoStep::Write {
                bytes: backup.ok_or_else(missing_backup)?,
                mode: previous
                    .mode_before
                    .map_or(files::Mode::Keep, files::Mode::Exactly),
            });
        }
        Some(_) if untouched && checked && record.created_file => return Ok(UndoStep::Remove),
        Some(_) if untouched && checked => {
            return Ok(UndoStep::Write {
                bytes: backup.ok_or_else(missing_backup)?,
                mode,
            });
        }
        // Put back by hand already.
        Some(bytes) if backup.as_ref() == Some(bytes) => return Ok(UndoStep::Nothing),
        Some(_) => {}
    }
    let Some(format) = tool.format(path) else {
        return Ok(UndoStep::Nothing);
    };
    let invalid = |e: Invalid| ToolSetupError::InvalidFile {
        path: path.to_owned(),
        format: format.name(),
        line: e.line,
        message: e.message,
    };
    let text = String::from_utf8_lossy(current.as_deref().unwrap_or_default()).into_owned();
    let mut doc = Doc::parse(format, &text).map_err(invalid)?;
    let before = match &backup {
        Some(bytes) => Some(Doc::parse(format, &String::from_utf8_lossy(bytes)).map_err(invalid)?),
        None => None,
    };
    let mut changed_since = Vec::new();
    let mut reverts = Vec::new();
    for key in &previous.keys {
        let segments: Vec<&str> = key.key.split('.').collect();
        doc.check_editable(&segments).map_err(invalid)?;
        let was: Option<Option<Value>> = match (&before, key.present, &key.value) {
            (_, false, _) => Some(None),
            (Some(before), true, _) => Some(before.get(&segments)),
            (None, true, Some(value)) => Some(Some(value.clone())),
            (None, true, None) => None,
        };
        if let Some(written) = &key.written {
            let now = value_digest(doc.get(&segments).as_ref());
            if &now != written {
                let reverted = was
                    .as_ref()
                    .is_some_and(|was| value_digest(was.as_ref()) == now);
                if !reverted {
                    changed_since.push(key.key.clone());
                }
                continue;
            }
        }
        reverts.push((segments, was.ok_or_else(missing_backup)?));
    }
    if !changed_since.is_empty() {
        return Err(ToolSetupError::ChangedSince {
            path: path.to_owned(),
            keys: changed_since,
            backup: backup_path,
        });
    }
    for (segments, was) in reverts {
        match (&before, was) {
            (Some(before), _) => doc.restore(&segments, before),
            (None, Some(value)) => doc.set(&segments, &value),
            (None, None) => doc.remove(&segments),
        }
    }
    for parent in &previous.absent_parents {
        let segments: Vec<&str> = parent.split('.').collect();
        let empty = doc
            .get(&segments)
            .is_some_and(|v| v.as_object().is_some_and(serde_json::Map::is_empty));
        if empty {
            doc.remove(&segments);
        }
    }
    if record.created_file && doc.is_empty() {
        return Ok(UndoStep::Remove);
    }
    Ok(UndoStep::Write {
        bytes: doc.render().into_bytes(),
        mode,
    })
}

/// Whether a tool is set up, and where its files point it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// FlexiProxy wrote its settings and they were not undone.
    pub applied: bool,
    /// The tool's files point at this gateway.
    pub points_here: bool,
    /// The address the tool's files point at, when it is another one.
    pub points_elsewhere: Option<String>,
    pub applied_at_ms: Option<i64>,
    pub can_undo: bool,
    /// How many applies undo can take back, one per undo, the latest first.
    pub undo_steps: usize,
}

/// The status of every writable tool at once (one database read).
pub fn statuses(
    db: &dyn ToolSetupStore,
    home: &Home,
    base_url: &str,
) -> Result<Vec<(Tool, Status)>, ToolSetupError> {
    let active = db.active_tool_setups(None)?;
    Ok(Tool::ALL
        .into_iter()
        .map(|tool| {
            let records: Vec<&ToolSetupRow> =
                active.iter().filter(|r| r.tool == tool.id()).collect();
            // A file FlexiProxy cannot read points nowhere it can tell.
            let url = tool.configured_url(home).ok().flatten();
            let points_here = url.as_deref().is_some_and(|u| same_origin(u, base_url));
            let mut applies: Vec<i64> = records.iter().map(|r| r.applied_at).collect();
            applies.sort_unstable();
            applies.dedup();
            let status = Status {
                applied: !records.is_empty(),
                points_here,
                points_elsewhere: url.filter(|_| !points_here).map(|u| shown_url(&u)),
                applied_at_ms: applies.last().copied(),
                can_undo: !records.is_empty(),
                undo_steps: applies.len(),
            };
            (tool, status)
        })
        .collect())
}

/// A URL from a tool's file as the API may show it: without a user name, password or query,
/// which could be the user's own credentials for that other server.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// Two base URLs name the same gateway (`localhost` is 127.0.0.1; a trailing `/` or `/v1` is
/// the tool's convention, not another address).
pub fn same_origin(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

fn normalize(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/v1").unwrap_or(url);
    url.to_ascii_lowercase()
        .replacen("://localhost:", "://127.0.0.1:", 1)
        .replacen("://[::1]:", "://127.0.0.1:", 1)
}

/// Reads and parses a tool's file for a status; `None` when it does not exist.
fn load(path: &Path, format: Format) -> Result<Option<Doc>, ToolSetupError> {
    let Some(bytes) = files::read(path)? else {
        return Ok(None);
    };
    Doc::parse(format, &String::from_utf8_lossy(&bytes))
        .map(Some)
        .map_err(|e| ToolSetupError::InvalidFile {
            path: path.to_owned(),
            format: format.name(),
            line: e.line,
            message: e.message,
        })
}

/// A string value at `path`, if the file has one.
fn string_at(doc: &Doc, path: &[&str]) -> Option<String> {
    doc.get(path)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests;
