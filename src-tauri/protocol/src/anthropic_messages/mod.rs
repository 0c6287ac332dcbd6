//! Anthropic Messages (`POST /v1/messages`) to and from the canonical model.
//!
//! Used when a client speaking Anthropic reaches a provider of another protocol, or the other
//! way round; Anthropic-to-Anthropic traffic takes the byte-forwarding fast path and never comes
//! here. The wire types are private: callers see [`canonical`](crate::canonical) values, JSON bytes and SSE bytes.
//!
//! - [`request_to_canonical`] / [`request_from_canonical`]: the request both ways.
//! - [`response_to_canonical`] / [`response_from_canonical`]: the non-streaming answer.
//! - [`StreamDecoder`]: Anthropic SSE events from a provider into [`StreamEvent`]s.
//! - [`StreamEncoder`]: [`StreamEvent`]s into the SSE events the official SDKs parse
//!   (`message_start`, `content_block_start/delta/stop` with block indices, `message_delta`,
//!   `message_stop`, `ping`, `error`).
//! - [`error_body`] / [`error_type`]: the `{"type":"error","error":{…}}` body.
//!
//! What this format carries that the canonical model does not (`cache_control`, `citations`,
//! `metadata`, `top_k`, server tools, document blocks) is kept in `extra`, `native_tools` and
//! [`Part::Unknown`], and only written back to an Anthropic provider.
//!
//! The module follows the way data flows: `wire` holds the serde shapes of requests and
//! answers, `request` the request both ways, `response` whole answers, usage readers and error
//! bodies, `stream_decode` and `stream_encode` the two stream directions with their event
//! shapes. This file re-exports their public items and implements [`Wire`] over them.
//!
//! [`Part::Unknown`]: crate::canonical::Part::Unknown

mod request;
mod response;
mod stream_decode;
mod stream_encode;
#[cfg(test)]
mod tests;
mod wire;

pub use request::{request_from_canonical, request_to_canonical};
pub use response::{
    error_body, error_type, event_usage, response_from_canonical, response_to_canonical,
    response_usage,
};
pub use stream_decode::StreamDecoder;
pub use stream_encode::StreamEncoder;

use crate::Protocol;
use crate::canonical::{DecodeError, Request, Response, TokenUsage};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;

const PROTOCOL: Protocol = Protocol::AnthropicMessages;

/// The Messages API version (`anthropic-version`) the gateway sends when it talks to Anthropic
/// itself: relaying a client that named none, listing models, and Claude subscription
/// accounts. One constant, so moving to a newer version is one edit.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by Anthropic and optional everywhere else. 4096 is the largest
/// output every Claude model accepts (the oldest cap at 4096), so a default never makes the
/// provider reject the request; clients that want longer answers say so.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Budget used when the client asks for reasoning without saying how much.
const DEFAULT_THINKING_BUDGET: u64 = 8192;

/// Anthropic Messages on the wire.
#[derive(Debug, Clone, Copy)]
pub struct AnthropicMessages;

impl Wire for AnthropicMessages {
    fn decode_request(&self, body: &[u8]) -> Result<Request, DecodeError> {
        request_to_canonical(body)
    }
    fn encode_request(&self, request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
        Ok(request_from_canonical(request))
    }
    fn decode_response(&self, body: &[u8]) -> Result<Response, DecodeError> {
        response_to_canonical(body)
    }
    fn encode_response(&self, response: &Response, _view: &ClientView) -> Vec<u8> {
        response_from_canonical(response)
    }
    fn response_usage(&self, body: &[u8]) -> Option<TokenUsage> {
        response_usage(body)
    }
    fn event_usage(&self, data: &[u8]) -> Option<TokenUsage> {
        event_usage(data)
    }
    fn stream_decoder(&self) -> Box<dyn DecodeStream> {
        Box::new(StreamDecoder::default())
    }
    fn stream_encoder(&self, view: &ClientView) -> Box<dyn EncodeStream> {
        Box::new(StreamEncoder::new(view.model.clone()))
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        error_body(error_type(report.status), report.message)
    }
}
