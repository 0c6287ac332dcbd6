//! Reads a child process's CPU time and memory from `/proc` (Linux): `utime + stime` of
//! `/proc/PID/stat` for CPU time per request, `VmRSS` of `/proc/PID/status` for resident memory.
//! The process-level figures include every thread of the process.

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
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).map_err(BenchError::io(format!("reading {path}")))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| BenchError::Unexpected(format!("{path}: no VmRSS line")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_ok());
        assert!(rss_bytes(pid).is_ok_and(|rss| rss > 0));
    }
}
