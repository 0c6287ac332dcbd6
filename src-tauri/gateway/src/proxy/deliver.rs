//! The client's answer on the same-protocol path: the upstream's status, passed-through
//! headers and body, relayed chunk by chunk by a [`Relay`] stream as they arrive. SSE chunks
//! are also fed to an `EventSplitter` to read usage (`protocol::codec`), and OpenAI's usage
//! chunk is dropped from the client's stream when the gateway itself asked for it. A stream
//! that breaks off ends with the protocol's own error event ([`stream_error_event`], also
//! used by `translate` and by `drain` at shutdown). When the stream ends, breaks, or the
//! client hangs up, the `meter::Meter` inside records the exchange once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;

use crate::error::GatewayError;
use crate::proxy::meter::Meter;
use crate::proxy::send::Opened;
use crate::proxy::upstream_body::{BodyError, BodyStream};
use crate::store::usage::Outcome;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::TokenUsage;
use flexiproxy_protocol::canonical::merge_usage;
use flexiproxy_protocol::codec;
use flexiproxy_protocol::openai_chat;
use flexiproxy_protocol::sse::{self, EventSplitter};

/// The most bytes of a non-streaming response kept aside to read its usage from.
const USAGE_BODY_CAP: usize = 8 * 1024 * 1024;

/// Upstream response headers worth passing to the client (request ids, rate-limit state).
fn passes_through(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == "x-request-id"
        || name == "retry-after"
        || name.starts_with("x-ratelimit-")
        || name.starts_with("openai-")
        || name == "request-id"
        || name.starts_with("anthropic-ratelimit-")
}

/// Copies the upstream headers worth passing on, with the content type.
pub(super) fn copy_headers(upstream: &HeaderMap, out: &mut HeaderMap) {
    for (name, value) in upstream {
        if passes_through(name) {
            out.append(name.clone(), value.clone());
        }
    }
    let content_type = upstream
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/json"));
    out.insert(header::CONTENT_TYPE, content_type);
}

/// The client's response for a same-protocol exchange: the upstream's status and body, relayed
/// chunk by chunk by a [`Relay`] that reads usage in `format` on the side. `strip_usage` drops
/// OpenAI's usage-only chunk (the gateway asked for it, the client did not).
pub(super) fn relay_response(
    upstream: Opened,
    mut meter: Meter,
    format: Protocol,
    strip_usage: bool,
    max_event: usize,
) -> Result<Response, GatewayError> {
    let status = upstream.status;
    let is_sse = upstream
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !status.is_success() {
        meter.record.error = Some(format!(
            "provider `{}` answered {status}",
            meter.record.provider_id
        ));
    }

    let mut response = Response::builder().status(status);
    if let Some(response_headers) = response.headers_mut() {
        copy_headers(&upstream.headers, response_headers);
        if is_sse {
            response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
    }
    let mode = if is_sse {
        Mode::Events {
            splitter: EventSplitter::new(max_event),
            strip_usage: strip_usage && format == Protocol::OpenAiChat,
        }
    } else {
        Mode::Whole {
            chunks: Vec::new(),
            size: 0,
        }
    };
    let relay = Relay {
        upstream: upstream.body,
        mode,
        format,
        pending: VecDeque::new(),
        meter,
    };
    response
        .body(Body::from_stream(relay))
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

enum Mode {
    /// An SSE stream: chunks pass through; whole events are inspected for usage.
    Events {
        splitter: EventSplitter,
        /// Drop the usage-only chunk: the gateway asked for it, the client did not.
        strip_usage: bool,
    },
    /// Any other body: chunks pass through and are kept aside to read usage at the end.
    Whole { chunks: Vec<Bytes>, size: usize },
}

/// The client's response body: the upstream's body, relayed chunk by chunk.
struct Relay {
    upstream: BodyStream,
    mode: Mode,
    /// The protocol of the body, to read usage in.
    format: Protocol,
    /// Events ready to send when a chunk had to be split (usage stripping).
    pending: VecDeque<Bytes>,
    meter: Meter,
}

impl Relay {
    /// Takes one upstream chunk; returns what to send now, if anything.
    fn on_chunk(&mut self, chunk: Bytes) -> Option<Bytes> {
        self.meter.saw_bytes();
        let format = self.format;
        match &mut self.mode {
            Mode::Whole { chunks, size } => {
                if *size + chunk.len() <= USAGE_BODY_CAP {
                    *size += chunk.len();
                    chunks.push(chunk.clone());
                }
                Some(chunk)
            }
            Mode::Events {
                splitter,
                strip_usage,
            } => {
                let strip = *strip_usage;
                let (events, too_large) = match splitter.push(chunk.clone()) {
                    Ok(events) => (events, None),
                    Err(mut error) => (std::mem::take(&mut error.events), Some(error)),
                };
                let mut kept = Vec::new();
                for event in events {
                    let usage_only =
                        read_event_usage(&event, format, &mut self.meter.record.tokens);
                    if strip && !usage_only {
                        kept.push(event);
                    }
                }
                if let Some(error) = too_large {
                    // The oversized event's start may have reached the client already (in
                    // earlier chunks): the error event closes it first. This chunk stays here.
                    let message = format!("provider `{}`: {error}", self.meter.record.provider_id);
                    self.meter.record.error = Some(message.clone());
                    self.meter.finish(Outcome::Interrupted);
                    kept.push(stream_error_event(format, &message, !strip));
                } else if !strip {
                    return Some(chunk);
                }
                let mut kept = kept.into_iter();
                let first = kept.next();
                self.pending.extend(kept);
                first
            }
        }
    }

    fn on_end(&mut self) -> Option<Bytes> {
        let mut rest = None;
        let format = self.format;
        match &mut self.mode {
            Mode::Whole { chunks, .. } => {
                let usage = if chunks.len() == 1 {
                    codec::response_usage(format, &chunks[0])
                } else {
                    codec::response_usage(format, &chunks.concat())
                };
                if let Some(usage) = usage {
                    self.meter.record.tokens = usage;
                }
            }
            Mode::Events { splitter, .. } => {
                // An unterminated last event is still the client's.
                if let Some(tail) = splitter.finish() {
                    read_event_usage(&tail, format, &mut self.meter.record.tokens);
                    rest = Some(tail);
                }
            }
        }
        let outcome =
            if StatusCode::from_u16(self.meter.record.status).is_ok_and(|s| s.is_success()) {
                Outcome::Completed
            } else {
                Outcome::UpstreamError
            };
        self.meter.finish(outcome);
        rest
    }
}

/// Reads usage from one SSE event into `tokens`; returns whether the event is usage-only
/// (OpenAI's final `choices: []` chunk; never in other protocols).
fn read_event_usage(event: &[u8], format: Protocol, tokens: &mut TokenUsage) -> bool {
    let Some(data) = sse::data(event) else {
        return false;
    };
    if format != Protocol::OpenAiChat {
        if let Some(usage) = codec::event_usage(format, &data) {
            merge_usage(tokens, &usage);
        }
        return false;
    }
    let read = openai_chat::chunk_usage(&data);
    if let Some(usage) = read.usage {
        *tokens = usage;
    }
    read.usage_only
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.meter.finished {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(out) = this.on_chunk(chunk) {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = cut_message(&this.meter.record.provider_id, &e);
                    this.meter.record.error = Some(message.clone());
                    this.meter.finish(Outcome::Interrupted);
                    // A stream of events ends with the protocol's own error event, so the
                    // client's SDK reports an error instead of a silently short answer. Any
                    // other body can only be cut off.
                    if let Mode::Events { splitter, .. } = &mut this.mode {
                        let partial = splitter.finish().is_some();
                        return Poll::Ready(Some(Ok(stream_error_event(
                            this.format,
                            &message,
                            partial,
                        ))));
                    }
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Ready(None) => {
                    if let Some(tail) = this.on_end() {
                        return Poll::Ready(Some(Ok(tail)));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Why an answer that had begun was cut, naming the provider.
pub(crate) fn cut_message(provider: &str, error: &BodyError) -> String {
    if error.is_silence() {
        format!(
            "provider `{provider}` stopped sending: {}",
            error.describe()
        )
    } else {
        format!(
            "provider `{provider}` broke off the response: {}",
            error.describe()
        )
    }
}

/// The error event that ends a relayed stream in `format`'s own shape. `partial` says an
/// unfinished event went out before, which the blank line closes first.
pub(crate) fn stream_error_event(format: Protocol, message: &str, partial: bool) -> Bytes {
    let (event, data) = match format {
        Protocol::OpenAiChat => (
            None,
            serde_json::json!({"error": {"message": message, "type": "upstream_error", "code": null}}),
        ),
        // The Responses SDKs raise on an `error` event; `error` inside it serves the ones that
        // read the nested form.
        Protocol::OpenAiResponses => (
            Some("error"),
            serde_json::json!({
                "type": "error", "code": "server_error", "message": message, "param": null,
                "error": {"type": "server_error", "message": message},
            }),
        ),
        Protocol::AnthropicMessages => (
            Some("error"),
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        ),
        Protocol::Gemini => (
            None,
            serde_json::json!({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}),
        ),
    };
    let mut out = String::new();
    if partial {
        out.push_str("\n\n");
    }
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
    Bytes::from(out)
}
