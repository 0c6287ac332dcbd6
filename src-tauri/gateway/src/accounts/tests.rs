//! Tests of the subscription accounts against a stand-in token endpoint on loopback: a login
//! becoming a pooled credential, each kind's set-up, background and on-demand refreshes, and
//! tokens the keychain refuses or lost.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::accounts::oauth::AccountFacts;
use crate::store::secrets::{MemoryStore, SecretStore as _};
use crate::store::{AccountStore, Database, ProviderStore};

/// Stand-ins for the token endpoint, Code Assist, iFlow's user info and the Copilot mint.
async fn stand_in(refreshes: Arc<AtomicUsize>) -> String {
    let app = Router::new()
        .route(
            "/token",
            post(move || {
                let n = refreshes.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    axum::Json(json!({"access_token": format!("fresh-{n}"),
                        "token_type": "Bearer", "expires_in": 3600}))
                }
            }),
        )
        .route(
            "/ca/{method}",
            post(|| async {
                axum::Json(json!({"currentTier": {"id": "standard-tier", "name": "Gemini Code Assist Standard"},
                    "cloudaicompanionProject": "proj-42"}))
            }),
        )
        .route(
            "/claude/api/oauth/profile",
            get(|headers: HeaderMap| async move {
                assert_eq!(headers["authorization"], "Bearer c-1");
                axum::Json(json!({"account": {"email": "ada@example.com", "has_claude_max": true}}))
            }),
        )
        .route(
            "/iflow/user",
            get(|| async {
                axum::Json(json!({"success": true, "data": {"apiKey": "sk-iflow-1", "phone": "+86 100"}}))
            }),
        )
        .route(
            "/gh/copilot_internal/v2/token",
            get(|headers: HeaderMap| async move {
                assert_eq!(headers["authorization"], "token gh-1");
                axum::Json(json!({"token": "cop-1", "expires_at": 4_000_000_000_u64}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

struct Fixture {
    accounts: Arc<Accounts>,
    secrets: Arc<MemoryStore>,
    db: Arc<Database>,
    refreshes: Arc<AtomicUsize>,
    dir: std::path::PathBuf,
}

impl Fixture {
    /// A login of `kind` that must succeed (`relogin`: the account logged in again).
    async fn log_in(
        &self,
        kind: AccountKind,
        tokens: TokenSet,
        relogin: Option<&str>,
    ) -> AccountRow {
        self.accounts.add(kind, tokens, relogin).await.unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture() -> Fixture {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let base = stand_in(refreshes.clone()).await;
    // Tests run in parallel: the same millisecond must not mean the same folder.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flexiproxy-accounts-unit-{}-{}-{}",
        std::process::id(),
        now_ms(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let db = Arc::new(Database::open(&dir).unwrap());
    let secrets = Arc::new(MemoryStore::default());
    let accounts = Accounts::new(db.clone(), secrets.clone(), SideHttp::for_tests()).unwrap();
    let mut settings = EndpointSettings::default();
    for kind in AccountKind::ALL {
        let mut endpoints = kind.endpoints();
        endpoints.token_url = format!("{base}/token");
        endpoints.token_body = oauth::TokenBody::Form;
        settings.login.insert(kind, endpoints);
    }
    settings.api.code_assist = format!("{base}/ca");
    settings.api.claude = format!("{base}/claude");
    settings.api.iflow_user_info = format!("{base}/iflow/user");
    settings.api.github_api = format!("{base}/gh");
    accounts.set_endpoint_settings(settings).unwrap();
    Fixture {
        accounts: Arc::new(accounts),
        secrets,
        db,
        refreshes,
        dir,
    }
}

fn tokens(access: &str, expires_at_ms: Option<i64>) -> TokenSet {
    TokenSet {
        access: Secret::new(access),
        refresh: Some(Secret::new("rt-1")),
        expires_at_ms,
        facts: AccountFacts {
            email: Some("ada@example.com".into()),
            account_id: Some("acct-1".into()),
            plan: Some("pro".into()),
            resource_url: None,
        },
    }
}

#[test]
fn endpoint_rules_and_which_kinds_move() {
    let defaults = EndpointSettings::default();
    defaults.check().unwrap();
    assert!(defaults.kinds_moved(&defaults).is_empty());

    let mut next = defaults.clone();
    let mut codex = AccountKind::Codex.endpoints();
    codex.client_id = "another".into();
    codex.token_url = "https://AUTH.openai.com:443/oauth/token2".into();
    next.login.insert(AccountKind::Codex, codex.clone());
    assert!(defaults.kinds_moved(&next).is_empty(), "same origin");

    codex.token_url = "https://auth.example/token".into();
    next.login.insert(AccountKind::Codex, codex.clone());
    next.api.iflow_user_info = "https://info.example/user".into();
    assert_eq!(
        defaults.kinds_moved(&next),
        [AccountKind::Codex, AccountKind::Iflow]
    );
    next.check().unwrap();

    codex.token_url = "http://auth.example/token".into();
    next.login.insert(AccountKind::Codex, codex.clone());
    let e = next.check().unwrap_err().to_string();
    assert!(
        e.starts_with("`login.codex.token_url` must use https"),
        "{e}"
    );
    codex.token_url = "http://127.0.0.1:9/token".into();
    codex.redirect_host = "attacker.example".into();
    next.login.insert(AccountKind::Codex, codex);
    let e = next.check().unwrap_err().to_string();
    assert!(e.contains("login.codex.redirect_host"), "{e}");
}

#[tokio::test]
async fn a_login_becomes_a_pooled_credential_and_logging_out_removes_everything() {
    let f = fixture().await;
    let row = f
        .log_in(AccountKind::Claude, tokens("a-1", None), None)
        .await;
    assert_eq!(row.id, "claude-ada");
    assert_eq!(row.label, "ada@example.com");
    assert_eq!(row.plan.as_deref(), Some("pro"));
    let provider = f.db.providers().unwrap();
    assert_eq!(provider[0].id, "claude-account");
    assert_eq!(provider[0].protocol, "anthropic_messages");
    let credentials = f.db.credentials().unwrap();
    assert_eq!(
        credentials[0].key_ref.as_deref(),
        Some("oauth:claude-ada"),
        "the credential names the account, not a token"
    );
    assert!(f.secrets.get("oauth:claude-ada").unwrap().is_some());

    // A second login of the same person gets its own id; a re-login keeps the id.
    let second = f
        .log_in(AccountKind::Claude, tokens("a-2", None), None)
        .await;
    assert_eq!(second.id, "claude-ada-2");
    let again = f
        .log_in(AccountKind::Claude, tokens("a-3", None), Some("claude-ada"))
        .await;
    assert_eq!(again.id, "claude-ada");
    assert_eq!(again.created_at, row.created_at);
    assert_eq!(f.db.credentials().unwrap().len(), 2);
    match f.accounts.for_request("claude-ada").await.unwrap() {
        subscription::Account::Claude { access } => assert_eq!(access.expose(), "a-3"),
        other => panic!("{other:?}"),
    }

    f.accounts.log_out("claude-ada").await.unwrap();
    assert!(f.secrets.get("oauth:claude-ada").unwrap().is_none());
    assert_eq!(f.db.credentials().unwrap().len(), 1);
    assert_eq!(f.db.providers().unwrap().len(), 1, "one account is left");
    f.accounts.log_out("claude-ada-2").await.unwrap();
    assert!(
        f.db.providers().unwrap().is_empty(),
        "the provider goes with its last account"
    );
    assert!(matches!(
        f.accounts.for_request("claude-ada").await,
        Err(AccountError::Unknown(_))
    ));
}

#[tokio::test]
async fn each_kind_runs_its_set_up_at_login() {
    let f = fixture().await;
    let gemini = f
        .log_in(AccountKind::GeminiCli, tokens("g-1", None), None)
        .await;
    assert_eq!(gemini.project.as_deref(), Some("proj-42"));
    assert_eq!(gemini.plan.as_deref(), Some("Gemini Code Assist Standard"));

    let mut claude = tokens("c-1", None);
    claude.facts.plan = None;
    let claude = f.log_in(AccountKind::Claude, claude, None).await;
    assert_eq!(claude.plan.as_deref(), Some("Max"));

    let mut iflow = tokens("i-1", None);
    iflow.facts.email = None;
    iflow.facts.account_id = None;
    let row = f.log_in(AccountKind::Iflow, iflow, None).await;
    assert_eq!(row.label, "+86 100");
    match f.accounts.for_request(&row.id).await.unwrap() {
        subscription::Account::Iflow { api_key } => assert_eq!(api_key.expose(), "sk-iflow-1"),
        other => panic!("{other:?}"),
    }

    let copilot = f
        .log_in(AccountKind::Copilot, tokens("gh-1", None), None)
        .await;
    match f.accounts.for_request(&copilot.id).await.unwrap() {
        subscription::Account::Copilot(token) => assert_eq!(token.token.expose(), "cop-1"),
        other => panic!("{other:?}"),
    }
    // "Refresh" on a Copilot account mints its Copilot token again; no OAuth refresh.
    let reminted = f.accounts.refresh(&copilot.id).await.unwrap();
    assert!(reminted.refreshed_at >= copilot.refreshed_at);
    assert_eq!(f.refreshes.load(Ordering::SeqCst), 0);
    // The API key and tokens are secrets; the rows hold none of them.
    let rows = format!("{:?}", f.db.accounts().unwrap());
    for secret in ["g-1", "i-1", "sk-iflow-1", "gh-1", "cop-1"] {
        assert!(!rows.contains(secret), "{secret} in {rows}");
    }
}

#[tokio::test]
async fn tokens_near_expiry_are_refreshed_in_the_background_and_on_demand() {
    let f = fixture().await;
    let soon = now_ms() + 60_000;
    f.log_in(AccountKind::Claude, tokens("a-1", Some(soon)), None)
        .await;
    let later = now_ms() + 3_600_000;
    let codex = f
        .log_in(AccountKind::Codex, tokens("c-1", Some(later)), None)
        .await;

    // One pass refreshes the due account only; nothing else is due for an hour, so it
    // looks again after its longest sleep.
    let next = f.accounts.refresh_due().await;
    assert_eq!(f.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(next, MAX_SLEEP);
    let row = f.db.account("claude-ada").unwrap().unwrap();
    assert!(row.expires_at.unwrap() > later - 5_000);
    assert!(row.refreshed_at.is_some());
    match f.accounts.for_request("claude-ada").await.unwrap() {
        subscription::Account::Claude { access } => assert_eq!(access.expose(), "fresh-1"),
        other => panic!("{other:?}"),
    }
    match f.accounts.for_request(&codex.id).await.unwrap() {
        subscription::Account::Codex { account_id, .. } => assert_eq!(account_id, "acct-1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.refreshes.load(Ordering::SeqCst), 1);

    // The refresher task does the same on its own and stops when told.
    let mut expiring = tokens("a-9", Some(now_ms() + 1_000));
    expiring.refresh = Some(Secret::new("rt-9"));
    f.log_in(AccountKind::Claude, expiring, Some("claude-ada"))
        .await;
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(f.accounts.clone().run_refresher(closing_rx));
    for _ in 0..100 {
        if f.refreshes.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.refreshes.load(Ordering::SeqCst), 2);
    closing.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn new_tokens_the_keychain_refuses_are_used_and_shown_as_not_saved() {
    let f = fixture().await;
    let secrets = Arc::new(crate::store::secrets::RefusingStore::default());
    let accounts =
        Arc::new(Accounts::new(f.db.clone(), secrets.clone(), SideHttp::for_tests()).unwrap());
    accounts
        .set_endpoint_settings(f.accounts.endpoint_settings())
        .unwrap();
    accounts
        .add(
            AccountKind::Claude,
            tokens("a-1", Some(now_ms() + 60_000)),
            None,
        )
        .await
        .unwrap();
    secrets.refuse_next(1);
    let row = accounts.refresh("claude-ada").await.unwrap();
    assert!(!row.needs_login && row.last_error.is_none(), "{row:?}");
    let unsaved = accounts.unsaved("claude-ada").unwrap();
    assert!(unsaved.starts_with("tokens not saved: "), "{unsaved}");
    match accounts.for_request("claude-ada").await.unwrap() {
        subscription::Account::Claude { access } => assert_eq!(access.expose(), "fresh-1"),
        other => panic!("{other:?}"),
    }
    for _ in 0..100 {
        if accounts.unsaved("claude-ada").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accounts.unsaved("claude-ada"), None, "never saved");
    let stored = secrets
        .inner_store()
        .get("oauth:claude-ada")
        .unwrap()
        .unwrap();
    assert!(stored.expose().contains("fresh-1"));
    assert_eq!(f.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn missing_tokens_mean_log_in_again_and_are_shown_as_such() {
    let f = fixture().await;
    f.log_in(AccountKind::Qwen, tokens("q-1", None), None).await;
    // Tokens removed behind the gateway's back (keychain reset) and the cache cold.
    f.secrets.delete("oauth:qwen-ada").unwrap();
    let cold =
        Arc::new(Accounts::new(f.db.clone(), f.secrets.clone(), SideHttp::for_tests()).unwrap());
    let error = cold.for_request("qwen-ada").await.unwrap_err();
    assert!(error.needs_login(), "{error:?}");
    assert!(error.to_string().contains("log"), "{error}");
    let row = f.db.account("qwen-ada").unwrap().unwrap();
    assert!(row.needs_login);
    assert_eq!(cold.needing_login().unwrap().len(), 1);
    // Refreshing is not attempted for an account that needs a login.
    assert_eq!(cold.refresh_due().await, MAX_SLEEP);
    assert_eq!(f.refreshes.load(Ordering::SeqCst), 0);
}
