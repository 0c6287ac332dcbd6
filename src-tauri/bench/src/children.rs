//! The servers under test as child processes of this executable (`current_exe()` with the
//! `upstream`, `floor` or `gateway` subcommand), so that each has its own process for CPU and
//! memory readings and its own runtime, as in real use. The soak may run the shipped `flexiproxy`
//! binary instead of the `gateway` subcommand ([`Spec::program`]).
//!
//! Each child binds port 0 and prints one line ending in `http://127.0.0.1:PORT` on stdout (the
//! gateway's `FlexiProxy gateway listening on ...`); the address is read from that line. Its
//! stderr goes to a log file in the run's scratch folder, shown when it fails. A child is sent
//! SIGTERM (then SIGKILL) when its handle is dropped, so no server outlives the bench.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::BenchError;

/// How long a child may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What to start: the subcommand and its flags, plus environment changes.
#[derive(Debug)]
pub struct Spec {
    /// Label: `upstream`, `floor` or `gateway`.
    pub name: &'static str,
    /// Executable to run; `None` is this one (with a subcommand as the first argument).
    pub program: Option<PathBuf>,
    /// Arguments after the executable (subcommand first).
    pub args: Vec<OsString>,
    /// Variables to set.
    pub env: Vec<(String, String)>,
    /// Variables to unset (so the caller's environment cannot change what is measured).
    pub env_remove: Vec<&'static str>,
}

/// A running child server.
#[derive(Debug)]
pub struct ChildServer {
    /// Label: `upstream`, `floor` or `gateway`.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr, as a file.
    pub stderr_log: PathBuf,
    child: Child,
}

/// Makes a fresh scratch folder for one `command` (`bench`, `soak`) under the system's temporary
/// folder: the children's logs and the gateway's data folder live there, and the caller keeps
/// it when the command fails, so the logs can be read.
pub fn scratch_folder(command: &str) -> Result<PathBuf, BenchError> {
    let scratch = std::env::temp_dir().join(format!(
        "flexiproxy-{command}-{}-{}",
        std::process::id(),
        crate::run::random_hex(1)
    ));
    std::fs::create_dir_all(&scratch)
        .map_err(BenchError::io(format!("creating {}", scratch.display())))?;
    Ok(scratch)
}

impl ChildServer {
    /// Starts `spec` and waits (bounded) for its address line.
    pub fn start(spec: &Spec, log_dir: &Path) -> Result<Self, BenchError> {
        let exe = match &spec.program {
            Some(program) => program.clone(),
            None => std::env::current_exe().map_err(BenchError::io("finding this executable"))?,
        };
        let stderr_log = log_dir.join(format!("{}.stderr.log", spec.name));
        let stderr = File::create(&stderr_log)
            .map_err(BenchError::io(format!("creating {}", stderr_log.display())))?;
        let mut command = Command::new(exe);
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for name in &spec.env_remove {
            command.env_remove(name);
        }
        for (name, value) in &spec.env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .map_err(BenchError::io(format!("starting the {}", spec.name)))?;
        let stdout = child.stdout.take();
        let mut server = Self {
            name: spec.name,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr_log,
            child,
        };
        let Some(stdout) = stdout else {
            return Err(server.failed("its stdout was not captured"));
        };
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = sender.send(first);
            // Keep draining so later output can never block the child on a full pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => return Err(server.failed(&format!("reading its stdout: {err}"))),
            Err(_) => {
                return Err(
                    server.failed(&format!("printed no address line within {START_TIMEOUT:?}"))
                );
            }
        };
        server.addr = match parse_address(&line) {
            Some(addr) => addr,
            None => {
                return Err(server.failed(&format!(
                    "first stdout line is not `... http://127.0.0.1:PORT`: {:?}",
                    line.trim_end()
                )));
            }
        };
        Ok(server)
    }

    /// Process id, for `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the child has exited (it should run until dropped).
    pub fn ensure_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.failed(&format!("exited early ({status})"))),
            Err(err) => Err(self.failed(&format!("cannot be polled: {err}"))),
        }
    }

    /// Size of what it wrote to stderr so far (a gateway logging every request shows here).
    pub fn stderr_bytes(&self) -> u64 {
        std::fs::metadata(&self.stderr_log).map_or(0, |meta| meta.len())
    }

    /// An error naming this child, with the tail of its stderr.
    pub fn failed(&self, message: &str) -> BenchError {
        let log = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let message = if tail.is_empty() {
            message.to_owned()
        } else {
            format!(
                "{message}\n  its stderr ends with:\n    {}",
                tail.join("\n    ")
            )
        };
        BenchError::Child {
            name: self.name.to_owned(),
            message,
        }
    }

    /// Sends SIGTERM and waits up to `within` for the child to exit on its own (the gateway
    /// then finishes its requests and writes every usage row); kills it when it overstays.
    /// Returns its exit status, or an error when it had to be killed.
    pub fn terminate(&mut self, within: Duration) -> Result<ExitStatus, BenchError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        // `kill(1)` rather than libc, as this crate forbids `unsafe`.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(err) => return Err(self.failed(&format!("cannot be polled: {err}"))),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(self.failed(&format!(
            "did not exit within {within:?} of SIGTERM; killed"
        )))
    }

    fn stop(&mut self) {
        // SIGTERM first: the gateway shuts down gracefully on it (flushes usage).
        let _ = self.terminate(STOP_TIMEOUT);
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `127.0.0.1:PORT` at the end of a `... http://127.0.0.1:PORT` line.
fn parse_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.trim().rsplit_once("http://")?;
    let addr: SocketAddr = rest.trim_end_matches('/').parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lines_are_parsed() {
        assert_eq!(
            parse_address("FlexiProxy gateway listening on http://127.0.0.1:8317\n"),
            Some(SocketAddr::from(([127, 0, 0, 1], 8317)))
        );
        assert_eq!(parse_address("listening on http://10.0.0.1:80"), None);
        assert_eq!(parse_address("nothing here"), None);
    }
}
