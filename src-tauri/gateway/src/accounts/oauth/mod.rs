//! OAuth logins for subscription accounts (Claude, OpenAI Codex, Gemini CLI, Qwen, GitHub
//! Copilot, iFlow): which endpoints each account kind talks to, and the one error type of the
//! flows.
//!
//! The flows themselves are in [`pkce_flow`] (authorization code + PKCE with a loopback
//! callback, or a pasted callback URL) and [`device_flow`] (device authorization grant); the
//! tokens they produce are kept and refreshed by [`token_store`]. All three go through the
//! `oauth2` crate over the side path's own client ([`http::SideHttp`]: no redirects, every
//! call timed out, every answer capped), which the accounts' other calls (profile, user info,
//! Copilot mint, Code Assist set-up) share. Every endpoint is an
//! [`Endpoints`] value the caller passes, so tests point a flow at a local server; the defaults
//! ([`AccountKind::endpoints`]) are the public values each provider's own CLI uses.

pub mod device_flow;
pub mod http;
pub mod pkce_flow;
pub mod token_store;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ExtraTokenFields, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use flexiproxy_protocol::Protocol;

pub use http::{SideError, SideHttp};
pub use token_store::{AccountFacts, TokenSet, TokenStore};

/// In [`Endpoints::extra_authorize_params`], stands for the login's redirect URI.
pub const REDIRECT_URI_PLACEHOLDER: &str = "{redirect_uri}";

/// The kinds of subscription account FlexiProxy can log in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Claude,
    Codex,
    GeminiCli,
    Qwen,
    Copilot,
    Iflow,
}

/// How a login is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Authorization code with PKCE S256, the browser coming back to a loopback port.
    Pkce,
    /// Device authorization grant (RFC 8628): the user types a code on the provider's page.
    Device,
}

/// How the token endpoint wants its request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenBody {
    /// `application/x-www-form-urlencoded`, as RFC 6749 says.
    Form,
    /// The same fields as a JSON object, plus `state` on the code exchange: Anthropic's token
    /// endpoint takes this form.
    Json,
}

/// Where and how one account kind logs in. Build one with [`AccountKind::endpoints`] and change
/// any field (tests point every URL at a local server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// The browser page of the PKCE flow; empty for device-only kinds.
    pub authorize_url: String,
    pub token_url: String,
    /// The device authorization endpoint; `None` for PKCE-only kinds.
    pub device_url: Option<String>,
    pub client_id: String,
    /// Only the secrets that a provider ships inside its public installed app (Google, iFlow):
    /// they identify the app, not the user, and are not confidential.
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// Host written in the redirect URI, and where the callback listener binds: `localhost`
    /// binds 127.0.0.1 and ::1 (where the machine has IPv6), an IP address binds exactly it.
    pub redirect_host: String,
    /// The loopback port of the callback; 0 picks a free one (tests).
    pub redirect_port: u16,
    pub redirect_path: String,
    pub flow: Flow,
    /// Extra query parameters of the authorize URL (e.g. Google's `access_type=offline`).
    /// A value `{redirect_uri}` is replaced by the login's redirect URI.
    pub extra_authorize_params: Vec<(String, String)>,
    pub token_body: TokenBody,
    /// Whether the device flow carries a PKCE challenge too (Qwen's does).
    pub device_pkce: bool,
}

impl AccountKind {
    pub const ALL: [Self; 6] = [
        Self::Claude,
        Self::Codex,
        Self::GeminiCli,
        Self::Qwen,
        Self::Copilot,
        Self::Iflow,
    ];

    /// The stable identifier used in settings and secret names.
    pub fn id(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::GeminiCli => "gemini_cli",
            Self::Qwen => "qwen",
            Self::Copilot => "copilot",
            Self::Iflow => "iflow",
        }
    }

    /// The protocol a request for this kind is encoded in before `subscription::upstream`
    /// shapes it for the account's endpoint.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Claude => Protocol::AnthropicMessages,
            Self::Codex => Protocol::OpenAiResponses,
            Self::GeminiCli => Protocol::Gemini,
            Self::Qwen | Self::Copilot | Self::Iflow => Protocol::OpenAiChat,
        }
    }

    /// The kind named by [`AccountKind::id`].
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.id() == id)
    }

    /// The name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            Self::Claude => "Claude (Anthropic account)",
            Self::Codex => "OpenAI Codex (ChatGPT account)",
            Self::GeminiCli => "Gemini CLI (Google account)",
            Self::Qwen => "Qwen",
            Self::Copilot => "GitHub Copilot",
            Self::Iflow => "iFlow",
        }
    }

    /// The public defaults: the same client, endpoints, scopes and callback as the provider's
    /// own CLI, so the provider's consent page and token endpoint accept the login.
    pub fn endpoints(self) -> Endpoints {
        let pkce = |authorize: &str, token: &str, client: &str, port: u16, path: &str| Endpoints {
            authorize_url: authorize.to_owned(),
            token_url: token.to_owned(),
            device_url: None,
            client_id: client.to_owned(),
            client_secret: None,
            scopes: Vec::new(),
            redirect_host: "localhost".to_owned(),
            redirect_port: port,
            redirect_path: path.to_owned(),
            flow: Flow::Pkce,
            extra_authorize_params: Vec::new(),
            token_body: TokenBody::Form,
            device_pkce: false,
        };
        let device = |device: &str, token: &str, client: &str| Endpoints {
            device_url: Some(device.to_owned()),
            flow: Flow::Device,
            ..pkce("", token, client, 0, "")
        };
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        let pairs = |items: &[(&str, &str)]| {
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        match self {
            Self::Claude => Endpoints {
                scopes: strings(&["org:create_api_key", "user:profile", "user:inference"]),
                extra_authorize_params: pairs(&[("code", "true")]),
                token_body: TokenBody::Json,
                ..pkce(
                    "https://claude.ai/oauth/authorize",
                    "https://console.anthropic.com/v1/oauth/token",
                    "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
                    54545,
                    "/callback",
                )
            },
            Self::Codex => Endpoints {
                scopes: strings(&["openid", "email", "profile", "offline_access"]),
                extra_authorize_params: pairs(&[
                    ("id_token_add_organizations", "true"),
                    ("codex_cli_simplified_flow", "true"),
                ]),
                ..pkce(
                    "https://auth.openai.com/oauth/authorize",
                    "https://auth.openai.com/oauth/token",
                    "app_EMoamEEZ73f0CkXaXp7hrann",
                    1455,
                    "/auth/callback",
                )
            },
            Self::GeminiCli => Endpoints {
                client_secret: Some("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".to_owned()),
                scopes: strings(&[
                    "https://www.googleapis.com/auth/cloud-platform",
                    "https://www.googleapis.com/auth/userinfo.email",
                    "https://www.googleapis.com/auth/userinfo.profile",
                ]),
                // Without these Google returns no refresh token on a repeated consent.
                extra_authorize_params: pairs(&[("access_type", "offline"), ("prompt", "consent")]),
                ..pkce(
                    "https://accounts.google.com/o/oauth2/v2/auth",
                    "https://oauth2.googleapis.com/token",
                    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
                    8085,
                    "/oauth2callback",
                )
            },
            Self::Iflow => Endpoints {
                client_secret: Some("4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW".to_owned()),
                // iFlow's page reads the callback from `redirect`, not `redirect_uri`.
                extra_authorize_params: pairs(&[
                    ("loginMethod", "phone"),
                    ("type", "phone"),
                    ("redirect", REDIRECT_URI_PLACEHOLDER),
                ]),
                ..pkce(
                    "https://iflow.cn/oauth",
                    "https://iflow.cn/oauth/token",
                    "10009311001",
                    11451,
                    "/oauth2callback",
                )
            },
            Self::Qwen => Endpoints {
                scopes: strings(&["openid", "profile", "email", "model.completion"]),
                device_pkce: true,
                ..device(
                    "https://chat.qwen.ai/api/v1/oauth2/device/code",
                    "https://chat.qwen.ai/api/v1/oauth2/token",
                    "f0304373b74a44d2b584a3fb70ca9e56",
                )
            },
            Self::Copilot => Endpoints {
                scopes: strings(&["read:user"]),
                ..device(
                    "https://github.com/login/device/code",
                    "https://github.com/login/oauth/access_token",
                    "Iv1.b507a08c87ecfe98",
                )
            },
        }
    }
}

impl std::fmt::Display for AccountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

impl Endpoints {
    /// The redirect URI for a listener on `port` (the bound one when `redirect_port` is 0).
    pub fn redirect_uri(&self, port: u16) -> String {
        let host = self
            .redirect_host
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("http://[{host}]:{port}{}", self.redirect_path)
        } else {
            format!("http://{host}:{port}{}", self.redirect_path)
        }
    }

    /// The `oauth2` client for these endpoints.
    pub(crate) fn client(&self) -> Result<OAuthClient, OAuthError> {
        let config = |what: &str, e: oauth2::url::ParseError| OAuthError::Config {
            detail: format!("{what}: {e}"),
        };
        let auth = if self.authorize_url.is_empty() {
            None
        } else {
            Some(AuthUrl::new(self.authorize_url.clone()).map_err(|e| config("authorize URL", e))?)
        };
        let device = match &self.device_url {
            Some(url) => Some(
                DeviceAuthorizationUrl::new(url.clone()).map_err(|e| config("device URL", e))?,
            ),
            None => None,
        };
        let token = TokenUrl::new(self.token_url.clone()).map_err(|e| config("token URL", e))?;
        let client = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri_option(auth)
            .set_device_authorization_url_option(device)
            .set_token_uri(token);
        Ok(match &self.client_secret {
            Some(secret) => client.set_client_secret(ClientSecret::new(secret.clone())),
            None => client,
        })
    }
}

/// Fields some providers add to the token response, read for [`AccountFacts`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderFields {
    /// OpenID Connect ID token (Codex, Gemini, Qwen): email and, for ChatGPT, account and plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Anthropic's account object (`uuid`, `email_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<serde_json::Value>,
    /// Anthropic's organization object (`uuid`, `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<serde_json::Value>,
    /// Qwen's API host for this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

impl ExtraTokenFields for ProviderFields {}

pub(crate) type ProviderTokenResponse = StandardTokenResponse<ProviderFields, BasicTokenType>;

pub(crate) type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointMaybeSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Why a login or a refresh did not give tokens. Messages say what the user can do; none
/// contains a token. `Clone` so one failed refresh can be handed to every caller waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "port {port} on {host} is taken by another program (often another tool's login \
         waiting for its browser); close it and log in again, or paste the callback URL instead"
    )]
    PortBusy { host: String, port: u16 },
    #[error("could not listen for the login callback on port {port}: {detail}")]
    Listen { port: u16, detail: String },
    #[error("the sign-in was declined at the provider ({detail}); log in again and approve access")]
    Denied { detail: String },
    #[error(
        "the callback does not belong to this login (state mismatch); close other login tabs and \
         log in again"
    )]
    StateMismatch,
    #[error("the browser did not come back within {secs} s; log in again")]
    TimedOut { secs: u64 },
    #[error("the device code expired before the login was approved; log in again")]
    Expired,
    #[error(
        "that is not the callback URL of this login ({detail}); copy the whole address the \
         browser ended on"
    )]
    BadCallback { detail: String },
    #[error("the provider refused the login: {error}{}", description_suffix(.description))]
    Provider {
        error: String,
        description: Option<String>,
    },
    #[error("could not reach the provider's login server: {detail}; check the network and retry")]
    Unreachable { detail: String },
    #[error("the login settings are wrong: {detail}")]
    Config { detail: String },
    #[error("the login of `{account}` has expired or was revoked ({detail}); log in to it again")]
    NeedsLogin { account: String, detail: String },
    #[error("could not keep the tokens: {detail}")]
    Storage { detail: String },
    #[error(
        "the provider's login server answered with a redirect to {host}, which is not followed \
         because the request carries login secrets; if {host} is the provider's, set the \
         endpoint to it"
    )]
    Redirected { host: String },
    #[error(
        "the provider's login server sent an answer larger than {} KiB, which was not read; \
         check the endpoint's address", .cap / 1024
    )]
    TooLarge { cap: usize },
}

fn description_suffix(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl OAuthError {
    /// Whether the account must be logged in again (shown in the UI and tray) rather than the
    /// operation retried later.
    pub fn needs_login(&self) -> bool {
        matches!(self, Self::NeedsLogin { .. })
    }
}

/// Maps a side-path failure to [`OAuthError`].
impl From<SideError> for OAuthError {
    fn from(error: SideError) -> Self {
        match error {
            SideError::Redirected { host } => Self::Redirected { host },
            SideError::TooLarge { cap } => Self::TooLarge { cap },
            other @ (SideError::Unreachable(_) | SideError::TimedOut { .. }) => Self::Unreachable {
                detail: other.to_string(),
            },
        }
    }
}

/// Maps an `oauth2` token-endpoint failure to [`OAuthError`].
pub(crate) fn token_error(
    error: oauth2::RequestTokenError<SideError, BasicErrorResponse>,
) -> OAuthError {
    use oauth2::RequestTokenError as E;
    match error {
        E::ServerResponse(response) => {
            let code = response.error().as_ref().to_owned();
            let description = response.error_description().cloned();
            if code == "access_denied" {
                OAuthError::Denied {
                    detail: description.unwrap_or(code),
                }
            } else {
                OAuthError::Provider {
                    error: code,
                    description,
                }
            }
        }
        E::Request(e) => e.into(),
        E::Parse(e, _) => OAuthError::Provider {
            error: "unreadable token response".to_owned(),
            description: Some(e.to_string()),
        },
        E::Other(detail) => OAuthError::Provider {
            error: "unexpected token response".to_owned(),
            description: Some(detail),
        },
    }
}

#[cfg(test)]
mod tests;
