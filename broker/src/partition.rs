//! A partition as the request handlers see it: a log with a role, a leader epoch,
//! a high watermark and idempotent-producer state. The replication layer will
//! put a Raft group under this type; handlers only use its methods.

use std::sync::{Arc, Mutex};

use weir_storage::{
    BatchHeader, HeaderWalk, Log, ReadBound, ReadResult, StorageError, TopicPartition,
};

use crate::producer_state::{BatchIds, ProducerError, ProducerStates};

/// This node's part in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes produce requests and serves fetches.
    Leader,
    /// Copies the leader (`leader` is its node id).
    Follower {
        /// Node id of the leader.
        leader: i32,
    },
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log refused or failed the write.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Idempotence refused the batch.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// This node does not lead the partition.
    #[error("not the leader")]
    NotLeader,
}

/// Offsets an append was given (or had, for a retried batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// Whether the batch was a retry answered from producer state.
    pub duplicate: bool,
    /// The broker's append time under LogAppendTime, else -1.
    pub log_append_time: i64,
}

/// One partition hosted by this node.
#[derive(Debug)]
pub struct Partition {
    /// Topic and partition number.
    pub tp: TopicPartition,
    /// The partition log.
    pub log: Arc<Log>,
    /// Leader epoch (0 on a single node; the Raft term later).
    pub leader_epoch: i32,
    /// This node's role.
    pub role: Role,
    // Held across the producer check and the (synchronous, page-cache) append so
    // that check-and-write is atomic per partition; never across an `.await`.
    producers: Mutex<ProducerStates>,
}

fn batch_ids(h: &BatchHeader, last: &BatchHeader) -> Option<BatchIds> {
    (h.producer_id >= 0 && h.base_sequence >= 0).then(|| BatchIds {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        first_seq: h.base_sequence,
        last_seq: last
            .base_sequence
            .wrapping_add(last.last_offset_delta)
            .rem_euclid(i32::MAX),
    })
}

/// Producer state is rebuilt from the newest segments holding at least this many
/// bytes (a producer idle for longer than that restarts its sequence at 0).
const PRODUCER_SCAN_BYTES: u64 = 64 << 20;

fn producer_scan_start(log: &Log) -> i64 {
    let mut bytes = 0;
    let mut start = log.log_start_offset();
    for seg in log.segments().iter().rev() {
        start = seg.base_offset;
        bytes += seg.size;
        if bytes >= PRODUCER_SCAN_BYTES {
            break;
        }
    }
    start.max(log.log_start_offset())
}

impl Partition {
    /// Wraps a log as a leader partition, rebuilding producer state from the log.
    pub fn leader(tp: TopicPartition, log: Arc<Log>) -> Self {
        let mut producers = ProducerStates::default();
        let mut offset = producer_scan_start(&log);
        while let Ok(r) = log.read(offset, 1 << 20, ReadBound::LogEnd) {
            if r.records.is_empty() {
                break;
            }
            for (_, h) in HeaderWalk::new(&r.records, 0) {
                if let Some(ids) = batch_ids(&h, &h) {
                    producers.record(&ids, h.base_offset, h.last_offset());
                }
                offset = h.next_offset();
            }
        }
        Self {
            tp,
            log,
            leader_epoch: 0,
            role: Role::Leader,
            producers: Mutex::new(producers),
        }
    }

    /// Appends produced batches (idempotence checked) and advances the high
    /// watermark: on one node, a leader append is committed. Page-cache durable on
    /// return; see [`Log::wait_durable`] for disk durability.
    pub fn append(&self, records: &[u8]) -> Result<Appended, AppendError> {
        if self.role != Role::Leader {
            return Err(AppendError::NotLeader);
        }
        let first = BatchHeader::parse(records).map_err(|source| StorageError::InvalidBatch {
            position: 0,
            source,
        })?;
        let last = HeaderWalk::new(records, 0).last().map_or(first, |(_, h)| h);
        let ids = batch_ids(&first, &last);
        let mut producers = self.producers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = &ids {
            if let Some((base_offset, last_offset)) = producers.check(ids)? {
                return Ok(Appended {
                    base_offset,
                    last_offset,
                    duplicate: true,
                    log_append_time: -1,
                });
            }
        }
        let info = self.log.append(records, self.leader_epoch)?;
        if let Some(ids) = &ids {
            producers.record(ids, info.base_offset, info.last_offset);
        }
        drop(producers);
        self.log.set_high_watermark(info.last_offset + 1)?;
        Ok(Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            duplicate: false,
            log_append_time: info.log_append_time,
        })
    }

    /// Reads for a consumer: committed batches only (see [`ReadBound`]).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        committed_only: bool,
    ) -> Result<ReadResult, StorageError> {
        let bound = if committed_only {
            ReadBound::LastStable
        } else {
            ReadBound::HighWatermark
        };
        self.log.read(offset, max_bytes, bound)
    }
}
