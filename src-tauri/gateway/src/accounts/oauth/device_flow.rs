//! Device authorization grant (RFC 8628) login, for providers whose CLI shows a code to type on
//! the provider's page (Qwen, GitHub for Copilot).
//!
//! [`DeviceLogin::start`] asks the provider for a device code and returns what the window shows
//! (user code, verification link); [`DeviceLogin::finish`] then polls the token endpoint at the
//! interval the provider asked for until the user approves (a [`TokenSet`]), denies
//! ([`OAuthError::Denied`]) or the code expires ([`OAuthError::Expired`]).
//!
//! The user may take minutes to approve, so the polling outlives short network trouble: a poll
//! that gets no answer (connection refused or reset, a time-out) or a 5xx/429 is retried with
//! exponential backoff until the code expires, as RFC 8628 section 3.5 asks; `slow_down` adds 5
//! s to the interval for this and every later poll. Only the provider's own verdict, or an
//! answer that cannot change (a redirect, an oversized body), ends the login early.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oauth2::basic::BasicErrorResponseType;
use oauth2::http::{HeaderValue, Method, header};
use oauth2::url::form_urlencoded;
use oauth2::{DeviceCodeErrorResponse, DeviceCodeErrorResponseType};
use oauth2::{HttpRequest, PkceCodeChallenge, Scope, StandardDeviceAuthorizationResponse};

use super::{Endpoints, OAuthError, ProviderTokenResponse, SideHttp, TokenSet, http, token_error};
use crate::clock::now_ms;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// What `slow_down` adds to the polling interval (RFC 8628 section 3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The first wait after a failed poll, when the interval is shorter.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between polls after failed ones.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest a device code is waited for, whatever the provider says.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// What one poll of the token endpoint came to.
enum Poll {
    Approved(Box<TokenSet>),
    Pending,
    SlowDown,
    /// No usable answer this time; worth asking again after a backoff.
    Transient(String),
    Failed(OAuthError),
}

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
    client: SideHttp,
    /// When the provider issued the code: `expires_in` counts from here.
    issued_at: Instant,
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
    pub async fn start(client: SideHttp, endpoints: Endpoints) -> Result<Self, OAuthError> {
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
            expires_in: details.expires_in().min(MAX_LIFETIME),
            details,
            verifier,
            endpoints,
            client,
            issued_at: Instant::now(),
        })
    }

    /// Polls until the user approves or denies, or the code expires.
    pub async fn finish(self) -> Result<TokenSet, OAuthError> {
        let request = self.token_request()?;
        let deadline = self.issued_at.checked_add(self.expires_in);
        let mut interval = self.details.interval();
        let mut backoff: Option<Duration> = None;
        loop {
            let (wait, failure) = match self.poll(&request).await {
                Poll::Approved(tokens) => return Ok(*tokens),
                Poll::Failed(error) => return Err(error),
                Poll::Pending => {
                    backoff = None;
                    (interval, None)
                }
                Poll::SlowDown => {
                    interval = interval.saturating_add(SLOW_DOWN_STEP);
                    backoff = None;
                    (interval, None)
                }
                Poll::Transient(detail) => {
                    let next = backoff
                        .map_or(interval.max(MIN_BACKOFF), |b| b.saturating_mul(2))
                        .min(MAX_BACKOFF);
                    tracing::info!(%detail, retry_in = ?next, "a device login poll failed; polling again");
                    backoff = Some(next);
                    (next, Some(detail))
                }
            };
            let next_poll = Instant::now().checked_add(wait);
            let expired = match (next_poll, deadline) {
                (Some(next), Some(deadline)) => next >= deadline,
                (None, _) => true,
                (Some(_), None) => false,
            };
            if expired {
                return Err(match failure {
                    // The code ran out while the provider could not be asked: say why.
                    Some(detail) => OAuthError::Unreachable {
                        detail: format!("{detail} (until the device code expired)"),
                    },
                    None => OAuthError::Expired,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The token request of every poll: the device code grant, the client as `oauth2` sends it
    /// (in the body, or HTTP Basic with a client secret), and Qwen's PKCE verifier.
    fn token_request(&self) -> Result<HttpRequest, OAuthError> {
        let config = |detail: String| OAuthError::Config { detail };
        let url = oauth2::url::Url::parse(&self.endpoints.token_url)
            .map_err(|e| config(format!("token URL: {e}")))?;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", DEVICE_GRANT)
            .append_pair("device_code", self.details.device_code().secret());
        let mut builder = oauth2::http::Request::builder()
            .method(Method::POST)
            .uri(url.as_str())
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        let client_id = &self.endpoints.client_id;
        match &self.endpoints.client_secret {
            Some(secret) => {
                // RFC 6749 section 2.3.1: each part form-encoded before Basic encoding.
                let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
                let secret: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
                let mut value = HeaderValue::try_from(format!(
                    "Basic {}",
                    STANDARD.encode(format!("{id}:{secret}"))
                ))
                .map_err(|e| config(format!("client credentials: {e}")))?;
                value.set_sensitive(true);
                builder = builder.header(header::AUTHORIZATION, value);
            }
            None => {
                form.append_pair("client_id", client_id);
            }
        }
        if let Some(verifier) = &self.verifier {
            form.append_pair("code_verifier", verifier);
        }
        builder
            .body(form.finish().into_bytes())
            .map_err(|e| config(format!("token request: {e}")))
    }

    async fn poll(&self, request: &HttpRequest) -> Poll {
        let response = match http::send(
            self.client.clone(),
            self.endpoints.token_body,
            request.clone(),
        )
        .await
        {
            Ok(response) => response,
            Err(e) if e.is_transient() => return Poll::Transient(e.to_string()),
            Err(e) => return Poll::Failed(e.into()),
        };
        let status = response.status();
        let body = response.body();
        if status.is_success() {
            return match serde_json::from_slice::<ProviderTokenResponse>(body) {
                Ok(answer) => Poll::Approved(Box::new(TokenSet::from_response(&answer, now_ms()))),
                Err(e) => Poll::Failed(OAuthError::Provider {
                    error: "unreadable token response".to_owned(),
                    description: Some(e.to_string()),
                }),
            };
        }
        let answer = serde_json::from_slice::<DeviceCodeErrorResponse>(body).ok();
        let busy = status.is_server_error() || status.as_u16() == 429;
        let Some(answer) = answer else {
            return if busy {
                Poll::Transient(format!("the token endpoint answered {status}"))
            } else {
                Poll::Failed(OAuthError::Provider {
                    error: "unreadable token response".to_owned(),
                    description: Some(format!("status {status}")),
                })
            };
        };
        let description = answer.error_description().cloned();
        match answer.error() {
            DeviceCodeErrorResponseType::AuthorizationPending => Poll::Pending,
            DeviceCodeErrorResponseType::SlowDown => Poll::SlowDown,
            DeviceCodeErrorResponseType::AccessDenied => Poll::Failed(OAuthError::Denied {
                detail: description.unwrap_or_else(|| "access_denied".to_owned()),
            }),
            DeviceCodeErrorResponseType::ExpiredToken => Poll::Failed(OAuthError::Expired),
            DeviceCodeErrorResponseType::Basic(BasicErrorResponseType::Extension(code))
                if busy || code == "server_error" || code == "temporarily_unavailable" =>
            {
                Poll::Transient(format!("the token endpoint answered {status} ({code})"))
            }
            _ if busy => Poll::Transient(format!("the token endpoint answered {status}")),
            other => Poll::Failed(OAuthError::Provider {
                error: other.as_ref().to_owned(),
                description,
            }),
        }
    }
}
