//! Loopback ports for test nodes, chosen below Linux's ephemeral range.
//!
//! A port a node asked the kernel for (`:0`) lies in the ephemeral range
//! (32768 and up): while that node is down for a restart, the port may at
//! once become the source port of some outgoing connection, and the restart
//! fails with "Address already in use" (seen in CI on a Kafka listener).
//! Ports below the range are never handed out as source ports, so a node
//! keeps its ports across restarts as a real one does. Ports 30000..32768
//! are left to tests that need runs of consecutive ports (`weir cluster up`).

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use anyhow::{ensure, Result};

/// Ports already handed out by this test process.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` distinct loopback ports in 20000..30000, free when checked (bound and
/// released; the node binds them a moment later), each handed out once per
/// test process: a node that is down keeps its ports for its restart, and
/// another test of the same binary must not take them meanwhile. A start
/// that still lost a port to another process is retried by its caller.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut ports = Vec::new();
    let mut listeners = Vec::new();
    let mut tries = 0u32;
    while ports.len() < n {
        tries += 1;
        ensure!(tries < 10_000, "no free port in 20000..30000");
        let port = 20_000 + (RandomState::new().hash_one(tries) % 10_000) as u16;
        if ports.contains(&port) || given.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            ports.push(port);
            listeners.push(l);
        }
    }
    given.extend(ports.iter().copied());
    Ok(ports)
}

/// Whether a failed start lost one of its ports to another process (worth
/// starting again on other ports).
pub fn lost_a_port(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("Address already in use")
}
