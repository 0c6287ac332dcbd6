//! The workspace's layering rules, checked on every test run so that they hold by construction
//! rather than by good intentions (docs/architecture.md draws the wings they protect):
//!
//! - the gateway never depends on Tauri or on the app;
//! - the protocol crate depends only on small pure crates, never on the gateway, HTTP, storage
//!   or an async runtime;
//! - nothing outside the gateway's `store/` touches SQLite or writes SQL;
//! - nothing in `routing/` or `accounts/` knows axum (the HTTP surface is `server/`);
//! - the desktop app never opens the database itself: it asks the gateway.
//!
//! The checks read manifests and the sources as text. Test code (`#[cfg(test)]` items, `tests`
//! modules and folders) is left out: a test may start a small axum server or look into SQLite.
//! Sources are `cargo fmt`-formatted (CI checks it), so an item's end is the first line that
//! closes it at its own indentation.
#![allow(
    clippy::panic,
    reason = "test helpers: a file that cannot be read fails the test, naming the file"
)]

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace's `src-tauri` folder.
fn src_tauri() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The dependency names of one table (`dependencies`, `dev-dependencies`, …) of a manifest.
fn dependencies(manifest: &Path, table: &str) -> Vec<String> {
    let parsed: toml::Table = read(manifest)
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut names: Vec<String> = parsed
        .get(table)
        .and_then(toml::Value::as_table)
        .map(|deps| deps.keys().cloned().collect())
        .unwrap_or_default();
    // Platform-specific tables: `[target.'cfg(unix)'.dependencies]`.
    if let Some(targets) = parsed.get("target").and_then(toml::Value::as_table) {
        for target in targets.values() {
            if let Some(deps) = target.get(table).and_then(toml::Value::as_table) {
                names.extend(deps.keys().cloned());
            }
        }
    }
    names
}

/// Every `.rs` file under `dir` that is not test code by its place (a `tests` folder, a
/// `tests.rs`, a test upstream).
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" && name != "test_upstream.rs" {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The lines of `text` that are not test code, with their 1-based numbers.
fn production_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        if lines[at].trim() != "#[cfg(test)]" {
            kept.push((at + 1, lines[at]));
            at += 1;
            continue;
        }
        // Skip the item's other attributes (one or several lines each).
        at += 1;
        while at < lines.len() && lines[at].trim_start().starts_with("#[") {
            while at < lines.len() && !lines[at].trim_end().ends_with(']') {
                at += 1;
            }
            at += 1;
        }
        let Some(item) = lines.get(at) else { break };
        let indent = item.len() - item.trim_start().len();
        at += 1;
        if item.trim_end().ends_with('{') {
            let close = format!("{}}}", " ".repeat(indent));
            while at < lines.len() && lines[at].trim_end() != close {
                at += 1;
            }
            at += 1;
        }
    }
    kept
}

/// Where a production line of a source under `dir` matches `forbidden`, as `file:line: text`.
fn offences(dir: &Path, forbidden: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in sources(dir) {
        let text = read(&file);
        for (number, line) in production_lines(&text) {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if forbidden(code) {
                found.push(format!("{}:{number}: {}", file.display(), line.trim()));
            }
        }
    }
    found
}

fn assert_none(rule: &str, found: &[String]) {
    assert!(
        found.is_empty(),
        "layering rule broken: {rule}\n{}",
        found.join("\n")
    );
}

#[test]
fn the_gateway_never_depends_on_tauri_or_the_app() {
    let manifest = src_tauri().join("gateway/Cargo.toml");
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let bad: Vec<String> = dependencies(&manifest, table)
            .into_iter()
            .filter(|name| name.starts_with("tauri") || name == "flexiproxy")
            .collect();
        assert_none(
            &format!("the gateway's [{table}] name Tauri or the app"),
            &bad,
        );
    }
    let found = offences(&src_tauri().join("gateway/src"), |code| {
        code.contains("tauri::") || code.contains("use tauri")
    });
    assert_none("the gateway's sources use Tauri", &found);
}

#[test]
fn the_protocol_crate_depends_on_small_pure_crates_only() {
    const PURE: &[&str] = &[
        "base64",
        "bytes",
        "memchr",
        "serde",
        "serde_json",
        "thiserror",
    ];
    const TEST_ONLY: &[&str] = &["proptest"];
    let manifest = src_tauri().join("protocol/Cargo.toml");
    let normal: Vec<String> = dependencies(&manifest, "dependencies")
        .into_iter()
        .filter(|name| !PURE.contains(&name.as_str()))
        .collect();
    assert_none(
        "the protocol crate depends on something other than small pure crates",
        &normal,
    );
    let dev: Vec<String> = dependencies(&manifest, "dev-dependencies")
        .into_iter()
        .filter(|name| !TEST_ONLY.contains(&name.as_str()) && !PURE.contains(&name.as_str()))
        .collect();
    assert_none(
        "the protocol crate's tests depend on more than proptest",
        &dev,
    );
    let found = offences(&src_tauri().join("protocol/src"), |code| {
        [
            "flexiproxy_gateway",
            "tokio",
            "hyper",
            "axum",
            "reqwest",
            "rusqlite",
            "keyring",
            "tauri",
        ]
        .iter()
        .any(|name| code.contains(&format!("{name}::")))
    });
    assert_none(
        "the protocol crate's sources reach beyond its layer",
        &found,
    );
}

/// Text that is SQL (a statement's first words) or the SQLite crate.
fn sql(code: &str) -> bool {
    const STATEMENTS: &[&str] = &[
        "SELECT ",
        "INSERT INTO",
        "INSERT OR",
        "DELETE FROM",
        "CREATE TABLE",
        "CREATE INDEX",
        "ALTER TABLE",
        "DROP TABLE",
        "PRAGMA ",
    ];
    code.contains("rusqlite") || STATEMENTS.iter().any(|s| code.contains(s))
}

#[test]
fn nothing_outside_the_store_runs_sql() {
    let src = src_tauri().join("gateway/src");
    let store = src.join("store");
    let found: Vec<String> = offences(&src, sql)
        .into_iter()
        .filter(|place| !Path::new(place.split(':').next().unwrap_or("")).starts_with(&store))
        .collect();
    assert_none("SQL outside gateway/src/store", &found);
}

/// Whether code uses the SQLite backend's type (`store::Database`) rather than the seam.
fn names_sqlite_backend(code: &str) -> bool {
    const USES: &[&str] = &[
        "Database::open",
        "store::Database",
        "&Database",
        "Arc<Database>",
        "<Database>",
    ];
    let imported = code.starts_with("use crate::store::{")
        && code.contains("Database")
        && code
            .split(['{', '}', ',', ' '])
            .any(|item| item.trim() == "Database");
    imported || USES.iter().any(|u| code.contains(u))
}

#[test]
fn only_start_up_picks_the_storage_backend() {
    let src = src_tauri().join("gateway/src");
    // Start-up opens the backend (`lifecycle`), and so does saving the listen address before
    // a gateway runs (`config::SavedListen::save_in`); everything else reads and writes
    // through the storage seam (`store::Storage` and its per-group traits), so a second
    // backend slots in without touching them.
    let allowed = [
        src.join("store"),
        src.join("lifecycle.rs"),
        src.join("config/mod.rs"),
    ];
    let found: Vec<String> = offences(&src, names_sqlite_backend)
        .into_iter()
        .filter(|place| {
            let file = Path::new(place.split(':').next().unwrap_or(""));
            !allowed.iter().any(|a| file.starts_with(a))
        })
        .collect();
    assert_none(
        "the SQLite backend named outside start-up (use the store::Storage seam)",
        &found,
    );
}

#[test]
fn routing_and_accounts_know_no_axum() {
    for wing in ["routing", "accounts"] {
        let found = offences(&src_tauri().join("gateway/src").join(wing), |code| {
            code.contains("axum")
        });
        assert_none(
            &format!("gateway/src/{wing} uses axum (the HTTP surface is server/)"),
            &found,
        );
    }
}

#[test]
fn the_app_never_opens_the_database_itself() {
    let manifest = src_tauri().join("app/Cargo.toml");
    let direct: Vec<String> = dependencies(&manifest, "dependencies")
        .into_iter()
        .filter(|name| name == "rusqlite")
        .collect();
    assert_none("the app depends on rusqlite", &direct);
    let found = offences(&src_tauri().join("app/src"), |code| {
        sql(code) || code.contains("Database::open") || code.contains("store::Database")
    });
    assert_none(
        "the app opens the database (ask the gateway instead)",
        &found,
    );
}

#[test]
fn test_code_is_told_apart_from_production_code() {
    let text = "use a;\n#[cfg(test)]\nmod tests {\n    use axum;\n}\nfn b() {}\n#[cfg(test)]\n#[allow(\n    x,\n)]\nmod more;\nfn c() {\n    #[cfg(test)]\n    fn t() {\n        axum();\n    }\n}\n";
    let kept: Vec<&str> = production_lines(text).into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        kept,
        ["use a;", "fn b() {}", "fn c() {", "}"],
        "test items are skipped, production lines kept"
    );
}
