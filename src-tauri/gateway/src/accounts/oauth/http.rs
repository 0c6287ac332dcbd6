//! The HTTP of the account side path: every call a login or a logged-in account makes besides
//! the model requests themselves (token, device and userinfo/profile endpoints, the Copilot
//! token mint, Code Assist set-up, iFlow's user info). [`SideHttp`] is its client; [`send`]
//! adapts it to the `oauth2` crate.
//!
//! These calls carry refresh tokens, authorization codes, client secrets and access tokens, so
//! the client follows no redirect: a 3xx comes back as [`SideError::Redirected`], which names
//! only the host it pointed at (never the whole address, which may carry a code). Every call
//! is timed out as a whole (connect, headers and body) and every answer is read up to
//! [`BODY_CAP`]: a login server that never answers, or sends without end, costs one failed
//! call, not a stuck refresh and every request waiting on it. The gateway's shared client (the
//! model requests) is not used here: it has no overall time limit, since it carries long
//! streams, and its redirect policy is the request path's business.
//!
//! Two provider quirks are smoothed over for the `oauth2` crate's standard parsing:
//! - Anthropic's token endpoint takes JSON rather than a form ([`TokenBody::Json`]): the form
//!   the crate builds is re-sent as a JSON object.
//! - GitHub answers token errors (`authorization_pending`, `slow_down`, ...) with status 200;
//!   RFC 6749 says 400, and the crate only reads errors from a non-200 answer, so such an
//!   answer is passed on as 400.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use oauth2::http::{HeaderValue, StatusCode, header};
use oauth2::{HttpRequest, HttpResponse};
use reqwest::header::HeaderMap;

use super::TokenBody;

/// The most bytes read from one answer. Token, device, profile and mint answers are a few KB.
pub const BODY_CAP: usize = 1024 * 1024;
/// The longest one side-path call may take, whatever the upstream timeout says.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take when not told otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a side-path call got no answer to read. Says what happened and where to, never a body or
/// a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SideError {
    #[error("{0}")]
    Unreachable(String),
    #[error("no answer within {secs} s")]
    TimedOut { secs: u64 },
    #[error("the answer is larger than {} KiB and was not read", .cap / 1024)]
    TooLarge { cap: usize },
    #[error(
        "it answered with a redirect to {host}, which is not followed because the request \
         carries login secrets; if {host} is the provider's, set the endpoint to it"
    )]
    Redirected { host: String },
}

impl SideError {
    /// Whether trying again later may work (the network, a slow server), as opposed to an
    /// answer that will not change (a redirect, an oversized body).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::TimedOut { .. })
    }
}

/// A whole answer, read within the cap.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The side path's HTTP client: no redirects, a time limit per call, a cap per answer. Cheap
/// to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct SideHttp {
    client: reqwest::Client,
    timeout: Duration,
    cap: usize,
}

impl SideHttp {
    /// A client whose calls connect within `connect_timeout` and end within `timeout` (at most
    /// [`MAX_TIMEOUT`]). Fails only when the TLS backend cannot start.
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Result<Self, SideError> {
        let timeout = timeout.clamp(Duration::from_millis(100), MAX_TIMEOUT);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout.min(timeout))
            .user_agent(concat!("FlexiProxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SideError::Unreachable(format!("no HTTP client: {e}")))?;
        Ok(Self {
            client,
            timeout,
            cap: BODY_CAP,
        })
    }

    /// Connects within 10 s, answers within [`MAX_TIMEOUT`].
    pub fn standard() -> Result<Self, SideError> {
        Self::new(CONNECT_TIMEOUT, MAX_TIMEOUT)
    }

    /// [`Self::standard`], for tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        #[allow(clippy::unwrap_used, reason = "tests")]
        Self::standard().unwrap()
    }

    /// The same client with another answer cap (tests).
    pub fn with_cap(mut self, cap: usize) -> Self {
        self.cap = cap;
        self
    }

    /// The client to build requests with; send them with [`Self::send`], which applies the
    /// limits.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The time limit of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a request built with [`Self::client`] and reads its whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, SideError> {
        let request = request
            .build()
            .map_err(|e| SideError::Unreachable(e.without_url().to_string()))?;
        self.execute(request).await
    }

    /// Sends `request` on this client (whichever client built it) and reads its whole answer,
    /// within the time limit and the cap. A redirect is not followed: it is an error naming the
    /// host it points at.
    pub async fn execute(&self, request: reqwest::Request) -> Result<Answer, SideError> {
        let from = request.url().clone();
        let call = async {
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|e| SideError::Unreachable(e.without_url().to_string()))?;
            let status = response.status();
            if status.is_redirection() {
                return Err(SideError::Redirected {
                    host: redirect_host(&from, response.headers()),
                });
            }
            let headers = response.headers().clone();
            let body = read_capped(response, self.cap).await?;
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| SideError::TimedOut {
                secs: self.timeout.as_secs().max(1),
            })?
    }
}

/// `host[:port]` of a redirect's target, resolved against the address that answered.
fn redirect_host(from: &reqwest::Url, headers: &HeaderMap) -> String {
    let target = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| from.join(location).ok());
    match target {
        Some(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => "an address without a host".to_owned(),
        },
        None => "no readable address".to_owned(),
    }
}

/// The body, refused as soon as it is known to exceed `cap` bytes.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, SideError> {
    let too_large = SideError::TooLarge { cap };
    if response
        .content_length()
        .is_some_and(|length| length > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_large);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SideError::Unreachable(e.without_url().to_string()))?
    {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Sends one `oauth2` request through `http`.
pub(crate) async fn send(
    http: SideHttp,
    body: TokenBody,
    request: HttpRequest,
) -> Result<HttpResponse, SideError> {
    let request = match body {
        TokenBody::Form => request,
        TokenBody::Json => form_to_json(request),
    };
    let request = reqwest::Request::try_from(request)
        .map_err(|e| SideError::Unreachable(e.without_url().to_string()))?;
    let answer = http.execute(request).await?;
    let mut status = answer.status;
    if status == StatusCode::OK && is_error_body(&answer.body) {
        status = StatusCode::BAD_REQUEST;
    }
    let mut builder = oauth2::http::Response::builder().status(status);
    for (name, value) in &answer.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(answer.body.to_vec())
        .map_err(|e| SideError::Unreachable(e.to_string()))
}

/// A JSON object with an `error` and no `access_token`: an OAuth error whatever the status.
fn is_error_body(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            let object = v.as_object()?;
            Some(object.contains_key("error") && !object.contains_key("access_token"))
        })
        .unwrap_or(false)
}

fn form_to_json(request: HttpRequest) -> HttpRequest {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    let object: serde_json::Map<String, serde_json::Value> =
        oauth2::url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
    let json = serde_json::Value::Object(object).to_string().into_bytes();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    HttpRequest::from_parts(parts, json)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn recognises_error_bodies_sent_with_200() {
        assert!(is_error_body(br#"{"error":"authorization_pending"}"#));
        assert!(!is_error_body(
            br#"{"access_token":"a","token_type":"bearer"}"#
        ));
        assert!(!is_error_body(b"access_token=a"));
    }

    /// Serves `app` on a free loopback port; its base URL.
    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_names_only_the_host() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reached = Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        let elsewhere = serve(axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "stolen" }
        }))
        .await;
        let target = format!("{elsewhere}/collect?code=secret-code");
        let redirecting = serve(axum::Router::new().route(
            "/token",
            axum::routing::post(move || async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, target.clone())],
                )
            }),
        ))
        .await;
        let http = SideHttp::for_tests();
        let error = http
            .send(
                http.client()
                    .post(format!("{redirecting}/token"))
                    .body("refresh_token=rt-secret"),
            )
            .await
            .unwrap_err();
        let host = elsewhere.trim_start_matches("http://").to_owned();
        assert_eq!(error, SideError::Redirected { host: host.clone() });
        let message = error.to_string();
        assert!(message.contains(&host), "{message}");
        assert!(
            !message.contains("secret-code") && !message.contains("collect"),
            "{message}"
        );
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_whether_announced_or_streamed() {
        let base = serve(
            axum::Router::new()
                .route(
                    "/announced",
                    axum::routing::get(|| async { vec![b'x'; 4096] }),
                )
                .route(
                    "/streamed",
                    axum::routing::get(|| async {
                        let chunks = futures_util::stream::iter(
                            (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024])),
                        );
                        axum::body::Body::from_stream(chunks)
                    }),
                ),
        )
        .await;
        let http = SideHttp::for_tests().with_cap(2048);
        for path in ["announced", "streamed"] {
            let error = http
                .send(http.client().get(format!("{base}/{path}")))
                .await
                .unwrap_err();
            assert_eq!(error, SideError::TooLarge { cap: 2048 }, "{path}");
        }
        let small = SideHttp::for_tests()
            .send(
                SideHttp::for_tests()
                    .client()
                    .get(format!("{base}/announced")),
            )
            .await
            .unwrap();
        assert_eq!(small.body.len(), 4096);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let base = serve(axum::Router::new().route(
            "/token",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        ))
        .await;
        let http = SideHttp::new(Duration::from_secs(1), Duration::from_millis(300)).unwrap();
        let started = std::time::Instant::now();
        let error = http
            .send(http.client().post(format!("{base}/token")))
            .await
            .unwrap_err();
        assert!(matches!(error, SideError::TimedOut { .. }), "{error:?}");
        assert!(error.is_transient());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn form_bodies_become_json_objects() {
        let request = oauth2::http::Request::builder()
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(b"grant_type=authorization_code&code=a%2Bb".to_vec())
            .unwrap();
        let converted = form_to_json(request);
        let body: serde_json::Value = serde_json::from_slice(converted.body()).unwrap();
        assert_eq!(body["code"], "a+b");
        assert_eq!(body["grant_type"], "authorization_code");
        assert_eq!(
            converted.headers()[header::CONTENT_TYPE],
            "application/json"
        );
    }
}
