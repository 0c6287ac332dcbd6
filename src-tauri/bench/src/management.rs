//! Prepares the gateway for the load through its management API (see the contract's "HTTP API"):
//! waits for `GET /health`, registers a provider pointing at the mock upstream with its key as
//! an `env:NAME` reference, and creates an adapter whose `fp-…` key the load then sends.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, StatusCode};

use crate::BenchError;
use crate::load::{Target, exchange};

/// Id of the provider the bench registers.
pub const PROVIDER_ID: &str = "bench";
/// Model id the adapter maps to (the mock upstream answers any model).
pub const MODEL_ID: &str = "bench-model";
/// How long the gateway may take to answer `/health` after printing its address.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `GET /health` answers 200.
pub async fn wait_healthy(gateway: &Target) -> Result<(), BenchError> {
    let health = gateway.at("/health")?;
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        let answer = exchange(&health, Method::GET, None, &[]).await;
        match answer {
            Ok((StatusCode::OK, _)) => return Ok(()),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok((status, body)) => {
                return Err(BenchError::Unexpected(format!(
                    "gateway /health answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Registers the provider (`url` is the upstream's base, e.g. `http://127.0.0.1:P/v1`, and
/// `key_env` the variable holding its key in the gateway's environment) and creates an adapter.
/// Returns the adapter's client key (`fp-…`).
pub async fn register(
    gateway: &Target,
    management_token: &str,
    upstream_url: &str,
    key_env: &str,
) -> Result<String, BenchError> {
    let bearer = HeaderValue::from_str(&format!("Bearer {management_token}"))
        .map_err(|err| BenchError::Unexpected(format!("management token header: {err}")))?;
    let api = |path: &str| -> Result<Target, BenchError> {
        Target::new(
            "management API",
            gateway.addr,
            path,
            vec![(AUTHORIZATION, bearer.clone())],
        )
    };

    let provider = serde_json::json!({
        "url": upstream_url,
        "protocol": "openai_chat",
        "api_key": format!("env:{key_env}"),
    });
    let (status, body) = exchange(
        &api(&format!("/api/providers/{PROVIDER_ID}"))?,
        Method::POST,
        Some(Bytes::from(provider.to_string())),
        &[],
    )
    .await?;
    expect_success("POST /api/providers/{id}", status, &body)?;

    let adapter = serde_json::json!({ "provider_id": PROVIDER_ID, "model_id": MODEL_ID });
    let (status, body) = exchange(
        &api("/api/adapters")?,
        Method::POST,
        Some(Bytes::from(adapter.to_string())),
        &[],
    )
    .await?;
    expect_success("POST /api/adapters", status, &body)?;
    let created: serde_json::Value = serde_json::from_slice(&body).map_err(|err| {
        BenchError::Unexpected(format!("POST /api/adapters answered non-JSON: {err}"))
    })?;
    created
        .get("api_key")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            BenchError::Unexpected(format!(
                "POST /api/adapters answered no api_key: {}",
                String::from_utf8_lossy(&body)
            ))
        })
}

fn expect_success(what: &str, status: StatusCode, body: &[u8]) -> Result<(), BenchError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(BenchError::Unexpected(format!(
            "gateway {what} answered {status}: {}",
            String::from_utf8_lossy(body)
        )))
    }
}
