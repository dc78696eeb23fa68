//! One segment of a partition log: a `.log` file of batches and its two indexes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, CountRule, HeaderWalk};
use crate::config::LogConfig;
use crate::error::{io_err, BatchError, Result};
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::mmap::map_segment;
use crate::record::decode_records;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// File name of a segment file: the 20-digit zero-padded base offset and a suffix.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// What opening a segment found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentRecovery {
    /// Bytes cut off the end of the `.log` file.
    pub(crate) truncated_bytes: u64,
    /// Whether the indexes were rebuilt from the log.
    pub(crate) rebuilt_indexes: bool,
    /// Whether a damaged batch (not just a torn tail of zeros) was found.
    pub(crate) found_corruption: bool,
    /// Whether the bytes cut off were not all zeros (zeros are the hole a
    /// `truncate_to` leaves, or a tail never written).
    pub(crate) damaged_tail: bool,
}

/// A segment: the log file, its read-only mapping and its indexes.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset the file is named after; no batch in it starts below.
    pub(crate) base_offset: i64,
    /// Unique id of this in-memory instance, so the cleaner can detect a swap race.
    pub(crate) id: u64,
    log_path: PathBuf,
    file: Arc<File>,
    data: Bytes,
    size: usize,
    /// Offset after the last batch (the base offset when empty).
    pub(crate) next_offset: i64,
    last_batch_base: i64,
    offsets: Index<OffsetEntry>,
    times: Index<TimeEntry>,
    bytes_since_entry: u64,
    max_timestamp: i64,
    /// Wall time (ms) of the first append since the segment was created or opened.
    first_append_ms: Option<i64>,
}

/// A segment's bytes at one moment (a zero-copy slice of its mapping) and the
/// position the offset index gives to start walking from. Walking needs no lock:
/// appends only add bytes past the slice, and a truncation leaves zeros, where
/// the walk stops.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    data: Bytes,
    start: usize,
}

impl SegmentView {
    /// The batch holding `offset` (its position and header), if it is here.
    pub(crate) fn find(&self, offset: i64) -> Option<(usize, BatchHeader)> {
        HeaderWalk::new(&self.data, self.start).find(|(_, h)| h.last_offset() >= offset)
    }

    /// Headers of the batches holding offsets `>= offset`, in order.
    pub(crate) fn headers_from(&self, offset: i64) -> impl Iterator<Item = BatchHeader> + '_ {
        HeaderWalk::new(&self.data, self.start)
            .map(|(_, h)| h)
            .filter(move |h| h.last_offset() >= offset)
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one
    /// batch), all ending below `max_offset`. `None` when no such batch is here.
    pub(crate) fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Option<Bytes> {
        let (start, first) = self.find(offset)?;
        if first.next_offset() > max_offset {
            return None;
        }
        let mut end = start + first.size();
        for (at, h) in HeaderWalk::new(&self.data, end) {
            if h.next_offset() > max_offset || at + h.size() - start > max_bytes {
                break;
            }
            end = at + h.size();
        }
        Some(self.data.slice(start..end))
    }

    /// The first record with timestamp `>= ts` in `[from, max_offset)`:
    /// (offset, timestamp); records decompressed within `limit` bytes.
    pub(crate) fn offset_for_timestamp(
        &self,
        ts: i64,
        from: i64,
        max_offset: i64,
        limit: usize,
    ) -> std::result::Result<Option<(i64, i64)>, (usize, crate::BatchError)> {
        let Some((start, _)) = self.find(from) else {
            return Ok(None);
        };
        for (at, h) in HeaderWalk::new(&self.data, start) {
            if h.base_offset >= max_offset {
                break;
            }
            if h.max_timestamp < ts {
                continue;
            }
            let batch = self.data.slice(at..at + h.size());
            let records = decode_records(&batch, limit).map_err(|e| (at, e))?;
            if let Some(r) = records
                .iter()
                .find(|r| r.timestamp >= ts && r.offset >= from && r.offset < max_offset)
            {
                return Ok(Some((r.offset, r.timestamp)));
            }
        }
        Ok(None)
    }
}

fn paths(dir: &Path, base: i64, tmp: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(file_name(base, &format!(".log{tmp}"))),
        dir.join(file_name(base, &format!(".index{tmp}"))),
        dir.join(file_name(base, &format!(".timeindex{tmp}"))),
    )
}

impl Segment {
    /// The in-memory state of a segment before its data is mapped and scanned;
    /// `index_bytes` as in [`Index::open`].
    fn empty(
        base: i64,
        file: File,
        log_path: PathBuf,
        index: &Path,
        time: &Path,
        index_bytes: Option<usize>,
    ) -> Result<Self> {
        Ok(Self {
            base_offset: base,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            file: Arc::new(file),
            data: Bytes::new(),
            size: 0,
            next_offset: base,
            last_batch_base: base,
            offsets: Index::open(index, index_bytes)?,
            times: Index::open(time, index_bytes)?,
            bytes_since_entry: 0,
            max_timestamp: -1,
            first_append_ms: None,
            log_path,
        })
    }

    /// Creates an empty active segment (replacing leftovers of the same name).
    /// `suffix` is "" for a live segment or ".cleaned" for a cleaner output.
    pub(crate) fn create(dir: &Path, base: i64, cfg: &LogConfig, suffix: &str) -> Result<Self> {
        let (log, index, time) = paths(dir, base, suffix);
        for p in [&log, &index, &time] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(p)(e)),
                _ => {}
            }
        }
        let file = open_rw(&log)?;
        let ix = Some(cfg.segment_index_bytes as usize);
        let mut seg = Self::empty(base, file, log, &index, &time, ix)?;
        seg.data = map_segment(&seg.file, capacity(cfg, 0)).map_err(io_err(&seg.log_path))?;
        Ok(seg)
    }

    /// Opens an existing segment. `active` keeps room to append; `validate` re-checks
    /// every batch (CRC included) and truncates at the first bad one, rebuilding the
    /// indexes; otherwise the indexes are trusted after a sanity check and only the
    /// tail after the last index entry is walked.
    pub(crate) fn open(
        dir: &Path,
        base: i64,
        cfg: &LogConfig,
        active: bool,
        validate: bool,
    ) -> Result<(Self, SegmentRecovery)> {
        let (log, index, time) = paths(dir, base, "");
        let file = open_rw(&log)?;
        let file_len = file.metadata().map_err(io_err(&log))?.len() as usize;
        let ix = active.then_some(cfg.segment_index_bytes as usize);
        let mut seg = Self::empty(base, file, log, &index, &time, ix)?;
        let cap = if active {
            capacity(cfg, file_len)
        } else {
            file_len
        };
        seg.data = map_segment(&seg.file, cap).map_err(io_err(&seg.log_path))?;
        let mut rec = SegmentRecovery::default();
        let trusted = !validate && seg.indexes_agree_with(file_len);
        // Fix: the time index was trusted without a check, so a damaged one (random
        // bytes) gave wrong max timestamps and time lookups. Its last entry must name
        // a batch of this segment whose max timestamp it covers; else rebuild.
        let walked = trusted
            .then(|| seg.walk_tail(file_len))
            .flatten()
            .filter(|&end| {
                seg.size = end;
                let ok = seg.time_index_agrees();
                seg.size = 0;
                ok
            });
        let end = if let Some(end) = walked {
            end
        } else {
            rec.rebuilt_indexes = true;
            let (end, corrupt) = seg.rebuild(file_len, cfg);
            rec.found_corruption = corrupt;
            end
        };
        if end < file_len {
            rec.damaged_tail = seg.data[end..file_len].iter().any(|&b| b != 0);
            // No mapping of this file has been handed out yet, so shrinking is safe.
            seg.file
                .set_len(end as u64)
                .map_err(io_err(&seg.log_path))?;
            seg.file.sync_data().map_err(io_err(&seg.log_path))?;
            rec.truncated_bytes = (file_len - end) as u64;
            if !active {
                seg.data = map_segment(&seg.file, end).map_err(io_err(&seg.log_path))?;
            }
        }
        seg.size = end;
        if !active && rec.rebuilt_indexes {
            seg.offsets.trim()?;
            seg.times.trim()?;
        }
        Ok((seg, rec))
    }

    /// Sanity check of trusted indexes: entries inside the file, first key sane.
    fn indexes_agree_with(&self, file_len: usize) -> bool {
        let offsets_ok = self.offsets.last().is_none_or(|e| {
            (e.position as usize) < file_len
                && BatchHeader::parse(&self.data[e.position as usize..file_len])
                    .is_ok_and(|h| h.base_offset == self.base_offset + i64::from(e.relative_offset))
        });
        let times_ok = self
            .times
            .last()
            .is_none_or(|e| self.offsets.len() > 0 || e.relative_offset == 0);
        offsets_ok && times_ok
    }

    /// Whether the last time index entry names a batch of the segment (its base
    /// offset exactly) and covers that batch's max timestamp.
    fn time_index_agrees(&self) -> bool {
        self.times.last().is_none_or(|e| {
            let offset = self.base_offset + i64::from(e.relative_offset);
            offset <= self.last_batch_base
                && self
                    .find(offset)
                    .is_some_and(|(_, h)| h.base_offset == offset && h.max_timestamp <= e.timestamp)
        })
    }

    /// Walks headers (no CRC) from the last index entry to find the end of the data.
    fn walk_tail(&mut self, file_len: usize) -> Option<usize> {
        let index_pos = self.offsets.last().map_or(0, |e| e.position as usize);
        self.max_timestamp = self.times.last().map_or(-1, |e| e.timestamp);
        // Fix: the last time entry only covers batches up to its own. When it lags
        // behind the offset index (time index deleted, cut short, or full), start
        // the walk at its batch, or the max timestamp misses the batches between.
        let time_pos = match self.times.last() {
            None => 0,
            Some(e) => self
                .offsets
                .floor(i64::from(e.relative_offset))
                .map_or(0, |o| o.position as usize),
        };
        let start = index_pos.min(time_pos);
        let data = self.data.clone();
        let mut walk = HeaderWalk::new(&data[..file_len.min(data.len())], start);
        let mut expected = self.base_offset;
        // Fix (found by fuzzing): the walk may stop before the last offset index
        // entry (a damaged batch between the time index's entry and it), which
        // underflowed `end - index_pos`. The index must name a batch the walk
        // reaches; if it does not, the indexes are not trusted (`None`: rebuild).
        let mut reached_index = self.offsets.last().is_none();
        // The end of the last batch kept (not `walk.end()`, which is past a
        // batch the loop rejected: found by fuzzing, such a batch stayed in the
        // segment and hid every later append from readers).
        let mut end = start;
        for (at, h) in walk.by_ref() {
            if h.base_offset < expected {
                break;
            }
            reached_index |= at == index_pos;
            expected = h.next_offset();
            self.note_batch(&h);
            end = at + h.size();
        }
        if !reached_index || end < index_pos {
            return None;
        }
        self.bytes_since_entry = (end - index_pos) as u64;
        Some(end)
    }

    /// Re-validates every batch from the start, rebuilding both indexes.
    /// Returns the end of the valid prefix and whether a damaged batch stopped it.
    fn rebuild(&mut self, file_len: usize, cfg: &LogConfig) -> (usize, bool) {
        self.offsets.truncate_to(0);
        self.times.truncate_to(0);
        self.max_timestamp = -1;
        self.next_offset = self.base_offset;
        self.bytes_since_entry = 0;
        let max_batch = (cfg.max_message_bytes as usize).max(batch::HEADER_LEN);
        let mut pos = 0usize;
        let data = self.data.clone();
        let buf = &data[..file_len];
        while pos < file_len {
            let rest = &buf[pos..];
            // A batch larger than today's max.message.bytes may predate a config change:
            // accept any length the file can hold.
            match batch::validate(rest, rest.len().max(max_batch), CountRule::Stored) {
                Ok(h) if h.base_offset >= self.next_offset => {
                    self.index_batch(pos, &h, cfg.index_interval_bytes);
                    pos += h.size();
                }
                Ok(_) => return (pos, true),
                Err(e) => {
                    // Fix: a batch cut short by the end of the file is a torn write,
                    // not corruption (it was reported as corruption before).
                    let torn =
                        matches!(e, BatchError::Truncated { .. }) || rest.iter().all(|&b| b == 0);
                    return (pos, !torn);
                }
            }
        }
        (pos, false)
    }

    fn note_batch(&mut self, h: &BatchHeader) {
        self.next_offset = h.next_offset();
        self.last_batch_base = h.base_offset;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
    }

    /// Adds index entries for a batch at `pos` if the interval has passed.
    fn index_batch(&mut self, pos: usize, h: &BatchHeader, interval: u64) {
        self.note_batch(h);
        if pos > 0 && self.bytes_since_entry >= interval {
            let relative_offset = (h.base_offset - self.base_offset) as u32;
            self.offsets.append(OffsetEntry {
                relative_offset,
                position: pos as u32,
            });
            if self
                .times
                .last()
                .is_none_or(|e| self.max_timestamp > e.timestamp)
            {
                self.times.append(TimeEntry {
                    timestamp: self.max_timestamp,
                    relative_offset,
                });
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += h.size() as u64;
    }

    /// Bytes of log data in the segment.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Whether the segment holds no batch.
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Largest record timestamp, or -1 when none.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The time retention judges the segment by: its max timestamp, or the file's
    /// modification time when no record carries a timestamp.
    pub(crate) fn retention_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_millis() as i64)
    }

    /// Whether an append of `len` bytes must go to a new segment.
    pub(crate) fn must_roll(&self, len: usize, cfg: &LogConfig, now_ms: i64) -> bool {
        if self.is_empty() {
            return false;
        }
        let too_big =
            (self.size + len) as u64 > cfg.segment_bytes || self.size + len > u32::MAX as usize;
        let too_old = matches!((cfg.segment_ms, self.first_append_ms),
            (Some(ms), Some(first)) if now_ms - first >= ms as i64);
        let offsets_overflow = self.next_offset - self.base_offset > i64::from(u32::MAX) / 2;
        too_big || too_old || self.offsets.is_full() || self.times.is_full() || offsets_overflow
    }

    /// Appends stamped, validated batches (`headers` are their positions in `buf`).
    /// On return the bytes are in the page cache and visible to readers.
    pub(crate) fn append(
        &mut self,
        buf: &[u8],
        headers: &[(usize, BatchHeader)],
        cfg: &LogConfig,
        now_ms: i64,
    ) -> Result<()> {
        self.append_stamped(buf, headers, &[], cfg, now_ms)
    }

    /// Like [`Segment::append`], but the first 16 bytes of each batch (baseOffset,
    /// batchLength, partitionLeaderEpoch) are taken from `stamps` (one per batch, in
    /// order) instead of `buf`, so the caller's buffer is written without a copy.
    pub(crate) fn append_stamped(
        &mut self,
        buf: &[u8],
        headers: &[(usize, BatchHeader)],
        stamps: &[[u8; 16]],
        cfg: &LogConfig,
        now_ms: i64,
    ) -> Result<()> {
        if self.size + buf.len() > self.data.len() {
            let cap = capacity(cfg, self.size + buf.len());
            self.data = map_segment(&self.file, cap).map_err(io_err(&self.log_path))?;
        }
        let mut slices = Vec::with_capacity(headers.len() * 2);
        if stamps.is_empty() {
            slices.push(std::io::IoSlice::new(buf));
        } else {
            for ((at, h), stamp) in headers.iter().zip(stamps) {
                slices.push(std::io::IoSlice::new(stamp));
                slices.push(std::io::IoSlice::new(&buf[at + 16..at + h.size()]));
            }
        }
        if let Err(e) = write_all_vectored_at(&self.file, &slices, self.size as u64) {
            // A short write may have left part of the batch: hide it from recovery.
            let _ = self.zero_tail(self.size);
            return Err(io_err(&self.log_path)(e));
        }
        let start = self.size;
        for (at, h) in headers {
            self.index_batch(start + at, h, cfg.index_interval_bytes);
        }
        self.size += buf.len();
        self.first_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Zeroes the file from `pos` to its end without shrinking it (readers may hold
    /// mappings of that range; they read zeros rather than fault).
    fn zero_tail(&self, pos: usize) -> Result<()> {
        use rustix::fs::{fallocate, FallocateFlags};
        let len = self.file.metadata().map_err(io_err(&self.log_path))?.len();
        if len as usize <= pos {
            return Ok(());
        }
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if fallocate(&*self.file, punch, pos as u64, len - pos as u64).is_err() {
            let zeros = vec![0u8; 1 << 16];
            let mut at = pos as u64;
            while at < len {
                let n = (len - at).min(zeros.len() as u64) as usize;
                self.file
                    .write_all_at(&zeros[..n], at)
                    .map_err(io_err(&self.log_path))?;
                at += n as u64;
            }
        }
        Ok(())
    }

    /// The batch holding `offset` (its position and header), if it is here.
    pub(crate) fn find(&self, offset: i64) -> Option<(usize, BatchHeader)> {
        self.view(offset).find(offset)
    }

    /// The segment's bytes as they are now, with the index's starting point for
    /// `offset`: taken under the log's lock, walked after it is released.
    pub(crate) fn view(&self, offset: i64) -> SegmentView {
        let start = self
            .offsets
            .floor(offset - self.base_offset)
            .map_or(0, |e| e.position as usize);
        SegmentView {
            data: self.data.slice(..self.size),
            start,
        }
    }

    /// [`Self::view`] for a time lookup: starts at the batch the time index
    /// names for `ts` (or `min_offset`, if later); returns the view and the
    /// offset it starts at.
    pub(crate) fn time_view(&self, ts: i64, min_offset: i64) -> (SegmentView, i64) {
        let from = self
            .times
            .floor(ts.saturating_sub(1))
            .map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            })
            .max(min_offset);
        (self.view(from), from)
    }

    /// Removes every batch from the one holding `offset` on; returns the new next offset.
    pub(crate) fn truncate_from(&mut self, offset: i64) -> Result<i64> {
        let Some((pos, h)) = self.find(offset) else {
            self.next_offset = self.next_offset.min(offset);
            return Ok(self.next_offset);
        };
        let new_next = h.base_offset.min(offset);
        self.zero_tail(pos)?;
        self.file.sync_data().map_err(io_err(&self.log_path))?;
        self.size = pos;
        let cut = (new_next - self.base_offset) as u32;
        self.offsets
            .truncate_while_not(|e| e.relative_offset < cut && (e.position as usize) < pos);
        self.times.truncate_while_not(|e| e.relative_offset < cut);
        // Recompute the trailing state from the surviving batches.
        self.max_timestamp = -1;
        self.next_offset = self.base_offset;
        let data = self.data.clone();
        for (_, h) in HeaderWalk::new(&data[..pos], 0) {
            self.note_batch(&h);
        }
        self.bytes_since_entry =
            (pos - self.offsets.last().map_or(0, |e| e.position as usize)) as u64;
        // Fix: the new end is where the surviving batches end. It used to be
        // `new_next`, which after a truncation into a gap left by compaction lay past
        // the last batch, so a reopen moved the log end backwards and reused offsets.
        Ok(self.next_offset)
    }

    /// Makes a segment that was sealed take appends again (after a truncation).
    pub(crate) fn reactivate(&mut self, cfg: &LogConfig) -> Result<()> {
        self.offsets.grow(cfg.segment_index_bytes as usize)?;
        self.times.grow(cfg.segment_index_bytes as usize)?;
        if self.data.len() < capacity(cfg, self.size) {
            self.data = map_segment(&self.file, capacity(cfg, self.size))
                .map_err(io_err(&self.log_path))?;
        }
        Ok(())
    }

    /// Seals the segment when it stops being active: final time index entry and
    /// indexes trimmed. Nothing is fsynced here (a roll must not stall appends and
    /// reads behind the log's lock): the next flush syncs the sealed file.
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.finish_time_index();
        self.offsets.trim()?;
        self.times.trim()
    }

    /// Records the segment's max timestamp as the last time index entry.
    pub(crate) fn finish_time_index(&mut self) {
        if self.max_timestamp >= 0
            && self
                .times
                .last()
                .is_none_or(|e| self.max_timestamp > e.timestamp)
        {
            self.times.append(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: (self.last_batch_base - self.base_offset) as u32,
            });
        }
    }

    /// fdatasyncs the log file and flushes both index mappings.
    pub(crate) fn sync_all(&self) -> Result<()> {
        #[cfg(test)]
        crate::recovery::hook::record(crate::recovery::hook::Event::SegmentSynced(
            self.base_offset,
        ));
        self.file.sync_data().map_err(io_err(&self.log_path))?;
        self.offsets.flush()?;
        self.times.flush()
    }

    /// A handle to fsync the log file without holding the log's lock.
    pub(crate) fn file(&self) -> (Arc<File>, PathBuf) {
        (self.file.clone(), self.log_path.clone())
    }

    /// The segment's bytes below its size, for the cleaner (zero-copy).
    pub(crate) fn data(&self) -> Bytes {
        self.data.slice(..self.size)
    }

    /// Paths of the three files, to delete or rename them.
    pub(crate) fn files(&self) -> [PathBuf; 3] {
        [
            self.log_path.clone(),
            self.offsets.path().to_path_buf(),
            self.times.path().to_path_buf(),
        ]
    }
}

/// Writes every slice at `offset`, in one `pwritev` when the kernel takes it all.
fn write_all_vectored_at(
    file: &File,
    slices: &[std::io::IoSlice<'_>],
    offset: u64,
) -> std::io::Result<()> {
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let mut done = rustix::io::pwritev(file, slices, offset)?;
    if done == total {
        return Ok(());
    }
    // Short write (rare): finish slice by slice.
    let mut at = offset;
    for s in slices {
        let len = s.len();
        if done >= len {
            done -= len;
            at += len as u64;
            continue;
        }
        file.write_all_at(&s[done..], at + done as u64)?;
        at += len as u64;
        done = 0;
    }
    Ok(())
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))
}

/// Mapping size of an active segment: room for a full segment plus one batch.
fn capacity(cfg: &LogConfig, at_least: usize) -> usize {
    let want = (cfg.segment_bytes + cfg.max_message_bytes) as usize;
    want.max(at_least.next_power_of_two())
}
