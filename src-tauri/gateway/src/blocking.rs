//! Running blocking work — SQLite, the keychain (which talks to D-Bus), files — off the async
//! threads, so one slow disk or a keychain prompt never stalls requests in flight.
//!
//! [`run`] is the one place such work is spawned and the one place its failure to finish (a
//! panic inside it) becomes an error, [`TaskFailed`]; each layer's error type converts from it
//! so callers write `blocking::run(…).await??`.

/// Blocking work that did not finish: it panicked, or the runtime shut down under it.
#[derive(Debug, thiserror::Error)]
#[error("a background task of the gateway failed ({0}); this is a gateway bug, please report it")]
pub struct TaskFailed(String);

/// Runs `work` on the blocking thread pool and waits for its result.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailed> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| TaskFailed(e.to_string()))
}
