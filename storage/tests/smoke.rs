//! Basic end-to-end behaviour of one log: append, read, reopen, truncate, time lookup.

use weir_storage::record::build_batch;
use weir_storage::{Log, LogConfig, ReadBound};

fn batch(n: usize, ts: i64) -> Vec<u8> {
    build_batch(
        &(0..n)
            .map(|i| {
                (
                    Some(format!("k{i}").into_bytes()),
                    Some(vec![7u8; 100]),
                    ts + i as i64,
                )
            })
            .collect::<Vec<_>>(),
    )
}

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        segment_index_bytes: 1024,
        ..LogConfig::default()
    }
}

#[test]
fn append_read_reopen_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let (log, rep) = Log::open(&path, "t-0", small()).unwrap();
    assert_eq!(rep.log_end_offset, 0);
    for i in 0..50 {
        let info = log.append(&batch(3, 1000 + i * 10), 0).unwrap();
        assert_eq!(info.base_offset, i * 3);
    }
    assert!(log.segments().len() > 3, "rolled by size");
    log.set_high_watermark(150).unwrap();
    let r = log.read(31, 1, ReadBound::HighWatermark).unwrap();
    let h = weir_storage::BatchHeader::parse(&r.records).unwrap();
    assert_eq!(h.base_offset, 30, "batch holding a mid-batch offset");
    assert_eq!(
        r.records.len(),
        h.size(),
        "at least one batch above max_bytes"
    );
    let ts = log
        .offset_for_timestamp(1000 + 20 * 10 + 1)
        .unwrap()
        .unwrap();
    assert_eq!((ts.offset, ts.timestamp), (61, 1201));
    log.close().unwrap();
    drop(log);
    let (log, rep) = Log::open(&path, "t-0", small()).unwrap();
    assert!(rep.clean_shutdown);
    assert_eq!(rep.log_end_offset, 150);
    assert_eq!(log.truncate_to(100).unwrap(), 99);
    assert_eq!(log.append(&batch(1, 5), 1).unwrap().base_offset, 99);
    drop(log);
    let (log, rep) = Log::open(&path, "t-0", small()).unwrap();
    assert!(!rep.clean_shutdown);
    assert_eq!(log.log_end_offset(), 100);
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&dir.path().join("m-0"), "m-0", small()).unwrap();
    let mut buf = Vec::new();
    for _ in 0..4 {
        buf.extend_from_slice(&build_batch(&[(None, None, 0)]));
    }
    let info = log.append(&buf, 0).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (0, 3, 4)
    );
    let next = log.append(&batch(2, 0), 0).unwrap();
    assert_eq!(next.base_offset, 4);
    assert_eq!(log.log_end_offset(), 6);
    let r = log.read(0, usize::MAX, ReadBound::LogEnd).unwrap();
    let offsets: Vec<i64> = weir_storage::HeaderWalk::new(&r.records, 0)
        .map(|(_, h)| h.base_offset)
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
}

#[test]
fn append_after_truncating_inside_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        segment_index_bytes: 96,
        segment_ms: None,
        durability: weir_storage::Durability::PageCache,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(&dir.path().join("m-0"), "m-0", cfg).unwrap();
    let mut buf = Vec::new();
    for _ in 0..4 {
        buf.extend_from_slice(&build_batch(&[(None, None, 0)]));
    }
    log.append(&buf, 0).unwrap();
    assert_eq!(log.truncate_to(1).unwrap(), 1);
    let info = log
        .append(
            &build_batch(&[
                (None, Some(vec![1; 415]), 0),
                (Some(vec![0]), Some(vec![2; 1482]), 0),
            ]),
            0,
        )
        .unwrap();
    assert_eq!(info.base_offset, 1);
    assert_eq!(log.log_end_offset(), 3);
}
