//! Editing a JSON request body's top-level fields without re-serialising it.
//!
//! The same-protocol fast path must change `model` (and sometimes add `stream_options`) while
//! passing every other byte through untouched: unknown fields, key order, number formatting and
//! whitespace stay as the client wrote them. [`TopLevel::scan`] validates the body and records
//! where each top-level value sits; [`splice`] then builds the new body from slices of the old
//! one and the few replacement values. the fast path uses this; protocol modules read fields with
//! [`TopLevel::get`].

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Why a body could not be scanned; the message is shown to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("{0}")]
    Syntax(String),
    #[error("the body must be a JSON object")]
    NotObject,
}

/// The top-level fields of a JSON object body, each with the byte range of its value.
#[derive(Debug)]
pub struct TopLevel<'a> {
    body: &'a [u8],
    /// Byte offset just after the opening `{`.
    open: usize,
    fields: Vec<(Cow<'a, str>, Range<usize>)>,
}

impl<'a> TopLevel<'a> {
    pub fn scan(body: &'a [u8]) -> Result<Self, ScanError> {
        let open = body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .filter(|&i| body[i] == b'{')
            .map(|i| i + 1);
        let raw: Fields<'a> =
            serde_json::from_slice(body).map_err(|e| ScanError::Syntax(e.to_string()))?;
        let open = open.ok_or(ScanError::NotObject)?;
        let base = body.as_ptr() as usize;
        let fields = raw
            .0
            .into_iter()
            .map(|(key, value)| {
                let text = value.get();
                // The raw value borrows from `body`, so its address locates it in the body.
                let start = (text.as_ptr() as usize).wrapping_sub(base);
                (key, start..start + text.len())
            })
            .collect();
        Ok(Self { body, open, fields })
    }

    /// The raw JSON text of a top-level field (the last one if a key repeats, as serde reads it).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.range(key).and_then(|r| {
            // Ranges come from `scan`, which took them from valid UTF-8 JSON text.
            std::str::from_utf8(&self.body[r]).ok()
        })
    }

    pub fn range(&self, key: &str) -> Option<Range<usize>> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
    }

    /// Whether a top-level field holds JSON `true`.
    pub fn is_true(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    /// An edit that sets `key` to the JSON text `value`: replaces the existing value, or adds the
    /// field at the start of the object.
    pub fn set(&self, key: &str, value: impl Into<Bytes>) -> Edit {
        let value = value.into();
        match self.range(key) {
            Some(range) => Edit {
                range,
                replacement: value,
            },
            None => {
                let mut text = BytesMut::with_capacity(key.len() + value.len() + 8);
                text.extend_from_slice(&json_string(key));
                text.extend_from_slice(b":");
                text.extend_from_slice(&value);
                if !self.fields.is_empty() {
                    text.extend_from_slice(b",");
                }
                Edit {
                    range: self.open..self.open,
                    replacement: text.freeze(),
                }
            }
        }
    }
}

/// Replace `range` of the body with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub replacement: Bytes,
}

/// Applies non-overlapping edits to `body`. With no edits the body is returned as is, without a
/// copy.
pub fn splice(body: &Bytes, mut edits: Vec<Edit>) -> Bytes {
    if edits.is_empty() {
        return body.clone();
    }
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let added: usize = edits.iter().map(|e| e.replacement.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + added);
    let mut at = 0;
    for edit in edits {
        out.extend_from_slice(&body[at..edit.range.start]);
        out.extend_from_slice(&edit.replacement);
        at = edit.range.end;
    }
    out.extend_from_slice(&body[at..]);
    out.freeze()
}

/// `value` as a JSON string literal.
pub fn json_string(value: &str) -> Bytes {
    // Serialising a `&str` cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    fields.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// An object key, borrowed unless it contained escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The top-level `model` string of a JSON body, if it has one.
/// A body that is not a JSON object is an error, which the gateway answers as bad JSON.
pub fn body_model(body: &[u8]) -> Result<Option<String>, ScanError> {
    let top = TopLevel::scan(body)?;
    Ok(top
        .get("model")
        .and_then(|raw| serde_json::from_str::<String>(raw).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(body: &str, f: impl Fn(&TopLevel<'_>) -> Vec<Edit>) -> String {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        let top = TopLevel::scan(&bytes).unwrap();
        let edits = f(&top);
        String::from_utf8(splice(&bytes, edits).to_vec()).unwrap()
    }

    #[test]
    fn replaces_model_and_keeps_every_other_byte() {
        let body = r#" { "model" : "gpt-x",  "x_unknown": {"a":[1,2.50e3]}, "messages":[{"role":"user","content":"hi \"model\""}] }"#;
        let out = apply(body, |t| vec![t.set("model", json_string("deepseek-chat"))]);
        assert_eq!(
            out,
            r#" { "model" : "deepseek-chat",  "x_unknown": {"a":[1,2.50e3]}, "messages":[{"role":"user","content":"hi \"model\""}] }"#
        );
    }

    #[test]
    fn adds_missing_fields_at_the_start() {
        assert_eq!(
            apply(r#"{"stream":true}"#, |t| vec![
                t.set("model", json_string("m")),
                t.set(
                    "stream_options",
                    Bytes::from_static(br#"{"include_usage":true}"#)
                ),
            ]),
            r#"{"model":"m","stream_options":{"include_usage":true},"stream":true}"#
        );
        assert_eq!(
            apply(" {}", |t| vec![t.set("model", json_string("m"))]),
            r#" {"model":"m"}"#
        );
    }

    #[test]
    fn reads_fields_and_escaped_keys() {
        let body = br#"{"str\u0065am": true, "n": null, "model":"a"}"#;
        let top = TopLevel::scan(body).unwrap();
        assert!(top.is_true("stream"));
        assert_eq!(top.get("n"), Some("null"));
        assert_eq!(top.get("model"), Some("\"a\""));
        assert_eq!(top.get("absent"), None);
    }

    #[test]
    fn rejects_what_is_not_a_json_object() {
        assert!(matches!(
            TopLevel::scan(b"[1,2]"),
            Err(ScanError::Syntax(_) | ScanError::NotObject)
        ));
        assert!(matches!(
            TopLevel::scan(b"{\"a\":"),
            Err(ScanError::Syntax(_))
        ));
        assert!(matches!(
            TopLevel::scan(b"{} trailing"),
            Err(ScanError::Syntax(_))
        ));
    }

    #[test]
    fn no_edits_means_no_copy() {
        let bytes = Bytes::from_static(b"{\"model\":\"a\"}");
        let out = splice(&bytes, Vec::new());
        assert_eq!(out.as_ptr(), bytes.as_ptr());
    }
}
