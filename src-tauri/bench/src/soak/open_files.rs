//! The open-files limit the soak needs: 1,000 streams are 1,000 client sockets here, 2,000 in
//! the gateway (each client's socket and its upstream twin) and 1,000 in the upstream, while a
//! common default soft limit is 1,024. The soak raises its own soft limit (up to the hard limit,
//! with the `rlimit` crate: this crate forbids `unsafe`) before it starts any child, so the
//! gateway and the upstream inherit it; it also reads the gateway's own limit from `/proc`, to
//! report what the gateway really ran with (it may raise its limit itself).

use crate::BenchError;

/// The soft limit before and after [`raise`], and the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// Soft limit found.
    pub before: u64,
    /// Soft limit now.
    pub now: u64,
    /// Hard limit (the ceiling an unprivileged process can raise to).
    pub hard: u64,
}

/// Raises this process's soft open-files limit to at least `needed`; fails when the hard limit
/// is lower, saying what to do.
#[cfg(unix)]
pub fn raise(needed: u64) -> Result<Raised, BenchError> {
    use rlimit::Resource;
    let (before, hard) = Resource::NOFILE
        .get()
        .map_err(BenchError::io("reading the open-files limit"))?;
    if before >= needed {
        return Ok(Raised {
            before,
            now: before,
            hard,
        });
    }
    if hard < needed {
        return Err(BenchError::Unexpected(format!(
            "the soak needs {needed} open files but the hard limit is {hard}: raise it \
             (`ulimit -Hn {needed}` as root, or LimitNOFILE in a systemd unit) or use fewer --streams"
        )));
    }
    Resource::NOFILE
        .set(needed, hard)
        .map_err(BenchError::io(format!(
            "raising the open-files soft limit from {before} to {needed}"
        )))?;
    Ok(Raised {
        before,
        now: needed,
        hard,
    })
}

/// Raising limits is a Unix notion; the soak reads `/proc` anyway and runs on Linux only.
#[cfg(not(unix))]
pub fn raise(_needed: u64) -> Result<Raised, BenchError> {
    Err(BenchError::Unexpected(
        "the soak reads /proc and runs on Linux only".to_owned(),
    ))
}

/// The soft open-files limit of process `pid`, from `/proc/PID/limits` (`None`: unlimited or
/// unreadable).
#[cfg(target_os = "linux")]
pub fn of_process(pid: u32) -> Option<u64> {
    let pid = i32::try_from(pid).ok()?;
    rlimit::ProcLimits::read_process(pid)
        .ok()?
        .max_open_files?
        .soft_limit
}

#[cfg(not(target_os = "linux"))]
pub fn of_process(_pid: u32) -> Option<u64> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_limit_already_high_enough_is_left_alone() {
        let raised = raise(16).unwrap();
        assert_eq!(raised.before, raised.now);
        assert!(raised.now >= 16 && raised.hard >= raised.now);
        assert_eq!(of_process(std::process::id()), Some(raised.now));
    }

    #[test]
    fn a_need_beyond_the_hard_limit_is_refused_with_the_fix() {
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        if hard == rlimit::INFINITY {
            // Nothing is beyond an unlimited hard limit (and raising to it would succeed).
            return;
        }
        let err = raise(u64::MAX).unwrap_err().to_string();
        assert!(
            err.contains("hard limit") && err.contains("--streams"),
            "{err}"
        );
    }
}
