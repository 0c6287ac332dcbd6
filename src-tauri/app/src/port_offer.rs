//! When another program holds the port to listen on: find a free port near it, ask the user in
//! a native dialog ([`crate::dialog::offer_port`]) whether to use it, and start the gateway
//! there.
//!
//! Accepting a port for a saved (or default) address saves it as the listen port
//! (`config::SavedListen`, the same setting as Settings → Address), so every later start uses
//! it. When the taken port came from `--port`/`FLEXIPROXY_PORT`, the new one holds for this
//! run only (the next start asks for the given port again). Declining leaves the failure page
//! and the tray's Start gateway, as before.

use std::net::{IpAddr, TcpListener};

use flexiproxy_gateway::config::SavedListen;
use tauri::{AppHandle, Manager};

use crate::desktop::Shell;
use crate::dialog::{self, PortScope};

/// How many ports above the taken one are tried before the system picks any free one: a port
/// near the usual one is easier to recognise.
const NEARBY: u16 = 20;

/// Offers another port for `bind`, whose `port` is taken; `given`: the port came from the
/// command line or the environment.
pub fn offer(app: &AppHandle, bind: IpAddr, port: u16, given: bool) {
    let Some(free) = free_port(bind, port) else {
        tracing::warn!("port {port} is taken and no other port on {bind} is free to offer");
        return;
    };
    let scope = if given {
        PortScope::ThisRun
    } else {
        PortScope::Saved
    };
    tracing::info!("port {port} is taken: offering port {free} instead");
    let handle = app.clone();
    dialog::offer_port(app, port, free, scope, move |accepted| {
        if accepted {
            accept(&handle, free, scope);
        } else {
            tracing::info!(
                "the offer of port {free} was declined; the gateway stays stopped until Start \
                 gateway"
            );
        }
    });
}

/// Keeps `port` as the user chose and starts the gateway there.
fn accept(app: &AppHandle, port: u16, scope: PortScope) {
    let Some(shell) = app.try_state::<Shell>() else {
        return;
    };
    match scope {
        PortScope::ThisRun => {
            shell.use_port_for_this_run(port);
            tracing::info!("using port {port} for this run only");
        }
        PortScope::Saved => {
            let saved = shell
                .settings()
                .and_then(|settings| save_port(&settings.data_dir, port));
            match saved {
                Ok(()) => tracing::info!("port {port} saved as the listen port"),
                Err(error) => {
                    // Still worth starting: it then listens on the old port's
                    // replacement for this run.
                    tracing::warn!("cannot save port {port}: {error}; using it for this run");
                    shell.use_port_for_this_run(port);
                }
            }
        }
    }
    crate::desktop::start(app);
}

/// Saves `port` as the listen port in the data folder (the gateway is not running, so nothing
/// else has its database open for writing; the gateway does the writing).
fn save_port(data_dir: &std::path::Path, port: u16) -> Result<(), String> {
    SavedListen {
        bind: None,
        port: Some(port),
    }
    .save_in(data_dir)
    .map_err(|error| error.to_string())
}

/// A port on `bind` that nothing listens on now: the first free one above `taken`, else one
/// the system picks.
fn free_port(bind: IpAddr, taken: u16) -> Option<u16> {
    let nearby = (1..=NEARBY).filter_map(|step| taken.checked_add(step));
    nearby
        .into_iter()
        .find(|port| TcpListener::bind((bind, *port)).is_ok())
        .or_else(|| {
            TcpListener::bind((bind, 0))
                .and_then(|listener| listener.local_addr())
                .map(|addr| addr.port())
                .ok()
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_offer_is_a_free_port_near_the_taken_one() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let taken = TcpListener::bind((loopback, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let free = free_port(loopback, port).unwrap();
        assert_ne!(free, port);
        assert!(TcpListener::bind((loopback, free)).is_ok());
    }

    #[test]
    fn the_last_port_still_gets_an_offer() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let free = free_port(loopback, u16::MAX).unwrap();
        assert_ne!(free, 0);
    }
}
