//! The translated path: a client and a provider that speak different protocols, bridged
//! through `canonical`. Any of the four client protocols reaches any of the four provider
//! protocols this way (the same-protocol pairs take `prepare`'s byte fast path instead).
//!
//! The request is decoded by the client's protocol module, its model replaced by the adapter's,
//! and encoded by the provider's (via `protocol::codec`). A whole answer is decoded and
//! re-encoded at once. A stream goes through [`Translate`]: each upstream chunk is split into
//! SSE events, decoded into canonical events, encoded in the client's protocol and sent on at
//! once, so the client sees tokens as the provider produces them. Usage from the stream is
//! merged as it arrives and recorded by `meter::Meter` when the stream ends, breaks off or the
//! client hangs up. A provider that breaks off mid-stream gets the client its protocol's error
//! event, never a silent truncation.
//!
//! Sending, provider keys and timeouts are `send`'s and the usage record `meter`'s, shared
//! with the same-protocol fast path.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;

use crate::error::{ERROR_BODY_CAP, GatewayError};
use crate::proxy::ClientRequest;
use crate::proxy::deliver;
use crate::proxy::meter::Meter;
use crate::proxy::send::Opened;
use crate::routing::Target;
use crate::routing::registry::Provider;
use crate::store::usage::Outcome;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::{
    DecodeError, ProofKind, Request, StreamEvent, merge_usage, tag_proof,
};
use flexiproxy_protocol::codec::{self, ClientView, StreamDecoder, StreamEncoder};
use flexiproxy_protocol::error_message::error_detail;
use flexiproxy_protocol::openai_chat;
use flexiproxy_protocol::sse::EventSplitter;

/// The most bytes of a non-streaming upstream answer accepted for translation.
const ANSWER_CAP: usize = 64 * 1024 * 1024;

pub(crate) fn bad_request(error: DecodeError) -> GatewayError {
    match error {
        DecodeError::Json(reason) => GatewayError::BadJson(reason),
        DecodeError::Invalid(reason) => GatewayError::Invalid(reason),
    }
}

/// Decodes a client request into the canonical model, with the facts from its URL applied.
pub(crate) fn decode(client: &ClientRequest) -> Result<Request, GatewayError> {
    let mut request = codec::decode_request(client.protocol, &client.body).map_err(bad_request)?;
    request.adopt_signature_tags();
    if let Some(call) = &client.gemini {
        request.model.clone_from(&call.model);
        request.stream = call.stream;
    }
    Ok(request)
}

/// Refuses what the provider cannot do for this request, with what to do instead.
fn check_supported(request: &Request, provider: &Provider) -> Result<(), GatewayError> {
    let stateful = request
        .extra
        .get("previous_response_id")
        .is_some_and(|id| !id.is_null());
    if stateful && provider.protocol != Protocol::OpenAiResponses {
        return Err(GatewayError::Invalid(format!(
            "`previous_response_id` needs a provider that keeps conversations (openai_responses), \
             and provider `{}` speaks {}; send the whole conversation in `input` instead \
             (for Codex CLI: keep `store = false`, the default for custom providers)",
            provider.id, provider.protocol
        )));
    }
    Ok(())
}

/// What the answer's way back needs to know: the two protocols, the client's view of the
/// request, and whether it streams.
pub(crate) struct Translation {
    client_protocol: Protocol,
    provider_protocol: Protocol,
    view: ClientView,
    pub(crate) stream: bool,
}

/// The request for a provider of another protocol: decoded once (kept in `decoded` for the
/// next candidate of a failover), the target's model set, encoded for its protocol.
pub(crate) fn prepare(
    client: &ClientRequest,
    decoded: &mut Option<Request>,
    target: &Target,
) -> Result<(Bytes, Translation), GatewayError> {
    let request = match decoded {
        Some(request) => request,
        None => decoded.insert(decode(client)?),
    };
    check_supported(request, &target.provider)?;
    let mut view = ClientView::of(client.protocol, request, openai_chat::unix_now());
    if let Some(call) = &client.gemini {
        view.gemini_framing = call.framing;
    }
    let stream = request.stream;
    let model = std::mem::replace(&mut request.model, target.model.clone());
    let outgoing = codec::encode_request(target.provider.protocol, request);
    request.model = model;
    let outgoing = outgoing.map_err(|e| GatewayError::Invalid(e.to_string()))?;
    Ok((
        Bytes::from(outgoing),
        Translation {
            client_protocol: client.protocol,
            provider_protocol: target.provider.protocol,
            view,
            stream,
        },
    ))
}

impl Translation {
    /// The client's answer from the provider's (`upstream`'s first chunk is already in).
    /// `max_event` caps one SSE event of the provider's stream (`--max-sse-event-bytes`).
    pub(crate) async fn deliver(
        self,
        upstream: Opened,
        meter: Meter,
        max_event: usize,
    ) -> Result<Response, GatewayError> {
        if !upstream.status.is_success() {
            return Err(upstream_error(upstream, meter).await);
        }
        if !self.stream {
            return whole_answer(
                upstream,
                meter,
                self.provider_protocol,
                self.client_protocol,
                &self.view,
            )
            .await;
        }
        let content_type = if self.client_protocol == Protocol::Gemini
            && self.view.gemini_framing == flexiproxy_protocol::gemini::Framing::JsonArray
        {
            "application/json"
        } else {
            "text/event-stream"
        };
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CACHE_CONTROL, "no-cache");
        if let Some(headers) = response.headers_mut() {
            pass_request_id(&upstream.headers, headers);
        }
        let translate = Translate {
            upstream: upstream.body,
            splitter: EventSplitter::new(max_event),
            decoder: StreamDecoder::new(self.provider_protocol),
            encoder: StreamEncoder::new(self.client_protocol, &self.view),
            issuer: self.provider_protocol,
            stream_proof: if self.provider_protocol == Protocol::OpenAiResponses {
                ProofKind::Encrypted
            } else {
                ProofKind::Signature
            },
            meter,
        };
        response
            .body(Body::from_stream(translate))
            .map_err(|e| GatewayError::Internal(e.to_string()))
    }
}

fn pass_request_id(upstream: &axum::http::HeaderMap, headers: &mut axum::http::HeaderMap) {
    if let Some(id) = upstream.get("x-request-id") {
        headers.insert("x-request-id", id.clone());
    }
}

/// A non-streaming answer: the provider's whole body decoded and re-encoded for the client.
async fn whole_answer(
    mut upstream: Opened,
    mut meter: Meter,
    provider_protocol: Protocol,
    client_protocol: Protocol,
    view: &ClientView,
) -> Result<Response, GatewayError> {
    let provider = meter.record.provider_id.clone();
    let mut headers = axum::http::HeaderMap::new();
    pass_request_id(&upstream.headers, &mut headers);
    let body = match upstream.read_capped(ANSWER_CAP).await {
        Ok(body) => body,
        Err(e) => {
            let error = GatewayError::UpstreamInvalid {
                provider,
                reason: format!("the answer broke off: {}", e.describe()),
            };
            meter.record.error = Some(error.to_string());
            meter.finish(Outcome::Interrupted);
            return Err(error);
        }
    };
    meter.saw_bytes();
    let mut answer = match codec::decode_response(provider_protocol, &body) {
        Ok(answer) => answer,
        Err(e) => {
            let error = GatewayError::UpstreamInvalid {
                provider,
                reason: format!("not a {provider_protocol} answer: {e}"),
            };
            meter.fail(&error);
            return Err(error);
        }
    };
    if answer.model.is_empty() {
        answer.model.clone_from(&view.model);
    }
    answer.tag_signatures(provider_protocol);
    meter.record.tokens = answer.usage;
    meter.finish(Outcome::Completed);
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        codec::encode_response(client_protocol, &answer, view),
    )
        .into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}

/// A provider's error status as the client's error: 4xx keep their status, 5xx become 502
/// naming the provider and its status; `retry-after` is kept.
pub(crate) async fn upstream_error(mut upstream: Opened, mut meter: Meter) -> GatewayError {
    let status = upstream.status;
    let retry_after = upstream
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = upstream
        .read_capped(ERROR_BODY_CAP)
        .await
        .unwrap_or_default();
    let error = GatewayError::UpstreamStatus {
        provider: meter.record.provider_id.clone(),
        status: status.as_u16(),
        detail: error_detail(&body),
        retry_after,
    };
    meter.record.error = Some(error.to_string());
    meter.finish(Outcome::UpstreamError);
    error
}

/// The client's stream: the provider's events, re-encoded in the client's protocol chunk by
/// chunk.
struct Translate {
    upstream: crate::proxy::upstream_body::BodyStream,
    splitter: EventSplitter,
    decoder: StreamDecoder,
    encoder: StreamEncoder,
    /// The provider's protocol, whose signatures are tagged on their way to the client.
    issuer: Protocol,
    /// What the provider's stream signature events carry: Responses streams send encrypted
    /// reasoning there, the others signatures.
    stream_proof: ProofKind,
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
                        "provider `{}` sent a stream event the gateway could not read: {e}",
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
                StreamEvent::ReasoningSignature { index, signature } => {
                    let tagged = StreamEvent::ReasoningSignature {
                        index: *index,
                        signature: tag_proof(self.issuer, self.stream_proof, signature),
                    };
                    self.encoder.encode(&tagged, out);
                    continue;
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
                    match this.splitter.push(chunk) {
                        Ok(events) => this.events(events, &mut out),
                        Err(mut too_large) => {
                            this.events(std::mem::take(&mut too_large.events), &mut out);
                            if !this.meter.finished && !this.decoder.is_done() {
                                let message = format!(
                                    "provider `{}`: {too_large}",
                                    this.meter.record.provider_id
                                );
                                this.encode(&[StreamEvent::Error { message }], &mut out);
                                this.end(Outcome::Interrupted, &mut out);
                            }
                        }
                    }
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
                        let message = deliver::cut_message(&this.meter.record.provider_id, &e);
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
