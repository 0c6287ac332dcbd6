//! aider: `~/.aider.conf.yml`, top-level `openai-api-base`, `openai-api-key` and (when the
//! adapter names a model) `model: openai/<model>`, so aider talks to the gateway as an
//! OpenAI-compatible server. Edited line by line: the user's other settings and comments stay.

use std::path::PathBuf;

use super::line_doc::Style;
use super::{ConfigFile, Format, Home, OwnedKey, Snippet, Target, ToolSetupError, load, string_at};

pub const FORMAT: Format = Format::Lines(Style::Yaml);

const BASE_URL: &[&str] = &["openai-api-base"];

pub fn path(home: &Home) -> PathBuf {
    home.dir.join(".aider.conf.yml")
}

pub fn files(home: &Home, target: &Target<'_>) -> Vec<ConfigFile> {
    let mut keys = vec![
        OwnedKey::new(BASE_URL, target.v1()),
        OwnedKey::secret(&["openai-api-key"], target.key),
    ];
    if let Some(model) = target.model {
        keys.push(OwnedKey::new(&["model"], format!("openai/{model}")));
    }
    vec![ConfigFile {
        path: path(home),
        format: FORMAT,
        keys,
    }]
}

pub fn configured_url(home: &Home) -> Result<Option<String>, ToolSetupError> {
    Ok(load(&path(home), FORMAT)?.and_then(|doc| string_at(&doc, BASE_URL)))
}

pub fn snippet(target: &Target<'_>) -> Snippet {
    Snippet {
        language: "yaml",
        text: format!(
            "openai-api-base: {}\nopenai-api-key: {}\nmodel: openai/{}\n",
            target.v1(),
            target.key,
            target.model_or_placeholder()
        ),
    }
}
