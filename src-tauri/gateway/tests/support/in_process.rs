//! A gateway started in-process for one test, on a free port of loopback with its data in a
//! scratch folder and its secrets in a store the test holds, and the management API as the test
//! calls it: with the management token the start handed out.

use std::path::Path;

use flexiproxy_gateway::store::secrets::SharedSecretStore;
use flexiproxy_gateway::{Gateway, RunningGateway, SecretsMode, Settings};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Settings for a test's gateway: data in `dir`, any free port, secrets in `secrets`.
pub fn settings(dir: &Path, secrets: SharedSecretStore) -> Settings {
    let mut settings = Settings::new(dir.to_path_buf());
    settings.port = 0;
    settings.secrets = SecretsMode::Store(secrets);
    settings
}

/// Starts the gateway; returns it with its management token.
pub async fn start(settings: Settings) -> (RunningGateway, String) {
    let gateway = Gateway::start(settings).await.unwrap();
    let token = gateway.management_token().unwrap().expose().to_owned();
    (gateway, token)
}

/// The management API of one running gateway, called with its token.
#[derive(Clone)]
pub struct Management {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl Management {
    pub fn new(http: reqwest::Client, gateway: &RunningGateway, token: &str) -> Self {
        Self {
            http,
            base_url: gateway.base_url(),
            token: token.to_owned(),
        }
    }

    /// A request to `path` carrying the token, to be finished by the caller.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
    }

    /// A call with an optional JSON body: its status and JSON answer (`null` when the answer
    /// is empty; any other answer must be JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    /// A call that must answer `expected`: its JSON answer.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert_eq!(status, expected, "{answer}");
        answer
    }

    /// The JSON answer of a `GET` of `path`, whatever its status.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        self.request(Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Registers provider `id` with `body` (`POST /api/providers/{id}`), which must succeed.
    pub async fn provider(&self, id: &str, body: Value) {
        self.expect(
            Method::POST,
            &format!("/api/providers/{id}"),
            Some(body),
            StatusCode::OK,
        )
        .await;
    }

    /// Creates an adapter for `model` of `provider`; returns its API key.
    pub async fn adapter_key(&self, provider: &str, model: &str) -> String {
        let adapter = self
            .expect(
                Method::POST,
                "/api/adapters",
                Some(serde_json::json!({"provider_id": provider, "model_id": model})),
                StatusCode::CREATED,
            )
            .await;
        adapter["api_key"].as_str().unwrap().to_owned()
    }
}

/// Checks that `answer` is the gateway's error whose message says `needle`.
pub fn assert_error_says(answer: &Value, needle: &str) {
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains(needle),
        "{answer}"
    );
}
