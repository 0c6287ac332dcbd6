//! The tray icon and its menu: the gateway's state and address, today's tokens, "N accounts need
//! login" (only while some do), start/stop, "Open dashboard", "Copy base URL", "Start at login",
//! "About FlexiProxy" (a native dialog with the version and where things live, see
//! [`crate::dialog`]) and "Quit".
//!
//! The icon shows the gateway's state (running, stopped, error); accounts that need a login do
//! not change it, since the gateway still serves everything else (the menu item and the tooltip
//! say so instead). Labels are plain functions of the [`Shell`] state, re-rendered by
//! [`refresh`] after every change of state, by [`refresh_usage`] when today's count moves, by
//! [`refresh_accounts`] when the accounts change, and by [`refresh_autostart`] when start at
//! login changes from either side (this menu or `PUT /api/desktop`). Actions call into
//! [`crate::desktop`] (start, stop, quit), [`crate::window`] and [`crate::autostart`]. On Linux
//! the icon is an AppIndicator (libayatana-appindicator3, loaded at run time), which always opens
//! the menu on click and shows no tooltip; on Windows and macOS a left click opens the dashboard
//! and a right click the menu.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};
use tauri_plugin_clipboard_manager::ClipboardExt;

use crate::desktop::{GatewayStatus, Shell};
use crate::today::Counts;
use crate::{autostart, window};

const TRAY_ID: &str = "main";
const STATUS: &str = "status";
const TODAY: &str = "today";
const ACCOUNTS: &str = "accounts-need-login";
const OPEN_DASHBOARD: &str = "open-dashboard";
const COPY_BASE_URL: &str = "copy-base-url";
const START_STOP: &str = "start-stop";
const AUTOSTART: &str = "autostart";
const ABOUT: &str = "about";
const QUIT: &str = "quit";

/// Longest status line before it is cut: menus do not wrap, and errors can be long.
const MAX_STATUS_CHARS: usize = 90;
/// Where the accounts item sits in the menu while it is shown: under the state and the count.
const ACCOUNTS_POSITION: usize = 2;

// Drawn for the 16–24 px a tray gives them (thicker strokes than the app icon); see
// `icons/generate.py`.
const ICON_RUNNING: Image<'static> = tauri::include_image!("../../icons/tray.png");
const ICON_STOPPED: Image<'static> = tauri::include_image!("../../icons/tray-stopped.png");
const ICON_ERROR: Image<'static> = tauri::include_image!("../../icons/tray-error.png");

/// Which of the three icons a state shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Running,
    Stopped,
    Error,
}

fn look(status: &GatewayStatus) -> Look {
    match status {
        GatewayStatus::Running { .. } => Look::Running,
        GatewayStatus::Failed(_) => Look::Error,
        GatewayStatus::Starting | GatewayStatus::Stopping | GatewayStatus::Stopped { .. } => {
            Look::Stopped
        }
    }
}

fn icon(look: Look) -> Image<'static> {
    match look {
        Look::Running => ICON_RUNNING,
        Look::Stopped => ICON_STOPPED,
        Look::Error => ICON_ERROR,
    }
}

/// The disabled first line of the menu: the state and the address.
fn status_line(status: &GatewayStatus) -> String {
    let line = match status {
        GatewayStatus::Running { addr, .. } => format!("Gateway running on {addr}"),
        GatewayStatus::Starting => "Gateway starting…".to_owned(),
        GatewayStatus::Stopping => "Gateway stopping…".to_owned(),
        GatewayStatus::Stopped { addr: Some(addr) } => format!("Gateway stopped (was on {addr})"),
        GatewayStatus::Stopped { addr: None } => "Gateway stopped".to_owned(),
        GatewayStatus::Failed(error) => format!("Gateway not running: {error}"),
    };
    cut(line, MAX_STATUS_CHARS)
}

fn cut(line: String, max: usize) -> String {
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// "Today: 1,234 tokens (in 1,000 · out 234 · cached 50)".
fn today_line(counts: &Counts) -> String {
    format!(
        "Today: {} tokens (in {} · out {} · cached {})",
        grouped(counts.tokens()),
        grouped(counts.input),
        grouped(counts.output),
        grouped(counts.cached)
    )
}

/// Digits in groups of three, so big counts read at a glance.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The accounts item's label, or `None` when no account needs a login (the item is then left
/// out of the menu). One account is named, so the user knows which login to redo.
fn accounts_line(needs_login: &[String]) -> Option<String> {
    let line = match needs_login {
        [] => return None,
        [label] => format!("1 account needs login: {label}"),
        many => format!("{} accounts need login", many.len()),
    };
    Some(cut(line, MAX_STATUS_CHARS))
}

/// The start/stop item's label and whether it can be clicked (not while a change is under way).
fn start_stop(status: &GatewayStatus) -> (&'static str, bool) {
    match status {
        GatewayStatus::Running { .. } => ("Stop gateway", true),
        GatewayStatus::Stopped { .. } | GatewayStatus::Failed(_) => ("Start gateway", true),
        GatewayStatus::Starting => ("Starting…", false),
        GatewayStatus::Stopping => ("Stopping…", false),
    }
}

fn tooltip(status: &GatewayStatus, counts: &Counts, needs_login: usize) -> String {
    let state = match status {
        GatewayStatus::Running { addr, .. } => format!("running on {addr}"),
        GatewayStatus::Starting => "starting".to_owned(),
        GatewayStatus::Stopping => "stopping".to_owned(),
        GatewayStatus::Stopped { .. } => "stopped".to_owned(),
        GatewayStatus::Failed(_) => "not running (error)".to_owned(),
    };
    let accounts = match needs_login {
        0 => String::new(),
        1 => "\n1 account needs login".to_owned(),
        n => format!("\n{n} accounts need login"),
    };
    format!(
        "FlexiProxy — {state}\nToday: {} tokens{accounts}",
        grouped(counts.tokens())
    )
}

/// The menu items whose text or state changes, kept to update them in place.
struct Items {
    menu: Menu<tauri::Wry>,
    status: MenuItem<tauri::Wry>,
    today: MenuItem<tauri::Wry>,
    /// In the menu only while some account needs a login.
    accounts: MenuItem<tauri::Wry>,
    copy: MenuItem<tauri::Wry>,
    start_stop: MenuItem<tauri::Wry>,
    autostart: CheckMenuItem<tauri::Wry>,
}

impl std::fmt::Debug for Items {
    // Tauri's menu items do not implement Debug; their ids say which they are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Items")
            .field("status", self.status.id())
            .field("today", self.today.id())
            .field("accounts", self.accounts.id())
            .field("copy", self.copy.id())
            .field("start_stop", self.start_stop.id())
            .field("autostart", self.autostart.id())
            .finish()
    }
}

pub fn create(app: &AppHandle) -> tauri::Result<TrayIcon> {
    let (status, counts) = current(app);
    let needs_login = needs_login(app);
    let (toggle_label, toggle_enabled) = start_stop(&status);
    let autostart_on = autostart::enabled(app).unwrap_or(false);
    let status_item = MenuItem::with_id(app, STATUS, status_line(&status), false, None::<&str>)?;
    let today_item = MenuItem::with_id(app, TODAY, today_line(&counts), false, None::<&str>)?;
    let accounts_item = MenuItem::with_id(
        app,
        ACCOUNTS,
        accounts_line(&needs_login).unwrap_or_default(),
        true,
        None::<&str>,
    )?;
    let copy_item = MenuItem::with_id(
        app,
        COPY_BASE_URL,
        "Copy base URL",
        status.base_url().is_some(),
        None::<&str>,
    )?;
    let start_stop_item =
        MenuItem::with_id(app, START_STOP, toggle_label, toggle_enabled, None::<&str>)?;
    let autostart_item = CheckMenuItem::with_id(
        app,
        AUTOSTART,
        "Start at login",
        true,
        autostart_on,
        None::<&str>,
    )?;
    let menu = Menu::with_items(
        app,
        &[
            &status_item,
            &today_item,
            &PredefinedMenuItem::separator(app)?,
            // Enabled in every state: the window then says what is going on.
            &MenuItem::with_id(app, OPEN_DASHBOARD, "Open dashboard", true, None::<&str>)?,
            &copy_item,
            &start_stop_item,
            &PredefinedMenuItem::separator(app)?,
            &autostart_item,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, ABOUT, "About FlexiProxy", true, None::<&str>)?,
            &MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?,
        ],
    )?;
    if !needs_login.is_empty() {
        menu.insert(&accounts_item, ACCOUNTS_POSITION)?;
    }
    app.manage(Items {
        menu: menu.clone(),
        status: status_item,
        today: today_item,
        accounts: accounts_item,
        copy: copy_item,
        start_stop: start_stop_item,
        autostart: autostart_item,
    });
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(look(&status)))
        .tooltip(tooltip(&status, &counts, needs_login.len()))
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                window::show(tray.app_handle());
            }
        })
        .build(app)
}

/// Shows the current state everywhere in the tray: icon, tooltip, every changing item.
pub fn refresh(app: &AppHandle) {
    let (status, _) = current(app);
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        warn_on(
            "set the tray icon",
            tray.set_icon(Some(icon(look(&status)))),
        );
    }
    refresh_usage(app);
    refresh_accounts(app);
    let Some(items) = app.try_state::<Items>() else {
        return;
    };
    let (toggle_label, toggle_enabled) = start_stop(&status);
    warn_on(
        "update the menu",
        items.status.set_text(status_line(&status)),
    );
    warn_on(
        "update the menu",
        items.copy.set_enabled(status.base_url().is_some()),
    );
    warn_on("update the menu", items.start_stop.set_text(toggle_label));
    warn_on(
        "update the menu",
        items.start_stop.set_enabled(toggle_enabled),
    );
    refresh_autostart(app);
}

/// Shows today's count (the item and the tooltip), after usage moved it.
pub fn refresh_usage(app: &AppHandle) {
    let (_, counts) = current(app);
    if let Some(items) = app.try_state::<Items>() {
        warn_on("update the menu", items.today.set_text(today_line(&counts)));
    }
    refresh_tooltip(app);
}

/// Shows which accounts need a login (the item, in the menu only while some do, and the
/// tooltip), after the gateway's accounts changed.
pub fn refresh_accounts(app: &AppHandle) {
    let needs_login = needs_login(app);
    if let Some(items) = app.try_state::<Items>() {
        let shown = items.menu.get(ACCOUNTS).is_some();
        match accounts_line(&needs_login) {
            Some(line) => {
                warn_on("update the menu", items.accounts.set_text(line));
                if !shown {
                    warn_on(
                        "update the menu",
                        items.menu.insert(&items.accounts, ACCOUNTS_POSITION),
                    );
                }
            }
            None if shown => warn_on("update the menu", items.menu.remove(&items.accounts)),
            None => {}
        }
    }
    refresh_tooltip(app);
}

fn refresh_tooltip(app: &AppHandle) {
    let (status, counts) = current(app);
    let needs_login = needs_login(app).len();
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        warn_on(
            "set the tray tooltip",
            tray.set_tooltip(Some(tooltip(&status, &counts, needs_login))),
        );
    }
}

/// Sets the "Start at login" check to what is true now.
pub fn refresh_autostart(app: &AppHandle) {
    let Some(items) = app.try_state::<Items>() else {
        return;
    };
    match autostart::enabled(app) {
        Ok(enabled) => warn_on("update the menu", items.autostart.set_checked(enabled)),
        Err(error) => tracing::warn!("{error}"),
    }
}

fn current(app: &AppHandle) -> (GatewayStatus, Counts) {
    app.try_state::<Shell>().map_or(
        (GatewayStatus::Stopped { addr: None }, Counts::default()),
        |shell| (shell.status(), shell.today()),
    )
}

fn needs_login(app: &AppHandle) -> Vec<String> {
    app.try_state::<Shell>()
        .map_or_else(Vec::new, |shell| shell.needs_login())
}

fn warn_on(what: &str, result: tauri::Result<()>) {
    if let Err(error) = result {
        tracing::warn!("cannot {what}: {error}");
    }
}

fn on_menu(app: &AppHandle, id: &str) {
    match id {
        OPEN_DASHBOARD => window::show(app),
        ACCOUNTS => window::show_page(app, "accounts"),
        COPY_BASE_URL => copy_base_url(app),
        START_STOP => {
            if matches!(current(app).0, GatewayStatus::Running { .. }) {
                crate::desktop::stop(app);
            } else {
                crate::desktop::start(app);
            }
        }
        AUTOSTART => autostart::toggle(app),
        ABOUT => {
            if let Some(shell) = app.try_state::<Shell>() {
                crate::dialog::about(app, &shell.about_facts());
            }
        }
        QUIT => crate::desktop::quit(app, 0),
        _ => {}
    }
}

fn copy_base_url(app: &AppHandle) {
    let Some(base_url) = current(app).0.base_url() else {
        return;
    };
    match app.clipboard().write_text(base_url.as_str()) {
        Ok(()) => tracing::info!(%base_url, "base URL copied to the clipboard"),
        Err(error) => tracing::warn!("cannot copy the base URL to the clipboard: {error}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tauri::Url;

    use super::*;

    fn running() -> GatewayStatus {
        GatewayStatus::Running {
            addr: "127.0.0.1:8317".parse().unwrap(),
            url: Url::parse("http://127.0.0.1:8317").unwrap(),
        }
    }

    #[test]
    fn status_line_names_the_state_and_the_address() {
        assert_eq!(status_line(&running()), "Gateway running on 127.0.0.1:8317");
        let stopped = GatewayStatus::Stopped {
            addr: Some("127.0.0.1:8317".parse().unwrap()),
        };
        assert_eq!(
            status_line(&stopped),
            "Gateway stopped (was on 127.0.0.1:8317)"
        );
        assert_eq!(
            status_line(&GatewayStatus::Stopped { addr: None }),
            "Gateway stopped"
        );
        assert_eq!(status_line(&GatewayStatus::Starting), "Gateway starting…");
    }

    #[test]
    fn long_errors_are_cut() {
        let status = GatewayStatus::Failed("port 8317 is busy ".repeat(20));
        let line = status_line(&status);
        assert_eq!(line.chars().count(), MAX_STATUS_CHARS);
        assert!(line.starts_with("Gateway not running: port 8317"));
        assert!(line.ends_with('…'));
    }

    #[test]
    fn today_line_shows_the_split() {
        let counts = Counts {
            requests: 3,
            input: 1_234_567,
            output: 89,
            cached: 1_000,
        };
        assert_eq!(
            today_line(&counts),
            "Today: 1,234,656 tokens (in 1,234,567 · out 89 · cached 1,000)"
        );
        assert_eq!(
            today_line(&Counts::default()),
            "Today: 0 tokens (in 0 · out 0 · cached 0)"
        );
    }

    #[test]
    fn digits_are_grouped_by_three() {
        for (value, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (12_345, "12,345"),
            (100_000, "100,000"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(grouped(value), text);
        }
    }

    #[test]
    fn one_item_starts_and_stops_and_waits_while_busy() {
        assert_eq!(start_stop(&running()), ("Stop gateway", true));
        assert_eq!(
            start_stop(&GatewayStatus::Stopped { addr: None }),
            ("Start gateway", true)
        );
        assert_eq!(
            start_stop(&GatewayStatus::Failed("busy".into())),
            ("Start gateway", true)
        );
        assert!(!start_stop(&GatewayStatus::Starting).1);
        assert!(!start_stop(&GatewayStatus::Stopping).1);
    }

    #[test]
    fn the_icon_follows_the_state() {
        assert_eq!(look(&running()), Look::Running);
        assert_eq!(look(&GatewayStatus::Stopped { addr: None }), Look::Stopped);
        assert_eq!(look(&GatewayStatus::Failed("x".into())), Look::Error);
    }

    #[test]
    fn tooltip_has_state_address_and_tokens() {
        let counts = Counts {
            input: 1_000,
            output: 500,
            ..Counts::default()
        };
        assert_eq!(
            tooltip(&running(), &counts, 0),
            "FlexiProxy — running on 127.0.0.1:8317\nToday: 1,500 tokens"
        );
        assert!(tooltip(&GatewayStatus::Failed("x".into()), &counts, 0).contains("error"));
        assert!(tooltip(&running(), &counts, 1).ends_with("\n1 account needs login"));
        assert!(tooltip(&running(), &counts, 3).ends_with("\n3 accounts need login"));
    }

    #[test]
    fn the_accounts_item_names_one_account_and_counts_many() {
        assert_eq!(accounts_line(&[]), None);
        assert_eq!(
            accounts_line(&["Claude (ada@example.com)".to_owned()]).unwrap(),
            "1 account needs login: Claude (ada@example.com)"
        );
        let many = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(accounts_line(&many).unwrap(), "2 accounts need login");
        let long = accounts_line(&["x".repeat(200)]).unwrap();
        assert_eq!(long.chars().count(), MAX_STATUS_CHARS);
    }
}
