//! Coordinator settings (Kafka's `group.*` broker settings) and the partition hook.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// `(topic, partition) -> exists`.
pub type PartitionExists = dyn Fn(&str, i32) -> bool + Send + Sync;

/// Tells whether the broker hosts a topic partition; OffsetCommit answers
/// UNKNOWN_TOPIC_OR_PARTITION for partitions it rejects. Called without coordinator locks held.
#[derive(Clone)]
pub struct PartitionCheck(pub Arc<PartitionExists>);

impl fmt::Debug for PartitionCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PartitionCheck(..)")
    }
}

/// Settings of the group coordinator.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    pub min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    pub max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more members
    /// (`group.initial.rebalance.delay.ms`); each new member extends it, up to the rebalance timeout.
    pub initial_rebalance_delay_ms: u64,
    /// How long a new member may wait in a rebalance without heartbeats (Kafka: 5 minutes).
    pub new_member_join_timeout_ms: u64,
    /// Most members a group may have (`group.max.size`).
    pub max_group_size: usize,
    /// Longest commit metadata string accepted (`offset.metadata.max.bytes`).
    pub max_metadata_bytes: usize,
    /// An Empty group without committed offsets is forgotten after this long.
    pub empty_group_retention_ms: u64,
    /// How often the runtime checks session and rebalance deadlines: a deadline
    /// is acted on at most this late (Kafka's timing wheel is 1 ms).
    pub tick_interval: Duration,
    /// Optional partition existence check for OffsetCommit; `None` accepts every partition.
    pub partition_check: Option<PartitionCheck>,
    /// Most writes issued to the store and not yet durable. A commit (or group
    /// deletion) beyond it waits, before it takes the coordinator's lock, for
    /// an earlier write to finish.
    pub max_pending_writes: usize,
    /// Where the coordinator counts writes that waited for room.
    pub counters: Arc<GroupWriteCounters>,
}

/// Counters of the coordinator's write queue, for `/metrics`.
#[derive(Debug, Default)]
pub struct GroupWriteCounters {
    /// Writes that waited because `max_pending_writes` were pending.
    pub waited: std::sync::atomic::AtomicU64,
    /// Membership writes issued while the queue was full: they were already in
    /// the log, and were awaited outside the queue.
    pub overflowed: std::sync::atomic::AtomicU64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: 300_000,
            max_group_size: usize::MAX,
            max_metadata_bytes: 4_096,
            empty_group_retention_ms: 600_000,
            tick_interval: Duration::from_millis(10),
            partition_check: None,
            max_pending_writes: 1024,
            counters: Arc::default(),
        }
    }
}
