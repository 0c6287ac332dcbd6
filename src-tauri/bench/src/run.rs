//! `flexiproxy-bench run` (the default): the whole benchmark in one command.
//!
//! 1. Starts the mock upstream, the floor and the gateway as child processes ([`crate::children`]),
//!    the gateway with `--port 0`, a scratch `--data-dir`, `--secrets env`, a random
//!    `FLEXIPROXY_MANAGEMENT_TOKEN` and the provider key in an environment variable.
//! 2. Registers a provider and an adapter ([`crate::management`]) and checks one plain and one
//!    streamed answer through each reference (status, `[DONE]`, usage chunk handling).
//! 3. For each scenario: a warm-up per reference (thrown away), then rounds that run direct,
//!    floor and gateway one after the other (order rotated each round so no reference always
//!    runs first), each for the same duration ([`crate::load`]).
//! 4. A fixed-count run per reference with the process's CPU time read before and after
//!    ([`crate::procfs`]), then memory; then the table ([`crate::report`]).
//!
//! Everything is bounded: durations and rounds are clamped, each load run has a time limit,
//! children are stopped when dropped, and every address is 127.0.0.1.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};

use crate::children::{ChildServer, Spec};
use crate::load::{Outcome, Stop, Target, Workload, drive, exchange};
use crate::report::{
    CpuResult, MemoryResult, Metric, Report, ScenarioResult, TARGETS, Unit, progress,
};
use crate::stats::quantile;
use crate::{BenchError, management, procfs};

/// Variable that carries the provider key to the gateway (registered as `env:NAME`).
const PROVIDER_KEY_ENV: &str = "FLEXIPROXY_BENCH_PROVIDER_KEY";
/// Path every reference is asked for.
const CHAT_PATH: &str = "/v1/chat/completions";
/// Extra time a load run may take beyond its nominal duration before it counts as hung.
const RUN_GRACE: Duration = Duration::from_secs(30);
/// Upper bound for a fixed-count (CPU) run.
const COUNT_RUN_LIMIT: Duration = Duration::from_secs(180);

/// Flags of `flexiproxy-bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Smoke run of about 30 s: 3 rounds of 0.6 s, short warm-up, 3,000-request CPU run.
    #[arg(long)]
    pub quick: bool,
    /// Seconds each reference runs per round [default: 4; --quick: 0.6].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds per reference and scenario, thrown away [default: 1; --quick: 0.3].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Interleaved rounds per scenario [default: 7; --quick: 3].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Connections of the throughput scenario.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Concurrent streams of the streaming scenario.
    #[arg(long, default_value_t = 4)]
    pub stream_connections: usize,
    /// Content chunks per upstream stream.
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Milliseconds between two upstream chunks.
    #[arg(long, default_value_t = 2)]
    pub interval_ms: u64,
    /// Milliseconds before the upstream's first chunk.
    #[arg(long, default_value_t = 0)]
    pub first_byte_delay_ms: u64,
    /// Size of the large-body scenario's request in KB (a Claude Code request is ~60); 0 skips it.
    #[arg(long, default_value_t = 60)]
    pub large_body_kb: usize,
    /// Requests of each CPU-time measurement [default: 20000; --quick: 3000].
    #[arg(long)]
    pub cpu_requests: Option<u64>,
    /// Connections of the CPU-time measurement.
    #[arg(long, default_value_t = 1)]
    pub cpu_connections: usize,
    /// Tokio worker threads of each server (upstream, floor, gateway).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Passed to the gateway as `--usage` (on|off); its default otherwise.
    #[arg(long)]
    pub usage: Option<String>,
}

/// Resolved, bounded settings.
#[derive(Debug, Clone, Copy)]
struct Plan {
    duration: Duration,
    warmup: Duration,
    rounds: usize,
    cpu_requests: u64,
    cpu_rounds: usize,
}

impl Plan {
    fn from(args: &RunArgs) -> Self {
        let (duration, warmup, rounds, cpu_requests, cpu_rounds) = if args.quick {
            (0.6, 0.3, 3, 3_000, 1)
        } else {
            (4.0, 1.0, 7, 20_000, 3)
        };
        let seconds = |v: Option<f64>, default: f64| {
            Duration::from_secs_f64(v.unwrap_or(default).clamp(0.05, 60.0))
        };
        Self {
            duration: seconds(args.duration, duration),
            warmup: seconds(args.warmup, warmup),
            rounds: args.rounds.unwrap_or(rounds).clamp(1, 50),
            cpu_requests: args
                .cpu_requests
                .unwrap_or(cpu_requests)
                .clamp(100, 1_000_000),
            cpu_rounds,
        }
    }
}

/// Runs the benchmark and prints the report.
pub fn main(args: &RunArgs) -> Result<(), BenchError> {
    let runtime = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads.min(8))
            .enable_all()
            .build()
    }
    .map_err(BenchError::io("building the load generator's runtime"))?;

    let scratch = std::env::temp_dir().join(format!(
        "flexiproxy-bench-{}-{}",
        std::process::id(),
        random_hex(1)
    ));
    std::fs::create_dir_all(&scratch)
        .map_err(BenchError::io(format!("creating {}", scratch.display())))?;
    let outcome = runtime.block_on(bench(args, &scratch));
    // Children are stopped by now (dropped inside `bench`); keep the logs only on failure.
    match outcome {
        Ok(report) => {
            let _ = std::fs::remove_dir_all(&scratch);
            crate::report::print(&report);
            Ok(())
        }
        Err(err) => {
            progress(&format!("logs kept in {}", scratch.display()));
            Err(err)
        }
    }
}

/// The three servers and how to reach them.
struct Fleet {
    upstream: ChildServer,
    floor: ChildServer,
    gateway: ChildServer,
    /// direct, floor, gateway.
    targets: [Target; 3],
}

async fn bench(args: &RunArgs, scratch: &Path) -> Result<Report, BenchError> {
    let plan = Plan::from(args);
    let mut fleet = start_fleet(args, scratch).await?;
    let mut notes = check_answers(&fleet.targets).await?;

    let memory_idle = (
        procfs::rss_bytes(fleet.gateway.pid()).ok(),
        procfs::rss_bytes(fleet.floor.pid()).ok(),
    );
    let stderr_before = fleet.gateway.stderr_bytes();

    let small = chat_body(false, 0);
    let mut scenarios = vec![
        Scenario {
            title: format!("chat, 1 connection, {} B body", small.len()),
            work: workload(small.clone(), false, 1),
        },
        Scenario {
            title: format!(
                "chat, {} connections, {} B body",
                args.connections,
                small.len()
            ),
            work: workload(small.clone(), false, args.connections.clamp(1, 512)),
        },
    ];
    if args.large_body_kb > 0 {
        let large = chat_body(false, args.large_body_kb.min(30_000) * 1024);
        scenarios.push(Scenario {
            title: format!("chat, 1 connection, {} KB body", large.len() / 1024),
            work: workload(large, false, 1),
        });
    }
    scenarios.push(Scenario {
        title: format!(
            "stream, {} connections, {} chunks every {} ms (first after {} ms)",
            args.stream_connections, args.chunks, args.interval_ms, args.first_byte_delay_ms
        ),
        work: workload(
            chat_body(true, 0),
            true,
            args.stream_connections.clamp(1, 512),
        ),
    });

    let mut results = Vec::with_capacity(scenarios.len());
    for scenario in &scenarios {
        results.push(run_scenario(&fleet.targets, scenario, plan).await?);
        fleet.upstream.ensure_running()?;
        fleet.floor.ensure_running()?;
        fleet.gateway.ensure_running()?;
    }

    let cpu = measure_cpu(&fleet, &small, plan, args.cpu_connections.clamp(1, 64)).await?;
    let memory = MemoryResult {
        gateway_idle: memory_idle.0,
        gateway_after: procfs::rss_bytes(fleet.gateway.pid()).ok(),
        floor_idle: memory_idle.1,
        floor_after: procfs::rss_bytes(fleet.floor.pid()).ok(),
    };
    let gateway_stderr_bytes = fleet.gateway.stderr_bytes().saturating_sub(stderr_before);
    notes.extend(look_for_pathologies(&results));

    Ok(Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        setup: format!(
            "{} rounds × {:.1} s per reference (warm-up {:.1} s), order rotated each round; \
             servers: {} tokio worker(s) each; load generator: {} thread(s), keep-alive, TCP_NODELAY; \
             upstream streams: {} chunks every {} ms",
            plan.rounds,
            plan.duration.as_secs_f64(),
            plan.warmup.as_secs_f64(),
            args.workers.max(1),
            args.client_threads.max(1),
            args.chunks,
            args.interval_ms
        ),
        scenarios: results,
        cpu,
        memory,
        gateway_stderr_bytes,
        notes,
    })
}

async fn start_fleet(args: &RunArgs, scratch: &Path) -> Result<Fleet, BenchError> {
    let workers = args.workers.clamp(1, 64).to_string();
    let os = |parts: &[&str]| parts.iter().map(OsString::from).collect::<Vec<_>>();

    progress("starting the upstream, the floor and the gateway");
    let upstream = ChildServer::start(
        &Spec {
            name: "upstream",
            args: os(&[
                "upstream",
                "--port",
                "0",
                "--workers",
                &workers,
                "--chunks",
                &args.chunks.clamp(1, 10_000).to_string(),
                "--interval-ms",
                &args.interval_ms.min(10_000).to_string(),
                "--first-byte-delay-ms",
                &args.first_byte_delay_ms.min(10_000).to_string(),
            ]),
            env: Vec::new(),
            env_remove: Vec::new(),
        },
        scratch,
    )?;
    let upstream_base = format!("http://{}", upstream.addr);
    let floor = ChildServer::start(
        &Spec {
            name: "floor",
            args: os(&[
                "floor",
                "--port",
                "0",
                "--workers",
                &workers,
                "--upstream",
                &upstream_base,
            ]),
            env: Vec::new(),
            env_remove: Vec::new(),
        },
        scratch,
    )?;

    let data_dir = scratch.join("gateway-data");
    std::fs::create_dir_all(&data_dir)
        .map_err(BenchError::io(format!("creating {}", data_dir.display())))?;
    let management_token = random_hex(4);
    let mut gateway_args = os(&["gateway", "--workers", &workers, "--", "--headless"]);
    gateway_args.extend(os(&[
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--secrets",
        "env",
    ]));
    gateway_args.push(OsString::from("--data-dir"));
    gateway_args.push(data_dir.into_os_string());
    if let Some(usage) = &args.usage {
        gateway_args.extend(os(&["--usage", usage]));
    }
    let gateway = ChildServer::start(
        &Spec {
            name: "gateway",
            args: gateway_args,
            env: vec![
                (
                    "FLEXIPROXY_MANAGEMENT_TOKEN".to_owned(),
                    management_token.clone(),
                ),
                (
                    PROVIDER_KEY_ENV.to_owned(),
                    format!("sk-bench-{}", random_hex(2)),
                ),
            ],
            // The flags above decide; a developer's own settings must not leak in.
            env_remove: vec![
                "FLEXIPROXY_PORT",
                "FLEXIPROXY_BIND",
                "FLEXIPROXY_DATA_DIR",
                "FLEXIPROXY_SECRETS",
                "FLEXIPROXY_USAGE",
                "FLEXIPROXY_UPSTREAM_TIMEOUT",
            ],
        },
        scratch,
    )?;

    let gateway_target = Target::new("gateway", gateway.addr, CHAT_PATH, None)?;
    management::wait_healthy(&gateway_target).await?;
    let adapter_key = management::register(
        &gateway_target,
        &management_token,
        &format!("{upstream_base}/v1"),
        PROVIDER_KEY_ENV,
    )
    .await?;
    let auth = HeaderValue::from_str(&format!("Bearer {adapter_key}"))
        .map_err(|err| BenchError::Unexpected(format!("adapter key header: {err}")))?;
    progress(&format!(
        "upstream {}, floor {}, gateway {} (adapter created)",
        upstream.addr, floor.addr, gateway.addr
    ));
    let targets = [
        Target::new("direct", upstream.addr, CHAT_PATH, None)?,
        Target::new("floor", floor.addr, CHAT_PATH, None)?,
        Target::new("gateway", gateway.addr, CHAT_PATH, Some(auth))?,
    ];
    Ok(Fleet {
        upstream,
        floor,
        gateway,
        targets,
    })
}

/// A chat request; `pad_to` > 0 grows the user message until the body is about that size.
fn chat_body(stream: bool, pad_to: usize) -> Bytes {
    let mut content = String::from("Say hello.");
    if pad_to > 0 {
        // Plain prose, no characters that need JSON escaping: the size is the size on the wire.
        const PROSE: &str =
            "The quick brown fox jumps over the lazy dog while the gateway relays bytes. ";
        content.clear();
        while content.len() + 120 < pad_to {
            content.push_str(PROSE);
        }
    }
    let mut body = serde_json::json!({
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": content}
        ],
        "max_tokens": 16,
    });
    if stream {
        body["stream"] = serde_json::Value::Bool(true);
    }
    Bytes::from(body.to_string())
}

fn workload(body: Bytes, stream: bool, connections: usize) -> Workload {
    Workload {
        body,
        stream,
        connections,
        stop: Stop::After(Duration::ZERO),
    }
}

/// Checks that each reference answers what a client expects, before timing anything. A wrong
/// status is fatal (the numbers would be meaningless); other differences become notes.
async fn check_answers(targets: &[Target; 3]) -> Result<Vec<String>, BenchError> {
    let mut notes = Vec::new();
    let mut events = [0usize; 3];
    for (index, target) in targets.iter().enumerate() {
        let (status, body) = exchange(target, Method::POST, Some(chat_body(false, 0)), &[]).await?;
        let text = String::from_utf8_lossy(&body);
        if status != StatusCode::OK {
            return Err(BenchError::Unexpected(format!(
                "{} answered {status} to a chat request: {text}",
                target.name
            )));
        }
        if !text.contains("\"chat.completion\"") || !text.contains("\"usage\"") {
            notes.push(format!(
                "{}: the plain answer lacks object/usage: {text}",
                target.name
            ));
        }
        let (status, body) = exchange(target, Method::POST, Some(chat_body(true, 0)), &[]).await?;
        let text = String::from_utf8_lossy(&body);
        if status != StatusCode::OK || !text.contains("data: [DONE]") {
            return Err(BenchError::Unexpected(format!(
                "{} answered {status} to a streamed chat request without a final [DONE]: {text}",
                target.name
            )));
        }
        events[index] = text.matches("data:").count();
    }
    if events[2] != events[0] {
        notes.push(format!(
            "a stream through the gateway had {} `data:` events, direct {} (the client did not ask \
             for usage, so the gateway should strip the usage chunk it adds)",
            events[2], events[0]
        ));
    }
    let mut with_usage: serde_json::Value =
        serde_json::from_slice(&chat_body(true, 0)).unwrap_or_default();
    with_usage["stream_options"] = serde_json::json!({ "include_usage": true });
    let (status, body) = exchange(
        &targets[2],
        Method::POST,
        Some(Bytes::from(with_usage.to_string())),
        &[],
    )
    .await?;
    let text = String::from_utf8_lossy(&body);
    if status != StatusCode::OK || !text.contains("\"usage\"") {
        notes.push(format!(
            "a stream with stream_options.include_usage through the gateway ({status}) has no usage chunk"
        ));
    }
    Ok(notes)
}

struct Scenario {
    title: String,
    work: Workload,
}

async fn run_scenario(
    targets: &[Target; 3],
    scenario: &Scenario,
    plan: Plan,
) -> Result<ScenarioResult, BenchError> {
    let stream = scenario.work.stream;
    let metrics = if stream {
        vec![
            metric("ttft p50", Unit::Micros),
            metric("ttft p99", Unit::Micros),
            metric("total p50", Unit::Micros),
            metric("max gap p50", Unit::Micros),
            metric("events/frame", Unit::Plain),
            metric("streams/s", Unit::PerSecond),
        ]
    } else {
        vec![
            metric("p50", Unit::Micros),
            metric("p99", Unit::Micros),
            metric("req/s", Unit::PerSecond),
        ]
    };
    let mut result = ScenarioResult {
        title: scenario.title.clone(),
        values: metrics.iter().map(|_| Default::default()).collect(),
        metrics,
        errors: [0; 3],
        first_errors: Default::default(),
    };

    progress(&format!("{}: warm-up", scenario.title));
    let warm = Workload {
        stop: Stop::After(plan.warmup),
        ..scenario.work.clone()
    };
    for target in targets {
        drive(target, &warm, plan.warmup + RUN_GRACE).await?;
    }
    let timed = Workload {
        stop: Stop::After(plan.duration),
        ..scenario.work.clone()
    };
    for round in 0..plan.rounds {
        progress(&format!(
            "{}: round {}/{}",
            scenario.title,
            round + 1,
            plan.rounds
        ));
        for offset in 0..TARGETS.len() {
            let index = (round + offset) % TARGETS.len();
            let outcome = drive(&targets[index], &timed, plan.duration + RUN_GRACE).await?;
            result.errors[index] += outcome.errors;
            if result.first_errors[index].is_none() {
                result.first_errors[index].clone_from(&outcome.first_error);
            }
            let values = summarise(outcome, stream);
            // Per-run figures on stderr: bimodal rounds (a reference sometimes fast, sometimes
            // slow) are visible here while the table only shows medians and spreads.
            let line: Vec<String> = result
                .metrics
                .iter()
                .zip(&values)
                .map(|(metric, value)| format!("{} {value:.1}", metric.name))
                .collect();
            progress(&format!("  {:<8} {}", TARGETS[index], line.join(", ")));
            for (slot, value) in result.values.iter_mut().zip(values) {
                slot[index].push(value);
            }
        }
    }
    Ok(result)
}

fn metric(name: &'static str, unit: Unit) -> Metric {
    Metric { name, unit }
}

/// The metric values of one run, in the order of `run_scenario`'s metric lists.
fn summarise(mut outcome: Outcome, stream: bool) -> Vec<f64> {
    let micros = |ns: Option<u64>| ns.map_or(f64::NAN, |ns| ns as f64 / 1000.0);
    let rate = outcome.per_second();
    if stream {
        let pick = |f: fn(&crate::load::StreamTiming) -> Duration| {
            let mut v: Vec<u64> = outcome
                .streams
                .iter()
                .map(|s| u64::try_from(f(s).as_nanos()).unwrap_or(u64::MAX))
                .collect();
            v.sort_unstable();
            v
        };
        let ttft = pick(|s| s.ttft);
        let total = pick(|s| s.total);
        let gap = pick(|s| s.max_gap);
        let (events, frames) = outcome.streams.iter().fold((0u64, 0u64), |(e, f), s| {
            (e + u64::from(s.events), f + u64::from(s.frames))
        });
        vec![
            micros(quantile(&ttft, 0.5)),
            micros(quantile(&ttft, 0.99)),
            micros(quantile(&total, 0.5)),
            micros(quantile(&gap, 0.5)),
            if frames > 0 {
                events as f64 / frames as f64
            } else {
                f64::NAN
            },
            rate,
        ]
    } else {
        outcome.latencies_ns.sort_unstable();
        vec![
            micros(quantile(&outcome.latencies_ns, 0.5)),
            micros(quantile(&outcome.latencies_ns, 0.99)),
            rate,
        ]
    }
}

/// CPU time per request: a fixed number of requests per reference, reading the CPU time of the
/// process doing that reference's work (the upstream for direct) before and after.
async fn measure_cpu(
    fleet: &Fleet,
    body: &Bytes,
    plan: Plan,
    connections: usize,
) -> Result<CpuResult, BenchError> {
    let pids = [fleet.upstream.pid(), fleet.floor.pid(), fleet.gateway.pid()];
    let work = Workload {
        body: body.clone(),
        stream: false,
        connections,
        stop: Stop::Count(plan.cpu_requests),
    };
    let mut cpu = CpuResult {
        requests: plan.cpu_requests,
        connections,
        ..CpuResult::default()
    };
    for round in 0..plan.cpu_rounds {
        progress(&format!(
            "CPU per request: round {}/{}",
            round + 1,
            plan.cpu_rounds
        ));
        for offset in 0..TARGETS.len() {
            let index = (round + offset) % TARGETS.len();
            let before = procfs::cpu_time(pids[index])?;
            let outcome = drive(&fleet.targets[index], &work, COUNT_RUN_LIMIT).await?;
            let after = procfs::cpu_time(pids[index])?;
            let done = outcome.latencies_ns.len().max(1) as f64;
            cpu.micros_per_request[index].push((after - before).as_secs_f64() * 1e6 / done);
        }
    }
    Ok(cpu)
}

/// Flags what the benchmarking guide calls pathological: ~40 ms steps at one connection
/// (Nagle meeting delayed ACKs) and streams that arrive in one piece (buffering).
fn look_for_pathologies(results: &[ScenarioResult]) -> Vec<String> {
    let mut notes = Vec::new();
    for scenario in results {
        for (metric, values) in scenario.metrics.iter().zip(&scenario.values) {
            let gateway = crate::stats::spread(&values[2]).map(|s| s.median);
            let direct = crate::stats::spread(&values[0]).map(|s| s.median);
            let (Some(gateway), Some(direct)) = (gateway, direct) else {
                continue;
            };
            match metric.name {
                "p50" | "p99" | "ttft p50" if gateway - direct > 30_000.0 => notes.push(format!(
                    "{} {}: the gateway adds {:.1} ms — a ~40 ms step is Nagle's algorithm \
                     (TCP_NODELAY missing on an accepted or upstream socket)",
                    scenario.title,
                    metric.name,
                    (gateway - direct) / 1000.0
                )),
                "events/frame" if gateway > direct * 1.5 + 0.5 => notes.push(format!(
                    "{}: the gateway delivers {gateway:.1} SSE events per frame against {direct:.1} \
                     direct — it coalesces or buffers chunks",
                    scenario.title
                )),
                _ => {}
            }
        }
    }
    notes
}

/// `words` × 16 hex digits from the standard library's randomly seeded hasher: enough for a
/// throw-away local token without another dependency.
fn random_hex(words: usize) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (0..words)
        .map(|word| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            hasher.write_usize(word);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
