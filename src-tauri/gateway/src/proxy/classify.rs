//! Reading what an upstream answered, before anything reaches the client: whose fault a
//! failed attempt was ([`Origin`]), whether a status means "try another candidate" and how the
//! credential rests ([`retryable`]), a redirect that is never followed (it would carry the key
//! elsewhere), and transport errors as reasons a user can act on. `plan` acts on the verdicts;
//! discovery and the provider test reuse the wording.

use std::error::Error as _;

use axum::http::header;

use crate::clock::now_ms;
use crate::error::GatewayError;
use crate::routing::{self, Failure};

/// Whose fault a failed attempt was, decided where the failure is built. Either way another
/// candidate is tried; only a provider's failure rests the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The provider, or the way to it: the credential rests as the failure says (a redirect
    /// skips the provider's other keys instead).
    Provider(Failure),
    /// The gateway could not build or shape the request (a key it could not read, a body it
    /// could not wrap, its own token store failing): nothing is wrong with the credential, so
    /// it neither rests nor counts as an outage of its provider.
    Local,
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

/// Whether an upstream status means "try another candidate", and how the credential rests.
pub(super) fn retryable(upstream: &reqwest::Response) -> Option<Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
