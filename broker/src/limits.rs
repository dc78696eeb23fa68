//! Bounds on what clients can make the node hold: connections (in total and per
//! client address) and bytes of requests in flight (per connection and per node).
//!
//! Connections over a limit are closed at once (Kafka blocks the acceptor at
//! `max.connections` instead; closing lets a client fail fast and retry).
//! Request bytes are a budget taken as a frame's body is read and returned
//! when its response is written: when the budget is spent the connection stops
//! reading its socket, so TCP pushes back on the client instead of the node
//! buffering (Kafka's `queued.max.request.bytes`).
//!
//! A frame takes budget for the bytes that arrived, never for the size it
//! announced: a read takes at most as much again as the frame already holds
//! (64 KiB first). So connections that announce large frames and send
//! nothing hold almost nothing, and one whose frame stops arriving is closed
//! after `request_read_timeout_ms`, returning what it held.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The configured bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most open client connections.
    pub max_connections: usize,
    /// Most open client connections from one address.
    pub max_connections_per_ip: usize,
    /// Most request bytes read and not yet answered, node-wide.
    pub max_inflight_bytes: usize,
    /// Most request bytes read and not yet answered, per connection.
    pub max_inflight_bytes_per_connection: usize,
    /// Most milliseconds a frame may take to arrive once its size was read.
    pub request_read_timeout_ms: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_inflight_bytes: 512 << 20,
            max_inflight_bytes_per_connection: 100 << 20,
            request_read_timeout_ms: 30_000,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `max_connections` are open.
    #[error("the node has {0} connections open (max-connections)")]
    Total(usize),
    /// `max_connections_per_ip` are open from this address.
    #[error("{1} has {0} connections open (max-connections-per-ip)")]
    PerIp(usize, IpAddr),
}

/// Counters of the limits, for `/metrics`.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Connections closed at once for `max_connections`.
    pub refused_total: AtomicU64,
    /// Connections closed at once for `max_connections_per_ip`.
    pub refused_per_ip: AtomicU64,
    /// Times a connection stopped reading because a byte budget was spent.
    pub backpressure: AtomicU64,
    /// Connections closed because a frame did not arrive within
    /// `request_read_timeout_ms`.
    pub read_timeouts: AtomicU64,
}

/// The node's limits and their live state.
#[derive(Debug)]
pub struct Limits {
    cfg: LimitsConfig,
    // Counts per address; a std Mutex, held for a map update only.
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    bytes: Arc<Semaphore>,
    /// Counters.
    pub counters: LimitCounters,
}

/// An admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
    /// This connection's own byte budget.
    bytes: Arc<Semaphore>,
}

/// Request bytes held until the response is written.
#[derive(Debug)]
pub struct BytesPermit {
    node: OwnedSemaphorePermit,
    connection: OwnedSemaphorePermit,
}

impl BytesPermit {
    /// Holds `other`'s bytes too, until this permit is dropped.
    pub fn merge(&mut self, other: BytesPermit) {
        self.node.merge(other.node);
        self.connection.merge(other.connection);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.connection.num_permits()
    }
}

impl Limits {
    /// Limits with nothing open.
    pub fn new(cfg: LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            bytes: Arc::new(Semaphore::new(cfg.max_inflight_bytes.max(1))),
            cfg,
            open: Mutex::new((0, HashMap::new())),
            counters: LimitCounters::default(),
        })
    }

    /// The configured bounds.
    pub fn config(&self) -> LimitsConfig {
        self.cfg
    }

    /// Admits a connection from `ip`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *open;
        if *total >= self.cfg.max_connections {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Total(*total));
        }
        let mine = per_ip.entry(ip).or_insert(0);
        if *mine >= self.cfg.max_connections_per_ip {
            self.counters.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PerIp(*mine, ip));
        }
        *mine += 1;
        *total += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip,
            bytes: Arc::new(Semaphore::new(
                self.cfg.max_inflight_bytes_per_connection.max(1),
            )),
        })
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Request bytes in flight node-wide.
    pub fn inflight_bytes(&self) -> usize {
        self.cfg
            .max_inflight_bytes
            .max(1)
            .saturating_sub(self.bytes.available_permits())
    }
}

impl ConnectionSlot {
    /// The most one frame holds: the smaller budget. A frame larger than
    /// that holds all of it, so it is read alone.
    pub fn frame_budget(&self) -> usize {
        let cfg = self.limits.cfg;
        cfg.max_inflight_bytes_per_connection
            .min(cfg.max_inflight_bytes)
            .max(1)
    }

    /// How long a frame may take to arrive once its size was read.
    pub fn read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.limits.cfg.request_read_timeout_ms as u64)
    }

    /// Takes `n` bytes of budget from the connection and the node, waiting (and
    /// so not reading the socket) while either is spent; at most
    /// [`ConnectionSlot::frame_budget`].
    pub async fn take_bytes(&self, n: usize) -> BytesPermit {
        let want = permits(n, self.frame_budget());
        let immediate = self
            .bytes
            .clone()
            .try_acquire_many_owned(want)
            .ok()
            .and_then(|c| {
                self.limits
                    .bytes
                    .clone()
                    .try_acquire_many_owned(want)
                    .ok()
                    .map(|n| (c, n))
            });
        let (connection, node) = match immediate {
            Some(pair) => pair,
            None => {
                self.limits
                    .counters
                    .backpressure
                    .fetch_add(1, Ordering::Relaxed);
                // Connection first, then node: a connection never holds node
                // budget while it waits for its own.
                let c = acquire(&self.bytes, want).await;
                let n = acquire(&self.limits.bytes, want).await;
                (c, n)
            }
        };
        BytesPermit { node, connection }
    }
}

/// `n` bytes as semaphore permits, capped at the budget (and at u32).
fn permits(n: usize, budget: usize) -> u32 {
    u32::try_from(n.clamp(1, budget.max(1))).unwrap_or(u32::MAX)
}

async fn acquire(sem: &Arc<Semaphore>, n: u32) -> OwnedSemaphorePermit {
    // The semaphores are never closed.
    sem.clone()
        .acquire_many_owned(n)
        .await
        .expect("byte budget semaphore is never closed")
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn connections_are_bounded_in_total_and_per_address() {
        let limits = Limits::new(LimitsConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..LimitsConfig::default()
        });
        let a1 = limits.admit(ip(1)).unwrap();
        let _a2 = limits.admit(ip(1)).unwrap();
        assert_eq!(limits.admit(ip(1)).unwrap_err(), Refused::PerIp(2, ip(1)));
        let _b1 = limits.admit(ip(2)).unwrap();
        assert_eq!(limits.admit(ip(3)).unwrap_err(), Refused::Total(3));
        drop(a1);
        assert_eq!(limits.open_connections(), 2);
        let _a3 = limits.admit(ip(1)).unwrap();
        assert_eq!(limits.counters.refused_per_ip.load(Ordering::Relaxed), 1);
        assert_eq!(limits.counters.refused_total.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn byte_budgets_make_readers_wait_and_are_returned() {
        let limits = Limits::new(LimitsConfig {
            max_inflight_bytes: 1000,
            max_inflight_bytes_per_connection: 600,
            ..LimitsConfig::default()
        });
        let a = limits.admit(ip(1)).unwrap();
        let b = limits.admit(ip(2)).unwrap();
        // Larger than the connection's budget: takes all of it.
        let big = a.take_bytes(10_000).await;
        assert_eq!(limits.inflight_bytes(), 600);
        let small = b.take_bytes(400).await;
        assert_eq!(limits.inflight_bytes(), 1000);
        assert_eq!(limits.counters.backpressure.load(Ordering::Relaxed), 0);
        // The node is spent: a third request waits until bytes come back.
        let waiting = tokio::spawn(async move { b.take_bytes(100).await });
        while limits.counters.backpressure.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        drop(small);
        let _p = waiting.await.unwrap();
        drop(big);
        assert_eq!(limits.inflight_bytes(), 100);
    }
}
