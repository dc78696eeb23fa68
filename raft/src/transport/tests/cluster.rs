//! A three-node openraft cluster over the transport, with an in-memory log and
//! state machine written for this test: elect a leader, replicate record
//! batches (pipelined, split by the byte budget), cut the leader off, see a new
//! leader elected and accepting writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::type_config::alias::StoredMembershipOf;
use openraft::{BasicNode, Config, LogState, Raft, RaftLogReader, RaftSnapshotBuilder};

use super::start;
use crate::transport::message::{Snapshot, SnapshotMeta};
use crate::transport::{SnapshotData, Transport, TransportConfig};
use crate::types::{
    term_of, Appended, Entry, LogId, Membership, Payload, RecordBatch, TypeConfig, Vote,
};

const GROUP: u64 = 7;

/// The Raft log in memory. A std mutex: no critical section awaits.
#[derive(Debug, Clone, Default)]
struct MemLog(Arc<Mutex<LogInner>>);

#[derive(Debug, Default)]
struct LogInner {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

impl RaftLogReader<TypeConfig> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.0.lock().unwrap().vote)
    }
}

impl RaftLogStorage<TypeConfig> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let log = self.0.lock().unwrap();
        let last = log
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(log.last_purged);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }

    /// In memory: "durable" when it returns.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.0.lock().unwrap().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.0.lock().unwrap().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.0.lock().unwrap().committed)
    }

    /// Readable and "flushed" at once.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        {
            let mut log = self.0.lock().unwrap();
            for entry in entries {
                log.entries.insert(entry.log_id.index, entry);
            }
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index + 1);
        self.0.lock().unwrap().entries.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let mut log = self.0.lock().unwrap();
        log.entries = log.entries.split_off(&(upto.index + 1));
        log.last_purged = Some(upto);
        Ok(())
    }
}

/// The state machine: the batches in commit order, and the next offset.
#[derive(Debug, Clone, Default)]
struct MemSm(Arc<Mutex<SmInner>>);

#[derive(Debug, Default)]
struct SmInner {
    last_applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
    batches: Vec<Bytes>,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

impl SmInner {
    fn apply(&mut self, entry: &Entry) -> Appended {
        self.last_applied = Some(entry.log_id);
        let next = self.batches.len() as i64;
        match &entry.payload {
            Payload::Normal(RecordBatch(bytes)) => {
                self.batches.push(bytes.clone());
                return Appended {
                    base_offset: next,
                    last_offset: next,
                };
            }
            Payload::Membership(m) => {
                let m: Membership = m.clone();
                self.membership = StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), m);
            }
            Payload::Blank => {}
        }
        Appended {
            base_offset: next,
            last_offset: next - 1,
        }
    }
}

impl RaftStateMachine<TypeConfig> for MemSm {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = MemSm;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        let sm = self.0.lock().unwrap();
        Ok((sm.last_applied, sm.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let appended = self.0.lock().unwrap().apply(&entry);
            if let Some(responder) = responder {
                responder.send(appended);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MemSm {
        self.clone()
    }

    /// The snapshot is metadata only here (how many batches it covers); a
    /// node installing one is not expected in this test.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let mut sm = self.0.lock().unwrap();
        sm.last_applied = meta.last_log_id;
        sm.membership = meta.last_membership.clone();
        sm.snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let sm = self.0.lock().unwrap();
        Ok(sm.snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: data,
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemSm {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let mut sm = self.0.lock().unwrap();
        let meta = SnapshotMeta {
            last_log_id: sm.last_applied,
            last_membership: sm.membership.clone(),
        };
        let data = (sm.batches.len() as u64).to_be_bytes().to_vec();
        sm.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

struct Node {
    id: u64,
    transport: Option<Transport>,
    raft: Raft<TypeConfig, MemSm>,
    sm: MemSm,
}

async fn start_node(id: u64, transport_config: TransportConfig) -> Node {
    let config = Config {
        cluster_name: "transport-test".to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        ..Config::default()
    };
    let config = Arc::new(config.validate().unwrap());
    let transport = start(id, transport_config).await;
    let sm = MemSm::default();
    let raft = Raft::new(
        id,
        config,
        transport.network(GROUP),
        MemLog::default(),
        sm.clone(),
    )
    .await
    .unwrap();
    transport.register(GROUP, Arc::new(raft.clone()));
    Node {
        id,
        transport: Some(transport),
        raft,
        sm,
    }
}

async fn wait_for_leader(nodes: &[&Node], not: Option<u64>) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: BTreeSet<_> = nodes
            .iter()
            .map(|n| n.raft.metrics().borrow_watched().current_leader)
            .collect();
        if let [Some(leader)] = leaders.iter().copied().collect::<Vec<_>>()[..] {
            if Some(leader) != not && nodes.iter().any(|n| n.id == leader) {
                return leader;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader agreed: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn write_batches(leader: &Node, count: usize, size: usize, seed: u8) -> LogId {
    let mut writes = Vec::new();
    for i in 0..count {
        let raft = leader.raft.clone();
        let bytes: Vec<u8> = (0..size)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed + i as u8))
            .collect();
        writes.push(tokio::spawn(async move {
            raft.client_write(RecordBatch(Bytes::from(bytes))).await
        }));
    }
    let mut last = None;
    for write in writes {
        let resp = write.await.unwrap().unwrap();
        assert_eq!(resp.response().base_offset, resp.response().last_offset);
        last = last.max(Some(*resp.log_id()));
    }
    last.unwrap()
}

async fn wait_applied(nodes: &[&Node], upto: LogId) {
    for node in nodes {
        node.raft
            .wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(Some(upto.index), "replicated")
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_and_fail_over() {
    // A small budget so that real replication goes through the split path.
    let tc = TransportConfig {
        append_budget_bytes: 64 * 1024,
        ..TransportConfig::default()
    };
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start_node(id, tc.clone()).await);
    }
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|n| {
            (
                n.id,
                BasicNode::new(n.transport.as_ref().unwrap().local_addr()),
            )
        })
        .collect();
    nodes[0].raft.initialize(members).await.unwrap();

    let all: Vec<&Node> = nodes.iter().collect();
    let leader = wait_for_leader(&all, None).await;
    let first_term = nodes[0].raft.metrics().borrow_watched().current_term;
    let leader_node = nodes.iter().find(|n| n.id == leader).unwrap();
    let last = write_batches(leader_node, 60, 10 * 1024, 1).await;
    wait_applied(&all, last).await;
    let expected = leader_node.sm.0.lock().unwrap().batches.clone();
    assert_eq!(expected.len(), 60);
    for node in &nodes {
        assert_eq!(
            node.sm.0.lock().unwrap().batches,
            expected,
            "node {} differs",
            node.id
        );
    }

    // Cut the leader off the network: its server and its links go.
    let old = nodes.iter_mut().find(|n| n.id == leader).unwrap();
    old.transport.take().unwrap().shutdown().await;
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();
    let new_leader = wait_for_leader(&survivors, Some(leader)).await;
    let new_node = survivors.iter().find(|n| n.id == new_leader).unwrap();
    let new_term = new_node.raft.metrics().borrow_watched().current_term;
    assert!(new_term > first_term, "term {new_term} after {first_term}");

    let last = write_batches(new_node, 20, 1024, 2).await;
    assert!(term_of(&last) == new_term);
    wait_applied(&survivors, last).await;
    for node in &survivors {
        assert_eq!(
            node.sm.0.lock().unwrap().batches.len(),
            80,
            "node {}",
            node.id
        );
    }
    for node in &nodes {
        node.raft.shutdown().await.unwrap();
    }
}
