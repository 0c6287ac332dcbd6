//! What a client asked for, as the request path carries it: the body as it arrived (never
//! decoded on the way in, so the same-protocol fast path can forward its bytes), the protocol
//! it speaks, and for Gemini clients what the URL said. `server::client_api` builds these;
//! `plan` routes them; `prepare` turns one into what a candidate is sent.

use bytes::Bytes;

use crate::error::GatewayError;
use crate::proxy::send::gemini_model;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::gemini::Framing;
use flexiproxy_protocol::openai_chat::Endpoint;

/// A client's request as it arrived, before decoding.
pub(crate) struct ClientRequest {
    pub protocol: Protocol,
    /// The name recorded in usage rows.
    pub endpoint: &'static str,
    pub body: Bytes,
    /// Gemini clients name the model and whether they stream in the URL, not the body.
    pub gemini: Option<GeminiCall>,
}

impl ClientRequest {
    /// The model the client named (in the body, or in a Gemini URL), if any.
    pub(crate) fn requested_model(&self) -> Result<Option<String>, GatewayError> {
        if let Some(call) = &self.gemini {
            return Ok(Some(gemini_model(&call.model).to_owned()));
        }
        flexiproxy_protocol::rewrite::body_model(&self.body)
            .map_err(|e| GatewayError::BadJson(e.to_string()))
    }
}

/// What a Gemini client's URL says.
#[derive(Debug, Clone)]
pub(crate) struct GeminiCall {
    pub model: String,
    pub stream: bool,
    pub framing: Framing,
}

/// What one client request asks for.
pub(super) enum Job {
    /// A generation in any of the four protocols.
    Generate(ClientRequest),
    /// OpenAI's legacy completions or embeddings (OpenAI-compatible providers only).
    Forward(Endpoint, Bytes),
}

impl Job {
    /// The model the client named, if any.
    pub(super) fn requested_model(&self) -> Result<Option<String>, GatewayError> {
        match self {
            Self::Generate(client) => client.requested_model(),
            Self::Forward(_, body) => flexiproxy_protocol::rewrite::body_model(body)
                .map_err(|e| GatewayError::BadJson(e.to_string())),
        }
    }
}

/// How a streaming Gemini client wants its stream framed.
pub(super) fn client_framing(job: &Job) -> Option<Framing> {
    match job {
        Job::Generate(client) => client
            .gemini
            .as_ref()
            .filter(|call| call.stream)
            .map(|call| call.framing),
        Job::Forward(..) => None,
    }
}
