//! The bench's one error type. Every subcommand returns it; `main` prints it and exits non-zero.
//!
//! Variants say where a failure came from (a local socket or file, an HTTP exchange with one of
//! the servers under test, a child process that did not come up, a run that overstayed its time)
//! so a failed bench run points at the part to look at.

use std::io;

/// What can go wrong while benchmarking.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A socket, file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the bench was doing.
        context: String,
        /// The operating system's answer.
        #[source]
        source: io::Error,
    },
    /// An HTTP exchange with a server under test failed at the protocol level.
    #[error("HTTP exchange with {target} failed: {source}")]
    Http {
        /// Which server (direct, floor, gateway, management API...).
        target: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// A server answered, but not what the bench needs (wrong status, missing field...).
    #[error("{0}")]
    Unexpected(String),
    /// A child process could not be started or did not announce its address.
    #[error("child process `{name}`: {message}")]
    Child {
        /// upstream, floor or gateway.
        name: String,
        /// What happened, with the tail of its stderr when there is one.
        message: String,
    },
    /// Something did not finish within its time bound.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A soak ran to the end and at least one of its checks failed (each one listed).
    #[error("soak failed: {0}")]
    Verdict(String),
    /// The arguments meant for the gateway were rejected by its own parser.
    #[error("gateway arguments: {0}")]
    GatewayArgs(#[from] clap::Error),
}

impl BenchError {
    /// Wraps an `io::Error` with what the bench was doing; used as `.map_err(BenchError::io("..."))`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// Wraps a `hyper::Error` with the name of the server it came from.
    pub fn http(target: impl Into<String>) -> impl FnOnce(hyper::Error) -> Self {
        let target = target.into();
        move |source| Self::Http { target, source }
    }
}
