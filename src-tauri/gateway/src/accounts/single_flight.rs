//! One run of a piece of work per key at a time, in a task of its own, whose result every
//! caller that asks meanwhile shares.
//!
//! Used where a piece of work must not be done twice at once and must not be cut short by the
//! caller going away: an OAuth refresh (`oauth::token_store`: a provider that rotates refresh
//! tokens revokes the old one on first use, so a second refresh, or a refresh whose answer is
//! dropped, logs the account out) and a Copilot token mint (`subscription::copilot`). The
//! work runs in a spawned task: a caller whose future is dropped (a client that hung up) stops
//! waiting, the work goes on, and the next caller finds its effect. No lock is held while the
//! work runs; the map of runs is locked only to look up, start or forget one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

/// The task of a run ended without a result (it panicked, or the runtime is shutting down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the task doing it stopped before it finished ({0})")]
pub struct TaskLost(String);

type SharedRun<T> = Shared<BoxFuture<'static, Result<T, TaskLost>>>;

struct Running<T> {
    id: u64,
    result: SharedRun<T>,
}

/// The runs under way, by key.
pub struct SingleFlight<K, T> {
    running: Arc<Mutex<HashMap<K, Running<T>>>>,
    next_id: AtomicU64,
}

impl<K, T> Default for SingleFlight<K, T> {
    fn default() -> Self {
        Self {
            running: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<K, T> std::fmt::Debug for SingleFlight<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

impl<K, T> SingleFlight<K, T>
where
    K: Eq + Hash + Clone + Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// The result of the run for `key`: the one under way, or a new one of `work()` spawned
    /// now. Must be called inside a Tokio runtime.
    pub fn run<F, Fut>(
        &self,
        key: K,
        work: F,
    ) -> impl Future<Output = Result<T, TaskLost>> + Send + 'static
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(run) = running.get(&key) {
            return run.result.clone();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let registry = Arc::clone(&self.running);
        let own_key = key.clone();
        let work = work();
        // Spawned while the map is locked: the task cannot forget its run before it is entered.
        let task = tokio::spawn(async move {
            let result = work.await;
            // Forgotten before the result is handed out, so a caller that has the result and
            // asks again starts a new run instead of getting this one's.
            let mut running = registry.lock().unwrap_or_else(PoisonError::into_inner);
            if running.get(&own_key).is_some_and(|run| run.id == id) {
                running.remove(&own_key);
            }
            result
        });
        let result = async move { task.await.map_err(|e| TaskLost(e.to_string())) }
            .boxed()
            .shared();
        running.insert(
            key,
            Running {
                id,
                result: result.clone(),
            },
        );
        result
    }

    /// Whether a run for `key` is under way.
    #[cfg(test)]
    pub fn is_running(&self, key: &K) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn callers_meanwhile_share_one_run_and_a_later_caller_starts_another() {
        let flights = Arc::new(SingleFlight::<&str, usize>::default());
        let started = Arc::new(AtomicUsize::new(0));
        let work = |started: Arc<AtomicUsize>| {
            move || async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                started.fetch_add(1, Ordering::SeqCst) + 1
            }
        };
        let a = flights.run("k", work(started.clone()));
        let b = flights.run("k", work(started.clone()));
        let other = flights.run("other", work(started.clone()));
        assert_eq!(a.await.unwrap(), b.await.unwrap());
        other.await.unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert!(!flights.is_running(&"k"));
        flights.run("k", work(started.clone())).await.unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_stop_the_run() {
        let flights = SingleFlight::<(), ()>::default();
        let done = Arc::new(AtomicUsize::new(0));
        let finished = done.clone();
        let waiting = tokio::spawn(flights.run((), move || async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            finished.fetch_add(1, Ordering::SeqCst);
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 1, "the run was cut short");
        assert!(!flights.is_running(&()));
    }
}
