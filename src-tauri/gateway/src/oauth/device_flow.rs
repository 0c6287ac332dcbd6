//! Device authorization grant (RFC 8628) login, for providers whose CLI shows a code to type on
//! the provider's page (Qwen, GitHub for Copilot).
//!
//! [`DeviceLogin::start`] asks the provider for a device code and returns what the window shows
//! (user code, verification link); [`DeviceLogin::finish`] then polls the token endpoint at the
//! interval the provider asked for, slowing down on `slow_down`, until the user approves
//! (a [`TokenSet`]), denies ([`OAuthError::Denied`]) or the code expires ([`OAuthError::Expired`]).

use std::time::Duration;

use oauth2::{DeviceCodeErrorResponseType, StandardDeviceAuthorizationResponse};
use oauth2::{PkceCodeChallenge, RequestTokenError, Scope};

use super::{Endpoints, OAuthError, TokenSet, http, now_ms, token_error};

/// A device login waiting for the user.
pub struct DeviceLogin {
    /// The code the user types on the provider's page.
    pub user_code: String,
    /// The page where the code is typed.
    pub verification_uri: String,
    /// The same page with the code filled in, where the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// How long the code stays valid.
    pub expires_in: Duration,
    details: StandardDeviceAuthorizationResponse,
    verifier: Option<String>,
    endpoints: Endpoints,
    client: reqwest::Client,
}

impl std::fmt::Debug for DeviceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLogin")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl DeviceLogin {
    /// Asks the provider for a device code.
    pub async fn start(client: reqwest::Client, endpoints: Endpoints) -> Result<Self, OAuthError> {
        let oauth = endpoints.client()?;
        let body = endpoints.token_body;
        let http_client = client.clone();
        let send = |request| http::send(http_client.clone(), body, request);
        let mut request = oauth
            .exchange_device_code()
            .map_err(|e| OAuthError::Config {
                detail: e.to_string(),
            })?
            .add_scopes(endpoints.scopes.iter().cloned().map(Scope::new));
        let mut verifier = None;
        if endpoints.device_pkce {
            let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
            request = request
                .add_extra_param("code_challenge", challenge.as_str().to_owned())
                .add_extra_param(
                    "code_challenge_method",
                    challenge.method().as_str().to_owned(),
                );
            verifier = Some(pkce_verifier.secret().clone());
        }
        let details: StandardDeviceAuthorizationResponse =
            request.request_async(&send).await.map_err(token_error)?;
        Ok(Self {
            user_code: details.user_code().secret().clone(),
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details
                .verification_uri_complete()
                .map(|uri| uri.secret().clone()),
            expires_in: details.expires_in(),
            details,
            verifier,
            endpoints,
            client,
        })
    }

    /// Polls until the user approves or denies, or the code expires.
    pub async fn finish(self) -> Result<TokenSet, OAuthError> {
        let oauth = self.endpoints.client()?;
        let body = self.endpoints.token_body;
        let client = self.client.clone();
        let send = |request| http::send(client.clone(), body, request);
        let mut request = oauth.exchange_device_access_token(&self.details);
        if let Some(verifier) = &self.verifier {
            request = request.add_extra_param("code_verifier", verifier.clone());
        }
        let response = request
            .request_async(&send, tokio::time::sleep, None)
            .await
            .map_err(|error| match error {
                RequestTokenError::ServerResponse(response) => {
                    let description = response.error_description().cloned();
                    match response.error() {
                        DeviceCodeErrorResponseType::AccessDenied => OAuthError::Denied {
                            detail: description.unwrap_or_else(|| "access_denied".to_owned()),
                        },
                        DeviceCodeErrorResponseType::ExpiredToken => OAuthError::Expired,
                        other => OAuthError::Provider {
                            error: other.as_ref().to_owned(),
                            description,
                        },
                    }
                }
                RequestTokenError::Request(e) => OAuthError::Unreachable {
                    detail: e.to_string(),
                },
                RequestTokenError::Parse(e, _) => OAuthError::Provider {
                    error: "unreadable token response".to_owned(),
                    description: Some(e.to_string()),
                },
                RequestTokenError::Other(detail) => OAuthError::Provider {
                    error: "unexpected token response".to_owned(),
                    description: Some(detail),
                },
            })?;
        Ok(TokenSet::from_response(&response, now_ms()))
    }
}
