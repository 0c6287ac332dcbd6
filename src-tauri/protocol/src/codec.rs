//! The shape every wire protocol has, and the one place that picks a protocol's implementation.
//!
//! Every protocol module implements [`Wire`] (requests and responses both ways, a stream
//! decoder, a stream encoder, usage readers, an error body); [`Protocol::wire`] is the list of
//! implementations. The gateway calls the free functions below, or a [`Wire`] directly, and
//! never matches on the protocol to reach a module: adding a protocol is one folder, one
//! `impl Wire` and one line in that list.

use std::fmt::Debug;

use crate::canonical::{DecodeError, Request, Response, StreamEvent, TokenUsage};
use crate::json_schema::SchemaTooLarge;
use crate::{Protocol, gemini, sse};

/// One wire protocol: how its requests, answers, streams, usage and errors look.
pub trait Wire: Sync {
    /// Decodes a client's request body.
    fn decode_request(&self, body: &[u8]) -> Result<Request, DecodeError>;
    /// Encodes a request body for a provider; fails only where the protocol's tool schemas
    /// must be inlined within a budget ([`crate::json_schema::Budget`]).
    fn encode_request(&self, request: &Request) -> Result<Vec<u8>, SchemaTooLarge>;
    /// Decodes a provider's whole answer.
    fn decode_response(&self, body: &[u8]) -> Result<Response, DecodeError>;
    /// Encodes a whole answer for a client.
    fn encode_response(&self, response: &Response, view: &ClientView) -> Vec<u8>;
    /// The usage in a provider's whole answer (fast path).
    fn response_usage(&self, body: &[u8]) -> Option<TokenUsage>;
    /// The usage in one SSE event's data (fast path); fields it knows replace earlier ones.
    fn event_usage(&self, data: &[u8]) -> Option<TokenUsage>;
    /// A decoder for a provider's stream.
    fn stream_decoder(&self) -> Box<dyn DecodeStream>;
    /// An encoder of canonical events into a client's stream.
    fn stream_encoder(&self, view: &ClientView) -> Box<dyn EncodeStream>;
    /// The error body a client of this protocol reads.
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8>;
    /// What this protocol's client encoders need to know of the client's request, beyond the
    /// model and the time (which every protocol's view carries).
    fn client_view(&self, request: &Request, created: u64) -> ClientView {
        ClientView::plain(request, created)
    }
}

/// A provider's stream, decoded into canonical events one whole SSE event at a time.
pub trait DecodeStream: Debug + Send {
    /// Decodes one whole SSE event: its `data` (an event without any, such as a comment or a
    /// bare `event:` line, decodes to nothing).
    fn decode(&mut self, event: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        match sse::data(event) {
            Some(data) => self.decode_data(&data),
            None => Ok(Vec::new()),
        }
    }
    /// Decodes the `data` of one SSE event, its lines joined.
    fn decode_data(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, DecodeError>;
    /// Whether the stream's last event (or an error) was seen.
    fn is_done(&self) -> bool;
    /// The upstream body ended: nothing if the stream was complete, else one error event.
    fn finish(&mut self) -> Vec<StreamEvent>;
}

/// Canonical events, encoded as a client's stream.
///
/// A client's stream has ended once its protocol's closing events or an error event were
/// written; after that [`encode`](Self::encode) and [`finish`](Self::finish) write nothing,
/// so a client never reads past the end it was shown. Each protocol's encoder writes the
/// events ([`encode_open`](Self::encode_open), [`end_stream`](Self::end_stream)) and says
/// when its stream ended ([`has_ended`](Self::has_ended)).
pub trait EncodeStream: Debug + Send {
    /// Appends the bytes for `event` to `out`, unless the stream has ended.
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if !self.has_ended() {
            self.encode_open(event, out);
        }
    }
    /// Ends the client's stream with its protocol's closing events, unless it has ended.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.has_ended() {
            self.end_stream(out);
        }
    }
    /// Whether the stream has ended (closing events or an error event written).
    fn has_ended(&self) -> bool;
    /// Appends the bytes for `event` to a stream that has not ended; an error event ends it.
    fn encode_open(&mut self, event: &StreamEvent, out: &mut Vec<u8>);
    /// Writes the protocol's closing events to a stream that has not ended, and ends it.
    fn end_stream(&mut self, out: &mut Vec<u8>);
}

/// An error on its way to a client, before it takes the client's protocol's shape.
#[derive(Debug, Clone, Copy)]
pub struct ErrorReport<'a> {
    /// The HTTP status it is answered with.
    pub status: u16,
    pub message: &'a str,
    /// A stable machine-readable code, where the caller has one (OpenAI's `code`).
    pub code: Option<&'a str>,
    /// The error's kind in OpenAI's terms (its `type`), where the caller knows better than
    /// the status does.
    pub kind: Option<&'a str>,
}

/// What a client's encoders need to know besides the canonical answer.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// The model named in the answer when the provider names none.
    pub model: String,
    /// Unix seconds for OpenAI's `created` / `created_at`.
    pub created: u64,
    /// Chat Completions clients get the usage chunk only when they asked for it.
    pub include_usage: bool,
    /// Gemini clients chose SSE (`?alt=sse`) or the streamed JSON array.
    pub gemini_framing: gemini::Framing,
    /// Responses clients: tools declared as `custom` (freeform), whose calls go back as
    /// `custom_tool_call` items.
    pub custom_tools: Vec<String>,
}

impl ClientView {
    /// The view for a decoded client request.
    pub fn of(protocol: Protocol, request: &Request, created: u64) -> Self {
        protocol.wire().client_view(request, created)
    }

    /// The view with nothing protocol-specific: what [`Wire::client_view`] starts from.
    pub fn plain(request: &Request, created: u64) -> Self {
        Self {
            model: request.model.clone(),
            created,
            include_usage: false,
            gemini_framing: gemini::Framing::Sse,
            custom_tools: Vec::new(),
        }
    }
}

/// Decodes a client's request body.
pub fn decode_request(protocol: Protocol, body: &[u8]) -> Result<Request, DecodeError> {
    protocol.wire().decode_request(body)
}

/// Encodes a request body for a provider.
pub fn encode_request(protocol: Protocol, request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
    protocol.wire().encode_request(request)
}

/// Decodes a provider's whole answer.
pub fn decode_response(protocol: Protocol, body: &[u8]) -> Result<Response, DecodeError> {
    protocol.wire().decode_response(body)
}

/// Encodes a whole answer for a client.
pub fn encode_response(protocol: Protocol, response: &Response, view: &ClientView) -> Vec<u8> {
    protocol.wire().encode_response(response, view)
}

/// The usage in a provider's whole answer (fast path).
pub fn response_usage(protocol: Protocol, body: &[u8]) -> Option<TokenUsage> {
    protocol.wire().response_usage(body)
}

/// The usage in one SSE event's data (fast path); fields it knows replace earlier ones.
pub fn event_usage(protocol: Protocol, data: &[u8]) -> Option<TokenUsage> {
    protocol.wire().event_usage(data)
}

/// The error body a client of `protocol` reads.
pub fn error_body(protocol: Protocol, report: &ErrorReport<'_>) -> Vec<u8> {
    protocol.wire().error_body(report)
}

/// A provider's stream, decoded into canonical events.
#[derive(Debug)]
pub struct StreamDecoder(Box<dyn DecodeStream>);

impl StreamDecoder {
    pub fn new(protocol: Protocol) -> Self {
        Self(protocol.wire().stream_decoder())
    }

    /// Decodes one whole SSE event.
    pub fn decode(&mut self, event: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        self.0.decode(event)
    }

    /// Whether the stream's last event (or an error) was seen.
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }

    /// The upstream body ended: nothing if the stream was complete, else one error event.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        self.0.finish()
    }
}

/// Canonical events, encoded as the client's stream.
#[derive(Debug)]
pub struct StreamEncoder(Box<dyn EncodeStream>);

impl StreamEncoder {
    pub fn new(protocol: Protocol, view: &ClientView) -> Self {
        Self(protocol.wire().stream_encoder(view))
    }

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        self.0.encode(event, out);
    }

    /// Ends the client's stream with its protocol's closing events.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.0.finish(out);
    }
}
