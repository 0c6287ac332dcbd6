//! The subscription logins under way, by a random id: what the management API
//! (`server::account_views`) starts, shows, finishes with a pasted callback, and cancels.
//!
//! A login runs in a task of its own: it waits for the browser (`oauth::pkce_flow`, at most
//! [`PKCE_WAIT`]) or for the user to approve a device code (`oauth::device_flow`, until the
//! code expires), then hands the tokens to `accounts` (post-login set-up, keychain, pool) and
//! rebuilds the registry so the account serves the next request. The window reads the login's
//! state by polling; nothing here holds a token after the task passed it on.
//!
//! One login per account kind waits at a time: a new one cancels the earlier (whose listener
//! holds the kind's fixed callback port). Finished logins stay readable for [`KEEP_FINISHED`],
//! then are forgotten.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::accounts::oauth::device_flow::DeviceLogin;
use crate::accounts::oauth::pkce_flow::{PasteSlot, PkceLogin};
use crate::accounts::oauth::{AccountKind, Flow, OAuthError, TokenSet};
use crate::clock::now_ms;
use crate::state::AppState;
use crate::store::AccountRow;

/// How long a browser login waits for the browser (or a paste).
pub const PKCE_WAIT: Duration = Duration::from_secs(5 * 60);
/// How long a finished login stays readable.
pub const KEEP_FINISHED: Duration = Duration::from_secs(10 * 60);
/// How long a new login retries the callback port its kind's cancelled login just let go of.
const PORT_RELEASE: Duration = Duration::from_secs(2);

/// Where a login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// For the browser, a paste, or the device code's approval.
    Waiting,
    /// Tokens are being exchanged or the account set up.
    Finishing,
    Done,
    Failed,
    Cancelled,
}

impl Status {
    fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// What is shown of a login. No token is ever part of it.
#[derive(Debug, Clone)]
pub struct LoginView {
    pub id: String,
    pub kind: AccountKind,
    pub flow: Flow,
    pub status: Status,
    pub authorize_url: Option<String>,
    pub redirect_uri: Option<String>,
    pub user_code: Option<String>,
    pub verification_uri: Option<String>,
    pub verification_uri_complete: Option<String>,
    /// When the login stops waiting (ms since the epoch).
    pub expires_at: Option<i64>,
    /// Why it failed: the error's message for the user.
    pub error: Option<String>,
    /// The account the login added or logged in again, once done.
    pub account: Option<AccountRow>,
}

/// Why a login could not be started, continued or cancelled. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no login `{0}` is under way (finished logins are kept for 10 minutes)")]
    Unknown(String),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("{kind} logs in with a device code, not a browser callback; start it without paste")]
    NoPaste { kind: AccountKind },
    #[error("login `{0}` no longer waits for a callback; start a new login")]
    NotWaiting(String),
    #[error(
        "login `{0}` has its tokens already and is setting the account up; log the account out \
         instead once it is done"
    )]
    Finishing(String),
    #[error("a random login id could not be made: {0}")]
    Random(String),
}

struct Session {
    view: LoginView,
    /// The waiting task; aborting it stops the listener or the device polling.
    task: Option<tokio::task::AbortHandle>,
    paste: Option<PasteSlot>,
    finished: Option<Instant>,
    /// Follows `view.status`, for callers waiting for the outcome.
    status: tokio::sync::watch::Sender<Status>,
}

impl Session {
    fn settle(&mut self, status: Status, error: Option<String>, account: Option<AccountRow>) {
        self.view.status = status;
        self.view.error = error;
        self.view.account = account;
        self.task = None;
        self.paste = None;
        self.finished = Some(Instant::now());
        self.status.send_replace(status);
    }
}

/// The logins of one gateway. Shared through `state::Shared`.
#[derive(Default)]
pub struct Logins {
    sessions: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins").finish_non_exhaustive()
    }
}

/// The wait of one login, ending with its tokens.
type Wait = std::pin::Pin<Box<dyn Future<Output = Result<TokenSet, OAuthError>> + Send>>;

impl Logins {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| s.finished.is_none_or(|at| at.elapsed() < KEEP_FINISHED));
        sessions
    }

    /// Starts a login of `kind` with the kind's login endpoints and the side-path client.
    /// `paste` starts a browser login without a listener (the user pastes the callback URL);
    /// `relogin` names the account that gets the new tokens instead of a new account.
    pub async fn start(
        &self,
        state: &AppState,
        kind: AccountKind,
        relogin: Option<String>,
        paste: bool,
    ) -> Result<LoginView, LoginError> {
        let endpoints = state.accounts.login_endpoints(kind);
        let flow = endpoints.flow;
        if paste && flow == Flow::Device {
            return Err(LoginError::NoPaste { kind });
        }
        let replaced = self.cancel_kind(kind);
        let id = new_id()?;
        let mut view = LoginView {
            id: id.clone(),
            kind,
            flow,
            status: Status::Waiting,
            authorize_url: None,
            redirect_uri: None,
            user_code: None,
            verification_uri: None,
            verification_uri_complete: None,
            expires_at: None,
            error: None,
            account: None,
        };
        let (wait, paste_slot): (Wait, Option<PasteSlot>) = match flow {
            Flow::Pkce => {
                let login = if paste {
                    PkceLogin::start_paste_only(state.accounts.side_http().clone(), endpoints)?
                } else {
                    listen(state, &endpoints, replaced).await?
                };
                view.authorize_url = Some(login.authorize_url().to_owned());
                view.redirect_uri = Some(login.redirect_uri().to_owned());
                view.expires_at = Some(now_ms().saturating_add(millis(PKCE_WAIT)));
                let slot = login.paste_slot();
                (Box::pin(login.wait_for_callback(PKCE_WAIT)), Some(slot))
            }
            Flow::Device => {
                let login =
                    DeviceLogin::start(state.accounts.side_http().clone(), endpoints).await?;
                view.user_code = Some(login.user_code.clone());
                view.verification_uri = Some(login.verification_uri.clone());
                view.verification_uri_complete = login.verification_uri_complete.clone();
                view.expires_at = Some(now_ms().saturating_add(millis(login.expires_in)));
                (Box::pin(login.finish()), None)
            }
        };
        let mut sessions = self.sessions();
        // Spawned under the lock, so the task cannot report before its session exists.
        let task = tokio::spawn(run(state.clone(), id.clone(), kind, relogin, wait));
        sessions.insert(
            id,
            Session {
                view: view.clone(),
                task: Some(task.abort_handle()),
                paste: paste_slot,
                finished: None,
                status: tokio::sync::watch::Sender::new(Status::Waiting),
            },
        );
        Ok(view)
    }

    /// The login as it is now.
    pub fn get(&self, id: &str) -> Result<LoginView, LoginError> {
        self.sessions()
            .get(id)
            .map(|s| s.view.clone())
            .ok_or_else(|| LoginError::Unknown(id.to_owned()))
    }

    /// Hands a pasted callback URL to a waiting browser login and waits (at most `timeout`)
    /// for the outcome.
    pub async fn paste(
        &self,
        id: &str,
        pasted: &str,
        timeout: Duration,
    ) -> Result<LoginView, LoginError> {
        let mut status = {
            let sessions = self.sessions();
            let session = sessions
                .get(id)
                .ok_or_else(|| LoginError::Unknown(id.to_owned()))?;
            if session.view.flow == Flow::Device {
                return Err(LoginError::NoPaste {
                    kind: session.view.kind,
                });
            }
            let taken = session.view.status == Status::Waiting
                && session
                    .paste
                    .as_ref()
                    .is_some_and(|slot| slot.paste(pasted));
            if !taken {
                return Err(LoginError::NotWaiting(id.to_owned()));
            }
            session.status.subscribe()
        };
        // The answer is the login as it stands after the wait, finished or not.
        let _ = tokio::time::timeout(timeout, status.wait_for(|s| s.is_final())).await;
        self.get(id)
    }

    /// Cancels a waiting login (its listener or device polling stops), or forgets a finished
    /// one. A login already setting its account up is left to finish.
    pub fn cancel(&self, id: &str) -> Result<(), LoginError> {
        let mut sessions = self.sessions();
        let session = sessions
            .get_mut(id)
            .ok_or_else(|| LoginError::Unknown(id.to_owned()))?;
        match session.view.status {
            Status::Waiting => {
                if let Some(task) = session.task.take() {
                    task.abort();
                }
                session.settle(Status::Cancelled, None, None);
                tracing::info!(login = %id, kind = %session.view.kind, "login cancelled");
                Ok(())
            }
            Status::Finishing => Err(LoginError::Finishing(id.to_owned())),
            Status::Done | Status::Failed | Status::Cancelled => {
                sessions.remove(id);
                Ok(())
            }
        }
    }

    /// Cancels every waiting login (the gateway is stopping).
    pub fn cancel_all(&self) {
        for session in self.sessions().values_mut() {
            if session.view.status == Status::Waiting {
                if let Some(task) = session.task.take() {
                    task.abort();
                }
                session.settle(Status::Cancelled, None, None);
            }
        }
    }

    /// Cancels the kind's waiting logins; whether there was one.
    fn cancel_kind(&self, kind: AccountKind) -> bool {
        let mut cancelled = false;
        for session in self.sessions().values_mut() {
            if session.view.kind == kind && session.view.status == Status::Waiting {
                if let Some(task) = session.task.take() {
                    task.abort();
                }
                session.settle(Status::Cancelled, None, None);
                cancelled = true;
            }
        }
        cancelled
    }

    /// Marks the login as finishing; `false` when it was cancelled meanwhile.
    fn finishing(&self, id: &str) -> bool {
        let mut sessions = self.sessions();
        let Some(session) = sessions.get_mut(id) else {
            return false;
        };
        if session.view.status != Status::Waiting {
            return false;
        }
        session.view.status = Status::Finishing;
        session.paste = None;
        session.status.send_replace(Status::Finishing);
        true
    }

    fn settle(&self, id: &str, outcome: Result<AccountRow, String>) {
        let mut sessions = self.sessions();
        let Some(session) = sessions.get_mut(id) else {
            return;
        };
        if session.view.status.is_final() {
            return;
        }
        match outcome {
            Ok(row) => session.settle(Status::Done, None, Some(row)),
            Err(error) => session.settle(Status::Failed, Some(error), None),
        }
    }
}

/// Binds the kind's callback port. When this login just cancelled the kind's earlier one, its
/// listener may take a moment to let the port go: retry briefly before calling it busy.
async fn listen(
    state: &AppState,
    endpoints: &crate::accounts::oauth::Endpoints,
    replaced: bool,
) -> Result<PkceLogin, OAuthError> {
    let deadline = Instant::now() + PORT_RELEASE;
    loop {
        match PkceLogin::start(state.accounts.side_http().clone(), endpoints.clone()).await {
            Err(OAuthError::PortBusy { .. }) if replaced && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// The login's task: waits, then sets the account up and rebuilds the registry.
async fn run(state: AppState, id: String, kind: AccountKind, relogin: Option<String>, wait: Wait) {
    let tokens = match wait.await {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::info!(login = %id, %kind, %error, "login failed");
            state.logins.settle(&id, Err(error.to_string()));
            return;
        }
    };
    if !state.logins.finishing(&id) {
        return;
    }
    let outcome = match state.accounts.add(kind, tokens, relogin.as_deref()).await {
        Ok(row) => {
            if let Err(error) = state.reload_registry().await {
                // The account is stored; the next reload (any management change) serves it.
                tracing::warn!(login = %id, %error, "registry not rebuilt after a login");
            }
            tracing::info!(login = %id, account = %row.id, "logged in");
            Ok(row)
        }
        Err(error) => {
            tracing::warn!(login = %id, %kind, %error, "account set-up failed after login");
            Err(error.to_string())
        }
    };
    state.logins.settle(&id, outcome);
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// 16 hex characters from the system's random source.
fn new_id() -> Result<String, LoginError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| LoginError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
