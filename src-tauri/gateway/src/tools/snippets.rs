//! Copy-only set-ups: the SDKs (OpenAI, Anthropic, Google Gen AI) and the IDE assistants
//! (Cursor, Continue, Cline), whose settings live in places FlexiProxy does not write (code,
//! an editor's own storage). Each snippet is complete enough to paste and run.

use super::{Snippet, Target, Tool};

pub fn snippet(tool: Tool, target: &Target<'_>) -> Snippet {
    let base = target.base_url;
    let v1 = target.v1();
    let key = target.key;
    let model = target.model_or_placeholder();
    match tool {
        Tool::OpenAiSdk => sdk_pair(
            [("OPENAI_BASE_URL", &v1), ("OPENAI_API_KEY", key)],
            &format!(
                "from openai import OpenAI\n\
                 client = OpenAI(base_url=\"{v1}\", api_key=\"{key}\")\n\
                 reply = client.chat.completions.create(model=\"{model}\", messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}])\n"
            ),
            &format!(
                "import OpenAI from \"openai\";\n\
                 const client = new OpenAI({{ baseURL: \"{v1}\", apiKey: \"{key}\" }});\n\
                 const reply = await client.chat.completions.create({{ model: \"{model}\", messages: [{{ role: \"user\", content: \"Hello\" }}] }});\n"
            ),
        ),
        Tool::AnthropicSdk => sdk_pair(
            [("ANTHROPIC_BASE_URL", base), ("ANTHROPIC_API_KEY", key)],
            &format!(
                "import anthropic\n\
                 client = anthropic.Anthropic(base_url=\"{base}\", api_key=\"{key}\")\n\
                 reply = client.messages.create(model=\"{model}\", max_tokens=1024, messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}])\n"
            ),
            &format!(
                "import Anthropic from \"@anthropic-ai/sdk\";\n\
                 const client = new Anthropic({{ baseURL: \"{base}\", apiKey: \"{key}\" }});\n\
                 const reply = await client.messages.create({{ model: \"{model}\", max_tokens: 1024, messages: [{{ role: \"user\", content: \"Hello\" }}] }});\n"
            ),
        ),
        Tool::GoogleGenai => Snippet {
            language: "text",
            text: format!(
                "# Python (google-genai)\n\
                 from google import genai\n\
                 from google.genai import types\n\
                 client = genai.Client(api_key=\"{key}\", http_options=types.HttpOptions(base_url=\"{base}\"))\n\
                 reply = client.models.generate_content(model=\"{model}\", contents=\"Hello\")\n\
                 \n\
                 // JavaScript (@google/genai)\n\
                 import {{ GoogleGenAI }} from \"@google/genai\";\n\
                 const ai = new GoogleGenAI({{ apiKey: \"{key}\", httpOptions: {{ baseUrl: \"{base}\" }} }});\n\
                 const reply = await ai.models.generateContent({{ model: \"{model}\", contents: \"Hello\" }});\n"
            ),
        },
        Tool::Cursor => Snippet {
            language: "text",
            text: format!(
                "Cursor Settings → Models:\n\
                 - OpenAI API Key: {key}\n\
                 - Override OpenAI Base URL: {v1}\n\
                 - Add model: {model}\n\
                 Cursor sends these requests from its own servers, which cannot reach 127.0.0.1 \
                 on your machine: use an address they can reach (for example a tunnel to the \
                 gateway).\n"
            ),
        },
        Tool::Continue => Snippet {
            language: "yaml",
            text: format!(
                "# ~/.continue/config.yaml\n\
                 models:\n  \
                   - name: FlexiProxy\n    \
                     provider: openai\n    \
                     model: {model}\n    \
                     apiBase: {v1}\n    \
                     apiKey: {key}\n"
            ),
        },
        Tool::Cline => Snippet {
            language: "text",
            text: format!(
                "Cline settings → API Configuration:\n\
                 - API Provider: OpenAI Compatible\n\
                 - Base URL: {v1}\n\
                 - API Key: {key}\n\
                 - Model ID: {model}\n"
            ),
        },
        // The tools FlexiProxy writes have their snippet beside their file's edits.
        Tool::ClaudeCode | Tool::Codex | Tool::GeminiCli | Tool::Aider => {
            super::snippet(tool, target)
        }
    }
}

/// A vendor's SDKs for Python and JavaScript: the two environment variables both read (the
/// address, then the key), then a first call in each language.
fn sdk_pair(env: [(&str, &str); 2], python: &str, javascript: &str) -> Snippet {
    let [(base_var, base), (key_var, key)] = env;
    Snippet {
        language: "text",
        text: format!(
            "# Environment (both SDKs read it)\n\
             export {base_var}={base}\n\
             export {key_var}={key}\n\
             \n\
             # Python\n\
             {python}\
             \n\
             // JavaScript\n\
             {javascript}"
        ),
    }
}
