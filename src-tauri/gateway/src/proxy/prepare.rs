//! What one candidate is sent, prepared for its protocol: the phase between `plan` picking a
//! target and `send` sending to it.
//!
//! When the provider speaks the client's protocol the body takes the same-protocol fast path:
//! it is validated and edited in place by `protocol::rewrite` (only `model` changes, plus
//! `stream_options.include_usage` on OpenAI streams; a Gemini request names its model in the
//! URL and goes unchanged once validated), and the answer is relayed as bytes by `deliver`. Otherwise
//! `translate` decodes it once (kept for the next candidate of a failover) and encodes it for
//! the provider, and the answer is translated back on the way out.

use bytes::Bytes;

use crate::error::GatewayError;
use crate::proxy::request::{ClientRequest, Job, client_framing};
use crate::proxy::send::{KeyStyle, UpstreamPath};
use crate::proxy::translate;
use crate::routing::Target;
use crate::routing::registry::ProviderKey;
use flexiproxy_protocol::Protocol;
use flexiproxy_protocol::canonical::Request;
use flexiproxy_protocol::gemini::Framing;
use flexiproxy_protocol::openai_chat::Endpoint;
use flexiproxy_protocol::rewrite::{Edit, TopLevel, json_string, splice};

/// What to send to one target, prepared for its protocol.
pub(super) struct Outgoing {
    pub(super) body: Bytes,
    pub(super) stream: bool,
    pub(super) endpoint: UpstreamPath,
    /// How the answer reaches the client.
    pub(super) answer: AnswerPath,
}

pub(super) enum AnswerPath {
    /// Same protocol: bytes relayed; `strip_usage` drops OpenAI's usage chunk the gateway
    /// asked for.
    Relay {
        protocol: Protocol,
        strip_usage: bool,
    },
    /// Different protocols: decoded and re-encoded.
    Translate(Box<translate::Translation>),
}

/// The request for `target`: the fast path when the provider speaks the client's protocol,
/// translated otherwise. A refusal here is the client's (a body that does not parse, a feature
/// the provider lacks) and is never tried elsewhere.
pub(super) fn outgoing(
    job: &Job,
    target: &Target,
    decoded: &mut Option<Request>,
) -> Result<Outgoing, GatewayError> {
    // A subscription login's endpoint streams only as SSE, so a Gemini client reading a JSON
    // array takes the translated path, which writes the array.
    let sse_only = matches!(target.credential.key, ProviderKey::Account(_))
        && client_framing(job) == Some(Framing::JsonArray);
    match job {
        Job::Generate(client) if target.provider.protocol == client.protocol && !sse_only => {
            same_protocol(client, target)
        }
        Job::Generate(client) => {
            translate::prepare(client, decoded, target).and_then(|(body, translation)| {
                Ok(Outgoing {
                    endpoint: UpstreamPath::generate(
                        target.provider.protocol,
                        &target.model,
                        translation.stream,
                    )?,
                    body,
                    stream: translation.stream,
                    answer: AnswerPath::Translate(Box::new(translation)),
                })
            })
        }
        Job::Forward(endpoint, body) => openai_family(*endpoint, body, target),
    }
}

/// The same-protocol fast path: only the model changes (in the body, or in the URL for
/// Gemini), unknown fields and all other bytes go as they came.
fn same_protocol(client: &ClientRequest, target: &Target) -> Result<Outgoing, GatewayError> {
    let protocol = client.protocol;
    if protocol == Protocol::OpenAiChat {
        return openai_family(Endpoint::ChatCompletions, &client.body, target);
    }
    if let (Some(call), Protocol::Gemini) = (&client.gemini, protocol) {
        // Nothing in the body changes, but what is not a JSON object is the client's mistake
        // to hear about now, not a provider's (or a login's envelope's) to fail on.
        TopLevel::scan(&client.body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
        let mut endpoint = UpstreamPath::generate(protocol, &target.model, call.stream)?;
        if call.framing == Framing::JsonArray {
            // The client reads the streamed JSON array; the provider writes it the same.
            endpoint
                .path
                .truncate(endpoint.path.find('?').unwrap_or(endpoint.path.len()));
        }
        return Ok(Outgoing {
            body: client.body.clone(),
            stream: call.stream,
            endpoint,
            answer: AnswerPath::Relay {
                protocol,
                strip_usage: false,
            },
        });
    }
    let top = TopLevel::scan(&client.body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let stream = top.is_true("stream");
    let body = splice(
        &client.body,
        vec![top.set("model", json_string(&target.model))],
    );
    Ok(Outgoing {
        body,
        stream,
        endpoint: UpstreamPath::generate(protocol, &target.model, stream)?,
        answer: AnswerPath::Relay {
            protocol,
            strip_usage: false,
        },
    })
}

/// The OpenAI-compatible fast path: `model` replaced, and on streams the usage chunk asked for
/// (and dropped again when the client did not ask for it).
fn openai_family(
    endpoint: Endpoint,
    body: &Bytes,
    target: &Target,
) -> Result<Outgoing, GatewayError> {
    if target.provider.protocol != Protocol::OpenAiChat {
        return Err(GatewayError::Unsupported(format!(
            "{} exist only on OpenAI-compatible providers, and provider `{}` speaks {}; create \
             an adapter for an openai_chat provider for this",
            endpoint.upstream_path().trim_start_matches('/'),
            target.provider.id,
            target.provider.protocol
        )));
    }
    let top = TopLevel::scan(body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let stream = endpoint.streams() && top.is_true("stream");
    let mut edits = vec![top.set("model", json_string(&target.model))];
    let client_wants_usage = if stream {
        let (wants, edit) = include_usage(&top)?;
        edits.extend(edit);
        wants
    } else {
        false
    };
    Ok(Outgoing {
        body: splice(body, edits),
        stream,
        endpoint: UpstreamPath {
            path: endpoint.upstream_path().to_owned(),
            style: KeyStyle::Bearer,
        },
        answer: AnswerPath::Relay {
            protocol: Protocol::OpenAiChat,
            strip_usage: !client_wants_usage,
        },
    })
}

/// Whether the client asked for the usage chunk, and the edit that makes the upstream send it.
fn include_usage(top: &TopLevel<'_>) -> Result<(bool, Option<Edit>), GatewayError> {
    let Some(raw) = top.get("stream_options").filter(|raw| *raw != "null") else {
        let edit = top.set(
            "stream_options",
            Bytes::from_static(br#"{"include_usage":true}"#),
        );
        return Ok((false, Some(edit)));
    };
    let mut options: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
        .map_err(|_| GatewayError::Invalid("`stream_options` must be an object".into()))?;
    if options.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return Ok((true, None));
    }
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    let text = serde_json::to_vec(&options).map_err(|e| GatewayError::Internal(e.to_string()))?;
    Ok((false, Some(top.set("stream_options", text))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_usage_is_added_or_respected() {
        let top = TopLevel::scan(br#"{"stream":true}"#).unwrap();
        let (wants, edit) = include_usage(&top).unwrap();
        assert!(!wants);
        assert!(edit.is_some());

        let top =
            TopLevel::scan(br#"{"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(include_usage(&top).unwrap(), (true, None));

        let body = Bytes::from_static(
            br#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        );
        let top = TopLevel::scan(&body).unwrap();
        let (wants, edit) = include_usage(&top).unwrap();
        assert!(!wants);
        let out = splice(&body, edit.into_iter().collect());
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["stream_options"]["x"], 1);
    }
}
