//! The function definition both OpenAI APIs declare tools with: `name`, `description` and
//! `parameters`. Chat Completions nests it under `function` (`{"type": "function",
//! "function": {…}}`), Responses writes it flat on the tool (`{"type": "function", "name": …}`);
//! `openai_chat::request` and `openai_responses::request` each find it and read it with
//! [`FunctionDefinition`], which makes the canonical [`Tool`].

use serde::Deserialize;
use serde_json::Value;

use crate::canonical::Tool;

/// A client's function definition, as both OpenAI APIs spell it.
#[derive(Deserialize)]
pub(crate) struct FunctionDefinition {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

impl From<FunctionDefinition> for Tool {
    fn from(def: FunctionDefinition) -> Self {
        Tool {
            name: def.name,
            description: def.description,
            // A tool without parameters takes none; every target wants a schema.
            parameters: def
                .parameters
                .filter(|p| !p.is_null())
                .unwrap_or_else(Tool::no_parameters),
        }
    }
}
