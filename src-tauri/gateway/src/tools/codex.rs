//! Codex CLI: `$CODEX_HOME/config.toml` (default `~/.codex/config.toml`). FlexiProxy adds a
//! provider of its own, `[model_providers.flexiproxy]`, on the Responses wire with the adapter
//! key as `experimental_bearer_token` (so no environment variable is needed), selects it with
//! `model_provider`, and sets `model` when the adapter names one. The user's other providers,
//! profiles and comments stay as they are.

use std::path::PathBuf;

use serde_json::json;

use super::{ConfigFile, Format, Home, OwnedKey, Snippet, Target, ToolSetupError, load, string_at};

pub const FORMAT: Format = Format::Toml;

/// The name of FlexiProxy's provider entry in Codex's config.
const PROVIDER: &str = "flexiproxy";

pub fn path(home: &Home) -> PathBuf {
    home.codex_home
        .clone()
        .unwrap_or_else(|| home.dir.join(".codex"))
        .join("config.toml")
}

pub fn files(home: &Home, target: &Target<'_>) -> Vec<ConfigFile> {
    let mut keys = vec![OwnedKey::new(&["model_provider"], PROVIDER)];
    if let Some(model) = target.model {
        keys.push(OwnedKey::new(&["model"], model));
    }
    keys.push(OwnedKey::secret(
        &["model_providers", PROVIDER],
        json!({
            "name": "FlexiProxy",
            "base_url": target.v1(),
            "wire_api": "responses",
            "experimental_bearer_token": target.key,
        }),
    ));
    vec![ConfigFile {
        path: path(home),
        format: FORMAT,
        keys,
    }]
}

/// The base URL of the provider `model_provider` selects (Codex's built-in providers have none
/// in the file).
pub fn configured_url(home: &Home) -> Result<Option<String>, ToolSetupError> {
    let Some(doc) = load(&path(home), FORMAT)? else {
        return Ok(None);
    };
    let Some(provider) = string_at(&doc, &["model_provider"]) else {
        return Ok(None);
    };
    Ok(string_at(&doc, &["model_providers", &provider, "base_url"]))
}

pub fn snippet(target: &Target<'_>) -> Snippet {
    Snippet {
        language: "toml",
        text: format!(
            "model = \"{model}\"\nmodel_provider = \"{PROVIDER}\"\n\n\
             [model_providers.{PROVIDER}]\nname = \"FlexiProxy\"\nbase_url = \"{url}\"\n\
             wire_api = \"responses\"\nexperimental_bearer_token = \"{key}\"\n",
            model = target.model_or_placeholder(),
            url = target.v1(),
            key = target.key,
        ),
    }
}
