//! Sending one request upstream. [`Upstream`] is the shape of the send phase: a credential
//! that is an API key ([`ApiKey`], here) and one that is a subscription login
//! (`account_relay::Login`) are its two implementations, and `plan` runs an attempt through
//! either the same way. A send that produces no answer says where it failed ([`SendFailure`]
//! with its `classify::Origin`), so only a provider's failure rests a credential.
//!
//! Also here: where a provider's endpoints are (`UpstreamPath`, below the adapter's or the
//! provider's base URL), how it takes its key (`KeyStyle`), and the timed send that waits for
//! the answer's headers. The answer becomes an [`Opened`] one for `classify` and `deliver`.
//! `token_count`, discovery and the provider check use these pieces outside the failover loop.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::error::GatewayError;
use crate::proxy::account_relay::Shaping;
use crate::proxy::classify::{Origin, describe};
use crate::proxy::meter::Meter;
use crate::proxy::path_segment::PathSegment;
use crate::proxy::prepare::Outgoing;
use crate::proxy::request::Job;
use crate::proxy::upstream_body::{self, BodyError, BodyStream, Silence};
use crate::routing::Failure;
use crate::routing::Target;
use crate::routing::registry::{Adapter, Provider, ProviderKey};
use crate::state::AppState;
use crate::store::secrets::Secret;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::anthropic_messages::ANTHROPIC_VERSION;

/// One way of putting a prepared request before a provider: the send phase of an attempt.
pub(super) trait Upstream {
    /// The client's error when this credential cannot serve `job` at all (checked before
    /// anything is sent or metered).
    fn refuses(&self, job: &Job, target: &Target) -> Option<GatewayError>;

    /// Sends the request `to` describes and waits for the answer's headers.
    async fn send(&self, to: Sending<'_>, meter: &mut Meter) -> Result<Answered, SendFailure>;
}

/// What the send phase of one attempt is given: the prepared request and where it goes.
#[derive(Clone, Copy)]
pub(super) struct Sending<'a> {
    pub state: &'a AppState,
    pub adapter: &'a Adapter,
    pub target: &'a Target,
    pub outgoing: &'a Outgoing,
    /// The client's headers when it speaks the provider's protocol (its version headers go
    /// along).
    pub client_headers: Option<&'a HeaderMap>,
}

/// An upstream answer whose headers are in.
pub(super) struct Answered {
    pub response: reqwest::Response,
    /// Where the request went, for error messages.
    pub url: String,
    /// How a subscription endpoint's answer must change before it is read.
    pub shaping: Option<Shaping>,
}

/// A send that produced no answer: the error the client may get, and whose fault it was.
#[derive(Debug)]
pub(crate) struct SendFailure {
    pub error: GatewayError,
    pub origin: Origin,
}

impl SendFailure {
    /// The gateway's own fault (see [`Origin::Local`]).
    pub(crate) fn local(error: GatewayError) -> Self {
        Self {
            error,
            origin: Origin::Local,
        }
    }
}

/// A credential that is an API key (or none): the request goes to the provider's endpoint
/// below the adapter's or provider's base URL, with the key as the provider takes it.
pub(super) struct ApiKey;

impl Upstream for ApiKey {
    fn refuses(&self, _job: &Job, _target: &Target) -> Option<GatewayError> {
        None
    }

    async fn send(&self, to: Sending<'_>, meter: &mut Meter) -> Result<Answered, SendFailure> {
        let outgoing = to.outgoing;
        let url = upstream_url(to.adapter, &to.target.provider, &outgoing.endpoint.path);
        let request = upstream_request(
            to.state,
            to.target,
            &url,
            outgoing.endpoint.style,
            outgoing.stream,
            to.client_headers,
        )
        .map_err(|error| {
            meter.fail(&error);
            SendFailure::local(error)
        })?;
        let body = outgoing.body.clone();
        let response = send(to.state, request.body(body), url.clone(), meter).await?;
        Ok(Answered {
            response,
            url,
            shaping: None,
        })
    }
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

    /// Adds `key` (when there is one) the way the provider takes it, and for Anthropic the
    /// version headers: the client's own `anthropic-version` and `anthropic-beta` when
    /// `client_headers` are given (a same-protocol client), else [`ANTHROPIC_VERSION`].
    pub(crate) fn sign(
        self,
        mut request: reqwest::RequestBuilder,
        key: Option<&Secret>,
        client_headers: Option<&HeaderMap>,
    ) -> reqwest::RequestBuilder {
        if let Some(key) = key {
            request = match self {
                Self::Bearer => request.bearer_auth(key.expose()),
                Self::XApiKey => request.header("x-api-key", key.expose()),
                Self::GoogApiKey => request.header("x-goog-api-key", key.expose()),
            };
        }
        if self == Self::XApiKey {
            let version = client_headers
                .and_then(|h| h.get("anthropic-version"))
                .cloned()
                .unwrap_or(HeaderValue::from_static(ANTHROPIC_VERSION));
            request = request.header("anthropic-version", version);
            if let Some(beta) = client_headers.and_then(|h| h.get("anthropic-beta")) {
                request = request.header("anthropic-beta", beta.clone());
            }
        }
        request
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
    request: reqwest::RequestBuilder,
    provider: &str,
    key: &ProviderKey,
    style: KeyStyle,
    same_protocol_headers: Option<&HeaderMap>,
) -> Result<reqwest::RequestBuilder, GatewayError> {
    let key = match key {
        ProviderKey::None => None,
        ProviderKey::Ready(key) => Some(key),
        ProviderKey::Unavailable(reason) => {
            return Err(GatewayError::ProviderKey {
                provider: provider.to_owned(),
                reason: reason.clone(),
            });
        }
        // Account requests are addressed and signed by `account_relay`, never here.
        ProviderKey::Account(account) => {
            return Err(GatewayError::ProviderKey {
                provider: provider.to_owned(),
                reason: format!(
                    "`{account}` is a subscription login, which only serves generation requests"
                ),
            });
        }
    };
    Ok(style.sign(request, key, same_protocol_headers))
}

/// Sends `request` and waits (at most the response timeout) for the upstream's headers. A
/// failure is recorded on `meter` and returned naming the provider.
pub(crate) async fn send(
    state: &AppState,
    request: reqwest::RequestBuilder,
    url: String,
    meter: &mut Meter,
) -> Result<reqwest::Response, SendFailure> {
    match timed_send(state, request, url, &meter.record.provider_id).await {
        Ok(response) => {
            meter.record.status = response.status().as_u16();
            Ok(response)
        }
        Err(failure) => {
            meter.fail(&failure.error);
            Err(failure)
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
    timed_send(state, request, url, provider)
        .await
        .map_err(|failure| failure.error)
}

/// The one place a transport failure gets its rest: a timeout is a timeout, anything else a
/// failed connection.
async fn timed_send(
    state: &AppState,
    request: reqwest::RequestBuilder,
    url: String,
    provider: &str,
) -> Result<reqwest::Response, SendFailure> {
    let timeout = state.settings.response_timeout;
    let provider = provider.to_owned();
    match tokio::time::timeout(timeout, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(SendFailure {
            error: GatewayError::UpstreamUnreachable {
                provider,
                url,
                reason: describe(&e),
            },
            origin: Origin::Provider(Failure::Connection),
        }),
        Err(_) => Err(SendFailure {
            error: GatewayError::UpstreamTimeout {
                provider,
                url,
                seconds: timeout.as_secs(),
            },
            origin: Origin::Provider(Failure::Timeout),
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
    pub(super) async fn peeked(
        upstream: reqwest::Response,
        silence: Silence,
    ) -> Result<Self, Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn gemini_model_names_are_one_path_segment() {
        let path = |model: &str, stream| {
            UpstreamPath::generate(Protocol::Gemini, model, stream).map(|p| p.path)
        };
        for (model, stream, expected) in [
            (
                "models/gemini-2.5-flash",
                false,
                "/models/gemini-2.5-flash:generateContent",
            ),
            (
                "gemini-2.5-flash",
                true,
                "/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            ),
            (
                "../../v1/files?key=x#",
                false,
                "/models/..%2F..%2Fv1%2Ffiles%3Fkey%3Dx%23:generateContent",
            ),
            (
                "%2e%2e/x:y",
                false,
                "/models/%252e%252e%2Fx%3Ay:generateContent",
            ),
        ] {
            assert_eq!(path(model, stream).unwrap(), expected);
        }
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
}
