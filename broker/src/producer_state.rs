//! Idempotent producers: per partition, each producer id's epoch and its last five
//! batches' sequence ranges, so that a retried batch is answered with its original
//! offsets instead of being written twice.

use std::collections::{HashMap, VecDeque};

/// How many recent batches per producer are remembered (Kafka's max in-flight).
const RECENT: usize = 5;

/// Why an idempotent batch was refused, with the Kafka error it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// Sequence gap or a new producer not starting at 0 (OUT_OF_ORDER_SEQUENCE_NUMBER, 45).
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

#[derive(Debug, Default)]
struct Entry {
    epoch: i16,
    recent: VecDeque<Recent>,
}

/// The producer states of one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, Entry>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

impl ProducerStates {
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
            return fresh();
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
        if b.first_seq == expected {
            Ok(None)
        } else if e.recent.front().is_some_and(|r| b.first_seq < r.first_seq) {
            Err(ProducerError::Duplicate(b.first_seq))
        } else {
            Err(ProducerError::OutOfOrder {
                got: b.first_seq,
                expected,
            })
        }
    }

    /// Remembers a written batch.
    pub fn record(&mut self, b: &BatchIds, base_offset: i64, last_offset: i64) {
        let e = self.producers.entry(b.producer_id).or_default();
        if b.epoch != e.epoch {
            e.epoch = b.epoch;
            e.recent.clear();
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
        s.record(&ids(0, 4), 10, 14);
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
            s.record(&ids(i * 5, i * 5 + 4), i as i64 * 100, i as i64 * 100 + 4);
        }
        assert_eq!(s.check(&ids(0, 4)).unwrap_err().code(), 46);
    }

    #[test]
    fn unknown_producer_must_start_at_zero() {
        let s = ProducerStates::default();
        assert_eq!(s.check(&ids(3, 4)).unwrap_err().code(), 45);
    }
}
