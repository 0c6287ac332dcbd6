//! Requests both ways: how a Gemini client's parts, tools and config decode, what a request
//! from another protocol becomes once encoded for Gemini (and what it must not carry there),
//! and which bodies are refused with a typed error.

use serde_json::Map;

use super::*;
use crate::canonical::{
    Effort, Image, Message, Part, ReasoningConfig, ResponseFormat, Role, Tool, ToolChoice,
};
use crate::gemini::request_encode::parameters;
use crate::gemini::wire::gemini_issued;
use crate::json_schema;

#[test]
fn requests_decode_parts_tools_and_config() {
    let request = decode(&json!({
        "system_instruction": {"parts": [{"text": "be brief"}, {"text": "use tools"}]},
        "contents": [
            {"parts": [
                {"text": "what is this?"},
                {"inline_data": {"mime_type": "image/png", "data": "iVBOR"}},
                {"fileData": {"mimeType": "application/pdf", "fileUri": "files/abc"}},
                {"fileData": {"fileUri": "https://x/y.jpg"}}
            ]},
            {"role": "model", "parts": [
                {"text": "plan", "thought": true, "thoughtSignature": "sig-a"},
                {"functionCall": {"name": "read", "args": {"path": "a"}}, "thoughtSignature": "sig-b"},
                {"functionCall": {"id": "g1", "name": "read", "args": {"path": "b"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "g1", "name": "read", "response": {"output": "B"}}},
                {"functionResponse": {"id": "client-made", "name": "read", "response": {"error": "no such file"}}}
            ]}
        ],
        "tools": [
            {"functionDeclarations": [
                {"name": "read", "description": "Read", "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING"}}, "required": ["path"]}},
                {"name": "now"}
            ]},
            {"googleSearch": {}}
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read"]}},
        "generationConfig": {
            "maxOutputTokens": 100, "temperature": 0.5, "top_p": 0.9, "stopSequences": ["END"],
            "topK": 40, "candidateCount": 1,
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    }));
    assert_eq!(request.model, "");
    assert_eq!(request.system, vec!["be brief", "use tools"]);
    assert_eq!(
        (request.max_tokens, request.temperature, request.top_p),
        (Some(100), Some(0.5), Some(0.9))
    );
    assert_eq!(request.stop, vec!["END"]);
    assert_eq!(request.reasoning.unwrap().budget_tokens, Some(2048));
    assert_eq!(request.tool_choice, Some(ToolChoice::Named("read".into())));
    assert_eq!(
        request.tools[0].parameters,
        json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    );
    assert_eq!(request.tools[1].parameters["type"], "object");
    assert_eq!(request.native_tools, vec![json!({"googleSearch": {}})]);
    assert_eq!(
        request.extra["generationConfig"],
        json!({"topK": 40, "candidateCount": 1})
    );
    assert!(request.extra.contains_key("safetySettings"));

    let user = &request.messages[0].content;
    assert_eq!(user[1], Part::base64_image("image/png", "iVBOR"));
    assert!(matches!(&user[2], Part::Unknown(v) if v["fileData"]["fileUri"] == "files/abc"));
    assert_eq!(
        user[3],
        Part::Image(Image::Url {
            url: "https://x/y.jpg".into()
        })
    );

    let model = &request.messages[1].content;
    assert!(matches!(&model[0], Part::Reasoning(r)
        if r.text == "plan" && r.signature.as_deref() == Some("sig-a") && r.issuer == Some(Protocol::Gemini)));
    // The call's signature rides before it, as reasoning without text.
    assert!(matches!(&model[1], Part::Reasoning(r)
        if r.text.is_empty() && r.encrypted.as_deref() == Some("sig-b")));
    assert_eq!(
        model[2],
        Part::tool_call("gemini_fc_0", "read", r#"{"path":"a"}"#)
    );
    assert!(matches!(&model[3], Part::ToolCall { id, .. } if id == "g1"));

    // By id first; a response whose id matches no call answers the earliest open call of
    // its name (Gemini CLI numbers responses itself).
    let results = &request.messages[2].content;
    assert_eq!(results[0], Part::tool_result("g1", "B", false));
    assert_eq!(
        results[1],
        Part::tool_result("gemini_fc_0", "no such file", true)
    );
}

#[test]
fn thinking_config_maps_budgets_levels_and_hidden_thoughts() {
    let reasoning = |config: Value| {
        decode(&json!({"contents": [], "generationConfig": {"thinkingConfig": config}}))
    };
    assert!(
        reasoning(json!({"thinkingBudget": 0}))
            .reasoning
            .unwrap()
            .is_off()
    );
    assert_eq!(
        reasoning(json!({"thinkingBudget": -1})).reasoning,
        Some(ReasoningConfig::default())
    );
    assert_eq!(
        reasoning(json!({"thinkingLevel": "low"}))
            .reasoning
            .unwrap()
            .effort,
        Some(Effort::Low)
    );
    let hidden = reasoning(json!({"thinkingBudget": "512", "includeThoughts": false}));
    assert_eq!(hidden.reasoning.unwrap().budget_tokens, Some(512));
    assert_eq!(
        hidden.extra["generationConfig"],
        json!({"thinkingConfig": {"includeThoughts": false}})
    );
    // Back to Gemini, the client's own setting wins over "show the thoughts".
    assert_eq!(
        encode(&hidden)["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 512, "includeThoughts": false})
    );
    let level = reasoning(json!({"thinkingLevel": "HIGH", "includeThoughts": true}));
    assert_eq!(
        encode(&level)["generationConfig"]["thinkingConfig"],
        json!({"thinkingLevel": "HIGH", "includeThoughts": true})
    );
    assert_eq!(reasoning(json!({})).reasoning, None);
}

#[test]
fn a_gemini_request_survives_the_round_trip() {
    let original = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [
                {"text": "t", "thought": true, "thoughtSignature": "sig1"},
                {"functionCall": {"id": "abc", "name": "f", "args": {"a": 1}}, "thoughtSignature": "sig2"},
                {"functionCall": {"name": "g", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "abc", "name": "f", "response": {"output": "ok"}}},
                {"functionResponse": {"name": "g", "response": {"error": "bad"}}}
            ]},
            {"role": "model", "parts": [{"text": "done", "thoughtSignature": "sig3"}, {"executableCode": {"language": "PYTHON", "code": "1"}}]}
        ],
        "systemInstruction": {"parts": [{"text": "s"}]},
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}, {"name": "g"}]}, {"codeExecution": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}, "retrievalConfig": {"languageCode": "en"}},
        "generationConfig": {"maxOutputTokens": 10, "seed": 7, "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        "cachedContent": "cachedContents/x"
    });
    let back = encode(&decode(&original));
    assert_eq!(back, original);
}

#[test]
fn foreign_requests_get_gemini_shapes_and_no_foreign_state() {
    let request = Request {
        model: "gemini-2.5-pro".into(),
        system: vec!["sys".into(), ResponseFormat::JsonObject.instruction()],
        messages: vec![
            Message {
                role: Role::User,
                content: vec![
                    Part::text("look"),
                    Part::Image(Image::Url {
                        url: "data:image/jpeg;base64,/9j/".into(),
                    }),
                    Part::Image(Image::Url {
                        url: "https://x/cat.webp?s=1".into(),
                    }),
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::signed_reasoning("hm", "anthropic-sig", Protocol::AnthropicMessages),
                    Part::tool_call("toolu_1", "read", "not json"),
                    Part::tool_call("toolu_2", "list", r#"{"dir":"/"}"#),
                ],
            },
            Message {
                role: Role::Tool,
                content: vec![Part::tool_result("toolu_1", "file", false)],
            },
            Message {
                role: Role::User,
                content: vec![
                    Part::text("and?"),
                    Part::tool_result("toolu_2", "denied", true),
                ],
            },
        ],
        tools: vec![
            Tool {
                name: "read".into(),
                description: Some("Read a file".into()),
                parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": false, "$schema": "x"}),
            },
            Tool {
                name: "list".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {}}),
            },
        ],
        native_tools: vec![json!({"type": "web_search_20250305"})],
        tool_choice: Some(ToolChoice::Required),
        parallel_tool_calls: Some(false),
        max_tokens: Some(1000),
        reasoning: Some(ReasoningConfig {
            effort: Some(Effort::High),
            budget_tokens: None,
        }),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "r".into(),
            schema: json!({"type": "object", "additionalProperties": false}),
            strict: Some(true),
        }),
        extra: Map::from_iter([("metadata".to_owned(), json!({"user_id": "u"}))]),
        origin: Some(Protocol::AnthropicMessages),
        ..Request::default()
    };
    let out = encode(&request);
    assert_eq!(
        out["contents"],
        json!([
            {"role": "user", "parts": [
                {"text": "look"},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://x/cat.webp?s=1"}}
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "read", "args": {}}, "thoughtSignature": SKIP_SIGNATURE},
                {"functionCall": {"name": "list", "args": {"dir": "/"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "read", "response": {"output": "file"}}},
                {"functionResponse": {"name": "list", "response": {"error": "denied"}}},
                {"text": "and?"}
            ]}
        ])
    );
    assert_eq!(
        out["tools"],
        json!([{"functionDeclarations": [
            {"name": "read", "description": "Read a file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
            {"name": "list"}
        ]}])
    );
    assert_eq!(
        out["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    assert_eq!(
        out["generationConfig"],
        json!({
            "maxOutputTokens": 1000,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "additionalProperties": false},
            "thinkingConfig": {"thinkingBudget": MAX_THINKING_BUDGET, "includeThoughts": true}
        })
    );
    assert_eq!(out["systemInstruction"]["parts"][0], json!({"text": "sys"}));
    assert!(out.get("metadata").is_none() && out.get("model").is_none());
    assert!(!out.to_string().contains("anthropic-sig"));

    let mut off = request;
    off.reasoning = Some(ReasoningConfig {
        effort: Some(Effort::None),
        budget_tokens: None,
    });
    off.tool_choice = Some(ToolChoice::Named("read".into()));
    let out = encode(&off);
    assert_eq!(
        out["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 0})
    );
    assert_eq!(
        out["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["read"]})
    );
}

#[test]
fn tool_parameters_are_one_object_or_none() {
    let union = json!({"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "string"}}, "required": ["kind"]},
        {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]}
    ]});
    assert_eq!(
        parameters(&union, &mut json_schema::Budget::default()).unwrap(),
        Some(json!({
            "type": "object",
            "properties": {"kind": {"type": "string", "enum": ["a"]}, "x": {"type": "string"}},
            "required": ["kind"]
        }))
    );
    assert_eq!(
        parameters(&json!({}), &mut json_schema::Budget::default()).unwrap(),
        None
    );
    assert_eq!(
        parameters(
            &json!({"type": "object", "properties": {}}),
            &mut json_schema::Budget::default()
        )
        .unwrap(),
        None
    );
    assert_eq!(
        parameters(
            &json!({"type": "object", "additionalProperties": {"type": "string"}}),
            &mut json_schema::Budget::default()
        )
        .unwrap(),
        None
    );
}

#[test]
fn ids_sent_to_gemini_are_only_ones_it_may_have_made() {
    assert!(gemini_issued("abc123"));
    assert!(gemini_issued("read_file-1755899286321-24a24f35db1c2"));
    for foreign in [
        "",
        "gemini_fc_0",
        "toolu_01A",
        "call_abc",
        "fc_123",
        "functions.read:0",
    ] {
        assert!(!gemini_issued(foreign), "{foreign}");
    }
}

#[test]
fn malformed_requests_are_typed_errors() {
    for body in [
        &b"{"[..],
        b"[]",
        br#"{"contents":[{"role":"robot","parts":[]}]}"#,
        br#"{"contents":[{"parts":[{"functionCall":{"args":{}}}]}]}"#,
        br#"{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png"}}]}]}"#,
        br#"{"contents":[],"toolConfig":{"functionCallingConfig":{"mode":"SOMETIMES"}}}"#,
        br#"{"contents":[],"generationConfig":{"maxOutputTokens":"many"}}"#,
        br#"{"contents":[],"generationConfig":{"thinkingConfig":3}}"#,
        br#"{"contents":[],"tools":[{"functionDeclarations":[{"description":"x"}]}]}"#,
    ] {
        assert!(
            request_to_canonical(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
