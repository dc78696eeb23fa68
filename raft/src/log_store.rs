//! openraft's `RaftLogStorage` over the partition log: a data entry is one
//! record batch written once, into the partition log; blank and membership
//! entries go to `raft-entries`; the [`OffsetTranslator`] maps one onto the
//! other. The vote is in `raft-vote`, the committed log id in `raft-committed`.
//!
//! # Durability contract
//! - [`RaftLogStorage::append`]: entries are readable when it returns. Its
//!   callback is completed when they are durable: non-data entries are fsynced
//!   (before any data entry that follows them is written, and before `append`
//!   returns), data entries when [`Log::wait_durable`] resolves for the last
//!   offset written. Under the log's `Durability::PageCache` policy that is at
//!   once and promises only the page cache; under `GroupCommit` one fsync serves
//!   every append waiting; under `EveryAppend` each waits for its own.
//!   Completions are reported in append order by one flusher task; no fsync runs
//!   on an async worker.
//! - [`RaftLogStorage::save_vote`]: durable when it returns (one of two
//!   checksummed slots overwritten + fdatasync, [`crate::slot_file`]), and
//!   ordered after every append queued before it.
//! - [`RaftLogStorage::save_committed`]: written in place (the other of two
//!   checksummed slots, [`crate::slot_file`]) but not fsynced: a machine crash
//!   may bring back an older committed id, which is safe (any value it held
//!   was committed). On open it is clamped to the last entry, in case a
//!   page-cache policy lost the log's tail. It also tells the group where
//!   the committed Kafka offsets end (acks=all is answered from that).
//! - [`RaftLogStorage::truncate_after`] and [`RaftLogStorage::purge`]: durable
//!   when they return; purge never deletes Kafka data (retention does).
//!
//! # Locking
//! One std mutex guards the translator; it is never held across an `.await`.
//! Readers take it for the walk and the zero-copy slicing of batches. It is also
//! held during the fsyncs of an append holding a non-data entry, of a truncation
//! and of a purge (on a blocking thread): a reader on an async worker may wait
//! for one such fsync. These happen once per term or membership change.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};
use weir_storage::Log;

use crate::error::{RaftStoreError, Result};
use crate::flusher::{FlushItem, Flusher};
use crate::offset_translator::{EntryId, NewEntry, OffsetTranslator, StoredEntry, ANCHOR_FILE};
use crate::slot_file::{SlotFile, Sync, COMMITTED, VOTE};
use crate::types::{log_id, term_of, Entry, LogId, Payload, RecordBatch, TypeConfig, Vote};

/// What the store and its readers share.
#[derive(Debug)]
struct Shared {
    log: Arc<Log>,
    translator: Mutex<OffsetTranslator>,
    vote: Mutex<Option<Vote>>,
    /// Where the vote is saved (locked on a blocking thread only).
    vote_file: Mutex<SlotFile>,
}

impl Shared {
    fn translator(&self) -> MutexGuard<'_, OffsetTranslator> {
        // The translator's state is updated after each file write succeeds, so a
        // panic elsewhere leaves it consistent.
        self.translator.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn vote(&self) -> Option<Vote> {
        *self.vote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the translator on a blocking thread (it may fsync).
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut OffsetTranslator, &Log) -> Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let shared = Arc::clone(self);
        let out = tokio::task::spawn_blocking(move || f(&mut shared.translator(), &shared.log))
            .await
            .map_err(io::Error::other)?;
        Ok(out?)
    }
}

/// The Raft log of one partition.
#[derive(Debug)]
pub(crate) struct LogStore {
    shared: Arc<Shared>,
    committed: Option<LogId>,
    /// Where the committed id is saved.
    committed_file: SlotFile,
    /// Started by the first append (it needs the runtime).
    flusher: Option<Flusher>,
    /// Told of each data entry before it is written (a leader checks its
    /// offset predictions).
    predictions: Option<Arc<crate::group::predictions::Predictions>>,
}

/// A reader of the log, for replication and apply; sees every append as soon as
/// `append` returns.
#[derive(Debug, Clone)]
pub(crate) struct LogReader {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens the Raft log of the partition whose log is `log` (reconciling its
    /// files, see [`crate::offset_translator`]). Blocking.
    #[cfg(test)]
    pub(crate) fn open(log: Arc<Log>) -> Result<Self> {
        Self::open_as(log, crate::offset_translator::Existing::Adopt)
    }

    /// [`LogStore::open`], saying what becomes of records the log holds
    /// without Raft files (see [`crate::offset_translator::Existing`]).
    pub(crate) fn open_as(
        log: Arc<Log>,
        existing: crate::offset_translator::Existing,
    ) -> Result<Self> {
        // Created (if missing) before a new partition's anchor is written,
        // whose directory fsync then makes the vote file's name durable.
        let (mut vote_file, vote) = SlotFile::open(log.dir(), VOTE)?;
        let new_anchor = !log.dir().join(ANCHOR_FILE).exists();
        let mut translator = OffsetTranslator::open_as(&log, existing)?;
        if !vote_file.created() && lost_side_entries(&log, &mut translator)? {
            // The group's entries that are not data are gone, so the Raft
            // log cannot be rebuilt: its state starts over around the
            // records, as when every Raft file is lost (kept as data from
            // before Raft by a one-voter group; dropped and sent again by
            // the leader of a replicated one). The vote file is gone then,
            // so this happens once.
            tracing::error!(
                dir = %log.dir().display(),
                "the Raft side file is lost: this partition's Raft state starts over"
            );
            drop((translator, vote_file));
            for name in [
                crate::side_entries::SIDE_FILE,
                crate::sync_points::POINTS_FILE,
                ANCHOR_FILE,
                VOTE.name,
                COMMITTED.name,
                crate::state_machine::SNAPSHOT_FILE,
            ] {
                match std::fs::remove_file(log.dir().join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(RaftStoreError::io(log.dir())(e)),
                }
            }
            crate::durable_file::sync_dir(log.dir())?;
            return Self::open_as(log, existing);
        }
        if vote_file.created() && new_anchor {
            vote_file.dir_synced();
        }
        if vote_file.destroyed() {
            let path = log.dir().join(VOTE.name);
            match existing {
                // A replica that forgot its vote could vote again in the
                // same term and elect a second leader there: it does not
                // run until an operator decides (the partition is offline).
                crate::offset_translator::Existing::Drop => {
                    return Err(RaftStoreError::corrupt(
                        path,
                        "both vote records are unreadable; a replica that forgot its vote could \
                         elect a second leader in its term, so this partition stays offline here \
                         (once its group has a leader without it, removing this partition's raft-* \
                         files has that leader send it the log again)",
                    ));
                }
                // The only voter elects itself whatever it voted before.
                crate::offset_translator::Existing::Adopt => tracing::warn!(
                    path = %path.display(),
                    "both vote records are unreadable; the partition's only voter goes on without them"
                ),
            }
        }
        let vote = vote
            .map(|b| serde_json::from_slice::<Vote>(&b))
            .transpose()
            .map_err(|e| RaftStoreError::corrupt(log.dir().join(VOTE.name), e.to_string()))?;
        // An unreadable committed id is only a lost hint.
        let (committed_file, committed) = SlotFile::open(log.dir(), COMMITTED)?;
        let committed = committed.and_then(|b| serde_json::from_slice::<Option<LogId>>(&b).ok());
        let store = Self {
            shared: Arc::new(Shared {
                log,
                translator: Mutex::new(translator),
                vote: Mutex::new(vote),
                vote_file: Mutex::new(vote_file),
            }),
            committed: committed.flatten(),
            committed_file,
            flusher: None,
            predictions: None,
        };
        Ok(store)
    }

    /// Tells `predictions` of each data entry before it is written.
    pub(crate) fn check_predictions(
        &mut self,
        predictions: Arc<crate::group::predictions::Predictions>,
    ) {
        // What the log holds from before this instance counts as written.
        if let Some(last) = self.shared.translator().last_id() {
            predictions.written(last.index);
        }
        self.predictions = Some(predictions);
    }

    /// The Kafka offset of the first data entry of the Raft log (the next
    /// offset to be written when it holds none): where applying starts.
    pub(crate) fn first_offset(&self) -> i64 {
        self.shared.translator().anchor().first_offset
    }

    /// The Kafka offset after every entry up to `index`: the high watermark when
    /// the commit index is `index`.
    pub(crate) fn kafka_offset_after(&self, index: u64) -> Result<i64> {
        self.shared
            .translator()
            .kafka_offset_after(&self.shared.log, index)
    }

    fn flusher(&mut self) -> &Flusher {
        let log = &self.shared.log;
        self.flusher
            .get_or_insert_with(|| Flusher::spawn(Arc::clone(log)))
    }

    /// Waits for every append queued so far to be reported.
    async fn drain(&mut self) -> io::Result<()> {
        match &self.flusher {
            Some(f) => f.barrier().await,
            None => Ok(()),
        }
    }

    /// Appends data entries: page-cache writes only, fine on an async worker.
    fn append_inline(&self, entries: Vec<NewEntry>) -> Result<Option<i64>> {
        self.shared.translator().append(&self.shared.log, entries)
    }

    /// Runs `f` on the translator on a blocking thread (it fsyncs).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut OffsetTranslator, &Log) -> Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.shared.blocking(f).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    /// The last purged log id and the last log id (the purged one when the log
    /// holds no entry). In memory.
    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let t = self.shared.translator();
        let to_log_id = |id: EntryId| log_id(id.term, id.index);
        Ok(LogState {
            last_purged_log_id: t.anchor().purged.map(to_log_id),
            last_log_id: t.last_id().map(to_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Durable on return: written after every append queued before it is
    /// reported, into the vote file's older slot and fdatasynced off the
    /// async workers (see [`crate::slot_file`]).
    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.drain().await?;
        let bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            shared
                .vote_file
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .save(&bytes, Sync::Durable)
        })
        .await
        .map_err(io::Error::other)??;
        *self.shared.vote.lock().unwrap_or_else(|p| p.into_inner()) = Some(*vote);
        Ok(())
    }

    /// Written in place, not fsynced (see the module docs); then the group
    /// hears where the committed Kafka offsets end.
    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        if committed == self.committed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&committed).map_err(io::Error::other)?;
        // One 512-byte write into the page cache: fine on an async worker.
        self.committed_file.save(&bytes, Sync::PageCache)?;
        self.committed = committed;
        if let (Some(p), Some(c)) = (&self.predictions, committed) {
            match self.kafka_offset_after(c.index) {
                Ok(end) => p.committed_upto(term_of(&c), end),
                Err(e) => tracing::debug!(error = %e, "the committed offset was not found"),
            }
        }
        Ok(())
    }

    /// The last saved committed id, clamped to the last entry.
    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        let last = self.get_log_state().await?.last_log_id;
        Ok(match (self.committed, last) {
            (Some(c), Some(l)) if c.index > l.index => Some(l),
            (Some(_), None) => None,
            (c, _) => c,
        })
    }

    /// Readable on return; `callback` completed when durable (see the module
    /// docs). Entries holding a non-data entry are written on a blocking thread
    /// (their side record is fsynced); data-only appends write to the page cache
    /// inline.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries
            .into_iter()
            .map(to_new_entry)
            .collect::<Result<Vec<_>>>()?;
        if let Some(p) = &self.predictions {
            let mut next = self.shared.translator().next_offset();
            for e in &entries {
                if let NewEntry::Data { id, batch } = e {
                    p.appending(id.term, batch, next);
                    if let Ok(h) = weir_storage::BatchHeader::parse(batch) {
                        next += i64::from(h.last_offset_delta) + 1;
                    }
                }
            }
        }
        let last_index = entries.last().map(|e| e.id().index);
        let data_only = entries.iter().all(|e| matches!(e, NewEntry::Data { .. }));
        let upto = if data_only {
            self.append_inline(entries)?
        } else {
            self.blocking(move |t, log| t.append(log, entries)).await?
        };
        if let (Some(p), Some(last)) = (&self.predictions, last_index) {
            p.written(last);
        }
        self.flusher().send(FlushItem::Append { upto, callback })
    }

    /// Removes the entries after `last_log_id` (all for `None`): the partition
    /// log's tail from the first removed data entry, then side entries and sync
    /// points. Durable on return; waits for earlier appends to be reported.
    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        self.drain().await?;
        let after = last_log_id.map(|l| l.index);
        self.blocking(move |t, log| t.truncate_after(log, after))
            .await
    }

    /// Forgets the entries up to `log_id`; Kafka data stays (retention owns it).
    /// The new anchor (with the Kafka offset of the first entry kept) is durable
    /// on return.
    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let upto = entry_id(&log_id);
        self.blocking(move |t, log| t.purge(log, upto)).await
    }
}

impl LogReader {
    /// The Kafka offset of the first data entry of the Raft log (see
    /// [`LogStore::first_offset`]).
    pub(crate) fn first_offset(&self) -> i64 {
        self.shared.translator().anchor().first_offset
    }

    /// Runs `f` on the translator on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut OffsetTranslator, &Log) -> Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.shared.blocking(f).await
    }

    /// The last entry before the one holding Kafka offset `offset`, and that
    /// batch's base (see [`OffsetTranslator::entry_before`]): where a snapshot
    /// ends so that the log may start at `offset`.
    pub(crate) async fn entry_before(
        &self,
        offset: i64,
    ) -> io::Result<Option<(Option<LogId>, i64)>> {
        let found = self
            .blocking(move |t, log| t.entry_before(log, offset))
            .await?;
        Ok(found.map(|(id, base)| (id.map(|id| log_id(id.term, id.index)), base)))
    }

    /// Makes the log continue after a snapshot ending at `last`, at Kafka
    /// offset `offset`: nothing to do when it holds `last` or purged past it;
    /// otherwise the partition log is emptied to restart at `offset`, keeping
    /// the segments staged below it when `prefix_start` is set (see
    /// [`OffsetTranslator::reset_after`]). Returns whether it was reset.
    pub(crate) async fn continue_after(
        &self,
        last: LogId,
        offset: i64,
        prefix_start: Option<i64>,
    ) -> io::Result<bool> {
        let id = entry_id(&last);
        self.blocking(move |t, log| {
            if t.covers(log, id)? {
                return Ok(false);
            }
            t.reset_after(log, id, offset, prefix_start)?;
            Ok(true)
        })
        .await
    }

    /// Whether the log holds the entry `last` or purged past it (a snapshot
    /// ending there needs no reset).
    pub(crate) async fn covers(&self, last: LogId) -> io::Result<bool> {
        let id = entry_id(&last);
        self.blocking(move |t, log| t.covers(log, id)).await
    }

    /// The partition log under the Raft log.
    pub(crate) fn log(&self) -> &Arc<Log> {
        &self.shared.log
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    /// Every entry of `range` the log holds; data entries zero-copy from the
    /// partition log.
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> io::Result<Vec<Entry>>
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        let stored = self
            .shared
            .translator()
            .read(&self.shared.log, start, end)?;
        Ok(stored
            .into_iter()
            .map(from_stored)
            .collect::<Result<Vec<_>>>()?)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.shared.vote())
    }
}

/// An openraft entry as the translator stores it.
fn to_new_entry(e: Entry) -> Result<NewEntry> {
    let (clid, index) = e.log_id_parts();
    let id = EntryId {
        index,
        term: clid.term,
    };
    Ok(match e.payload {
        EntryPayload::Normal(RecordBatch(batch)) => NewEntry::Data { id, batch },
        payload => NewEntry::Other {
            id,
            payload: serde_json::to_vec(&payload).map_err(|err| RaftStoreError::BadBatch {
                index,
                reason: err.to_string(),
            })?,
        },
    })
}

/// A stored entry as openraft's.
fn from_stored(s: StoredEntry) -> Result<Entry> {
    Ok(match s {
        StoredEntry::Data { id, batch } => Entry::new(
            log_id(id.term, id.index),
            EntryPayload::Normal(RecordBatch(batch)),
        ),
        StoredEntry::Other { id, payload } => {
            let p: Payload = serde_json::from_slice(&payload)
                .ok()
                .filter(|p| !matches!(p, EntryPayload::Normal(_)))
                .ok_or_else(|| {
                    RaftStoreError::corrupt(
                        crate::side_entries::SIDE_FILE,
                        format!("entry {}: unreadable payload", id.index),
                    )
                })?;
            Entry::new(log_id(id.term, id.index), p)
        }
    })
}

/// Whether the Raft side file of a group that ran (its vote file existed)
/// was lost: nothing is purged, yet the first entry is data, where every
/// group starts with its membership entry (kept in the side file).
fn lost_side_entries(log: &Log, t: &mut OffsetTranslator) -> Result<bool> {
    let anchor = t.anchor();
    if anchor.purged.is_some() {
        return Ok(false);
    }
    let first = t.read(log, anchor.first_index, anchor.first_index + 1)?;
    Ok(matches!(first.first(), Some(StoredEntry::Data { .. })))
}

/// The translator's id of Raft log id `l`.
fn entry_id(l: &LogId) -> EntryId {
    EntryId {
        index: l.index,
        term: term_of(l),
    }
}

#[cfg(test)]
mod tests;
