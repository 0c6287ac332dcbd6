//! Gemini CLI accounts (a Google login): Google Code Assist, `cloudcode-pa.googleapis.com`,
//! API version `v1internal`, as the Gemini CLI uses it.
//!
//! Requests are Gemini `generateContent` bodies wrapped in an envelope naming the model and
//! the account's Google Cloud project: `{"model": …, "project": …, "request": <gemini body>}`,
//! sent to `/v1internal:generateContent` or `/v1internal:streamGenerateContent?alt=sse` with
//! `Authorization: Bearer <access>`. Answers come back wrapped as `{"response": <gemini
//! answer>, "traceId": …}`, both whole and in every SSE event; [`unwrap_response`] and
//! [`SseUnwrapper`] take the envelope off so the `gemini` protocol module reads them as usual.
//!
//! The project comes from a one-time set-up after login ([`setup_project`]):
//! `loadCodeAssist` says whether the user already has a tier and project; if not,
//! `onboardUser` enrols them in the default tier (the free tier gets a Google-managed
//! project), a long-running operation polled until done.

use flexiproxy_protocol::error_message::error_detail;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{AccountKind, BodyTransform, Call, ResponseTransform, ShapeError, Upstream};
use crate::accounts::oauth::SideHttp;
use crate::proxy::path_segment::PathSegment;
use crate::store::secrets::Secret;
use flexiproxy_protocol::sse::{self, EventSplitter};

/// The Code Assist root.
pub const DEFAULT_BASE: &str = "https://cloudcode-pa.googleapis.com";
/// The API version path segment.
pub const API_VERSION: &str = "v1internal";

pub(super) fn upstream(
    base: &str,
    access: &Secret,
    project: &str,
    call: Call<'_>,
) -> Result<Upstream, ShapeError> {
    let headers = super::bearer_headers(AccountKind::GeminiCli, access, call.stream)?;
    let method = if call.stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    Ok(Upstream {
        url: method_url(base, method),
        headers,
        body: BodyTransform::CodeAssistWrap {
            model: crate::proxy::send::gemini_model(call.model).to_owned(),
            project: project.to_owned(),
        },
        response: ResponseTransform::CodeAssistUnwrap,
        stream_only: false,
    })
}

/// `<base>/v1internal:<method>`.
fn method_url(base: &str, method: &str) -> String {
    format!("{}/{API_VERSION}:{method}", base.trim_end_matches('/'))
}

fn body_error(detail: &dyn std::fmt::Display) -> ShapeError {
    ShapeError::Body {
        kind: AccountKind::GeminiCli,
        detail: detail.to_string(),
    }
}

fn answer_error(detail: &dyn std::fmt::Display) -> ShapeError {
    ShapeError::Answer {
        kind: AccountKind::GeminiCli,
        detail: detail.to_string(),
    }
}

/// Wraps a Gemini request body for Code Assist. The body is copied in as it is.
pub fn wrap_request(model: &str, project: &str, body: &[u8]) -> Result<Bytes, ShapeError> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        model: &'a str,
        project: &'a str,
        request: &'a RawValue,
    }
    let text = std::str::from_utf8(body).map_err(|e| body_error(&e))?;
    let request: &RawValue = serde_json::from_str(text).map_err(|e| body_error(&e))?;
    if !request.get().trim_start().starts_with('{') {
        return Err(body_error(&"the Gemini request must be a JSON object"));
    }
    serde_json::to_vec(&Envelope {
        model,
        project,
        request,
    })
    .map(Bytes::from)
    .map_err(|e| body_error(&e))
}

#[derive(Deserialize)]
struct Wrapped<'a> {
    #[serde(borrow)]
    response: Option<&'a RawValue>,
}

/// The Gemini answer inside a whole Code Assist answer.
pub fn unwrap_response(body: &[u8]) -> Result<Bytes, ShapeError> {
    let text = std::str::from_utf8(body).map_err(|e| answer_error(&e))?;
    let wrapped: Wrapped<'_> = serde_json::from_str(text).map_err(|e| answer_error(&e))?;
    let inner = wrapped
        .response
        .ok_or_else(|| answer_error(&"no `response` field in the Code Assist answer"))?;
    Ok(Bytes::copy_from_slice(inner.get().as_bytes()))
}

/// Takes the Code Assist envelope off each event of an SSE stream, chunk by chunk. Events whose
/// data is not an envelope (an error object, a comment) pass through unchanged, so the
/// protocol module still sees them.
#[derive(Debug, Default)]
pub struct SseUnwrapper {
    splitter: EventSplitter,
    /// An event went past the cap: the error event went out and nothing more does.
    failed: bool,
}

impl SseUnwrapper {
    /// Feeds one upstream chunk; returns the unwrapped bytes of the events it completes
    /// (empty while an event is still incomplete).
    ///
    /// An event past the splitter's cap ends the stream with Gemini's own error event (what
    /// comes after is dropped), so the protocol module reports it instead of a short answer.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.failed {
            return Bytes::new();
        }
        match self.splitter.push(chunk) {
            Ok(events) => join(events.iter().map(unwrap_event)),
            Err(too_large) => {
                self.failed = true;
                let error = serde_json::json!({"error": {
                    "code": 502,
                    "message": format!("Code Assist: {too_large}"),
                    "status": "UNAVAILABLE",
                }});
                let end = Bytes::from(format!("data: {error}\n\n"));
                join(
                    too_large
                        .events
                        .iter()
                        .map(unwrap_event)
                        .chain(std::iter::once(end)),
                )
            }
        }
    }

    /// What is left when the stream ends: an unterminated last event, unwrapped and terminated.
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.failed {
            return None;
        }
        self.splitter.finish().map(|rest| {
            let mut event = BytesMut::from(&rest[..]);
            event.extend_from_slice(b"\n\n");
            unwrap_event(&event.freeze())
        })
    }
}

fn join(parts: impl Iterator<Item = Bytes>) -> Bytes {
    let mut out = BytesMut::new();
    for part in parts {
        out.extend_from_slice(&part);
    }
    out.freeze()
}

fn unwrap_event(event: &Bytes) -> Bytes {
    let Some(data) = sse::data(event) else {
        return event.clone();
    };
    let inner = std::str::from_utf8(&data)
        .ok()
        .and_then(|text| serde_json::from_str::<Wrapped<'_>>(text).ok())
        .and_then(|w| w.response)
        .map(|raw| raw.get().to_owned());
    match inner {
        Some(inner) => {
            let mut out = BytesMut::with_capacity(inner.len() + 8);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(inner.as_bytes());
            out.extend_from_slice(b"\n\n");
            out.freeze()
        }
        None => event.clone(),
    }
}

/// A tier the user has, may choose, or cannot have.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_default: bool,
    /// The tier needs the user's own Google Cloud project.
    #[serde(default)]
    pub user_defined_cloudaicompanion_project: bool,
}

/// Why the user cannot have a tier.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IneligibleTier {
    #[serde(default)]
    pub tier_id: Option<String>,
    #[serde(default)]
    pub reason_code: Option<String>,
    #[serde(default)]
    pub reason_message: Option<String>,
    /// Where the user verifies their account, for `VALIDATION_REQUIRED`.
    #[serde(default)]
    pub validation_url: Option<String>,
}

/// The answer of `loadCodeAssist`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadCodeAssist {
    #[serde(default)]
    pub current_tier: Option<Tier>,
    #[serde(default)]
    pub paid_tier: Option<Tier>,
    #[serde(default)]
    pub allowed_tiers: Vec<Tier>,
    #[serde(default)]
    pub ineligible_tiers: Vec<IneligibleTier>,
    #[serde(default)]
    pub cloudaicompanion_project: Option<String>,
}

/// The project an onboarding operation produced.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectRef {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnboardResult {
    #[serde(default)]
    pub cloudaicompanion_project: Option<ProjectRef>,
}

/// The long-running operation `onboardUser` starts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Operation {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub response: Option<OnboardResult>,
}

/// What the set-up settled: the project to put in every request, and the user's tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSetup {
    pub project_id: String,
    pub tier_id: String,
    pub tier_name: Option<String>,
    /// Whether this set-up enrolled the user (false when they already had a tier).
    pub onboarded: bool,
}

/// How long to wait for onboarding to finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    pub interval: Duration,
    pub attempts: u32,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            attempts: 24,
        }
    }
}

/// Why the Code Assist set-up failed; messages say what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("could not reach Google Code Assist: {0}")]
    Unreachable(String),
    #[error("Google Code Assist refused `{method}` ({status}): {message}")]
    Refused {
        method: &'static str,
        status: u16,
        message: String,
    },
    #[error("Google Code Assist answered `{method}` in an unexpected form: {detail}")]
    BadAnswer {
        method: &'static str,
        detail: String,
    },
    #[error(
        "Google asks you to verify this account first: open {url} ({message}), then log in again"
    )]
    ValidationRequired { url: String, message: String },
    #[error("this Google account cannot use Gemini Code Assist: {0}")]
    Ineligible(String),
    #[error(
        "this Google account needs its own Google Cloud project: set the project id on the account and log in again"
    )]
    ProjectRequired,
    #[error(
        "Google Code Assist did not finish setting up the account in time; try logging in again"
    )]
    OnboardingTimedOut,
}

/// The client metadata the Gemini CLI sends with set-up calls.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    ide_type: &'static str,
    platform: &'static str,
    plugin_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duet_project: Option<&'a str>,
}

impl<'a> Metadata<'a> {
    fn new(project: Option<&'a str>) -> Self {
        Self {
            ide_type: "IDE_UNSPECIFIED",
            platform: "PLATFORM_UNSPECIFIED",
            plugin_type: "GEMINI",
            duet_project: project,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SetupRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tier_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloudaicompanion_project: Option<&'a str>,
    metadata: Metadata<'a>,
}

/// One set-up call: POST (or GET without a body) to Code Assist, answer decoded as `T`.
async fn call<T: for<'de> Deserialize<'de>>(
    http: &SideHttp,
    access: &Secret,
    method: &'static str,
    url: String,
    body: Option<&SetupRequest<'_>>,
) -> Result<T, SetupError> {
    // Serialised here rather than with reqwest's `json` feature, which the gateway does not
    // enable (only its test dependencies do, which is why a plain build would miss it).
    let request = match body {
        Some(body) => {
            let bytes = serde_json::to_vec(body).map_err(|e| SetupError::BadAnswer {
                method,
                detail: format!("cannot encode the request: {e}"),
            })?;
            http.client()
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes)
        }
        None => http.client().get(&url),
    };
    let answer = http
        .send(request.bearer_auth(access.expose()))
        .await
        .map_err(|e| SetupError::Unreachable(e.to_string()))?;
    let status = answer.status;
    let bytes = answer.body;
    if !status.is_success() {
        return Err(SetupError::Refused {
            method,
            status: status.as_u16(),
            message: error_detail(&bytes),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| SetupError::BadAnswer {
        method,
        detail: e.to_string(),
    })
}

/// `loadCodeAssist`: the user's current tier and project, if any.
pub async fn load_code_assist(
    http: &SideHttp,
    base: &str,
    access: &Secret,
    project: Option<&str>,
) -> Result<LoadCodeAssist, SetupError> {
    let body = SetupRequest {
        tier_id: None,
        cloudaicompanion_project: project,
        metadata: Metadata::new(project),
    };
    call(
        http,
        access,
        "loadCodeAssist",
        method_url(base, "loadCodeAssist"),
        Some(&body),
    )
    .await
}

/// `onboardUser`: enrols the user in `tier_id`. The free tier takes no project (Google
/// manages one); other tiers take the user's.
pub async fn onboard_user(
    http: &SideHttp,
    base: &str,
    access: &Secret,
    tier_id: &str,
    project: Option<&str>,
) -> Result<Operation, SetupError> {
    let project = if tier_id == FREE_TIER { None } else { project };
    let body = SetupRequest {
        tier_id: Some(tier_id),
        cloudaicompanion_project: project,
        metadata: Metadata::new(project),
    };
    call(
        http,
        access,
        "onboardUser",
        method_url(base, "onboardUser"),
        Some(&body),
    )
    .await
}

/// The current state of a long-running operation by name (`operations/…`).
pub async fn get_operation(
    http: &SideHttp,
    base: &str,
    access: &Secret,
    name: &str,
) -> Result<Operation, SetupError> {
    // The name comes from Google's answer: each part one encoded segment, so a name such as
    // `operations/../../x?y` cannot take the access token elsewhere on the host.
    let name = PathSegment::path(name).map_err(|e| SetupError::BadAnswer {
        method: "onboardUser",
        detail: format!("the operation name {name:?} is no URL path: {e}"),
    })?;
    let url = format!("{}/{API_VERSION}/{name}", base.trim_end_matches('/'));
    call(http, access, "getOperation", url, None).await
}

/// The tier id of Google's free tier, which runs in a Google-managed project.
pub const FREE_TIER: &str = "free-tier";
/// The tier assumed when Google offers no default (the user brings a project).
pub const LEGACY_TIER: &str = "legacy-tier";

/// Settles the project for a freshly logged-in account: loads the user's Code Assist state,
/// onboards them into the default tier when they have none, and waits for that to finish.
/// `configured` is a project id the user set on the account, if any.
pub async fn setup_project(
    http: &SideHttp,
    base: &str,
    access: &Secret,
    configured: Option<&str>,
    polling: Polling,
) -> Result<ProjectSetup, SetupError> {
    let loaded = load_code_assist(http, base, access, configured).await?;
    if let Some(current) = &loaded.current_tier {
        let tier = loaded.paid_tier.as_ref().unwrap_or(current);
        let project_id = loaded
            .cloudaicompanion_project
            .clone()
            .or_else(|| configured.map(str::to_owned))
            .ok_or_else(|| ineligible_or_project_required(&loaded))?;
        return Ok(ProjectSetup {
            project_id,
            tier_id: tier.id.clone(),
            tier_name: tier.name.clone(),
            onboarded: false,
        });
    }
    if let Some(blocked) = loaded
        .ineligible_tiers
        .iter()
        .find(|t| t.reason_code.as_deref() == Some("VALIDATION_REQUIRED"))
        && let Some(url) = &blocked.validation_url
    {
        return Err(SetupError::ValidationRequired {
            url: url.clone(),
            message: blocked.reason_message.clone().unwrap_or_default(),
        });
    }
    let tier = loaded
        .allowed_tiers
        .iter()
        .find(|t| t.is_default)
        .cloned()
        .unwrap_or(Tier {
            id: LEGACY_TIER.to_owned(),
            name: None,
            is_default: false,
            user_defined_cloudaicompanion_project: true,
        });
    let mut operation = onboard_user(http, base, access, &tier.id, configured).await?;
    let mut attempts = 0;
    while !operation.done {
        let Some(name) = operation.name.clone() else {
            break;
        };
        if attempts >= polling.attempts {
            return Err(SetupError::OnboardingTimedOut);
        }
        attempts += 1;
        tokio::time::sleep(polling.interval).await;
        operation = get_operation(http, base, access, &name).await?;
    }
    let project_id = operation
        .response
        .and_then(|r| r.cloudaicompanion_project)
        .map(|p| p.id)
        .or_else(|| configured.map(str::to_owned))
        .ok_or_else(|| ineligible_or_project_required(&loaded))?;
    Ok(ProjectSetup {
        project_id,
        tier_id: tier.id,
        tier_name: tier.name,
        onboarded: true,
    })
}

fn ineligible_or_project_required(loaded: &LoadCodeAssist) -> SetupError {
    let reasons: Vec<&str> = loaded
        .ineligible_tiers
        .iter()
        .filter_map(|t| t.reason_message.as_deref())
        .collect();
    if reasons.is_empty() {
        SetupError::ProjectRequired
    } else {
        SetupError::Ineligible(reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::{get, post};
    use serde_json::{Value, json};

    use super::*;
    use crate::accounts::subscription::test_upstream::{header, send, spawn};
    use crate::accounts::subscription::{Account, Endpoints, upstream as shape};

    const ANSWER: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]}}]}"#;

    /// Code Assist's generate methods: checks the bearer and the envelope, answers wrapped.
    async fn generate(uri: Uri, headers: HeaderMap, body: String) -> (StatusCode, String) {
        if header(&headers, "authorization") != "Bearer ya29.token" {
            return (StatusCode::UNAUTHORIZED, "auth".into());
        }
        let body: Value = serde_json::from_str(&body).unwrap();
        if body["model"] != "gemini-2.5-pro"
            || body["project"] != "proj-7"
            || body["request"]["contents"][0]["parts"][0]["text"] != "hello"
        {
            return (StatusCode::BAD_REQUEST, body.to_string());
        }
        let wrapped = format!(r#"{{"response":{ANSWER},"traceId":"t1"}}"#);
        match (uri.path(), uri.query()) {
            ("/v1internal:generateContent", None) => (StatusCode::OK, wrapped),
            ("/v1internal:streamGenerateContent", Some("alt=sse")) => (
                StatusCode::OK,
                format!("data: {wrapped}\r\n\r\ndata: {wrapped}\n\n"),
            ),
            _ => (StatusCode::NOT_FOUND, uri.to_string()),
        }
    }

    fn account() -> Account {
        Account::GeminiCli {
            access: Secret::new("ya29.token"),
            project: "proj-7".into(),
        }
    }

    /// The test account's request for `call`, aimed at a Code Assist stand-in.
    async fn shaped_at_stand_in(call: Call<'_>) -> Upstream {
        let base = spawn(Router::new().fallback(post(generate))).await;
        let endpoints = Endpoints {
            code_assist: base,
            ..Endpoints::default()
        };
        shape(&account(), &endpoints, call).unwrap()
    }

    const REQUEST: &str = r#"{"contents":[{"role":"user","parts":[{"text":"hello"}]}]}"#;

    #[tokio::test]
    async fn whole_answers_are_wrapped_and_unwrapped() {
        let shaped = shaped_at_stand_in(Call {
            model: "models/gemini-2.5-pro",
            stream: false,
        })
        .await;
        assert_eq!(shaped.response, ResponseTransform::CodeAssistUnwrap);
        let (status, answer) = send(&shaped, REQUEST).await;
        assert_eq!(status, 200, "{answer:?}");
        assert_eq!(unwrap_response(&answer).unwrap(), ANSWER.as_bytes());
    }

    #[tokio::test]
    async fn stream_events_are_unwrapped_across_chunk_boundaries() {
        let shaped = shaped_at_stand_in(Call {
            model: "gemini-2.5-pro",
            stream: true,
        })
        .await;
        let (status, answer) = send(&shaped, REQUEST).await;
        assert_eq!(status, 200, "{answer:?}");

        // Fed in awkward pieces, as TCP may deliver them.
        let mut unwrapper = SseUnwrapper::default();
        let mut out = BytesMut::new();
        for piece in answer.chunks(7) {
            out.extend_from_slice(&unwrapper.push(Bytes::copy_from_slice(piece)));
        }
        assert_eq!(unwrapper.finish(), None);
        assert_eq!(
            out,
            format!("data: {ANSWER}\n\ndata: {ANSWER}\n\n").as_bytes()
        );
    }

    #[test]
    fn non_envelope_events_pass_through() {
        let mut unwrapper = SseUnwrapper::default();
        let error = Bytes::from_static(b": keep-alive\n\ndata: {\"error\":{\"code\":429}}\n\n");
        assert_eq!(unwrapper.push(error.clone()), error);
        let tail = unwrapper.push(Bytes::from_static(b"data: {\"response\":{\"a\":1}}"));
        assert!(tail.is_empty());
        assert_eq!(unwrapper.finish().unwrap(), &b"data: {\"a\":1}\n\n"[..]);
    }

    #[test]
    fn wrapping_refuses_what_is_not_an_object() {
        assert!(wrap_request("m", "p", b"[1]").is_err());
        assert!(wrap_request("m", "p", b"{").is_err());
        assert!(unwrap_response(br#"{"error":{}}"#).is_err());
    }

    /// A Code Assist stand-in for set-up: no tier yet, free tier by default, onboarding that
    /// finishes on the second poll.
    #[derive(Clone, Default)]
    struct Setup {
        polls: Arc<AtomicUsize>,
        onboard_body: Arc<std::sync::Mutex<Option<Value>>>,
    }

    async fn load(headers: HeaderMap, body: String) -> (StatusCode, String) {
        if header(&headers, "authorization") != "Bearer ya29.token" {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["metadata"]["pluginType"], "GEMINI");
        let answer = json!({
            "allowedTiers": [
                {"id": "legacy-tier", "name": "Legacy", "userDefinedCloudaicompanionProject": true},
                {"id": "free-tier", "name": "Gemini Code Assist for individuals", "isDefault": true}
            ]
        });
        (StatusCode::OK, answer.to_string())
    }

    async fn onboard(State(setup): State<Setup>, body: String) -> String {
        *setup.onboard_body.lock().unwrap() = Some(serde_json::from_str(&body).unwrap());
        json!({"name": "operations/op-1", "done": false}).to_string()
    }

    async fn operation(State(setup): State<Setup>) -> String {
        if setup.polls.fetch_add(1, Ordering::SeqCst) == 0 {
            return json!({"name": "operations/op-1", "done": false}).to_string();
        }
        json!({
            "name": "operations/op-1",
            "done": true,
            "response": {"cloudaicompanionProject": {"id": "managed-123", "name": "Managed"}}
        })
        .to_string()
    }

    fn polling() -> Polling {
        Polling {
            interval: Duration::from_millis(5),
            attempts: 5,
        }
    }

    #[tokio::test]
    async fn a_new_user_is_onboarded_into_the_default_tier() {
        let setup = Setup::default();
        let router = Router::new()
            .route("/v1internal:loadCodeAssist", post(load))
            .route("/v1internal:onboardUser", post(onboard))
            .route("/v1internal/operations/op-1", get(operation))
            .with_state(setup.clone());
        let base = spawn(router).await;
        let access = Secret::new("ya29.token");
        let done = setup_project(
            &SideHttp::for_tests(),
            &base,
            &access,
            Some("mine"),
            polling(),
        )
        .await
        .unwrap();
        assert_eq!(
            done,
            ProjectSetup {
                project_id: "managed-123".into(),
                tier_id: FREE_TIER.into(),
                tier_name: Some("Gemini Code Assist for individuals".into()),
                onboarded: true,
            }
        );
        assert_eq!(setup.polls.load(Ordering::SeqCst), 2);
        let sent = setup.onboard_body.lock().unwrap().clone().unwrap();
        assert_eq!(sent["tierId"], "free-tier");
        assert!(
            sent.get("cloudaicompanionProject").is_none(),
            "free tier takes no project"
        );
    }

    #[tokio::test]
    async fn an_existing_user_keeps_their_project_and_errors_are_typed() {
        let router = Router::new().route(
            "/v1internal:loadCodeAssist",
            post(|| async {
                json!({
                    "currentTier": {"id": "standard-tier", "name": "Standard"},
                    "cloudaicompanionProject": "proj-9"
                })
                .to_string()
            }),
        );
        let base = spawn(router).await;
        let access = Secret::new("ya29.token");
        let done = setup_project(&SideHttp::for_tests(), &base, &access, None, polling())
            .await
            .unwrap();
        assert_eq!(done.project_id, "proj-9");
        assert!(!done.onboarded);

        let refusing = Router::new().route(
            "/v1internal:loadCodeAssist",
            post(|| async {
                (
                    StatusCode::FORBIDDEN,
                    r#"{"error":{"code":403,"message":"The caller does not have permission"}}"#,
                )
            }),
        );
        let base = spawn(refusing).await;
        let err = setup_project(&SideHttp::for_tests(), &base, &access, None, polling())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SetupError::Refused { status: 403, message, .. } if message.contains("permission")),
            "{err}"
        );
        assert!(!err.to_string().contains("ya29"));

        let validation = Router::new().route(
            "/v1internal:loadCodeAssist",
            post(|| async {
                json!({"ineligibleTiers": [{
                    "reasonCode": "VALIDATION_REQUIRED",
                    "reasonMessage": "Verify your account",
                    "validationUrl": "https://example.test/verify"
                }]})
                .to_string()
            }),
        );
        let base = spawn(validation).await;
        let err = setup_project(&SideHttp::for_tests(), &base, &access, None, polling())
            .await
            .unwrap_err();
        assert!(
            matches!(err, SetupError::ValidationRequired { .. }),
            "{err}"
        );
    }
}
