//! Property test of the partition log against an in-memory model: random sequences
//! of appends, reads, high-watermark moves, truncations, rolls, retention, log-start
//! moves, compaction and reopens (clean and after a drop) must give the model's
//! answers. Replay a failure with `PROPTEST_RNG_SEED=<seed>`.

mod common;

use common::{read_all, split_batches, ReadBatch};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use weir_storage::record::{build_batch, RecordSpec};
use weir_storage::{CleanupPolicy, Log, LogConfig, ReadBound, SegmentInfo, StorageError};

/// One record in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MRecord {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// One batch in the model.
#[derive(Debug, Clone)]
struct MBatch {
    base: i64,
    last: i64,
    size: usize,
    max_ts: i64,
    epoch: i32,
    records: Vec<MRecord>,
}

impl MBatch {
    fn next(&self) -> i64 {
        self.last + 1
    }
    fn from_read(b: &ReadBatch) -> Self {
        Self {
            base: b.header.base_offset,
            last: b.header.last_offset(),
            size: b.raw.len(),
            max_ts: b.header.max_timestamp,
            epoch: b.header.partition_leader_epoch,
            records: b
                .records()
                .into_iter()
                .map(|r| MRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(|k| k.to_vec()),
                    value: r.value.map(|v| v.to_vec()),
                })
                .collect(),
        }
    }
}

/// The model: every batch physically in the log, and the three offsets.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<MBatch>,
    start: i64,
    end: i64,
    hw: i64,
    clock: i64,
}

/// A batch to append: (key index or none, value length or tombstone, timestamp step).
type BatchSpec = Vec<(Option<u8>, Option<u16>, i64)>;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<BatchSpec>, i32),
    Read(u16, usize, u8),
    TimeLookup(u16),
    SetHw(u16),
    TruncateTo(u16, u16),
    Roll,
    RetainBytes(u64),
    RetainMs(u16, i64),
    AdvanceStart(u16),
    Compact(i64),
    CloseReopen,
    DropReopen,
}

fn batch_spec(compact: bool) -> impl Strategy<Value = BatchSpec> {
    let value = prop_oneof![
        1 => Just(None),
        5 => (0u16..40).prop_map(Some),
        3 => (0u16..2000).prop_map(Some),
    ];
    // A compacted log refuses keyless records: rarely offer one there, so most
    // appends land and compaction still has work.
    let keyless = if compact { 1 } else { 20 };
    let key = prop_oneof![keyless => Just(None), 160 => (0u8..6).prop_map(Some)];
    prop::collection::vec((key, value, -3i64..20), 1..20)
}

fn op(compact: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec(batch_spec(compact), 1..5), 0i32..3).prop_map(|(b, e)| Op::Append(b, e)),
        6 => (any::<u16>(), prop_oneof![Just(1usize), 1usize..6000, Just(1 << 20)], 0u8..3)
            .prop_map(|(o, m, b)| Op::Read(o, m, b)),
        3 => any::<u16>().prop_map(Op::TimeLookup),
        3 => any::<u16>().prop_map(Op::SetHw),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::TruncateTo(a, b)),
        1 => Just(Op::Roll),
        1 => (0u64..40_000).prop_map(Op::RetainBytes),
        1 => (any::<u16>(), 0i64..400).prop_map(|(a, b)| Op::RetainMs(a, b)),
        1 => any::<u16>().prop_map(move |s| if compact {
            Op::TimeLookup(s)
        } else {
            Op::AdvanceStart(s)
        }),
        2 => (0i64..300).prop_map(Op::Compact),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::DropReopen),
    ]
}

/// Maps a random `u16` onto `[lo, hi]`.
fn pick(sel: u16, lo: i64, hi: i64) -> i64 {
    lo + i64::from(sel) % (hi - lo + 1)
}

fn cfg_strategy() -> impl Strategy<Value = LogConfig> {
    (2048u64..8192, 256u64..1024, 96u64..240, any::<bool>()).prop_map(|(seg, ix, ixb, compact)| {
        LogConfig {
            segment_bytes: seg,
            index_interval_bytes: ix,
            segment_index_bytes: ixb,
            cleanup_policy: if compact {
                CleanupPolicy::Compact
            } else {
                CleanupPolicy::Delete
            },
            delete_retention_ms: 100,
            ..common::small_cfg()
        }
    })
}

struct Harness {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    cfg: LogConfig,
    log: Option<Log>,
    m: Model,
}

impl Harness {
    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    /// Index of the segment (in `segs`) holding `base`.
    fn seg_of(segs: &[SegmentInfo], base: i64) -> usize {
        segs.iter().rposition(|s| s.base_offset <= base).unwrap()
    }

    fn check_offsets(&self) {
        let log = self.log();
        assert_eq!(log.log_start_offset(), self.m.start, "log start");
        assert_eq!(log.log_end_offset(), self.m.end, "log end");
        assert_eq!(log.high_watermark(), self.m.hw, "high watermark");
    }

    /// Segments partition the model's batches: sizes and max timestamps agree.
    fn check_segments(&self) -> Vec<SegmentInfo> {
        let segs = self.log().segments();
        assert!(segs[0].base_offset <= self.m.start);
        for (i, s) in segs.iter().enumerate() {
            let next = segs.get(i + 1).map_or(i64::MAX, |n| n.base_offset);
            let inside: Vec<&MBatch> = self
                .m
                .batches
                .iter()
                .filter(|b| b.base >= s.base_offset && b.base < next)
                .collect();
            assert_eq!(
                s.size as usize,
                inside.iter().map(|b| b.size).sum::<usize>(),
                "size of segment {}",
                s.base_offset
            );
            assert_eq!(
                s.max_timestamp,
                inside.iter().map(|b| b.max_ts).max().unwrap_or(-1),
                "max timestamp of segment {}",
                s.base_offset
            );
            if let Some(b) = inside.last() {
                assert!(b.next() <= next, "batch crosses a segment boundary");
            }
        }
        segs
    }

    /// After retention, a log-start move or a reopen no segment lies wholly below
    /// the log start.
    fn check_no_segment_below_start(&self) {
        let segs = self.log().segments();
        if segs.len() > 1 {
            assert!(
                segs[1].base_offset > self.m.start,
                "a segment wholly below the log start survived"
            );
        }
    }

    /// Everything readable equals the model's batches at or above the log start.
    fn check_all(&self) {
        self.check_offsets();
        self.check_segments();
        let got = read_all(self.log());
        let want: Vec<&MBatch> = self
            .m
            .batches
            .iter()
            .filter(|b| b.next() > self.m.start)
            .collect();
        assert_eq!(got.len(), want.len(), "number of readable batches");
        for (g, w) in got.iter().zip(want) {
            assert_batch(g, w);
        }
    }

    fn check_read(&self, offset: i64, max_bytes: usize, bound: ReadBound) {
        let r = self.log().read(offset, max_bytes, bound);
        let m = &self.m;
        if offset < m.start || offset > m.end {
            assert!(
                matches!(r, Err(StorageError::OffsetOutOfRange { .. })),
                "read({offset}) out of [{}, {}]: {r:?}",
                m.start,
                m.end
            );
            return;
        }
        let r = r.unwrap();
        assert_eq!(
            (r.log_start_offset, r.log_end_offset, r.high_watermark),
            (m.start, m.end, m.hw)
        );
        let limit = if bound == ReadBound::LogEnd {
            m.end
        } else {
            m.hw
        };
        let segs = self.log().segments();
        let mut want: Vec<&MBatch> = Vec::new();
        if offset < limit {
            if let Some(i) = m.batches.iter().position(|b| b.last >= offset) {
                let seg = Self::seg_of(&segs, m.batches[i].base);
                let mut bytes = 0;
                for b in &m.batches[i..] {
                    let fits = want.is_empty() || bytes + b.size <= max_bytes;
                    if b.next() > limit || Self::seg_of(&segs, b.base) != seg || !fits {
                        break;
                    }
                    bytes += b.size;
                    want.push(b);
                }
            }
        }
        let got = split_batches(&r.records);
        assert_eq!(
            got.iter().map(|b| b.header.base_offset).collect::<Vec<_>>(),
            want.iter().map(|b| b.base).collect::<Vec<_>>(),
            "read({offset}, {max_bytes}, {bound:?}) batches"
        );
        for (g, w) in got.iter().zip(want) {
            assert_batch(g, w);
        }
    }

    fn check_time_lookup(&self, ts: i64) {
        let got = self.log().offset_for_timestamp(ts).unwrap();
        let want = self
            .m
            .batches
            .iter()
            .flat_map(|b| &b.records)
            .find(|r| r.offset >= self.m.start && r.offset < self.m.hw && r.timestamp >= ts)
            .map(|r| (r.offset, r.timestamp));
        assert_eq!(
            got.map(|t| (t.offset, t.timestamp)),
            want,
            "offset_for_timestamp({ts})"
        );
    }

    fn reopen(&mut self, clean: bool) {
        let log = self.log.take().unwrap();
        if clean {
            log.close().unwrap();
            assert!(matches!(
                log.read(self.m.start, 1, ReadBound::LogEnd),
                Err(StorageError::Closed(_))
            ));
        }
        drop(log);
        let (log, rep) = Log::open(&self.dir, "t-0", self.cfg.clone()).unwrap();
        assert_eq!(rep.clean_shutdown, clean);
        // bytes_truncated may count the zeros a truncate_to left at a segment's end,
        // segments_dropped the segments wholly below the log start.
        assert!(!rep.corruption_found, "{rep:?}");
        self.log = Some(log);
        self.m.hw = self.m.end;
        self.prune();
        self.check_no_segment_below_start();
        self.check_all();
    }

    fn apply(&mut self, op: &Op) {
        let (start, end) = (self.m.start, self.m.end);
        match op {
            Op::Append(specs, epoch) => {
                let mut buf = Vec::new();
                let mut next = end;
                let mut added = Vec::new();
                for spec in specs {
                    let records: Vec<RecordSpec> = spec
                        .iter()
                        .map(|(k, v, step)| {
                            self.m.clock += step;
                            let key = k.map(|k| format!("key-{k}").into_bytes());
                            let value = v.map(|n| vec![b'v'; usize::from(n)]);
                            (key, value, self.m.clock)
                        })
                        .collect();
                    let raw = build_batch(&records);
                    added.push(MBatch {
                        base: next,
                        last: next + records.len() as i64 - 1,
                        size: raw.len(),
                        max_ts: records.iter().map(|r| r.2).max().unwrap(),
                        epoch: *epoch,
                        records: records
                            .into_iter()
                            .enumerate()
                            .map(|(i, (key, value, timestamp))| MRecord {
                                offset: next + i as i64,
                                timestamp,
                                key,
                                value,
                            })
                            .collect(),
                    });
                    next += spec.len() as i64;
                    buf.extend_from_slice(&raw);
                }
                let keyless = added
                    .iter()
                    .flat_map(|b| &b.records)
                    .any(|r| r.key.is_none());
                if self.cfg.cleanup_policy.compacts() && keyless {
                    // A compacted log refuses a request holding a keyless record,
                    // and writes none of it.
                    let err = self.log().append(&buf, *epoch).unwrap_err();
                    assert!(
                        matches!(
                            err,
                            StorageError::InvalidBatch {
                                source: weir_storage::BatchError::InvalidRecord { .. }
                                    | weir_storage::BatchError::Records(_),
                                ..
                            }
                        ),
                        "{err}"
                    );
                    return;
                }
                let info = self.log().append(&buf, *epoch).unwrap();
                assert_eq!(
                    (info.base_offset, info.last_offset, info.bytes),
                    (end, next - 1, buf.len())
                );
                self.m.batches.extend(added);
                self.m.end = next;
            }
            Op::Read(sel, max_bytes, bound) => {
                let bound = [
                    ReadBound::LogEnd,
                    ReadBound::HighWatermark,
                    ReadBound::LastStable,
                ][usize::from(*bound)];
                self.check_read(pick(*sel, start - 2, end + 2), *max_bytes, bound);
            }
            Op::TimeLookup(sel) => {
                let ts = pick(*sel, -5, self.m.clock + 30);
                self.check_time_lookup(ts);
            }
            Op::SetHw(sel) => {
                let want = pick(*sel, start - 2, end + 2).clamp(start, end);
                assert_eq!(
                    self.log()
                        .set_high_watermark(pick(*sel, start - 2, end + 2))
                        .unwrap(),
                    want
                );
                self.m.hw = want;
            }
            Op::TruncateTo(a, b) => {
                // Inside a batch, at or past the end, or below the start.
                let target = match a % 4 {
                    0 => pick(*b, end, end + 3),
                    1 => pick(*b, start - 3, start - 1),
                    _ => match self
                        .m
                        .batches
                        .iter()
                        .filter(|x| x.next() > start)
                        .nth(usize::from(*b) % self.m.batches.len().max(1))
                    {
                        Some(x) => pick(*a, x.base.max(start), x.last),
                        None => end,
                    },
                };
                let r = self.log().truncate_to(target);
                if target >= end {
                    assert_eq!(r.unwrap(), end);
                } else if target < start {
                    assert!(
                        matches!(r, Err(StorageError::OffsetOutOfRange { .. })),
                        "truncate_to({target}): {r:?}"
                    );
                } else {
                    let segs = self.log().segments();
                    let keep = segs.iter().rev().find(|s| s.base_offset <= target).unwrap();
                    let b_base = self
                        .m
                        .batches
                        .iter()
                        .find(|x| x.last >= target)
                        .unwrap()
                        .base;
                    let cut = b_base.min(target);
                    self.m.batches.retain(|x| x.base < cut);
                    // The end is where the surviving batches end (a gap compaction left
                    // before the cut is not kept). A batch straddling the log start
                    // goes whole: the log is emptied and restarts at the log start.
                    let new_end = if b_base < start {
                        self.m.batches.clear();
                        start
                    } else {
                        self.m
                            .batches
                            .last()
                            .map_or(keep.base_offset, |x| x.next().max(keep.base_offset))
                    };
                    assert_eq!(r.unwrap(), new_end, "truncate_to({target})");
                    self.m.end = new_end;
                    self.m.hw = self.m.hw.min(new_end);
                }
                self.check_all();
            }
            Op::Roll => {
                let before = self.log().segments();
                self.log().roll().unwrap();
                let after = self.log().segments();
                let grew = usize::from(before.last().unwrap().size > 0);
                assert_eq!(after.len(), before.len() + grew);
                assert_eq!(
                    after.last().unwrap().base_offset,
                    if grew == 1 {
                        end
                    } else {
                        before.last().unwrap().base_offset
                    }
                );
            }
            Op::RetainBytes(bytes) => {
                let cfg = LogConfig {
                    retention_bytes: Some(*bytes),
                    ..self.cfg.clone()
                };
                self.retain(cfg, 0);
            }
            Op::RetainMs(sel, ms) => {
                let now = pick(*sel, 0, self.m.clock + 500);
                let cfg = LogConfig {
                    retention_ms: Some(*ms as u64),
                    ..self.cfg.clone()
                };
                self.retain(cfg, now);
            }
            Op::AdvanceStart(sel) => {
                let target = pick(*sel, start - 2, end + 2);
                let r = self.log().advance_log_start(target);
                if target > end {
                    assert!(matches!(r, Err(StorageError::OffsetOutOfRange { .. })));
                } else {
                    self.m.start = start.max(target);
                    self.m.hw = self.m.hw.max(self.m.start);
                    assert_eq!(r.unwrap(), self.m.start);
                    self.prune();
                    self.check_no_segment_below_start();
                }
                self.check_all();
            }
            Op::Compact(dt) => self.compact(self.m.clock - 150 + dt),
            Op::CloseReopen => self.reopen(true),
            Op::DropReopen => self.reopen(false),
        }
        self.check_offsets();
    }

    /// Drops model batches in segments deleted below the log start.
    fn prune(&mut self) {
        let first = self.log().segments()[0].base_offset;
        self.m.batches.retain(|b| b.base >= first);
    }

    fn retain(&mut self, cfg: LogConfig, now: i64) {
        let segs = self.check_segments();
        self.log().set_config(cfg.clone());
        let out = self.log().enforce_retention(now).unwrap();
        self.log().set_config(self.cfg.clone());
        if cfg.cleanup_policy.deletes() {
            let expired = |s: &SegmentInfo| {
                cfg.retention_ms
                    .is_some_and(|ms| s.max_timestamp < now - ms as i64)
            };
            let mut segs = segs;
            if segs.iter().all(|s| s.size == 0 || expired(s)) && segs.last().unwrap().size > 0 {
                segs.push(SegmentInfo {
                    base_offset: self.m.end,
                    size: 0,
                    max_timestamp: -1,
                });
            }
            let mut total: u64 = segs.iter().map(|s| s.size).sum();
            for i in 0..segs.len() - 1 {
                let too_big = cfg
                    .retention_bytes
                    .is_some_and(|b| total - segs[i].size >= b);
                if !(expired(&segs[i]) || too_big) {
                    break;
                }
                total -= segs[i].size;
                self.m.start = self.m.start.max(segs[i + 1].base_offset);
            }
            self.m.hw = self.m.hw.max(self.m.start);
        }
        assert_eq!(
            out.log_start_offset, self.m.start,
            "retention {cfg:?} at {now}"
        );
        self.prune();
        self.check_no_segment_below_start();
        self.check_all();
    }

    fn compact(&mut self, now: i64) {
        let segs = self.check_segments();
        let active = segs.last().unwrap().base_offset;
        let out = self.log().compact_at(now).unwrap();
        let got: Vec<MBatch> = read_all(self.log()).iter().map(MBatch::from_read).collect();
        if !self.cfg.cleanup_policy.compacts() {
            assert_eq!(out.segments_cleaned, 0);
            return self.check_all();
        }
        assert_eq!(
            self.m.start, 0,
            "compacted logs keep their start in these tests"
        );
        let horizon = now - self.cfg.delete_retention_ms as i64;
        let sealed: Vec<&MRecord> = self
            .m
            .batches
            .iter()
            .filter(|b| b.base < active)
            .flat_map(|b| &b.records)
            .collect();
        let survived: Vec<&MRecord> = got.iter().flat_map(|b| &b.records).collect();
        let mut removed = 0;
        for (i, r) in sealed.iter().enumerate() {
            let superseded = r.key.is_some() && sealed[i + 1..].iter().any(|l| l.key == r.key);
            let expired_tombstone = r.value.is_none() && r.timestamp < horizon;
            let should_go = superseded || (r.key.is_some() && expired_tombstone);
            let there = survived.iter().any(|s| s.offset == r.offset);
            assert_eq!(there, !should_go, "record {r:?} after compaction at {now}");
            removed += usize::from(should_go);
        }
        assert_eq!(out.records_removed as usize, removed);
        for s in &survived {
            let orig = self
                .m
                .batches
                .iter()
                .flat_map(|b| &b.records)
                .find(|r| r.offset == s.offset);
            assert_eq!(Some(*s), orig, "a surviving record changed");
        }
        for g in &got {
            let orig = self
                .m
                .batches
                .iter()
                .find(|b| b.base == g.base)
                .expect("batch offsets preserved");
            assert_eq!(
                (g.last, g.max_ts, g.epoch),
                (orig.last, orig.max_ts, orig.epoch)
            );
            if g.base >= active {
                assert_eq!(
                    (g.size, &g.records),
                    (orig.size, &orig.records),
                    "active segment untouched"
                );
            }
        }
        self.m.batches = got;
        self.check_all();
    }
}

fn assert_batch(g: &ReadBatch, w: &MBatch) {
    let h = g.header;
    assert_eq!(
        (
            h.base_offset,
            h.last_offset(),
            h.partition_leader_epoch,
            h.max_timestamp
        ),
        (w.base, w.last, w.epoch, w.max_ts)
    );
    assert_eq!(g.raw.len(), w.size);
    let got = MBatch::from_read(g);
    assert_eq!(got.records, w.records, "records of batch {}", w.base);
}

fn run(cfg: LogConfig, ops: Vec<Op>) {
    let tmp = common::tempdir();
    let dir = tmp.path().join("t-0");
    let (log, _) = Log::open(&dir, "t-0", cfg.clone()).unwrap();
    let mut h = Harness {
        _tmp: tmp,
        dir,
        cfg,
        log: Some(log),
        m: Model {
            clock: 1_000,
            ..Model::default()
        },
    };
    for op in &ops {
        h.apply(op);
    }
    h.reopen(false);
    h.reopen(true);
}

#[test]
fn log_matches_model() {
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    let config = Config {
        cases: 128,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 20_000,
        ..Config::default()
    };
    let strategy = cfg_strategy().prop_flat_map(|cfg| {
        let compact = cfg.cleanup_policy.compacts();
        (Just(cfg), prop::collection::vec(op(compact), 1..80))
    });
    let mut runner = TestRunner::new(config);
    // Shrinking panics hundreds of times: keep those quiet, report the minimal case.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = runner.run(&strategy, |(cfg, ops)| {
        run(cfg, ops);
        Ok(())
    });
    std::panic::set_hook(hook);
    match result {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(why, (cfg, ops))) => {
            panic!("{why}\nminimal failing case: {cfg:?}\n{ops:?}\nreplay with PROPTEST_RNG_SEED={seed}")
        }
        Err(e) => panic!("{e}"),
    }
}
