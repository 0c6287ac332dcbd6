//! The OpenAI-compatible API family (Chat Completions, legacy Completions, Embeddings).
//!
//! Two uses. On the same-protocol path the gateway forwards the body as bytes and this module only
//! says which endpoints exist and reads token usage from a response body or stream chunk
//! without building the whole message ([`response_usage`], [`chunk_usage`]). On a translated
//! path it converts Chat Completions to and from `canonical`: [`request_to_canonical`],
//! [`request_from_canonical`], [`response_to_canonical`], [`response_from_canonical`], and the
//! streaming [`StreamDecoder`] (provider chunks to canonical events) and [`StreamEncoder`]
//! (canonical events to client chunks). All wire types are private.
//!
//! The translation is used when a Chat Completions client reaches a provider of another
//! protocol, or a Chat Completions provider serves a client of another protocol. Only
//! `choices[0]` is read and written (`n > 1` has no counterpart elsewhere). OpenAI-compatible
//! hosts differ in what they accept, so what is written sticks to the common core:
//! `max_tokens` (except for OpenAI's reasoning models, which refuse it and want
//! `max_completion_tokens`), string content where there are no images, and reasoning text as
//! DeepSeek's `reasoning_content`.
//!
//! One file per concern, and every public item is re-exported here, so callers name
//! `openai_chat::…` whichever file holds it:
//! - `wire`: the serde types of requests, answers, chunks and usage, seen by nothing outside
//!   this module;
//! - `request`: requests both ways, with the per-model rules for what a host accepts;
//! - `response`: whole answers both ways, the fast path's usage readers and finish reasons;
//! - `stream_decode` / `stream_encode`: provider chunks to canonical events, and canonical
//!   events to a client's chunks;
//! - here: the endpoints the gateway relays and the [`Wire`] implementation the codec calls.

mod request;
mod response;
mod stream_decode;
mod stream_encode;
mod wire;

#[cfg(test)]
mod tests;

pub use request::{
    client_wants_usage, request_from_canonical, request_to_canonical, response_format_from_wire,
    response_format_to_wire,
};
pub use response::{
    ChunkUsage, chunk_usage, response_from_canonical, response_to_canonical, response_usage,
    unix_now,
};
pub use stream_decode::StreamDecoder;
pub use stream_encode::StreamEncoder;

use crate::canonical::{DecodeError, Request, Response, TokenUsage};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;

/// The OpenAI-compatible endpoints the gateway relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The path below the provider's base URL (which ends in `/v1` or similar).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
        }
    }

    /// The name recorded in usage rows.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }

    /// Whether the endpoint streams and accepts `stream_options.include_usage`.
    pub fn streams(self) -> bool {
        !matches!(self, Self::Embeddings)
    }
}

/// OpenAI Chat Completions (and the OpenAI-compatible family) on the wire.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiChat;

impl Wire for OpenAiChat {
    fn decode_request(&self, body: &[u8]) -> Result<Request, DecodeError> {
        request_to_canonical(body)
    }
    fn encode_request(&self, request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
        Ok(request_from_canonical(request))
    }
    fn decode_response(&self, body: &[u8]) -> Result<Response, DecodeError> {
        response_to_canonical(body)
    }
    fn encode_response(&self, response: &Response, view: &ClientView) -> Vec<u8> {
        response_from_canonical(response, view.created)
    }
    fn response_usage(&self, body: &[u8]) -> Option<TokenUsage> {
        response_usage(body)
    }
    fn event_usage(&self, data: &[u8]) -> Option<TokenUsage> {
        chunk_usage(data).usage
    }
    fn stream_decoder(&self) -> Box<dyn DecodeStream> {
        Box::new(StreamDecoder::default())
    }
    fn stream_encoder(&self, view: &ClientView) -> Box<dyn EncodeStream> {
        Box::new(StreamEncoder::new(
            view.model.clone(),
            view.created,
            view.include_usage,
        ))
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        crate::openai_responses::report_body(report)
    }
    fn client_view(&self, request: &Request, created: u64) -> ClientView {
        ClientView {
            include_usage: client_wants_usage(request),
            ..ClientView::plain(request, created)
        }
    }
}
