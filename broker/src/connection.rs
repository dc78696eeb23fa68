//! One client connection: reads frames, hands each to the dispatcher in order,
//! and writes responses in request order while later requests proceed. Which
//! requests may overlap and which take effect strictly in arrival order:
//! [`crate::request_order`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::dispatch;
use crate::limits::{BytesPermit, ConnectionSlot};
use crate::request_order::{self, OrderedLane, Schedule};

/// Responses in flight per connection; the reader stops reading when it is full.
const PIPELINE_DEPTH: usize = 64;

/// Budget a frame takes before its first read; each later read takes at most
/// as much again as the frame already holds (see [`crate::limits`]).
const FIRST_READ: usize = 64 * 1024;

/// Reads a frame body of `n` bytes, taking budget as the bytes arrive;
/// `None` when the peer closed (or failed) before the frame was whole.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    n: usize,
    slot: &ConnectionSlot,
) -> Option<(Bytes, BytesPermit)> {
    let cap = slot.frame_budget();
    let mut permit = slot.take_bytes(n.min(FIRST_READ)).await;
    // Bytes the frame may hold now: all of it once it holds the whole budget.
    let mut allowed = if permit.bytes() >= cap {
        n
    } else {
        permit.bytes().min(n)
    };
    let mut frame = BytesMut::with_capacity(allowed);
    while frame.len() < n {
        if frame.len() >= allowed {
            let more = allowed.min(n - allowed);
            let take = more.min(cap.saturating_sub(permit.bytes()));
            if take > 0 {
                permit.merge(slot.take_bytes(take).await);
            }
            allowed = if permit.bytes() >= cap {
                n
            } else {
                allowed + more
            };
        }
        // Read straight into uninitialised capacity (no zero-fill pass over
        // every request byte), and never past what the frame may hold.
        frame.reserve(allowed - frame.len());
        let mut part = (&mut *rd).take((allowed - frame.len()) as u64);
        match part.read_buf(&mut frame).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some((frame.freeze(), permit))
}

/// Serves one connection until the peer closes it, a frame is bad, or shutdown.
/// `slot` is its admission under the node's limits, released when it ends.
pub async fn serve(
    stream: TcpStream,
    slot: ConnectionSlot,
    broker: Arc<Broker>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    broker.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = stream.into_split();
    // Each response travels with the request bytes it holds from the budget,
    // returned once the response is written.
    let (tx, mut rx) = mpsc::channel::<(JoinHandle<Option<BytesMut>>, BytesPermit)>(PIPELINE_DEPTH);
    let writer = tokio::spawn(async move {
        while let Some((h, _permit)) = rx.recv().await {
            match h.await {
                Ok(Some(frame)) => {
                    if wr.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed; closing connection");
                    break;
                }
            }
        }
    });
    let lane = OrderedLane::new(PIPELINE_DEPTH);
    let client_host = peer
        .rsplit_once(':')
        .map_or(peer.clone(), |(h, _)| h.to_string());
    loop {
        let mut len = [0u8; 4];
        tokio::select! {
            r = rd.read_exact(&mut len) => if r.is_err() { break },
            _ = shutdown.changed() => break,
        }
        let n = i32::from_be_bytes(len);
        if n < 8 || n as usize > broker.config.max_frame_bytes {
            tracing::warn!(%peer, size = n, max = broker.config.max_frame_bytes, "invalid frame size; closing connection");
            broker.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            break;
        }
        // The frame's bytes come out of the connection's and the node's
        // budgets as they arrive: while a budget is spent the socket is not
        // read. A frame that stops arriving closes the connection.
        let read =
            tokio::time::timeout(slot.read_timeout(), read_frame(&mut rd, n as usize, &slot));
        let (frame, permit) = tokio::select! {
            r = read => match r {
                Ok(Some(read)) => read,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(%peer, size = n, timeout = ?slot.read_timeout(), "request frame not received in time; closing connection");
                    broker.limits.counters.read_timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            },
            _ = shutdown.changed() => break,
        };
        let api_key = frame
            .get(..2)
            .map_or(-1, |k| i16::from_be_bytes([k[0], k[1]]));
        let schedule = request_order::schedule(api_key);
        if schedule == Schedule::Produce {
            // Its appends happen at dispatch: not before earlier ordered requests.
            tokio::select! {
                () = lane.idle() => {}
                _ = shutdown.changed() => break,
            }
        }
        match dispatch::dispatch(&broker, frame, &client_host) {
            Ok(fut) => {
                let handle = if schedule == Schedule::Ordered {
                    let reply = lane.push(fut).await;
                    tokio::spawn(async move { reply.await.ok().flatten() })
                } else {
                    tokio::spawn(fut)
                };
                if tx.send((handle, permit)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "bad request; closing connection");
                broker.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
