//! Records inside a v2 batch: varint framing, decompression, and building batches.
//!
//! The log never re-encodes what a producer sent; this module is for the paths that
//! must look inside a batch (exact timestamp lookup, compaction) and for tests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::BatchError;

/// One record of a batch, its fields sliced out of the (decompressed) records bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Absolute offset of the record.
    pub offset: i64,
    /// Record timestamp (the batch's maxTimestamp under LogAppendTime).
    pub timestamp: i64,
    /// Record key, if any.
    pub key: Option<Bytes>,
    /// Record value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// The whole encoded record, length prefix included, as stored.
    pub raw: Bytes,
}

/// Largest records section decompressed when reading back a *stored* batch
/// (time lookups, compaction, group-store load). Appends bound each batch by
/// `max.message.bytes` after decompression; this floor keeps batches readable if
/// that setting is lowered later, while still bounding what a damaged or crafted
/// segment can make the node allocate.
pub const STORED_DECOMPRESS_FLOOR: usize = 64 << 20;

/// The decompression limit for reading back stored batches of a log whose
/// `max.message.bytes` is `max_message_bytes`.
pub fn stored_limit(max_message_bytes: u64) -> usize {
    usize::try_from(max_message_bytes)
        .unwrap_or(usize::MAX)
        .max(STORED_DECOMPRESS_FLOOR)
}

/// A cursor over a byte slice that reads Kafka's varint-framed fields.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn uvarint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err("varint runs past the end");
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes")
    }

    fn varlong(&mut self) -> Result<i64, &'static str> {
        let n = self.uvarint()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        i32::try_from(self.varlong()?).map_err(|_| "varint out of i32 range")
    }

    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.pos).ok_or("record ends early")?;
        self.pos += 1;
        Ok(b)
    }

    /// A length-prefixed field: `None` for length -1, an error below that.
    fn nullable(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, &'static str> {
        let len = self.varint()?;
        if len < -1 {
            return Err(what);
        }
        if len == -1 {
            return Ok(None);
        }
        let end = self.pos + len as usize;
        let field = self
            .buf
            .get(self.pos..end)
            .ok_or("field runs past the record")?;
        self.pos = end;
        Ok(Some(field))
    }
}

/// One record of a records section, its fields borrowed from the section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Record attributes (unused by the v2 format, kept as sent).
    pub attributes: u8,
    /// Timestamp minus the batch's baseTimestamp.
    pub timestamp_delta: i64,
    /// Offset minus the batch's baseOffset.
    pub offset_delta: i32,
    /// Record key, if any.
    pub key: Option<&'a [u8]>,
    /// Record value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Byte range of the whole record (length prefix included) in the section.
    pub span: std::ops::Range<usize>,
}

/// Walks the records of an (uncompressed) records section strictly, as Kafka's
/// `DefaultRecord.readFrom` does: each record's length must cover exactly its
/// fields, header keys must be present, and the section must hold exactly the
/// declared number of records. Never allocates.
#[derive(Debug)]
pub struct RecordWalk<'a> {
    buf: &'a [u8],
    pos: usize,
    index: i32,
    count: i32,
}

impl<'a> RecordWalk<'a> {
    /// Walks `section`, which the batch header says holds `count` records.
    pub fn new(section: &'a [u8], count: i32) -> Self {
        Self {
            buf: section,
            pos: 0,
            index: 0,
            count,
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> BatchError {
        BatchError::InvalidRecord {
            index: self.index,
            reason: reason.into(),
        }
    }

    fn next_record(&mut self) -> Result<RawRecord<'a>, BatchError> {
        if self.pos >= self.buf.len() {
            return Err(BatchError::RecordsPresent {
                declared: self.count,
                found: self.index,
            });
        }
        let start = self.pos;
        let mut c = Cursor {
            buf: self.buf,
            pos: self.pos,
        };
        let len = c.varint().map_err(|e| self.invalid(e))?;
        let body_start = c.pos;
        let body_end = usize::try_from(len)
            .ok()
            .and_then(|l| body_start.checked_add(l))
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                self.invalid(format!(
                    "record length {len} runs past the batch ({} bytes left)",
                    self.buf.len() - body_start
                ))
            })?;
        let mut body = Cursor {
            buf: &self.buf[..body_end],
            pos: body_start,
        };
        let record = (|| {
            let attributes = body.byte()?;
            let timestamp_delta = body.varlong()?;
            let offset_delta = body.varint()?;
            let key = body.nullable("negative key length")?;
            let value = body.nullable("negative value length")?;
            let headers = body.varint()?;
            if headers < 0 {
                return Err("negative header count");
            }
            for _ in 0..headers {
                if body.nullable("negative header key length")?.is_none() {
                    return Err("header with a null key");
                }
                body.nullable("negative header value length")?;
            }
            if body.pos != body_end {
                return Err("record length does not match its fields");
            }
            Ok(RawRecord {
                attributes,
                timestamp_delta,
                offset_delta,
                key,
                value,
                span: start..body_end,
            })
        })()
        .map_err(|e| self.invalid(e))?;
        self.pos = body_end;
        self.index += 1;
        Ok(record)
    }
}

impl<'a> Iterator for RecordWalk<'a> {
    type Item = Result<RawRecord<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            if self.pos < self.buf.len() {
                // Reported once: the walk ends after this error.
                let extra = self.buf.len() - self.pos;
                self.pos = self.buf.len();
                return Some(Err(BatchError::TrailingBytes {
                    declared: self.count,
                    extra,
                }));
            }
            return None;
        }
        let r = self.next_record();
        if r.is_err() {
            self.index = self.count;
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

/// The bytes after the header of `batch` (compressed or not), as `header` sizes them.
pub(crate) fn records_body<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Result<&'a [u8], BatchError> {
    batch
        .get(HEADER_LEN..header.size())
        .ok_or(BatchError::Truncated {
            available: batch.len(),
            needed: header.size(),
        })
}

/// The uncompressed records section of `batch` (the whole batch bytes):
/// borrowed when the batch is uncompressed, else decompressed within `limit` bytes.
pub fn records_section<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, BatchError> {
    let body = records_body(batch, header)?;
    if header.codec() == 0 {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    crate::codec::decompress(header.codec(), body, limit).map(std::borrow::Cow::Owned)
}

/// Decodes every record of a batch, decompressing it (within `limit` bytes) if
/// needed. Fails on the first malformed record.
pub fn decode_records(batch: &Bytes, limit: usize) -> Result<Vec<RecordView>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let section = match records_section(batch, &header, limit)? {
        std::borrow::Cow::Borrowed(_) => batch.slice(HEADER_LEN..header.size()),
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    };
    let mut out = Vec::new();
    for r in RecordWalk::new(&section, header.record_count) {
        let r = r?;
        let field = |f: Option<&[u8]>| f.map(|f| section.slice_ref(f));
        let timestamp = if header.log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(r.timestamp_delta)
        };
        out.push(RecordView {
            offset: header.base_offset + i64::from(r.offset_delta),
            timestamp,
            key: field(r.key),
            value: field(r.value),
            raw: section.slice(r.span),
        });
    }
    Ok(out)
}

/// Appends a zigzag varint to `out`.
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Compresses a records section with the codec `codec` (1..=4).
pub(crate) fn compress(codec: i16, raw: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out = BytesMut::new();
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(raw);
        Ok(())
    };
    let res = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        c => return Err(BatchError::UnknownCodec(c)),
    };
    res.map_err(|e| BatchError::MalformedRecords(format!("compression failed: {e}")))?;
    Ok(out.to_vec())
}

/// `batch` (whole, with its `header`) with its records stored in `codec`
/// instead (Kafka codec id; 0 = uncompressed): the records are decompressed
/// within `limit` bytes and compressed again; offsets, timestamps and producer
/// fields stay; length and CRC are recomputed.
pub(crate) fn recompress(
    batch: &[u8],
    header: &BatchHeader,
    codec: i16,
    limit: usize,
) -> Result<Vec<u8>, BatchError> {
    let section = records_section(batch, header, limit)?;
    let body = if codec == 0 {
        section.into_owned()
    } else {
        compress(codec, &section)?
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&body);
    let attributes = (header.attributes & !0x7) | codec;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch::seal(&mut out);
    Ok(out)
}

/// Rebuilds `batch` keeping only the `kept` records (raw bytes, in order), with the
/// original header fields (offsets, timestamps, producer state, codec) preserved.
pub(crate) fn rebuild_batch(batch: &[u8], kept: &[Bytes]) -> Result<Vec<u8>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let mut raw = Vec::with_capacity(kept.iter().map(Bytes::len).sum());
    for r in kept {
        raw.extend_from_slice(r);
    }
    let records = if header.codec() == 0 {
        raw
    } else {
        compress(header.codec(), &raw)?
    };
    let mut out = Vec::with_capacity(HEADER_LEN + records.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&records);
    batch::set_record_count(&mut out, kept.len() as i32);
    batch::seal(&mut out);
    Ok(out)
}

/// A record to put in a batch built by [`build_batch`]: key, value (None = tombstone), timestamp.
pub type RecordSpec = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// Builds an uncompressed RecordBatch v2 (baseOffset 0, no producer id) from records.
///
/// For tests, benchmarks and tools; the broker stores client batches as they come.
pub fn build_batch(records: &[RecordSpec]) -> Vec<u8> {
    let base_ts = records.first().map_or(0, |r| r.2);
    let max_ts = records.iter().map(|r| r.2).max().unwrap_or(0);
    let mut body = Vec::new();
    for (i, (key, value, ts)) in records.iter().enumerate() {
        let mut rec = vec![0u8];
        put_varlong(&mut rec, ts.wrapping_sub(base_ts));
        put_varlong(&mut rec, i as i64);
        for field in [key, value] {
            match field {
                Some(b) => {
                    put_varlong(&mut rec, b.len() as i64);
                    rec.extend_from_slice(b);
                }
                None => put_varlong(&mut rec, -1),
            }
        }
        put_varlong(&mut rec, 0);
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut out = vec![0u8; HEADER_LEN];
    out[16] = 2;
    out[23..27].copy_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    out[27..35].copy_from_slice(&base_ts.to_be_bytes());
    out[35..43].copy_from_slice(&max_ts.to_be_bytes());
    out[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    out[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    out[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&body);
    batch::set_record_count(&mut out, records.len() as i32);
    batch::seal(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate, CountRule};

    #[test]
    fn built_batches_decode() {
        let b = build_batch(&[
            (Some(b"a".to_vec()), Some(b"1".to_vec()), 10),
            (Some(b"b".to_vec()), None, 12),
        ]);
        let recs = decode_records(&Bytes::from(b), 1 << 20).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].offset, 1);
        assert_eq!(recs[1].timestamp, 12);
        assert_eq!(recs[1].value, None);
        assert_eq!(recs[0].key.as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn rebuild_keeps_offsets_for_every_codec() {
        for codec in 0..=4i16 {
            let plain = build_batch(&[
                (Some(b"a".to_vec()), Some(b"1".to_vec()), 10),
                (Some(b"b".to_vec()), Some(b"2".to_vec()), 11),
                (Some(b"c".to_vec()), Some(b"3".to_vec()), 12),
            ]);
            let mut batch = plain.clone();
            if codec != 0 {
                let body = compress(codec, &plain[HEADER_LEN..]).unwrap();
                batch.truncate(HEADER_LEN);
                batch.extend_from_slice(&body);
                batch[21..23].copy_from_slice(&codec.to_be_bytes());
                crate::batch::seal(&mut batch);
            }
            let recs = decode_records(&Bytes::from(batch.clone()), 1 << 20).unwrap();
            let kept = vec![recs[0].raw.clone(), recs[2].raw.clone()];
            let rebuilt = rebuild_batch(&batch, &kept).unwrap();
            let h = validate(&rebuilt, usize::MAX, CountRule::Stored).unwrap();
            assert_eq!(
                (h.record_count, h.last_offset_delta, h.codec()),
                (2, 2, codec)
            );
            let again = decode_records(&Bytes::from(rebuilt), 1 << 20).unwrap();
            assert_eq!(
                again.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![0, 2]
            );
        }
    }
}
