//! Raft index <-> Kafka offset.
//!
//! Raft indexes count entries; Kafka offsets count records, and entries that are
//! not data (blank, membership) take no offset and are not in the partition log.
//! The Raft log of a partition is therefore three things:
//!
//! - the **anchor** (`raft-state`, replaced atomically and durably): the last
//!   purged log id, the index of the first entry the log may hold, and the Kafka
//!   offset of the first data entry at or after it;
//! - the **non-data entries** (`raft-entries`, see [`crate::side_entries`]);
//! - the **data entries**: every other index from the anchor on is the next batch
//!   of the partition log, in order, one batch per entry; its term is the batch's
//!   partitionLeaderEpoch.
//!
//! These determine the mapping; the sync points of `raft-index` (see
//! [`crate::sync_points`]) only make it cheap to follow: a lookup starts at the
//! nearest known position (a sync point every [`POINT_SPACING`] data entries, the
//! anchor, the tail, or one of the last few positions read) and walks batch
//! headers forward from there.
//!
//! # What is trusted on open
//! - The partition log is the truth for data entries (its own recovery has cut
//!   any torn tail, so it is a prefix of what was written).
//! - The anchor is the truth for where the Raft log starts. A partition log that
//!   ends below the anchor's Kafka offset (data lost under the page-cache policy
//!   after a purge) cannot be reconciled locally and fails the open.
//! - `raft-entries` is trusted for the indexes it holds, up to the first hole:
//!   the Raft log is the longest run of consecutive indexes from the anchor whose
//!   non-data entries are in `raft-entries` and whose data entries are batches of
//!   the log. Non-data entries past a hole (a crash lost data appended before
//!   them) are dropped, durably. The reverse (the log holding data that follows a
//!   non-data entry the side file lost) cannot happen: a non-data record is
//!   fsynced before any data entry after it is written.
//! - `raft-index` is a cache: points before the anchor or at/after the log end
//!   are dropped, and the walk from the last point to the log end re-creates the
//!   missing ones.
//!
//! Truncation removes the partition log's tail first, then the side entries,
//! then the points; purge writes the new anchor first, then rewrites the side
//! file and the points. A crash between the steps leaves a prefix of the old log
//! (truncation) or the old log less its purged head (purge), never a remapping.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_storage::{stamp_batch, BatchHeader, Log};

use crate::batch_reader::BatchReader;
use crate::durable_file;
use crate::error::{RaftStoreError, Result};
use crate::side_entries::{SideFile, SideRecord};
use crate::sync_points::{Point, PointFile};

/// Present while [`OffsetTranslator::reset_after`] runs: the anchor it sets
/// (JSON). An open that finds it finishes the reset.
const RESET_FILE: &str = "raft-reset";

/// Directory in the partition directory where a follower stages the cleaned
/// segments its leader keeps below a snapshot (a compacted partition), before
/// [`OffsetTranslator::reset_after`] makes them the head of its log.
pub(crate) const STAGING_DIR: &str = "raft-install";

/// What the reset marker holds: the anchor the reset sets and, when the log
/// keeps staged segments below it, where they start.
#[derive(Debug, Serialize, Deserialize)]
struct ResetMarker {
    #[serde(flatten)]
    anchor: Anchor,
    #[serde(default)]
    prefix_start: Option<i64>,
}

/// File holding the anchor.
pub(crate) const ANCHOR_FILE: &str = "raft-state";
/// Data entries between two sync points.
pub(crate) const POINT_SPACING: u64 = 64;
/// Positions remembered from recent reads.
const RECENT: usize = 4;

/// A Raft log id as the translator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryId {
    /// Raft index.
    pub(crate) index: u64,
    /// Term.
    pub(crate) term: u64,
}

/// Where the Raft log starts. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Anchor {
    /// The last purged entry.
    pub(crate) purged: Option<EntryId>,
    /// Index of the first entry the log may hold.
    pub(crate) first_index: u64,
    /// Kafka offset of the first data entry at or after `first_index` (the next
    /// offset to be written when there is none).
    pub(crate) first_offset: i64,
}

impl Anchor {
    /// The anchor of a log that restarts right after snapshot `last`, whose
    /// next Kafka offset is `next_offset`.
    fn after_snapshot(last: &crate::types::LogId, next_offset: i64) -> Self {
        Anchor {
            purged: Some(EntryId {
                index: last.index,
                term: crate::types::term_of(last),
            }),
            first_index: last.index + 1,
            first_offset: next_offset,
        }
    }
}

/// An entry to append.
#[derive(Debug, Clone)]
pub(crate) enum NewEntry {
    /// A record batch.
    Data {
        /// Its id.
        id: EntryId,
        /// Exactly one RecordBatch v2; baseOffset and partitionLeaderEpoch are set
        /// on the copy written.
        batch: Bytes,
    },
    /// An entry that is not data.
    Other {
        /// Its id.
        id: EntryId,
        /// Its payload, JSON.
        payload: Vec<u8>,
    },
}

impl NewEntry {
    pub(crate) fn id(&self) -> EntryId {
        match self {
            Self::Data { id, .. } | Self::Other { id, .. } => *id,
        }
    }
}

/// An entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredEntry {
    /// A record batch, zero-copy from the partition log.
    Data {
        /// Its id (the term is the batch's partitionLeaderEpoch).
        id: EntryId,
        /// The batch as stored (offsets set).
        batch: Bytes,
    },
    /// An entry that is not data.
    Other {
        /// Its id.
        id: EntryId,
        /// Its payload, JSON.
        payload: Vec<u8>,
    },
}

impl StoredEntry {
    /// The entry's id.
    // Used by tests today; the cluster's follower paths use it next.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn id(&self) -> EntryId {
        match self {
            Self::Data { id, .. } | Self::Other { id, .. } => *id,
        }
    }
}

/// The first data entry at or after raft index `index` starts at Kafka offset
/// `offset` (the next offset to be written when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    index: u64,
    offset: i64,
}

/// The translation state of one partition. Not synchronised: the log store
/// keeps it behind a mutex.
#[derive(Debug)]
pub(crate) struct OffsetTranslator {
    dir: PathBuf,
    anchor: Anchor,
    side: BTreeMap<u64, SideRecord>,
    side_file: SideFile,
    /// Sync points, increasing; the same as the records of `point_file`.
    points: Vec<Point>,
    point_file: PointFile,
    /// The last entry, `None` when the log holds none.
    last: Option<EntryId>,
    /// Kafka offset of the next data entry (the partition log's end).
    next_offset: i64,
    /// Data entries since the last sync point (the point's own included).
    since_point: u64,
    recent: [Option<Cursor>; RECENT],
    recent_at: usize,
}

impl OffsetTranslator {
    /// Opens the translation of the partition whose log is `log`, reconciling
    /// its files with the log (see the module docs).
    #[cfg(test)]
    pub(crate) fn open(log: &Log) -> Result<Self> {
        Self::open_as(log, Existing::Adopt)
    }

    /// [`OffsetTranslator::open`], saying what becomes of records a log holds
    /// without any Raft files beside it.
    pub(crate) fn open_as(log: &Log, existing: Existing) -> Result<Self> {
        let dir = log.dir().to_path_buf();
        finish_reset(log)?;
        let mut anchor = load_anchor(log, existing)?;
        if existing == Existing::Adopt {
            if let Some(moved) = snapshot_past_the_log(log, &anchor)? {
                anchor = moved;
            }
        }
        let log_end = log.log_end_offset();
        if anchor.first_offset > log_end {
            // Recovery cut a damaged log below what Raft had already purged
            // (a one-voter group purges everything applied before retention
            // or DeleteRecords). The offsets in between are lost on this
            // replica; the log goes on at the anchor, so the node can start
            // and the group's leaders (if any) send what follows again.
            tracing::error!(
                dir = %dir.display(),
                log_end,
                anchor_offset = anchor.first_offset,
                "the partition log was damaged below its Raft anchor: offsets {log_end}..{} are lost on this replica; it continues at {}",
                anchor.first_offset,
                anchor.first_offset
            );
            log.continue_at(anchor.first_offset)?;
        }
        let log_end = log.log_end_offset();
        let (side_file, mut side) = SideFile::open(&dir)?;
        side.retain(|i, _| *i >= anchor.first_index);
        let (point_file, loaded) = PointFile::open(&dir)?;
        let points: Vec<Point> = loaded
            .iter()
            .copied()
            .filter(|p| {
                p.index >= anchor.first_index
                    && p.offset >= anchor.first_offset
                    && p.offset < log_end
            })
            .collect();
        let mut t = Self {
            dir,
            anchor,
            side,
            side_file,
            points,
            point_file,
            last: None,
            next_offset: anchor.first_offset,
            since_point: 0,
            recent: [None; RECENT],
            recent_at: 0,
        };
        let rewrite_points = t.points.len() != t.point_file.count() || t.points != loaded;
        let added = t.recover_tail(log)?;
        if rewrite_points || added {
            let points = t.points.clone();
            t.point_file.replace(&points)?;
        }
        Ok(t)
    }

    /// Walks from the last trusted position to the partition log's end, setting
    /// the last entry and the next offset; drops the side entries past the end.
    /// Returns whether sync points were added.
    fn recover_tail(&mut self, log: &Log) -> Result<bool> {
        let log_end = log.log_end_offset();
        let mut c = self.points.last().map_or(
            Cursor {
                index: self.anchor.first_index,
                offset: self.anchor.first_offset,
            },
            |p| Cursor {
                index: p.index,
                offset: p.offset,
            },
        );
        let mut reader = BatchReader::new(log, c.offset);
        let mut added = false;
        loop {
            if let Some(rec) = self.side.get(&c.index) {
                self.last = Some(EntryId {
                    index: c.index,
                    term: rec.term,
                });
            } else if c.offset < log_end {
                let h = match reader.next_batch() {
                    Ok((h, _)) => h,
                    // Damage that the segment's own checks let through (a
                    // flipped base offset is outside the batch CRC): the
                    // Raft log needs its batches back to back, so the log
                    // ends before the first one out of place.
                    Err(RaftStoreError::Corrupt { reason, .. }) => {
                        tracing::error!(
                            dir = %self.dir.display(),
                            offset = c.offset,
                            log_end,
                            reason,
                            "the partition log is damaged: it is cut at the first batch out of place"
                        );
                        log.truncate_to(c.offset)?;
                        break;
                    }
                    Err(e) => return Err(e),
                };
                added |= self.count_data(c);
                self.last = Some(EntryId {
                    index: c.index,
                    term: term_of_batch(&h, log)?,
                });
                c.offset = h.next_offset();
            } else {
                break;
            }
            c.index += 1;
        }
        self.next_offset = c.offset;
        let beyond = self.side.split_off(&c.index);
        if !beyond.is_empty() {
            tracing::warn!(
                dir = %self.dir.display(),
                dropped = beyond.len(),
                first = beyond.keys().next().copied(),
                "raft entries past a hole in the log dropped"
            );
            self.side_file.rewrite(&self.side)?;
        }
        Ok(added)
    }

    /// Counts a data entry at `c` for the point spacing; adds a point (in memory)
    /// when due. Returns whether one was added.
    fn count_data(&mut self, c: Cursor) -> bool {
        if self.points.last().is_some_and(|p| p.index == c.index) {
            self.since_point = 1;
            return false;
        }
        let due = self.since_point >= POINT_SPACING;
        if due {
            self.points.push(Point {
                index: c.index,
                offset: c.offset,
            });
            self.since_point = 0;
        }
        self.since_point += 1;
        due
    }

    /// The anchor.
    pub(crate) fn anchor(&self) -> Anchor {
        self.anchor
    }

    /// The last entry of the log, or else the last purged one.
    pub(crate) fn last_id(&self) -> Option<EntryId> {
        self.last.or(self.anchor.purged)
    }

    /// The index the next appended entry must have.
    pub(crate) fn next_index(&self) -> u64 {
        self.last.map_or(self.anchor.first_index, |l| l.index + 1)
    }

    /// The Kafka offset of the next data entry.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Appends `entries`, which must continue the log (or, on a log holding no
    /// entry, start anywhere after the purged one). Data entries go to the
    /// partition log (one write per run of consecutive data entries), the others
    /// to `raft-entries`, which is fsynced before any data entry written after
    /// one of its records, and at the end. Returns the last Kafka offset written
    /// (for `Log::wait_durable`), if any.
    ///
    /// Blocking when `entries` holds an entry that is not data (an fsync).
    pub(crate) fn append(&mut self, log: &Log, entries: Vec<NewEntry>) -> Result<Option<i64>> {
        let Some(first) = entries.first().map(NewEntry::id) else {
            return Ok(None);
        };
        if self.last.is_none()
            && first.index != self.anchor.first_index
            && self.anchor.purged.is_none_or(|p| first.index > p.index)
        {
            self.reanchor(first.index)?;
        }
        let mut run = DataRun::new(self.next_offset);
        let mut side_unsynced = false;
        for (expected, e) in (self.next_index()..).zip(entries) {
            let id = e.id();
            if id.index != expected {
                return Err(RaftStoreError::NotContiguous {
                    expected,
                    got: id.index,
                });
            }
            match e {
                NewEntry::Data { id, batch } => run.push(id, batch)?,
                NewEntry::Other { id, payload } => {
                    self.write_run(log, &mut run, &mut side_unsynced)?;
                    let rec = SideRecord {
                        term: id.term,
                        payload,
                    };
                    self.side_file.append(id.index, &rec)?;
                    self.side.insert(id.index, rec);
                    self.last = Some(id);
                    side_unsynced = true;
                }
            }
        }
        self.write_run(log, &mut run, &mut side_unsynced)?;
        if side_unsynced {
            self.side_file.sync()?;
        }
        Ok(run.last_written)
    }

    /// Writes the staged data entries to the partition log, fsyncing the side
    /// file first if it holds records not yet on disk (see the module docs).
    fn write_run(&mut self, log: &Log, run: &mut DataRun, side_unsynced: &mut bool) -> Result<()> {
        if run.entries.is_empty() {
            return Ok(());
        }
        if std::mem::take(side_unsynced) {
            self.side_file.sync()?;
        }
        let log_end = log.log_end_offset();
        if log_end != self.next_offset {
            return Err(RaftStoreError::corrupt(
                &self.dir,
                format!(
                    "the partition log ends at {log_end}, the Raft log expects {}",
                    self.next_offset
                ),
            ));
        }
        let info = match run.single.take() {
            // One batch: written from the entry's own bytes, its offset and
            // epoch stamped into a copy of its first 16 bytes.
            Some((batch, epoch)) => log.append_replicated_at(&batch, self.next_offset, epoch)?,
            None => log.append_replicated(&run.buf)?,
        };
        for (id, offset, next) in std::mem::take(&mut run.entries) {
            let c = Cursor {
                index: id.index,
                offset,
            };
            if self.count_data(c) {
                self.point_file
                    .append(*self.points.last().expect("just added"))?;
            }
            self.last = Some(id);
            self.next_offset = next;
        }
        run.buf.clear();
        run.last_written = Some(info.last_offset);
        Ok(())
    }

    /// Moves the start of an empty log to `first_index` (the first append of a log
    /// that does not start at the anchor's index). Durable.
    fn reanchor(&mut self, first_index: u64) -> Result<()> {
        let anchor = Anchor {
            purged: self.anchor.purged,
            first_index,
            first_offset: self.next_offset,
        };
        save_anchor(&self.dir, &anchor)?;
        self.anchor = anchor;
        self.recent = [None; RECENT];
        Ok(())
    }

    /// Removes every entry after `after` (all of them for `None`): the partition
    /// log's tail from the first removed data entry, then side entries, then sync
    /// points. Durable on return. Blocking.
    pub(crate) fn truncate_after(&mut self, log: &Log, after: Option<u64>) -> Result<()> {
        let cut = match after {
            Some(i) => i.saturating_add(1),
            None if self.anchor.purged.is_none() => self.anchor.first_index,
            None => {
                return Err(RaftStoreError::Purged {
                    index: 0,
                    first: self.anchor.first_index,
                })
            }
        };
        if cut < self.anchor.first_index {
            return Err(RaftStoreError::Purged {
                index: cut,
                first: self.anchor.first_index,
            });
        }
        if self.last.is_none_or(|l| cut > l.index) {
            return Ok(());
        }
        let at = self.cursor_at(log, cut)?;
        if at.offset < log.log_end_offset() {
            log.truncate_to(at.offset)?;
        }
        if !self.side.split_off(&cut).is_empty() {
            self.side_file.rewrite(&self.side)?;
        }
        let keep = self.points.partition_point(|p| p.index < cut);
        self.points.truncate(keep);
        self.point_file.truncate(keep)?;
        for slot in &mut self.recent {
            if slot.is_some_and(|c| c.index > cut) {
                *slot = None;
            }
        }
        self.next_offset = at.offset;
        // The next data entry gets a sync point: cheaper than recounting.
        self.since_point = POINT_SPACING;
        self.last = if cut == self.anchor.first_index {
            None
        } else {
            Some(self.id_at(log, cut - 1)?)
        };
        Ok(())
    }

    /// Forgets the entries up to `upto` (inclusive) without touching the Kafka
    /// data (retention owns it): the new anchor is written (durably) first, then
    /// the side entries and sync points before it are dropped. Blocking.
    pub(crate) fn purge(&mut self, log: &Log, upto: EntryId) -> Result<()> {
        if self.anchor.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        let first_index = (upto.index + 1).max(self.anchor.first_index);
        let first_offset = match self.last {
            Some(l) if first_index <= l.index => self.cursor_at(log, first_index)?.offset,
            _ => self.next_offset,
        };
        let anchor = Anchor {
            purged: Some(upto),
            first_index,
            first_offset,
        };
        save_anchor(&self.dir, &anchor)?;
        self.anchor = anchor;
        if self.last.is_some_and(|l| l.index < first_index) {
            self.last = None;
        }
        let before = self.side.len();
        self.side.retain(|i, _| *i >= first_index);
        if self.side.len() != before {
            self.side_file.rewrite(&self.side)?;
        }
        let drop = self.points.partition_point(|p| p.index < first_index);
        if drop > 0 {
            self.points.drain(..drop);
            let points = self.points.clone();
            self.point_file.replace(&points)?;
        }
        for slot in &mut self.recent {
            if slot.is_some_and(|c| c.index < first_index) {
                *slot = None;
            }
        }
        Ok(())
    }

    /// Empties the partition log and restarts the Raft log after `after`, at
    /// Kafka offset `offset`: a follower installs a snapshot (its leader's log
    /// starts there) that its own log does not reach. Every entry is dropped.
    /// With `prefix_start`, the log keeps the segments staged in
    /// [`STAGING_DIR`] below `offset` and starts there (the cleaned records a
    /// compacting leader keeps below its snapshot). Durable and all or nothing
    /// across a crash (a marker written first makes the next open finish it).
    /// Blocking.
    pub(crate) fn reset_after(
        &mut self,
        log: &Log,
        after: EntryId,
        offset: i64,
        prefix_start: Option<i64>,
    ) -> Result<()> {
        let marker = ResetMarker {
            anchor: Anchor {
                purged: Some(after),
                first_index: after.index + 1,
                first_offset: offset,
            },
            prefix_start,
        };
        let bytes = serde_json::to_vec(&marker).expect("a reset marker serialises");
        durable_file::write(&self.dir, RESET_FILE, &bytes, durable_file::Sync::Durable)?;
        apply_reset(log, &marker)?;
        self.side.clear();
        self.side_file.rewrite(&self.side)?;
        self.points.clear();
        self.point_file.replace(&[])?;
        std::fs::remove_file(self.dir.join(RESET_FILE)).map_err(RaftStoreError::io(&self.dir))?;
        durable_file::sync_dir(&self.dir)?;
        remove_staging(&self.dir)?;
        self.anchor = marker.anchor;
        self.last = None;
        self.next_offset = offset;
        self.since_point = POINT_SPACING;
        self.recent = [None; RECENT];
        Ok(())
    }

    /// The id of the last entry before the one holding Kafka offset `offset`
    /// (the last entry of the log when `offset` is its end), with the base
    /// offset of the batch that holds `offset`: where a snapshot must end, and
    /// the offset the log then continues at, for the log to start at or below
    /// `offset` once the entries up to it are purged (`None` as the id: its
    /// entry is the first of the log, nothing to purge). `None` when the log
    /// does not hold `offset`.
    pub(crate) fn entry_before(
        &mut self,
        log: &Log,
        offset: i64,
    ) -> Result<Option<(Option<EntryId>, i64)>> {
        let (index, base) = if offset == self.next_offset {
            (self.next_index(), offset)
        } else {
            match self.raft_index_of(log, offset)? {
                Some(i) => (i, self.cursor_at(log, i)?.offset),
                None => return Ok(None),
            }
        };
        if index <= self.anchor.first_index {
            return Ok(Some((None, base)));
        }
        Ok(Some((Some(self.id_at(log, index - 1)?), base)))
    }

    /// Whether the log holds the entry `id` (same index and term), or purged
    /// the entries up to it.
    pub(crate) fn covers(&mut self, log: &Log, id: EntryId) -> Result<bool> {
        if id.index < self.anchor.first_index {
            return Ok(true);
        }
        if id.index >= self.next_index() {
            return Ok(false);
        }
        Ok(self.id_at(log, id.index)? == id)
    }

    /// The entries with indexes in `start..end` that the log holds (those purged
    /// or not yet appended are left out).
    pub(crate) fn read(&mut self, log: &Log, start: u64, end: u64) -> Result<Vec<StoredEntry>> {
        let start = start.max(self.anchor.first_index);
        let end = end.min(self.next_index());
        if start >= end {
            return Ok(Vec::new());
        }
        let at = self.cursor_at(log, start)?;
        let mut reader = BatchReader::new(log, at.offset);
        let mut out = Vec::with_capacity((end - start) as usize);
        for index in start..end {
            out.push(match self.side.get(&index) {
                Some(rec) => StoredEntry::Other {
                    id: EntryId {
                        index,
                        term: rec.term,
                    },
                    payload: rec.payload.clone(),
                },
                None => {
                    let (h, batch) = reader.next_batch()?;
                    let term = term_of_batch(&h, log)?;
                    StoredEntry::Data {
                        id: EntryId { index, term },
                        batch,
                    }
                }
            });
        }
        self.remember(Cursor {
            index: end,
            offset: reader.next_offset(),
        });
        Ok(out)
    }

    /// The Kafka offset after every entry up to `index` (the high watermark when
    /// the commit index is `index`): the base offset of the first data entry
    /// after it, or the next offset to be written when there is none.
    // Used by tests today; the cluster's follower paths use it next.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn kafka_offset_after(&mut self, log: &Log, index: u64) -> Result<i64> {
        let next = index.saturating_add(1);
        if next < self.anchor.first_index {
            return Err(RaftStoreError::Purged {
                index,
                first: self.anchor.first_index,
            });
        }
        if next >= self.next_index() {
            return Ok(self.next_offset);
        }
        Ok(self.cursor_at(log, next)?.offset)
    }

    /// The raft index of the data entry holding Kafka offset `offset`; `None`
    /// when the offset is before the Raft log (purged or older data) or not
    /// written yet.
    // Used by tests today; the cluster's follower paths use it next.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn raft_index_of(&mut self, log: &Log, offset: i64) -> Result<Option<u64>> {
        if offset < self.anchor.first_offset || offset >= self.next_offset {
            return Ok(None);
        }
        let at = self.points.partition_point(|p| p.offset <= offset);
        let mut c = at.checked_sub(1).map_or(
            Cursor {
                index: self.anchor.first_index,
                offset: self.anchor.first_offset,
            },
            |i| Cursor {
                index: self.points[i].index,
                offset: self.points[i].offset,
            },
        );
        let mut reader = BatchReader::new(log, c.offset);
        loop {
            if !self.side.contains_key(&c.index) {
                let (h, _) = reader.next_batch()?;
                if offset <= h.last_offset() {
                    return Ok(Some(c.index));
                }
                c.offset = h.next_offset();
            }
            c.index += 1;
        }
    }

    /// The id of the entry at `index`, which the log must hold.
    fn id_at(&mut self, log: &Log, index: u64) -> Result<EntryId> {
        if let Some(rec) = self.side.get(&index) {
            return Ok(EntryId {
                index,
                term: rec.term,
            });
        }
        let at = self.cursor_at(log, index)?;
        let (h, _) = BatchReader::new(log, at.offset).next_batch()?;
        Ok(EntryId {
            index,
            term: term_of_batch(&h, log)?,
        })
    }

    /// The position of raft index `target` (`first_index <= target <= next_index`),
    /// walked from the nearest known position before it.
    fn cursor_at(&mut self, log: &Log, target: u64) -> Result<Cursor> {
        if target == self.next_index() {
            return Ok(Cursor {
                index: target,
                offset: self.next_offset,
            });
        }
        let mut c = self.start_for(target);
        let mut reader = BatchReader::new(log, c.offset);
        while c.index < target {
            if !self.side.contains_key(&c.index) {
                let (h, _) = reader.next_batch()?;
                c.offset = h.next_offset();
            }
            c.index += 1;
        }
        self.remember(c);
        Ok(c)
    }

    /// The nearest known position at or before `target`.
    fn start_for(&self, target: u64) -> Cursor {
        let mut best = Cursor {
            index: self.anchor.first_index,
            offset: self.anchor.first_offset,
        };
        let at = self.points.partition_point(|p| p.index <= target);
        if let Some(p) = at.checked_sub(1).map(|i| self.points[i]) {
            best = Cursor {
                index: p.index,
                offset: p.offset,
            };
        }
        for c in self.recent.iter().flatten() {
            if c.index <= target && c.index > best.index {
                best = *c;
            }
        }
        best
    }

    fn remember(&mut self, c: Cursor) {
        if self.recent.contains(&Some(c)) {
            return;
        }
        self.recent[self.recent_at] = Some(c);
        self.recent_at = (self.recent_at + 1) % RECENT;
    }
}

/// Data entries staged for one partition-log write: stamped copies, back to back.
#[derive(Debug)]
struct DataRun {
    /// The run's only batch so far, as its entry holds it, with its epoch
    /// (not copied: most runs are one batch).
    single: Option<(Bytes, i32)>,
    /// The run's batches, copied and stamped, once it has more than one.
    buf: Vec<u8>,
    /// Each entry with its base offset and the offset after it.
    entries: Vec<(EntryId, i64, i64)>,
    next: i64,
    last_written: Option<i64>,
}

impl DataRun {
    fn new(next: i64) -> Self {
        Self {
            single: None,
            buf: Vec::new(),
            entries: Vec::new(),
            next,
            last_written: None,
        }
    }

    /// Stages `batch` based at the next offset, stamped with the term (on a
    /// copy, once the run has more than one batch).
    fn push(&mut self, id: EntryId, batch: Bytes) -> Result<()> {
        let bad = |reason: String| RaftStoreError::BadBatch {
            index: id.index,
            reason,
        };
        let h = BatchHeader::parse(&batch).map_err(|e| bad(e.to_string()))?;
        if h.size() != batch.len() || h.last_offset_delta < 0 {
            return Err(bad(format!(
                "{} bytes, header says {} (lastOffsetDelta {})",
                batch.len(),
                h.size(),
                h.last_offset_delta
            )));
        }
        let epoch = i32::try_from(id.term).map_err(|_| RaftStoreError::TermTooLarge(id.term))?;
        let base = self.next;
        let next = base + i64::from(h.last_offset_delta) + 1;
        self.next = next;
        if self.entries.is_empty() {
            self.single = Some((batch, epoch));
        } else {
            if let Some((first, first_epoch)) = self.single.take() {
                let first_base = self.entries.first().map_or(base, |e| e.1);
                self.copy(&first, first_base, first_epoch);
            }
            self.copy(&batch, base, epoch);
        }
        self.entries.push((id, base, next));
        Ok(())
    }

    /// Appends a copy of `batch` stamped with its offset and epoch.
    fn copy(&mut self, batch: &[u8], base: i64, epoch: i32) {
        let at = self.buf.len();
        self.buf.extend_from_slice(batch);
        // baseOffset and partitionLeaderEpoch lie outside the CRC-32C (which
        // covers attributes..end), so stamping keeps the batch valid.
        stamp_batch(&mut self.buf[at..], base, epoch);
    }
}

/// The term of a stored batch.
fn term_of_batch(h: &BatchHeader, log: &Log) -> Result<u64> {
    u64::try_from(h.partition_leader_epoch).map_err(|_| {
        RaftStoreError::corrupt(
            log.dir(),
            format!(
                "batch at {} has no leader epoch ({}): not written through Raft",
                h.base_offset, h.partition_leader_epoch
            ),
        )
    })
}

/// Reads the anchor; a partition without one starts its Raft log at index 0
/// and at the log's current end (older data is outside the Raft log), and that
/// anchor is written at once. Raft files without an anchor are refused: the
/// anchor is written before either of them, so it was lost, and guessing it
/// would remap entries.
/// What becomes of the records of a partition log found with no Raft files
/// beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// They stay, outside the Raft log (a one-voter group over a log written
    /// before Raft: the first entry follows them).
    Adopt,
    /// They go (a replica of a replicated group whose Raft files are lost:
    /// its records cannot be placed in the group's log, so it starts empty
    /// and its leader sends the log again, as to a node that lost its disk).
    Drop,
}

fn load_anchor(log: &Log, existing: Existing) -> Result<Anchor> {
    let dir = log.dir();
    match durable_file::read(dir, ANCHOR_FILE)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            RaftStoreError::corrupt(dir.join(ANCHOR_FILE), format!("unreadable anchor: {e}"))
        }),
        None => {
            for name in [
                crate::side_entries::SIDE_FILE,
                crate::sync_points::POINTS_FILE,
            ] {
                if std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0) {
                    return Err(RaftStoreError::corrupt(
                        dir.join(ANCHOR_FILE),
                        format!("missing, but {name} holds entries"),
                    ));
                }
            }
            // A one-voter group's anchor follows its snapshot (it purges
            // what it snapshots): a lost anchor is the snapshot's point,
            // else the records from before the snapshot would be dropped
            // as the group restarts its log past them.
            let snapshot = match existing {
                Existing::Adopt => {
                    crate::state_machine::stored_snapshot_point(dir).map_err(|e| {
                        RaftStoreError::corrupt(dir, format!("unreadable snapshot: {e}"))
                    })?
                }
                Existing::Drop => None,
            };
            if let Some((last, next_offset)) = snapshot {
                tracing::warn!(
                    dir = %dir.display(),
                    index = last.index,
                    offset = next_offset,
                    "the Raft anchor is missing: rebuilt from the snapshot"
                );
                let anchor = Anchor::after_snapshot(&last, next_offset);
                save_anchor(dir, &anchor)?;
                return Ok(anchor);
            }
            if existing == Existing::Drop && log.log_end_offset() > 0 {
                tracing::error!(
                    dir = %dir.display(),
                    log_end = log.log_end_offset(),
                    "a replica's partition log has no Raft state: its records are dropped and its leader sends the log again"
                );
                log.reset_to(0)?;
            }
            let anchor = Anchor {
                purged: None,
                first_index: 0,
                first_offset: log.log_end_offset(),
            };
            save_anchor(dir, &anchor)?;
            Ok(anchor)
        }
    }
}

/// Empties `log` at the anchor's offset (keeping the staged prefix when the
/// marker names one) and writes the anchor, dropping the side entries and
/// sync points (the files; the caller clears its memory).
fn apply_reset(log: &Log, marker: &ResetMarker) -> Result<()> {
    let offset = marker.anchor.first_offset;
    match marker.prefix_start {
        Some(start) => log.reset_with_prefix(offset, &log.dir().join(STAGING_DIR), start)?,
        None => log.reset_to(offset)?,
    }
    save_anchor(log.dir(), &marker.anchor)
}

/// Removes the staging directory, if any (durable).
fn remove_staging(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir.join(STAGING_DIR)) {
        Ok(()) => durable_file::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RaftStoreError::io(dir)(e)),
    }
}

/// Finishes a [`OffsetTranslator::reset_after`] a crash interrupted; removes
/// segments staged for a reset that never started.
fn finish_reset(log: &Log) -> Result<()> {
    let dir = log.dir();
    let Some(bytes) = durable_file::read(dir, RESET_FILE)? else {
        return remove_staging(dir);
    };
    let marker: ResetMarker = serde_json::from_slice(&bytes).map_err(|e| {
        RaftStoreError::corrupt(
            dir.join(RESET_FILE),
            format!("unreadable reset marker: {e}"),
        )
    })?;
    tracing::warn!(dir = %dir.display(), offset = marker.anchor.first_offset, "finishing an interrupted raft log reset");
    apply_reset(log, &marker)?;
    for name in [
        crate::side_entries::SIDE_FILE,
        crate::sync_points::POINTS_FILE,
    ] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RaftStoreError::io(dir)(e)),
        }
    }
    std::fs::remove_file(dir.join(RESET_FILE)).map_err(RaftStoreError::io(dir))?;
    durable_file::sync_dir(dir)?;
    remove_staging(dir)
}

/// The anchor moved to the stored snapshot's point when recovery cut the
/// log below the records that snapshot covers (`None` otherwise). A
/// one-voter group purges what it snapshots only after the snapshot is
/// stored, so a damaged log can end below both: left as it is, the restart
/// installs the snapshot over a log that does not reach it, and that reset
/// drops the intact records below the damage too. Past the snapshot, the
/// log continues at its offset instead (see [`OffsetTranslator::open_as`]).
/// Only for [`Existing::Adopt`]: a replica's stored snapshot may be one
/// its leader sent that it had not finished installing, over records of
/// its own that may differ from the leader's.
fn snapshot_past_the_log(log: &Log, anchor: &Anchor) -> Result<Option<Anchor>> {
    let dir = log.dir();
    let snapshot = crate::state_machine::stored_snapshot_point(dir)
        .map_err(|e| RaftStoreError::corrupt(dir, format!("unreadable snapshot: {e}")))?;
    let Some((last, next_offset)) = snapshot else {
        return Ok(None);
    };
    if last.index < anchor.first_index || next_offset <= log.log_end_offset() {
        return Ok(None);
    }
    tracing::error!(
        dir = %dir.display(),
        log_end = log.log_end_offset(),
        snapshot_index = last.index,
        snapshot_offset = next_offset,
        "the partition log ends below its Raft snapshot: the Raft log restarts after the snapshot"
    );
    let moved = Anchor::after_snapshot(&last, next_offset);
    save_anchor(dir, &moved)?;
    Ok(Some(moved))
}

fn save_anchor(dir: &std::path::Path, anchor: &Anchor) -> Result<()> {
    let bytes = serde_json::to_vec(anchor).expect("an anchor serialises");
    durable_file::write(dir, ANCHOR_FILE, &bytes, durable_file::Sync::Durable)
}

#[cfg(test)]
mod tests;
