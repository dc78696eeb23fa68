//! A minimal state machine, enough for openraft's storage suite and for the
//! record-batch tests: "apply" records the last applied log id and membership
//! and answers each entry with the Kafka offsets its batch got. The data is
//! already in the partition log, so there is nothing else to apply; advancing
//! the high watermark and the producer state come with the broker wiring.
//!
//! A snapshot is metadata only (JSON: last log id, membership, the Kafka offset
//! after the last applied entry), never a copy of the data: a follower that
//! installs one learns where Kafka offsets continue (Redpanda's bug 2284 was
//! this boundary missing). State is in memory for now.

use std::io;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use serde::{Deserialize, Serialize};
use weir_storage::BatchHeader;

use crate::group::GroupHooks;
use crate::types::{Appended, LogId, TypeConfig};

/// Snapshot bytes: [`SnapshotManifest`] as JSON.
pub(crate) type SnapshotData = Vec<u8>;
type Snapshot = SnapshotOf<TypeConfig, SnapshotData>;
type StoredMembershipT = StoredMembershipOf<TypeConfig>;

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotManifest {
    /// Last entry covered.
    pub(crate) last_log_id: Option<LogId>,
    /// Membership as of that entry.
    pub(crate) last_membership: StoredMembershipT,
    /// Kafka offset after the last entry covered (`None` before any data entry).
    pub(crate) next_kafka_offset: Option<i64>,
    /// The partition log's start on the node that took the snapshot: below
    /// `next_kafka_offset`, the records compaction kept there, which a
    /// follower that installs the snapshot receives from its leader.
    #[serde(default)]
    pub(crate) log_start: Option<i64>,
    /// The leader that sent the snapshot (set on receipt).
    #[serde(default)]
    pub(crate) source: Option<u64>,
}

/// `data` (a [`SnapshotManifest`]) naming `node` as its sender; unreadable
/// data is returned as it is (installing it fails with the parse error).
pub(crate) fn with_source(data: SnapshotData, node: u64) -> SnapshotData {
    match serde_json::from_slice::<SnapshotManifest>(&data) {
        Ok(mut m) => {
            m.source = Some(node);
            serde_json::to_vec(&m).unwrap_or(data)
        }
        Err(_) => data,
    }
}

/// Bytes asked for in one read of the leader's log while staging.
const STAGE_CHUNK_BYTES: u32 = 1 << 20;

/// Copies the batches `source`'s partition log holds in `from..upto` into
/// the staging directory of `log` (a log of its own, durable on return).
/// Returns where the staged records start, or `None` when the leader keeps
/// nothing there (retention removed it meanwhile).
async fn stage_prefix(
    log: &Arc<weir_storage::Log>,
    remote: &crate::transport::RemoteLog,
    source: u64,
    from: i64,
    upto: i64,
) -> io::Result<Option<i64>> {
    let dir = log.dir().join(crate::offset_translator::STAGING_DIR);
    let cfg = log.config();
    let blocking = |f: Box<dyn FnOnce() -> weir_storage::Result<()> + Send>| async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)
    };
    let staged = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            weir_storage::Log::open(&dir, "staged", cfg)
                .map(|(l, _)| Arc::new(l))
                .map_err(io::Error::other)
        })
        .await
        .map_err(io::Error::other)??
    };
    let mut at = from;
    let mut start = None;
    while at < upto {
        let chunk = remote.read(source, at, upto, STAGE_CHUNK_BYTES).await?;
        if start.is_none() {
            let s = chunk.log_start.max(from);
            if s >= upto || chunk.bytes.is_empty() {
                return Ok(None);
            }
            // A log start inside a batch (DeleteRecords): the segment starts
            // at the batch, the log at the leader's start.
            let first = BatchHeader::parse(&chunk.bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                .base_offset;
            let staged = Arc::clone(&staged);
            blocking(Box::new(move || staged.reset_to(first.min(s)))).await?;
            start = Some(s);
        }
        if chunk.next <= at {
            return Err(io::Error::other(format!(
                "node {source} made no progress reading its log at {at}"
            )));
        }
        if !chunk.bytes.is_empty() {
            let staged = Arc::clone(&staged);
            let bytes = chunk.bytes;
            blocking(Box::new(move || staged.append_replicated(&bytes).map(drop))).await?;
        }
        at = chunk.next;
    }
    let closing = Arc::clone(&staged);
    blocking(Box::new(move || closing.close())).await?;
    Ok(start)
}

/// Where a snapshot that lets the log start at a Kafka offset would end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotPlan {
    /// The Raft log holds nothing before the offset: no snapshot is needed.
    Covered,
    /// The next snapshot ends at this entry.
    At(LogId),
    /// Not possible now: the Raft log does not hold the offset, the entry
    /// before its batch is not applied yet, or membership changed after it.
    NotYet,
}

#[derive(Debug, Default, Clone)]
struct Applied {
    last: Option<LogId>,
    membership: StoredMembershipT,
    next_offset: Option<i64>,
}

/// File of the current snapshot in the partition directory (JSON: meta and
/// manifest), replaced atomically and fsynced.
pub(crate) const SNAPSHOT_FILE: &str = "raft-snapshot";

/// A snapshot as stored in [`SNAPSHOT_FILE`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMetaOf<TypeConfig>,
    data: Vec<u8>,
}

/// The state machine of one partition group.
#[derive(Debug, Default)]
pub(crate) struct StateMachine {
    applied: Applied,
    current: Arc<Mutex<Option<Snapshot>>>,
    /// Where snapshots are kept (the partition directory); `None`: memory only.
    dir: Option<std::path::PathBuf>,
    /// Told of every committed data entry (the partition above the group).
    hooks: Option<Arc<dyn GroupHooks>>,
    /// The Raft log (snapshot boundaries, resets on install).
    store: Option<crate::log_store::LogReader>,
    /// Where the next snapshot ends, when not at the last applied entry (see
    /// [`StateMachine::plan_snapshot_at`]).
    planned: Option<SnapshotManifest>,
    /// Reads the leader's log when a snapshot needs its cleaned segments.
    remote: Option<crate::transport::RemoteLog>,
}

/// Builds a snapshot of the state when it was created.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    applied: Applied,
    log_start: Option<i64>,
    planned: Option<SnapshotManifest>,
    current: Arc<Mutex<Option<Snapshot>>>,
    dir: Option<std::path::PathBuf>,
}

/// Writes `snapshot` to the snapshot file of `dir` (durable on return; on the
/// blocking pool). Nothing to do without a directory.
async fn persist(dir: Option<std::path::PathBuf>, snapshot: &Snapshot) -> io::Result<()> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let stored = StoredSnapshot {
        meta: snapshot.meta.clone(),
        data: snapshot.snapshot.clone(),
    };
    let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
    tokio::task::spawn_blocking(move || {
        crate::durable_file::write(
            &dir,
            SNAPSHOT_FILE,
            &bytes,
            crate::durable_file::Sync::Durable,
        )
    })
    .await
    .map_err(io::Error::other)??;
    Ok(())
}

/// The last entry and the Kafka offset after it of the snapshot stored in
/// partition directory `dir`, if one is (what a lost anchor is rebuilt from).
pub(crate) fn stored_snapshot_point(dir: &std::path::Path) -> io::Result<Option<(LogId, i64)>> {
    let Some(bytes) = crate::durable_file::read(dir, SNAPSHOT_FILE)? else {
        return Ok(None);
    };
    let stored: StoredSnapshot = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let manifest: SnapshotManifest = serde_json::from_slice(&stored.data)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(manifest.last_log_id.zip(manifest.next_kafka_offset))
}

/// Stores a snapshot ending at `last`, with Kafka offset `next_offset`
/// after it, in `dir` (what a group that snapshotted there leaves behind).
#[cfg(test)]
pub(crate) fn store_snapshot_point(dir: &std::path::Path, last: LogId, next_offset: i64) {
    let manifest = SnapshotManifest {
        last_log_id: Some(last),
        last_membership: StoredMembershipT::default(),
        next_kafka_offset: Some(next_offset),
        log_start: None,
        source: None,
    };
    let stored = StoredSnapshot {
        meta: SnapshotMetaOf::<TypeConfig> {
            last_log_id: Some(last),
            last_membership: StoredMembershipT::default(),
        },
        data: serde_json::to_vec(&manifest).unwrap(),
    };
    let bytes = serde_json::to_vec(&stored).unwrap();
    crate::durable_file::write(
        dir,
        SNAPSHOT_FILE,
        &bytes,
        crate::durable_file::Sync::Durable,
    )
    .unwrap();
}

impl StateMachine {
    /// An empty state machine.
    // Used by tests today; the cluster's follower paths use it next.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A state machine that applies from the start of the Raft log, whose
    /// first data entry is at Kafka offset `first_offset`, and tells `hooks`
    /// of each committed data entry.
    /// Its snapshot is kept in `dir` (the partition directory), so that a
    /// restart re-applies only the entries after it and the Raft entries it
    /// covers can be purged.
    pub(crate) fn with_hooks(
        hooks: Arc<dyn GroupHooks>,
        first_offset: i64,
        dir: std::path::PathBuf,
        store: crate::log_store::LogReader,
    ) -> Self {
        Self {
            hooks: Some(hooks),
            store: Some(store),
            applied: Applied {
                next_offset: Some(first_offset),
                ..Applied::default()
            },
            dir: Some(dir),
            ..Self::default()
        }
    }

    /// Lets the state machine read its leader's log through `remote` (see
    /// [`stage_prefix`]).
    pub(crate) fn with_remote(mut self, remote: Option<crate::transport::RemoteLog>) -> Self {
        self.remote = remote;
        self
    }

    /// The partition log's start, when a log is attached.
    fn log_start(&self) -> Option<i64> {
        self.store.as_ref().map(|s| s.log().log_start_offset())
    }

    /// Makes the next snapshot end just before the batch holding Kafka offset
    /// `offset` instead of at the last applied entry, so that purging the Raft
    /// log up to it lets the partition log start at `offset` (retention,
    /// DeleteRecords) and a follower that installs it continues at that
    /// batch. See [`SnapshotPlan`] for the answers.
    pub(crate) async fn plan_snapshot_at(&mut self, offset: i64) -> io::Result<SnapshotPlan> {
        let Some(store) = &self.store else {
            return Ok(SnapshotPlan::NotYet);
        };
        if store.first_offset() >= offset {
            return Ok(SnapshotPlan::Covered);
        }
        let (last, base) = match store.entry_before(offset).await? {
            Some((Some(last), base)) => (last, base),
            // The batch holding `offset` is the first of the Raft log.
            Some((None, _)) => return Ok(SnapshotPlan::Covered),
            None => return Ok(SnapshotPlan::NotYet),
        };
        let applied = self.applied.last.map(|l| l.index);
        let membership_at = self.applied.membership.log_id().map(|l| l.index);
        if applied.is_none_or(|a| a < last.index) || membership_at.is_some_and(|m| m > last.index) {
            return Ok(SnapshotPlan::NotYet);
        }
        self.planned = Some(SnapshotManifest {
            last_log_id: Some(last),
            last_membership: self.applied.membership.clone(),
            next_kafka_offset: Some(base),
            log_start: self.log_start(),
            source: None,
        });
        Ok(SnapshotPlan::At(last))
    }

    /// The answer for one entry; moves the Kafka boundary past a batch.
    pub(crate) fn apply_one(&mut self, entry: &crate::types::Entry) -> io::Result<Appended> {
        let next = self.applied.next_offset.unwrap_or(0);
        let answer = match &entry.payload {
            EntryPayload::Normal(batch) => {
                let h = BatchHeader::parse(&batch.0)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                // The offsets follow from the entries before it, as the log
                // store assigned them; the payload may be the batch as
                // proposed, before the log stamped its offsets.
                let base_offset = self.applied.next_offset.unwrap_or(h.base_offset);
                let last_offset = base_offset + i64::from(h.last_offset_delta);
                self.applied.next_offset = Some(last_offset + 1);
                if let Some(hooks) = &self.hooks {
                    hooks.committed(&batch.0, base_offset, last_offset);
                }
                Appended {
                    base_offset,
                    last_offset,
                }
            }
            EntryPayload::Membership(m) => {
                self.applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                empty_range(next)
            }
            EntryPayload::Blank => empty_range(next),
        };
        self.applied.last = Some(entry.log_id);
        Ok(answer)
    }
}

fn empty_range(next: i64) -> Appended {
    Appended {
        base_offset: next,
        last_offset: next - 1,
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembershipT)> {
        Ok((self.applied.last, self.applied.membership.clone()))
    }

    /// Answers every responder (a client write waits for it).
    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let answer = self.apply_one(&entry)?;
            if let Some(r) = responder {
                r.send(answer);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            applied: self.applied.clone(),
            log_start: self.log_start(),
            planned: self.planned.take(),
            current: Arc::clone(&self.current),
            dir: self.dir.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        let manifest: SnapshotManifest = serde_json::from_slice(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.applied = Applied {
            last: meta.last_log_id,
            membership: meta.last_membership.clone(),
            next_offset: manifest.next_kafka_offset,
        };
        let next_offset = manifest.next_kafka_offset;
        let snapshot = Snapshot {
            meta: meta.clone(),
            snapshot,
        };
        // Stored first: if the reset below is interrupted, the restart
        // installs this snapshot again and finishes it.
        persist(self.dir.clone(), &snapshot).await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
        if let (Some(store), Some(last), Some(next)) = (&self.store, meta.last_log_id, next_offset)
        {
            // A log that does not reach the snapshot's end (this follower was
            // behind its leader's purge point) restarts where the leader's
            // continues, above the records the leader kept before it (a
            // compacted partition), which it copies first.
            let prefix = match (manifest.log_start, manifest.source, &self.remote) {
                (Some(start), Some(source), Some(remote))
                    if start < next && !store.covers(last).await? =>
                {
                    stage_prefix(store.log(), remote, source, start, next).await?
                }
                _ => None,
            };
            if store.continue_after(last, next, prefix).await? {
                tracing::info!(log_id = %last, offset = next, "partition log reset to a snapshot");
                if let Some(hooks) = &self.hooks {
                    hooks.reset(next);
                }
            }
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if current.is_some() {
            return Ok(current);
        }
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let Some(bytes) = crate::durable_file::read(dir, SNAPSHOT_FILE)? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let snapshot = Snapshot {
            meta: stored.meta,
            snapshot: stored.data,
        };
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(Some(snapshot))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let manifest = self.planned.take().unwrap_or_else(|| SnapshotManifest {
            last_log_id: self.applied.last,
            last_membership: self.applied.membership.clone(),
            next_kafka_offset: self.applied.next_offset,
            log_start: self.log_start,
            source: None,
        });
        let snapshot = Snapshot {
            meta: SnapshotMetaOf::<TypeConfig> {
                last_log_id: manifest.last_log_id,
                last_membership: manifest.last_membership.clone(),
            },
            snapshot: serde_json::to_vec(&manifest).map_err(io::Error::other)?,
        };
        persist(self.dir.clone(), &snapshot).await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }
}
