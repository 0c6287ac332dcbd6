//! Start at login: `tauri-plugin-autostart` (on Linux an XDG autostart entry,
//! `~/.config/autostart/FlexiProxy.desktop`), switched from the tray's check item and from the web
//! UI through the gateway's desktop host hook (`GET/PUT /api/desktop`).
//!
//! Both ways end in [`set`], which changes the entry and then refreshes the tray's check item,
//! so the menu and the API always agree. A login start runs `flexiproxy --hidden`: the app comes
//! up in the tray without opening its window.
//!
//! On Linux the plugin writes `Exec=<path> <args>` unquoted, which breaks for a binary in a
//! folder with a space (an AppImage in "~/My Apps", say): after enabling, [`quote_exec_entry`]
//! rewrites the line with the path quoted as the XDG Desktop Entry spec says.

use flexiproxy_gateway::embedder::{Embedder, HostError};
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Manager, Wry};
use tauri_plugin_autostart::AutoLaunchManager;

/// What the login entry passes: start in the tray only.
pub const LAUNCH_ARGS: [&str; 1] = ["--hidden"];

/// The plugin, set to launch with [`LAUNCH_ARGS`].
pub fn plugin() -> TauriPlugin<Wry> {
    tauri_plugin_autostart::Builder::new()
        .args(LAUNCH_ARGS)
        .build()
}

/// Whether the app starts at login.
pub fn enabled(app: &AppHandle) -> Result<bool, HostError> {
    manager(app)?.is_enabled().map_err(|error| {
        HostError(format!(
            "cannot tell whether FlexiProxy starts at login: {error}"
        ))
    })
}

/// Turns starting at login on or off, then shows the result in the tray.
pub fn set(app: &AppHandle, enable: bool) -> Result<(), HostError> {
    let result = {
        let manager = manager(app)?;
        if enable {
            manager.enable()
        } else {
            manager.disable()
        }
    };
    let result = result.map_err(|error| change_failed(enable, &error.to_string()));
    #[cfg(target_os = "linux")]
    let result = result.and_then(|()| {
        if enable {
            quote_exec_entry(app).map_err(|error| change_failed(enable, &error))
        } else {
            Ok(())
        }
    });
    // The check item shows what is true now, whether or not the change worked.
    crate::tray::refresh_autostart(app);
    result.map_err(HostError)?;
    tracing::info!(enabled = enable, "start at login changed");
    Ok(())
}

/// The tray's "Start at login" item was clicked: flip what is true now (not what the item
/// shows, which the menu toggles on its own before telling us).
pub fn toggle(app: &AppHandle) {
    let outcome = enabled(app).and_then(|now| set(app, !now));
    if let Err(error) = outcome {
        tracing::warn!("{error}");
        crate::tray::refresh_autostart(app);
    }
}

fn manager(app: &AppHandle) -> Result<tauri::State<'_, AutoLaunchManager>, HostError> {
    app.try_state::<AutoLaunchManager>().ok_or_else(|| {
        HostError("start at login is not available: the autostart plugin did not load".into())
    })
}

fn change_failed(enable: bool, reason: &str) -> String {
    let what = if enable { "turn on" } else { "turn off" };
    format!(
        "cannot {what} start at login: {reason}; check that your autostart folder \
         (~/.config/autostart on Linux) is writable"
    )
}

/// Rewrites the `Exec=` line of the login entry the plugin just wrote, quoting the program's
/// path per the Desktop Entry spec (the plugin writes it as is).
#[cfg(target_os = "linux")]
fn quote_exec_entry(app: &AppHandle) -> Result<(), String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let entry = std::path::Path::new(&home)
        .join(".config")
        .join("autostart")
        .join(format!("{}.desktop", app.package_info().name));
    // What the plugin names: the AppImage when run from one, else this binary.
    let program = match std::env::var_os("APPIMAGE") {
        Some(appimage) => std::path::PathBuf::from(appimage),
        None => std::env::current_exe().map_err(|error| error.to_string())?,
    };
    let program = program
        .to_str()
        .ok_or("the program's path is not valid UTF-8")?
        .to_owned();
    let mut args = vec![program.as_str()];
    args.extend(LAUNCH_ARGS);
    let text = std::fs::read_to_string(&entry)
        .map_err(|error| format!("cannot read {}: {error}", entry.display()))?;
    std::fs::write(&entry, with_exec(&text, &exec_value(&args)))
        .map_err(|error| format!("cannot write {}: {error}", entry.display()))
}

/// `text` with its `Exec=` line replaced (or added) by `Exec=<exec>`.
// Used by the Linux rewrite only; built (and tested) everywhere.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn with_exec(text: &str, exec: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    for line in text.lines() {
        if line.starts_with("Exec=") {
            if !replaced {
                lines.push(format!("Exec={exec}"));
                replaced = true;
            }
        } else {
            lines.push(line.to_owned());
        }
    }
    if !replaced {
        lines.push(format!("Exec={exec}"));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The characters that make an `Exec` argument need quotes (Desktop Entry spec, "The Exec key").
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

/// An `Exec` value running `args`: each argument in double quotes when it has a reserved
/// character (with `"`, `` ` ``, `$` and `\` escaped inside), `%` doubled (field codes), and
/// then the string escape of every desktop-entry value applied (`\` written as `\\`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn exec_value(args: &[&str]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|arg| {
            let arg = arg.replace('%', "%%");
            if !arg.contains(RESERVED) {
                return arg;
            }
            let mut out = String::from('"');
            for c in arg.chars() {
                if matches!(c, '"' | '`' | '$' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        })
        .collect();
    quoted
        .join(" ")
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

/// The gateway's view of the desktop app (`Settings::host`), for `GET/PUT /api/desktop` and
/// `POST /api/desktop/open` (which [`crate::browser`] serves).
#[derive(Debug)]
pub struct DesktopHost {
    app: AppHandle,
}

impl DesktopHost {
    pub fn new(app: AppHandle) -> Self {
        Self { app }
    }
}

impl Embedder for DesktopHost {
    fn autostart(&self) -> Result<bool, HostError> {
        enabled(&self.app)
    }

    fn set_autostart(&self, enabled: bool) -> Result<(), HostError> {
        set(&self.app, enabled)
    }

    fn open_url(&self, url: &str) -> Result<(), HostError> {
        crate::browser::open(&self.app, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_start_stays_in_the_tray() {
        assert_eq!(LAUNCH_ARGS, ["--hidden"]);
    }

    #[test]
    fn plain_paths_stay_as_they_are() {
        assert_eq!(
            exec_value(&["/usr/bin/flexiproxy", "--hidden"]),
            "/usr/bin/flexiproxy --hidden"
        );
    }

    #[test]
    fn paths_with_spaces_and_specials_are_quoted_per_the_spec() {
        assert_eq!(
            exec_value(&["/home/ada/My Apps/flexiproxy", "--hidden"]),
            r#""/home/ada/My Apps/flexiproxy" --hidden"#
        );
        // `$` and `"` are escaped inside the quotes, then every backslash again for the
        // desktop-entry string (that escape is undone first when reading): a literal
        // backslash is four in the file, as the spec's example says.
        assert_eq!(
            exec_value(&[r#"/opt/a "b" $c\d"#]),
            r#""/opt/a \\"b\\" \\$c\\\\d""#
        );
        assert_eq!(exec_value(&["/opt/100%/app"]), "/opt/100%%/app");
    }

    #[test]
    fn only_the_exec_line_is_replaced() {
        let written = "[Desktop Entry]\nType=Application\nName=FlexiProxy\n\
                       Exec=/home/ada/My Apps/flexiproxy --hidden\nTerminal=false";
        let fixed = with_exec(written, r#""/home/ada/My Apps/flexiproxy" --hidden"#);
        assert_eq!(
            fixed,
            "[Desktop Entry]\nType=Application\nName=FlexiProxy\n\
             Exec=\"/home/ada/My Apps/flexiproxy\" --hidden\nTerminal=false\n"
        );
        assert!(with_exec("[Desktop Entry]\n", "x").ends_with("Exec=x\n"));
    }

    #[test]
    fn a_failed_change_says_what_to_check() {
        let message = change_failed(true, "permission denied");
        assert!(message.starts_with("cannot turn on start at login: permission denied"));
        assert!(message.contains("~/.config/autostart"));
        assert!(change_failed(false, "x").starts_with("cannot turn off"));
    }
}
