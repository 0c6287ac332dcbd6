//! The floor: a bare hyper pass-through proxy, the physical limit of "one more loopback hop".
//!
//! It does what any proxy must and nothing else: accept (TCP_NODELAY), point the request at the
//! upstream, send it over a pooled keep-alive connection (TCP_NODELAY), and stream the response
//! back frame by frame. No auth, no body inspection, no logging. The gateway's figures are read
//! against it: what the gateway costs beyond this is what its features cost.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::BenchError;
use crate::listener::Listener;

/// Flags of `flexiproxy-bench floor`.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Port on 127.0.0.1; 0 picks a free one (the chosen address is printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Upstream base, e.g. `http://127.0.0.1:9000`; request paths are appended unchanged.
    #[arg(long)]
    pub upstream: Uri,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

/// Runs the floor proxy until the process is killed.
pub fn main(args: &FloorArgs) -> Result<(), BenchError> {
    crate::server_runtime(args.workers)?.block_on(serve(args))
}

async fn serve(args: &FloorArgs) -> Result<(), BenchError> {
    let authority = args.upstream.authority().cloned().ok_or_else(|| {
        BenchError::Unexpected(format!("--upstream {} has no host:port", args.upstream))
    })?;
    let listener = Listener::bind("floor", args.port).await?;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);

    loop {
        let socket = listener.accept().await?;
        let client = client.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                let mut parts = req.uri().clone().into_parts();
                parts.scheme = Some(hyper::http::uri::Scheme::HTTP);
                parts.authority = Some(authority.clone());
                async move {
                    let response: Response<Either<Incoming, Full<Bytes>>> =
                        match Uri::from_parts(parts) {
                            Ok(uri) => {
                                *req.uri_mut() = uri;
                                match client.request(req).await {
                                    Ok(upstream) => upstream.map(Either::Left),
                                    Err(err) => bad_gateway(&err.to_string()),
                                }
                            }
                            Err(err) => bad_gateway(&err.to_string()),
                        };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

fn bad_gateway(message: &str) -> Response<Either<Incoming, Full<Bytes>>> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "floor: upstream failed: {message}"
    )))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
