//! Request shaping for subscription accounts: where a request for a logged-in account goes and
//! what it must carry, one module per account kind.
//!
//! A subscription account (a Claude, ChatGPT, Google, Qwen, GitHub Copilot or iFlow login) is
//! a credential like an API key, but each kind has its own endpoint, its own auth headers and
//! sometimes its own envelope around the body. The relay encodes the request in the protocol
//! the kind speaks ([`AccountKind::protocol`], with the existing `protocol` modules), then asks
//! [`upstream`] for the URL, the headers and the body/response transforms, and sends it.
//! Tokens come from `oauth` (the login flows and the token store) as [`Secret`]s; Copilot's
//! short-lived token is minted here ([`copilot::CopilotTokens`]) from the GitHub token.
//!
//! - `claude`: Anthropic Messages with the OAuth bearer and the OAuth beta.
//! - `codex`: ChatGPT's Codex Responses endpoint (account id header, always streamed).
//! - `gemini_cli`: Google Code Assist (`v1internal`), its body envelope and project set-up.
//! - `qwen`: OpenAI chat at the account's own `resource_url`.
//! - `copilot`: the Copilot token mint and chat with the editor headers.
//! - `iflow`: OpenAI chat with the API key the iFlow login yields.
//!
//! Every base URL is a field of [`Endpoints`] with the public default, so tests (and users
//! behind a corporate proxy) can point it elsewhere. Headers carrying a token are marked
//! sensitive, so `Debug` of an [`Upstream`] never shows them.

pub mod claude;
pub mod codex;
pub mod copilot;
pub mod gemini_cli;
pub mod iflow;
pub mod qwen;

#[cfg(test)]
mod test_upstream;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

pub use crate::accounts::oauth::AccountKind;
use crate::store::secrets::Secret;

/// Base URLs of the subscription endpoints. `Default` gives the public ones; every field can be
/// overridden (tests point them at a loopback server).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Endpoints {
    /// Anthropic API root; `/v1/messages` is appended.
    pub claude: String,
    /// ChatGPT Codex backend root; `/responses` is appended.
    pub codex: String,
    /// Google Code Assist root; `/v1internal:<method>` is appended.
    pub code_assist: String,
    /// OpenAI-compatible root for a Qwen account whose token response named no `resource_url`.
    pub qwen_default: String,
    /// iFlow's OpenAI-compatible root; `/chat/completions` is appended.
    pub iflow: String,
    /// iFlow's user-info endpoint, where a login's API key is read.
    pub iflow_user_info: String,
    /// GitHub API root for the Copilot token mint.
    pub github_api: String,
    /// Copilot API root used when the mint response names none.
    pub copilot_default: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            claude: claude::DEFAULT_BASE.to_owned(),
            codex: codex::DEFAULT_BASE.to_owned(),
            code_assist: gemini_cli::DEFAULT_BASE.to_owned(),
            qwen_default: qwen::DEFAULT_BASE.to_owned(),
            iflow: iflow::DEFAULT_BASE.to_owned(),
            iflow_user_info: iflow::DEFAULT_USER_INFO.to_owned(),
            github_api: copilot::DEFAULT_GITHUB_API.to_owned(),
            copilot_default: copilot::DEFAULT_COPILOT_API.to_owned(),
        }
    }
}

/// One logged-in account with what its requests need: its token and the facts its login
/// yielded. Copilot carries the short-lived token minted by [`copilot::CopilotTokens`], not
/// the GitHub token.
#[derive(Debug, Clone)]
pub enum Account {
    Claude {
        access: Secret,
    },
    Codex {
        access: Secret,
        /// `chatgpt_account_id` from the ID token's `https://api.openai.com/auth` claim.
        account_id: String,
    },
    GeminiCli {
        access: Secret,
        /// The Google Cloud project from [`gemini_cli::setup_project`].
        project: String,
    },
    Qwen {
        access: Secret,
        /// `resource_url` from the token response, e.g. `portal.qwen.ai`.
        resource_url: Option<String>,
    },
    Copilot(copilot::CopilotToken),
    Iflow {
        /// The API key read from iFlow's user info after login (not the OAuth access token).
        api_key: Secret,
    },
}

impl Account {
    pub fn kind(&self) -> AccountKind {
        match self {
            Self::Claude { .. } => AccountKind::Claude,
            Self::Codex { .. } => AccountKind::Codex,
            Self::GeminiCli { .. } => AccountKind::GeminiCli,
            Self::Qwen { .. } => AccountKind::Qwen,
            Self::Copilot(_) => AccountKind::Copilot,
            Self::Iflow { .. } => AccountKind::Iflow,
        }
    }
}

/// What the client asked for, as far as the endpoint choice depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    /// The upstream model id.
    pub model: &'a str,
    /// Whether the client wants a stream.
    pub stream: bool,
}

/// Where and how to send one request for an account.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: String,
    /// Auth and kind-specific headers. Token-bearing values are marked sensitive.
    pub headers: HeaderMap,
    /// Applied to the body encoded in [`AccountKind::protocol`] before sending.
    pub body: BodyTransform,
    /// Applied to the upstream's answer before the protocol module decodes it.
    pub response: ResponseTransform,
    /// The endpoint answers only as a stream: a client that asked for a whole answer gets one
    /// collected from the stream.
    pub stream_only: bool,
}

impl Upstream {
    /// An endpoint that takes the body and gives the answer as the protocol module has them.
    fn plain(url: String, headers: HeaderMap) -> Self {
        Self {
            url,
            headers,
            body: BodyTransform::None,
            response: ResponseTransform::None,
            stream_only: false,
        }
    }
}

/// One usage window an account's endpoint reported with its last answer (Codex sends them as
/// headers): how much of the plan's allowance in that window is used, and when it resets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuotaWindow {
    /// `primary`, `secondary`.
    pub name: String,
    pub used_percent: f64,
    pub window_minutes: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub resets_at_ms: Option<i64>,
}

/// The usage windows an answer's headers report, for account kinds whose endpoint sends
/// them; empty otherwise.
pub fn quota(kind: AccountKind, headers: &HeaderMap) -> Vec<QuotaWindow> {
    match kind {
        AccountKind::Codex => codex::quota(headers),
        AccountKind::Claude
        | AccountKind::GeminiCli
        | AccountKind::Qwen
        | AccountKind::Copilot
        | AccountKind::Iflow => Vec::new(),
    }
}

/// How a request body must change for the account's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTransform {
    None,
    /// Claude: the Claude Code identity as the first system block.
    ClaudeIdentity,
    /// Codex: `stream: true`, `store: false`, `instructions` present, no `stream_options`.
    Codex,
    /// Code Assist: `{model, project, request: <gemini body>}`.
    CodeAssistWrap {
        model: String,
        project: String,
    },
}

impl BodyTransform {
    pub fn apply(&self, body: Bytes) -> Result<Bytes, ShapeError> {
        match self {
            Self::None => Ok(body),
            Self::ClaudeIdentity => claude::with_identity_system(&body),
            Self::Codex => codex::adjust_body(&body),
            Self::CodeAssistWrap { model, project } => {
                gemini_cli::wrap_request(model, project, &body)
            }
        }
    }
}

/// The request body as a JSON object, for the transforms that edit its top-level fields.
fn body_object(kind: AccountKind, body: &[u8]) -> Result<Map<String, Value>, ShapeError> {
    serde_json::from_slice(body).map_err(|e| ShapeError::Body {
        kind,
        detail: e.to_string(),
    })
}

/// An edited body object encoded again.
fn object_body(kind: AccountKind, object: &Map<String, Value>) -> Result<Bytes, ShapeError> {
    serde_json::to_vec(object)
        .map(Bytes::from)
        .map_err(|e| ShapeError::Body {
            kind,
            detail: e.to_string(),
        })
}

/// How an upstream answer must change before the protocol module reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseTransform {
    None,
    /// Code Assist: `{response: <gemini answer>}` in JSON, and in each SSE event's data
    /// ([`gemini_cli::unwrap_response`], [`gemini_cli::SseUnwrapper`]).
    CodeAssistUnwrap,
}

/// Why a request could not be shaped. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error(
        "the request body for {kind} is not valid JSON ({detail}); this is a gateway bug, please report it"
    )]
    Body { kind: AccountKind, detail: String },
    #[error("the {kind} upstream answered with a body that is not in its format: {detail}")]
    Answer { kind: AccountKind, detail: String },
    #[error(
        "the {kind} account's {what} cannot be sent in an HTTP header; log in to the account again"
    )]
    Header {
        kind: AccountKind,
        what: &'static str,
    },
    /// The login named where its requests go (Qwen's `resource_url`) and that place would get
    /// the account's token readable or elsewhere than a URL.
    #[error("the {kind} login's API address cannot be used ({0}); log in to the account again", .detail)]
    Endpoint {
        kind: AccountKind,
        detail: crate::config::destination::UrlRefusal,
    },
}

/// URL, headers and transforms for one request of `account`, encoded in
/// `account.kind().protocol()`.
pub fn upstream(
    account: &Account,
    endpoints: &Endpoints,
    call: Call<'_>,
) -> Result<Upstream, ShapeError> {
    match account {
        Account::Claude { access } => claude::upstream(&endpoints.claude, access, call),
        Account::Codex { access, account_id } => {
            codex::upstream(&endpoints.codex, access, account_id, call)
        }
        Account::GeminiCli { access, project } => {
            gemini_cli::upstream(&endpoints.code_assist, access, project, call)
        }
        Account::Qwen {
            access,
            resource_url,
        } => qwen::upstream(
            &endpoints.qwen_default,
            access,
            resource_url.as_deref(),
            call,
        ),
        Account::Copilot(token) => copilot::upstream(token, call),
        Account::Iflow { api_key } => iflow::upstream(&endpoints.iflow, api_key, call),
    }
}

/// `path` below `base`, with exactly one slash between them.
fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Headers every subscription request starts from: JSON in, JSON or SSE out, and
/// `Authorization: Bearer <token>` (marked sensitive).
fn bearer_headers(
    kind: AccountKind,
    token: &Secret,
    stream: bool,
) -> Result<HeaderMap, ShapeError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(if stream {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    let value = secret_value(kind, "access token", "Bearer ", token)?;
    headers.insert(header::AUTHORIZATION, value);
    Ok(headers)
}

/// A sensitive header value from a secret; `what` names it in the error.
fn secret_value(
    kind: AccountKind,
    what: &'static str,
    prefix: &str,
    secret: &Secret,
) -> Result<HeaderValue, ShapeError> {
    let mut value = HeaderValue::try_from(format!("{prefix}{}", secret.expose()))
        .map_err(|_| ShapeError::Header { kind, what })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A plain header from a non-secret account fact.
fn fact_header(
    headers: &mut HeaderMap,
    kind: AccountKind,
    name: &'static str,
    what: &'static str,
    value: &str,
) -> Result<(), ShapeError> {
    let value = HeaderValue::try_from(value).map_err(|_| ShapeError::Header { kind, what })?;
    headers.insert(HeaderName::from_static(name), value);
    Ok(())
}
