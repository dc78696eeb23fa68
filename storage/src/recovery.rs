//! Opening a log, staged like Kafka's LogLoader:
//!
//! 1. leftovers: `*.deleted` and `*.tmp` files are removed; a `<base>.log.swap` left
//!    by the cleaner is completed (it replaces `<base>.log`, whose indexes are then
//!    rebuilt, and the segments it merged, whose bases lie inside its offsets,
//!    are deleted); `*.cleaned` files of an unfinished cleaning are removed; a
//!    `reset-in-progress` marker left by an interrupted [`crate::Log::reset_to`] is
//!    acted on: every segment is deleted and the log restarts empty at its offset;
//! 2. checkpoints: the clean-shutdown marker, the recovery point and the log start;
//! 3. segments: after a clean shutdown every segment is trusted (indexes sanity-
//!    checked, the tail after the last index entry walked); otherwise every segment
//!    holding offsets at or above the recovery point is re-validated batch by batch
//!    (CRC included), truncated at the first torn or corrupt batch, and its indexes
//!    rebuilt; segments after a corrupt one are dropped, since the log must stay a
//!    prefix of what was written;
//! 4. segments wholly below the log start are deleted; every segment re-validated,
//!    truncated or re-indexed (and the active one) is fsynced, then the directory,
//!    and only then the log end becomes the new recovery point; the clean-shutdown
//!    marker is removed;
//! 5. the leader-epoch cache (before that recovery point is written): its file is
//!    read, cut to the log end and clamped to the log start, and the batches after
//!    its last entry that the old recovery point does not cover are walked for
//!    newer epochs (see [`crate::epoch_cache`]). A missing, corrupt or inconsistent
//!    file is rebuilt from the epochs of every batch. The file is rewritten when
//!    this changed it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::checkpoint::{self, CLEAN_SHUTDOWN, LOG_START, RECOVERY_POINT, RESET};
use crate::config::LogConfig;
use crate::epoch_cache::{Assigned, EpochCache};
use crate::error::{io_err, Result, StorageError};
use crate::log::{remove_files, State};
use crate::segment::Segment;

/// What opening a log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the previous close was clean.
    pub clean_shutdown: bool,
    /// Segments in the log after opening.
    pub segments: usize,
    /// Segments re-validated batch by batch.
    pub segments_validated: usize,
    /// Segments whose indexes were rebuilt from the log.
    pub indexes_rebuilt: usize,
    /// Bytes cut from segment tails (torn or corrupt writes).
    pub bytes_truncated: u64,
    /// Whether a corrupt batch (rather than a torn tail) was found.
    pub corruption_found: bool,
    /// Segments dropped because they followed a corrupt one or lay below the log start.
    pub segments_dropped: usize,
    /// Temporary, deleted and unfinished cleaner files removed.
    pub leftovers_removed: usize,
    /// Cleaner swaps completed.
    pub swaps_completed: usize,
    /// Whether an interrupted [`crate::Log::reset_to`] was completed.
    pub reset_completed: bool,
    /// Whether the leader-epoch file was corrupt or disagreed with the batches,
    /// and was rebuilt from them.
    pub epoch_cache_rebuilt: bool,
    /// First offset of the log.
    pub log_start_offset: i64,
    /// Next offset to be written.
    pub log_end_offset: i64,
}

/// Base offset of a file named `<20 digits><suffix>`.
fn base_of(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Stage 1: resolves leftovers; returns the bases whose indexes must be rebuilt.
fn resolve_leftovers(dir: &Path, report: &mut RecoveryReport) -> Result<Vec<i64>> {
    let mut forced = Vec::new();
    for name in list(dir)? {
        if name.ends_with(".deleted") || name.ends_with(".tmp") {
            remove_files(&[dir.join(&name)])?;
            report.leftovers_removed += 1;
        } else if let Some(base) = base_of(&name, ".log.swap") {
            let seg = |s: &str| dir.join(crate::segment::file_name(base, s));
            remove_files(&[seg(".index"), seg(".timeindex")])?;
            // Segments the cleaner merged into this one (their bases lie
            // inside its offsets) that the crash left behind.
            let end = swap_end(&dir.join(&name), base)?;
            for other in list(dir)? {
                let merged = [".index", ".timeindex", ".log"]
                    .iter()
                    .filter_map(|suffix| base_of(&other, suffix))
                    .any(|b| b > base && b < end);
                if merged {
                    remove_files(&[dir.join(&other)])?;
                }
            }
            std::fs::rename(dir.join(&name), seg(".log")).map_err(io_err(seg(".log")))?;
            report.swaps_completed += 1;
            forced.push(base);
        }
    }
    for name in list(dir)? {
        if name.ends_with(".cleaned") || name.ends_with(".swap") {
            remove_files(&[dir.join(&name)])?;
            report.leftovers_removed += 1;
        }
    }
    if report.leftovers_removed > 0 || report.swaps_completed > 0 {
        checkpoint::sync_dir(dir)?;
    }
    Ok(forced)
}

/// The offset after the last batch of the cleaner's swap file `path` (the
/// segment at `base`); `base` when it holds none. It was fsynced before its
/// rename made it the commit point, so its batches are whole.
fn swap_end(path: &Path, base: i64) -> Result<i64> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    Ok(crate::batch::HeaderWalk::new(&data, 0)
        .last()
        .map_or(base, |(_, h)| h.next_offset()))
}

/// Stage 1, end: completes a [`crate::Log::reset_to`] that a crash interrupted
/// after its marker was written (before it, the reset had not touched the log).
fn finish_reset(dir: &Path, name: &str, report: &mut RecoveryReport) -> Result<()> {
    let marker = dir.join(RESET);
    if !marker.exists() {
        return Ok(());
    }
    // The marker is written atomically: an unreadable one is outside damage, and
    // guessing an offset could reuse offsets the leader already gave out.
    let offset = checkpoint::read(dir, RESET)
        .filter(|o| *o >= 0)
        .ok_or_else(|| StorageError::Corrupt {
            path: marker.clone(),
            reason: "unreadable reset offset".into(),
        })?;
    for n in list(dir)? {
        if [".log", ".index", ".timeindex"]
            .iter()
            .any(|s| base_of(&n, s).is_some())
        {
            remove_files(&[dir.join(&n)])?;
        }
    }
    reset_checkpoints(dir, offset)?;
    EpochCache::default().write(dir)?;
    checkpoint::sync_dir(dir)?;
    remove_files(&[marker])?;
    checkpoint::sync_dir(dir)?;
    report.reset_completed = true;
    tracing::warn!(log = name, offset, "completed an interrupted log reset");
    Ok(())
}

/// The checkpoints of a log reset to `offset`: log start and recovery point.
pub(crate) fn reset_checkpoints(dir: &Path, offset: i64) -> Result<()> {
    checkpoint::write(dir, LOG_START, offset)?;
    checkpoint::write(dir, RECOVERY_POINT, offset)
}

/// Stage 5: loads the leader-epoch cache into `state` and reconciles it with the
/// log. `covered`: the file names every epoch of the batches below it (the old
/// recovery point: flushes write the file before they move it).
fn load_epochs(
    dir: &Path,
    name: &str,
    state: &mut State,
    covered: i64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let (on_disk, corrupt) = match EpochCache::read(dir) {
        Ok(c) => (c, false),
        Err(e) => {
            tracing::warn!(log = name, error = %e, "rebuilding the leader-epoch cache from the log");
            (None, true)
        }
    };
    let (start, end) = (state.log_start, state.log_end());
    let mut cache = on_disk.clone().unwrap_or_default();
    cache.truncate_from_end(end);
    cache.truncate_from_start(start);
    let trusted = match cache.latest() {
        Some((epoch, at)) => {
            let mut first = None;
            state.walk_batches(at, |h| {
                first = Some(h.partition_leader_epoch);
                false
            });
            // Both the file and the batches were written by this log: a mismatch
            // is outside damage (or a file from another log).
            let agrees = first.is_none_or(|e| e == epoch)
                && assign_from(state, &mut cache, at.max(covered.min(end))) == 0;
            if !agrees {
                tracing::warn!(log = name, entries = ?on_disk.as_ref().map(EpochCache::entries),
                    "leader-epoch file disagrees with the log; rebuilding it from the batches");
                report.epoch_cache_rebuilt = true;
            }
            agrees
        }
        // No file, or none of it applies to this log: every batch is walked.
        None => false,
    };
    report.epoch_cache_rebuilt |= corrupt;
    if !trusted {
        cache = EpochCache::default();
        let stale = assign_from(state, &mut cache, start);
        if stale > 0 {
            tracing::warn!(
                log = name,
                stale,
                "batches with a leader epoch below an earlier batch's"
            );
        }
    }
    let written = on_disk.map(|c| c.entries()).unwrap_or_default();
    if corrupt || written != cache.entries() {
        cache.write(dir)?;
    }
    state.epochs_written = cache.version();
    state.epochs = cache;
    Ok(())
}

/// Rebuilds the leader-epoch cache of `state` from its batches at `from` on
/// (a log reset above a received prefix).
pub(crate) fn assign_epochs(state: &mut State, from: i64) {
    let mut cache = std::mem::take(&mut state.epochs);
    assign_from(state, &mut cache, from);
    state.epochs = cache;
}

/// The base offsets of the segment files (`<base>.log`) in `dir`, ascending.
pub(crate) fn segment_bases(dir: &Path) -> Result<Vec<i64>> {
    let mut bases: Vec<i64> = list(dir)?
        .iter()
        .filter_map(|n| base_of(n, ".log"))
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// Assigns the epochs of the batches holding offsets `>= from` to `cache`;
/// returns how many batches had an epoch below the latest.
fn assign_from(state: &State, cache: &mut EpochCache, from: i64) -> usize {
    let mut stale = 0;
    state.walk_batches(from, |h| {
        let at = h.base_offset.max(from);
        if let Assigned::Stale { .. } = cache.assign(h.partition_leader_epoch, at) {
            stale += 1;
        }
        true
    });
    stale
}

/// Opens the log directory `dir`, recovering it; see the module docs.
pub(crate) fn load(dir: &Path, name: &str, cfg: LogConfig) -> Result<(State, RecoveryReport)> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut report = RecoveryReport::default();
    let forced = resolve_leftovers(dir, &mut report)?;
    finish_reset(dir, name, &mut report)?;
    let clean = dir.join(CLEAN_SHUTDOWN).exists();
    report.clean_shutdown = clean;
    let recovery_point = if clean {
        i64::MAX
    } else {
        checkpoint::read(dir, RECOVERY_POINT).unwrap_or(0)
    };
    let start_ck = checkpoint::read(dir, LOG_START);
    let names = list(dir)?;
    let bases: Vec<i64> = names.iter().filter_map(|n| base_of(n, ".log")).collect();
    for n in &names {
        let orphan = [".index", ".timeindex"]
            .iter()
            .any(|s| base_of(n, s).is_some_and(|b| !bases.contains(&b)));
        if orphan {
            remove_files(&[dir.join(n)])?;
            report.leftovers_removed += 1;
        }
    }

    let mut segments = BTreeMap::new();
    // Segments whose files recovery read past the recovery point, cut or rebuilt
    // indexes of: after a process crash their bytes may be in the page cache only.
    let mut touched = BTreeSet::new();
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
        let validate = forced.contains(&base) || (!clean && next_base > recovery_point);
        let (seg, rec) = Segment::open(dir, base, &cfg, last, validate)?;
        report.segments_validated += usize::from(validate);
        report.indexes_rebuilt += usize::from(rec.rebuilt_indexes);
        report.bytes_truncated += rec.truncated_bytes;
        report.corruption_found |= rec.found_corruption;
        if validate || rec.rebuilt_indexes || rec.truncated_bytes > 0 {
            touched.insert(base);
        }
        segments.insert(base, seg);
        // Fix: the zeros `truncate_to` leaves at the end of a segment (it punches a
        // hole rather than shrink the file) counted as damage, so a sealed segment
        // re-validated after such a truncation dropped every later segment.
        if validate && rec.damaged_tail && !last {
            // Everything after a damaged batch is unreachable as a prefix: drop it,
            // and reopen this segment as the active one.
            for &later in &bases[i + 1..] {
                let files = ["log", "index", "timeindex"]
                    .map(|s| dir.join(crate::segment::file_name(later, &format!(".{s}"))));
                remove_files(&files)?;
                report.segments_dropped += 1;
            }
            segments.remove(&base);
            let (seg, _) = Segment::open(dir, base, &cfg, true, false)?;
            segments.insert(base, seg);
            break;
        }
    }
    let first_base = segments.keys().next().copied();
    let log_start = match (start_ck, first_base) {
        (Some(ck), Some(b)) => ck.max(b),
        (Some(ck), None) => ck,
        (None, b) => b.unwrap_or(0),
    };
    if segments.is_empty() {
        segments.insert(log_start, Segment::create(dir, log_start, &cfg, "")?);
    }
    let mut state = State {
        cfg,
        segments,
        log_start,
        high_watermark: 0,
        unflushed_bytes: 0,
        first_unflushed: None,
        truncations: 0,
        flushed: 0,
        recovery_point: 0,
        dir_dirty: false,
        parent_dirty: false,
        closed: false,
        epochs: EpochCache::default(),
        epochs_written: 0,
    };
    let keys: Vec<i64> = state.segments.keys().copied().collect();
    for pair in keys.windows(2) {
        if pair[1] <= log_start {
            if let Some(seg) = state.segments.remove(&pair[0]) {
                remove_files(&seg.files())?;
                report.segments_dropped += 1;
            }
        }
    }
    let end = state.log_end();
    if state.log_start > end {
        // Fix (found by fuzzing): a log-start checkpoint above the log end was
        // clamped in memory only, so records appended after this open fell below
        // the stale checkpoint at the next open. The clamp is written down.
        state.log_start = end;
        checkpoint::write(dir, checkpoint::LOG_START, end)?;
    }
    // The new recovery point says every batch below the log end is on disk, so
    // that the next open trusts it without re-validation. Validation read the
    // segments at or above the old recovery point from the page cache, where a
    // crashed process leaves its unflushed writes: fsync each of them (and any
    // segment truncated or re-indexed), not only the active one, and the
    // directory (segments dropped after a corrupt one, files created), first.
    let fresh = bases.is_empty() && start_ck.is_none();
    if fresh {
        // A new partition: nothing to make durable yet. Its directory and files
        // reach the disk with the first flush (which syncs both directories), so
        // creating a topic of many partitions costs no fsync per partition.
        state.dir_dirty = true;
        state.parent_dirty = true;
        // A marker with no segment beside it must not vouch for what comes next.
        remove_files(&[dir.join(CLEAN_SHUTDOWN)])?;
        load_epochs(dir, name, &mut state, recovery_point, &mut report)?;
    } else {
        for (base, seg) in &state.segments {
            if touched.contains(base) || *base == state.active().base_offset {
                seg.sync_all()?;
            }
        }
        checkpoint::sync_dir(dir)?;
        load_epochs(dir, name, &mut state, recovery_point, &mut report)?;
        state.flushed = end;
        state.recovery_point = end;
        state.high_watermark = end;
        checkpoint::write(dir, RECOVERY_POINT, end)?;
        remove_files(&[dir.join(CLEAN_SHUTDOWN)])?;
        checkpoint::sync_dir(dir)?;
    }
    report.segments = state.segments.len();
    report.log_start_offset = state.log_start;
    report.log_end_offset = end;
    if report.corruption_found {
        // Records from the first damaged batch on are gone from this copy.
        tracing::error!(
            log = name,
            bytes_truncated = report.bytes_truncated,
            segments_dropped = report.segments_dropped,
            log_end_offset = end,
            "damaged log: cut at its first bad batch; the records after it are lost on this replica"
        );
    } else if !fresh && (!clean || report != clean_report(&report)) {
        tracing::info!(log = name, ?report, "recovered log");
    }
    Ok((state, report))
}

/// The report of an uneventful open, to tell whether anything was done.
fn clean_report(r: &RecoveryReport) -> RecoveryReport {
    RecoveryReport {
        clean_shutdown: true,
        segments: r.segments,
        log_start_offset: r.log_start_offset,
        log_end_offset: r.log_end_offset,
        ..Default::default()
    }
}

/// Test hook: the segment fsyncs and checkpoint writes of this thread, in order,
/// so a test can check that recovery syncs segments before it checkpoints.
#[cfg(test)]
pub(crate) mod hook {
    use std::cell::RefCell;

    /// One observed step.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Event {
        /// `Segment::sync_all` of the segment with this base offset.
        SegmentSynced(i64),
        /// `checkpoint::write` of this file with this value.
        Checkpoint(String, i64),
    }

    thread_local! {
        static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
    }

    /// Records an event.
    pub(crate) fn record(e: Event) {
        EVENTS.with(|v| v.borrow_mut().push(e));
    }

    /// Returns and clears this thread's events.
    pub(crate) fn take() -> Vec<Event> {
        EVENTS.with(|v| std::mem::take(&mut *v.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::hook::{self, Event};
    use crate::checkpoint::{self, RECOVERY_POINT};
    use crate::{Durability, Log, LogConfig};

    fn cfg() -> LogConfig {
        LogConfig {
            durability: Durability::PageCache,
            ..LogConfig::default()
        }
    }

    fn batch(v: &[u8]) -> Vec<u8> {
        crate::record::build_batch(&[(None, Some(v.to_vec()), crate::log::now_ms())])
    }

    /// After a crash (a log dropped without close, its rolled segments never
    /// fsynced), the reopen must fsync every segment at or above the old
    /// recovery point, not only the active one, before it writes the log end
    /// as the new recovery point: validation read those bytes from the page
    /// cache, which a power cut would lose.
    #[test]
    fn recovery_syncs_every_recovered_segment_before_the_recovery_point() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let bases = {
            let (log, _) = Log::open(&dir, "t-0", cfg()).unwrap();
            for i in 0..4u8 {
                log.append(&batch(&[i]), 0).unwrap();
                log.append(&batch(&[i, i]), 0).unwrap();
                log.roll().unwrap();
            }
            log.append(&batch(b"tail"), 0).unwrap();
            let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset).collect();
            drop(log); // a crash: no flush, no close
            bases
        };
        assert_eq!(bases, [0, 2, 4, 6, 8]);
        let old_rp = checkpoint::read(&dir, RECOVERY_POINT).unwrap_or(0);
        assert_eq!(old_rp, 0, "nothing was flushed before the crash");
        hook::take();
        let (log, report) = Log::open(&dir, "t-0", cfg()).unwrap();
        assert!(!report.clean_shutdown);
        assert_eq!(report.segments_validated, 5);
        let events = hook::take();
        let end = log.log_end_offset();
        assert_eq!(end, 9);
        assert_eq!(checkpoint::read(&dir, RECOVERY_POINT), Some(end));
        let ck = events
            .iter()
            .position(|e| *e == Event::Checkpoint(RECOVERY_POINT.into(), end))
            .unwrap_or_else(|| panic!("no recovery point written: {events:?}"));
        for base in bases {
            assert!(
                events[..ck].contains(&Event::SegmentSynced(base)),
                "segment {base} not synced before the recovery point: {events:?}"
            );
        }
    }
}
