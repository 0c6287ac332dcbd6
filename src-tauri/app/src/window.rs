//! The dashboard window: a webview on the gateway's own page (`http://127.0.0.1:PORT/`), so the
//! UI is same-origin with the management API it calls and nothing is embedded twice.
//!
//! The page needs the management token for `/api`. It gets it from an initialization script
//! that defines `window.__FLEXIPROXY__ = { token }` only when the document's origin is the
//! gateway's; the window also refuses to navigate anywhere but the page it was sent to (its
//! "home"), so no other site ever runs in a window that knows the token. While the gateway is
//! stopped or could not start, the window shows a local page saying so and how to start it,
//! served by the app itself under the `flexiproxy:` scheme ([`local_page`]); not a `data:` URL,
//! which WebKit would make inherit the dashboard's Content-Security-Policy (no inline styles)
//! when the window goes there from the dashboard. Built by [`crate::desktop`], sent to the page
//! of each new state by [`follow`], shown from the tray and by a second launch.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flexiproxy_gateway::Secret;
use tauri::http::{HeaderValue, Response, header};
use tauri::{AppHandle, Manager, Url, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

use crate::desktop::{GatewayStatus, Shell};

/// The window's label, used to find it again.
pub const MAIN: &str = "main";

/// The URL scheme of the app's own local pages.
pub const SCHEME: &str = "flexiproxy";

/// What the local pages may load: nothing but their own inline style.
const LOCAL_PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// How long a replaced window may take to go before its successor is built.
const REPLACE_WAIT: Duration = Duration::from_secs(5);

/// What the window was built with: where it may navigate, and for which origin its script
/// hands out the token (`None`: built without a gateway, so it has no token script).
#[derive(Debug, Default)]
pub struct WindowState {
    built: Mutex<Option<Built>>,
    /// One [`follow`] at a time, each reading the state when its turn comes: the window ends on
    /// the latest state's page however the tasks that asked were scheduled.
    turns: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Built {
    home: Arc<Mutex<Url>>,
    token_origin: Option<String>,
}

impl WindowState {
    fn get(&self) -> Option<Built> {
        self.built
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, built: Built) {
        *self.built.lock().unwrap_or_else(PoisonError::into_inner) = Some(built);
    }
}

/// Builds the dashboard window on the page for `status` (hidden with `visible == false`,
/// e.g. for `--hidden`).
pub fn create(
    app: &AppHandle,
    status: &GatewayStatus,
    token: Option<&Secret>,
    visible: bool,
) -> tauri::Result<WebviewWindow> {
    let url = page(status)?;
    let script = match status {
        GatewayStatus::Running { url, .. } => {
            let origin = url.origin().ascii_serialization();
            Some((token_script(&origin, token), origin))
        }
        _ => None,
    };
    let home = Arc::new(Mutex::new(url.clone()));
    let guard = home.clone();
    let start = if is_local(&url) {
        WebviewUrl::CustomProtocol(url)
    } else {
        WebviewUrl::External(url)
    };
    let mut builder = WebviewWindowBuilder::new(app, MAIN, start)
        .title("FlexiProxy")
        .inner_size(1100.0, 760.0)
        .min_inner_size(640.0, 420.0)
        .center()
        .visible(visible)
        .on_navigation(move |target| {
            let allowed = may_navigate(
                &guard.lock().unwrap_or_else(PoisonError::into_inner),
                target,
            );
            if !allowed {
                tracing::info!(
                    url = %target,
                    "the dashboard window only shows FlexiProxy's own pages; navigation blocked"
                );
            }
            allowed
        });
    let token_origin = match script {
        Some((script, origin)) => {
            builder = builder.initialization_script(script);
            Some(origin)
        }
        None => None,
    };
    let window = builder.build()?;
    // Managed once; a rebuilt window only replaces what it was built with.
    app.manage(WindowState::default());
    if let Some(state) = app.try_state::<WindowState>() {
        state.set(Built { home, token_origin });
    }
    Ok(window)
}

/// Sends the window to the page for the gateway's current state: the dashboard when it runs,
/// else the local page that explains. A window whose token script was made for another origin
/// (or none: the gateway had not started when it was built) is replaced, keeping its visibility.
pub async fn follow(app: &AppHandle) {
    let Some(state) = app.try_state::<WindowState>() else {
        return;
    };
    let _turn = state.turns.lock().await;
    let Some(shell) = app.try_state::<Shell>() else {
        return;
    };
    let (status, token) = shell.status_and_token();
    let (status, token) = (&status, token.as_ref());
    let Some(window) = app.get_webview_window(MAIN) else {
        return;
    };
    let Some(built) = state.get() else {
        return;
    };
    let url = match page(status) {
        Ok(url) => url,
        Err(error) => {
            tracing::warn!("cannot make the window's page: {error}");
            return;
        }
    };
    if let GatewayStatus::Running { url: base, .. } = status
        && built.token_origin.as_deref() != Some(base.origin().ascii_serialization().as_str())
    {
        replace(app, &window, status, token).await;
        return;
    }
    *built.home.lock().unwrap_or_else(PoisonError::into_inner) = url.clone();
    match window.navigate(url) {
        Ok(()) => tracing::info!("the window shows {}", page_name(status)),
        Err(error) => tracing::warn!("cannot show the gateway's state in the window: {error}"),
    }
}

/// What the window shows in `status`, for the log.
fn page_name(status: &GatewayStatus) -> &'static str {
    match status {
        GatewayStatus::Running { .. } => "the dashboard",
        GatewayStatus::Failed(_) => "why the gateway did not start",
        _ => "that the gateway is stopped",
    }
}

/// Closes the window and builds a new one for `status` once the old one is gone (a label can
/// be reused only then).
async fn replace(
    app: &AppHandle,
    window: &WebviewWindow,
    status: &GatewayStatus,
    token: Option<&Secret>,
) {
    let visible = window.is_visible().unwrap_or(true);
    if let Err(error) = window.destroy() {
        tracing::warn!("cannot close the dashboard window to rebuild it: {error}");
        return;
    }
    let deadline = tokio::time::Instant::now() + REPLACE_WAIT;
    while app.get_webview_window(MAIN).is_some() {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!("the old dashboard window did not close; keeping it");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match create(app, status, token, visible) {
        Ok(_) => tracing::info!("the window shows {} (rebuilt)", page_name(status)),
        Err(error) => tracing::error!("cannot rebuild the dashboard window: {error}"),
    }
}

/// Brings the dashboard to the front on one of its pages (`#accounts`), when it shows the
/// gateway's UI; on a local page (gateway stopped) it only comes to the front, since that page
/// says what to do first. Only the hash changes: the page stays loaded and its router follows.
pub fn show_page(app: &AppHandle, page: &str) {
    if let Some(window) = app.get_webview_window(MAIN)
        && window.url().is_ok_and(|url| !is_local(&url))
    {
        // A JSON string literal, so no page name can break out of the script.
        let hash = serde_json::Value::from(format!("#{page}"));
        if let Err(error) = window.eval(format!("window.location.hash = {hash};")) {
            tracing::warn!("cannot switch the dashboard to its {page} page: {error}");
        }
    }
    show(app);
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

/// The page the window shows in `status`: the gateway's own, or one of the app's local pages
/// (their content comes from the state when the window asks, see [`local_page`]; the path only
/// makes each state's address differ, so going from one to the other loads it again).
fn page(status: &GatewayStatus) -> tauri::Result<Url> {
    let path = match status {
        GatewayStatus::Running { url, .. } => return Ok(url.clone()),
        GatewayStatus::Failed(_) => "not-running",
        GatewayStatus::Stopped { .. } | GatewayStatus::Starting | GatewayStatus::Stopping => {
            "stopped"
        }
    };
    local_url(path)
}

/// Where a custom scheme's pages live: `flexiproxy://localhost/…` where the webview takes custom
/// schemes as they are (Linux, macOS), `http://flexiproxy.localhost/…` where it maps them
/// (Windows, Android).
fn local_url(path: &str) -> tauri::Result<Url> {
    let url = if cfg!(any(windows, target_os = "android")) {
        format!("http://{SCHEME}.localhost/{path}")
    } else {
        format!("{SCHEME}://localhost/{path}")
    };
    Url::parse(&url).map_err(tauri::Error::InvalidUrl)
}

fn is_local(url: &Url) -> bool {
    url.scheme() == SCHEME || url.host_str() == Some(&format!("{SCHEME}.localhost"))
}

/// Answers the window's requests for `flexiproxy:` pages with the page for the gateway's state
/// now, under a policy that allows nothing but the page's inline style.
pub fn local_page(app: &AppHandle) -> Response<Vec<u8>> {
    let status = app
        .try_state::<Shell>()
        .map_or(GatewayStatus::Stopped { addr: None }, |shell| {
            shell.status()
        });
    let mut response = Response::new(local_html(&status).into_bytes());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(LOCAL_PAGE_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The local page's HTML for `status`.
fn local_html(status: &GatewayStatus) -> String {
    match status {
        GatewayStatus::Failed(error) => failed_page(error),
        GatewayStatus::Stopped { addr } => {
            stopped_page(addr.map(|addr| format!("http://{addr}")).as_deref())
        }
        GatewayStatus::Running { .. } | GatewayStatus::Starting | GatewayStatus::Stopping => {
            stopped_page(None)
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

/// Only the page the window was last sent to may be shown: the gateway's origin, or exactly
/// the local page it shows while the gateway is not running.
fn may_navigate(home: &Url, target: &Url) -> bool {
    if is_local(home) {
        return target == home;
    }
    !is_local(target) && target.origin() == home.origin()
}

/// The local pages share one look: the dashboard's colours, light or dark as the system is.
fn styled_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>FlexiProxy</title>\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <style>\
         body{{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1f2937;background:#f8fafc}}\
         main{{max-width:40em;margin:12vh auto 0;padding:2em 2.4em;background:#fff;\
         border:1px solid #e2e8f0;border-radius:12px}}\
         h1{{font-size:1.35em;margin:0 0 .8em}}\
         pre{{white-space:pre-wrap;background:#f1f5f9;padding:1em;border-radius:8px;\
         font-size:.93em}}\
         code{{background:#f1f5f9;padding:.1em .35em;border-radius:4px}}\
         b{{white-space:nowrap}}\
         @media (prefers-color-scheme: dark){{body{{color:#e2e8f0;background:#0f172a}}\
         main{{background:#1e293b;border-color:#334155}}pre,code{{background:#0f172a}}}}\
         </style></head><body><main><h1>{title}</h1>{body}</main></body></html>"
    )
}

/// Why the gateway did not start, and how to try again.
fn failed_page(error: &str) -> String {
    styled_page(
        "The FlexiProxy gateway is not running",
        &format!(
            "<pre>{}</pre><p>Fix the cause above, then choose <b>Start gateway</b> in the \
             FlexiProxy tray menu. This window then shows the dashboard.</p>",
            escape_html(error)
        ),
    )
}

/// The gateway was stopped from the tray.
fn stopped_page(base_url: Option<&str>) -> String {
    let tools = match base_url {
        Some(url) => format!(
            "<p>Tools pointed at <code>{}</code> get no answer until it runs again. Providers, \
             adapters and usage history are kept.</p>",
            escape_html(url)
        ),
        None => "<p>Providers, adapters and usage history are kept.</p>".to_owned(),
    };
    styled_page(
        "The FlexiProxy gateway is stopped",
        &format!(
            "{tools}<p>To start it, choose <b>Start gateway</b> in the FlexiProxy tray menu. \
             This window then shows the dashboard again.</p>"
        ),
    )
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
    fn a_local_page_allows_only_itself() {
        let home = page(&GatewayStatus::Stopped { addr: None }).unwrap();
        assert!(is_local(&home));
        assert!(may_navigate(&home, &home));
        let failed = page(&GatewayStatus::Failed("x".into())).unwrap();
        assert_ne!(failed, home);
        for other in [
            failed.as_str(),
            "data:text/html,other",
            "http://127.0.0.1:8317/",
        ] {
            assert!(!may_navigate(&home, &Url::parse(other).unwrap()), "{other}");
        }
        let gateway = Url::parse("http://127.0.0.1:8317/").unwrap();
        assert!(!may_navigate(&gateway, &home));
    }

    #[test]
    fn failed_page_escapes_the_message_and_says_how_to_start() {
        let html = local_html(&GatewayStatus::Failed("port <8317> & more".into()));
        assert!(html.contains("<pre>port &lt;8317&gt; &amp; more</pre>"));
        assert!(html.contains("<b>Start gateway</b>"));
    }

    #[test]
    fn local_pages_come_with_a_strict_policy() {
        assert!(LOCAL_PAGE_CSP.starts_with("default-src 'none'"));
        assert!(!LOCAL_PAGE_CSP.contains("script-src"));
    }

    #[test]
    fn stopped_page_names_the_address_and_how_to_start() {
        let html = stopped_page(Some("http://127.0.0.1:8317"));
        assert!(html.contains("is stopped"));
        assert!(html.contains("<code>http://127.0.0.1:8317</code>"));
        assert!(html.contains("<b>Start gateway</b>"));
        assert!(!stopped_page(None).contains("<code>"));
    }

    #[test]
    fn the_running_page_is_the_gateway() {
        let status = GatewayStatus::Running {
            addr: "127.0.0.1:8317".parse().unwrap(),
            url: Url::parse("http://127.0.0.1:8317/").unwrap(),
        };
        assert_eq!(page(&status).unwrap().as_str(), "http://127.0.0.1:8317/");
    }
}
