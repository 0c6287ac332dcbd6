//! Test support: a stand-in provider on loopback (port 0) and a sender that applies an
//! [`Upstream`] the way the relay will. Each test routes the paths its kind uses and checks the
//! headers there, answering 4xx when one is wrong so the test sees it.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use bytes::Bytes;

use super::Upstream;

/// Serves `router` on 127.0.0.1 at a free port; returns its base URL. The server lives as long
/// as the test's runtime.
pub(crate) async fn spawn(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A client that never waits long: no test may hang on a broken stand-in.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Sends `body` to `upstream` with its headers and body transform; returns status and body.
pub(crate) async fn send(upstream: &Upstream, body: impl Into<Bytes>) -> (u16, Bytes) {
    let body = upstream.body.apply(body.into()).unwrap();
    let response = client()
        .post(&upstream.url)
        .headers(upstream.headers.clone())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap())
}

/// The header's value as text, or "" when absent.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
