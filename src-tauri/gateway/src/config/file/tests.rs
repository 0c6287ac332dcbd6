//! Tests of parsing, validation and loading, driven through [`super::parse`] and
//! [`super::load`] as callers use them; the watcher's own tests sit beside it in `watch`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a failed unwrap or panic is a failed test, with its location"
)]

use super::syntax::scrub;
use super::*;
use crate::store::secrets::valid_env_name;

fn toml(text: &str) -> Result<Declared, ConfigFileError> {
    parse(text, Format::Toml)
}

fn ok(text: &str) -> Declared {
    match toml(text) {
        Ok(declared) => declared,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

/// The error's message; asserts it is an error.
fn err(text: &str) -> String {
    match toml(text) {
        Ok(declared) => panic!("expected an error, got {declared:?}"),
        Err(e) => e.to_string(),
    }
}

/// The file is refused with an error that says `expected`.
fn refused_with(text: &str, expected: &str) {
    let e = err(text);
    assert!(e.contains(expected), "{e}");
}

const OPENAI: &str = "[[providers]]\nid = \"openai\"\nurl = \"https://api.openai.com/v1/\"\n";

#[test]
fn an_empty_file_declares_nothing() {
    assert_eq!(ok(""), Declared::default());
    assert_eq!(parse("{}", Format::Json).unwrap(), Declared::default());
}

#[test]
fn provider_defaults_and_url_without_trailing_slash() {
    let declared = ok(OPENAI);
    let provider = &declared.providers[0];
    assert_eq!(provider.id, "openai");
    assert_eq!(provider.url, "https://api.openai.com/v1");
    assert_eq!(provider.protocol, Protocol::OpenAiChat);
    assert_eq!(provider.discovery, "auto");
    assert!(provider.models.is_empty() && provider.credentials.is_empty());
    assert_eq!(declared.routing, None);
}

#[test]
fn provider_fields_are_read() {
    let declared = ok(r#"
            [[providers]]
            id = "claude"
            url = "http://127.0.0.1:9000"
            protocol = "anthropic_messages"
            discovery = "off"
            models = ["a", "b", "a"]
        "#);
    let provider = &declared.providers[0];
    assert_eq!(provider.protocol, Protocol::AnthropicMessages);
    assert_eq!(provider.discovery, "off");
    assert_eq!(provider.models, ["a", "b"]);
}

#[test]
fn unknown_fields_are_errors_with_line_and_column() {
    let e = err("[[providers]]\nid = \"x\"\nurl = \"http://h\"\nprotocl = \"gemini\"\n");
    assert!(e.contains("config (TOML):4:1:"), "{e}");
    assert!(e.contains("unknown field `protocl`"), "{e}");
    assert!(e.contains("`protocol`"), "expected fields listed: {e}");
    refused_with("[routing]\nmax_retrys = 2\n", "unknown field `max_retrys`");
    let e = err(&format!(
        "{OPENAI}[[providers.credentials]]\napi_key = \"sk-live-1\"\n"
    ));
    assert!(e.contains("unknown field `api_key`"), "{e}");
    assert!(!e.contains("sk-live-1"), "{e}");
    let json = r#"{"providers": [{"id": "x", "url": "http://h", "modles": []}]}"#;
    let e = parse(json, Format::Json).unwrap_err().to_string();
    assert!(e.starts_with("config (JSON):1:"), "{e}");
    assert!(e.contains("unknown field `modles`"), "{e}");
    refused_with("colour = 1\n", ":1:1: unknown field `colour`");
}

#[test]
fn syntax_errors_carry_the_position() {
    match toml("[[providers]]\nid = \"x\nurl = 1\n") {
        Err(ConfigFileError::Syntax { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    match parse(
        "{\n  \"providers\": [\n    {\"id\": 1}\n  ]\n}",
        Format::Json,
    ) {
        Err(e @ ConfigFileError::Syntax { line: 3, .. }) => {
            let text = e.to_string();
            assert!(text.starts_with("config (JSON):3:"), "{text}");
            assert!(!text.contains("at line"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_required_fields_are_named() {
    refused_with("[[providers]]\nid = \"x\"\n", "missing field `url`");
    refused_with("[[adapters]]\nname = \"a\"\n", "missing field `key`");
}

#[test]
fn provider_ids_are_checked() {
    for bad in ["", "open ai", "a/b", &"x".repeat(65)] {
        let e = err(&format!(
            "[[providers]]\nid = \"{bad}\"\nurl = \"http://h\"\n"
        ));
        assert!(e.contains("providers[0].id: "), "{e}");
        assert!(e.contains("1–64 characters"), "{e}");
    }
    ok(&format!(
        "[[providers]]\nid = \"{}\"\nurl = \"http://h\"\n",
        "A.b_c-9".repeat(9).chars().take(64).collect::<String>()
    ));
}

#[test]
fn urls_must_be_http_with_a_host() {
    for bad in [
        "ftp://h/v1",
        "api.openai.com/v1",
        "http://",
        "file:///tmp/x",
        "",
    ] {
        refused_with(
            &format!("[[providers]]\nid = \"x\"\nurl = \"{bad}\"\n"),
            "providers[0].url: must be an http(s) URL",
        );
    }
    let e = err("[[providers]]\nid = \"x\"\nurl = \"https://me:sk-secret-9@h/v1\"\n");
    assert!(e.contains("user name or password"), "{e}");
    assert!(!e.contains("sk-secret-9"), "{e}");
    assert_eq!(
        ok("[[providers]]\nid = \"x\"\nurl = \"http://127.0.0.1:11434//\"\n").providers[0].url,
        "http://127.0.0.1:11434"
    );
}

#[test]
fn protocol_and_discovery_are_checked() {
    refused_with(
        &format!("{OPENAI}protocol = \"openai\"\n"),
        "providers[0].protocol: unknown protocol `openai`",
    );
    refused_with(
        &format!("{OPENAI}discovery = \"on\"\n"),
        "providers[0].discovery: unknown discovery `on`",
    );
    assert_eq!(
        ok(&format!("{OPENAI}discovery = \"ocf\"\n")).providers[0].discovery,
        "ocf"
    );
    refused_with(
        &format!("{OPENAI}models = [\"\"]\n"),
        "providers[0].models[0]: is empty",
    );
}

#[test]
fn duplicate_provider_ids_are_errors() {
    refused_with(
        &format!("{OPENAI}{OPENAI}"),
        "providers[1].id: provider id `openai` is already used by providers[0]",
    );
}

#[test]
fn credentials_default_ids_labels_and_flags() {
    let declared = ok(&format!(
        "{OPENAI}[[providers.credentials]]\nkey = \"env:K_ONE\"\n\
             [[providers.credentials]]\nid = \"team\"\nlabel = \"Team key\"\nenabled = false\n\
             priority = 2\nmax_request_min = 60\nmax_request_day = 1000\nmax_token_min = 100000\n\
             [[providers.credentials]]\n"
    ));
    let creds = &declared.providers[0].credentials;
    assert_eq!(creds.len(), 3);
    assert_eq!(
        (creds[0].id.as_str(), creds[0].label.as_str()),
        ("k1", "k1")
    );
    assert_eq!(creds[0].key, Some(SecretRef::Env("K_ONE".into())));
    assert!(creds[0].enabled);
    assert_eq!(creds[0].priority, 0);
    assert!(creds[0].limits.is_unlimited());
    assert_eq!(
        (creds[1].id.as_str(), creds[1].label.as_str()),
        ("team", "Team key")
    );
    assert!(!creds[1].enabled);
    assert_eq!(creds[1].priority, 2);
    assert_eq!(
        creds[1].limits,
        Limits {
            max_request_min: Some(60),
            max_request_day: Some(1000),
            max_token_min: Some(100_000)
        }
    );
    assert_eq!(creds[2].id, "k3");
    assert_eq!(creds[2].key, None, "no key: a keyless endpoint");
    assert_eq!(declared.credential_count(), 3);
}

#[test]
fn credential_ids_are_unique_within_a_provider_only() {
    refused_with(
        &format!("{OPENAI}[[providers.credentials]]\n[[providers.credentials]]\nid = \"k1\"\n"),
        "providers[0].credentials[1].id: credential id `k1` is already used",
    );
    refused_with(
        &format!("{OPENAI}[[providers.credentials]]\nid = \"a/b\"\n"),
        "providers[0].credentials[0].id: ",
    );
    let two = format!(
        "{OPENAI}[[providers.credentials]]\n[[providers]]\nid = \"groq\"\nurl = \"https://g\"\n\
             [[providers.credentials]]\n"
    );
    let declared = ok(&two);
    assert_eq!(declared.providers[1].credentials[0].id, "k1");
}

#[test]
fn literal_keys_are_refused_without_being_echoed() {
    let secret = "sk-proj-AbC123xyz987";
    let text = format!(
        "{OPENAI}[[providers.credentials]]\n[[providers.credentials]]\n\
             [[providers.credentials]]\nkey = \"{secret}\"\n"
    );
    let error = toml(&text).unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.contains("providers[0].credentials[2].key: holds a literal key"),
        "{shown}"
    );
    assert!(shown.contains("env:NAME"), "{shown}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(!format!("{error:?}").contains(secret));

    let e = err(&format!("[[adapters]]\nname = \"a\"\nkey = \"{secret}\"\n"));
    assert!(e.contains("adapters[0].key: holds a literal key"), "{e}");
    assert!(!e.contains(secret), "{e}");
    assert!(!e.contains("leave `key` out"), "adapters need a key: {e}");
}

#[test]
fn env_references_must_name_a_variable() {
    for bad in ["env:", "env:1ABC", "env:A-B", "env:sk-live-777"] {
        let e = err(&format!(
            "{OPENAI}[[providers.credentials]]\nkey = \"{bad}\"\n"
        ));
        assert!(
            e.contains("providers[0].credentials[0].key: `env:` must be followed"),
            "{e}"
        );
        assert!(!e.contains("sk-live-777"), "{e}");
    }
    refused_with(
        &format!("{OPENAI}[[providers.credentials]]\nkey = \"store:provider:x\"\n"),
        "keychain entry",
    );
    refused_with(
        &format!("{OPENAI}[[providers.credentials]]\nkey = \"\"\n"),
        "is empty",
    );
}

#[test]
fn misplaced_key_values_are_scrubbed_from_parser_messages() {
    let secret = "sk-ant-api03-SeCrEt";
    let e = err(&format!(
        "{OPENAI}[[providers.credentials]]\npriority = \"{secret}\"\n"
    ));
    assert!(e.contains("invalid type: a string"), "{e}");
    assert!(!e.contains(secret), "{e}");
    let e = parse(&format!("{{\"providers\": \"{secret}\"}}"), Format::Json)
        .unwrap_err()
        .to_string();
    assert!(!e.contains(secret), "{e}");
    assert_eq!(
        scrub(r#"x string "a\"b" y string "c""#),
        "x a string y a string"
    );
}

#[test]
fn zero_limits_are_refused() {
    refused_with(
        &format!("{OPENAI}[[providers.credentials]]\nmax_token_min = 0\n"),
        "providers[0].credentials[0].max_token_min: is 0",
    );
}

#[test]
fn routing_settings_merge_onto_defaults() {
    let declared = ok("[routing]\nmax_wait_ms = 2000\ndefault_strategy = \"fill-first\"\n");
    let routing = declared.routing.unwrap();
    assert_eq!(routing.max_wait_ms, 2000);
    assert_eq!(routing.default_strategy, Strategy::FillFirst);
    assert_eq!(routing.max_retries, RoutingSettings::default().max_retries);
    assert_eq!(ok("[routing]\n").routing, Some(RoutingSettings::default()));
    refused_with(
        "[routing]\nusage_gap_percent = 101\n",
        "routing.usage_gap_percent",
    );
    refused_with(
        "[routing]\ndefault_strategy = \"random\"\n",
        "unknown variant `random`",
    );
}

#[test]
fn routing_mirror_knows_every_routing_setting() {
    // Fails when `RoutingSettings` gains a field that `RawRouting` does not accept.
    let all = serde_json::to_string(&RoutingSettings {
        max_retries: 7,
        max_wait_ms: 8,
        default_strategy: Strategy::LeastUsed,
        usage_gap_percent: 9,
        rate_limit_cooldown_ms: 10,
        failure_cooldown_ms: 11,
        auth_cooldown_ms: 12,
    })
    .unwrap();
    let declared = parse(&format!("{{\"routing\": {all}}}"), Format::Json).unwrap();
    assert_eq!(
        serde_json::to_string(&declared.routing.unwrap()).unwrap(),
        all
    );
}

const TWO_PROVIDERS: &str = "[[providers]]\nid = \"openai\"\nurl = \"https://o\"\n\
                                 [[providers]]\nid = \"openrouter\"\nurl = \"https://r\"\n";

#[test]
fn candidates_as_strings_split_at_the_first_slash() {
    let declared = ok(&format!(
        "{TWO_PROVIDERS}[[routes]]\nname = \"gpt-latest\"\nstrategy = \"fill-first\"\n\
             candidates = [\"openai/gpt-4o\", \"openrouter/openai/gpt-4o\"]\n"
    ));
    let route = &declared.routes[0];
    assert_eq!(route.name, "gpt-latest");
    assert_eq!(route.strategy, Some(Strategy::FillFirst));
    assert!(!route.auto);
    assert_eq!(
        route.candidates,
        [
            Candidate {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                priority: 0
            },
            Candidate {
                provider: "openrouter".into(),
                model: "openai/gpt-4o".into(),
                priority: 0
            },
        ]
    );
}

#[test]
fn candidates_as_tables() {
    let declared = ok(&format!(
        "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/gpt-4o\", \
             {{ provider = \"openrouter\", model = \"openai/gpt-4o\", priority = 1 }}, \
             {{ provider = \"openai\", model = \"o3\" }}]\n"
    ));
    let c = &declared.routes[0].candidates;
    assert_eq!((c[1].model.as_str(), c[1].priority), ("openai/gpt-4o", 1));
    assert_eq!(c[2].priority, 0);
    refused_with(
        &format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\n\
             candidates = [{{ provider = \"openai\", modle = \"x\" }}]\n"
        ),
        "unknown field `modle`",
    );
    refused_with(
        &format!("{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [3]\n"),
        "\"provider/model\" or a table",
    );
}

#[test]
fn auto_routes_take_list_position_as_priority() {
    let declared = ok(&format!(
        "{TWO_PROVIDERS}[[routes]]\nname = \"auto\"\nauto = true\ncandidates = \
             [\"openai/a\", \"openrouter/b\", {{ provider = \"openai\", model = \"c\", priority = 0 }}, \
             {{ provider = \"openai\", model = \"d\" }}]\n"
    ));
    let route = &declared.routes[0];
    assert!(route.auto);
    let priorities: Vec<u32> = route.candidates.iter().map(|c| c.priority).collect();
    assert_eq!(priorities, [0, 1, 0, 3]);
}

#[test]
fn route_rules() {
    for bad in ["\"openai\"", "\"/gpt\"", "\"openai/\""] {
        let e = err(&format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/x\", {bad}]\n"
        ));
        assert!(e.contains("routes[0].candidates[1]: "), "{e}");
        assert!(e.contains("\"provider/model\""), "{e}");
    }
    refused_with(
        &format!("{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = []\n"),
        "routes[0].candidates: is empty",
    );
    refused_with(
        &format!("{TWO_PROVIDERS}[[routes]]\nname = \"my route\"\ncandidates = [\"openai/x\"]\n"),
        "routes[0].name: ",
    );
    refused_with(
        &format!(
            "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/x\"]\n\
             [[routes]]\nname = \"r\"\ncandidates = [\"openai/y\"]\n"
        ),
        "routes[1].name: route `r` is already defined by routes[0]",
    );
}

#[test]
fn unknown_providers_in_routes_and_adapters_are_errors() {
    let e = err(&format!(
        "{TWO_PROVIDERS}[[routes]]\nname = \"r\"\ncandidates = [\"openai/x\", \"groq/llama\"]\n"
    ));
    assert!(
        e.contains("routes[0].candidates[1]: names provider `groq`"),
        "{e}"
    );
    assert!(e.contains("declared: openai, openrouter"), "{e}");
    let e = err("[[adapters]]\nname = \"a\"\nkey = \"env:A\"\nprovider = \"anthropic\"\n");
    assert!(
        e.contains("adapters[0].provider: names provider `anthropic`"),
        "{e}"
    );
    assert!(e.contains("declares no providers"), "{e}");
}

#[test]
fn adapters() {
    let declared = ok(&format!(
        "{TWO_PROVIDERS}[[adapters]]\nname = \"claude-code\"\nkey = \"env:FP_CLAUDE\"\n\
             provider = \"openai\"\nmodel = \"gpt-4o\"\nstrategy = \"least-used\"\n\
             [[adapters]]\nname = \"any\"\nkey = \"env:FP_ANY\"\n"
    ));
    assert_eq!(
        declared.adapters[0],
        DeclaredAdapter {
            name: "claude-code".into(),
            key: SecretRef::Env("FP_CLAUDE".into()),
            provider: Some("openai".into()),
            model: Some("gpt-4o".into()),
            strategy: Some(Strategy::LeastUsed),
        }
    );
    assert_eq!(declared.adapters[1].provider, None);
    assert_eq!(declared.adapters[1].model, None);
    refused_with(
        "[[adapters]]\nname = \"a\"\nkey = \"env:A\"\n[[adapters]]\nname = \"a\"\nkey = \"env:B\"\n",
        "adapters[1].name: adapter name `a` is already used by adapters[0]",
    );
    refused_with(
        "[[adapters]]\nname = \"a\"\nkey = \"env:A\"\n[[adapters]]\nname = \"b\"\nkey = \"env:A\"\n",
        "adapters[1].key: adapters[0] already uses this key",
    );
    refused_with(
        "[[adapters]]\nname = \"a\"\nkey = \"env:A\"\nmodel = \"\"\n",
        "adapters[0].model: is empty",
    );
}

#[test]
fn allowed_env_names_are_checked_and_kept_once() {
    let declared = ok(&format!(
        "allowed_env = [\"DEEPSEEK_KEY\", \"_X1\", \"DEEPSEEK_KEY\"]\n{OPENAI}"
    ));
    assert_eq!(declared.allowed_env, ["DEEPSEEK_KEY", "_X1"]);
    refused_with(
        "allowed_env = [\"OK\", \"env:DEEPSEEK_KEY\"]\n",
        "allowed_env[1]: `env:DEEPSEEK_KEY` is not an environment",
    );
    let e = err("allowed_env = [\"K=sk-live-123\"]\n");
    assert!(
        e.contains("allowed_env[0]") && !e.contains("sk-live-123"),
        "{e}"
    );
    refused_with(
        "allowed_env = [\"FLEXIPROXY_MANAGEMENT_TOKEN\"]\n",
        "management token",
    );
    let json = r#"{"allowed_env": ["A_KEY"]}"#;
    assert_eq!(parse(json, Format::Json).unwrap().allowed_env, ["A_KEY"]);
}

#[test]
fn missing_env_lists_unset_variables_once() {
    let set = std::env::vars()
        .find(|(name, value)| !value.is_empty() && valid_env_name(name))
        .map(|(name, _)| name)
        .unwrap();
    let unset = "FLEXIPROXY_TEST_SURELY_UNSET_4711";
    let declared = ok(&format!(
        "{OPENAI}[[providers.credentials]]\nkey = \"env:{unset}\"\n\
             [[providers.credentials]]\nkey = \"env:{set}\"\n[[providers.credentials]]\n\
             [[adapters]]\nname = \"a\"\nkey = \"env:{unset}\"\n"
    ));
    assert_eq!(missing_env(&declared), [unset]);
}

#[test]
fn format_follows_the_extension() {
    assert_eq!(Format::of(Path::new("/etc/fp/config.json")), Format::Json);
    assert_eq!(Format::of(Path::new("CONFIG.JSON")), Format::Json);
    assert_eq!(Format::of(Path::new("config.toml")), Format::Toml);
    assert_eq!(Format::of(Path::new("config")), Format::Toml);
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/config")
        .join(name)
}

#[test]
fn the_example_files_parse_and_agree() {
    let from_toml = load(&fixture("example.toml")).unwrap();
    let from_json = load(&fixture("example.json")).unwrap();
    assert_eq!(from_toml, from_json);
    assert!(from_toml.routing.is_some());
    assert!(from_toml.providers.len() >= 3, "{from_toml:?}");
    assert!(from_toml.credential_count() >= 3);
    assert!(from_toml.routes.iter().any(|r| r.auto));
    assert!(!from_toml.adapters.is_empty());
    assert_eq!(from_toml.allowed_env, ["DEEPSEEK_API_KEY"]);
}

#[test]
fn load_names_the_file_in_errors() {
    let dir = scratch("load");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[[providers]]\nid = \"x\"\nurl = \"ftp://h\"\n").unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "config file {}: providers[0].url:",
            path.display()
        )),
        "{e}"
    );
    std::fs::write(&path, "oops =\n").unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("config file {}:1:", path.display())),
        "{e}"
    );
    std::fs::write(&path, [0xff, 0xfe]).unwrap();
    assert!(matches!(load(&path), Err(ConfigFileError::NotUtf8 { .. })));
    let e = load(&dir.join("absent.toml")).unwrap_err();
    assert!(matches!(e, ConfigFileError::Read { .. }));
    assert!(e.to_string().contains("--config"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory under the system's temp dir, for tests that need files on disk.
pub(super) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flexiproxy-config-file-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
