//! The network shared by every Raft group of a node (DESIGN.md decision 7).
//!
//! Each partition is its own openraft group, but two nodes talk over one TCP
//! connection, whatever the number of groups they share. Every frame names its
//! group; the receiving node looks the group up in its registry and runs the
//! request against that group's `Raft`.
//!
//! ```text
//!  group A's Raft ─┐  GroupNetwork(A → n2) ─┐                ┌─ lane(A) ─ Raft A
//!  group B's Raft ─┼─ GroupNetwork(B → n2) ─┼─ Link(n2) ═TCP═ server ─ registry ─┤
//!                  └  GroupNetwork(B → n3) ─── Link(n3) ═TCP═ …  └─ task per vote ─ Raft B
//! ```
//!
//! - [`frame`]: the byte format, documented byte by byte; capped in size.
//! - [`peer`]: the link to one node; lazy connect, reconnect with backoff,
//!   coalesced writes, answers matched by correlation id, prompt failure of
//!   every waiting request when the connection dies.
//! - [`server`] and [`lane`]: the receiving side; groups never wait for each
//!   other, and the AppendEntries of one group keep their order.
//! - [`network`]: openraft's `RaftNetworkV2` for one group, with pipelined
//!   `stream_append` (a window of AppendEntries in flight per follower) and a
//!   byte budget per AppendEntries frame.
//! - [`registry`]: group id → the group's `Raft` (or a test fake).
//!
//! # Heartbeat coalescing (not built)
//!
//! Redpanda sends one heartbeat per node pair per interval for all the groups
//! they share. Here that belongs in the link layer: a ticker per [`peer`] link
//! would gather the groups' heartbeat state into one frame (kinds 0x10–0x1f are
//! reserved for it in [`frame::Kind`]), and the server would fan it out to the
//! groups of the registry and answer with one frame; the groups would turn
//! openraft's own heartbeats off (`Config::enable_heartbeat = false`) and be
//! driven with `raft.trigger().heartbeat()` instead.
//!
//! # Public face
//!
//! The broker starts one [`Transport`] per node with a bound listener and the
//! addresses of its peers, and stops it with [`Transport::shutdown`]. Groups are
//! added with `Transport::register` and get their openraft network from
//! `Transport::network`; both are crate-private, for the group manager, since
//! they take openraft types.

mod config;
mod frame;
mod lane;
mod message;
mod network;
mod peer;
mod registry;
mod server;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{ClusterIdCell, TransportConfig};
// For the state machines of the groups (a group manager, not yet written).
pub(crate) use message::LogChunk;
pub(crate) use message::ReadLogRequest;
pub(crate) use message::Snapshot;
#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use message::SnapshotData;
pub(crate) use network::NetworkFactory;
pub(crate) use registry::{GroupHandler, HandlerError};

use peer::{Link, LinkError};
use registry::Registry;

/// The links of a node to its peers, and how to reach them.
///
/// Std locks: each critical section is a map access, none spans an `.await`.
#[derive(Debug)]
pub(crate) struct Peers {
    node_id: u64,
    config: TransportConfig,
    /// Configured addresses, used when a group's membership has none.
    addrs: RwLock<HashMap<u64, String>>,
    links: Mutex<HashMap<u64, Link>>,
    closed: AtomicBool,
    /// Peers that have not answered this node for a while (see
    /// [`Transport::set_silent`]).
    silent: RwLock<std::collections::HashSet<u64>>,
}

impl Peers {
    /// Whether `node` is silent (see [`Transport::set_silent`]).
    pub(crate) fn is_silent(&self, node: u64) -> bool {
        self.silent
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&node)
    }

    /// The link to `node`, made on first use. `addr` is the address the
    /// caller's membership gives (empty: use the configured one); a link to an
    /// old address is replaced.
    pub(crate) fn link(&self, node: u64, addr: &str) -> Result<Link, LinkError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LinkError::Shutdown);
        }
        let addr = if addr.is_empty() {
            let addrs = self.addrs.read().unwrap_or_else(|e| e.into_inner());
            addrs
                .get(&node)
                .cloned()
                .ok_or_else(|| LinkError::Unreachable {
                    node,
                    addr: String::new(),
                    reason: "no address known".to_string(),
                    refused: false,
                })?
        } else {
            addr.to_string()
        };
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        match links.get(&node) {
            Some(link) if link.addr() == addr => Ok(link.clone()),
            _ => {
                let link = Link::new(node, addr, self.config.clone());
                links.insert(node, link.clone());
                Ok(link)
            }
        }
    }

    /// Drops every link (closing its connection) and refuses new ones.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.links.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A group's hold on the transport that serves it.
#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    peers: Arc<Peers>,
    registry: Registry,
}

impl Attachment {
    /// Stops serving `group`.
    pub(crate) fn detach(&self, group: u64) {
        self.registry.remove(group);
    }

    /// Sends `batch` to `node`, the leader of `group`, to propose there; the
    /// answer comes once it is committed (or refused). A follower forwards
    /// writes of its group this way (the controller's commands).
    pub(crate) async fn forward(
        &self,
        node: u64,
        group: u64,
        batch: bytes::Bytes,
        timeout: std::time::Duration,
    ) -> Result<crate::group::Offsets, crate::group::ProposeError> {
        let unreachable = |e: LinkError| crate::group::ProposeError::Unreachable(e.to_string());
        let link = self.peers.link(node, "").map_err(unreachable)?;
        let req = message::ProposeRequest {
            batch: batch.to_vec(),
        };
        link.call::<_, Result<crate::group::Offsets, crate::group::ProposeError>>(
            frame::Kind::Propose,
            group,
            &req,
            timeout,
        )
        .await
        .map_err(unreachable)?
    }
}

/// Reads a group's partition log on a peer (see [`message::ReadLogRequest`]):
/// what a follower installing a snapshot of a compacted partition uses to
/// receive the cleaned segments below the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct RemoteLog {
    peers: Arc<Peers>,
    group: u64,
}

impl RemoteLog {
    /// One chunk of `node`'s log of this group: batches from `from` (or its
    /// log start) that begin below `upto`, about `max_bytes` of them.
    pub(crate) async fn read(
        &self,
        node: u64,
        from: i64,
        upto: i64,
        max_bytes: u32,
    ) -> std::io::Result<LogChunk> {
        let failed =
            |e: String| std::io::Error::other(format!("reading the log of node {node}: {e}"));
        let link = self
            .peers
            .link(node, "")
            .map_err(|e| failed(e.to_string()))?;
        let req = message::ReadLogRequest {
            from,
            upto,
            max_bytes,
        };
        link.call::<_, Result<LogChunk, String>>(
            frame::Kind::ReadLog,
            self.group,
            &req,
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)
    }
}

/// A node's Raft transport: the server for its peers' requests and the links
/// to its peers, shared by all of its Raft groups.
pub struct Transport {
    peers: Arc<Peers>,
    registry: Registry,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.peers.node_id)
            .field("local_addr", &self.local_addr)
            .field("registry", &self.registry)
            .finish()
    }
}

/// Why a leadership notice was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AnnounceError {
    /// The peer cannot be connected to, or its connection broke (a process
    /// that died, a cut link): unlike a slow answer, proof that it does not
    /// serve now.
    pub gone: bool,
    /// Nothing listens at the peer's address: its process is not running
    /// (a connect that times out, or a link that closes, may be a network
    /// cut instead).
    pub refused: bool,
    /// What happened.
    pub message: String,
}

impl Transport {
    /// Starts serving peers on `listener` (already bound, so tests can bind port
    /// 0) as node `node_id`. `peers` maps node ids to `host:port`, used for a
    /// node whose address the group membership does not give. Must be called
    /// within a tokio runtime.
    pub fn start(
        node_id: u64,
        listener: TcpListener,
        peers: HashMap<u64, String>,
        config: TransportConfig,
    ) -> std::io::Result<Transport> {
        let local_addr = listener.local_addr()?;
        let registry = Registry::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::run(
            listener,
            registry.clone(),
            config.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let peers = Arc::new(Peers {
            node_id,
            config,
            addrs: RwLock::new(peers),
            links: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            silent: RwLock::default(),
        });
        Ok(Transport {
            peers,
            registry,
            local_addr,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sets (or changes) the configured address of `node`.
    pub fn set_peer(&self, node: u64, addr: String) {
        self.peers
            .addrs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, addr);
    }

    /// Serves `group` with `handler` and returns what the group needs of the
    /// transport from then on (forwarding, and detaching when it stops).
    pub(crate) fn attach(&self, group: u64, handler: Arc<dyn GroupHandler>) -> Attachment {
        self.registry.insert(group, handler);
        Attachment {
            peers: Arc::clone(&self.peers),
            registry: self.registry.clone(),
        }
    }

    /// Tells `node` which groups this node leads (see
    /// [`crate::group::LeaderNotice`]).
    pub async fn announce(
        &self,
        node: u64,
        notices: &[crate::group::LeaderNotice],
        timeout: std::time::Duration,
    ) -> Result<(), AnnounceError> {
        let failed = |e: peer::LinkError| AnnounceError {
            gone: matches!(
                e,
                peer::LinkError::Unreachable { .. } | peer::LinkError::ConnectionLost { .. }
            ),
            refused: matches!(e, peer::LinkError::Unreachable { refused: true, .. }),
            message: e.to_string(),
        };
        let link = self.peers.link(node, "").map_err(failed)?;
        link.call::<_, ()>(frame::Kind::Leaders, 0, &notices, timeout)
            .await
            .map_err(failed)
    }

    /// Marks `node` silent (it has not answered this node for a while) or
    /// not. AppendEntries to a silent peer fail at once, unsent: a leader
    /// that still reaches a peer but hears nothing back (a one-way
    /// partition) would otherwise renew that peer's lease of it with every
    /// retry of its uncommitted entries, and the others could not elect
    /// while it commits nothing (found from outside: a deaf controller with
    /// admin requests in flight was not replaced for a minute). Votes still
    /// go out.
    pub fn set_silent(&self, node: u64, silent: bool) {
        let mut s = self.peers.silent.write().unwrap_or_else(|e| e.into_inner());
        if silent {
            s.insert(node);
        } else {
            s.remove(&node);
        }
    }

    /// Sets who hears the leadership notices peers send.
    pub fn on_leaders(
        &self,
        handler: impl Fn(Vec<crate::group::LeaderNotice>) + Send + Sync + 'static,
    ) {
        self.registry.set_notices(Arc::new(handler));
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.peers.node_id
    }

    /// The peers with a configured address.
    pub fn peer_ids(&self) -> Vec<u64> {
        let addrs = self.peers.addrs.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<u64> = addrs
            .keys()
            .copied()
            .filter(|n| *n != self.peers.node_id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Serves `group`'s incoming RPCs with `handler` (a bare `openraft::Raft` in tests).
    #[cfg(test)]
    pub(crate) fn register(&self, group: u64, handler: Arc<dyn GroupHandler>) {
        self.registry.insert(group, handler);
    }

    /// Stops serving `group`; peers get an "unknown group" error for it.
    pub fn unregister(&self, group: u64) -> bool {
        self.registry.remove(group)
    }

    /// Reads of `group`'s partition log on peers.
    pub(crate) fn remote_log(&self, group: u64) -> RemoteLog {
        RemoteLog {
            peers: Arc::clone(&self.peers),
            group,
        }
    }

    /// The openraft network factory for `group`, to pass to `Raft::new`.
    pub(crate) fn network(&self, group: u64) -> NetworkFactory {
        NetworkFactory {
            peers: self.peers.clone(),
            group,
        }
    }

    /// Stops the server (closing every incoming connection) and the links to
    /// peers (failing what waits on them), and waits for the server to stop.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.peers.close();
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop_now();
    }
}
