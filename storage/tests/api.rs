//! Public API behaviour of one log: rejected appends write nothing, compressed
//! batches are stored byte for byte and searched by time, group commit resolves
//! every waiter and survives a cancelled one.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{read_all, small_cfg, split_batches};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_storage::record::{build_batch, decode_records};
use weir_storage::{
    seal_batch, BatchError, BatchHeader, Durability, Log, LogConfig, ReadBound, StorageError,
};

fn batch(n: usize, value: usize, ts: i64) -> Vec<u8> {
    build_batch(
        &(0..n)
            .map(|i| {
                (
                    Some(format!("k{i}").into_bytes()),
                    Some(vec![b'x'; value]),
                    ts + i as i64,
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// Small segments of a compacted topic, cleanable at once.
fn compacting_cfg() -> LogConfig {
    LogConfig {
        cleanup_policy: weir_storage::CleanupPolicy::Compact,
        min_compaction_lag_ms: 0,
        ..small_cfg()
    }
}

fn active_len(log: &Log) -> u64 {
    let base = log.segments().last().unwrap().base_offset;
    std::fs::metadata(common::seg_file(log.dir(), base, ".log"))
        .unwrap()
        .len()
}

/// Whether an error is the one expected.
type ErrorCheck = fn(&StorageError) -> bool;

#[test]
fn bad_batches_are_rejected_and_nothing_is_written() {
    let tmp = common::tempdir();
    let cfg = small_cfg();
    let (log, _) = Log::open(&tmp.path().join("t-0"), "t-0", cfg.clone()).unwrap();
    log.append(&batch(3, 20, 1000), 0).unwrap();
    let good = batch(3, 20, 2000);

    let mut bad_crc = good.clone();
    bad_crc[70] ^= 1;
    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    let mut bad_count = good.clone();
    bad_count[57..61].copy_from_slice(&5i32.to_be_bytes());
    seal_batch(&mut bad_count);
    let truncated = good[..good.len() - 1].to_vec();
    let oversized = batch(1, cfg.max_message_bytes as usize, 3000);
    let second_bad = [good.clone(), bad_crc.clone()].concat();
    let second_truncated = [good.clone(), truncated.clone()].concat();

    let cases: Vec<(&str, Vec<u8>, ErrorCheck)> = vec![
        ("bad CRC", bad_crc, |e| {
            matches!(
                e,
                StorageError::InvalidBatch {
                    position: 0,
                    source: BatchError::CrcMismatch { .. }
                }
            )
        }),
        ("bad magic", bad_magic, |e| {
            matches!(
                e,
                StorageError::InvalidBatch {
                    source: BatchError::UnsupportedMagic(1),
                    ..
                }
            )
        }),
        ("wrong count", bad_count, |e| {
            matches!(
                e,
                StorageError::InvalidBatch {
                    source: BatchError::RecordCount { count: 5, .. },
                    ..
                }
            )
        }),
        ("truncated", truncated, |e| {
            matches!(
                e,
                StorageError::InvalidBatch {
                    source: BatchError::Truncated { .. },
                    ..
                }
            )
        }),
        ("empty", Vec::new(), |e| {
            matches!(e, StorageError::InvalidBatch { .. })
        }),
        ("oversized", oversized, |e| {
            matches!(e, StorageError::BatchTooLarge { .. })
        }),
        ("second batch bad", second_bad, |e| {
            matches!(
                e,
                StorageError::InvalidBatch {
                    source: BatchError::CrcMismatch { .. },
                    ..
                }
            )
        }),
        ("second batch truncated", second_truncated, |e| {
            matches!(
                e,
                StorageError::InvalidBatch {
                    source: BatchError::Truncated { .. },
                    ..
                }
            )
        }),
    ];
    let before = read_all(&log);
    for (what, buf, expected) in cases {
        let (end, len) = (log.log_end_offset(), active_len(&log));
        let err = log.append(&buf, 1).unwrap_err();
        assert!(expected(&err), "{what}: {err:?}");
        if what.starts_with("second") {
            assert!(
                matches!(err, StorageError::InvalidBatch { position, .. } if position == good.len()),
                "{what}: position of the bad batch"
            );
        }
        assert_eq!(log.log_end_offset(), end, "{what}: log end moved");
        assert_eq!(active_len(&log), len, "{what}: bytes were written");
    }
    assert_eq!(
        read_all(&log)
            .iter()
            .map(|b| b.raw.clone())
            .collect::<Vec<_>>(),
        before.iter().map(|b| b.raw.clone()).collect::<Vec<_>>()
    );
    // The log still takes good appends right after.
    assert_eq!(log.append(&good, 1).unwrap().base_offset, 3);
}

fn kafka_batch(compression: Compression, ts_base: i64) -> (Vec<u8>, Vec<Record>) {
    let records: Vec<Record> = (0..10)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // offset - sequence must be constant for the encoder to make one batch
            sequence: i as i32,
            // Not monotonic: the lookup must look at every record.
            timestamp: ts_base + [0, 50, 10, 20, 90, 30, 40, 60, 80, 70][i as usize],
            key: Some(Bytes::from(format!("key-{i}"))),
            value: (i != 3).then(|| Bytes::from(vec![b'a' + i as u8; 100 + i as usize])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
    (buf.to_vec(), records)
}

#[test]
fn compressed_batches_are_stored_verbatim_and_searched_by_time() {
    let tmp = common::tempdir();
    let (log, _) = Log::open(&tmp.path().join("t-0"), "t-0", small_cfg()).unwrap();
    log.append(&batch(2, 10, 1), 0).unwrap();
    for (codec, compression) in [
        (1, Compression::Gzip),
        (2, Compression::Snappy),
        (3, Compression::Lz4),
        (4, Compression::Zstd),
    ] {
        let ts_base = 10_000 * i64::from(codec);
        let (raw, records) = kafka_batch(compression, ts_base);
        let info = log.append(&raw, 7).unwrap();
        log.set_high_watermark(log.log_end_offset()).unwrap();
        let r = log
            .read(info.base_offset + 4, 1, ReadBound::HighWatermark)
            .unwrap();
        let got = split_batches(&r.records);
        assert_eq!(got.len(), 1);
        let stored = &got[0].raw;
        let h = BatchHeader::parse(stored).unwrap();
        assert_eq!(
            (h.codec(), h.base_offset, h.partition_leader_epoch),
            (codec, info.base_offset, 7)
        );
        // Only baseOffset and partitionLeaderEpoch are rewritten.
        assert_eq!(stored.len(), raw.len());
        assert_eq!(stored[8..12], raw[8..12]);
        assert_eq!(stored[16..], raw[16..], "{compression:?} batch re-encoded");
        let decoded = decode_records(stored, 1 << 30).unwrap();
        for (d, r) in decoded.iter().zip(&records) {
            assert_eq!(d.offset, info.base_offset + r.offset);
            assert_eq!(
                (d.timestamp, &d.key, &d.value),
                (r.timestamp, &r.key, &r.value)
            );
        }
        // Time lookups look inside the compressed records.
        for (target, delta, ts) in [
            (0, 0, 0),
            (15, 1, 50),
            (45, 1, 50),
            (55, 4, 90),
            (90, 4, 90),
        ] {
            let found = log.offset_for_timestamp(ts_base + target).unwrap().unwrap();
            assert_eq!(
                (found.offset, found.timestamp),
                (info.base_offset + delta, ts_base + ts),
                "{compression:?} at {target}"
            );
        }
        assert_eq!(log.offset_for_timestamp(ts_base + 91).unwrap(), None);
    }
    log.close().unwrap();
}

fn group_cfg(max_delay: Duration) -> LogConfig {
    LogConfig {
        durability: Durability::GroupCommit {
            max_bytes: 1 << 30,
            max_delay,
        },
        ..small_cfg()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_resolves_every_waiter() {
    let tmp = common::tempdir();
    let (log, _) = Log::open(
        &tmp.path().join("t-0"),
        "t-0",
        group_cfg(Duration::from_millis(2)),
    )
    .unwrap();
    let log = Arc::new(log);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let info = log.append(&batch(2, 50, i), 0).unwrap();
            log.wait_durable(info.last_offset).await.unwrap();
            assert!(log.flushed_offset() > info.last_offset);
            info.last_offset
        }));
    }
    let all = async {
        let mut max = 0;
        for t in tasks {
            max = max.max(t.await.unwrap());
        }
        max
    };
    let max = tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("a waiter hung");
    assert_eq!(max, 127);
    assert_eq!(log.flushed_offset(), 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_waiter_does_not_block_the_next() {
    let tmp = common::tempdir();
    // The first waiter leads the flush and waits for company (up to 100 ms) ...
    let (log, _) = Log::open(
        &tmp.path().join("t-0"),
        "t-0",
        group_cfg(Duration::from_millis(100)),
    )
    .unwrap();
    let log = Arc::new(log);
    let info = log.append(&batch(2, 50, 1), 0).unwrap();
    let mut first = Box::pin(log.wait_durable(info.last_offset));
    let polled =
        std::future::poll_fn(|cx| std::task::Poll::Ready(first.as_mut().poll(cx).is_ready())).await;
    assert!(!polled, "the leader waits for company");
    // ... and is cancelled there.
    drop(first);
    let info = log.append(&batch(2, 50, 2), 0).unwrap();
    tokio::time::timeout(Duration::from_secs(20), log.wait_durable(info.last_offset))
        .await
        .expect("the next waiter hung after a cancelled leader")
        .unwrap();
    assert!(log.flushed_offset() > info.last_offset);
}

/// Waiting for an offset the log does not hold fails at once instead of spinning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_durable_past_the_log_end_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = weir_storage::Log::open(
        &dir.path().join("w-0"),
        "w-0",
        weir_storage::LogConfig::default(),
    )
    .unwrap();
    let log = std::sync::Arc::new(log);
    log.append(
        &weir_storage::record::build_batch(&[(None, Some(vec![1]), 0)]),
        0,
    )
    .unwrap();
    log.wait_durable(0).await.unwrap();
    let err = tokio::time::timeout(std::time::Duration::from_secs(10), log.wait_durable(5))
        .await
        .expect("wait_durable must not spin");
    assert!(
        matches!(
            err,
            Err(weir_storage::StorageError::OffsetOutOfRange { .. })
        ),
        "{err:?}"
    );
}

/// Under LogAppendTime the log stamps each batch with its append time: the
/// timestamp-type attribute is set, maxTimestamp is the append time, the CRC is
/// still valid, and every record reads back with that time.
#[test]
fn log_append_time_stamps_batches_and_keeps_them_valid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = weir_storage::LogConfig {
        log_append_time: true,
        ..weir_storage::LogConfig::default()
    };
    let (log, _) = weir_storage::Log::open(&dir.path().join("t-0"), "t-0", cfg).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let info = log
        .append(
            &build_batch(&[(None, Some(vec![1]), 5), (None, Some(vec![2]), 6)]),
            0,
        )
        .unwrap();
    assert!(info.log_append_time >= before, "{info:?}");
    let r = log
        .read(0, usize::MAX, weir_storage::ReadBound::LogEnd)
        .unwrap();
    let h = weir_storage::validate_batch(&r.records, usize::MAX, weir_storage::CountRule::Stored)
        .unwrap();
    assert!(h.log_append_time());
    assert_eq!(h.max_timestamp, info.log_append_time);
    let recs = decode_records(&r.records, 1 << 30).unwrap();
    assert!(recs.iter().all(|x| x.timestamp == info.log_append_time));
    log.set_high_watermark(2).unwrap();
    assert_eq!(
        log.offset_for_timestamp(before).unwrap().map(|t| t.offset),
        Some(0)
    );
}

/// `compression.type` other than `producer`: batches arrive in one codec and are
/// stored in the topic's (including uncompressed), with the same offsets,
/// records and producer fields, and valid CRCs.
#[test]
fn compression_type_recompresses_to_the_topics_codec() {
    for (from, to) in [
        (Compression::None, 4i16),
        (Compression::Gzip, 3),
        (Compression::Zstd, 0),
        (Compression::Lz4, 3),
    ] {
        let tmp = common::tempdir();
        let cfg = LogConfig {
            compression: Some(to),
            ..small_cfg()
        };
        let (log, _) = Log::open(&tmp.path().join("t-0"), "t-0", cfg).unwrap();
        let (sent, records) = kafka_batch(from, 1_000);
        let info = log.append(&sent, 0).unwrap();
        assert_eq!(info.last_offset, records.len() as i64 - 1);
        let stored = read_all(&log);
        assert_eq!(stored.len(), 1);
        let raw = &stored[0].raw;
        let h = weir_storage::validate_batch(raw, usize::MAX, weir_storage::CountRule::Produced)
            .unwrap();
        assert_eq!(h.codec(), to, "{from:?} -> {to}");
        let back = decode_records(raw, 1 << 30).unwrap();
        let values: Vec<_> = back.iter().map(|r| r.value.clone()).collect();
        let want: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, want, "{from:?} -> {to}");
    }
}

/// `min.compaction.lag.ms`: the cleaner leaves segments holding records younger
/// than the lag, and cleans them once the lag has passed.
#[test]
fn min_compaction_lag_holds_young_records_back() {
    let tmp = common::tempdir();
    let cfg = LogConfig {
        cleanup_policy: weir_storage::CleanupPolicy::Compact,
        min_compaction_lag_ms: 10_000,
        ..small_cfg()
    };
    let (log, _) = Log::open(&tmp.path().join("t-0"), "t-0", cfg).unwrap();
    let keyed =
        |v: &str, ts: i64| build_batch(&[(Some(b"k".to_vec()), Some(v.as_bytes().to_vec()), ts)]);
    log.append(&keyed("old", 1_000), 0).unwrap();
    log.append(&keyed("new", 2_000), 0).unwrap();
    log.roll().unwrap();
    log.append(&keyed("newest", 3_000), 0).unwrap();
    // 5 s after the records: younger than the lag, left alone.
    assert_eq!(log.compact_at(7_000).unwrap().records_removed, 0);
    // 15 s after: the superseded value in the sealed segment goes (the active
    // segment is never cleaned, as in Kafka).
    assert_eq!(log.compact_at(15_000).unwrap().records_removed, 1);
}

/// What a leader prepares is what every replica writes: under LogAppendTime
/// and under a topic codec the prepared bytes are final (stamped, recompressed),
/// a replica appending them with `append_trusted` stores byte-identical
/// batches, and a plain batch is prepared without a copy. `append_trusted`
/// still refuses a batch whose CRC is wrong.
#[test]
fn prepared_batches_are_written_identically_on_every_replica() {
    for cfg in [
        LogConfig {
            log_append_time: true,
            ..small_cfg()
        },
        LogConfig {
            compression: Some(3),
            ..small_cfg()
        },
        small_cfg(),
    ] {
        let tmp = common::tempdir();
        let (leader, _) = Log::open(&tmp.path().join("l-0"), "l-0", cfg.clone()).unwrap();
        let (replica, _) = Log::open(&tmp.path().join("r-0"), "r-0", cfg.clone()).unwrap();
        for n in 1..4 {
            let sent = batch(n, 100, 1_000);
            let prepared = leader.prepare(&sent).unwrap();
            let plain = !cfg.log_append_time && cfg.compression.is_none();
            assert_eq!(prepared.is_unchanged(), plain, "{cfg:?}");
            let a = leader.append_prepared(&prepared, 7).unwrap();
            let b = replica.append_trusted(prepared.bytes(), 7).unwrap();
            assert_eq!(
                (a.base_offset, a.last_offset),
                (b.base_offset, b.last_offset)
            );
        }
        let (l, r) = (read_all(&leader), read_all(&replica));
        assert_eq!(l.len(), 3);
        for (x, y) in l.iter().zip(&r) {
            assert_eq!(x.raw, y.raw, "replica differs under {cfg:?}");
            let h = BatchHeader::parse(&x.raw).unwrap();
            assert_eq!(h.partition_leader_epoch, 7);
        }
    }
    let tmp = common::tempdir();
    let (log, _) = Log::open(&tmp.path().join("t-0"), "t-0", small_cfg()).unwrap();
    let mut bad = batch(2, 10, 1_000);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        log.append_trusted(&bad, 0),
        Err(StorageError::InvalidBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
}

/// The log-end watch follows appends, truncation and reset (a Raft leader's
/// acks=1 waits on it).
#[test]
fn log_end_watch_follows_appends_truncation_and_reset() {
    let tmp = common::tempdir();
    let (log, _) = Log::open(&tmp.path().join("t-0"), "t-0", small_cfg()).unwrap();
    let mut end = log.subscribe_log_end();
    assert_eq!(*end.borrow_and_update(), 0);
    log.append(&batch(3, 10, 1_000), 0).unwrap();
    assert!(end.has_changed().unwrap());
    assert_eq!(*end.borrow_and_update(), 3);
    log.append(&batch(2, 10, 1_000), 0).unwrap();
    assert_eq!(*end.borrow_and_update(), 5);
    log.truncate_to(3).unwrap();
    assert_eq!(*end.borrow_and_update(), 3);
    log.reset_to(40).unwrap();
    assert_eq!(*end.borrow_and_update(), 40);
}

/// `compact_below` cleans only the sealed segments that end at or below its
/// limit, and `cleanable_end` names where the cleanable segments end (a
/// replicated partition releases its Raft log up to there first).
#[test]
fn compaction_below_a_limit_leaves_later_segments_alone() {
    let tmp = common::tempdir();
    let cfg = compacting_cfg();
    let (log, _) = Log::open(&tmp.path().join("t-0"), "t-0", cfg).unwrap();
    let keyed = |v: &str| build_batch(&[(Some(b"k".to_vec()), Some(v.as_bytes().to_vec()), 1)]);
    assert_eq!(log.cleanable_end(10).unwrap(), None);
    for (i, v) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        log.append(&keyed(v), 0).unwrap();
        if i < 4 {
            log.roll().unwrap();
        }
    }
    // Segments 0..4 are sealed, 4 is active.
    assert_eq!(log.cleanable_end(10).unwrap(), Some(4));
    // Only what the range itself supersedes goes: the map of latest offsets
    // is built from the segments below the limit.
    let out = log.compact_below(2, 10).unwrap();
    assert_eq!(out.records_removed, 1, "{out:?}");
    let bases = |log: &Log| {
        read_all(log)
            .iter()
            .map(|b| b.header.base_offset)
            .collect::<Vec<_>>()
    };
    assert_eq!(bases(&log), vec![1, 2, 3, 4]);
    assert_eq!(log.compact_below(4, 10).unwrap().records_removed, 2);
    // The active segment is never cleaned.
    assert_eq!(bases(&log), vec![3, 4]);
}

/// A follower's log reset above a received prefix keeps the prefix's sealed
/// segments (offset gaps of a compacted log included) below the new end,
/// starts at the prefix's start, rebuilds its epochs from them, and survives
/// a reopen; appends continue at the reset offset.
#[test]
fn reset_with_prefix_keeps_the_received_segments_below_the_reset_offset() {
    let tmp = common::tempdir();
    let (prefix, _) = Log::open(&tmp.path().join("staged"), "staged", small_cfg()).unwrap();
    prefix.reset_to(10).unwrap();
    // Batches at 10..=12 and 20..=21, as a compacted leader would send them.
    let stamped = |base: i64, n: usize| {
        let mut b = batch(n, 10, 1_000);
        b[..8].copy_from_slice(&base.to_be_bytes());
        // Neither field is under the CRC.
        b[12..16].copy_from_slice(&7i32.to_be_bytes());
        b
    };
    prefix.append_replicated(&stamped(10, 3)).unwrap();
    prefix.append_replicated(&stamped(20, 2)).unwrap();
    prefix.close().unwrap();
    drop(prefix);

    let dir = tmp.path().join("t-0");
    let (log, _) = Log::open(&dir, "t-0", small_cfg()).unwrap();
    log.append(&batch(5, 10, 1_000), 3).unwrap();
    log.reset_with_prefix(30, &tmp.path().join("staged"), 10)
        .unwrap();
    assert_eq!(log.log_start_offset(), 10);
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(log.latest_epoch(), Some(7));
    log.append(&batch(1, 10, 1_000), 8).unwrap();
    let offsets = |log: &Log| {
        read_all(log)
            .iter()
            .map(|b| b.header.base_offset)
            .collect::<Vec<_>>()
    };
    assert_eq!(offsets(&log), vec![10, 20, 30]);
    log.close().unwrap();
    drop(log);
    // The staged copy can go: the log holds its own links.
    std::fs::remove_dir_all(tmp.path().join("staged")).unwrap();
    let (log, _) = Log::open(&dir, "t-0", small_cfg()).unwrap();
    assert_eq!(log.log_start_offset(), 10);
    assert_eq!(offsets(&log), vec![10, 20, 30]);
    assert_eq!(log.epoch_entries(), vec![(7, 10), (8, 30)]);
}

/// One append of many batches (a Raft follower writing a run of entries, a
/// producer's multi-batch request) rolls segments at `segment.bytes` as
/// batch-at-a-time appends do, so size-based rolling and `retention.bytes`
/// keep holding; each path keeps every batch, in order, offsets dense.
#[test]
fn multi_batch_appends_roll_segments_at_segment_bytes() {
    let cfg = small_cfg();
    let tmp = common::tempdir();
    let one: Vec<Vec<u8>> = (0..60).map(|i| batch(2, 100, 1_000 + i)).collect();
    let all = one.concat();
    assert!(all.len() as u64 > 3 * cfg.segment_bytes);
    let (plain, _) = Log::open(&tmp.path().join("a-0"), "a-0", cfg.clone()).unwrap();
    plain.append(&all, 3).unwrap();
    let (trusted, _) = Log::open(&tmp.path().join("b-0"), "b-0", cfg.clone()).unwrap();
    trusted.append_trusted(&all, 3).unwrap();
    let stored: Vec<u8> = read_all(&plain)
        .iter()
        .flat_map(|b| b.raw.to_vec())
        .collect();
    let (copy, _) = Log::open(&tmp.path().join("c-0"), "c-0", cfg.clone()).unwrap();
    copy.append_replicated(&stored).unwrap();
    for log in [&plain, &trusted, &copy] {
        let segments = log.segments();
        assert!(segments.len() >= 4, "{} segments", segments.len());
        for s in &segments {
            let len = std::fs::metadata(common::seg_file(log.dir(), s.base_offset, ".log"))
                .unwrap()
                .len();
            assert!(
                len <= cfg.segment_bytes,
                "segment {} holds {len} bytes",
                s.base_offset
            );
        }
        let read = read_all(log);
        assert_eq!(read.len(), 60);
        let raw: Vec<u8> = read.iter().flat_map(|b| b.raw.to_vec()).collect();
        assert_eq!(raw, stored, "a log differs from the batch-by-batch one");
        assert_eq!(log.log_end_offset(), 120);
    }
}

/// A sealed segment compaction leaves without a record is removed (its
/// files and its place in the log: no empty segment files pile up on a
/// compacted topic), except the first, which holds the log start; reads
/// step over the gap, a reopen sees the same log, and appends go on.
#[test]
fn compaction_removes_the_segments_it_empties() {
    let tmp = common::tempdir();
    let cfg = compacting_cfg();
    let dir = tmp.path().join("t-0");
    let keyed = |k: &str, v: &str| {
        build_batch(&[(Some(k.as_bytes().to_vec()), Some(v.as_bytes().to_vec()), 1)])
    };
    let (log, _) = Log::open(&dir, "t-0", cfg.clone()).unwrap();
    // Segment 0: j=x; 1: k=a; 2: k=b; 3: k=c; 4 (active): m=y.
    for (i, (k, v)) in [("j", "x"), ("k", "a"), ("k", "b"), ("k", "c"), ("m", "y")]
        .iter()
        .enumerate()
    {
        log.append(&keyed(k, v), 0).unwrap();
        if i < 4 {
            log.roll().unwrap();
        }
    }
    let out = log.compact_at(10).unwrap();
    assert_eq!(out.records_removed, 2, "{out:?}");
    let bases = |log: &Log| {
        log.segments()
            .iter()
            .map(|s| s.base_offset)
            .collect::<Vec<_>>()
    };
    let offsets = |log: &Log| {
        read_all(log)
            .iter()
            .map(|b| b.header.base_offset)
            .collect::<Vec<_>>()
    };
    // 1 and 2 are emptied and removed; 3 is then merged into 0.
    assert_eq!(bases(&log), vec![0, 4]);
    assert_eq!(
        (out.segments_removed, out.segments_merged),
        (2, 1),
        "{out:?}"
    );
    for gone in [1, 2, 3] {
        for suffix in [".log", ".index", ".timeindex"] {
            let f = common::seg_file(&dir, gone, suffix);
            assert!(!f.exists(), "{} is still there", f.display());
        }
    }
    assert_eq!(offsets(&log), vec![0, 3, 4]);
    assert_eq!(log.log_start_offset(), 0);
    let r = log.read(1, 1 << 20, ReadBound::LogEnd).unwrap();
    assert_eq!(split_batches(&r.records)[0].header.base_offset, 3);
    log.close().unwrap();
    drop(log);
    let (log, _) = Log::open(&dir, "t-0", cfg).unwrap();
    assert_eq!((bases(&log), offsets(&log)), (vec![0, 4], vec![0, 3, 4]));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 5));
    assert_eq!(log.append(&keyed("k", "e"), 0).unwrap().base_offset, 5);
}

/// `continue_at` moves the end past a gap: the records below stay readable,
/// a read inside the gap gets the next batch, appends take offsets from the
/// new end, and all of it survives a reopen (a partition whose damaged tail
/// fell below its Raft anchor opens this way).
#[test]
fn continue_at_leaves_a_gap_that_reads_and_reopens_like_a_compacted_one() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("t-0");
    let (log, _) = Log::open(&dir, "t-0", small_cfg()).unwrap();
    log.append(&batch(5, 10, 1_000), 0).unwrap();
    log.continue_at(3).unwrap();
    assert_eq!(
        log.log_end_offset(),
        5,
        "an offset below the end is no move"
    );
    log.continue_at(20).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(log.high_watermark(), 20);
    assert_eq!(log.log_start_offset(), 0, "records below the gap are kept");
    log.append(&batch(2, 10, 2_000), 0).unwrap();
    log.set_high_watermark(22).unwrap();
    let check = |log: &Log| {
        let offsets: Vec<i64> = read_all(log).iter().map(|b| b.header.base_offset).collect();
        assert_eq!(offsets, vec![0, 20]);
        let r = log.read(7, 1 << 20, ReadBound::LogEnd).unwrap();
        assert_eq!(split_batches(&r.records)[0].header.base_offset, 20);
        assert_eq!(log.log_end_offset(), 22);
    };
    check(&log);
    log.close().unwrap();
    drop(log);
    let (log, _) = Log::open(&dir, "t-0", small_cfg()).unwrap();
    check(&log);

    // An empty log moves its start along: nothing lies below.
    let empty = tmp.path().join("e-0");
    let (log, _) = Log::open(&empty, "e-0", small_cfg()).unwrap();
    log.continue_at(9).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (9, 9));
    drop(log);
    let (log, _) = Log::open(&empty, "e-0", small_cfg()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (9, 9));
    assert_eq!(log.append(&batch(1, 10, 3_000), 0).unwrap().base_offset, 9);
}

/// Compaction merges neighbouring cleaned segments that fit one segment
/// (`segment.bytes`) into the first of them, as Kafka's cleaner groups
/// segments: a compacted topic does not keep one small segment per roll.
/// Offsets, batches and reads stay as they were; a reopen sees the same log.
#[test]
fn compaction_merges_small_neighbouring_segments() {
    let tmp = common::tempdir();
    let cfg = compacting_cfg();
    let dir = tmp.path().join("t-0");
    let keyed = |k: &str, len: usize| {
        build_batch(&[(Some(k.as_bytes().to_vec()), Some(vec![b'v'; len]), 1)])
    };
    let (log, _) = Log::open(&dir, "t-0", cfg.clone()).unwrap();
    // Ten small sealed segments (distinct keys, then one superseded key),
    // then three of about 1,900 bytes (two fit in 4,096 bytes, three do
    // not), then the active one.
    for i in 0..10 {
        let k = if i >= 8 {
            "dup".to_string()
        } else {
            format!("k{i}")
        };
        log.append(&keyed(&k, 10), 0).unwrap();
        log.roll().unwrap();
    }
    for i in 0..3 {
        log.append(&keyed(&format!("big{i}"), 1800), 0).unwrap();
        log.roll().unwrap();
    }
    log.append(&keyed("last", 10), 0).unwrap();
    let before: Vec<_> = read_all(&log)
        .into_iter()
        .filter(|b| b.header.base_offset != 8)
        .map(|b| (b.header.base_offset, b.raw))
        .collect();
    let out = log.compact_at(10).unwrap();
    assert_eq!(out.records_removed, 1, "{out:?}");
    let bases = |log: &Log| {
        log.segments()
            .iter()
            .map(|s| s.base_offset)
            .collect::<Vec<_>>()
    };
    // 0..=9 (less the superseded 8) and the first big one fit together;
    // the next two big ones fit together; the active one stays alone.
    assert_eq!(bases(&log), vec![0, 11, 13], "{out:?}");
    assert_eq!(out.segments_merged, 10, "{out:?}");
    for gone in (1..=10).chain([12]) {
        for suffix in [".log", ".index", ".timeindex"] {
            let f = common::seg_file(&dir, gone, suffix);
            assert!(!f.exists(), "{} is still there", f.display());
        }
    }
    let now = |log: &Log| {
        read_all(log)
            .into_iter()
            .map(|b| (b.header.base_offset, b.raw))
            .collect::<Vec<_>>()
    };
    assert_eq!(now(&log), before);
    // Cleaned and merged in one write: what the pass wrote is the two
    // merged segments, from every segment of their runs.
    let size = |base| {
        std::fs::metadata(common::seg_file(&dir, base, ".log"))
            .unwrap()
            .len()
    };
    assert_eq!(out.bytes_after, size(0) + size(11), "{out:?}");
    assert!(out.bytes_before > out.bytes_after, "{out:?}");
    // A read inside a merged segment finds its batch.
    let r = log.read(5, 1 << 20, ReadBound::LogEnd).unwrap();
    assert_eq!(split_batches(&r.records)[0].header.base_offset, 5);
    // Merged segments are not merged again, nor rewritten.
    let again = log.compact_at(10).unwrap();
    assert_eq!(again, weir_storage::CompactionOutcome::default());
    log.close().unwrap();
    drop(log);
    let (log, rep) = Log::open(&dir, "t-0", cfg).unwrap();
    assert_eq!(rep.segments, 3, "{rep:?}");
    assert_eq!((bases(&log), now(&log)), (vec![0, 11, 13], before));
    assert_eq!(log.append(&keyed("k", 1), 0).unwrap().base_offset, 14);
}
