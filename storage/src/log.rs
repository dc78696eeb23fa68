//! The partition log: an ordered set of segments with one active segment at the end.
//!
//! # Durability contract
//! - When [`Log::append`] returns `Ok`, the batches are in the page cache and visible
//!   to readers below the bound they ask for. Nothing of a rejected call is written.
//!   An append never fsyncs: it runs on async workers and under callers' locks
//!   (producer state, the group coordinator), where an fsync would stall others.
//! - When [`Log::wait_durable`] resolves `Ok` for offset `o`, every batch up to `o` is
//!   fdatasync'ed (under [`Durability::PageCache`] it resolves at once and promises
//!   nothing beyond the page cache).
//! - [`Log::truncate_to`], [`Log::advance_log_start`], [`Log::reset_to`] and retention
//!   are on disk when they return, their changes to the leader-epoch cache included.
//! - A new leader epoch seen by an append reaches the `leader-epoch-checkpoint` file
//!   with the next flush (see [`crate::epoch_cache`] for why the file may lag after a
//!   crash, and how opening the log reconciles it).
//! - [`Log::close`] flushes everything and leaves a clean-shutdown marker.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::batch::{self, BatchHeader, CountRule};
use crate::checkpoint;
use crate::config::{Durability, LogConfig};
use crate::epoch_cache::{Assigned, EpochCache};
use crate::error::{Result, StorageError};
use crate::recovery::{self, RecoveryReport};
use crate::segment::Segment;
use crate::validate;

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest record timestamp among the appended batches.
    pub max_timestamp: i64,
    /// The append time stamped into the batches under LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Number of batches appended.
    pub batches: usize,
    /// Bytes appended.
    pub bytes: usize,
}
/// Where produced batches come from, which decides how much of them
/// [`Log::prepare_from`] reads again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From outside the process (a client's request): framing, CRC and
    /// every record checked.
    Wire,
    /// Built by this process's [`crate::BatchBuilder`] and handed over in
    /// memory (a stream job's writes): framing and counts checked; the CRC
    /// and the records read again only where a rule of the topic could
    /// refuse a record the builder wrote (see
    /// [`crate::validate::built_batch_needs_checks`]).
    ThisProcess,
}

/// Produced batches validated and made final by [`Log::prepare`]: the bytes
/// every replica writes.
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    bytes: Cow<'a, [u8]>,
    headers: Vec<(usize, BatchHeader)>,
    log_append_time: i64,
}

impl Prepared<'_> {
    /// The final bytes (offsets and epoch still to be assigned by the append).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the bytes are the caller's, unchanged (no recompression, no
    /// append time), so the caller's own buffer can be used instead of a copy.
    pub fn is_unchanged(&self) -> bool {
        matches!(self.bytes, Cow::Borrowed(_))
    }

    /// The append time stamped under LogAppendTime, else -1.
    pub fn log_append_time(&self) -> i64 {
        self.log_append_time
    }

    /// The batch headers, with their positions in [`Prepared::bytes`].
    pub fn headers(&self) -> &[(usize, BatchHeader)] {
        &self.headers
    }
}

/// The upper bound a reader respects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// Everything written (replication followers, tools).
    LogEnd,
    /// Up to the high watermark (read_uncommitted consumers).
    HighWatermark,
    /// Up to the last stable offset (read_committed consumers).
    LastStable,
}

/// Batches returned by a read, with the log's offsets at the time of the read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, zero-copy from the segment mapping; empty when none.
    pub records: Bytes,
    /// First offset of the log.
    pub log_start_offset: i64,
    /// Next offset to be written.
    pub log_end_offset: i64,
    /// Offset below which records are committed.
    pub high_watermark: i64,
    /// Offset below which no transaction is open (equal to the high watermark for now).
    pub last_stable_offset: i64,
}

/// The first record at or after a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// Offset of the record.
    pub offset: i64,
    /// Its timestamp.
    pub timestamp: i64,
}

/// Summary of one segment, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Base offset (the file name).
    pub base_offset: i64,
    /// Bytes of data.
    pub size: u64,
    /// Largest record timestamp, or -1.
    pub max_timestamp: i64,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes deleted.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: i64,
}

/// Mutable state of a log, behind the log's mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) cfg: LogConfig,
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start: i64,
    pub(crate) high_watermark: i64,
    pub(crate) unflushed_bytes: u64,
    pub(crate) first_unflushed: Option<Instant>,
    /// Bumped by every truncation, so a flush that raced one does not over-claim.
    pub(crate) truncations: u64,
    pub(crate) flushed: i64,
    /// Offset of the last recovery-point checkpoint written.
    pub(crate) recovery_point: i64,
    /// A segment file was created or deleted since the last directory fsync.
    pub(crate) dir_dirty: bool,
    /// The log's directory is new: the parent's entry for it is not yet synced.
    pub(crate) parent_dirty: bool,
    pub(crate) closed: bool,
    /// The leader-epoch cache (one small entry per leader epoch).
    pub(crate) epochs: EpochCache,
    /// The `epochs.version()` last written to its file; the cache is dirty when
    /// they differ.
    pub(crate) epochs_written: u64,
}

impl State {
    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }
    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }
    pub(crate) fn log_end(&self) -> i64 {
        self.active().next_offset
    }
    fn size(&self) -> u64 {
        self.segments.values().map(|s| s.size() as u64).sum()
    }
    /// Calls `f` with the header of every batch holding offsets `>= from`, in
    /// order, until it returns false.
    pub(crate) fn walk_batches(&self, from: i64, mut f: impl FnMut(&BatchHeader) -> bool) {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(k, _)| *k);
        for seg in self.segments.range(first..).map(|(_, s)| s) {
            for h in seg.view(from).headers_from(from) {
                if !f(&h) {
                    return;
                }
            }
        }
    }
}

/// One partition's log. Shared as `Arc<Log>`; every method takes `&self`.
///
/// Locking: one std `Mutex` guards the segment map and offsets. It is held for
/// in-memory work and page-cache writes only, never across an `.await` and never
/// during an fsync of appended data (flushes take file handles out first).
#[derive(Debug)]
pub struct Log {
    name: String,
    dir: PathBuf,
    state: Mutex<State>,
    flushed_tx: watch::Sender<i64>,
    hw_tx: watch::Sender<i64>,
    /// The log end, for waiters on a local append (a Raft leader's acks=1).
    end_tx: watch::Sender<i64>,
    flushing: AtomicBool,
    flush_wake: Notify,
    flush_done: Notify,
    /// Serialises writes of the recovery-point checkpoint file.
    checkpoint_lock: Mutex<()>,
    /// Serialises writes of the leader-epoch file; holds the cache version on disk,
    /// so a flush's older snapshot never overwrites a newer file. Taken after the
    /// state lock when both are held, never the other way round.
    epoch_file: Mutex<u64>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Log {
    /// Opens the log in `dir` (creating it when missing), recovering as needed.
    pub fn open(dir: &Path, name: &str, cfg: LogConfig) -> Result<(Self, RecoveryReport)> {
        let (state, report) = recovery::load(dir, name, cfg)?;
        let log = Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            flushed_tx: watch::Sender::new(state.flushed),
            hw_tx: watch::Sender::new(state.high_watermark),
            end_tx: watch::Sender::new(state.log_end()),
            flushing: AtomicBool::new(false),
            flush_wake: Notify::new(),
            flush_done: Notify::new(),
            checkpoint_lock: Mutex::new(()),
            epoch_file: Mutex::new(state.epochs_written),
            state: Mutex::new(state),
        };
        Ok((log, report))
    }

    /// The partition name (`topic-partition`) used in errors and logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        // A panic while holding the lock cannot leave a half-written batch visible
        // (sizes are updated after writes), so a poisoned lock is still usable.
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closed {
            return Err(StorageError::Closed(self.name.clone()));
        }
        Ok(st)
    }

    /// Validates `batches` (one or more RecordBatch v2: framing, CRC, and every
    /// record, see [`crate::validate_records`]), assigns them offsets from the log
    /// end, stamps `leader_epoch`, and appends them as one write. If any batch is
    /// refused, nothing is written. [`Log::prepare`] then
    /// [`Log::append_prepared`].
    pub fn append(&self, batches: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        let prepared = self.prepare(batches)?;
        self.append_prepared(&prepared, leader_epoch)
    }

    /// What a leader does to produced batches before they are written or
    /// replicated: validates them (framing, CRC, every record), recompresses
    /// them under a `compression.type` other than `producer`, and stamps the
    /// append time under LogAppendTime. The result is final: every replica
    /// writes exactly these bytes ([`Log::append_trusted`]), so replicas stay
    /// byte-identical. Borrows `batches` when nothing had to change. Writes
    /// nothing.
    pub fn prepare<'a>(&self, batches: &'a [u8]) -> Result<Prepared<'a>> {
        self.prepare_from(batches, Origin::Wire)
    }

    /// [`Log::prepare`] of batches that came from `origin`.
    pub fn prepare_from<'a>(&self, batches: &'a [u8], origin: Origin) -> Result<Prepared<'a>> {
        let cfg = self.config();
        let wire = origin == Origin::Wire;
        let mut headers = parse_all(
            batches,
            cfg.max_message_bytes as usize,
            CountRule::Produced,
            wire,
        )?;
        let now = now_ms();
        let rules = cfg.append_rules(now);
        for (at, h) in &headers {
            if !wire && !validate::built_batch_needs_checks(h, &rules) {
                continue;
            }
            validate::validate_records(&batches[*at..*at + h.size()], h, &rules).map_err(
                |source| StorageError::InvalidBatch {
                    position: *at,
                    source,
                },
            )?;
        }
        // compression.type other than `producer`: batches in another codec are
        // stored recompressed (Kafka's LogValidator does the same), a copy.
        let mut bytes = Cow::Borrowed(batches);
        if let Some(codec) = cfg.compression {
            if headers.iter().any(|(_, h)| h.codec() != codec) {
                let recompressed = recompress_all(batches, &headers, codec, &cfg)?;
                headers = parse_all(
                    &recompressed,
                    cfg.max_message_bytes as usize,
                    CountRule::Produced,
                    true,
                )?;
                bytes = Cow::Owned(recompressed);
            }
        }
        // LogAppendTime rewrites bytes the CRC covers, so that path takes a copy.
        let mut log_append_time = -1;
        if cfg.log_append_time {
            bytes = Cow::Owned(stamp_append_time(&bytes, &mut headers, now));
            log_append_time = now;
        }
        Ok(Prepared {
            bytes,
            headers,
            log_append_time,
        })
    }

    /// Appends batches made final by [`Log::prepare`]: assigns them offsets
    /// from the log end and stamps `leader_epoch` (both outside the CRC), as one
    /// write. Same durability as [`Log::append`].
    pub fn append_prepared(&self, p: &Prepared<'_>, leader_epoch: i32) -> Result<AppendInfo> {
        let mut headers = p.headers.clone();
        let mut info = self.write_assigning(&p.bytes, &mut headers, leader_epoch, None)?;
        info.log_append_time = p.log_append_time;
        Ok(info)
    }

    /// Appends batches a leader already validated and prepared (a Raft entry
    /// being written on any replica): only the framing and CRC are checked, the
    /// records are not walked again; offsets are assigned from the log end and
    /// `leader_epoch` stamped, as [`Log::append`] does. Same durability.
    pub fn append_trusted(&self, batches: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        let mut headers = parse_all(batches, usize::MAX, CountRule::Produced, true)?;
        self.write_assigning(batches, &mut headers, leader_epoch, None)
    }

    /// Appends one batch a replica copies from its leader, to be based at
    /// `base_offset` (which must be the log end) with `leader_epoch`: as
    /// [`Log::append_replicated`], but the caller's buffer is written as it
    /// is, its offset and epoch stamped into a copy of its first 16 bytes.
    pub fn append_replicated_at(
        &self,
        batch: &[u8],
        base_offset: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let mut headers = parse_all(batch, usize::MAX, CountRule::Stored, true)?;
        self.write_assigning(batch, &mut headers, leader_epoch, Some(base_offset))
    }

    /// Writes `batches` at the log end, stamped with their offsets from
    /// there and `leader_epoch`; when `expected` is given, the log must end
    /// there.
    fn write_assigning(
        &self,
        batches: &[u8],
        headers: &mut [(usize, BatchHeader)],
        leader_epoch: i32,
        expected: Option<i64>,
    ) -> Result<AppendInfo> {
        let (info, after) = {
            let mut st = self.lock()?;
            let mut next = st.log_end();
            if let Some(base_offset) = expected.filter(|b| *b != next) {
                return Err(StorageError::NonContiguous {
                    base_offset,
                    log_end: next,
                });
            }
            // The 16 bytes the log rewrites are stamped into small copies; the
            // caller's buffer is written as it is (one pwritev, no copy).
            let mut stamps = Vec::with_capacity(headers.len());
            for (at, h) in headers.iter_mut() {
                // Fix (found by fuzzing): a log ending near i64::MAX (from a
                // crafted segment name) overflowed the offsets of the append.
                if next
                    .checked_add(i64::from(h.last_offset_delta) + 1)
                    .is_none()
                {
                    return Err(StorageError::OffsetOutOfRange {
                        offset: next,
                        log_start: st.log_start,
                        log_end: st.log_end(),
                    });
                }
                let mut stamp = [0u8; 16];
                stamp.copy_from_slice(&batches[*at..*at + 16]);
                batch::stamp(&mut stamp, next, leader_epoch);
                stamps.push(stamp);
                h.base_offset = next;
                h.partition_leader_epoch = leader_epoch;
                next = h.next_offset();
            }
            let info = self.write_locked(&mut st, batches, headers, &stamps)?;
            (info, (st.cfg.durability, st.unflushed_bytes))
        };
        self.after_append(after)?;
        Ok(info)
    }

    /// Appends batches that already carry their offsets (a replica copying its
    /// leader); the first must start at the log end. Same durability as `append`.
    pub fn append_replicated(&self, batches: &[u8]) -> Result<AppendInfo> {
        let headers = parse_all(batches, usize::MAX, CountRule::Stored, true)?;
        let (info, after) = {
            let mut st = self.lock()?;
            let mut expected = st.log_end();
            for (_, h) in &headers {
                if h.base_offset < expected {
                    return Err(StorageError::NonContiguous {
                        base_offset: h.base_offset,
                        log_end: expected,
                    });
                }
                expected = h.next_offset();
            }
            let info = self.write_locked(&mut st, batches, &headers, &[])?;
            (info, (st.cfg.durability, st.unflushed_bytes))
        };
        self.after_append(after)?;
        Ok(info)
    }

    fn write_locked(
        &self,
        st: &mut State,
        buf: &[u8],
        headers: &[(usize, BatchHeader)],
        stamps: &[[u8; 16]],
    ) -> Result<AppendInfo> {
        let now = now_ms();
        let cfg = st.cfg.clone();
        // Batches go in runs that fit the active segment, rolling before
        // each run that does not (at least one batch per run): a run of Raft
        // entries written at once rolls where batch-by-batch appends would.
        let end_of = |k: usize| headers.get(k).map_or(buf.len(), |(at, _)| *at);
        let mut from = 0;
        let mut result = Ok(());
        while from < headers.len() && result.is_ok() {
            let start = headers[from].0;
            let to = match self.room_for_run(st, &cfg, now, end_of(from + 1) - start) {
                Ok(room) => (from + 1..headers.len())
                    .find(|&k| end_of(k + 1) - start > room)
                    .unwrap_or(headers.len()),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let run = &buf[start..end_of(to)];
            let run_stamps = if stamps.is_empty() {
                stamps
            } else {
                &stamps[from..to]
            };
            result = if start == 0 && to == headers.len() {
                st.active_mut()
                    .append_stamped(run, headers, run_stamps, &cfg, now)
            } else {
                let moved: Vec<(usize, BatchHeader)> = headers[from..to]
                    .iter()
                    .map(|(at, h)| (at - start, *h))
                    .collect();
                st.active_mut()
                    .append_stamped(run, &moved, run_stamps, &cfg, now)
            };
            if result.is_ok() {
                // In memory only: the file follows with the next flush (no
                // fsync here).
                for (_, h) in &headers[from..to] {
                    self.assign_epoch(st, h);
                }
                st.unflushed_bytes += run.len() as u64;
                st.first_unflushed.get_or_insert_with(Instant::now);
                from = to;
            }
        }
        if from > 0 {
            self.end_tx.send_replace(st.log_end());
        }
        // A failed run leaves the runs before it written (whole batches, as
        // a crash would), and the log's bookkeeping agrees with them.
        result?;
        let first = headers
            .first()
            .expect("parse_all returns at least one batch")
            .1;
        let last = headers.last().expect("non-empty").1;
        Ok(AppendInfo {
            base_offset: first.base_offset,
            last_offset: last.last_offset(),
            max_timestamp: headers
                .iter()
                .map(|(_, h)| h.max_timestamp)
                .max()
                .unwrap_or(-1),
            batches: headers.len(),
            bytes: buf.len(),
            log_append_time: -1,
        })
    }

    /// Rolls the active segment when a run starting with a batch of
    /// `first_len` bytes must go in a new one; returns the bytes the active
    /// segment then has room for under `segment.bytes`.
    fn room_for_run(
        &self,
        st: &mut State,
        cfg: &LogConfig,
        now: i64,
        first_len: usize,
    ) -> Result<usize> {
        if st.active().must_roll(first_len, cfg, now) {
            self.roll_locked(st)?;
        }
        Ok(usize::try_from(cfg.segment_bytes)
            .unwrap_or(usize::MAX)
            .saturating_sub(st.active().size()))
    }

    /// Notes the epoch of an appended batch in the epoch cache.
    fn assign_epoch(&self, st: &mut State, h: &BatchHeader) {
        let epoch = h.partition_leader_epoch;
        if let Assigned::Stale { latest } = st.epochs.assign(epoch, h.base_offset) {
            // As in Kafka: a batch of an older leader after a newer one is a bug
            // upstream; the cache keeps its epochs increasing and says so.
            tracing::warn!(log = %self.name, epoch, latest, base_offset = h.base_offset,
                "appended batch has a leader epoch below the latest; not cached");
        }
    }

    /// Writes the epoch cache now, under the log's lock (truncations, close,
    /// reset: rare operations that are durable on return).
    fn persist_epochs_locked(&self, st: &mut State) -> Result<()> {
        let mut on_disk = self.epoch_file.lock().unwrap_or_else(|p| p.into_inner());
        st.epochs.write(&self.dir)?;
        *on_disk = st.epochs.version();
        st.epochs_written = st.epochs.version();
        Ok(())
    }

    /// Writes a copy of the epoch cache that `flush` took, outside the log's lock,
    /// unless a newer version reached the file meanwhile.
    fn persist_epochs_copy(&self, copy: &EpochCache) -> Result<()> {
        let version = copy.version();
        {
            let mut on_disk = self.epoch_file.lock().unwrap_or_else(|p| p.into_inner());
            if version <= *on_disk {
                return Ok(());
            }
            copy.write(&self.dir)?;
            *on_disk = version;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.epochs_written = st.epochs_written.max(version);
        Ok(())
    }

    /// Starts the flush the policy asks for after a write (`after` was read under
    /// the same lock as the write, so appends take the lock once).
    fn after_append(&self, after: (Durability, u64)) -> Result<()> {
        let (durability, pending) = after;
        match durability {
            Durability::GroupCommit { max_bytes, .. } if pending >= max_bytes => {
                self.flush_wake.notify_one();
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes` (at
    /// least one batch when any is available), never past `bound`. Batches come
    /// from one segment, as zero-copy `Bytes`. The log's lock is held only to
    /// pick a segment; batch headers are walked without it, so appends never wait
    /// for a reader.
    pub fn read(&self, offset: i64, max_bytes: usize, bound: ReadBound) -> Result<ReadResult> {
        let (mut result, limit) = {
            let st = self.lock()?;
            let log_end = st.log_end();
            if offset < st.log_start || offset > log_end {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start,
                    log_end,
                });
            }
            let limit = match bound {
                ReadBound::LogEnd => log_end,
                ReadBound::HighWatermark | ReadBound::LastStable => st.high_watermark,
            };
            let result = ReadResult {
                records: Bytes::new(),
                log_start_offset: st.log_start,
                log_end_offset: log_end,
                high_watermark: st.high_watermark,
                last_stable_offset: st.high_watermark,
            };
            (result, limit)
        };
        if offset >= limit {
            return Ok(result);
        }
        // The segment holding `offset`, then later ones while a segment has no
        // batch for it (a compacted gap).
        let mut from = i64::MIN;
        loop {
            let view = {
                let st = self.lock()?;
                let key = if from == i64::MIN {
                    st.segments
                        .range(..=offset)
                        .next_back()
                        .map_or(offset, |(k, _)| *k)
                } else {
                    from
                };
                st.segments
                    .range(key..)
                    .next()
                    .filter(|(_, s)| s.base_offset < limit)
                    .map(|(k, s)| (*k, s.view(offset.max(s.base_offset))))
            };
            let Some((base, view)) = view else { break };
            if let Some(b) = view.read(offset.max(base), max_bytes, limit) {
                result.records = b;
                break;
            }
            // Fix (found by fuzzing recovery): a segment based at i64::MAX
            // overflowed `base + 1`.
            let Some(next) = base.checked_add(1) else {
                break;
            };
            from = next;
        }
        Ok(result)
    }

    /// The first record whose timestamp is `>= timestamp`, below the high
    /// watermark; `None` when every record is older. Records are decoded (and
    /// decompressed) without the log's lock.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        self.offset_for_timestamp_from(timestamp, i64::MIN)
    }

    /// [`Log::offset_for_timestamp`] among the records at or after
    /// `first` (a start the log has not reached yet, such as a replicated
    /// partition's DeleteRecords before its replica removed the records).
    pub fn offset_for_timestamp_from(
        &self,
        timestamp: i64,
        first: i64,
    ) -> Result<Option<TimestampOffset>> {
        let mut from = i64::MIN;
        loop {
            // Fix: records below the log start are skipped, as in Kafka. The answer
            // used to be the first matching record clamped up to the log start,
            // pairing the log start with another record's timestamp, and even
            // returning an offset at or above the high watermark.
            let next = {
                let st = self.lock()?;
                let limit = crate::record::decompress_limit(st.cfg.max_message_bytes);
                st.segments
                    .range(from..)
                    .find(|(_, s)| s.max_timestamp() >= timestamp)
                    .map(|(k, s)| {
                        (
                            *k,
                            s.time_view(timestamp, st.log_start.max(first)),
                            st.high_watermark,
                            limit,
                        )
                    })
            };
            let Some((base, (view, start), high_watermark, limit)) = next else {
                return Ok(None);
            };
            match view.offset_for_timestamp(timestamp, start, high_watermark, limit) {
                Ok(Some((offset, ts))) => {
                    return Ok(Some(TimestampOffset {
                        offset,
                        timestamp: ts,
                    }))
                }
                Ok(None) => match base.checked_add(1) {
                    Some(next) => from = next,
                    None => return Ok(None),
                },
                Err((at, e)) => {
                    return Err(StorageError::Corrupt {
                        path: self.dir.join(crate::segment::file_name(base, ".log")),
                        reason: format!("batch at byte {at}: {e}"),
                    })
                }
            }
        }
    }

    /// The largest record timestamp in the log (its segments' max
    /// timestamps), `None` when no record carries one. With
    /// [`Log::offset_for_timestamp`] it finds ListOffsets' MAX_TIMESTAMP.
    pub fn max_timestamp(&self) -> Result<Option<i64>> {
        let st = self.lock()?;
        Ok(st
            .segments
            .values()
            .map(|s| s.max_timestamp())
            .max()
            .filter(|t| *t >= 0))
    }

    /// First offset of the log.
    pub fn log_start_offset(&self) -> i64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log_start
    }

    /// Next offset to be written.
    pub fn log_end_offset(&self) -> i64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log_end()
    }

    /// OffsetForLeaderEpoch: the largest epoch `<= epoch` and its end offset, as
    /// Kafka's `LeaderEpochFileCache.endOffsetFor` answers (see [`Log::epoch_entries`]):
    /// the latest epoch ends at the log end, an older one where the next begins;
    /// an epoch below every cached one gives `(epoch, first start offset)`, one
    /// above the latest or negative `(-1, -1)`. `None` when no batch carries an
    /// epoch: the caller answers `(-1, -1)` to a follower (it then truncates to
    /// its high watermark) or the log end to a consumer.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.epochs.end_offset_for(epoch, st.log_end())
    }

    /// The leader epoch of the newest batch that carries one.
    pub fn latest_epoch(&self) -> Option<i32> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.epochs.latest_epoch()
    }

    /// The leader-epoch cache: (epoch, offset of its first batch), oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.epochs.entries()
    }

    /// Offset below which records are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        *self.hw_tx.borrow()
    }

    /// Moves the high watermark (the replication layer's commit index); clamped to
    /// [log start, log end]. Wakes readers waiting on [`Log::subscribe_high_watermark`].
    pub fn set_high_watermark(&self, offset: i64) -> Result<i64> {
        let mut st = self.lock()?;
        let hw = offset.clamp(st.log_start, st.log_end());
        st.high_watermark = hw;
        self.hw_tx.send_replace(hw);
        Ok(hw)
    }

    /// A receiver that sees every move of the log end: appends, truncation, reset.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.end_tx.subscribe()
    }

    /// A receiver that sees every high-watermark change (for long-polling fetches).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// Offset below which every batch is known to be on disk.
    pub fn flushed_offset(&self) -> i64 {
        *self.flushed_tx.borrow()
    }

    /// Bytes of data in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).size()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.segments
            .values()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                size: s.size() as u64,
                max_timestamp: s.max_timestamp(),
            })
            .collect()
    }

    /// The current fsync policy (without cloning the whole config).
    pub fn durability(&self) -> Durability {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cfg
            .durability
    }

    /// The current settings.
    pub fn config(&self) -> LogConfig {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cfg
            .clone()
    }

    /// Replaces the settings; they apply to the next append, roll, retention or cleaning.
    pub fn set_config(&self, cfg: LogConfig) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).cfg = cfg;
    }

    /// Writes every appended byte to disk; returns the offset now durable.
    pub fn flush(&self) -> Result<i64> {
        let (files, target, gen, dir_dirty, parent_dirty, epochs) = {
            let mut st = self.lock()?;
            let target = st.log_end();
            let epochs_dirty = st.epochs.version() != st.epochs_written;
            if target == st.flushed && !st.dir_dirty && !st.parent_dirty && !epochs_dirty {
                return Ok(target);
            }
            let from = st
                .segments
                .range(..=st.flushed)
                .next_back()
                .map_or(i64::MIN, |(k, _)| *k);
            let files: Vec<_> = st.segments.range(from..).map(|(_, s)| s.file()).collect();
            st.unflushed_bytes = 0;
            st.first_unflushed = None;
            (
                files,
                target,
                st.truncations,
                std::mem::take(&mut st.dir_dirty),
                std::mem::take(&mut st.parent_dirty),
                // Taken with `target`: it names no batch past the data synced below.
                epochs_dirty.then(|| st.epochs.clone()),
            )
        };
        for (file, path) in files {
            file.sync_data().map_err(crate::error::io_err(path))?;
        }
        if dir_dirty {
            checkpoint::sync_dir(&self.dir)?;
        }
        if let Some(parent) = self.dir.parent().filter(|_| parent_dirty) {
            checkpoint::sync_dir(parent)?;
        }
        // Before the recovery point can move: an open trusts the file to name
        // every epoch below it (and walks only the batches after).
        if let Some(epochs) = epochs {
            self.persist_epochs_copy(&epochs)?;
        }
        let (flushed, new_recovery_point) = {
            let mut st = self.lock()?;
            if st.truncations == gen && target > st.flushed {
                st.flushed = target;
                self.flushed_tx.send_replace(target);
            }
            // The recovery point checkpoint moves once per segment, not per flush:
            // recovery re-validates at most the segments after it.
            let segment_of = |o: i64| st.segments.range(..=o).next_back().map_or(o, |(k, _)| *k);
            let moved = segment_of(st.flushed) > segment_of(st.recovery_point);
            if moved {
                st.recovery_point = st.flushed;
            }
            (st.flushed, moved.then_some(st.recovery_point))
        };
        if let Some(rp) = new_recovery_point {
            let _guard = self
                .checkpoint_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            checkpoint::write(&self.dir, checkpoint::RECOVERY_POINT, rp)?;
        }
        Ok(flushed)
    }

    /// Resolves once every batch up to and including `offset` is durable under the
    /// log's policy (see the module docs). Cancel-safe.
    pub async fn wait_durable(self: &Arc<Self>, offset: i64) -> Result<()> {
        let durability = self.config().durability;
        let max_delay = match durability {
            Durability::PageCache => return Ok(()),
            Durability::EveryAppend => std::time::Duration::ZERO,
            Durability::GroupCommit { max_delay, .. } => max_delay,
        };
        let mut flushed = self.flushed_tx.subscribe();
        loop {
            if *flushed.borrow_and_update() > offset {
                return Ok(());
            }
            {
                // An offset not (or no longer, after a truncation) in the log can
                // never become durable: fail instead of flushing in a loop.
                let st = self.lock()?;
                if offset >= st.log_end() {
                    return Err(StorageError::OffsetOutOfRange {
                        offset,
                        log_start: st.log_start,
                        log_end: st.log_end(),
                    });
                }
            }
            let done = self.flush_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if let Some(_leader) = FlushLeader::acquire(self) {
                // Wait for company: more appends join this fsync until the oldest
                // pending append is `max_delay` old or `max_bytes` are pending.
                let since = self.lock()?.first_unflushed;
                if let Some(since) = since.filter(|_| !max_delay.is_zero()) {
                    let deadline = tokio::time::Instant::from_std(since + max_delay);
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.flush_wake.notified() => {}
                    }
                }
                let log = Arc::clone(self);
                tokio::task::spawn_blocking(move || log.flush())
                    .await
                    .map_err(|e| StorageError::Corrupt {
                        path: self.dir.clone(),
                        reason: format!("flush task failed: {e}"),
                    })??;
                continue;
            }
            tokio::select! {
                r = flushed.changed() => { let _ = r; }
                () = &mut done => {}
            }
        }
    }

    /// Closes the log without flushing anything, for a log about to be deleted:
    /// later calls fail with [`StorageError::Closed`]; readers keep their data.
    pub fn abandon(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
    }

    /// Rolls the active segment now (if it holds data).
    pub fn roll(&self) -> Result<()> {
        let mut st = self.lock()?;
        if st.active().is_empty() {
            return Ok(());
        }
        self.roll_locked(&mut st)
    }

    pub(crate) fn roll_locked(&self, st: &mut State) -> Result<()> {
        let next = st.log_end();
        st.active_mut().seal()?;
        let seg = Segment::create(&self.dir, next, &st.cfg, "")?;
        st.segments.insert(next, seg);
        // The sealed file and the new directory entry reach the disk with the next
        // flush; nothing is fsynced under the lock.
        st.dir_dirty = true;
        tracing::debug!(log = %self.name, base_offset = next, "rolled segment");
        Ok(())
    }

    /// Moves the log end up to `offset`, leaving the offsets in between unused
    /// (read as a gap, like a compacted one): an empty segment starts at
    /// `offset`, the active one is sealed (or removed when empty). For a log
    /// whose tail was lost to damage on disk below the point its owner had
    /// already recorded as written (a Raft anchor). The log start follows when
    /// the log held nothing. Durable on return; nothing to do when `offset` is
    /// not past the end.
    pub fn continue_at(&self, offset: i64) -> Result<()> {
        {
            let mut st = self.lock()?;
            let end = st.log_end();
            if offset <= end {
                return Ok(());
            }
            st.truncations += 1;
            if st.active().is_empty() {
                let base = st.active().base_offset;
                if let Some(seg) = st.segments.remove(&base) {
                    remove_files(&seg.files())?;
                }
            } else {
                st.active_mut().seal()?;
            }
            let seg = Segment::create(&self.dir, offset, &st.cfg, "")?;
            st.segments.insert(offset, seg);
            if st.log_start >= end {
                checkpoint::write(&self.dir, checkpoint::LOG_START, offset)?;
                st.log_start = offset;
                st.epochs.clear();
                recovery::assign_epochs(&mut st, offset);
                self.persist_epochs_locked(&mut st)?;
            }
            st.high_watermark = offset;
            st.dir_dirty = true;
            self.hw_tx.send_replace(offset);
            self.end_tx.send_replace(offset);
            tracing::warn!(log = %self.name, from = end, to = offset, "log continues past a gap");
        }
        self.flush()?;
        Ok(())
    }

    /// Removes every record at or above `offset` (rounded down to a batch start);
    /// returns the new log end. When that batch starts below the log start, the log
    /// is emptied and its end is the log start. Durable on return.
    pub fn truncate_to(&self, offset: i64) -> Result<i64> {
        let mut st = self.lock()?;
        let log_end = st.log_end();
        if offset >= log_end {
            return Ok(log_end);
        }
        if offset < st.log_start {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: st.log_start,
                log_end,
            });
        }
        st.truncations += 1;
        let doomed: Vec<i64> = st.segments.range(offset + 1..).map(|(k, _)| *k).collect();
        let keep_key = *st
            .segments
            .range(..=offset)
            .next_back()
            .map(|(k, _)| k)
            .unwrap_or(&offset);
        for base in doomed.into_iter().rev() {
            if base == keep_key {
                continue;
            }
            if let Some(seg) = st.segments.remove(&base) {
                remove_files(&seg.files())?;
            }
        }
        // Fix: when the batch holding `offset` starts below the log start, rounding
        // down put the log end below the log start (and a reopen then lowered the
        // log start, reusing offsets). Instead the log is emptied and restarts at
        // the log start, like Kafka's truncateFullyAndStartAt.
        let starts_below = st
            .segments
            .get(&keep_key)
            .and_then(|s| s.find(offset))
            .is_some_and(|(_, h)| h.base_offset < st.log_start);
        let new_end = if starts_below {
            for (_, seg) in std::mem::take(&mut st.segments) {
                remove_files(&seg.files())?;
            }
            let start = st.log_start;
            let seg = Segment::create(&self.dir, start, &st.cfg, "")?;
            st.segments.insert(start, seg);
            start
        } else {
            let cfg = st.cfg.clone();
            let active = st.active_mut();
            active.reactivate(&cfg)?;
            active.truncate_from(offset)?
        };
        checkpoint::sync_dir(&self.dir)?;
        if st.epochs.truncate_from_end(new_end) {
            self.persist_epochs_locked(&mut st)?;
        }
        if checkpoint::read(&self.dir, checkpoint::RECOVERY_POINT).is_some_and(|rp| rp > new_end) {
            checkpoint::write(&self.dir, checkpoint::RECOVERY_POINT, new_end)?;
        }
        st.flushed = st.flushed.min(new_end);
        st.recovery_point = st.recovery_point.min(new_end);
        self.flushed_tx.send_replace(st.flushed);
        st.high_watermark = st.high_watermark.min(new_end);
        self.hw_tx.send_replace(st.high_watermark);
        self.end_tx.send_replace(new_end);
        tracing::info!(log = %self.name, offset, new_end, "truncated");
        Ok(new_end)
    }

    /// Raises the log start offset (DeleteRecords); whole segments below it are
    /// deleted. Durable on return. Returns the new log start.
    pub fn advance_log_start(&self, offset: i64) -> Result<i64> {
        Ok(self.delete_before(offset)?.log_start_offset)
    }

    /// Raises the log start to `offset` (when above it) and deletes the whole
    /// segments below the log start: what retention does once
    /// [`Log::retention_point`] chose the offset (a replicated partition first
    /// lets its Raft log forget the entries in between). Durable on return.
    pub fn delete_before(&self, offset: i64) -> Result<RetentionOutcome> {
        let mut st = self.lock()?;
        let log_end = st.log_end();
        if offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: st.log_start,
                log_end,
            });
        }
        if offset > st.log_start {
            self.raise_log_start_locked(&mut st, offset)?;
        }
        // Also when the start did not move: a roll since the last move may have
        // sealed a segment that now holds nothing at or above the start.
        let (segments_deleted, bytes_deleted) = self.delete_below_start(&mut st)?;
        if segments_deleted > 0 {
            tracing::info!(log = %self.name, segments_deleted, bytes_deleted, log_start = st.log_start, "segments deleted");
        }
        Ok(RetentionOutcome {
            segments_deleted,
            bytes_deleted,
            log_start_offset: st.log_start,
        })
    }

    /// Raises the log start to `offset` (durably): its checkpoint, the high
    /// watermark, and the epoch cache, whose first entry moves up to it.
    fn raise_log_start_locked(&self, st: &mut State, offset: i64) -> Result<()> {
        checkpoint::write(&self.dir, checkpoint::LOG_START, offset)?;
        st.log_start = offset;
        st.high_watermark = st.high_watermark.max(offset);
        self.hw_tx.send_replace(st.high_watermark);
        if st.epochs.truncate_from_start(offset) {
            self.persist_epochs_locked(st)?;
        }
        Ok(())
    }

    /// Deletes sealed segments that hold nothing at or above the log start.
    fn delete_below_start(&self, st: &mut State) -> Result<(usize, u64)> {
        let keys: Vec<i64> = st.segments.keys().copied().collect();
        let mut removed = (0, 0);
        for pair in keys.windows(2) {
            if pair[1] > st.log_start {
                break;
            }
            if let Some(seg) = st.segments.remove(&pair[0]) {
                removed.0 += 1;
                removed.1 += seg.size() as u64;
                remove_files(&seg.files())?;
            }
        }
        if removed.0 > 0 {
            checkpoint::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Applies `retention.ms` and `retention.bytes` (when the cleanup policy deletes):
    /// whole segments are removed oldest first. Durable on return.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let point = self.retention_point(now_ms)?;
        self.delete_before(point)
    }

    /// The log start `retention.ms` and `retention.bytes` call for at `now_ms`
    /// (the current log start when nothing is due, or when the cleanup policy
    /// does not delete): the base of the oldest segment to keep. Removes
    /// nothing, but rolls the active segment when every record of the log has
    /// expired, so that it can go too.
    pub fn retention_point(&self, now_ms: i64) -> Result<i64> {
        let mut st = self.lock()?;
        if !st.cfg.cleanup_policy.deletes() {
            return Ok(st.log_start);
        }
        let (by_time, by_size) = (st.cfg.retention_ms, st.cfg.retention_bytes);
        let expired = |seg: &Segment| {
            by_time.is_some_and(|ms| seg.retention_timestamp() < now_ms.saturating_sub(ms as i64))
        };
        // The active segment goes too when every record in the log has expired.
        if st.segments.values().all(|s| s.is_empty() || expired(s)) && !st.active().is_empty() {
            self.roll_locked(&mut st)?;
        }
        let mut total = st.size();
        let mut new_start = st.log_start;
        let sealed: Vec<(i64, u64, bool)> = {
            let n = st.segments.len();
            st.segments
                .values()
                .take(n - 1)
                .map(|s| (s.base_offset, s.size() as u64, expired(s)))
                .collect()
        };
        for (i, (_, size, old)) in sealed.iter().enumerate() {
            let too_big = by_size.is_some_and(|b| total.saturating_sub(*size) >= b);
            if !(*old || too_big) {
                break;
            }
            total -= size;
            let next_base = sealed
                .get(i + 1)
                .map_or_else(|| st.active().base_offset, |s| s.0);
            new_start = new_start.max(next_base);
        }
        Ok(new_start)
    }

    /// Empties the log and restarts it at `offset` (Kafka's truncateFullyAndStartAt),
    /// for a follower whose leader's log starts past its own end: every segment is
    /// deleted, one empty segment is created at `offset`, and the log start, log
    /// end, high watermark and recovery point all become `offset`; the epoch cache
    /// is emptied. Any `offset >= 0` is accepted, inside or outside the current
    /// range. Durable on return, and all or nothing across a crash: a marker
    /// written first makes the next open finish an interrupted reset. If a step
    /// fails after the marker, the log is closed (reopening it finishes the reset).
    pub fn reset_to(&self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(StorageError::NegativeResetOffset {
                path: self.dir.clone(),
                offset,
            });
        }
        let mut st = self.lock()?;
        checkpoint::write(&self.dir, checkpoint::RESET, offset)?;
        if let Err(e) = self.reset_locked(&mut st, offset) {
            st.closed = true;
            tracing::error!(log = %self.name, offset, error = %e, "reset failed; log closed");
            return Err(e);
        }
        tracing::info!(log = %self.name, offset, "log reset");
        Ok(())
    }

    /// [`Log::reset_to`], but the log keeps the sealed segments of another
    /// log's directory `prefix` (durable, closed) below `offset` and starts at
    /// `prefix_start`: a follower installing its leader's snapshot of a
    /// compacted partition receives the cleaned segments below the snapshot's
    /// boundary this way (the files are hard-linked, so `prefix` can stay
    /// until the caller's own marker is gone). Not crash-atomic by itself: a
    /// restart finishes a plain reset, and the caller redoes this one.
    pub fn reset_with_prefix(&self, offset: i64, prefix: &Path, prefix_start: i64) -> Result<()> {
        if offset < 0 || prefix_start < 0 {
            return Err(StorageError::NegativeResetOffset {
                path: self.dir.clone(),
                offset: offset.min(prefix_start),
            });
        }
        let mut st = self.lock()?;
        checkpoint::write(&self.dir, checkpoint::RESET, offset)?;
        if let Err(e) = self.reset_locked_with(&mut st, offset, Some((prefix, prefix_start))) {
            st.closed = true;
            tracing::error!(log = %self.name, offset, error = %e, "reset failed; log closed");
            return Err(e);
        }
        tracing::info!(log = %self.name, offset, prefix_start, "log reset above a received prefix");
        Ok(())
    }

    /// [`Log::reset_to`] once its marker is on disk.
    fn reset_locked(&self, st: &mut State, offset: i64) -> Result<()> {
        self.reset_locked_with(st, offset, None)
    }

    /// Empties the log at `offset`, keeping the segments of the `prefix`
    /// directory below it (see [`Log::reset_with_prefix`]).
    fn reset_locked_with(
        &self,
        st: &mut State,
        offset: i64,
        prefix: Option<(&Path, i64)>,
    ) -> Result<()> {
        // A flush that took file handles before this does not move `flushed`.
        st.truncations += 1;
        for seg in st.segments.values() {
            remove_files(&seg.files())?;
        }
        let mut segments = BTreeMap::new();
        let mut start = offset;
        if let Some((dir, prefix_start)) = prefix {
            for base in recovery::segment_bases(dir)?
                .into_iter()
                .filter(|b| *b < offset)
            {
                for suffix in [".log", ".index", ".timeindex"] {
                    let (from, to) = (
                        dir.join(crate::segment::file_name(base, suffix)),
                        self.dir.join(crate::segment::file_name(base, suffix)),
                    );
                    if from.exists() {
                        remove_files(std::slice::from_ref(&to))?;
                        std::fs::hard_link(&from, &to).map_err(crate::error::io_err(&to))?;
                    }
                }
                let (seg, _) = Segment::open(&self.dir, base, &st.cfg, false, false)?;
                segments.insert(base, seg);
            }
            start = prefix_start.min(offset);
        }
        segments.insert(offset, Segment::create(&self.dir, offset, &st.cfg, "")?);
        st.segments = segments;
        recovery::reset_checkpoints(&self.dir, start)?;
        st.log_start = start;
        st.epochs.clear();
        recovery::assign_epochs(st, start);
        self.persist_epochs_locked(st)?;
        checkpoint::sync_dir(&self.dir)?;
        if let Some(parent) = self.dir.parent().filter(|_| st.parent_dirty) {
            checkpoint::sync_dir(parent)?;
        }
        // Everything is on disk: the marker can go.
        remove_files(&[self.dir.join(checkpoint::RESET)])?;
        checkpoint::sync_dir(&self.dir)?;
        st.log_start = start;
        st.high_watermark = offset;
        st.flushed = offset;
        st.recovery_point = offset;
        st.unflushed_bytes = 0;
        st.first_unflushed = None;
        st.dir_dirty = false;
        st.parent_dirty = false;
        self.flushed_tx.send_replace(offset);
        self.hw_tx.send_replace(offset);
        self.end_tx.send_replace(offset);
        Ok(())
    }

    /// Flushes everything, records the recovery point and leaves a clean-shutdown
    /// marker; later calls fail with [`StorageError::Closed`].
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        let mut st = self.lock()?;
        if st.epochs.version() != st.epochs_written {
            // An append between the flush and this lock saw a new epoch.
            self.persist_epochs_locked(&mut st)?;
        }
        let end = st.log_end();
        st.active_mut().finish_time_index();
        st.active().sync_all()?;
        checkpoint::write(&self.dir, checkpoint::RECOVERY_POINT, end)?;
        checkpoint::write(&self.dir, checkpoint::CLEAN_SHUTDOWN, end)?;
        st.closed = true;
        Ok(())
    }
}

/// Copies `batches` with every batch marked LogAppendTime (attribute bit 3) and its
/// maxTimestamp set to `now`, as Kafka's broker does; CRCs are recomputed.
fn stamp_append_time(batches: &[u8], headers: &mut [(usize, BatchHeader)], now: i64) -> Vec<u8> {
    let mut out = batches.to_vec();
    for (at, h) in headers.iter_mut() {
        let b = &mut out[*at..*at + h.size()];
        h.attributes |= 0x8;
        h.max_timestamp = now;
        b[21..23].copy_from_slice(&h.attributes.to_be_bytes());
        b[35..43].copy_from_slice(&now.to_be_bytes());
        batch::seal(b);
    }
    out
}

/// Every batch of `buf` in `codec` (those already in it copied as they are).
fn recompress_all(
    buf: &[u8],
    headers: &[(usize, BatchHeader)],
    codec: i16,
    cfg: &LogConfig,
) -> Result<Vec<u8>> {
    let limit = crate::record::decompress_limit(cfg.max_message_bytes);
    let mut out = Vec::with_capacity(buf.len());
    for (at, h) in headers {
        let batch = &buf[*at..*at + h.size()];
        if h.codec() == codec {
            out.extend_from_slice(batch);
        } else {
            let b = crate::record::recompress(batch, h, codec, limit).map_err(|source| {
                StorageError::InvalidBatch {
                    position: *at,
                    source,
                }
            })?;
            out.extend_from_slice(&b);
        }
    }
    Ok(out)
}

/// Validates every batch of a request buffer; nothing is written if one is bad.
fn parse_all(
    buf: &[u8],
    max: usize,
    rule: CountRule,
    crc: bool,
) -> Result<Vec<(usize, BatchHeader)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() || out.is_empty() {
        let rest = &buf[pos..];
        let size = BatchHeader::parse(rest).map(|h| h.size()).unwrap_or(0);
        if size > max {
            return Err(StorageError::BatchTooLarge { size, max });
        }
        let h = batch::validate_with(rest, max, rule, crc).map_err(|source| {
            StorageError::InvalidBatch {
                position: pos,
                source,
            }
        })?;
        out.push((pos, h));
        pos += h.size();
    }
    Ok(out)
}

/// Deletes a segment's files (live mappings stay readable until dropped).
pub(crate) fn remove_files(files: &[PathBuf]) -> Result<()> {
    for f in files {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(crate::error::io_err(f)(e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The one waiter that issues the group-commit fsync; released on drop, even when
/// the waiting future is cancelled.
struct FlushLeader<'a>(&'a Log);

impl<'a> FlushLeader<'a> {
    fn acquire(log: &'a Log) -> Option<Self> {
        log.flushing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Self(log))
    }
}

impl Drop for FlushLeader<'_> {
    fn drop(&mut self) {
        self.0.flushing.store(false, Ordering::Release);
        self.0.flush_done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Vec<u8> {
        crate::record::build_batch(&[(None, Some(b"v".to_vec()), now_ms())])
    }

    /// A batch built in this process and handed over in memory is held to
    /// the topic's rules as a client's is: what one refuses, the other
    /// refuses (a null key on a compacted topic, a timestamp too far ahead
    /// or, once a past bound is set, too far behind); what one takes, the
    /// other takes.
    #[test]
    fn a_batch_built_here_is_held_to_the_same_rules_as_a_clients() {
        let now = now_ms();
        let built = |key: Option<&[u8]>, ts: i64| {
            let mut b = crate::BatchBuilder::new(-1, -1, -1, 64);
            b.push(now, Some(b"k"), Some(b"first"), std::iter::empty());
            b.push(ts, key, Some(b"v"), std::iter::empty());
            b.finish(0).unwrap()
        };
        let cases = [
            ("plain", LogConfig::default(), built(Some(b"k"), now), true),
            (
                "a null key, compacted",
                LogConfig {
                    cleanup_policy: crate::CleanupPolicy::Compact,
                    ..LogConfig::default()
                },
                built(None, now),
                false,
            ),
            (
                "a null key, not compacted",
                LogConfig::default(),
                built(None, now),
                true,
            ),
            (
                "two hours ahead",
                LogConfig::default(),
                built(Some(b"k"), now + 7_200_000),
                false,
            ),
            (
                "a day behind, no past bound",
                LogConfig::default(),
                built(Some(b"k"), now - 86_400_000),
                true,
            ),
            (
                "a day behind, an hour's past bound",
                LogConfig {
                    timestamp_before_max_ms: 3_600_000,
                    ..LogConfig::default()
                },
                built(Some(b"k"), now - 86_400_000),
                false,
            ),
        ];
        for (name, cfg, batch, ok) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let (log, _) = Log::open(tmp.path(), "t-0", cfg).unwrap();
            for origin in [Origin::Wire, Origin::ThisProcess] {
                let got = log.prepare_from(&batch, origin);
                assert_eq!(got.is_ok(), ok, "{name}, {origin:?}: {:?}", got.err());
            }
        }
    }

    /// A flush copies the epoch cache, then writes it after its fsyncs; a
    /// truncation that wrote a newer file meanwhile must not be undone by it.
    #[test]
    fn an_older_copy_of_the_epoch_cache_never_overwrites_a_newer_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(tmp.path(), "t-0", LogConfig::default()).unwrap();
        log.append(&batch(), 0).unwrap();
        log.append(&batch(), 1).unwrap();
        let copy = log.lock().unwrap().epochs.clone();
        log.truncate_to(1).unwrap();
        log.persist_epochs_copy(&copy).unwrap();
        let on_disk = EpochCache::read(tmp.path()).unwrap().unwrap();
        assert_eq!(on_disk.entries(), [(0, 0)]);
        // A newer copy is written, and the cache is then clean.
        log.append(&batch(), 2).unwrap();
        let copy = log.lock().unwrap().epochs.clone();
        log.persist_epochs_copy(&copy).unwrap();
        let on_disk = EpochCache::read(tmp.path()).unwrap().unwrap();
        assert_eq!(on_disk.entries(), [(0, 0), (2, 1)]);
        let st = log.lock().unwrap();
        assert_eq!(st.epochs_written, st.epochs.version());
    }
}
