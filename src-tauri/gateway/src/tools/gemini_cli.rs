//! Gemini CLI: two files. `~/.gemini/.env` carries `GOOGLE_GEMINI_BASE_URL` and
//! `GEMINI_API_KEY` (Gemini CLI loads it into its environment, in folders the user trusts), and
//! `~/.gemini/settings.json` gets `security.auth.selectedType = "gemini-api-key"` so it uses
//! that key instead of asking how to log in, and `model.name` when the adapter names a model. The settings file may hold comments (Gemini CLI
//! allows them); they are kept.

use std::path::{Path, PathBuf};

use super::json_doc::Dialect;
use super::line_doc::Style;
use super::{ConfigFile, Format, Home, OwnedKey, Snippet, Target, ToolSetupError, load, string_at};

const ENV_FORMAT: Format = Format::Lines(Style::DotEnv);
const SETTINGS_FORMAT: Format = Format::Json(Dialect::WithComments);

const BASE_URL: &[&str] = &["GOOGLE_GEMINI_BASE_URL"];
const API_KEY: &[&str] = &["GEMINI_API_KEY"];
const AUTH_TYPE: &[&str] = &["security", "auth", "selectedType"];
const MODEL: &[&str] = &["model", "name"];
/// Gemini CLI's name for "use the Gemini API key from the environment".
const API_KEY_AUTH: &str = "gemini-api-key";

fn folder(home: &Home) -> PathBuf {
    home.dir.join(".gemini")
}

pub fn env_path(home: &Home) -> PathBuf {
    folder(home).join(".env")
}

fn settings_path(home: &Home) -> PathBuf {
    folder(home).join("settings.json")
}

/// `.env` is the dotenv file; anything else of Gemini CLI's is its JSON settings.
pub fn format(path: &Path) -> Format {
    if path.file_name().is_some_and(|n| n == ".env") {
        ENV_FORMAT
    } else {
        SETTINGS_FORMAT
    }
}

pub fn files(home: &Home, target: &Target<'_>) -> Vec<ConfigFile> {
    vec![
        ConfigFile {
            path: env_path(home),
            format: ENV_FORMAT,
            keys: vec![
                OwnedKey::new(BASE_URL, target.base_url),
                OwnedKey::secret(API_KEY, target.key),
            ],
        },
        ConfigFile {
            path: settings_path(home),
            format: SETTINGS_FORMAT,
            keys: settings_keys(target),
        },
    ]
}

fn settings_keys(target: &Target<'_>) -> Vec<OwnedKey> {
    let mut keys = vec![OwnedKey::new(AUTH_TYPE, API_KEY_AUTH)];
    // Without a model Gemini CLI routes each prompt with classifier calls that expect a Gemini
    // model's JSON; the adapter's model answers the prompt directly.
    if let Some(model) = target.model {
        keys.push(OwnedKey::new(MODEL, model));
    }
    keys
}

pub fn configured_url(home: &Home) -> Result<Option<String>, ToolSetupError> {
    Ok(load(&env_path(home), ENV_FORMAT)?.and_then(|doc| string_at(&doc, BASE_URL)))
}

pub fn snippet(target: &Target<'_>) -> Snippet {
    Snippet {
        language: "sh",
        text: format!(
            "export GOOGLE_GEMINI_BASE_URL={}\nexport GEMINI_API_KEY={}\n",
            target.base_url, target.key
        ),
    }
}
