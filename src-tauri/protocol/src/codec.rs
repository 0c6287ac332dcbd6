//! One entry point per translation step, chosen by [`Protocol`]: the switchboard between
//! `translate` (and `relay`, for usage on the fast path) and the per-protocol modules.
//!
//! Every protocol module has the same shape (request and response both ways, a stream decoder,
//! a stream encoder, usage readers, an error body); this module is the only place that matches
//! on the protocol to pick one, so adding a protocol means one arm per function here and
//! nothing in the request path.

use crate::canonical::TokenUsage;
use crate::canonical::{DecodeError, Request, Response, StreamEvent};
use crate::{Protocol, anthropic_messages, gemini, json_schema, openai_chat, openai_responses};

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
        Self {
            model: request.model.clone(),
            created,
            include_usage: protocol == Protocol::OpenAiChat
                && openai_chat::client_wants_usage(request),
            gemini_framing: gemini::Framing::Sse,
            custom_tools: if protocol == Protocol::OpenAiResponses {
                openai_responses::custom_tool_names(request)
            } else {
                Vec::new()
            },
        }
    }
}

/// Decodes a client's request body.
pub fn decode_request(protocol: Protocol, body: &[u8]) -> Result<Request, DecodeError> {
    match protocol {
        Protocol::OpenAiChat => openai_chat::request_to_canonical(body),
        Protocol::OpenAiResponses => openai_responses::request_to_canonical(body),
        Protocol::AnthropicMessages => anthropic_messages::request_to_canonical(body),
        Protocol::Gemini => gemini::request_to_canonical(body),
    }
}

/// Encodes a request body for a provider. Only Gemini's can fail: its tool schemas are
/// inlined within a budget ([`json_schema::Budget`]).
pub fn encode_request(
    protocol: Protocol,
    request: &Request,
) -> Result<Vec<u8>, json_schema::SchemaTooLarge> {
    Ok(match protocol {
        Protocol::OpenAiChat => openai_chat::request_from_canonical(request),
        Protocol::OpenAiResponses => openai_responses::request_from_canonical(request),
        Protocol::AnthropicMessages => anthropic_messages::request_from_canonical(request),
        Protocol::Gemini => gemini::request_from_canonical(request)?,
    })
}

/// Decodes a provider's whole answer.
pub fn decode_response(protocol: Protocol, body: &[u8]) -> Result<Response, DecodeError> {
    match protocol {
        Protocol::OpenAiChat => openai_chat::response_to_canonical(body),
        Protocol::OpenAiResponses => openai_responses::response_to_canonical(body),
        Protocol::AnthropicMessages => anthropic_messages::response_to_canonical(body),
        Protocol::Gemini => gemini::response_to_canonical(body),
    }
}

/// Encodes a whole answer for a client.
pub fn encode_response(protocol: Protocol, response: &Response, view: &ClientView) -> Vec<u8> {
    match protocol {
        Protocol::OpenAiChat => openai_chat::response_from_canonical(response, view.created),
        Protocol::OpenAiResponses => openai_responses::response_from_canonical_with_custom_tools(
            response,
            view.created,
            &view.custom_tools,
        ),
        Protocol::AnthropicMessages => anthropic_messages::response_from_canonical(response),
        Protocol::Gemini => gemini::response_from_canonical(response),
    }
}

/// The usage in a provider's whole answer (fast path).
pub fn response_usage(protocol: Protocol, body: &[u8]) -> Option<TokenUsage> {
    match protocol {
        Protocol::OpenAiChat => openai_chat::response_usage(body),
        Protocol::OpenAiResponses => openai_responses::response_usage(body),
        Protocol::AnthropicMessages => anthropic_messages::response_usage(body),
        Protocol::Gemini => gemini::response_usage(body),
    }
}

/// The usage in one SSE event's data (fast path); fields it knows replace earlier ones.
pub fn event_usage(protocol: Protocol, data: &[u8]) -> Option<TokenUsage> {
    match protocol {
        Protocol::OpenAiChat => openai_chat::chunk_usage(data).usage,
        Protocol::OpenAiResponses => openai_responses::event_usage(data),
        Protocol::AnthropicMessages => anthropic_messages::event_usage(data),
        Protocol::Gemini => gemini::event_usage(data),
    }
}

/// A provider's stream, decoded into canonical events.
#[derive(Debug)]
pub enum StreamDecoder {
    OpenAiChat(openai_chat::StreamDecoder),
    OpenAiResponses(openai_responses::StreamDecoder),
    AnthropicMessages(anthropic_messages::StreamDecoder),
    Gemini(gemini::StreamDecoder),
}

impl StreamDecoder {
    pub fn new(protocol: Protocol) -> Self {
        match protocol {
            Protocol::OpenAiChat => Self::OpenAiChat(Default::default()),
            Protocol::OpenAiResponses => Self::OpenAiResponses(Default::default()),
            Protocol::AnthropicMessages => Self::AnthropicMessages(Default::default()),
            Protocol::Gemini => Self::Gemini(Default::default()),
        }
    }

    /// Decodes one whole SSE event.
    pub fn decode(&mut self, event: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        match self {
            Self::OpenAiChat(d) => d.decode(event),
            Self::OpenAiResponses(d) => d.decode(event),
            Self::AnthropicMessages(d) => d.decode(event),
            Self::Gemini(d) => d.decode(event),
        }
    }

    /// Whether the stream's last event (or an error) was seen.
    pub fn is_done(&self) -> bool {
        match self {
            Self::OpenAiChat(d) => d.is_done(),
            Self::OpenAiResponses(d) => d.is_done(),
            Self::AnthropicMessages(d) => d.is_done(),
            Self::Gemini(d) => d.is_done(),
        }
    }

    /// The upstream body ended: nothing if the stream was complete, else one error event.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        match self {
            Self::OpenAiChat(d) => d.finish(),
            Self::OpenAiResponses(d) => d.finish(),
            Self::AnthropicMessages(d) => d.finish(),
            Self::Gemini(d) => d.finish(),
        }
    }
}

/// Canonical events, encoded as the client's stream.
#[derive(Debug)]
pub enum StreamEncoder {
    OpenAiChat(openai_chat::StreamEncoder),
    OpenAiResponses(openai_responses::StreamEncoder),
    AnthropicMessages(anthropic_messages::StreamEncoder),
    Gemini(gemini::StreamEncoder),
}

impl StreamEncoder {
    pub fn new(protocol: Protocol, view: &ClientView) -> Self {
        let model = view.model.clone();
        match protocol {
            Protocol::OpenAiChat => Self::OpenAiChat(openai_chat::StreamEncoder::new(
                model,
                view.created,
                view.include_usage,
            )),
            Protocol::OpenAiResponses => Self::OpenAiResponses(
                openai_responses::StreamEncoder::new(model, view.created)
                    .with_custom_tools(view.custom_tools.clone()),
            ),
            Protocol::AnthropicMessages => {
                Self::AnthropicMessages(anthropic_messages::StreamEncoder::new(model))
            }
            Protocol::Gemini => {
                Self::Gemini(gemini::StreamEncoder::new(model, view.gemini_framing))
            }
        }
    }

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Self::OpenAiChat(e) => e.encode(event, out),
            Self::OpenAiResponses(e) => e.encode(event, out),
            Self::AnthropicMessages(e) => e.encode(event, out),
            Self::Gemini(e) => e.encode(event, out),
        }
    }

    /// Ends the client's stream with its protocol's closing events.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Self::OpenAiChat(e) => e.finish(out),
            Self::OpenAiResponses(e) => e.finish(out),
            Self::AnthropicMessages(e) => e.finish(out),
            Self::Gemini(e) => e.finish(out),
        }
    }
}
