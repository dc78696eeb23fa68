//! Settings of the transport.

use std::time::Duration;

use super::frame::DEFAULT_MAX_FRAME_BYTES;

/// Settings of a node's Raft transport. `Default` gives the values documented
/// on each field.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest frame sent or accepted, header included (default 64 MiB). A
    /// bigger frame is refused before anything is allocated for it.
    pub max_frame_bytes: u32,
    /// Most entry bytes in one AppendEntries frame (default 8 MiB). A bigger
    /// AppendEntries is split into consecutive ones under this budget; one
    /// entry over the budget travels alone.
    pub append_budget_bytes: usize,
    /// AppendEntries frames of one (group, follower) in flight at once
    /// (default 8).
    pub append_window: usize,
    /// Frames queued for one peer before senders wait (default 1024).
    pub queue_depth: usize,
    /// Requests served at once on one incoming connection (default 1024);
    /// beyond it the server stops reading that connection.
    pub max_inflight_per_connection: usize,
    /// Time to open a connection (default 1 s).
    pub connect_timeout: Duration,
    /// First delay after a failed connect, doubled per failure (default 50 ms).
    /// Until it has passed, requests to that node fail at once as unreachable.
    pub reconnect_min: Duration,
    /// Longest delay between connect attempts (default 2 s).
    pub reconnect_max: Duration,
    /// This node's cluster id, once known (shared: the node sets it when it
    /// learns it). Links say it first, and a peer that knows another one
    /// refuses the connection, so a node started on another cluster's
    /// data directory never writes into this one.
    pub cluster_id: ClusterIdCell,
}

/// A cluster id that is set once it is known, read by every new connection.
#[derive(Debug, Clone, Default)]
pub struct ClusterIdCell(std::sync::Arc<std::sync::RwLock<Option<String>>>);

impl ClusterIdCell {
    /// Records the cluster id.
    pub fn set(&self, id: &str) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
    }

    /// The cluster id, if known.
    pub fn get(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why a peer saying `theirs` must be refused, if it must: both ids are
    /// known and differ.
    pub(crate) fn refuses(&self, theirs: Option<&str>) -> Option<String> {
        let ours = self.get()?;
        let theirs = theirs?;
        (ours != theirs).then(|| {
            format!(
                "a node of cluster {theirs} connected to this node of cluster {ours}: \
                 its data directory belongs to another cluster; refusing it"
            )
        })
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            append_budget_bytes: 8 * 1024 * 1024,
            append_window: 8,
            queue_depth: 1024,
            max_inflight_per_connection: 1024,
            connect_timeout: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            cluster_id: ClusterIdCell::default(),
        }
    }
}

impl TransportConfig {
    /// Delay before connecting again after `failures` failed connects in a row.
    pub(crate) fn reconnect_delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        self.reconnect_min
            .saturating_mul(1 << shift)
            .min(self.reconnect_max)
    }

    /// The delays openraft sleeps between retries of a group's RPCs to a node
    /// it found unreachable: the same doubling as reconnects.
    pub(crate) fn backoff(&self) -> impl Iterator<Item = Duration> + Send + 'static {
        let config = self.clone();
        (1u32..).map(move |n| config.reconnect_delay(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_up_to_the_max() {
        let c = TransportConfig::default();
        let d: Vec<_> = (1..=8).map(|n| c.reconnect_delay(n).as_millis()).collect();
        assert_eq!(d, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(c.reconnect_delay(u32::MAX), c.reconnect_max);
    }
}
