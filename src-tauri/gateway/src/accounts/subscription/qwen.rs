//! Qwen accounts (a qwen.ai device-flow login): OpenAI chat completions at the host the token
//! response names in `resource_url`, with `Authorization: Bearer <access>`.
//!
//! `resource_url` is usually a bare host such as `portal.qwen.ai`; like Qwen Code, the gateway
//! adds `https://` when no scheme is given and `/v1` when the URL does not end in it. An
//! account whose token response named none uses [`DEFAULT_BASE`] (DashScope's
//! OpenAI-compatible mode, Qwen Code's own fallback).

use super::{AccountKind, Call, ShapeError, Upstream};
use crate::store::secrets::Secret;

/// The root used when the login named no `resource_url`.
pub const DEFAULT_BASE: &str = "https://dashscope.aliyuncs.com/compatible-mode/v1";

pub(super) fn upstream(
    default_base: &str,
    access: &Secret,
    resource_url: Option<&str>,
    call: Call<'_>,
) -> Result<Upstream, ShapeError> {
    let headers = super::bearer_headers(AccountKind::Qwen, access, call.stream)?;
    let base = match resource_url.map(str::trim).filter(|u| !u.is_empty()) {
        // The token answer names this host; the bearer token must not go to it in clear.
        Some(url) => {
            let root = api_root(url);
            crate::config::destination::check_account_endpoint("resource_url", &root).map_err(
                |detail| ShapeError::Endpoint {
                    kind: AccountKind::Qwen,
                    detail,
                },
            )?;
            root
        }
        None => default_base.trim_end_matches('/').to_owned(),
    };
    Ok(Upstream::plain(
        super::join(&base, "/chat/completions"),
        headers,
    ))
}

/// The OpenAI-compatible root for a `resource_url`: scheme added if missing, ending in `/v1`.
pub fn api_root(resource_url: &str) -> String {
    let url = resource_url.trim_end_matches('/');
    let url = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    if url.ends_with("/v1") {
        url
    } else {
        format!("{url}/v1")
    }
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

    async fn chat(headers: HeaderMap) -> (StatusCode, &'static str) {
        if header(&headers, "authorization") != "Bearer qwen-at" {
            return (StatusCode::UNAUTHORIZED, "auth");
        }
        (
            StatusCode::OK,
            r#"{"object":"chat.completion","choices":[]}"#,
        )
    }

    #[tokio::test]
    async fn chat_goes_to_the_accounts_resource_url() {
        let base = spawn(Router::new().route("/v1/chat/completions", post(chat))).await;
        let account = Account::Qwen {
            access: Secret::new("qwen-at"),
            resource_url: Some(base),
        };
        let call = Call {
            model: "qwen3-coder-plus",
            stream: false,
        };
        let shaped = shape(&account, &Endpoints::default(), call).unwrap();
        let (status, answer) = send(&shaped, r#"{"model":"qwen3-coder-plus","messages":[]}"#).await;
        assert_eq!(status, 200, "{answer:?}");
    }

    #[test]
    fn a_resource_url_that_would_expose_the_token_is_refused() {
        let access = Secret::new("tok".to_owned());
        for hostile in [
            "http://attacker.example",
            "https://user:pw@x.example",
            "http://192.168.1.5:8080",
        ] {
            let call = Call {
                model: "qwen3-coder-plus",
                stream: false,
            };
            let error = upstream(DEFAULT_BASE, &access, Some(hostile), call)
                .err()
                .unwrap();
            assert!(matches!(error, ShapeError::Endpoint { .. }), "{hostile}");
        }
        let call = Call {
            model: "qwen3-coder-plus",
            stream: false,
        };
        assert!(upstream(DEFAULT_BASE, &access, Some("portal.qwen.ai"), call).is_ok());
    }

    #[test]
    fn resource_urls_are_normalised() {
        assert_eq!(api_root("portal.qwen.ai"), "https://portal.qwen.ai/v1");
        assert_eq!(
            api_root("https://portal.qwen.ai/v1/"),
            "https://portal.qwen.ai/v1"
        );
        let account = Account::Qwen {
            access: Secret::new("t"),
            resource_url: None,
        };
        let call = Call {
            model: "m",
            stream: true,
        };
        let shaped = shape(&account, &Endpoints::default(), call).unwrap();
        assert_eq!(
            shaped.url,
            "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions"
        );
    }
}
