//! `flexiproxy-bench run` (the default): the whole benchmark in one command.
//!
//! 1. Starts the mock upstream, the floor and the gateway as child processes ([`crate::children`]),
//!    the gateway with `--port 0`, a scratch `--data-dir`, `--secrets env`, a random
//!    `FLEXIPROXY_MANAGEMENT_TOKEN` and the provider key in an environment variable.
//! 2. Registers an `openai_chat` provider and an adapter ([`crate::management`]) and checks one
//!    plain and one streamed answer through each reference (status, `[DONE]` or
//!    `message_stop`, usage chunk handling).
//! 3. For each scenario: a warm-up per reference (thrown away), then rounds that run the four
//!    references one after the other (order rotated each round so no reference always runs
//!    first), each for the same duration ([`crate::load`]). The references: the OpenAI chat
//!    request straight to the upstream (direct), through the floor, through the gateway
//!    (same-protocol pass-through), and the equivalent Anthropic Messages request through the
//!    gateway to the same upstream (translated). All four make the upstream do the same work
//!    (a canned chat completion or chat stream), so translated − pass-through, per round, is
//!    what translating costs.
//! 4. Fixed-count runs per reference, small and large body, with the process's CPU time read
//!    before and after ([`crate::procfs`]), then memory; then the table ([`crate::report`]).
//!
//! Everything is bounded: durations and rounds are clamped, each load run has a time limit,
//! children are stopped when dropped, and every address is 127.0.0.1.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

use crate::children::{ChildServer, Spec, scratch_folder};
use crate::load::{Outcome, Stop, Target, Workload, drive, exchange};
use crate::report::{
    CpuResult, DIRECT, GATEWAY, MemoryResult, Metric, REFERENCES, Report, ScenarioResult, TARGETS,
    TRANSLATED, Unit, progress,
};
use crate::stats::quantile;
use crate::upstream::StreamPacing;
use crate::{BenchError, management, procfs};

/// Variable that carries the provider key to the gateway (registered as `env:NAME`).
const PROVIDER_KEY_ENV: &str = "FLEXIPROXY_BENCH_PROVIDER_KEY";
/// Path of the OpenAI chat references (direct, floor, gateway).
pub(crate) const CHAT_PATH: &str = "/v1/chat/completions";
/// Path of the translated reference: Anthropic Messages, as Claude Code calls it.
pub(crate) const MESSAGES_PATH: &str = "/v1/messages";
/// `anthropic-version` the translated reference sends, as the Anthropic SDKs do.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Extra time a load run may take beyond its nominal duration before it counts as hung.
const RUN_GRACE: Duration = Duration::from_secs(30);
/// Upper bound for a fixed-count (CPU) run.
const COUNT_RUN_LIMIT: Duration = Duration::from_secs(180);

/// Flags of `flexiproxy-bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Smoke run of about 40 s: 3 rounds of 0.6 s, short warm-up, 3,000-request CPU runs.
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
    #[command(flatten)]
    pub pacing: StreamPacing,
    /// Size of the large-body scenario's request in KB (a Claude Code request is ~60); 0 skips it.
    #[arg(long, default_value_t = 60)]
    pub large_body_kb: usize,
    /// Requests of each small-body CPU-time measurement [default: 20000; --quick: 3000]; the
    /// large-body one sends half as many.
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

    let scratch = scratch_folder("bench")?;
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

/// The three servers and the four ways to reach them.
struct Fleet {
    upstream: ChildServer,
    floor: ChildServer,
    gateway: ChildServer,
    /// direct, floor, gateway, translated (see [`TARGETS`]).
    targets: [Target; REFERENCES],
}

/// The request bodies of one scenario, one per reference: the OpenAI chat body for the first
/// three, the equivalent Anthropic Messages body for the translated one.
fn bodies(stream: bool, pad_to: usize) -> [Bytes; REFERENCES] {
    let chat = chat_body(stream, pad_to);
    [
        chat.clone(),
        chat.clone(),
        chat,
        messages_body(stream, pad_to),
    ]
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

    let small = bodies(false, 0);
    let large =
        (args.large_body_kb > 0).then(|| bodies(false, args.large_body_kb.min(30_000) * 1024));
    let sizes = |bodies: &[Bytes; REFERENCES]| {
        format!(
            "{} body (translated: {} Anthropic body)",
            size(bodies[GATEWAY].len()),
            size(bodies[TRANSLATED].len())
        )
    };
    let connections = args.connections.clamp(1, 512);
    let mut scenarios = vec![
        Scenario {
            title: format!("chat, 1 connection, {}", sizes(&small)),
            short: "chat ×1".to_owned(),
            stream: false,
            connections: 1,
            bodies: small.clone(),
        },
        Scenario {
            title: format!("chat, {connections} connections, {}", sizes(&small)),
            short: format!("chat ×{connections}"),
            stream: false,
            connections,
            bodies: small.clone(),
        },
    ];
    if let Some(large) = &large {
        scenarios.push(Scenario {
            title: format!("chat, 1 connection, {}", sizes(large)),
            short: format!("chat ×1 {}", size(large[GATEWAY].len())),
            stream: false,
            connections: 1,
            bodies: large.clone(),
        });
    }
    let pacing = args.pacing.bounded();
    let stream_connections = args.stream_connections.clamp(1, 512);
    scenarios.push(Scenario {
        title: format!(
            "stream, {stream_connections} connections, {} chunks every {} ms (first after {} ms)",
            pacing.chunks, pacing.interval_ms, pacing.first_byte_delay_ms
        ),
        short: format!("stream ×{stream_connections}"),
        stream: true,
        connections: stream_connections,
        bodies: bodies(true, 0),
    });

    let mut results = Vec::with_capacity(scenarios.len());
    for scenario in &scenarios {
        results.push(run_scenario(&fleet.targets, scenario, plan).await?);
        fleet.upstream.ensure_running()?;
        fleet.floor.ensure_running()?;
        fleet.gateway.ensure_running()?;
    }

    let cpu_connections = args.cpu_connections.clamp(1, 64);
    let mut cpu = vec![
        measure_cpu(
            &fleet,
            &small,
            &format!("{} body", size(small[GATEWAY].len())),
            plan.cpu_requests,
            plan.cpu_rounds,
            cpu_connections,
        )
        .await?,
    ];
    if let Some(large) = &large {
        // A large body takes a few times longer; half the requests keeps this step short while
        // /proc's 10 ms clock ticks still amount to under 1 µs per request in a full run.
        cpu.push(
            measure_cpu(
                &fleet,
                large,
                &format!("{} body", size(large[GATEWAY].len())),
                (plan.cpu_requests / 2).max(100),
                plan.cpu_rounds,
                cpu_connections,
            )
            .await?,
        );
    }
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
            pacing.chunks,
            pacing.interval_ms
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
    let upstream = ChildServer::start(&upstream_spec(args.workers, args.pacing), scratch)?;
    let upstream_base = format!("http://{}", upstream.addr);
    let floor = ChildServer::start(
        &Spec {
            name: "floor",
            program: None,
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

    let GatewayReady {
        server: gateway,
        adapter_key,
        ..
    } = start_gateway(
        &GatewayLaunch {
            program: None,
            workers: args.workers,
            usage: args.usage.as_deref(),
        },
        &upstream,
        scratch,
    )
    .await?;
    let header = |value: String| {
        HeaderValue::from_str(&value)
            .map_err(|err| BenchError::Unexpected(format!("adapter key header: {err}")))
    };
    let openai_auth = vec![(AUTHORIZATION, header(format!("Bearer {adapter_key}"))?)];
    // What Claude Code and the Anthropic SDKs send: the key in `x-api-key`, plus the version.
    let anthropic_auth = vec![
        (HeaderName::from_static("x-api-key"), header(adapter_key)?),
        (
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ),
    ];
    progress(&format!(
        "upstream {}, floor {}, gateway {} (adapter created)",
        upstream.addr, floor.addr, gateway.addr
    ));
    let targets = [
        Target::new("direct", upstream.addr, CHAT_PATH, Vec::new())?,
        Target::new("floor", floor.addr, CHAT_PATH, Vec::new())?,
        Target::new("gateway", gateway.addr, CHAT_PATH, openai_auth)?,
        Target::new("translated", gateway.addr, MESSAGES_PATH, anthropic_auth)?,
    ];
    Ok(Fleet {
        upstream,
        floor,
        gateway,
        targets,
    })
}

/// The mock upstream's child spec: port 0, `workers` tokio workers, streams paced by `pacing`.
pub(crate) fn upstream_spec(workers: usize, pacing: StreamPacing) -> Spec {
    let mut args: Vec<OsString> = ["upstream", "--port", "0", "--workers"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(OsString::from(workers.clamp(1, 64).to_string()));
    args.extend(pacing.bounded().to_flags().into_iter().map(OsString::from));
    Spec {
        name: "upstream",
        program: None,
        args,
        env: Vec::new(),
        env_remove: Vec::new(),
    }
}

/// How to start the gateway.
#[derive(Debug)]
pub(crate) struct GatewayLaunch<'a> {
    /// A `flexiproxy` binary to run with `--headless`; `None` runs this executable's `gateway`
    /// subcommand (the same `cli::run_headless`, with `workers` tokio workers).
    pub program: Option<&'a Path>,
    /// Tokio workers of the `gateway` subcommand (ignored for a `flexiproxy` binary, whose
    /// runtime has one worker per core).
    pub workers: usize,
    /// Passed as `--usage` (on|off); the gateway's default otherwise.
    pub usage: Option<&'a str>,
}

/// A gateway that answers: its process, where its data lives, and the adapter key to call it with.
#[derive(Debug)]
pub(crate) struct GatewayReady {
    pub server: ChildServer,
    /// Its `--data-dir` (the usage database is `flexiproxy.db` in it).
    pub data_dir: PathBuf,
    /// The `fp-…` key of the adapter registered for `upstream`.
    pub adapter_key: String,
}

/// Starts the gateway headless on 127.0.0.1 port 0 with a scratch `--data-dir`, `--secrets env`
/// and a random management token, waits for `/health`, and registers `upstream` as an
/// `openai_chat` provider with an adapter ([`management`]).
pub(crate) async fn start_gateway(
    launch: &GatewayLaunch<'_>,
    upstream: &ChildServer,
    scratch: &Path,
) -> Result<GatewayReady, BenchError> {
    let data_dir = scratch.join("gateway-data");
    std::fs::create_dir_all(&data_dir)
        .map_err(BenchError::io(format!("creating {}", data_dir.display())))?;
    let management_token = random_hex(4);
    let mut args: Vec<OsString> = match launch.program {
        Some(_) => Vec::new(),
        None => vec![
            OsString::from("gateway"),
            OsString::from("--workers"),
            OsString::from(launch.workers.clamp(1, 64).to_string()),
            OsString::from("--"),
        ],
    };
    args.extend(
        [
            "--headless",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--secrets",
            "env",
        ]
        .into_iter()
        .map(OsString::from),
    );
    args.push(OsString::from("--data-dir"));
    args.push(data_dir.clone().into_os_string());
    if let Some(usage) = launch.usage {
        args.push(OsString::from("--usage"));
        args.push(OsString::from(usage));
    }
    let server = ChildServer::start(
        &Spec {
            name: "gateway",
            program: launch.program.map(Path::to_path_buf),
            args,
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
                "FLEXIPROXY_CONFIG",
            ],
        },
        scratch,
    )?;
    let health = Target::new("gateway", server.addr, "/health", Vec::new())?;
    management::wait_healthy(&health).await?;
    let adapter_key = management::register(
        &health,
        &management_token,
        &format!("http://{}/v1", upstream.addr),
        PROVIDER_KEY_ENV,
    )
    .await?;
    Ok(GatewayReady {
        server,
        data_dir,
        adapter_key,
    })
}

/// The user's message; `pad_to` > 0 grows it until a request body is about that size.
fn prompt(pad_to: usize) -> String {
    if pad_to == 0 {
        return "Say hello.".to_owned();
    }
    // Plain prose, no characters that need JSON escaping: the size is the size on the wire.
    const PROSE: &str =
        "The quick brown fox jumps over the lazy dog while the gateway relays bytes. ";
    let mut content = String::new();
    while content.len() + 120 < pad_to {
        content.push_str(PROSE);
    }
    content
}

/// An OpenAI chat request (system message, one user message).
pub(crate) fn chat_body(stream: bool, pad_to: usize) -> Bytes {
    let mut body = serde_json::json!({
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": prompt(pad_to)}
        ],
        "max_tokens": 16,
    });
    if stream {
        body["stream"] = serde_json::Value::Bool(true);
    }
    Bytes::from(body.to_string())
}

/// The same request as Anthropic Messages writes it (what Claude Code sends, minus its size).
pub(crate) fn messages_body(stream: bool, pad_to: usize) -> Bytes {
    let mut body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "system": [{"type": "text", "text": "You are a benchmark."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": prompt(pad_to)}]}
        ],
    });
    if stream {
        body["stream"] = serde_json::Value::Bool(true);
    }
    Bytes::from(body.to_string())
}

/// `1234` → `1234 B`, `61440` → `60 KB`.
fn size(bytes: usize) -> String {
    if bytes >= 10 * 1024 {
        format!("{} KB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// Checks that each reference answers what a client expects, before timing anything. A wrong
/// status is fatal (the numbers would be meaningless); other differences become notes.
async fn check_answers(targets: &[Target; REFERENCES]) -> Result<Vec<String>, BenchError> {
    let mut notes = Vec::new();
    let mut events = [0usize; REFERENCES];
    for (index, target) in targets.iter().enumerate() {
        let anthropic = index == TRANSLATED;
        // What the client must see: its own protocol's answer, whatever the upstream spoke.
        let (plain_marks, stream_end) = if anthropic {
            (["\"type\":\"message\"", "\"usage\""], "event: message_stop")
        } else {
            (["\"chat.completion\"", "\"usage\""], "data: [DONE]")
        };
        let [plain, streamed] = [false, true].map(|stream| bodies(stream, 0)[index].clone());
        let (status, body) = exchange(target, Method::POST, Some(plain), &[]).await?;
        let text = String::from_utf8_lossy(&body);
        if status != StatusCode::OK {
            return Err(BenchError::Unexpected(format!(
                "{} answered {status} to a chat request: {text}",
                target.name
            )));
        }
        if !plain_marks.iter().all(|mark| text.contains(mark)) {
            notes.push(format!(
                "{}: the plain answer lacks {}: {text}",
                target.name,
                plain_marks.join(" or ")
            ));
        }
        let (status, body) = exchange(target, Method::POST, Some(streamed), &[]).await?;
        let text = String::from_utf8_lossy(&body);
        if status != StatusCode::OK || !text.contains(stream_end) {
            return Err(BenchError::Unexpected(format!(
                "{} answered {status} to a streamed request without a final `{stream_end}`: {text}",
                target.name
            )));
        }
        events[index] = text.matches("data:").count();
    }
    if events[GATEWAY] != events[DIRECT] {
        notes.push(format!(
            "a stream through the gateway had {} `data:` events, direct {} (the client did not ask \
             for usage, so the gateway should strip the usage chunk it adds)",
            events[GATEWAY], events[DIRECT]
        ));
    }
    let mut with_usage: serde_json::Value =
        serde_json::from_slice(&chat_body(true, 0)).unwrap_or_default();
    with_usage["stream_options"] = serde_json::json!({ "include_usage": true });
    let (status, body) = exchange(
        &targets[GATEWAY],
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

/// One table of the report: the same exchange through every reference.
struct Scenario {
    title: String,
    /// Name in the translation-cost section.
    short: String,
    stream: bool,
    connections: usize,
    /// What each reference is sent (see [`bodies`]).
    bodies: [Bytes; REFERENCES],
}

impl Scenario {
    /// The load for reference `index`, stopping as `stop` says.
    fn workload(&self, index: usize, stop: Stop) -> Workload {
        Workload {
            body: self.bodies[index].clone(),
            stream: self.stream,
            connections: self.connections,
            stop,
        }
    }
}

async fn run_scenario(
    targets: &[Target; REFERENCES],
    scenario: &Scenario,
    plan: Plan,
) -> Result<ScenarioResult, BenchError> {
    let stream = scenario.stream;
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
        short: scenario.short.clone(),
        values: metrics.iter().map(|_| Default::default()).collect(),
        metrics,
        errors: [0; REFERENCES],
        first_errors: Default::default(),
    };

    progress(&format!("{}: warm-up", scenario.title));
    for (index, target) in targets.iter().enumerate() {
        let warm = scenario.workload(index, Stop::After(plan.warmup));
        drive(target, &warm, plan.warmup + RUN_GRACE).await?;
    }
    for round in 0..plan.rounds {
        progress(&format!(
            "{}: round {}/{}",
            scenario.title,
            round + 1,
            plan.rounds
        ));
        for offset in 0..TARGETS.len() {
            let index = (round + offset) % TARGETS.len();
            let timed = scenario.workload(index, Stop::After(plan.duration));
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
            progress(&format!("  {:<10} {}", TARGETS[index], line.join(", ")));
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
/// process doing that reference's work (the upstream for direct, the gateway for both gateway
/// and translated) before and after.
async fn measure_cpu(
    fleet: &Fleet,
    bodies: &[Bytes; REFERENCES],
    label: &str,
    requests: u64,
    rounds: usize,
    connections: usize,
) -> Result<CpuResult, BenchError> {
    let pids = [
        fleet.upstream.pid(),
        fleet.floor.pid(),
        fleet.gateway.pid(),
        fleet.gateway.pid(),
    ];
    let mut cpu = CpuResult {
        label: label.to_owned(),
        requests,
        connections,
        ..CpuResult::default()
    };
    for round in 0..rounds {
        progress(&format!(
            "CPU per request, {label}: round {}/{rounds}",
            round + 1
        ));
        for offset in 0..TARGETS.len() {
            let index = (round + offset) % TARGETS.len();
            let work = Workload {
                body: bodies[index].clone(),
                stream: false,
                connections,
                stop: Stop::Count(requests),
            };
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
            let direct = crate::stats::spread(&values[DIRECT]).map(|s| s.median);
            for candidate in [GATEWAY, TRANSLATED] {
                let gateway = crate::stats::spread(&values[candidate]).map(|s| s.median);
                let (Some(gateway), Some(direct)) = (gateway, direct) else {
                    continue;
                };
                let who = TARGETS[candidate];
                match metric.name {
                    "p50" | "p99" | "ttft p50" if gateway - direct > 30_000.0 => {
                        notes.push(format!(
                            "{} {}: {who} adds {:.1} ms — a ~40 ms step is Nagle's algorithm \
                             (TCP_NODELAY missing on an accepted or upstream socket)",
                            scenario.title,
                            metric.name,
                            (gateway - direct) / 1000.0
                        ));
                    }
                    // An Anthropic stream has a few more events than the chat stream it is
                    // made from (message_start, block start and stop), hence the slack.
                    "events/frame" if gateway > direct * 1.5 + 0.5 => notes.push(format!(
                        "{}: {who} delivers {gateway:.1} SSE events per frame against {direct:.1} \
                         direct — it coalesces or buffers chunks",
                        scenario.title
                    )),
                    _ => {}
                }
            }
        }
    }
    notes
}

/// `words` × 16 hex digits from the standard library's randomly seeded hasher: enough for a
/// throw-away local token without another dependency.
pub(crate) fn random_hex(words: usize) -> String {
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]
mod tests {
    use flexiproxy_protocol::{anthropic_messages, openai_chat};

    use super::*;

    /// The translated reference must ask the upstream for what the pass-through one asks, or
    /// translated − pass-through would measure a different exchange rather than translation.
    #[test]
    fn the_anthropic_body_asks_for_what_the_chat_body_asks() {
        for (stream, pad_to) in [(false, 0), (true, 0), (false, 60 * 1024)] {
            let [.., chat, messages] = bodies(stream, pad_to);
            let chat = openai_chat::request_to_canonical(&chat).unwrap();
            let messages = anthropic_messages::request_to_canonical(&messages).unwrap();
            assert_eq!(chat.system, messages.system);
            assert_eq!(chat.messages, messages.messages);
            assert_eq!(chat.max_tokens, messages.max_tokens);
            assert_eq!(chat.stream, messages.stream);
            assert_eq!(chat.stream, stream);
        }
        let [.., chat, messages] = bodies(false, 60 * 1024);
        assert!(chat.len().abs_diff(60 * 1024) < 200, "{}", chat.len());
        assert!(messages.len().abs_diff(chat.len()) < 100);
    }

    #[test]
    fn sizes_read_as_bytes_then_kilobytes() {
        assert_eq!(size(142), "142 B");
        assert_eq!(size(61_400), "59 KB");
    }
}
