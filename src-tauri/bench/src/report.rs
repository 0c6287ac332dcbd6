//! Everything the bench prints: the address line of a child server, progress and failures on
//! stderr, and the final table on stdout. Printing is this module's purpose, so the workspace's
//! `print_stdout` / `print_stderr` lints are allowed here and nowhere else.
//!
//! The table shows, per scenario and metric, the median over rounds of each reference (direct,
//! floor, gateway), the per-round ratios gateway/direct and gateway/floor as median (min–max),
//! and for latencies the per-round difference in µs: what the gateway adds. Under each gateway
//! row, a `translated` row reads the same way for the Anthropic client served by the same
//! `openai_chat` upstream through the gateway. The last section, the translation cost, sets
//! translated against pass-through round by round (both ran through the same gateway within
//! the same round, so the machine's noise hits both alike).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "printing the results is what this module is for"
)]

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::BenchError;
use crate::stats::{Spread, spread};

/// Names of the references, in the order of the `[_; REFERENCES]` arrays below: the upstream
/// itself, the bare forwarder, the gateway on the same-protocol path (OpenAI client, OpenAI
/// provider), and the gateway translating (Anthropic client, the same OpenAI provider).
pub const TARGETS: [&str; REFERENCES] = ["direct", "floor", "gateway", "translated"];
/// How many references every scenario runs.
pub const REFERENCES: usize = 4;
pub const DIRECT: usize = 0;
pub const FLOOR: usize = 1;
pub const GATEWAY: usize = 2;
pub const TRANSLATED: usize = 3;

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

/// Per-round values of one quantity, one list per reference: `[target][round]`.
pub type PerTarget = [Vec<f64>; REFERENCES];

/// All rounds of one scenario.
#[derive(Debug)]
pub struct ScenarioResult {
    /// Heading, e.g. `chat, 1 connection, 110 B body`.
    pub title: String,
    /// Short name for the translation-cost section, e.g. `chat ×1`.
    pub short: String,
    /// Rows.
    pub metrics: Vec<Metric>,
    /// `values[metric][target][round]`.
    pub values: Vec<PerTarget>,
    /// Failed requests per target over all rounds.
    pub errors: [u64; REFERENCES],
    /// First failure per target.
    pub first_errors: [Option<String>; REFERENCES],
}

/// CPU time per request of each reference's process, per round, for one request body.
#[derive(Debug, Default)]
pub struct CpuResult {
    /// What was sent, e.g. `110 B body`.
    pub label: String,
    /// Requests per measurement.
    pub requests: u64,
    /// Connections used.
    pub connections: usize,
    /// `micros_per_request[target][round]`: the upstream process for direct, the floor's, the
    /// gateway's for both gateway and translated.
    pub micros_per_request: PerTarget,
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
    /// CPU time per request, one entry per body size.
    pub cpu: Vec<CpuResult>,
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
         gw−x: per-round difference, median.\n\
         `translated` rows: an Anthropic Messages client (POST /v1/messages) through the same gateway \
         to the same openai_chat upstream; their columns read translated/direct, translated/floor."
    );
    for scenario in &report.scenarios {
        render_scenario(&mut out, scenario);
    }
    for cpu in &report.cpu {
        render_cpu(&mut out, cpu);
    }
    render_translation_cost(&mut out, &report.scenarios, &report.cpu);
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
        for (candidate, label) in [(GATEWAY, metric.name), (TRANSLATED, "  translated")] {
            let vs_direct = per_round(values, candidate, DIRECT, |g, x| g / x);
            let vs_floor = per_round(values, candidate, FLOOR, |g, x| g / x);
            let (added_direct, added_floor) = if metric.unit == Unit::Micros {
                (
                    per_round(values, candidate, DIRECT, |g, x| g - x)
                        .map(|s| signed_micros(s.median)),
                    per_round(values, candidate, FLOOR, |g, x| g - x)
                        .map(|s| signed_micros(s.median)),
                )
            } else {
                (None, None)
            };
            // The references are the same for both rows; print them once.
            let (direct, floor) = if candidate == GATEWAY {
                (
                    value(metric.unit, median(DIRECT)),
                    value(metric.unit, median(FLOOR)),
                )
            } else {
                (String::new(), String::new())
            };
            let _ = writeln!(
                out,
                "  {:<12} {:>10} {:>10} {:>10}   {:<19} {:<19} {:>10} {:>10}",
                label,
                direct,
                floor,
                value(metric.unit, median(candidate)),
                ratio(vs_direct),
                ratio(vs_floor),
                added_direct.unwrap_or_default(),
                added_floor.unwrap_or_default(),
            );
        }
    }
    if scenario.errors.iter().any(|&n| n > 0) {
        let counts: Vec<String> = TARGETS
            .iter()
            .zip(&scenario.errors)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(out, "  errors: {}", counts.join(", "));
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
        "\nCPU time per request, {} (utime+stime of the process from /proc/PID/stat, {} requests at {} connection(s), median of {rounds}):",
        cpu.label, cpu.requests, cpu.connections
    );
    let median = |target: usize| spread(&cpu.micros_per_request[target]).map(|s| s.median);
    let _ = writeln!(
        out,
        "  upstream (direct run) {:>10}\n  floor                 {:>10}",
        value(Unit::Micros, median(DIRECT)),
        value(Unit::Micros, median(FLOOR)),
    );
    for (candidate, name) in [(GATEWAY, "gateway"), (TRANSLATED, "translated")] {
        let _ = writeln!(
            out,
            "  {name:<21} {:>10}   {name}/floor {}   {name}/upstream {}",
            value(Unit::Micros, median(candidate)),
            ratio(per_round(
                &cpu.micros_per_request,
                candidate,
                FLOOR,
                |g, x| g / x
            )),
            ratio(per_round(
                &cpu.micros_per_request,
                candidate,
                DIRECT,
                |g, x| g / x
            )),
        );
    }
}

/// Translated against pass-through, per round: the ratio for every metric, the difference for
/// durations (what translating adds to one request), and the same for CPU time per request.
fn render_translation_cost(out: &mut String, scenarios: &[ScenarioResult], cpu: &[CpuResult]) {
    let _ = writeln!(
        out,
        "\nTranslation cost per request: translated (Anthropic client → openai_chat upstream) against \
         pass-through (OpenAI client → the same upstream), same gateway, per round, median (min–max):"
    );
    let _ = writeln!(
        out,
        "  {:<34} {:>12} {:>12}   {:<19} translated − pass",
        "scenario: metric", "pass-through", "translated", "translated/pass"
    );
    let mut row = |name: String, unit: Unit, values: &PerTarget| {
        let median = |target: usize| spread(&values[target]).map(|s| s.median);
        let added = if unit == Unit::Micros {
            per_round(values, TRANSLATED, GATEWAY, |t, g| t - g).map_or_else(String::new, |s| {
                format!(
                    "{} ({}…{})",
                    signed_micros(s.median),
                    signed_micros(s.min),
                    signed_micros(s.max)
                )
            })
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<34} {:>12} {:>12}   {:<19} {}",
            name,
            value(unit, median(GATEWAY)),
            value(unit, median(TRANSLATED)),
            ratio(per_round(values, TRANSLATED, GATEWAY, |t, g| t / g)),
            added,
        );
    };
    for scenario in scenarios {
        for (metric, values) in scenario.metrics.iter().zip(&scenario.values) {
            if metric.unit != Unit::Plain {
                row(
                    format!("{}: {}", scenario.short, metric.name),
                    metric.unit,
                    values,
                );
            }
        }
    }
    for cpu in cpu {
        row(
            format!("CPU µs/request, {}", cpu.label),
            Unit::Micros,
            &cpu.micros_per_request,
        );
    }
}

/// Spread of `combine(candidate, reference)` over the rounds where both were measured.
fn per_round(
    values: &PerTarget,
    candidate: usize,
    reference: usize,
    combine: fn(f64, f64) -> f64,
) -> Option<Spread> {
    let combined: Vec<f64> = values[candidate]
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
            short: "chat ×1".to_owned(),
            metrics: vec![Metric {
                name: "p50",
                unit: Unit::Micros,
            }],
            values: vec![[
                vec![20.0, 22.0, 21.0],
                vec![40.0, 44.0, 42.0],
                vec![60.0, 66.0, 63.0],
                vec![80.0, 88.0, 84.0],
            ]],
            errors: [0; REFERENCES],
            first_errors: Default::default(),
        };
        let mut out = String::new();
        render_scenario(&mut out, &scenario);
        assert!(out.contains("21.0µs"), "{out}");
        assert!(out.contains("3.00 (3.00–3.00)"), "{out}");
        assert!(out.contains("1.50 (1.50–1.50)"), "{out}");
        assert!(out.contains("+42.0µs"), "{out}");
        assert!(out.contains("+21.0µs"), "{out}");
        // The translated row: 84/21 = 4, 84/42 = 2, +63 and +42 µs.
        assert!(out.contains("4.00 (4.00–4.00)"), "{out}");
        assert!(out.contains("+63.0µs"), "{out}");

        let mut cost = String::new();
        render_translation_cost(&mut cost, std::slice::from_ref(&scenario), &[]);
        // Translated against pass-through: 80/60 in every round, +20 to +22 µs.
        assert!(cost.contains("chat ×1: p50"), "{cost}");
        assert!(cost.contains("1.33 (1.33–1.33)"), "{cost}");
        assert!(cost.contains("+21.0µs (+20.0µs…+22.0µs)"), "{cost}");
    }
}
