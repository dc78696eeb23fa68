//! Helpers shared by the storage integration tests: configs, batch builders,
//! whole-log reads that validate every batch, directory copies.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use weir_storage::record::{build_batch, decode_records, RecordSpec, RecordView};
use weir_storage::{
    validate_batch, BatchHeader, CountRule, Durability, HeaderWalk, Log, LogConfig, ReadBound,
};

/// A tiny deterministic PRNG (SplitMix64), so crash tests are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A fresh temporary directory. Crash tests simulate crashes by copying and
/// damaging files, not by losing power, so they run on tmpfs (`/dev/shm`) when
/// there is one: fsyncs on a shared disk would make them crawl. Set
/// `WEIR_TEST_TMPDIR` to run them elsewhere.
pub fn tempdir() -> tempfile::TempDir {
    let base = std::env::var_os("WEIR_TEST_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    base.and_then(|b| tempfile::tempdir_in(b).ok())
        .unwrap_or_else(|| tempfile::tempdir().unwrap())
}

/// Small segments and indexes, so rolls (by size and by full index) happen often.
pub fn small_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        index_interval_bytes: 256,
        segment_index_bytes: 120,
        retention_ms: None,
        retention_bytes: None,
        max_message_bytes: 64 << 10,
        durability: Durability::PageCache,
        ..LogConfig::default()
    }
}

/// A batch of `n` records with keys `k0..k7`, values of pseudo-random sizes and
/// timestamps from `ts` on (a few jump ahead, so timestamps are not monotonic).
pub fn random_batch(rng: &mut Rng, n: usize, ts: i64, max_value: u64) -> Vec<u8> {
    let specs: Vec<RecordSpec> = (0..n)
        .map(|i| {
            let key = format!("k{}", rng.below(8)).into_bytes();
            let len = rng.below(max_value + 1) as usize;
            let value = (rng.below(10) != 0).then(|| vec![b'a' + (i % 26) as u8; len]);
            let jitter = if rng.below(4) == 0 { 500 } else { 0 };
            (Some(key), value, ts + i as i64 + jitter)
        })
        .collect();
    build_batch(&specs)
}

/// One batch read back from a log, validated and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// Header of the batch.
    pub header: BatchHeader,
    /// The bytes as stored.
    pub raw: Bytes,
}

impl ReadBatch {
    /// The records inside.
    pub fn records(&self) -> Vec<RecordView> {
        decode_records(&self.raw, 1 << 30).unwrap()
    }
}

/// Splits a read result into batches, checking each is whole, valid and decodable.
pub fn split_batches(records: &Bytes) -> Vec<ReadBatch> {
    let mut walk = HeaderWalk::new(records, 0);
    let mut out = Vec::new();
    for (at, h) in walk.by_ref() {
        let raw = records.slice(at..at + h.size());
        validate_batch(&raw, usize::MAX, CountRule::Stored)
            .unwrap_or_else(|e| panic!("corrupt batch at offset {} read back: {e}", h.base_offset));
        decode_records(&raw, 1 << 30)
            .unwrap_or_else(|e| panic!("undecodable batch {}: {e}", h.base_offset));
        out.push(ReadBatch { header: h, raw });
    }
    assert_eq!(walk.end(), records.len(), "a read returned a partial batch");
    out
}

/// Every batch of the log from its start to its end (bound: log end).
pub fn read_all(log: &Log) -> Vec<ReadBatch> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out: Vec<ReadBatch> = Vec::new();
    while offset < end {
        let r = log.read(offset, 16 << 10, ReadBound::LogEnd).unwrap();
        let batches = split_batches(&r.records);
        if batches.is_empty() {
            // Only a truncation into a compacted gap leaves no batch below the end.
            break;
        }
        for b in batches {
            if let Some(prev) = out.last() {
                assert!(b.header.base_offset >= prev.header.next_offset());
            }
            offset = b.header.next_offset();
            out.push(b);
        }
    }
    out
}

/// Copies the files of a (flat) directory into a fresh directory `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// Files of `dir` whose names end with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Path of a segment file of `dir`.
pub fn seg_file(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}{suffix}"))
}
