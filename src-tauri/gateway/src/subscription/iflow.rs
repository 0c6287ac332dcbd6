//! iFlow accounts (an iflow.cn login): OpenAI chat completions at `apis.iflow.cn/v1`.
//!
//! The OAuth access token of an iFlow login is not what the API takes: after login the
//! account's API key is read from iFlow's user-info endpoint (the login part's job), and that
//! key is the bearer here. iFlow gives CLI-only models to requests whose `User-Agent` is the
//! iFlow CLI's, so that is sent too.

use axum::http::{HeaderValue, header};

use super::{AccountKind, BodyTransform, Call, ResponseTransform, ShapeError, Upstream};
use crate::secrets::Secret;

/// iFlow's OpenAI-compatible root.
pub const DEFAULT_BASE: &str = "https://apis.iflow.cn/v1";
/// The `User-Agent` the iFlow CLI sends.
pub const USER_AGENT: &str = "iFlow-Cli";

pub(super) fn upstream(
    base: &str,
    api_key: &Secret,
    call: Call<'_>,
) -> Result<Upstream, ShapeError> {
    let mut headers = super::base_headers(call.stream);
    super::bearer(&mut headers, AccountKind::Iflow, api_key)?;
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    Ok(Upstream {
        url: super::join(base, "/chat/completions"),
        headers,
        body: BodyTransform::None,
        response: ResponseTransform::None,
        stream_only: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::subscription::test_upstream::{header, send, spawn};
    use crate::subscription::{Account, Endpoints, upstream as shape};

    async fn chat(headers: HeaderMap) -> (StatusCode, &'static str) {
        if header(&headers, "authorization") != "Bearer sk-iflow"
            || header(&headers, "user-agent") != USER_AGENT
        {
            return (StatusCode::UNAUTHORIZED, "auth");
        }
        (StatusCode::OK, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n")
    }

    #[tokio::test]
    async fn chat_goes_to_iflow_with_the_api_key() {
        let base = spawn(Router::new().route("/v1/chat/completions", post(chat))).await;
        let endpoints = Endpoints {
            iflow: format!("{base}/v1"),
            ..Endpoints::default()
        };
        let account = Account::Iflow {
            api_key: Secret::new("sk-iflow"),
        };
        let call = Call {
            model: "glm-4.6",
            stream: true,
        };
        let shaped = shape(&account, &endpoints, call).unwrap();
        assert!(!format!("{shaped:?}").contains("sk-iflow"));
        let (status, answer) = send(
            &shaped,
            r#"{"model":"glm-4.6","stream":true,"messages":[]}"#,
        )
        .await;
        assert_eq!(status, 200, "{answer:?}");
        assert!(answer.ends_with(b"[DONE]\n\n"));
    }
}
