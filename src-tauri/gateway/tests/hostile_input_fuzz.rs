//! Property tests for the three places where hostile input could make the gateway's work
//! larger than the input: the JSON-schema cleaner's `$ref` inlining, the SSE splitter, and the
//! URL path segments made from model names.
//!
//! - Schemas: random `$ref` graphs (cycles, self references, fan-out, `allOf` of references,
//!   type lists, tuples, junk) cleaned for Gemini within a small budget always finish, spend no
//!   more than the budget allows, write only keywords Gemini accepts and no reference, and a
//!   schema that fits a budget gives the same output with a larger one.
//! - SSE: any bytes, cut into any pieces, split into the same events as the WHATWG
//!   "event stream interpretation" reads from the whole stream (a reference parser written
//!   here from the spec), with CR, LF and CRLF line ends alike; the pieces always add up to
//!   the input, and the bytes scanned equal the bytes fed.
//! - Segments: whatever a model name holds, the encoded segment has no `/`, `?`, `#`, `:`,
//!   no `%` that does not start an escape, is never `.` or `..`, and decodes back to the name.
//!
//! Case counts: 256 schema graphs, 512 SSE streams (each also in its CR and CRLF forms), 1024
//! model names per run; `PROPTEST_CASES` overrides them all.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

use bytes::Bytes;
use flexiproxy_gateway::proxy::path_segment::{PathSegment, SegmentError};
use flexiproxy_protocol::json_schema::{self, Budget};
use flexiproxy_protocol::sse::{self, EventSplitter};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas.

/// A schema node of a random graph over `defs` definitions: references to any of them (so
/// cycles and self references happen), unions and merges of references, type lists, tuples.
fn node(defs: usize) -> impl Strategy<Value = Value> {
    let reference = (0..defs).prop_map(|d| json!({"$ref": format!("#/$defs/D{d}")}));
    let leaf = prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"type": ["integer", "null"]})),
        Just(json!({"enum": ["a", 1, null, true]})),
        Just(json!({"const": {"x": [1, 2]}})),
        Just(json!({"type": "array"})),
        Just(json!(true)),
        Just(json!({"$ref": "#/nowhere"})),
        Just(json!({"$ref": "https://example.com/x.json"})),
        Just(json!({"$ref": "#"})),
        Just(json!({"type": "object", "properties": {}, "required": ["ghost"]})),
        reference.clone(),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        let refs = proptest::collection::vec((0..defs).prop_map(|d| format!("#/$defs/D{d}")), 1..6);
        prop_oneof![
            proptest::collection::vec(("[a-e]", inner.clone()), 0..6).prop_map(|props| {
                let names: Vec<&String> = props.iter().map(|(n, _)| n).collect();
                json!({"type": "object", "required": names, "properties": props.iter().cloned().collect::<Map<String, Value>>()})
            }),
            proptest::collection::vec(inner.clone(), 1..5).prop_map(|branches| json!({"anyOf": branches})),
            proptest::collection::vec(inner.clone(), 1..5).prop_map(|branches| json!({"oneOf": branches})),
            refs.prop_map(|refs| json!({"allOf": refs.iter().map(|r| json!({"$ref": r})).collect::<Vec<_>>()})),
            inner.clone().prop_map(|items| json!({"type": "array", "items": items})),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(|items| json!({"type": "array", "items": items})),
            inner.prop_map(|p| json!({
                "type": ["object", "string", "number", "integer", "boolean", "array", "null"],
                "properties": {"p": p},
                "description": "many types"
            })),
            (reference.clone(), "[a-z ]{0,12}").prop_map(|(mut r, d)| {
                r["description"] = Value::String(d);
                r
            }),
        ]
    })
}

/// A root schema with `1..8` definitions, each a random node over the same definitions.
fn ref_graph() -> impl Strategy<Value = Value> {
    (1usize..8).prop_flat_map(|defs| {
        (node(defs), proptest::collection::vec(node(defs), defs)).prop_map(|(root, bodies)| {
            let defs: Map<String, Value> = bodies
                .into_iter()
                .enumerate()
                .map(|(i, body)| (format!("D{i}"), body))
                .collect();
            let mut root = match root {
                Value::Object(map) => map,
                other => {
                    let mut map = Map::new();
                    map.insert("anyOf".into(), json!([other]));
                    map
                }
            };
            root.insert("$defs".into(), Value::Object(defs));
            Value::Object(root)
        })
    })
}

/// The keywords Gemini's `Schema` accepts (what `json_schema::for_gemini` may write).
const GEMINI_KEYS: [&str; 14] = [
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

/// Checks a cleaned schema node; returns how many JSON values it holds.
fn check_gemini_node(node: &Value) -> Result<usize, TestCaseError> {
    let Value::Object(fields) = node else {
        return Err(TestCaseError::fail(format!(
            "a schema that is no object: {node}"
        )));
    };
    let mut values = 1;
    for (key, value) in fields {
        prop_assert!(
            GEMINI_KEYS.contains(&key.as_str()),
            "keyword `{key}` in {node}"
        );
        values += match key.as_str() {
            "properties" => {
                let Value::Object(properties) = value else {
                    return Err(TestCaseError::fail("properties is no object"));
                };
                prop_assert!(!properties.is_empty(), "empty properties");
                let mut n = 1;
                for property in properties.values() {
                    n += check_gemini_node(property)?;
                }
                n
            }
            "items" => check_gemini_node(value)?,
            "anyOf" => {
                let mut n = 1;
                for branch in value.as_array().unwrap() {
                    n += check_gemini_node(branch)?;
                }
                n
            }
            "required" => {
                let names = value.as_array().unwrap();
                let properties = fields.get("properties").and_then(Value::as_object);
                for name in names {
                    prop_assert!(
                        properties.is_some_and(|p| p.contains_key(name.as_str().unwrap())),
                        "required {name} is no property"
                    );
                }
                1 + names.len()
            }
            "enum" => 1 + value.as_array().unwrap().len(),
            _ => 1,
        };
    }
    Ok(values)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn reference_graphs_are_cleaned_within_the_budget(
        schema in ref_graph(),
        values in 50usize..5_000,
    ) {
        let bytes = values * 64;
        let top = json_schema::object_at_top(&schema);
        prop_assert_eq!(top["type"].as_str(), Some("object"));
        let mut budget = Budget::new(values, bytes);
        match json_schema::for_gemini(&top, &mut budget) {
            Ok(cleaned) => {
                let (spent_values, spent_bytes) = budget.spent();
                prop_assert!(spent_values <= values && spent_bytes <= bytes);
                // Every value written was paid for (a node costs two: its visit and its
                // keywords), up to the few constants the cleaner adds itself.
                let written = check_gemini_node(&cleaned)?;
                prop_assert!(
                    written <= 4 * spent_values + 4,
                    "{written} values written for {spent_values} spent"
                );
                // The same schema with more room comes out the same.
                let mut larger = Budget::new(values * 4, bytes * 4);
                let again = json_schema::for_gemini(&top, &mut larger).unwrap();
                prop_assert_eq!(again, cleaned);
                prop_assert_eq!(larger.spent(), budget.spent());
            }
            Err(over) => {
                prop_assert_eq!((over.values, over.bytes), (values, bytes));
                // Once spent, the budget stays spent for the request's next schema.
                let empty = json!({});
                let next = json_schema::for_gemini(&empty, &mut budget);
                prop_assert!(next.is_err());
            }
        }
    }
}

#[test]
fn the_densest_reference_graph_stops_at_the_default_budget() {
    // Every definition uses every definition (itself included) in each of 12 properties.
    let defs: Map<String, Value> = (0..12)
        .map(|d| {
            let properties: Map<String, Value> = (0..12)
                .map(|p| (format!("p{p}"), json!({"$ref": format!("#/$defs/D{p}")})))
                .collect();
            (
                format!("D{d}"),
                json!({"type": "object", "properties": properties}),
            )
        })
        .collect();
    let schema = json!({"allOf": [{"$ref": "#/$defs/D0"}, {"$ref": "#/$defs/D1"}], "$defs": defs});
    let mut budget = Budget::default();
    assert!(json_schema::for_gemini(&schema, &mut budget).is_err());
    assert_eq!(
        budget.spent().0,
        json_schema::MAX_SCHEMA_VALUES,
        "stopped exactly where the budget ran out"
    );
}

// ---------------------------------------------------------------------------------------------
// SSE.

/// The `data` of every event the WHATWG "event stream interpretation" dispatches from the whole
/// stream: lines end in CRLF, LF or CR; an empty line dispatches the data buffer when it is
/// not empty; `data` fields append their value and a LF; an unterminated last line and an
/// undispatched last event are discarded.
fn reference_events(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < stream.len() {
        match stream[at] {
            b'\r' => {
                lines.push(&stream[start..at]);
                at += if stream.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = at;
            }
            b'\n' => {
                lines.push(&stream[start..at]);
                at += 1;
                start = at;
            }
            _ => at += 1,
        }
    }
    let mut events = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut has_data = false;
    for line in lines {
        if line.is_empty() {
            if has_data {
                data.pop();
                events.push(std::mem::take(&mut data));
            }
            data.clear();
            has_data = false;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            data.extend_from_slice(value);
            data.push(b'\n');
            has_data = true;
        }
    }
    events
}

/// The `data` of the events the splitter completes when `stream` arrives cut at `cuts`
/// (the unterminated tail from `finish` is left out, as the spec discards it); checks that
/// the events and the tail add up to the stream and that every byte was scanned once.
fn split_data(stream: &[u8], cuts: &[usize]) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(0);
    bounds.push(stream.len());
    bounds.sort_unstable();
    bounds.dedup();
    let mut splitter = EventSplitter::default();
    let mut events = Vec::new();
    for pair in bounds.windows(2) {
        events.extend(
            splitter
                .push(Bytes::copy_from_slice(&stream[pair[0]..pair[1]]))
                .unwrap(),
        );
    }
    prop_assert_eq!(splitter.bytes_scanned(), stream.len() as u64);
    let tail = splitter.finish();
    let rebuilt: Vec<u8> = events
        .iter()
        .chain(tail.iter())
        .flat_map(|e| e.iter().copied())
        .collect();
    prop_assert_eq!(&rebuilt[..], stream, "the pieces add up to the stream");
    Ok(events
        .iter()
        .filter_map(|event| sse::data(event).map(|d| d.into_owned()))
        .collect())
}

/// Bytes heavy in what SSE parsing turns on.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => Just(b"data: ".to_vec()),
        2 => Just(b"data:".to_vec()),
        1 => Just(b"data".to_vec()),
        1 => Just(b"event: x".to_vec()),
        1 => Just(b": comment".to_vec()),
        1 => Just(b"id: 7".to_vec()),
        6 => Just(b"\n".to_vec()),
        4 => Just(b"\r".to_vec()),
        4 => Just(b"\r\n".to_vec()),
        4 => "[a-z{}\":, ]{0,8}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..6),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// A well-formed stream of `data` events with LF line ends, for rewriting with CR and CRLF.
fn lf_stream() -> impl Strategy<Value = Vec<u8>> {
    let event = proptest::collection::vec("[a-z0-9{}\":, ]{0,12}", 1..4);
    proptest::collection::vec(event, 0..8).prop_map(|events| {
        let mut out = Vec::new();
        for lines in events {
            out.extend_from_slice(b"event: e\n");
            for line in lines {
                out.extend_from_slice(format!("data: {line}\n").as_bytes());
            }
            out.push(b'\n');
        }
        out
    })
}

fn with_line_ends(stream: &[u8], end: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &byte in stream {
        if byte == b'\n' {
            out.extend_from_slice(end);
        } else {
            out.push(byte);
        }
    }
    out
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_chunking_splits_as_the_spec_reads_the_whole(
        stream in sse_bytes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        bytewise in any::<bool>(),
    ) {
        let expected = reference_events(&stream);
        prop_assert_eq!(&split_data(&stream, &[])?, &expected, "whole");
        let cuts: Vec<usize> = if bytewise { (0..stream.len()).collect() } else { cuts };
        prop_assert_eq!(&split_data(&stream, &cuts)?, &expected, "cut at {:?}", cuts);
    }

    #[test]
    fn cr_lf_and_crlf_line_ends_read_the_same(
        stream in lf_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let expected = split_data(&stream, &[])?;
        prop_assert_eq!(&expected, &reference_events(&stream));
        for end in [&b"\r"[..], b"\r\n"] {
            let rewritten = with_line_ends(&stream, end);
            prop_assert_eq!(&split_data(&rewritten, &cuts)?, &expected);
        }
    }

    #[test]
    fn an_event_past_the_cap_is_refused_however_it_is_cut(
        size in 1usize..600,
        cap in 64usize..256,
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut stream = b"data: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', size));
        stream.extend_from_slice(b"\n\n");
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        bounds.extend([0, stream.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        let mut splitter = EventSplitter::new(cap);
        let mut refused = false;
        let mut events = 0;
        for pair in bounds.windows(2) {
            match splitter.push(Bytes::copy_from_slice(&stream[pair[0]..pair[1]])) {
                Ok(done) => events += done.len(),
                Err(error) => {
                    prop_assert_eq!(error.limit, cap);
                    refused = true;
                    break;
                }
            }
        }
        prop_assert_eq!(refused, stream.len() > cap);
        prop_assert_eq!(events, usize::from(!refused));
    }
}

// ---------------------------------------------------------------------------------------------
// URL path segments.

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    out
}

fn model_name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./%?#:a-z0-9eE2-]{0,12}",
        proptest::sample::select(vec![
            "..",
            ".",
            "../",
            "%2e%2e",
            "%2E%2E/",
            "?key=x",
            "#",
            "/",
            "models/..",
            "a/../b",
            "gemini-2.5-flash",
            "models/gemini-2.5-flash",
            "x:streamGenerateContent",
            "",
        ])
        .prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn a_segment_is_one_segment_and_decodes_back(name in model_name()) {
        match PathSegment::new(&name) {
            Ok(segment) => {
                let text = segment.as_str();
                prop_assert!(text != "." && text != "..");
                let bytes = text.as_bytes();
                for (at, &byte) in bytes.iter().enumerate() {
                    prop_assert!(
                        byte.is_ascii_alphanumeric() || b"-._~%".contains(&byte),
                        "{:?} in {}", char::from(byte), text
                    );
                    if byte == b'%' {
                        let escape = bytes.get(at + 1..at + 3);
                        prop_assert!(
                            escape.is_some_and(|h| h.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())),
                            "a bare % in {}", text
                        );
                    }
                }
                prop_assert_eq!(percent_decode(text), name.as_bytes());
                // The Gemini URL the gateway builds around it keeps one path segment for it.
                let url = format!("http://h/v1beta/models/{text}:generateContent");
                let parsed = reqwest::Url::parse(&url).unwrap();
                let segments: Vec<&str> = parsed.path_segments().unwrap().collect();
                prop_assert_eq!(segments.len(), 3, "{}", url);
                prop_assert_eq!(parsed.query(), None);
                prop_assert_eq!(parsed.fragment(), None);
            }
            Err(error) => {
                let expected = if name.is_empty() {
                    SegmentError::Empty
                } else if name.len() > flexiproxy_gateway::proxy::path_segment::MAX_SEGMENT_BYTES {
                    SegmentError::TooLong
                } else if name == "." || name == ".." {
                    SegmentError::DotSegment
                } else {
                    SegmentError::Control
                };
                prop_assert_eq!(error, expected);
                if expected == SegmentError::Control {
                    prop_assert!(name.chars().any(char::is_control));
                }
            }
        }
    }
}
