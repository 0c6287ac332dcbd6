//! `flexiproxy-bench`: measures what FlexiProxy's gateway adds on top of a bare loopback hop.
//!
//! One executable plays every part so that a single `cargo run --release -p flexiproxy-bench`
//! is the whole benchmark:
//! - `upstream` ([`upstream`]): a fast mock LLM provider (canned OpenAI / Anthropic / Gemini JSON and
//!   paced SSE streams);
//! - `floor` ([`floor`]): a bare hyper pass-through proxy, the physical floor of "one more hop";
//!   both serve on a [`listener`];
//! - `gateway` ([`gateway`]): the real gateway, headless, in this process (no Tauri needed);
//! - `run` (the default, [`run`]): starts the three above as child processes of this executable
//!   ([`children`]), registers a provider and an adapter through the management API
//!   ([`management`]), drives interleaved load ([`load`]) against direct / floor / gateway and
//!   prints medians and ratios ([`stats`], [`report`]), plus CPU time per request ([`procfs`]);
//! - `soak` ([`soak`]): a thousand concurrent streams through the gateway for minutes, checking
//!   that its memory, file descriptors and usage rows do not drift and that no stream fails.
//!
//! How and why it measures this way: `shared/benchmarking.md` (noisy 2-core machines, so every
//! figure kept is a ratio taken within the same run).

mod children;
mod error;
mod floor;
mod gateway;
mod listener;
mod load;
mod management;
mod procfs;
mod report;
mod run;
mod soak;
mod stats;
mod upstream;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::BenchError;

/// Command line of `flexiproxy-bench`. Without a subcommand it behaves as `run`.
#[derive(Debug, Parser)]
#[command(
    name = "flexiproxy-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mock LLM upstream on 127.0.0.1 (canned JSON, paced SSE streams).
    Upstream(upstream::UpstreamArgs),
    /// Bare hyper pass-through proxy to an upstream: the floor the gateway is compared with.
    Floor(floor::FloorArgs),
    /// The FlexiProxy gateway, headless, in this process; takes `flexiproxy --headless` flags.
    Gateway(gateway::GatewayArgs),
    /// The benchmark: spawns upstream, floor and gateway, drives load, prints the table (default).
    Run(run::RunArgs),
    /// Many concurrent streams through the gateway for minutes: RSS, fds, errors, usage rows.
    Soak(soak::SoakArgs),
}

/// Builds the tokio runtime a server part (upstream, floor, gateway) runs on: always the
/// multi-threaded flavour the real app uses (so `block_in_place` and friends behave as in
/// production), with one worker by default: on a 2-core box shared by the load generator, the
/// upstream and the proxy, more workers mostly measure the scheduler.
fn server_runtime(workers: usize) -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(BenchError::io("building the tokio runtime"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Upstream(args)) => upstream::main(&args),
        Some(Command::Floor(args)) => floor::main(&args),
        Some(Command::Gateway(args)) => return gateway::main(args),
        Some(Command::Run(args)) => run::main(&args),
        Some(Command::Soak(args)) => soak::main(&args),
        None => run::main(&cli.run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report::failure(&err);
            ExitCode::FAILURE
        }
    }
}
