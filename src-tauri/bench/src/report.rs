//! Everything the bench prints: the address line of a child server, progress and failures on
//! stderr, and the final table on stdout. Printing is this module's purpose, so the workspace's
//! `print_stdout` / `print_stderr` lints are allowed here and nowhere else.
//!
//! The table shows, per scenario and metric, the median over rounds of each reference (direct,
//! floor, gateway), the per-round ratios gateway/direct and gateway/floor as median (min–max),
//! and for latencies the per-round difference in µs: what the gateway adds.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "printing the results is what this module is for"
)]

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::BenchError;
use crate::stats::{Spread, spread};

/// Names of the three references, in the order of the `[_; 3]` arrays below.
pub const TARGETS: [&str; 3] = ["direct", "floor", "gateway"];
const DIRECT: usize = 0;
const FLOOR: usize = 1;
const GATEWAY: usize = 2;

/// Prints the address line a child server announces itself with (read by [`crate::children`]).
pub fn announce(part: &str, addr: SocketAddr) {
    println!("flexiproxy-bench {part} listening on http://{addr}");
}

/// A progress line on stderr while the run goes on.
pub fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

/// A fatal error, on stderr.
pub fn failure(err: &BenchError) {
    eprintln!("flexiproxy-bench: error: {err}");
}

/// How a metric's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A duration in microseconds (lower is better; differences are shown).
    Micros,
    /// A rate per second (higher is better).
    PerSecond,
    /// A bare number.
    Plain,
}

/// One measured quantity of a scenario.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Row label, e.g. `p50`.
    pub name: &'static str,
    /// How to print it.
    pub unit: Unit,
}

/// All rounds of one scenario.
#[derive(Debug)]
pub struct ScenarioResult {
    /// Heading, e.g. `chat, 1 connection, 110 B body`.
    pub title: String,
    /// Rows.
    pub metrics: Vec<Metric>,
    /// `values[metric][target][round]`.
    pub values: Vec<[Vec<f64>; 3]>,
    /// Failed requests per target over all rounds.
    pub errors: [u64; 3],
    /// First failure per target.
    pub first_errors: [Option<String>; 3],
}

/// CPU time per request of each reference's process, per round.
#[derive(Debug, Default)]
pub struct CpuResult {
    /// Requests per measurement.
    pub requests: u64,
    /// Connections used.
    pub connections: usize,
    /// `micros_per_request[target][round]`: upstream process for direct, floor, gateway.
    pub micros_per_request: [Vec<f64>; 3],
}

/// Resident memory readings, in bytes (`None` when `/proc` could not be read).
#[derive(Debug, Default)]
pub struct MemoryResult {
    /// Gateway after set-up, before any load.
    pub gateway_idle: Option<u64>,
    /// Gateway after all the load.
    pub gateway_after: Option<u64>,
    /// Floor before any load.
    pub floor_idle: Option<u64>,
    /// Floor after all the load.
    pub floor_after: Option<u64>,
}

/// The whole result of `run`.
#[derive(Debug)]
pub struct Report {
    /// The command line, for reproduction.
    pub command: String,
    /// One line describing the set-up (rounds, durations, workers, upstream pacing).
    pub setup: String,
    /// Scenario tables.
    pub scenarios: Vec<ScenarioResult>,
    /// CPU time per request.
    pub cpu: CpuResult,
    /// Memory.
    pub memory: MemoryResult,
    /// Bytes the gateway wrote to stderr during the run.
    pub gateway_stderr_bytes: u64,
    /// Findings of the correctness checks and anything pathological seen.
    pub notes: Vec<String>,
}

/// Prints the report on stdout.
pub fn print(report: &Report) {
    println!("{}", render(report));
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "FlexiProxy bench — {}", report.command);
    let _ = writeln!(out, "{}", report.setup);
    let _ = writeln!(
        out,
        "Values: median over rounds. Ratios: per-round gateway/direct and gateway/floor, median (min–max). \
         gw−x: per-round difference, median."
    );
    for scenario in &report.scenarios {
        render_scenario(&mut out, scenario);
    }
    render_cpu(&mut out, &report.cpu);
    let memory = &report.memory;
    let _ = writeln!(
        out,
        "\nMemory (VmRSS): gateway {} idle → {} after the load; floor {} → {}",
        megabytes(memory.gateway_idle),
        megabytes(memory.gateway_after),
        megabytes(memory.floor_idle),
        megabytes(memory.floor_after),
    );
    let _ = writeln!(
        out,
        "Gateway stderr during the run: {} bytes",
        report.gateway_stderr_bytes
    );
    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in &report.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    out
}

fn render_scenario(out: &mut String, scenario: &ScenarioResult) {
    let _ = writeln!(out, "\n{}", scenario.title);
    let _ = writeln!(
        out,
        "  {:<12} {:>10} {:>10} {:>10}   {:<19} {:<19} {:>10} {:>10}",
        "metric", "direct", "floor", "gateway", "gw/direct", "gw/floor", "gw−direct", "gw−floor"
    );
    for (metric, values) in scenario.metrics.iter().zip(&scenario.values) {
        let median = |target: usize| spread(&values[target]).map(|s| s.median);
        let vs_direct = per_round(values, DIRECT, |g, x| g / x);
        let vs_floor = per_round(values, FLOOR, |g, x| g / x);
        let (added_direct, added_floor) = if metric.unit == Unit::Micros {
            (
                per_round(values, DIRECT, |g, x| g - x).map(|s| signed_micros(s.median)),
                per_round(values, FLOOR, |g, x| g - x).map(|s| signed_micros(s.median)),
            )
        } else {
            (None, None)
        };
        let _ = writeln!(
            out,
            "  {:<12} {:>10} {:>10} {:>10}   {:<19} {:<19} {:>10} {:>10}",
            metric.name,
            value(metric.unit, median(DIRECT)),
            value(metric.unit, median(FLOOR)),
            value(metric.unit, median(GATEWAY)),
            ratio(vs_direct),
            ratio(vs_floor),
            added_direct.unwrap_or_default(),
            added_floor.unwrap_or_default(),
        );
    }
    if scenario.errors.iter().any(|&n| n > 0) {
        let _ = writeln!(
            out,
            "  errors: direct {}, floor {}, gateway {}",
            scenario.errors[DIRECT], scenario.errors[FLOOR], scenario.errors[GATEWAY]
        );
        for (name, first) in TARGETS.iter().zip(&scenario.first_errors) {
            if let Some(first) = first {
                let _ = writeln!(out, "    first {name} error: {first}");
            }
        }
    }
}

fn render_cpu(out: &mut String, cpu: &CpuResult) {
    let rounds = cpu.micros_per_request[GATEWAY].len();
    let _ = writeln!(
        out,
        "\nCPU time per request (utime+stime of the process from /proc/PID/stat, {} requests at {} connection(s), median of {rounds}):",
        cpu.requests, cpu.connections
    );
    let median = |target: usize| spread(&cpu.micros_per_request[target]).map(|s| s.median);
    let _ = writeln!(
        out,
        "  upstream (direct run) {:>10}\n  floor                 {:>10}\n  gateway               {:>10}   gateway/floor {}   gateway/upstream {}",
        value(Unit::Micros, median(DIRECT)),
        value(Unit::Micros, median(FLOOR)),
        value(Unit::Micros, median(GATEWAY)),
        ratio(per_round(&cpu.micros_per_request, FLOOR, |g, x| g / x)),
        ratio(per_round(&cpu.micros_per_request, DIRECT, |g, x| g / x)),
    );
}

/// Spread of `combine(gateway, reference)` over the rounds where both were measured.
fn per_round(
    values: &[Vec<f64>; 3],
    reference: usize,
    combine: fn(f64, f64) -> f64,
) -> Option<Spread> {
    let combined: Vec<f64> = values[GATEWAY]
        .iter()
        .zip(&values[reference])
        .map(|(&g, &x)| combine(g, x))
        .filter(|v| v.is_finite())
        .collect();
    spread(&combined)
}

fn value(unit: Unit, v: Option<f64>) -> String {
    match (unit, v) {
        (_, None) => "—".to_owned(),
        (Unit::Micros, Some(us)) if us.abs() >= 10_000.0 => format!("{:.2}ms", us / 1000.0),
        (Unit::Micros, Some(us)) => format!("{us:.1}µs"),
        (Unit::PerSecond, Some(rate)) => format!("{rate:.0}/s"),
        (Unit::Plain, Some(n)) => format!("{n:.2}"),
    }
}

fn signed_micros(us: f64) -> String {
    if us.abs() >= 10_000.0 {
        format!("{:+.2}ms", us / 1000.0)
    } else {
        format!("{us:+.1}µs")
    }
}

fn ratio(s: Option<Spread>) -> String {
    s.map_or_else(
        || "—".to_owned(),
        |s| format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
    )
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "—".to_owned(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_renders_medians_ratios_and_differences() {
        let scenario = ScenarioResult {
            title: "chat, 1 connection".to_owned(),
            metrics: vec![Metric {
                name: "p50",
                unit: Unit::Micros,
            }],
            values: vec![[
                vec![20.0, 22.0, 21.0],
                vec![40.0, 44.0, 42.0],
                vec![60.0, 66.0, 63.0],
            ]],
            errors: [0, 0, 0],
            first_errors: [None, None, None],
        };
        let mut out = String::new();
        render_scenario(&mut out, &scenario);
        assert!(out.contains("21.0µs"), "{out}");
        assert!(out.contains("3.00 (3.00–3.00)"), "{out}");
        assert!(out.contains("1.50 (1.50–1.50)"), "{out}");
        assert!(out.contains("+42.0µs"), "{out}");
        assert!(out.contains("+21.0µs"), "{out}");
    }
}
