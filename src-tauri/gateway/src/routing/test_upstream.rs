//! Test support for the routing modules that talk to providers (discovery, the provider
//! check): loopback addresses where a stand-in provider answers, or where nothing does.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::SocketAddr;

/// Serves `app` on 127.0.0.1 at a free port for as long as the test's runtime lives.
pub(crate) async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A loopback address where nothing listens (a port that was free a moment ago), so a
/// connection to it is refused.
pub(crate) async fn closed() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
