//! Where every client request goes. [`answer`] asks `routing` for the request's candidates
//! (provider, model, credential) and tries them one at a time: each attempt goes down the
//! same-protocol fast path when the provider speaks the client's protocol, and to `translate`
//! otherwise. An attempt that fails with 429, 5xx, 401/403, a timeout, a refused connection or
//! a body that breaks before its first byte rests its credential and the next candidate is
//! tried; nothing reaches the client until an upstream's first chunk is in, so the client
//! never sees the failed attempts. The pieces both paths need (key lookup, provider URLs and
//! auth, the timed send, [`Meter`]) live here.
//!
//! On the fast path the request body is validated and edited in place by `protocol::rewrite`
//! (only `model` changes, plus `stream_options.include_usage` on OpenAI streams; a Gemini
//! request names its model in the URL and goes unchanged); the response is wrapped in a
//! [`Relay`] stream that hands each upstream chunk straight to the client. SSE chunks are also
//! fed to an `EventSplitter` to read usage (`protocol::codec`), and OpenAI's usage chunk is
//! dropped from the client's stream when the gateway itself asked for it. When the stream
//! ends, breaks, or the client hangs up (the request future or the `Relay` is dropped, which
//! drops the upstream request and so cancels it there), one [`UsageRecord`] goes to the
//! `usage` recorder.

use std::collections::VecDeque;
use std::error::Error as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;

use crate::error::GatewayError;
use crate::proxy::account_relay::{self, Sent};
use crate::proxy::path_segment::PathSegment;
use crate::proxy::translate::{self, ClientRequest};
use crate::proxy::upstream_body::{self, BodyError, BodyStream, Silence};
use crate::routing::registry::{Adapter, Provider, ProviderKey, Snapshot};
use crate::routing::{self, Failure, Pick, Router, Target};
use crate::server::access::{hash_key, presented_key};
use crate::state::AppState;
use crate::store::now_ms;
use crate::store::usage::{Outcome, Recorder, UsageRecord};
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::anthropic_messages::ANTHROPIC_VERSION;
use flexiproxy_protocol::canonical::TokenUsage;
use flexiproxy_protocol::canonical::merge_usage;
use flexiproxy_protocol::codec;
use flexiproxy_protocol::gemini::Framing;
use flexiproxy_protocol::openai_chat::{self, Endpoint};
use flexiproxy_protocol::rewrite::{Edit, TopLevel, json_string, splice};
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

/// Finds the adapter that owns the key the client presented.
pub fn authenticate(
    snapshot: &Snapshot,
    headers: &HeaderMap,
) -> Result<Arc<Adapter>, GatewayError> {
    let key = presented_key(headers).ok_or(GatewayError::MissingKey)?;
    snapshot
        .adapter_for_key(&hash_key(key))
        .cloned()
        .ok_or(GatewayError::InvalidKey)
}

/// `path` (starting with `/`) below the adapter's base URL, or else the provider's.
pub(crate) fn upstream_url(adapter: &Adapter, provider: &Provider, path: &str) -> String {
    let base = adapter.base_url.as_deref().unwrap_or(&provider.url);
    format!("{}{path}", base.trim_end_matches('/'))
}

/// How a provider expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyStyle {
    /// `Authorization: Bearer …` (OpenAI and OpenAI-compatible hosts).
    Bearer,
    /// `x-api-key: …` plus `anthropic-version` (Anthropic).
    XApiKey,
    /// `x-goog-api-key: …` (Gemini).
    GoogApiKey,
}

impl KeyStyle {
    pub(crate) fn of(protocol: Protocol) -> Self {
        match protocol {
            Protocol::OpenAiChat | Protocol::OpenAiResponses => Self::Bearer,
            Protocol::AnthropicMessages => Self::XApiKey,
            Protocol::Gemini => Self::GoogApiKey,
        }
    }
}

/// Where a provider's endpoint is, below its base URL, and how it takes its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamPath {
    /// Starts with `/`; may carry a query (`?alt=sse`).
    pub path: String,
    pub style: KeyStyle,
}

impl UpstreamPath {
    /// The endpoint that generates an answer for `model`. A model that goes into the URL
    /// (Gemini's) is one encoded path segment; one that cannot be is refused (400).
    pub(crate) fn generate(
        protocol: Protocol,
        model: &str,
        stream: bool,
    ) -> Result<Self, GatewayError> {
        let path = match protocol {
            Protocol::OpenAiChat => "/chat/completions".to_owned(),
            Protocol::OpenAiResponses => "/responses".to_owned(),
            Protocol::AnthropicMessages => "/messages".to_owned(),
            Protocol::Gemini if stream => format!(
                "/models/{}:streamGenerateContent?alt=sse",
                gemini_model_segment(model)?
            ),
            Protocol::Gemini => format!("/models/{}:generateContent", gemini_model_segment(model)?),
        };
        Ok(Self {
            path,
            style: KeyStyle::of(protocol),
        })
    }

    /// The endpoint that counts a request's input tokens, for protocols that have one.
    pub(crate) fn count_tokens(
        protocol: Protocol,
        model: &str,
    ) -> Result<Option<Self>, GatewayError> {
        let path = match protocol {
            Protocol::AnthropicMessages => "/messages/count_tokens".to_owned(),
            Protocol::Gemini => format!("/models/{}:countTokens", gemini_model_segment(model)?),
            Protocol::OpenAiChat | Protocol::OpenAiResponses => return Ok(None),
        };
        Ok(Some(Self {
            path,
            style: KeyStyle::of(protocol),
        }))
    }
}

/// A model id as Gemini's URL path wants it: without a `models/` prefix the client may have
/// copied from a model list.
pub(crate) fn gemini_model(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// [`gemini_model`] as one encoded URL path segment, or the client's 400 saying why it cannot
/// be a model name.
fn gemini_model_segment(model: &str) -> Result<PathSegment, GatewayError> {
    PathSegment::new(gemini_model(model)).map_err(|reason| {
        GatewayError::Invalid(format!(
            "model {model:?} cannot be a Gemini model name in the provider's URL: {reason}"
        ))
    })
}

/// A POST of a JSON body to `url`, with the credential's key and the `Accept` a stream needs.
///
/// `same_protocol_headers` are the client's headers when it speaks the provider's protocol:
/// then its `anthropic-version` and `anthropic-beta` go along (a translated request is written
/// for the default version and no betas).
pub(crate) fn upstream_request(
    state: &AppState,
    target: &Target,
    url: &str,
    style: KeyStyle,
    stream: bool,
    same_protocol_headers: Option<&HeaderMap>,
) -> Result<reqwest::RequestBuilder, GatewayError> {
    let request = state
        .http
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::ACCEPT,
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
    with_key(
        request,
        &target.provider.id,
        &target.credential.key,
        style,
        same_protocol_headers,
    )
}

/// Adds a credential's key to `request` the way the provider expects it (plus the Anthropic
/// version headers). Also used by `provider_test`, which calls outside the request path.
pub(crate) fn with_key(
    mut request: reqwest::RequestBuilder,
    provider: &str,
    key: &ProviderKey,
    style: KeyStyle,
    same_protocol_headers: Option<&HeaderMap>,
) -> Result<reqwest::RequestBuilder, GatewayError> {
    match key {
        ProviderKey::None => {}
        ProviderKey::Ready(key) => {
            request = match style {
                KeyStyle::Bearer => request.bearer_auth(key.expose()),
                KeyStyle::XApiKey => request.header("x-api-key", key.expose()),
                KeyStyle::GoogApiKey => request.header("x-goog-api-key", key.expose()),
            };
        }
        ProviderKey::Unavailable(reason) => {
            return Err(GatewayError::ProviderKey {
                provider: provider.to_owned(),
                reason: reason.clone(),
            });
        }
        // Account requests are addressed and signed by `subscription`, never here.
        ProviderKey::Account(account) => {
            return Err(GatewayError::ProviderKey {
                provider: provider.to_owned(),
                reason: format!(
                    "`{account}` is a subscription login, which only serves generation requests"
                ),
            });
        }
    }
    if style == KeyStyle::XApiKey {
        let client = same_protocol_headers;
        let version = client
            .and_then(|h| h.get("anthropic-version"))
            .cloned()
            .unwrap_or(HeaderValue::from_static(ANTHROPIC_VERSION));
        request = request.header("anthropic-version", version);
        if let Some(beta) = client.and_then(|h| h.get("anthropic-beta")) {
            request = request.header("anthropic-beta", beta.clone());
        }
    }
    Ok(request)
}

/// Sends `request` and waits (at most the response timeout) for the upstream's headers. A
/// failure is recorded on `meter` and returned naming the provider.
pub(crate) async fn send(
    state: &AppState,
    request: reqwest::RequestBuilder,
    url: String,
    meter: &mut Meter,
) -> Result<reqwest::Response, GatewayError> {
    match send_unmetered(state, request, url, &meter.record.provider_id).await {
        Ok(response) => {
            meter.record.status = response.status().as_u16();
            Ok(response)
        }
        Err(error) => {
            meter.fail(&error);
            Err(error)
        }
    }
}

/// [`send`] for calls that are not generations and leave no usage record (token counts).
pub(crate) async fn send_unmetered(
    state: &AppState,
    request: reqwest::RequestBuilder,
    url: String,
    provider: &str,
) -> Result<reqwest::Response, GatewayError> {
    let timeout = state.settings.response_timeout;
    let provider = provider.to_owned();
    match tokio::time::timeout(timeout, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(GatewayError::UpstreamUnreachable {
            provider,
            url,
            reason: describe(&e),
        }),
        Err(_) => Err(GatewayError::UpstreamTimeout {
            provider,
            url,
            seconds: timeout.as_secs(),
        }),
    }
}

/// An upstream answer whose headers have arrived: its status, headers and body stream. For a
/// success the first chunk has already been read (and is the stream's first item), so a
/// provider that fails before sending anything can still be replaced by another. The body
/// ends with an error when it stays silent too long (`upstream_body`).
pub(crate) struct Opened {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

impl Opened {
    pub(crate) fn new(upstream: reqwest::Response, silence: Silence) -> Self {
        Self {
            status: upstream.status(),
            headers: upstream.headers().clone(),
            body: upstream_body::limited(upstream, silence),
        }
    }

    /// Waits (at most the response timeout) for the first chunk of a successful answer.
    async fn peeked(upstream: reqwest::Response, silence: Silence) -> Result<Self, Failure> {
        use futures_util::StreamExt;
        let mut opened = Self::new(upstream, silence);
        match opened.body.next().await {
            Some(Err(error)) if error.is_silence() => Err(Failure::Timeout),
            Some(Err(_)) => Err(Failure::BrokeOff),
            None => Ok(opened),
            Some(Ok(first)) => {
                let rest =
                    std::mem::replace(&mut opened.body, Box::pin(futures_util::stream::empty()));
                opened.body = Box::pin(futures_util::stream::once(async { Ok(first) }).chain(rest));
                Ok(opened)
            }
        }
    }

    /// Reads up to `cap` bytes of the body (the rest is not waited for).
    pub(crate) async fn read_capped(&mut self, cap: usize) -> Result<Vec<u8>, BodyError> {
        use futures_util::StreamExt;
        let mut body = Vec::new();
        while let Some(chunk) = self.body.next().await {
            let chunk = chunk?;
            let room = cap.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= cap {
                break;
            }
        }
        Ok(body)
    }
}

/// The most bytes of an upstream error body kept while deciding whether to try elsewhere.
const ERROR_BODY_CAP: usize = 64 * 1024;

/// What one client request asks for.
enum Job {
    /// A generation in any of the four protocols.
    Generate(ClientRequest),
    /// OpenAI's legacy completions or embeddings (OpenAI-compatible providers only).
    Forward(Endpoint, Bytes),
}

impl Job {
    /// The model the client named, if any.
    fn requested_model(&self) -> Result<Option<String>, GatewayError> {
        match self {
            Self::Generate(client) => client.requested_model(),
            Self::Forward(_, body) => flexiproxy_protocol::rewrite::body_model(body)
                .map_err(|e| GatewayError::BadJson(e.to_string())),
        }
    }
}

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
    /// The candidate failed in a way another may not: rest it and try the next.
    Failed(Failure, Box<Held>),
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
                let outcome = attempt(
                    state,
                    headers,
                    &adapter,
                    target,
                    &job,
                    started,
                    &mut decoded,
                )
                .await;
                match outcome {
                    Attempt::Done(result) => {
                        if let Some(previous) = held.take() {
                            previous.superseded();
                        }
                        return result;
                    }
                    Attempt::Failed(Failure::Redirected, failed) => {
                        // The provider's base URL is wrong, not this key: its other keys would
                        // meet the same redirect, so only other providers are tried.
                        skip_provider(&plan, &target.provider.id, &mut tried);
                        if let Some(previous) = held.replace(*failed) {
                            previous.superseded();
                        }
                    }
                    Attempt::Failed(failure, failed) => {
                        state
                            .router
                            .fail(&target.credential.key_id, failure, &settings, now_ms());
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

/// The error for an upstream answer that is a redirect, which is never followed: it would
/// carry the provider's key (in a header or the query) to wherever the redirect points.
pub(crate) fn redirect_error(provider: &str, upstream: &reqwest::Response) -> Option<GatewayError> {
    let status = upstream.status();
    if !status.is_redirection() {
        return None;
    }
    let location = upstream
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(shown_location);
    Some(GatewayError::UpstreamRedirect {
        provider: provider.to_owned(),
        status: status.as_u16(),
        location,
    })
}

/// What a side path (discovery, a provider test) says about a redirect it did not follow.
pub(crate) fn redirect_detail(upstream: &reqwest::Response) -> String {
    let to = upstream
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| format!(" to {}", shown_location(l)))
        .unwrap_or_default();
    format!(
        "a redirect{to}; FlexiProxy does not follow redirects with your key: fix the provider's \
         base URL"
    )
}

/// A redirect's target as an error shows it: without its query (which may carry a token the
/// provider put there) and at most 200 characters.
fn shown_location(location: &str) -> String {
    let bare = location.split(['?', '#']).next().unwrap_or_default();
    let mut end = bare.len().min(200);
    while !bare.is_char_boundary(end) {
        end -= 1;
    }
    if end < bare.len() {
        format!("{}…", &bare[..end])
    } else {
        bare.to_owned()
    }
}

/// What to send to one target, prepared for its protocol.
struct Outgoing {
    body: Bytes,
    stream: bool,
    endpoint: UpstreamPath,
    /// How the answer reaches the client.
    answer: AnswerPath,
}

enum AnswerPath {
    /// Same protocol: bytes relayed; `strip_usage` drops OpenAI's usage chunk the gateway
    /// asked for.
    Relay {
        protocol: Protocol,
        strip_usage: bool,
    },
    /// Different protocols: decoded and re-encoded.
    Translate(Box<translate::Translation>),
}

/// One try of one target: send, and decide from the status (and the first chunk) whether the
/// client gets this answer or another candidate is tried.
async fn attempt(
    state: &AppState,
    headers: &HeaderMap,
    adapter: &Adapter,
    target: &Target,
    job: &Job,
    started: Instant,
    decoded: &mut Option<flexiproxy_protocol::canonical::Request>,
) -> Attempt {
    // A subscription login's endpoint streams only as SSE, so a Gemini client reading a JSON
    // array takes the translated path, which writes the array.
    let sse_only = matches!(target.credential.key, ProviderKey::Account(_))
        && client_framing(job) == Some(Framing::JsonArray);
    let prepared = match job {
        Job::Generate(client) if target.provider.protocol == client.protocol && !sse_only => {
            same_protocol(client, target)
        }
        Job::Generate(client) => {
            translate::prepare(client, decoded, target).and_then(|(body, translation)| {
                Ok(Outgoing {
                    endpoint: UpstreamPath::generate(
                        target.provider.protocol,
                        &target.model,
                        translation.stream,
                    )?,
                    body,
                    stream: translation.stream,
                    answer: AnswerPath::Translate(Box::new(translation)),
                })
            })
        }
        Job::Forward(endpoint, body) => openai_family(*endpoint, body, target),
    };
    let outgoing = match prepared {
        Ok(outgoing) => outgoing,
        Err(error) => return Attempt::Done(Err(error)),
    };
    let same_protocol_headers =
        matches!(outgoing.answer, AnswerPath::Relay { .. }).then_some(headers);
    let account = match &target.credential.key {
        ProviderKey::Account(account) => Some(account.as_str()),
        ProviderKey::None | ProviderKey::Ready(_) | ProviderKey::Unavailable(_) => None,
    };
    let endpoint_name = match job {
        Job::Generate(client) => client.endpoint,
        Job::Forward(endpoint, _) => {
            if account.is_some() {
                return Attempt::Done(Err(GatewayError::Unsupported(format!(
                    "{} are not served by subscription logins; provider `{}` is one",
                    endpoint.upstream_path().trim_start_matches('/'),
                    target.provider.id
                ))));
            }
            endpoint.name()
        }
    };
    let mut meter = Meter::new(
        state,
        started,
        adapter,
        target,
        endpoint_name,
        outgoing.stream,
    );
    let (upstream, url, shaping) = match account {
        Some(account) => {
            let sent = account_relay::send(
                state,
                account,
                target,
                &outgoing.body,
                outgoing.stream,
                same_protocol_headers,
                &mut meter,
            )
            .await;
            match sent {
                Sent::Answered {
                    response,
                    url,
                    shaping,
                } => (response, url, Some(shaping)),
                Sent::Failed(failure, error) => {
                    return Attempt::Failed(failure, Box::new(Held::Error(error)));
                }
            }
        }
        None => {
            let url = upstream_url(adapter, &target.provider, &outgoing.endpoint.path);
            let request = match upstream_request(
                state,
                target,
                &url,
                outgoing.endpoint.style,
                outgoing.stream,
                same_protocol_headers,
            ) {
                Ok(request) => request,
                Err(error) => {
                    return Attempt::Failed(Failure::Connection, Box::new(Held::Error(error)));
                }
            };
            match send(state, request.body(outgoing.body), url.clone(), &mut meter).await {
                Ok(upstream) => (upstream, url, None),
                Err(error) => {
                    let failure = if matches!(error, GatewayError::UpstreamTimeout { .. }) {
                        Failure::Timeout
                    } else {
                        Failure::Connection
                    };
                    return Attempt::Failed(failure, Box::new(Held::Error(error)));
                }
            }
        }
    };
    if let Some(error) = redirect_error(&target.provider.id, &upstream) {
        meter.fail(&error);
        return Attempt::Failed(Failure::Redirected, Box::new(Held::Error(error)));
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
        return Attempt::Failed(failure, Box::new(held));
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
                return Attempt::Failed(failure, Box::new(Held::Error(error)));
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

/// How a streaming Gemini client wants its stream framed.
fn client_framing(job: &Job) -> Option<Framing> {
    match job {
        Job::Generate(client) => client
            .gemini
            .as_ref()
            .filter(|call| call.stream)
            .map(|call| call.framing),
        Job::Forward(..) => None,
    }
}

/// Whether an upstream status means "try another candidate", and how the credential rests.
fn retryable(upstream: &reqwest::Response) -> Option<Failure> {
    match upstream.status().as_u16() {
        429 => Some(Failure::RateLimited {
            retry_after_ms: upstream
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| routing::parse_retry_after(v, now_ms())),
        }),
        401 | 403 => Some(Failure::Auth(upstream.status().as_u16())),
        408 => Some(Failure::Timeout),
        status @ 500..=599 => Some(Failure::Server(status)),
        _ => None,
    }
}

/// The same-protocol fast path: only the model changes (in the body, or in the URL for
/// Gemini), unknown fields and all other bytes go as they came.
fn same_protocol(client: &ClientRequest, target: &Target) -> Result<Outgoing, GatewayError> {
    let protocol = client.protocol;
    if protocol == Protocol::OpenAiChat {
        return openai_family(Endpoint::ChatCompletions, &client.body, target);
    }
    if let (Some(call), Protocol::Gemini) = (&client.gemini, protocol) {
        let mut endpoint = UpstreamPath::generate(protocol, &target.model, call.stream)?;
        if call.framing == Framing::JsonArray {
            // The client reads the streamed JSON array; the provider writes it the same.
            endpoint
                .path
                .truncate(endpoint.path.find('?').unwrap_or(endpoint.path.len()));
        }
        return Ok(Outgoing {
            body: client.body.clone(),
            stream: call.stream,
            endpoint,
            answer: AnswerPath::Relay {
                protocol,
                strip_usage: false,
            },
        });
    }
    let top = TopLevel::scan(&client.body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let stream = top.is_true("stream");
    let body = splice(
        &client.body,
        vec![top.set("model", json_string(&target.model))],
    );
    Ok(Outgoing {
        body,
        stream,
        endpoint: UpstreamPath::generate(protocol, &target.model, stream)?,
        answer: AnswerPath::Relay {
            protocol,
            strip_usage: false,
        },
    })
}

/// The OpenAI-compatible fast path: `model` replaced, and on streams the usage chunk asked for
/// (and dropped again when the client did not ask for it).
fn openai_family(
    endpoint: Endpoint,
    body: &Bytes,
    target: &Target,
) -> Result<Outgoing, GatewayError> {
    if target.provider.protocol != Protocol::OpenAiChat {
        return Err(GatewayError::Unsupported(format!(
            "{} exist only on OpenAI-compatible providers, and provider `{}` speaks {}; create \
             an adapter for an openai_chat provider for this",
            endpoint.upstream_path().trim_start_matches('/'),
            target.provider.id,
            target.provider.protocol
        )));
    }
    let top = TopLevel::scan(body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let stream = endpoint.streams() && top.is_true("stream");
    let mut edits = vec![top.set("model", json_string(&target.model))];
    let client_wants_usage = if stream {
        let (wants, edit) = include_usage(&top)?;
        edits.extend(edit);
        wants
    } else {
        false
    };
    Ok(Outgoing {
        body: splice(body, edits),
        stream,
        endpoint: UpstreamPath {
            path: endpoint.upstream_path().to_owned(),
            style: KeyStyle::Bearer,
        },
        answer: AnswerPath::Relay {
            protocol: Protocol::OpenAiChat,
            strip_usage: !client_wants_usage,
        },
    })
}

/// Copies the upstream headers worth passing on, with the content type.
fn copy_headers(upstream: &HeaderMap, out: &mut HeaderMap) {
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
fn relay_response(
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

/// Whether the client asked for the usage chunk, and the edit that makes the upstream send it.
fn include_usage(top: &TopLevel<'_>) -> Result<(bool, Option<Edit>), GatewayError> {
    let Some(raw) = top.get("stream_options").filter(|raw| *raw != "null") else {
        let edit = top.set(
            "stream_options",
            Bytes::from_static(br#"{"include_usage":true}"#),
        );
        return Ok((false, Some(edit)));
    };
    let mut options: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
        .map_err(|_| GatewayError::Invalid("`stream_options` must be an object".into()))?;
    if options.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return Ok((true, None));
    }
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    let text = serde_json::to_vec(&options).map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok((false, Some(top.set("stream_options", text))))
}

/// A transport error as a short reason a user can act on ("connection refused").
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut reason = if error.is_connect() {
        "connection failed".to_owned()
    } else if error.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}

/// Times the exchange and sends its usage record exactly once: when the exchange ends, or,
/// if it is dropped first, as `client_closed` (the client hung up) or `shutdown` (the gateway
/// cut it, see `drain`).
pub(crate) struct Meter {
    recorder: Recorder,
    /// Tells a cut at shutdown from a client hanging up.
    drain: Arc<crate::server::drain::Drain>,
    /// Where the tokens of a finished request are counted against the credential's limits.
    router: Arc<Router>,
    started: Instant,
    pub(crate) first_byte: Option<Instant>,
    pub(crate) record: UsageRecord,
    pub(crate) finished: bool,
}

impl Meter {
    pub(crate) fn new(
        state: &AppState,
        started: Instant,
        adapter: &Adapter,
        target: &Target,
        endpoint: &'static str,
        stream: bool,
    ) -> Self {
        Self {
            recorder: state.recorder.clone(),
            drain: state.drain.clone(),
            router: state.router.clone(),
            started,
            first_byte: None,
            record: UsageRecord {
                ts_ms: now_ms(),
                adapter: Some(adapter.create_time),
                provider_id: target.provider.id.clone(),
                credential: Some(target.credential.key_id.clone()),
                model: target.model.clone(),
                endpoint,
                stream,
                status: 0,
                tokens: TokenUsage::default(),
                latency_ms: 0,
                ttfb_ms: None,
                outcome: Outcome::Failed,
                error: None,
            },
            finished: false,
        }
    }

    /// Notes the first upstream byte (for time to first token).
    pub(crate) fn saw_bytes(&mut self) {
        if self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = Instant::now();
        // The one place every record is finished: what a provider claims is capped here, for
        // the limit windows and the ledger alike.
        self.record.tokens = self.record.tokens.clamped();
        self.record.outcome = outcome;
        self.record.latency_ms = millis(now - self.started);
        self.record.ttfb_ms = self.first_byte.map(|t| millis(t - self.started));
        if let Some(credential) = &self.record.credential {
            let tokens = self
                .record
                .tokens
                .input
                .unwrap_or(0)
                .saturating_add(self.record.tokens.output.unwrap_or(0));
            // Counted whether or not usage statistics are kept: limits depend on it.
            self.router.note_tokens(credential, tokens, now_ms());
        }
        self.recorder.record(self.record.clone());
    }

    pub(crate) fn fail(&mut self, error: &GatewayError) {
        self.record.status = error.status().as_u16();
        self.record.error = Some(error.to_string());
        self.finish(Outcome::Failed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

impl Drop for Meter {
    fn drop(&mut self) {
        // Dropped unfinished: the client hung up, either while the gateway waited for the
        // upstream's headers (the `forward` future was dropped) or mid-body (the `Relay` was).
        // Either way the upstream request is dropped with it, which cancels it there. Or the
        // gateway cut it at shutdown: the record keeps the tokens seen until then.
        if !self.finished {
            if self.drain.is_cut() {
                self.record.error = Some(self.drain.cut_error().to_string());
                self.finish(Outcome::Shutdown);
            } else {
                self.record.error = Some("the client closed the connection".into());
                self.finish(Outcome::ClientClosed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_model_names_are_one_path_segment() {
        let path = |model: &str, stream| {
            UpstreamPath::generate(Protocol::Gemini, model, stream).map(|p| p.path)
        };
        assert_eq!(
            path("models/gemini-2.5-flash", false).unwrap(),
            "/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            path("gemini-2.5-flash", true).unwrap(),
            "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            path("../../v1/files?key=x#", false).unwrap(),
            "/models/..%2F..%2Fv1%2Ffiles%3Fkey%3Dx%23:generateContent"
        );
        assert_eq!(
            path("%2e%2e/x:y", false).unwrap(),
            "/models/%252e%252e%2Fx%3Ay:generateContent"
        );
        for refused in ["..", "models/..", ".", "", "models/", "a\r\nb"] {
            let error = path(refused, false).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{refused:?}");
        }
        assert_eq!(
            UpstreamPath::count_tokens(Protocol::Gemini, "a/b")
                .unwrap()
                .unwrap()
                .path,
            "/models/a%2Fb:countTokens"
        );
        assert!(UpstreamPath::count_tokens(Protocol::Gemini, "..").is_err());
        // Models in the body need no URL encoding.
        assert_eq!(
            UpstreamPath::generate(Protocol::OpenAiChat, "..", false)
                .unwrap()
                .path,
            "/chat/completions"
        );
    }

    #[test]
    fn redirect_targets_are_shown_without_their_query() {
        assert_eq!(
            shown_location("https://other.example/v1/chat?key=secret#x"),
            "https://other.example/v1/chat"
        );
        let long = format!("https://h/{}", "é".repeat(300));
        let shown = shown_location(&long);
        assert!(shown.ends_with('…') && shown.len() <= 204);
    }

    #[test]
    fn include_usage_is_added_or_respected() {
        let top = TopLevel::scan(br#"{"stream":true}"#).unwrap();
        let (wants, edit) = include_usage(&top).unwrap();
        assert!(!wants);
        assert!(edit.is_some());

        let top =
            TopLevel::scan(br#"{"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(include_usage(&top).unwrap(), (true, None));

        let body = Bytes::from_static(
            br#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        );
        let top = TopLevel::scan(&body).unwrap();
        let (wants, edit) = include_usage(&top).unwrap();
        assert!(!wants);
        let out = splice(&body, edit.into_iter().collect());
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["stream_options"]["x"], 1);
    }
}
