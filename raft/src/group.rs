//! One partition's Raft group: the openraft instance over the partition log,
//! the ordered proposal pipeline, and the view of leadership the partition
//! above it needs.
//!
//! # Proposals and offsets
//! A leader assigns Kafka offsets the way Kafka's leader does: at its own
//! append, from its log end. In a term where this node leads, every data entry
//! its log store appends is one of its own proposals, in the order they were
//! submitted (openraft appends client writes in order, and entries that are not
//! data take no offset). So when the node becomes leader of term `t`, the
//! offsets of its proposals are known in advance: the first starts at the log
//! end at that moment, each next one after the previous. A proposal carries
//! that prediction; [`Proposal::appended`] resolves once the local log end has
//! passed it (acks=1), [`Proposal::quorum_written`] once the commit index has
//! (acks=all), and [`Proposal::committed`] once the entry is committed and
//! applied, with the offsets the state machine saw. A change of
//! term fails every proposal not yet submitted, and openraft fails those
//! submitted, so no prediction outlives its term.
//!
//! # Order
//! [`PartitionGroup::propose`] is synchronous: it puts the proposal in the
//! group's queue under a mutex (never across an `.await`), so proposals made
//! in request order on one connection keep that order. A task per group
//! submits the queue to openraft.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::impls::{BasicNode, ProgressResponder};
use openraft::network::NetSnapshot;
use openraft::network::RaftNetworkFactory;
use openraft::type_config::alias::OneshotReceiverOf;
use openraft::vote::leader_id_std::CommittedLeaderId;
use openraft::{Config, Raft, ServerState};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use weir_storage::{BatchHeader, Log};

use crate::log_store::LogStore;
use crate::no_peers::NoPeers;
use crate::state_machine::{SnapshotData, SnapshotPlan, StateMachine};
use crate::types::{Appended, RecordBatch, TypeConfig};

/// What the partition above a group is told.
pub trait GroupHooks: Send + Sync + std::fmt::Debug + 'static {
    /// A data entry was committed; `batch` is as stored (offsets stamped).
    /// Called in log order, on every replica, from the group's apply task.
    fn committed(&self, batch: &[u8], base_offset: i64, last_offset: i64);
    /// This node's view of the group's leadership changed.
    fn leadership(&self, view: Leadership);
    /// The group's Raft instance stopped on an error (a full disk, a failed
    /// write): it is restarted from disk with a growing delay, and
    /// [`GroupHooks::leadership`] is called again once it runs.
    fn failed(&self, why: &str);
    /// This node still leads, but a proposal of its term was refused (see
    /// [`predictions`]): proposals made since the last reset may be appended
    /// at other offsets than predicted. Called once every proposal submitted
    /// before is appended or refused, before proposals are taken again.
    fn predictions_reset(&self) {}
    /// The partition log was emptied to restart at `offset`: this replica
    /// installed a snapshot its log did not reach (its leader removed the
    /// records before `offset`).
    fn reset(&self, offset: i64) {
        let _ = offset;
    }
}

/// Who leads a group, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    /// The leader's node id, when known.
    pub leader: Option<u64>,
    /// The current term (the Kafka leader epoch).
    pub term: u64,
    /// Whether this node is the leader.
    pub is_leader: bool,
}

/// Timers of the groups of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// Leader heartbeat interval (ms).
    pub heartbeat_ms: u64,
    /// Smallest election timeout (ms).
    pub election_min_ms: u64,
    /// Largest election timeout (ms).
    pub election_max_ms: u64,
    /// Whether openraft's timers run (ticks, heartbeats, elections). A group
    /// whose only voter is this node needs none of them: it elects itself
    /// once when it starts, and a thousand idle partitions then cost no CPU.
    pub timers: bool,
    /// Whether idle replicated groups stop their timers and followers elect
    /// only once their leader stops claiming the group (see [`quiet`];
    /// needs [`PartitionGroup::tend`] called a few times a second).
    pub quiesce: bool,
    /// Whether this replica may have held the group before and lost its
    /// state (a node the cluster knew, or whose directory is new): if its
    /// Raft log is empty when it opens, it rejoins without a vote until a
    /// leader has caught it up (see [`rejoin`]).
    pub lost_state: LostState,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_min_ms: 1000,
            election_max_ms: 1500,
            timers: true,
            quiesce: false,
            lost_state: LostState::Impossible,
        }
    }
}

/// A node's word that it leads a group in a term: nodes tell each other which
/// groups they lead, so that any node can name the leader of a partition it
/// does not host (Metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderNotice {
    /// The group.
    pub group: u64,
    /// Its leader.
    pub leader: u64,
    /// The leader's term.
    pub term: u64,
}

/// Why a proposal failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ProposeError {
    /// This node does not lead the group (or stopped leading it before the
    /// proposal was committed). Retriable: the client finds the new leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, when known.
        leader: Option<u64>,
    },
    /// The group stopped (node shutting down or a fatal storage error).
    #[error("the group stopped: {0}")]
    Stopped(String),
    /// The batch is not a record batch.
    #[error("not a record batch: {0}")]
    BadBatch(String),
    /// The leader a proposal was forwarded to could not be reached.
    /// Retriable.
    #[error("the leader is unreachable: {0}")]
    Unreachable(String),
}

/// Why a group could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The Raft files or the log could not be opened.
    #[error("opening the raft log of {log}: {source}")]
    Store {
        /// The partition log's name.
        log: String,
        /// What failed.
        source: crate::error::RaftStoreError,
    },
    /// openraft refused the configuration or failed to start.
    #[error("starting raft for {log}: {why}")]
    Raft {
        /// The partition log's name.
        log: String,
        /// What openraft said.
        why: String,
    },
}

/// The Kafka offsets a proposal will get (or got).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Offsets {
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
}

type WriteRx = OneshotReceiverOf<TypeConfig, openraft::raft::ClientWriteResult<TypeConfig>>;

/// A proposal in flight.
#[derive(Debug)]
pub struct Proposal {
    /// The offsets predicted at proposal time (see the module docs).
    pub offsets: Offsets,
    term: u64,
    generation: u64,
    /// Taken when it resolves (the outcome is kept in `outcome`).
    rx: Option<WriteRx>,
    outcome: Option<Result<Offsets, ProposeError>>,
    log_end: watch::Receiver<i64>,
    leadership: watch::Receiver<Leadership>,
    shared: Arc<Shared>,
}

impl Proposal {
    /// Resolves once the leader's own log holds the batch (acks=1), or fails
    /// if this node stops leading the term first, or the proposal was refused
    /// (then its prediction may not hold, see [`predictions`]).
    pub async fn appended(&mut self) -> Result<Offsets, ProposeError> {
        let want = self.offsets.last_offset + 1;
        let mut broken = self.shared.predictions.broken();
        loop {
            if let Some(outcome) = &self.outcome {
                return outcome.clone();
            }
            let view = *self.leadership.borrow_and_update();
            if !view.is_leader || view.term != self.term {
                return Err(self.shared.lost());
            }
            // Checked before the log end: a later proposal written where
            // this one was predicted breaks the generation first.
            if *broken.borrow_and_update() >= self.generation {
                return Err(self.shared.lost());
            }
            if *self.log_end.borrow_and_update() >= want {
                return Ok(self.offsets);
            }
            let Some(rx) = self.rx.as_mut() else {
                return Err(stopped());
            };
            tokio::select! {
                r = self.log_end.changed() => r.map_err(|_| stopped())?,
                r = self.leadership.changed() => r.map_err(|_| stopped())?,
                r = broken.changed() => r.map_err(|_| stopped())?,
                done = rx => {
                    self.rx = None;
                    self.outcome = Some(self.shared.outcome(done, self.offsets, (self.term, self.generation)));
                }
            }
        }
    }

    /// Resolves once a quorum holds the batch durably (the commit index
    /// passed it), before it is applied: what acks=all waits for. Answered
    /// from the committed id the log store saves when that entry is of this
    /// proposal's term and the generation of predictions holds: the log up
    /// to a committed entry of term `t` is the log of `t`'s leader, this
    /// node, which holds the batch where it was predicted. Otherwise (a
    /// prediction broken, a later term committed first) it waits for the
    /// apply, as [`Proposal::committed`].
    pub async fn quorum_written(mut self) -> Result<Offsets, ProposeError> {
        let want = self.offsets.last_offset + 1;
        let mut committed = self.shared.predictions.committed();
        let mut broken = self.shared.predictions.broken();
        loop {
            // The committed id first, then the generation: a prediction is
            // broken before any entry it misplaces can be written.
            let (term, end) = *committed.borrow_and_update();
            if self.outcome.is_some() || *broken.borrow_and_update() >= self.generation {
                break;
            }
            if term == self.term && end >= want {
                return Ok(self.offsets);
            }
            if term > self.term {
                break;
            }
            let Some(rx) = self.rx.as_mut() else {
                break;
            };
            tokio::select! {
                r = committed.changed() => if r.is_err() { break },
                r = broken.changed() => if r.is_err() { break },
                done = rx => {
                    self.rx = None;
                    self.outcome = Some(self.shared.outcome(done, self.offsets, (self.term, self.generation)));
                }
            }
        }
        self.committed().await
    }

    /// Resolves once the batch is committed and applied, with its offsets.
    pub async fn committed(mut self) -> Result<Offsets, ProposeError> {
        if let Some(outcome) = self.outcome.take() {
            return outcome;
        }
        let Some(rx) = self.rx.take() else {
            return Err(stopped());
        };
        self.shared
            .outcome(rx.await, self.offsets, (self.term, self.generation))
    }
}

fn stopped() -> ProposeError {
    ProposeError::Stopped("the group was shut down".into())
}

/// Where the next proposal's offsets start while this node leads.
#[derive(Debug)]
struct Lead {
    term: u64,
    next_offset: i64,
    /// Which generation of predictions (see [`predictions`]) this lead makes.
    generation: u64,
}

/// A proposal not yet submitted: its batch, responder, term and generation.
type Waiting = (
    RecordBatch,
    ProgressResponder<TypeConfig, WriteResult>,
    u64,
    u64,
);

#[derive(Default)]
struct Queue {
    lead: Option<Lead>,
    /// Proposals not yet submitted, each with the term it was predicted in.
    waiting: VecDeque<Waiting>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("lead", &self.lead)
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

type WriteResult = openraft::raft::ClientWriteResult<TypeConfig>;
type RaftHandle = Raft<TypeConfig, StateMachine>;

/// Starts the group's Raft instance again from disk (after a fatal error).
type Restart = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<RaftHandle, GroupError>> + Send>,
        > + Send
        + Sync,
>;

#[derive(Debug)]
struct Shared {
    // Replaced when the instance is restarted after a fatal error; cloned out,
    // never held across an `.await`.
    raft: Mutex<RaftHandle>,
    /// Why the instance is down, while it is.
    failed: Mutex<Option<String>>,
    log: Arc<Log>,
    // Held only to push or take proposals; never across an `.await`.
    queue: Mutex<Queue>,
    wake: Notify,
    leadership: watch::Sender<Leadership>,
    /// Checks this node's offset predictions against its appends.
    predictions: Arc<predictions::Predictions>,
    /// The last generation of predictions handed out.
    generation: std::sync::atomic::AtomicU64,
    /// Quiescence, when the group's settings ask for it.
    quiet: Option<quiet::Quiet>,
    /// How long a quorum's acknowledgement lets a leader write (openraft's
    /// leader lease: its largest election timeout).
    lease: std::time::Duration,
    /// Whether this replica is rejoining after it lost its state.
    rejoin: Arc<rejoin::Rejoin>,
    /// This node leads the group on openraft's own timers and turned its
    /// heartbeats off, reaching no quorum of the voters (see
    /// [`PartitionGroup::tend`]).
    fenced: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn raft(&self) -> RaftHandle {
        self.raft.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_failure(&self, why: Option<String>) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// See [`PartitionGroup::propose`].
    fn propose(self: &Arc<Self>, batch: Bytes) -> Result<Proposal, ProposeError> {
        let h = BatchHeader::parse(&batch).map_err(|e| ProposeError::BadBatch(e.to_string()))?;
        let count = i64::from(h.last_offset_delta) + 1;
        let (responder, rx) = ProgressResponder::complete_only();
        let (offsets, term) = {
            let mut q = self.queue();
            let Some(lead) = q.lead.as_mut() else {
                return Err(self.lost());
            };
            if self.predictions.is_broken(lead.generation) {
                return Err(self.lost());
            }
            let offsets = Offsets {
                base_offset: lead.next_offset,
                last_offset: lead.next_offset + count - 1,
            };
            lead.next_offset += count;
            let (term, generation) = (lead.term, lead.generation);
            self.predictions.predict(term, offsets.base_offset, &batch);
            q.waiting
                .push_back((RecordBatch(batch), responder, term, generation));
            (offsets, (term, generation))
        };
        let (term, generation) = term;
        self.wake.notify_one();
        Ok(Proposal {
            offsets,
            term,
            generation,
            rx: Some(rx),
            outcome: None,
            log_end: self.log.subscribe_log_end(),
            leadership: self.leadership.subscribe(),
            shared: Arc::clone(self),
        })
    }

    /// A new lead in `term`: a new generation of predictions starting at the
    /// log end. Called with the queue locked.
    fn arm(&self, term: u64) -> Lead {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.predictions.arm(generation);
        Lead {
            term,
            // Every entry of earlier terms is in the log by now (a leader
            // takes no appends from others), and every proposal submitted
            // before this generation has been appended or refused, so this
            // generation's data entries start here.
            next_offset: self.log.log_end_offset(),
            generation,
        }
    }

    /// What a proposal's responder said, as the proposal's outcome.
    fn outcome(
        &self,
        done: Result<WriteResult, impl std::fmt::Debug>,
        predicted: Offsets,
        made_in: (u64, u64),
    ) -> Result<Offsets, ProposeError> {
        // A dropped responder: the proposal was failed before submission
        // (leadership moved) or the group stopped.
        let Ok(result) = done else {
            return Err(self.lost());
        };
        match result {
            Ok(resp) => {
                let Appended {
                    base_offset,
                    last_offset,
                } = resp.data;
                let got = Offsets {
                    base_offset,
                    last_offset,
                };
                if got != predicted {
                    tracing::debug!(?predicted, applied = ?got, "a proposal committed away from its prediction");
                }
                Ok(got)
            }
            Err(ClientWriteError::ForwardToLeader(f)) => {
                // Refused while this node still leads the term (a lease not
                // granted or lapsed): every later prediction of the
                // generation is off. Break it now rather than at the next
                // append, which may never come (a producer retrying only
                // this batch waits on it).
                let (term, generation) = made_in;
                let view = *self.leadership.borrow();
                if view.is_leader && view.term == term {
                    self.predictions.break_generation(generation);
                }
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(write_error(e)),
        }
    }

    /// The error of a proposal that lost its responder: the instance's
    /// failure when it stopped on one (the supervisor may not have seen it
    /// yet), else leadership moved.
    fn lost(&self) -> ProposeError {
        if let Some(why) = self.failure() {
            return ProposeError::Stopped(why);
        }
        let state = self.raft().metrics().borrow_watched().running_state.clone();
        match state {
            Err(e) if !matches!(e, openraft::error::Fatal::Stopped) => {
                ProposeError::Stopped(e.to_string())
            }
            _ => ProposeError::NotLeader {
                leader: self.leadership.borrow().leader,
            },
        }
    }
}

/// A refused or undecided write as a proposal's error. An entry discarded
/// because another leader's log replaced it may still commit through that
/// leader: as Kafka answers a produce whose leader changed while it waited
/// for its replicas, NOT_LEADER (retriable; an idempotent producer's retry
/// is recognised), never a stopped group (found from outside: a
/// CreateTopics during a controller change got KAFKA_STORAGE_ERROR with
/// openraft's text, which the Java AdminClient does not retry).
fn write_error(e: ClientWriteError<TypeConfig>) -> ProposeError {
    match e {
        ClientWriteError::ForwardToLeader(f) | ClientWriteError::LogEntryDiscarded(f) => {
            ProposeError::NotLeader {
                leader: f.leader_id,
            }
        }
        other => ProposeError::Stopped(other.to_string()),
    }
}

/// One partition's Raft group on this node.
#[derive(Debug)]
pub struct PartitionGroup {
    group_id: u64,
    shared: Arc<Shared>,
    /// The transport the group is served by, when it has peers.
    transport: Option<crate::transport::Attachment>,
    // Taken once by `stop`; never held across an `.await`.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn raft_config(s: &GroupSettings) -> Result<Arc<Config>, String> {
    let c = Config {
        cluster_name: "weir".into(),
        heartbeat_interval: s.heartbeat_ms,
        election_timeout_min: s.election_min_ms,
        election_timeout_max: s.election_max_ms,
        // Entries are purged only where retention moved the log start (the
        // log store's purge forgets Raft entries, never Kafka data).
        max_in_snapshot_log_to_keep: u64::MAX,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        enable_tick: s.timers,
        enable_heartbeat: s.timers,
        // With quiescence, elections are started by `quiet::Quiet::tend`
        // (the preferred leader of a new group first).
        enable_elect: s.timers && !s.quiesce,
        // A node that was cut off asks first whether it could win, so it does
        // not come back with a higher term and depose a healthy leader.
        enable_pre_vote: Some(true),
        // A follower whose log went back (its data directory lost and the
        // node started again empty) is caught up from the leader's log, as
        // a Kafka replica with a new disk is, instead of a panic of the
        // leader's Raft core that stops the group (found from outside:
        // acks=all hung with two healthy nodes). What this gives up is in
        // docs/cluster.md, "A node that lost its disk".
        allow_log_reversion: Some(true),
        ..Config::default()
    };
    c.validate().map(Arc::new).map_err(|e| e.to_string())
}

/// Opens the Raft files of `log` (reconciling them with the partition log, on
/// the blocking pool) and starts a Raft instance over them; a group with no
/// Raft state yet is initialized with `voters`.
#[allow(clippy::too_many_arguments)]
async fn start_raft<N>(
    node_id: u64,
    log: Arc<Log>,
    predictions: Arc<predictions::Predictions>,
    voters: BTreeMap<u64, String>,
    preferred: Option<u64>,
    hooks: Arc<dyn GroupHooks>,
    (network, remote): (N, Option<crate::transport::RemoteLog>),
    settings: GroupSettings,
    rejoin: Arc<rejoin::Rejoin>,
) -> Result<RaftHandle, GroupError>
where
    N: RaftNetworkFactory<TypeConfig>,
    N::Network: NetSnapshot<TypeConfig, SnapshotData = SnapshotData>,
{
    let name = log.name().to_string();
    let raft_err = |why: String| GroupError::Raft {
        log: name.clone(),
        why,
    };
    let store_log = Arc::clone(&log);
    let existing = if voters.len() > 1 {
        crate::offset_translator::Existing::Drop
    } else {
        crate::offset_translator::Existing::Adopt
    };
    let mut store = tokio::task::spawn_blocking(move || LogStore::open_as(store_log, existing))
        .await
        .map_err(|e| raft_err(e.to_string()))?
        .map_err(|source| GroupError::Store {
            log: name.clone(),
            source,
        })?;
    store.check_predictions(predictions);
    if settings.lost_state != LostState::Impossible && voters.len() > 1 && !rejoin.is_active() {
        let state = openraft::storage::RaftLogStorage::get_log_state(&mut store)
            .await
            .map_err(|e| raft_err(e.to_string()))?;
        if state.last_log_id.is_none() {
            rejoin.begin().map_err(|source| GroupError::Store {
                log: name.clone(),
                source,
            })?;
        }
    }
    let config = raft_config(&settings).map_err(raft_err)?;
    let reader = openraft::storage::RaftLogStorage::get_log_reader(&mut store).await;
    let sm = StateMachine::with_hooks(hooks, store.first_offset(), log.dir().to_path_buf(), reader)
        .with_remote(remote);
    let raft = Raft::new(node_id, config, network, store, sm)
        .await
        .map_err(|e| raft_err(e.to_string()))?;
    if rejoin.holds_back() {
        raft.runtime_config().elect(false);
    }
    if !raft
        .is_initialized()
        .await
        .map_err(|e| raft_err(e.to_string()))?
    {
        let members: BTreeMap<u64, BasicNode> = voters
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match raft.initialize(members).await {
            Ok(()) if settings.timers && preferred == Some(node_id) && !rejoin.holds_back() => {
                // A new group: its preferred leader campaigns at once
                // instead of waiting out an election timeout (its peers may
                // not have created the group yet; then the timers elect).
                if let Err(e) = raft.trigger().elect(false).await {
                    tracing::debug!(error = %e, "first election");
                }
            }
            Ok(()) | Err(RaftError::APIError(_)) => {}
            Err(e) => return Err(raft_err(e.to_string())),
        }
    }
    if !settings.timers {
        // No election timer runs. A lone voter elects itself when it is
        // initialized and resumes leading from its stored vote on a restart;
        // if neither happened shortly, it campaigns once (and wins).
        let mut m = raft.server_metrics();
        let led = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            while m.borrow_watched().state != ServerState::Leader {
                if m.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if led.is_err() {
            raft.trigger()
                .elect(false)
                .await
                .map_err(|e| raft_err(e.to_string()))?;
        }
    }
    Ok(raft)
}

impl PartitionGroup {
    /// Opens the group `group_id` over `log` on node `node_id`: the Raft log
    /// files are reconciled with the partition log (blocking I/O), the Raft
    /// instance starts, and a group with no Raft state yet is initialized with
    /// `voters` (every replica calls this with the same voters, which openraft
    /// accepts). `hooks` hear of commits and leadership. The network comes
    /// with a reader of peers' partition logs (none without peers).
    pub(crate) async fn open<N>(
        node_id: u64,
        group_id: u64,
        log: Arc<Log>,
        voters: &[(u64, String)],
        hooks: Arc<dyn GroupHooks>,
        (network, remote): (N, Option<crate::transport::RemoteLog>),
        settings: GroupSettings,
    ) -> Result<Self, GroupError>
    where
        N: RaftNetworkFactory<TypeConfig> + Clone + Send + Sync,
        N::Network: NetSnapshot<TypeConfig, SnapshotData = SnapshotData>,
    {
        let predictions = Arc::new(predictions::Predictions::default());
        let preferred = voters.first().map(|(id, _)| *id);
        let preference: Vec<u64> = voters.iter().map(|(id, _)| *id).collect();
        let voters: BTreeMap<u64, String> = voters.iter().cloned().collect();
        let rejoin = Arc::new(rejoin::Rejoin::open(
            log.dir(),
            settings.timers && !settings.quiesce,
            settings.lost_state,
        ));
        let restart: Restart = {
            let (log, hooks, predictions, rejoin) = (
                Arc::clone(&log),
                Arc::clone(&hooks),
                Arc::clone(&predictions),
                Arc::clone(&rejoin),
            );
            Arc::new(move || {
                let (log, hooks, voters, network, predictions, remote, rejoin) = (
                    Arc::clone(&log),
                    Arc::clone(&hooks),
                    voters.clone(),
                    network.clone(),
                    Arc::clone(&predictions),
                    remote.clone(),
                    Arc::clone(&rejoin),
                );
                Box::pin(start_raft(
                    node_id,
                    log,
                    predictions,
                    voters,
                    preferred,
                    hooks,
                    (network, remote),
                    settings,
                    rejoin,
                ))
            })
        };
        let raft = restart().await?;
        let shared = Arc::new(Shared {
            raft: Mutex::new(raft),
            failed: Mutex::new(None),
            log,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            leadership: watch::Sender::new(Leadership::default()),
            predictions,
            generation: std::sync::atomic::AtomicU64::new(0),
            quiet: (settings.quiesce && settings.timers).then(|| quiet::Quiet::new(preference)),
            lease: std::time::Duration::from_millis(settings.election_max_ms),
            rejoin,
            fenced: std::sync::atomic::AtomicBool::new(false),
        });
        let tasks = vec![
            tokio::spawn(submit_loop(Arc::clone(&shared))),
            tokio::spawn(rearm_loop(Arc::clone(&shared), Arc::clone(&hooks))),
            tokio::spawn(supervise(Arc::clone(&shared), hooks, restart)),
        ];
        Ok(Self {
            group_id,
            shared,
            transport: None,
            tasks: Mutex::new(tasks),
        })
    }

    /// Opens the group `group_id` over `log` with replicas on the nodes of
    /// `voters` (node id, raft address — empty: the transport's configured
    /// address — the preferred leader first), served by `transport`: peers'
    /// RPCs for the group reach its current Raft instance (also after a
    /// restart by the supervisor), and followers can forward proposals to it.
    /// A new group's preferred leader campaigns at once.
    pub async fn open_replicated(
        node_id: u64,
        group_id: u64,
        log: Arc<Log>,
        voters: &[(u64, String)],
        hooks: Arc<dyn GroupHooks>,
        transport: &crate::Transport,
        settings: GroupSettings,
    ) -> Result<Self, GroupError> {
        let network = transport.network(group_id);
        let remote = Some(transport.remote_log(group_id));
        let mut group = Self::open(
            node_id,
            group_id,
            log,
            voters,
            hooks,
            (network, remote),
            settings,
        )
        .await?;
        let served: Arc<dyn crate::transport::GroupHandler> =
            Arc::new(Served(Arc::clone(&group.shared)));
        group.transport = Some(transport.attach(group_id, served));
        Ok(group)
    }

    /// Proposes `batch` where the group's leader is: here when this node
    /// leads, else forwarded to the leader over the transport. Waits for a
    /// leader to be known and retries a proposal refused because leadership
    /// moved, until `timeout`; answers once the batch is committed.
    pub async fn propose_anywhere(
        &self,
        batch: Bytes,
        timeout: std::time::Duration,
    ) -> Result<Offsets, ProposeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut leadership = self.leadership();
        loop {
            let view = *leadership.borrow_and_update();
            let attempt = if view.is_leader {
                match self.propose(batch.clone()) {
                    Ok(p) => p.committed().await,
                    Err(e) => Err(e),
                }
            } else if let (Some(leader), Some(t)) = (view.leader, &self.transport) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                t.forward(leader, self.group_id, batch.clone(), left).await
            } else {
                Err(ProposeError::NotLeader { leader: None })
            };
            match attempt {
                Ok(o) => return Ok(o),
                Err(ProposeError::NotLeader { .. } | ProposeError::Unreachable(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    // Wait for news of leadership, or retry shortly.
                    let _ = tokio::time::timeout_at(
                        deadline.min(
                            tokio::time::Instant::now() + std::time::Duration::from_millis(100),
                        ),
                        leadership.changed(),
                    )
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the group of a partition whose only replica is this node (a node
    /// without peers): the same Raft path as a cluster, with one voter.
    pub async fn open_local(
        node_id: u64,
        group_id: u64,
        log: Arc<Log>,
        hooks: Arc<dyn GroupHooks>,
        settings: GroupSettings,
    ) -> Result<Self, GroupError> {
        let voters = [(node_id, String::new())];
        let settings = GroupSettings {
            timers: false,
            ..settings
        };
        Self::open(
            node_id,
            group_id,
            log,
            &voters,
            hooks,
            (NoPeers, None),
            settings,
        )
        .await
    }

    /// The group's id.
    pub fn group_id(&self) -> u64 {
        self.group_id
    }

    /// A receiver of this node's view of the group's leadership.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.shared.leadership.subscribe()
    }

    /// Queues `batch` (one RecordBatch v2, final as the leader prepared it) for
    /// replication, in call order. Fails at once when this node does not lead.
    pub fn propose(&self, batch: Bytes) -> Result<Proposal, ProposeError> {
        self.shared.propose(batch)
    }

    /// Takes a snapshot (metadata, see [`crate::state_machine`]) at the last
    /// applied entry and purges the Raft entries it covers: the Raft log
    /// forgets them, the partition log keeps every byte. Call it before
    /// anything removes or rewrites data of the partition log (retention,
    /// DeleteRecords, compaction): the Raft log must never point at batches
    /// that are gone, or a restart could not re-read it. Waits up to 5 s;
    /// returns whether every applied entry is now purged.
    pub async fn release_applied(&self) -> bool {
        let raft = self.shared.raft();
        let Some(applied) = raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map(|l| l.index)
        else {
            return true;
        };
        self.snapshot_and_purge(raft, applied).await
    }

    /// Lets the partition log start at Kafka offset `offset` (at or below the
    /// high watermark): a snapshot ends just before the batch holding it and
    /// the Raft entries up to there are purged, so retention or DeleteRecords
    /// may then remove the records before `offset`. A follower behind that
    /// point installs the snapshot and restarts its log at that batch (see
    /// [`GroupHooks::reset`]); every record from `offset` on
    /// still reaches it as Raft entries: the log is the snapshot. Waits up to
    /// 5 s; returns whether the Raft log no longer holds anything before
    /// `offset` (also when it never did).
    pub async fn release_below(&self, offset: i64) -> bool {
        let raft = self.shared.raft();
        let plan = raft
            .with_state_machine(move |sm| {
                Box::pin(async move { sm.plan_snapshot_at(offset).await })
            })
            .await;
        match plan
            .map_err(|e| e.to_string())
            .and_then(|p| p.map_err(|e| e.to_string()))
        {
            Ok(SnapshotPlan::At(last)) => self.snapshot_and_purge(raft, last.index).await,
            Ok(SnapshotPlan::Covered) => true,
            Ok(SnapshotPlan::NotYet) => false,
            Err(e) => {
                tracing::warn!(log = self.shared.log.name(), error = %e, "snapshot boundary");
                false
            }
        }
    }

    /// Takes a snapshot (at the planned boundary, or the last applied entry)
    /// unless one covers `upto` already, then purges the Raft log up to it.
    async fn snapshot_and_purge(&self, raft: RaftHandle, upto: u64) -> bool {
        let mut metrics = raft.metrics();
        let (snapshot, purged) = {
            let m = metrics.borrow_watched();
            (m.snapshot, m.purged)
        };
        let done = |l: Option<crate::types::LogId>| l.is_some_and(|l| l.index >= upto);
        if done(purged) {
            return true;
        }
        let deadline = std::time::Duration::from_secs(5);
        let wait = async {
            if !done(snapshot) {
                raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
                while !done(metrics.borrow_watched().snapshot) {
                    metrics.changed().await.map_err(|e| e.to_string())?;
                }
            }
            raft.trigger()
                .purge_log(upto)
                .await
                .map_err(|e| e.to_string())?;
            while !done(metrics.borrow_watched().purged) {
                metrics.changed().await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(log = self.shared.log.name(), error = %e, "raft log purge failed");
                false
            }
            Err(_) => {
                tracing::warn!(log = self.shared.log.name(), "raft log purge took over 5 s");
                false
            }
        }
    }

    /// Quiescence step (see [`quiet`]); call it a few times a second with
    /// the freshest claim heard for this group (leader node, term) and the
    /// nodes this one cannot reach now. Does nothing unless the group's
    /// settings ask for quiescence.
    pub async fn tend(&self, claim: Option<(u64, u64)>, down: &[u64]) {
        if self.shared.rejoin.holds_back() {
            // It campaigns only once caught up (see [`rejoin`]).
            self.shared.raft().runtime_config().elect(false);
            return;
        }
        let Some(q) = &self.shared.quiet else {
            self.fence(down);
            return;
        };
        q.tend(&self.shared.raft(), claim, down).await;
    }

    /// For a group on openraft's own timers (the controller): a leader
    /// that reaches no quorum of the voters (`down`: the nodes this one
    /// cannot reach; it may still send to them, a one-way partition)
    /// commits nothing, and openraft has no step-down for it, while its
    /// heartbeats keep renewing the followers' leases, so that none of them
    /// could win an election (found from outside: a deaf controller was
    /// never replaced and no topic could be created for the whole cut). It
    /// turns its heartbeats off until it reaches a quorum again; the
    /// others elect once their lease of it lapsed.
    fn fence(&self, down: &[u64]) {
        use std::sync::atomic::Ordering;
        let raft = self.shared.raft();
        let m = raft.metrics().borrow_watched().clone();
        let cut = m.state == openraft::ServerState::Leader && quiet::reaches_no_quorum(&m, down);
        if self.shared.fenced.swap(cut, Ordering::SeqCst) != cut {
            tracing::info!(
                group = self.group_id,
                term = m.current_term,
                cut_off = cut,
                "a leader's reach of a quorum of its voters changed"
            );
            raft.runtime_config().heartbeat(!cut);
        }
    }

    /// Whether this node leads the group and quiesced it (see [`quiet`]).
    pub fn is_quiesced(&self) -> bool {
        self.shared.quiet.as_ref().is_some_and(|q| q.is_quiesced())
    }

    /// Whether this replica leads the group with a quorum's confirmation
    /// now: Raft's ReadIndex (a heartbeat round a quorum acknowledges, then
    /// the state applied up to the commit index), within `within`. A read
    /// answered after it is no older than a write any leader acknowledged
    /// before it; a former leader cut off, or deposed without knowing yet,
    /// gets `false`.
    pub async fn confirm_leadership(&self, within: std::time::Duration) -> bool {
        let raft = self.shared.raft();
        let confirmed = tokio::time::timeout(
            within,
            raft.ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex),
        )
        .await;
        matches!(confirmed, Ok(Ok(_)))
    }

    /// Leader, term and Raft positions, for status pages and metrics.
    pub fn status(&self) -> GroupStatus {
        let m = self.shared.raft().metrics().borrow_watched().clone();
        GroupStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            quiesced: self.is_quiesced(),
            rejoining: self.shared.rejoin.is_active(),
            matched: m
                .replication
                .iter()
                .flatten()
                .filter(|(node, _)| **node != m.id)
                .map(|(node, l)| (*node, l.as_ref().map(|l| l.index)))
                .collect(),
        }
    }

    /// Stops the group's tasks and its Raft instance; later proposals fail as
    /// not leader. Idempotent.
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        if tasks.is_empty() {
            return;
        }
        for t in tasks {
            t.abort();
        }
        if let Some(t) = &self.transport {
            t.detach(self.group_id);
        }
        self.shared.queue().lead = None;
        fail_waiting(&self.shared);
        if let Err(e) = self.shared.raft().shutdown().await {
            tracing::warn!(group = self.group_id, error = %e, "raft shutdown");
        }
        self.shared.leadership.send_replace(Leadership::default());
    }

    /// [`PartitionGroup::stop`], consuming the group.
    pub async fn shutdown(self) {
        self.stop().await;
    }
}

/// Serves a group's incoming RPCs with its current Raft instance (replaced
/// when the supervisor restarts it) and runs proposals forwarded to it.
struct Served(Arc<Shared>);

impl Served {
    /// The refusal of a (pre-)vote this replica does not let openraft
    /// decide: it is rejoining (see [`rejoin`]), or it knows a live leader
    /// other than the candidate (see [`quiet::Quiet::refuses`]).
    ///
    /// A refusal carries this replica's own vote, never the candidate's: a
    /// candidate takes a higher vote it sees in an answer as its own, so
    /// echoing its vote back moved its term up at each refused pre-vote,
    /// and its next answer to the leader deposed it.
    fn refusal(
        &self,
        req: &openraft::raft::VoteRequest<TypeConfig>,
    ) -> Option<openraft::raft::VoteResponse<TypeConfig>> {
        let candidate = req.vote.leader_id().voted_for;
        let refuses = self.0.rejoin.refusal(req).is_some()
            || self.0.quiet.as_ref().is_some_and(|q| q.refuses(candidate));
        refuses.then(|| openraft::raft::VoteResponse {
            vote: self.0.raft().metrics().borrow_watched().vote,
            vote_granted: false,
            last_log_id: None,
        })
    }
}

impl crate::transport::GroupHandler for Served {
    fn append_stream(
        &self,
        input: futures_util::stream::BoxStream<
            'static,
            openraft::raft::AppendEntriesRequest<TypeConfig>,
        >,
    ) -> futures_util::stream::BoxStream<
        'static,
        Result<openraft::raft::StreamAppendResult<TypeConfig>, crate::transport::HandlerError>,
    > {
        use futures_util::StreamExt;
        let shared = Arc::clone(&self.0);
        if !shared.rejoin.is_active() {
            return crate::transport::GroupHandler::append_stream(&shared.raft(), input);
        }
        // Rejoining: each append tells how far the leader committed, and
        // the answers how far this log matches the leader's.
        let heard = Arc::clone(&shared.rejoin);
        let input = input
            .map(move |req| {
                heard.heard(req.leader_commit.as_ref().map(|l| l.index));
                req
            })
            .boxed();
        crate::transport::GroupHandler::append_stream(&shared.raft(), input)
            .map(move |res| {
                if let Ok(Ok(matched)) = &res {
                    let rejoin = &shared.rejoin;
                    if rejoin.caught_up(matched.as_ref().map(|l| l.index)) && rejoin.elects() {
                        shared.raft().runtime_config().elect(true);
                    }
                }
                res
            })
            .boxed()
    }

    fn vote(
        &self,
        req: openraft::raft::VoteRequest<TypeConfig>,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<openraft::raft::VoteResponse<TypeConfig>, crate::transport::HandlerError>,
    > {
        if let Some(refused) = self.refusal(&req) {
            return Box::pin(async move { Ok(refused) });
        }
        crate::transport::GroupHandler::vote(&self.0.raft(), req)
    }

    fn pre_vote(
        &self,
        req: openraft::raft::VoteRequest<TypeConfig>,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<openraft::raft::VoteResponse<TypeConfig>, crate::transport::HandlerError>,
    > {
        if let Some(refused) = self.refusal(&req) {
            return Box::pin(async move { Ok(refused) });
        }
        crate::transport::GroupHandler::pre_vote(&self.0.raft(), req)
    }

    fn install_snapshot(
        &self,
        vote: crate::types::Vote,
        snapshot: crate::transport::Snapshot,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<openraft::raft::SnapshotResponse<TypeConfig>, crate::transport::HandlerError>,
    > {
        // The state machine learns who sent the snapshot: that leader serves
        // the records a compacted partition keeps below it.
        let mut snapshot = snapshot;
        snapshot.snapshot =
            crate::state_machine::with_source(snapshot.snapshot, vote.leader_id().voted_for);
        crate::transport::GroupHandler::install_snapshot(&self.0.raft(), vote, snapshot)
    }

    fn transfer_leader(
        &self,
        req: openraft::raft::TransferLeaderRequest<TypeConfig>,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<openraft::raft::TransferLeaderResponse<TypeConfig>, crate::transport::HandlerError>,
    > {
        if self.0.rejoin.holds_back() {
            return Box::pin(async {
                Err(crate::transport::HandlerError(
                    "this replica is catching up after it lost its state: it takes no leadership"
                        .into(),
                ))
            });
        }
        crate::transport::GroupHandler::transfer_leader(&self.0.raft(), req)
    }

    fn propose(
        &self,
        batch: Bytes,
    ) -> futures_util::future::BoxFuture<'static, Result<Offsets, ProposeError>> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move { shared.propose(batch)?.committed().await })
    }

    /// Committed batches of the partition log from `from` (or the log
    /// start) that begin below `upto`.
    fn read_log(
        &self,
        req: crate::transport::ReadLogRequest,
    ) -> Result<crate::transport::LogChunk, String> {
        let log = &self.0.log;
        let log_start = log.log_start_offset();
        let from = req.from.max(log_start);
        let mut chunk = crate::transport::LogChunk {
            log_start,
            next: req.upto,
            bytes: Vec::new(),
        };
        if from >= req.upto {
            return Ok(chunk);
        }
        let read = log
            .read(
                from,
                req.max_bytes as usize,
                weir_storage::ReadBound::HighWatermark,
            )
            .map_err(|e| e.to_string())?;
        let (mut end, mut after_last) = (0, None);
        while end < read.records.len() {
            let h = BatchHeader::parse(&read.records[end..]).map_err(|e| e.to_string())?;
            if h.base_offset >= req.upto {
                break;
            }
            end += h.size();
            after_last = Some(h.next_offset());
        }
        chunk.bytes = read.records[..end].to_vec();
        // More may follow below `upto` only when the read was cut by its byte
        // budget: then the caller asks again from after the last batch.
        chunk.next = after_last
            .filter(|n| end == read.records.len() && *n < req.upto)
            .unwrap_or(req.upto);
        Ok(chunk)
    }
}

/// A group's Raft positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The leader, when known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// Index of the last entry in this node's Raft log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry known committed.
    pub committed_index: Option<u64>,
    /// Index of the last entry applied.
    pub applied_index: Option<u64>,
    /// Whether this node leads the group and quiesced it (see [`quiet`]).
    pub quiesced: bool,
    /// Whether this replica is rejoining after it lost its state: it votes
    /// once a leader has caught it up (see [`rejoin`]).
    pub rejoining: bool,
    /// On the leader: each follower's last Raft index known to match the
    /// leader's log (`None` until it first answered). Empty elsewhere.
    pub matched: std::collections::BTreeMap<u64, Option<u64>>,
}

impl GroupStatus {
    /// On the leader: how many Raft entries each follower is behind its
    /// log (`None` for a follower that has not answered yet).
    pub fn lags(&self) -> impl Iterator<Item = (u64, Option<u64>)> + '_ {
        let last = self.last_log_index.unwrap_or(0);
        self.matched
            .iter()
            .map(move |(node, m)| (*node, m.map(|m| last.saturating_sub(m))))
    }
}

/// Fails every proposal not yet submitted: their predictions belong to a term
/// this node no longer leads (or the group stopped). Dropping a responder makes
/// its proposal fail with [`ProposeError::NotLeader`]; callers retry.
fn fail_waiting(shared: &Shared) {
    let waiting = std::mem::take(&mut shared.queue().waiting);
    if !waiting.is_empty() {
        tracing::debug!(count = waiting.len(), "failing queued proposals");
    }
}

/// Submits queued proposals to openraft, in queue order.
async fn submit_loop(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        loop {
            let batch: Vec<_> = shared.queue().waiting.drain(..).collect();
            if batch.is_empty() {
                break;
            }
            let raft = shared.raft();
            if let Some(q) = &shared.quiet {
                q.before_submit(&raft).await;
            }
            if !lease_granted(&raft, shared.lease).await {
                // openraft would refuse these, and could take later ones
                // once a quorum answers: a batch written without the one
                // before it. The generation breaks instead (every later
                // proposal of it fails too; the producers retry in order).
                if let Some(generation) = batch.iter().map(|w| w.3).max() {
                    tracing::debug!(
                        log = shared.log.name(),
                        count = batch.len(),
                        "no quorum acknowledged this leader within its lease; proposals failed"
                    );
                    shared.predictions.break_generation(generation);
                }
                continue;
            }
            for (entry, responder, term, generation) in batch {
                if shared.predictions.is_broken(generation) {
                    // Its prediction cannot hold: fail it (dropped responder).
                    continue;
                }
                // Appended only in the term its offsets were predicted in:
                // openraft refuses it (ForwardToLeader) in any other term.
                // A stopped instance drops the responder: the proposal fails
                // (the supervisor restarts the instance).
                let write = raft
                    .write(entry)
                    .with_leader(CommittedLeaderId::new(term))
                    .responder(responder);
                if let Err(e) = write.await {
                    tracing::debug!(error = %e, "raft stopped; proposal failed");
                }
            }
        }
    }
}

/// Whether openraft takes writes from this node as leader now: it refuses
/// them (ForwardToLeader) until a quorum acknowledged the leader in its
/// term and once `lease` passed without an acknowledgement. Held when one
/// came within the first half of the lease (a healthy leader's heartbeats
/// keep it there), or when this node is not a leader of several voters
/// (openraft answers those writes itself, all alike); otherwise a heartbeat
/// is sent and its acknowledgement awaited, at most `lease`.
async fn lease_granted(raft: &RaftHandle, lease: std::time::Duration) -> bool {
    use openraft::type_config::TypeConfigExt;
    let now = TypeConfig::now();
    {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader
            || m.membership_config.membership().voter_ids().count() <= 1
            || m.last_quorum_acked
                .as_ref()
                .is_some_and(|t| now < **t + lease / 2)
        {
            return true;
        }
    }
    heartbeat_acked(raft, lease).await
}

/// Sends a heartbeat and waits, at most `wait`, until a quorum has
/// acknowledged it; whether one did.
async fn heartbeat_acked(raft: &RaftHandle, wait: std::time::Duration) -> bool {
    use openraft::type_config::TypeConfigExt;
    let asked = TypeConfig::now();
    if raft.trigger().heartbeat().await.is_err() {
        return false;
    }
    let mut metrics = raft.metrics();
    let acked = async {
        loop {
            let fresh = metrics
                .borrow_watched()
                .last_quorum_acked
                .as_ref()
                .is_some_and(|t| **t >= asked);
            if fresh {
                return true;
            }
            if metrics.changed().await.is_err() {
                return false;
            }
        }
    };
    tokio::time::timeout(wait, acked).await.unwrap_or(false)
}

/// Re-arms predictions after a generation breaks (see [`predictions`]):
/// stops taking proposals, fails those not submitted, waits until every
/// proposal openraft has taken is written (or was refused), rebuilds the
/// partition's view ([`GroupHooks::predictions_reset`]) and starts a new
/// generation at the exact log end if this node still leads the term.
async fn rearm_loop(shared: Arc<Shared>, hooks: Arc<dyn GroupHooks>) {
    let mut broken = shared.predictions.broken();
    while broken.changed().await.is_ok() {
        let generation = *broken.borrow_and_update();
        let term = {
            let mut q = shared.queue();
            match &q.lead {
                Some(l) if l.generation <= generation => {
                    let term = l.term;
                    q.lead = None;
                    term
                }
                _ => continue,
            }
        };
        fail_waiting(&shared);
        // openraft has handled every write sent before this request once it
        // runs; the last log id then covers each one it took.
        let raft = shared.raft();
        let Ok(last) = raft
            .with_raft_state(|st| st.log_ids.last().map(|l| l.index))
            .await
        else {
            continue;
        };
        if let Some(last) = last {
            // Bounded: the written index may lag after a truncation; then
            // the log end is taken as it is after the wait (a later
            // mismatch breaks the generation again).
            let wait = shared.predictions.wait_written(last);
            if tokio::time::timeout(std::time::Duration::from_secs(2), wait)
                .await
                .is_err()
            {
                tracing::warn!(
                    log = shared.log.name(),
                    index = last,
                    "appends not reported written within 2 s; re-arming anyway"
                );
            }
        }
        hooks.predictions_reset();
        let view = *shared.leadership.borrow();
        let mut q = shared.queue();
        if view.is_leader && view.term == term && q.lead.is_none() {
            q.lead = Some(shared.arm(term));
        }
    }
}

/// Runs the group: follows its leadership ([`follow`]) and, when the Raft
/// instance stops on an error, reports it and starts a new one from disk with
/// a growing delay (a full disk makes every write fail; once space returns
/// the group serves again by itself).
async fn supervise(shared: Arc<Shared>, hooks: Arc<dyn GroupHooks>, restart: Restart) {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        follow(&shared, &hooks).await;
        let raft = shared.raft();
        let state = raft.metrics().borrow_watched().running_state.clone();
        let why = match state {
            Err(openraft::error::Fatal::Stopped) | Ok(()) => return,
            Err(e) => e.to_string(),
        };
        tracing::error!(log = shared.log.name(), error = %why, "raft stopped; restarting it");
        shared.set_failure(Some(why.clone()));
        let down = Leadership::default();
        set_lead(&shared, down);
        hooks.failed(&why);
        shared.leadership.send_replace(down);
        let _ = raft.shutdown().await;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
            match restart().await {
                Ok(raft) => {
                    *shared.raft.lock().unwrap_or_else(|p| p.into_inner()) = raft;
                    shared.set_failure(None);
                    delay = std::time::Duration::from_millis(200);
                    break;
                }
                Err(e) => {
                    tracing::warn!(log = shared.log.name(), error = %e, "raft restart failed")
                }
            }
        }
    }
}

/// Follows openraft's server metrics until the instance stops: keeps the
/// proposal queue's lead in step with this node's leadership and tells the
/// hooks of every change.
async fn follow(shared: &Shared, hooks: &Arc<dyn GroupHooks>) {
    let mut metrics = shared.raft().server_metrics();
    loop {
        let view = {
            let m = metrics.borrow_and_update();
            Leadership {
                leader: m.current_leader,
                term: m.vote.leader_id().term,
                is_leader: m.state == ServerState::Leader,
            }
        };
        if view != *shared.leadership.borrow() {
            if view.is_leader {
                // Elected: its log holds everything committed (see
                // [`rejoin`]), so a rejoining replica is done.
                shared.rejoin.elected();
            }
            // Queue first (proposals get offsets), then the partition (takes
            // requests), then the watch: whoever waits on the watch finds the
            // partition ready.
            set_lead(shared, view);
            hooks.leadership(view);
            shared.leadership.send_replace(view);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

fn set_lead(shared: &Shared, view: Leadership) {
    let lost = {
        let mut q = shared.queue();
        let same = q
            .lead
            .as_ref()
            .is_some_and(|l| view.is_leader && l.term == view.term);
        if same {
            return;
        }
        q.lead = view.is_leader.then(|| shared.arm(view.term));
        !view.is_leader
    };
    if lost {
        fail_waiting(shared);
    }
}

pub(crate) mod predictions;
mod quiet;
mod rejoin;
pub use rejoin::LostState;
#[cfg(test)]
mod tests;
