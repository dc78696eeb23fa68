//! A link to one remote node: one TCP connection, shared by every group.
//!
//! A [`Link`] is a handle (cheap to clone) to a task that owns the connection.
//! A request registers a oneshot under a fresh correlation id, queues its
//! encoded frame on a bounded channel (back-pressure: a full queue makes the
//! caller wait, within its timeout) and waits for the answer.
//!
//! The link task connects when the first frame is queued, writes queued frames
//! (coalesced, see [`write_frames`]) and runs a reader task that hands each
//! response to the oneshot of its correlation id. When the connection dies,
//! every request waiting on this link fails at once with
//! [`LinkError::ConnectionLost`]; when a connect fails, they fail with
//! [`LinkError::Unreachable`] and new requests fail the same way, without
//! touching the network, until a backoff delay has passed. The next request
//! after that connects again.
//!
//! Where heartbeat coalescing goes: a per-link ticker here would send one
//! frame of kind 0x10 per interval carrying every group's heartbeat to this
//! node, and the reader would fan the answers out; groups would then switch
//! openraft's own heartbeats off (`Config::enable_heartbeat`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::config::TransportConfig;
use super::frame::{correlation_of, Frame, FrameError, FrameReader, Kind};
use super::message::{Hello, WireError};
use super::writer::write_frames;

/// Why a request over a link got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LinkError {
    /// The node could not be connected to (or was not, recently); back off.
    #[error("node {node} at {addr} unreachable: {reason}")]
    Unreachable {
        /// The remote node.
        node: u64,
        /// Its address.
        addr: String,
        /// The connect error.
        reason: String,
        /// Whether the connection was refused: nothing listens at the
        /// address (the node is not running), unlike a connect that timed
        /// out or a connection a network cut closed.
        refused: bool,
    },
    /// The connection broke while the request was queued or in flight.
    #[error("connection to node {node} lost: {reason}")]
    ConnectionLost {
        /// The remote node.
        node: u64,
        /// What ended the connection.
        reason: String,
    },
    /// No answer within the request's timeout.
    #[error("no answer from node {node} within {timeout:?}")]
    Timeout {
        /// The remote node.
        node: u64,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The server answered with an error.
    #[error("node {node} refused: {error}")]
    Remote {
        /// The remote node.
        node: u64,
        /// The server's error.
        error: WireError,
    },
    /// The request or its answer could not be encoded or decoded.
    #[error("bad frame for node {node}: {reason}")]
    Frame {
        /// The remote node.
        node: u64,
        /// The frame error.
        reason: String,
    },
    /// The transport was shut down.
    #[error("transport is shut down")]
    Shutdown,
}

type Reply = Result<Frame, LinkError>;

/// State shared by the link's handles and its task.
///
/// Both mutexes are std ones: every critical section is a map or field access,
/// none holds across an `.await`.
#[derive(Debug)]
struct Shared {
    node: u64,
    addr: String,
    config: TransportConfig,
    next_correlation: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    /// Set after a failed connect: until the instant, requests fail at once.
    down: Mutex<Option<(Instant, ConnectFailure)>>,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_pending(&self, frame: &[u8]) -> bool {
        correlation_of(frame).is_some_and(|c| self.pending().contains_key(&c))
    }

    fn complete(&self, frame: Frame) {
        if let Some(tx) = self.pending().remove(&frame.correlation_id) {
            let _ = tx.send(Ok(frame));
        }
    }

    /// Fails every waiting request with `err` (the connection they rely on is gone).
    fn fail_all(&self, err: &LinkError) {
        let waiting: Vec<_> = self.pending().drain().collect();
        for (_, tx) in waiting {
            let _ = tx.send(Err(err.clone()));
        }
    }

    fn unreachable(&self, failure: ConnectFailure) -> LinkError {
        LinkError::Unreachable {
            node: self.node,
            addr: self.addr.clone(),
            reason: failure.reason,
            refused: failure.refused,
        }
    }

    fn down_error(&self) -> Option<LinkError> {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match &*down {
            Some((until, failure)) if Instant::now() < *until => {
                Some(self.unreachable(failure.clone()))
            }
            _ => None,
        }
    }

    fn set_down(&self, until: Option<(Instant, ConnectFailure)>) {
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// Removes a request's pending entry when the request is dropped (timed out,
/// or cancelled by openraft), so the map never keeps abandoned oneshots.
struct PendingGuard<'a> {
    shared: &'a Shared,
    correlation: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(&self.correlation);
    }
}

/// A handle to the link to one remote node. Dropping the last handle closes
/// the connection.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Bytes>,
}

impl Link {
    /// A link to `node` at `addr`; connects on first use. Spawns the link task
    /// on the current tokio runtime.
    pub(crate) fn new(node: u64, addr: String, config: TransportConfig) -> Link {
        let (tx, rx) = mpsc::channel(config.queue_depth);
        let shared = Arc::new(Shared {
            node,
            addr,
            config,
            next_correlation: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            down: Mutex::new(None),
        });
        tokio::spawn(run_link(shared.clone(), rx));
        Link { shared, tx }
    }

    /// The address this link connects to.
    pub(crate) fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Sends `msg` as a `kind` request of `group` and decodes the answer as `R`,
    /// waiting at most `timeout` in all (queueing included).
    pub(crate) async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        kind: Kind,
        group: u64,
        msg: &T,
        timeout: Duration,
    ) -> Result<R, LinkError> {
        let node = self.shared.node;
        let frame = self.request(kind, group, msg, timeout).await?;
        let bad = |e: FrameError| LinkError::Frame {
            node,
            reason: e.to_string(),
        };
        match frame.kind {
            Kind::Ok => frame.body().map_err(bad),
            Kind::Err => Err(LinkError::Remote {
                node,
                error: frame.body().map_err(bad)?,
            }),
            other => Err(LinkError::Frame {
                node,
                reason: format!("{other:?} frame as an answer"),
            }),
        }
    }

    async fn request<T: Serialize>(
        &self,
        kind: Kind,
        group: u64,
        msg: &T,
        timeout: Duration,
    ) -> Reply {
        let shared = &*self.shared;
        if let Some(err) = shared.down_error() {
            return Err(err);
        }
        let correlation = shared.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::encode(kind, group, correlation, msg, shared.config.max_frame_bytes)
            .map_err(|e| LinkError::Frame {
                node: shared.node,
                reason: e.to_string(),
            })?;
        let (tx, rx) = oneshot::channel();
        shared.pending().insert(correlation, tx);
        let _guard = PendingGuard {
            shared,
            correlation,
        };
        let exchange = async {
            self.tx.send(frame).await.map_err(|_| LinkError::Shutdown)?;
            // A dropped sender means the entry was removed without an answer.
            rx.await.unwrap_or(Err(LinkError::Shutdown))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(reply) => reply,
            Err(_) => Err(LinkError::Timeout {
                node: shared.node,
                timeout,
            }),
        }
    }
}

/// The link task: connect on demand, serve the connection until it dies, fail
/// what waited on it, repeat. Ends when every [`Link`] handle is gone.
async fn run_link(shared: Arc<Shared>, mut rx: mpsc::Receiver<Bytes>) {
    let mut failures: u32 = 0;
    loop {
        let Some(first) = rx.recv().await else { return };
        if !shared.is_pending(&first) {
            continue;
        }
        let stream = match connect(&shared).await {
            Ok(stream) => stream,
            Err(failure) => {
                failures = failures.saturating_add(1);
                let delay = shared.config.reconnect_delay(failures);
                tracing::debug!(node = shared.node, addr = %shared.addr, reason = %failure.reason, ?delay, "connect failed");
                shared.set_down(Some((Instant::now() + delay, failure.clone())));
                shared.fail_all(&shared.unreachable(failure));
                continue;
            }
        };
        failures = 0;
        shared.set_down(None);
        let reason = serve(&shared, stream, first, &mut rx).await;
        tracing::debug!(node = shared.node, addr = %shared.addr, %reason, "connection closed");
        shared.fail_all(&LinkError::ConnectionLost {
            node: shared.node,
            reason,
        });
        if rx.is_closed() {
            return;
        }
    }
}

/// Why a connect failed.
#[derive(Debug, Clone)]
struct ConnectFailure {
    /// What happened.
    reason: String,
    /// Nothing listens at the address (see [`LinkError::Unreachable`]).
    refused: bool,
}

impl From<String> for ConnectFailure {
    fn from(reason: String) -> Self {
        ConnectFailure {
            reason,
            refused: false,
        }
    }
}

async fn connect(shared: &Shared) -> Result<TcpStream, ConnectFailure> {
    let connecting = TcpStream::connect(shared.addr.as_str());
    let mut stream = match tokio::time::timeout(shared.config.connect_timeout, connecting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(ConnectFailure {
                refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(format!(
                "connect timed out after {:?}",
                shared.config.connect_timeout
            )
            .into())
        }
    };
    // Votes and heartbeats are small and latency bound: never wait for Nagle.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    hello(shared, &mut stream).await?;
    Ok(stream)
}

/// Says which cluster this node belongs to, first on a new connection, and
/// waits for the peer to take it (it refuses a node of another cluster).
async fn hello(shared: &Shared, stream: &mut TcpStream) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let max = shared.config.max_frame_bytes;
    let hello = Hello {
        cluster_id: shared.config.cluster_id.get(),
    };
    let frame = Frame::encode(Kind::Hello, 0, 0, &hello, max).map_err(|e| e.to_string())?;
    let answer = async {
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        FrameReader::new(&mut *stream, max)
            .next()
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(shared.config.connect_timeout, answer).await {
        Ok(Ok(Some(f))) if f.kind == Kind::Ok => Ok(()),
        Ok(Ok(Some(f))) if f.kind == Kind::Err => {
            let why = f
                .body::<WireError>()
                .map_or_else(|e| e.to_string(), |e| e.to_string());
            tracing::warn!(node = shared.node, addr = %shared.addr, "the node refused this one: {why}");
            Err(why)
        }
        Ok(Ok(Some(f))) => Err(format!("{:?} frame answering the hello", f.kind)),
        Ok(Ok(None)) => Err("connection closed at the hello".into()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer to the hello within {:?}",
            shared.config.connect_timeout
        )),
    }
}

/// Writes queued frames and reads answers until either side fails; returns why.
async fn serve(
    shared: &Arc<Shared>,
    stream: TcpStream,
    first: Bytes,
    rx: &mut mpsc::Receiver<Bytes>,
) -> String {
    let (rd, wr) = stream.into_split();
    let mut reader = tokio::spawn(read_answers(shared.clone(), rd));
    let writing = write_frames(wr, Some(first), rx, |f| shared.is_pending(f));
    let reason = tokio::select! {
        read = &mut reader => match read {
            Ok(reason) => reason,
            Err(e) => format!("reader task failed: {e}"),
        },
        written = writing => match written {
            Ok(()) => "link closed".to_string(),
            Err(e) => format!("write failed: {e}"),
        },
    };
    reader.abort();
    reason
}

/// Hands each answer to its request until the connection ends; returns why.
async fn read_answers(shared: Arc<Shared>, rd: OwnedReadHalf) -> String {
    let mut frames = FrameReader::new(rd, shared.config.max_frame_bytes);
    loop {
        match frames.next().await {
            Ok(Some(frame)) if frame.kind.is_response() => shared.complete(frame),
            Ok(Some(frame)) => return format!("server sent a {:?} request", frame.kind),
            Ok(None) => return "closed by the server".to_string(),
            Err(e) => return e.to_string(),
        }
    }
}
