//! Codex accounts (a ChatGPT login): OpenAI Responses at ChatGPT's Codex backend,
//! `chatgpt.com/backend-api/codex/responses`, not `api.openai.com`.
//!
//! What the endpoint expects, as the Codex CLI sends it: `Authorization: Bearer <access>`,
//! `chatgpt-account-id` (the `chatgpt_account_id` claim of the login's ID token),
//! `OpenAI-Beta: responses=experimental` and an `originator` naming the client. The backend
//! answers only as a stream and does not keep responses, so the body always carries
//! `stream: true` and `store: false`; it requires `instructions` (an empty string is accepted)
//! and rejects `stream_options`. A client that asked for a whole answer gets one collected
//! from the stream ([`Upstream::stream_only`]).

use bytes::Bytes;
use serde_json::Value;

use reqwest::header::HeaderMap;

use super::{
    AccountKind, BodyTransform, Call, QuotaWindow, ResponseTransform, ShapeError, Upstream,
};
use crate::store::secrets::Secret;

/// The Codex backend root.
pub const DEFAULT_BASE: &str = "https://chatgpt.com/backend-api/codex";
/// The `OpenAI-Beta` value the Responses endpoint needs.
pub const OPENAI_BETA: &str = "responses=experimental";
/// The `originator` the Codex CLI sends.
pub const ORIGINATOR: &str = "codex_cli_rs";

/// Top-level fields the Codex backend refuses.
const REFUSED_FIELDS: [&str; 3] = [
    "stream_options",
    "prompt_cache_retention",
    "safety_identifier",
];

pub(super) fn upstream(
    base: &str,
    access: &Secret,
    account_id: &str,
    _call: Call<'_>,
) -> Result<Upstream, ShapeError> {
    let kind = AccountKind::Codex;
    // The backend streams whatever the client asked, so accept SSE either way.
    let mut headers = super::bearer_headers(kind, access, true)?;
    super::fact_header(
        &mut headers,
        kind,
        "chatgpt-account-id",
        "ChatGPT account id",
        account_id,
    )?;
    super::fact_header(
        &mut headers,
        kind,
        "openai-beta",
        "beta header",
        OPENAI_BETA,
    )?;
    super::fact_header(&mut headers, kind, "originator", "originator", ORIGINATOR)?;
    Ok(Upstream {
        url: super::join(base, "/responses"),
        headers,
        body: BodyTransform::Codex,
        response: ResponseTransform::None,
        stream_only: true,
    })
}

/// The usage windows the Codex backend reports on every answer (`x-codex-primary-*` for the
/// short window, `x-codex-secondary-*` for the weekly one), as the Codex CLI reads them.
pub fn quota(headers: &HeaderMap) -> Vec<QuotaWindow> {
    let read = |name: String| {
        headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    ["primary", "secondary"]
        .into_iter()
        .filter_map(|window| {
            let used_percent = read(format!("x-codex-{window}-used-percent"))?
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite())?;
            let window_minutes =
                read(format!("x-codex-{window}-window-minutes")).and_then(|m| m.parse().ok());
            let resets_at_ms = read(format!("x-codex-{window}-reset-at"))
                .and_then(|s| s.parse::<i64>().ok())
                .map(|secs| secs.saturating_mul(1000));
            Some(QuotaWindow {
                name: window.to_owned(),
                used_percent,
                window_minutes,
                resets_at_ms,
            })
        })
        .collect()
}

/// The Responses body as the Codex backend takes it (see the module docs).
pub fn adjust_body(body: &[u8]) -> Result<Bytes, ShapeError> {
    let mut object = super::body_object(AccountKind::Codex, body)?;
    object.insert("stream".to_owned(), Value::Bool(true));
    object.insert("store".to_owned(), Value::Bool(false));
    if !matches!(object.get("instructions"), Some(Value::String(_))) {
        object.insert("instructions".to_owned(), Value::String(String::new()));
    }
    for field in REFUSED_FIELDS {
        object.remove(field);
    }
    super::object_body(AccountKind::Codex, &object)
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

    async fn responses(headers: HeaderMap, body: String) -> (StatusCode, String) {
        if header(&headers, "authorization") != "Bearer chatgpt-at"
            || header(&headers, "chatgpt-account-id") != "acct-42"
            || header(&headers, "openai-beta") != OPENAI_BETA
            || header(&headers, "originator") != ORIGINATOR
            || header(&headers, "accept") != "text/event-stream"
        {
            return (StatusCode::UNAUTHORIZED, "headers".into());
        }
        let body: Value = serde_json::from_str(&body).unwrap();
        if body["stream"] != true
            || body["store"] != false
            || !body["instructions"].is_string()
            || body.get("stream_options").is_some()
        {
            return (StatusCode::BAD_REQUEST, body.to_string());
        }
        let done = r#"{"type":"response.completed","response":{"id":"r1","output":[]}}"#;
        (
            StatusCode::OK,
            format!("event: response.completed\ndata: {done}\n\n"),
        )
    }

    #[tokio::test]
    async fn responses_go_to_the_codex_backend_streamed_and_unstored() {
        let base =
            spawn(Router::new().route("/backend-api/codex/responses", post(responses))).await;
        let endpoints = Endpoints {
            codex: format!("{base}/backend-api/codex"),
            ..Endpoints::default()
        };
        let account = Account::Codex {
            access: Secret::new("chatgpt-at"),
            account_id: "acct-42".into(),
        };
        let shaped = shape(
            &account,
            &endpoints,
            Call {
                model: "gpt-5-codex",
                stream: false,
            },
        )
        .unwrap();
        assert!(shaped.stream_only);
        assert!(!format!("{shaped:?}").contains("chatgpt-at"));
        let (status, answer) = send(
            &shaped,
            r#"{"model":"gpt-5-codex","input":"hi","stream":false,"stream_options":{"include_usage":true}}"#,
        )
        .await;
        assert_eq!(status, 200, "{answer:?}");
        assert!(answer.starts_with(b"event: response.completed"));
    }

    #[test]
    fn instructions_the_client_gave_are_kept() {
        let body = adjust_body(br#"{"instructions":"Be terse.","store":true}"#).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["instructions"], "Be terse.");
        assert_eq!(value["store"], false);
        assert!(adjust_body(b"[1]").is_err());
    }
}
