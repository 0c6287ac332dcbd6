//! The dashboard window: a webview on the gateway's own page (`http://127.0.0.1:PORT/`), so the
//! UI is same-origin with the management API it calls and nothing is embedded twice.
//!
//! The page needs the management token for `/api`. It gets it from an initialization script
//! that defines `window.__FLEXIPROXY__ = { token }` only when the document's origin is the
//! gateway's; the window also refuses to navigate anywhere else, so no other site ever runs in a
//! window that knows the token. When the gateway could not start, the window shows a local page
//! with the error instead. Built by [`crate::desktop`], shown from the tray and by a second launch.

use flexiproxy_gateway::Secret;
use tauri::{AppHandle, Manager, Url, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

use crate::desktop::GatewayStatus;

/// The window's label, used to find it again.
pub const MAIN: &str = "main";

/// Builds the dashboard window (hidden with `visible == false`, e.g. for `--hidden`).
pub fn create(
    app: &AppHandle,
    status: &GatewayStatus,
    token: Option<&Secret>,
    visible: bool,
) -> tauri::Result<WebviewWindow> {
    let (url, script) = match status {
        GatewayStatus::Running { url, .. } => {
            let origin = url.origin().ascii_serialization();
            (url.clone(), Some(token_script(&origin, token)))
        }
        GatewayStatus::Failed(error) => (error_page(error)?, None),
    };
    let home = url.clone();
    let mut builder = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::External(url))
        .title("FlexiProxy")
        .inner_size(1100.0, 760.0)
        .min_inner_size(640.0, 420.0)
        .center()
        .visible(visible)
        .on_navigation(move |target| {
            let allowed = may_navigate(&home, target);
            if !allowed {
                tracing::info!(
                    url = %target,
                    "the dashboard window only shows FlexiProxy's own pages; navigation blocked"
                );
            }
            allowed
        });
    if let Some(script) = script {
        builder = builder.initialization_script(script);
    }
    builder.build()
}

/// Brings the dashboard to the front, whether hidden, minimised or behind other windows.
pub fn show(app: &AppHandle) {
    let Some(window) = app.get_webview_window(MAIN) else {
        tracing::warn!("the dashboard window does not exist");
        return;
    };
    for (what, result) in [
        ("unminimize", window.unminimize()),
        ("show", window.show()),
        ("focus", window.set_focus()),
    ] {
        if let Err(error) = result {
            tracing::warn!("cannot {what} the dashboard window: {error}");
        }
    }
}

/// JavaScript run before the page's own scripts, in the main frame only. `origin` and the token
/// are embedded as JSON string literals, so no value can break out of the script.
fn token_script(origin: &str, token: Option<&Secret>) -> String {
    let origin = serde_json::Value::from(origin);
    let token = token.map_or(serde_json::Value::Null, |t| t.expose().into());
    format!(
        "(function () {{\n\
         \x20 if (window.location.origin !== {origin}) {{ return; }}\n\
         \x20 Object.defineProperty(window, \"__FLEXIPROXY__\", {{\n\
         \x20   value: Object.freeze({{ token: {token} }}),\n\
         \x20   writable: false,\n\
         \x20   configurable: false,\n\
         \x20   enumerable: false\n\
         \x20 }});\n\
         }})();\n"
    )
}

/// Only the page the window was opened on may be shown: the gateway's origin, or the local
/// error page (a `data:` URL) when the gateway is not running.
fn may_navigate(home: &Url, target: &Url) -> bool {
    if home.scheme() == "data" {
        return target.scheme() == "data";
    }
    target.origin() == home.origin()
}

/// A self-contained page saying why the gateway is not running.
fn error_page(error: &str) -> tauri::Result<Url> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>FlexiProxy</title>\
         <style>body{{font:15px system-ui,sans-serif;margin:3em;color:#1f2937}}\
         h1{{font-size:1.4em}}pre{{white-space:pre-wrap;background:#f3f4f6;padding:1em;\
         border-radius:6px}}</style></head><body><h1>The FlexiProxy gateway is not running</h1>\
         <pre>{}</pre><p>Fix the cause above, then quit FlexiProxy from the tray and start it \
         again.</p></body></html>",
        escape_html(error)
    );
    Url::parse(&format!(
        "data:text/html;charset=utf-8,{}",
        percent_encode(&html)
    ))
    .map_err(tauri::Error::InvalidUrl)
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters, as a `data:` URL body needs.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn token_script_checks_the_origin_and_escapes_values() {
        let token = Secret::new("fpm-\"</script>");
        let script = token_script("http://127.0.0.1:8317", Some(&token));
        assert!(script.contains("window.location.origin !== \"http://127.0.0.1:8317\""));
        assert!(script.contains(r#"token: "fpm-\"</script>""#));
        assert!(script.contains("__FLEXIPROXY__"));
    }

    #[test]
    fn token_script_without_token_sets_null() {
        let script = token_script("http://127.0.0.1:1", None);
        assert!(script.contains("token: null"));
    }

    #[test]
    fn navigation_stays_on_the_gateway() {
        let home = Url::parse("http://127.0.0.1:8317/").unwrap();
        let ok = Url::parse("http://127.0.0.1:8317/#/providers").unwrap();
        assert!(may_navigate(&home, &ok));
        for other in [
            "http://127.0.0.1:9999/",
            "http://localhost:8317/",
            "https://example.com/",
            "data:text/html,hi",
        ] {
            assert!(!may_navigate(&home, &Url::parse(other).unwrap()), "{other}");
        }
    }

    #[test]
    fn error_page_is_a_data_url_with_the_message_escaped() {
        let url = error_page("port <8317> & more").unwrap();
        assert_eq!(url.scheme(), "data");
        assert!(
            url.as_str()
                .contains("%26lt%3B8317%26gt%3B%20%26amp%3B%20more")
        );
        let home = url.clone();
        assert!(may_navigate(&home, &url));
        assert!(!may_navigate(
            &home,
            &Url::parse("http://127.0.0.1:8317/").unwrap()
        ));
    }
}
