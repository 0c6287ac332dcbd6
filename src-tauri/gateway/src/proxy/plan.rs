//! Where every client request goes. [`answer`] (and [`forward`] for the OpenAI-compatible
//! family) authenticates the client (`authenticate`), asks `routing` for the request's
//! candidates (provider, model, credential) and tries them one at a time. Each attempt (`Try`)
//! reads top to bottom: `prepare` the body for the candidate (the same-protocol fast path or
//! `translate`), `send` it through the credential's `send::Upstream` (`send::ApiKey` for a
//! key, `account_relay::Login` for a subscription login), `classify` the answer, and `deliver`
//! it, with a `meter::Meter` timing the exchange throughout.
//!
//! An attempt that fails with 429, 5xx, 401/403, a timeout, a refused connection or a body
//! that breaks before its first byte rests its credential and the next candidate is tried; one
//! that fails on our side (`classify::Origin::Local`) tries the next without resting anything;
//! nothing reaches the client until an upstream's first chunk is in, so the client never sees
//! the failed attempts. A redirect skips the provider's other keys (its base URL is wrong, not
//! the key). When no candidate serves the request, the last failure is the client's answer:
//! a same-protocol client gets the provider's own error body, a translated one its protocol's
//! error.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use crate::clock::now_ms;
use crate::error::{ERROR_BODY_CAP, GatewayError};
use crate::proxy::account_relay::{self, Login};
use crate::proxy::authenticate::authenticate;
use crate::proxy::classify::{Origin, redirect_error, retryable};
use crate::proxy::deliver::{copy_headers, relay_response};
use crate::proxy::meter::Meter;
use crate::proxy::prepare::{self, AnswerPath};
use crate::proxy::request::{ClientRequest, Job};
use crate::proxy::send::{Answered, ApiKey, Opened, SendFailure, Sending, Upstream};
use crate::proxy::translate;
use crate::proxy::upstream_body::Silence;
use crate::routing::registry::{Adapter, ProviderKey};
use crate::routing::{self, Failure, Pick, Target};
use crate::state::AppState;
use crate::store::usage::Outcome;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::openai_chat::Endpoint;

/// The failure a request ends with when no other candidate serves it.
#[allow(
    clippy::large_enum_variant,
    reason = "one per request, and boxed inside `Attempt`"
)]
enum Held {
    Error(GatewayError),
    /// A same-protocol client gets the provider's own error answer.
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        meter: Meter,
    },
}

impl Held {
    /// Another candidate is being tried: the failed attempt is recorded as such.
    fn superseded(self) {
        if let Self::Answer {
            status, mut meter, ..
        } = self
        {
            meter.record.error = Some(format!(
                "provider `{}` answered {status}; the request went on to the next candidate",
                meter.record.provider_id
            ));
            meter.finish(Outcome::UpstreamError);
        }
    }

    fn deliver(self) -> Result<Response, GatewayError> {
        match self {
            Self::Error(error) => Err(error),
            Self::Answer {
                status,
                headers,
                body,
                mut meter,
            } => {
                meter.record.error = Some(format!(
                    "provider `{}` answered {status}",
                    meter.record.provider_id
                ));
                meter.finish(Outcome::UpstreamError);
                let mut response = Response::builder().status(status);
                if let Some(out) = response.headers_mut() {
                    copy_headers(&headers, out);
                }
                response
                    .body(Body::from(body))
                    .map_err(|e| GatewayError::Internal(e.to_string()))
            }
        }
    }
}

/// How one attempt went.
enum Attempt {
    /// The client's answer: a success, or an error no other candidate would fix.
    Done(Result<Response, GatewayError>),
    /// The candidate failed in a way another may not: try the next (resting this one when
    /// its provider was at fault).
    Failed(Origin, Box<Held>),
}

/// Answers one client request: forwarded as bytes when the provider speaks the client's
/// protocol, translated through `canonical` otherwise.
pub(crate) async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    client: ClientRequest,
) -> Result<Response, GatewayError> {
    route(state, headers, Job::Generate(client)).await
}

/// Forwards one request of the OpenAI-compatible family. Chat Completions reach a provider of
/// any protocol; legacy completions and embeddings exist only on OpenAI-compatible hosts.
pub async fn forward(
    state: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, GatewayError> {
    if endpoint == Endpoint::ChatCompletions {
        let client = ClientRequest {
            protocol: Protocol::OpenAiChat,
            endpoint: endpoint.name(),
            body,
            gemini: None,
        };
        return answer(state, headers, client).await;
    }
    route(state, headers, Job::Forward(endpoint, body)).await
}

/// Picks candidates one after another until one answers: the failover loop.
///
/// Each failed attempt rests its credential (`routing::Router::fail`) and the next pick moves
/// on, up to `max_retries` further attempts. Nothing has reached the client while this runs,
/// since an attempt only succeeds once the upstream's first chunk is in. When every candidate
/// is held (limits, cooldowns) the request waits for the first to free if that is within
/// `max_wait_ms`, else the client gets 429 with the true time to wait.
async fn route(state: &AppState, headers: &HeaderMap, job: Job) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let snapshot = state.registry.snapshot();
    let adapter = authenticate(&snapshot, headers)?;
    let plan = routing::plan(&snapshot, &adapter, || job.requested_model())?;
    let settings = snapshot.routing;
    let deadline = started + Duration::from_millis(settings.max_wait_ms);
    let mut decoded = None;
    let mut tried = Vec::new();
    let mut held: Option<Held> = None;
    let mut attempts = 0usize;
    while attempts <= settings.max_retries as usize {
        let now = now_ms();
        match state
            .router
            .pick(&plan, &tried, settings.usage_gap_percent, now)
        {
            Pick::Use(index) => {
                attempts += 1;
                tried.push(index);
                let target = &plan.targets[index];
                let outcome = Try {
                    state,
                    headers,
                    adapter: &adapter,
                    target,
                    job: &job,
                    started,
                }
                .run(&mut decoded)
                .await;
                match outcome {
                    Attempt::Done(result) => {
                        if let Some(previous) = held.take() {
                            previous.superseded();
                        }
                        return result;
                    }
                    Attempt::Failed(Origin::Provider(Failure::Redirected), failed) => {
                        // The provider's base URL is wrong, not this key: its other keys would
                        // meet the same redirect, so only other providers are tried.
                        skip_provider(&plan, &target.provider.id, &mut tried);
                        if let Some(previous) = held.replace(*failed) {
                            previous.superseded();
                        }
                    }
                    Attempt::Failed(origin, failed) => {
                        if let Origin::Provider(failure) = origin {
                            state.router.fail(
                                &target.credential.key_id,
                                failure,
                                &settings,
                                now_ms(),
                            );
                        }
                        if let Some(previous) = held.replace(*failed) {
                            previous.superseded();
                        }
                    }
                }
            }
            Pick::Wait { until_ms, reason } => {
                let wait = Duration::from_millis(u64::try_from(until_ms - now).unwrap_or(0));
                if Instant::now() + wait <= deadline {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                if let Some(failed) = held {
                    return failed.deliver();
                }
                let retry_after = u64::try_from((until_ms - now).max(0))
                    .unwrap_or(0)
                    .div_ceil(1000)
                    .max(1);
                return Err(GatewayError::RateLimited {
                    reason,
                    retry_after,
                });
            }
            Pick::Exhausted => break,
        }
    }
    match held {
        Some(failed) => failed.deliver(),
        // Nothing could even be tried: every candidate's key is unreadable.
        None => Err(plan
            .targets
            .iter()
            .find_map(|t| match &t.credential.key {
                ProviderKey::Unavailable(reason) => Some(GatewayError::ProviderKey {
                    provider: t.provider.id.clone(),
                    reason: reason.clone(),
                }),
                ProviderKey::None | ProviderKey::Ready(_) | ProviderKey::Account(_) => None,
            })
            .unwrap_or_else(|| GatewayError::Internal("no candidate to try".into()))),
    }
}

/// Marks every target of `provider` as tried.
fn skip_provider(plan: &routing::Plan, provider: &str, tried: &mut Vec<usize>) {
    for (index, target) in plan.targets.iter().enumerate() {
        if target.provider.id == provider && !tried.contains(&index) {
            tried.push(index);
        }
    }
}

/// One try of one target: what it works on.
struct Try<'a> {
    state: &'a AppState,
    headers: &'a HeaderMap,
    adapter: &'a Adapter,
    target: &'a Target,
    job: &'a Job,
    started: Instant,
}

impl Try<'_> {
    /// Runs the try through the upstream its credential calls for.
    async fn run(self, decoded: &mut Option<flexiproxy_protocol::canonical::Request>) -> Attempt {
        match &self.target.credential.key {
            ProviderKey::Account(account) => self.through(&Login { account }, decoded).await,
            ProviderKey::None | ProviderKey::Ready(_) | ProviderKey::Unavailable(_) => {
                self.through(&ApiKey, decoded).await
            }
        }
    }

    /// Sends through `upstream`, and decides from the status (and the first chunk) whether the
    /// client gets this answer or another candidate is tried.
    async fn through(
        &self,
        upstream: &impl Upstream,
        decoded: &mut Option<flexiproxy_protocol::canonical::Request>,
    ) -> Attempt {
        let Self {
            state,
            headers,
            adapter,
            target,
            job,
            started,
        } = *self;
        let outgoing = match prepare::outgoing(job, target, decoded) {
            Ok(outgoing) => outgoing,
            Err(error) => return Attempt::Done(Err(error)),
        };
        if let Some(error) = upstream.refuses(job, target) {
            return Attempt::Done(Err(error));
        }
        let same_protocol_headers =
            matches!(outgoing.answer, AnswerPath::Relay { .. }).then_some(headers);
        let endpoint_name = match job {
            Job::Generate(client) => client.endpoint,
            Job::Forward(endpoint, _) => endpoint.name(),
        };
        let mut meter = Meter::new(
            state,
            started,
            adapter,
            target,
            endpoint_name,
            outgoing.stream,
        );
        let to = Sending {
            state,
            adapter,
            target,
            outgoing: &outgoing,
            client_headers: same_protocol_headers,
        };
        let sent = upstream.send(to, &mut meter).await;
        let Answered {
            response: upstream,
            url,
            shaping,
        } = match sent {
            Ok(answered) => answered,
            Err(SendFailure { error, origin }) => {
                return Attempt::Failed(origin, Box::new(Held::Error(error)));
            }
        };
        answered(state, target, outgoing, upstream, url, shaping, meter).await
    }
}

/// Reads an upstream's answer: a redirect, a status worth trying elsewhere, a success that
/// breaks before its first byte, or the answer the client gets.
async fn answered(
    state: &AppState,
    target: &Target,
    outgoing: prepare::Outgoing,
    upstream: reqwest::Response,
    url: String,
    shaping: Option<account_relay::Shaping>,
    mut meter: Meter,
) -> Attempt {
    if let Some(error) = redirect_error(&target.provider.id, &upstream) {
        meter.fail(&error);
        return Attempt::Failed(
            Origin::Provider(Failure::Redirected),
            Box::new(Held::Error(error)),
        );
    }
    let status = upstream.status();
    let silence = Silence::of(&state.settings);
    if let Some(failure) = retryable(&upstream) {
        let mut opened = Opened::new(upstream, silence);
        let held = match outgoing.answer {
            AnswerPath::Relay { .. } => {
                let body = opened.read_capped(ERROR_BODY_CAP).await.unwrap_or_default();
                Held::Answer {
                    status,
                    headers: opened.headers,
                    body: Bytes::from(body),
                    meter,
                }
            }
            AnswerPath::Translate(_) => Held::Error(translate::upstream_error(opened, meter).await),
        };
        return Attempt::Failed(Origin::Provider(failure), Box::new(held));
    }
    let opened = if status.is_success() {
        match Opened::peeked(upstream, silence).await {
            Ok(opened) => opened,
            Err(failure) => {
                let error = GatewayError::UpstreamUnreachable {
                    provider: target.provider.id.clone(),
                    url,
                    reason: if failure == Failure::Timeout {
                        "no answer within the response timeout after the headers".into()
                    } else {
                        "the answer broke off before its first byte".into()
                    },
                };
                meter.fail(&error);
                return Attempt::Failed(Origin::Provider(failure), Box::new(Held::Error(error)));
            }
        }
    } else {
        Opened::new(upstream, silence)
    };
    let opened = match shaping {
        Some(shaping) if status.is_success() => {
            match account_relay::reshape(opened, shaping, &target.provider.id).await {
                Ok(opened) => opened,
                Err(error) => {
                    meter.fail(&error);
                    return Attempt::Done(Err(error));
                }
            }
        }
        Some(_) | None => opened,
    };
    Attempt::Done(match outgoing.answer {
        AnswerPath::Relay {
            protocol,
            strip_usage,
        } => relay_response(
            opened,
            meter,
            protocol,
            strip_usage,
            state.settings.max_sse_event_bytes,
        ),
        AnswerPath::Translate(translation) => {
            translation
                .deliver(opened, meter, state.settings.max_sse_event_bytes)
                .await
        }
    })
}
