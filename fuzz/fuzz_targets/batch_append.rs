//! `batch_append`: arbitrary bytes as the `records` of a Produce partition,
//! validated (`weir_storage::validate_batch`) and appended (`Log::append`) to one
//! temporary log per process (recreated when it grows), then read back.
//!
//! Input: byte 0 is a flag byte, the rest the records bytes.
//! - bit 0: recompute batchLength/CRC of every batch first (so mutations reach
//!   record validation instead of dying at the CRC check);
//! - bit 1: the log runs with `message.timestamp.type=LogAppendTime`;
//! - bit 2: `cleanup.policy=compact` (records need keys);
//! - bits 4-5: the leader epoch stamped.
//!
//! Checked: nothing panics; a refused append changes nothing; an accepted one
//! reads back byte-identical after the 16 stamped bytes (baseOffset, batchLength,
//! partitionLeaderEpoch; under LogAppendTime also attributes, CRC, maxTimestamp),
//! with consecutive offsets and the given epoch; every stored batch decodes; and
//! `offset_for_timestamp` (ListOffsets by time) never answers outside the log and
//! finds each appended record whose batch header covers its timestamp.
#![no_main]

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use weir_storage::record::{decode_records, stored_limit};
use weir_storage::{
    validate_batch, CleanupPolicy, CountRule, Durability, HeaderWalk, Log, LogConfig, ReadBound,
};

/// Recreate the log beyond this many bytes or segments.
const MAX_LOG_BYTES: u64 = 32 << 20;
const MAX_SEGMENTS: usize = 64;

struct Harness {
    root: PathBuf,
    generation: u64,
    log: Option<Log>,
}

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fn config(flags: u8) -> LogConfig {
    LogConfig {
        // Small segments and indexes: rolls, index entries and full indexes happen often.
        segment_bytes: 256 << 10,
        segment_ms: None,
        index_interval_bytes: 256,
        segment_index_bytes: 4 << 10,
        retention_ms: None,
        retention_bytes: None,
        cleanup_policy: if flags & 4 != 0 {
            CleanupPolicy::Compact
        } else {
            CleanupPolicy::Delete
        },
        durability: Durability::PageCache,
        log_append_time: flags & 2 != 0,
        ..LogConfig::default()
    }
}

impl Harness {
    fn log(&mut self, flags: u8) -> &Log {
        let too_big = self
            .log
            .as_ref()
            .is_some_and(|l| l.size_bytes() > MAX_LOG_BYTES || l.segments().len() > MAX_SEGMENTS);
        if too_big {
            self.log = None;
            let _ = std::fs::remove_dir_all(self.root.join(format!("t-{}", self.generation)));
            self.generation += 1;
        }
        if self.log.is_none() {
            let dir = self.root.join(format!("t-{}", self.generation));
            let (log, _) = Log::open(&dir, "fuzz-0", config(flags)).expect("opening a fresh log");
            self.log = Some(log);
        }
        let log = self.log.as_ref().unwrap();
        log.set_config(config(flags));
        log
    }
}

fn check(flags: u8, buf: &[u8]) {
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let h = guard.get_or_insert_with(|| Harness {
        root: common::scratch_root("batch_append"),
        generation: 0,
        log: None,
    });
    let log = h.log(flags);
    let cfg = log.config();
    let epoch = i32::from((flags >> 4) & 3);

    // The public single-batch check, as a handler would call it.
    let first = validate_batch(buf, cfg.max_message_bytes as usize, CountRule::Produced);

    let end_before = log.log_end_offset();
    let size_before = log.size_bytes();
    let info = match log.append(buf, epoch) {
        Ok(info) => info,
        Err(e) => {
            if common::debug() {
                eprintln!("batch_append: refused: {e}");
            }
            assert_eq!(
                log.log_end_offset(),
                end_before,
                "a refused append moved the log end"
            );
            assert_eq!(
                log.size_bytes(),
                size_before,
                "a refused append wrote bytes"
            );
            return;
        }
    };
    if common::debug() {
        eprintln!("batch_append: appended {info:?}");
    }
    assert!(
        first.is_ok(),
        "append accepted what validate_batch refused: {first:?}"
    );
    let batches: Vec<_> = HeaderWalk::new(buf, 0).collect();
    assert_eq!(info.batches, batches.len());
    assert_eq!(info.bytes, buf.len());
    assert_eq!(info.base_offset, end_before);
    assert_eq!(info.last_offset + 1, log.log_end_offset());
    let hw = log.set_high_watermark(log.log_end_offset()).unwrap();
    assert_eq!(hw, log.log_end_offset());

    let read = log
        .read(info.base_offset, buf.len(), ReadBound::LogEnd)
        .expect("reading back an append");
    let stored = read.records;
    assert_eq!(stored.len(), buf.len(), "read back a different length");

    let limit = stored_limit(cfg.max_message_bytes);
    let mut next = info.base_offset;
    let mut probes = Vec::new();
    for (at, hdr) in &batches {
        let (at, size) = (*at, hdr.size());
        let orig = &buf[at..at + size];
        let got = &stored[at..at + size];
        assert_eq!(&got[0..8], &next.to_be_bytes(), "baseOffset not stamped");
        assert_eq!(&got[8..12], &orig[8..12], "batchLength changed");
        assert_eq!(
            &got[12..16],
            &epoch.to_be_bytes(),
            "leader epoch not stamped"
        );
        if cfg.log_append_time {
            // attributes (21..23), CRC (17..21) and maxTimestamp (35..43) are rewritten.
            assert_eq!(got[16], orig[16]);
            assert_eq!(&got[23..35], &orig[23..35]);
            assert_eq!(&got[43..], &orig[43..]);
            let attrs = i16::from_be_bytes([got[21], got[22]]);
            let orig_attrs = i16::from_be_bytes([orig[21], orig[22]]);
            assert_eq!(attrs, orig_attrs | 0x8);
            assert_eq!(&got[35..43], &info.log_append_time.to_be_bytes());
            validate_batch(got, usize::MAX, CountRule::Stored).expect("restamped CRC");
        } else {
            assert_eq!(&got[16..], &orig[16..], "batch bytes changed");
        }
        let stored_hdr = validate_batch(got, usize::MAX, CountRule::Stored).unwrap();
        let records = decode_records(&stored.slice(at..at + size), limit)
            .expect("an accepted batch must decode when read back");
        assert_eq!(records.len(), hdr.record_count as usize);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, next + i as i64);
            if probes.len() < 4 && stored_hdr.max_timestamp >= r.timestamp {
                probes.push((r.offset, r.timestamp));
            }
        }
        next = stored_hdr.next_offset();
    }
    assert_eq!(next, log.log_end_offset());

    // ListOffsets by timestamp.
    let (start, hw) = (log.log_start_offset(), log.high_watermark());
    let mut targets = vec![i64::MIN, -1, 0, i64::MAX, info.max_timestamp];
    if let Some((_, h)) = batches.first() {
        targets.push(h.base_timestamp);
    }
    for ts in targets {
        if let Some(t) = log.offset_for_timestamp(ts).expect("offset_for_timestamp") {
            assert!(
                t.offset >= start && t.offset < hw,
                "{t:?} outside [{start}, {hw})"
            );
            assert!(t.timestamp >= ts, "{t:?} is older than {ts}");
        }
    }
    for (offset, ts) in probes {
        let t = log
            .offset_for_timestamp(ts)
            .expect("offset_for_timestamp")
            .unwrap_or_else(|| panic!("record {offset} with timestamp {ts} not found by time"));
        assert!(
            t.offset <= offset && t.timestamp >= ts,
            "{t:?} for record {offset} at {ts}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & 1 != 0 {
        let mut buf = rest.to_vec();
        common::reseal_batches(&mut buf);
        check(flags, &buf);
    } else {
        check(flags, rest);
    }
});
