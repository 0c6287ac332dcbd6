//! The loopback listener a server part (`upstream`, `floor`) serves on: bound to 127.0.0.1,
//! announced with the line [`crate::children`] waits for, and handing out connections with
//! Nagle's algorithm off, so neither part adds Nagle's ~40 ms steps to what is measured.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use crate::{BenchError, report};

/// A server part's listener; `part` names it in the announcement and in errors.
#[derive(Debug)]
pub struct Listener {
    part: &'static str,
    inner: TcpListener,
}

impl Listener {
    /// Binds `port` on 127.0.0.1 (0: any free port) and announces the address it got.
    pub async fn bind(part: &'static str, port: u16) -> Result<Self, BenchError> {
        let inner = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(BenchError::io(format!("binding the {part}'s port")))?;
        let addr = inner
            .local_addr()
            .map_err(BenchError::io(format!("reading the {part}'s address")))?;
        report::announce(part, addr);
        Ok(Self { part, inner })
    }

    /// The next connection, Nagle off.
    pub async fn accept(&self) -> Result<TcpStream, BenchError> {
        let (socket, _) = self
            .inner
            .accept()
            .await
            .map_err(BenchError::io(format!("accepting on the {}", self.part)))?;
        // A failure here only loses latency, never correctness; keep serving.
        let _ = socket.set_nodelay(true);
        Ok(socket)
    }
}
