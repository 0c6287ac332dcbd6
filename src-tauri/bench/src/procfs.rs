//! Reads a child process's CPU time and memory from `/proc` (Linux): `utime + stime` of
//! `/proc/PID/stat` for CPU time per request, `VmRSS` of `/proc/PID/status` for resident memory,
//! and for the soak ([`crate::soak`]) its peak (`VmHWM`), thread count and open file descriptors
//! (the entries of `/proc/PID/fd`). The process-level figures include every thread of the process.

use std::time::Duration;

use crate::BenchError;

/// Clock ticks per second of `/proc/PID/stat` times. `USER_HZ` is fixed at 100 in the Linux ABI
/// on every architecture this runs on; reading `sysconf` would need `unsafe` or a new dependency.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time consumed so far by process `pid` (all its threads).
pub fn cpu_time(pid: u32) -> Result<Duration, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(BenchError::io(format!("reading {path}")))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| BenchError::Unexpected(format!("{path}: no ')' in {stat:?}")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at indices 11 and 12.
    let tick = |index: usize| -> Result<u64, BenchError> {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| BenchError::Unexpected(format!("{path}: no field {index} in {stat:?}")))
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, BenchError> {
    Ok(status(pid)?.rss_bytes)
}

/// What the soak follows over time in `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Resident set size now (`VmRSS`), in bytes.
    pub rss_bytes: u64,
    /// Peak resident set size since the process started (`VmHWM`), in bytes.
    pub hwm_bytes: u64,
    /// Of the RSS, the anonymous part (`RssAnon`: the heap, not the mapped binary or files),
    /// where a leak shows; `None` on kernels without the line.
    pub anon_bytes: Option<u64>,
    /// Threads of the process.
    pub threads: u64,
}

/// Memory and thread count of process `pid`.
pub fn status(pid: u32) -> Result<Status, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(BenchError::io(format!("reading {path}")))?;
    parse_status(&text)
        .ok_or_else(|| BenchError::Unexpected(format!("{path}: no VmRSS, VmHWM or Threads line")))
}

fn parse_status(text: &str) -> Option<Status> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(Status {
        rss_bytes: field("VmRSS")? * 1024,
        hwm_bytes: field("VmHWM")? * 1024,
        anon_bytes: field("RssAnon").map(|kib| kib * 1024),
        threads: field("Threads")?,
    })
}

/// Open file descriptors of process `pid` (sockets, files, pipes, epoll and event fds).
pub fn open_fds(pid: u32) -> Result<usize, BenchError> {
    let path = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&path).map_err(BenchError::io(format!("listing {path}")))?;
    // An fd closed between the listing and the entry's read shows up as an error: not open.
    Ok(entries.filter(Result::is_ok).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_ok());
        assert!(rss_bytes(pid).is_ok_and(|rss| rss > 0));
        let now = status(pid).unwrap();
        assert!(
            now.hwm_bytes >= now.rss_bytes && now.threads >= 1,
            "{now:?}"
        );
    }

    #[test]
    fn opening_a_file_shows_as_one_more_fd() {
        let pid = std::process::id();
        let before = open_fds(pid).unwrap_or_default();
        let file = std::fs::File::open("/proc/self/status");
        let during = open_fds(pid).unwrap_or_default();
        drop(file);
        // Other tests run in parallel threads and open files too: at least one more, then fewer.
        assert!(during > before, "{before} -> {during}");
    }

    #[test]
    fn status_fields_are_read_in_kilobytes() {
        let text =
            "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 512 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Some(Status {
                rss_bytes: 1024 * 1024,
                hwm_bytes: 2048 * 1024,
                anon_bytes: Some(512 * 1024),
                threads: 3
            })
        );
        assert_eq!(parse_status("VmRSS:\t1 kB\n"), None);
    }
}
