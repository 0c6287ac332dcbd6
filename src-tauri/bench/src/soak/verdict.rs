//! The soak's pass/fail rules, and why each bound is where it is.
//!
//! - **No errors**: every stream answered 200, ended with its protocol's last event, in time.
//! - **RSS flat**: the RSS when the load stops may exceed the RSS after the warm-up (both under
//!   the same load) by at most `factor` × plus `slack` MB. Under a steady load the live data is
//!   constant; what still moves without a leak is bounded and settles: glibc's per-thread arenas
//!   keep freed chunks (fragmentation creeps up to a plateau), SQLite's page cache fills to its
//!   2 MB per connection as the usage table grows, and buffers grow to the largest message seen.
//!   A leak grows with the number of streams instead: 1 KB per stream over a 10-minute run of
//!   ~140,000 streams is 140 MB, far outside 1.5 × ~50 MB + 8 MB. The summary prints the leak per
//!   stream this run could have caught.
//! - **No fd growth**: under load, the fd count at the end is within `max(16, streams / 20)` of
//!   the count after the warm-up (client sockets and pooled upstream connections are steady;
//!   the slack is the connections reopening at that instant); after the load, the count comes
//!   back to within `fd_slack` of the count before the load (idle pooled upstream connections
//!   are dropped after 90 s, swept every 90 s, so this may take up to about 180 s).
//! - **Every completed stream recorded**: after the gateway's graceful shutdown, the usage rows
//!   with outcome `completed` equal the streams the clients saw complete.
//! - **Graceful stop**: the gateway exits with status 0 after SIGTERM, within 30 s.

use super::Summary;

/// Bounds of the checks (flags of `flexiproxy-bench soak`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Bounds {
    /// RSS check: end ≤ start × this + --rss-slack-mb.
    #[arg(long, default_value_t = 1.5)]
    pub rss_factor: f64,
    /// RSS check: megabytes allowed on top of start × --rss-factor.
    #[arg(long, default_value_t = 8)]
    pub rss_slack_mb: u64,
    /// Fd check: fds after the load may exceed the count before it by this many.
    #[arg(long, default_value_t = 8)]
    pub fd_slack: usize,
}

impl Bounds {
    /// Highest RSS the end reading may have, given the start reading.
    pub fn rss_ceiling(&self, start: u64) -> u64 {
        let factor = self.rss_factor.clamp(1.0, 100.0);
        (start as f64 * factor) as u64 + self.rss_slack_mb.min(1 << 20) * 1_000_000
    }

    /// How many more fds the end of the load may show than the start of it.
    pub fn fd_growth(streams: usize) -> usize {
        (streams / 20).max(16)
    }
}

/// Every check that failed, as one sentence each; empty when the soak passed.
pub fn judge(summary: &Summary, bounds: &Bounds) -> Vec<String> {
    let mut failures = Vec::new();
    let errors = summary.error_total();
    if errors > 0 {
        failures.push(format!("{errors} streams failed"));
    }
    if !summary.clients_returned {
        failures.push("some clients had not returned well after the load stopped".to_owned());
    }
    if summary.completed == 0 {
        failures.push("no stream completed".to_owned());
    }
    let ceiling = bounds.rss_ceiling(summary.start.status.rss_bytes);
    if summary.end.status.rss_bytes > ceiling {
        failures.push(format!(
            "RSS grew from {:.1} MB after the warm-up to {:.1} MB at the end (bound {:.1} MB)",
            mb(summary.start.status.rss_bytes),
            mb(summary.end.status.rss_bytes),
            mb(ceiling)
        ));
    }
    let growth = Bounds::fd_growth(summary.streams);
    if summary.end.fds > summary.start.fds + growth {
        failures.push(format!(
            "open fds grew under load from {} to {} (slack {growth})",
            summary.start.fds, summary.end.fds
        ));
    }
    if summary.fds_back.is_none() {
        failures.push(format!(
            "open fds did not come back to {} + {} within {} s of the load's end (last: {})",
            summary.idle.fds,
            bounds.fd_slack,
            summary.fd_wait.as_secs(),
            summary.last_fds
        ));
    }
    match &summary.usage {
        Ok(rows) if rows.completed() != summary.completed => failures.push(format!(
            "{} usage rows say completed for {} streams the clients saw complete",
            rows.completed(),
            summary.completed
        )),
        Ok(_) => {}
        Err(err) => failures.push(format!("usage rows unreadable: {err}")),
    }
    if let Err(err) = &summary.shutdown {
        failures.push(format!("the gateway did not stop cleanly: {err}"));
    }
    failures
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::usage_rows::UsageRows;
    use super::super::{LogLines, Phase, Sample, open_files};
    use super::*;
    use crate::procfs::Status;
    use crate::upstream::StreamPacing;

    const BOUNDS: Bounds = Bounds {
        rss_factor: 1.5,
        rss_slack_mb: 8,
        fd_slack: 8,
    };

    fn sample(rss_mb: u64, fds: usize) -> Sample {
        Sample {
            at: Duration::ZERO,
            phase: Phase::Load,
            completed: 0,
            errors: 0,
            in_flight: 0,
            status: Status {
                rss_bytes: rss_mb * 1_000_000,
                hwm_bytes: rss_mb * 1_000_000,
                anon_bytes: Some(rss_mb * 500_000),
                threads: 4,
            },
            fds,
            cpu: Duration::ZERO,
        }
    }

    /// A clean 1,000-stream run: 20 fds idle, ~2,000 under load, back to 18 afterwards.
    fn passing() -> Summary {
        Summary {
            command: String::new(),
            streams: 1000,
            duration: Duration::from_secs(600),
            warmup: Duration::from_secs(60),
            gateway: String::new(),
            pacing: StreamPacing {
                chunks: 20,
                interval_ms: 200,
                first_byte_delay_ms: 100,
            },
            limit: open_files::Raised {
                before: 1024,
                now: 2506,
                hard: 4096,
            },
            gateway_nofile: Some(2506),
            idle: sample(10, 20),
            start: sample(50, 2010),
            end: sample(60, 2015),
            after: sample(40, 1020),
            settle: Duration::from_secs(30),
            peak_rss: 62_000_000,
            max_fds: 2020,
            max_threads: 5,
            fds_back: Some((Duration::from_secs(120), 18)),
            fd_wait: Duration::from_secs(200),
            last_fds: 18,
            started: 100_004,
            completed: 100_004,
            per_flavour: Vec::new(),
            connections: 30_000,
            bytes: 1 << 30,
            errors: vec![("status", 0), ("timeout", 0)],
            error_messages: Vec::new(),
            clients_returned: true,
            shutdown: Ok(Duration::from_millis(300)),
            usage: Ok(UsageRows {
                total: 100_004,
                by_outcome: vec![("completed".to_owned(), 100_004)],
            }),
            log: LogLines::default(),
        }
    }

    #[test]
    fn a_clean_run_passes() {
        assert_eq!(judge(&passing(), &BOUNDS), Vec::<String>::new());
    }

    #[test]
    fn one_error_fails() {
        let mut run = passing();
        run.errors[1].1 = 1;
        let failures = judge(&run, &BOUNDS);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("1 streams failed"));
    }

    #[test]
    fn rss_beyond_one_and_a_half_times_plus_8_mb_fails() {
        let mut run = passing();
        // 50 MB × 1.5 + 8 MB = 83 MB: 83 passes, 84 fails.
        run.end = sample(83, 2015);
        assert!(judge(&run, &BOUNDS).is_empty());
        run.end = sample(84, 2015);
        let failures = judge(&run, &BOUNDS);
        assert!(
            failures.len() == 1 && failures[0].contains("RSS grew"),
            "{failures:?}"
        );
    }

    #[test]
    fn fds_growing_under_load_or_not_coming_back_fail() {
        let mut run = passing();
        run.end = sample(60, 2010 + 51);
        assert!(judge(&run, &BOUNDS)[0].contains("grew under load"));
        let mut run = passing();
        run.fds_back = None;
        run.last_fds = 1020;
        assert!(judge(&run, &BOUNDS)[0].contains("did not come back"));
    }

    #[test]
    fn a_lost_usage_row_or_an_unclean_stop_fails() {
        let mut run = passing();
        run.usage = Ok(UsageRows {
            total: 100_004,
            by_outcome: vec![
                ("completed".to_owned(), 100_003),
                ("client_closed".to_owned(), 1),
            ],
        });
        assert!(judge(&run, &BOUNDS)[0].contains("usage rows"));
        let mut run = passing();
        run.shutdown = Err("killed".to_owned());
        assert!(judge(&run, &BOUNDS)[0].contains("did not stop cleanly"));
    }
}
