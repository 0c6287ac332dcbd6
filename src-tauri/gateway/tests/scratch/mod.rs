//! A scratch data folder for tests that start a gateway in-process: unique per test, removed
//! when the test ends (also when it fails).
#![allow(clippy::unwrap_used, reason = "tests")]
#![allow(dead_code, reason = "each test file uses part of it")]

use std::path::{Path, PathBuf};

pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, not yet created folder under the system's temp dir, named after `what`.
    pub fn new(what: &str) -> Self {
        Self(std::env::temp_dir().join(format!(
            "flexiproxy-{what}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
