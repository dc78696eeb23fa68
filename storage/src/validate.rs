//! What a client's batch must satisfy before the log takes it, beyond framing and
//! CRC ([`crate::batch::validate`]): Kafka's `LogValidator` for RecordBatch v2.
//!
//! Every record is walked (compressed batches are decompressed, bounded by
//! `max.message.bytes`), so the record count, each record's length and offset
//! delta, and each timestamp are facts about the bytes present, never claims
//! copied from the header. Batches from a leader (replication) and from disk
//! (recovery) are not re-checked here: they were checked once, at the edge.

use crate::batch::BatchHeader;
use crate::error::BatchError;
use crate::record::{records_body, records_section, RecordWalk};

/// How record timestamps of an append are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampRule {
    /// `message.timestamp.type=LogAppendTime`: the log stamps the batch; the
    /// client's timestamps are not checked.
    LogAppendTime,
    /// `CreateTime`: each record's timestamp must lie within
    /// `[now - before_max_ms, now + after_max_ms]` (KIP-937).
    CreateTime {
        /// The broker's clock, in ms since the epoch.
        now: i64,
        /// `message.timestamp.before.max.ms`.
        before_max_ms: i64,
        /// `message.timestamp.after.max.ms`.
        after_max_ms: i64,
    },
}

/// The rules a client append is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendRules {
    /// `max.message.bytes`: also bounds a batch's records after decompression.
    pub max_message_bytes: usize,
    /// Timestamp checks.
    pub timestamps: TimestampRule,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub keys_required: bool,
}

fn check_timestamp(rule: &TimestampRule, index: i32, ts: i64) -> Result<(), BatchError> {
    let TimestampRule::CreateTime {
        now,
        before_max_ms,
        after_max_ms,
    } = *rule
    else {
        return Ok(());
    };
    let refuse = |reason: String| {
        Err(BatchError::InvalidTimestamp {
            index,
            timestamp: ts,
            reason,
        })
    };
    // i128: a hostile timestamp near i64::MIN/MAX must not overflow the difference.
    let diff = i128::from(now) - i128::from(ts);
    if diff > i128::from(before_max_ms) {
        return refuse(format!(
            "{diff} ms before the broker's clock (message.timestamp.before.max.ms={before_max_ms})"
        ));
    }
    if -diff > i128::from(after_max_ms) {
        return refuse(format!(
            "{} ms after the broker's clock (message.timestamp.after.max.ms={after_max_ms})",
            -diff
        ));
    }
    Ok(())
}

/// Whether [`validate_records`] could refuse a batch that this process's
/// [`crate::BatchBuilder`] built (offset deltas and framing right by
/// construction) and whose header is `header`: only when `rules` ask every
/// record for a key, or bound timestamps in the past, or its latest
/// timestamp is too far ahead. A past bound left at its default (none) is
/// not checked per record: a timestamp it refuses (more than `i64::MAX` ms
/// old) was refused where it was first produced.
pub fn built_batch_needs_checks(header: &BatchHeader, rules: &AppendRules) -> bool {
    if rules.keys_required {
        return true;
    }
    match rules.timestamps {
        TimestampRule::LogAppendTime => false,
        TimestampRule::CreateTime {
            now,
            before_max_ms,
            after_max_ms,
        } => {
            before_max_ms != i64::MAX
                || i128::from(header.max_timestamp) - i128::from(now) > i128::from(after_max_ms)
        }
    }
}

/// Checks the records of one produced batch (`batch` is the whole batch, whose
/// header `header` already passed [`crate::batch::validate`] with
/// [`crate::CountRule::Produced`]).
pub fn validate_records(
    batch: &[u8],
    header: &BatchHeader,
    rules: &AppendRules,
) -> Result<(), BatchError> {
    if header.is_control() {
        return Err(BatchError::NotAllowed(
            "clients may not write control batches".into(),
        ));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(BatchError::NotAllowed(format!(
            "batch of producer id {} has invalid base sequence {}",
            header.producer_id, header.base_sequence
        )));
    }
    if header.codec() == 0 {
        let section = records_section(batch, header, rules.max_message_bytes)?;
        return check_records(&section, header, rules);
    }
    // Compressed: decompress into this thread's scratch buffer, reused from batch
    // to batch (no allocation, no fresh pages to fault in, per batch).
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let body = records_body(batch, header)?;
        let limit = crate::record::decompress_limit(rules.max_message_bytes as u64);
        crate::codec::decompress_into(header.codec(), body, limit, &mut scratch)?;
        let result = check_records(&scratch, header, rules);
        // A rare huge batch must not pin its memory in every worker thread.
        if scratch.capacity() > SCRATCH_KEEP {
            *scratch = Vec::new();
        }
        result
    })
}

/// Largest scratch buffer a thread keeps between batches.
const SCRATCH_KEEP: usize = 4 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The per-record checks over an uncompressed records section.
fn check_records(
    section: &[u8],
    header: &BatchHeader,
    rules: &AppendRules,
) -> Result<(), BatchError> {
    // Like Kafka's LogValidator, every record that breaks a rule is reported
    // (librdkafka fails exactly those messages and retries the rest); damage
    // to the framing stops the walk at once.
    let mut faults = Vec::new();
    for (i, record) in RecordWalk::new(section, header.record_count).enumerate() {
        let record = record?;
        let index = i as i32;
        if record.offset_delta != index {
            faults.push(BatchError::InvalidRecord {
                index,
                reason: format!(
                    "offset delta {} where {index} was expected",
                    record.offset_delta
                ),
            });
            continue;
        }
        if rules.keys_required && record.key.is_none() {
            faults.push(BatchError::InvalidRecord {
                index,
                reason: "a compacted topic cannot accept a record without a key".into(),
            });
            continue;
        }
        let ts = header.base_timestamp.wrapping_add(record.timestamp_delta);
        if let Err(e) = check_timestamp(&rules.timestamps, index, ts) {
            faults.push(e);
        }
    }
    match faults.len() {
        0 => Ok(()),
        1 => Err(faults.remove(0)),
        _ => Err(BatchError::Records(faults)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate, CountRule, HEADER_LEN};
    use crate::record::{build_batch, compress, put_varlong};

    const NOW: i64 = 1_800_000_000_000;

    fn rules() -> AppendRules {
        AppendRules {
            max_message_bytes: 1 << 20,
            timestamps: TimestampRule::CreateTime {
                now: NOW,
                before_max_ms: i64::MAX,
                after_max_ms: 3_600_000,
            },
            keys_required: false,
        }
    }

    fn check(batch: &[u8], rules: &AppendRules) -> Result<(), BatchError> {
        let h = validate(batch, usize::MAX, CountRule::Produced)?;
        validate_records(batch, &h, rules)
    }

    fn keyed(n: usize) -> Vec<u8> {
        build_batch(
            &(0..n)
                .map(|i| (Some(vec![b'k']), Some(vec![b'v'; 3]), NOW + i as i64))
                .collect::<Vec<_>>(),
        )
    }

    /// Rewrites the header's recordCount and lastOffsetDelta and reseals.
    fn claim(mut b: Vec<u8>, count: i32, last_delta: i32) -> Vec<u8> {
        b[23..27].copy_from_slice(&last_delta.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        crate::batch::seal(&mut b);
        b
    }

    /// Replaces the records section (uncompressed) and reseals.
    fn with_section(b: &[u8], section: &[u8]) -> Vec<u8> {
        let mut out = b[..HEADER_LEN].to_vec();
        out.extend_from_slice(section);
        crate::batch::seal(&mut out);
        out
    }

    fn compressed(b: &[u8], codec: i16) -> Vec<u8> {
        let body = compress(codec, &b[HEADER_LEN..]).unwrap();
        let mut out = b[..HEADER_LEN].to_vec();
        out.extend_from_slice(&body);
        out[21..23].copy_from_slice(&codec.to_be_bytes());
        crate::batch::seal(&mut out);
        out
    }

    #[test]
    fn real_batches_pass_in_every_codec() {
        let b = keyed(5);
        for codec in 0..=4 {
            let b = if codec == 0 {
                b.clone()
            } else {
                compressed(&b, codec)
            };
            check(&b, &rules()).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        }
    }

    #[test]
    fn the_issue_batch_claiming_two_billion_records_is_refused() {
        // One record, but recordCount 2^31-1 and lastOffsetDelta 2^31-2 (consistent
        // with each other, CRC valid): the bytes hold one record.
        let b = claim(keyed(1), i32::MAX, i32::MAX - 1);
        assert_eq!(
            check(&b, &rules()),
            Err(BatchError::RecordsPresent {
                declared: i32::MAX,
                found: 1
            })
        );
        let b = claim(keyed(1), 1000, 999);
        assert_eq!(
            check(&b, &rules()),
            Err(BatchError::RecordsPresent {
                declared: 1000,
                found: 1
            })
        );
    }

    #[test]
    fn counts_that_disagree_with_the_header_or_the_bytes_are_refused() {
        // Fewer declared than present: trailing bytes.
        let b = claim(keyed(3), 2, 1);
        assert!(matches!(
            check(&b, &rules()),
            Err(BatchError::TrailingBytes { declared: 2, .. })
        ));
        // Negative count, zero count, lastOffsetDelta past the count.
        for (count, delta) in [(-1, -2), (0, -1), (3, 5), (i32::MIN, i32::MAX)] {
            let b = claim(keyed(3), count, delta);
            assert!(
                matches!(check(&b, &rules()), Err(BatchError::RecordCount { .. })),
                "count {count} delta {delta}"
            );
        }
    }

    #[test]
    fn a_compressed_batch_whose_records_disagree_with_its_header_is_refused() {
        for codec in 1..=4 {
            let b = compressed(&claim(keyed(2), 5, 4), codec);
            assert_eq!(
                check(&b, &rules()),
                Err(BatchError::RecordsPresent {
                    declared: 5,
                    found: 2
                }),
                "codec {codec}"
            );
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_the_decompression_limit() {
        let limit = crate::record::decompress_limit(rules().max_message_bytes as u64);
        let big = build_batch(&[(Some(b"k".to_vec()), Some(vec![0u8; limit + 1]), NOW)]);
        for codec in 1..=4 {
            let b = compressed(&big, codec);
            assert!(b.len() < 8 << 20, "codec {codec} compressed to {}", b.len());
            let err = check(&b, &rules()).unwrap_err();
            assert!(err.to_string().contains("decompress to more than"), "{err}");
        }
    }

    /// `max.message.bytes` bounds a batch as sent (compressed), as Kafka
    /// does: a small batch of a value larger than it once decompressed is
    /// accepted.
    #[test]
    fn max_message_bytes_bounds_the_compressed_batch() {
        let big = build_batch(&[(Some(b"k".to_vec()), Some(vec![0u8; 3 << 20]), NOW)]);
        for codec in 1..=4 {
            let b = compressed(&big, codec);
            assert!(b.len() < 1 << 20, "codec {codec} compressed to {}", b.len());
            check(&b, &rules()).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        }
    }

    #[test]
    fn lying_record_lengths_and_fields_are_refused_with_their_index() {
        let good = keyed(2);
        let section = &good[HEADER_LEN..];
        // Each record of `keyed` is 10 bytes behind a one-byte length (zigzag 20).
        assert_eq!((section.len(), section[0], section[11]), (22, 20, 20));
        // Record 0 claims 1000 bytes.
        let mut lie = Vec::new();
        put_varlong(&mut lie, 1000);
        lie.extend_from_slice(&section[1..]);
        let err = check(&with_section(&good, &lie), &rules()).unwrap_err();
        assert!(
            matches!(err, BatchError::InvalidRecord { index: 0, .. }),
            "{err}"
        );
        // Record 1 claims a length one short of its fields.
        let mut short = section.to_vec();
        short[11] = 18;
        let err = check(&with_section(&good, &short), &rules()).unwrap_err();
        assert!(
            matches!(err, BatchError::InvalidRecord { index: 1, .. }),
            "{err}"
        );
        // Record 1 claims one byte more than its fields (and the batch) hold.
        let mut long = section.to_vec();
        long[11] = 22;
        let err = check(&with_section(&good, &long), &rules()).unwrap_err();
        assert!(
            matches!(err, BatchError::InvalidRecord { index: 1, .. }),
            "{err}"
        );
        // A negative record length.
        let mut neg = Vec::new();
        put_varlong(&mut neg, -5);
        neg.extend_from_slice(&section[1..]);
        assert!(matches!(
            check(&with_section(&good, &neg), &rules()),
            Err(BatchError::InvalidRecord { index: 0, .. })
        ));
    }

    #[test]
    fn offset_deltas_must_count_up_from_zero() {
        // Record 1 with offset delta 5: build by hand.
        let mut section = Vec::new();
        for delta in [0i64, 5] {
            let mut rec = vec![0u8];
            put_varlong(&mut rec, 0);
            put_varlong(&mut rec, delta);
            put_varlong(&mut rec, 1);
            rec.push(b'k');
            put_varlong(&mut rec, -1);
            put_varlong(&mut rec, 0);
            put_varlong(&mut section, rec.len() as i64);
            section.extend_from_slice(&rec);
        }
        let b = with_section(&keyed(2), &section);
        assert!(matches!(
            check(&b, &rules()),
            Err(BatchError::InvalidRecord { index: 1, .. })
        ));
    }

    #[test]
    fn timestamps_are_held_to_the_before_and_after_bounds() {
        let at = |ts: i64| build_batch(&[(Some(b"k".to_vec()), None, NOW), (None, None, ts)]);
        let r = rules();
        check(&at(NOW - 10 * 365 * 86_400_000), &r).unwrap();
        check(&at(NOW + 3_600_000), &r).unwrap();
        assert!(matches!(
            check(&at(NOW + 3_600_001), &r),
            Err(BatchError::InvalidTimestamp { index: 1, .. })
        ));
        let mut strict = r;
        strict.timestamps = TimestampRule::CreateTime {
            now: NOW,
            before_max_ms: 1000,
            after_max_ms: 1000,
        };
        assert!(matches!(
            check(&at(NOW - 1001), &strict),
            Err(BatchError::InvalidTimestamp { index: 1, .. })
        ));
        check(
            &at(i64::MIN),
            &AppendRules {
                timestamps: TimestampRule::LogAppendTime,
                ..r
            },
        )
        .unwrap();
        // Extremes do not overflow.
        assert!(check(&at(i64::MIN), &strict).is_err());
        assert!(check(&at(i64::MAX), &strict).is_err());
    }

    #[test]
    fn compacted_topics_refuse_records_without_a_key() {
        let b = build_batch(&[
            (Some(b"k".to_vec()), None, NOW),
            (None, Some(b"v".to_vec()), NOW),
        ]);
        let r = AppendRules {
            keys_required: true,
            ..rules()
        };
        assert!(matches!(
            check(&b, &r),
            Err(BatchError::InvalidRecord { index: 1, .. })
        ));
        check(&keyed(3), &r).unwrap();
    }

    /// As Kafka's LogValidator (and librdkafka test 0011 expects): every bad
    /// record is reported, not only the first.
    #[test]
    fn every_bad_record_is_reported() {
        let b = build_batch(&[
            (Some(b"k".to_vec()), None, NOW),
            (None, None, NOW),
            (Some(b"k".to_vec()), None, NOW),
            (None, None, NOW + 2 * 3_600_000),
            (None, None, NOW),
        ]);
        let r = AppendRules {
            keys_required: true,
            ..rules()
        };
        let Err(BatchError::Records(all)) = check(&b, &r) else {
            panic!("expected several record errors");
        };
        let indexes: Vec<i32> = all
            .iter()
            .map(|e| match e {
                BatchError::InvalidRecord { index, .. }
                | BatchError::InvalidTimestamp { index, .. } => *index,
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(indexes, vec![1, 3, 4]);
    }

    #[test]
    fn control_batches_and_sequence_less_producers_are_refused() {
        let mut b = keyed(1);
        b[21..23].copy_from_slice(&0x20i16.to_be_bytes());
        crate::batch::seal(&mut b);
        assert!(matches!(
            check(&b, &rules()),
            Err(BatchError::NotAllowed(_))
        ));
        let mut b = keyed(1);
        b[43..51].copy_from_slice(&7i64.to_be_bytes());
        crate::batch::seal(&mut b);
        assert!(matches!(
            check(&b, &rules()),
            Err(BatchError::NotAllowed(_))
        ));
    }
}
