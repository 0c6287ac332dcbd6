//! The translated path: a client and a provider that speak different protocols, bridged through
//! `canonical`. So far one pair: Anthropic Messages clients (Claude Code, the Anthropic SDKs)
//! in front of `openai_chat` providers (DeepSeek and every other OpenAI-compatible host).
//!
//! The request is decoded by `anthropic_messages`, its model replaced by the adapter's, and
//! encoded by `openai_chat` (streams always ask for the final usage chunk). A whole answer is
//! decoded and re-encoded at once. A stream goes through [`Translate`]: each upstream chunk is
//! split into SSE events, decoded into canonical events, encoded as Anthropic events and sent
//! on at once, so the client sees tokens as the provider produces them. Usage from the stream
//! is merged as it arrives and recorded by `relay::Meter` when the stream ends, breaks off or
//! the client hangs up. A provider that breaks off mid-stream gets the client an Anthropic
//! `error` event, never a silent truncation.
//!
//! Sending, provider keys, timeouts and the usage record are `relay`'s, shared with the
//! same-protocol fast path.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use crate::canonical::{DecodeError, StreamEvent, merge_usage};
use crate::error::{GatewayError, Rendered};
use crate::protocol::anthropic_messages;
use crate::protocol::openai_chat;
use crate::protocol::sse::EventSplitter;
use crate::registry::{Adapter, Provider};
use crate::relay::{self, KeyStyle, Meter};
use crate::state::AppState;
use crate::usage::Outcome;

/// The most bytes of an upstream error body read to find its message.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// The most bytes of a non-streaming upstream answer accepted for translation.
const ANSWER_CAP: usize = 64 * 1024 * 1024;

/// The endpoint name recorded in usage rows.
const ENDPOINT: &str = "messages";

fn bad_request(error: DecodeError) -> GatewayError {
    match error {
        DecodeError::Json(reason) => GatewayError::BadJson(reason),
        DecodeError::Invalid(reason) => GatewayError::Invalid(reason),
    }
}

/// An Anthropic Messages request answered by an `openai_chat` provider.
pub(crate) async fn anthropic_to_openai_chat(
    state: &AppState,
    started: Instant,
    adapter: &Adapter,
    provider: &Provider,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let mut request = anthropic_messages::request_to_canonical(&body).map_err(bad_request)?;
    drop(body);
    let client_model = std::mem::replace(&mut request.model, adapter.model_id.clone());
    let stream = request.stream;
    let outgoing = openai_chat::request_from_canonical(&request);
    drop(request);

    let url = relay::upstream_url(adapter, provider, "/chat/completions");
    let http = relay::upstream_request(state, provider, &url, KeyStyle::Bearer, stream)?;
    let mut meter = Meter::new(state, started, adapter, ENDPOINT, stream);
    let upstream = relay::send(state, http.body(outgoing), url, &mut meter).await?;

    if !upstream.status().is_success() {
        return Ok(upstream_error(upstream, meter).await);
    }
    if !stream {
        return whole_answer(upstream, meter).await;
    }
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache");
    if let Some(headers) = response.headers_mut() {
        pass_request_id(&upstream, headers);
    }
    let translate = Translate {
        upstream: Box::pin(upstream.bytes_stream()),
        splitter: EventSplitter::default(),
        decoder: openai_chat::StreamDecoder::default(),
        encoder: anthropic_messages::StreamEncoder::new(client_model),
        meter,
    };
    response
        .body(Body::from_stream(translate))
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

fn pass_request_id(upstream: &reqwest::Response, headers: &mut axum::http::HeaderMap) {
    if let Some(id) = upstream.headers().get("x-request-id") {
        headers.insert("x-request-id", id.clone());
    }
}

/// Reads up to `cap` bytes of the upstream's body (the rest is not waited for).
async fn read_capped(upstream: reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut chunks = upstream.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

/// A non-streaming answer: the whole Chat Completions body re-encoded for Anthropic.
async fn whole_answer(
    upstream: reqwest::Response,
    mut meter: Meter,
) -> Result<Response, GatewayError> {
    let provider = meter.record.provider_id.clone();
    let mut headers = axum::http::HeaderMap::new();
    pass_request_id(&upstream, &mut headers);
    let body = match read_capped(upstream, ANSWER_CAP).await {
        Ok(body) => body,
        Err(e) => {
            let error = GatewayError::UpstreamInvalid {
                provider,
                reason: format!("the answer broke off: {}", relay::describe(&e)),
            };
            meter.record.error = Some(error.to_string());
            meter.finish(Outcome::Interrupted);
            return Err(error);
        }
    };
    meter.saw_bytes();
    let answer = match openai_chat::response_to_canonical(&body) {
        Ok(answer) => answer,
        Err(e) => {
            let error = GatewayError::UpstreamInvalid {
                provider,
                reason: format!("not a Chat Completions answer: {e}"),
            };
            meter.fail(&error);
            return Err(error);
        }
    };
    meter.record.tokens = answer.usage;
    meter.finish(Outcome::Completed);
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        anthropic_messages::response_from_canonical(&answer),
    )
        .into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}

/// A provider's error status, answered in Anthropic's error shape: 4xx keep their status, 5xx
/// become 502 naming the provider and its status; `retry-after` is kept.
async fn upstream_error(upstream: reqwest::Response, mut meter: Meter) -> Response {
    let status = upstream.status();
    let retry_after = upstream.headers().get(header::RETRY_AFTER).cloned();
    let body = read_capped(upstream, ERROR_BODY_CAP)
        .await
        .unwrap_or_default();
    let error = GatewayError::UpstreamStatus {
        provider: meter.record.provider_id.clone(),
        status: status.as_u16(),
        detail: error_detail(&body),
    };
    meter.record.error = Some(error.to_string());
    meter.finish(Outcome::UpstreamError);
    let mut response = Rendered::anthropic(error).into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The message inside an upstream error body (`{"error":{"message"}}`, `{"message"}`,
/// `{"error":"…"}`), else the start of the body as text.
fn error_detail(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            let error = value.get("error").unwrap_or(&value);
            error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .or_else(|| error.as_str())
                .map(str::to_owned)
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.is_empty() {
        return "no error message".to_owned();
    }
    let mut end = text.len().min(500);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The client's stream: Chat Completions chunks from the provider, re-encoded as Anthropic
/// events chunk by chunk.
struct Translate {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    splitter: EventSplitter,
    decoder: openai_chat::StreamDecoder,
    encoder: anthropic_messages::StreamEncoder,
    meter: Meter,
}

impl Translate {
    /// Decodes and re-encodes whole events; notes usage and errors on the meter.
    fn events(&mut self, events: impl IntoIterator<Item = Bytes>, out: &mut Vec<u8>) {
        for event in events {
            if self.decoder.is_done() {
                break;
            }
            match self.decoder.decode(&event) {
                Ok(decoded) => self.encode(&decoded, out),
                Err(e) => {
                    let message = format!(
                        "provider `{}` sent a chunk that is not Chat Completions: {e}",
                        self.meter.record.provider_id
                    );
                    self.encode(&[StreamEvent::Error { message }], out);
                    // Nothing after a garbled chunk can be trusted; end here.
                    self.end(Outcome::UpstreamError, out);
                    return;
                }
            }
        }
    }

    fn encode(&mut self, decoded: &[StreamEvent], out: &mut Vec<u8>) {
        for event in decoded {
            match event {
                StreamEvent::Usage(usage) => merge_usage(&mut self.meter.record.tokens, usage),
                StreamEvent::Error { message } if self.meter.record.error.is_none() => {
                    self.meter.record.error = Some(message.clone());
                }
                _ => {}
            }
            self.encoder.encode(event, out);
        }
    }

    /// Closes the client's stream (no-op after an error event) and records the exchange.
    fn end(&mut self, outcome: Outcome, out: &mut Vec<u8>) {
        self.encoder.finish(out);
        let outcome = if outcome == Outcome::Completed && self.meter.record.error.is_some() {
            Outcome::UpstreamError
        } else {
            outcome
        };
        self.meter.finish(outcome);
    }
}

impl Stream for Translate {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.meter.finished {
                return Poll::Ready(None);
            }
            let mut out = Vec::new();
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.meter.saw_bytes();
                    let events = this.splitter.push(chunk);
                    this.events(events, &mut out);
                    // `[DONE]` (or an error chunk): everything is in, usage included.
                    if this.decoder.is_done() && !this.meter.finished {
                        this.end(Outcome::Completed, &mut out);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let complete = this.decoder.finish().is_empty();
                    if complete {
                        this.end(Outcome::Completed, &mut out);
                    } else {
                        let message = format!(
                            "provider `{}` broke off the response: {}",
                            this.meter.record.provider_id,
                            relay::describe(&e)
                        );
                        this.encode(&[StreamEvent::Error { message }], &mut out);
                        this.end(Outcome::Interrupted, &mut out);
                    }
                }
                Poll::Ready(None) => {
                    if let Some(tail) = this.splitter.finish() {
                        this.events([tail], &mut out);
                    }
                    if !this.meter.finished {
                        let tail = this.decoder.finish();
                        let outcome = if tail.is_empty() {
                            Outcome::Completed
                        } else {
                            Outcome::Interrupted
                        };
                        let tail: Vec<StreamEvent> = tail
                            .into_iter()
                            .map(|event| match event {
                                StreamEvent::Error { message } => StreamEvent::Error {
                                    message: format!(
                                        "provider `{}`: {message}",
                                        this.meter.record.provider_id
                                    ),
                                },
                                other => other,
                            })
                            .collect();
                        this.encode(&tail, &mut out);
                        this.end(outcome, &mut out);
                    }
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Bytes::from(out))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_come_from_the_body() {
        assert_eq!(
            error_detail(br#"{"error":{"message":"Insufficient Balance","type":"x"}}"#),
            "Insufficient Balance"
        );
        assert_eq!(error_detail(br#"{"error":"nope"}"#), "nope");
        assert_eq!(error_detail(b"Bad Gateway\n"), "Bad Gateway");
        assert_eq!(error_detail(b""), "no error message");
    }
}
