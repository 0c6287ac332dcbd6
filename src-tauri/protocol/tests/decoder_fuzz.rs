//! Property and fuzz tests for every protocol module's decoders and encoders. (The gateway's
//! answer to malformed client bodies is in the gateway's `malformed_bodies.rs`.)
//!
//! The contract: a decoder (`request_to_canonical`, `response_to_canonical`,
//! `StreamDecoder::decode`/`finish`) returns `Ok` or `Err` on any input and never panics; an
//! encoder (`request_from_canonical`, `response_from_canonical`, `StreamEncoder`) accepts
//! whatever canonical value a decoder let through and writes well-formed output (JSON bodies,
//! SSE events whose data is JSON or `[DONE]`). Inputs are arbitrary bytes, arbitrary JSON
//! documents and SSE streams built from protocol field names (so they get past the first
//! `match`), and mutations of the golden fixtures under `tests/fixtures/translation/`:
//! truncations, byte flips, invalid UTF-8, out-of-range numbers, type swaps, removed fields,
//! deep nesting, and streams cut into pieces at every byte. Every input goes through every
//! protocol, whichever protocol it came from.
//!
//! Adding a protocol module is one `codec!` entry in
//! [`codecs`]: its module name, how to call its whole-answer encoder and build its stream
//! encoder (the protocol-specific context), and the fixtures its decoders must accept. Its
//! field names can go into [`KEYS`] and [`WORDS`] so the generated documents reach its code.
//!
//! Case counts are bounded so that the file runs in a few seconds in a debug build (about 6 s
//! with two protocols; [`config`] gives fewer cases per protocol as protocols are added); a
//! failing case is shrunk by proptest and printed. Set `PROPTEST_CASES` to run more locally.
//!
//! Besides the main decoders, every input also goes through the side readers
//! ([`check_side_readers`]): the fast path's usage readers, Gemini's token-count bodies, the
//! reading of upstream error bodies and the error bodies written around any message. The
//! schema cleaner, the SSE splitter and the URL segment encoder have their own properties in
//! `hostile_input_fuzz.rs`.
//!
//! Findings fixed so far keep a regression test each (`usage_sums_saturate_*`): token counters
//! whose sum exceeded `u64::MAX` panicked in debug builds (and wrapped in release).
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

use bytes::Bytes;
use flexiproxy_protocol::canonical::TokenUsage;
use flexiproxy_protocol::canonical::{DecodeError, FinishReason, Request, Response, StreamEvent};
use flexiproxy_protocol::codec;
use flexiproxy_protocol::codec::{DecodeStream as _, EncodeStream as _};
use flexiproxy_protocol::error_message::error_detail;
use flexiproxy_protocol::sse::{self, EventSplitter};
use flexiproxy_protocol::{Protocol, anthropic_messages, gemini, openai_chat, openai_responses};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

/// `created` timestamp for OpenAI encoders (any value does).
const CREATED: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// The protocols under test.

/// One protocol module's public API as plain function pointers, so one set of checks drives
/// them all.
struct Codec {
    name: &'static str,
    request_to_canonical: fn(&[u8]) -> Result<Request, DecodeError>,
    /// The encoded body; `None` when the encoder refused (Gemini's schema budget).
    request_from_canonical: fn(&Request) -> Option<Vec<u8>>,
    response_to_canonical: fn(&[u8]) -> Result<Response, DecodeError>,
    response_from_canonical: fn(&Response) -> Vec<u8>,
    /// A fresh `StreamDecoder` fed these whole events, then finished.
    decode_stream: fn(&[Bytes]) -> Decoded,
    /// A fresh `StreamEncoder` fed these events, then finished.
    encode_stream: fn(&[StreamEvent]) -> Vec<u8>,
    /// Fixture texts this protocol's decoders must accept: client requests, whole provider
    /// answers, provider SSE streams.
    requests: &'static [&'static str],
    responses: &'static [&'static str],
    streams: &'static [&'static str],
}

/// Request encoders return the body, or (Gemini's, which inlines schemas within a budget) a
/// result: either as an optional body.
trait Encoded {
    fn encoded(self) -> Option<Vec<u8>>;
}

impl Encoded for Vec<u8> {
    fn encoded(self) -> Option<Vec<u8>> {
        Some(self)
    }
}

impl<E> Encoded for Result<Vec<u8>, E> {
    fn encoded(self) -> Option<Vec<u8>> {
        self.ok()
    }
}

/// What a stream decoder made of a stream.
#[derive(Debug, Default)]
struct Decoded {
    /// Events from `decode` (of the events it accepted), then from `finish`.
    events: Vec<StreamEvent>,
    /// Events `decode` refused.
    errors: usize,
    /// `is_done()` before `finish`.
    done: bool,
    /// What `finish` returned, and what a second `finish` returned.
    finish: Vec<StreamEvent>,
    finish_again: Vec<StreamEvent>,
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/translation/", $name))
    };
}

/// A [`Codec`] for protocol module `$module`. `response_from_canonical` and `stream_encoder`
/// are the calls that need protocol-specific context (written as a closure and an expression).
macro_rules! codec {
    (
        $module:ident,
        response_from_canonical: $response_from:expr,
        stream_encoder: $encoder:expr,
        requests: [$($request:literal),* $(,)?],
        responses: [$($response:literal),* $(,)?],
        streams: [$($stream:literal),* $(,)?] $(,)?
    ) => {
        Codec {
            name: stringify!($module),
            request_to_canonical: $module::request_to_canonical,
            request_from_canonical: |request| {
                $module::request_from_canonical(request).encoded()
            },
            response_to_canonical: $module::response_to_canonical,
            response_from_canonical: $response_from,
            decode_stream: |events| {
                let mut decoder = $module::StreamDecoder::default();
                let mut decoded = Decoded::default();
                for event in events {
                    match decoder.decode(event) {
                        Ok(out) => decoded.events.extend(out),
                        Err(_) => decoded.errors += 1,
                    }
                }
                decoded.done = decoder.is_done();
                decoded.finish = decoder.finish();
                decoded.finish_again = decoder.finish();
                decoded.events.extend(decoded.finish.iter().cloned());
                decoded
            },
            encode_stream: |events| {
                let mut encoder = $encoder;
                let mut out = Vec::new();
                for event in events {
                    encoder.encode(event, &mut out);
                }
                encoder.finish(&mut out);
                out
            },
            requests: &[$(fixture!($request)),*],
            responses: &[$(fixture!($response)),*],
            streams: &[$(fixture!($stream)),*],
        }
    };
}

/// Every protocol module under test.
fn codecs() -> Vec<Codec> {
    vec![
        codec!(
            openai_chat,
            response_from_canonical: |response| openai_chat::response_from_canonical(response, CREATED),
            stream_encoder: openai_chat::StreamEncoder::new("m", CREATED, true),
            requests: [
                "openai_to_anthropic_request.in.json",
                "anthropic_to_openai_request.out.json",
            ],
            responses: [
                "openai_to_anthropic_response.in.json",
                "anthropic_to_openai_response.out.json",
            ],
            streams: [
                "openai_stream_to_anthropic_stream.in.txt",
                "anthropic_stream_to_openai_stream.out.txt",
            ],
        ),
        codec!(
            anthropic_messages,
            response_from_canonical: anthropic_messages::response_from_canonical,
            stream_encoder: anthropic_messages::StreamEncoder::new("m"),
            requests: [
                "anthropic_to_openai_request.in.json",
                "openai_to_anthropic_request.out.json",
            ],
            responses: [
                "anthropic_to_openai_response.in.json",
                "openai_to_anthropic_response.out.json",
            ],
            streams: [
                "anthropic_stream_to_openai_stream.in.txt",
                "openai_stream_to_anthropic_stream.out.txt",
            ],
        ),
        codec!(
            openai_responses,
            response_from_canonical: |response| openai_responses::response_from_canonical(response, CREATED),
            stream_encoder: openai_responses::StreamEncoder::new("m", CREATED)
                .with_custom_tools(["apply_patch".to_owned()]),
            requests: [
                "responses_client_request.in.json",
                "responses_from_anthropic_request.out.json",
            ],
            responses: ["responses_provider_response.in.json"],
            streams: [
                "responses_provider_stream.in.txt",
                "responses_from_anthropic_stream.out.txt",
            ],
        ),
        codec!(
            gemini,
            response_from_canonical: gemini::response_from_canonical,
            stream_encoder: gemini::StreamEncoder::new("m", gemini::Framing::Sse),
            requests: ["gemini_request.in.json", "gemini_from_anthropic_request.out.json"],
            responses: ["gemini_response.in.json", "gemini_response_from_anthropic.out.json"],
            streams: ["gemini_stream.in.txt", "gemini_stream_from_anthropic.out.txt"],
        ),
    ]
}

/// Every fixture of every protocol, as mutation seeds.
fn all_fixtures() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = codecs()
        .iter()
        .flat_map(|c| c.requests.iter().chain(c.responses).chain(c.streams))
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

// ---------------------------------------------------------------------------------------------
// The checks every input goes through.

/// Body or stream text produced by an encoder, named for the failure message.
fn assert_json(what: &str, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        serde_json::from_slice::<Value>(body).is_ok(),
        "{what} wrote invalid JSON: {}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

/// Whole SSE events of `text`, cut into `chunk`-byte pieces first (as TCP delivers them),
/// including a trailing unterminated event.
fn split_events(text: &[u8], chunk: usize) -> Vec<Bytes> {
    let mut splitter = EventSplitter::default();
    let mut events = Vec::new();
    for piece in text.chunks(chunk.max(1)) {
        events.extend(splitter.push(Bytes::copy_from_slice(piece)).unwrap());
    }
    events.extend(splitter.finish());
    events
}

/// An encoder's SSE output: every event's data is JSON or `[DONE]`.
fn assert_sse(what: &str, out: &[u8]) -> Result<(), TestCaseError> {
    for event in split_events(out, out.len()) {
        if let Some(data) = sse::data(&event)
            && data.as_ref() != b"[DONE]"
        {
            assert_json(what, &data)?;
        }
    }
    Ok(())
}

/// A stream decoder's contract around the end of a stream: `finish` says nothing after a
/// complete stream, at most one `Error` otherwise, and nothing the second time.
fn assert_finish(codec: &Codec, decoded: &Decoded) -> Result<(), TestCaseError> {
    let name = codec.name;
    prop_assert!(
        decoded.finish.len() <= 1
            && decoded
                .finish
                .iter()
                .all(|e| matches!(e, StreamEvent::Error { .. })),
        "{name}: finish() returned {:?}",
        decoded.finish
    );
    prop_assert!(
        !decoded.done || decoded.finish.is_empty(),
        "{name}: finish() after a complete stream returned {:?}",
        decoded.finish
    );
    prop_assert!(
        decoded.finish_again.is_empty(),
        "{name}: a second finish() returned {:?}",
        decoded.finish_again
    );
    Ok(())
}

/// Encodes `events` with every protocol, checks the framing, and decodes the output again with
/// the same protocol (which must not panic either).
fn encode_everywhere(events: &[StreamEvent]) -> Result<(), TestCaseError> {
    for codec in codecs() {
        let out = (codec.encode_stream)(events);
        assert_sse(&format!("{} StreamEncoder", codec.name), &out)?;
        let again = (codec.decode_stream)(&split_events(&out, out.len()));
        assert_finish(&codec, &again)?;
    }
    Ok(())
}

/// Feeds `input` to every protocol's whole-body decoders (as a client request and as a
/// provider's answer) and whatever decodes to every protocol's encoder.
fn check_body(input: &[u8]) -> Result<(), TestCaseError> {
    let codecs = codecs();
    for codec in &codecs {
        if let Ok(request) = (codec.request_to_canonical)(input) {
            for target in &codecs {
                let Some(out) = (target.request_from_canonical)(&request) else {
                    continue;
                };
                assert_json(&format!("{} request_from_canonical", target.name), &out)?;
                let _ = (target.request_to_canonical)(&out);
            }
        }
        if let Ok(response) = (codec.response_to_canonical)(input) {
            for target in &codecs {
                let out = (target.response_from_canonical)(&response);
                assert_json(&format!("{} response_from_canonical", target.name), &out)?;
                let _ = (target.response_to_canonical)(&out);
            }
        }
    }
    Ok(())
}

/// Feeds `input` to every protocol's stream decoder, as one event and as an SSE stream cut into
/// `chunk`-byte pieces, and (if `encode`) the decoded events to every stream encoder.
fn check_stream(input: &[u8], chunk: usize, encode: bool) -> Result<(), TestCaseError> {
    for codec in &codecs() {
        let _ = (codec.decode_stream)(&[Bytes::copy_from_slice(input)]);
        let decoded = (codec.decode_stream)(&split_events(input, chunk));
        assert_finish(codec, &decoded)?;
        if encode {
            encode_everywhere(&decoded.events)?;
        }
    }
    Ok(())
}

/// Everything: `input` as a body and as a stream, through every decoder and encoder.
fn check_input(input: &[u8], chunk: usize) -> Result<(), TestCaseError> {
    check_body(input)?;
    check_side_readers(input)?;
    check_stream(input, chunk, true)
}

/// The readers beside the main decoders, which see the same hostile bodies: usage readers of
/// the fast path (whole answers and stream events), Gemini's token-count bodies, the gateway's
/// reading of an upstream error body, and the error bodies written with whatever message.
fn check_side_readers(input: &[u8]) -> Result<(), TestCaseError> {
    for protocol in Protocol::ALL {
        let _ = codec::response_usage(protocol, input);
        let _ = codec::event_usage(protocol, input);
        if let Some(data) = sse::data(input) {
            let _ = codec::event_usage(protocol, &data);
        }
    }
    let _ = openai_chat::chunk_usage(input);
    if let Ok(request) = gemini::count_tokens_request_to_canonical(input)
        && let Ok(body) = gemini::count_tokens_request_from_canonical(&request)
    {
        assert_json("gemini count_tokens_request_from_canonical", &body)?;
    }
    let _ = gemini::count_tokens_total(input);
    let detail = error_detail(input);
    prop_assert!(
        !detail.is_empty() && detail.len() <= 500,
        "error_detail gave {detail:?}"
    );
    let message = String::from_utf8_lossy(input);
    for status in [400, 429, 500, 999] {
        assert_json("gemini error_body", &gemini::error_body(status, &message))?;
        assert_json(
            "openai_responses error_body",
            &openai_responses::error_body(status, &message),
        )?;
        assert_json(
            "anthropic error_body",
            &anthropic_messages::error_body(anthropic_messages::error_type(status), &message),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generated inputs.

/// Field names of the protocols, so generated objects look like requests, answers and events.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "system",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "include_usage",
    "temperature",
    "top_p",
    "stop",
    "stop_sequences",
    "name",
    "description",
    "input_schema",
    "parameters",
    "function",
    "arguments",
    "id",
    "tool_call_id",
    "tool_use_id",
    "tool_calls",
    "input",
    "is_error",
    "source",
    "media_type",
    "data",
    "url",
    "image_url",
    "thinking",
    "signature",
    "budget_tokens",
    "reasoning_effort",
    "reasoning_content",
    "reasoning",
    "refusal",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "parallel_tool_calls",
    "disable_parallel_tool_use",
    "choices",
    "delta",
    "index",
    "finish_reason",
    "message",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "completion_tokens_details",
    "reasoning_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "stop_reason",
    "stop_sequence",
    "content_block",
    "partial_json",
    "error",
    "metadata",
    "object",
];

/// String values with a meaning somewhere (roles, part and event types, finish reasons…).
const WORDS: &[&str] = &[
    "",
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "text",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "function",
    "auto",
    "any",
    "none",
    "required",
    "base64",
    "json_object",
    "json_schema",
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "signature_delta",
    "[DONE]",
    "{\"a\":",
    "low",
    "high",
    "chat.completion.chunk",
    "\u{0}\u{feff}é💥",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
}

/// Numbers that stress conversions: extremes of every integer width, huge and tiny floats.
fn edge_number() -> impl Strategy<Value = Value> {
    proptest::sample::select(vec![
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(u64::from(u32::MAX) + 1),
        json!(9_007_199_254_740_993_u64),
        json!(1e308),
        json!(-1e308),
        json!(5e-324),
        json!(0.5),
    ])
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..5000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        edge_number(),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        proptest::sample::select(WORDS).prop_map(|w| Value::String(w.to_owned())),
        any::<String>().prop_map(Value::String),
    ]
}

/// Any JSON value, at most 5 levels deep and a few dozen nodes.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A top-level object made of protocol fields: what a request, answer or event could be.
fn document() -> impl Strategy<Value = Value> {
    proptest::collection::vec((key(), json_value()), 0..8)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()))
}

/// An SSE stream of generated documents, each with an `event:` line naming its `type` or not.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let event = (
        proptest::option::of(proptest::sample::select(WORDS)),
        document(),
    );
    proptest::collection::vec(event, 1..10).prop_map(|events| {
        let mut text = Vec::new();
        for (name, mut data) in events {
            if let Some(name) = name {
                data["type"] = Value::String(name.to_owned());
                text.extend_from_slice(format!("event: {name}\n").as_bytes());
            }
            text.extend_from_slice(format!("data: {data}\n\n").as_bytes());
        }
        text
    })
}

/// An edit of a parsed JSON document; `path` picks a node (each step a child, modulo its
/// count; the walk stops at a leaf).
#[derive(Debug, Clone)]
enum JsonEdit {
    /// The node becomes another value, usually of another type.
    Replace { path: Vec<u8>, with: Value },
    /// The node becomes a value of a neighbouring type made from it (`5` ↔ `"5"`, `x` → `[x]`,
    /// object → array of its values, string → object).
    SwapType { path: Vec<u8> },
    /// The node leaves its parent.
    Remove { path: Vec<u8> },
    /// The node becomes an extreme number.
    Number { path: Vec<u8>, with: Value },
    /// Every number under the node becomes this extreme number.
    AllNumbers { path: Vec<u8>, with: Value },
    /// The node is wrapped in `depth` arrays or objects.
    Nest {
        path: Vec<u8>,
        depth: usize,
        objects: bool,
    },
}

impl JsonEdit {
    fn path(&self) -> &[u8] {
        match self {
            Self::Replace { path, .. }
            | Self::SwapType { path }
            | Self::Remove { path }
            | Self::Number { path, .. }
            | Self::AllNumbers { path, .. }
            | Self::Nest { path, .. } => path,
        }
    }
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..6)
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (path(), json_value()).prop_map(|(path, with)| JsonEdit::Replace { path, with }),
        3 => path().prop_map(|path| JsonEdit::SwapType { path }),
        2 => path().prop_map(|path| JsonEdit::Remove { path }),
        2 => (path(), edge_number()).prop_map(|(path, with)| JsonEdit::Number { path, with }),
        1 => (path(), edge_number()).prop_map(|(path, with)| JsonEdit::AllNumbers { path, with }),
        1 => (path(), 1usize..300, any::<bool>())
            .prop_map(|(path, depth, objects)| JsonEdit::Nest { path, depth, objects }),
    ]
}

/// The node at `path` under `value`.
fn node<'a>(value: &'a mut Value, path: &[u8]) -> &'a mut Value {
    let Some((&step, rest)) = path.split_first() else {
        return value;
    };
    let children = match &*value {
        Value::Array(items) => items.len(),
        Value::Object(fields) => fields.len(),
        _ => 0,
    };
    if children == 0 {
        return value;
    }
    let at = usize::from(step) % children;
    match value {
        Value::Array(items) => node(&mut items[at], rest),
        Value::Object(fields) => node(fields.values_mut().nth(at).unwrap(), rest),
        other => other,
    }
}

fn apply_json(value: &mut Value, edit: &JsonEdit) {
    match edit {
        JsonEdit::Replace { path, with } | JsonEdit::Number { path, with } => {
            *node(value, path) = with.clone();
        }
        JsonEdit::SwapType { path } => {
            let target = node(value, path);
            *target = match target.take() {
                Value::Null => json!(false),
                Value::Bool(b) => json!(u8::from(b)),
                Value::Number(n) => Value::String(n.to_string()),
                Value::String(s) => json!({ "text": s }),
                Value::Array(items) => json!({ "0": items }),
                Value::Object(fields) => Value::Array(fields.into_iter().map(|(_, v)| v).collect()),
            };
        }
        JsonEdit::Remove { path } => {
            // Remove the chosen child of the node one step above the end of the path.
            let Some((&last, parent_path)) = path.split_last() else {
                return;
            };
            match node(value, parent_path) {
                Value::Array(items) if !items.is_empty() => {
                    let at = usize::from(last) % items.len();
                    items.remove(at);
                }
                Value::Object(fields) if !fields.is_empty() => {
                    let at = usize::from(last) % fields.len();
                    let key = fields.keys().nth(at).cloned().unwrap();
                    fields.remove(&key);
                }
                _ => {}
            }
        }
        JsonEdit::AllNumbers { path, with } => every_number(node(value, path), with),
        JsonEdit::Nest {
            path,
            depth,
            objects,
        } => {
            let target = node(value, path);
            let mut nested = target.take();
            for _ in 0..*depth {
                nested = if *objects {
                    json!({ "a": nested })
                } else {
                    json!([nested])
                };
            }
            *target = nested;
        }
    }
}

/// Sets every number in `value` to `with`.
fn every_number(value: &mut Value, with: &Value) {
    match value {
        Value::Number(_) => *value = with.clone(),
        Value::Array(items) => items.iter_mut().for_each(|item| every_number(item, with)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|field| every_number(field, with)),
        _ => {}
    }
}

/// An edit of the serialised bytes; positions are taken modulo the length.
#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(usize),
    FlipBit {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    /// Inserts a byte sequence that is not UTF-8 (lone continuation byte, overlong, surrogate,
    /// truncated multi-byte sequence, 0xFF).
    InvalidUtf8 {
        at: usize,
        which: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    /// Replaces the digits found at or after `at` with a number no integer or float holds.
    HugeNumber {
        at: usize,
        which: usize,
    },
    /// Inserts `depth` opening brackets (a document nested past any recursion limit).
    DeepNesting {
        at: usize,
        depth: usize,
    },
}

const INVALID_UTF8: &[&[u8]] = &[
    b"\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\xff",
    b"\xf4\x90\x80\x80",
];

const HUGE_NUMBERS: &[&str] = &[
    "18446744073709551616",
    "-9223372036854775809",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "99999999999999999999999999999999999999999999999999999999999999999999999999",
    "0.000000000000000000000000000000000000000000000000000000000000000000001",
];

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        2 => any::<usize>().prop_map(ByteEdit::Truncate),
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::FlipBit { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| ByteEdit::Set { at, byte }),
        2 => (any::<usize>(), any::<usize>())
            .prop_map(|(at, which)| ByteEdit::InvalidUtf8 { at, which }),
        1 => (any::<usize>(), 0usize..64).prop_map(|(at, len)| ByteEdit::Delete { at, len }),
        1 => (any::<usize>(), 0usize..64).prop_map(|(at, len)| ByteEdit::Duplicate { at, len }),
        2 => (any::<usize>(), any::<usize>())
            .prop_map(|(at, which)| ByteEdit::HugeNumber { at, which }),
        1 => (any::<usize>(), 1usize..300)
            .prop_map(|(at, depth)| ByteEdit::DeepNesting { at, depth }),
    ]
}

fn apply_bytes(bytes: &mut Vec<u8>, edit: &ByteEdit) {
    let len = bytes.len();
    let pos = |at: usize| if len == 0 { 0 } else { at % len };
    match *edit {
        ByteEdit::Truncate(at) => bytes.truncate(pos(at)),
        ByteEdit::FlipBit { at, bit } if len > 0 => bytes[pos(at)] ^= 1 << bit,
        ByteEdit::Set { at, byte } if len > 0 => bytes[pos(at)] = byte,
        ByteEdit::InvalidUtf8 { at, which } => {
            let at = pos(at);
            let junk = INVALID_UTF8[which % INVALID_UTF8.len()];
            bytes.splice(at..at, junk.iter().copied());
        }
        ByteEdit::Delete { at, len: n } => {
            let at = pos(at);
            bytes.drain(at..(at + n).min(len));
        }
        ByteEdit::Duplicate { at, len: n } => {
            let at = pos(at);
            let copy = bytes[at..(at + n).min(len)].to_vec();
            bytes.splice(at..at, copy);
        }
        ByteEdit::HugeNumber { at, which } => {
            let Some(start) = bytes
                .iter()
                .skip(pos(at))
                .position(u8::is_ascii_digit)
                .map(|i| i + pos(at))
            else {
                return;
            };
            let end = bytes[start..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(bytes.len(), |i| i + start);
            let number = HUGE_NUMBERS[which % HUGE_NUMBERS.len()].as_bytes();
            bytes.splice(start..end, number.iter().copied());
        }
        ByteEdit::DeepNesting { at, depth } => {
            let at = pos(at);
            bytes.splice(at..at, std::iter::repeat_n(b'[', depth));
        }
        ByteEdit::FlipBit { .. } | ByteEdit::Set { .. } => {}
    }
}

/// Calls `edit(position, count, value)` on the fixture's JSON: the body (position 0 of 1), or
/// the data of each of its `count` SSE events (whose `event:` line is kept).
fn edit_fixture(fixture: &str, mut edit: impl FnMut(usize, usize, &mut Value)) -> Vec<u8> {
    if let Ok(mut value) = serde_json::from_str::<Value>(fixture) {
        edit(0, 1, &mut value);
        return serde_json::to_vec(&value).unwrap();
    }
    let mut events = split_events(fixture.as_bytes(), fixture.len());
    let count = events.len();
    for (position, event) in events.iter_mut().enumerate() {
        let Some(mut value) = sse::data(event).and_then(|d| serde_json::from_slice(&d).ok()) else {
            continue;
        };
        edit(position, count, &mut value);
        let mut rebuilt: Vec<u8> = event
            .split(|&b| b == b'\n')
            .filter(|line| line.starts_with(b"event:"))
            .flat_map(|line| line.iter().copied().chain([b'\n']))
            .collect();
        rebuilt.extend_from_slice(format!("data: {value}\n\n").as_bytes());
        *event = Bytes::from(rebuilt);
    }
    events.concat()
}

/// Applies JSON edits to a fixture, then byte edits to the result. In a stream, each JSON edit
/// goes to the event its path's first step picks.
fn mutate(fixture: &str, json_edits: &[JsonEdit], byte_edits: &[ByteEdit]) -> Vec<u8> {
    let mut bytes = edit_fixture(fixture, |position, count, value| {
        for edit in json_edits {
            if usize::from(edit.path().first().copied().unwrap_or(0)) % count == position {
                apply_json(value, edit);
            }
        }
    });
    for edit in byte_edits {
        apply_bytes(&mut bytes, edit);
    }
    bytes
}

/// `cases` is the count for two protocols: every input goes through every protocol's decoders
/// and each result through every protocol's encoders, so more protocols get fewer cases to
/// stay within the time budget. `PROPTEST_CASES` overrides it.
fn config(cases: u32) -> ProptestConfig {
    let protocols = u32::try_from(codecs().len()).unwrap_or(u32::MAX).max(2);
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases * 2 / protocols),
        // No regression files written next to the sources; a failure prints its input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..768), chunk in 1usize..64) {
        check_input(&input, chunk)?;
    }

    #[test]
    fn arbitrary_json_documents(doc in document(), chunk in 1usize..64) {
        check_input(doc.to_string().as_bytes(), chunk)?;
        // The same document as one SSE event.
        check_input(format!("data: {doc}\n\n").as_bytes(), chunk)?;
    }

    #[test]
    fn arbitrary_sse_streams(stream in sse_stream(), chunk in 1usize..64) {
        check_input(&stream, chunk)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn mutated_fixtures(
        fixture in proptest::sample::select(all_fixtures()),
        json_edits in proptest::collection::vec(json_edit(), 0..4),
        byte_edits in proptest::collection::vec(byte_edit(), 0..3),
        chunk in 1usize..200,
    ) {
        check_input(&mutate(fixture, &json_edits, &byte_edits), chunk)?;
    }
}

fn stream_event() -> impl Strategy<Value = StreamEvent> {
    // Small indices so parts collide and interleave; now and then one no protocol would send.
    let index = prop_oneof![8 => 0usize..4, 1 => Just(usize::MAX), 1 => any::<usize>()];
    let text = prop_oneof![
        proptest::sample::select(WORDS).prop_map(str::to_owned),
        any::<String>(),
    ];
    let count = proptest::option::of(prop_oneof![0u64..1000, Just(u64::MAX)]);
    let usage = (count.clone(), count.clone(), count.clone(), count).prop_map(
        |(input, output, cached, reasoning)| TokenUsage {
            input,
            output,
            cached,
            reasoning,
        },
    );
    let finish = prop_oneof![
        Just(FinishReason::Stop),
        Just(FinishReason::Length),
        Just(FinishReason::ToolCalls),
        Just(FinishReason::ContentFilter),
        text.clone().prop_map(FinishReason::Other),
    ];
    prop_oneof![
        1 => (text.clone(), text.clone()).prop_map(|(id, model)| StreamEvent::MessageStart { id, model }),
        4 => (index.clone(), text.clone()).prop_map(|(index, text)| StreamEvent::TextDelta { index, text }),
        2 => (index.clone(), text.clone(), text.clone())
            .prop_map(|(index, id, name)| StreamEvent::ToolCallStart { index, id, name }),
        3 => (index.clone(), text.clone())
            .prop_map(|(index, fragment)| StreamEvent::ToolCallArgsDelta { index, fragment }),
        2 => (index.clone(), text.clone()).prop_map(|(index, text)| StreamEvent::ReasoningDelta { index, text }),
        1 => (index, text.clone())
            .prop_map(|(index, signature)| StreamEvent::ReasoningSignature { index, signature }),
        2 => usage.prop_map(StreamEvent::Usage),
        2 => finish.prop_map(StreamEvent::Finish),
        1 => text.prop_map(|message| StreamEvent::Error { message }),
    ]
}

proptest! {
    #![proptest_config(config(384))]

    /// Encoders cope with any order of events, not only what today's decoders emit: a missing
    /// `MessageStart`, usage after the finish, deltas for parts never started, errors anywhere.
    #[test]
    fn stream_encoders_accept_any_event_sequence(
        events in proptest::collection::vec(stream_event(), 0..24),
    ) {
        encode_everywhere(&events)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic sweeps over the fixtures.

#[test]
fn fixtures_decode_with_their_own_protocol() {
    for codec in codecs() {
        for body in codec.requests {
            let request = (codec.request_to_canonical)(body.as_bytes());
            assert!(request.is_ok(), "{}: {request:?}", codec.name);
        }
        for body in codec.responses {
            let response = (codec.response_to_canonical)(body.as_bytes());
            assert!(response.is_ok(), "{}: {response:?}", codec.name);
        }
        for text in codec.streams {
            let decoded = (codec.decode_stream)(&split_events(text.as_bytes(), 7));
            assert_eq!(decoded.errors, 0, "{}", codec.name);
            assert!(
                decoded.done,
                "{}: the fixture stream is complete",
                codec.name
            );
            assert!(decoded.finish.is_empty(), "{}", codec.name);
        }
    }
}

/// Every fixture cut short at every byte; the events a cut stream decodes to are encoded for a
/// sample of the cuts (each costs a whole re-encoding).
#[test]
fn fixtures_truncated_at_every_byte() {
    for codec in codecs() {
        for body in codec.requests.iter().chain(codec.responses) {
            let bytes = body.as_bytes();
            for cut in 0..bytes.len() {
                check_body(&bytes[..cut]).unwrap();
            }
        }
        for text in codec.streams {
            let bytes = text.as_bytes();
            for cut in 0..bytes.len() {
                check_stream(&bytes[..cut], bytes.len(), cut % 16 == 0).unwrap();
            }
        }
    }
}

/// Every fixture with a nesting no recursion limit allows, at a few places (the decoders must
/// refuse it, not overflow the stack).
#[test]
fn fixtures_nested_past_any_limit() {
    for fixture in all_fixtures() {
        for at in [0, 1, fixture.len() / 3, fixture.len() / 2] {
            let mut bytes = fixture.as_bytes().to_vec();
            apply_bytes(&mut bytes, &ByteEdit::DeepNesting { at, depth: 100_000 });
            check_input(&bytes, bytes.len()).unwrap();
        }
    }
}

/// Every fixture with all its numbers set to each extreme in turn (indices, counters,
/// timestamps, temperatures: whatever the fixture has).
#[test]
fn fixtures_with_every_number_at_an_extreme() {
    let extremes = [
        json!(u64::MAX),
        json!(i64::MIN),
        json!(-1),
        json!(1e308),
        json!(0.5),
    ];
    for fixture in all_fixtures() {
        for with in &extremes {
            let input = edit_fixture(fixture, |_, _, value| every_number(value, with));
            check_input(&input, 64).unwrap();
        }
    }
}

/// Regression: `anthropic_messages` summed `input_tokens + cache_read_input_tokens +
/// cache_creation_input_tokens` unchecked, so a provider's usage that overflows u64 panicked
/// in a debug build (wrapped in release).
#[test]
fn usage_sums_saturate_in_anthropic_usage() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":"end_turn","usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":1,"output_tokens":1}}"#;
    let usage = anthropic_messages::response_usage(body).unwrap();
    // Each count, and their sum, is clamped to the ledger's maximum (issue 15).
    assert_eq!(
        usage.input,
        Some(flexiproxy_protocol::canonical::MAX_TOKENS)
    );
    let _ = anthropic_messages::response_to_canonical(body);
    let event = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"m\",\"usage\":{\"input_tokens\":18446744073709551615,\"cache_creation_input_tokens\":1}}}\n\n";
    let _ = anthropic_messages::StreamDecoder::default().decode(event);
}

/// Regression: `openai_chat` wrote `total_tokens: prompt + completion` unchecked, so usage
/// with `input` + `output` > u64::MAX panicked in a debug build (wrapped in release).
#[test]
fn usage_sums_saturate_in_openai_total_tokens() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":18446744073709551615}}"#;
    let response = anthropic_messages::response_to_canonical(body).unwrap();
    let whole: Value =
        serde_json::from_slice(&openai_chat::response_from_canonical(&response, CREATED)).unwrap();
    assert_eq!(
        whole["usage"]["total_tokens"],
        flexiproxy_protocol::canonical::MAX_TOKENS + 1,
        "the provider's count is clamped, then the sum is made"
    );
    let mut encoder = openai_chat::StreamEncoder::new("m", CREATED, true);
    let mut out = Vec::new();
    encoder.encode(&StreamEvent::Usage(response.usage), &mut out);
    encoder.finish(&mut out);
}

/// Cutting a stream at any byte must not change what it decodes to: the splitter reassembles
/// events, so one-byte pieces decode like the whole text.
#[test]
fn streams_split_at_every_byte_decode_the_same() {
    for codec in codecs() {
        for text in codec.streams {
            let whole = (codec.decode_stream)(&split_events(text.as_bytes(), text.len()));
            let bytewise = (codec.decode_stream)(&split_events(text.as_bytes(), 1));
            assert_eq!(whole.events, bytewise.events, "{}", codec.name);
            for cut in 1..text.len() {
                let mut splitter = EventSplitter::default();
                let mut events = splitter
                    .push(Bytes::copy_from_slice(&text.as_bytes()[..cut]))
                    .unwrap();
                events.extend(
                    splitter
                        .push(Bytes::copy_from_slice(&text.as_bytes()[cut..]))
                        .unwrap(),
                );
                events.extend(splitter.finish());
                let split = (codec.decode_stream)(&events);
                assert_eq!(whole.events, split.events, "{} cut at {cut}", codec.name);
            }
        }
    }
}
