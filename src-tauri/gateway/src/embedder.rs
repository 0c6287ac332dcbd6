//! The desktop host hook: what the program embedding the gateway can do for the management API
//! that the gateway cannot do itself, such as starting the app at login or opening the system
//! browser on a sign-in page.
//!
//! The gateway crate knows nothing of Tauri, so the desktop app (`src-tauri/app`) implements
//! [`Embedder`] with its autostart and opener plugins and passes it in `Settings::host`;
//! `server::host_views` serves it as `GET/PUT /api/desktop` and `POST /api/desktop/open` for the
//! web UI. A headless gateway has no host and says so (`available: false`).

use reqwest::Url;

/// Desktop integration the embedding app provides. Calls may touch the file system or the OS
/// (the autostart entry), so the API runs them off the async runtime.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// Whether the app starts at login.
    fn autostart(&self) -> Result<bool, HostError>;
    /// Turns starting at login on or off. The host also updates its own view of the setting
    /// (the tray's check item), so both sides agree whichever side changed it.
    fn set_autostart(&self, enabled: bool) -> Result<(), HostError>;
    /// Opens `url` in the system's default browser. The API hands over only URLs that passed
    /// [`browser_url`]; the host need not check them again.
    fn open_url(&self, url: &str) -> Result<(), HostError>;
}

/// The longest URL handed to the browser: sign-in pages carry a few hundred bytes of query.
const MAX_URL_LEN: usize = 8 * 1024;

/// Why a URL is not opened in the browser; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("the URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("not a URL ({0}): give a full http:// or https:// address")]
    Invalid(String),
    #[error("only http:// and https:// addresses open in the browser, not {0}: addresses")]
    Scheme(String),
    #[error("the URL names no host: give a full http:// or https:// address")]
    NoHost,
}

/// Checks that `raw` is a web address the system browser may be sent to: `http` or `https` with
/// a host. Anything else (`file:`, `javascript:`, custom schemes that start other programs) is
/// refused, because the caller is a web page and the browser call starts a program.
pub fn browser_url(raw: &str) -> Result<Url, UrlRefused> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlRefused::TooLong);
    }
    let url = Url::parse(raw.trim()).map_err(|e| UrlRefused::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefused::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlRefused::NoHost);
    }
    Ok(url)
}

/// A host operation failed; the message says what failed and what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn web_addresses_pass_as_they_are() {
        for raw in [
            "https://claude.ai/oauth/authorize?code=true&state=a%20b",
            "http://127.0.0.1:54545/callback?code=x",
            "https://github.com/login/device",
        ] {
            assert_eq!(browser_url(raw).unwrap().as_str(), raw);
        }
        assert_eq!(
            browser_url("  https://example.com/  ").unwrap().as_str(),
            "https://example.com/"
        );
    }

    #[test]
    fn other_schemes_and_non_urls_are_refused() {
        for raw in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://example.com/",
            "vscode://extension",
            "mailto:a@example.com",
        ] {
            assert!(
                matches!(browser_url(raw), Err(UrlRefused::Scheme(_))),
                "{raw}"
            );
        }
        for raw in ["", "example.com", "/relative/path", "https://"] {
            assert!(browser_url(raw).is_err(), "{raw}");
        }
        let long = format!("https://example.com/?q={}", "a".repeat(MAX_URL_LEN));
        assert_eq!(browser_url(&long), Err(UrlRefused::TooLong));
    }

    #[test]
    fn the_message_says_what_is_accepted() {
        let message = browser_url("file:///x").unwrap_err().to_string();
        assert!(
            message.contains("http://") && message.contains("file"),
            "{message}"
        );
    }
}
