//! A partition as the request handlers see it: a log with a role, a leader epoch,
//! a high watermark and idempotent-producer state. The replication layer will
//! put a Raft group under this type; handlers only use its methods.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use weir_storage::{
    BatchHeader, HeaderWalk, Log, ReadBound, ReadResult, StorageError, TopicPartition,
};

use crate::producer_state::{
    BatchIds, ProducerError, ProducerLimits, ProducerStateCounters, ProducerStates, Removed,
};

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
    /// Where expired and evicted producer entries are counted.
    producer_counters: Arc<ProducerStateCounters>,
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Partition {
    /// Wraps a log as a leader partition, rebuilding producer state from the log
    /// (bounded by `limits`; drops are counted in `counters`).
    ///
    /// The log does not say when the broker appended a batch (CreateTime
    /// timestamps are the producer's clock), so rebuilt producers count as used
    /// now, in log order: each gets a full expiration period after a restart,
    /// and when the log holds more producers than the bound, the ones that
    /// wrote last are kept.
    pub fn leader(
        tp: TopicPartition,
        log: Arc<Log>,
        limits: ProducerLimits,
        counters: Arc<ProducerStateCounters>,
    ) -> Self {
        let mut producers = ProducerStates::new(limits);
        let now = now_ms();
        let mut offset = producer_scan_start(&log);
        while let Ok(r) = log.read(offset, 1 << 20, ReadBound::LogEnd) {
            if r.records.is_empty() {
                break;
            }
            for (_, h) in HeaderWalk::new(&r.records, 0) {
                if let Some(ids) = batch_ids(&h, &h) {
                    producers.record(&ids, h.base_offset, h.last_offset(), now);
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
            producer_counters: counters,
        }
    }

    fn count(&self, removed: Removed) {
        if removed.expired > 0 {
            self.producer_counters
                .expired
                .fetch_add(removed.expired as u64, Ordering::Relaxed);
        }
        if removed.evicted > 0 {
            self.producer_counters
                .evicted
                .fetch_add(removed.evicted as u64, Ordering::Relaxed);
        }
    }

    /// Forgets producers idle past the expiration at `now_ms` (run by the
    /// periodic maintenance); returns how many.
    pub fn expire_producers(&self, now_ms: i64) -> usize {
        let expired = self
            .producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expire(now_ms);
        self.count(Removed {
            expired,
            evicted: 0,
        });
        expired
    }

    /// Number of producers whose state this partition keeps.
    pub fn producer_count(&self) -> usize {
        self.producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
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
        let removed = ids
            .as_ref()
            .map(|ids| producers.record(ids, info.base_offset, info.last_offset, now_ms()));
        drop(producers);
        if let Some(removed) = removed {
            self.count(removed);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_code;
    use crate::producer_state::DEFAULT_EXPIRATION_MS as DEFAULT_EXPIRATION;
    use weir_storage::LogConfig;

    /// A one-record idempotent batch of `producer_id` at sequence `seq`.
    fn batch(producer_id: i64, seq: i32) -> Vec<u8> {
        let mut b = weir_storage::record::build_batch(&[(None, Some(b"v".to_vec()), now_ms())]);
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&0i16.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        weir_storage::seal_batch(&mut b);
        b
    }

    fn partition(dir: &std::path::Path, limits: ProducerLimits) -> Partition {
        let (log, _) = Log::open(&dir.join("t-0"), "t-0", LogConfig::default()).unwrap();
        Partition::leader(
            TopicPartition::new("t", 0),
            Arc::new(log),
            limits,
            Arc::default(),
        )
    }

    /// A partition full of producers evicts the one idle longest and counts it;
    /// the evicted producer's next batch gets OUT_OF_ORDER_SEQUENCE_NUMBER (45),
    /// as for any producer the partition does not know, while kept producers
    /// still get their retries answered from state. Expiry is counted too.
    #[test]
    fn evicted_producer_is_unknown_and_drops_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(
            dir.path(),
            ProducerLimits {
                expiration_ms: DEFAULT_EXPIRATION,
                max_producers: 2,
            },
        );
        for pid in [1, 2, 3] {
            p.append(&batch(pid, 0)).unwrap();
        }
        assert_eq!(p.producer_count(), 2);
        assert_eq!(p.producer_counters.evicted.load(Ordering::Relaxed), 1);
        let err = p.append(&batch(1, 1)).unwrap_err();
        assert_eq!(error_code::append(&err), 45, "{err}");
        let retry = p.append(&batch(3, 0)).unwrap();
        assert!(retry.duplicate && retry.base_offset == 2, "{retry:?}");
        assert_eq!(p.expire_producers(now_ms() + DEFAULT_EXPIRATION + 1), 2);
        assert_eq!(p.producer_count(), 0);
        assert_eq!(p.producer_counters.expired.load(Ordering::Relaxed), 2);
        let err = p.append(&batch(3, 1)).unwrap_err();
        assert_eq!(error_code::append(&err), 45, "{err}");
    }

    /// Rebuilding from the log keeps the bound, keeping the producers that
    /// wrote last.
    #[test]
    fn rebuilt_state_keeps_the_bound_and_the_latest_producers() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ProducerLimits {
            expiration_ms: DEFAULT_EXPIRATION,
            max_producers: 3,
        };
        {
            let p = partition(dir.path(), ProducerLimits::default());
            for pid in 1..=5 {
                p.append(&batch(pid, 0)).unwrap();
            }
            p.append(&batch(1, 1)).unwrap();
            p.log.close().unwrap();
        }
        let p = partition(dir.path(), limits);
        assert_eq!(p.producer_count(), 3);
        // Producers 4, 5 and 1 wrote last: 1 continues, 2 is unknown.
        assert!(!p.append(&batch(1, 2)).unwrap().duplicate);
        let err = p.append(&batch(2, 1)).unwrap_err();
        assert_eq!(error_code::append(&err), 45, "{err}");
    }
}
