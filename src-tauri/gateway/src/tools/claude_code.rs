//! Claude Code: `~/.claude/settings.json`, whose `env` object Claude Code applies to its own
//! environment at start. FlexiProxy owns `env.ANTHROPIC_BASE_URL` and
//! `env.ANTHROPIC_AUTH_TOKEN`: a token, sent as `Authorization: Bearer` (which the gateway
//! reads first), rather than `ANTHROPIC_API_KEY`, which interactive Claude Code asks the user to
//! approve before using; with the token it starts without a login (`claude -p` in the
//! end-to-end test has nothing else).

use std::path::PathBuf;

use super::json_doc::Dialect;
use super::{ConfigFile, Format, Home, OwnedKey, Snippet, Target, ToolSetupError, load, string_at};

pub const FORMAT: Format = Format::Json(Dialect::Strict);

const BASE_URL: &[&str] = &["env", "ANTHROPIC_BASE_URL"];
const TOKEN: &[&str] = &["env", "ANTHROPIC_AUTH_TOKEN"];

pub fn path(home: &Home) -> PathBuf {
    home.dir.join(".claude").join("settings.json")
}

pub fn files(home: &Home, target: &Target<'_>) -> Vec<ConfigFile> {
    vec![ConfigFile {
        path: path(home),
        format: FORMAT,
        keys: vec![
            OwnedKey::new(BASE_URL, target.base_url),
            OwnedKey::secret(TOKEN, target.key),
        ],
    }]
}

pub fn configured_url(home: &Home) -> Result<Option<String>, ToolSetupError> {
    Ok(load(&path(home), FORMAT)?.and_then(|doc| string_at(&doc, BASE_URL)))
}

pub fn snippet(target: &Target<'_>) -> Snippet {
    Snippet {
        language: "sh",
        text: format!(
            "export ANTHROPIC_BASE_URL={}\nexport ANTHROPIC_AUTH_TOKEN={}\n",
            target.base_url, target.key
        ),
    }
}
