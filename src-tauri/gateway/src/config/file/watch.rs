//! Watching the config file for edits: [`Watcher`] polls the path and reports content changes
//! (with the new content parsed by [`super::parse_bytes`]), and [`watch`] runs one on a tokio
//! timer for `lifecycle`, which applies each change. Polling rather than file-system events
//! keeps it working across editors' rename-over saves and on every platform alike.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{ConfigFileError, Declared, parse_bytes, read_capped};

/// Polls one config file and reports content changes. Each [`Watcher::poll`] stats the path
/// afresh (so an editor's write-to-temp-then-rename is seen) and reads it when it may have
/// changed; a change is reported only when the content's hash differs from what was last
/// reported. A file that is missing on one poll is given one more poll to come back (the gap in
/// some editors' saves) before it is reported as missing.
///
/// [`watch`] runs one on a timer; it is public so the polling rules can be driven step by step.
#[derive(Debug)]
pub struct Watcher {
    path: PathBuf,
    /// The stat of the last read, to skip reading an unchanged file.
    last_stat: Option<Stat>,
    /// When the last read happened (see [`Watcher::may_have_changed`]).
    last_read: Option<SystemTime>,
    reported: Option<Seen>,
    missing_since_last_poll: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    modified: Option<SystemTime>,
    len: u64,
    /// The inode on Unix: a rename-over gives a new one even when time and size match.
    inode: u64,
}

/// What was last reported: content by hash, or a failure by kind (so a persisting failure is
/// reported once).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Content([u8; 32]),
    Failure(String),
}

/// A file modified this close to (or after) the last read may have changed again within the
/// file system's timestamp granularity, so it is read again even if its stat looks the same.
const RACY_WINDOW: Duration = Duration::from_secs(2);

impl Watcher {
    /// Takes the file's current content as the baseline: only later changes are reported. Call
    /// it before the initial [`load`](super::load), so an edit landing between the two costs
    /// one redundant report instead of going unnoticed.
    pub fn new(path: PathBuf) -> Self {
        let mut watcher = Self {
            path,
            last_stat: None,
            last_read: None,
            reported: None,
            missing_since_last_poll: true,
        };
        // The baseline's outcome is what the caller's own load sees; it is not reported.
        let _ = watcher.poll();
        watcher
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the file once: `Some` when its content (or its readability) changed since the last
    /// report, with the parse result of the new content.
    pub fn poll(&mut self) -> Option<Result<Declared, ConfigFileError>> {
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.last_stat = None;
                if !self.missing_since_last_poll {
                    self.missing_since_last_poll = true;
                    return None;
                }
                let file = self.path.clone();
                return self.report_failure("missing", || ConfigFileError::Missing { file });
            }
            Err(source) => {
                self.last_stat = None;
                let (file, kind) = (self.path.clone(), format!("{:?}", source.kind()));
                return self.report_failure(&kind, || ConfigFileError::Read { file, source });
            }
        };
        self.missing_since_last_poll = false;
        let stat = Stat {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: inode(&metadata),
        };
        if !self.may_have_changed(stat) {
            return None;
        }
        let read_at = SystemTime::now();
        let bytes = match read_capped(&self.path) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.last_stat = None;
                let kind = match &error {
                    ConfigFileError::Read { source, .. } => format!("{:?}", source.kind()),
                    _ => "too large".to_owned(),
                };
                return self.report_failure(&kind, || error);
            }
        };
        self.last_stat = Some(stat);
        self.last_read = Some(read_at);
        let seen = Seen::Content(Sha256::digest(&bytes).into());
        if self.reported.as_ref() == Some(&seen) {
            return None;
        }
        self.reported = Some(seen);
        Some(parse_bytes(&self.path, bytes))
    }

    fn may_have_changed(&self, stat: Stat) -> bool {
        if self.last_stat != Some(stat) {
            return true;
        }
        match (stat.modified, self.last_read) {
            (Some(modified), Some(read)) => modified + RACY_WINDOW > read,
            _ => true,
        }
    }

    fn report_failure(
        &mut self,
        kind: &str,
        error: impl FnOnce() -> ConfigFileError,
    ) -> Option<Result<Declared, ConfigFileError>> {
        let seen = Seen::Failure(kind.to_owned());
        if self.reported.as_ref() == Some(&seen) {
            return None;
        }
        self.reported = Some(seen);
        Some(Err(error()))
    }
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_metadata: &std::fs::Metadata) -> u64 {
    0
}

/// The shortest polling interval; `tokio::time::interval` refuses zero.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Watches `path` on a tokio task, polling every `interval`, and calls `on_change` with the
/// parse result whenever the file's content changes (see [`Watcher`] for the rules). The
/// baseline is taken before this returns, so call it before the initial
/// [`load`](super::load). Must be called inside a tokio runtime. Dropping the handle stops the
/// task.
pub fn watch(
    path: PathBuf,
    interval: Duration,
    on_change: impl Fn(Result<Declared, ConfigFileError>) + Send + 'static,
) -> WatchHandle {
    let mut watcher = Watcher::new(path);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(MIN_INTERVAL));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate and the baseline was just taken.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            // File reads and parsing stay off the async workers.
            let polled = crate::blocking::run(move || {
                let change = watcher.poll();
                (watcher, change)
            })
            .await;
            let Ok((returned, change)) = polled else {
                tracing::error!("config file watcher stopped: its poll failed");
                return;
            };
            watcher = returned;
            if let Some(change) = change {
                on_change(change);
            }
        }
    });
    WatchHandle { task }
}

/// Stops the watching task when dropped.
#[derive(Debug)]
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// Stops watching (the same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a failed unwrap or panic is a failed test, with its location"
)]
mod tests {
    use super::*;
    use crate::config::file::tests::scratch;

    fn config_with(provider: &str) -> String {
        format!("[[providers]]\nid = \"{provider}\"\nurl = \"http://127.0.0.1:1\"\n")
    }

    fn provider_of(change: Option<Result<Declared, ConfigFileError>>) -> String {
        match change {
            Some(Ok(declared)) => declared.providers[0].id.clone(),
            other => panic!("expected a valid change, got {other:?}"),
        }
    }

    /// Replaces the file the way editors that save atomically do.
    fn rename_over(path: &Path, text: &str) {
        let temp = path.with_extension("toml.tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }

    /// A watcher on a `config.toml` that declares provider `a`, in a fresh scratch folder;
    /// returns the folder, the file and the watcher.
    fn watching(name: &str) -> (PathBuf, PathBuf, Watcher) {
        let dir = scratch(name);
        let path = dir.join("config.toml");
        std::fs::write(&path, config_with("a")).unwrap();
        let watcher = Watcher::new(path.clone());
        (dir, path, watcher)
    }

    #[test]
    fn watcher_reports_content_changes_only() {
        let (dir, path, mut watcher) = watching("poll");
        assert!(watcher.poll().is_none(), "the baseline is not a change");

        std::fs::write(&path, config_with("a")).unwrap();
        assert!(watcher.poll().is_none(), "same content rewritten");

        std::fs::write(&path, config_with("b")).unwrap();
        assert_eq!(provider_of(watcher.poll()), "b");
        assert!(watcher.poll().is_none());

        std::fs::write(&path, "[[providers]]\nid = \"b\"\n").unwrap();
        match watcher.poll() {
            Some(Err(e)) => assert!(e.to_string().contains("missing field `url`"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(
            watcher.poll().is_none(),
            "a persisting bad edit is reported once"
        );

        std::fs::write(&path, config_with("b")).unwrap();
        assert_eq!(
            provider_of(watcher.poll()),
            "b",
            "fixed back to the last good content"
        );

        rename_over(&path, config_with("b").as_str());
        assert!(
            watcher.poll().is_none(),
            "rename-over with the same content"
        );
        rename_over(&path, config_with("c").as_str());
        assert_eq!(provider_of(watcher.poll()), "c");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn watcher_tolerates_a_brief_absence() {
        let (dir, path, mut watcher) = watching("absence");

        std::fs::remove_file(&path).unwrap();
        assert!(watcher.poll().is_none(), "missing once: maybe mid-save");
        std::fs::write(&path, config_with("a")).unwrap();
        assert!(watcher.poll().is_none(), "back with the same content");

        std::fs::remove_file(&path).unwrap();
        assert!(watcher.poll().is_none());
        match watcher.poll() {
            Some(Err(ConfigFileError::Missing { file })) => assert_eq!(file, path),
            other => panic!("{other:?}"),
        }
        assert!(watcher.poll().is_none(), "reported once");
        std::fs::write(&path, config_with("a")).unwrap();
        assert_eq!(
            provider_of(watcher.poll()),
            "a",
            "back after being reported missing"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn watcher_starting_without_a_file_reports_its_arrival() {
        let dir = scratch("arrival");
        let path = dir.join("config.json");
        let mut watcher = Watcher::new(path.clone());
        assert!(
            watcher.poll().is_none(),
            "still missing: the caller's load already said so"
        );
        std::fs::write(&path, r#"{"providers": [{"id": "j", "url": "http://h"}]}"#).unwrap();
        assert_eq!(provider_of(watcher.poll()), "j");
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn next(
        changes: &mut tokio::sync::mpsc::UnboundedReceiver<Result<Declared, ConfigFileError>>,
    ) -> Option<Result<Declared, ConfigFileError>> {
        tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn watch_task_calls_back_on_changes_and_stops_when_dropped() {
        let dir = scratch("task");
        let path = dir.join("config.toml");
        std::fs::write(&path, config_with("a")).unwrap();
        let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let handle = watch(path.clone(), Duration::from_millis(20), move |change| {
            let _ = sender.send(change);
        });

        std::fs::write(&path, config_with("a")).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(changes.try_recv().is_err(), "same content: no call");

        std::fs::write(&path, config_with("b")).unwrap();
        assert_eq!(provider_of(next(&mut changes).await), "b");

        std::fs::write(&path, "[[providers]]\nid = 5\n").unwrap();
        assert!(matches!(next(&mut changes).await, Some(Err(_))));

        rename_over(&path, &config_with("c"));
        assert_eq!(provider_of(next(&mut changes).await), "c");

        drop(handle);
        std::fs::write(&path, config_with("d")).unwrap();
        // The aborted task drops the callback and with it the sender.
        assert!(
            next(&mut changes).await.is_none(),
            "no calls after the handle is dropped"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
