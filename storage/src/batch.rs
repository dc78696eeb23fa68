//! RecordBatch v2 framing: the 61-byte header, validation and stamping.
//!
//! Layout (all big-endian), as the Kafka protocol guide gives it:
//!
//! ```text
//! 0  baseOffset i64 | 8  batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 | 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32
//! 57 recordCount i32 | 61 records...
//! ```
//!
//! The CRC-32C covers byte 21 (attributes) to the end of the batch, so the broker
//! may rewrite baseOffset and partitionLeaderEpoch without recomputing it.

use crate::error::BatchError;

/// Size of the v2 batch header including baseOffset and batchLength.
pub const HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the bytes not counted by batchLength.
pub(crate) const LOG_OVERHEAD: usize = 12;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const BASE_SEQUENCE_AT: usize = 53;

/// The decoded header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch (Raft term) of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// CRC-32C of attributes..end.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record minus baseOffset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without looking at the records.
    ///
    /// Checks that the header is complete, batchLength is plausible and magic is 2.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                available: buf.len(),
                needed: HEADER_LEN,
            });
        }
        let batch_length = i32_at(buf, 8);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(Self {
            base_offset: i64_at(buf, 0),
            batch_length,
            partition_leader_epoch: i32_at(buf, LEADER_EPOCH_AT),
            magic,
            crc: u32::from_be_bytes(buf[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes")),
            attributes: i16_at(buf, ATTRIBUTES_AT),
            last_offset_delta: i32_at(buf, 23),
            base_timestamp: i64_at(buf, 27),
            max_timestamp: i64_at(buf, 35),
            producer_id: i64_at(buf, 43),
            producer_epoch: i16_at(buf, 51),
            base_sequence: i32_at(buf, 53),
            record_count: i32_at(buf, 57),
        })
    }

    /// Total size of the batch on disk, header included.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record of the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> i16 {
        self.attributes & 0x7
    }

    /// Whether the batch carries LogAppendTime timestamps (attribute bit 3).
    pub fn log_append_time(&self) -> bool {
        self.attributes & 0x8 != 0
    }

    /// Whether the batch is part of a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch holds control records (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// How strictly [`validate`] checks the record count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountRule {
    /// A produced batch: recordCount == lastOffsetDelta + 1 and at least one record.
    Produced,
    /// A stored batch, which compaction may have thinned: recordCount <= lastOffsetDelta + 1.
    Stored,
}

/// Fully validates the batch at the start of `buf`: header, length, CRC-32C, count.
pub fn validate(buf: &[u8], max_size: usize, rule: CountRule) -> Result<BatchHeader, BatchError> {
    validate_with(buf, max_size, rule, true)
}

/// [`validate`], the CRC-32C checked only when `crc` (a batch this process
/// built and handed over in memory has nothing to check it against).
pub(crate) fn validate_with(
    buf: &[u8],
    max_size: usize,
    rule: CountRule,
    crc: bool,
) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let size = header.size();
    if size > max_size {
        return Err(BatchError::InvalidLength(header.batch_length));
    }
    if buf.len() < size {
        return Err(BatchError::Truncated {
            available: buf.len(),
            needed: size,
        });
    }
    if crc {
        let computed = crc32c::crc32c(&buf[ATTRIBUTES_AT..size]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
    }
    let count_ok = match rule {
        CountRule::Produced => {
            header.record_count >= 1
                && header.last_offset_delta >= 0
                && i64::from(header.record_count) == i64::from(header.last_offset_delta) + 1
        }
        CountRule::Stored => {
            header.record_count >= 0
                && header.last_offset_delta >= 0
                && i64::from(header.record_count) <= i64::from(header.last_offset_delta) + 1
        }
    };
    if !count_ok {
        return Err(BatchError::RecordCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.codec() > 4 {
        return Err(BatchError::UnknownCodec(header.codec()));
    }
    Ok(header)
}

/// Sets baseOffset and partitionLeaderEpoch of the batch at the start of `buf`.
///
/// Neither field is covered by the CRC, so the batch stays valid.
pub fn stamp(buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Sets the first sequence number of a whole batch and makes its CRC good
/// again (a producer renumbering a batch it sends anew).
pub fn set_base_sequence(buf: &mut [u8], base_sequence: i32) {
    buf[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Recomputes the batchLength and CRC of a batch whose records were rewritten.
pub fn seal(buf: &mut [u8]) {
    let length = (buf.len() - LOG_OVERHEAD) as i32;
    buf[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Overwrites recordCount in a header being rebuilt.
pub(crate) fn set_record_count(buf: &mut [u8], count: i32) {
    buf[57..61].copy_from_slice(&count.to_be_bytes());
}

/// Walks the headers of consecutive batches in `buf`, stopping at the first that is
/// incomplete or malformed (its position is then [`HeaderWalk::end`]).
#[derive(Debug)]
pub struct HeaderWalk<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> HeaderWalk<'a> {
    /// Starts walking at byte `pos` of `buf`.
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    /// Byte position after the last batch returned.
    pub fn end(&self) -> usize {
        self.pos
    }
}

impl Iterator for HeaderWalk<'_> {
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        let header = BatchHeader::parse(rest).ok()?;
        if header.size() > rest.len() {
            return None;
        }
        // Fix (found by fuzzing recovery): a header whose offsets run backwards
        // (negative lastOffsetDelta), past i64::MAX, or that counts more records
        // than its offsets hold is no batch Weir wrote;
        // the walk stops there, as at any other damage, instead of handing out
        // a batch whose next offset is not after its base (reads stalled) or
        // overflows.
        if header.last_offset_delta < 0
            || header.record_count < 0
            || i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1
            || header
                .base_offset
                .checked_add(i64::from(header.last_offset_delta) + 1)
                .is_none()
        {
            return None;
        }
        let at = self.pos;
        self.pos += header.size();
        Some((at, header))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an uncompressed batch of `n` records with the given value size, for tests.
    pub(crate) fn make_batch(n: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
        crate::record::build_batch(
            &(0..n)
                .map(|i| {
                    (
                        Some(format!("k{i}").into_bytes()),
                        Some(vec![b'v'; value_len]),
                        timestamp + i as i64,
                    )
                })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn valid_batch_round_trips() {
        let b = make_batch(3, 10, 1000);
        let h = validate(&b, usize::MAX, CountRule::Produced).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!(h.size(), b.len());
    }

    #[test]
    fn every_flipped_byte_inside_crc_is_caught() {
        let b = make_batch(2, 5, 0);
        for i in ATTRIBUTES_AT..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(
                validate(&c, usize::MAX, CountRule::Produced).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn stamping_keeps_crc_valid() {
        let mut b = make_batch(2, 5, 0);
        stamp(&mut b, 42, 7);
        let h = validate(&b, usize::MAX, CountRule::Produced).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
    }

    /// Found by fuzzing recovery: a walk over stored bytes stops at a header
    /// whose offsets run backwards or past i64::MAX, instead of handing it out.
    #[test]
    fn header_walk_stops_at_impossible_offsets() {
        let good = make_batch(2, 3, 0);
        let mut backwards = make_batch(2, 3, 0);
        backwards[23..27].copy_from_slice(&(-3i32).to_be_bytes());
        let mut overflow = make_batch(2, 3, 0);
        overflow[0..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        for bad in [backwards, overflow] {
            let mut buf = good.clone();
            buf.extend_from_slice(&bad);
            let mut walk = HeaderWalk::new(&buf, 0);
            assert_eq!(walk.by_ref().count(), 1);
            assert_eq!(walk.end(), good.len());
        }
    }

    #[test]
    fn short_and_bad_magic_are_rejected() {
        let b = make_batch(1, 1, 0);
        assert!(matches!(
            validate(&b[..30], usize::MAX, CountRule::Produced),
            Err(BatchError::Truncated { .. })
        ));
        let mut m = b.clone();
        m[MAGIC_AT] = 1;
        assert_eq!(
            validate(&m, usize::MAX, CountRule::Produced),
            Err(BatchError::UnsupportedMagic(1))
        );
        assert!(validate(&b[..b.len() - 1], usize::MAX, CountRule::Produced).is_err());
    }
}
