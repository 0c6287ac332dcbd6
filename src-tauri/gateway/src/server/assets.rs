//! The web UI's static files, compiled into the binary from the repository's `ui/` folder so
//! an installed app needs nothing beside it. The same pages are shown in the desktop window and
//! in a browser at the gateway's address.
//!
//! `app.js` is the entry; it imports the page modules under `ui/lib/` (served at `/lib/NAME`),
//! a fixed list below, so nothing outside `ui/` can ever be served.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
}

/// A file of the repository (path from its root) compiled in, served as `content_type`.
macro_rules! asset {
    ($path:expr, $content_type:literal) => {
        Asset {
            bytes: include_bytes!(concat!("../../../../", $path)),
            content_type: $content_type,
        }
    };
}

const INDEX: Asset = asset!("ui/index.html", "text/html; charset=utf-8");
const SCRIPT: Asset = asset!("ui/app.js", "text/javascript; charset=utf-8");
const STYLE: Asset = asset!("ui/style.css", "text/css; charset=utf-8");
const ICON: Asset = asset!("icons/icon.png", "image/png");

/// The table of `ui/lib/` script modules, each named once: the name it is served under is
/// also the file it is read from.
macro_rules! modules {
    ($($name:literal),* $(,)?) => {
        &[$((
            $name,
            asset!(concat!("ui/lib/", $name), "text/javascript; charset=utf-8"),
        )),*]
    };
}

/// `ui/lib/*.js`, by file name.
const MODULES: &[(&str, Asset)] = modules![
    "accounts.js",
    "actions.js",
    "adapters.js",
    "api.js",
    "chart.js",
    "dashboard.js",
    "dom.js",
    "live.js",
    "providers.js",
    "settings.js",
    "state.js",
];

fn serve(asset: &Asset) -> Response {
    let mut response = (StatusCode::OK, asset.bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // The files change with the binary; revalidate so an upgrade is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub async fn index() -> Response {
    let mut response = serve(&INDEX);
    // Pages of this origin only: no framing by other sites, no scripts from elsewhere.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

pub async fn script() -> Response {
    serve(&SCRIPT)
}

pub async fn style() -> Response {
    serve(&STYLE)
}

pub async fn icon() -> Response {
    serve(&ICON)
}

/// `GET /lib/{name}`: one of the UI's script modules.
pub async fn lib_module(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match MODULES.iter().find(|(file, _)| *file == name) {
        Some((_, asset)) => serve(asset),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_is_listed_once_and_is_a_script() {
        let mut names: Vec<&str> = MODULES.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MODULES.len());
        for (name, asset) in MODULES {
            assert!(name.ends_with(".js"), "{name}");
            assert!(!asset.bytes.is_empty(), "{name}");
        }
    }

    #[test]
    fn every_module_the_ui_imports_is_served() {
        // The entry and the modules import each other by relative path (`./lib/x.js`,
        // `./x.js`); a file missing from MODULES would be a 404 and a blank page.
        let sources = std::iter::once(SCRIPT.bytes).chain(MODULES.iter().map(|(_, a)| a.bytes));
        for source in sources {
            let text = String::from_utf8_lossy(source);
            let imports = text
                .lines()
                .filter(|l| l.starts_with("import ") || l.starts_with("} from "));
            for line in imports {
                let Some(start) = line.find("'./") else {
                    continue;
                };
                let rest = &line[start + 3..];
                let path = rest.split('\'').next().unwrap_or_default();
                let name = path.strip_prefix("lib/").unwrap_or(path);
                assert!(
                    MODULES.iter().any(|(file, _)| *file == name),
                    "`{line}` imports {name}, which assets.rs does not serve"
                );
            }
        }
    }
}
