//! Files of one `key<sep>value` setting per line, edited line by line: Gemini CLI's `.env`
//! (`KEY=value`) and aider's `.aider.conf.yml` (top-level `key: value`). Only the lines of the
//! keys FlexiProxy owns change; every other line, with its line ending, stays byte for byte.
//!
//! Only one-line values are handled: a YAML key of ours whose value is a block or spans lines is
//! refused rather than guessed at (`check_editable`).

use serde_json::Value;

use super::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `KEY=value`, optionally `export KEY=value`.
    DotEnv,
    /// A YAML mapping's top-level `key: value`.
    Yaml,
}

#[derive(Clone)]
pub struct LineDoc {
    /// Each line with its own ending (`\n`, `\r\n`, or none for the last).
    lines: Vec<String>,
    style: Style,
}

impl std::fmt::Debug for LineDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LineDoc({:?}, {} lines)", self.style, self.lines.len())
    }
}

impl LineDoc {
    pub fn parse(text: &str, style: Style) -> Self {
        Self {
            lines: text.split_inclusive('\n').map(str::to_owned).collect(),
            style,
        }
    }

    /// The key a line sets and the raw text after the separator.
    fn split<'a>(&self, line: &'a str) -> Option<(&'a str, &'a str)> {
        let body = line.trim_end_matches(['\n', '\r']);
        match self.style {
            Style::DotEnv => {
                let body = body.trim_start();
                let body = body.strip_prefix("export ").unwrap_or(body);
                let (key, value) = body.split_once('=')?;
                let key = key.trim();
                (!key.is_empty() && !key.starts_with('#')).then_some((key, value))
            }
            Style::Yaml => {
                // Top level only: an indented line belongs to a nested mapping.
                if body.starts_with([' ', '\t', '#', '-']) {
                    return None;
                }
                let (key, value) = body.split_once(':')?;
                let key = key.trim().trim_matches(['"', '\'']);
                (!value.starts_with(|c: char| !c.is_whitespace())).then_some((key, value))
            }
        }
    }

    /// The index of the line that sets `key` (the last one: later lines win in both formats).
    fn find(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .rposition(|line| self.split(line).is_some_and(|(k, _)| k == key))
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        let line = &self.lines[self.find(key)?];
        let (_, raw) = self.split(line)?;
        Some(Value::String(scalar(raw)))
    }

    /// Refuses a key whose value this editor cannot replace safely (a YAML block or a value
    /// continued on the next lines).
    pub fn check_editable(&self, key: &str) -> Result<(), Invalid> {
        let Some(index) = self.find(key) else {
            return Ok(());
        };
        if self.style != Style::Yaml {
            return Ok(());
        }
        let raw = self.split(&self.lines[index]).map_or("", |(_, v)| v).trim();
        let continued = self
            .lines
            .get(index + 1)
            .is_some_and(|next| next.starts_with([' ', '\t']) && !next.trim().is_empty());
        if raw.is_empty() || raw.starts_with(['|', '>', '[', '{', '&', '*', '!']) || continued {
            return Err(Invalid {
                line: Some(index + 1),
                message: format!(
                    "`{key}` has a value FlexiProxy does not edit (a block, list or value over \
                     several lines); write it on one line as `{key}: value`, or remove it"
                ),
            });
        }
        Ok(())
    }

    pub fn set(&mut self, key: &str, value: &Value) {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let formatted = match self.style {
            Style::DotEnv => format!("{key}={}", quote_env(&text)),
            Style::Yaml => format!("{key}: {}", quote_yaml(&text)),
        };
        self.set_line(key, formatted);
    }

    /// Replaces the line of `key` (keeping its line ending) or appends one.
    fn set_line(&mut self, key: &str, body: String) {
        match self.find(key) {
            Some(index) => {
                let old = &self.lines[index];
                let ending = &old[old.trim_end_matches(['\n', '\r']).len()..];
                self.lines[index] = body + ending;
            }
            None => {
                if let Some(last) = self.lines.last_mut()
                    && !last.ends_with('\n')
                {
                    last.push('\n');
                }
                self.lines.push(body + "\n");
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(index) = self.find(key) {
            self.lines.remove(index);
        }
    }

    /// Puts `key`'s line back as it is in `from`, or removes it when `from` does not have it.
    pub fn restore(&mut self, key: &str, from: &Self) {
        match from.find(key) {
            Some(index) => {
                let line = from.lines[index].trim_end_matches(['\n', '\r']).to_owned();
                self.set_line(key, line);
            }
            None => self.remove(key),
        }
    }

    pub fn render(&self) -> String {
        self.lines.concat()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.iter().all(|line| line.trim().is_empty())
    }
}

fn unquote(text: &str) -> String {
    let quoted = |q: char| text.len() >= 2 && text.starts_with(q) && text.ends_with(q);
    if quoted('"') {
        serde_json::from_str(text).unwrap_or_else(|_| text[1..text.len() - 1].to_owned())
    } else if quoted('\'') {
        text[1..text.len() - 1].replace("''", "'")
    } else {
        text.to_owned()
    }
}

/// A one-line scalar as written after the separator: quotes removed, or a trailing
/// ` # comment` cut off an unquoted value.
fn scalar(raw: &str) -> String {
    let raw = raw.trim();
    if raw.starts_with(['"', '\'']) {
        let quote = raw.chars().next().unwrap_or('"');
        // The closing quote is the last one on the line; a comment may follow it.
        if let Some(end) = raw.rfind(quote).filter(|end| *end > 0) {
            return unquote(&raw[..=end]);
        }
    }
    let value = raw.find(" #").map_or(raw, |at| &raw[..at]);
    value.trim_end().to_owned()
}

fn plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@+".contains(c))
}

fn quote_env(text: &str) -> String {
    if plain(text) {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

fn quote_yaml(text: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    if plain(text) && !text.starts_with(['-', ':', '@']) {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    #[test]
    fn dotenv_lines_change_alone() {
        let text = "# keys\r\nOTHER=1\r\nexport GEMINI_API_KEY=\"old key\" \r\nLAST=2";
        let mut doc = LineDoc::parse(text, Style::DotEnv);
        assert_eq!(doc.get("GEMINI_API_KEY"), Some(json!("old key")));
        let before = doc.clone();
        doc.set("GEMINI_API_KEY", &json!("fp-1"));
        doc.set("GOOGLE_GEMINI_BASE_URL", &json!("http://127.0.0.1:8317"));
        assert_eq!(
            doc.render(),
            "# keys\r\nOTHER=1\r\nGEMINI_API_KEY=fp-1\r\nLAST=2\nGOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8317\n"
        );
        doc.restore("GEMINI_API_KEY", &before);
        doc.restore("GOOGLE_GEMINI_BASE_URL", &before);
        assert_eq!(
            doc.render(),
            "# keys\r\nOTHER=1\r\nexport GEMINI_API_KEY=\"old key\" \r\nLAST=2\n"
        );
    }

    #[test]
    fn yaml_top_level_keys_only() {
        let text = "model: gpt-4o # mine\nextra:\n  model: nested\nopenai-api-key: 'sk-x'\n";
        let mut doc = LineDoc::parse(text, Style::Yaml);
        assert_eq!(doc.get("model"), Some(json!("gpt-4o")));
        assert_eq!(doc.get("openai-api-key"), Some(json!("sk-x")));
        doc.set("model", &json!("openai/agent"));
        assert!(
            doc.render()
                .starts_with("model: openai/agent\nextra:\n  model: nested\n")
        );
        assert!(doc.check_editable("model").is_ok());
        let block = LineDoc::parse("openai-api-key: |\n  sk-x\n", Style::Yaml);
        assert_eq!(
            block.check_editable("openai-api-key").unwrap_err().line,
            Some(1)
        );
        assert_eq!(quote_yaml("a: b"), "\"a: b\"");
    }
}
