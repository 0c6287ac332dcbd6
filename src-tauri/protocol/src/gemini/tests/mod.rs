//! Unit tests of the Gemini codec, one file per part of the module: `request`, `response`,
//! `count_tokens` and `stream`. The helpers below decode and encode a request through the
//! public functions, as a caller would. Translations between protocols are tested in the
//! crate's `tests/translation.rs`.

use serde_json::{Value, json};

use super::*;

mod count_tokens;
mod request;
mod response;
mod stream;

fn decode(value: &Value) -> Request {
    request_to_canonical(value.to_string().as_bytes()).unwrap()
}

fn encode(request: &Request) -> Value {
    serde_json::from_slice(&request_from_canonical(request).unwrap()).unwrap()
}
