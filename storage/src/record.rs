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

/// Least a batch's records section may decompress to, whatever the
/// topic's `max.message.bytes`: that setting bounds a batch as it is sent and
/// stored (compressed), as in Kafka, so a small compressed batch of highly
/// compressible records is accepted (found from outside: a 1.5 MB zstd
/// value of zeros, a few KB on the wire, was refused). The bound stops
/// decompression bombs, and keeps stored batches readable if
/// `max.message.bytes` is lowered later.
pub const DECOMPRESS_FLOOR: usize = 64 << 20;

/// The most one batch's records may decompress to, on append and when read
/// back, in a log whose `max.message.bytes` is `max_message_bytes`.
pub fn decompress_limit(max_message_bytes: u64) -> usize {
    usize::try_from(max_message_bytes)
        .unwrap_or(usize::MAX)
        .max(DECOMPRESS_FLOOR)
}

/// A cursor over a byte slice that reads Kafka's varint-framed fields.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
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

    #[inline(always)]
    fn varlong(&mut self) -> Result<i64, &'static str> {
        let n = self.uvarint()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<i32, &'static str> {
        i32::try_from(self.varlong()?).map_err(|_| "varint out of i32 range")
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.pos).ok_or("record ends early")?;
        self.pos += 1;
        Ok(b)
    }

    /// A length-prefixed field: `None` for length -1, an error below that.
    #[inline(always)]
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
    /// Record headers, in the order stored (keys may repeat).
    pub headers: RawHeaders<'a>,
    /// Byte range of the whole record (length prefix included) in the section.
    pub span: std::ops::Range<usize>,
}

/// The headers of one record as stored, already checked by [`RecordWalk`]:
/// read on demand, so a record without headers costs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeaders<'a> {
    /// The header fields after the count.
    buf: &'a [u8],
    count: i32,
}

impl<'a> RawHeaders<'a> {
    /// How many headers the record has.
    pub fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(0)
    }

    /// Whether the record has no headers.
    pub fn is_empty(&self) -> bool {
        self.count <= 0
    }

    /// Each header's key and value (`None`: a null value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let mut c = Cursor {
            buf: self.buf,
            pos: 0,
        };
        // The walk checked every field, so the reads below cannot fail; if
        // one did, the iteration would end there.
        (0..self.count).map_while(move |_| {
            let key = c.nullable("").ok()??;
            let value = c.nullable("").ok()?;
            Some((key, value))
        })
    }
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
            let header_count = body.varint()?;
            if header_count < 0 {
                return Err("negative header count");
            }
            let headers_start = body.pos;
            for _ in 0..header_count {
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
                headers: RawHeaders {
                    buf: &self.buf[headers_start..body_end],
                    count: header_count,
                },
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

/// The uncompressed records section of `batch` as shared bytes: a slice of
/// `batch` when it is uncompressed, else decompressed within `limit` bytes,
/// so the records' keys and values can be sliced out of it without copies.
pub fn records_bytes(
    batch: &Bytes,
    header: &BatchHeader,
    limit: usize,
) -> Result<Bytes, BatchError> {
    Ok(match records_section(batch, header, limit)? {
        std::borrow::Cow::Borrowed(_) => batch.slice(HEADER_LEN..header.size()),
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    })
}

/// Decodes every record of a batch, decompressing it (within `limit` bytes) if
/// needed. Fails on the first malformed record.
pub fn decode_records(batch: &Bytes, limit: usize) -> Result<Vec<RecordView>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let section = records_bytes(batch, &header, limit)?;
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
#[inline]
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
    let mut b = crate::BatchBuilder::new(-1, -1, -1, 0);
    for (key, value, ts) in records {
        b.push(*ts, key.as_deref(), value.as_deref(), std::iter::empty());
    }
    b.finish(0).expect("an uncompressed batch needs no codec")
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

    /// Headers come back in order, repeated keys and null values included.
    #[test]
    fn the_walk_reads_every_header_in_order() {
        let mut body = Vec::new();
        // attributes, timestamp delta, offset delta, key, value, 3 headers
        body.push(0u8);
        put_varlong(&mut body, 0);
        put_varlong(&mut body, 0);
        put_varlong(&mut body, -1);
        put_varlong(&mut body, 1);
        body.push(b'v');
        put_varlong(&mut body, 3);
        for (k, v) in [
            (&b"h"[..], Some(&b"1"[..])),
            (b"h", Some(b"2")),
            (b"n", None),
        ] {
            put_varlong(&mut body, k.len() as i64);
            body.extend_from_slice(k);
            match v {
                Some(v) => {
                    put_varlong(&mut body, v.len() as i64);
                    body.extend_from_slice(v);
                }
                None => put_varlong(&mut body, -1),
            }
        }
        let mut section = Vec::new();
        put_varlong(&mut section, body.len() as i64);
        section.extend_from_slice(&body);
        let r = RecordWalk::new(&section, 1).next().unwrap().unwrap();
        assert_eq!(r.headers.len(), 3);
        let got: Vec<_> = r.headers.iter().collect();
        assert_eq!(
            got,
            vec![
                (&b"h"[..], Some(&b"1"[..])),
                (&b"h"[..], Some(&b"2"[..])),
                (&b"n"[..], None)
            ]
        );
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
