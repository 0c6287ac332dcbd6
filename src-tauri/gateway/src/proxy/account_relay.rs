//! One attempt's send for a subscription account ([`Login`], the second implementation of
//! `send::Upstream`): the part of the request path that differs when the credential is a login
//! (`registry::ProviderKey::Account`) instead of a key.
//!
//! `prepare` shapes the body in the protocol of the account's kind as for any provider (bytes
//! on the same-protocol path, `translate` otherwise). Here the account's current tokens come
//! from `accounts`, `subscription::upstream` says where the request goes and what it carries,
//! and the body gets its envelope (Code Assist) or adjustments (Codex). A 401 from the
//! account's endpoint is answered once by `accounts::Accounts::rejected` (a token refresh, or a
//! new Copilot token) and the request sent again; a login that cannot be refreshed fails the
//! attempt as an auth failure, so failover and cooldowns treat it like a refused key.
//!
//! On the way back, [`reshape`] takes the Code Assist envelope off the answer (per SSE event as
//! it streams) and, for endpoints that only stream (Codex), collects the stream into the whole
//! answer a non-streaming client asked for, before `deliver` or `translate` read it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::accounts::oauth::OAuthError;
use crate::accounts::subscription::{self, AccountKind, Call, ResponseTransform, gemini_cli};
use crate::accounts::{AccountError, Accounts};
use crate::error::GatewayError;
use crate::proxy::classify::Origin;
use crate::proxy::meter::Meter;
use crate::proxy::request::Job;
use crate::proxy::send::{self, Answered, Opened, SendFailure, Sending, Upstream};
use crate::routing::{Failure, Target};
use flexiproxy_protocol::sse::{self, EventSplitter};

/// The most bytes of a stream collected into one answer.
const COLLECT_CAP: usize = 64 * 1024 * 1024;

/// How the answer of a sent request must change before it is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shaping {
    response: ResponseTransform,
    /// The endpoint streamed although the client wants a whole answer.
    collect: bool,
}

/// A request for an account, ready to send.
pub(crate) struct Prepared {
    pub kind: AccountKind,
    pub request: reqwest::RequestBuilder,
    pub url: String,
    pub shaping: Shaping,
}

/// Why a request for an account could not be prepared, and whose fault that was.
pub(crate) struct Unprepared {
    pub origin: Origin,
    pub reason: String,
}

/// Whose fault it is that an account's tokens could not be had for a request: the provider's
/// when it refused the login or its login server failed, ours when our own records, settings
/// or secret store (a locked keychain) failed.
fn origin_of(error: &AccountError) -> Origin {
    match error {
        // Only a new login helps: the provider refused it (now or at an earlier refresh).
        AccountError::NeedsLogin { .. } => Origin::Provider(Failure::Auth(401)),
        AccountError::OAuth { source, .. } => match source {
            OAuthError::NeedsLogin { .. } => Origin::Provider(Failure::Auth(401)),
            OAuthError::Provider { .. }
            | OAuthError::Unreachable { .. }
            | OAuthError::Redirected { .. }
            | OAuthError::TooLarge { .. }
            | OAuthError::Denied { .. } => Origin::Provider(Failure::Connection),
            OAuthError::Storage { .. }
            | OAuthError::Config { .. }
            | OAuthError::PortBusy { .. }
            | OAuthError::Listen { .. }
            | OAuthError::StateMismatch
            | OAuthError::TimedOut { .. }
            | OAuthError::Expired
            | OAuthError::BadCallback { .. } => Origin::Local,
        },
        AccountError::Upstream { .. } => Origin::Provider(Failure::Connection),
        AccountError::Unknown(_)
        | AccountError::Setup { .. }
        | AccountError::Store(_)
        | AccountError::Secret(_)
        | AccountError::Task(_) => Origin::Local,
    }
}

/// Addresses, signs and wraps `body` (encoded in the kind's protocol) for `account`, with its
/// current tokens (refreshed first when due).
pub(crate) async fn prepare(
    accounts: &Arc<Accounts>,
    http: &reqwest::Client,
    account: &str,
    call: Call<'_>,
    body: &Bytes,
    client_headers: Option<&HeaderMap>,
) -> Result<Prepared, Unprepared> {
    let shaped = accounts
        .for_request(account)
        .await
        .map_err(|e| Unprepared {
            origin: origin_of(&e),
            reason: e.to_string(),
        })?;
    // The login's own data cannot address or sign a request: only a new login helps.
    let mut upstream =
        subscription::upstream(&shaped, &accounts.api_endpoints(), call).map_err(|e| {
            Unprepared {
                origin: Origin::Provider(Failure::Auth(401)),
                reason: e.to_string(),
            }
        })?;
    if let (AccountKind::Claude, Some(client)) = (shaped.kind(), client_headers) {
        subscription::claude::merge_client_headers(&mut upstream, client);
    }
    let outgoing = upstream.body.apply(body.clone()).map_err(|e| Unprepared {
        origin: Origin::Local,
        reason: e.to_string(),
    })?;
    let shaping = Shaping {
        response: upstream.response,
        collect: upstream.stream_only && !call.stream,
    };
    let request = http
        .post(&upstream.url)
        .headers(upstream.headers)
        .body(outgoing);
    Ok(Prepared {
        kind: shaped.kind(),
        request,
        url: upstream.url,
        shaping,
    })
}

/// A credential that is a subscription login: the request goes to the account kind's endpoint
/// with the login's current tokens, and a 401 is answered by refreshing the login and sending
/// once more.
pub(super) struct Login<'a> {
    pub account: &'a str,
}

impl Upstream for Login<'_> {
    fn refuses(&self, job: &Job, target: &Target) -> Option<GatewayError> {
        match job {
            Job::Generate(_) => None,
            Job::Forward(endpoint, _) => Some(GatewayError::Unsupported(format!(
                "{} are not served by subscription logins; provider `{}` is one",
                endpoint.upstream_path().trim_start_matches('/'),
                target.provider.id
            ))),
        }
    }

    async fn send(&self, to: Sending<'_>, meter: &mut Meter) -> Result<Answered, SendFailure> {
        let Sending {
            state,
            target,
            outgoing,
            client_headers,
            ..
        } = to;
        let account = self.account;
        let unusable = |reason: String| GatewayError::ProviderKey {
            provider: target.provider.id.clone(),
            reason,
        };
        let call = Call {
            model: &target.model,
            stream: outgoing.stream,
        };
        let mut retried = false;
        loop {
            let prepared = prepare(
                &state.accounts,
                &state.http,
                account,
                call,
                &outgoing.body,
                client_headers,
            )
            .await;
            let Prepared {
                kind,
                request,
                url,
                shaping,
            } = match prepared {
                Ok(prepared) => prepared,
                Err(Unprepared { origin, reason }) => {
                    let error = unusable(reason);
                    meter.fail(&error);
                    return Err(SendFailure { error, origin });
                }
            };
            let response = send::send(state, request, url.clone(), meter).await?;
            state
                .accounts
                .note_quota(account, subscription::quota(kind, response.headers()));
            if response.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(Answered {
                    response,
                    url,
                    shaping: Some(shaping),
                });
            }
            drop(response);
            retried = true;
            tracing::info!(%account, "the account's endpoint answered 401; refreshing its login");
            if let Err(e) = state.accounts.rejected(account).await {
                let error = unusable(e.to_string());
                meter.fail(&error);
                return Err(SendFailure {
                    error,
                    origin: Origin::Provider(Failure::Auth(401)),
                });
            }
        }
    }
}

/// A whole successful answer, already read, as the protocol module expects it (see
/// [`reshape`]).
pub(crate) fn whole(body: &[u8], shaping: Shaping) -> Result<Bytes, String> {
    if shaping.collect {
        return collect_responses_stream(body);
    }
    match shaping.response {
        ResponseTransform::None => Ok(Bytes::copy_from_slice(body)),
        ResponseTransform::CodeAssistUnwrap => {
            gemini_cli::unwrap_response(body).map_err(|e| e.to_string())
        }
    }
}

/// The successful answer as the protocol modules expect it: without the Code Assist envelope,
/// and whole when the client asked for a whole answer from a streaming endpoint.
pub(crate) async fn reshape(
    mut opened: Opened,
    shaping: Shaping,
    provider: &str,
) -> Result<Opened, GatewayError> {
    let invalid = |reason: String| GatewayError::UpstreamInvalid {
        provider: provider.to_owned(),
        reason,
    };
    if shaping.collect {
        let body = opened
            .read_capped(COLLECT_CAP)
            .await
            .map_err(|e| invalid(format!("the stream broke off: {}", e.describe())))?;
        let whole = whole(&body, shaping).map_err(invalid)?;
        opened.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        opened.body = Box::pin(futures_util::stream::once(async move { Ok(whole) }));
        return Ok(opened);
    }
    match shaping.response {
        ResponseTransform::None => Ok(opened),
        ResponseTransform::CodeAssistUnwrap if is_sse(&opened.headers) => {
            let mut unwrapper = gemini_cli::SseUnwrapper::default();
            let upstream =
                std::mem::replace(&mut opened.body, Box::pin(futures_util::stream::empty()));
            // `None` marks the end, so the unwrapper can hand over an unterminated last event.
            let events = upstream
                .map(Some)
                .chain(futures_util::stream::once(async { None }))
                .filter_map(move |item| {
                    let out = match item {
                        Some(Ok(chunk)) => Some(Ok(unwrapper.push(chunk))),
                        Some(Err(e)) => Some(Err(e)),
                        None => unwrapper.finish().map(Ok),
                    };
                    async move { out.filter(|r| r.as_ref().map_or(true, |b| !b.is_empty())) }
                });
            opened.body = Box::pin(events);
            Ok(opened)
        }
        ResponseTransform::CodeAssistUnwrap => {
            let body = opened
                .read_capped(COLLECT_CAP)
                .await
                .map_err(|e| invalid(format!("the answer broke off: {}", e.describe())))?;
            let inner = whole(&body, shaping).map_err(invalid)?;
            opened.body = Box::pin(futures_util::stream::once(async move { Ok(inner) }));
            Ok(opened)
        }
    }
}

fn is_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The whole Responses object of a Responses stream: `response.completed`'s `response`, with
/// the output items of `response.output_item.done` events when the final event left them out.
fn collect_responses_stream(body: &[u8]) -> Result<Bytes, String> {
    // The body is already read (and capped): its events need no cap of their own.
    let mut splitter = EventSplitter::new(usize::MAX);
    let mut events = splitter
        .push(Bytes::copy_from_slice(body))
        .map_err(|e| e.to_string())?;
    events.extend(splitter.finish());
    let mut items = Vec::new();
    let mut completed = None;
    for event in &events {
        let Some(data) = sse::data(event) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&data) else {
            continue;
        };
        match value.get("type").and_then(|t| t.as_str()) {
            Some("response.output_item.done") => {
                if let Some(item) = value.get("item") {
                    items.push(item.clone());
                }
            }
            Some("response.completed" | "response.incomplete") => {
                completed = value.get("response").cloned();
            }
            Some("response.failed" | "error") => {
                let message = value
                    .pointer("/response/error/message")
                    .or_else(|| value.pointer("/error/message"))
                    .or_else(|| value.get("message"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("no reason given");
                return Err(format!("the response failed: {message}"));
            }
            _ => {}
        }
    }
    let mut response =
        completed.ok_or_else(|| "the stream ended without `response.completed`".to_owned())?;
    let output_empty = response
        .get("output")
        .and_then(|o| o.as_array())
        .is_none_or(Vec::is_empty);
    if output_empty && let Some(object) = response.as_object_mut() {
        object.insert("output".to_owned(), serde_json::Value::Array(items));
    }
    serde_json::to_vec(&response)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_responses_stream_collects_into_its_completed_response() {
        let stream = concat!(
            "event: response.created\n",
            "data: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\",\"output\":[]}}\n\n",
            "event: response.output_item.done\n",
            "data: {\"type\":\"response.output_item.done\",\"item\":{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"hi\"}]}}\n\n",
            "event: response.completed\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1,\"total_tokens\":4}}}\n\n",
        );
        let whole: serde_json::Value =
            serde_json::from_slice(&collect_responses_stream(stream.as_bytes()).unwrap()).unwrap();
        assert_eq!(whole["id"], "r1");
        assert_eq!(whole["output"][0]["content"][0]["text"], "hi");
        assert_eq!(whole["usage"]["output_tokens"], 1);
    }

    #[test]
    fn a_completed_response_with_output_is_kept_as_it_is() {
        let stream = concat!(
            "data: {\"type\":\"response.output_item.done\",\"item\":{\"type\":\"message\",\"id\":\"a\"}}\n\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"type\":\"message\",\"id\":\"b\"}]}}",
        );
        let whole: serde_json::Value =
            serde_json::from_slice(&collect_responses_stream(stream.as_bytes()).unwrap()).unwrap();
        assert_eq!(whole["output"].as_array().unwrap().len(), 1);
        assert_eq!(whole["output"][0]["id"], "b");
    }

    #[test]
    fn a_failed_or_cut_stream_says_why() {
        let failed = "data: {\"type\":\"response.failed\",\"response\":{\"error\":{\"message\":\"usage limit reached\"}}}\n\n";
        assert!(
            collect_responses_stream(failed.as_bytes())
                .unwrap_err()
                .contains("usage limit reached")
        );
        let cut = "data: {\"type\":\"response.created\",\"response\":{}}\n\n";
        assert!(
            collect_responses_stream(cut.as_bytes())
                .unwrap_err()
                .contains("without `response.completed`")
        );
    }
}
