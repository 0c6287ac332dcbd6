//! Google Gemini (`generateContent`, `streamGenerateContent`, `countTokens`) to and from the
//! canonical model.
//!
//! Used when a Gemini client (the google-genai SDKs, Gemini CLI) reaches a provider of another
//! protocol, or a Gemini provider (`generativelanguage.googleapis.com/v1beta`) serves a client
//! of another protocol; Gemini-to-Gemini traffic takes the byte-forwarding fast path. Gemini
//! bodies carry no model (it is in the URL), so [`request_to_canonical`] leaves
//! [`Request::model`] empty and [`request_from_canonical`] writes none; the caller names the
//! model in the URL. Whether a request streams is also in the URL (`:streamGenerateContent`),
//! so the caller sets [`Request::stream`]. All wire types are private.
//!
//! - [`request_to_canonical`] / [`request_from_canonical`]: the request both ways (camelCase
//!   and the snake_case spellings REST samples use are both read).
//! - [`response_to_canonical`] / [`response_from_canonical`]: a whole `GenerateContentResponse`.
//! - [`StreamDecoder`]: a provider's `?alt=sse` stream, one whole response chunk per event.
//! - [`StreamEncoder`]: chunks for a client, as SSE or as the streamed JSON array Google sends
//!   without `alt=sse` ([`Framing`]).
//! - [`count_tokens_request_to_canonical`], [`count_tokens_request_from_canonical`],
//!   [`count_tokens_body`], [`count_tokens_total`]: `countTokens`.
//! - [`error_body`] / [`error_status`]: `{"error":{"code","message","status"}}`.
//!
//! Mapping decisions worth knowing:
//! - Usage: Gemini's `candidatesTokenCount` leaves out thinking, canonical output includes it:
//!   output = candidates + thoughts, reasoning = thoughts, input = prompt (+ tool-use prompt),
//!   which already counts `cachedContentTokenCount`. The encoders invert this.
//! - Thought signatures: a `thought: true` part becomes [`Reasoning`] with its signature. A
//!   signature on any other part (Gemini 3 signs the first function call of a step) becomes a
//!   text-less [`Reasoning`] with the signature in `encrypted`, just before that part, and goes
//!   back onto the part that follows it. Function calls that reach a Gemini provider without a
//!   signature (history from another provider) carry Google's documented placeholder
//!   [`SKIP_SIGNATURE`], which Gemini 3 requires.
//! - Tool-call ids: Gemini may or may not give ids. Missing ones are made deterministically
//!   (prefix `gemini_fc_`); results are matched to calls by id, else by name in order. Only ids
//!   that may have come from Gemini are sent to a Gemini provider (not ours, not another
//!   provider's `toolu_…`/`call_…`), since Gemini matches by name and order anyway.
//! - Tool schemas go out cleaned by [`json_schema::for_gemini`]; Gemini clients' OpenAPI-style
//!   schemas come in through [`json_schema::from_gemini`].
//! - `generationConfig` and `toolConfig` keys without a canonical home are kept in
//!   [`Request::extra`] under those names and merged back only for a Gemini target; other
//!   top-level fields (`safetySettings`, `cachedContent`, `labels`, …) are kept as they are.
//!
//! The module follows the way data flows: `wire` holds the serde shapes, `request_decode` and
//! `request_encode` the request both ways (with the part decoder and encoder everything else
//! shares), `response` whole answers, usage readers and error bodies, `stream_decode` and
//! `stream_encode` the two stream directions, and `count_tokens` its own endpoint. This file
//! re-exports their public items and implements [`Wire`] over them.
//!
//! [`Reasoning`]: crate::canonical::Reasoning
//! [`json_schema::for_gemini`]: crate::json_schema::for_gemini
//! [`json_schema::from_gemini`]: crate::json_schema::from_gemini

mod count_tokens;
mod request_decode;
mod request_encode;
mod response;
mod stream_decode;
mod stream_encode;
#[cfg(test)]
mod tests;
mod wire;

pub use count_tokens::{
    count_tokens_body, count_tokens_request_from_canonical, count_tokens_request_to_canonical,
    count_tokens_total,
};
pub use request_decode::request_to_canonical;
pub use request_encode::request_from_canonical;
pub use response::{
    error_body, error_status, event_usage, response_from_canonical, response_to_canonical,
    response_usage,
};
pub use stream_decode::StreamDecoder;
pub use stream_encode::{Framing, StreamEncoder};

use crate::Protocol;
use crate::canonical::{DecodeError, Request, Response, TokenUsage};
use crate::codec::{ClientView, DecodeStream, EncodeStream, ErrorReport, Wire};
use crate::json_schema::SchemaTooLarge;

const PROTOCOL: Protocol = Protocol::Gemini;

/// Google's documented stand-in signature for function calls Gemini did not produce (history
/// from another model): Gemini 3 refuses a step whose first function call has no signature.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Prefix of the tool-call ids this module makes for calls Gemini sent without one.
const GENERATED_ID: &str = "gemini_fc_";

/// Id prefixes of other providers' tool calls; such ids are not sent to Gemini.
const FOREIGN_IDS: [&str; 5] = ["toolu_", "call_", "fc_", "functions.", "chatcmpl"];

/// The largest thinking budget every Gemini 2.5 model accepts (Flash and Flash-Lite stop at
/// 24576, Pro at 32768); budgets derived from another protocol are capped here. Gemini 3 maps
/// budgets to its levels itself.
const MAX_THINKING_BUDGET: u64 = 24_576;

/// Fields of a request body this module writes itself, so a client's copy in `extra` is not
/// written twice (`generationConfig`/`toolConfig` leftovers are merged into ours instead).
const OWN_FIELDS: [&str; 9] = [
    "contents",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "tool_config",
    "generationConfig",
    "generation_config",
    "model",
];

/// Gemini's finish reasons, passed through when a Gemini answer is re-encoded for Gemini.
const FINISH_REASONS: [&str; 24] = [
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "OTHER",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "MALFORMED_FUNCTION_CALL",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_OTHER",
    "NO_IMAGE",
    "IMAGE_RECITATION",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
    "MISSING_THOUGHT_SIGNATURE",
    "MALFORMED_RESPONSE",
    "MODEL_ARMOR",
    "FINISH_REASON_UNSPECIFIED",
    "ESCALATION",
    "CONTINUATION",
    "PUP_LIMITED_DISABLED",
];

/// Google's `generateContent` on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Gemini;

impl Wire for Gemini {
    fn decode_request(&self, body: &[u8]) -> Result<Request, DecodeError> {
        request_to_canonical(body)
    }
    fn encode_request(&self, request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
        request_from_canonical(request)
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
        Box::new(StreamEncoder::new(view.model.clone(), view.gemini_framing))
    }
    fn error_body(&self, report: &ErrorReport<'_>) -> Vec<u8> {
        error_body(report.status, report.message)
    }
}
