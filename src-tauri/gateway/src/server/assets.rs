//! The web UI's static files, compiled into the binary from the repository's `ui/` folder so
//! an installed app needs nothing beside it. The same pages are shown in the desktop window and
//! in a browser at the gateway's address.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    bytes: include_bytes!("../../../../ui/index.html"),
    content_type: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    bytes: include_bytes!("../../../../ui/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    bytes: include_bytes!("../../../../ui/style.css"),
    content_type: "text/css; charset=utf-8",
};
const ICON: Asset = Asset {
    bytes: include_bytes!("../../../../icons/icon.png"),
    content_type: "image/png",
};

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
