//! What the soak prints: a table row per reading of the gateway while it runs (on stdout, so the
//! table and the summary can be kept together with `| tee`), then the summary and the verdict.
//! Printing is this module's purpose, so the workspace's print lints are allowed here.
#![allow(
    clippy::print_stdout,
    reason = "printing the soak's table and summary is what this module is for"
)]

use std::fmt::{Display, Write as _};

use super::verdict::Bounds;
use super::{Sample, Summary};

/// The table's column titles.
pub fn header() {
    println!("{}", header_line());
}

fn header_line() -> String {
    format!(
        "{:>7} {:<7} {:>9} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>6} {:>7} {:>6}",
        "time s",
        "phase",
        "streams",
        "per s",
        "errors",
        "in flight",
        "RSS MB",
        "anon MB",
        "peak MB",
        "fds",
        "threads",
        "CPU %"
    )
}

/// One reading; rates and CPU are over the time since `previous`.
pub fn row(sample: &Sample, previous: Option<&Sample>) {
    println!("{}", row_line(sample, previous));
}

fn row_line(sample: &Sample, previous: Option<&Sample>) -> String {
    let (rate, cpu) = match previous {
        Some(previous) if sample.at > previous.at => {
            let secs = (sample.at - previous.at).as_secs_f64();
            (
                format!(
                    "{:.1}",
                    sample.completed.saturating_sub(previous.completed) as f64 / secs
                ),
                format!(
                    "{:.0}",
                    sample.cpu.saturating_sub(previous.cpu).as_secs_f64() / secs * 100.0
                ),
            )
        }
        _ => ("—".to_owned(), "—".to_owned()),
    };
    format!(
        "{:>7.1} {:<7} {:>9} {:>8} {:>6} {:>9} {:>8.1} {:>8} {:>8.1} {:>6} {:>7} {:>6}",
        sample.at.as_secs_f64(),
        sample.phase.label(),
        sample.completed,
        rate,
        sample.errors,
        sample.in_flight,
        mb(sample.status.rss_bytes),
        anon_mb(sample),
        mb(sample.status.hwm_bytes),
        sample.fds,
        sample.status.threads,
        cpu
    )
}

/// The summary after the run.
pub fn summary(summary: &Summary, bounds: &Bounds) {
    println!("{}", render(summary, bounds));
}

/// The verdict: `PASS`, or `FAIL` with every failed check.
pub fn verdict(failures: &[String]) {
    if failures.is_empty() {
        println!("soak: PASS");
    } else {
        println!("soak: FAIL");
        for failure in failures {
            println!("  - {failure}");
        }
    }
}

fn render(s: &Summary, bounds: &Bounds) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Soak: {}", s.command);
    let _ = writeln!(
        out,
        "{} concurrent streams for {:.1} min (warm-up {:.0} s) through {}, usage recording on; \
         upstream streams: {} chunks every {} ms (first after {} ms)",
        s.streams,
        s.duration.as_secs_f64() / 60.0,
        s.warmup.as_secs_f64(),
        s.gateway,
        s.pacing.chunks,
        s.pacing.interval_ms,
        s.pacing.first_byte_delay_ms
    );
    let _ = writeln!(
        out,
        "open files: soft limit {} (was {}, hard {}), the gateway's {}",
        s.limit.now,
        s.limit.before,
        s.limit.hard,
        s.gateway_nofile
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string())
    );

    let _ = writeln!(
        out,
        "streams: {} completed of {} sent ({}); {} connections opened; {:.1} MB received",
        s.completed,
        s.started,
        counts(&s.per_flavour),
        s.connections,
        mb(s.bytes)
    );
    let _ = writeln!(out, "errors: {} ({})", s.error_total(), counts(&s.errors));
    for message in &s.error_messages {
        let _ = writeln!(out, "  {message}");
    }

    let start = s.start.status.rss_bytes;
    let end = s.end.status.rss_bytes;
    let ceiling = bounds.rss_ceiling(start);
    let _ = writeln!(
        out,
        "RSS: idle {:.1} MB; start (after warm-up) {:.1} MB; peak {:.1} MB; end {:.1} MB; \
         {} s after the load {:.1} MB — bound: end ≤ {} × start + {} MB = {:.1} MB",
        mb(s.idle.status.rss_bytes),
        mb(start),
        mb(s.peak_rss),
        mb(end),
        s.settle.as_secs(),
        mb(s.after.status.rss_bytes),
        bounds.rss_factor,
        bounds.rss_slack_mb,
        mb(ceiling)
    );
    let _ = writeln!(
        out,
        "  of which anonymous (heap and stacks, not the mapped binary): idle {}, start {}, end {}, \
         after {} MB",
        anon_mb(&s.idle),
        anon_mb(&s.start),
        anon_mb(&s.end),
        anon_mb(&s.after)
    );
    let measured = s.end.completed.saturating_sub(s.start.completed);
    if measured > 0 {
        let _ = writeln!(
            out,
            "  {measured} streams between start and end: RSS moved {:+.0} B per stream; a leak \
             above {:.0} B per stream would have failed the bound",
            (end as f64 - start as f64) / measured as f64,
            ceiling.saturating_sub(start) as f64 / measured as f64
        );
    }
    let back = s.fds_back.map_or_else(
        || format!("not back within {} s", s.fd_wait.as_secs()),
        |(after, fds)| format!("{fds} {:.0} s after the load", after.as_secs_f64()),
    );
    let _ = writeln!(
        out,
        "fds: idle {}; start {}; end {} (most {}; slack {}); {} s after the load {}; back to \
         idle + {}: {back}",
        s.idle.fds,
        s.start.fds,
        s.end.fds,
        s.max_fds,
        Bounds::fd_growth(s.streams),
        s.settle.as_secs(),
        s.after.fds,
        bounds.fd_slack
    );
    let _ = writeln!(
        out,
        "threads: idle {}, most under load {}, after {}",
        s.idle.status.threads, s.max_threads, s.after.status.threads
    );
    let load_secs = (s.end.at.saturating_sub(s.start.at)).as_secs_f64();
    let cpu = s.end.cpu.saturating_sub(s.start.cpu);
    if load_secs > 0.0 && measured > 0 {
        let _ = writeln!(
            out,
            "CPU: the gateway used {:.0}% of one core on average under load, {:.0} µs per stream",
            cpu.as_secs_f64() / load_secs * 100.0,
            cpu.as_secs_f64() * 1e6 / measured as f64
        );
    }
    match &s.usage {
        Ok(rows) => {
            let _ = writeln!(
                out,
                "usage rows: {} ({}) for {} streams completed by the clients",
                rows.total,
                counts(&rows.by_outcome),
                s.completed
            );
        }
        Err(err) => {
            let _ = writeln!(out, "usage rows: unreadable: {err}");
        }
    }
    let _ = match &s.shutdown {
        Ok(took) => writeln!(
            out,
            "gateway: exited 0 {:.1} s after SIGTERM; it logged {} warnings, {} errors from the \
             load's start on",
            took.as_secs_f64(),
            s.log.warnings,
            s.log.errors
        ),
        Err(err) => writeln!(
            out,
            "gateway: {err}; it logged {} warnings, {} errors from the load's start on",
            s.log.warnings, s.log.errors
        ),
    };
    for line in &s.log.first {
        let _ = writeln!(out, "  {line}");
    }
    out
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The anonymous part of the RSS in MB, or `—` where the kernel does not say.
fn anon_mb(sample: &Sample) -> String {
    sample
        .status
        .anon_bytes
        .map_or_else(|| "—".to_owned(), |b| format!("{:.1}", mb(b)))
}

/// A breakdown as the summary lines print it: `name n` for every part, comma-separated.
fn counts(parts: &[(impl Display, u64)]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Phase;
    use super::*;
    use crate::procfs::Status;

    #[test]
    fn a_row_shows_the_rate_and_cpu_since_the_previous_reading() {
        let status = Status {
            rss_bytes: 48_300_000,
            hwm_bytes: 50_000_000,
            anon_bytes: Some(30_100_000),
            threads: 5,
        };
        let previous = Sample {
            at: Duration::from_secs(10),
            phase: Phase::Load,
            completed: 1000,
            errors: 0,
            in_flight: 1000,
            status,
            fds: 2010,
            cpu: Duration::from_secs(2),
        };
        let now = Sample {
            at: Duration::from_secs(20),
            completed: 3500,
            cpu: Duration::from_secs(5),
            ..previous
        };
        let line = row_line(&now, Some(&previous));
        assert!(line.contains(" 250.0 "), "{line}");
        assert!(line.contains(" 48.3     30.1     50.0 "), "{line}");
        assert!(line.trim_end().ends_with(" 30"), "{line}");
        assert_eq!(line.len(), header_line().len(), "{line}\n{}", header_line());
    }
}
