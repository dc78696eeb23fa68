//! Record types, and the RecordBatch v2 encoding and decoding of the
//! producer and the consumer: the log's own batch format code
//! (`weir_storage`), so both sides check and write batches alike, headers
//! in order with repeated keys kept.

use std::fmt;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};
use weir_storage::record::{records_bytes, RecordWalk};
use weir_storage::{BatchBuilder, BatchHeader, CountRule, HEADER_LEN};

use crate::error::{Error, Result};

/// A record header (key and optional value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value (`None` is a null value).
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record as returned by the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name (shared by the records of one fetch, not copied per record).
    pub topic: std::sync::Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether `timestamp` is the broker's log-append time rather than creation time.
    pub log_append_time: bool,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers, in the order the producer sent them (keys may repeat).
    pub headers: Vec<Header>,
    /// Leader epoch of the leader that appended it (−1 when unknown).
    pub leader_epoch: i32,
}

/// Batch compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (Kafka framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec's id in a batch's attributes.
    pub(crate) fn codec_id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(Error::InvalidArgument(format!(
                "unknown compression {other:?} (none, gzip, snappy, lz4, zstd)"
            ))),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        f.write_str(s)
    }
}

/// One record waiting in a producer batch.
#[derive(Debug, Clone)]
pub(crate) struct PendingRecord {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
    pub(crate) timestamp: i64,
}

/// A record queued with [`crate::Producer::send_detached_batch`]: its topic
/// and partition are the batch's.
#[derive(Debug, Clone, Default)]
pub struct BatchRecord {
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers.
    pub headers: Vec<Header>,
    /// Timestamp in ms since the epoch; `None` means the time it is queued.
    pub timestamp: Option<i64>,
}

impl PendingRecord {
    /// Rough encoded size, used for batch-size accounting.
    pub(crate) fn size(&self) -> usize {
        let kv =
            self.key.as_ref().map_or(0, |k| k.len()) + self.value.as_ref().map_or(0, |v| v.len());
        let h: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 4)
            .sum();
        kv + h + 16
    }
}

/// Producer identity stamped into a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerStamp {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// First sequence of the batch, or -1 when not idempotent.
    pub(crate) base_sequence: i32,
}

impl ProducerStamp {
    /// No producer id: a plain, non-idempotent batch.
    pub(crate) const NONE: ProducerStamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes `records` as exactly one RecordBatch v2.
///
/// The encoder starts a new batch whenever `offset - sequence` changes, so
/// records get sequences `base, base+1, …` (`-1, 0, 1, …` when not idempotent):
/// the difference stays constant and the batch stays whole.
///
/// The records move into the encoder: a batch is encoded once (a restart of
/// its sequence is [`restamp`]ed into the bytes).
pub(crate) fn encode_batch(
    records: &[PendingRecord],
    stamp: ProducerStamp,
    compression: Compression,
) -> Result<Bytes> {
    // Room for each record's varint framing, so the batch is written
    // without growing its buffer.
    let room = records.iter().map(|r| r.size() + 8).sum::<usize>();
    let mut b = BatchBuilder::new(
        stamp.producer_id,
        stamp.producer_epoch,
        stamp.base_sequence,
        room,
    );
    for r in records {
        b.push(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers
                .iter()
                .map(|h| (h.key.as_bytes(), h.value.as_deref())),
        );
    }
    let batch = b
        .finish(compression.codec_id())
        .map_err(|e| Error::protocol("encoding record batch", e))?;
    Ok(Bytes::from(batch))
}

/// `batch` (one encoded RecordBatch v2) with its first sequence set to
/// `base_sequence` and its CRC made good again.
pub(crate) fn restamp(batch: &Bytes, base_sequence: i32) -> Result<Bytes> {
    if batch.len() < HEADER_LEN {
        return Err(Error::protocol(
            "restamping a record batch",
            format!("{} bytes hold no batch header", batch.len()),
        ));
    }
    let mut b = BytesMut::from(&batch[..]);
    weir_storage::set_base_sequence(&mut b, base_sequence);
    Ok(b.freeze())
}

/// The records of `batch` (one RecordBatch v2 this client encoded), to
/// encode again in smaller batches.
pub(crate) fn records_of(batch: &Bytes) -> Result<Vec<PendingRecord>> {
    let batches = FetchedBatches::parse("a produce batch", -1, batch.clone(), i64::MIN)?;
    batches
        .records()
        .map(|r| {
            let r = r?;
            Ok(PendingRecord {
                key: r.bytes(r.key),
                value: r.bytes(r.value),
                headers: r.owned_headers(),
                timestamp: r.timestamp,
            })
        })
        .collect()
}

/// The most a compressed batch may decompress to in the client: the
/// broker bounds a batch by the topic's `max.message.bytes` after
/// decompression; this bounds what a damaged or hostile response can make
/// the client allocate.
const DECOMPRESSED_LIMIT: usize = 256 << 20;

/// Records decoded from one partition of a Fetch response.
#[derive(Debug, Default)]
pub struct DecodedRecords {
    /// Data records at or above the fetch offset.
    pub records: Vec<ConsumerRecord>,
    /// The offset to fetch next, if any whole batch was seen.
    pub next_offset: Option<i64>,
}

/// Decodes the `records` bytes of a Fetch partition.
///
/// Skips records below `fetch_offset` (the broker returns whole batches),
/// control batches, and a trailing partial batch (allowed by KIP-74).
pub fn decode_fetched(
    topic: &str,
    partition: i32,
    data: Bytes,
    fetch_offset: i64,
) -> Result<DecodedRecords> {
    let batches = FetchedBatches::parse(topic, partition, data, fetch_offset)?;
    let shared_topic: std::sync::Arc<str> = topic.into();
    let mut records = Vec::with_capacity(batches.record_count());
    for r in batches.records() {
        records.push(r?.to_consumer_record(&shared_topic, partition));
    }
    Ok(DecodedRecords {
        records,
        next_offset: batches.next_offset,
    })
}

/// The data batches of one partition's fetched bytes, each checked (length,
/// CRC-32C, record count, codec) and decompressed, their records walked in
/// place when read: no allocation per record (what a reader in the broker
/// process uses; [`decode_fetched`] builds [`ConsumerRecord`]s from it).
#[derive(Debug, Default)]
pub struct FetchedBatches {
    batches: Vec<FetchedBatch>,
    /// The offset to fetch next, if any whole batch was seen.
    pub next_offset: Option<i64>,
    /// Where the records were read from (for errors).
    source: String,
}

#[derive(Debug)]
struct FetchedBatch {
    header: BatchHeader,
    /// The records section, decompressed.
    section: Bytes,
    /// Records below this offset are skipped.
    from: i64,
}

/// One record of [`FetchedBatches`], borrowing the batch's bytes.
#[derive(Debug, Clone)]
pub struct FetchedRecord<'a> {
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether `timestamp` is the broker's log-append time.
    pub log_append_time: bool,
    /// Leader epoch of the leader that appended it.
    pub leader_epoch: i32,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: Option<&'a [u8]>,
    /// Record headers as stored.
    pub headers: weir_storage::record::RawHeaders<'a>,
    section: &'a Bytes,
}

impl FetchedRecord<'_> {
    /// A field of the record as shared bytes (no copy).
    pub fn bytes(&self, field: Option<&[u8]>) -> Option<Bytes> {
        field.map(|f| self.section.slice_ref(f))
    }

    /// The record as a [`ConsumerRecord`] of `topic`/`partition`.
    pub fn to_consumer_record(
        &self,
        topic: &std::sync::Arc<str>,
        partition: i32,
    ) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.clone(),
            partition,
            offset: self.offset,
            timestamp: self.timestamp,
            log_append_time: self.log_append_time,
            leader_epoch: self.leader_epoch,
            key: self.bytes(self.key),
            value: self.bytes(self.value),
            headers: self.owned_headers(),
        }
    }

    /// The record's headers, owned (values shared, not copied).
    pub fn owned_headers(&self) -> Vec<Header> {
        self.headers
            .iter()
            .map(|(k, v)| Header {
                key: String::from_utf8_lossy(k).into_owned(),
                value: self.bytes(v),
            })
            .collect()
    }
}

impl FetchedBatches {
    /// Checks and decompresses the batches of `data`, fetched from
    /// `topic`/`partition` at `fetch_offset`. Skips control batches and a
    /// trailing partial batch (allowed by KIP-74).
    pub fn parse(topic: &str, partition: i32, mut data: Bytes, fetch_offset: i64) -> Result<Self> {
        let mut out = FetchedBatches {
            source: format!("{topic}-{partition}"),
            ..Default::default()
        };
        while data.len() >= 12 {
            let base_offset = i64::from_be_bytes(data[0..8].try_into().unwrap_or_default());
            let len = i32::from_be_bytes(data[8..12].try_into().unwrap_or_default());
            if len < 0 {
                return Err(Error::protocol(
                    format!("decoding {topic}-{partition} at offset {base_offset}"),
                    format!("negative batch length {len}"),
                ));
            }
            let total = 12 + len as usize;
            if data.len() < total {
                break; // partial trailing batch
            }
            let batch = data.split_to(total);
            let header = match BatchHeader::parse(&batch) {
                Ok(h) => h,
                Err(weir_storage::BatchError::UnsupportedMagic(magic)) => {
                    // A v0/v1 message set: its offset is its last message's.
                    tracing::warn!(topic, partition, magic, "skipping legacy message set");
                    let next = base_offset.saturating_add(1);
                    out.next_offset = Some(out.next_offset.unwrap_or(fetch_offset).max(next));
                    continue;
                }
                Err(e) => {
                    return Err(Error::protocol(
                        format!("decoding {topic}-{partition} at offset {base_offset}"),
                        e,
                    ))
                }
            };
            let last_delta = header.last_offset_delta;
            // Fix (found by fuzzing the client's response decoding): a broker's
            // baseOffset near i64::MAX overflowed here.
            let Some(next) = base_offset
                .checked_add(i64::from(last_delta))
                .and_then(|last| last.checked_add(1))
                .filter(|_| last_delta >= 0)
            else {
                return Err(Error::protocol(
                    format!("decoding {topic}-{partition} at offset {base_offset}"),
                    format!("batch offsets overflow (lastOffsetDelta {last_delta})"),
                ));
            };
            let last_offset = next - 1;
            out.next_offset = Some(out.next_offset.unwrap_or(fetch_offset).max(next));
            if header.is_control() || last_offset < fetch_offset {
                continue;
            }
            let decode_error = |e: weir_storage::BatchError| {
                Error::protocol(
                    format!("decoding {topic}-{partition} batch at {base_offset}"),
                    e,
                )
            };
            // The checksum, the record count and the codec are checked as
            // the log checks them; every record's framing as it is walked.
            let header = weir_storage::validate_batch(&batch, usize::MAX, CountRule::Stored)
                .map_err(decode_error)?;
            let section =
                records_bytes(&batch, &header, DECOMPRESSED_LIMIT).map_err(decode_error)?;
            out.batches.push(FetchedBatch {
                header,
                section,
                from: fetch_offset,
            });
        }
        Ok(out)
    }

    /// Whether no data batch was read.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The records the batches declare (an upper bound of what
    /// [`Self::records`] yields).
    pub fn record_count(&self) -> usize {
        self.batches
            .iter()
            .map(|b| b.header.record_count.max(0) as usize)
            .sum()
    }

    /// The data records at or above the fetch offset, in order; a record
    /// whose framing is broken is an error, and ends its batch's walk.
    pub fn records(&self) -> impl Iterator<Item = Result<FetchedRecord<'_>>> + '_ {
        self.batches.iter().flat_map(move |b| {
            let h = &b.header;
            let base_offset = h.base_offset;
            RecordWalk::new(&b.section, h.record_count).filter_map(move |r| {
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        return Some(Err(Error::protocol(
                            format!("decoding {} batch at {base_offset}", self.source),
                            e,
                        )))
                    }
                };
                // A hostile offset delta (past the batch's last) must not overflow.
                let offset = base_offset.saturating_add(i64::from(r.offset_delta));
                if offset < b.from {
                    return None;
                }
                Some(Ok(FetchedRecord {
                    offset,
                    // Under LogAppendTime every record of the batch carries
                    // the broker's append time, which maxTimestamp holds.
                    timestamp: if h.log_append_time() {
                        h.max_timestamp
                    } else {
                        h.base_timestamp.wrapping_add(r.timestamp_delta)
                    },
                    log_append_time: h.log_append_time(),
                    leader_epoch: h.partition_leader_epoch,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    section: &b.section,
                }))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> PendingRecord {
        PendingRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: vec![Header::new("h", format!("{i}"))],
            timestamp: 1_700_000_000_000 + i as i64,
        }
    }

    /// Sets the base offset of an encoded batch as the broker would.
    fn with_base_offset(batch: &Bytes, base: i64) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    /// Found by fuzzing: a baseOffset near i64::MAX made the decoder overflow
    /// (a panic in debug builds); a hostile broker now gets a protocol error.
    #[test]
    fn offsets_that_overflow_are_an_error_not_a_panic() {
        let batch =
            encode_batch(&[rec(0), rec(1)], ProducerStamp::NONE, Compression::None).unwrap();
        let hostile = with_base_offset(&batch, i64::MAX - 1);
        assert!(decode_fetched("t", 0, hostile, 0).is_err());
        let fine = with_base_offset(&batch, 10);
        assert_eq!(
            decode_fetched("t", 0, fine, 0).unwrap().next_offset,
            Some(12)
        );
    }

    /// Under LogAppendTime every record carries the broker's append time
    /// (the batch's maxTimestamp), as Kafka's consumer reports it, not the
    /// time its producer gave it.
    #[test]
    fn log_append_time_records_carry_the_append_time() {
        let batch =
            encode_batch(&[rec(0), rec(1)], ProducerStamp::NONE, Compression::None).unwrap();
        let appended_at: i64 = 1_800_000_000_000;
        let mut b = BytesMut::from(&batch[..]);
        let attributes = i16::from_be_bytes([b[21], b[22]]) | 0x8;
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[35..43].copy_from_slice(&appended_at.to_be_bytes());
        weir_storage::seal_batch(&mut b);
        let got = decode_fetched("t", 0, b.freeze(), 0).unwrap().records;
        assert_eq!(got.len(), 2);
        for r in &got {
            assert_eq!((r.timestamp, r.log_append_time), (appended_at, true));
        }
        let created = decode_fetched("t", 0, batch, 0).unwrap().records;
        assert_eq!(created[1].timestamp, 1_700_000_000_001);
        assert!(!created[1].log_append_time);
    }

    /// Kafka lets a record repeat a header key; every header reaches the
    /// consumer, in order, whatever the codec.
    #[test]
    fn repeated_header_keys_all_reach_the_consumer() {
        let headers = vec![
            Header::new("trace", "a"),
            Header::new("trace", "b"),
            Header {
                key: "empty".into(),
                value: None,
            },
        ];
        for c in [Compression::None, Compression::Zstd] {
            let r = PendingRecord {
                headers: headers.clone(),
                ..rec(0)
            };
            let batch = encode_batch(&[r], ProducerStamp::NONE, c).unwrap();
            let got = decode_fetched("t", 0, batch, 0).unwrap().records;
            assert_eq!(got[0].headers, headers, "{c}");
        }
    }

    /// Found by review: a record's offset delta is not bounded by its
    /// batch's, so near i64::MAX it overflowed (a panic in debug builds).
    #[test]
    fn a_hostile_offset_delta_does_not_overflow() {
        // One record: attributes, timestamp delta 0, offset delta i32::MAX,
        // no key, value "v", no headers.
        let mut body = vec![0u8, 0];
        let mut n = (u64::from(i32::MAX.unsigned_abs())) << 1;
        while n >= 0x80 {
            body.push((n as u8) | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        body.extend_from_slice(&[1, 2, b'v', 0]);
        let mut b = vec![0u8; 61];
        b[0..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        b[16] = 2;
        b[57..61].copy_from_slice(&1i32.to_be_bytes());
        b.push((body.len() as u8) << 1);
        b.extend_from_slice(&body);
        weir_storage::seal_batch(&mut b);
        let got = decode_fetched("t", 0, Bytes::from(b), 0).unwrap().records;
        assert_eq!(got[0].offset, i64::MAX);
    }

    /// A record whose bytes were damaged in flight fails its batch's
    /// checksum: an error, never a record.
    #[test]
    fn a_damaged_batch_is_an_error() {
        let batch =
            encode_batch(&[rec(0), rec(1)], ProducerStamp::NONE, Compression::None).unwrap();
        let mut b = BytesMut::from(&batch[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(decode_fetched("t", 0, b.freeze(), 0).is_err());
    }

    /// A batch whose sequence restarts at 0 is the batch encoded from 0,
    /// byte for byte (its CRC included), whatever the codec.
    #[test]
    fn a_restamped_batch_is_the_batch_encoded_with_that_sequence() {
        for c in [Compression::None, Compression::Lz4] {
            let stamp = |base_sequence| ProducerStamp {
                producer_id: 7,
                producer_epoch: 1,
                base_sequence,
            };
            let records: Vec<_> = (0..5).map(rec).collect();
            let at_40 = encode_batch(&records, stamp(40), c).unwrap();
            let at_0 = encode_batch(&records, stamp(0), c).unwrap();
            assert_ne!(at_40, at_0);
            assert_eq!(restamp(&at_40, 0).unwrap(), at_0, "{c}");
        }
        assert!(restamp(&Bytes::from_static(b"short"), 0).is_err());
    }

    #[test]
    fn encodes_one_batch_per_call_for_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for stamp in [
                ProducerStamp::NONE,
                ProducerStamp {
                    producer_id: 7,
                    producer_epoch: 1,
                    base_sequence: 40,
                },
            ] {
                let records: Vec<_> = (0..10).map(rec).collect();
                let bytes = encode_batch(&records, stamp, c).unwrap();
                let infos = kafka_protocol::records::RecordBatchDecoder::decode_batch_info(
                    &mut bytes.clone(),
                )
                .unwrap();
                assert_eq!(infos.len(), 1, "{c} split the batch");
                assert_eq!(infos[0].record_count, 10);
                assert_eq!(infos[0].base_sequence, stamp.base_sequence);
                assert_eq!(infos[0].producer_id, stamp.producer_id);
                let decoded = decode_fetched("t", 0, with_base_offset(&bytes, 100), 0).unwrap();
                assert_eq!(decoded.records.len(), 10);
                assert_eq!(decoded.records[3].offset, 103);
                assert_eq!(decoded.records[3].value.as_deref(), Some(&b"value-3"[..]));
                assert_eq!(decoded.records[3].headers, vec![Header::new("h", "3")]);
                assert_eq!(decoded.next_offset, Some(110));
            }
        }
    }

    #[test]
    fn skips_records_below_fetch_offset_and_partial_tail() {
        let records: Vec<_> = (0..5).map(rec).collect();
        let b1 = with_base_offset(
            &encode_batch(&records, ProducerStamp::NONE, Compression::None).unwrap(),
            0,
        );
        let b2 = with_base_offset(
            &encode_batch(&records, ProducerStamp::NONE, Compression::Lz4).unwrap(),
            5,
        );
        let mut data = BytesMut::new();
        data.extend_from_slice(&b1);
        data.extend_from_slice(&b2);
        data.extend_from_slice(&b2[..20]); // partial third batch
        let decoded = decode_fetched("t", 2, data.freeze(), 3).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(decoded.next_offset, Some(10));
        assert!(decoded.records.iter().all(|r| r.partition == 2));
    }

    #[test]
    fn skips_control_batches_but_advances() {
        let records: Vec<_> = (0..2).map(rec).collect();
        let mut b = BytesMut::from(
            &encode_batch(&records, ProducerStamp::NONE, Compression::None).unwrap()[..],
        );
        b[22] |= 1 << 5; // attributes byte 2: CRC no longer valid, but control batches are never decoded
        let decoded = decode_fetched("t", 0, b.freeze(), 0).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, Some(2));
    }

    #[test]
    fn compression_parses() {
        assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
        assert!("brotli".parse::<Compression>().is_err());
    }
}
