//! This node's place in the cluster: the Raft transport to its peers and what
//! it knows of who leads the partitions it does not host.
//!
//! Each node hosting a partition knows its leader from the partition's Raft
//! group. For the others, every node tells its peers, once a second, which
//! groups it leads (a [`LeaderNotice`] each); the newest term heard wins and a
//! notice not repeated for [`NOTICE_TTL`] is forgotten (its sender may be
//! gone). So any node answers Metadata for every partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use weir_raft::group::LeaderNotice;
use weir_raft::Transport;

/// How often a node announces the groups it leads (also the node-level
/// heartbeat its followers rely on, see `weir_raft`'s quiescence).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(250);
/// How long an announced leadership is believed without being repeated.
pub const NOTICE_TTL: Duration = Duration::from_secs(3);
/// How long a claim counts as proof that the leader lives: followers of a
/// group whose leader has not repeated its claim for this long elect.
pub const CLAIM_FRESH: Duration = Duration::from_millis(1000);

/// The transport and the leaders peers announced.
#[derive(Debug)]
pub struct Cluster {
    /// The Raft transport; `None` on a one-node cluster.
    pub transport: Option<Transport>,
    /// Every node (node id → Raft address); empty on a one-node cluster.
    pub peers: BTreeMap<i32, String>,
    // Written by notices, read by Metadata; never held across an `.await`.
    heard: Arc<RwLock<HashMap<u64, Heard>>>,
    // When each peer last took this node's notices (the announcer's calls
    // double as a liveness probe of the link to it).
    reached: RwLock<HashMap<u64, Instant>>,
    // The peers reported unreachable in the log, until they answer again.
    reported_down: std::sync::Mutex<std::collections::HashSet<u64>>,
    // The peers whose connection was refused last time (not running), until
    // they answer again.
    refused: std::sync::Mutex<std::collections::HashSet<u64>>,
}

#[derive(Debug, Clone, Copy)]
struct Heard {
    leader: u64,
    term: u64,
    at: Instant,
}

impl Cluster {
    /// A one-node cluster.
    pub fn alone() -> Self {
        Self {
            transport: None,
            peers: BTreeMap::new(),
            heard: Arc::default(),
            reached: RwLock::default(),
            reported_down: std::sync::Mutex::default(),
            refused: std::sync::Mutex::default(),
        }
    }

    /// Starts the transport on `listen` for `peers` (this node's included)
    /// and listens to their leader notices.
    pub async fn join(
        node: i32,
        listen: &str,
        peers: BTreeMap<i32, String>,
        cluster_id: weir_raft::ClusterIdCell,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding the raft listener {listen}: {e}"))?;
        let addrs = peers
            .iter()
            .map(|(id, a)| (u64::try_from(*id).unwrap_or(0), a.clone()))
            .collect();
        let transport = Transport::start(
            u64::try_from(node)?,
            listener,
            addrs,
            weir_raft::TransportConfig {
                cluster_id,
                ..weir_raft::TransportConfig::default()
            },
        )?;
        let heard: Arc<RwLock<HashMap<u64, Heard>>> = Arc::default();
        let table = Arc::clone(&heard);
        transport.on_leaders(move |notices| {
            let now = Instant::now();
            let mut t = table.write().unwrap_or_else(|p| p.into_inner());
            for n in notices {
                let newer = t.get(&n.group).is_none_or(|h| n.term >= h.term);
                if newer {
                    t.insert(
                        n.group,
                        Heard {
                            leader: n.leader,
                            term: n.term,
                            at: now,
                        },
                    );
                }
            }
        });
        Ok(Self {
            transport: Some(transport),
            peers,
            heard,
            reached: RwLock::default(),
            reported_down: std::sync::Mutex::default(),
            refused: std::sync::Mutex::default(),
        })
    }

    /// Number of nodes in the cluster.
    pub fn nodes(&self) -> usize {
        self.peers.len().max(1)
    }

    /// The leader and term of `group` as announced by its leader lately.
    pub fn announced_leader(&self, group: u64) -> Option<(i32, u64)> {
        let t = self.heard.read().unwrap_or_else(|p| p.into_inner());
        t.get(&group)
            .filter(|h| h.at.elapsed() < NOTICE_TTL)
            .and_then(|h| Some((i32::try_from(h.leader).ok()?, h.term)))
    }

    /// The leader and term of `group` as its leader claimed within
    /// [`CLAIM_FRESH`]: the proof, for followers, that it lives.
    pub fn claim(&self, group: u64) -> Option<(u64, u64)> {
        let t = self.heard.read().unwrap_or_else(|p| p.into_inner());
        t.get(&group)
            .filter(|h| h.at.elapsed() < CLAIM_FRESH)
            .map(|h| (h.leader, h.term))
    }

    /// Whether `node` is this node or a peer that took its notices within
    /// [`NOTICE_TTL`]: what the in-sync replicas and quiescence go by.
    pub fn reachable(&self, node: i32) -> bool {
        let me = self.transport.as_ref().map(Transport::node_id);
        let Ok(id) = u64::try_from(node) else {
            return false;
        };
        me.is_none_or(|me| me == id)
            || self
                .reached
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .is_some_and(|at| at.elapsed() < NOTICE_TTL)
    }

    /// Whether this node reaches every peer now (see [`Cluster::reachable`]).
    pub fn all_reachable(&self) -> bool {
        self.peers.keys().all(|n| self.reachable(*n))
    }

    /// Whether `node` is a peer out of reach because it is not running (its
    /// address refused the last connection), rather than silent behind a
    /// network cut.
    pub fn is_down(&self, node: i32) -> bool {
        u64::try_from(node).is_ok_and(|id| self.refused_peers().contains(&id))
            && !self.reachable(node)
    }

    fn refused_peers(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `node` is likely running: reachable now, or reached before
    /// and silent since without refusing a connection (a network cut).
    /// Not a peer never reached (this node just started) nor one whose
    /// address refuses connections.
    pub fn may_be_running(&self, node: i32) -> bool {
        let Ok(id) = u64::try_from(node) else {
            return false;
        };
        let ever = self
            .reached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id);
        self.reachable(node) || (ever && !self.is_down(node))
    }

    /// The peers this node cannot reach now (see [`Cluster::reachable`]).
    pub fn unreachable_peers(&self) -> Vec<u64> {
        self.peers
            .keys()
            .filter(|n| !self.reachable(**n))
            .filter_map(|n| u64::try_from(*n).ok())
            .collect()
    }

    fn reached(&self, node: u64) {
        self.reached
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, Instant::now());
        if let Some(t) = &self.transport {
            t.set_silent(node, false);
        }
        self.refused_peers().remove(&node);
        if self.reported_down().remove(&node) {
            tracing::info!(node, "peer reachable again");
        }
    }

    /// Logs, once until it answers again, that `node` has not taken this
    /// node's notices for [`NOTICE_TTL`].
    fn missed(&self, node: u64, error: &weir_raft::AnnounceError) {
        let Ok(id) = i32::try_from(node) else { return };
        if error.refused {
            self.refused_peers().insert(node);
        } else {
            self.refused_peers().remove(&node);
        }
        if !self.reachable(id) {
            if let Some(t) = &self.transport {
                t.set_silent(node, true);
            }
        }
        if !self.reachable(id) && self.reported_down().insert(node) {
            tracing::warn!(
                node,
                error = %error.message,
                "peer unreachable; its replicas are out of sync"
            );
        }
    }

    fn reported_down(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.reported_down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every leadership `node` claimed (it cannot be reached).
    pub fn forget_claims_of(&self, node: u64) {
        let mut t = self.heard.write().unwrap_or_else(|p| p.into_inner());
        t.retain(|_, h| h.leader != node);
    }

    /// The members of a group on `replicas`, in replica order (the
    /// preferred leader first). Addresses are left empty: each node reaches
    /// a peer at the address its own `--peers` gives, so addresses may
    /// differ from node to node (a proxy, NAT) and change with a restart,
    /// never with a membership change.
    pub fn voters(&self, replicas: &[i32]) -> Vec<(u64, String)> {
        replicas
            .iter()
            .filter_map(|r| Some((u64::try_from(*r).ok()?, String::new())))
            .collect()
    }

    /// Announces, every [`ANNOUNCE_INTERVAL`] while `leads` gives an answer,
    /// the groups this node leads to every peer.
    pub fn spawn_announcer(
        self: &Arc<Self>,
        leads: impl Fn() -> Option<Vec<LeaderNotice>> + Send + 'static,
    ) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
            loop {
                tick.tick().await;
                let Some(cluster) = weak.upgrade() else {
                    return;
                };
                let Some(notices) = leads() else { return };
                let Some(t) = &cluster.transport else { return };
                let me = t.node_id();
                let notices = Arc::new(notices);
                let mut sends = tokio::task::JoinSet::new();
                for peer in t.peer_ids().into_iter().filter(|p| *p != me) {
                    let (cluster, notices) = (Arc::clone(&cluster), Arc::clone(&notices));
                    sends.spawn(async move {
                        let Some(t) = &cluster.transport else { return };
                        match t.announce(peer, &notices, ANNOUNCE_INTERVAL).await {
                            Ok(()) => cluster.reached(peer),
                            Err(e) => {
                                tracing::debug!(peer, error = %e, "leader notice not delivered");
                                cluster.missed(peer, &e);
                                if e.gone {
                                    // Its claims are void now, not a second later:
                                    // the followers of its groups elect at once.
                                    cluster.forget_claims_of(peer);
                                }
                            }
                        }
                    });
                }
                drop(cluster);
                while sends.join_next().await.is_some() {}
            }
        });
    }
}
