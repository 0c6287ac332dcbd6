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
//! Whatever cannot be expressed is loosened, never turned into an error, because a slightly
//! looser schema is better than a refused request. The one failure is size: inlining `$ref`s
//! (and splitting type lists into branches) can turn a few kilobytes into more nodes than
//! there are atoms, so [`for_gemini`] spends a [`Budget`] on every value it writes or copies
//! and stops with [`OverBudget`] when it runs out; the encoder turns that into the client's
//! 400. The other functions do work in proportion to their input (each referenced branch is
//! read once, names are deduplicated with sets).

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value, json};

/// Deeper schemas than this are cut off (an unconstrained value below): a generated schema
/// never needs it, and it bounds the work on hostile input.
const MAX_DEPTH: usize = 32;

/// How many JSON values the cleaning of one request's tool schemas may write or copy in all.
/// Claude Code's and Gemini CLI's whole tool sets spend about 300 (see the tests), a generated
/// schema whose `$defs` nest four deep with shared models under 7,000: the limit is far above
/// real tool sets and below what would hurt (an object costs some hundreds of bytes, so a
/// request that spends it all holds a few tens of MB for a moment).
pub const MAX_SCHEMA_VALUES: usize = 100_000;
/// How many bytes of text (names, descriptions, enum values, references) the cleaning of one
/// request's tool schemas may write in all: a long description inlined at every use of a
/// definition counts at each.
pub const MAX_SCHEMA_TEXT_BYTES: usize = 8 * 1024 * 1024;

/// The work the cleaning of one request's schemas may do, spent as values and text are written.
#[derive(Debug, Clone)]
pub struct Budget {
    limits: OverBudget,
    values: usize,
    bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(MAX_SCHEMA_VALUES, MAX_SCHEMA_TEXT_BYTES)
    }
}

/// A schema expanded past its [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expands past {values} JSON values or {bytes} bytes of text")]
pub struct OverBudget {
    /// The budget's limits (not what was left of them).
    pub values: usize,
    pub bytes: usize,
}

impl Budget {
    pub fn new(values: usize, bytes: usize) -> Self {
        Self {
            limits: OverBudget { values, bytes },
            values,
            bytes,
        }
    }

    /// Values and bytes of text spent so far.
    pub fn spent(&self) -> (usize, usize) {
        (
            self.limits.values - self.values,
            self.limits.bytes - self.bytes,
        )
    }

    fn spend(&mut self, values: usize, bytes: usize) -> Result<(), OverBudget> {
        match (
            self.values.checked_sub(values),
            self.bytes.checked_sub(bytes),
        ) {
            (Some(v), Some(b)) => {
                self.values = v;
                self.bytes = b;
                Ok(())
            }
            _ => {
                self.values = 0;
                self.bytes = 0;
                Err(self.limits)
            }
        }
    }
}

/// A tool whose parameters schema did not fit the request's [`Budget`]: the client's 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tool `{tool}`'s parameters schema {over} once its `$ref`s are inlined (the limit is for \
     all of a request's tool schemas together; Gemini takes no references, so each use of a \
     definition is a copy): simplify the schema (fewer uses of large shared definitions, no \
     long chains of definitions that each use the next several times) or send fewer tools"
)]
pub struct SchemaTooLarge {
    pub tool: String,
    pub over: OverBudget,
}

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

/// Cleans a JSON schema into what Gemini's `parameters` (and `responseSchema`) accept, spending
/// `budget` (shared by all the schemas of one request) on what it writes.
pub fn for_gemini(schema: &Value, budget: &mut Budget) -> Result<Value, OverBudget> {
    let mut cleaner = GeminiCleaner {
        root: schema,
        expanding: Vec::new(),
        budget,
    };
    Ok(Value::Object(cleaner.clean(schema, 0)?))
}

struct GeminiCleaner<'a, 'b> {
    root: &'a Value,
    /// The `$ref`s being inlined on the current path: one seen again is a cycle.
    expanding: Vec<String>,
    budget: &'b mut Budget,
}

/// One type of a node with a type list (`["string", "integer"]`): the node read as that type
/// alone, without the keywords that belong to the union as a whole.
const UNION_OWN: [&str; 5] = ["anyOf", "oneOf", "nullable", "description", "title"];

impl GeminiCleaner<'_, '_> {
    fn spend(&mut self, values: usize, bytes: usize) -> Result<(), OverBudget> {
        self.budget.spend(values, bytes)
    }

    /// A deep copy of `value`, paid for value by value (and byte by byte for text), so a large
    /// subtree copied at every use of a reference cannot escape the budget.
    fn copy(&mut self, value: &Value) -> Result<Value, OverBudget> {
        Ok(match value {
            Value::Array(items) => {
                self.spend(1, 0)?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.copy(item)?);
                }
                Value::Array(out)
            }
            Value::Object(fields) => {
                self.spend(1, 0)?;
                let mut out = Map::new();
                for (key, item) in fields {
                    self.spend(0, key.len())?;
                    out.insert(key.clone(), self.copy(item)?);
                }
                Value::Object(out)
            }
            Value::String(text) => {
                self.spend(1, text.len())?;
                Value::String(text.clone())
            }
            other => {
                self.spend(1, 0)?;
                other.clone()
            }
        })
    }

    fn clean(&mut self, schema: &Value, depth: usize) -> Result<Map<String, Value>, OverBudget> {
        self.spend(1, 0)?;
        let Value::Object(node) = schema else {
            // `true`, `false` and junk: nothing Gemini can check.
            return Ok(Map::new());
        };
        if depth > MAX_DEPTH {
            return Ok(Map::new());
        }
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            return self.inline(reference, node, depth);
        }
        if let Some(Value::Array(branches)) = node.get("allOf") {
            let merged = self.merge_all_of(node, branches)?;
            return self.clean(&Value::Object(merged), depth + 1);
        }
        self.clean_plain(node, depth, None)
    }

    /// A node with `$ref`: the target, cleaned, under the node's own keywords (a description
    /// next to a reference describes this use of it).
    fn inline(
        &mut self,
        reference: &str,
        node: &Map<String, Value>,
        depth: usize,
    ) -> Result<Map<String, Value>, OverBudget> {
        // Resolving and remembering the reference reads it: paid for like text.
        self.spend(1, reference.len())?;
        let target = resolve(self.root, reference);
        let mut out = match target {
            Some(target) if !self.expanding.iter().any(|r| r == reference) => {
                self.expanding.push(reference.to_owned());
                let cleaned = self.clean(target, depth + 1);
                self.expanding.pop();
                cleaned?
            }
            // A recursive type (a tree node holding tree nodes): Gemini has no way to say it,
            // so the recursion ends in "some value of that type".
            Some(target) => {
                let kind = target
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|kind| GEMINI_TYPES.contains(kind))
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
        // The node's own keywords, read in place (`clean_plain` ignores `$ref`).
        if node.keys().any(|key| key != "$ref") {
            let own = self.clean_plain(node, depth, None)?;
            for (key, value) in own {
                out.insert(key, value);
            }
        }
        Ok(out)
    }

    /// Cleans one schema node (no `$ref`, no `allOf`). `only` reads the node as that one type
    /// of its type list, without the keywords of the union as a whole ([`UNION_OWN`]).
    fn clean_plain(
        &mut self,
        node: &Map<String, Value>,
        depth: usize,
        only: Option<&str>,
    ) -> Result<Map<String, Value>, OverBudget> {
        self.spend(1, 0)?;
        let get = |key: &str| {
            if only.is_some() && UNION_OWN.contains(&key) {
                None
            } else {
                node.get(key)
            }
        };
        let mut out = Map::new();
        let mut nullable = get("nullable") == Some(&Value::Bool(true));

        // `type` may be a list (`["string", "null"]`); Gemini takes one type plus `nullable`.
        let mut types: Vec<String> = match (only, node.get("type")) {
            (Some(kind), _) => vec![kind.to_owned()],
            (None, Some(Value::String(t))) => vec![t.to_ascii_lowercase()],
            (None, Some(Value::Array(list))) => {
                let mut types = Vec::new();
                for kind in list.iter().filter_map(Value::as_str) {
                    self.spend(1, kind.len())?;
                    let kind = kind.to_ascii_lowercase();
                    // A type named twice is one branch, not two.
                    if !types.contains(&kind) && types.len() < GEMINI_TYPES.len() + 1 {
                        types.push(kind);
                    }
                }
                types
            }
            _ => Vec::new(),
        };
        if types.iter().any(|t| t == "null") {
            nullable = true;
            types.retain(|t| t != "null");
        }

        // `oneOf` says "exactly one"; Gemini only knows `anyOf`, which is close enough for a
        // model producing arguments.
        let union = get("anyOf")
            .or_else(|| get("oneOf"))
            .and_then(Value::as_array);
        if let Some(branches) = union {
            let mut kept = Vec::new();
            for branch in branches {
                let cleaned = self.clean(branch, depth + 1)?;
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
            let mut branches = Vec::with_capacity(types.len());
            for kind in &types {
                branches.push(Value::Object(self.clean_plain(
                    node,
                    depth + 1,
                    Some(kind),
                )?));
            }
            out.insert("anyOf".into(), Value::Array(branches));
            types.clear();
        }

        // `const` is an enum of one.
        let mut values: Option<&[Value]> = get("enum").and_then(Value::as_array).map(Vec::as_slice);
        if let Some(constant) = get("const") {
            values = Some(std::slice::from_ref(constant));
        }

        let mut kind = types.pop();
        if kind.is_none() && get("properties").is_some_and(Value::is_object) {
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
            if kind.as_deref() != Some("boolean") {
                let mut strings = Vec::new();
                for value in values.iter().filter(|v| !v.is_null()) {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => {
                            // Written out in full: paid for by the size of the copy first.
                            let _ = self.copy(other)?;
                            other.to_string()
                        }
                    };
                    self.spend(1, text.len())?;
                    strings.push(Value::String(text));
                }
                if !strings.is_empty() {
                    out.insert("enum".into(), Value::Array(strings));
                }
            }
        }

        for key in GEMINI_KEEP {
            let Some(value) = get(key) else {
                continue;
            };
            match key {
                "type" | "nullable" | "enum" | "anyOf" | "required" => {}
                "format" => {
                    if let (Some(format), Some(kind)) = (value.as_str(), kind.as_deref())
                        && format_allowed(kind, format)
                    {
                        out.insert("format".into(), self.copy(value)?);
                    }
                }
                "title" | "description" => {
                    if value.is_string() {
                        out.insert(key.into(), self.copy(value)?);
                    }
                }
                "minItems" | "maxItems" | "minimum" | "maximum" => {
                    let integer_text = value
                        .as_str()
                        .is_some_and(|text| text.len() <= MAX_NUMBER_TEXT && is_integer(text));
                    if value.is_number() || integer_text {
                        out.insert(key.into(), self.copy(value)?);
                    }
                }
                "items" => {
                    let items = match value {
                        // Tuples (`items: [A, B]`): any of the member types.
                        Value::Array(list) if list.len() == 1 => self.clean(&list[0], depth + 1)?,
                        Value::Array(list) => {
                            let mut branches = Vec::with_capacity(list.len());
                            for member in list {
                                branches.push(Value::Object(self.clean(member, depth + 1)?));
                            }
                            let mut any = Map::new();
                            any.insert("anyOf".into(), Value::Array(branches));
                            any
                        }
                        other => self.clean(other, depth + 1)?,
                    };
                    out.insert("items".into(), Value::Object(items));
                }
                "properties" => {
                    if let Value::Object(properties) = value {
                        let mut cleaned = Map::new();
                        for (name, schema) in properties {
                            self.spend(0, name.len())?;
                            let schema = Value::Object(self.clean(schema, depth + 1)?);
                            cleaned.insert(name.clone(), schema);
                        }
                        // An empty map is refused ("should be non-empty for OBJECT type");
                        // a bare `type: object` is accepted below the top level.
                        if !cleaned.is_empty() {
                            out.insert("properties".into(), Value::Object(cleaned));
                        }
                    }
                }
                _ => {
                    out.insert(key.into(), self.copy(value)?);
                }
            }
        }
        // Only names that are properties, each once: Gemini refuses the others ("property is
        // not defined").
        if let Some(Value::Array(required)) = get("required") {
            let properties = out.get("properties").and_then(Value::as_object);
            let mut seen = HashSet::new();
            let mut kept = Vec::new();
            for name in required {
                self.spend(1, 0)?;
                if let Some(name) = name.as_str()
                    && properties.is_some_and(|p| p.contains_key(name))
                    && seen.insert(name)
                {
                    self.spend(0, name.len())?;
                    kept.push(Value::String(name.to_owned()));
                }
            }
            if !kept.is_empty() {
                out.insert("required".into(), Value::Array(kept));
            }
        }

        if let Some(kind) = kind {
            if kind == "array" && !out.contains_key("items") {
                // Gemini refuses an array without `items`; strings are what a model can
                // always produce.
                out.insert("items".into(), json!({"type": "string"}));
            }
            self.spend(1, kind.len())?;
            out.insert("type".into(), Value::String(kind));
        }
        if nullable {
            out.insert("nullable".into(), Value::Bool(true));
        }
        Ok(out)
    }

    /// `allOf` folded into one schema: properties and required names are unions, any other
    /// keyword is taken from the node first, then from the branches in order. A branch that
    /// is a reference is merged by its target's content (one level; deeper references are
    /// inlined when the merged node is cleaned), and a target named by several branches is
    /// merged once.
    fn merge_all_of(
        &mut self,
        node: &Map<String, Value>,
        branches: &[Value],
    ) -> Result<Map<String, Value>, OverBudget> {
        let mut merged = Map::new();
        for (key, value) in node {
            if key != "properties" && key != "required" && read_when_cleaning(key) {
                self.spend(0, key.len())?;
                merged.insert(key.clone(), self.copy(value)?);
            }
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut required_seen = HashSet::new();
        let mut merged_targets = HashSet::new();
        let root = self.root;
        let branch_nodes = branches.iter().filter_map(|branch| {
            let branch = match branch.get("$ref").and_then(Value::as_str) {
                Some(reference) => resolve(root, reference).unwrap_or(branch),
                None => branch,
            };
            branch.as_object()
        });
        for part in std::iter::once(node).chain(branch_nodes) {
            self.spend(1, 0)?;
            if !merged_targets.insert(std::ptr::from_ref(part)) {
                continue;
            }
            let is_own = std::ptr::eq(part, node);
            for (key, value) in part {
                self.spend(1, 0)?;
                match (key.as_str(), value) {
                    ("properties", Value::Object(more)) => {
                        for (name, schema) in more {
                            self.spend(1, 0)?;
                            if !properties.contains_key(name) {
                                self.spend(0, name.len())?;
                                properties.insert(name.clone(), self.copy(schema)?);
                            }
                        }
                    }
                    ("required", Value::Array(more)) => {
                        for name in more {
                            self.spend(1, 0)?;
                            if let Some(text) = name.as_str()
                                && required_seen.insert(text.to_owned())
                            {
                                self.spend(0, text.len())?;
                                required.push(Value::String(text.to_owned()));
                            }
                        }
                    }
                    _ if is_own => {}
                    ("$ref" | "allOf", _) => {}
                    _ => {
                        if read_when_cleaning(key) && !merged.contains_key(key) {
                            self.spend(0, key.len())?;
                            merged.insert(key.clone(), self.copy(value)?);
                        }
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
        Ok(merged)
    }
}

/// Whether cleaning a node reads `key`: the keywords kept, plus those rewritten into them.
/// Nothing else is worth copying into a merged `allOf` node.
fn read_when_cleaning(key: &str) -> bool {
    GEMINI_KEEP.contains(&key) || matches!(key, "oneOf" | "const")
}

/// The types Gemini's `Schema` knows (lower case, as JSON Schema writes them).
const GEMINI_TYPES: [&str; 6] = ["string", "number", "integer", "boolean", "array", "object"];

/// Counts longer than this, written as text, are no counts.
const MAX_NUMBER_TEXT: usize = 20;

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
        // Names in order, with sets beside them: a union of thousands of branches with
        // thousands of names each stays linear.
        let mut branch_required: Option<Vec<&str>> = None;
        // A target named by several branches counts once (the union and the intersection
        // are the same without its repeats), so repeated references cost nothing.
        let mut seen = HashSet::new();
        let mut all_of_known: HashSet<&str> = HashSet::new();
        for branch in &branches {
            let branch = match branch.get("$ref").and_then(Value::as_str) {
                Some(reference) => resolve(schema, reference).unwrap_or(branch),
                None => branch,
            };
            if !seen.insert(std::ptr::from_ref(branch)) {
                continue;
            }
            if let Some(more) = branch.get("properties").and_then(Value::as_object) {
                for (name, property) in more {
                    properties
                        .entry(name.clone())
                        .or_insert_with(|| property.clone());
                }
            }
            let required: Vec<&str> = branch
                .get("required")
                .and_then(Value::as_array)
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            branch_required = Some(match branch_required {
                None => {
                    all_of_known.extend(required.iter().copied());
                    required
                }
                // `allOf` needs what any branch needs; the others only what all of them need.
                Some(mut so_far) if key == "allOf" => {
                    for name in required {
                        if all_of_known.insert(name) {
                            so_far.push(name);
                        }
                    }
                    so_far
                }
                Some(so_far) => {
                    let wanted: HashSet<&str> = required.into_iter().collect();
                    so_far.into_iter().filter(|n| wanted.contains(n)).collect()
                }
            });
        }
        let mut known: HashSet<String> = HashSet::new();
        let mut required = Vec::new();
        let own_names = own_required.iter().filter_map(Value::as_str);
        for name in own_names.chain(branch_required.unwrap_or_default()) {
            if known.insert(name.to_owned()) {
                required.push(Value::String(name.to_owned()));
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
mod tests;
