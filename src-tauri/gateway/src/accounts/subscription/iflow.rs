//! iFlow accounts (an iflow.cn login): OpenAI chat completions at `apis.iflow.cn/v1`.
//!
//! The OAuth access token of an iFlow login is not what the API takes: after login the
//! account's API key is read from iFlow's user-info endpoint (the login part's job), and that
//! key is the bearer here. iFlow gives CLI-only models to requests whose `User-Agent` is the
//! iFlow CLI's, so that is sent too.

use reqwest::header::{self, HeaderValue};

use super::{AccountKind, Call, ShapeError, Upstream};
use crate::accounts::oauth::SideHttp;
use crate::store::secrets::Secret;

/// iFlow's OpenAI-compatible root.
pub const DEFAULT_BASE: &str = "https://apis.iflow.cn/v1";
/// Where an iFlow login's API key and contact are read, with the access token as a query
/// parameter (the way iFlow's own CLI asks).
pub const DEFAULT_USER_INFO: &str = "https://iflow.cn/api/oauth/getUserInfo";
/// The `User-Agent` the iFlow CLI sends.
pub const USER_AGENT: &str = "iFlow-Cli";

pub(super) fn upstream(
    base: &str,
    api_key: &Secret,
    call: Call<'_>,
) -> Result<Upstream, ShapeError> {
    let mut headers = super::bearer_headers(AccountKind::Iflow, api_key, call.stream)?;
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    Ok(Upstream::plain(
        super::join(base, "/chat/completions"),
        headers,
    ))
}

/// What iFlow's user info says about a login.
#[derive(Debug, Clone)]
pub struct UserInfo {
    /// The key the chat API takes.
    pub api_key: Secret,
    /// The email, else the phone number the account signed in with.
    pub contact: Option<String>,
}

#[derive(serde::Deserialize)]
struct UserInfoAnswer {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<UserInfoData>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserInfoData {
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

/// Reads the account's API key from iFlow's user info, right after login (and after each
/// refresh, since iFlow may rotate it).
pub async fn user_info(
    http: &SideHttp,
    url: &str,
    access: &Secret,
) -> Result<UserInfo, ShapeError> {
    let answer = |detail: String| ShapeError::Answer {
        kind: AccountKind::Iflow,
        detail,
    };
    let response = http
        .send(
            http.client()
                .get(url)
                .query(&[("accessToken", access.expose())])
                .header(header::ACCEPT, "application/json"),
        )
        .await
        // Side-path errors never carry the URL, which here carries the token.
        .map_err(|e| answer(format!("user info unreachable ({e})")))?;
    let status = response.status;
    let body = response.body;
    if !status.is_success() {
        return Err(answer(format!("user info answered {status}")));
    }
    let parsed: UserInfoAnswer =
        serde_json::from_slice(&body).map_err(|e| answer(format!("user info: {e}")))?;
    let data = parsed.data.filter(|_| parsed.success).ok_or_else(|| {
        answer(format!(
            "user info refused: {}",
            parsed
                .message
                .unwrap_or_else(|| "no reason given".to_owned())
        ))
    })?;
    let api_key = data.api_key.filter(|k| !k.is_empty()).ok_or_else(|| {
        answer("the account has no API key yet; open iflow.cn once to create it".to_owned())
    })?;
    Ok(UserInfo {
        api_key: Secret::new(api_key),
        contact: data.email.filter(|e| !e.is_empty()).or(data.phone),
    })
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
