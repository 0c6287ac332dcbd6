//! The parser's refusals as [`ConfigFileError::Syntax`]: toml's and serde_json's errors carry the
//! position in different forms (a byte span, or a line and column appended to the message), and
//! both may quote the offending value, which could be a key. Here they become one form, a
//! 1-based line and character column with a message scrubbed of quoted strings. Used by
//! [`super::parse`] on the way to the raw form in `raw`.

use super::{ConfigFileError, Format};

pub(super) fn toml_error(text: &str, error: &toml::de::Error) -> ConfigFileError {
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

pub(super) fn json_error(error: &serde_json::Error) -> ConfigFileError {
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
pub(super) fn scrub(message: &str) -> String {
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
