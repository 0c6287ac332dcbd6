//! OpenAI Responses (`POST /v1/responses`) to and from the canonical model.
//!
//! Used when a Responses client (Codex CLI, the OpenAI SDKs' `client.responses`) reaches a
//! provider of another protocol, or a Responses provider (`{base}/responses`) serves a client
//! of another protocol; Responses-to-Responses traffic takes the byte-forwarding fast path and
//! never comes here. The wire types are private: callers see [`canonical`](crate::canonical)
//! values, JSON bytes and SSE bytes.
//!
//! - [`request_to_canonical`] / [`request_from_canonical`]: the request both ways. Input items
//!   become messages: `message` items by role, `function_call` / `custom_tool_call` items join
//!   the assistant turn, their outputs form tool turns, `reasoning` items become
//!   [`Reasoning`] parts issued by this protocol.
//! - [`response_to_canonical`] / [`response_from_canonical`]: the non-streaming `response`
//!   object.
//! - [`StreamDecoder`]: a provider's `response.*` events into [`StreamEvent`]s.
//! - [`StreamEncoder`]: [`StreamEvent`]s into the events the OpenAI SDKs and Codex CLI parse
//!   (`response.created`, output items with their content parts and deltas, and a terminal
//!   `response.completed` / `response.incomplete` / `response.failed` carrying the whole
//!   response), each with `type` and an increasing `sequence_number`.
//! - [`error_body`]: OpenAI's `{"error":{"message","type","param","code"}}`.
//!
//! Custom (freeform) tools, which Codex uses for `apply_patch`, take one string of text
//! instead of a JSON object. Other protocols only know JSON tools, so a custom tool becomes a
//! function taking `{"input": "<text>"}`, and its calls come back to the client as
//! `custom_tool_call` items with the text: [`custom_tool_names`] reads the names from a decoded
//! request, and [`StreamEncoder::with_custom_tools`] /
//! [`response_from_canonical_with_custom_tools`] take them.
//!
//! Reasoning that another protocol signed (Anthropic thinking signatures) travels to a
//! Responses client inside `encrypted_content`, tagged with its issuer
//! ([`canonical::tag_proof`](crate::canonical::tag_proof)), so that when the client sends the
//! item back it decodes to the issuer's own reasoning again. Responses has no stop sequences: canonical `stop`
//! is not sent to a Responses provider.
//!
//! One file per concern, and every public item is re-exported here, so callers name
//! `openai_responses::…` whichever file holds it:
//! - `wire`: the serde types of requests, input and output items, the `response` object, the
//!   error body and the stream's events, seen by nothing outside this module;
//! - `request`: requests both ways, with the item and content-part conversions the answer and
//!   the stream share;
//! - `response`: the whole `response` object both ways, the usage readers, the error body,
//!   and the finish, status and id rules the stream follows too;
//! - `stream_decode` / `stream_encode`: a provider's events to canonical events, and canonical
//!   events to a client's;
//! - here: the [`Wire`] implementation the codec calls.
//!
//! [`Reasoning`]: crate::canonical::Reasoning
//! [`StreamEvent`]: crate::canonical::StreamEvent

mod request;
mod response;
mod stream_decode;
mod stream_encode;
mod wire;

#[cfg(test)]
mod tests;

pub use request::{custom_tool_names, request_from_canonical, request_to_canonical};
pub use response::{
    error_body, event_usage, report_body, response_from_canonical,
    response_from_canonical_with_custom_tools, response_to_canonical, response_usage,
};
pub use stream_decode::StreamDecoder;
pub use stream_encode::StreamEncoder;

use crate::Protocol;
use crate::canonical::{DecodeError, Request, Response, TokenUsage};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;

const PROTOCOL: Protocol = Protocol::OpenAiResponses;

/// OpenAI Responses on the wire.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiResponses;

impl Wire for OpenAiResponses {
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
        response_from_canonical_with_custom_tools(response, view.created, &view.custom_tools)
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
        Box::new(
            StreamEncoder::new(view.model.clone(), view.created)
                .with_custom_tools(view.custom_tools.clone()),
        )
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        report_body(report)
    }
    fn client_view(&self, request: &Request, created: u64) -> ClientView {
        ClientView {
            custom_tools: custom_tool_names(request),
            ..ClientView::plain(request, created)
        }
    }
}
