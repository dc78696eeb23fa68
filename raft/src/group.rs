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
//! passed it (acks=1) and [`Proposal::committed`] once the entry is committed
//! and applied, with the offsets the state machine saw (acks=all). A change of
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
use openraft::{Config, Raft, ServerState};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use weir_storage::{BatchHeader, Log};

use crate::log_store::LogStore;
use crate::state_machine::{SnapshotData, StateMachine};
use crate::types::{Appended, RecordBatch, TypeConfig};

/// What the partition above a group is told.
pub trait GroupHooks: Send + Sync + std::fmt::Debug + 'static {
    /// A data entry was committed; `batch` is as stored (offsets stamped).
    /// Called in log order, on every replica, from the group's apply task.
    fn committed(&self, batch: &[u8], base_offset: i64, last_offset: i64);
    /// This node's view of the group's leadership changed.
    fn leadership(&self, view: Leadership);
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
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_min_ms: 1000,
            election_max_ms: 1500,
        }
    }
}

/// Why a proposal failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    rx: WriteRx,
    log_end: watch::Receiver<i64>,
    leadership: watch::Receiver<Leadership>,
}

impl Proposal {
    /// Resolves once the leader's own log holds the batch (acks=1), or fails
    /// if this node stops leading the term first.
    pub async fn appended(&mut self) -> Result<Offsets, ProposeError> {
        let want = self.offsets.last_offset + 1;
        loop {
            let view = *self.leadership.borrow_and_update();
            if !view.is_leader || view.term != self.term {
                return Err(ProposeError::NotLeader {
                    leader: view.leader,
                });
            }
            if *self.log_end.borrow_and_update() >= want {
                return Ok(self.offsets);
            }
            tokio::select! {
                r = self.log_end.changed() => r.map_err(|_| stopped())?,
                r = self.leadership.changed() => r.map_err(|_| stopped())?,
            }
        }
    }

    /// Resolves once the batch is committed and applied, with its offsets.
    pub async fn committed(self) -> Result<Offsets, ProposeError> {
        // A dropped responder: the proposal was failed before submission
        // (leadership moved) or the group stopped.
        let Ok(result) = self.rx.await else {
            return Err(ProposeError::NotLeader {
                leader: self.leadership.borrow().leader,
            });
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
                if got != self.offsets {
                    tracing::error!(predicted = ?self.offsets, applied = ?got, "offset prediction missed");
                }
                Ok(got)
            }
            Err(ClientWriteError::ForwardToLeader(f)) => Err(ProposeError::NotLeader {
                leader: f.leader_id,
            }),
            Err(e) => Err(ProposeError::Stopped(e.to_string())),
        }
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
}

#[derive(Default)]
struct Queue {
    lead: Option<Lead>,
    waiting: VecDeque<(RecordBatch, ProgressResponder<TypeConfig, WriteResult>)>,
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

#[derive(Debug)]
struct Shared {
    raft: RaftHandle,
    log: Arc<Log>,
    // Held only to push or take proposals; never across an `.await`.
    queue: Mutex<Queue>,
    wake: Notify,
    leadership: watch::Sender<Leadership>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One partition's Raft group on this node.
#[derive(Debug)]
pub struct PartitionGroup {
    group_id: u64,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
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
        ..Config::default()
    };
    c.validate().map(Arc::new).map_err(|e| e.to_string())
}

impl PartitionGroup {
    /// Opens the group `group_id` over `log` on node `node_id`: the Raft log
    /// files are reconciled with the partition log (blocking I/O), the Raft
    /// instance starts, and a group with no Raft state yet is initialized with
    /// `voters` (every replica calls this with the same voters, which openraft
    /// accepts). `hooks` hear of commits and leadership.
    pub(crate) async fn open<N>(
        node_id: u64,
        group_id: u64,
        log: Arc<Log>,
        voters: BTreeMap<u64, String>,
        hooks: Arc<dyn GroupHooks>,
        network: N,
        settings: GroupSettings,
    ) -> Result<Self, GroupError>
    where
        N: RaftNetworkFactory<TypeConfig>,
        N::Network: NetSnapshot<TypeConfig, SnapshotData = SnapshotData>,
    {
        let name = log.name().to_string();
        let raft_err = |why: String| GroupError::Raft {
            log: name.clone(),
            why,
        };
        let store = {
            let log = Arc::clone(&log);
            tokio::task::spawn_blocking(move || LogStore::open(log))
                .await
                .map_err(|e| raft_err(e.to_string()))?
                .map_err(|source| GroupError::Store {
                    log: name.clone(),
                    source,
                })?
        };
        let config = raft_config(&settings).map_err(raft_err)?;
        let sm = StateMachine::with_hooks(Arc::clone(&hooks));
        let raft = Raft::new(node_id, config, network, store, sm)
            .await
            .map_err(|e| raft_err(e.to_string()))?;
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
                Ok(()) | Err(RaftError::APIError(_)) => {}
                Err(e) => return Err(raft_err(e.to_string())),
            }
        }
        let shared = Arc::new(Shared {
            raft,
            log,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            leadership: watch::Sender::new(Leadership::default()),
        });
        let tasks = vec![
            tokio::spawn(submit_loop(Arc::clone(&shared))),
            tokio::spawn(watch_leadership(Arc::clone(&shared), hooks)),
        ];
        Ok(Self {
            group_id,
            shared,
            tasks,
        })
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
        let h = BatchHeader::parse(&batch).map_err(|e| ProposeError::BadBatch(e.to_string()))?;
        let count = i64::from(h.last_offset_delta) + 1;
        let (responder, rx) = ProgressResponder::complete_only();
        let (offsets, term) = {
            let mut q = self.shared.queue();
            let Some(lead) = q.lead.as_mut() else {
                return Err(ProposeError::NotLeader {
                    leader: self.shared.leadership.borrow().leader,
                });
            };
            let offsets = Offsets {
                base_offset: lead.next_offset,
                last_offset: lead.next_offset + count - 1,
            };
            lead.next_offset += count;
            let term = lead.term;
            q.waiting.push_back((RecordBatch(batch), responder));
            (offsets, term)
        };
        self.shared.wake.notify_one();
        Ok(Proposal {
            offsets,
            term,
            rx,
            log_end: self.shared.log.subscribe_log_end(),
            leadership: self.shared.leadership.subscribe(),
        })
    }

    /// Leader, term and Raft positions, for status pages and metrics.
    pub fn status(&self) -> GroupStatus {
        let m = self.shared.raft.metrics().borrow_watched().clone();
        GroupStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
        }
    }

    /// Stops the group's tasks and its Raft instance.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Err(e) = self.shared.raft.shutdown().await {
            tracing::warn!(group = self.group_id, error = %e, "raft shutdown");
        }
        fail_waiting(&self.shared);
    }
}

/// A group's Raft positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            for (entry, responder) in batch {
                if let Err(e) = shared.raft.client_write_ff(entry, Some(responder)).await {
                    tracing::warn!(error = %e, "raft stopped; proposals fail");
                    return;
                }
            }
        }
    }
}

/// Follows openraft's server metrics: keeps the proposal queue's lead in step
/// with this node's leadership and tells the hooks of every change.
async fn watch_leadership(shared: Arc<Shared>, hooks: Arc<dyn GroupHooks>) {
    let mut metrics = shared.raft.server_metrics();
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
            set_lead(&shared, view);
            shared.leadership.send_replace(view);
            hooks.leadership(view);
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
        q.lead = view.is_leader.then(|| Lead {
            term: view.term,
            // Every entry of earlier terms is in the log by now (a leader
            // takes no appends from others), so this term's data entries
            // start here.
            next_offset: shared.log.log_end_offset(),
        });
        !view.is_leader
    };
    if lost {
        fail_waiting(shared);
    }
}

#[cfg(test)]
mod tests;
