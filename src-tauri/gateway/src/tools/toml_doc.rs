//! A TOML config file edited in place (Codex's `config.toml`): `toml_edit` keeps the user's
//! comments, order and formatting; only the keys FlexiProxy owns change.
//!
//! Values come in as `serde_json::Value`: a JSON object becomes a `[table]` of its own (so a
//! provider reads as the Codex docs write it), anything else a plain value.

use serde_json::{Map, Value};
use toml_edit::{DocumentMut, Item, Table, TableLike};

use super::Invalid;

#[derive(Clone)]
pub struct TomlDoc {
    doc: DocumentMut,
}

impl std::fmt::Debug for TomlDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TomlDoc(..)")
    }
}

impl TomlDoc {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        text.parse::<DocumentMut>()
            .map(|doc| Self { doc })
            .map_err(|e| Invalid {
                // The error's Display quotes the offending line, which may hold a key: only the
                // line number and the message go out.
                line: e.span().map(|span| line_of(text, span.start)),
                message: e.message().trim().to_owned(),
            })
    }

    fn item(&self, path: &[&str]) -> Option<&Item> {
        let (first, rest) = path.split_first()?;
        let mut item = self.doc.as_table().get(first)?;
        for segment in rest {
            item = item.as_table_like()?.get(segment)?;
        }
        Some(item)
    }

    /// The table-like holding `path`'s last segment, creating missing parents as implicit
    /// tables (no empty `[parent]` header is written for them).
    fn parent_mut(&mut self, path: &[&str]) -> Option<&mut dyn TableLike> {
        let (_, parents) = path.split_last()?;
        let mut table: &mut dyn TableLike = self.doc.as_table_mut();
        for segment in parents {
            let item = table.entry(segment).or_insert_with(|| {
                let mut new = Table::new();
                new.set_implicit(true);
                Item::Table(new)
            });
            if !item.is_table_like() {
                let mut new = Table::new();
                new.set_implicit(true);
                *item = Item::Table(new);
            }
            table = item.as_table_like_mut()?;
        }
        Some(table)
    }

    pub fn get(&self, path: &[&str]) -> Option<Value> {
        self.item(path).and_then(to_json)
    }

    pub fn set(&mut self, path: &[&str], value: &Value) {
        let Some(last) = path.last() else {
            return;
        };
        let item = to_item(value);
        if let Some(parent) = self.parent_mut(path) {
            match parent.get_mut(last) {
                // A plain value keeps the comment and spacing around it.
                Some(Item::Value(old)) if !value.is_object() => {
                    if let Item::Value(mut new) = item {
                        *new.decor_mut() = old.decor().clone();
                        *old = new;
                    }
                }
                _ => {
                    parent.insert(last, item);
                }
            }
        }
    }

    pub fn remove(&mut self, path: &[&str]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut table: &mut dyn TableLike = self.doc.as_table_mut();
        for segment in parents {
            match table.get_mut(segment).and_then(Item::as_table_like_mut) {
                Some(next) => table = next,
                None => return,
            }
        }
        table.remove(last);
    }

    /// Puts `path` back as it is in `from` (with its comments and layout), or removes it when
    /// `from` does not have it.
    pub fn restore(&mut self, path: &[&str], from: &Self) {
        match (from.item(path).cloned(), path.last()) {
            (Some(item), Some(last)) => {
                if let Some(parent) = self.parent_mut(path) {
                    // In place when the key is there, so the comment above the key stays.
                    match parent.get_mut(last) {
                        Some(existing) => *existing = item,
                        None => {
                            parent.insert(last, item);
                        }
                    }
                }
            }
            _ => self.remove(path),
        }
    }

    pub fn render(&self) -> String {
        self.doc.to_string()
    }

    pub fn is_empty(&self) -> bool {
        self.doc.to_string().trim().is_empty()
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn to_item(value: &Value) -> Item {
    match value {
        Value::Object(map) => {
            let mut table = Table::new();
            for (key, value) in map {
                table.insert(key, to_item(value));
            }
            Item::Table(table)
        }
        other => to_value(other).map_or(Item::None, Item::Value),
    }
}

fn to_value(value: &Value) -> Option<toml_edit::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64()?.into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => toml_edit::Value::Array(items.iter().filter_map(to_value).collect()),
        Value::Object(map) => {
            let mut table = toml_edit::InlineTable::new();
            for (key, value) in map {
                if let Some(value) = to_value(value) {
                    table.insert(key, value);
                }
            }
            toml_edit::Value::InlineTable(table)
        }
    })
}

fn to_json(item: &Item) -> Option<Value> {
    match item {
        Item::None => None,
        Item::Value(value) => value_to_json(value),
        Item::Table(table) => Some(table_to_json(table)),
        Item::ArrayOfTables(tables) => Some(Value::Array(
            tables.iter().map(|t| table_to_json(t)).collect(),
        )),
    }
}

fn table_to_json(table: &dyn TableLike) -> Value {
    let mut map = Map::new();
    for (key, item) in table.iter() {
        if let Some(value) = to_json(item) {
            map.insert(key.to_owned(), value);
        }
    }
    Value::Object(map)
}

fn value_to_json(value: &toml_edit::Value) -> Option<Value> {
    Some(match value {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::from(*i.value()),
        toml_edit::Value::Float(f) => Value::from(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(items) => {
            Value::Array(items.iter().filter_map(value_to_json).collect())
        }
        toml_edit::Value::InlineTable(table) => table_to_json(table),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    #[test]
    fn edits_keep_comments_and_order() {
        let text = "# my settings\nmodel = \"o3\" # the best\napproval_policy = \"never\"\n\n[mcp_servers.x]\ncommand = \"x\"\n";
        let mut doc = TomlDoc::parse(text).unwrap();
        doc.set(&["model"], &json!("agent"));
        doc.set(&["model_provider"], &json!("flexiproxy"));
        doc.set(
            &["model_providers", "flexiproxy"],
            &json!({"name": "FlexiProxy", "base_url": "http://127.0.0.1:1/v1"}),
        );
        let out = doc.render();
        assert!(
            out.starts_with("# my settings\nmodel = \"agent\" # the best\n"),
            "{out}"
        );
        assert!(out.contains("[mcp_servers.x]\ncommand = \"x\"\n"), "{out}");
        assert!(
            out.contains("[model_providers.flexiproxy]\nbase_url = "),
            "{out}"
        );
        assert!(
            !out.contains("[model_providers]\n"),
            "no empty parent header: {out}"
        );
        let provider_line = out.find("model_provider =").unwrap();
        assert!(
            provider_line < out.find("[mcp_servers.x]").unwrap(),
            "{out}"
        );
        assert_eq!(
            doc.get(&["model_providers", "flexiproxy", "name"]),
            Some(json!("FlexiProxy"))
        );

        let before = TomlDoc::parse(text).unwrap();
        doc.restore(&["model"], &before);
        doc.remove(&["model_provider"]);
        doc.remove(&["model_providers", "flexiproxy"]);
        doc.remove(&["model_providers"]);
        assert_eq!(doc.render(), text);
    }

    #[test]
    fn invalid_toml_names_the_line_only() {
        let err = TomlDoc::parse("a = 1\nsecret = \"sk-123\nb = 2\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(!err.message.contains("sk-123"), "{}", err.message);
    }
}
