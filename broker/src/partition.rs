//! A partition as the request handlers see it: a log with a role, a leader epoch,
//! a high watermark and idempotent-producer state.
//!
//! `Partition` is the only door to a partition's log (Kafka's `UnifiedLog` is the
//! model): handlers, the group coordinator and maintenance call its methods and
//! never reach the [`Log`] itself. The high watermark moves only through
//! [`Partition::commit`], so the replication layer can put a Raft group under
//! this type and make the high watermark its commit index without touching a
//! handler.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use bytes::Bytes;
use tokio::sync::watch;
use weir_raft::group::{
    GroupError, GroupHooks, GroupSettings, Offsets as GroupOffsets, PartitionGroup, Proposal,
    ProposeError,
};
use weir_storage::{
    BatchHeader, HeaderWalk, Log, LogConfig, Origin, ReadBound, ReadResult, StorageError,
    TimestampOffset, TopicPartition,
};

use crate::producer_state::{
    BatchIds, ProducerError, ProducerLimits, ProducerStateCounters, ProducerStates, Removed,
};

/// This node's part in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes produce requests and serves fetches.
    Leader,
    /// Copies the leader (`leader` is its node id).
    Follower {
        /// Node id of the leader.
        leader: i32,
    },
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log refused or failed the write.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Idempotence refused the batch.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// This node does not lead the partition.
    #[error("not the leader")]
    NotLeader,
    /// The partition's Raft group stopped (node shutting down, or a storage
    /// failure stopped it).
    #[error("replication stopped: {0}")]
    Stopped(String),
}

impl From<ProposeError> for AppendError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { .. } => Self::NotLeader,
            other => Self::Stopped(other.to_string()),
        }
    }
}

/// Why a request naming a leader epoch (KIP-320) is not served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaderError {
    /// This node does not lead the partition.
    #[error("not the leader")]
    NotLeader,
    /// The client's epoch is older than the leader's: its metadata is stale.
    #[error("leader epoch {requested} is older than the current {current}")]
    FencedEpoch {
        /// The epoch the client sent.
        requested: i32,
        /// This leader's epoch.
        current: i32,
    },
    /// The client's epoch is newer than this node knows: this node lags.
    #[error("leader epoch {requested} is newer than the current {current}")]
    UnknownEpoch {
        /// The epoch the client sent.
        requested: i32,
        /// This leader's epoch.
        current: i32,
    },
}

/// Why DeleteRecords did not move the log start.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordsError {
    /// The target is negative or above the high watermark.
    #[error("offset {offset} is outside [0, high watermark {high_watermark}]")]
    OutOfRange {
        /// The requested offset.
        offset: i64,
        /// The high watermark at the time.
        high_watermark: i64,
    },
    /// The Raft log did not forget the entries above the data in time (see
    /// [`PartitionGroup::release_applied`]); nothing was deleted.
    #[error("the raft log did not release the records in time")]
    RaftLogBusy,
    /// The log failed the change.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A partition's offsets at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// First offset of the log.
    pub log_start: i64,
    /// Offset below which records are committed.
    pub high_watermark: i64,
    /// Next offset to be written.
    pub log_end: i64,
}

/// This node's role in the partition and the leader epoch it goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// Leader or follower.
    pub role: Role,
    /// The leader epoch (the Raft term once partitions are replicated).
    pub epoch: i32,
}

/// Offsets an append was given (or had, for a retried batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// Whether the batch was a retry answered from producer state.
    pub duplicate: bool,
    /// The broker's append time under LogAppendTime, else -1.
    pub log_append_time: i64,
}

/// One partition hosted by this node.
#[derive(Debug)]
pub struct Partition {
    /// Topic and partition number.
    pub tp: TopicPartition,
    // The partition log: private, so every read and every move of the high
    // watermark goes through this type.
    log: Arc<Log>,
    // Role and epoch change together (a leader election); read on every
    // request, written on leadership changes only.
    leadership: RwLock<Leadership>,
    // Held across the producer check and the (synchronous) proposal so that
    // check-and-propose is atomic per partition; never across an `.await`.
    producers: Mutex<Producers>,
    /// Bounds of the producer state (kept for rebuilds).
    producer_limits: ProducerLimits,
    /// Where expired and evicted producer entries are counted.
    producer_counters: Arc<ProducerStateCounters>,
    /// The partition's Raft group (set once, right after creation).
    group: OnceLock<PartitionGroup>,
    /// This partition, when its group has no other voter (acks=1 visibility).
    lone: OnceLock<Weak<Partition>>,
    /// This partition, for waits that outlive a borrow of it.
    me: OnceLock<Weak<Partition>>,
    /// How many times producer state was rebuilt from the log: a retry
    /// waiting on a batch recorded before a rebuild gives up.
    rebuilds: std::sync::atomic::AtomicU64,
    /// See [`Partition::raise_log_start_floor`].
    log_start_floor: std::sync::atomic::AtomicI64,
    /// The log end when this node last became leader: see
    /// [`Partition::latest_offset`].
    epoch_start: std::sync::atomic::AtomicI64,
    /// Why the group's Raft instance is down (a storage failure), while it is:
    /// produce then answers KAFKA_STORAGE_ERROR, not NOT_LEADER_OR_FOLLOWER.
    failure: Mutex<Option<String>>,
}

/// Producer state and how far into the log it reaches.
#[derive(Debug)]
struct Producers {
    states: ProducerStates,
    /// Every batch below this offset is recorded in `states`: a leader records
    /// a batch when it proposes it (with its predicted offsets, as Kafka's
    /// leader does at its append), every replica when it applies one at or
    /// above this offset. So a batch is recorded once, whoever wrote it.
    recorded_to: i64,
}

/// An accepted produce: a retry answered from producer state, or a proposal
/// in flight.
#[derive(Debug)]
pub struct PendingAppend {
    /// The offsets the batch has (a retry) or will have (a proposal).
    pub appended: Appended,
    proposal: Option<Proposal>,
    /// A retry answered from producer state: the batch it repeats must be
    /// in the log at those offsets before the retry is acknowledged.
    duplicate_of: Option<(Arc<Partition>, BatchIds)>,
    /// The partition of a proposal (its high watermark moves when acks=all
    /// is answered), and whether it is its group's only voter (see
    /// [`PendingAppend::wait`]).
    partition: Option<(Arc<Partition>, bool)>,
}

impl PendingAppend {
    /// Waits for what the producer's `acks` ask: the leader's own append
    /// (acks=1) or the commit (acks=all, and acks=1 on a log that fsyncs every
    /// append, whose promise is that nothing acknowledged lives only in memory:
    /// a commit is durable under the fsync policy on a quorum).
    pub async fn wait(self, acks: i16, fsync_every_append: bool) -> Result<Appended, AppendError> {
        let Some(mut proposal) = self.proposal else {
            if let Some((part, ids)) = self.duplicate_of {
                let acks = if fsync_every_append { -1 } else { acks };
                return part.confirm_duplicate(acks, self.appended, ids).await;
            }
            return Ok(self.appended);
        };
        if acks == -1 || fsync_every_append {
            // The offsets the batches got, whatever was predicted. `proposal`
            // is the request's last batch; its batches were proposed back to
            // back, so the first one's base is as far before its end as
            // predicted.
            let got = proposal.quorum_written().await?;
            if got.last_offset != self.appended.last_offset {
                tracing::debug!(predicted = ?self.appended, committed = ?got, "offset prediction missed");
            }
            // Committed: readable now, not only once applied (the apply
            // moves it too, to the same place).
            if let Some((p, _)) = &self.partition {
                if let Err(e) = p.commit(got.last_offset + 1) {
                    tracing::warn!(partition = %p.tp, error = %e, "moving the high watermark");
                }
            }
            let span = self.appended.last_offset - self.appended.base_offset;
            return Ok(Appended {
                base_offset: got.last_offset - span,
                last_offset: got.last_offset,
                ..self.appended
            });
        } else if acks == 1 {
            proposal.appended().await?;
            // A lone voter's append is on every replica there is: visible at
            // once, as Kafka's leader of a one-replica partition makes it
            // (Redpanda's visibility of acks=1 writes once a majority has
            // appended them). What the fsync policy has not yet written can
            // be lost in a crash, as with Kafka; acks=all waits for the commit.
            if let Some((p, true)) = &self.partition {
                if let Err(e) = p.commit(self.appended.last_offset + 1) {
                    tracing::warn!(partition = %p.tp, error = %e, "moving the high watermark");
                }
            }
        }
        Ok(self.appended)
    }
}

/// The hooks the partition's Raft group calls (a weak reference: the group
/// lives inside the partition).
#[derive(Debug)]
struct Hooks(Weak<Partition>);

impl GroupHooks for Hooks {
    fn committed(&self, batch: &[u8], base_offset: i64, last_offset: i64) {
        if let Some(p) = self.0.upgrade() {
            p.on_committed(batch, base_offset, last_offset);
        }
    }

    fn failed(&self, why: &str) {
        if let Some(p) = self.0.upgrade() {
            *p.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
            p.forget_proposals(ReadBound::HighWatermark);
        }
    }

    fn predictions_reset(&self) {
        if let Some(p) = self.0.upgrade() {
            p.forget_proposals(ReadBound::LogEnd);
        }
    }

    fn reset(&self, offset: i64) {
        if let Some(p) = self.0.upgrade() {
            tracing::info!(partition = %p.tp, offset, "log restarted at the leader's log start");
            p.forget_proposals(ReadBound::HighWatermark);
        }
    }

    fn leadership(&self, view: weir_raft::group::Leadership) {
        if let Some(p) = self.0.upgrade() {
            if view.is_leader || view.leader.is_some() {
                *p.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            let role = if view.is_leader {
                Role::Leader
            } else {
                Role::Follower {
                    leader: view
                        .leader
                        .and_then(|l| i32::try_from(l).ok())
                        .unwrap_or(-1),
                }
            };
            let epoch = i32::try_from(view.term).unwrap_or(i32::MAX);
            let before = p.leadership();
            if before.role == Role::Leader && (role != Role::Leader || epoch != before.epoch) {
                p.forget_proposals(ReadBound::HighWatermark);
            }
            if role == Role::Leader && (before.role != Role::Leader || epoch != before.epoch) {
                // A new leader's log holds entries of earlier terms not yet
                // applied here; it will commit every one of them, and a
                // producer retrying must find them (a duplicate, not an
                // out-of-order sequence): producer state covers the whole
                // log before the partition takes requests.
                p.forget_proposals(ReadBound::LogEnd);
            }
            p.set_leadership(Leadership { role, epoch });
        }
    }
}

fn batch_ids(h: &BatchHeader, last: &BatchHeader) -> Option<BatchIds> {
    (h.producer_id >= 0 && h.base_sequence >= 0).then(|| BatchIds {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        first_seq: h.base_sequence,
        last_seq: last
            .base_sequence
            .wrapping_add(last.last_offset_delta)
            .rem_euclid(i32::MAX),
    })
}

/// Producer state is rebuilt from the newest segments holding at least this many
/// bytes (a producer idle for longer than that restarts its sequence at 0).
const PRODUCER_SCAN_BYTES: u64 = 64 << 20;

fn producer_scan_start(log: &Log) -> i64 {
    let mut bytes = 0;
    let mut start = log.log_start_offset();
    for seg in log.segments().iter().rev() {
        start = seg.base_offset;
        bytes += seg.size;
        if bytes >= PRODUCER_SCAN_BYTES {
            break;
        }
    }
    start.max(log.log_start_offset())
}

/// Producer state rebuilt from the log's newest segments (see
/// [`PRODUCER_SCAN_BYTES`]), and the offset it reaches (the log end).
fn scan_producers(log: &Log, limits: ProducerLimits, upto: ReadBound) -> (ProducerStates, i64) {
    let mut producers = ProducerStates::new(limits);
    let now = now_ms();
    let mut offset = producer_scan_start(log);
    while let Ok(r) = log.read(offset, 1 << 20, upto) {
        if r.records.is_empty() {
            break;
        }
        for (_, h) in HeaderWalk::new(&r.records, 0) {
            if let Some(ids) = batch_ids(&h, &h) {
                producers.record(&ids, h.base_offset, h.last_offset(), now);
            }
            offset = h.next_offset();
        }
    }
    let end = match upto {
        ReadBound::LogEnd => log.log_end_offset(),
        _ => log.high_watermark(),
    };
    (producers, offset.max(end))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Partition {
    /// Opens a partition hosted by this node alone: its log, producer state
    /// rebuilt from the log (bounded by `limits`; drops are counted in
    /// `counters`), and its one-voter Raft group (node `node_id`, group
    /// `group_id`). Returns once the group has elected this node, so the
    /// partition takes produce requests at once.
    ///
    /// The log does not say when the broker appended a batch (CreateTime
    /// timestamps are the producer's clock), so rebuilt producers count as used
    /// now, in log order: each gets a full expiration period after a restart,
    /// and when the log holds more producers than the bound, the ones that
    /// wrote last are kept.
    pub async fn open_local(
        tp: TopicPartition,
        log: Arc<Log>,
        limits: ProducerLimits,
        counters: Arc<ProducerStateCounters>,
        ids: (u64, u64),
        settings: GroupSettings,
    ) -> Result<Arc<Self>, GroupError> {
        let (node_id, group_id) = ids;
        let part = Arc::new(Self::new(tp, log, limits, counters));
        let hooks: Arc<dyn GroupHooks> = Arc::new(Hooks(Arc::downgrade(&part)));
        let group =
            PartitionGroup::open_local(node_id, group_id, Arc::clone(&part.log), hooks, settings)
                .await?;
        let mut leadership = group.leadership();
        let _ = part.group.set(group);
        let _ = part.me.set(Arc::downgrade(&part));
        let _ = part.lone.set(Arc::downgrade(&part));
        // A lone voter elects itself at once; the wait is bounded anyway.
        let elected = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            leadership.wait_for(|l| l.is_leader),
        )
        .await;
        if !matches!(elected, Ok(Ok(_))) {
            tracing::warn!(partition = %part.tp, "no leader elected within 10 s");
        }
        Ok(part)
    }

    /// Opens a partition replicated on the nodes of `replicas.0` (node id,
    /// Raft address; the preferred leader first), this one among them, served by the transport
    /// `replicas.1`. Does not wait for a leader: the replicas elect one among
    /// themselves.
    pub async fn open_replicated(
        tp: TopicPartition,
        log: Arc<Log>,
        limits: ProducerLimits,
        counters: Arc<ProducerStateCounters>,
        ids: (u64, u64),
        replicas: (Vec<(u64, String)>, &weir_raft::Transport),
        settings: GroupSettings,
    ) -> Result<Arc<Self>, GroupError> {
        let (node_id, group_id) = ids;
        let (voters, transport) = replicas;
        let part = Arc::new(Self::new(tp, log, limits, counters));
        let hooks: Arc<dyn GroupHooks> = Arc::new(Hooks(Arc::downgrade(&part)));
        let group = PartitionGroup::open_replicated(
            node_id,
            group_id,
            Arc::clone(&part.log),
            &voters,
            hooks,
            transport,
            settings,
        )
        .await?;
        let _ = part.group.set(group);
        let _ = part.me.set(Arc::downgrade(&part));
        Ok(part)
    }

    /// The Raft group id, once the group is open.
    pub fn group_id(&self) -> Option<u64> {
        self.group.get().map(PartitionGroup::group_id)
    }

    /// One quiescence step of the partition's group (see
    /// [`PartitionGroup::tend`]), with the freshest leadership claim heard
    /// for it and the nodes this one cannot reach now.
    pub async fn tend(&self, claim: Option<(u64, u64)>, down: &[u64]) {
        if let Some(group) = self.group.get() {
            group.tend(claim, down).await;
        }
    }

    /// Whether this node leads the partition and its group is quiesced.
    pub fn is_quiesced(&self) -> bool {
        self.group.get().is_some_and(PartitionGroup::is_quiesced)
    }

    /// The group's Raft positions, for status pages.
    pub fn raft_status(&self) -> Option<weir_raft::group::GroupStatus> {
        self.group.get().map(PartitionGroup::status)
    }

    /// Whether this replica leads the partition with a quorum's
    /// confirmation now, within `within` ([`PartitionGroup::confirm_leadership`]);
    /// false without a group.
    pub async fn confirm_leadership(&self, within: std::time::Duration) -> bool {
        match self.group.get() {
            Some(g) => g.confirm_leadership(within).await,
            None => false,
        }
    }

    /// The partition without its group (it starts as a follower of nobody).
    fn new(
        tp: TopicPartition,
        log: Arc<Log>,
        limits: ProducerLimits,
        counters: Arc<ProducerStateCounters>,
    ) -> Self {
        let (producers, recorded_to) = scan_producers(&log, limits, ReadBound::LogEnd);
        // The epoch of the newest batch: a restart never lowers the epoch.
        let epoch = log.latest_epoch().unwrap_or(0).max(0);
        Self {
            tp,
            log,
            leadership: RwLock::new(Leadership {
                role: Role::Follower { leader: -1 },
                epoch,
            }),
            producers: Mutex::new(Producers {
                states: producers,
                recorded_to,
            }),
            producer_limits: limits,
            producer_counters: counters,
            group: OnceLock::new(),
            lone: OnceLock::new(),
            me: OnceLock::new(),
            rebuilds: std::sync::atomic::AtomicU64::new(0),
            log_start_floor: std::sync::atomic::AtomicI64::new(0),
            epoch_start: std::sync::atomic::AtomicI64::new(0),
            failure: Mutex::new(None),
        }
    }

    /// A committed data entry (on every replica, in log order): records its
    /// producer unless this node already did (as the leader that proposed it,
    /// or from the log at open), and moves the high watermark past it.
    fn on_committed(&self, batch: &[u8], base_offset: i64, last_offset: i64) {
        {
            let mut p = self.producers();
            if base_offset >= p.recorded_to {
                if let Ok(h) = BatchHeader::parse(batch) {
                    if let Some(ids) = batch_ids(&h, &h) {
                        let removed = p.states.record(&ids, base_offset, last_offset, now_ms());
                        self.count(removed);
                    }
                }
                p.recorded_to = last_offset + 1;
            }
        }
        if let Err(e) = self.commit(last_offset + 1) {
            tracing::warn!(partition = %self.tp, error = %e, "moving the high watermark");
        }
    }

    /// This node stopped leading the term its proposals were made in: those
    /// not yet in the log never will be (each is bound to its term), so the
    /// producer state, which recorded them at proposal, is rebuilt from the
    /// log up to the high watermark (what is committed can never be
    /// truncated; what is above it is recorded when it is applied, and a
    /// new leader may truncate it first). A retry of a lost batch is then
    /// written, not answered as a duplicate of something that does not exist.
    ///
    /// A leader that keeps its term but re-arms its predictions (see
    /// `weir_raft::group::GroupHooks::predictions_reset`) rebuilds up to the
    /// log end instead: everything in its log then is its own term's, and
    /// its next proposals are recorded above it.
    fn forget_proposals(&self, upto: ReadBound) {
        let (states, recorded_to) = scan_producers(&self.log, self.producer_limits, upto);
        self.rebuilds.fetch_add(1, Ordering::AcqRel);
        *self.producers() = Producers {
            states,
            recorded_to,
        };
        tracing::debug!(partition = %self.tp, recorded_to, "producer state rebuilt after a leadership change");
    }

    fn producers(&self) -> std::sync::MutexGuard<'_, Producers> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the partition's Raft group (topic deletion, node shutdown).
    pub async fn shutdown(&self) {
        // The group is shared by reference only; shutting it down stops its
        // Raft instance and tasks, so later proposals fail as not leader.
        if let Some(g) = self.group.get() {
            g.stop().await;
        }
    }

    /// This node's role and the leader epoch.
    pub fn leadership(&self) -> Leadership {
        *self.leadership.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node leads the partition.
    pub fn leads(&self) -> bool {
        matches!(self.leadership().role, Role::Leader)
    }

    /// Changes role and epoch (a leader election). The epoch never goes back:
    /// a lower one (a Raft log rebuilt under data written in a later epoch) is
    /// logged and the current one kept.
    pub fn set_leadership(&self, next: Leadership) {
        let mut l = self.leadership.write().unwrap_or_else(|p| p.into_inner());
        if next.epoch < l.epoch {
            tracing::warn!(partition = %self.tp, epoch = l.epoch, term = next.epoch, "raft term below the leader epoch; keeping the epoch");
        }
        if next.role == Role::Leader && (l.role != Role::Leader || next.epoch != l.epoch) {
            // Everything in the log now is committed once this epoch
            // commits its first entry; until then the high watermark may
            // lag what the previous leader acknowledged.
            self.epoch_start
                .store(self.log.log_end_offset(), Ordering::Release);
        }
        *l = Leadership {
            role: next.role,
            epoch: next.epoch.max(l.epoch),
        };
    }

    /// The high watermark, as ListOffsets answers LATEST: `None` while this
    /// node leads in an epoch whose first entry it has not committed yet
    /// (its high watermark may be below offsets the previous leader
    /// acknowledged; Kafka answers OFFSET_NOT_AVAILABLE then too). A writer
    /// that counts what it wrote by the log end would count too few.
    pub fn latest_offset(&self) -> Option<i64> {
        let hw = self.log.high_watermark();
        let leads = self.leadership().role == Role::Leader;
        (!leads || hw >= self.epoch_start.load(Ordering::Acquire)).then_some(hw)
    }

    /// Whether the partition has a leader now (this node or a known other),
    /// and its Raft group is running.
    pub fn has_leader(&self) -> bool {
        if self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return false;
        }
        match self.leadership().role {
            Role::Leader => true,
            Role::Follower { leader } => leader >= 0,
        }
    }

    /// The leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leadership().epoch
    }

    /// Checks that this node leads the partition at the epoch a client names
    /// (`-1`: the client does not say); returns the current epoch. Used by
    /// Fetch, ListOffsets and OffsetForLeaderEpoch (KIP-320).
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<i32, LeaderError> {
        let l = self.leadership();
        if l.role != Role::Leader {
            return Err(LeaderError::NotLeader);
        }
        let requested = current_leader_epoch;
        match requested {
            r if r < 0 || r == l.epoch => Ok(l.epoch),
            r if r < l.epoch => Err(LeaderError::FencedEpoch {
                requested,
                current: l.epoch,
            }),
            _ => Err(LeaderError::UnknownEpoch {
                requested,
                current: l.epoch,
            }),
        }
    }

    /// Where `epoch` ends in this log (OffsetForLeaderEpoch, Kafka's
    /// `LeaderEpochFileCache.endOffsetFor`): the largest epoch at or below it
    /// and the first offset after that epoch; the current epoch ends at the log
    /// end; `(-1, -1)` for an epoch the log cannot place.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let current = self.leader_epoch();
        // Kafka records the epoch in the cache on becoming leader; Weir records
        // it with the first batch of the epoch, so the current epoch is answered
        // here even before that batch.
        if epoch == current {
            return (current, self.log.log_end_offset());
        }
        self.log.end_offset_for_epoch(epoch).unwrap_or((-1, -1))
    }

    /// The leader epoch of the batch holding `offset` (from the epoch cache),
    /// or -1 when the log has no epoch for it.
    pub fn epoch_at(&self, offset: i64) -> i32 {
        self.log
            .epoch_entries()
            .iter()
            .take_while(|(_, start)| *start <= offset)
            .last()
            .map_or(-1, |(epoch, _)| *epoch)
    }

    /// Log start, high watermark and log end.
    pub fn offsets(&self) -> Offsets {
        Offsets {
            log_start: self.log_start_offset(),
            high_watermark: self.log.high_watermark(),
            log_end: self.log.log_end_offset(),
        }
    }

    /// Offset below which records are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.log.high_watermark()
    }

    /// First offset of the log clients see: the log's own start, or the
    /// start DeleteRecords recorded through the controller (up to the high
    /// watermark) when this replica has not removed the records below it
    /// yet (it does at its next maintenance pass). Otherwise a replica that
    /// became leader before that pass served the deleted records again.
    pub fn log_start_offset(&self) -> i64 {
        let floor = self.log_start_floor.load(Ordering::Acquire);
        self.log
            .log_start_offset()
            .max(floor.min(self.log.high_watermark()))
    }

    /// A receiver that sees every high-watermark move (long-polling fetches).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.log.subscribe_high_watermark()
    }

    /// Records below `next_offset` are committed: moves the high watermark up
    /// (never down, never past the log end). On one node a leader append is
    /// committed at once; under replication this is the commit index.
    pub fn commit(&self, next_offset: i64) -> Result<i64, StorageError> {
        let hw = self.log.high_watermark();
        if next_offset <= hw {
            return Ok(hw);
        }
        self.log.set_high_watermark(next_offset)
    }

    /// The first committed record at or after `timestamp` (ListOffsets by time).
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        let found = self
            .log
            .offset_for_timestamp_from(timestamp, self.log_start_offset())?;
        Ok(found.filter(|f| f.offset < self.log.high_watermark()))
    }

    /// The first record below the high watermark holding the log's largest
    /// timestamp (ListOffsets MAX_TIMESTAMP, KIP-734); `None` when there is
    /// none, or when the largest timestamp is in records not yet committed.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, StorageError> {
        match self.log.max_timestamp()? {
            Some(max) => self.offset_for_timestamp(max),
            None => Ok(None),
        }
    }

    /// The log start DeleteRecords asks for with `offset` (`-1`: the high
    /// watermark), checked against the high watermark.
    pub fn delete_target(&self, offset: i64) -> Result<i64, DeleteRecordsError> {
        let high_watermark = self.log.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(DeleteRecordsError::OutOfRange {
                offset,
                high_watermark,
            });
        }
        Ok(target)
    }

    /// DeleteRecords: raises the log start to `offset` (`-1`: the high
    /// watermark); returns the new log start. Durable on return. On a
    /// replicated partition the caller first records the new start through
    /// the controller (see [`Partition::raise_log_start_floor`]), so that
    /// every replica applies it. Blocking.
    pub fn delete_records(&self, offset: i64) -> Result<i64, DeleteRecordsError> {
        let target = self.delete_target(offset)?;
        if self.is_replicated() {
            self.raise_log_start_floor(target);
            // The Raft log lets go once the entries up to `target` are
            // applied here, which takes moments after they are committed.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let start = self.remove_before(target)?;
                if start >= target {
                    return Ok(start);
                }
                if std::time::Instant::now() >= deadline {
                    return Err(DeleteRecordsError::RaftLogBusy);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        if !self.release_raft_log() {
            return Err(DeleteRecordsError::RaftLogBusy);
        }
        Ok(self.log.advance_log_start(target)?)
    }

    /// The log start DeleteRecords set for this partition through the
    /// controller: every replica removes the records below it, up to its high
    /// watermark, at its next maintenance pass (a replica behind it catches up
    /// first). Never lowered.
    pub fn raise_log_start_floor(&self, offset: i64) {
        self.log_start_floor.fetch_max(offset, Ordering::AcqRel);
    }

    /// Makes the Raft log forget the entries applied so far (see
    /// [`PartitionGroup::release_applied`]), so data below the high watermark
    /// may be removed or rewritten. Only a one-voter group does (a replicated
    /// one releases exactly what it removes, see [`Partition::remove_before`]).
    /// Blocking: call it from a blocking thread of the runtime.
    fn release_raft_log(&self) -> bool {
        if self.is_replicated() {
            return false;
        }
        let Some(group) = self.group.get() else {
            return true;
        };
        tokio::runtime::Handle::current().block_on(group.release_applied())
    }

    /// Removes the records before `offset` (at most the high watermark) from a
    /// replicated partition: the Raft log first forgets the entries up to
    /// there (see [`PartitionGroup::release_below`]), then whole segments
    /// below it are deleted. A follower that comes back behind this point
    /// restarts its log here. Returns the log start, unchanged when the Raft
    /// log could not let go yet. Blocking.
    fn remove_before(&self, offset: i64) -> Result<i64, StorageError> {
        let offset = offset.min(self.log.high_watermark());
        let start = self.log.log_start_offset();
        if offset <= start {
            return Ok(start);
        }
        if !self.release_raft_log_below(offset) {
            return Ok(start);
        }
        Ok(self.log.delete_before(offset)?.log_start_offset)
    }

    /// Compaction of a replicated partition: it rewrites batches, so it
    /// cleans only below the Raft log, which first forgets the entries of
    /// the segments to clean (see [`PartitionGroup::release_below`]). A
    /// follower that comes back behind that point receives the cleaned
    /// segments from its leader with the snapshot. Blocking.
    fn compact_below_raft_log(&self, now_ms: i64) -> Result<(), StorageError> {
        let Some(end) = self.log.cleanable_end(now_ms)? else {
            return Ok(());
        };
        let end = end.min(self.log.high_watermark());
        if self.release_raft_log_below(end) {
            self.log.compact_below(end, now_ms)?;
        }
        Ok(())
    }

    /// Lets the Raft log forget the entries below the batch holding `offset`
    /// (see [`PartitionGroup::release_below`]); whether it did. Blocking.
    fn release_raft_log_below(&self, offset: i64) -> bool {
        match self.group.get() {
            Some(group) => tokio::runtime::Handle::current().block_on(group.release_below(offset)),
            None => true,
        }
    }

    /// Whether the partition has replicas on other nodes.
    pub fn is_replicated(&self) -> bool {
        self.group.get().is_some() && self.lone.get().is_none()
    }

    /// Waits until every record up to `offset` is on disk under the log's
    /// fsync policy (at once under the page-cache policy).
    pub async fn wait_durable(&self, offset: i64) -> Result<(), StorageError> {
        self.log.wait_durable(offset).await
    }

    /// Whether the log fsyncs every append (`--fsync always`, `flush.messages=1`),
    /// so that acks=1 waits for the fsync too.
    pub fn fsyncs_every_append(&self) -> bool {
        self.log.durability() == weir_storage::Durability::EveryAppend
    }

    /// The log's settings.
    pub fn config(&self) -> LogConfig {
        self.log.config()
    }

    /// Replaces the log's settings (a topic config change).
    pub fn set_config(&self, cfg: LogConfig) {
        self.log.set_config(cfg);
    }

    /// Periodic upkeep: forgets idle producers, applies retention and
    /// compaction, and flushes, so rolled segments reach the disk and recovery
    /// points advance even when no acks=all producer asks for a flush. Blocking
    /// I/O: call it off the async workers. Errors are logged, not returned: one
    /// failing partition must not stop the upkeep of the others.
    pub fn maintain(&self, now_ms: i64) {
        self.expire_producers(now_ms);
        let tp = &self.tp;
        // Retention and compaction remove or rewrite batches: the Raft log
        // first forgets the entries pointing at them.
        if self.is_replicated() {
            let floor = self.log_start_floor.load(Ordering::Acquire);
            let point = self.log.retention_point(now_ms);
            if let Err(e) = point.and_then(|p| self.remove_before(p.max(floor))) {
                tracing::warn!(partition = %tp, error = %e, "retention failed");
            }
            if let Err(e) = self.compact_below_raft_log(now_ms) {
                tracing::warn!(partition = %tp, error = %e, "compaction failed");
            }
        } else if self.release_raft_log() {
            if let Err(e) = self.log.enforce_retention(now_ms) {
                tracing::warn!(partition = %tp, error = %e, "retention failed");
            }
            if let Err(e) = self.log.compact() {
                tracing::warn!(partition = %tp, error = %e, "compaction failed");
            }
        }
        if let Err(e) = self.log.flush() {
            tracing::warn!(partition = %tp, error = %e, "flush failed");
        }
    }

    fn count(&self, removed: Removed) {
        if removed.expired > 0 {
            self.producer_counters
                .expired
                .fetch_add(removed.expired as u64, Ordering::Relaxed);
        }
        if removed.evicted > 0 {
            self.producer_counters
                .evicted
                .fetch_add(removed.evicted as u64, Ordering::Relaxed);
        }
    }

    /// Forgets producers idle past the expiration at `now_ms` (run by the
    /// periodic maintenance); returns how many.
    pub fn expire_producers(&self, now_ms: i64) -> usize {
        let expired = self.producers().states.expire(now_ms);
        self.count(Removed {
            expired,
            evicted: 0,
        });
        expired
    }

    /// Number of producers whose state this partition keeps.
    pub fn producer_count(&self) -> usize {
        self.producers().states.len()
    }

    /// Accepts produced batches: validates and prepares them (see
    /// [`Log::prepare`]), checks idempotence, and proposes each batch to the
    /// partition's Raft group, in call order. A retried batch is answered
    /// from producer state. The returned [`PendingAppend`] waits for the acks
    /// level; its offsets are known now.
    pub fn append(&self, records: &Bytes) -> Result<PendingAppend, AppendError> {
        self.append_from(records, Origin::Wire)
    }

    /// [`Partition::append`] of batches that came from `origin` (see
    /// [`Log::prepare_from`]).
    pub fn append_from(
        &self,
        records: &Bytes,
        origin: Origin,
    ) -> Result<PendingAppend, AppendError> {
        if let Some(why) = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(AppendError::Stopped(why));
        }
        let leadership = self.leadership();
        if leadership.role != Role::Leader {
            return Err(AppendError::NotLeader);
        }
        let group = self.group.get().ok_or(AppendError::NotLeader)?;
        let prepared = self.log.prepare_from(records, origin)?;
        let log_append_time = prepared.log_append_time();
        let bytes = if prepared.is_unchanged() {
            records.clone()
        } else {
            Bytes::copy_from_slice(prepared.bytes())
        };
        let headers = prepared.headers();
        let (first, last) = (headers[0].1, headers[headers.len() - 1].1);
        let ids = batch_ids(&first, &last);
        let mut producers = self.producers();
        if let Some(ids) = &ids {
            if let Some((base_offset, last_offset)) = producers.states.check(ids)? {
                return Ok(PendingAppend {
                    appended: Appended {
                        base_offset,
                        last_offset,
                        duplicate: true,
                        log_append_time: -1,
                    },
                    proposal: None,
                    duplicate_of: self.me().map(|p| (p, *ids)),
                    partition: None,
                });
            }
        }
        // One Raft entry per batch (a request rarely carries more than one).
        let mut proposal = None;
        let mut range: Option<GroupOffsets> = None;
        for (at, h) in headers {
            let p = group.propose(bytes.slice(*at..*at + h.size()))?;
            range = Some(GroupOffsets {
                base_offset: range.map_or(p.offsets.base_offset, |r| r.base_offset),
                last_offset: p.offsets.last_offset,
            });
            proposal = Some(p);
        }
        let range = range.expect("prepare returns at least one batch");
        if let Some(ids) = &ids {
            let removed =
                producers
                    .states
                    .record(ids, range.base_offset, range.last_offset, now_ms());
            self.count(removed);
        }
        producers.recorded_to = producers.recorded_to.max(range.last_offset + 1);
        drop(producers);
        Ok(PendingAppend {
            appended: Appended {
                base_offset: range.base_offset,
                last_offset: range.last_offset,
                duplicate: false,
                log_append_time,
            },
            proposal,
            duplicate_of: None,
            partition: self.me().map(|p| (p, self.lone.get().is_some())),
        })
    }

    /// This partition as an `Arc` (set once its group is open).
    fn me(&self) -> Option<Arc<Partition>> {
        self.me.get().and_then(Weak::upgrade)
    }

    /// A retry answered from producer state is acknowledged only once the
    /// batch it repeats is where producer state says (appended for acks=1,
    /// committed for acks=all) and really is that producer's batch: the
    /// original may still be in flight, and a proposal that never lands
    /// (leadership moved) must not be acknowledged through its retry. While
    /// this node stops leading, or when another batch holds those offsets,
    /// the retry fails as not-leader (retriable): the client retries, and
    /// producer state rebuilt from the log then decides.
    async fn confirm_duplicate(
        &self,
        acks: i16,
        appended: Appended,
        ids: BatchIds,
    ) -> Result<Appended, AppendError> {
        if acks == 0 {
            return Ok(appended);
        }
        let want = appended.last_offset + 1;
        let rebuilds = self.rebuilds.load(Ordering::Acquire);
        let (mut reached, bound) = if acks == -1 {
            (
                self.log.subscribe_high_watermark(),
                ReadBound::HighWatermark,
            )
        } else {
            (self.log.subscribe_log_end(), ReadBound::LogEnd)
        };
        loop {
            // Producer state rebuilt meanwhile (the original was refused or
            // leadership moved): the client retries against the new state.
            if self.leadership().role != Role::Leader
                || self.rebuilds.load(Ordering::Acquire) != rebuilds
            {
                return Err(AppendError::NotLeader);
            }
            if *reached.borrow_and_update() >= want {
                break;
            }
            // Woken by progress; leadership is looked at again every 100 ms.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), reached.changed())
                .await;
        }
        if appended.base_offset < self.log.log_start_offset() {
            return Ok(appended); // committed long ago and since removed
        }
        let r = self
            .log
            .read(appended.base_offset, 1, bound)
            .map_err(AppendError::from)?;
        let same = HeaderWalk::new(&r.records, 0).next().is_some_and(|(_, h)| {
            h.base_offset == appended.base_offset
                && h.producer_id == ids.producer_id
                && h.producer_epoch == ids.epoch
                && h.base_sequence == ids.first_seq
        });
        if same {
            Ok(appended)
        } else {
            tracing::debug!(partition = %self.tp, ?appended, "a retry's original batch is not in the log");
            Err(AppendError::NotLeader)
        }
    }

    /// Reads for a consumer: committed batches only (see [`ReadBound`]).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        committed_only: bool,
    ) -> Result<ReadResult, StorageError> {
        let bound = if committed_only {
            ReadBound::LastStable
        } else {
            ReadBound::HighWatermark
        };
        // Below what DeleteRecords removed (see [`Self::log_start_offset`]);
        // only an atomic load on the usual path, where the floor is 0 or
        // the log's start already.
        let floor = self.log_start_floor.load(Ordering::Acquire);
        if offset < floor {
            let start = self.log_start_offset();
            if offset < start {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: start,
                    log_end: self.log.log_end_offset(),
                });
            }
        }
        let mut read = self.log.read(offset, max_bytes, bound)?;
        read.log_start_offset = read.log_start_offset.max(floor.min(read.high_watermark));
        Ok(read)
    }

    /// Reads everything written, committed or not (the group coordinator loading
    /// its state, replicas copying the leader).
    pub fn read_log(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        self.log.read(offset, max_bytes, ReadBound::LogEnd)
    }

    /// Closes the log cleanly (flush, clean-shutdown marker); for tests of
    /// restarts.
    #[cfg(test)]
    fn close(&self) -> Result<(), StorageError> {
        self.log.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_code;
    use crate::producer_state::DEFAULT_EXPIRATION_MS as DEFAULT_EXPIRATION;
    use weir_storage::LogConfig;

    /// A one-record idempotent batch of `producer_id` at sequence `seq`.
    fn batch(producer_id: i64, seq: i32) -> Bytes {
        let mut b = weir_storage::record::build_batch(&[(None, Some(b"v".to_vec()), now_ms())]);
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&0i16.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        weir_storage::seal_batch(&mut b);
        Bytes::from(b)
    }

    fn open_log(dir: &std::path::Path) -> Arc<Log> {
        let (log, _) = Log::open(&dir.join("t-0"), "t-0", LogConfig::default()).unwrap();
        Arc::new(log)
    }

    async fn partition(log: Arc<Log>, limits: ProducerLimits) -> Arc<Partition> {
        Partition::open_local(
            TopicPartition::new("t", 0),
            log,
            limits,
            Arc::default(),
            (1, 1),
            GroupSettings::default(),
        )
        .await
        .unwrap()
    }

    /// DeleteRecords as the handler runs it: on a blocking thread.
    async fn delete_records(p: &Arc<Partition>, offset: i64) -> Result<i64, DeleteRecordsError> {
        let p = Arc::clone(p);
        tokio::task::spawn_blocking(move || p.delete_records(offset))
            .await
            .unwrap()
    }

    /// Appends and waits for the commit.
    async fn produce(p: &Partition, b: Bytes) -> Result<Appended, AppendError> {
        p.append(&b)?.wait(-1, false).await
    }

    /// A request whose records hold two batches (kafka-protocol's encoder
    /// writes one per record) is answered with the first batch's base offset
    /// under acks=all as under acks=1: the client numbers its records from it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_all_answers_the_base_offset_of_the_first_batch() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(open_log(dir.path()), ProducerLimits::default()).await;
        let two_batches = || {
            let one = |v: &str| {
                weir_storage::record::build_batch(&[(None, Some(v.as_bytes().to_vec()), now_ms())])
            };
            let mut b = one("a");
            b.extend(one("b"));
            Bytes::from(b)
        };
        for (acks, base) in [(-1, 0), (1, 2), (-1, 4)] {
            let a = p
                .append(&two_batches())
                .unwrap()
                .wait(acks, false)
                .await
                .unwrap();
            assert_eq!(
                (a.base_offset, a.last_offset),
                (base, base + 1),
                "acks={acks}"
            );
        }
    }

    /// A partition full of producers evicts the one idle longest and counts it;
    /// the evicted producer's next batch is taken at its sequence, as for
    /// any producer the partition does not know (Kafka since 2.5), while kept
    /// producers still get their retries answered from state. Expiry is
    /// counted too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn evicted_producer_is_unknown_and_drops_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ProducerLimits {
            expiration_ms: DEFAULT_EXPIRATION,
            max_producers: 2,
        };
        let p = partition(open_log(dir.path()), limits).await;
        for pid in [1, 2, 3] {
            produce(&p, batch(pid, 0)).await.unwrap();
        }
        assert_eq!(p.producer_count(), 2);
        assert_eq!(p.producer_counters.evicted.load(Ordering::Relaxed), 1);
        let taken = produce(&p, batch(1, 1)).await.unwrap();
        assert!(!taken.duplicate && taken.base_offset == 3, "{taken:?}");
        let retry = produce(&p, batch(3, 0)).await.unwrap();
        assert!(retry.duplicate && retry.base_offset == 2, "{retry:?}");
        assert_eq!(p.expire_producers(now_ms() + DEFAULT_EXPIRATION + 1), 2);
        assert_eq!(p.producer_count(), 0);
        assert_eq!(p.producer_counters.expired.load(Ordering::Relaxed), 2);
        let taken = produce(&p, batch(3, 1)).await.unwrap();
        assert!(!taken.duplicate && taken.base_offset == 4, "{taken:?}");
        p.shutdown().await;
    }

    /// A node just elected leader may hold, above its high watermark,
    /// offsets the previous leader acknowledged, until its epoch commits a
    /// first entry: LATEST is not available meanwhile (it would be too
    /// low); a follower's and a settled leader's answer is the high
    /// watermark.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn latest_waits_for_a_new_leaders_first_commit() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let p = partition(Arc::clone(&log), ProducerLimits::default()).await;
        produce(&p, batch(1, 0)).await.unwrap();
        assert_eq!(p.latest_offset(), Some(1));
        let epoch = p.leader_epoch();
        // Written under the old epoch, committed by a quorum this node has
        // not heard from yet.
        log.append(&batch(2, 0), epoch).unwrap();
        p.set_leadership(Leadership {
            role: Role::Follower { leader: 2 },
            epoch,
        });
        assert_eq!(
            p.latest_offset(),
            Some(1),
            "a follower answers its high watermark"
        );
        p.set_leadership(Leadership {
            role: Role::Leader,
            epoch: epoch + 1,
        });
        assert_eq!(p.latest_offset(), None);
        p.commit(2).unwrap();
        assert_eq!(p.latest_offset(), Some(2));
        p.shutdown().await;
    }

    /// A retry of a batch still in flight (proposed, not yet committed) is
    /// answered with the offsets the original will get, never written twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_of_an_in_flight_batch_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let p = partition(Arc::clone(&log), ProducerLimits::default()).await;
        let first = p.append(&batch(9, 0)).unwrap();
        let retry = p.append(&batch(9, 0)).unwrap();
        assert!(retry.appended.duplicate);
        assert_eq!(retry.appended.base_offset, first.appended.base_offset);
        first.wait(-1, false).await.unwrap();
        retry.wait(-1, false).await.unwrap();
        assert_eq!(log.log_end_offset(), 1, "the retry was written");
        p.shutdown().await;
    }

    /// A proposal recorded in producer state but lost to a leadership change
    /// (never appended): after the change the producer's retry is written,
    /// not answered as a duplicate of a batch that does not exist.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_lost_to_a_leadership_change_is_written_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let p = partition(Arc::clone(&log), ProducerLimits::default()).await;
        let term = p.leader_epoch();
        // As `append` does at proposal time, for a proposal that then fails.
        {
            let mut prod = p.producers();
            let h = BatchHeader::parse(&batch(5, 0)).unwrap();
            let ids = batch_ids(&h, &h).unwrap();
            prod.states.record(&ids, 0, 0, now_ms());
            prod.recorded_to = 1;
        }
        let hooks = Hooks(Arc::downgrade(&p));
        hooks.leadership(weir_raft::group::Leadership {
            leader: Some(1),
            term: u64::try_from(term).unwrap() + 1,
            is_leader: false,
        });
        hooks.leadership(weir_raft::group::Leadership {
            leader: Some(1),
            term: u64::try_from(term).unwrap(),
            is_leader: true,
        });
        let retry = p.append(&batch(5, 0)).unwrap();
        assert!(!retry.appended.duplicate, "answered from a lost proposal");
        p.shutdown().await;
    }

    /// KIP-320: a leader serves a request naming its epoch or none; an older
    /// epoch is fenced, a newer one unknown; a follower serves neither. Batches
    /// carry the epoch, which is the Raft term.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_are_checked_against_the_leader_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(open_log(dir.path()), ProducerLimits::default()).await;
        let term = p.leader_epoch();
        assert!(term >= 1, "the raft term is the epoch: {term}");
        let a = produce(&p, batch(1, 0)).await.unwrap();
        let r = p.read_log(a.base_offset, 1 << 20).unwrap();
        assert_eq!(
            BatchHeader::parse(&r.records)
                .unwrap()
                .partition_leader_epoch,
            term
        );
        p.set_leadership(Leadership {
            role: Role::Leader,
            epoch: 4,
        });
        assert_eq!(p.check_leader(4), Ok(4));
        assert_eq!(p.check_leader(-1), Ok(4));
        assert_eq!(
            p.check_leader(3),
            Err(LeaderError::FencedEpoch {
                requested: 3,
                current: 4
            })
        );
        assert_eq!(
            p.check_leader(5),
            Err(LeaderError::UnknownEpoch {
                requested: 5,
                current: 4
            })
        );
        assert_eq!(error_code::leader(&p.check_leader(3).unwrap_err()), 74);
        assert_eq!(error_code::leader(&p.check_leader(5).unwrap_err()), 76);
        // The epoch never goes back; a follower refuses reads and appends.
        p.set_leadership(Leadership {
            role: Role::Leader,
            epoch: 2,
        });
        assert_eq!(p.leader_epoch(), 4);
        p.set_leadership(Leadership {
            role: Role::Follower { leader: 2 },
            epoch: 5,
        });
        assert_eq!(p.check_leader(5), Err(LeaderError::NotLeader));
        assert!(matches!(
            p.append(&batch(1, 1)),
            Err(AppendError::NotLeader)
        ));
        p.shutdown().await;
    }

    /// Epochs written before (here by the log directly, as an older node
    /// would) survive: the partition's epoch never drops below them,
    /// OffsetForLeaderEpoch answers where each ended, and the epoch of an
    /// offset is the one its batch got.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn epochs_survive_restart_and_place_offsets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open_log(dir.path());
            for (epoch, pid) in [(0, 1), (3, 2), (3, 3), (5, 4)] {
                log.append(&batch(pid, 0), epoch).unwrap();
            }
            log.close().unwrap();
        }
        let p = partition(open_log(dir.path()), ProducerLimits::default()).await;
        assert!(p.leader_epoch() >= 5, "a restart lowered the epoch");
        assert_eq!(p.end_offset_for_epoch(4), (3, 3));
        assert_eq!(p.end_offset_for_epoch(3), (3, 3));
        assert_eq!(p.end_offset_for_epoch(0), (0, 1));
        assert_eq!(p.end_offset_for_epoch(-1), (-1, -1));
        assert_eq!(
            [0, 1, 2, 3].map(|o| p.epoch_at(o)),
            [0, 3, 3, 5],
            "epochs of offsets"
        );
        let current = p.leader_epoch();
        assert_eq!(p.end_offset_for_epoch(current), (current, 4));
        p.shutdown().await;
    }

    /// The high watermark only moves up, and DeleteRecords stays below it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn high_watermark_moves_up_only_and_bounds_delete_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(open_log(dir.path()), ProducerLimits::default()).await;
        for pid in 1..=3 {
            produce(&p, batch(pid, 0)).await.unwrap();
        }
        assert_eq!(p.high_watermark(), 3);
        assert_eq!(p.commit(1).unwrap(), 3);
        assert_eq!(p.high_watermark(), 3);
        assert!(matches!(
            delete_records(&p, 4).await,
            Err(DeleteRecordsError::OutOfRange { offset: 4, .. })
        ));
        assert!(matches!(
            delete_records(&p, -5).await,
            Err(DeleteRecordsError::OutOfRange { .. })
        ));
        assert_eq!(delete_records(&p, 2).await.unwrap(), 2);
        assert_eq!(delete_records(&p, -1).await.unwrap(), 3);
        assert_eq!(
            p.offsets(),
            Offsets {
                log_start: 3,
                high_watermark: 3,
                log_end: 3
            }
        );
        p.shutdown().await;
    }

    /// Rebuilding from the log keeps the bound, keeping the producers that
    /// wrote last.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebuilt_state_keeps_the_bound_and_the_latest_producers() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ProducerLimits {
            expiration_ms: DEFAULT_EXPIRATION,
            max_producers: 3,
        };
        {
            let p = partition(open_log(dir.path()), ProducerLimits::default()).await;
            for pid in 1..=5 {
                produce(&p, batch(pid, 0)).await.unwrap();
            }
            produce(&p, batch(1, 1)).await.unwrap();
            p.shutdown().await;
            p.close().unwrap();
        }
        let p = partition(open_log(dir.path()), limits).await;
        assert_eq!(p.producer_count(), 3);
        // Producers 4, 5 and 1 wrote last: 1 continues; 2 was dropped, so
        // a retry of its first batch is no longer recognised.
        assert!(!produce(&p, batch(1, 2)).await.unwrap().duplicate);
        assert!(!produce(&p, batch(2, 0)).await.unwrap().duplicate);
        p.shutdown().await;
    }
}
