//! Counters exported at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::group::GroupWriteCounters;
use crate::limits::Limits;
use crate::producer_state::ProducerStateCounters;

/// Node-wide counters; updated with relaxed atomics on the hot path.
#[derive(Debug)]
pub struct Metrics {
    /// Requests handled, by API key (index = key, up to 100).
    pub requests: [AtomicU64; 100],
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed because of a bad frame or request.
    pub bad_requests: AtomicU64,
    /// Record bytes appended by Produce.
    pub produce_bytes: AtomicU64,
    /// Record bytes returned by Fetch.
    pub fetch_bytes: AtomicU64,
    /// Idempotent-producer entries expired and evicted, over all partitions.
    pub producer_states: Arc<ProducerStateCounters>,
    /// The group coordinator's write queue.
    pub group_writes: Arc<GroupWriteCounters>,
    /// Maintenance passes (retention, compaction, flushes) completed.
    pub maintenance_passes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            connections: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            produce_bytes: AtomicU64::new(0),
            fetch_bytes: AtomicU64::new(0),
            producer_states: Arc::default(),
            group_writes: Arc::default(),
            maintenance_passes: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one request of `api_key`.
    pub fn request(&self, api_key: i16) {
        if let Some(c) = usize::try_from(api_key)
            .ok()
            .and_then(|k| self.requests.get(k))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders the Prometheus text exposition, with the state of `limits`.
    pub fn render(&self, limits: &Limits) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# TYPE weir_requests_total counter");
        for (k, c) in self.requests.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(s, "weir_requests_total{{api_key=\"{k}\"}} {v}");
            }
        }
        for (name, c) in [
            ("weir_connections_total", &self.connections),
            ("weir_bad_requests_total", &self.bad_requests),
            ("weir_produce_bytes_total", &self.produce_bytes),
            ("weir_fetch_bytes_total", &self.fetch_bytes),
            ("weir_maintenance_passes_total", &self.maintenance_passes),
            (
                "weir_producer_state_expired_total",
                &self.producer_states.expired,
            ),
            (
                "weir_producer_state_evicted_total",
                &self.producer_states.evicted,
            ),
            ("weir_group_writes_waited_total", &self.group_writes.waited),
            (
                "weir_group_writes_overflowed_total",
                &self.group_writes.overflowed,
            ),
            (
                "weir_connections_refused_total",
                &limits.counters.refused_total,
            ),
            (
                "weir_connections_refused_per_ip_total",
                &limits.counters.refused_per_ip,
            ),
            (
                "weir_request_backpressure_total",
                &limits.counters.backpressure,
            ),
            (
                "weir_request_read_timeouts_total",
                &limits.counters.read_timeouts,
            ),
        ] {
            let _ = writeln!(
                s,
                "# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (name, v) in [
            ("weir_connections_open", limits.open_connections()),
            ("weir_inflight_request_bytes", limits.inflight_bytes()),
        ] {
            let _ = writeln!(s, "# TYPE {name} gauge\n{name} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_state_counters_are_rendered() {
        let m = Metrics::default();
        m.producer_states.expired.fetch_add(3, Ordering::Relaxed);
        m.producer_states.evicted.fetch_add(4, Ordering::Relaxed);
        let text = m.render(&Limits::new(Default::default()));
        assert!(text.contains("# TYPE weir_producer_state_expired_total counter\nweir_producer_state_expired_total 3\n"), "{text}");
        assert!(
            text.contains("weir_producer_state_evicted_total 4\n"),
            "{text}"
        );
    }
}
