//! `GET/PUT /api/desktop` over real HTTP, with a gateway started in-process: headless (no host:
//! `available: false`, changes refused with 409) and hosted by a fake desktop app that keeps its
//! autostart flag in memory, as the tray app keeps it in its autostart entry; `POST
//! /api/desktop/open` hands only web addresses to the host. Also the day totals the tray seeds
//! its token count with (`RunningGateway::usage_since`), and the first-run welcome of the
//! desktop app's dashboard (`welcome` in `GET /api/status`, `POST /api/welcome/dismiss`).
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed unwrap is a failed test, with its location"
)]

mod scratch;
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flexiproxy_gateway::RunningGateway;
use flexiproxy_gateway::embedder::{Embedder, HostError};
use flexiproxy_gateway::store::secrets::MemoryStore;
use reqwest::StatusCode;
use scratch::TempDir;
use serde_json::{Value, json};
use support::in_process::{self, Management, assert_error_says};

/// A desktop app in memory: the flag, how often it was set, and a switch that makes it fail.
#[derive(Debug, Default)]
struct FakeHost {
    autostart: AtomicBool,
    sets: AtomicUsize,
    broken: AtomicBool,
    opened: Mutex<Vec<String>>,
}

impl Embedder for FakeHost {
    fn autostart(&self) -> Result<bool, HostError> {
        Ok(self.autostart.load(Ordering::SeqCst))
    }

    fn set_autostart(&self, enabled: bool) -> Result<(), HostError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(HostError(
                "cannot write the autostart entry: permission denied".into(),
            ));
        }
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.autostart.store(enabled, Ordering::SeqCst);
        Ok(())
    }

    fn open_url(&self, url: &str) -> Result<(), HostError> {
        self.opened.lock().unwrap().push(url.to_owned());
        Ok(())
    }
}

struct Fixture {
    gateway: RunningGateway,
    manage: Management,
    /// A client without the token.
    http: reqwest::Client,
    _dir: TempDir,
}

async fn start(host: Option<Arc<dyn Embedder>>) -> Fixture {
    let scratch = TempDir::new("host");
    let mut settings = in_process::settings(scratch.path(), Arc::new(MemoryStore::default()));
    settings.host = host;
    let (gateway, token) = in_process::start(settings).await;
    let http = reqwest::Client::new();
    Fixture {
        manage: Management::new(http.clone(), &gateway, &token),
        http,
        gateway,
        _dir: scratch,
    }
}

impl Fixture {
    async fn get(&self) -> (StatusCode, Value) {
        self.manage
            .call(reqwest::Method::GET, "/api/desktop", None)
            .await
    }

    async fn open(&self, body: &Value) -> (StatusCode, Value) {
        self.manage
            .call(
                reqwest::Method::POST,
                "/api/desktop/open",
                Some(body.clone()),
            )
            .await
    }

    async fn put(&self, body: &Value) -> (StatusCode, Value) {
        self.manage
            .call(reqwest::Method::PUT, "/api/desktop", Some(body.clone()))
            .await
    }
}

#[tokio::test]
async fn headless_has_no_desktop_and_refuses_changes() {
    let fixture = start(None).await;
    assert_eq!(
        fixture.get().await,
        (
            StatusCode::OK,
            json!({"available": false, "autostart": null})
        )
    );
    let (status, body) = fixture.put(&json!({"autostart": true})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error_says(&body, "headless");
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn the_host_reads_and_sets_autostart() {
    let host = Arc::new(FakeHost::default());
    let fixture = start(Some(host.clone())).await;
    assert_eq!(
        fixture.get().await,
        (
            StatusCode::OK,
            json!({"available": true, "autostart": false})
        )
    );

    let (status, body) = fixture.put(&json!({"autostart": true})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"available": true, "autostart": true})
        )
    );
    assert!(host.autostart.load(Ordering::SeqCst));

    // A change made on the host's side (the tray) is what the API reads next.
    host.autostart.store(false, Ordering::SeqCst);
    assert_eq!(fixture.get().await.1["autostart"], json!(false));

    // An empty body changes nothing; unknown fields and wrong types are refused.
    assert_eq!(fixture.put(&json!({})).await.0, StatusCode::OK);
    assert_eq!(host.sets.load(Ordering::SeqCst), 1);
    assert_eq!(
        fixture.put(&json!({"autostart": "yes"})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        fixture.put(&json!({"start_at_login": true})).await.0,
        StatusCode::BAD_REQUEST
    );

    // The host's failure reaches the caller with its message.
    host.broken.store(true, Ordering::SeqCst);
    let (status, body) = fixture.put(&json!({"autostart": true})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_error_says(&body, "permission denied");
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn the_host_opens_web_addresses_only() {
    let host = Arc::new(FakeHost::default());
    let fixture = start(Some(host.clone())).await;
    let page = "https://auth.example.com/authorize?client_id=x&state=y";
    assert_eq!(
        fixture.open(&json!({"url": page})).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    for bad in [
        json!({"url": "file:///etc/passwd"}),
        json!({"url": "javascript:alert(1)"}),
        json!({"url": "not a url"}),
        json!({"href": page}),
        json!({}),
    ] {
        let (status, body) = fixture.open(&bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
    }
    let (_, body) = fixture.open(&json!({"url": "file:///x"})).await;
    assert_error_says(&body, "https://");
    assert_eq!(*host.opened.lock().unwrap(), vec![page.to_owned()]);
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn headless_cannot_open_a_browser() {
    let fixture = start(None).await;
    let (status, body) = fixture.open(&json!({"url": "https://example.com/"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error_says(&body, "headless");
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn the_desktop_routes_need_the_management_token() {
    let fixture = start(Some(Arc::new(FakeHost::default()))).await;
    let url = format!("{}/api/desktop", fixture.gateway.base_url());
    let get = fixture.http.get(&url).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::UNAUTHORIZED);
    let put = fixture
        .http
        .put(&url)
        .json(&json!({"autostart": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::UNAUTHORIZED);
    let open = fixture
        .http
        .post(format!("{url}/open"))
        .json(&json!({"url": "https://example.com/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::UNAUTHORIZED);
    fixture.gateway.shutdown().await;
}

#[tokio::test]
async fn usage_since_starts_at_zero() {
    let fixture = start(None).await;
    let totals = fixture.gateway.usage_since(0).unwrap();
    assert_eq!(totals.requests, 0);
    assert_eq!(totals.input_tokens + totals.output_tokens, 0);
    fixture.gateway.shutdown().await;
}

impl Fixture {
    async fn status(&self) -> Value {
        let (status, body) = self
            .manage
            .call(reqwest::Method::GET, "/api/status", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }
}

#[tokio::test]
async fn the_welcome_belongs_to_the_desktop_apps_first_run() {
    let headless = start(None).await;
    assert_eq!(headless.status().await["welcome"], false);

    let desktop = start(Some(Arc::new(FakeHost::default()))).await;
    assert_eq!(desktop.status().await["welcome"], true);
    // The first start with a window...
    assert!(desktop.gateway.record_desktop_start().unwrap());
    assert_eq!(desktop.status().await["welcome"], true);
    // ...and any later one, which ends the welcome whether or not it was dismissed.
    assert!(!desktop.gateway.record_desktop_start().unwrap());
    assert_eq!(desktop.status().await["welcome"], false);
}

#[tokio::test]
async fn the_welcome_can_be_dismissed() {
    let desktop = start(Some(Arc::new(FakeHost::default()))).await;
    assert_eq!(desktop.status().await["welcome"], true);
    let (status, _) = desktop
        .manage
        .call(reqwest::Method::POST, "/api/welcome/dismiss", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(desktop.status().await["welcome"], false);
    let refused = desktop
        .http
        .post(format!(
            "{}/api/welcome/dismiss",
            desktop.gateway.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}
