//! Golden fixtures for protocol translation through the canonical model: one table of rows
//! `(client protocol, provider protocol, case, fixture in, fixture out)` and one runner.
//!
//! A request goes from the client's protocol to the provider's; an answer (whole or streamed)
//! from the provider's to the client's. The runner translates each row's input through the
//! crate's generic API (`codec::decode_request` / `encode_request`, `decode_response` /
//! `encode_response`, `StreamDecoder` / `StreamEncoder` with the client's `ClientView`), never
//! a protocol's own function, so adding a protocol is adding rows. Requests and responses are
//! compared as pretty JSON; streams byte for byte, since SDKs parse the framing. Besides the
//! comparison each row runs a check of the behaviour that matters (ids, indices, usage, finish
//! reasons, signatures, schema cleaning) so a wrong golden file cannot hide a regression.
//!
//! The fixtures are `<name>.in.*` (what one side sends) and `<name>.out.*` (what the other side
//! must receive) under `tests/fixtures/translation/`. Every row runs even when one fails, and
//! the failure names each broken row. Malformed input is in `malformed_input.rs`.
//!
//! To regenerate the `.out` files after an intended change, run with `FLEXIPROXY_BLESS=1` and
//! review the diff.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test fixtures and the checks run on them (plain functions, not `#[test]`s): a \
              failed unwrap or a panic is a failed row, with its location"
)]

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::{
    Effort, FinishReason, Part, ProofKind, Reasoning, Request, Response, Role, StreamEvent,
    TokenUsage, ToolChoice, tag_proof, untag_proof,
};
use flexiproxy_protocol::codec::{self, ClientView};
use flexiproxy_protocol::gemini::{self, Framing};
use flexiproxy_protocol::{openai_chat, openai_responses};
use serde_json::{Value, json};

#[macro_use]
mod golden;

use golden::{
    CREATED, Fixture, canonical_stream, encode_stream, golden, of_type, pretty, responses_events,
};

const CHAT: Protocol = Protocol::OpenAiChat;
const RESPONSES: Protocol = Protocol::OpenAiResponses;
const ANTHROPIC: Protocol = Protocol::AnthropicMessages;
const GEMINI: Protocol = Protocol::Gemini;

// ---------------------------------------------------------------------------------------------
// The table.

/// What a row translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// A client's request, encoded for the provider.
    Request,
    /// A provider's whole answer, encoded for the client.
    Response,
    /// A provider's stream, encoded as the client's stream.
    Stream,
}

/// One golden translation and the check of what it must keep.
struct Row {
    client: Protocol,
    provider: Protocol,
    case: Case,
    input: Fixture,
    golden: Fixture,
    /// A request: the model the route sends upstream instead of the client's. An answer: the
    /// model the client asked for (its view's).
    model: Option<&'static str>,
    /// A request the client asked to stream outside its body (Gemini names it in the URL).
    streamed: bool,
    /// A Chat Completions client that asked for the usage chunk.
    include_usage: bool,
    /// A Gemini client's stream framing.
    framing: Framing,
    /// A Responses client's freeform tools.
    custom_tools: &'static [&'static str],
    /// The provider's stream signatures are tagged with its protocol before the client's
    /// encoder sees them, as the gateway's relay does for a client of another protocol.
    tag_signatures: bool,
    check: fn(&Translated),
}

/// A row with the defaults: the client's own model, its body's streaming, Chat clients
/// without the usage chunk, Gemini clients on SSE, no custom tools, signatures as decoded.
fn row(
    client: Protocol,
    provider: Protocol,
    case: Case,
    input: Fixture,
    golden: Fixture,
    check: fn(&Translated),
) -> Row {
    Row {
        client,
        provider,
        case,
        input,
        golden,
        model: None,
        streamed: false,
        include_usage: false,
        framing: Framing::Sse,
        custom_tools: &[],
        tag_signatures: false,
        check,
    }
}

impl Row {
    fn model(self, model: &'static str) -> Self {
        Self {
            model: Some(model),
            ..self
        }
    }

    fn streamed(self) -> Self {
        Self {
            streamed: true,
            ..self
        }
    }

    fn include_usage(self) -> Self {
        Self {
            include_usage: true,
            ..self
        }
    }

    fn framing(self, framing: Framing) -> Self {
        Self { framing, ..self }
    }

    fn custom_tools(self, custom_tools: &'static [&'static str]) -> Self {
        Self {
            custom_tools,
            ..self
        }
    }

    fn tag_signatures(self) -> Self {
        Self {
            tag_signatures: true,
            ..self
        }
    }

    fn view(&self) -> ClientView {
        ClientView {
            model: self.model.unwrap_or_default().to_owned(),
            created: CREATED,
            include_usage: self.include_usage,
            gemini_framing: self.framing,
            custom_tools: self.custom_tools.iter().map(|&t| t.to_owned()).collect(),
        }
    }
}

/// Names the row the way a developer looks for the translation that broke.
impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (client, provider) = (self.client, self.provider);
        match self.case {
            Case::Request => write!(f, "request  {client} client -> {provider} provider")?,
            Case::Response => write!(f, "response {provider} provider -> {client} client")?,
            Case::Stream => write!(f, "stream   {provider} provider -> {client} client")?,
        }
        write!(f, " ({} -> {})", self.input.0, self.golden.0)
    }
}

fn rows() -> Vec<Row> {
    use Case::{Request, Response, Stream};
    vec![
        // Requests, client -> provider.
        row(
            ANTHROPIC,
            CHAT,
            Request,
            fixture!("anthropic_to_openai_request.in.json"),
            fixture!("anthropic_to_openai_request.out.json"),
            anthropic_request_to_openai,
        ),
        row(
            CHAT,
            ANTHROPIC,
            Request,
            fixture!("openai_to_anthropic_request.in.json"),
            fixture!("openai_to_anthropic_request.out.json"),
            openai_request_to_anthropic,
        ),
        row(
            GEMINI,
            GEMINI,
            Request,
            fixture!("gemini_request.in.json"),
            fixture!("gemini_request.out.json"),
            gemini_request_to_gemini,
        ),
        row(
            GEMINI,
            ANTHROPIC,
            Request,
            fixture!("gemini_request.in.json"),
            fixture!("gemini_to_anthropic_request.out.json"),
            gemini_request_to_anthropic,
        )
        .model("claude-sonnet-4-5")
        .streamed(),
        row(
            GEMINI,
            CHAT,
            Request,
            fixture!("gemini_request.in.json"),
            fixture!("gemini_to_openai_request.out.json"),
            gemini_request_to_openai,
        )
        .model("gpt-4.1")
        .streamed(),
        row(
            ANTHROPIC,
            GEMINI,
            Request,
            fixture!("anthropic_to_openai_request.in.json"),
            fixture!("gemini_from_anthropic_request.out.json"),
            anthropic_request_to_gemini,
        ),
        row(
            CHAT,
            GEMINI,
            Request,
            fixture!("openai_to_anthropic_request.in.json"),
            fixture!("gemini_from_openai_request.out.json"),
            openai_request_to_gemini,
        ),
        row(
            RESPONSES,
            CHAT,
            Request,
            fixture!("responses_client_request.in.json"),
            fixture!("responses_client_request_to_openai.out.json"),
            responses_client_request_to_chat,
        ),
        row(
            RESPONSES,
            ANTHROPIC,
            Request,
            fixture!("responses_client_request.in.json"),
            fixture!("responses_client_request_to_anthropic.out.json"),
            responses_client_request_to_anthropic,
        ),
        row(
            RESPONSES,
            RESPONSES,
            Request,
            fixture!("responses_client_request.in.json"),
            fixture!("responses_client_request_to_responses.out.json"),
            responses_client_request_to_a_responses_provider_keeps_what_it_sent,
        ),
        row(
            ANTHROPIC,
            RESPONSES,
            Request,
            fixture!("anthropic_to_openai_request.in.json"),
            fixture!("responses_from_anthropic_request.out.json"),
            anthropic_request_to_a_responses_provider,
        ),
        row(
            CHAT,
            RESPONSES,
            Request,
            fixture!("openai_to_anthropic_request.in.json"),
            fixture!("responses_from_openai_request.out.json"),
            openai_request_to_a_responses_provider,
        ),
        // Streams, provider -> client.
        row(
            ANTHROPIC,
            CHAT,
            Stream,
            fixture!("openai_stream_to_anthropic_stream.in.txt"),
            fixture!("openai_stream_to_anthropic_stream.out.txt"),
            openai_stream_to_anthropic_stream,
        )
        .model("claude-sonnet-4-5"),
        row(
            CHAT,
            ANTHROPIC,
            Stream,
            fixture!("anthropic_stream_to_openai_stream.in.txt"),
            fixture!("anthropic_stream_to_openai_stream.out.txt"),
            anthropic_stream_to_openai_stream,
        )
        .model("claude-sonnet-4-5")
        .include_usage(),
        row(
            ANTHROPIC,
            GEMINI,
            Stream,
            fixture!("gemini_stream.in.txt"),
            fixture!("gemini_stream_to_anthropic.out.txt"),
            gemini_stream_to_anthropic,
        )
        .model("gemini-2.5-pro"),
        row(
            CHAT,
            GEMINI,
            Stream,
            fixture!("gemini_stream.in.txt"),
            fixture!("gemini_stream_to_openai.out.txt"),
            gemini_stream_to_openai,
        )
        .model("gemini-2.5-pro")
        .include_usage(),
        row(
            GEMINI,
            ANTHROPIC,
            Stream,
            fixture!("anthropic_stream_to_openai_stream.in.txt"),
            fixture!("gemini_stream_from_anthropic.out.txt"),
            anthropic_stream_to_gemini_as_sse,
        )
        .model("gemini-2.5-pro"),
        row(
            GEMINI,
            ANTHROPIC,
            Stream,
            fixture!("anthropic_stream_to_openai_stream.in.txt"),
            fixture!("gemini_stream_from_anthropic.out.json"),
            anthropic_stream_to_gemini_as_a_json_array,
        )
        .model("gemini-2.5-pro")
        .framing(Framing::JsonArray),
        row(
            GEMINI,
            CHAT,
            Stream,
            fixture!("openai_stream_to_anthropic_stream.in.txt"),
            fixture!("gemini_stream_from_openai.out.txt"),
            openai_stream_to_gemini,
        )
        .model("gemini-2.5-pro"),
        row(
            RESPONSES,
            CHAT,
            Stream,
            fixture!("responses_from_openai_stream.in.txt"),
            fixture!("responses_from_openai_stream.out.txt"),
            a_chat_provider_stream_reaches_a_responses_client_with_its_custom_tool,
        )
        .model("gpt-5-codex")
        .custom_tools(&["apply_patch"]),
        row(
            RESPONSES,
            ANTHROPIC,
            Stream,
            fixture!("anthropic_stream_to_openai_stream.in.txt"),
            fixture!("responses_from_anthropic_stream.out.txt"),
            an_anthropic_stream_reaches_a_responses_client_with_its_signature_kept,
        )
        .model("claude-sonnet-4-5")
        .tag_signatures(),
        row(
            ANTHROPIC,
            RESPONSES,
            Stream,
            fixture!("responses_provider_stream.in.txt"),
            fixture!("responses_stream_to_anthropic_stream.out.txt"),
            a_responses_provider_stream_reaches_an_anthropic_client,
        )
        .model("claude-sonnet-4-5"),
        row(
            CHAT,
            RESPONSES,
            Stream,
            fixture!("responses_provider_stream.in.txt"),
            fixture!("responses_stream_to_openai_stream.out.txt"),
            a_responses_provider_stream_reaches_a_chat_client,
        )
        .model("gpt-5")
        .include_usage(),
        // Whole answers, provider -> client.
        row(
            CHAT,
            ANTHROPIC,
            Response,
            fixture!("anthropic_to_openai_response.in.json"),
            fixture!("anthropic_to_openai_response.out.json"),
            anthropic_response_to_openai,
        ),
        row(
            ANTHROPIC,
            CHAT,
            Response,
            fixture!("openai_to_anthropic_response.in.json"),
            fixture!("openai_to_anthropic_response.out.json"),
            openai_response_to_anthropic,
        ),
        row(
            ANTHROPIC,
            GEMINI,
            Response,
            fixture!("gemini_response.in.json"),
            fixture!("gemini_response_to_anthropic.out.json"),
            gemini_response_to_anthropic,
        ),
        row(
            CHAT,
            GEMINI,
            Response,
            fixture!("gemini_response.in.json"),
            fixture!("gemini_response_to_openai.out.json"),
            gemini_response_to_openai,
        ),
        row(
            GEMINI,
            ANTHROPIC,
            Response,
            fixture!("anthropic_to_openai_response.in.json"),
            fixture!("gemini_response_from_anthropic.out.json"),
            anthropic_response_to_gemini,
        ),
        row(
            ANTHROPIC,
            RESPONSES,
            Response,
            fixture!("responses_provider_response.in.json"),
            fixture!("responses_response_to_anthropic.out.json"),
            a_responses_provider_answer_reaches_an_anthropic_client,
        ),
        row(
            CHAT,
            RESPONSES,
            Response,
            fixture!("responses_provider_response.in.json"),
            fixture!("responses_response_to_openai.out.json"),
            a_responses_provider_answer_reaches_a_chat_client,
        ),
        row(
            RESPONSES,
            ANTHROPIC,
            Response,
            fixture!("anthropic_to_openai_response.in.json"),
            fixture!("responses_from_anthropic_response.out.json"),
            an_anthropic_answer_reaches_a_responses_client,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// The canonical value between the two protocols: what the output was encoded from.
enum Canonical {
    Request(Request),
    Response(Response),
    Stream(Vec<StreamEvent>),
}

/// A row's translation, as its check sees it.
struct Translated<'a> {
    row: &'a Row,
    canonical: Canonical,
    body: Vec<u8>,
}

impl Translated<'_> {
    /// The output as the golden file keeps it.
    fn golden_text(&self) -> String {
        match self.canonical {
            Canonical::Request(_) | Canonical::Response(_) => pretty(&self.body),
            Canonical::Stream(_) => self.text().to_owned(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn input(&self) -> &'static str {
        self.row.input.1
    }

    fn request(&self) -> &Request {
        match &self.canonical {
            Canonical::Request(request) => request,
            _ => panic!("{} translates no request", self.row),
        }
    }

    fn response(&self) -> &Response {
        match &self.canonical {
            Canonical::Response(response) => response,
            _ => panic!("{} translates no whole answer", self.row),
        }
    }

    fn events(&self) -> &[StreamEvent] {
        match &self.canonical {
            Canonical::Stream(events) => events,
            _ => panic!("{} translates no stream", self.row),
        }
    }
}

/// Translates a row's input through the codec: a request from client to provider, an answer
/// from provider to client.
fn translate(row: &Row) -> Translated<'_> {
    let input = row.input.1.as_bytes();
    let (canonical, body) = match row.case {
        Case::Request => {
            let mut request = codec::decode_request(row.client, input).unwrap();
            if let Some(model) = row.model {
                request.model = model.to_owned();
            }
            request.stream |= row.streamed;
            let body = codec::encode_request(row.provider, &request).unwrap();
            (Canonical::Request(request), body)
        }
        Case::Response => {
            let response = codec::decode_response(row.provider, input).unwrap();
            let body = codec::encode_response(row.client, &response, &row.view());
            (Canonical::Response(response), body)
        }
        Case::Stream => {
            let mut events = canonical_stream(row.provider, row.input.1);
            if row.tag_signatures {
                tag_signatures(row.provider, &mut events);
            }
            let body = encode_stream(row.client, &row.view(), &events).into_bytes();
            (Canonical::Stream(events), body)
        }
    };
    Translated {
        row,
        canonical,
        body,
    }
}

/// Tags each signature event with the provider that issued it (`canonical::tag_proof`): a
/// Responses stream's proofs are encrypted reasoning, the others' signatures.
fn tag_signatures(issuer: Protocol, events: &mut [StreamEvent]) {
    let kind = if issuer == RESPONSES {
        ProofKind::Encrypted
    } else {
        ProofKind::Signature
    };
    for event in events {
        if let StreamEvent::ReasoningSignature { signature, .. } = event {
            *signature = tag_proof(issuer, kind, signature);
        }
    }
}

/// Runs `step`, turning a panic into the first line of its message (the panic itself, with
/// any diff, is printed above the report as it happens).
fn attempt(step: impl FnOnce()) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(step)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .map(|message| message.lines().next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// What went wrong in a row: its golden comparison and its check both run, whichever fails.
fn failures(row: &Row) -> Vec<String> {
    let mut translated = None;
    if let Err(e) = attempt(|| translated = Some(translate(row))) {
        return vec![format!("translating: {e}")];
    }
    let Some(translated) = translated else {
        return vec!["translating gave nothing".to_owned()];
    };
    let mut failed = Vec::new();
    if let Err(e) = attempt(|| golden(row.golden, &translated.golden_text())) {
        failed.push(format!("golden: {e}"));
    }
    if let Err(e) = attempt(|| (row.check)(&translated)) {
        failed.push(format!("check: {e}"));
    }
    failed
}

#[test]
fn every_translation_matches_its_golden_file_and_keeps_its_behaviour() {
    let rows = rows();
    let mut report = Vec::new();
    for row in &rows {
        for failure in failures(row) {
            report.push(format!("{row}\n    {failure}"));
        }
    }
    assert!(
        report.is_empty(),
        "{} failure(s) over {} translations:\n{}",
        report.len(),
        rows.len(),
        report.join("\n")
    );
}

/// A golden file no row compares would rot unnoticed; two rows writing one file would fight
/// when blessing.
#[test]
fn every_golden_file_is_compared_by_exactly_one_row() {
    let rows = rows();
    let compared: Vec<&str> = rows.iter().map(|row| row.golden.0).collect();
    let unique: BTreeSet<&str> = compared.iter().copied().collect();
    assert_eq!(unique.len(), compared.len(), "a golden file in two rows");
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/translation"
    );
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains(".out."))
        .map(|name| format!("translation/{name}"))
        .collect();
    let unique: BTreeSet<String> = unique.into_iter().map(str::to_owned).collect();
    assert_eq!(on_disk, unique);
}

// ---------------------------------------------------------------------------------------------
// What the checks share.

/// The arguments a stream gave the tool call at `index`, reassembled.
fn arguments_at(events: &[StreamEvent], index: usize) -> String {
    let mut arguments = String::new();
    for event in events {
        if let StreamEvent::ToolCallArgsDelta { index: i, fragment } = event
            && *i == index
        {
            arguments.push_str(fragment);
        }
    }
    arguments
}

/// The arguments a stream gave the tool call with `id`, reassembled.
fn call_arguments(events: &[StreamEvent], id: &str) -> String {
    let index = events
        .iter()
        .find_map(|e| match e {
            StreamEvent::ToolCallStart { index, id: i, .. } if i == id => Some(*index),
            _ => None,
        })
        .unwrap();
    arguments_at(events, index)
}

fn call_ids(events: &[StreamEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

/// The chunks of a Gemini SSE text.
fn sse_chunks(text: &str) -> Vec<Value> {
    text.split("\r\n\r\n")
        .filter(|event| !event.is_empty())
        .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checks: requests.

fn anthropic_request_to_openai(t: &Translated) {
    let out = t.json();
    let messages = out["messages"].as_array().unwrap();
    // Both system blocks and the system message inside `messages` become one system message.
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("The working directory is /repo.")
    );
    // The signed thinking block is not sent to an OpenAI provider.
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    // Tool-call ids stay as they were; each result is a tool message in call order, before
    // the user's text.
    let assistant = &messages[2];
    assert_eq!(
        assistant["tool_calls"][0]["id"],
        "toolu_01A09q90qw90lq917835lq9"
    );
    assert_eq!(
        assistant["tool_calls"][0]["function"]["arguments"],
        r#"{"file_path":"/repo/README.md"}"#
    );
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(messages[4]["tool_call_id"], "toolu_01B45r81pl22mk038495mz0");
    assert_eq!(messages[4]["content"], "Error: No such file");
    assert_eq!(messages[5]["role"], "user");
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["reasoning_effort"], "medium");
    // Anthropic-only fields stay behind.
    assert!(out.get("metadata").is_none());
}

fn openai_request_to_anthropic(t: &Translated) {
    assert!(openai_chat::client_wants_usage(t.request()));
    let out = t.json();
    assert_eq!(
        out["system"],
        json!([
            {"type": "text", "text": "You are a helpful assistant."},
            {"type": "text", "text": "Prefer metric units."}
        ])
    );
    assert_eq!(out["max_tokens"], 1024);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
    );
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(
        messages[0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="})
    );
    // Parallel calls keep their ids; both results share the next user turn, results first.
    assert_eq!(messages[1]["content"][0]["id"], "call_paris");
    assert_eq!(messages[1]["content"][1]["input"], json!({"city": "Tokyo"}));
    let results = &messages[2]["content"];
    assert_eq!(results[0]["tool_use_id"], "call_paris");
    assert_eq!(results[1]["tool_use_id"], "call_tokyo");
    assert_eq!(
        results[2],
        json!({"type": "text", "text": "Which is warmer?"})
    );
    assert_eq!(messages.len(), 3);
    // OpenAI-only fields stay behind.
    assert!(out.get("seed").is_none() && out.get("stream_options").is_none());
}

fn gemini_request_to_gemini(t: &Translated) {
    assert!(t.request().model.is_empty(), "the model is in the URL");
    let out = t.json();
    let declarations = &out["tools"][0]["functionDeclarations"];
    // JSON Schema from `parametersJsonSchema` arrives cleaned into `parameters`: references
    // inlined, nulls as `nullable`, unknown keywords gone.
    let read = &declarations[0]["parameters"];
    assert_eq!(
        read["properties"]["offset"],
        json!({"type": "integer", "nullable": true})
    );
    assert_eq!(
        read["properties"]["encoding"],
        json!({"type": "string", "enum": ["utf-8", "latin-1"], "title": "Encoding", "nullable": true})
    );
    assert_eq!(read["properties"]["range"]["description"], "Lines to read.");
    assert_eq!(read["properties"]["range"]["required"], json!(["start"]));
    for keyword in [
        "additionalProperties",
        "$schema",
        "$defs",
        "$ref",
        "pattern",
        "exclusiveMinimum",
        "default",
        "minLength",
        "propertyOrdering",
    ] {
        assert!(
            !declarations.to_string().contains(keyword),
            "{keyword} left in the declarations"
        );
    }
    assert!(
        declarations[2].get("parameters").is_none(),
        "a tool without arguments declares no parameters"
    );
    // The history keeps Gemini's signatures where Gemini put them; the call that had one
    // needs no placeholder.
    let model = &out["contents"][1];
    assert_eq!(model["role"], "model");
    assert_eq!(
        model["parts"][1]["thoughtSignature"],
        "CiIBVKhc7l5mzkoZSRQfFeCS44vjuGk3o7tGrA=="
    );
    assert!(!out.to_string().contains(gemini::SKIP_SIGNATURE));
    // Responses answer their calls by name; the ids made for id-less calls stay here.
    let results = &out["contents"][2]["parts"];
    assert_eq!(
        results[1]["functionResponse"],
        json!({"name": "list_directory", "response": {"error": "Permission denied"}})
    );
    assert!(!out.to_string().contains("gemini_fc_"));
    // What only Gemini knows comes back to Gemini.
    assert_eq!(out["tools"][1], json!({"googleSearch": {}}));
    assert_eq!(out["generationConfig"]["topK"], 64);
    assert_eq!(
        out["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
    assert!(out.get("safetySettings").is_some() && out.get("labels").is_some());
}

fn gemini_request_to_anthropic(t: &Translated) {
    let out = t.json();
    assert_eq!(out["system"][1]["text"], "The project is in /repo.");
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );
    let messages = out["messages"].as_array().unwrap();
    // Gemini's thought and signatures stay with Gemini.
    assert!(!out.to_string().contains("CiIBVKhc7l5mzkoZSRQ"));
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "tool_use", "id": "gemini_fc_0", "name": "read_file", "input": {"absolute_path": "/repo/README.md"}})
    );
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "gemini_fc_0");
    assert_eq!(messages[2]["content"][1]["tool_use_id"], "gemini_fc_1");
    assert_eq!(messages[2]["content"][1]["is_error"], true);
    // The OpenAPI-style schema reads as JSON Schema.
    assert_eq!(
        out["tools"][1]["input_schema"]["properties"]["ignore"],
        json!({"type": ["array", "null"], "items": {"type": "string"}})
    );
    assert_eq!(out["tools"].as_array().unwrap().len(), 3, "no googleSearch");
    assert!(out.get("safetySettings").is_none());
}

fn gemini_request_to_openai(t: &Translated) {
    let out = t.json();
    // gpt-4.1 does not reason and would refuse `reasoning_effort`.
    assert!(out.get("reasoning_effort").is_none(), "{out}");
    assert_eq!(out["messages"][3]["tool_call_id"], "gemini_fc_0");
    assert_eq!(out["messages"][4]["content"], "Error: Permission denied");
    assert_eq!(out["max_tokens"], 8192);
}

fn anthropic_request_to_gemini(t: &Translated) {
    let out = t.json();
    assert!(out.get("model").is_none() && out.get("stream").is_none());
    assert_eq!(
        out["systemInstruction"]["parts"][2]["text"],
        "The working directory is /repo."
    );
    // Claude's signed thinking is not Gemini's; the history's first call gets the placeholder
    // Gemini 3 asks for, and Anthropic's ids are not sent.
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    let model = &out["contents"][1]["parts"];
    assert_eq!(model[0], json!({"text": "Reading both files."}));
    assert_eq!(model[1]["thoughtSignature"], gemini::SKIP_SIGNATURE);
    assert!(model[2].get("thoughtSignature").is_none());
    assert!(!out.to_string().contains("toolu_"));
    let user = &out["contents"][2]["parts"];
    assert_eq!(
        user[1]["functionResponse"],
        json!({"name": "Read", "response": {"error": "No such file"}})
    );
    assert_eq!(user[2], json!({"text": "Summarise, please."}));
    assert_eq!(
        out["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 10000, "includeThoughts": true})
    );
    assert_eq!(
        out["generationConfig"]["stopSequences"],
        json!(["</answer>"])
    );
    assert_eq!(
        out["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert!(out.get("metadata").is_none());
}

fn openai_request_to_gemini(t: &Translated) {
    let out = t.json();
    let contents = out["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "user, model, user: turns alternate");
    assert_eq!(
        contents[0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}})
    );
    assert_eq!(
        contents[1]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    let user = &contents[2]["parts"];
    assert_eq!(
        user[0]["functionResponse"]["response"]["output"],
        "18 C, cloudy"
    );
    assert_eq!(
        user[1]["functionResponse"]["response"]["output"],
        "24 C, sunny"
    );
    assert_eq!(user[2], json!({"text": "Which is warmer?"}));
    assert_eq!(
        out["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
    );
    assert_eq!(out["generationConfig"]["maxOutputTokens"], 1024);
    assert!(out.get("seed").is_none() && out.get("stream_options").is_none());
}

/// Also checks the decoded request itself, which the other rows from this fixture share.
fn responses_client_request_to_chat(t: &Translated) {
    let request = t.request();
    // Instructions and the developer message are system text; tool items join their turns.
    assert_eq!(request.system.len(), 2);
    let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert!(matches!(
        &request.messages[1].content[0],
        Part::Reasoning(Reasoning {
            encrypted: Some(_),
            issuer: Some(Protocol::OpenAiResponses),
            ..
        })
    ));
    assert_eq!(
        request.messages[3].content[1],
        Part::ToolCall {
            id: "call_Ef56".into(),
            name: "apply_patch".into(),
            arguments: json!({"input": "*** Begin Patch\n*** Update File: Cargo.toml\n@@\n [package]\n+rust-version = \"1.90\"\n*** End Patch"}).to_string(),
        }
    );
    assert_eq!(
        openai_responses::custom_tool_names(request),
        ["apply_patch"]
    );
    assert_eq!(request.tools.len(), 2, "shell and apply_patch as functions");
    assert_eq!(
        request.native_tools.len(),
        2,
        "apply_patch as sent, web_search"
    );
    assert_eq!(request.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(request.reasoning.unwrap().effort, Some(Effort::High));
    assert_eq!(request.max_tokens, Some(8000));
    assert_eq!(
        request.extra["prompt_cache_key"],
        "0199a213-81c0-7800-8aa1-bbab2a035a53"
    );

    let out = t.json();
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(
        messages[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    // The assistant turn holds its text and both parallel calls; the results follow in order.
    assert_eq!(messages[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(messages[3]["tool_call_id"], "call_Ab12");
    assert_eq!(messages[4]["tool_call_id"], "call_Cd34");
    // The freeform tool is a function taking `input`; its call and result pair up.
    let patch_tool = &out["tools"][1]["function"];
    assert_eq!(patch_tool["name"], "apply_patch");
    assert_eq!(patch_tool["parameters"]["required"], json!(["input"]));
    assert!(
        patch_tool["description"]
            .as_str()
            .unwrap()
            .contains("lark grammar")
    );
    assert_eq!(messages[5]["tool_calls"][0]["id"], "call_Ef56");
    assert_eq!(messages[6]["tool_call_id"], "call_Ef56");
    assert_eq!(
        out["tools"].as_array().unwrap().len(),
        2,
        "web_search stays behind"
    );
    assert!(!out.to_string().contains("gAAAAABoEncryptedBlobFromOpenAI"));
    assert!(out.get("prompt_cache_key").is_none() && out.get("store").is_none());
    assert_eq!(out["reasoning_effort"], "high");
}

fn responses_client_request_to_anthropic(t: &Translated) {
    let out = t.json();
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(out["thinking"]["budget_tokens"], 32768);
    assert_eq!(
        messages[1]["content"][1]["input"],
        json!({"command": ["cat", "Cargo.toml"], "workdir": "/repo"})
    );
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "call_Ab12");
    // The custom tool's call goes as `input: {"input": <patch>}` and its result follows.
    assert_eq!(messages[3]["content"][1]["name"], "apply_patch");
    assert!(
        messages[3]["content"][1]["input"]["input"]
            .as_str()
            .unwrap()
            .starts_with("*** Begin Patch")
    );
    assert_eq!(messages[4]["content"][0]["tool_use_id"], "call_Ef56");
    assert!(!out.to_string().contains("gAAAAABoEncryptedBlobFromOpenAI"));
}

fn responses_client_request_to_a_responses_provider_keeps_what_it_sent(t: &Translated) {
    let out = t.json();
    let original: Value = serde_json::from_str(t.input()).unwrap();
    // Everything the canonical model has no home for comes back as the client sent it.
    for key in [
        "store",
        "include",
        "prompt_cache_key",
        "reasoning",
        "text",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "stream",
    ] {
        assert_eq!(out[key], original[key], "{key}");
    }
    assert_eq!(
        out["tools"][1], original["tools"][1],
        "the custom tool as sent"
    );
    assert_eq!(out["tools"][2], json!({"type": "web_search"}));
    let items = out["input"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message",
            "reasoning",
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output",
            "message",
            "custom_tool_call",
            "custom_tool_call_output",
            "message"
        ]
    );
    assert_eq!(
        items[1]["encrypted_content"],
        "gAAAAABoEncryptedBlobFromOpenAI=="
    );
    assert_eq!(items[8]["input"], original["input"][9]["input"]);
    assert_eq!(out["instructions"].as_str().unwrap().lines().count(), 3);
}

fn anthropic_request_to_a_responses_provider(t: &Translated) {
    let out = t.json();
    // Nothing to store for a conversation the client keeps itself; Anthropic-only fields and
    // the signed thinking stay behind.
    assert_eq!(out["store"], false);
    assert!(out.get("metadata").is_none() && out.get("stop").is_none());
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    assert_eq!(out["reasoning"], json!({"effort": "medium"}));
    assert!(out["instructions"].as_str().unwrap().contains("/repo"));
    let tools = out["tools"].as_array().unwrap();
    assert!(
        tools
            .iter()
            .all(|t| t["type"] == "function" && t["strict"] == false)
    );
    let items = out["input"].as_array().unwrap();
    let calls: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls[0]["call_id"], "toolu_01A09q90qw90lq917835lq9");
    let results: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .collect();
    assert_eq!(results[1]["output"], "Error: No such file");
}

fn openai_request_to_a_responses_provider(t: &Translated) {
    let out = t.json();
    assert_eq!(out["max_output_tokens"], 1024);
    assert_eq!(out["parallel_tool_calls"], false);
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "name": "get_weather"})
    );
    assert!(out.get("seed").is_none() && out.get("stream_options").is_none());
    let image = out["input"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "input_image")
        .unwrap();
    assert_eq!(
        image["image_url"],
        "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
    );
}

// ---------------------------------------------------------------------------------------------
// Checks: streams.

fn openai_stream_to_anthropic_stream(t: &Translated) {
    let events = t.events();
    // Argument fragments reassemble per call; the two parallel calls keep distinct parts.
    assert_eq!(call_arguments(events, "call_paris"), r#"{"city": "Paris"}"#);
    assert_eq!(call_arguments(events, "call_tokyo"), r#"{"city": "Tokyo"}"#);
    assert!(events.contains(&StreamEvent::Finish(FinishReason::ToolCalls)));

    let text = t.text();
    // Blocks are numbered 0.. in order, each started and stopped once.
    for (index, kind) in ["thinking", "text", "tool_use", "tool_use"]
        .iter()
        .enumerate()
    {
        let start = format!(
            "\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"{kind}\""
        );
        assert_eq!(text.matches(&start).count(), 1, "{start}");
        let stop = format!("{{\"type\":\"content_block_stop\",\"index\":{index}}}");
        assert_eq!(text.matches(&stop).count(), 1, "{stop}");
    }
    // Usage from OpenAI's final chunk arrives in message_delta: input without cached tokens.
    assert!(text.contains(
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":20,"output_tokens":42,"cache_read_input_tokens":100}}"#
    ));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

fn anthropic_stream_to_openai_stream(t: &Translated) {
    let text = t.text();
    // The signature never reaches an OpenAI client.
    assert!(!text.contains("EqQBCgIYAhIM"));
    // The round trip back through the OpenAI decoder gives the same calls, ids and usage.
    let again = canonical_stream(CHAT, text);
    assert_eq!(
        call_ids(&again),
        [
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "toolu_01U2y2gK45rBnl3uOUsO8Vq7"
        ]
    );
    assert!(text.contains(r#""tool_calls":[{"index":1,"id":"toolu_01U2y2gK45rBnl3uOUsO8Vq7""#));
    assert!(text.contains(r#""finish_reason":"tool_calls""#));
    assert!(text.contains(
        r#""usage":{"prompt_tokens":125,"completion_tokens":89,"total_tokens":214,"prompt_tokens_details":{"cached_tokens":100}}"#
    ));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

/// Also checks the decoded Gemini stream, which the Chat row from this fixture shares.
fn gemini_stream_to_anthropic(t: &Translated) {
    let events = t.events();
    // Thoughts, text, then the two calls Gemini sent whole in one chunk, each its own part.
    let ids = call_ids(events);
    assert_eq!(
        ids,
        [
            "gemini_fc_8_LTaJ-XJ9Oe_uMPsZWTsQQ_0",
            "gemini_fc_8_LTaJ-XJ9Oe_uMPsZWTsQQ_1"
        ]
    );
    assert_eq!(
        call_arguments(events, ids[1]),
        r#"{"city":"Tokyo","units":"metric"}"#
    );
    // The first call's signature came after the text, when the thought was long closed: a
    // stream has nowhere to put it (and no other client could send it back to Gemini).
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, StreamEvent::ReasoningSignature { .. }))
    );
    assert_eq!(
        events[events.len() - 2],
        StreamEvent::Usage(TokenUsage {
            input: Some(1480),
            output: Some(41 + 96),
            cached: Some(1024),
            reasoning: Some(96),
        })
    );
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish(FinishReason::ToolCalls))
    );

    let text = t.text();
    assert!(!text.contains("signature_delta"));
    // Anthropic's input leaves the cached tokens out.
    assert!(text.contains(
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":456,"output_tokens":137,"cache_read_input_tokens":1024}}"#
    ));
}

fn gemini_stream_to_openai(t: &Translated) {
    let text = t.text();
    assert!(text.contains(
        r#""usage":{"prompt_tokens":1480,"completion_tokens":137,"total_tokens":1617,"prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":96}}"#
    ));
    assert!(text.contains(r#""finish_reason":"tool_calls""#));
}

fn anthropic_stream_to_gemini_as_sse(t: &Translated) {
    let (events, text) = (t.events(), t.text());
    let chunks = sse_chunks(text);
    // Claude's signature never reaches a Gemini client, the text does.
    assert!(!text.contains("EqQBCgIYAhIM"));
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"],
        json!([{"text": "Two cities, two calls.", "thought": true}])
    );
    // The calls go out whole, together, with their ids and arguments as objects.
    let calls = chunks
        .iter()
        .find(|c| c.to_string().contains("functionCall"))
        .unwrap();
    assert_eq!(
        calls["candidates"][0]["content"]["parts"][1]["functionCall"]["id"],
        "toolu_01U2y2gK45rBnl3uOUsO8Vq7"
    );
    assert!(calls["candidates"][0]["content"]["parts"][0]["functionCall"]["args"].is_object());
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 125);
    assert_eq!(last["usageMetadata"]["cachedContentTokenCount"], 100);

    // Read back by the Gemini decoder: same calls, ids and arguments.
    let again = canonical_stream(GEMINI, text);
    assert_eq!(call_ids(&again), call_ids(events));
    for id in call_ids(events) {
        let before: Value = serde_json::from_str(&call_arguments(events, id)).unwrap();
        let after: Value = serde_json::from_str(&call_arguments(&again, id)).unwrap();
        assert_eq!(before, after);
    }
    assert_eq!(
        again.last(),
        Some(&StreamEvent::Finish(FinishReason::ToolCalls))
    );
}

fn anthropic_stream_to_gemini_as_a_json_array(t: &Translated) {
    // Both framings carry the same chunks; the array is one JSON document.
    let sse = ClientView {
        gemini_framing: Framing::Sse,
        ..t.row.view()
    };
    let chunks = sse_chunks(&encode_stream(GEMINI, &sse, t.events()));
    let parsed: Vec<Value> = serde_json::from_str(t.text()).unwrap();
    assert_eq!(parsed, chunks);
}

fn openai_stream_to_gemini(t: &Translated) {
    let chunks = sse_chunks(t.text());
    // Interleaved argument fragments are held until complete, then sent as objects.
    let calls: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().unwrap())
        .filter_map(|p| p.get("functionCall"))
        .collect();
    assert_eq!(
        calls,
        [
            &json!({"id": "call_paris", "name": "get_weather", "args": {"city": "Paris"}}),
            &json!({"id": "call_tokyo", "name": "get_weather", "args": {"city": "Tokyo"}})
        ]
    );
    // OpenAI's usage arrives after its finish reason and still makes the last chunk.
    let last = chunks.last().unwrap();
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 120);
    assert_eq!(last["usageMetadata"]["cachedContentTokenCount"], 100);
}

fn a_chat_provider_stream_reaches_a_responses_client_with_its_custom_tool(t: &Translated) {
    let text = t.text();
    let sent = responses_events(text);
    assert_eq!(sent[0]["type"], "response.created");
    assert_eq!(sent[1]["type"], "response.in_progress");
    let done = of_type(&sent, "response.output_item.done");
    let kinds: Vec<&str> = done
        .iter()
        .map(|e| e["item"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["reasoning", "message", "custom_tool_call", "function_call"]
    );
    // The freeform tool's call carries the patch as text, not as JSON.
    let patch = &done[2]["item"];
    assert_eq!(patch["call_id"], "call_patch");
    assert_eq!(
        patch["input"],
        "*** Begin Patch\n*** Update File: src/lib.rs\n@@\n-    n - 1\n+    n\n*** End Patch"
    );
    assert_eq!(
        done[3]["item"]["arguments"],
        r#"{"command":["cargo","test"]}"#
    );
    assert_eq!(
        of_type(&sent, "response.custom_tool_call_input.done")[0]["input"],
        patch["input"]
    );
    // Text deltas add up to the message; the terminal event holds every item and the usage
    // that arrived after the finish reason.
    let deltas: String = of_type(&sent, "response.output_text.delta")
        .iter()
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "I'll fix the \"off by one\" bug.");
    let last = sent.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["id"], "resp_chatcmpl-codex1");
    assert_eq!(last["response"]["output"].as_array().unwrap().len(), 4);
    assert_eq!(
        last["response"]["usage"],
        json!({
            "input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024},
            "output_tokens": 90, "output_tokens_details": {"reasoning_tokens": 20},
            "total_tokens": 1290
        })
    );

    // Our own decoder reads the same answer back.
    let again = canonical_stream(RESPONSES, text);
    assert!(again.contains(&StreamEvent::ToolCallStart {
        index: 2,
        id: "call_patch".into(),
        name: "apply_patch".into()
    }));
    assert_eq!(
        again.last(),
        Some(&StreamEvent::Finish(FinishReason::ToolCalls))
    );
}

fn an_anthropic_stream_reaches_a_responses_client_with_its_signature_kept(t: &Translated) {
    let sent = responses_events(t.text());
    let reasoning = &of_type(&sent, "response.output_item.done")[0]["item"];
    assert_eq!(reasoning["type"], "reasoning");
    let encrypted = reasoning["encrypted_content"].as_str().unwrap();
    let (issuer, kind, proof) = untag_proof(encrypted).unwrap();
    assert_eq!(
        (issuer, kind),
        (Protocol::AnthropicMessages, ProofKind::Signature)
    );
    assert!(proof.starts_with("EqQBCgIYAhIM"));

    // When Codex sends the item back, it is Anthropic's signed thinking again.
    let body = json!({
        "model": "m",
        "input": [{"type": "reasoning", "id": reasoning["id"], "summary": reasoning["summary"], "encrypted_content": encrypted}]
    });
    let mut request = codec::decode_request(RESPONSES, body.to_string().as_bytes()).unwrap();
    request.adopt_signature_tags();
    let Part::Reasoning(back) = &request.messages[0].content[0] else {
        panic!("a reasoning part");
    };
    assert!(back.signed_for(Protocol::AnthropicMessages));
    assert!(
        back.signature
            .as_deref()
            .unwrap()
            .starts_with("EqQBCgIYAhIM")
    );
    let thinking: String = t
        .events()
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ReasoningDelta { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(back.text, thinking);
    let to_anthropic: Value =
        serde_json::from_slice(&codec::encode_request(ANTHROPIC, &request).unwrap()).unwrap();
    assert_eq!(
        to_anthropic["messages"][0]["content"][0]["type"],
        "thinking"
    );
}

/// Also checks the decoded Responses stream, which the Chat row from this fixture shares.
fn a_responses_provider_stream_reaches_an_anthropic_client(t: &Translated) {
    let events = t.events();
    assert_eq!(
        events[0],
        StreamEvent::MessageStart {
            id: "resp_0a1b2c3d4e5f".into(),
            model: "gpt-5-2025-08-07".into()
        }
    );
    let reasoning: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ReasoningDelta { index: 0, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasoning,
        "**Planning the lookup**\n\nThe user wants the weather in two cities; I can query both \
         at once.\n\n**Choosing units**\n\nCelsius for both."
    );
    assert!(events.contains(&StreamEvent::ReasoningSignature {
        index: 0,
        signature: "gAAAAABoEncryptedReasoning0a1b==".into()
    }));
    assert_eq!(arguments_at(events, 2), r#"{"city":"Paris","unit":"c"}"#);
    assert_eq!(arguments_at(events, 3), r#"{"city":"Tokyo","unit":"c"}"#);
    assert!(events.contains(&StreamEvent::ToolCallStart {
        index: 2,
        id: "call_paris".into(),
        name: "get_weather".into()
    }));
    let tail = &events[events.len() - 2..];
    assert_eq!(
        tail,
        [
            StreamEvent::Usage(TokenUsage {
                input: Some(812),
                output: Some(164),
                cached: Some(512),
                reasoning: Some(96)
            }),
            StreamEvent::Finish(FinishReason::ToolCalls)
        ]
    );

    assert!(t.text().contains(
        r#""usage":{"input_tokens":300,"output_tokens":164,"cache_read_input_tokens":512}"#
    ));
}

fn a_responses_provider_stream_reaches_a_chat_client(t: &Translated) {
    let text = t.text();
    assert!(text.contains(r#""finish_reason":"tool_calls""#));
    assert!(!text.contains("gAAAAABoEncryptedReasoning0a1b"));
}

// ---------------------------------------------------------------------------------------------
// Checks: whole answers.

fn anthropic_response_to_openai(t: &Translated) {
    let out = t.json();
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["id"],
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    );
    assert_eq!(out["usage"]["prompt_tokens"], 130);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
}

fn openai_response_to_anthropic(t: &Translated) {
    assert!(matches!(&t.response().content[0], Part::Reasoning(r) if r.signature.is_none()));
    let out = t.json();
    assert_eq!(
        out["content"][0],
        json!({"type": "thinking", "thinking": "24 is more than 18.", "signature": ""})
    );
    assert_eq!(out["stop_reason"], "max_tokens");
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 50, "output_tokens": 30, "cache_read_input_tokens": 150})
    );
}

/// Also checks the decoded Gemini answer, which the Chat row from this fixture shares.
fn gemini_response_to_anthropic(t: &Translated) {
    let response = t.response();
    assert_eq!(response.finish, Some(FinishReason::ToolCalls));
    // The signature on the text part rides before it.
    assert!(matches!(&response.content[1], Part::Reasoning(r) if r.encrypted.is_some()));

    let out = t.json();
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 82, "output_tokens": 180, "cache_read_input_tokens": 128})
    );
    assert_eq!(out["content"][2]["id"], "9w3kq2xa");
    assert!(!out.to_string().contains("EpYCCpMCAb4"));
}

fn gemini_response_to_openai(t: &Translated) {
    let out = t.json();
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out["usage"]["completion_tokens"], 180);
    assert_eq!(
        out["usage"]["completion_tokens_details"]["reasoning_tokens"],
        145
    );
}

fn anthropic_response_to_gemini(t: &Translated) {
    let out = t.json();
    let candidate = &out["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    assert!(!out.to_string().contains("EqQBCgIYAhIM"));
    let usage = &out["usageMetadata"];
    assert_eq!(
        usage["totalTokenCount"],
        usage["promptTokenCount"].as_u64().unwrap()
            + usage["candidatesTokenCount"].as_u64().unwrap()
    );
    assert_eq!(usage["cachedContentTokenCount"], 100);
}

/// Also checks the decoded Responses answer, which the Chat row from this fixture shares.
fn a_responses_provider_answer_reaches_an_anthropic_client(t: &Translated) {
    let response = t.response();
    assert_eq!(response.finish, Some(FinishReason::Length));
    assert_eq!(response.usage.cached, Some(150));
    assert!(matches!(
        &response.content[0],
        Part::Reasoning(Reasoning { encrypted: Some(e), issuer: Some(Protocol::OpenAiResponses), .. }) if e == "gAAAAABoWholeAnswerBlob=="
    ));
    assert!(matches!(&response.content[2], Part::Unknown(v) if v["type"] == "web_search_call"));

    let out = t.json();
    assert_eq!(out["stop_reason"], "max_tokens");
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 50, "output_tokens": 300, "cache_read_input_tokens": 150})
    );
    assert!(
        out["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["text"] == "Tokyo is warmer: 24 °C against 18 °C in")
    );
    assert!(!out.to_string().contains("gAAAAABoWholeAnswerBlob"));
}

fn a_responses_provider_answer_reaches_a_chat_client(t: &Translated) {
    let out = t.json();
    assert_eq!(out["choices"][0]["finish_reason"], "length");
    assert_eq!(
        out["choices"][0]["message"]["reasoning_content"],
        "Comparing the two temperatures."
    );
}

fn an_anthropic_answer_reaches_a_responses_client(t: &Translated) {
    let out = t.json();
    assert_eq!(out["object"], "response");
    assert_eq!(out["status"], "completed");
    let output = out["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    let tagged = untag_proof(output[0]["encrypted_content"].as_str().unwrap()).unwrap();
    assert_eq!(tagged.0, Protocol::AnthropicMessages);
    let calls: Vec<&Value> = output
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls[0]["call_id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(out["usage"]["input_tokens"], 130);
    assert_eq!(out["usage"]["input_tokens_details"]["cached_tokens"], 100);
    assert_eq!(
        out["usage"]["total_tokens"],
        130 + out["usage"]["output_tokens"].as_u64().unwrap()
    );
}
