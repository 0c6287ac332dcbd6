//! Apply and undo against real files in a scratch home, for each tool FlexiProxy writes.

#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;
use crate::store::Database;

const BASE: &str = "http://127.0.0.1:8317";
const KEY: &str = "fp-test-key-0123456789abcdef";
const OTHER_KEY: &str = "fp-other-key-9876543210";

/// FlexiProxy's own key and no model: what a routing adapter writes.
const PLAIN: Target<'static> = Target {
    base_url: BASE,
    key: KEY,
    model: None,
};

struct Scratch {
    root: PathBuf,
    home: Home,
    db: Database,
}

impl Scratch {
    fn new() -> Self {
        let root = crate::store::scratch_dir("tools");
        std::fs::create_dir_all(root.join("home")).unwrap();
        let db = Database::open(&root.join("data")).unwrap();
        Self {
            home: Home::at(root.join("home")),
            root,
            db,
        }
    }

    fn ws(&self) -> Workspace<'_> {
        Workspace {
            db: &self.db,
            data_dir: self.data_dir_path(),
            home: &self.home,
        }
    }

    fn data_dir_path(&self) -> &Path {
        self.db.path().parent().unwrap()
    }

    fn file(&self, relative: &str) -> PathBuf {
        self.home.dir.join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.file(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.file(relative)).unwrap()
    }

    /// A later edit by someone else: `from` becomes `to` in the file; returns the new text.
    fn edit(&self, relative: &str, from: &str, to: &str) -> String {
        let edited = self.read(relative).replace(from, to);
        self.write(relative, &edited);
        edited
    }

    /// After an apply, the user edits `from` into `to`; undo must leave `original` with that
    /// same edit.
    fn check_undo_keeps_an_edit(
        &self,
        tool: Tool,
        relative: &str,
        original: &str,
        from: &str,
        to: &str,
    ) {
        self.edit(relative, from, to);
        undo(self.ws(), tool).unwrap();
        assert_eq!(self.read(relative), original.replace(from, to));
    }

    /// FlexiProxy creates Claude Code's settings, then the user adds `"model": "opus"` and
    /// saves the file as `render` lays it out.
    fn claude_settings_made_then_given_a_model(
        &self,
        render: fn(&Value) -> serde_json::Result<String>,
    ) {
        self.apply(Tool::ClaudeCode, KEY, None);
        let mut doc = self.read_json(".claude/settings.json");
        doc["model"] = "opus".into();
        self.write(".claude/settings.json", &render(&doc).unwrap());
    }

    /// The user's own Claude Code settings, then FlexiProxy's apply over them; returns where
    /// the user's file was backed up.
    fn claude_code_applied_over_the_users_settings(&self) -> PathBuf {
        self.write(".claude/settings.json", CLAUDE_SETTINGS);
        let changes = self.apply(Tool::ClaudeCode, KEY, None);
        changes[0].backup_path.clone().unwrap()
    }

    fn read_json(&self, relative: &str) -> Value {
        serde_json::from_str(&self.read(relative)).unwrap()
    }

    fn apply(&self, tool: Tool, key: &str, model: Option<&str>) -> Vec<FileChange> {
        let target = Target {
            base_url: BASE,
            key,
            model,
        };
        apply(self.ws(), tool, &target, Some(1)).unwrap()
    }

    fn status(&self, tool: Tool) -> Status {
        statuses(&self.db, &self.home, BASE)
            .unwrap()
            .into_iter()
            .find(|(t, _)| *t == tool)
            .unwrap()
            .1
    }

    /// Everything the database holds about set-ups, as text.
    fn records(&self) -> String {
        self.db
            .raw_for_tests(|c| {
                let mut stmt = c.prepare("SELECT * FROM tool_setups")?;
                let count = stmt.column_count();
                let rows = stmt.query_map([], |row| {
                    let mut out = String::new();
                    for i in 0..count {
                        let value: rusqlite::types::Value = row.get(i)?;
                        out.push_str(&format!("{value:?}|"));
                    }
                    Ok(out)
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .unwrap()
            .join("\n")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// -- Claude Code ---------------------------------------------------------------------------

#[test]
fn claude_code_into_a_missing_file_and_back() {
    let s = Scratch::new();
    let changes = s.apply(Tool::ClaudeCode, KEY, Some("m"));
    assert_eq!(
        changes[0].changed,
        ["env.ANTHROPIC_BASE_URL", "env.ANTHROPIC_AUTH_TOKEN"]
    );
    assert!(changes[0].created);
    assert!(changes[0].backup_path.is_none());
    let written: Value = s.read_json(".claude/settings.json");
    assert_eq!(
        written,
        serde_json::json!({"env": {"ANTHROPIC_BASE_URL": BASE, "ANTHROPIC_AUTH_TOKEN": KEY}})
    );
    #[cfg(unix)]
    assert_eq!(mode(&s.file(".claude/settings.json")), 0o600);
    let status = s.status(Tool::ClaudeCode);
    assert!(status.applied && status.points_here && status.can_undo);
    assert!(
        !s.records().contains(KEY),
        "the key stays out of the database"
    );

    let again = s.apply(Tool::ClaudeCode, KEY, Some("m"));
    assert!(again[0].changed.is_empty(), "re-applying changes nothing");

    undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert!(
        !s.file(".claude/settings.json").exists(),
        "a file FlexiProxy made goes away"
    );
    let status = s.status(Tool::ClaudeCode);
    assert!(!status.applied && !status.points_here && !status.can_undo);
    assert!(matches!(
        undo(s.ws(), Tool::ClaudeCode),
        Err(ToolSetupError::NothingToUndo(_))
    ));
}

const CLAUDE_SETTINGS: &str = "{\n    \"model\": \"opus\",\n    \"env\": {\n        \"ANTHROPIC_BASE_URL\": \"https://proxy.example\",\n        \"ANTHROPIC_AUTH_TOKEN\": \"sk-mine-0000\",\n        \"FOO\": \"1\"\n    },\n    \"permissions\": {\"allow\": [\"Bash\"]}\n}\n";

#[test]
fn claude_code_keeps_other_settings_and_undoes_to_the_same_bytes() {
    let s = Scratch::new();
    s.write(".claude/settings.json", CLAUDE_SETTINGS);
    #[cfg(unix)]
    set_mode(&s.file(".claude/settings.json"), 0o640);
    let status = s.status(Tool::ClaudeCode);
    assert_eq!(
        status.points_elsewhere.as_deref(),
        Some("https://proxy.example")
    );
    assert!(!status.points_here);

    let changes = s.apply(Tool::ClaudeCode, KEY, None);
    let text = s.read(".claude/settings.json");
    assert!(text.starts_with("{\n    \"model\": \"opus\",\n    \"env\": {\n        \"ANTHROPIC_BASE_URL\": \"http://127.0.0.1:8317\",\n        \"ANTHROPIC_AUTH_TOKEN\": \"fp-test"), "{text}");
    assert!(text.contains("\"FOO\": \"1\""));
    assert!(text.contains("\"permissions\": {\"allow\": [\"Bash\"]}"));
    #[cfg(unix)]
    assert_eq!(
        mode(&s.file(".claude/settings.json")),
        0o600,
        "the file holds the adapter key now: the user's alone"
    );
    assert!(changes[0].private);

    let backup = changes[0].backup_path.clone().unwrap();
    assert!(backup.starts_with(s.data_dir_path().join(BACKUP_DIR)));
    assert!(
        backup
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("claude-code-")
    );
    assert!(backup.extension().is_some_and(|e| e == "json"));
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), CLAUDE_SETTINGS);
    #[cfg(unix)]
    assert_eq!(mode(&backup), 0o600);
    let records = s.records();
    assert!(
        !records.contains("sk-mine-0000"),
        "a previous secret stays in the backup only"
    );
    assert!(
        records.contains("https://proxy.example"),
        "non-secret previous values are kept"
    );

    // Another adapter's key: the first undo goes back to the first adapter's set-up, the
    // second to the user's own settings, permissions included.
    let after_first = s.read(".claude/settings.json");
    s.apply(Tool::ClaudeCode, OTHER_KEY, None);
    assert_eq!(s.status(Tool::ClaudeCode).undo_steps, 2);
    let undone = undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert_eq!(undone.remaining, 1);
    assert_eq!(s.read(".claude/settings.json"), after_first);
    let undone = undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert_eq!(undone.remaining, 0);
    assert_eq!(s.read(".claude/settings.json"), CLAUDE_SETTINGS);
    #[cfg(unix)]
    assert_eq!(mode(&s.file(".claude/settings.json")), 0o640);
}

#[test]
fn claude_code_undo_keeps_the_users_later_edits() {
    let s = Scratch::new();
    s.write(".claude/settings.json", CLAUDE_SETTINGS);
    s.apply(Tool::ClaudeCode, KEY, None);
    s.check_undo_keeps_an_edit(
        Tool::ClaudeCode,
        ".claude/settings.json",
        CLAUDE_SETTINGS,
        "\"opus\"",
        "\"sonnet\"",
    );
}

#[test]
fn claude_code_created_file_with_later_edits_stays_without_our_keys() {
    let s = Scratch::new();
    s.claude_settings_made_then_given_a_model(serde_json::to_string);
    undo(s.ws(), Tool::ClaudeCode).unwrap();
    let left: Value = s.read_json(".claude/settings.json");
    assert_eq!(
        left,
        serde_json::json!({"model": "opus"}),
        "our keys and the empty env go"
    );
}

#[test]
fn invalid_json_is_refused_with_its_line_and_left_alone() {
    let s = Scratch::new();
    let broken = "{\n  \"model\": \"opus\"\n  \"env\": {}\n}\n";
    s.write(".claude/settings.json", broken);
    let err = apply(s.ws(), Tool::ClaudeCode, &PLAIN, Some(1)).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ToolSetupError::InvalidFile { line: Some(3), .. }),
        "{message}"
    );
    assert!(
        message.contains("settings.json is not valid JSON (line 3)"),
        "{message}"
    );
    assert!(!message.contains(KEY));
    assert_eq!(s.read(".claude/settings.json"), broken);
    assert!(s.records().is_empty());
    let status = s.status(Tool::ClaudeCode);
    assert!(!status.points_here && status.points_elsewhere.is_none());
}

#[test]
fn copy_only_tools_are_not_written() {
    let s = Scratch::new();
    assert!(matches!(
        apply(s.ws(), Tool::Cursor, &PLAIN, None),
        Err(ToolSetupError::NotWritable(_))
    ));
}

// -- Codex ---------------------------------------------------------------------------------

const CODEX_CONFIG: &str = "# my Codex\nmodel = \"o3\"  # favourite\napproval_policy = \"on-request\"\n\n[model_providers.ollama]\nname = \"Ollama\"\nbase_url = \"http://localhost:11434/v1\"\n\n[profiles.fast]\nmodel = \"o4-mini\"\n";

#[test]
fn codex_into_an_existing_config_keeps_comments_and_undoes_exactly() {
    let mut s = Scratch::new();
    s.home.codex_home = Some(s.home.dir.join("codex-home"));
    s.write("codex-home/config.toml", CODEX_CONFIG);
    let changes = s.apply(Tool::Codex, KEY, Some("agent-model"));
    assert_eq!(
        changes[0].changed,
        ["model_provider", "model", "model_providers.flexiproxy"]
    );
    let text = s.read("codex-home/config.toml");
    assert!(text.starts_with("# my Codex\nmodel = \"agent-model\"  # favourite\napproval_policy = \"on-request\"\nmodel_provider = \"flexiproxy\"\n"), "{text}");
    assert!(
        text.contains("[model_providers.ollama]\nname = \"Ollama\""),
        "{text}"
    );
    assert!(
        text.contains("[profiles.fast]\nmodel = \"o4-mini\""),
        "{text}"
    );
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    let provider = &parsed["model_providers"]["flexiproxy"];
    assert_eq!(
        provider["base_url"].as_str(),
        Some("http://127.0.0.1:8317/v1")
    );
    assert_eq!(provider["wire_api"].as_str(), Some("responses"));
    assert_eq!(provider["experimental_bearer_token"].as_str(), Some(KEY));
    assert!(s.status(Tool::Codex).points_here);
    assert!(!s.file(".codex/config.toml").exists(), "CODEX_HOME wins");

    assert!(
        s.apply(Tool::Codex, KEY, Some("agent-model"))[0]
            .changed
            .is_empty()
    );
    undo(s.ws(), Tool::Codex).unwrap();
    assert_eq!(s.read("codex-home/config.toml"), CODEX_CONFIG);
}

#[test]
fn codex_undo_after_user_edits_restores_only_our_keys() {
    let s = Scratch::new();
    s.write(".codex/config.toml", CODEX_CONFIG);
    s.apply(Tool::Codex, KEY, Some("agent-model"));
    let edited = s.read(".codex/config.toml") + "\n[mcp_servers.docs]\ncommand = \"docs\"\n";
    s.write(".codex/config.toml", &edited);
    undo(s.ws(), Tool::Codex).unwrap();
    let text = s.read(".codex/config.toml");
    assert!(
        text.starts_with("# my Codex\nmodel = \"o3\"  # favourite\n"),
        "{text}"
    );
    assert!(!text.contains("flexiproxy"), "{text}");
    assert!(!text.contains("model_provider ="), "{text}");
    assert!(
        text.contains("[mcp_servers.docs]\ncommand = \"docs\""),
        "{text}"
    );
    assert!(text.contains("[model_providers.ollama]"), "{text}");
}

#[test]
fn codex_status_names_another_provider() {
    let s = Scratch::new();
    s.write(
        ".codex/config.toml",
        "model_provider = \"ollama\"\n[model_providers.ollama]\nbase_url = \"http://localhost:11434/v1\"\n",
    );
    let status = s.status(Tool::Codex);
    assert_eq!(
        status.points_elsewhere.as_deref(),
        Some("http://localhost:11434/v1")
    );
    s.write(".codex/config.toml", "model = \"x\"\nbroken = \n");
    let err = apply(s.ws(), Tool::Codex, &PLAIN, None).unwrap_err();
    assert!(
        matches!(err, ToolSetupError::InvalidFile { line: Some(2), .. }),
        "{err}"
    );
}

#[test]
fn codex_missing_file_is_created_then_removed() {
    let s = Scratch::new();
    s.apply(Tool::Codex, KEY, None);
    let text = s.read(".codex/config.toml");
    assert!(
        !text.contains("model ="),
        "no model for a routing adapter: {text}"
    );
    assert!(!text.contains("[model_providers]\n"), "{text}");
    undo(s.ws(), Tool::Codex).unwrap();
    assert!(!s.file(".codex/config.toml").exists());
}

// -- Gemini CLI ----------------------------------------------------------------------------

const GEMINI_SETTINGS: &str = "{\n  // theme first\n  \"ui\": {\"theme\": \"Dracula\"},\n  \"security\": {\n    \"auth\": {\n      \"selectedType\": \"oauth-personal\" /* was */\n    }\n  }\n}\n";

#[test]
fn gemini_cli_writes_env_and_settings_and_undoes_both() {
    let s = Scratch::new();
    s.write(".gemini/settings.json", GEMINI_SETTINGS);
    let changes = s.apply(Tool::GeminiCli, KEY, Some("m"));
    assert_eq!(changes.len(), 2);
    assert_eq!(
        changes[0].changed,
        ["GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY"]
    );
    assert!(changes[0].created);
    assert_eq!(
        changes[1].changed,
        ["security.auth.selectedType", "model.name"]
    );
    assert_eq!(
        s.read(".gemini/.env"),
        format!("GOOGLE_GEMINI_BASE_URL={BASE}\nGEMINI_API_KEY={KEY}\n")
    );
    let settings = s.read(".gemini/settings.json");
    assert!(settings.contains("// theme first"), "{settings}");
    assert!(
        settings.contains("\"selectedType\": \"gemini-api-key\""),
        "{settings}"
    );
    assert!(s.status(Tool::GeminiCli).points_here);

    undo(s.ws(), Tool::GeminiCli).unwrap();
    assert!(!s.file(".gemini/.env").exists());
    assert_eq!(s.read(".gemini/settings.json"), GEMINI_SETTINGS);
}

#[test]
fn gemini_cli_env_keeps_other_lines_after_user_edits() {
    let s = Scratch::new();
    s.write(
        ".gemini/.env",
        "# mine\nGEMINI_API_KEY=AIza-mine\nOTHER=1\n",
    );
    s.apply(Tool::GeminiCli, KEY, None);
    let edited = s.read(".gemini/.env") + "LATER=2\n";
    s.write(".gemini/.env", &edited);
    undo(s.ws(), Tool::GeminiCli).unwrap();
    assert_eq!(
        s.read(".gemini/.env"),
        "# mine\nGEMINI_API_KEY=AIza-mine\nOTHER=1\nLATER=2\n"
    );
    assert!(
        !s.file(".gemini/settings.json").exists(),
        "settings FlexiProxy made are gone"
    );
}

// -- aider ---------------------------------------------------------------------------------

const AIDER_CONF: &str =
    "# aider settings\nmodel: gpt-4o  # mine\ndark-mode: true\nread:\n  - CONVENTIONS.md\n";

#[test]
fn aider_lines_change_in_place_and_come_back() {
    let s = Scratch::new();
    s.write(".aider.conf.yml", AIDER_CONF);
    let changes = s.apply(Tool::Aider, KEY, Some("agent-model"));
    assert_eq!(
        changes[0].changed,
        ["openai-api-base", "openai-api-key", "model"]
    );
    assert_eq!(
        s.read(".aider.conf.yml"),
        format!(
            "# aider settings\nmodel: openai/agent-model\ndark-mode: true\nread:\n  - CONVENTIONS.md\nopenai-api-base: {BASE}/v1\nopenai-api-key: {KEY}\n"
        )
    );
    assert!(s.status(Tool::Aider).points_here);
    undo(s.ws(), Tool::Aider).unwrap();
    assert_eq!(s.read(".aider.conf.yml"), AIDER_CONF);

    s.apply(Tool::Aider, KEY, Some("agent-model"));
    s.check_undo_keeps_an_edit(
        Tool::Aider,
        ".aider.conf.yml",
        AIDER_CONF,
        "dark-mode: true",
        "dark-mode: false",
    );
}

#[test]
fn aider_refuses_a_value_it_cannot_edit() {
    let s = Scratch::new();
    let conf = "openai-api-key: >\n  sk-folded\n";
    s.write(".aider.conf.yml", conf);
    let err = apply(s.ws(), Tool::Aider, &PLAIN, None).unwrap_err();
    assert!(
        matches!(err, ToolSetupError::InvalidFile { line: Some(1), .. }),
        "{err}"
    );
    assert_eq!(s.read(".aider.conf.yml"), conf);
}

// -- snippets and status -------------------------------------------------------------------

#[test]
fn snippets_use_the_gateway_and_the_placeholder() {
    let target = Target {
        base_url: BASE,
        key: KEY_PLACEHOLDER,
        model: Some("gpt-4o"),
    };
    for tool in Tool::ALL {
        let snippet = snippet(tool, &target);
        assert!(snippet.text.contains("127.0.0.1:8317"), "{tool:?}");
        assert!(snippet.text.contains(KEY_PLACEHOLDER), "{tool:?}");
        assert!(
            snippet.text.contains("gpt-4o") || matches!(tool, Tool::ClaudeCode | Tool::GeminiCli),
            "{tool:?}: {}",
            snippet.text
        );
    }
    assert_eq!(
        snippet(Tool::ClaudeCode, &target).text,
        "export ANTHROPIC_BASE_URL=http://127.0.0.1:8317\nexport ANTHROPIC_AUTH_TOKEN={{KEY}}\n"
    );
    let routed = Target {
        model: None,
        ..target
    };
    assert!(
        snippet(Tool::Codex, &routed)
            .text
            .contains(MODEL_PLACEHOLDER)
    );
    let ids: Vec<_> = Tool::ALL.iter().map(|t| t.id()).collect();
    assert_eq!(
        ids,
        [
            "claude-code",
            "codex",
            "gemini-cli",
            "openai-sdk",
            "anthropic-sdk",
            "google-genai",
            "cursor",
            "continue",
            "cline",
            "aider"
        ]
    );
}

#[test]
fn same_origin_ignores_v1_slashes_and_localhost() {
    assert!(same_origin("http://localhost:8317/v1/", BASE));
    assert!(same_origin("http://127.0.0.1:8317", BASE));
    assert!(!same_origin("http://127.0.0.1:8318", BASE));
    assert!(!same_origin("https://api.openai.com/v1", BASE));
}

// -- a second apply, undo, links and permissions -------------------------------------------

/// The failure of issue 15: apply, the user edits, apply again (another adapter), undo. The
/// user's edit must survive: undo takes back only the second apply.
#[test]
fn undo_after_a_second_apply_keeps_what_changed_in_between() {
    let s = Scratch::new();
    s.claude_settings_made_then_given_a_model(serde_json::to_string_pretty);
    s.apply(Tool::ClaudeCode, OTHER_KEY, None);

    let undone = undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert_eq!(undone.remaining, 1);
    let left: Value = s.read_json(".claude/settings.json");
    assert_eq!(left["model"], "opus", "the user's edit survives");
    assert_eq!(
        left["env"]["ANTHROPIC_AUTH_TOKEN"], KEY,
        "back to the first set-up"
    );

    // Undo again: the first apply goes, the edit made after it stays.
    let undone = undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert_eq!(undone.remaining, 0);
    let left: Value = s.read_json(".claude/settings.json");
    assert_eq!(left, serde_json::json!({"model": "opus"}));
    assert!(matches!(
        undo(s.ws(), Tool::ClaudeCode),
        Err(ToolSetupError::NothingToUndo(_))
    ));
}

#[test]
fn undo_refuses_when_an_owned_key_was_changed_since_and_names_the_backup() {
    let s = Scratch::new();
    let backup = s.claude_code_applied_over_the_users_settings();
    // Someone (the user, the tool) points it elsewhere after FlexiProxy's write.
    let edited = s.edit(".claude/settings.json", BASE, "https://other-proxy.example");
    let err = undo(s.ws(), Tool::ClaudeCode).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, ToolSetupError::ChangedSince { keys, .. } if keys == &["env.ANTHROPIC_BASE_URL"]),
        "{message}"
    );
    assert!(message.contains(&backup.display().to_string()), "{message}");
    assert!(!message.contains(KEY), "{message}");
    assert_eq!(s.read(".claude/settings.json"), edited, "nothing touched");
    assert!(s.status(Tool::ClaudeCode).can_undo);

    // Put back by hand from the backup: undo then has nothing left to do and says it is done.
    std::fs::copy(&backup, s.file(".claude/settings.json")).unwrap();
    undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert_eq!(s.read(".claude/settings.json"), CLAUDE_SETTINGS);
    assert!(!s.status(Tool::ClaudeCode).can_undo);
}

#[test]
fn a_refused_file_stops_the_whole_undo() {
    let s = Scratch::new();
    s.write(".gemini/settings.json", GEMINI_SETTINGS);
    s.apply(Tool::GeminiCli, KEY, Some("m"));
    let env = s.read(".gemini/.env");
    // The key in .env is changed by someone else; settings.json is untouched.
    s.write(".gemini/.env", &env.replace(KEY, "AIza-someone-else"));
    let settings = s.read(".gemini/settings.json");
    let err = undo(s.ws(), Tool::GeminiCli).unwrap_err();
    assert!(matches!(err, ToolSetupError::ChangedSince { .. }), "{err}");
    assert!(!err.to_string().contains("AIza"), "{err}");
    assert_eq!(
        s.read(".gemini/settings.json"),
        settings,
        "no file is touched"
    );
}

#[cfg(unix)]
#[test]
fn files_with_the_key_are_private_and_undo_gives_the_mode_back() {
    let s = Scratch::new();
    s.write(".aider.conf.yml", AIDER_CONF);
    set_mode(&s.file(".aider.conf.yml"), 0o644);
    let changes = s.apply(Tool::Aider, KEY, None);
    assert!(changes[0].private);
    assert_eq!(mode(&s.file(".aider.conf.yml")), 0o600);
    undo(s.ws(), Tool::Aider).unwrap();
    assert_eq!(mode(&s.file(".aider.conf.yml")), 0o644);
    assert_eq!(s.read(".aider.conf.yml"), AIDER_CONF);

    // Set up by an older version with the file left readable: applying again narrows it.
    s.apply(Tool::Aider, KEY, None);
    set_mode(&s.file(".aider.conf.yml"), 0o644);
    let again = s.apply(Tool::Aider, KEY, None);
    assert!(again[0].changed.is_empty() && again[0].private);
    assert_eq!(mode(&s.file(".aider.conf.yml")), 0o600);

    // A file without the key keeps its permissions (Gemini CLI's settings.json).
    s.write(".gemini/settings.json", GEMINI_SETTINGS);
    set_mode(&s.file(".gemini/settings.json"), 0o644);
    let changes = s.apply(Tool::GeminiCli, KEY, None);
    assert!(changes[0].private && !changes[1].private);
    assert_eq!(mode(&s.file(".gemini/.env")), 0o600);
    assert_eq!(mode(&s.file(".gemini/settings.json")), 0o644);
}

#[cfg(unix)]
#[test]
fn a_dangling_link_is_refused_not_replaced() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.file(".claude")).unwrap();
    let missing = s.root.join("dotfiles/claude-settings.json");
    std::os::unix::fs::symlink(&missing, s.file(".claude/settings.json")).unwrap();
    let err = apply(s.ws(), Tool::ClaudeCode, &PLAIN, Some(1)).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ToolSetupError::DanglingLink { .. }),
        "{message}"
    );
    assert!(
        message.contains("dotfiles/claude-settings.json"),
        "{message}"
    );
    let link = std::fs::symlink_metadata(s.file(".claude/settings.json")).unwrap();
    assert!(link.file_type().is_symlink(), "the link is left as it was");
    assert!(!missing.exists());
    assert!(s.records().is_empty());
}

#[cfg(unix)]
#[test]
fn a_link_to_a_file_is_written_through_and_stays_a_link() {
    let s = Scratch::new();
    let real = s.root.join("dotfiles/claude-settings.json");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, CLAUDE_SETTINGS).unwrap();
    std::fs::create_dir_all(s.file(".claude")).unwrap();
    // Relative, as dotfile managers make them.
    std::os::unix::fs::symlink(
        "../../dotfiles/claude-settings.json",
        s.file(".claude/settings.json"),
    )
    .unwrap();
    s.apply(Tool::ClaudeCode, KEY, None);
    let link = std::fs::symlink_metadata(s.file(".claude/settings.json")).unwrap();
    assert!(link.file_type().is_symlink(), "still a link");
    assert!(
        std::fs::read_to_string(&real).unwrap().contains(KEY),
        "written through"
    );
    assert_eq!(mode(&real), 0o600);
    assert!(s.status(Tool::ClaudeCode).points_here);
    undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert!(
        std::fs::symlink_metadata(s.file(".claude/settings.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), CLAUDE_SETTINGS);
}

#[test]
fn records_from_before_digests_are_undone_key_by_key() {
    // A record as the previous version wrote it (one row rewritten by a second apply, no
    // digests): undo must not restore its first backup whole over the edits since.
    let s = Scratch::new();
    s.write(".claude/settings.json", CLAUDE_SETTINGS);
    s.apply(Tool::ClaudeCode, KEY, None);
    s.db.raw_for_tests(|c| {
        let previous: String = c.query_row("SELECT previous FROM tool_setups", [], |r| r.get(0))?;
        let mut previous: Value = serde_json::from_str(&previous).unwrap();
        for key in previous["keys"].as_array_mut().unwrap() {
            key.as_object_mut().unwrap().remove("written");
        }
        c.execute(
            "UPDATE tool_setups SET previous = ?1",
            [previous.to_string()],
        )
        .map(drop)
    })
    .unwrap();
    let edited = s.edit(".claude/settings.json", "\"opus\"", "\"haiku\"");
    // The old code's second apply updated the row's hash to the file as it now is.
    let now = sha256_hex(edited.as_bytes());
    s.db.raw_for_tests(|c| {
        c.execute("UPDATE tool_setups SET written_sha256 = ?1", [now])
            .map(drop)
    })
    .unwrap();
    undo(s.ws(), Tool::ClaudeCode).unwrap();
    assert_eq!(
        s.read(".claude/settings.json"),
        CLAUDE_SETTINGS.replace("\"opus\"", "\"haiku\"")
    );
}

/// A record whose `previous` cannot be read (hand-edited, cut short by a full disk) must not
/// pass for one with nothing to restore: undo refuses, names the backup, and leaves the file.
#[test]
fn an_unreadable_record_stops_undo_and_names_the_backup() {
    let s = Scratch::new();
    let backup = s.claude_code_applied_over_the_users_settings();
    s.db.raw_for_tests(|c| {
        c.execute("UPDATE tool_setups SET previous = '{\"keys\": [tru'", [])
            .map(drop)
    })
    .unwrap();
    let applied = s.read(".claude/settings.json");
    let err = undo(s.ws(), Tool::ClaudeCode).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ToolSetupError::UnreadableRecord { .. }),
        "{message}"
    );
    assert!(message.contains(&backup.display().to_string()), "{message}");
    assert_eq!(s.read(".claude/settings.json"), applied, "nothing touched");
    assert!(s.status(Tool::ClaudeCode).can_undo);
}

#[test]
fn points_elsewhere_hides_credentials_in_the_url() {
    let s = Scratch::new();
    s.write(
        ".aider.conf.yml",
        "openai-api-base: https://me:hunter2@proxy.example/v1?token=abc\n",
    );
    let shown = s.status(Tool::Aider).points_elsewhere.unwrap();
    assert_eq!(shown, "https://proxy.example/v1");
}
