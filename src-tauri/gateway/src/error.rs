//! The gateway's one error type and how it reaches a client.
//!
//! Every failure a request can meet is a [`GatewayError`] variant whose message says what to
//! fix. The same error renders differently per caller: an OpenAI client gets OpenAI's
//! `{"error":{"message","type","param","code"}}`, the management API and the UI get
//! `{"error":{"code","message"}}`, an Anthropic client gets
//! `{"type":"error","error":{"type","message"}}`. [`Rendered`] pairs an error with the shape its caller reads.
//! Messages never carry secrets: they name providers and variables, not keys.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;
use crate::store::secrets::SecretError;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::codec::{self, ErrorReport};

/// The most bytes of a provider's error answer read to tell the client what went wrong (the
/// rest is not waited for): enough for any real error, small enough that a hostile provider
/// cannot make the gateway hold a large body per failed attempt.
pub(crate) const ERROR_BODY_CAP: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "missing API key: send your FlexiProxy adapter key as `Authorization: Bearer fp-…` or \
         `x-api-key: fp-…` (create an adapter in FlexiProxy to get one)"
    )]
    MissingKey,
    #[error(
        "invalid API key: no FlexiProxy adapter has this key; create an adapter and use the key \
         it shows (keys are shown once)"
    )]
    InvalidKey,
    #[error("missing or wrong management token: send it as `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("request body is not valid JSON: {0}")]
    BadJson(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("request body is larger than the gateway's limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error(
        "provider `{provider}` used by this adapter no longer exists; register it again or \
         create an adapter for another provider"
    )]
    ProviderMissing { provider: String },
    #[error(
        "model `{model}` is not served here: it is no route name, has no `provider/model` prefix \
         of a registered provider, and no provider lists it ({known} model names are known; \
         GET /v1/models lists them)"
    )]
    ModelNotFound { model: String, known: usize },
    #[error(
        "no credential can take this request now: {reason}; retry in {retry_after} s (add keys \
         or raise their limits in FlexiProxy to serve more)"
    )]
    RateLimited { reason: String, retry_after: u64 },
    #[error("provider `{provider}` has no usable API key: {reason}")]
    ProviderKey { provider: String, reason: String },
    #[error("provider `{provider}` could not be reached at {url}: {reason}")]
    UpstreamUnreachable {
        provider: String,
        url: String,
        reason: String,
    },
    #[error("provider `{provider}` did not answer within {seconds} s ({url})")]
    UpstreamTimeout {
        provider: String,
        url: String,
        seconds: u64,
    },
    /// The provider refused the request on a translated path (a same-protocol path relays the
    /// provider's own error body instead). 4xx keep their status; 5xx become 502.
    #[error("provider `{provider}` answered HTTP {status}: {detail}")]
    UpstreamStatus {
        provider: String,
        status: u16,
        detail: String,
        /// The provider's `retry-after`, passed on to the client.
        retry_after: Option<String>,
    },
    #[error(
        "provider `{provider}` answered {status} redirect{}; FlexiProxy does not follow \
         redirects with your key: fix the provider's base URL",
        location.as_ref().map(|l| format!(" to {l}")).unwrap_or_default()
    )]
    UpstreamRedirect {
        provider: String,
        status: u16,
        location: Option<String>,
    },
    #[error("provider `{provider}` sent an answer the gateway could not read: {reason}")]
    UpstreamInvalid { provider: String, reason: String },
    /// A subscription account's provider (its login or token endpoint) failed or refused, for
    /// a reason other than a login that is gone. The message names the account.
    #[error("{0}")]
    Account(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gateway is stopping and this request was still running when the grace period
    /// ended (see `drain`).
    #[error(
        "FlexiProxy is shutting down: this request was still running {grace_secs} s after the \
         shutdown began and was cut; send it again once FlexiProxy is back"
    )]
    ShuttingDown { grace_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::InvalidKey | Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadJson(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) | Self::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            Self::ProviderMissing { .. }
            | Self::ProviderKey { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::Account(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamStatus { status, .. } => StatusCode::from_u16(*status)
                .ok()
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_GATEWAY),
            Self::UpstreamInvalid { .. } | Self::UpstreamRedirect { .. } => StatusCode::BAD_GATEWAY,
            Self::Secret(SecretError::ReadOnly { .. } | SecretError::MissingEnv { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Self::Secret(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ShuttingDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code, the same in every rendering.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_api_key",
            Self::InvalidKey => "invalid_api_key",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BadJson(_) => "invalid_json",
            Self::Invalid(_) => "invalid_request",
            Self::BodyTooLarge { .. } => "request_too_large",
            Self::NotFound(_) => "not_found",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Conflict(_) => "conflict",
            Self::Unsupported(_) => "unsupported",
            Self::ProviderMissing { .. } => "provider_missing",
            Self::ProviderKey { .. } => "provider_key_unavailable",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamStatus { .. } => "upstream_error_status",
            Self::UpstreamInvalid { .. } => "upstream_invalid_response",
            Self::UpstreamRedirect { .. } => "upstream_redirect",
            Self::Account(_) => "account_error",
            Self::Secret(SecretError::ReadOnly { .. }) => "keychain_read_only",
            Self::Secret(SecretError::MissingEnv { .. }) => "missing_env_variable",
            Self::Secret(_) => "keychain_unavailable",
            Self::Store(_) => "database_error",
            Self::ShuttingDown { .. } => "shutting_down",
            Self::Internal(_) => "internal_error",
        }
    }

    /// OpenAI's `error.type` family for this error.
    fn openai_type(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_client_error() => "invalid_request_error",
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => "upstream_error",
            _ => "api_error",
        }
    }
}

impl From<crate::blocking::TaskFailed> for GatewayError {
    fn from(error: crate::blocking::TaskFailed) -> Self {
        Self::Internal(error.to_string())
    }
}

/// Who is reading the error, and so which JSON shape it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// A client of this protocol: its own error body (`codec::Wire::error_body`).
    Client(Protocol),
    /// The management API and the UI.
    Management,
}

impl ErrorShape {
    /// OpenAI Chat Completions / Completions / Embeddings clients.
    pub const OPENAI: Self = Self::Client(Protocol::OpenAiChat);
    /// Anthropic Messages clients (Claude Code, the Anthropic SDKs).
    pub const ANTHROPIC: Self = Self::Client(Protocol::AnthropicMessages);
    /// Gemini clients (Gemini CLI, the google-genai SDKs).
    pub const GEMINI: Self = Self::Client(Protocol::Gemini);

    /// Whether the reader is an OpenAI-family client, which expects `WWW-Authenticate` on a 401.
    fn is_openai(self) -> bool {
        matches!(
            self,
            Self::Client(Protocol::OpenAiChat | Protocol::OpenAiResponses)
        )
    }
}

/// An error on its way to a caller who reads `shape`.
#[derive(Debug)]
pub struct Rendered {
    pub shape: ErrorShape,
    pub error: GatewayError,
}

impl Rendered {
    pub fn openai(error: impl Into<GatewayError>) -> Self {
        Self {
            shape: ErrorShape::OPENAI,
            error: error.into(),
        }
    }

    pub fn anthropic(error: impl Into<GatewayError>) -> Self {
        Self {
            shape: ErrorShape::ANTHROPIC,
            error: error.into(),
        }
    }

    pub fn new(shape: ErrorShape, error: impl Into<GatewayError>) -> Self {
        Self {
            shape,
            error: error.into(),
        }
    }

    pub fn management(error: impl Into<GatewayError>) -> Self {
        Self {
            shape: ErrorShape::Management,
            error: error.into(),
        }
    }
}

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let message = self.error.to_string();
        if status.is_server_error() {
            tracing::warn!(code = self.error.code(), %message, "request failed");
        } else {
            tracing::debug!(code = self.error.code(), %message, "request refused");
        }
        let protocol = match self.shape {
            ErrorShape::Client(protocol) => protocol,
            ErrorShape::Management => {
                let body = json!({
                    "error": { "code": self.error.code(), "message": message }
                });
                return self.finish((status, axum::Json(body)).into_response());
            }
        };
        let body = codec::error_body(
            protocol,
            &ErrorReport {
                status: status.as_u16(),
                message: &message,
                code: Some(self.error.code()),
                kind: Some(self.error.openai_type()),
            },
        );
        let response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        self.finish(response)
    }
}

impl Rendered {
    /// The headers every error answer carries whatever its body's shape.
    fn finish(self, mut response: Response) -> Response {
        let status = response.status();
        let retry_after = match &self.error {
            GatewayError::UpstreamStatus {
                retry_after: Some(value),
                ..
            } => HeaderValue::from_str(value).ok(),
            GatewayError::RateLimited { retry_after, .. } => Some(HeaderValue::from(*retry_after)),
            _ => None,
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED && self.shape.is_openai() {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"flexiproxy\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn openai_clients_get_openai_error_bodies() {
        let response = Rendered::openai(GatewayError::UpstreamUnreachable {
            provider: "deepseek".into(),
            url: "http://127.0.0.1:9/v1/chat/completions".into(),
            reason: "connection refused".into(),
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = body_json(response).await;
        assert_eq!(body["error"]["type"], "upstream_error");
        assert_eq!(body["error"]["code"], "upstream_unreachable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`deepseek`")
        );
    }

    #[tokio::test]
    async fn anthropic_clients_get_anthropic_error_bodies() {
        let response = Rendered::anthropic(GatewayError::UpstreamStatus {
            provider: "deepseek".into(),
            status: 503,
            detail: "overloaded".into(),
            retry_after: None,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = body_json(response).await;
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "api_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`deepseek`") && message.contains("503"),
            "{message}"
        );

        let response = Rendered::anthropic(GatewayError::UpstreamStatus {
            provider: "deepseek".into(),
            status: 429,
            detail: "slow down".into(),
            retry_after: Some("7".into()),
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(
            body_json(response).await["error"]["type"],
            "rate_limit_error"
        );

        let response = Rendered::anthropic(GatewayError::InvalidKey).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            body_json(response).await["error"]["type"],
            "authentication_error"
        );
    }

    #[tokio::test]
    async fn management_errors_have_code_and_message() {
        let response =
            Rendered::management(GatewayError::NotFound("provider `x`".into())).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["message"], "not found: provider `x`");
    }
}
