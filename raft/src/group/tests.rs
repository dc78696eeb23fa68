//! A one-voter group over a real partition log: proposals get the offsets
//! predicted for them, in order; acks=1 and acks=all waits resolve; the hooks
//! hear every commit; a restart raises the term and the offsets continue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use weir_storage::{BatchHeader, Log, LogConfig, ReadBound};

use super::*;
use crate::no_peers::NoPeers;

#[derive(Debug, Default)]
struct Recorder {
    committed: Mutex<Vec<(i64, i64, i32)>>,
    views: Mutex<Vec<Leadership>>,
}

impl GroupHooks for Recorder {
    fn committed(&self, batch: &[u8], base_offset: i64, last_offset: i64) {
        let epoch = BatchHeader::parse(batch).unwrap().partition_leader_epoch;
        self.committed
            .lock()
            .unwrap()
            .push((base_offset, last_offset, epoch));
    }
    fn leadership(&self, view: Leadership) {
        self.views.lock().unwrap().push(view);
    }
    fn failed(&self, why: &str) {
        panic!("the group failed: {why}");
    }
}

/// A batch of `records` records whose baseOffset field says 1000, as a client
/// may send: the log, not the client, decides offsets.
fn batch(records: usize) -> Bytes {
    let recs: Vec<_> = (0..records)
        .map(|i| (None, Some(format!("v{i}").into_bytes()), 1_000 + i as i64))
        .collect();
    let mut b = weir_storage::record::build_batch(&recs);
    b[..8].copy_from_slice(&1000i64.to_be_bytes());
    Bytes::from(b)
}

fn fast() -> GroupSettings {
    GroupSettings {
        heartbeat_ms: 50,
        election_min_ms: 150,
        election_max_ms: 300,
        timers: true,
        quiesce: false,
        lost_state: LostState::Impossible,
    }
}

async fn open(log: &Arc<Log>, hooks: &Arc<Recorder>) -> PartitionGroup {
    let voters = [(1, "127.0.0.1:1".to_string())];
    let hooks: Arc<dyn GroupHooks> = hooks.clone();
    PartitionGroup::open(
        1,
        7,
        Arc::clone(log),
        &voters,
        hooks,
        (NoPeers, None),
        fast(),
    )
    .await
    .unwrap()
}

async fn leader_term(g: &PartitionGroup) -> u64 {
    let mut rx = g.leadership();
    let view = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| v.is_leader))
        .await
        .expect("no leader within 10 s")
        .unwrap();
    view.term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_group_commits_proposals_at_their_predicted_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&dir.path().join("t-0"), "t-0", LogConfig::default()).unwrap();
    let log = Arc::new(log);
    let hooks = Arc::new(Recorder::default());
    let g = open(&log, &hooks).await;
    let term = leader_term(&g).await;
    assert!(term >= 1);

    let mut proposals: Vec<_> = [2, 3, 1]
        .into_iter()
        .map(|n| g.propose(batch(n)).unwrap())
        .collect();
    let predicted: Vec<_> = proposals.iter().map(|p| p.offsets).collect();
    assert_eq!(
        predicted,
        [(0, 1), (2, 4), (5, 5)].map(|(b, l)| Offsets {
            base_offset: b,
            last_offset: l
        })
    );
    for p in &mut proposals {
        p.appended().await.unwrap();
    }
    for (p, want) in proposals.into_iter().zip(&predicted) {
        assert_eq!(p.committed().await.unwrap(), *want);
    }
    let epoch = i32::try_from(term).unwrap();
    assert_eq!(
        *hooks.committed.lock().unwrap(),
        [(0, 1, epoch), (2, 4, epoch), (5, 5, epoch)]
    );
    // Data entries only in the partition log: offsets 0..6, no gap for the
    // blank and membership entries.
    let r = log.read(0, 1 << 20, ReadBound::LogEnd).unwrap();
    let bases: Vec<i64> = weir_storage::HeaderWalk::new(&r.records, 0)
        .map(|(_, h)| h.base_offset)
        .collect();
    assert_eq!(bases, [0, 2, 5]);
    assert_eq!(log.log_end_offset(), 6);
    g.shutdown().await;

    // A restart: the commits are re-applied, offsets continue. (A lone voter
    // whose vote is committed resumes leading in the same term: openraft
    // restores a leader from its stored vote.)
    let hooks2 = Arc::new(Recorder::default());
    let g = open(&log, &hooks2).await;
    let term2 = leader_term(&g).await;
    assert!(term2 >= term, "term {term2} after {term}");
    let p = g.propose(batch(4)).unwrap();
    assert_eq!(p.offsets.base_offset, 6);
    assert_eq!(
        p.committed().await.unwrap(),
        Offsets {
            base_offset: 6,
            last_offset: 9
        }
    );
    let seen = hooks2.committed.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&(6, 9, i32::try_from(term2).unwrap())));
    assert!(seen.len() == 4, "re-applied after restart: {seen:?}");
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_fail_when_not_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&dir.path().join("t-0"), "t-0", LogConfig::default()).unwrap();
    let log = Arc::new(log);
    let hooks = Arc::new(Recorder::default());
    // A voter set that needs node 2, which never answers: node 1 never leads.
    let voters = [
        (1, "127.0.0.1:1".to_string()),
        (2, "127.0.0.1:2".to_string()),
    ];
    let h: Arc<dyn GroupHooks> = hooks.clone();
    let g = PartitionGroup::open(1, 7, Arc::clone(&log), &voters, h, (NoPeers, None), fast())
        .await
        .unwrap();
    let err = g.propose(batch(1)).unwrap_err();
    assert!(matches!(err, ProposeError::NotLeader { .. }), "{err}");
    assert!(matches!(
        g.propose(Bytes::from_static(b"junk")),
        Err(ProposeError::BadBatch(_))
    ));
    g.shutdown().await;
}

/// One replica of group `group` on each of three nodes, each with its own
/// transport on loopback and its own partition log (in `dirs`).
/// One node of [`three_nodes`]: its id, group, log and transport (taken
/// when the node goes away).
type Node = (
    u64,
    PartitionGroup,
    Arc<Log>,
    Option<crate::transport::Transport>,
);

/// The live node that leads, if any.
fn leader_of(nodes: &[Node]) -> Option<usize> {
    nodes
        .iter()
        .position(|(_, g, _, t)| t.is_some() && g.leadership().borrow().is_leader)
}

async fn three_nodes(group: u64, settings: GroupSettings, dirs: &[tempfile::TempDir]) -> Vec<Node> {
    use crate::transport::{Transport, TransportConfig};
    use std::collections::HashMap;
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, l.local_addr().unwrap().to_string());
        listeners.push((id, l));
    }
    let mut nodes = Vec::new();
    for ((id, listener), dir) in listeners.into_iter().zip(dirs) {
        let peers: HashMap<u64, String> = addrs.clone().into_iter().collect();
        let transport = Transport::start(id, listener, peers, TransportConfig::default()).unwrap();
        let (log, _) = Log::open(&dir.path().join("t-0"), "t-0", LogConfig::default()).unwrap();
        let log = Arc::new(log);
        let hooks: Arc<dyn GroupHooks> = Arc::new(Recorder::default());
        let g = PartitionGroup::open_replicated(
            id,
            group,
            Arc::clone(&log),
            &addrs.clone().into_iter().collect::<Vec<_>>(),
            hooks,
            &transport,
            settings,
        )
        .await
        .unwrap();
        nodes.push((id, g, log, Some(transport)));
    }
    nodes
}

/// Three replicas of one partition, each a node with its own transport on
/// loopback and its own partition log: batches proposed on the leader are
/// committed at the predicted offsets and written byte-identical on every
/// replica; when the leader's node goes away, the other two elect a leader in
/// a higher term whose offsets continue the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_batches_and_fail_over() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = three_nodes(7, fast(), &dirs).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(i) = leader_of(&nodes) {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // As a client does, a proposal refused as "not the leader" (an election
    // still settling, or a leader lease not yet granted) is retried on
    // whoever leads then.
    let mut acked = Vec::new();
    for n in [3, 1, 4, 1, 5] {
        let got = loop {
            let at = leader_of(&nodes).unwrap_or(first);
            // acks=1 then acks=all: offsets told at the append must be the
            // ones committed (a refused proposal may shift later ones: then
            // their append fails, retriably, rather than lie).
            match nodes[at].1.propose(batch(n)) {
                Ok(mut p) => match p.appended().await {
                    Ok(told) => match p.committed().await {
                        Ok(got) => {
                            assert_eq!(got, told, "acks=1 told other offsets than committed");
                            break got;
                        }
                        Err(ProposeError::NotLeader { .. }) => {}
                        Err(e) => panic!("{e}"),
                    },
                    Err(ProposeError::NotLeader { .. }) => {}
                    Err(e) => panic!("{e}"),
                },
                Err(ProposeError::NotLeader { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            assert!(
                std::time::Instant::now() < deadline + Duration::from_secs(20),
                "no commit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        acked.push(got);
    }
    let first = leader_of(&nodes).unwrap_or(first);
    let term1 = nodes[first].1.leadership().borrow().term;
    let end = nodes[first].2.log_end_offset();
    assert!(
        acked
            .windows(2)
            .all(|w| w[0].last_offset < w[1].base_offset),
        "acknowledged offsets out of order: {acked:?}"
    );
    assert!(acked.last().is_some_and(|a| a.last_offset < end));
    // Every replica has every batch, byte for byte.
    let read_all = |log: &Log| {
        let r = log.read(0, 1 << 20, ReadBound::LogEnd).unwrap();
        r.records.to_vec()
    };
    for (_, _, log, _) in &nodes {
        let mut w = log.subscribe_log_end();
        tokio::time::timeout(Duration::from_secs(10), w.wait_for(|e| *e >= end))
            .await
            .expect("a replica did not catch up")
            .unwrap();
    }
    let reference = read_all(&nodes[0].2);
    for (id, _, log, _) in &nodes {
        assert_eq!(read_all(log), reference, "replica {id} differs");
    }

    // The leader's node goes away: its transport and its group stop.
    let transport = nodes[first].3.take().unwrap();
    transport.shutdown().await;
    nodes[first].1.stop().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let second = loop {
        if let Some(i) = leader_of(&nodes).filter(|i| *i != first) {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let term2 = nodes[second].1.leadership().borrow().term;
    assert!(term2 > term1, "term {term2} after {term1}");
    // A follower forwards a proposal to the new leader; its offsets continue
    // the log (retried while the lease or the election settles).
    let follower = (0..3).find(|i| *i != first && *i != second).unwrap();
    let got = nodes[follower]
        .1
        .propose_anywhere(batch(2), Duration::from_secs(20))
        .await
        .expect("a forwarded proposal was not committed");
    assert_eq!((got.base_offset, got.last_offset), (end, end + 1));
    for (i, (_, g, _, _)) in nodes.iter().enumerate() {
        if i != first {
            g.stop().await;
        }
    }
}

/// acks=all is answered at the commit, from the committed id the leader's
/// log store saves, not after the apply: each proposal's apply answer is
/// replaced by one that never comes, yet [`Proposal::quorum_written`]
/// resolves; when it does, two of the three replicas hold the batch, at the
/// offsets predicted for it, and the answers come in proposal order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_written_resolves_once_a_quorum_holds_the_batch() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = three_nodes(9, fast(), &dirs).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut answered = Vec::new();
    while answered.len() < 20 {
        assert!(std::time::Instant::now() < deadline, "{answered:?}");
        let Some(at) = leader_of(&nodes) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        // Two proposals in flight, answered in order.
        let proposed: Vec<_> = (0..2).map(|_| nodes[at].1.propose(batch(3))).collect();
        for p in proposed {
            let mut p = match p {
                Ok(p) => p,
                Err(ProposeError::NotLeader { .. }) => continue,
                Err(e) => panic!("{e}"),
            };
            let (predicted, term, generation) = (p.offsets, p.term, p.generation);
            let (broken, committed) = (
                p.shared.predictions.broken(),
                p.shared.predictions.committed(),
            );
            // Only the commit can answer now; the real apply answer is
            // watched only for a refusal (openraft answers a write it
            // refuses, such as one for a term it no longer leads, there).
            let (_apply_unheard, never) = tokio::sync::oneshot::channel();
            let mut applied = p.rx.replace(never).expect("a fresh proposal");
            let written = p.quorum_written();
            tokio::pin!(written);
            let answer = tokio::time::timeout(Duration::from_secs(10), async {
                tokio::select! {
                    a = &mut written => Some(a),
                    Ok(Err(refused)) = &mut applied => {
                        eprintln!("{predicted:?} refused: {refused}");
                        None
                    }
                }
            })
            .await;
            let answer = match answer {
                Ok(Some(answer)) => answer,
                Ok(None) => continue,
                Err(_) => {
                    // The commit path answers unless what its contract
                    // names happened: a new term, a later term committed
                    // first, or the predictions broken (then the apply
                    // answers, which this test never lets through).
                    let now = nodes[at].1.leadership().borrow().term;
                    let later = committed.borrow().0 > term;
                    let broke = *broken.borrow() >= generation;
                    assert!(
                        now > term || later || broke,
                        "{predicted:?} not answered at its commit in 10 s (term {term}, committed {:?}, apply answer {:?})",
                        *committed.borrow(),
                        applied.try_recv()
                    );
                    continue;
                }
            };
            match answer {
                Ok(got) => {
                    assert_eq!(got, predicted);
                    let holding = nodes
                        .iter()
                        .filter(|n| n.2.log_end_offset() > got.last_offset)
                        .count();
                    assert!(holding >= 2, "{got:?} answered on {holding} replica(s)");
                    answered.push(got);
                }
                Err(ProposeError::NotLeader { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(
        answered
            .windows(2)
            .all(|w| w[0].last_offset < w[1].base_offset),
        "answers out of order: {answered:?}"
    );
    for (_, g, _, _) in &nodes {
        g.stop().await;
    }
}

/// A leader takes proposals from the moment it says it leads: none is
/// refused in its own term for a lease its followers have not granted yet.
/// (openraft refuses writes until a quorum acknowledged the leader; a later
/// proposal taken once they did would be written without the refused one
/// before it: an idempotent producer's batches out of order, the refused
/// one then answered as a duplicate.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_refuses_no_proposal_for_a_lease_not_yet_granted() {
    // A lease (election_max) wide enough that a loaded machine's stalls do
    // not let a granted one lapse: a refusal then means it was never granted.
    let settings = GroupSettings {
        heartbeat_ms: 100,
        election_min_ms: 1000,
        election_max_ms: 2000,
        ..fast()
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = three_nodes(12, settings, &dirs).await;
    // A granted lease lapses (and openraft rightly refuses) when the process
    // stalls longer than the half lease left after the check before
    // submission: on a loaded machine that is not the failure looked for.
    let stalls = StallWatch::start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (at, term, proposed) = loop {
        assert!(std::time::Instant::now() < deadline, "no leader");
        let Some(at) = leader_of(&nodes) else {
            tokio::task::yield_now().await;
            continue;
        };
        let term = nodes[at].1.leadership().borrow().term;
        let proposed: Vec<_> = (0..4).map(|_| nodes[at].1.propose(batch(1))).collect();
        if proposed.iter().all(Result::is_ok) {
            break (at, term, proposed);
        }
    };
    for p in proposed {
        if let Err(e) = p.unwrap().committed().await {
            let stalled = stalls.longest();
            if stalled >= Duration::from_millis(250) {
                eprintln!("refused after a {stalled:?} stall (lease lapsed): {e}");
                continue;
            }
            // Refused only because this node stopped leading its term (the
            // watch of its term may move a moment after the refusal).
            let left = std::time::Instant::now() + Duration::from_secs(10);
            let mut watch = nodes[at].1.leadership();
            while watch.borrow().term == term {
                let wait = left.saturating_duration_since(std::time::Instant::now());
                let moved = tokio::time::timeout(wait, watch.changed()).await;
                assert!(
                    matches!(moved, Ok(Ok(()))),
                    "refused in its own term {term}, which it still leads: {e}"
                );
            }
        }
    }
    for (_, g, _, _) in &nodes {
        g.stop().await;
    }
}

/// The longest the runtime was late to wake a task, watched from its start:
/// tells a stalled process from a refusal with no excuse.
struct StallWatch(
    Arc<std::sync::atomic::AtomicU64>,
    tokio::task::JoinHandle<()>,
);

impl StallWatch {
    fn start() -> Self {
        let longest = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let watch = Arc::clone(&longest);
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(10);
            loop {
                let asked = std::time::Instant::now();
                tokio::time::sleep(tick).await;
                let late = asked.elapsed().saturating_sub(tick).as_millis() as u64;
                watch.fetch_max(late, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Self(longest, task)
    }

    fn longest(&self) -> Duration {
        Duration::from_millis(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.1.abort();
    }
}

/// Quiescence (see `group::quiet`): an idle leader stops its timers, its
/// followers hold no election while it keeps claiming the group, a proposal
/// wakes it even after its lease lapsed, and once it falls silent the
/// followers elect a new leader. The claims are what the broker's announcer
/// tells peers: here, a tender task names each live node's view of the
/// leader that still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiesced_groups_wake_for_proposals_and_elect_once_their_leader_is_silent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let settings = GroupSettings {
        quiesce: true,
        ..fast()
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut groups = Vec::new();
    let mut transports = Vec::new();
    for (_, g, _, t) in three_nodes(9, settings, &dirs).await {
        groups.push(Arc::new(g));
        transports.push(t);
    }
    let alive: Arc<Vec<AtomicBool>> = Arc::new((0..3).map(|_| AtomicBool::new(true)).collect());
    let tender = {
        let (groups, alive) = (groups.clone(), Arc::clone(&alive));
        tokio::spawn(async move {
            loop {
                // The live leader's claim, as its announcer would send it.
                let claim = groups.iter().enumerate().find_map(|(i, g)| {
                    let l = *g.leadership().borrow();
                    (alive[i].load(Ordering::Acquire) && l.is_leader)
                        .then(|| (i as u64 + 1, l.term))
                });
                for (i, g) in groups.iter().enumerate() {
                    if alive[i].load(Ordering::Acquire) {
                        g.tend(claim, &[]).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let poll = |what: &'static str, f: &dyn Fn() -> Option<usize>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let leader = || {
        (0..3).find(|i| {
            alive[*i].load(Ordering::Acquire) && groups[*i].leadership().borrow().is_leader
        })
    };
    let first = poll("no leader", &leader);
    groups[first]
        .propose_anywhere(batch(2), Duration::from_secs(20))
        .await
        .expect("first proposal");
    let term = groups[first].leadership().borrow().term;
    poll("the idle leader never quiesced", &|| {
        groups[first].status().quiesced.then_some(0)
    });
    // Well past the lease (election_timeout_max): a write needs a wake.
    tokio::time::sleep(Duration::from_millis(3 * settings.election_max_ms)).await;
    let got = groups[first]
        .propose(batch(3))
        .unwrap()
        .committed()
        .await
        .expect("a proposal to a quiesced leader");
    assert_eq!((got.base_offset, got.last_offset), (2, 4));
    for g in &groups {
        assert_eq!(
            g.leadership().borrow().term,
            term,
            "an election while the leader claimed the group"
        );
    }
    // The leader falls silent: its node goes away.
    alive[first].store(false, Ordering::Release);
    transports[first].take().unwrap().shutdown().await;
    groups[first].stop().await;
    let second = poll("no new leader after the leader fell silent", &leader);
    assert_ne!(second, first);
    assert!(groups[second].leadership().borrow().term > term);
    let got = groups[second]
        .propose_anywhere(batch(1), Duration::from_secs(20))
        .await
        .expect("a proposal to the new leader");
    assert_eq!(got.base_offset, 5);
    tender.abort();
    for (i, g) in groups.iter().enumerate() {
        if i != first {
            g.stop().await;
        }
    }
}

/// A follower whose Raft instance just learned of a new leader trusts it for
/// `NEW_LEADER_GRACE` although no claim of that leader reached it yet (the
/// first one is up to 250 ms away on a real node). Here no claim ever comes:
/// the leader must keep its term through most of the grace, although it
/// quiesces meanwhile.
/// (Before the grace, the designated follower took the missing claim for
/// silence and deposed a leader it had just learned of.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_trust_a_newly_learned_leader_before_its_first_claim() {
    let settings = GroupSettings {
        quiesce: true,
        ..fast()
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut groups = Vec::new();
    let mut transports = Vec::new();
    for (_, g, _, t) in three_nodes(11, settings, &dirs).await {
        groups.push(Arc::new(g));
        transports.push(t);
    }
    // Every node is tended as the broker does, but no claim is ever heard.
    let tender = {
        let groups = groups.clone();
        tokio::spawn(async move {
            loop {
                for g in &groups {
                    g.tend(None, &[]).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // A leader that every follower knows of.
    let (leader, term) = loop {
        let views: Vec<_> = groups.iter().map(|g| *g.leadership().borrow()).collect();
        let led = views.iter().position(|v| v.is_leader);
        if let Some(l) = led {
            let term = views[l].term;
            if views
                .iter()
                .all(|v| v.term == term && (v.is_leader || v.leader == Some(l as u64 + 1)))
            {
                break (l, term);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader known to all"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The leader, idle, quiesces after a second and stops its heartbeats;
    // the followers' leases lapse soon after. Without claims, only the
    // grace keeps the designated follower from campaigning, and the other
    // one would grant it the vote. Watch until just before the grace ends.
    let window = Duration::from_millis(1500);
    let until = std::time::Instant::now() + window;
    while std::time::Instant::now() < until {
        for (i, g) in groups.iter().enumerate() {
            let v = *g.leadership().borrow();
            assert_eq!(
                v.term,
                term,
                "node {} moved to term {} within {window:?}",
                i + 1,
                v.term
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(groups[leader].leadership().borrow().is_leader);
    tender.abort();
    for g in &groups {
        g.stop().await;
    }
    drop(transports);
}

/// A leader whose follower died writes on with the survivor, and quiesces
/// once idle although the dead follower never matched its log, provided
/// it is told that node is down (the broker tells it which peers it cannot
/// reach); told nothing, it keeps its timers running for that follower.
/// (Before, every group a dead node belonged to and that had written since
/// kept its timers: 1,000 partitions cost their survivors a quarter of a
/// core.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_quiesces_without_a_follower_it_cannot_reach() {
    let settings = GroupSettings {
        quiesce: true,
        ..fast()
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = three_nodes(13, settings, &dirs).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(i) = leader_of(&nodes) {
            break i;
        }
        // No claim heard yet: the preferred replica campaigns.
        for n in &nodes {
            n.1.tend(None, &[]).await;
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dead = (0..3).find(|i| *i != leader).unwrap();
    nodes[dead].3.take().unwrap().shutdown().await;
    nodes[dead].1.stop().await;
    let got = nodes[leader]
        .1
        .propose_anywhere(batch(2), Duration::from_secs(20))
        .await
        .expect("a proposal with one follower down");
    let term = nodes[leader].1.leadership().borrow().term;
    let claim = Some((leader as u64 + 1, term));
    let tend_for = |down: Vec<u64>, how_long: Duration| {
        let nodes = &nodes;
        async move {
            let until = std::time::Instant::now() + how_long;
            while std::time::Instant::now() < until {
                for (i, n) in nodes.iter().enumerate() {
                    if i != dead {
                        n.1.tend(claim, &down).await;
                    }
                }
                if nodes[leader].1.status().quiesced {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    // Well past IDLE_AFTER, but the dead follower is not known to be down.
    assert!(
        !tend_for(Vec::new(), Duration::from_secs(3)).await,
        "quiesced while a follower it did not know dead lagged"
    );
    let status = nodes[leader].1.status();
    assert_eq!(status.committed_index, status.last_log_index);
    let dead_id = dead as u64 + 1;
    assert_ne!(
        status.matched.get(&dead_id).copied().flatten(),
        status.last_log_index,
        "the dead follower matched an entry proposed after it died"
    );
    assert!(
        tend_for(vec![dead_id], Duration::from_secs(10)).await,
        "the idle leader never quiesced with its dead follower known down"
    );
    assert!(got.last_offset >= 1);
    for (i, n) in nodes.iter().enumerate() {
        if i != dead {
            n.1.stop().await;
        }
    }
}

/// A write whose entry another leader's log replaced is a lost leadership
/// (retriable), not a stopped group.
#[test]
fn a_discarded_entry_is_a_lost_leadership() {
    let f = openraft::error::ForwardToLeader::<TypeConfig>::new(3, openraft::BasicNode::default());
    assert!(matches!(
        write_error(ClientWriteError::LogEntryDiscarded(f.clone())),
        ProposeError::NotLeader { leader: Some(3) }
    ));
    assert!(matches!(
        write_error(ClientWriteError::ForwardToLeader(f)),
        ProposeError::NotLeader { leader: Some(3) }
    ));
}
