//! The process's open-file limit, raised to the hard limit at start, and the connection cap
//! derived from it, so a pile of client sockets (slow, half-open or hostile) meets the cap in
//! `server::listener` long before `accept` fails for want of file descriptors or the database
//! cannot open its journal. `lifecycle` calls [`raise`] once per start.

/// File descriptors kept aside for everything but client connections: the database and its
/// WAL, logs, the upstream pool's idle sockets, OAuth callback listeners, config watching.
const RESERVED: u64 = 256;
/// The cap never goes above this, however high the limit: each connection costs memory too.
const MAX_CAP: u64 = 10_000;
/// Nor below this, however low the limit.
const MIN_CAP: u64 = 32;

/// The open-file limit after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit now in force.
    pub soft: u64,
    /// The soft limit before, when it was raised.
    pub raised_from: Option<u64>,
}

impl OpenFiles {
    /// How many client connections fit: each may hold one upstream socket too, so half of
    /// what is left once [`RESERVED`] is set aside.
    pub fn connection_cap(self) -> usize {
        let cap = (self.soft.saturating_sub(RESERVED) / 2).clamp(MIN_CAP, MAX_CAP);
        usize::try_from(cap).unwrap_or(usize::MAX)
    }
}

/// Raises the soft open-file limit to the hard limit (on macOS to what the kernel allows a
/// process) and says what it is now. `None` where there is no such limit (Windows) or it
/// cannot be read.
pub fn raise() -> Option<OpenFiles> {
    #[cfg(unix)]
    {
        let (before, _hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok(limits) => limits,
            Err(error) => {
                tracing::warn!(%error, "cannot read the open-file limit");
                return None;
            }
        };
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(soft) => Some(OpenFiles {
                soft,
                raised_from: (soft > before).then_some(before),
            }),
            Err(error) => {
                tracing::warn!(%error, limit = before, "cannot raise the open-file limit");
                Some(OpenFiles {
                    soft: before,
                    raised_from: None,
                })
            }
        }
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_upstream_sockets_and_stays_within_bounds() {
        let cap = |soft| {
            OpenFiles {
                soft,
                raised_from: None,
            }
            .connection_cap()
        };
        assert_eq!(cap(1024), 384);
        assert_eq!(cap(20_000), 9_872);
        assert_eq!(cap(1 << 20), 10_000);
        assert_eq!(cap(100), 32);
    }

    #[cfg(unix)]
    #[test]
    fn raising_reaches_the_hard_limit() {
        let raised = raise().unwrap();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(raised.soft, soft);
        // macOS caps the soft limit below an "unlimited" hard one.
        if cfg!(target_os = "linux") {
            assert_eq!(soft, hard);
        }
    }
}
