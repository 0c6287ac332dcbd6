//! `countTokens` both ways. Its body is a `generateContent` request in all but the envelope,
//! so the request inside decodes through `request_decode` and encodes through
//! `request_encode`; only the envelope (`contents` alone, or `generateContentRequest` with the
//! model it must name) and the `totalTokens` answer are this file's own.

use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::request_decode::request_from_wire;
use super::request_encode::out_request;
use super::wire::{InContent, InRequest, OutRequest};
use crate::canonical::{DecodeError, Request};
use crate::json_schema::SchemaTooLarge;
use crate::to_json;

// ---------------------------------------------------------------------------------------------
// countTokens.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InCountTokens {
    #[serde(default, alias = "generate_content_request")]
    generate_content_request: Option<InRequest>,
    #[serde(default)]
    contents: Vec<InContent>,
}

/// Decodes a client's `countTokens` body: `{"contents": […]}` or
/// `{"generateContentRequest": {…}}` (which also counts system instruction and tools).
pub fn count_tokens_request_to_canonical(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: InCountTokens = serde_json::from_slice(body)?;
    match wire.generate_content_request {
        Some(inner) => request_from_wire(inner),
        None => request_from_wire(InRequest {
            contents: wire.contents,
            system_instruction: None,
            tools: None,
            tool_config: None,
            generation_config: None,
            extra: Map::new(),
        }),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutCountTokens<'a> {
    generate_content_request: OutCountRequest<'a>,
}

#[derive(Serialize)]
struct OutCountRequest<'a> {
    model: String,
    #[serde(flatten)]
    request: OutRequest<'a>,
}

/// Encodes a `countTokens` body for a Gemini provider. It names the model
/// (`models/{request.model}`): the inner request must, although the URL does too.
pub fn count_tokens_request_from_canonical(request: &Request) -> Result<Vec<u8>, SchemaTooLarge> {
    let model = request.model.trim_start_matches("models/");
    Ok(to_json(&OutCountTokens {
        generate_content_request: OutCountRequest {
            model: format!("models/{model}"),
            request: out_request(request)?,
        },
    }))
}

/// The `countTokens` answer for a Gemini client.
pub fn count_tokens_body(total: u64) -> Vec<u8> {
    to_json(&serde_json::json!({ "totalTokens": total }))
}

/// `totalTokens` from a Gemini provider's `countTokens` answer.
pub fn count_tokens_total(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Total {
        total_tokens: Option<u64>,
    }
    serde_json::from_slice::<Total>(body).ok()?.total_tokens
}
