//! A partition as the request handlers see it: a log with a role, a leader epoch,
//! a high watermark and idempotent-producer state.
//!
//! `Partition` is the only door to a partition's log (Kafka's `UnifiedLog` is the
//! model): handlers, the group coordinator and maintenance call its methods and
//! never reach the [`Log`] itself. The high watermark moves only through
//! [`Partition::commit`], so the replication layer can put a Raft group under
//! this type and make the high watermark its commit index without touching a
//! handler.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use weir_storage::{
    BatchHeader, HeaderWalk, Log, LogConfig, ReadBound, ReadResult, StorageError, TimestampOffset,
    TopicPartition,
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

/// Why a request naming a leader epoch (KIP-320) is not served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaderError {
    /// This node does not lead the partition.
    #[error("not the leader")]
    NotLeader,
    /// The client's epoch is older than the leader's: its metadata is stale.
    #[error("leader epoch {requested} is older than the current {current}")]
    FencedEpoch {
        /// The epoch the client sent.
        requested: i32,
        /// This leader's epoch.
        current: i32,
    },
    /// The client's epoch is newer than this node knows: this node lags.
    #[error("leader epoch {requested} is newer than the current {current}")]
    UnknownEpoch {
        /// The epoch the client sent.
        requested: i32,
        /// This leader's epoch.
        current: i32,
    },
}

/// Why DeleteRecords did not move the log start.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordsError {
    /// The target is negative or above the high watermark.
    #[error("offset {offset} is outside [0, high watermark {high_watermark}]")]
    OutOfRange {
        /// The requested offset.
        offset: i64,
        /// The high watermark at the time.
        high_watermark: i64,
    },
    /// The log failed the change.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A partition's offsets at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// First offset of the log.
    pub log_start: i64,
    /// Offset below which records are committed.
    pub high_watermark: i64,
    /// Next offset to be written.
    pub log_end: i64,
}

/// This node's role in the partition and the leader epoch it goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// Leader or follower.
    pub role: Role,
    /// The leader epoch (the Raft term once partitions are replicated).
    pub epoch: i32,
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
    // The partition log: private, so every read and every move of the high
    // watermark goes through this type.
    log: Arc<Log>,
    // Role and epoch change together (a leader election); read on every
    // request, written on leadership changes only.
    leadership: RwLock<Leadership>,
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
        // The epoch of the newest batch: a restart never lowers the epoch.
        let epoch = log.latest_epoch().unwrap_or(0).max(0);
        Self {
            tp,
            log,
            leadership: RwLock::new(Leadership {
                role: Role::Leader,
                epoch,
            }),
            producers: Mutex::new(producers),
            producer_counters: counters,
        }
    }

    /// This node's role and the leader epoch.
    pub fn leadership(&self) -> Leadership {
        *self.leadership.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes role and epoch (a leader election). The epoch never goes back.
    pub fn set_leadership(&self, next: Leadership) {
        let mut l = self.leadership.write().unwrap_or_else(|p| p.into_inner());
        if next.epoch >= l.epoch {
            *l = next;
        }
    }

    /// The leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leadership().epoch
    }

    /// Checks that this node leads the partition at the epoch a client names
    /// (`-1`: the client does not say); returns the current epoch. Used by
    /// Fetch, ListOffsets and OffsetForLeaderEpoch (KIP-320).
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<i32, LeaderError> {
        let l = self.leadership();
        if l.role != Role::Leader {
            return Err(LeaderError::NotLeader);
        }
        let requested = current_leader_epoch;
        match requested {
            r if r < 0 || r == l.epoch => Ok(l.epoch),
            r if r < l.epoch => Err(LeaderError::FencedEpoch {
                requested,
                current: l.epoch,
            }),
            _ => Err(LeaderError::UnknownEpoch {
                requested,
                current: l.epoch,
            }),
        }
    }

    /// Where `epoch` ends in this log (OffsetForLeaderEpoch, Kafka's
    /// `LeaderEpochFileCache.endOffsetFor`): the largest epoch at or below it
    /// and the first offset after that epoch; the current epoch ends at the log
    /// end; `(-1, -1)` for an epoch the log cannot place.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let current = self.leader_epoch();
        // Kafka records the epoch in the cache on becoming leader; Weir records
        // it with the first batch of the epoch, so the current epoch is answered
        // here even before that batch.
        if epoch == current {
            return (current, self.log.log_end_offset());
        }
        self.log.end_offset_for_epoch(epoch).unwrap_or((-1, -1))
    }

    /// The leader epoch of the batch holding `offset` (from the epoch cache),
    /// or -1 when the log has no epoch for it.
    pub fn epoch_at(&self, offset: i64) -> i32 {
        self.log
            .epoch_entries()
            .iter()
            .take_while(|(_, start)| *start <= offset)
            .last()
            .map_or(-1, |(epoch, _)| *epoch)
    }

    /// Log start, high watermark and log end.
    pub fn offsets(&self) -> Offsets {
        Offsets {
            log_start: self.log.log_start_offset(),
            high_watermark: self.log.high_watermark(),
            log_end: self.log.log_end_offset(),
        }
    }

    /// Offset below which records are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.log.high_watermark()
    }

    /// First offset of the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// A receiver that sees every high-watermark move (long-polling fetches).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.log.subscribe_high_watermark()
    }

    /// Records below `next_offset` are committed: moves the high watermark up
    /// (never down, never past the log end). On one node a leader append is
    /// committed at once; under replication this is the commit index.
    pub fn commit(&self, next_offset: i64) -> Result<i64, StorageError> {
        let hw = self.log.high_watermark();
        if next_offset <= hw {
            return Ok(hw);
        }
        self.log.set_high_watermark(next_offset)
    }

    /// The first committed record at or after `timestamp` (ListOffsets by time).
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        let found = self.log.offset_for_timestamp(timestamp)?;
        Ok(found.filter(|f| f.offset < self.log.high_watermark()))
    }

    /// DeleteRecords: raises the log start to `offset` (`-1`: the high
    /// watermark); returns the new log start. Durable on return.
    pub fn delete_records(&self, offset: i64) -> Result<i64, DeleteRecordsError> {
        let high_watermark = self.log.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(DeleteRecordsError::OutOfRange {
                offset,
                high_watermark,
            });
        }
        Ok(self.log.advance_log_start(target)?)
    }

    /// Waits until every record up to `offset` is on disk under the log's
    /// fsync policy (at once under the page-cache policy).
    pub async fn wait_durable(&self, offset: i64) -> Result<(), StorageError> {
        self.log.wait_durable(offset).await
    }

    /// Whether the log fsyncs every append (`--fsync always`, `flush.messages=1`),
    /// so that acks=1 waits for the fsync too.
    pub fn fsyncs_every_append(&self) -> bool {
        self.log.durability() == weir_storage::Durability::EveryAppend
    }

    /// The log's settings.
    pub fn config(&self) -> LogConfig {
        self.log.config()
    }

    /// Replaces the log's settings (a topic config change).
    pub fn set_config(&self, cfg: LogConfig) {
        self.log.set_config(cfg);
    }

    /// Periodic upkeep: forgets idle producers, applies retention and
    /// compaction, and flushes, so rolled segments reach the disk and recovery
    /// points advance even when no acks=all producer asks for a flush. Blocking
    /// I/O: call it off the async workers. Errors are logged, not returned: one
    /// failing partition must not stop the upkeep of the others.
    pub fn maintain(&self, now_ms: i64) {
        self.expire_producers(now_ms);
        let tp = &self.tp;
        if let Err(e) = self.log.enforce_retention(now_ms) {
            tracing::warn!(partition = %tp, error = %e, "retention failed");
        }
        if let Err(e) = self.log.compact() {
            tracing::warn!(partition = %tp, error = %e, "compaction failed");
        }
        if let Err(e) = self.log.flush() {
            tracing::warn!(partition = %tp, error = %e, "flush failed");
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
        let leadership = self.leadership();
        if leadership.role != Role::Leader {
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
        let info = self.log.append(records, leadership.epoch)?;
        let removed = ids
            .as_ref()
            .map(|ids| producers.record(ids, info.base_offset, info.last_offset, now_ms()));
        drop(producers);
        if let Some(removed) = removed {
            self.count(removed);
        }
        self.commit(info.last_offset + 1)?;
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

    /// Reads everything written, committed or not (the group coordinator loading
    /// its state, replicas copying the leader).
    pub fn read_log(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        self.log.read(offset, max_bytes, ReadBound::LogEnd)
    }

    /// Closes the log cleanly (flush, clean-shutdown marker); for tests of
    /// restarts.
    #[cfg(test)]
    fn close(&self) -> Result<(), StorageError> {
        self.log.close()
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

    /// KIP-320: a leader serves a request naming its epoch or none; an older
    /// epoch is fenced, a newer one unknown; a follower serves neither.
    #[test]
    fn requests_are_checked_against_the_leader_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), ProducerLimits::default());
        p.set_leadership(Leadership {
            role: Role::Leader,
            epoch: 4,
        });
        assert_eq!(p.check_leader(4), Ok(4));
        assert_eq!(p.check_leader(-1), Ok(4));
        assert_eq!(
            p.check_leader(3),
            Err(LeaderError::FencedEpoch {
                requested: 3,
                current: 4
            })
        );
        assert_eq!(
            p.check_leader(5),
            Err(LeaderError::UnknownEpoch {
                requested: 5,
                current: 4
            })
        );
        assert_eq!(error_code::leader(&p.check_leader(3).unwrap_err()), 74);
        assert_eq!(error_code::leader(&p.check_leader(5).unwrap_err()), 76);
        // The epoch never goes back; a follower refuses reads and appends.
        p.set_leadership(Leadership {
            role: Role::Leader,
            epoch: 2,
        });
        assert_eq!(p.leader_epoch(), 4);
        p.set_leadership(Leadership {
            role: Role::Follower { leader: 2 },
            epoch: 5,
        });
        assert_eq!(p.check_leader(5), Err(LeaderError::NotLeader));
        assert!(matches!(
            p.append(&batch(1, 0)),
            Err(AppendError::NotLeader)
        ));
        // Appends made as leader carry the epoch in their batches.
        p.set_leadership(Leadership {
            role: Role::Leader,
            epoch: 6,
        });
        let a = p.append(&batch(1, 0)).unwrap();
        let r = p.read_log(a.base_offset, 1 << 20).unwrap();
        assert_eq!(
            BatchHeader::parse(&r.records)
                .unwrap()
                .partition_leader_epoch,
            6
        );
    }

    /// Epochs survive a restart (the epoch cache), OffsetForLeaderEpoch answers
    /// where each ended, and the epoch of an offset is the one its batch got.
    #[test]
    fn epochs_survive_restart_and_place_offsets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let p = partition(dir.path(), ProducerLimits::default());
            assert_eq!(p.leader_epoch(), 0);
            p.append(&batch(1, 0)).unwrap(); // offset 0, epoch 0
            for (epoch, pid) in [(3, 2), (3, 3), (5, 4)] {
                p.set_leadership(Leadership {
                    role: Role::Leader,
                    epoch,
                });
                p.append(&batch(pid, 0)).unwrap();
            }
            p.close().unwrap();
        }
        let p = partition(dir.path(), ProducerLimits::default());
        assert_eq!(p.leader_epoch(), 5, "a restart lowered the epoch");
        assert_eq!(p.end_offset_for_epoch(5), (5, 4));
        assert_eq!(p.end_offset_for_epoch(4), (3, 3));
        assert_eq!(p.end_offset_for_epoch(3), (3, 3));
        assert_eq!(p.end_offset_for_epoch(0), (0, 1));
        assert_eq!(p.end_offset_for_epoch(-1), (-1, -1));
        assert_eq!(
            [0, 1, 2, 3].map(|o| p.epoch_at(o)),
            [0, 3, 3, 5],
            "epochs of offsets"
        );
    }

    /// The high watermark only moves up, and DeleteRecords stays below it.
    #[test]
    fn high_watermark_moves_up_only_and_bounds_delete_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), ProducerLimits::default());
        for pid in 1..=3 {
            p.append(&batch(pid, 0)).unwrap();
        }
        assert_eq!(p.high_watermark(), 3);
        assert_eq!(p.commit(1).unwrap(), 3);
        assert_eq!(p.high_watermark(), 3);
        assert!(matches!(
            p.delete_records(4),
            Err(DeleteRecordsError::OutOfRange { offset: 4, .. })
        ));
        assert!(matches!(
            p.delete_records(-5),
            Err(DeleteRecordsError::OutOfRange { .. })
        ));
        assert_eq!(p.delete_records(2).unwrap(), 2);
        assert_eq!(p.delete_records(-1).unwrap(), 3);
        assert_eq!(
            p.offsets(),
            Offsets {
                log_start: 3,
                high_watermark: 3,
                log_end: 3
            }
        );
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
            p.close().unwrap();
        }
        let p = partition(dir.path(), limits);
        assert_eq!(p.producer_count(), 3);
        // Producers 4, 5 and 1 wrote last: 1 continues, 2 is unknown.
        assert!(!p.append(&batch(1, 2)).unwrap().duplicate);
        let err = p.append(&batch(2, 1)).unwrap_err();
        assert_eq!(error_code::append(&err), 45, "{err}");
    }
}
