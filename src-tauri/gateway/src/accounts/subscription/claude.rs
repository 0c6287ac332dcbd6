//! Claude accounts (an Anthropic Pro/Max login): Anthropic Messages at `api.anthropic.com`
//! with the OAuth access token as a bearer instead of `x-api-key`.
//!
//! What the endpoint expects, as Claude Code sends it: `Authorization: Bearer <access>`,
//! `anthropic-version: 2023-06-01`, and `anthropic-beta` including `oauth-2025-04-20` (without
//! that beta the API refuses OAuth tokens). A client's own betas are kept alongside it.
//!
//! System prompt: the API accepts a subscription token only for requests that present
//! themselves as Claude Code; public reports and other gateways agree that the first system
//! block must be exactly [`CLAUDE_CODE_IDENTITY`], otherwise the answer is a 4xx saying the
//! credential is only authorised for Claude Code. Anthropic does not document this and may
//! change it. [`with_identity_system`] puts that block first (keeping the client's system
//! prompt after it), on every request ([`BodyTransform::ClaudeIdentity`]): Claude Code's own
//! requests already start with it and pass unchanged.
//!
//! The plan (Pro, Max) is read once after login from the OAuth profile ([`plan`]), for the
//! accounts list only.

use bytes::Bytes;
use flexiproxy_protocol::anthropic_messages::ANTHROPIC_VERSION;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{AccountKind, BodyTransform, Call, ResponseTransform, ShapeError, Upstream};
use crate::accounts::oauth::SideHttp;
use crate::store::secrets::Secret;

/// The public API root.
pub const DEFAULT_BASE: &str = "https://api.anthropic.com";
/// The beta that lets the Messages API accept an OAuth access token.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";
/// The first system block a subscription request must carry (see the module docs).
pub const CLAUDE_CODE_IDENTITY: &str = "You are Claude Code, Anthropic's official CLI for Claude.";

pub(super) fn upstream(
    base: &str,
    access: &Secret,
    call: Call<'_>,
) -> Result<Upstream, ShapeError> {
    let mut headers = super::bearer_headers(AccountKind::Claude, access, call.stream)?;
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(ANTHROPIC_VERSION),
    );
    headers.insert(
        HeaderName::from_static("anthropic-beta"),
        HeaderValue::from_static(OAUTH_BETA),
    );
    Ok(Upstream {
        url: super::join(base, "/v1/messages"),
        headers,
        body: BodyTransform::ClaudeIdentity,
        response: ResponseTransform::None,
        stream_only: false,
    })
}

/// The subscription plan the account's OAuth profile names (`Max`, `Pro`, or the
/// organization's type), or `None` when the profile cannot be read: it is only shown.
pub async fn plan(http: &SideHttp, base: &str, access: &Secret) -> Option<String> {
    let response = http
        .send(
            http.client()
                .get(super::join(base, "/api/oauth/profile"))
                .bearer_auth(access.expose())
                .header("anthropic-beta", OAUTH_BETA),
        )
        .await
        .ok()?;
    if !response.status.is_success() {
        return None;
    }
    let profile: Value = serde_json::from_slice(&response.body).ok()?;
    let flag =
        |name: &str| profile.pointer(&format!("/account/{name}")) == Some(&Value::Bool(true));
    if flag("has_claude_max") {
        return Some("Max".to_owned());
    }
    if flag("has_claude_pro") {
        return Some("Pro".to_owned());
    }
    profile
        .pointer("/organization/organization_type")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Adds a same-protocol client's `anthropic-version` and `anthropic-beta` to `upstream`'s
/// headers, keeping the OAuth beta in the list.
pub fn merge_client_headers(upstream: &mut Upstream, client: &HeaderMap) {
    if let Some(version) = client.get("anthropic-version") {
        upstream.headers.insert(
            HeaderName::from_static("anthropic-version"),
            version.clone(),
        );
    }
    let Some(betas) = client.get("anthropic-beta").and_then(|v| v.to_str().ok()) else {
        return;
    };
    let mut list: Vec<&str> = betas
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    if !list.contains(&OAUTH_BETA) {
        list.insert(0, OAUTH_BETA);
    }
    if let Ok(value) = HeaderValue::try_from(list.join(",")) {
        upstream
            .headers
            .insert(HeaderName::from_static("anthropic-beta"), value);
    }
}

/// The Messages body with [`CLAUDE_CODE_IDENTITY`] as its first system block (unless it is
/// already first). A string system prompt becomes a second text block.
pub fn with_identity_system(body: &[u8]) -> Result<Bytes, ShapeError> {
    let bad = |detail: String| ShapeError::Body {
        kind: AccountKind::Claude,
        detail,
    };
    let mut object = super::body_object(AccountKind::Claude, body)?;
    let identity = json!({"type": "text", "text": CLAUDE_CODE_IDENTITY});
    let blocks = match object.remove("system") {
        None | Some(Value::Null) => vec![identity],
        Some(Value::String(text)) if text.is_empty() => vec![identity],
        Some(Value::String(text)) => vec![identity, json!({"type": "text", "text": text})],
        Some(Value::Array(mut blocks)) => {
            let first_is_identity = blocks
                .first()
                .and_then(|b| b.get("text"))
                .and_then(Value::as_str)
                == Some(CLAUDE_CODE_IDENTITY);
            if !first_is_identity {
                blocks.insert(0, identity);
            }
            blocks
        }
        Some(other) => return Err(bad(format!("`system` is neither text nor blocks: {other}"))),
    };
    object.insert("system".to_owned(), Value::Array(blocks));
    super::object_body(AccountKind::Claude, &object)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::accounts::subscription::test_upstream::{header, send, spawn};
    use crate::accounts::subscription::{Account, Endpoints, upstream as shape};

    async fn messages(headers: HeaderMap, body: String) -> (StatusCode, String) {
        if header(&headers, "authorization") != "Bearer oat-123"
            || header(&headers, "anthropic-version") != ANTHROPIC_VERSION
            || !header(&headers, "anthropic-beta").contains(OAUTH_BETA)
            || headers.get("x-api-key").is_some()
        {
            return (StatusCode::UNAUTHORIZED, "headers".into());
        }
        let body: Value = serde_json::from_str(&body).unwrap();
        if body["system"][0]["text"] != CLAUDE_CODE_IDENTITY {
            return (StatusCode::FORBIDDEN, "only Claude Code".into());
        }
        (StatusCode::OK, r#"{"type":"message","content":[]}"#.into())
    }

    #[tokio::test]
    async fn messages_go_to_v1_messages_with_bearer_and_oauth_beta() {
        let base = spawn(Router::new().route("/v1/messages", post(messages))).await;
        let endpoints = Endpoints {
            claude: base,
            ..Endpoints::default()
        };
        let account = Account::Claude {
            access: Secret::new("oat-123"),
        };
        let call = Call {
            model: "claude-sonnet-4-5",
            stream: false,
        };
        let shaped = shape(&account, &endpoints, call).unwrap();
        assert!(!format!("{shaped:?}").contains("oat-123"));

        let body =
            with_identity_system(br#"{"model":"m","system":"Be brief.","messages":[]}"#).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["system"][1]["text"], "Be brief.");
        let (status, answer) = send(&shaped, body).await;
        assert_eq!(status, 200, "{answer:?}");

        // The shaping adds the block itself, so any client's request is accepted…
        let (status, _) = send(&shaped, r#"{"model":"m","messages":[]}"#).await;
        assert_eq!(status, 200);
        // …which the stand-in, like the API, requires.
        let mut bare = shaped.clone();
        bare.body = BodyTransform::None;
        let (status, _) = send(&bare, r#"{"model":"m","messages":[]}"#).await;
        assert_eq!(
            status, 403,
            "without the identity block the stand-in refuses"
        );
    }

    #[test]
    fn client_betas_are_kept_with_the_oauth_beta() {
        let account = Account::Claude {
            access: Secret::new("t"),
        };
        let call = Call {
            model: "m",
            stream: true,
        };
        let mut shaped = shape(&account, &Endpoints::default(), call).unwrap();
        assert_eq!(shaped.url, "https://api.anthropic.com/v1/messages");
        let mut client = HeaderMap::new();
        client.insert(
            "anthropic-beta",
            HeaderValue::from_static("tools-x, files-y"),
        );
        merge_client_headers(&mut shaped, &client);
        assert_eq!(
            header(&shaped.headers, "anthropic-beta"),
            "oauth-2025-04-20,tools-x,files-y"
        );
        assert_eq!(header(&shaped.headers, "accept"), "text/event-stream");
    }

    #[test]
    fn identity_is_not_added_twice() {
        let once = with_identity_system(br#"{"messages":[]}"#).unwrap();
        let twice = with_identity_system(&once).unwrap();
        let value: Value = serde_json::from_slice(&twice).unwrap();
        assert_eq!(value["system"].as_array().unwrap().len(), 1);
    }
}
