//! Idempotent producers: per partition, each producer id's epoch and its last five
//! batches' sequence ranges, so that a retried batch is answered with its original
//! offsets instead of being written twice.
//!
//! The state is bounded, so that a client inventing producer ids cannot exhaust
//! memory: an entry not appended to for `producer.id.expiration.ms` expires, and
//! at most `max producers` entries are kept per partition (a new producer evicts
//! the entry idle the longest). A forgotten producer is an unknown one, and
//! the batch of a producer a partition does not know is taken at any
//! sequence, as Kafka takes it ("If there is no current producer epoch
//! (possibly because all producer records have been deleted due to retention
//! or the DeleteRecords API) accept writes with any sequence number"): from
//! it on the producer is known again. (Answering UNKNOWN_PRODUCER_ID, as
//! Kafka did before 2.5, made librdkafka's idempotent producer fail for good
//! when its topic was deleted and created again.)

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;

/// How many recent batches per producer are remembered (Kafka's max in-flight).
const RECENT: usize = 5;

/// Kafka's default `producer.id.expiration.ms`: one day.
pub const DEFAULT_EXPIRATION_MS: i64 = 86_400_000;

/// Default bound of producer entries per partition (a few hundred bytes each).
pub const DEFAULT_MAX_PRODUCERS: usize = 10_000;

/// Bounds of one partition's producer states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerLimits {
    /// An entry not appended to for this long (ms) expires.
    pub expiration_ms: i64,
    /// Most entries kept; a new producer evicts the one idle the longest.
    pub max_producers: usize,
}

impl Default for ProducerLimits {
    fn default() -> Self {
        Self {
            expiration_ms: DEFAULT_EXPIRATION_MS,
            max_producers: DEFAULT_MAX_PRODUCERS,
        }
    }
}

/// Node-wide counts of producer entries dropped, shared by every partition
/// and exported at `/metrics`.
#[derive(Debug, Default)]
pub struct ProducerStateCounters {
    /// Entries removed because they were idle past the expiration.
    pub expired: AtomicU64,
    /// Entries evicted to make room for a new producer in a full partition.
    pub evicted: AtomicU64,
}

/// Entries a call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Idle past the expiration.
    pub expired: usize,
    /// Evicted for room.
    pub evicted: usize,
}

/// Why an idempotent batch was refused, with the Kafka error it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// Sequence gap, or a new epoch not starting at 0 (OUT_OF_ORDER_SEQUENCE_NUMBER, 45).
    #[error("out of order sequence {got}, expected {expected}")]
    OutOfOrder {
        /// Sequence received.
        got: i32,
        /// Sequence expected.
        expected: i32,
    },
    /// An old sequence no longer in the recent window (DUPLICATE_SEQUENCE_NUMBER, 46).
    #[error("duplicate sequence {0} older than the remembered batches")]
    Duplicate(i32),
    /// An epoch older than the producer's current one (INVALID_PRODUCER_EPOCH, 47).
    #[error("producer epoch {got} is older than {current}")]
    StaleEpoch {
        /// Epoch received.
        got: i16,
        /// Current epoch.
        current: i16,
    },
}

impl ProducerError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::OutOfOrder { .. } => 45,
            Self::Duplicate(_) => 46,
            Self::StaleEpoch { .. } => 47,
        }
    }
}

/// A batch as idempotence sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIds {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug)]
struct Entry {
    epoch: i16,
    recent: VecDeque<Recent>,
    /// The first sequence of a batch written after a gap in this epoch's
    /// sequences (a proposal refused while a later one was taken): records
    /// before it may be missing, so an older retry is no known duplicate.
    gap_end: Option<i32>,
    /// This entry's key in `ProducerStates::idle`.
    used: UseKey,
}

/// When an entry was last appended to: wall-clock ms, then a counter so that
/// entries used in the same millisecond keep their order.
type UseKey = (i64, u64);

/// The producer states of one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    limits: ProducerLimits,
    producers: HashMap<i64, Entry>,
    /// Producer ids by last use, oldest first: for expiry and eviction.
    idle: BTreeMap<UseKey, i64>,
    uses: u64,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

impl ProducerStates {
    /// Empty states bounded by `limits`.
    pub fn new(limits: ProducerLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Number of producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Whether `producer_id` is remembered.
    pub fn contains(&self, producer_id: i64) -> bool {
        self.producers.contains_key(&producer_id)
    }

    /// Removes the entries last appended to more than the expiration before
    /// `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(self.limits.expiration_ms);
        let mut n = 0;
        while let Some(entry) = self.idle.first_entry() {
            if entry.key().0 >= cutoff {
                break;
            }
            let pid = entry.remove();
            self.producers.remove(&pid);
            n += 1;
        }
        n
    }

    /// Checks a batch: `Ok(Some(offsets))` for a retry of a remembered batch,
    /// `Ok(None)` when it is the next batch and should be written.
    pub fn check(&self, b: &BatchIds) -> Result<Option<(i64, i64)>, ProducerError> {
        // A producer new to this partition, or starting a new epoch, starts at 0.
        let fresh = || {
            if b.first_seq == 0 {
                Ok(None)
            } else {
                Err(ProducerError::OutOfOrder {
                    got: b.first_seq,
                    expected: 0,
                })
            }
        };
        let Some(e) = self.producers.get(&b.producer_id) else {
            // Unknown here (never seen, expired or evicted): taken at any
            // sequence, as Kafka does.
            return Ok(None);
        };
        if b.epoch < e.epoch {
            return Err(ProducerError::StaleEpoch {
                got: b.epoch,
                current: e.epoch,
            });
        }
        if b.epoch > e.epoch {
            return fresh();
        }
        if let Some(r) = e
            .recent
            .iter()
            .find(|r| r.first_seq == b.first_seq && r.last_seq == b.last_seq)
        {
            return Ok(Some((r.base_offset, r.last_offset)));
        }
        let expected = e.recent.back().map_or(0, |r| next_seq(r.last_seq));
        let written = e.recent.back().map_or(-1, |r| r.last_seq);
        if b.first_seq == expected {
            Ok(None)
        } else if e.recent.front().is_some_and(|r| b.first_seq < r.first_seq)
            && b.last_seq <= written
            && e.gap_end.is_none_or(|g| b.first_seq >= g)
        {
            // Older than the batches remembered, and wholly written: a
            // batch reaching past the last one written, or into a gap,
            // holds records never written, and must not be answered as
            // stored.
            Err(ProducerError::Duplicate(b.first_seq))
        } else {
            Err(ProducerError::OutOfOrder {
                got: b.first_seq,
                expected,
            })
        }
    }

    /// Remembers a written batch appended at `now_ms`, first expiring idle
    /// entries and, when the partition is still full and the producer is new,
    /// evicting the one idle the longest.
    pub fn record(
        &mut self,
        b: &BatchIds,
        base_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Removed {
        let mut removed = Removed {
            expired: self.expire(now_ms),
            evicted: 0,
        };
        if !self.producers.contains_key(&b.producer_id) {
            while self.producers.len() >= self.limits.max_producers.max(1) {
                let Some((_, pid)) = self.idle.pop_first() else {
                    break;
                };
                self.producers.remove(&pid);
                removed.evicted += 1;
            }
        }
        self.uses += 1;
        let used = (now_ms, self.uses);
        let e = self
            .producers
            .entry(b.producer_id)
            .or_insert_with(|| Entry {
                epoch: b.epoch,
                recent: VecDeque::with_capacity(RECENT),
                gap_end: None,
                used,
            });
        self.idle.remove(&e.used);
        e.used = used;
        self.idle.insert(used, b.producer_id);
        if b.epoch != e.epoch {
            e.epoch = b.epoch;
            e.recent.clear();
            e.gap_end = None;
        } else if e
            .recent
            .back()
            .is_some_and(|r| b.first_seq != next_seq(r.last_seq))
        {
            e.gap_end = Some(b.first_seq);
        }
        if e.recent.len() == RECENT {
            e.recent.pop_front();
        }
        e.recent.push_back(Recent {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            base_offset,
            last_offset,
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(first: i32, last: i32) -> BatchIds {
        BatchIds {
            producer_id: 1,
            epoch: 0,
            first_seq: first,
            last_seq: last,
        }
    }

    #[test]
    fn retries_get_original_offsets_and_gaps_are_refused() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&ids(0, 4)), Ok(None));
        s.record(&ids(0, 4), 10, 14, 0);
        assert_eq!(s.check(&ids(0, 4)), Ok(Some((10, 14))));
        assert_eq!(s.check(&ids(5, 9)), Ok(None));
        assert_eq!(s.check(&ids(7, 9)).unwrap_err().code(), 45);
        assert_eq!(
            s.check(&BatchIds {
                epoch: -1,
                ..ids(5, 9)
            })
            .unwrap_err()
            .code(),
            47
        );
        for i in 1..=6 {
            s.record(
                &ids(i * 5, i * 5 + 4),
                i as i64 * 100,
                i as i64 * 100 + 4,
                0,
            );
        }
        assert_eq!(s.check(&ids(0, 4)).unwrap_err().code(), 46);
        // Cut differently (another writer of the same identity): an old
        // batch inside what was written is a duplicate, one reaching past
        // it (34 is the last written) is out of order, never dropped.
        assert_eq!(s.check(&ids(2, 8)).unwrap_err().code(), 46);
        assert_eq!(s.check(&ids(2, 40)).unwrap_err().code(), 45);
        assert_eq!(s.check(&ids(26, 30)).unwrap_err().code(), 45);
    }

    /// A batch written after a gap (its predecessor refused, a later one
    /// taken): the missing batch's retry is out of order, never answered as
    /// a stored duplicate, also once it is older than the batches
    /// remembered; retries after the gap still are duplicates.
    #[test]
    fn a_retry_into_a_gap_is_out_of_order_not_a_duplicate() {
        let mut s = ProducerStates::default();
        s.record(&ids(0, 4), 0, 4, 0);
        // 5..=9 was refused; 10..=14 was written after it.
        s.record(&ids(10, 14), 5, 9, 0);
        assert_eq!(s.check(&ids(5, 9)).unwrap_err().code(), 45);
        for i in 3..=8 {
            s.record(&ids(i * 5, i * 5 + 4), i as i64 * 5, i as i64 * 5 + 4, 0);
        }
        assert_eq!(s.check(&ids(5, 9)).unwrap_err().code(), 45);
        assert_eq!(s.check(&ids(0, 4)).unwrap_err().code(), 45);
        assert_eq!(s.check(&ids(15, 19)).unwrap_err().code(), 46);
        // A new epoch starts without the gap.
        let next = BatchIds {
            epoch: 1,
            ..ids(0, 4)
        };
        s.record(&next, 100, 104, 0);
        for i in 1..=6 {
            s.record(
                &BatchIds {
                    epoch: 1,
                    ..ids(i * 5, i * 5 + 4)
                },
                100 + i as i64 * 5,
                104 + i as i64 * 5,
                0,
            );
        }
        assert_eq!(s.check(&next).unwrap_err().code(), 46);
    }

    /// A producer the partition does not know is taken at any sequence, as
    /// Kafka takes it; from then on it is known.
    #[test]
    fn an_unknown_producer_is_taken_at_any_sequence() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&ids(3, 4)), Ok(None));
        assert_eq!(s.check(&ids(0, 4)), Ok(None));
        s.record(&ids(3, 4), 10, 11, 0);
        assert_eq!(s.check(&ids(3, 4)), Ok(Some((10, 11))));
        assert_eq!(s.check(&ids(7, 8)).unwrap_err().code(), 45);
    }

    fn pid(producer_id: i64, first: i32) -> BatchIds {
        BatchIds {
            producer_id,
            ..ids(first, first)
        }
    }

    /// More producers than the bound: the size stays at the bound, the entry
    /// idle the longest goes (not the oldest created), and the evicted
    /// producer is unknown again (taken at any sequence).
    #[test]
    fn full_partition_evicts_the_producer_idle_longest() {
        let mut s = ProducerStates::new(ProducerLimits {
            expiration_ms: DEFAULT_EXPIRATION_MS,
            max_producers: 3,
        });
        for p in 1..=3 {
            assert_eq!(s.record(&pid(p, 0), p, p, 1000 + p), Removed::default());
        }
        // Producer 1 appends again: now producer 2 is the one idle longest.
        s.record(&pid(1, 1), 10, 10, 2000);
        let removed = s.record(&pid(4, 0), 11, 11, 2001);
        assert_eq!(
            removed,
            Removed {
                expired: 0,
                evicted: 1
            }
        );
        assert_eq!(s.len(), 3);
        assert!(!s.contains(2) && s.contains(1) && s.contains(3) && s.contains(4));
        assert_eq!(s.check(&pid(2, 1)), Ok(None), "producer 2 is unknown again");
        assert_eq!(
            s.check(&pid(1, 5)).unwrap_err().code(),
            45,
            "producer 1 kept its state"
        );
        // Same-millisecond uses keep their order too; a known producer never evicts.
        for p in 5..=20 {
            let removed = s.record(&pid(p, 0), p, p, 3000);
            assert_eq!(removed.evicted, 1);
            assert_eq!(s.len(), 3);
        }
        assert_eq!(s.record(&pid(20, 1), 30, 30, 3000), Removed::default());
        assert!(s.contains(18) && s.contains(19) && s.contains(20));
    }

    /// Entries idle past the expiration are removed by `expire` and before a
    /// new append; entries used since are kept.
    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::new(ProducerLimits {
            expiration_ms: 1000,
            max_producers: 100,
        });
        s.record(&pid(1, 0), 0, 0, 10_000);
        s.record(&pid(2, 0), 1, 1, 10_500);
        assert_eq!(s.expire(11_000), 0, "exactly the expiration is not past it");
        assert_eq!(s.expire(11_001), 1);
        assert!(!s.contains(1) && s.contains(2));
        // Lazily on record: producer 2 has expired by now, producer 3 is new.
        let removed = s.record(&pid(3, 0), 2, 2, 12_000);
        assert_eq!(
            removed,
            Removed {
                expired: 1,
                evicted: 0
            }
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s.check(&pid(2, 1)), Ok(None), "producer 2 is unknown again");
        assert_eq!(s.expire(i64::MAX), 1);
        assert!(s.is_empty());
    }
}
