//! Encoding records into one RecordBatch v2, as a producer sends it.
//!
//! Each record is written straight into the batch bytes as it is pushed
//! (varint framing, headers in order, repeated keys kept), so a batch costs
//! one buffer and no per-record structures; the header and the CRC are
//! filled in by [`BatchBuilder::finish`].

use crate::batch::{self, HEADER_LEN};
use crate::error::BatchError;
use crate::record::put_varlong;

/// Builds one RecordBatch v2: base offset 0 (the log assigns offsets), no
/// leader epoch yet, the producer fields it was created with.
#[derive(Debug)]
pub struct BatchBuilder {
    /// The header's room, then the records (uncompressed).
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// The widths of the last record written in place: its length's
    /// varint and its value length's (see [`BatchBuilder::push_with`]).
    widths: (usize, usize),
}

/// Where a batch stood before a record was pushed (see
/// [`BatchBuilder::rollback`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchMark {
    len: usize,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

/// Bytes a zigzag varint of `v` takes.
fn varlong_len(v: i64) -> usize {
    let n = ((v << 1) ^ (v >> 63)) as u64;
    // 1 + one byte per 7 bits above the first 7.
    1 + (63 - (n | 1).leading_zeros() as usize) / 7
}

/// Bytes a length-prefixed nullable field takes.
fn field_len(f: Option<&[u8]>) -> usize {
    match f {
        Some(b) => varlong_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

/// Up to five varlongs written into a stack buffer (each takes at most ten
/// bytes).
struct Varints {
    buf: [u8; 50],
    len: usize,
}

impl Default for Varints {
    fn default() -> Self {
        Varints {
            buf: [0; 50],
            len: 0,
        }
    }
}

impl Varints {
    /// Appends `v` as a zigzag varlong.
    #[inline]
    fn put(&mut self, v: i64) {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        while n >= 0x80 && self.len < self.buf.len() {
            self.buf[self.len] = (n as u8) | 0x80;
            self.len += 1;
            n >>= 7;
        }
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = n as u8;
            self.len += 1;
        }
    }

    /// Appends one byte.
    #[inline]
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// What was written.
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writes `v` as a zigzag varlong into the `width` bytes at `at`, made as
/// wide as it needs (the bytes after them moved); its width.
#[inline]
fn set_varlong(buf: &mut Vec<u8>, at: usize, width: usize, v: i64) -> usize {
    // The usual widths, one and two bytes, written directly.
    let z = ((v << 1) ^ (v >> 63)) as u64;
    match (width, z) {
        (1, 0..=0x7f) => {
            buf[at] = z as u8;
            return 1;
        }
        (2, 0x80..=0x3fff) => {
            buf[at] = (z as u8) | 0x80;
            buf[at + 1] = (z >> 7) as u8;
            return 2;
        }
        _ => {}
    }
    let mut n = Varints::default();
    n.put(v);
    let bytes = n.bytes();
    if bytes.len() == width {
        for (slot, b) in buf[at..at + width].iter_mut().zip(bytes) {
            *slot = *b;
        }
    } else {
        buf.splice(at..at + width, bytes.iter().copied());
    }
    bytes.len()
}

/// Appends a record's start: `head` (its length, or room for it), then its
/// attributes, timestamp and offset deltas and key length, written on the
/// stack and copied at once, and its key.
#[inline]
fn put_head(
    out: &mut Vec<u8>,
    mut head: Varints,
    delta: i64,
    offset_delta: i64,
    key: Option<&[u8]>,
) {
    head.byte(0); // attributes
    head.put(delta);
    head.put(offset_delta);
    head.put(key.map_or(-1, |k| k.len() as i64));
    out.extend_from_slice(head.bytes());
    if let Some(k) = key {
        out.extend_from_slice(k);
    }
}

/// Appends a record's headers, their count first.
#[inline]
fn put_headers<'h>(
    out: &mut Vec<u8>,
    headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
) {
    put_varlong(out, headers.clone().count() as i64);
    for (k, v) in headers {
        put_field(out, Some(k));
        put_field(out, v);
    }
}

/// Appends a length-prefixed nullable field (`-1` for null).
#[inline]
fn put_field(out: &mut Vec<u8>, f: Option<&[u8]>) {
    match f {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

impl BatchBuilder {
    /// An empty batch of a producer (`-1`s when it has no id), with room
    /// for about `capacity` bytes of records.
    pub fn new(producer_id: i64, producer_epoch: i16, base_sequence: i32, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            producer_id,
            producer_epoch,
            base_sequence,
            widths: (1, 1),
        }
    }

    /// Where the batch stands now, to go back to with [`Self::rollback`].
    pub fn mark(&self) -> BatchMark {
        BatchMark {
            len: self.buf.len(),
            count: self.count,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
        }
    }

    /// Takes back the records pushed since `m` was taken.
    pub fn rollback(&mut self, m: BatchMark) {
        self.buf.truncate(m.len);
        self.count = m.count;
        self.base_timestamp = m.base_timestamp;
        self.max_timestamp = m.max_timestamp;
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the records pushed so far (uncompressed).
    pub fn records_len(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    /// Stamps the batch with its producer (for a batch built before its
    /// producer numbers it: a writer of whole batches).
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    /// Appends a record: its timestamp (ms), key, value (`None`: a
    /// tombstone) and headers, in order.
    pub fn push<'h>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
    ) {
        let (delta, offset_delta) = self.deltas(timestamp);
        let header_count = headers.clone().count();
        let body = 1
            + varlong_len(delta)
            + varlong_len(offset_delta)
            + field_len(key)
            + field_len(value)
            + varlong_len(header_count as i64)
            + headers
                .clone()
                .map(|(k, v)| field_len(Some(k)) + field_len(v))
                .sum::<usize>();
        let out = &mut self.buf;
        out.reserve(body + 5);
        let mut head = Varints::default();
        head.put(body as i64);
        put_head(out, head, delta, offset_delta, key);
        put_field(out, value);
        put_headers(out, headers);
        self.count += 1;
    }

    /// Takes a record at `timestamp` into the batch's timestamps; its
    /// timestamp and offset deltas.
    fn deltas(&mut self, timestamp: i64) -> (i64, i64) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        (
            timestamp.wrapping_sub(self.base_timestamp),
            i64::from(self.count),
        )
    }

    /// Appends a record whose value `write` appends to the buffer it is
    /// handed, in place (a value built for this record is not copied in):
    /// its timestamp (ms), key, value and headers, in order.
    pub fn push_with<'h>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let (delta, offset_delta) = self.deltas(timestamp);
        // The two lengths before the value are not known until it is
        // written: room is left for them as wide as the last record's, and
        // made wider or narrower after (rarely: records of a batch are
        // mostly alike).
        let (body_width, value_width) = self.widths;
        let start = self.buf.len();
        let mut head = Varints::default();
        for _ in 0..body_width {
            head.byte(0);
        }
        put_head(&mut self.buf, head, delta, offset_delta, key);
        let value_at = self.buf.len();
        self.buf.resize(value_at + value_width, 0);
        write(&mut self.buf);
        let value_len = self.buf.len() - value_at - value_width;
        put_headers(&mut self.buf, headers);
        let value_width = set_varlong(&mut self.buf, value_at, value_width, value_len as i64);
        let body_len = self.buf.len() - start - body_width;
        let body_width = set_varlong(&mut self.buf, start, body_width, body_len as i64);
        self.widths = (body_width, value_width);
        self.count += 1;
    }

    /// The batch, its records compressed with `codec` (Kafka codec id, 0 =
    /// none), its header and CRC filled in.
    pub fn finish(self, codec: i16) -> Result<Vec<u8>, BatchError> {
        let mut out = if codec == 0 {
            self.buf
        } else {
            let body = crate::record::compress(codec, &self.buf[HEADER_LEN..])?;
            let mut out = Vec::with_capacity(HEADER_LEN + body.len());
            out.extend_from_slice(&self.buf[..HEADER_LEN]);
            out.extend_from_slice(&body);
            out
        };
        let max_timestamp = if self.count == 0 {
            -1
        } else {
            self.max_timestamp
        };
        let h = &mut out[..HEADER_LEN];
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // no leader epoch yet
        h[16] = 2; // magic
        h[21..23].copy_from_slice(&codec.to_be_bytes());
        h[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        h[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
        h[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
        h[51..53].copy_from_slice(&self.producer_epoch.to_be_bytes());
        h[53..57].copy_from_slice(&self.base_sequence.to_be_bytes());
        batch::set_record_count(&mut out, self.count);
        batch::seal(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate, CountRule};
    use crate::record::{decode_records, RecordWalk};
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i64::MAX,
            i64::MIN,
            1 << 40,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(varlong_len(v), out.len(), "{v}");
        }
    }

    proptest! {
        /// Whatever is pushed reads back the same, through the log's own
        /// validation and record walk, for every codec.
        #[test]
        fn pushed_records_read_back(
            records in proptest::collection::vec(
                (
                    -5_000i64..5_000,
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                    proptest::collection::vec(
                        (proptest::collection::vec(any::<u8>(), 0..8),
                         proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))),
                        0..4,
                    ),
                ),
                1..30,
            ),
            codec in 0i16..=4,
        ) {
            let base = 1_700_000_000_000i64;
            let mut b = BatchBuilder::new(7, 2, 40, 0);
            for (ts, key, value, headers) in &records {
                b.push(
                    base + ts,
                    key.as_deref(),
                    value.as_deref(),
                    headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                );
            }
            let batch = b.finish(codec).unwrap();
            let h = validate(&batch, usize::MAX, CountRule::Produced).unwrap();
            prop_assert_eq!(h.record_count as usize, records.len());
            prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.codec()), (7, 2, 40, codec));
            prop_assert_eq!(h.max_timestamp, base + records.iter().map(|r| r.0).max().unwrap());
            let batch = Bytes::from(batch);
            let views = decode_records(&batch, 1 << 24).unwrap();
            let section = crate::record::records_bytes(&batch, &h, 1 << 24).unwrap();
            let walked: Vec<_> = RecordWalk::new(&section, h.record_count).map(|r| r.unwrap()).collect();
            for (i, ((ts, key, value, headers), v)) in records.iter().zip(&views).enumerate() {
                prop_assert_eq!(v.offset, i as i64);
                prop_assert_eq!(v.timestamp, base + ts);
                prop_assert_eq!(v.key.as_deref(), key.as_deref());
                prop_assert_eq!(v.value.as_deref(), value.as_deref());
                let got: Vec<_> = walked[i].headers.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
                prop_assert_eq!(&got, headers);
            }
        }
    }

    proptest! {
        /// Records whose values are written in place read back as pushed
        /// ones do, whatever their values' lengths (across the one-, two-
        /// and three-byte widths of the lengths before them, in any order),
        /// and records taken back leave no trace.
        #[test]
        fn records_written_in_place_read_back(
            records in proptest::collection::vec(
                (
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
                    prop_oneof![0usize..70, 8_180usize..8_200, 0usize..20_000],
                    any::<bool>(),
                    proptest::option::of(0u8..3),
                    any::<bool>(),
                ),
                1..20,
            ),
        ) {
            let base = 1_700_000_000_000i64;
            let mut b = BatchBuilder::new(-1, -1, -1, 0);
            let mut kept = Vec::new();
            for (i, (key, len, in_place, header, taken_back)) in records.iter().enumerate() {
                let value: Vec<u8> = (0..*len).map(|j| (i * 7 + j) as u8).collect();
                let header = header.map(|h| vec![h; usize::from(h)]);
                let headers = header.iter().map(|h| (&b"h"[..], Some(h.as_slice())));
                let ts = base + (i as i64 % 5) * 1_000 - 2_000;
                let mark = b.mark();
                if *in_place {
                    b.push_with(ts, key.as_deref(), headers, |out| out.extend_from_slice(&value));
                } else {
                    b.push(ts, key.as_deref(), Some(&value), headers);
                }
                if *taken_back {
                    b.rollback(mark);
                } else {
                    kept.push((ts, key.clone(), value, header));
                }
            }
            prop_assume!(!kept.is_empty());
            let batch = Bytes::from(b.finish(0).unwrap());
            let h = validate(&batch, usize::MAX, CountRule::Produced).unwrap();
            prop_assert_eq!(h.record_count as usize, kept.len());
            prop_assert_eq!(h.base_timestamp, kept[0].0);
            prop_assert_eq!(h.max_timestamp, kept.iter().map(|r| r.0).max().unwrap());
            let section = crate::record::records_bytes(&batch, &h, 1 << 24).unwrap();
            let walked: Vec<_> = RecordWalk::new(&section, h.record_count).map(|r| r.unwrap()).collect();
            for (i, ((ts, key, value, header), r)) in kept.iter().zip(&walked).enumerate() {
                prop_assert_eq!(r.offset_delta, i as i32);
                prop_assert_eq!(h.base_timestamp + r.timestamp_delta, *ts);
                prop_assert_eq!(r.key, key.as_deref());
                prop_assert_eq!(r.value, Some(value.as_slice()));
                let got: Vec<_> = r.headers.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
                let want: Vec<_> = header.iter().map(|h| (b"h".to_vec(), Some(h.clone()))).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
