//! Log compaction (`cleanup.policy=compact`): keep the last record per key.
//!
//! The cleaner works on sealed segments only. It reads them zero-copy without the
//! log's lock and builds a map from key to latest offset. Then it cleans the
//! segments in order and groups them as it goes, as Kafka's cleaner does: a
//! run holds neighbours whose cleaned contents fit one segment together
//! (`segment.bytes`, and offsets that fit its relative index), so that a
//! compacted topic does not pile up one small segment per roll. Each run that
//! lost records or holds more than one segment is written once, to
//! `<first>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`), preserving
//! offsets, timestamps, producer fields and codec of every batch. A head that
//! lost nothing and holds more than the rest of its run stays as it is. The
//! swap, under the lock, is crash-safe:
//!
//! 1. `<first>.log.cleaned` → `<first>.log.swap` (the commit point), dir fsynced;
//! 2. the old `<first>.index` and `<first>.timeindex` are deleted, then the
//!    files of the run's other segments;
//! 3. `.log.swap` → `.log` (atomic replace), the cleaned indexes renamed into place.
//!
//! Recovery that finds `<base>.log.swap` deletes every segment whose base lies
//! inside the swap's offsets (they are in it). A segment cleaning leaves
//! without a record is removed instead (its indexes, then its log), except
//! the first, which holds the log start.
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
use crate::record::{decode_records, decompress_limit, rebuild_batch};
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

/// A sealed segment as the cleaner read it.
struct Snapshot {
    base: i64,
    /// The base of the segment after it.
    end: i64,
    id: u64,
    data: Bytes,
}

/// What cleaning makes of a segment.
enum Content {
    /// No record removed: its batches as they are.
    Unchanged,
    /// The batches that stay, rebuilt where they lost records.
    Cleaned(Vec<Vec<u8>>),
}

/// A segment of a run, as cleaned.
struct Member {
    snap: Snapshot,
    content: Content,
    /// Records cleaning removed from it.
    removed: u64,
}

impl Member {
    /// The bytes it takes in the run's segment.
    fn size(&self) -> u64 {
        match &self.content {
            Content::Unchanged => self.snap.data.len() as u64,
            Content::Cleaned(batches) => batches.iter().map(|b| b.len() as u64).sum(),
        }
    }
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
            let ends = st.segments.keys().skip(1);
            let snaps: Vec<Snapshot> = cleanable(&st, now_ms, limit)
                .zip(ends)
                .map(|(s, end)| Snapshot {
                    base: s.base_offset,
                    end: *end,
                    id: s.id,
                    data: s.data(),
                })
                .collect();
            (snaps, st.cfg.clone())
        };
        let dir = self.dir().to_path_buf();
        let record_limit = decompress_limit(cfg.max_message_bytes);
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
        // Segments are cleaned in order and grouped as they come: a run
        // holds neighbours whose cleaned contents fit one segment, and is
        // written once (cleaned and merged in one file).
        let mut run: Vec<Member> = Vec::new();
        let mut run_bytes = 0u64;
        for snap in snaps {
            let member = match clean_segment(&snap, &latest, horizon, &dir, record_limit)? {
                None => Member {
                    content: Content::Unchanged,
                    removed: 0,
                    snap,
                },
                Some((batches, removed)) if batches.is_empty() => {
                    match self.remove_emptied(&snap)? {
                        Some(true) => {
                            outcome.segments_removed += 1;
                            outcome.records_removed += removed;
                            outcome.bytes_before += snap.data.len() as u64;
                            continue;
                        }
                        // Changed meanwhile: it ends the run before it.
                        Some(false) => {
                            self.write_run(std::mem::take(&mut run), &cfg, now_ms, &mut outcome)?;
                            run_bytes = 0;
                            continue;
                        }
                        // The first segment holds the log start: kept, empty.
                        None => Member {
                            content: Content::Cleaned(batches),
                            removed,
                            snap,
                        },
                    }
                }
                Some((batches, removed)) => Member {
                    content: Content::Cleaned(batches),
                    removed,
                    snap,
                },
            };
            let size = member.size();
            let fits = run.first().is_some_and(|first| {
                run_bytes + size <= cfg.segment_bytes
                    && member.snap.end - first.snap.base <= i64::from(u32::MAX) / 2
            });
            if !fits {
                self.write_run(std::mem::take(&mut run), &cfg, now_ms, &mut outcome)?;
                run_bytes = 0;
            }
            run_bytes += size;
            run.push(member);
        }
        self.write_run(run, &cfg, now_ms, &mut outcome)?;
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

    /// Writes a run of neighbouring segments (see the module docs) as one
    /// segment in place of the first and swaps it in, adding what it did
    /// to `outcome`. A head left unchanged that holds more than the rest
    /// of the run stays as it is, and the rest merge among themselves: so a
    /// byte is copied again only when what it is merged with at least
    /// doubles, not once per roll of a small segment behind a big merged
    /// one. A run of one unchanged segment is left alone.
    fn write_run(
        &self,
        mut run: Vec<Member>,
        cfg: &crate::config::LogConfig,
        now_ms: i64,
        outcome: &mut CompactionOutcome,
    ) -> Result<()> {
        let mut rest: u64 = run.iter().map(Member::size).sum();
        while run.len() > 1
            && matches!(run[0].content, Content::Unchanged)
            && run[0].size() * 2 > rest
        {
            rest -= run.remove(0).size();
        }
        let Some(first) = run.first() else {
            return Ok(());
        };
        if run.len() == 1 && matches!(first.content, Content::Unchanged) {
            return Ok(());
        }
        let dir = self.dir().to_path_buf();
        let mut seg = Segment::create(&dir, first.snap.base, cfg, ".cleaned")?;
        for m in &run {
            match &m.content {
                Content::Cleaned(batches) => {
                    for b in batches {
                        let h = BatchHeader::parse(b).map_err(|e| corrupt(&dir, m.snap.base, e))?;
                        seg.append(b, &[(0, h)], cfg, now_ms)?;
                    }
                }
                Content::Unchanged => {
                    let mut walk = HeaderWalk::new(&m.snap.data, 0);
                    let headers: Vec<(usize, BatchHeader)> = walk.by_ref().collect();
                    if walk.end() > 0 {
                        seg.append(&m.snap.data[..walk.end()], &headers, cfg, now_ms)?;
                    }
                }
            }
        }
        seg.seal()?;
        seg.sync_all()?;
        let after = seg.size() as u64;
        drop(seg);
        let snaps: Vec<&Snapshot> = run.iter().map(|m| &m.snap).collect();
        if self.swap_in(&snaps)? {
            outcome.segments_merged += run.len() - 1;
            for m in &run {
                outcome.segments_cleaned += usize::from(m.removed > 0);
                outcome.records_removed += m.removed;
                outcome.bytes_before += m.snap.data.len() as u64;
            }
            outcome.bytes_after += after;
        }
        Ok(())
    }

    /// Replaces the live segments of `run` (neighbours, one segment when
    /// only cleaned) by the cleaned files of the first: false when one of
    /// them changed meanwhile (then the cleaned files are discarded). The
    /// swap file is the commit point; the others' files go before it is
    /// renamed into place (recovery deletes what a crash left of them).
    fn swap_in(&self, run: &[&Snapshot]) -> Result<bool> {
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
