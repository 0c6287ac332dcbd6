//! `flexiproxy-bench gateway`: the real FlexiProxy gateway, headless, inside this process.
//!
//! It calls `flexiproxy_gateway::config::cli::run_headless` exactly as `flexiproxy --headless` does, with
//! the same flags (parsed by the gateway's own `cli::Args`), so the benchmark measures the
//! shipped code path without building or starting Tauri. The only bench-side choice is the tokio
//! runtime's worker count (`--workers`, default 1, the same as the floor and the upstream, so the
//! comparison is one worker against one worker).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use flexiproxy_gateway::config::cli;

use crate::{BenchError, report};

/// Flags of `flexiproxy-bench gateway`; everything after them goes to the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Tokio worker threads for the gateway's runtime.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Flags of `flexiproxy --headless` (e.g. `--port 0 --data-dir DIR --secrets env`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "GATEWAY FLAGS"
    )]
    pub gateway_args: Vec<OsString>,
}

/// Parses the gateway's flags and runs it until SIGINT/SIGTERM; returns its exit code.
pub fn main(args: GatewayArgs) -> ExitCode {
    let argv = std::iter::once(OsString::from("flexiproxy")).chain(args.gateway_args);
    let parsed = match cli::Args::try_parse_from(argv) {
        Ok(parsed) => parsed,
        Err(err) => {
            report::failure(&BenchError::GatewayArgs(err));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match crate::server_runtime(args.workers) {
        Ok(runtime) => runtime,
        Err(err) => {
            report::failure(&err);
            return ExitCode::FAILURE;
        }
    };
    cli::init_logging();
    runtime.block_on(cli::run_headless(parsed))
}
