//! A JSON settings file edited in place: the keys FlexiProxy owns change, every other byte
//! (order, indentation, comments where the tool allows them) stays as the user wrote it.
//!
//! Built on `jsonc_parser`'s concrete syntax tree. Claude Code's `settings.json` is strict JSON;
//! Gemini CLI's allows comments and trailing commas, so the dialect is chosen per file. Values
//! come in and go out as `serde_json::Value`, the common currency of `tool_setup`.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use serde_json::Value;

use super::Invalid;

/// Which JSON the tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Plain JSON: a comment would break the tool, so it is refused here too.
    Strict,
    /// JSON with comments (Gemini CLI strips them before parsing; a trailing comma still
    /// breaks it, so that is refused).
    WithComments,
}

impl Dialect {
    fn options(self) -> ParseOptions {
        match self {
            Self::WithComments => ParseOptions {
                allow_comments: true,
                ..strict()
            },
            Self::Strict => strict(),
        }
    }
}

fn strict() -> ParseOptions {
    ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

pub struct JsonDoc {
    root: CstRootNode,
}

impl std::fmt::Debug for JsonDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The document may hold keys; only its shape is worth printing.
        f.write_str("JsonDoc(..)")
    }
}

impl JsonDoc {
    pub fn parse(text: &str, dialect: Dialect) -> Result<Self, Invalid> {
        // The syntax tree takes comments whatever the options say, so plain JSON is checked
        // by a strict parser first.
        if dialect == Dialect::Strict && !text.trim().is_empty() {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
                let message = e.to_string();
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                Invalid {
                    line: Some(e.line()),
                    message,
                }
            })?;
        }
        // The syntax tree is lenient too; the plain parser holds the dialect's rules.
        jsonc_parser::parse_to_value(text, &dialect.options()).map_err(|e| Invalid {
            line: Some(e.line_display()),
            message: e.kind().to_string(),
        })?;
        let root = CstRootNode::parse(text, &dialect.options()).map_err(|e| Invalid {
            line: Some(e.line_display()),
            message: e.kind().to_string(),
        })?;
        if root.value().is_some() && root.object_value().is_none() {
            return Err(Invalid {
                line: None,
                message: "the top level is not an object".into(),
            });
        }
        Ok(Self { root })
    }

    /// The object holding `path`'s last segment, if every parent is an object.
    fn parent(&self, path: &[&str]) -> Option<CstObject> {
        let (_, parents) = path.split_last()?;
        let mut object = self.root.object_value()?;
        for segment in parents {
            object = object.object_value(segment)?;
        }
        Some(object)
    }

    pub fn get(&self, path: &[&str]) -> Option<Value> {
        let last = path.last()?;
        self.parent(path)?.get(last)?.to_serde_value()
    }

    /// Sets `path` to `value`, creating parent objects (and replacing parents that are not
    /// objects: the tool could not have read a setting below them anyway).
    pub fn set(&mut self, path: &[&str], value: &Value) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut object = self.root.object_value_or_set();
        for segment in parents {
            object = object.object_value_or_set(segment);
        }
        let input = to_input(value);
        match object.get(last) {
            Some(prop) => prop.set_value(input),
            None => {
                object.append(last, input);
            }
        }
    }

    pub fn remove(&mut self, path: &[&str]) {
        if let Some(prop) = path.last().and_then(|last| self.parent(path)?.get(last)) {
            prop.remove();
        }
    }

    pub fn render(&self) -> String {
        let mut text = self.root.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// Nothing but an empty object (or nothing at all), without comments.
    pub fn is_empty(&self) -> bool {
        let text: String = self
            .root
            .to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        text.is_empty() || text == "{}"
    }
}

fn to_input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(to_input).collect()),
        Value::Object(map) => {
            CstInputValue::Object(map.iter().map(|(k, v)| (k.clone(), to_input(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    #[test]
    fn edits_keep_the_rest_of_the_file() {
        let text =
            "{\n    \"model\": \"opus\",\n    \"env\": {\n        \"FOO\": \"1\"\n    }\n}\n";
        let mut doc = JsonDoc::parse(text, Dialect::Strict).unwrap();
        doc.set(&["env", "BAR"], &json!("2"));
        assert_eq!(
            doc.render(),
            "{\n    \"model\": \"opus\",\n    \"env\": {\n        \"FOO\": \"1\",\n        \"BAR\": \"2\"\n    }\n}\n"
        );
        assert_eq!(doc.get(&["env", "BAR"]), Some(json!("2")));
        doc.remove(&["env", "BAR"]);
        assert_eq!(doc.render(), text);
    }

    #[test]
    fn creates_parents_in_an_empty_file() {
        let mut doc = JsonDoc::parse("", Dialect::Strict).unwrap();
        assert!(doc.is_empty());
        doc.set(
            &["security", "auth", "selectedType"],
            &json!("gemini-api-key"),
        );
        let text = doc.render();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            json!({"security": {"auth": {"selectedType": "gemini-api-key"}}})
        );
        doc.remove(&["security", "auth", "selectedType"]);
        assert!(!doc.is_empty());
    }

    #[test]
    fn strict_refuses_comments_with_the_line() {
        let err = JsonDoc::parse("{\n  // note\n  \"a\": 1\n}", Dialect::Strict).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(JsonDoc::parse("{\n  // note\n  \"a\": 1\n}", Dialect::WithComments).is_ok());
        let trailing = JsonDoc::parse("{\n  \"a\": 1,\n}", Dialect::WithComments).unwrap_err();
        assert!(trailing.line.is_some(), "{trailing:?}");
        assert!(JsonDoc::parse("[1]", Dialect::WithComments).is_err());
    }
}
