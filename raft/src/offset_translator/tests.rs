//! The translator against a naive model: every entry kept in a vector with its
//! Kafka offsets, through random appends, truncations, purges and reopens.

use std::path::Path;

use proptest::prelude::*;
use weir_storage::{BatchHeader, LogConfig};

use super::*;
use crate::sync_points::POINTS_FILE;

fn open(dir: &Path) -> (Log, OffsetTranslator) {
    let (log, _) = Log::open(dir, "t-0", LogConfig::default()).unwrap();
    let t = OffsetTranslator::open(&log).unwrap();
    (log, t)
}

/// A batch of `records` records whose values name the entry, so that every
/// batch's bytes differ.
fn batch(index: u64, records: usize) -> Vec<u8> {
    let recs: Vec<_> = (0..records)
        .map(|j| (None, Some(format!("{index}-{j}").into_bytes()), 1_000))
        .collect();
    weir_storage::record::build_batch(&recs)
}

#[derive(Debug, Clone)]
enum Kind {
    Data(usize),
    Other,
}

#[derive(Debug, Clone)]
enum ModelKind {
    Data { batch: Vec<u8>, base: i64 },
    Other(Vec<u8>),
}

#[derive(Debug, Clone)]
struct ModelEntry {
    id: EntryId,
    kind: ModelKind,
}

/// What the Raft log must hold: every entry, with the Kafka offset of each batch.
#[derive(Debug)]
struct Model {
    purged: Option<EntryId>,
    first_index: u64,
    entries: Vec<ModelEntry>,
    next_offset: i64,
    term: u64,
}

impl Model {
    fn new() -> Self {
        Self {
            purged: None,
            first_index: 0,
            entries: Vec::new(),
            next_offset: 0,
            term: 1,
        }
    }

    /// The Raft log right after a reset to restart after `after` at `offset`.
    fn after_reset(after: EntryId, offset: i64) -> Self {
        Self {
            purged: Some(after),
            first_index: after.index + 1,
            entries: Vec::new(),
            next_offset: offset,
            term: after.term,
        }
    }

    fn next_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.first_index, |e| e.id.index + 1)
    }

    fn last_id(&self) -> Option<EntryId> {
        self.entries.last().map(|e| e.id).or(self.purged)
    }

    /// Builds the entries to append and records them.
    fn append(&mut self, kinds: &[Kind]) -> Vec<NewEntry> {
        let mut out = Vec::new();
        for k in kinds {
            let id = EntryId {
                index: self.next_index(),
                term: self.term,
            };
            let (kind, new) = match k {
                Kind::Data(n) => {
                    let b = batch(id.index, *n);
                    let base = self.next_offset;
                    self.next_offset += *n as i64;
                    let new = NewEntry::Data {
                        id,
                        batch: Bytes::from(b.clone()),
                    };
                    (ModelKind::Data { batch: b, base }, new)
                }
                Kind::Other => {
                    let p = format!("{{\"at\":{}}}", id.index).into_bytes();
                    let new = NewEntry::Other {
                        id,
                        payload: p.clone(),
                    };
                    (ModelKind::Other(p), new)
                }
            };
            self.entries.push(ModelEntry { id, kind });
            out.push(new);
        }
        out
    }

    fn truncate_after(&mut self, after: Option<u64>) {
        let keep = |e: &ModelEntry| after.is_some_and(|a| e.id.index <= a);
        if let Some(base) = self.entries.iter().find_map(|e| match &e.kind {
            ModelKind::Data { base, .. } if !keep(e) => Some(*base),
            _ => None,
        }) {
            self.next_offset = base;
        }
        self.entries.retain(keep);
    }

    fn purge(&mut self, upto: EntryId) {
        if self.purged.is_some_and(|p| p.index >= upto.index) {
            return;
        }
        self.purged = Some(upto);
        self.first_index = self.first_index.max(upto.index + 1);
        self.entries.retain(|e| e.id.index > upto.index);
    }

    fn offset_after(&self, index: u64) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.id.index > index)
            .find_map(|e| match e.kind {
                ModelKind::Data { base, .. } => Some(base),
                ModelKind::Other(_) => None,
            })
            .unwrap_or(self.next_offset)
    }
}

/// Asserts the translator holds exactly what the model holds.
fn check(model: &Model, log: &Log, t: &mut OffsetTranslator) {
    assert_eq!(t.last_id(), model.last_id(), "last id");
    assert_eq!(t.next_index(), model.next_index(), "next index");
    assert_eq!(t.next_offset(), model.next_offset, "next offset");
    assert_eq!(log.log_end_offset(), model.next_offset, "log end");
    let got = t.read(log, 0, u64::MAX).unwrap();
    assert_eq!(got.len(), model.entries.len(), "entries read");
    for (g, m) in got.iter().zip(&model.entries) {
        assert_eq!(g.id(), m.id);
        match (g, &m.kind) {
            (StoredEntry::Data { batch, .. }, ModelKind::Data { batch: want, base }) => {
                let h = BatchHeader::parse(batch).unwrap();
                assert_eq!(h.base_offset, *base, "base offset of {}", m.id.index);
                assert_eq!(h.partition_leader_epoch as u64, m.id.term);
                assert_eq!(batch[8..12], want[8..12]);
                assert_eq!(batch[16..], want[16..], "bytes of {}", m.id.index);
            }
            (StoredEntry::Other { payload, .. }, ModelKind::Other(want)) => {
                assert_eq!(payload, want)
            }
            (g, m) => panic!("kind differs: {g:?} vs {m:?}"),
        }
    }
    // Single reads from every position (walks from points and the anchor).
    for m in model.entries.iter().step_by(7) {
        let one = t.read(log, m.id.index, m.id.index + 1).unwrap();
        assert_eq!(one[0].id(), m.id);
    }
    let first = model.first_index.saturating_sub(1);
    for i in first..model.next_index() + 2 {
        if i + 1 < model.first_index {
            continue;
        }
        assert_eq!(
            t.kafka_offset_after(log, i).unwrap(),
            model.offset_after(i),
            "offset after {i}"
        );
    }
    for m in &model.entries {
        if let ModelKind::Data { base, batch } = &m.kind {
            let n = BatchHeader::parse(batch).unwrap().record_count as i64;
            for o in [*base, base + n - 1] {
                assert_eq!(t.raft_index_of(log, o).unwrap(), Some(m.id.index));
            }
        }
    }
    assert_eq!(t.raft_index_of(log, model.next_offset).unwrap(), None);
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Kind>),
    NewTerm,
    Truncate(u16),
    Purge(u16),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![4 => (1usize..4).prop_map(Kind::Data), 1 => Just(Kind::Other)];
    prop_oneof![
        8 => prop::collection::vec(kind, 1..12).prop_map(Op::Append),
        1 => Just(Op::NewTerm),
        2 => any::<u16>().prop_map(Op::Truncate),
        1 => any::<u16>().prop_map(Op::Purge),
        1 => Just(Op::Reopen),
    ]
}

fn apply(op: &Op, model: &mut Model, log: &mut Log, t: &mut OffsetTranslator, dir: &Path) {
    match op {
        Op::Append(kinds) => {
            let entries = model.append(kinds);
            t.append(log, entries).unwrap();
        }
        Op::NewTerm => model.term += 1,
        Op::Truncate(k) => {
            let len = model.entries.len() as u64;
            let pick = u64::from(*k) % (len + 1);
            // `after` ranges over [first_index - 1, last]; below the first index
            // it is the purged id, or None when nothing was purged.
            let after = (model.first_index + pick).checked_sub(1);
            let after = match (after, model.purged) {
                (Some(a), _) if a >= model.first_index => Some(a),
                (_, Some(p)) => Some(p.index),
                (a, None) => a.filter(|a| *a >= model.first_index),
            };
            model.truncate_after(after);
            t.truncate_after(log, after).unwrap();
        }
        Op::Purge(k) => {
            let len = model.entries.len() as u64;
            let index = model.first_index + u64::from(*k) % (len + 3);
            let term = model
                .entries
                .iter()
                .find(|e| e.id.index == index)
                .map_or(model.term, |e| e.id.term);
            let upto = EntryId { index, term };
            let upto = match model.last_id() {
                Some(l) if index > l.index && term < l.term => EntryId {
                    term: l.term,
                    ..upto
                },
                _ => upto,
            };
            model.purge(upto);
            t.purge(log, upto).unwrap();
        }
        Op::Reopen => {
            let (l, tr) = reopen(dir, log, t);
            *log = l;
            *t = tr;
        }
    }
}

/// Drops both (no clean close, as after a crash of the process) and reopens.
fn reopen(dir: &Path, log: &mut Log, t: &mut OffsetTranslator) -> (Log, OffsetTranslator) {
    // Replace with throwaway values so the originals drop before reopening.
    let tmp = tempfile::tempdir().unwrap();
    let (l, tr) = open(tmp.path());
    drop(std::mem::replace(t, tr));
    drop(std::mem::replace(log, l));
    open(dir)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn translator_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut t) = open(dir.path());
        let mut model = Model::new();
        for op in &ops {
            apply(op, &mut model, &mut log, &mut t, dir.path());
            check(&model, &log, &mut t);
        }
        let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
        check(&model, &log, &mut t);
    }
}

fn run(model: &mut Model, log: &Log, t: &mut OffsetTranslator, kinds: &[Kind]) {
    let entries = model.append(kinds);
    t.append(log, entries).unwrap();
}

fn mixed(n: usize) -> Vec<Kind> {
    (0..n)
        .map(|i| {
            if i % 10 == 3 {
                Kind::Other
            } else {
                Kind::Data(1 + i % 3)
            }
        })
        .collect()
}

#[test]
fn sync_points_every_64_data_entries_and_rebuilt_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(400));
    let points = t.points.clone();
    let data = model
        .entries
        .iter()
        .filter(|e| matches!(e.kind, ModelKind::Data { .. }))
        .count() as u64;
    assert_eq!(points.len() as u64, (data - 1) / POINT_SPACING);
    check(&model, &log, &mut t);

    // The points file lost its tail (never fsynced): rebuilt by the walk on open.
    let path = dir.path().join(POINTS_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 16 - 5]).unwrap();
    let (l, mut tr) = reopen(dir.path(), &mut log, &mut t);
    assert_eq!(tr.points, points);
    check(&model, &l, &mut tr);
    drop((l, tr));

    // Lost entirely: rebuilt as well.
    std::fs::remove_file(&path).unwrap();
    let (l, mut tr) = open(dir.path());
    assert_eq!(tr.points, points);
    check(&model, &l, &mut tr);
}

#[test]
fn points_beyond_the_recovered_log_end_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(300));
    // The machine lost the log's tail (page cache) but the points file kept
    // points of the lost entries: simulate by cutting the log behind the
    // translator's back, then reopening.
    let cut = model.entries[150].id.index;
    let lost_from = model.offset_after(cut - 1);
    log.truncate_to(lost_from).unwrap();
    model.truncate_after(Some(cut - 1));
    let (l, mut tr) = reopen(dir.path(), &mut log, &mut t);
    assert!(tr.points.iter().all(|p| p.offset < lost_from));
    check(&model, &l, &mut tr);
    // And the log continues consistently.
    let mut log = l;
    run(&mut model, &log, &mut tr, &mixed(100));
    check(&model, &log, &mut tr);
    let (l, mut tr) = reopen(dir.path(), &mut log, &mut tr);
    check(&model, &l, &mut tr);
}

#[test]
fn side_entries_past_a_hole_in_the_log_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    // 0 data, 1 data, 2 other, 3 data, 4 other
    run(
        &mut model,
        &log,
        &mut t,
        &[
            Kind::Data(2),
            Kind::Data(1),
            Kind::Other,
            Kind::Data(3),
            Kind::Other,
        ],
    );
    // Data of entries 1.. lost (written to the page cache only), side entries
    // 2 and 4 survived: the log ends at 0.
    log.truncate_to(2).unwrap();
    model.truncate_after(Some(0));
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
    run(&mut model, &log, &mut t, &[Kind::Other, Kind::Data(1)]);
    check(&model, &log, &mut t);
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

#[test]
fn a_crash_inside_truncate_leaves_a_prefix_of_the_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    // 0 data, 1 data, 2 other, 3 other, 4 data
    run(
        &mut model,
        &log,
        &mut t,
        &[
            Kind::Data(2),
            Kind::Data(1),
            Kind::Other,
            Kind::Other,
            Kind::Data(3),
        ],
    );
    // truncate_after(1) crashed after cutting the partition log (first step)
    // but before rewriting the side file: entries 2 and 3 remain, a prefix of
    // the old log.
    let cut = model.offset_after(1);
    log.truncate_to(cut).unwrap();
    model.entries.truncate(4);
    model.next_offset = cut;
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
    model.truncate_after(Some(1));
    t.truncate_after(&log, Some(1)).unwrap();
    run(&mut model, &log, &mut t, &[Kind::Data(1)]);
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

#[test]
fn purge_keeps_the_translation_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(200));
    let upto = model.entries[120].id;
    model.purge(upto);
    t.purge(&log, upto).unwrap();
    check(&model, &log, &mut t);
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
    assert_eq!(
        t.kafka_offset_after(&log, upto.index).unwrap(),
        model.offset_after(upto.index)
    );
    assert!(matches!(
        t.kafka_offset_after(&log, upto.index - 1),
        Err(RaftStoreError::Purged { .. })
    ));
    // Purge everything, past the last entry: the next entry continues the offsets.
    let beyond = EntryId {
        index: model.next_index() + 5,
        term: model.term,
    };
    model.purge(beyond);
    t.purge(&log, beyond).unwrap();
    check(&model, &log, &mut t);
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
    run(&mut model, &log, &mut t, &mixed(20));
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

#[test]
fn a_torn_side_record_is_cut_and_the_log_ends_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &[Kind::Data(1), Kind::Other]);
    let path = dir.path().join(crate::side_entries::SIDE_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    model.entries.truncate(1);
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
    run(&mut model, &log, &mut t, &[Kind::Other, Kind::Data(2)]);
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

#[test]
fn data_already_in_the_partition_log_stays_outside_the_raft_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = Log::open(dir.path(), "t-0", LogConfig::default()).unwrap();
        log.append(&batch(99, 5), 0).unwrap();
    }
    let (log, mut t) = open(dir.path());
    assert_eq!(t.anchor().first_offset, 5);
    let mut model = Model::new();
    model.next_offset = 5;
    run(&mut model, &log, &mut t, &mixed(10));
    check(&model, &log, &mut t);
    assert_eq!(t.raft_index_of(&log, 2).unwrap(), None);
}

/// Damage on disk cut the partition log below the anchor (recovery truncates
/// at the first bad batch, and a one-voter group's anchor sits at its end
/// after any retention): the translation opens, the log continues at the
/// anchor's offset, and the entries after the anchor are gone (a replicated
/// group's leader sends them again).
#[test]
fn a_log_damaged_below_the_anchor_continues_at_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(10));
    let upto = model.entries[8].id;
    model.purge(upto);
    t.purge(&log, upto).unwrap();
    let anchor = t.anchor();
    assert!(anchor.first_offset > 3);
    log.truncate_to(3).unwrap();
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    model.entries.clear();
    model.next_offset = anchor.first_offset;
    check(&model, &log, &mut t);
    assert_eq!(log.log_start_offset(), 0, "the intact records below stay");
    run(&mut model, &log, &mut t, &mixed(10));
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

/// A one-voter group stores its snapshot before it purges what the
/// snapshot covers: a log damaged below both continues at the snapshot's
/// offset (not the anchor's), keeping the intact records below it, so the
/// restart does not install the snapshot over a log that misses it (which
/// drops every record).
#[test]
fn a_log_damaged_below_a_snapshot_past_the_anchor_continues_at_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(12));
    let upto = model.entries[4].id;
    model.purge(upto);
    t.purge(&log, upto).unwrap();
    assert!(t.anchor().first_offset > 3);
    let snapshot = model.entries[5].id;
    let next = model.offset_after(snapshot.index);
    crate::state_machine::store_snapshot_point(
        dir.path(),
        crate::types::log_id(snapshot.term, snapshot.index),
        next,
    );
    log.truncate_to(3).unwrap();
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    let mut model = Model::after_reset(snapshot, next);
    check(&model, &log, &mut t);
    assert_eq!(t.anchor().first_offset, next);
    assert_eq!(log.log_start_offset(), 0, "the intact records below stay");
    run(&mut model, &log, &mut t, &mixed(10));
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

/// A snapshot past the anchor over a log that holds its entries (the
/// purge had not run yet) changes nothing.
#[test]
fn a_snapshot_past_the_anchor_over_an_intact_log_keeps_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(12));
    let upto = model.entries[4].id;
    model.purge(upto);
    t.purge(&log, upto).unwrap();
    let anchor = t.anchor();
    let snapshot = model.entries[5].id;
    crate::state_machine::store_snapshot_point(
        dir.path(),
        crate::types::log_id(snapshot.term, snapshot.index),
        model.offset_after(snapshot.index),
    );
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    assert_eq!(t.anchor(), anchor);
    check(&model, &log, &mut t);
}

/// Sequential one-entry reads (a replication stream) with and without the
/// recent-position cache. Run with `--ignored --nocapture` to see the figures.
#[test]
#[ignore = "measurement"]
fn measure_sequential_single_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut t) = open(dir.path());
    let mut model = Model::new();
    for _ in 0..20 {
        run(&mut model, &log, &mut t, &mixed(500));
    }
    let n = model.next_index();
    for cached in [true, false] {
        let start = std::time::Instant::now();
        for i in 0..n {
            if !cached {
                t.recent = [None; RECENT];
            }
            let e = t.read(&log, i, i + 1).unwrap();
            assert_eq!(e[0].id().index, i);
        }
        let per = start.elapsed() / n as u32;
        println!("{n} entries, cache {cached}: {per:?} per single-entry read");
    }
}

#[test]
fn raft_files_without_their_anchor_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &[Kind::Other, Kind::Data(1)]);
    let (l, tr) = reopen(dir.path(), &mut log, &mut t);
    drop((l, tr));
    std::fs::remove_file(dir.path().join(ANCHOR_FILE)).unwrap();
    let (log, _) = Log::open(dir.path(), "t-0", LogConfig::default()).unwrap();
    let err = OffsetTranslator::open(&log).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

/// A follower installs a snapshot its log does not reach: the partition log
/// restarts empty at the snapshot's offset and the Raft log right after the
/// snapshot's entry, across a reopen, and appends continue from there.
#[test]
fn a_reset_restarts_both_logs_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(50));
    let after = EntryId {
        index: model.next_index() + 100,
        term: model.term + 1,
    };
    let offset = model.next_offset + 1_000;
    assert!(!t.covers(&log, after).unwrap());
    t.reset_after(&log, after, offset, None).unwrap();
    model = Model::after_reset(after, offset);
    check(&model, &log, &mut t);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (offset, offset)
    );
    assert!(t.covers(&log, after).unwrap(), "purged up to the snapshot");
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
    run(&mut model, &log, &mut t, &mixed(30));
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

/// A crash during a reset (its marker on disk, the logs untouched) is
/// finished by the next open: never the old entries under the new anchor.
#[test]
fn an_interrupted_reset_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(40));
    let after = EntryId {
        index: model.next_index() + 7,
        term: model.term,
    };
    let offset = model.next_offset + 50;
    let marker = Anchor {
        purged: Some(after),
        first_index: after.index + 1,
        first_offset: offset,
    };
    std::fs::write(
        dir.path().join(RESET_FILE),
        serde_json::to_vec(&marker).unwrap(),
    )
    .unwrap();
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    let model = Model::after_reset(after, offset);
    check(&model, &log, &mut t);
    assert_eq!(log.log_start_offset(), offset);
    assert!(!dir.path().join(RESET_FILE).exists());
}

/// The snapshot boundary for a log start: the entry just before the batch
/// holding that offset (a non-data entry counts), and that batch's base.
#[test]
fn entry_before_names_the_entry_preceding_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(
        &mut model,
        &log,
        &mut t,
        &[Kind::Data(2), Kind::Other, Kind::Data(3), Kind::Data(1)],
    );
    let ids: Vec<EntryId> = model.entries.iter().map(|e| e.id).collect();
    assert_eq!(
        t.entry_before(&log, 0).unwrap(),
        Some((None, 0)),
        "nothing before"
    );
    assert_eq!(
        t.entry_before(&log, 1).unwrap(),
        Some((None, 0)),
        "inside the first batch"
    );
    assert_eq!(t.entry_before(&log, 2).unwrap(), Some((Some(ids[1]), 2)));
    assert_eq!(
        t.entry_before(&log, 4).unwrap(),
        Some((Some(ids[1]), 2)),
        "inside a batch"
    );
    assert_eq!(t.entry_before(&log, 5).unwrap(), Some((Some(ids[2]), 5)));
    assert_eq!(
        t.entry_before(&log, 6).unwrap(),
        Some((Some(ids[3]), 6)),
        "the log end"
    );
    assert_eq!(t.entry_before(&log, 7).unwrap(), None, "past the end");
}

/// A crash during a reset that keeps staged segments (a compacted leader's
/// records below its snapshot): the next open finishes it with the staged
/// records below the new anchor, the log starting where they start, and the
/// staging directory gone.
#[test]
fn an_interrupted_reset_with_staged_segments_keeps_them_below_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(20));
    let after = EntryId {
        index: model.next_index() + 7,
        term: model.term,
    };
    let offset = model.next_offset + 500;
    let (staged, _) = Log::open(
        &dir.path().join(STAGING_DIR),
        "staged",
        LogConfig::default(),
    )
    .unwrap();
    staged.reset_to(offset - 100).unwrap();
    let mut b = batch(999, 3);
    b[..8].copy_from_slice(&(offset - 90).to_be_bytes());
    staged.append_replicated(&b).unwrap();
    staged.close().unwrap();
    drop(staged);
    let marker = ResetMarker {
        anchor: Anchor {
            purged: Some(after),
            first_index: after.index + 1,
            first_offset: offset,
        },
        prefix_start: Some(offset - 95),
    };
    std::fs::write(
        dir.path().join(RESET_FILE),
        serde_json::to_vec(&marker).unwrap(),
    )
    .unwrap();
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    let model = Model::after_reset(after, offset);
    check(&model, &log, &mut t);
    assert_eq!(log.log_start_offset(), offset - 95);
    let read = log
        .read(offset - 95, 1 << 20, weir_storage::ReadBound::LogEnd)
        .unwrap();
    assert_eq!(read.records.as_ref(), &b[..], "the staged batch is kept");
    assert!(!dir.path().join(RESET_FILE).exists());
    assert!(!dir.path().join(STAGING_DIR).exists());
}

/// A batch whose base offset was damaged on disk (outside its CRC, so the
/// segment's own recovery keeps it) is out of place for the Raft log: the
/// translation opens with the log cut before it, as for a torn tail.
#[test]
fn a_batch_out_of_place_cuts_the_log_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &mixed(20));
    let (index, base) = model
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            ModelKind::Data { base, .. } => Some((e.id.index, base)),
            ModelKind::Other(_) => None,
        })
        .nth(6)
        .unwrap();
    let seg = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut pos = 0;
    loop {
        let at = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
        if at == base {
            bytes[pos + 4] ^= 0x40;
            break;
        }
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
        pos += 12 + usize::try_from(len).unwrap();
    }
    std::fs::write(&seg, &bytes).unwrap();
    let (mut log, mut t) = reopen(dir.path(), &mut log, &mut t);
    model.truncate_after(Some(index - 1));
    check(&model, &log, &mut t);
    run(&mut model, &log, &mut t, &mixed(5));
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
}

/// Found from outside (a three-node cluster): DeleteRecords inside a batch
/// (Kafka's log start may fall mid-batch) left the batch holding the new
/// start in the Raft log, which is right, since its later records are still
/// data; but the log refused reads below its start, so the next reopen of
/// the replica failed ("offset 0 out of range [40, 100]") and the partition
/// went offline there, as did a leader's reads for a follower. The Raft log
/// reads whole batches: the one holding the log start is read from its base.
#[test]
fn a_log_start_inside_a_batch_keeps_that_batch_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut t) = open(dir.path());
    let mut model = Model::new();
    run(&mut model, &log, &mut t, &[Kind::Data(100), Kind::Data(5)]);
    let first = model.entries[0].id;
    assert_eq!(log.advance_log_start(40).unwrap(), 40);
    let read = t.read(&log, first.index, first.index + 2).unwrap();
    assert_eq!(read.len(), 2, "{read:?}");
    let (log, mut t) = reopen(dir.path(), &mut log, &mut t);
    check(&model, &log, &mut t);
    assert_eq!(t.kafka_offset_after(&log, first.index).unwrap(), 100);
}
