//! Provider presets: the well-known providers a user can add with one click in the window
//! ("Add provider" → OpenAI, Anthropic, Gemini, …), each with the base URL in the form the
//! relay appends endpoint paths to (`send::upstream_url`: base + `/chat/completions`,
//! `/messages`, `/models/…:generateContent`), the protocol it speaks, and where to get a key.
//!
//! Served as `GET /api/presets`; the UI only fills its form from them, so a user can still edit
//! every field before saving the provider.

use serde::Serialize;

/// One provider the UI offers to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// Suggested provider id (the user may change it).
    pub id: &'static str,
    pub name: &'static str,
    /// Base URL, without a trailing slash; empty for `custom`.
    pub url: &'static str,
    /// A [`flexiproxy_protocol::Protocol`] name.
    pub protocol: &'static str,
    /// Whether requests need an API key (local servers do not).
    pub needs_key: bool,
    /// Where the user creates a key.
    pub key_url: Option<&'static str>,
    /// A model id the provider serves, as a hint for the model field.
    pub example_model: Option<&'static str>,
    /// Anything the user should know before saving (regions, local servers).
    pub note: Option<&'static str>,
}

/// Every preset, in the order the UI shows them.
pub const PRESETS: &[Preset] = &[
    Preset {
        id: "openai",
        name: "OpenAI",
        url: "https://api.openai.com/v1",
        protocol: "openai_chat",
        needs_key: true,
        key_url: Some("https://platform.openai.com/api-keys"),
        example_model: Some("gpt-4o-mini"),
        note: Some("Choose the OpenAI Responses protocol for models only served by /responses."),
    },
    Preset {
        id: "anthropic",
        name: "Anthropic",
        url: "https://api.anthropic.com/v1",
        protocol: "anthropic_messages",
        needs_key: true,
        key_url: Some("https://console.anthropic.com/settings/keys"),
        example_model: Some("claude-3-5-haiku-latest"),
        note: None,
    },
    Preset {
        id: "gemini",
        name: "Google Gemini",
        url: "https://generativelanguage.googleapis.com/v1beta",
        protocol: "gemini",
        needs_key: true,
        key_url: Some("https://aistudio.google.com/apikey"),
        example_model: Some("gemini-2.0-flash"),
        note: None,
    },
    Preset {
        id: "deepseek",
        name: "DeepSeek",
        url: "https://api.deepseek.com/v1",
        protocol: "openai_chat",
        needs_key: true,
        key_url: Some("https://platform.deepseek.com/api_keys"),
        example_model: Some("deepseek-chat"),
        note: None,
    },
    Preset {
        id: "deepinfra",
        name: "DeepInfra",
        url: "https://api.deepinfra.com/v1/openai",
        protocol: "openai_chat",
        needs_key: true,
        key_url: Some("https://deepinfra.com/dash/api_keys"),
        example_model: Some("meta-llama/Meta-Llama-3.1-8B-Instruct"),
        note: None,
    },
    Preset {
        id: "qwen",
        name: "Qwen (Alibaba DashScope)",
        url: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        protocol: "openai_chat",
        needs_key: true,
        key_url: Some("https://www.alibabacloud.com/help/en/model-studio/get-api-key"),
        example_model: Some("qwen-plus"),
        note: Some(
            "International (Singapore) endpoint. Accounts in mainland China use \
             https://dashscope.aliyuncs.com/compatible-mode/v1",
        ),
    },
    Preset {
        id: "xai",
        name: "xAI (Grok)",
        url: "https://api.x.ai/v1",
        protocol: "openai_chat",
        needs_key: true,
        key_url: Some("https://console.x.ai"),
        example_model: Some("grok-3-mini"),
        note: None,
    },
    Preset {
        id: "openrouter",
        name: "OpenRouter",
        url: "https://openrouter.ai/api/v1",
        protocol: "openai_chat",
        needs_key: true,
        key_url: Some("https://openrouter.ai/keys"),
        example_model: Some("openai/gpt-4o-mini"),
        note: None,
    },
    Preset {
        id: "groq",
        name: "Groq",
        url: "https://api.groq.com/openai/v1",
        protocol: "openai_chat",
        needs_key: true,
        key_url: Some("https://console.groq.com/keys"),
        example_model: Some("llama-3.1-8b-instant"),
        note: None,
    },
    Preset {
        id: "ollama",
        name: "Ollama",
        url: "http://127.0.0.1:11434/v1",
        protocol: "openai_chat",
        needs_key: false,
        key_url: None,
        example_model: Some("llama3.2"),
        note: Some("Runs on this computer: start Ollama first (`ollama serve`)."),
    },
    Preset {
        id: "lmstudio",
        name: "LM Studio",
        url: "http://127.0.0.1:1234/v1",
        protocol: "openai_chat",
        needs_key: false,
        key_url: None,
        example_model: None,
        note: Some("Runs on this computer: start the server in LM Studio's Developer tab first."),
    },
    Preset {
        id: "custom",
        name: "Custom",
        url: "",
        protocol: "openai_chat",
        needs_key: false,
        key_url: None,
        example_model: None,
        note: Some(
            "Any OpenAI-, Anthropic- or Gemini-compatible server: give its base URL, the part \
             before /chat/completions, /messages or /models.",
        ),
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use flexiproxy_protocol::Protocol;

    #[test]
    fn the_issue_lists_these_providers() {
        let ids: Vec<&str> = PRESETS.iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            [
                "openai",
                "anthropic",
                "gemini",
                "deepseek",
                "deepinfra",
                "qwen",
                "xai",
                "openrouter",
                "groq",
                "ollama",
                "lmstudio",
                "custom"
            ]
        );
    }

    #[test]
    fn every_preset_has_a_valid_protocol_id_and_url() {
        for preset in PRESETS {
            let protocol: Protocol = preset.protocol.parse().unwrap();
            assert_eq!(protocol.as_str(), preset.protocol);
            assert!(
                crate::routing::registry::valid_id(preset.id),
                "{}",
                preset.id
            );
            if preset.id == "custom" {
                assert!(preset.url.is_empty());
                continue;
            }
            let url = reqwest::Url::parse(preset.url).unwrap();
            assert!(matches!(url.scheme(), "http" | "https"), "{}", preset.url);
            assert!(url.has_host(), "{}", preset.url);
            // The relay appends `/chat/completions` etc. to the base as written.
            assert!(!preset.url.ends_with('/'), "{}", preset.url);
            assert_eq!(url.query(), None, "{}", preset.url);
            if preset.needs_key {
                assert_eq!(url.scheme(), "https", "{}", preset.url);
                assert!(preset.key_url.is_some(), "{}", preset.id);
            }
        }
    }

    #[test]
    fn endpoints_land_where_the_providers_document_them() {
        let find = |id: &str| PRESETS.iter().find(|p| p.id == id).unwrap();
        let cases = [
            (
                "openai",
                "/chat/completions",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "anthropic",
                "/messages",
                "https://api.anthropic.com/v1/messages",
            ),
            (
                "gemini",
                "/models/gemini-2.0-flash:generateContent",
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
            ),
            (
                "deepinfra",
                "/chat/completions",
                "https://api.deepinfra.com/v1/openai/chat/completions",
            ),
            (
                "groq",
                "/chat/completions",
                "https://api.groq.com/openai/v1/chat/completions",
            ),
            (
                "openrouter",
                "/models",
                "https://openrouter.ai/api/v1/models",
            ),
            (
                "qwen",
                "/chat/completions",
                "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions",
            ),
            ("ollama", "/models", "http://127.0.0.1:11434/v1/models"),
        ];
        for (id, path, want) in cases {
            // The same joining rule as `send::upstream_url`.
            let got = format!("{}{path}", find(id).url.trim_end_matches('/'));
            assert_eq!(got, want);
        }
    }

    #[test]
    fn presets_serialise_as_the_api_promises() {
        let json = serde_json::to_value(PRESETS[0]).unwrap();
        assert_eq!(json["id"], "openai");
        assert_eq!(json["url"], "https://api.openai.com/v1");
        assert_eq!(json["protocol"], "openai_chat");
        assert_eq!(json["needs_key"], true);
        assert_eq!(json["key_url"], "https://platform.openai.com/api-keys");
        assert_eq!(json["example_model"], "gpt-4o-mini");
    }
}
