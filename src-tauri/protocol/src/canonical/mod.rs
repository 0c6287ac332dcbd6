//! The one internal model of a chat exchange, the hub every protocol translates through.
//!
//! A client request in any wire format is decoded by its `protocol::<api>` module into a
//! [`Request`], encoded from there into the provider's format, and the provider's answer comes
//! back the same way as a [`Response`] or a sequence of [`StreamEvent`]s. With N protocols that
//! is 2N conversions instead of N×N. Requests whose client and provider speak the same protocol
//! never come here: the gateway forwards their bytes (the same-protocol fast path).
//!
//! What the model does not know is kept rather than dropped: unknown content parts as
//! [`Part::Unknown`], top-level fields as [`Request::extra`], provider-native tools as
//! [`Request::native_tools`]. Those are only meaningful to the protocol they came from, which
//! is recorded in [`Request::origin`] / [`Response::origin`]; an encoder re-emits them only when
//! it is that protocol, because the same field name can mean something else elsewhere.
//!
//! Conventions every protocol module follows:
//! - Tool-call ids pass through unchanged (an encoder may only make them valid for its target,
//!   deterministically, so a call and its result still match).
//! - [`TokenUsage::input`] counts every prompt token, cached ones included (OpenAI's meaning);
//!   [`TokenUsage::cached`] is the part of it read from a cache.
//! - In a stream, `index` names one content part of the answer: it is assigned by the decoder,
//!   distinct per part, and every event of that part carries it. Encoders map it to their own
//!   numbering (Anthropic block index, OpenAI tool-call index).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::Protocol;

mod usage;
pub use usage::{MAX_TOKENS, TokenUsage, wire_count};

/// A chat request as the gateway understands it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub model: String,
    /// System instructions, in order. Protocols that allow system text only in one place get
    /// all of it there; its position inside the conversation is not kept.
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    /// Tool definitions a provider runs itself (Anthropic `web_search_…`, …), as sent. Only
    /// forwarded to the protocol in [`Request::origin`].
    pub native_tools: Vec<Value>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)` when the client asked for at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `None`: the client said nothing about reasoning, so the target's default applies.
    pub reasoning: Option<ReasoningConfig>,
    /// `None`: free text.
    pub response_format: Option<ResponseFormat>,
    /// Top-level fields with no canonical home, exactly as the client sent them.
    pub extra: Map<String, Value>,
    /// The protocol this request was decoded from.
    pub origin: Option<Protocol>,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

/// Who speaks. Tool results may arrive in a `Tool` message (OpenAI) or inside a `User` message
/// (Anthropic); encoders accept both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    Tool,
}

/// A typed piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text {
        text: String,
    },
    Image(Image),
    /// The model asks for a tool to run. `arguments` is JSON text, kept as text because the
    /// model may produce invalid JSON and streams build it from fragments.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    ToolResult {
        call_id: String,
        content: Vec<Part>,
        is_error: bool,
    },
    Reasoning(Reasoning),
    /// A part this model has no type for, as the origin protocol wrote it.
    Unknown(Value),
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// The text of a tool result's `content` as a protocol with plain-text results sends it:
    /// its text parts, concatenated. Images are the caller's to place ([`Part::images`]).
    pub(crate) fn joined_text(content: &[Part]) -> String {
        content
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The images among `content`, in order.
    pub(crate) fn images(content: &[Part]) -> impl Iterator<Item = &Image> {
        content.iter().filter_map(|part| match part {
            Part::Image(image) => Some(image),
            _ => None,
        })
    }
}

/// An image, inline or by reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

/// The media type and base64 data of a `data:<type>;base64,<data>` URL; [`data_url`] is its
/// inverse. These two are the only places that read or write `data:` URLs: OpenAI's image
/// URLs go through [`Image::from_url`] / [`Image::to_url`], Gemini's encoder through this.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    Some((meta.strip_suffix(";base64")?, data))
}

/// The `data:<type>;base64,<data>` URL of inline base64 data ([`parse_data_url`] reads it).
pub fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

impl Image {
    /// An image named by URL: a base64 data URL becomes inline data, any other stays a URL.
    pub fn from_url(url: &str) -> Self {
        match parse_data_url(url) {
            Some((media_type, data)) => Self::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            },
            None => Self::Url {
                url: url.to_owned(),
            },
        }
    }

    /// The image as a URL, inline data as a `data:` URL.
    pub fn to_url(&self) -> String {
        match self {
            Self::Base64 { media_type, data } => data_url(media_type, data),
            Self::Url { url } => url.clone(),
        }
    }
}

/// Model reasoning ("thinking") shown or carried in the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasoning {
    pub text: String,
    /// Proof from the provider that `text` is its own, required to send the reasoning back.
    pub signature: Option<String>,
    /// Reasoning the provider returned only in encrypted form (Anthropic `redacted_thinking`).
    pub encrypted: Option<String>,
    /// The protocol whose provider issued `signature`/`encrypted`. Encoders for any other
    /// protocol drop both: a signature is only valid where it was made, and a foreign one makes
    /// the provider reject the whole request.
    pub issuer: Option<Protocol>,
}

impl Reasoning {
    /// Whether the signed or encrypted parts may be sent to a provider speaking `target`.
    pub fn signed_for(&self, target: Protocol) -> bool {
        self.issuer == Some(target)
    }

    /// Reads a tag (see [`tag_proof`]) the client sent back in either field: the reasoning
    /// then belongs to the tagged issuer, with the provider's own proof restored to the field
    /// it came from (a client protocol may have only one slot for both kinds).
    pub fn adopt_tag(&mut self) {
        let tagged = [
            self.signature.as_deref().and_then(untag_proof),
            self.encrypted.as_deref().and_then(untag_proof),
        ];
        for (slot, found) in tagged.into_iter().enumerate() {
            let Some((issuer, kind, proof)) = found else {
                // Untagged: the client's own protocol issued it; it stays where it is.
                continue;
            };
            if slot == 0 {
                self.signature = None;
            } else {
                self.encrypted = None;
            }
            match kind {
                ProofKind::Signature => self.signature = Some(proof),
                ProofKind::Encrypted => self.encrypted = Some(proof),
            }
            self.issuer = Some(issuer);
        }
    }
}

/// Which field of [`Reasoning`] a tagged proof belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    Signature,
    Encrypted,
}

/// What a tagged proof says before its base64 encoding.
const PROOF_TAG: &str = "fpsig1.";
/// How every tagged proof starts once encoded: the base64 of `fpsig1` (six bytes, so the
/// encoding of the rest does not change these eight characters).
const ENCODED_TAG: &str = "ZnBzaWcx";

/// A provider's reasoning proof (a signature, or encrypted reasoning) as a client of another
/// protocol receives it: tagged with the issuing protocol and the kind of proof. The client
/// sends it back unchanged with the rest of the conversation, the tag tells the gateway whose
/// it is, and the proof reaches the provider that made it again, and no other (a foreign
/// signature makes a provider refuse the whole request). The tag is base64 as a whole, since
/// clients check the fields it travels in (Gemini's `thoughtSignature` is bytes).
pub fn tag_proof(issuer: Protocol, kind: ProofKind, proof: &str) -> String {
    let kind = match kind {
        ProofKind::Signature => 's',
        ProofKind::Encrypted => 'e',
    };
    BASE64.encode(format!("{PROOF_TAG}{issuer}.{kind}.{proof}"))
}

/// The issuer, kind and provider's proof inside a tagged one.
pub fn untag_proof(value: &str) -> Option<(Protocol, ProofKind, String)> {
    if !value.starts_with(ENCODED_TAG) {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(value).ok()?).ok()?;
    let rest = decoded.strip_prefix(PROOF_TAG)?;
    let (issuer, rest) = rest.split_once('.')?;
    let (kind, proof) = rest.split_once('.')?;
    let kind = match kind {
        "s" => ProofKind::Signature,
        "e" => ProofKind::Encrypted,
        _ => return None,
    };
    Some((issuer.parse().ok()?, kind, proof.to_owned()))
}

impl Request {
    /// The system instructions as the one string a protocol with a single system text sends:
    /// the non-empty ones joined by blank lines; `None` when there are none.
    pub(crate) fn system_text(&self) -> Option<String> {
        let system: Vec<&str> = self
            .system
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        (!system.is_empty()).then(|| system.join("\n\n"))
    }

    /// Appends the parts of a client's system (or developer) message to [`Request::system`].
    /// Only text belongs there: the first other part stops it and is handed back, for the
    /// decoder's error.
    pub(crate) fn push_system(&mut self, parts: Vec<Part>) -> Result<(), Part> {
        for part in parts {
            match part {
                Part::Text { text } => self.system.push(text),
                other => return Err(other),
            }
        }
        Ok(())
    }

    /// Applies [`Reasoning::adopt_tag`] to every reasoning part of the conversation.
    pub fn adopt_signature_tags(&mut self) {
        for message in &mut self.messages {
            for part in &mut message.content {
                if let Part::Reasoning(reasoning) = part
                    && (reasoning.signature.is_some() || reasoning.encrypted.is_some())
                {
                    reasoning.adopt_tag();
                }
            }
        }
    }
}

impl Response {
    /// Tags the proofs in an answer from a provider of `issuer` (see [`tag_proof`]).
    pub fn tag_signatures(&mut self, issuer: Protocol) {
        for part in &mut self.content {
            if let Part::Reasoning(reasoning) = part {
                if let Some(value) = &mut reasoning.signature {
                    *value = tag_proof(issuer, ProofKind::Signature, value);
                }
                if let Some(value) = &mut reasoning.encrypted {
                    *value = tag_proof(issuer, ProofKind::Encrypted, value);
                }
            }
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON schema of the arguments object.
    pub parameters: Value,
}

impl Tool {
    /// The parameters schema of a tool that takes no arguments: what a tool declared without
    /// any gets, since every target wants a schema.
    pub(crate) fn no_parameters() -> Value {
        serde_json::json!({"type": "object", "properties": {}})
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Named(String),
}

/// A constraint on the answer's form (OpenAI `response_format` / Responses `text.format`,
/// Gemini `responseMimeType` + `responseJsonSchema`). Targets without a native form get the
/// constraint as an instruction.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON matching `schema`.
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

impl ResponseFormat {
    /// The constraint as a system instruction, for targets that cannot enforce it.
    pub fn instruction(&self) -> String {
        match self {
            Self::JsonObject => "Answer with one JSON object and nothing else.".to_owned(),
            Self::JsonSchema { schema, .. } => format!(
                "Answer with one JSON value that matches this JSON schema, and nothing else: {schema}"
            ),
        }
    }
}

/// How much the model should reason. Protocols speak either effort levels (OpenAI) or token
/// budgets (Anthropic, Gemini); both are kept when given and derived when not, via
/// [`ReasoningConfig::effort_or_derived`] and [`ReasoningConfig::budget_or_derived`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReasoningConfig {
    pub effort: Option<Effort>,
    pub budget_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// Reasoning switched off.
    None,
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    /// Parses OpenAI's names. `xhigh` (newer models) is treated as `high`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Self::None,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" | "xhigh" => Self::High,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The token budget this effort stands for. 1024 is Anthropic's smallest allowed budget;
    /// the others grow roughly fourfold, ending where long agentic reasoning usually settles.
    pub fn budget(self) -> u64 {
        match self {
            Self::None => 0,
            Self::Minimal => 1024,
            Self::Low => 4096,
            Self::Medium => 16_384,
            Self::High => 32_768,
        }
    }

    /// The nearest effort for a budget (the inverse of [`Effort::budget`], by ranges).
    pub fn from_budget(budget: u64) -> Self {
        match budget {
            0 => Self::None,
            1..=2047 => Self::Minimal,
            2048..=8191 => Self::Low,
            8192..=24_575 => Self::Medium,
            _ => Self::High,
        }
    }
}

impl ReasoningConfig {
    pub fn effort_or_derived(&self) -> Option<Effort> {
        self.effort
            .or_else(|| self.budget_tokens.map(Effort::from_budget))
    }

    pub fn budget_or_derived(&self) -> Option<u64> {
        self.budget_tokens
            .or_else(|| self.effort.map(Effort::budget))
    }

    /// Whether the client asked for reasoning to be off.
    pub fn is_off(&self) -> bool {
        self.effort == Some(Effort::None) || self.budget_tokens == Some(0)
    }
}

/// A whole (non-streaming) answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub id: String,
    pub model: String,
    pub content: Vec<Part>,
    /// `None` when the provider did not say why it stopped.
    pub finish: Option<FinishReason>,
    /// The stop sequence that ended the answer, when the provider says which.
    pub stop_sequence: Option<String>,
    pub usage: TokenUsage,
    pub origin: Option<Protocol>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit.
    Length,
    ToolCalls,
    /// A provider's safety filter or a refusal.
    ContentFilter,
    /// A reason with no counterpart elsewhere, by its provider's name.
    Other(String),
}

/// One step of a streamed answer. Decoders produce these from upstream events; encoders turn
/// them into the client's events. `Usage` may come more than once: each carries what is known
/// so far, and fields it sets replace earlier ones.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    MessageStart {
        id: String,
        model: String,
    },
    TextDelta {
        index: usize,
        text: String,
    },
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// A fragment of the tool call's arguments JSON text; fragments concatenate.
    ToolCallArgsDelta {
        index: usize,
        fragment: String,
    },
    ReasoningDelta {
        index: usize,
        text: String,
    },
    ReasoningSignature {
        index: usize,
        signature: String,
    },
    Usage(TokenUsage),
    Finish(FinishReason),
    /// The upstream failed mid-stream; encoders end the client's stream with an error event.
    Error {
        message: String,
    },
}

/// Merges `update` into `usage`: fields `update` knows replace the old ones.
pub fn merge_usage(usage: &mut TokenUsage, update: &TokenUsage) {
    usage.input = update.input.or(usage.input);
    usage.output = update.output.or(usage.output);
    usage.cached = update.cached.or(usage.cached);
    usage.reasoning = update.reasoning.or(usage.reasoning);
}

/// Why a body or stream event could not be decoded. Decoders never panic on bad input; they
/// return this, and the caller answers 400 (client input) or 502 (upstream output).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<serde_json::Error> for DecodeError {
    fn from(error: serde_json::Error) -> Self {
        Self::Json(error.to_string())
    }
}

/// Decodes every element of the JSON array at path `at` with `decode`, which is given each
/// element's own path (`at[i]`) to name in its errors.
pub(crate) fn decode_each<T, D>(
    elements: Vec<T>,
    at: &str,
    decode: impl Fn(T, &str) -> Result<D, DecodeError>,
) -> Result<Vec<D>, DecodeError> {
    let decoded = elements.into_iter().enumerate();
    decoded
        .map(|(i, element)| decode(element, &format!("{at}[{i}]")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effort_and_budget_map_both_ways() {
        for effort in [
            Effort::None,
            Effort::Minimal,
            Effort::Low,
            Effort::Medium,
            Effort::High,
        ] {
            assert_eq!(Effort::from_budget(effort.budget()), effort);
        }
        let by_budget = ReasoningConfig {
            effort: None,
            budget_tokens: Some(10_000),
        };
        assert_eq!(by_budget.effort_or_derived(), Some(Effort::Medium));
        assert_eq!(by_budget.budget_or_derived(), Some(10_000));
        assert_eq!(Effort::parse("xhigh"), Some(Effort::High));
        assert_eq!(Effort::parse("max"), None);
    }

    #[test]
    fn usage_updates_replace_only_what_they_know() {
        let mut usage = TokenUsage {
            input: Some(10),
            output: Some(1),
            cached: Some(4),
            reasoning: None,
        };
        merge_usage(
            &mut usage,
            &TokenUsage {
                output: Some(7),
                ..TokenUsage::default()
            },
        );
        assert_eq!(usage.input, Some(10));
        assert_eq!(usage.output, Some(7));
        assert_eq!(usage.cached, Some(4));
    }

    #[test]
    fn tagged_proofs_find_their_way_home() {
        // A Gemini signature that came back in a client's only slot (Responses'
        // `encrypted_content`) returns to the signature field, owned by Gemini.
        let mut reasoning = Reasoning {
            text: "hm".into(),
            signature: None,
            encrypted: Some(tag_proof(Protocol::Gemini, ProofKind::Signature, "c2ln.x")),
            issuer: Some(Protocol::OpenAiResponses),
        };
        reasoning.adopt_tag();
        assert_eq!(reasoning.issuer, Some(Protocol::Gemini));
        assert_eq!(reasoning.signature.as_deref(), Some("c2ln.x"));
        assert_eq!(reasoning.encrypted, None);

        let mut plain = Reasoning {
            signature: Some("EqQBCkgIARABGAI".into()),
            issuer: Some(Protocol::AnthropicMessages),
            ..reasoning
        };
        plain.adopt_tag();
        assert_eq!(plain.issuer, Some(Protocol::AnthropicMessages));
        assert_eq!(plain.signature.as_deref(), Some("EqQBCkgIARABGAI"));
        let forged = |text: &str| BASE64.encode(text);
        assert_eq!(untag_proof(&forged("fpsig1.nonsense.s.x")), None);
        assert_eq!(untag_proof(&forged("fpsig1.gemini.q.x")), None);
        assert_eq!(
            untag_proof(&forged("fpsig1.gemini.e.x")),
            Some((Protocol::Gemini, ProofKind::Encrypted, "x".to_owned()))
        );
        // Whatever the issuer and proof, the tag is plain base64 and starts the same way.
        let tag = tag_proof(Protocol::AnthropicMessages, ProofKind::Signature, "EqQB+/=");
        assert!(tag.starts_with(ENCODED_TAG), "{tag}");
        assert!(BASE64.decode(&tag).is_ok());
    }

    #[test]
    fn signatures_belong_to_their_issuer() {
        let reasoning = Reasoning::signed("hm", "sig", Protocol::AnthropicMessages);
        assert!(reasoning.signed_for(Protocol::AnthropicMessages));
        assert!(!reasoning.signed_for(Protocol::OpenAiChat));
    }
}
