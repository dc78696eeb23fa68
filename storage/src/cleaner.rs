//! Log compaction (`cleanup.policy=compact`): keep the last record per key.
//!
//! The cleaner works on sealed segments only. It reads them zero-copy without the
//! log's lock, builds a map from key to latest offset, and writes each segment that
//! loses records to `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`),
//! preserving offsets, timestamps, producer fields and codec of every batch. The
//! swap, under the lock, is crash-safe:
//!
//! 1. `<base>.log.cleaned` → `<base>.log.swap` (the commit point), dir fsynced;
//! 2. the old `<base>.index` and `<base>.timeindex` are deleted;
//! 3. `.log.swap` → `.log` (atomic replace), the cleaned indexes renamed into place.
//!
//! A segment cleaning leaves without a record is removed instead (its indexes,
//! then its log), except the first, which holds the log start.
//!
//! Then neighbouring cleaned segments that fit one segment together
//! (`segment.bytes`, and offsets that fit its relative index) are merged into
//! the first of them, as Kafka's cleaner groups segments, so that a compacted
//! topic does not pile up one small segment per roll: `<first>.log.cleaned`
//! holds their batches in order, and the swap above commits it, deleting the
//! others before the rename. Recovery that finds `<base>.log.swap` deletes
//! every segment whose base lies inside the swap's offsets (they are in it).
//!
//! Recovery finishes a swap it finds and rebuilds that segment's indexes; it deletes
//! `.cleaned` files without a swap. Readers holding bytes of the old segment keep a
//! valid mapping of the (unlinked) old file, so reads during cleaning stay correct.
//! Tombstones (null values) are dropped once their timestamp is older than
//! `delete.retention.ms`; records without a key are kept.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use crate::batch::{BatchHeader, HeaderWalk};
use crate::checkpoint::sync_dir;
use crate::error::{io_err, Result, StorageError};
use crate::log::{now_ms, remove_files, Log, State};
use crate::record::{decode_records, rebuild_batch, stored_limit};
use crate::segment::{file_name, Segment};

/// What one cleaning pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Segments removed because no record of theirs was left.
    pub segments_removed: usize,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Bytes of the rewritten segments before cleaning.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after cleaning.
    pub bytes_after: u64,
    /// Segments merged into the segment before them (their files are gone,
    /// their batches are in it).
    pub segments_merged: usize,
}

struct Snapshot {
    base: i64,
    id: u64,
    data: Bytes,
}

fn corrupt(dir: &Path, base: i64, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        path: dir.join(file_name(base, ".log")),
        reason: e.to_string(),
    }
}

impl Log {
    /// Compacts the sealed segments if the cleanup policy asks for it.
    pub fn compact(&self) -> Result<CompactionOutcome> {
        self.compact_at(now_ms())
    }

    /// [`Log::compact`] with an explicit clock, for tests.
    pub fn compact_at(&self, now_ms: i64) -> Result<CompactionOutcome> {
        self.compact_below(i64::MAX, now_ms)
    }

    /// Where the segments compaction would clean now end (the base of the
    /// first segment it leaves alone), or `None` when there is nothing to
    /// clean: a replicated partition releases its Raft log up to this point
    /// first, then compacts with [`Log::compact_below`].
    pub fn cleanable_end(&self, now_ms: i64) -> Result<Option<i64>> {
        let st = self.lock()?;
        let n = cleanable(&st, now_ms, i64::MAX).count();
        Ok((n > 0)
            .then(|| st.segments.keys().nth(n).copied())
            .flatten())
    }

    /// Compacts the sealed segments that end at or below `limit` (the
    /// cleanable range of [`Log::compact`], cut there).
    pub fn compact_below(&self, limit: i64, now_ms: i64) -> Result<CompactionOutcome> {
        let (snaps, cfg) = {
            let st = self.lock()?;
            if !st.cfg.cleanup_policy.compacts() {
                return Ok(CompactionOutcome::default());
            }
            let snaps: Vec<Snapshot> = cleanable(&st, now_ms, limit)
                .map(|s| Snapshot {
                    base: s.base_offset,
                    id: s.id,
                    data: s.data(),
                })
                .collect();
            (snaps, st.cfg.clone())
        };
        let dir = self.dir().to_path_buf();
        let record_limit = stored_limit(cfg.max_message_bytes);
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for snap in &snaps {
            for (at, h) in HeaderWalk::new(&snap.data, 0) {
                if h.is_control() {
                    continue;
                }
                let batch = snap.data.slice(at..at + h.size());
                for r in
                    decode_records(&batch, record_limit).map_err(|e| corrupt(&dir, snap.base, e))?
                {
                    if let Some(k) = r.key {
                        latest.insert(k, r.offset);
                    }
                }
            }
        }
        let horizon = now_ms.saturating_sub(cfg.delete_retention_ms as i64);
        let mut outcome = CompactionOutcome::default();
        for snap in &snaps {
            let Some((batches, removed)) =
                clean_segment(snap, &latest, horizon, &dir, record_limit)?
            else {
                continue;
            };
            if batches.is_empty() {
                match self.remove_emptied(snap)? {
                    Some(true) => {
                        outcome.segments_removed += 1;
                        outcome.records_removed += removed;
                        outcome.bytes_before += snap.data.len() as u64;
                        continue;
                    }
                    Some(false) => continue,
                    // The first segment holds the log start: kept, empty.
                    None => {}
                }
            }
            let mut seg = Segment::create(&dir, snap.base, &cfg, ".cleaned")?;
            for b in &batches {
                let h = BatchHeader::parse(b).map_err(|e| corrupt(&dir, snap.base, e))?;
                seg.append(b, &[(0, h)], &cfg, now_ms)?;
            }
            seg.seal()?;
            seg.sync_all()?;
            let after = seg.size() as u64;
            drop(seg);
            if self.swap_in(std::slice::from_ref(snap))? {
                outcome.segments_cleaned += 1;
                outcome.records_removed += removed;
                outcome.bytes_before += snap.data.len() as u64;
                outcome.bytes_after += after;
            }
        }
        outcome.segments_merged = self.merge_below(limit, now_ms)?;
        if outcome.segments_cleaned + outcome.segments_removed + outcome.segments_merged > 0 {
            tracing::info!(log = self.name(), ?outcome, "compacted");
        }
        Ok(outcome)
    }

    /// Removes the live segment `snap.base`, which cleaning left without a
    /// record: `Some(true)` when removed, `Some(false)` when it changed
    /// meanwhile, `None` when it is the first segment (it holds the log
    /// start, so it stays, empty). The indexes go first: a crash between
    /// leaves a log file whose indexes recovery rebuilds.
    fn remove_emptied(&self, snap: &Snapshot) -> Result<Option<bool>> {
        let dir = self.dir().to_path_buf();
        let f = |s: &str| dir.join(file_name(snap.base, s));
        let mut st = self.lock()?;
        if st.segments.keys().next() == Some(&snap.base) {
            return Ok(None);
        }
        let last = st.segments.keys().next_back().copied();
        let unchanged =
            st.segments.get(&snap.base).is_some_and(|s| s.id == snap.id) && last != Some(snap.base);
        if !unchanged {
            return Ok(Some(false));
        }
        st.segments.remove(&snap.base);
        remove_files(&[f(".index"), f(".timeindex")])?;
        remove_files(&[f(".log")])?;
        sync_dir(&dir)?;
        Ok(Some(true))
    }

    /// Merges each run of neighbouring cleanable segments below `limit` that
    /// fits one segment into the first of the run (see the module docs);
    /// returns how many segments were merged away.
    fn merge_below(&self, limit: i64, now_ms: i64) -> Result<usize> {
        let (runs, cfg) = {
            let st = self.lock()?;
            let segs: Vec<&Segment> = cleanable(&st, now_ms, limit).collect();
            let mut runs: Vec<Vec<Snapshot>> = Vec::new();
            let mut run: Vec<Snapshot> = Vec::new();
            let mut bytes = 0u64;
            let ends = st.segments.keys().skip(1);
            for (seg, end) in segs.into_iter().zip(ends) {
                let fits = run.first().is_some_and(|first| {
                    bytes + seg.size() as u64 <= st.cfg.segment_bytes
                        && end - first.base <= i64::from(u32::MAX) / 2
                });
                if !fits {
                    runs.push(std::mem::take(&mut run));
                    bytes = 0;
                }
                bytes += seg.size() as u64;
                run.push(Snapshot {
                    base: seg.base_offset,
                    id: seg.id,
                    data: seg.data(),
                });
            }
            runs.push(run);
            for run in &mut runs {
                // A head holding more than the rest would be copied again
                // for less than it weighs: it stays, and the rest merge
                // among themselves. So a byte is copied again only when
                // what it is merged with at least doubles, not once per
                // roll of a small segment behind a big merged one.
                let mut rest: u64 = run.iter().map(|s| s.data.len() as u64).sum();
                while run.len() > 1 && run[0].data.len() as u64 * 2 > rest {
                    rest -= run.remove(0).data.len() as u64;
                }
            }
            runs.retain(|r| r.len() > 1);
            (runs, st.cfg.clone())
        };
        let dir = self.dir().to_path_buf();
        let mut merged = 0;
        for run in runs {
            let mut seg = Segment::create(&dir, run[0].base, &cfg, ".cleaned")?;
            for snap in &run {
                let mut walk = HeaderWalk::new(&snap.data, 0);
                let headers: Vec<(usize, BatchHeader)> = walk.by_ref().collect();
                if walk.end() > 0 {
                    seg.append(&snap.data[..walk.end()], &headers, &cfg, now_ms)?;
                }
            }
            seg.seal()?;
            seg.sync_all()?;
            drop(seg);
            if self.swap_in(&run)? {
                merged += run.len() - 1;
            }
        }
        Ok(merged)
    }

    /// Replaces the live segments of `run` (neighbours, one segment when
    /// only cleaned) by the cleaned files of the first: false when one of
    /// them changed meanwhile (then the cleaned files are discarded). The
    /// swap file is the commit point; the others' files go before it is
    /// renamed into place (recovery deletes what a crash left of them).
    fn swap_in(&self, run: &[Snapshot]) -> Result<bool> {
        let Some(snap) = run.first() else {
            return Ok(false);
        };
        let dir = self.dir().to_path_buf();
        let f = |s: &str| dir.join(file_name(snap.base, s));
        let mut st = self.lock()?;
        let last = st.segments.keys().next_back().copied();
        let unchanged = run.iter().all(|snap| {
            st.segments.get(&snap.base).is_some_and(|s| s.id == snap.id) && last != Some(snap.base)
        });
        if !unchanged {
            remove_files(&[
                f(".log.cleaned"),
                f(".index.cleaned"),
                f(".timeindex.cleaned"),
            ])?;
            return Ok(false);
        }
        let rename = |from: &str, to: &str| std::fs::rename(f(from), f(to)).map_err(io_err(f(to)));
        rename(".log.cleaned", ".log.swap")?;
        sync_dir(&dir)?;
        remove_files(&[f(".index"), f(".timeindex")])?;
        // The merged neighbours leave the map only once their files are
        // gone and the merged segment is in place: until then they serve
        // reads from their mappings.
        for other in &run[1..] {
            if let Some(seg) = st.segments.get(&other.base) {
                let [log, index, times] = seg.files();
                remove_files(&[index, times])?;
                remove_files(&[log])?;
            }
        }
        rename(".log.swap", ".log")?;
        rename(".index.cleaned", ".index")?;
        rename(".timeindex.cleaned", ".timeindex")?;
        sync_dir(&dir)?;
        for other in &run[1..] {
            st.segments.remove(&other.base);
        }
        let (seg, _) = Segment::open(&dir, snap.base, &st.cfg, false, false)?;
        st.segments.insert(snap.base, seg);
        Ok(true)
    }
}

/// The sealed segments compaction may clean at `now_ms` that end at or below
/// `limit`: min.compaction.lag.ms ends the range at the first segment holding
/// a record younger than the lag.
fn cleanable(st: &State, now_ms: i64, limit: i64) -> impl Iterator<Item = &Segment> {
    let lag = i64::try_from(st.cfg.min_compaction_lag_ms).unwrap_or(i64::MAX);
    let settled = now_ms.saturating_sub(lag);
    let ends = st.segments.keys().skip(1);
    st.segments
        .values()
        .zip(ends)
        .take_while(move |(s, end)| **end <= limit && (lag == 0 || s.max_timestamp() <= settled))
        .map(|(s, _)| s)
}

/// The batches of a cleaned segment and the number of records removed, or `None`
/// when cleaning would change nothing.
fn clean_segment(
    snap: &Snapshot,
    latest: &HashMap<Bytes, i64>,
    horizon: i64,
    dir: &Path,
    limit: usize,
) -> Result<Option<(Vec<Vec<u8>>, u64)>> {
    let mut out = Vec::new();
    let mut removed = 0u64;
    for (at, h) in HeaderWalk::new(&snap.data, 0) {
        let raw = &snap.data[at..at + h.size()];
        if h.is_control() {
            out.push(raw.to_vec());
            continue;
        }
        let batch = snap.data.slice(at..at + h.size());
        let records = decode_records(&batch, limit).map_err(|e| corrupt(dir, snap.base, e))?;
        let kept: Vec<Bytes> = records
            .iter()
            .filter(|r| match &r.key {
                None => true,
                Some(k) => latest.get(k) == Some(&r.offset),
            })
            // Fix: a keyless record with a null value is not a tombstone (it deletes
            // no key); like every keyless record it is kept, as the module docs say.
            .filter(|r| r.key.is_none() || r.value.is_some() || r.timestamp >= horizon)
            .map(|r| r.raw.clone())
            .collect();
        removed += (records.len() - kept.len()) as u64;
        if kept.len() == records.len() {
            out.push(raw.to_vec());
        } else if !kept.is_empty() {
            out.push(rebuild_batch(raw, &kept).map_err(|e| corrupt(dir, snap.base, e))?);
        }
    }
    Ok((removed > 0).then_some((out, removed)))
}
