//! Unit tests of schema cleaning: what Gemini is sent (known keywords only, references
//! inlined with cycles cut, nullability and unions rewritten), the budget that stops a schema
//! from expanding without bound (checked against hostile schemas and real tool sets), the
//! object Anthropic wants at the top, and Gemini's OpenAPI-style schemas read back as JSON
//! Schema. Encoders' use of these functions is tested with each protocol.

use super::*;

fn gemini(schema: &Value) -> Value {
    for_gemini(schema, &mut Budget::default()).unwrap()
}

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
        gemini(&schema),
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
    let out = gemini(&schema);
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
        gemini(&looped)["properties"]["next"]["properties"]["next"],
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
    let out = gemini(&schema);
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
    let out = gemini(&deep);
    assert_eq!(out["type"], "object");
    for junk in [
        json!(true),
        json!(null),
        json!([1]),
        json!({"$ref": 5}),
        json!({"items": 3}),
    ] {
        let _ = gemini(&junk);
        assert_eq!(for_anthropic(&junk)["type"], "object");
    }
}

/// `levels` definitions, each with `fan_out` properties that all use the next one: a few
/// KB that inline to `fan_out ^ levels` copies (10^12 for 10 × 12).
pub(crate) fn exploding(fan_out: usize, levels: usize) -> Value {
    let mut defs = Map::new();
    for level in 0..levels {
        let mut properties = Map::new();
        for p in 0..fan_out {
            let target = if level + 1 < levels {
                json!({"$ref": format!("#/$defs/L{}", level + 1), "description": "next"})
            } else {
                json!({"type": "string"})
            };
            properties.insert(format!("p{p}"), target);
        }
        defs.insert(
            format!("L{level}"),
            json!({"type": "object", "properties": properties}),
        );
    }
    json!({"type": "object", "properties": {"root": {"$ref": "#/$defs/L0"}}, "$defs": defs})
}

#[test]
fn reference_fan_out_stops_at_the_budget() {
    let schema = exploding(10, 12);
    assert!(schema.to_string().len() < 8192, "a few KB of input");
    let mut budget = Budget::default();
    let started = std::time::Instant::now();
    let error = for_gemini(&schema, &mut budget).unwrap_err();
    assert_eq!(
        error,
        OverBudget {
            values: MAX_SCHEMA_VALUES,
            bytes: MAX_SCHEMA_TEXT_BYTES
        }
    );
    // Generous for a debug build on a busy machine; unbounded, this never returns.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // The budget is the request's: the next tool finds nothing left.
    assert!(for_gemini(&json!({"type": "string"}), &mut budget).is_err());
    // A fan-out that fits is inlined in full.
    let small = gemini(&exploding(3, 4));
    assert_eq!(
        small["properties"]["root"]["properties"]["p2"]["properties"]["p0"]["properties"]["p1"]["properties"]
            ["p2"],
        json!({"type": "string"})
    );
}

#[test]
fn type_lists_and_text_are_paid_for_too() {
    // Every level a list of all types with properties: each type a branch that cleans the
    // properties again, 6^depth without a single `$ref`.
    let mut deep = json!({"type": "string"});
    for _ in 0..30 {
        deep = json!({
            "type": ["object", "string", "number", "integer", "boolean", "array", "null"],
            "properties": {"a": deep}
        });
    }
    assert!(for_gemini(&deep, &mut Budget::default()).is_err());

    // Few values, much text: a long description at every use of a definition.
    let long = "d".repeat(1 << 20);
    let mut properties = Map::new();
    for p in 0..64 {
        properties.insert(format!("p{p}"), json!({"$ref": "#/$defs/Long"}));
    }
    let schema = json!({"type": "object", "properties": properties,
        "$defs": {"Long": {"type": "string", "description": long}}});
    let mut budget = Budget::default();
    assert!(for_gemini(&schema, &mut budget).is_err());
    assert_eq!(budget.spent().1, MAX_SCHEMA_TEXT_BYTES);
}

/// The real tool sets of Claude Code and Gemini CLI (captured from their requests,
/// descriptions blanked to the same length) and a generated schema with shared `$defs`
/// spend a small part of the budget: `cargo test -p flexiproxy-gateway --lib
/// real_tool_sets -- --nocapture` prints the figures.
#[test]
fn real_tool_sets_fit_with_a_wide_margin() {
    let fixture = |text: &str| -> Vec<Value> {
        let tools: Vec<Value> = serde_json::from_str(text).unwrap();
        tools
            .into_iter()
            .map(|tool| {
                tool.get("input_schema")
                    .or_else(|| tool.get("parameters"))
                    .cloned()
                    .unwrap()
            })
            .collect()
    };
    let claude = fixture(include_str!(
        "../../../../tests/fixtures/schemas/claude_code_tools.json"
    ));
    let gemini_cli = fixture(include_str!(
        "../../../../tests/fixtures/schemas/gemini_cli_tools.json"
    ));
    // A pydantic-style schema: 24 models, each with 8 fields, 4 of them using the next
    // two models (a DAG with sharing, four levels deep).
    let mut defs = Map::new();
    for m in 0..24 {
        let mut fields = Map::new();
        for f in 0..8 {
            let field = if f < 4 && m % 6 < 4 {
                json!({"$ref": format!("#/$defs/M{}", m + 1 + f % 2), "description": "a nested model field"})
            } else {
                json!({"anyOf": [{"type": "string", "maxLength": 80}, {"type": "null"}],
                    "default": null, "title": format!("Field {f}")})
            };
            fields.insert(format!("field_{f}"), field);
        }
        defs.insert(
            format!("M{m}"),
            json!({"type": "object", "title": format!("M{m}"),
            "properties": fields, "required": ["field_0", "field_5"]}),
        );
    }
    defs.insert("M24".into(), json!({"type": "string"}));
    defs.insert("M25".into(), json!({"type": "integer"}));
    let generated = vec![json!({"$ref": "#/$defs/M0", "$defs": defs})];

    for (name, schemas) in [
        ("Claude Code", claude),
        ("Gemini CLI", gemini_cli),
        ("generated $defs", generated),
    ] {
        let input: usize = schemas.iter().map(|s| s.to_string().len()).sum();
        let mut budget = Budget::default();
        for schema in &schemas {
            for_gemini(&object_at_top(schema), &mut budget).unwrap();
        }
        let (values, bytes) = budget.spent();
        println!(
            "{name}: {} schemas, {input} bytes in, {values} values and {bytes} bytes of text spent",
            schemas.len()
        );
        // The agents' own tool sets with a margin of over 100; a schema built to share
        // and nest models heavily with one of over 10.
        let margin = if name == "generated $defs" { 10 } else { 100 };
        assert!(
            values * margin < MAX_SCHEMA_VALUES,
            "{name}: {values} values"
        );
        assert!(
            bytes * margin < MAX_SCHEMA_TEXT_BYTES,
            "{name}: {bytes} bytes"
        );
    }
}

#[test]
fn wide_unions_and_required_lists_cost_their_size_not_its_square() {
    // 40k branches naming one definition of 40k required properties: read once.
    let names: Vec<String> = (0..40_000).map(|i| format!("n{i}")).collect();
    let properties: Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), json!({"type": "string"})))
        .collect();
    let branches: Vec<Value> = (0..40_000)
        .map(|_| json!({"$ref": "#/$defs/Big"}))
        .collect();
    for key in ["anyOf", "allOf"] {
        let schema = json!({key: branches, "required": names,
            "$defs": {"Big": {"type": "object", "properties": properties, "required": names}}});
        let started = std::time::Instant::now();
        let out = object_at_top(&schema);
        assert_eq!(out["required"].as_array().unwrap().len(), 40_000);
        assert_eq!(out["properties"].as_object().unwrap().len(), 40_000);
        // Quadratic, this is 1.6·10^9 comparisons per list: minutes in a debug build.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{key}"
        );
    }
    // The same through the Gemini cleaner's `allOf` merge: the 40k references to one
    // target of 4k properties are merged once, within the budget (read 40k times, they
    // would spend it a thousand times over).
    let names = &names[..4_000];
    let properties: Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), json!({"type": "string"})))
        .collect();
    let schema = json!({"type": "object", "properties": {"x": {"allOf": branches}},
        "$defs": {"Big": {"type": "object", "properties": properties, "required": names}}});
    let out = gemini(&schema);
    assert_eq!(
        out["properties"]["x"]["required"].as_array().unwrap().len(),
        4_000
    );
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
    let back = gemini(&from_gemini(&schema));
    assert_eq!(back["properties"]["a"]["nullable"], true);
    assert_eq!(back["properties"]["b"]["minItems"], 1);
}
