//! `flexiproxy-bench soak`: many concurrent streams through the gateway for minutes, watching
//! that nothing accumulates (issue 15's soak: 1,000 streams for 10 minutes, RSS flat, no file
//! descriptor growth, no errors).
//!
//! 1. Raises the open-files limit ([`open_files`]) so the children inherit it, then starts the
//!    mock upstream with slow paced streams and the gateway (headless, scratch data folder, usage
//!    recording on so the SQLite writer works all along) as [`crate::run`] does; or a shipped
//!    `flexiproxy` binary with `--gateway-bin`.
//! 2. Checks one stream of each client kind ([`streams::Flavour`]), then ramps up `--streams`
//!    clients ([`streams::client`]) that keep a stream in flight each until the time is up.
//! 3. Samples the gateway every few seconds ([`Sample`]: RSS, peak RSS, open fds, threads, CPU)
//!    and prints a row each time ([`report`]); the sample at the end of the warm-up is the
//!    baseline under load, the one when the load stops is the end.
//! 4. Stops the load, lets the streams in flight finish, and keeps sampling: RSS 30 s later, and
//!    the fd count until it is back to what it was before the load (the gateway's upstream
//!    connection pool keeps idle connections 90 s and sweeps them every 90 s, hence the wait).
//! 5. Stops the gateway with SIGTERM, counts its usage rows ([`usage_rows`]) against the streams
//!    the clients saw complete, prints the summary and judges it ([`verdict`]): the command
//!    fails when any check does.

mod open_files;
mod report;
mod streams;
mod usage_rows;
mod verdict;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::children::{ChildServer, scratch_folder};
use crate::load::Target;
use crate::report::progress;
use crate::run::{
    ANTHROPIC_VERSION, CHAT_PATH, GatewayLaunch, MESSAGES_PATH, chat_body, messages_body,
    start_gateway, upstream_spec,
};
use crate::upstream::StreamPacing;
use crate::{BenchError, procfs};

use streams::{Ending, Flavour, Plan, Tally};
pub use verdict::Bounds;

/// Path of the Responses client kind.
const RESPONSES_PATH: &str = "/v1/responses";
/// How long the gateway may take to exit after SIGTERM: its own grace for requests in flight is
/// 5 s, then it writes the queued usage rows.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Errors after which the load stops early: the verdict is failed already, and a broken gateway
/// should not keep the machine busy for ten minutes.
const ABORT_AFTER_ERRORS: u64 = 1000;
/// Extra time beyond one stream's own limit for the clients to return once told to stop.
const DRAIN_GRACE: Duration = Duration::from_secs(15);
/// Longest time between two fd readings while waiting for the count to come back.
const FD_POLL: Duration = Duration::from_secs(5);

/// Flags of `flexiproxy-bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Concurrent streams (clients), each with one stream in flight at all times.
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Minutes of load, warm-up included.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seconds of load before the baseline ("start") reading [default: 10% of the load, 20–60 s].
    #[arg(long)]
    pub warmup_seconds: Option<f64>,
    /// Seconds between two readings of the gateway [default: load / 40, 2–15 s].
    #[arg(long)]
    pub sample_seconds: Option<f64>,
    /// Seconds after the load stops for the "after" RSS reading.
    #[arg(long, default_value_t = 30)]
    pub settle_seconds: u64,
    /// Longest wait, from the end of the load, for the gateway's fd count to come back to its
    /// level before the load (its upstream pool drops idle connections after 90–180 s; a
    /// 1,000-stream run here was back after 165 s).
    #[arg(long, default_value_t = 240)]
    pub fd_wait_seconds: u64,
    /// Content chunks per upstream stream.
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Milliseconds between two upstream chunks (20 × 200 ms: a 4 s stream).
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
    /// Milliseconds before the upstream's first chunk.
    #[arg(long, default_value_t = 100)]
    pub first_byte_delay_ms: u64,
    /// A `flexiproxy` binary to soak (run with `--headless`), e.g. `target/release/flexiproxy`;
    /// without it, this executable's `gateway` subcommand (the same `run_headless`).
    #[arg(long, value_name = "PATH")]
    pub gateway_bin: Option<PathBuf>,
    /// Tokio workers of the `gateway` subcommand [default: one per core, as `flexiproxy` has].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Tokio workers of the mock upstream.
    #[arg(long, default_value_t = 1)]
    pub upstream_workers: usize,
    #[command(flatten)]
    pub bounds: Bounds,
}

/// The flags, resolved and bounded.
#[derive(Debug, Clone)]
struct Settings {
    streams: usize,
    duration: Duration,
    warmup: Duration,
    ramp: Duration,
    sample: Duration,
    settle: Duration,
    fd_wait: Duration,
    pacing: StreamPacing,
    stream_limit: Duration,
    workers: usize,
}

impl Settings {
    fn from(args: &SoakArgs) -> Self {
        let duration = Duration::from_secs_f64((args.minutes * 60.0).clamp(10.0, 24.0 * 3600.0));
        let secs = duration.as_secs_f64();
        let warmup = Duration::from_secs_f64(
            args.warmup_seconds
                .unwrap_or((secs * 0.1).clamp(20.0, 60.0))
                .clamp(1.0, secs / 2.0),
        );
        let sample = Duration::from_secs_f64(
            args.sample_seconds
                .unwrap_or((secs / 40.0).clamp(2.0, 15.0))
                .clamp(0.5, 600.0),
        );
        let pacing = StreamPacing {
            chunks: args.chunks,
            interval_ms: args.interval_ms,
            first_byte_delay_ms: args.first_byte_delay_ms,
        }
        .bounded();
        // One stream takes first byte + chunks × interval; the limit leaves room for a loaded
        // machine but still catches a stream that stalls.
        let expected = Duration::from_millis(
            pacing.first_byte_delay_ms + pacing.interval_ms * pacing.chunks as u64,
        );
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            streams: args.streams.clamp(1, 20_000),
            duration,
            warmup,
            // Clients start spread over the ramp so that their streams' phases stay spread.
            ramp: (warmup / 2).min(Duration::from_secs(10)),
            sample,
            settle: Duration::from_secs(args.settle_seconds.clamp(1, 600)),
            fd_wait: Duration::from_secs(args.fd_wait_seconds.clamp(1, 1200)),
            pacing,
            stream_limit: expected * 2 + Duration::from_secs(30),
            workers: args.workers.unwrap_or(cores).clamp(1, 64),
        }
    }

    /// Open files the soak's processes need: the gateway holds a socket per client and one per
    /// upstream stream, plus its database, listener and pool; a margin for idle pooled ones.
    fn needed_files(&self) -> u64 {
        (self.streams as u64) * 2 + (self.streams as u64) / 4 + 256
    }
}

/// Where the run is when a sample is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before any load, after set-up.
    Idle,
    /// Load running, before the baseline.
    WarmUp,
    /// Load running, the baseline taken.
    Load,
    /// Load stopped; streams in flight finishing.
    Drain,
    /// Load over, clients gone.
    After,
}

impl Phase {
    /// Label in the table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::WarmUp => "warm-up",
            Self::Load => "load",
            Self::Drain => "drain",
            Self::After => "after",
        }
    }
}

/// One reading of the gateway process and of the clients' counters.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Time since the load started (zero before).
    pub at: Duration,
    /// Where the run was.
    pub phase: Phase,
    /// Streams completed so far.
    pub completed: u64,
    /// Failed streams so far.
    pub errors: u64,
    /// Streams under way.
    pub in_flight: u64,
    /// The gateway's `/proc/PID/status` readings.
    pub status: procfs::Status,
    /// The gateway's open fds.
    pub fds: usize,
    /// The gateway's CPU time so far.
    pub cpu: Duration,
}

impl Sample {
    fn take(
        pid: u32,
        tally: &Tally,
        phase: Phase,
        started: Option<Instant>,
    ) -> Result<Self, BenchError> {
        Ok(Self {
            at: started.map_or(Duration::ZERO, |t| t.elapsed()),
            phase,
            completed: tally.completed.load(Ordering::Relaxed),
            errors: tally.error_total(),
            in_flight: tally.in_flight.load(Ordering::Relaxed),
            status: procfs::status(pid)?,
            fds: procfs::open_fds(pid)?,
            cpu: procfs::cpu_time(pid)?,
        })
    }
}

/// What the run measured, for the summary and the verdict.
#[derive(Debug)]
pub struct Summary {
    /// The command line.
    pub command: String,
    /// Concurrent streams.
    pub streams: usize,
    /// Load duration and warm-up.
    pub duration: Duration,
    pub warmup: Duration,
    /// What was soaked, e.g. `flexiproxy-bench gateway (2 workers)`.
    pub gateway: String,
    /// Upstream stream pacing.
    pub pacing: StreamPacing,
    /// Open-files limit of this process (inherited by the children) and the gateway's own.
    pub limit: open_files::Raised,
    pub gateway_nofile: Option<u64>,
    /// Readings: before the load, at the end of the warm-up, when the load stopped, and
    /// `settle` later.
    pub idle: Sample,
    pub start: Sample,
    pub end: Sample,
    pub after: Sample,
    /// How long after the load stopped `after` was taken.
    pub settle: Duration,
    /// Highest RSS the gateway ever had (`VmHWM`, read last).
    pub peak_rss: u64,
    /// Most fds and threads seen under load.
    pub max_fds: usize,
    pub max_threads: u64,
    /// When (after the load stopped) the fd count was back within the slack of `idle`, and the
    /// count then; `None` when it never was within `fd_wait`.
    pub fds_back: Option<(Duration, usize)>,
    pub fd_wait: Duration,
    /// The last fd reading.
    pub last_fds: usize,
    /// Streams sent, completed (per kind), connections opened, body bytes.
    pub started: u64,
    pub completed: u64,
    pub per_flavour: Vec<(&'static str, u64)>,
    pub connections: u64,
    pub bytes: u64,
    /// Failures per kind, and the first messages.
    pub errors: Vec<(&'static str, u64)>,
    pub error_messages: Vec<String>,
    /// Whether every client returned after the load stopped.
    pub clients_returned: bool,
    /// How the gateway ended after SIGTERM (`Ok`: exit status 0, with the time it took).
    pub shutdown: Result<Duration, String>,
    /// The usage rows it wrote.
    pub usage: Result<usage_rows::UsageRows, String>,
    /// Warning and error lines in its log, with the first few.
    pub log: LogLines,
}

impl Summary {
    /// Failed streams of every kind.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

/// WARN and ERROR lines the gateway logged from the start of the load on.
#[derive(Debug, Default)]
pub struct LogLines {
    pub warnings: u64,
    pub errors: u64,
    /// The first few, clipped.
    pub first: Vec<String>,
}

/// Runs the soak, prints the table and the summary; fails when a check does.
pub fn main(args: &SoakArgs) -> Result<(), BenchError> {
    let settings = Settings::from(args);
    let limit = open_files::raise(settings.needed_files())?;
    if limit.now != limit.before {
        progress(&format!(
            "open-files soft limit raised from {} to {} (the gateway and the upstream inherit it)",
            limit.before, limit.now
        ));
    }
    if let Some(program) = &args.gateway_bin
        && !program.is_file()
    {
        return Err(BenchError::Unexpected(format!(
            "--gateway-bin {}: no such file (build it with `cargo build --release -p flexiproxy`)",
            program.display()
        )));
    }
    // One thread for every client, the sampler and the set-up: the machine's cores are for the
    // gateway, which is what is measured.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("building the soak's runtime"))?;
    let scratch = scratch_folder("soak")?;
    let outcome = runtime.block_on(soak(args, &settings, limit, &scratch));
    let summary = match outcome {
        Ok(summary) => summary,
        Err(err) => {
            progress(&format!("logs kept in {}", scratch.display()));
            return Err(err);
        }
    };
    report::summary(&summary, &args.bounds);
    let failures = verdict::judge(&summary, &args.bounds);
    report::verdict(&failures);
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(())
    } else {
        progress(&format!("logs kept in {}", scratch.display()));
        Err(BenchError::Verdict(failures.join("; ")))
    }
}

async fn soak(
    args: &SoakArgs,
    settings: &Settings,
    limit: open_files::Raised,
    scratch: &std::path::Path,
) -> Result<Summary, BenchError> {
    progress("starting the upstream and the gateway (usage recording on)");
    let mut upstream = ChildServer::start(
        &upstream_spec(args.upstream_workers, settings.pacing),
        scratch,
    )?;
    let ready = start_gateway(
        &GatewayLaunch {
            program: args.gateway_bin.as_deref(),
            workers: settings.workers,
            usage: Some("on"),
        },
        &upstream,
        scratch,
    )
    .await?;
    let mut gateway = ready.server;
    let pid = gateway.pid();
    let gateway_label = match &args.gateway_bin {
        Some(program) => format!("{} --headless", program.display()),
        None => format!(
            "flexiproxy-bench gateway ({} tokio worker{})",
            settings.workers,
            if settings.workers == 1 { "" } else { "s" }
        ),
    };
    let flavours = flavours(gateway.addr, &ready.adapter_key)?;
    let chunks = u32::try_from(settings.pacing.chunks).unwrap_or(u32::MAX);
    let plan = Arc::new(Plan {
        tally: Tally::new(flavours.len()),
        flavours,
        chunks,
        stream_limit: settings.stream_limit,
        stop: std::sync::atomic::AtomicBool::new(false),
    });

    // One stream of each kind first: a kind that cannot work at all fails here, in seconds.
    for (slot, flavour) in plan.flavours.iter().enumerate() {
        let mut sender = None;
        let mut scan = streams::Scan::default();
        if let Err(failure) = streams::stream_once(&mut sender, slot, &plan, &mut scan).await {
            return Err(BenchError::Unexpected(format!(
                "a first {} stream through the gateway failed: {failure}",
                flavour.name
            )));
        }
    }
    // Let the check connections close on both sides before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = Sample::take(pid, &plan.tally, Phase::Idle, None)?;
    // Only what the gateway logs from here on is reported (not its start-up notices).
    let log_from = gateway.stderr_bytes();
    progress(&format!(
        "gateway {} (pid {pid}, open-files limit {}), upstream {}: {} streams for {:.1} min, \
         warm-up {:.0} s, upstream streams {} chunks every {} ms",
        gateway.addr,
        open_files::of_process(pid).map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
        upstream.addr,
        settings.streams,
        settings.duration.as_secs_f64() / 60.0,
        settings.warmup.as_secs_f64(),
        settings.pacing.chunks,
        settings.pacing.interval_ms
    ));
    report::header();
    report::row(&idle, None);

    let started = Instant::now();
    let mut clients = Vec::with_capacity(settings.streams);
    for index in 0..settings.streams {
        let delay = settings
            .ramp
            .mul_f64(index as f64 / settings.streams as f64);
        clients.push(tokio::spawn(streams::client(
            index,
            delay,
            Arc::clone(&plan),
        )));
    }

    let mut previous = idle;
    let mut start = None;
    let mut max_fds = 0;
    let mut max_threads = 0;
    let mut next = settings.sample.min(settings.warmup);
    let end = loop {
        tokio::time::sleep_until((started + next).into()).await;
        let at = started.elapsed();
        let phase = if start.is_none() && at < settings.warmup {
            Phase::WarmUp
        } else {
            Phase::Load
        };
        let sample = Sample::take(pid, &plan.tally, phase, Some(started))?;
        report::row(&sample, Some(&previous));
        max_fds = max_fds.max(sample.fds);
        max_threads = max_threads.max(sample.status.threads);
        previous = sample;
        if start.is_none() && at >= settings.warmup {
            start = Some(sample);
        }
        if let Err(err) = gateway.ensure_running() {
            plan.stop.store(true, Ordering::Relaxed);
            return Err(err);
        }
        upstream.ensure_running()?;
        if at >= settings.duration {
            break sample;
        }
        if sample.errors >= ABORT_AFTER_ERRORS {
            progress(&format!(
                "{} errors: stopping the load early",
                sample.errors
            ));
            break sample;
        }
        // The next tick, but never past the end of the warm-up or of the load, so those two
        // readings are taken on time.
        let mut due = next + settings.sample;
        if start.is_none() {
            due = due.min(settings.warmup);
        }
        next = due.min(settings.duration);
    };
    let start = start.unwrap_or(end);
    plan.stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();

    let drain = async {
        for client in clients {
            let _ = client.await;
        }
    };
    let clients_returned = tokio::time::timeout(settings.stream_limit + DRAIN_GRACE, drain)
        .await
        .is_ok();
    let drained = Sample::take(pid, &plan.tally, Phase::Drain, Some(started))?;
    report::row(&drained, Some(&previous));
    previous = drained;

    // After the load: the RSS reading `settle` after the stop, and the fd count until it is back.
    let fd_ceiling = idle.fds + args.bounds.fd_slack;
    let mut after = None;
    let mut fds_back = None;
    let mut last_printed = Instant::now();
    loop {
        let since = stopped.elapsed();
        let settle_left = settings.settle.saturating_sub(since);
        let wait = if after.is_none() {
            settle_left.min(FD_POLL)
        } else {
            FD_POLL
        };
        if after.is_some() && (fds_back.is_some() || since >= settings.fd_wait) {
            break;
        }
        tokio::time::sleep(wait).await;
        let sample = Sample::take(pid, &plan.tally, Phase::After, Some(started))?;
        let since = stopped.elapsed();
        let back_now = fds_back.is_none() && sample.fds <= fd_ceiling;
        if back_now {
            fds_back = Some((since, sample.fds));
        }
        let settled_now = after.is_none() && since >= settings.settle;
        if settled_now {
            after = Some(sample);
        }
        // Nothing moves much while waiting for the pool to let go: a row every 30 s at most.
        let quiet = settings.sample.max(Duration::from_secs(30));
        if settled_now || back_now || last_printed.elapsed() >= quiet {
            report::row(&sample, Some(&previous));
            previous = sample;
            last_printed = Instant::now();
        }
        gateway.ensure_running()?;
    }
    let after = after.unwrap_or(previous);
    let last = Sample::take(pid, &plan.tally, Phase::After, Some(started))?;
    let gateway_nofile = open_files::of_process(pid);

    progress("stopping the gateway (SIGTERM) and reading its usage rows");
    let asked = Instant::now();
    let shutdown = match gateway.terminate(SHUTDOWN_TIMEOUT) {
        Ok(status) if status.success() => Ok(asked.elapsed()),
        Ok(status) => Err(format!("exited with {status} after SIGTERM")),
        Err(err) => Err(err.to_string()),
    };
    let usage = usage_rows::read(&ready.data_dir.join("flexiproxy.db")).map_err(|e| e.to_string());
    let log = log_lines(&gateway.stderr_log, log_from);
    drop(upstream);

    let tally = &plan.tally;
    Ok(Summary {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        streams: settings.streams,
        duration: settings.duration,
        warmup: settings.warmup,
        gateway: gateway_label,
        pacing: settings.pacing,
        limit,
        gateway_nofile,
        idle,
        start,
        end,
        after,
        settle: settings.settle,
        peak_rss: last.status.hwm_bytes,
        max_fds,
        max_threads,
        fds_back,
        fd_wait: settings.fd_wait,
        last_fds: last.fds,
        started: tally.started.load(Ordering::Relaxed),
        completed: tally.completed.load(Ordering::Relaxed),
        per_flavour: plan
            .flavours
            .iter()
            .zip(&tally.per_flavour)
            .map(|(flavour, n)| (flavour.name, n.load(Ordering::Relaxed)))
            .collect(),
        connections: tally.connections.load(Ordering::Relaxed),
        bytes: tally.bytes.load(Ordering::Relaxed),
        errors: streams::ErrorKind::ALL
            .iter()
            .zip(&tally.errors)
            .map(|(kind, n)| (kind.label(), n.load(Ordering::Relaxed)))
            .collect(),
        error_messages: tally.messages(),
        clients_returned,
        shutdown,
        usage,
        log,
    })
}

/// The client kinds: OpenAI chat on the same-protocol path (with and without the usage chunk),
/// Anthropic Messages and OpenAI Responses translated to the same `openai_chat` upstream.
fn flavours(gateway: std::net::SocketAddr, adapter_key: &str) -> Result<Vec<Flavour>, BenchError> {
    let header = |value: String| {
        HeaderValue::from_str(&value)
            .map_err(|err| BenchError::Unexpected(format!("adapter key header: {err}")))
    };
    let bearer = vec![(AUTHORIZATION, header(format!("Bearer {adapter_key}"))?)];
    let anthropic = vec![
        (
            HeaderName::from_static("x-api-key"),
            header(adapter_key.to_owned())?,
        ),
        (
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ),
    ];
    let mut with_usage: serde_json::Value =
        serde_json::from_slice(&chat_body(true, 0)).unwrap_or_default();
    with_usage["stream_options"] = serde_json::json!({ "include_usage": true });
    let responses = serde_json::json!({
        "model": "bench-model",
        "instructions": "You are a benchmark.",
        "input": "Say hello.",
        "max_output_tokens": 16,
        "stream": true,
    });
    Ok(vec![
        Flavour {
            name: "chat",
            target: Target::new("gateway", gateway, CHAT_PATH, bearer.clone())?,
            body: chat_body(true, 0),
            ending: Ending::Done,
        },
        Flavour {
            name: "anthropic",
            target: Target::new("gateway", gateway, MESSAGES_PATH, anthropic)?,
            body: messages_body(true, 0),
            ending: Ending::Event("message_stop"),
        },
        Flavour {
            name: "chat+usage",
            target: Target::new("gateway", gateway, CHAT_PATH, bearer.clone())?,
            body: Bytes::from(with_usage.to_string()),
            ending: Ending::Done,
        },
        Flavour {
            name: "responses",
            target: Target::new("gateway", gateway, RESPONSES_PATH, bearer)?,
            body: Bytes::from(responses.to_string()),
            ending: Ending::Event("response.completed"),
        },
    ])
}

/// Counts WARN and ERROR lines in the gateway's log from byte `from` on, keeping the first few.
fn log_lines(path: &std::path::Path, from: u64) -> LogLines {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[from..]);
    let mut lines = LogLines::default();
    for line in text.lines() {
        let warning = line.contains(" WARN ");
        let error = line.contains(" ERROR ");
        lines.warnings += u64::from(warning);
        lines.errors += u64::from(error);
        if (warning || error) && lines.first.len() < 3 {
            lines.first.push(line.chars().take(200).collect());
        }
    }
    lines
}
