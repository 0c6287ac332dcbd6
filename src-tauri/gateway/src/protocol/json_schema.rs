//! Tool and answer schemas made acceptable to each target.
//!
//! Clients describe tool arguments in JSON Schema ([`Tool::parameters`](crate::canonical::Tool)),
//! usually generated (pydantic, zod, MCP servers) and full of keywords a provider may refuse.
//! Protocol encoders call these functions on the way out:
//!
//! - [`for_gemini`]: Gemini function declarations take `parameters` in a subset of OpenAPI 3.0
//!   and reject the whole request at the first field they do not know (`Unknown name
//!   "additionalProperties"`), an object with no properties, a `required` name that is not a
//!   property, an array without `items`, or a string `format` other than `enum`/`date-time`.
//!   References are inlined, unions and nullability rewritten, everything else dropped.
//! - [`for_anthropic`]: Anthropic takes JSON Schema but insists on an object at the top, without
//!   `anyOf`/`oneOf`/`allOf` there ([`object_at_top`], which Gemini's parameters need too).
//! - [`from_gemini`]: the other way, for schemas a Gemini client wrote in the OpenAPI subset
//!   (`"type": "OBJECT"`, `nullable`, counts as strings), so other targets get JSON Schema.
//!
//! The functions never fail: whatever cannot be expressed is loosened, never turned into an
//! error, because a slightly looser schema is better than a refused request.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

/// Deeper schemas than this are cut off (an unconstrained value below): a generated schema
/// never needs it, and it bounds the work on hostile input.
const MAX_DEPTH: usize = 32;

/// The keywords Gemini's `Schema` accepts that are kept. Anything else is dropped: an allowlist,
/// because the API refuses unknown names and new JSON Schema keywords keep appearing.
const GEMINI_KEEP: [&str; 14] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "anyOf",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
];

/// Cleans a JSON schema into what Gemini's `parameters` (and `responseSchema`) accept.
pub fn for_gemini(schema: &Value) -> Value {
    let mut cleaner = GeminiCleaner {
        root: schema,
        expanding: Vec::new(),
    };
    Value::Object(cleaner.clean(schema, 0))
}

struct GeminiCleaner<'a> {
    root: &'a Value,
    /// The `$ref`s being inlined on the current path: one seen again is a cycle.
    expanding: Vec<String>,
}

impl GeminiCleaner<'_> {
    fn clean(&mut self, schema: &Value, depth: usize) -> Map<String, Value> {
        let Value::Object(node) = schema else {
            // `true`, `false` and junk: nothing Gemini can check.
            return Map::new();
        };
        if depth > MAX_DEPTH {
            return Map::new();
        }
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            return self.inline(reference, node, depth);
        }
        if let Some(Value::Array(branches)) = node.get("allOf") {
            let merged = merge_all_of(node, branches, self.root);
            return self.clean(&Value::Object(merged), depth + 1);
        }
        self.clean_plain(node, depth)
    }

    /// A node with `$ref`: the target, cleaned, under the node's own keywords (a description
    /// next to a reference describes this use of it).
    fn inline(
        &mut self,
        reference: &str,
        node: &Map<String, Value>,
        depth: usize,
    ) -> Map<String, Value> {
        let mut siblings = node.clone();
        siblings.remove("$ref");
        let target = resolve(self.root, reference);
        let mut out = match target {
            Some(target) if !self.expanding.iter().any(|r| r == reference) => {
                self.expanding.push(reference.to_owned());
                let cleaned = self.clean(target, depth + 1);
                self.expanding.pop();
                cleaned
            }
            // A recursive type (a tree node holding tree nodes): Gemini has no way to say it,
            // so the recursion ends in "some value of that type".
            Some(target) => {
                let kind = target
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("object");
                let mut stub = Map::new();
                stub.insert("type".into(), Value::String(kind.to_owned()));
                if kind == "array" {
                    stub.insert("items".into(), json!({"type": "string"}));
                }
                stub
            }
            // Remote or broken references cannot be followed.
            None => Map::new(),
        };
        if !siblings.is_empty() {
            let own = self.clean_plain(&siblings, depth);
            for (key, value) in own {
                out.insert(key, value);
            }
        }
        out
    }

    fn clean_plain(&mut self, node: &Map<String, Value>, depth: usize) -> Map<String, Value> {
        let mut out = Map::new();
        let mut nullable = node.get("nullable") == Some(&Value::Bool(true));

        // `type` may be a list (`["string", "null"]`); Gemini takes one type plus `nullable`.
        let mut types: Vec<String> = match node.get("type") {
            Some(Value::String(t)) => vec![t.to_ascii_lowercase()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect(),
            _ => Vec::new(),
        };
        if types.iter().any(|t| t == "null") {
            nullable = true;
            types.retain(|t| t != "null");
        }

        // `oneOf` says "exactly one"; Gemini only knows `anyOf`, which is close enough for a
        // model producing arguments.
        let union = node
            .get("anyOf")
            .or_else(|| node.get("oneOf"))
            .and_then(Value::as_array);
        if let Some(branches) = union {
            let mut kept = Vec::new();
            for branch in branches {
                let cleaned = self.clean(branch, depth + 1);
                if is_null_schema(&cleaned) {
                    nullable = true;
                } else {
                    kept.push(cleaned);
                }
            }
            match kept.len() {
                0 => {}
                // `anyOf: [X, null]` is "X or null": X itself, nullable.
                1 => {
                    for (key, value) in kept.remove(0) {
                        out.entry(key).or_insert(value);
                    }
                }
                _ => {
                    out.insert(
                        "anyOf".into(),
                        Value::Array(kept.into_iter().map(Value::Object).collect()),
                    );
                }
            }
        }

        if types.len() > 1 {
            // Several types: one branch per type, each with the keywords that belong to it.
            let branches = types
                .iter()
                .map(|kind| {
                    let mut branch = node.clone();
                    branch.insert("type".into(), Value::String(kind.clone()));
                    for key in ["anyOf", "oneOf", "nullable", "description", "title"] {
                        branch.remove(key);
                    }
                    Value::Object(self.clean_plain(&branch, depth + 1))
                })
                .collect();
            out.insert("anyOf".into(), Value::Array(branches));
            types.clear();
        }

        // `const` is an enum of one.
        let mut values: Option<Vec<Value>> = node.get("enum").and_then(Value::as_array).cloned();
        if let Some(constant) = node.get("const") {
            values = Some(vec![constant.clone()]);
        }

        let mut kind = types.pop();
        if kind.is_none() && node.get("properties").is_some_and(Value::is_object) {
            // Gemini refuses `properties` on a schema that does not say it is an object.
            kind = Some("object".into());
        }
        if kind.is_none() && values.is_some() && !out.contains_key("anyOf") {
            kind = Some("string".into());
        }

        if let Some(values) = values {
            if values.iter().any(Value::is_null) {
                nullable = true;
            }
            // Gemini's enum is a list of strings (with the type saying how to read them); a
            // boolean needs none.
            let strings: Vec<Value> = values
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| match v {
                    Value::String(s) => Value::String(s.clone()),
                    other => Value::String(other.to_string()),
                })
                .collect();
            if !strings.is_empty() && kind.as_deref() != Some("boolean") {
                out.insert("enum".into(), Value::Array(strings));
            }
        }

        for key in GEMINI_KEEP {
            let Some(value) = node.get(key) else {
                continue;
            };
            match key {
                "type" | "nullable" | "enum" | "anyOf" => {}
                "format" => {
                    if let (Some(format), Some(kind)) = (value.as_str(), kind.as_deref())
                        && format_allowed(kind, format)
                    {
                        out.insert("format".into(), value.clone());
                    }
                }
                "title" | "description" => {
                    if value.is_string() {
                        out.insert(key.into(), value.clone());
                    }
                }
                "minItems" | "maxItems" | "minimum" | "maximum" => {
                    if value.is_number() || value.as_str().is_some_and(is_integer) {
                        out.insert(key.into(), value.clone());
                    }
                }
                "items" => {
                    let items = match value {
                        // Tuples (`items: [A, B]`): any of the member types.
                        Value::Array(list) if list.len() == 1 => self.clean(&list[0], depth + 1),
                        Value::Array(list) => {
                            let mut any = Map::new();
                            any.insert(
                                "anyOf".into(),
                                Value::Array(
                                    list.iter()
                                        .map(|s| Value::Object(self.clean(s, depth + 1)))
                                        .collect(),
                                ),
                            );
                            any
                        }
                        other => self.clean(other, depth + 1),
                    };
                    out.insert("items".into(), Value::Object(items));
                }
                "properties" => {
                    if let Value::Object(properties) = value {
                        let cleaned: Map<String, Value> = properties
                            .iter()
                            .map(|(name, schema)| {
                                (name.clone(), Value::Object(self.clean(schema, depth + 1)))
                            })
                            .collect();
                        // An empty map is refused ("should be non-empty for OBJECT type");
                        // a bare `type: object` is accepted below the top level.
                        if !cleaned.is_empty() {
                            out.insert("properties".into(), Value::Object(cleaned));
                        }
                    }
                }
                "required" => {}
                _ => {
                    out.insert(key.into(), value.clone());
                }
            }
        }
        // Only names that are properties: Gemini refuses the others ("property is not defined").
        if let Some(Value::Array(required)) = node.get("required") {
            let properties = out.get("properties").and_then(Value::as_object);
            let required: Vec<Value> = required
                .iter()
                .filter(|name| {
                    name.as_str()
                        .is_some_and(|n| properties.is_some_and(|p| p.contains_key(n)))
                })
                .cloned()
                .collect();
            if !required.is_empty() {
                out.insert("required".into(), Value::Array(required));
            }
        }

        if let Some(kind) = kind {
            if kind == "array" && !out.contains_key("items") {
                // Gemini refuses an array without `items`; strings are what a model can
                // always produce.
                out.insert("items".into(), json!({"type": "string"}));
            }
            out.insert("type".into(), Value::String(kind));
        }
        if nullable {
            out.insert("nullable".into(), Value::Bool(true));
        }
        out
    }
}

/// Whether a cleaned schema says only "null".
fn is_null_schema(schema: &Map<String, Value>) -> bool {
    schema.get("nullable") == Some(&Value::Bool(true))
        && !schema.contains_key("type")
        && !schema.contains_key("anyOf")
        && !schema.contains_key("properties")
}

/// The formats Gemini accepts per type; others are refused ("only 'enum' and 'date-time' are
/// supported for STRING type").
fn format_allowed(kind: &str, format: &str) -> bool {
    match kind {
        "string" => matches!(format, "enum" | "date-time"),
        "number" => matches!(format, "float" | "double"),
        "integer" => matches!(format, "int32" | "int64"),
        _ => false,
    }
}

fn is_integer(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A local reference (`#`, `#/$defs/X`, `#/definitions/X`, any JSON pointer) in `root`.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

/// `allOf` folded into one schema: properties and required names are unions, any other keyword
/// is taken from the node first, then from the branches in order.
fn merge_all_of(node: &Map<String, Value>, branches: &[Value], root: &Value) -> Map<String, Value> {
    let mut merged = node.clone();
    merged.remove("allOf");
    let mut properties = match merged.remove("properties") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    let mut required: Vec<Value> = match merged.remove("required") {
        Some(Value::Array(r)) => r,
        _ => Vec::new(),
    };
    for branch in branches {
        // A referenced branch is merged by its content (one level; deeper references are
        // inlined when the merged node is cleaned).
        let branch = match branch.get("$ref").and_then(Value::as_str) {
            Some(reference) => resolve(root, reference).unwrap_or(branch),
            None => branch,
        };
        let Value::Object(branch) = branch else {
            continue;
        };
        for (key, value) in branch {
            match (key.as_str(), value) {
                ("properties", Value::Object(more)) => {
                    for (name, schema) in more {
                        properties
                            .entry(name.clone())
                            .or_insert_with(|| schema.clone());
                    }
                }
                ("required", Value::Array(more)) => {
                    for name in more {
                        if !required.contains(name) {
                            required.push(name.clone());
                        }
                    }
                }
                ("$ref" | "allOf", _) => {}
                _ => {
                    merged.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
        }
    }
    if !properties.is_empty() {
        merged.insert("properties".into(), Value::Object(properties));
    }
    if !required.is_empty() {
        merged.insert("required".into(), Value::Array(required));
    }
    merged
}

/// Makes a schema acceptable as an Anthropic `input_schema`: an object schema at the top
/// ([`object_at_top`]). Nested keywords are left alone: Anthropic takes JSON Schema.
pub fn for_anthropic(schema: &Value) -> Value {
    object_at_top(schema)
}

/// [`object_at_top`] without a copy when the schema already is one object schema, the common
/// case, so encoders pay for the rewrite only when there is something to rewrite.
pub fn object_at_top_cow(schema: &Value) -> Cow<'_, Value> {
    let plain_object = schema.get("type").and_then(Value::as_str) == Some("object")
        && ["anyOf", "oneOf", "allOf"]
            .iter()
            .all(|key| schema.get(key).is_none());
    if plain_object {
        Cow::Borrowed(schema)
    } else {
        Cow::Owned(object_at_top(schema))
    }
}

/// What function-calling APIs want at the top of a tool's parameters: one object schema.
///
/// A top-level union (zod's discriminated unions) becomes one object with every branch's
/// properties, required only where every branch requires them (for `allOf`, where any does); a
/// missing or non-object type becomes `object`. Nothing below the top is touched.
pub fn object_at_top(schema: &Value) -> Value {
    let Value::Object(node) = schema else {
        return json!({"type": "object", "properties": {}});
    };
    let mut out = node.clone();
    let union = ["anyOf", "oneOf", "allOf"]
        .into_iter()
        .find_map(|key| out.remove(key).map(|branches| (key, branches)));
    if let Some((key, Value::Array(branches))) = union {
        let mut properties = match out.remove("properties") {
            Some(Value::Object(p)) => p,
            _ => Map::new(),
        };
        let own_required: Vec<Value> = match out.remove("required") {
            Some(Value::Array(r)) => r,
            _ => Vec::new(),
        };
        let mut branch_required: Option<Vec<Value>> = None;
        for branch in &branches {
            let branch = match branch.get("$ref").and_then(Value::as_str) {
                Some(reference) => resolve(schema, reference).unwrap_or(branch),
                None => branch,
            };
            if let Some(more) = branch.get("properties").and_then(Value::as_object) {
                for (name, property) in more {
                    properties
                        .entry(name.clone())
                        .or_insert_with(|| property.clone());
                }
            }
            let required: Vec<Value> = branch
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            branch_required = Some(match branch_required {
                None => required,
                // `allOf` needs what any branch needs; the others only what all of them need.
                Some(mut so_far) if key == "allOf" => {
                    for name in required {
                        if !so_far.contains(&name) {
                            so_far.push(name);
                        }
                    }
                    so_far
                }
                Some(so_far) => so_far
                    .into_iter()
                    .filter(|n| required.contains(n))
                    .collect(),
            });
        }
        let mut required = own_required;
        for name in branch_required.unwrap_or_default() {
            if !required.contains(&name) {
                required.push(name);
            }
        }
        out.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            out.insert("required".into(), Value::Array(required));
        }
    }
    if out.get("type").and_then(Value::as_str) != Some("object") {
        out.insert("type".into(), Value::String("object".into()));
    }
    if !out.contains_key("properties") {
        out.insert("properties".into(), Value::Object(Map::new()));
    }
    Value::Object(out)
}

/// Turns a Gemini `Schema` (OpenAPI 3.0 subset) into JSON Schema: lower-case types,
/// `nullable` as a `"null"` type, counts as numbers, Gemini-only keywords dropped.
pub fn from_gemini(schema: &Value) -> Value {
    from_gemini_at(schema, 0)
}

fn from_gemini_at(schema: &Value, depth: usize) -> Value {
    let Value::Object(node) = schema else {
        return schema.clone();
    };
    if depth > MAX_DEPTH {
        return Value::Object(Map::new());
    }
    let mut out = Map::new();
    let nullable = node.get("nullable") == Some(&Value::Bool(true));
    for (key, value) in node {
        match key.as_str() {
            "type" => {
                let Some(kind) = value.as_str().map(str::to_ascii_lowercase) else {
                    out.insert(key.clone(), value.clone());
                    continue;
                };
                if kind == "type_unspecified" {
                    continue;
                }
                let kind = Value::String(kind);
                out.insert(
                    key.clone(),
                    if nullable {
                        json!([kind, "null"])
                    } else {
                        kind
                    },
                );
            }
            "nullable" | "propertyOrdering" | "property_ordering" => {}
            "format" if value.as_str() == Some("enum") => {}
            "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties"
            | "maxProperties" => {
                let number = match value {
                    Value::String(text) => text.parse::<u64>().ok().map(Value::from),
                    other => Some(other.clone()),
                };
                if let Some(number) = number {
                    out.insert(key.clone(), number);
                }
            }
            "properties" => {
                let properties = match value {
                    Value::Object(properties) => Value::Object(
                        properties
                            .iter()
                            .map(|(name, s)| (name.clone(), from_gemini_at(s, depth + 1)))
                            .collect(),
                    ),
                    other => other.clone(),
                };
                out.insert(key.clone(), properties);
            }
            "items" => {
                out.insert(key.clone(), from_gemini_at(value, depth + 1));
            }
            "anyOf" | "any_of" => {
                let branches = match value {
                    Value::Array(list) => {
                        let mut list: Vec<Value> =
                            list.iter().map(|s| from_gemini_at(s, depth + 1)).collect();
                        if nullable {
                            list.push(json!({"type": "null"}));
                        }
                        Value::Array(list)
                    }
                    other => other.clone(),
                };
                out.insert("anyOf".into(), branches);
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_gets_only_keywords_it_knows() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": "x", "$comment": "c",
            "type": "object",
            "additionalProperties": false,
            "patternProperties": {"^x": {"type": "string"}},
            "propertyNames": {"pattern": "^[a-z]+$"},
            "unevaluatedProperties": false,
            "if": {"properties": {"a": {"const": 1}}}, "then": {}, "else": {},
            "properties": {
                "path": {"type": "string", "format": "uri", "default": "/", "examples": ["/a"], "minLength": 1, "pattern": "^/"},
                "when": {"type": "string", "format": "date-time"},
                "count": {"type": "integer", "exclusiveMinimum": 0, "maximum": 10, "format": "int32"},
                "mode": {"const": "fast"},
                "level": {"type": "integer", "enum": [1, 2]},
                "flag": {"type": "boolean", "enum": [true]},
                "tags": {"type": "array", "minItems": 1, "uniqueItems": true},
                "meta": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}
            },
            "required": ["path", "ghost"]
        });
        assert_eq!(
            for_gemini(&schema),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "when": {"type": "string", "format": "date-time"},
                    "count": {"type": "integer", "maximum": 10, "format": "int32"},
                    "mode": {"type": "string", "enum": ["fast"]},
                    "level": {"type": "integer", "enum": ["1", "2"]},
                    "flag": {"type": "boolean"},
                    "tags": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "meta": {"type": "object"}
                },
                "required": ["path"]
            })
        );
    }

    #[test]
    fn references_are_inlined_and_cycles_end() {
        let schema = json!({
            "type": "object",
            "properties": {
                "point": {"$ref": "#/$defs/Point", "description": "where"},
                "old": {"$ref": "#/definitions/Old"},
                "tree": {"$ref": "#/$defs/Node"},
                "remote": {"$ref": "https://example.com/s.json"}
            },
            "$defs": {
                "Point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
                "Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
            },
            "definitions": {"Old": {"type": "string"}}
        });
        let out = for_gemini(&schema);
        assert_eq!(
            out["properties"]["point"],
            json!({"type": "object", "description": "where", "properties": {"x": {"type": "number"}}, "required": ["x"]})
        );
        assert_eq!(out["properties"]["old"], json!({"type": "string"}));
        assert_eq!(
            out["properties"]["tree"]["properties"]["children"]["items"],
            json!({"type": "object"}),
            "the recursion stops at the second visit"
        );
        assert_eq!(out["properties"]["remote"], json!({}));
        assert!(out.get("$defs").is_none() && out.get("definitions").is_none());

        // A self-referencing root terminates too.
        let looped = json!({"type": "object", "properties": {"next": {"$ref": "#"}}});
        assert_eq!(
            for_gemini(&looped)["properties"]["next"]["properties"]["next"],
            json!({"type": "object"})
        );
    }

    #[test]
    fn nulls_become_nullable_and_unions_stay_unions() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"]},
                "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "maybe"},
                "c": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "d": {"type": ["string", "integer"]},
                "e": {"allOf": [{"properties": {"x": {"type": "string"}}, "required": ["x"]}, {"properties": {"y": {"type": "string"}}}]},
                "f": {"type": ["object", "null"], "properties": {"z": {"type": "boolean"}}}
            }
        });
        let out = for_gemini(&schema);
        let p = &out["properties"];
        assert_eq!(p["a"], json!({"type": "string", "nullable": true}));
        assert_eq!(
            p["b"],
            json!({"type": "integer", "nullable": true, "description": "maybe"})
        );
        assert_eq!(
            p["c"],
            json!({"anyOf": [{"type": "string"}, {"type": "number"}]})
        );
        assert_eq!(
            p["d"],
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
        assert_eq!(
            p["e"],
            json!({"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string"}}, "required": ["x"]})
        );
        assert_eq!(
            p["f"],
            json!({"type": "object", "nullable": true, "properties": {"z": {"type": "boolean"}}})
        );
    }

    #[test]
    fn hostile_schemas_do_not_blow_up() {
        let mut deep = json!({"type": "string"});
        for _ in 0..200 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        let out = for_gemini(&deep);
        assert_eq!(out["type"], "object");
        for junk in [
            json!(true),
            json!(null),
            json!([1]),
            json!({"$ref": 5}),
            json!({"items": 3}),
        ] {
            let _ = for_gemini(&junk);
            assert_eq!(for_anthropic(&junk)["type"], "object");
        }
    }

    #[test]
    fn anthropic_gets_an_object_at_the_top() {
        assert_eq!(
            for_anthropic(&json!({})),
            json!({"type": "object", "properties": {}})
        );
        let union = json!({
            "anyOf": [
                {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "string"}}, "required": ["kind", "x"]},
                {"type": "object", "properties": {"kind": {"const": "b"}, "y": {"type": "string"}}, "required": ["kind"]}
            ],
            "$defs": {"Unused": {}}
        });
        let out = for_anthropic(&union);
        assert_eq!(out["type"], "object");
        assert_eq!(out["required"], json!(["kind"]));
        assert_eq!(
            out["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["kind", "x", "y"]
        );
        assert!(out.get("anyOf").is_none());
        assert_eq!(out["$defs"], json!({"Unused": {}}), "nested keywords stay");
        let plain = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
        assert_eq!(for_anthropic(&plain), plain);
    }

    #[test]
    fn gemini_schemas_read_as_json_schema() {
        let schema = json!({
            "type": "OBJECT",
            "propertyOrdering": ["a", "b"],
            "properties": {
                "a": {"type": "STRING", "nullable": true, "format": "enum", "enum": ["x", "y"]},
                "b": {"type": "ARRAY", "items": {"type": "INTEGER"}, "minItems": "1"}
            },
            "required": ["a"]
        });
        assert_eq!(
            from_gemini(&schema),
            json!({
                "type": "object",
                "properties": {
                    "a": {"type": ["string", "null"], "enum": ["x", "y"]},
                    "b": {"type": "array", "items": {"type": "integer"}, "minItems": 1}
                },
                "required": ["a"]
            })
        );
        // And back again, unchanged in meaning.
        let back = for_gemini(&from_gemini(&schema));
        assert_eq!(back["properties"]["a"]["nullable"], true);
        assert_eq!(back["properties"]["b"]["minItems"], 1);
    }
}
