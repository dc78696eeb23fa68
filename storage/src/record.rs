//! Records inside a v2 batch: varint framing, decompression, and building batches.
//!
//! The log never re-encodes what a producer sent; this module is for the paths that
//! must look inside a batch (exact timestamp lookup, compaction) and for tests.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

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

fn malformed(what: &str) -> BatchError {
    BatchError::MalformedRecords(what.to_string())
}

fn read_uvarint(buf: &mut Bytes) -> Result<u64, BatchError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(malformed("varint runs past the end"));
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

fn read_varlong(buf: &mut Bytes) -> Result<i64, BatchError> {
    let n = read_uvarint(buf)?;
    Ok((n >> 1) as i64 ^ -((n & 1) as i64))
}

fn read_varint(buf: &mut Bytes) -> Result<i32, BatchError> {
    i32::try_from(read_varlong(buf)?).map_err(|_| malformed("varint out of i32 range"))
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

fn read_nullable(buf: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    let len = read_varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(malformed("field runs past the record"));
    }
    Ok(Some(buf.split_to(len)))
}

/// Returns the uncompressed records section of `batch` (the whole batch bytes).
pub fn records_section(batch: &Bytes, header: &BatchHeader) -> Result<Bytes, BatchError> {
    let mut body = batch.slice(HEADER_LEN..header.size());
    let take = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let out = match header.codec() {
        0 => Ok(body),
        1 => Gzip::decompress(&mut body, take),
        2 => Snappy::decompress(&mut body, take),
        3 => Lz4::decompress(&mut body, take),
        4 => Zstd::decompress(&mut body, take),
        c => return Err(BatchError::UnknownCodec(c)),
    };
    out.map_err(|e| BatchError::MalformedRecords(format!("decompression failed: {e}")))
}

/// Decodes every record of a batch, decompressing it if needed.
pub fn decode_records(batch: &Bytes) -> Result<Vec<RecordView>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let mut section = records_section(batch, &header)?;
    let mut out = Vec::with_capacity(header.record_count.max(0) as usize);
    for _ in 0..header.record_count {
        let start = section.clone();
        let len = read_varint(&mut section)?;
        let prefix = start.len() - section.len();
        if len < 0 || section.remaining() < len as usize {
            return Err(malformed("record length runs past the batch"));
        }
        let raw = start.slice(..prefix + len as usize);
        let mut body = section.split_to(len as usize);
        let _attributes = body.try_get_i8().map_err(|_| malformed("empty record"))?;
        let ts_delta = read_varlong(&mut body)?;
        let offset_delta = read_varint(&mut body)?;
        let key = read_nullable(&mut body)?;
        let value = read_nullable(&mut body)?;
        let timestamp = if header.log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(ts_delta)
        };
        out.push(RecordView {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp,
            key,
            value,
            raw,
        });
    }
    Ok(out)
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
        put_varlong(&mut rec, ts - base_ts);
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
        let recs = decode_records(&Bytes::from(b)).unwrap();
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
            let recs = decode_records(&Bytes::from(batch.clone())).unwrap();
            let kept = vec![recs[0].raw.clone(), recs[2].raw.clone()];
            let rebuilt = rebuild_batch(&batch, &kept).unwrap();
            let h = validate(&rebuilt, usize::MAX, CountRule::Stored).unwrap();
            assert_eq!(
                (h.record_count, h.last_offset_delta, h.codec()),
                (2, 2, codec)
            );
            let again = decode_records(&Bytes::from(rebuilt)).unwrap();
            assert_eq!(
                again.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![0, 2]
            );
        }
    }
}
