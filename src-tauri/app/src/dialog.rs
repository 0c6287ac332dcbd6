//! The native dialogs the tray app shows when the user has to know or decide something: the
//! keychain cannot be used, the port is taken by another program (with the offer of a free
//! one), and the about box.
//!
//! Shown with `tauri-plugin-dialog` (GTK message dialogs on Linux), never blocking the main
//! thread: answers come back in a callback. The texts are plain functions, tested here; the
//! decisions they lead to (start on another port, save it) are [`crate::desktop`]'s.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use flexiproxy_gateway::lifecycle::KeychainProblem;
use tauri::AppHandle;
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};

/// The version everything shows (`flexiproxy --version`, the about box, `/api/status`, the
/// bundles): `[workspace.package] version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Title of the dialog about a keychain that cannot be used.
pub const KEYCHAIN_TITLE: &str = "FlexiProxy: keychain problem";
/// Title of the dialog that offers another port.
pub const PORT_TITLE: &str = "FlexiProxy: port in use";

/// One about box at a time, however often the menu item is clicked.
static ABOUT_OPEN: AtomicBool = AtomicBool::new(false);

/// Tells the user, once, that the keychain cannot be used, what to do about it, and what
/// FlexiProxy does meanwhile (`gateway_runs`: it serves with environment-only secrets;
/// otherwise it could not start at all).
pub fn keychain(app: &AppHandle, problem: KeychainProblem, detail: &str, gateway_runs: bool) {
    tracing::warn!(
        problem = ?problem,
        "showing the keychain dialog: {}",
        detail
    );
    app.dialog()
        .message(keychain_text(problem, detail, gateway_runs))
        .title(KEYCHAIN_TITLE)
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::Ok)
        .show(|_| tracing::info!("the keychain dialog was closed"));
}

fn keychain_text(problem: KeychainProblem, detail: &str, gateway_runs: bool) -> String {
    let (what, fix) = match problem {
        KeychainProblem::Unavailable => (
            "FlexiProxy found no keychain to keep its management token and provider keys in \
             (on Linux: no Secret Service on the session bus).",
            "Install and start gnome-keyring (Debian/Ubuntu package gnome-keyring), or turn on \
             the Secret Service integration in KeePassXC.",
        ),
        KeychainProblem::Locked => (
            "Your login keyring is locked, so FlexiProxy cannot read or store its management \
             token and provider keys.",
            "Unlock it: log out and in again, or open Passwords and Keys (Seahorse) and unlock \
             the \"Login\" keyring.",
        ),
        KeychainProblem::Failed => (
            "The keychain answered with an error, so FlexiProxy cannot use it for its \
             management token and provider keys.",
            "Check that your keyring (gnome-keyring or KeePassXC) works.",
        ),
    };
    let (retry, meanwhile) = if gateway_runs {
        (
            "Then quit FlexiProxy from its tray menu and start it again.",
            "Meanwhile FlexiProxy runs without a keychain: provider keys can only be given as \
             env:NAME references, and the dashboard can only sign in when \
             FLEXIPROXY_MANAGEMENT_TOKEN is set. To run like this on purpose, start it with \
             --secrets env.",
        )
    } else {
        (
            "Then choose Start gateway in the FlexiProxy tray menu.",
            "Meanwhile the gateway is not running.",
        )
    };
    format!("{what}\n\nWhat to do: {fix} {retry}\n\n{meanwhile}\n\nDetails: {detail}")
}

/// How the offered port would be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortScope {
    /// Saved as the listen port for every later start.
    Saved,
    /// For this run only: the taken port came from `--port`/`FLEXIPROXY_PORT`, which the next
    /// start uses again.
    ThisRun,
}

/// Offers `free` instead of the taken `busy` port; `answer(true)` when the user accepts.
pub fn offer_port(
    app: &AppHandle,
    busy: u16,
    free: u16,
    scope: PortScope,
    answer: impl FnOnce(bool) + Send + 'static,
) {
    app.dialog()
        .message(port_text(busy, free, scope))
        .title(PORT_TITLE)
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom(
            format!("Use port {free}"),
            "Cancel".to_owned(),
        ))
        .show(answer);
}

fn port_text(busy: u16, free: u16, scope: PortScope) -> String {
    let keep = match scope {
        PortScope::Saved => format!(
            "FlexiProxy then listens on port {free} from now on (saved in Settings → Address)."
        ),
        PortScope::ThisRun => format!(
            "Port {busy} came from --port or FLEXIPROXY_PORT, so port {free} is used for this \
             run only; the next start asks for port {busy} again."
        ),
    };
    format!(
        "Port {busy} is used by another program, so FlexiProxy cannot listen there.\n\n\
         Use port {free} instead? {keep} Tools set up with the old address need the new one.\n\n\
         Cancel leaves the gateway stopped: free the port, then choose Start gateway in the \
         tray menu."
    )
}

/// What the about box says besides the version.
#[derive(Debug, Clone, Default)]
pub struct AboutFacts {
    pub data_dir: Option<String>,
    /// The secret store in use, e.g. "OS keychain"; `None` when the gateway is not running.
    pub secrets: Option<String>,
    pub config_file: Option<String>,
    pub base_url: Option<String>,
}

/// The about box's title: it carries the version, so it can be read without opening it.
pub fn about_title() -> String {
    format!("About FlexiProxy {VERSION}")
}

/// Shows the about box (once: a click while it is open does nothing).
pub fn about(app: &AppHandle, facts: &AboutFacts) {
    if ABOUT_OPEN.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::info!("showing the about box: FlexiProxy {VERSION}");
    app.dialog()
        .message(about_text(facts))
        .title(about_title())
        .kind(MessageDialogKind::Info)
        .buttons(MessageDialogButtons::Ok)
        .show(|_| ABOUT_OPEN.store(false, Ordering::SeqCst));
}

fn about_text(facts: &AboutFacts) -> String {
    let mut text = format!(
        "FlexiProxy {VERSION}\n\nOne local address for every LLM provider, in each tool's \
         own protocol (OpenAI, Anthropic, Gemini).\n"
    );
    if let Some(url) = &facts.base_url {
        text.push_str(&format!("\nBase URL for tools: {url}"));
    }
    if let Some(dir) = &facts.data_dir {
        let db = Path::new(dir).join(flexiproxy_gateway::store::DB_FILE);
        text.push_str(&format!(
            "\nData folder: {dir}\nDatabase (providers, adapters, settings, usage): {}",
            db.display()
        ));
    }
    let secrets = facts
        .secrets
        .as_deref()
        .unwrap_or("unknown while the gateway is stopped");
    text.push_str(&format!(
        "\nProvider keys and the management token: {secrets}"
    ));
    if let Some(config) = &facts.config_file {
        text.push_str(&format!("\nConfig file: {config}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keychain_dialog_says_what_is_wrong_what_to_do_and_what_happens_meanwhile() {
        let missing = keychain_text(KeychainProblem::Unavailable, "no dbus", true);
        assert!(missing.contains("no Secret Service"));
        assert!(missing.contains("gnome-keyring"));
        assert!(missing.contains("KeePassXC"));
        assert!(missing.contains("env:NAME"));
        assert!(missing.ends_with("Details: no dbus"));
        let locked = keychain_text(KeychainProblem::Locked, "locked", false);
        assert!(locked.contains("is locked"));
        assert!(locked.contains("Passwords and Keys"));
        assert!(locked.contains("the gateway is not running"));
        assert!(locked.contains("Start gateway"));
        assert!(!locked.contains("env:NAME"));
    }

    #[test]
    fn the_port_offer_names_both_ports_and_how_long_it_holds() {
        let saved = port_text(8317, 8318, PortScope::Saved);
        assert!(saved.starts_with("Port 8317 is used by another program"));
        assert!(saved.contains("Use port 8318 instead?"));
        assert!(saved.contains("from now on"));
        let once = port_text(8317, 8318, PortScope::ThisRun);
        assert!(once.contains("this run only"));
        assert!(once.contains("--port"));
    }

    #[test]
    fn the_about_box_has_the_version_and_where_things_live() {
        assert_eq!(about_title(), format!("About FlexiProxy {VERSION}"));
        let text = about_text(&AboutFacts {
            data_dir: Some("/home/ada/.local/share/flexiproxy".into()),
            secrets: Some("OS keychain".into()),
            config_file: None,
            base_url: Some("http://127.0.0.1:8317".into()),
        });
        assert!(text.starts_with(&format!("FlexiProxy {VERSION}\n")));
        assert!(text.contains("Data folder: /home/ada/.local/share/flexiproxy"));
        assert!(text.contains("/home/ada/.local/share/flexiproxy/flexiproxy.db"));
        assert!(text.contains("management token: OS keychain"));
        assert!(text.contains("Base URL for tools: http://127.0.0.1:8317"));
        assert!(!text.contains("Config file"));
    }
}
