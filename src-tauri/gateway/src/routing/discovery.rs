//! Model discovery: asking a provider which models it serves, so that routing can send a
//! client's `model` to every provider that has it and the UI can offer the names.
//!
//! Two ways to ask, chosen per provider by [`DiscoveryKind`]: `auto` reads the provider's own
//! model list at `{base url}/models` in the shape of its [`Protocol`] (OpenAI-compatible hosts,
//! Anthropic and Gemini, following their pages), and `ocf` reads an Open Compute Framework
//! node's distributed node table (`/v1/dnt/table`), where every peer announces the models its
//! services run. [`discover`] does the HTTP (with the provider's auth, as `proxy` sends it) and
//! the parsers turn bodies into names; the registry and the management API call it and keep
//! the result next to the models a provider declares. Nothing here runs on the request path.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ERROR_BODY_CAP;
use crate::proxy::classify::describe;
use crate::proxy::send::KeyStyle;
use crate::store::secrets::Secret;
use flexiproxy_protocol::Protocol;

/// Most pages [`discover`] reads from one provider; a server that keeps answering with a next
/// page is cut off here rather than followed forever.
pub const MAX_PAGES: usize = 20;

/// Page size asked for from Anthropic and Gemini (the most both accept), so that even large
/// accounts need one or two pages.
const PAGE_SIZE: &str = "1000";

/// The largest model list read. OpenRouter's full list with descriptions is about 1 MiB; this
/// only stops a wrong URL from streaming something unbounded into memory.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How many characters of an error answer's message an error keeps.
const MAX_DETAIL_CHARS: usize = 200;

/// The path of an OCF node's distributed node table, below the node's origin.
const DNT_TABLE_PATH: &str = "/v1/dnt/table";

/// How a provider's models are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryKind {
    /// The provider's own model list, in the shape of its protocol.
    #[default]
    Auto,
    /// An Open Compute Framework node's table of peers and the models they serve.
    Ocf,
    /// Not asked: only the models the provider declares count.
    Off,
}

impl DiscoveryKind {
    pub const ALL: [Self; 3] = [Self::Auto, Self::Ocf, Self::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Ocf => "ocf",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for DiscoveryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A discovery kind equals its name (`"auto"`, `"ocf"`, `"off"`): how it is stored and shown.
impl PartialEq<&str> for DiscoveryKind {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// A discovery name that is not one of [`DiscoveryKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown discovery `{0}`; use one of auto, ocf, off")]
pub struct UnknownDiscoveryKind(pub String);

impl FromStr for DiscoveryKind {
    type Err = UnknownDiscoveryKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownDiscoveryKind(s.to_owned()))
    }
}

/// What a provider serves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Discovered {
    /// Model names as the provider takes them in a request, sorted, without duplicates.
    pub models: Vec<String>,
    /// OCF only: the peers behind the node and what each serves, sorted by id.
    pub peers: Vec<OcfPeer>,
}

/// One peer of an OCF network that serves at least one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcfPeer {
    pub id: String,
    /// Sorted, without duplicates, never empty.
    pub models: Vec<String>,
}

/// One page of a provider's model list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelPage {
    /// In the page's order; models that cannot generate (Gemini embedding-only) are left out.
    pub models: Vec<String>,
    /// What asks for the next page (Anthropic's `after_id`, Gemini's `pageToken`), if any.
    pub next: Option<String>,
}

/// Why a provider's models could not be listed. No message contains the provider's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "model discovery is off for this provider; set `discovery` to auto or ocf, or list the \
         provider's models in `models`"
    )]
    Off,
    #[error(
        "`{url}` is not a URL models can be listed from ({reason}); use the provider's base URL, \
         such as https://api.openai.com/v1"
    )]
    InvalidUrl { url: String, reason: String },
    #[error(
        "could not reach {url} to list models: {reason}; check the provider URL and that the \
         server is running"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "listing models at {url} took longer than {after:?}; check that the server is up and \
         answering, or set discovery to off and list the models"
    )]
    TimedOut { url: String, after: Duration },
    #[error("{url} answered HTTP {status} when asked for its models: {detail}{}", status_hint(*.status))]
    Status {
        url: String,
        status: u16,
        /// The message of the error body, shortened.
        detail: String,
    },
    #[error("{} is not a readable {what}: {reason}{}", from_where(.url.as_deref()), unreadable_hint(.what))]
    Unreadable {
        /// Where the body came from; `None` when a body was parsed on its own.
        url: Option<String>,
        /// "model list" or "OCF node table".
        what: &'static str,
        reason: String,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "; check the provider's API key",
        404 | 405 => {
            "; check the provider URL, or set discovery to off and list the provider's models"
        }
        _ => "",
    }
}

fn from_where(url: Option<&str>) -> String {
    url.map_or_else(
        || "the answer".to_owned(),
        |url| format!("the answer from {url}"),
    )
}

fn unreadable_hint(what: &str) -> &'static str {
    if what == OCF_TABLE {
        "; check that the URL points at an OCF node, or set discovery to auto"
    } else {
        "; check the provider URL and protocol, or set discovery to off and list the models"
    }
}

const MODEL_LIST: &str = "model list";
const OCF_TABLE: &str = "OCF node table";

impl DiscoveryError {
    /// Whether the provider refused the key (HTTP 401 or 403).
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Self::Status {
                status: 401 | 403,
                ..
            }
        )
    }

    fn unreadable(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Unreadable {
            url: None,
            what,
            reason: reason.into(),
        }
    }

    /// Names where an unreadable body came from.
    fn at(self, shown: &str) -> Self {
        match self {
            Self::Unreadable {
                url: None,
                what,
                reason,
            } => Self::Unreadable {
                url: Some(shown.to_owned()),
                what,
                reason,
            },
            other => other,
        }
    }

    /// Replaces the key wherever an upstream might have echoed it (error bodies quote the key
    /// they refused; a URL could carry one).
    fn redact(self, key: Option<&Secret>) -> Self {
        let Some(key) = key.map(Secret::expose).filter(|k| !k.is_empty()) else {
            return self;
        };
        let clean = |text: String| {
            if text.contains(key) {
                text.replace(key, "<redacted>")
            } else {
                text
            }
        };
        match self {
            Self::Off => Self::Off,
            Self::InvalidUrl { url, reason } => Self::InvalidUrl {
                url: clean(url),
                reason: clean(reason),
            },
            Self::Unreachable { url, reason } => Self::Unreachable {
                url: clean(url),
                reason: clean(reason),
            },
            Self::TimedOut { url, after } => Self::TimedOut {
                url: clean(url),
                after,
            },
            Self::Status {
                url,
                status,
                detail,
            } => Self::Status {
                url: clean(url),
                status,
                detail: clean(detail),
            },
            Self::Unreadable { url, what, reason } => Self::Unreadable {
                url: url.map(clean),
                what,
                reason: clean(reason),
            },
        }
    }
}

/// The URL models are listed at: `{provider_url}/models` for [`DiscoveryKind::Auto`] (the
/// provider URL is a base URL such as `https://api.openai.com/v1`,
/// `https://api.anthropic.com/v1` or `https://generativelanguage.googleapis.com/v1beta`); for
/// [`DiscoveryKind::Ocf`] the origin of the URL (`scheme://host:port`, whatever path the
/// provider URL has) followed by `/v1/dnt/table`. `None` for [`DiscoveryKind::Off`], and for
/// `Ocf` when the URL has no origin to take (not an absolute http(s) URL).
pub fn models_url(provider_url: &str, kind: DiscoveryKind) -> Option<String> {
    match kind {
        DiscoveryKind::Off => None,
        DiscoveryKind::Auto => Some(format!("{}/models", provider_url.trim_end_matches('/'))),
        DiscoveryKind::Ocf => {
            let url = Url::parse(provider_url).ok()?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return None;
            }
            Some(format!(
                "{}{DNT_TABLE_PATH}",
                url.origin().ascii_serialization()
            ))
        }
    }
}

/// One page of a model list in `protocol`'s shape.
///
/// - `openai_chat`, `openai_responses`: `{"data": [{"id"}]}`; a bare array of the same entries
///   (as some OpenAI-compatible hosts answer) is read too. Never a next page.
/// - `anthropic_messages`: `{"data": [{"id"}], "has_more", "last_id"}`; the next page starts
///   after `last_id` when `has_more` is true.
/// - `gemini`: `{"models": [{"name": "models/…", "supportedGenerationMethods"}],
///   "nextPageToken"}`; names lose their `models/` prefix (requests name the model without
///   it), and models whose `supportedGenerationMethods` is given without `generateContent`
///   (embedding-only, question answering) are left out, since no chat can go to them.
///
/// Entries without a usable name are skipped; only a body that is not JSON or lacks the list
/// itself is an error.
pub fn parse_model_page(protocol: Protocol, body: &[u8]) -> Result<ModelPage, DiscoveryError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| DiscoveryError::unreadable(MODEL_LIST, format!("not JSON ({e})")))?;
    match protocol {
        Protocol::OpenAiChat | Protocol::OpenAiResponses => {
            let entries = match &value {
                Value::Array(entries) => entries,
                _ => data_list(&value)?,
            };
            Ok(ModelPage {
                models: entries.iter().filter_map(entry_id).collect(),
                next: None,
            })
        }
        Protocol::AnthropicMessages => {
            let models = data_list(&value)?.iter().filter_map(entry_id).collect();
            let has_more = value.get("has_more").and_then(Value::as_bool) == Some(true);
            let next = has_more
                .then(|| non_empty_str(value.get("last_id")))
                .flatten();
            Ok(ModelPage { models, next })
        }
        Protocol::Gemini => {
            if !value.is_object() {
                return Err(DiscoveryError::unreadable(
                    MODEL_LIST,
                    "expected a JSON object with a `models` list",
                ));
            }
            // Gemini leaves `models` out of an empty page.
            let models = match value.get("models") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(entries)) => entries.iter().filter_map(gemini_model).collect(),
                Some(_) => {
                    return Err(DiscoveryError::unreadable(
                        MODEL_LIST,
                        "`models` is not a list",
                    ));
                }
            };
            Ok(ModelPage {
                models,
                next: non_empty_str(value.get("nextPageToken")),
            })
        }
    }
}

/// The `data` list of an OpenAI or Anthropic model list.
fn data_list(value: &Value) -> Result<&Vec<Value>, DiscoveryError> {
    match value.get("data") {
        Some(Value::Array(entries)) => Ok(entries),
        Some(_) => Err(DiscoveryError::unreadable(
            MODEL_LIST,
            "`data` is not a list",
        )),
        None => Err(DiscoveryError::unreadable(
            MODEL_LIST,
            "expected a JSON object with a `data` list of models",
        )),
    }
}

fn entry_id(entry: &Value) -> Option<String> {
    non_empty_str(entry.get("id"))
}

fn gemini_model(entry: &Value) -> Option<String> {
    let name = non_empty_str(entry.get("name"))?;
    if let Some(Value::Array(methods)) = entry.get("supportedGenerationMethods")
        && !methods
            .iter()
            .any(|m| m.as_str() == Some("generateContent"))
    {
        return None;
    }
    let bare = name.strip_prefix("models/").unwrap_or(&name);
    (!bare.is_empty()).then(|| bare.to_owned())
}

fn non_empty_str(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The peers of an OCF node table and the models they serve.
///
/// The table is a JSON object of peers keyed by `/<peerId>`, each
/// `{"id", "service": [{"name", "status", "identity_group": ["model=NAME", …]}], …}`. A peer's
/// models are the `model=NAME` entries of all its services' identity groups; other entries
/// (`region=eu`, `all`) are not models. Fields may be missing or null and peers of older OCF
/// builds carry fewer of them, so an entry that does not fit is skipped rather than failing
/// the table; a peer without `id` is named by its key. Peers serving no model are left out.
/// Sorted by id.
pub fn parse_dnt_table(body: &[u8]) -> Result<Vec<OcfPeer>, DiscoveryError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| DiscoveryError::unreadable(OCF_TABLE, format!("not JSON ({e})")))?;
    let Value::Object(table) = value else {
        return Err(DiscoveryError::unreadable(
            OCF_TABLE,
            "expected a JSON object of peers",
        ));
    };
    let mut peers: Vec<OcfPeer> = table
        .iter()
        .filter_map(|(key, peer)| {
            let id = non_empty_str(peer.get("id")).or_else(|| {
                let bare = key.trim_start_matches('/').trim();
                (!bare.is_empty()).then(|| bare.to_owned())
            })?;
            let services: &[Value] = match peer.get("service") {
                Some(Value::Array(services)) => services,
                // One service not in a list: accept it as the list of one.
                Some(service @ Value::Object(_)) => std::slice::from_ref(service),
                _ => &[],
            };
            let mut models: Vec<String> = services
                .iter()
                .filter_map(|service| service.get("identity_group")?.as_array())
                .flatten()
                .filter_map(|identity| identity.as_str()?.strip_prefix("model="))
                .map(str::trim)
                .filter(|model| !model.is_empty())
                .map(str::to_owned)
                .collect();
            models.sort();
            models.dedup();
            (!models.is_empty()).then_some(OcfPeer { id, models })
        })
        .collect();
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(peers)
}

/// Lists the models a provider serves.
///
/// `Auto` reads `{provider_url}/models` and follows the pages (Anthropic `after_id` with
/// `limit=1000`, Gemini `pageToken` with `pageSize=1000`), at most [`MAX_PAGES`]; `Ocf` reads
/// the node table. The key goes as the protocol wants it (`Authorization: Bearer` for
/// `openai_*` and OCF, `x-api-key` with `anthropic-version` for Anthropic, `x-goog-api-key` for
/// Gemini); without a key (Ollama, LM Studio) no auth header is sent. The whole exchange, all
/// pages included, ends within `timeout`.
pub async fn discover(
    http: &reqwest::Client,
    provider_url: &str,
    protocol: Protocol,
    kind: DiscoveryKind,
    key: Option<&Secret>,
    timeout: Duration,
) -> Result<Discovered, DiscoveryError> {
    let key = key.filter(|k| !k.expose().is_empty());
    let result = match models_url(provider_url, kind) {
        None if kind == DiscoveryKind::Off => Err(DiscoveryError::Off),
        None => Err(DiscoveryError::InvalidUrl {
            url: shown_str(provider_url),
            reason: "an OCF node needs an absolute http(s) URL with a host".to_owned(),
        }),
        Some(url) => match parse_target(&url) {
            Err(error) => Err(error),
            Ok(target) => {
                let shown = shown(&target);
                let work = async {
                    if kind == DiscoveryKind::Ocf {
                        discover_ocf(http, target, key).await
                    } else {
                        discover_listed(http, target, protocol, key).await
                    }
                };
                tokio::time::timeout(timeout, work)
                    .await
                    .unwrap_or(Err(DiscoveryError::TimedOut {
                        url: shown,
                        after: timeout,
                    }))
            }
        },
    };
    result.map_err(|error| error.redact(key))
}

/// The models URL, checked before any request so a typo gets a clear message.
fn parse_target(url: &str) -> Result<Url, DiscoveryError> {
    let invalid = |reason: String| DiscoveryError::InvalidUrl {
        url: shown_str(url),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme is `{}`, not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none() {
        return Err(invalid("there is no host".to_owned()));
    }
    Ok(parsed)
}

/// A URL as errors show it: any password in it left out.
fn shown(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut url = url.clone();
    // Only fails for URLs that cannot have credentials, which then have no password either.
    let _ = url.set_password(None);
    url.to_string()
}

fn shown_str(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |parsed| shown(&parsed))
}

async fn discover_ocf(
    http: &reqwest::Client,
    url: Url,
    key: Option<&Secret>,
) -> Result<Discovered, DiscoveryError> {
    let shown = shown(&url);
    let body = fetch(http, url, KeyStyle::Bearer, key, OCF_TABLE).await?;
    let peers = parse_dnt_table(&body).map_err(|e| e.at(&shown))?;
    let mut models: Vec<String> = peers.iter().flat_map(|p| p.models.clone()).collect();
    models.sort();
    models.dedup();
    Ok(Discovered { models, peers })
}

async fn discover_listed(
    http: &reqwest::Client,
    base: Url,
    protocol: Protocol,
    key: Option<&Secret>,
) -> Result<Discovered, DiscoveryError> {
    let style = KeyStyle::of(protocol);
    let mut models = Vec::new();
    let mut next: Option<String> = None;
    for page in 1..=MAX_PAGES {
        let url = page_url(&base, protocol, next.as_deref());
        let shown = shown(&url);
        let body = fetch(http, url, style, key, MODEL_LIST).await?;
        let parsed = parse_model_page(protocol, &body).map_err(|e| e.at(&shown))?;
        models.extend(parsed.models);
        match parsed.next {
            None => break,
            // The same cursor again would fetch the same page again until MAX_PAGES.
            Some(cursor) if next.as_deref() == Some(cursor.as_str()) => {
                tracing::warn!(url = %shown, "model list repeats its page cursor; stopped there");
                break;
            }
            Some(_) if page == MAX_PAGES => {
                tracing::warn!(
                    url = %shown,
                    pages = MAX_PAGES,
                    "model list has more pages than are read; the rest is left out"
                );
            }
            Some(cursor) => next = Some(cursor),
        }
    }
    models.sort();
    models.dedup();
    Ok(Discovered {
        models,
        peers: Vec::new(),
    })
}

/// The URL of one page: the page size and, after the first page, the cursor.
fn page_url(base: &Url, protocol: Protocol, cursor: Option<&str>) -> Url {
    let (size, after) = match protocol {
        Protocol::AnthropicMessages => ("limit", "after_id"),
        Protocol::Gemini => ("pageSize", "pageToken"),
        Protocol::OpenAiChat | Protocol::OpenAiResponses => return base.clone(),
    };
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair(size, PAGE_SIZE);
        if let Some(cursor) = cursor {
            query.append_pair(after, cursor);
        }
    }
    url
}

/// One GET with the provider's auth; the body of a successful answer, or the error an
/// unsuccessful one stands for.
async fn fetch(
    http: &reqwest::Client,
    url: Url,
    style: KeyStyle,
    key: Option<&Secret>,
    what: &'static str,
) -> Result<Vec<u8>, DiscoveryError> {
    let shown = shown(&url);
    let request = style.sign(
        http.get(url)
            .header(ACCEPT, HeaderValue::from_static("application/json")),
        key,
        None,
    );
    let unreachable = |error: &reqwest::Error| DiscoveryError::Unreachable {
        url: shown.clone(),
        reason: describe(error),
    };
    let mut response = request.send().await.map_err(|e| unreachable(&e))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(DiscoveryError::Status {
            url: shown,
            status: status.as_u16(),
            detail: crate::proxy::classify::redirect_detail(&response),
        });
    }
    if !status.is_success() {
        // The error body only adds detail: a broken or huge one still leaves the status.
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_CAP {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        return Err(DiscoveryError::Status {
            url: shown,
            status: status.as_u16(),
            detail: error_detail(&body, status),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(DiscoveryError::Unreadable {
                url: Some(shown),
                what,
                reason: format!("larger than {} MiB", MAX_BODY / (1024 * 1024)),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The message of an error body, short: `error.message` (OpenAI, Anthropic, Gemini),
/// `error` or `message` or `detail` as a string (OCF and other hosts), else the text itself.
fn error_detail(body: &[u8], status: reqwest::StatusCode) -> String {
    let from_json = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| {
            [
                value.pointer("/error/message"),
                value.get("error"),
                value.get("message"),
                value.get("detail"),
            ]
            .into_iter()
            .find_map(non_empty_str)
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return status.canonical_reason().unwrap_or("no message").to_owned();
    }
    let mut chars = collapsed.chars();
    let mut short: String = chars.by_ref().take(MAX_DETAIL_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests;
