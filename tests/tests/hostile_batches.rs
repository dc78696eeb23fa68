//! Record batches crafted by a hostile client: every one is refused with a
//! precise error code, nothing of it is written, and the node keeps serving.
//! (Issue 6: a 61-byte batch claiming 2^31-1 records used to be stored and then
//! abort the node on the next time lookup.)

use anyhow::{ensure, Result};
use bytes::Bytes;
use kafka_protocol::records::Compression;
use weir_storage::record::build_batch;
use weir_storage::seal_batch;
use weir_tests::raw::{self, batch, create_topic, list_offset, now_ms, produce_partition, RawConn};
use weir_tests::WeirNode;

const CORRUPT_MESSAGE: i16 = 2;
const INVALID_TIMESTAMP: i16 = 32;
const INVALID_RECORD: i16 = 87;

/// Rewrites recordCount and lastOffsetDelta of a batch and fixes its CRC, so the
/// lie survives every framing check.
fn claim(b: &[u8], count: i32, last_offset_delta: i32) -> Bytes {
    let mut b = b.to_vec();
    b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    seal_batch(&mut b);
    Bytes::from(b)
}

/// A batch of `values` compressed with `compression`, keyed `k<i>`.
fn compressed(values: &[Vec<u8>], compression: Compression) -> Result<Vec<u8>> {
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    Ok(raw::encode_batch(&values, Some("k"), None, compression)?.to_vec())
}

struct Target {
    node: WeirNode,
    conn: RawConn,
}

impl Target {
    fn start() -> Result<Self> {
        let node = WeirNode::start_default()?;
        let mut conn = RawConn::connect(node.bootstrap())?;
        ensure!(create_topic(&mut conn, "h", 1, &[])? == 0);
        ensure!(create_topic(&mut conn, "hc", 1, &[("cleanup.policy", "compact")])? == 0);
        ensure!(create_topic(&mut conn, "hbig", 1, &[("max.message.bytes", "8388608")])? == 0);
        Ok(Self { node, conn })
    }

    /// Produces `records` (Produce v9) and checks the refusal: `code`, a message,
    /// the blamed record's index when `record` is given, and an unchanged log end.
    fn refused(
        &mut self,
        what: &str,
        topic: &str,
        records: Bytes,
        code: i16,
        record: Option<i32>,
    ) -> Result<()> {
        let end = list_offset(&mut self.conn, topic, 0, -1)?;
        let p = produce_partition(&mut self.conn, 9, topic, 0, -1, records)?;
        ensure!(
            p.error_code == code,
            "{what}: error {} (expected {code}), {:?}",
            p.error_code,
            p.error_message
        );
        ensure!(p.error_message.is_some(), "{what}: no error message");
        let blamed: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
        ensure!(
            blamed == record.into_iter().collect::<Vec<_>>(),
            "{what}: record errors {blamed:?}, expected {record:?}"
        );
        ensure!(
            list_offset(&mut self.conn, topic, 0, -1)? == end,
            "{what}: the log end moved"
        );
        // The node still serves: a good batch lands exactly at the old end, so
        // nothing of the refused request was written.
        let good = if topic == "hc" {
            keyed(1)
        } else {
            batch(&[b"good"], None)?
        };
        let p = produce_partition(&mut self.conn, 9, topic, 0, -1, good)?;
        ensure!(
            p.error_code == 0 && p.base_offset == end,
            "{what}: good produce after it got {} at {}",
            p.error_code,
            p.base_offset
        );
        // A time lookup walks the records of the batches: it must not choke.
        ensure!(list_offset(&mut self.conn, topic, 0, now_ms() - 60_000)? <= end);
        self.node.assert_alive()
    }
}

/// One uncompressed batch of `n` keyed records (`raw::batch` may split records
/// into several batches; these tests need them in one).
fn keyed(n: usize) -> Bytes {
    let now = now_ms();
    Bytes::from(build_batch(
        &(0..n)
            .map(|i| (Some(format!("k{i}").into_bytes()), Some(b"v".to_vec()), now))
            .collect::<Vec<_>>(),
    ))
}

#[test]
fn lying_record_counts_are_refused_and_nothing_is_written() -> Result<()> {
    let mut t = Target::start()?;
    let one = batch(&[b"x"], None)?;
    ensure!(one.len() < 80, "a one-record batch is {} bytes", one.len());
    t.refused(
        "2^31-1 records claimed, 1 present",
        "h",
        claim(&one, i32::MAX, i32::MAX - 1),
        CORRUPT_MESSAGE,
        None,
    )?;
    t.refused(
        "1000 records claimed, 1 present",
        "h",
        claim(&one, 1000, 999),
        CORRUPT_MESSAGE,
        None,
    )?;
    t.refused(
        "negative count",
        "h",
        claim(&one, -1, -2),
        CORRUPT_MESSAGE,
        None,
    )?;
    t.refused("zero count", "h", claim(&one, 0, -1), CORRUPT_MESSAGE, None)?;
    t.refused(
        "lastOffsetDelta past the count",
        "h",
        claim(&one, 1, 5),
        CORRUPT_MESSAGE,
        None,
    )?;
    let three = keyed(3);
    t.refused(
        "fewer claimed than present",
        "h",
        claim(&three, 2, 1),
        CORRUPT_MESSAGE,
        None,
    )?;
    // A good batch followed by a lying one in the same request: neither is written.
    let mut two = one.to_vec();
    two.extend_from_slice(&claim(&one, 1000, 999));
    t.refused(
        "good batch then a lying one",
        "h",
        Bytes::from(two),
        CORRUPT_MESSAGE,
        None,
    )?;
    Ok(())
}

#[test]
fn lying_lengths_offsets_and_fields_name_the_record() -> Result<()> {
    let mut t = Target::start()?;
    let good = keyed(2).to_vec();
    // Record 0's length varint (byte 61) claims 1000 bytes (zigzag 2000 = d0 0f).
    let mut long = good[..61].to_vec();
    long.extend_from_slice(&[0xd0, 0x0f]);
    long.extend_from_slice(&good[62..]);
    seal_batch(&mut long);
    t.refused(
        "record length past the batch",
        "h",
        Bytes::from(long),
        INVALID_RECORD,
        Some(0),
    )?;
    // Record 1's offset delta says 7: rebuild with build_batch and patch it.
    let now = now_ms();
    let mut b = build_batch(&[
        (None, Some(b"a".to_vec()), now),
        (None, Some(b"b".to_vec()), now),
    ]);
    let rec1 = 61 + 1 + usize::from(b[61] >> 1); // start of record 1 (one-byte lengths)
    ensure!(
        b[rec1 + 3] == 2,
        "record 1's offset delta byte is {}",
        b[rec1 + 3]
    );
    b[rec1 + 3] = 14; // zigzag(7)
    seal_batch(&mut b);
    t.refused(
        "offset delta out of order",
        "h",
        Bytes::from(b),
        INVALID_RECORD,
        Some(1),
    )?;
    Ok(())
}

#[test]
fn compressed_batches_are_checked_inside() -> Result<()> {
    let mut t = Target::start()?;
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let two = compressed(&[b"a".to_vec(), b"b".to_vec()], compression)?;
        t.refused(
            &format!("{compression:?}: 5 claimed, 2 inside"),
            "h",
            claim(&two, 5, 4),
            CORRUPT_MESSAGE,
            None,
        )?;
        // Past 64 MiB of zeros inside a batch far below the topic's
        // max.message.bytes (8 MiB here: snappy cannot compress 64 MiB below
        // 3 MB): too large once decompressed, so MESSAGE_TOO_LARGE, which
        // clients do not retry (found from outside: CORRUPT_MESSAGE made
        // librdkafka retry such a batch until its delivery timeout).
        let bomb = compressed(&[vec![0u8; (64 << 20) + 1]], compression)?;
        ensure!(
            bomb.len() < 8 << 20,
            "{compression:?} bomb is {} bytes",
            bomb.len()
        );
        t.refused(
            &format!("{compression:?} decompression bomb"),
            "hbig",
            Bytes::from(bomb),
            10,
            None,
        )?;
        // max.message.bytes bounds the batch as sent, as in Kafka: 3 MiB of
        // zeros in a batch under 1 MiB is stored (found from outside: the
        // Java producer's 1.5 MB zstd value was refused).
        let wide = compressed(&[vec![0u8; 3 << 20]], compression)?;
        ensure!(
            wide.len() < 1 << 20,
            "{compression:?}: {} bytes",
            wide.len()
        );
        let p = produce_partition(&mut t.conn, 9, "h", 0, -1, Bytes::from(wide))?;
        ensure!(
            p.error_code == 0,
            "{compression:?}: a small batch of 3 MiB decompressed refused with {} {:?}",
            p.error_code,
            p.error_message
        );
        // An honest compressed batch still lands.
        let p = produce_partition(&mut t.conn, 9, "h", 0, -1, Bytes::from(two))?;
        ensure!(
            p.error_code == 0,
            "{compression:?}: honest batch refused with {}",
            p.error_code
        );
    }
    Ok(())
}

#[test]
fn timestamps_and_keys_break_topic_rules() -> Result<()> {
    let mut t = Target::start()?;
    let now = now_ms();
    let future = build_batch(&[
        (None, Some(b"a".to_vec()), now),
        (None, Some(b"b".to_vec()), now + 2 * 3_600_000),
    ]);
    t.refused(
        "timestamp two hours ahead",
        "h",
        Bytes::from(future),
        INVALID_TIMESTAMP,
        Some(1),
    )?;
    let keyless = build_batch(&[
        (Some(b"k".to_vec()), Some(b"a".to_vec()), now),
        (None, Some(b"b".to_vec()), now),
    ]);
    let two_keyless = build_batch(&[
        (Some(b"k".to_vec()), Some(b"a".to_vec()), now),
        (None, Some(b"b".to_vec()), now),
        (Some(b"k".to_vec()), Some(b"c".to_vec()), now),
        (None, Some(b"d".to_vec()), now),
    ]);
    let end = list_offset(&mut t.conn, "hc", 0, -1)?;
    let p = produce_partition(&mut t.conn, 9, "hc", 0, -1, Bytes::from(two_keyless))?;
    let blamed: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    ensure!(
        p.error_code == INVALID_RECORD && blamed == vec![1, 3],
        "two keyless records: {} {blamed:?}",
        p.error_code
    );
    ensure!(list_offset(&mut t.conn, "hc", 0, -1)? == end);
    t.refused(
        "keyless record in a compacted topic",
        "hc",
        Bytes::from(keyless),
        INVALID_RECORD,
        Some(1),
    )?;
    // Old timestamps are fine by default (message.timestamp.before.max.ms unbounded).
    let old = build_batch(&[(None, Some(b"old".to_vec()), now - 3 * 365 * 86_400_000)]);
    let p = produce_partition(&mut t.conn, 9, "h", 0, -1, Bytes::from(old))?;
    ensure!(p.error_code == 0, "old timestamp refused: {}", p.error_code);
    // A topic that sets the bounds enforces them.
    ensure!(
        create_topic(
            &mut t.conn,
            "hb",
            1,
            &[("message.timestamp.before.max.ms", "60000")]
        )? == 0
    );
    let stale = build_batch(&[(None, Some(b"stale".to_vec()), now - 120_000)]);
    let p = produce_partition(&mut t.conn, 9, "hb", 0, -1, Bytes::from(stale))?;
    ensure!(
        p.error_code == INVALID_TIMESTAMP,
        "stale record got {}",
        p.error_code
    );
    let (err, _) = raw::produce(&mut t.conn, "hb", 0, -1, batch(&[b"fresh"], None)?)?;
    ensure!(err == 0, "fresh record got {err}");
    Ok(())
}

/// No client may write `__consumer_offsets`: Kafka refuses it with
/// INVALID_TOPIC_EXCEPTION, and only the group coordinator writes it.
/// Found from outside: produced records forged other groups' committed
/// offsets and members, loaded at the next start.
#[test]
fn the_offsets_topic_takes_no_produce() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    for p in 0..3 {
        let (code, _) = raw::produce(
            &mut c,
            "__consumer_offsets",
            p,
            -1,
            batch(&[b"forged"], None)?,
        )?;
        ensure!(
            code == 17,
            "produce to __consumer_offsets-{p}: error {code}"
        );
    }
    Ok(())
}
