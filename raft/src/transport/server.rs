//! The server: accepts the connections of peer nodes and runs the requests
//! they carry against the groups of the [`Registry`].
//!
//! Per connection, one task reads frames and dispatches each: AppendEntries go
//! to the group's append lane on this connection (see [`lane`](super::lane)),
//! which keeps them in order; every other request runs in a task of its own.
//! So a slow group never holds up another, and answers go out in the order they
//! are ready, paired with their requests by correlation id. A frame that cannot
//! be understood closes that connection only.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::config::TransportConfig;
use super::frame::{Frame, FrameError, FrameReader, Kind};
use super::lane::Lanes;
use super::message::{Hello, ProposeRequest, ReadLogRequest, SnapshotRequest, WireError};
use super::registry::{GroupHandler, HandlerError, Registry};
use super::writer::write_frames;
use crate::types::TypeConfig;

/// Accepts connections on `listener` and serves them until `shutdown`
/// completes; then stops accepting and closes every connection.
pub(crate) async fn run(
    listener: TcpListener,
    registry: Registry,
    config: TransportConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, registry.clone(), config.clone()));
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Dropping the set aborts every connection task; their sockets close.
    connections.shutdown().await;
}

/// What a connection's requests need: where answers go, the groups, the cap.
#[derive(Clone)]
pub(crate) struct Responder {
    tx: mpsc::Sender<Bytes>,
    max_frame_bytes: u32,
}

impl Responder {
    /// Queues the answer to request `correlation` of `group`. An answer that
    /// cannot be encoded (over the cap) is sent as an error instead.
    pub(crate) async fn send<T: Serialize>(
        &self,
        group: u64,
        correlation: u64,
        result: Result<T, WireError>,
    ) {
        let frame = match result {
            Ok(msg) => Frame::encode(Kind::Ok, group, correlation, &msg, self.max_frame_bytes),
            Err(err) => Frame::encode(Kind::Err, group, correlation, &err, self.max_frame_bytes),
        };
        let frame = frame.or_else(|e| {
            let err = WireError::Fatal {
                group,
                reason: e.to_string(),
            };
            Frame::encode(Kind::Err, group, correlation, &err, self.max_frame_bytes)
        });
        match frame {
            // The connection may be gone; then nobody waits for this answer.
            Ok(frame) => drop(self.tx.send(frame).await),
            Err(e) => tracing::error!(group, error = %e, "cannot encode an error answer"),
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    registry: Registry,
    config: TransportConfig,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "set_nodelay failed");
    }
    let (rd, wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel(config.queue_depth);
    // Aborted when this task ends or is aborted (server shutdown), so the
    // socket closes at once and the peer fails what it waits for.
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        write_frames(wr, None, &mut rx, |_| true).await
    }));
    let responder = Responder {
        tx,
        max_frame_bytes: config.max_frame_bytes,
    };
    let mut conn = Connection {
        registry,
        responder,
        lanes: Lanes::default(),
        permits: Arc::new(Semaphore::new(config.max_inflight_per_connection)),
    };
    let mut frames = FrameReader::new(rd, config.max_frame_bytes);
    let mut refused = false;
    loop {
        match frames.next().await {
            Ok(Some(frame)) if frame.kind == Kind::Hello => {
                let why = match frame.body::<Hello>() {
                    Ok(h) => config.cluster_id.refuses(h.cluster_id.as_deref()),
                    Err(e) => Some(format!("unreadable hello: {e}")),
                };
                let correlation = frame.correlation_id;
                match why {
                    None => conn.responder.send(0, correlation, Ok(())).await,
                    Some(why) => {
                        tracing::warn!(%peer, "{why}");
                        let refusal: Result<(), _> = Err(WireError::OtherCluster(why));
                        conn.responder.send(0, correlation, refusal).await;
                        refused = true;
                        break;
                    }
                }
            }
            Ok(Some(frame)) => {
                if let Err(e) = conn.dispatch(frame).await {
                    tracing::warn!(%peer, error = %e, "malformed request, closing the connection");
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "bad frame, closing the connection");
                break;
            }
        }
    }
    // Lanes end when their queues close; answers still being computed find the
    // writer gone and are dropped.
    drop(conn);
    if refused {
        // The refusal reaches the peer before the socket closes.
        let _ = tokio::time::timeout(config.connect_timeout, &mut writer.0).await;
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One incoming connection's dispatch state (owned by its reader task).
struct Connection {
    registry: Registry,
    responder: Responder,
    lanes: Lanes,
    permits: Arc<Semaphore>,
}

impl Connection {
    /// Starts the request in `frame`. Err: the frame is not a request this
    /// server understands, and the connection must close.
    async fn dispatch(&mut self, frame: Frame) -> Result<(), FrameError> {
        let (group, correlation) = (frame.group_id, frame.correlation_id);
        if frame.kind.is_response() {
            return Err(FrameError::Malformed(format!(
                "{:?} frame sent to a server",
                frame.kind
            )));
        }
        if frame.kind == Kind::Leaders {
            let notices: Vec<crate::group::LeaderNotice> = frame.body()?;
            self.registry.notify(notices);
            self.responder.send(group, correlation, Ok(())).await;
            return Ok(());
        }
        let Some(handler) = self.registry.get(group) else {
            // A removed group's lane must not keep its Raft alive.
            self.lanes.remove(group);
            self.responder
                .send::<()>(group, correlation, Err(WireError::UnknownGroup(group)))
                .await;
            return Ok(());
        };
        if frame.kind == Kind::AppendEntries {
            let req = frame.body()?;
            self.lanes
                .submit(group, handler, correlation, req, &self.responder)
                .await;
            return Ok(());
        }
        let call = request_call(&frame, handler)?;
        // Bounds the tasks of one connection; waiting here stops reading it.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let responder = self.responder.clone();
        tokio::spawn(async move {
            call(responder, correlation).await;
            drop(permit);
        });
        Ok(())
    }
}

/// A decoded request, ready to run and answer.
type Call = Box<dyn FnOnce(Responder, u64) -> BoxFuture<'static, ()> + Send>;

/// Decodes a request other than AppendEntries into the call that runs it.
fn request_call(frame: &Frame, handler: Arc<dyn GroupHandler>) -> Result<Call, FrameError> {
    let group = frame.group_id;
    let fatal = move |e: HandlerError| WireError::Fatal { group, reason: e.0 };
    Ok(match frame.kind {
        Kind::Vote | Kind::PreVote => {
            let req: openraft::raft::VoteRequest<TypeConfig> = frame.body()?;
            let pre = frame.kind == Kind::PreVote;
            Box::new(move |r, c| {
                Box::pin(async move {
                    let res = if pre {
                        handler.pre_vote(req).await
                    } else {
                        handler.vote(req).await
                    };
                    r.send(group, c, res.map_err(fatal)).await;
                })
            })
        }
        Kind::Snapshot => {
            let req: SnapshotRequest = frame.body()?;
            let snapshot = openraft::Snapshot {
                meta: req.meta,
                snapshot: req.data,
            };
            Box::new(move |r, c| {
                Box::pin(async move {
                    let res = handler.install_snapshot(req.vote, snapshot).await;
                    r.send(group, c, res.map_err(fatal)).await;
                })
            })
        }
        Kind::TransferLeader => {
            let req: openraft::raft::TransferLeaderRequest<TypeConfig> = frame.body()?;
            Box::new(move |r, c| {
                Box::pin(async move {
                    let res = handler.transfer_leader(req).await;
                    r.send(group, c, res.map_err(fatal)).await;
                })
            })
        }
        Kind::Propose => {
            let req: ProposeRequest = frame.body()?;
            let batch = Bytes::from(req.batch);
            Box::new(move |r, c| {
                Box::pin(async move {
                    let res = handler.propose(batch).await;
                    r.send(group, c, Ok::<_, WireError>(res)).await;
                })
            })
        }
        Kind::ReadLog => {
            let req: ReadLogRequest = frame.body()?;
            Box::new(move |r, c| {
                Box::pin(async move {
                    // Zero-copy reads from the mapped segments: cheap enough
                    // for the connection's task.
                    let res = handler.read_log(req);
                    r.send(group, c, Ok::<_, WireError>(res)).await;
                })
            })
        }
        other => return Err(FrameError::Malformed(format!("{other:?} is not a request"))),
    })
}
