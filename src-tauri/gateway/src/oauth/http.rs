//! The HTTP client the `oauth2` crate calls: the gateway's own `reqwest::Client`, with two
//! provider quirks smoothed over so the crate's standard parsing applies.
//!
//! - Anthropic's token endpoint takes JSON rather than a form ([`TokenBody::Json`]): the form
//!   the crate builds is re-sent as a JSON object.
//! - GitHub answers token errors (`authorization_pending`, `slow_down`, ...) with status 200;
//!   RFC 6749 says 400, and the crate only reads errors from a non-200 answer, so such an
//!   answer is passed on as 400.
//!
//! Every request has its own time limit: the shared client has none (it carries long streams),
//! and a token endpoint that never answers must not hold a refresh, and every request waiting
//! on it, forever. The shared client follows redirects; the endpoints are fixed HTTPS addresses
//! of the providers (or loopback in tests), never taken from a response.

use std::fmt;
use std::time::Duration;

use oauth2::http::{HeaderValue, StatusCode, header};
use oauth2::{HttpRequest, HttpResponse};

use super::TokenBody;

/// How long one request to a login server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request that got no HTTP answer. Only the transport's message: no body, no token.
#[derive(Debug)]
pub(crate) struct Unreachable(String);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// Sends one `oauth2` request through `client`.
pub(crate) async fn send(
    client: reqwest::Client,
    body: TokenBody,
    request: HttpRequest,
) -> Result<HttpResponse, Unreachable> {
    let request = match body {
        TokenBody::Form => request,
        TokenBody::Json => form_to_json(request),
    };
    let mut request =
        reqwest::Request::try_from(request).map_err(|e| Unreachable(e.to_string()))?;
    *request.timeout_mut() = Some(REQUEST_TIMEOUT);
    let response = client
        .execute(request)
        .await
        .map_err(|e| Unreachable(e.without_url().to_string()))?;
    let mut status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Unreachable(e.without_url().to_string()))?;
    if status == StatusCode::OK && is_error_body(&bytes) {
        status = StatusCode::BAD_REQUEST;
    }
    let mut builder = oauth2::http::Response::builder().status(status);
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    builder
        .body(bytes.to_vec())
        .map_err(|e| Unreachable(e.to_string()))
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
