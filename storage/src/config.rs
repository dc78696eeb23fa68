//! Per-log settings, named after the Kafka topic configs they implement.

use std::time::Duration;

/// What `cleanup.policy` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// `delete`: retention removes whole old segments.
    #[default]
    Delete,
    /// `compact`: the cleaner keeps the last record per key.
    Compact,
    /// `compact,delete`: both.
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether retention deletes old segments.
    pub fn deletes(self) -> bool {
        matches!(self, Self::Delete | Self::CompactDelete)
    }
    /// Whether the cleaner compacts the log.
    pub fn compacts(self) -> bool {
        matches!(self, Self::Compact | Self::CompactDelete)
    }
}

/// When appended bytes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every acknowledged append is fdatasync'ed: [`crate::Log::wait_durable`]
    /// flushes at once, without waiting for company, and the broker waits for it
    /// at every acks level (an append itself never fsyncs).
    EveryAppend,
    /// Appends return at once; [`crate::Log::wait_durable`] resolves after an fsync
    /// that one writer issues for every append waiting behind it. The fsync starts
    /// when `max_bytes` are pending or the oldest pending append is `max_delay` old.
    GroupCommit {
        /// Pending bytes that start a flush at once.
        max_bytes: u64,
        /// Longest a pending append waits for company before its flush starts.
        max_delay: Duration,
    },
    /// Bytes stay in the page cache; the OS writes them back. A crash of the
    /// machine (not of the process) can lose acknowledged appends.
    PageCache,
}

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when its first append is this old.
    pub segment_ms: Option<u64>,
    /// `index.interval.bytes`: log bytes between two index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: pre-allocated size of each index file.
    pub segment_index_bytes: u64,
    /// `retention.ms`: delete segments whose newest record is older (`None`: forever).
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: delete oldest segments while the log is larger (`None`: no limit).
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long the cleaner keeps tombstones.
    pub delete_retention_ms: u64,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: u64,
    /// fsync policy.
    pub durability: Durability,
    /// `message.timestamp.type=LogAppendTime`: the log stamps each batch with the
    /// append time (maxTimestamp and the timestamp-type attribute).
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime
    /// record's timestamp may be (`i64::MAX`: no limit).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime
    /// record's timestamp may be.
    pub timestamp_after_max_ms: i64,
    /// `compression.type`: the codec batches are stored in (Kafka codec id,
    /// 0 = uncompressed); a batch in another codec is recompressed on append.
    /// `None` (`producer`) keeps each batch as the producer sent it.
    pub compression: Option<i16>,
    /// `min.compaction.lag.ms`: the cleaner leaves records younger than this.
    pub min_compaction_lag_ms: u64,
}

impl LogConfig {
    /// The rules a client append to this log is held to, at time `now` (ms).
    pub fn append_rules(&self, now: i64) -> crate::AppendRules {
        crate::AppendRules {
            max_message_bytes: usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX),
            timestamps: if self.log_append_time {
                crate::TimestampRule::LogAppendTime
            } else {
                crate::TimestampRule::CreateTime {
                    now,
                    before_max_ms: self.timestamp_before_max_ms,
                    after_max_ms: self.timestamp_after_max_ms,
                }
            },
            keys_required: self.cleanup_policy.compacts(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            durability: Durability::GroupCommit {
                max_bytes: 4 << 20,
                max_delay: Duration::ZERO,
            },
            log_append_time: false,
            // Kafka 4.x defaults (KIP-937, KIP-1030): any past time, at most an
            // hour ahead of the broker's clock.
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            compression: None,
            min_compaction_lag_ms: 0,
        }
    }
}
