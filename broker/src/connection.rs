//! One client connection: reads frames, hands each to the dispatcher in order,
//! and writes responses in request order while later requests proceed. Which
//! requests may overlap and which take effect strictly in arrival order:
//! [`crate::request_order`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::dispatch;
use crate::limits::{BytesPermit, ConnectionSlot};
use crate::request_order::{self, OrderedLane, Schedule};

/// Responses in flight per connection; the reader stops reading when it is full.
const PIPELINE_DEPTH: usize = 64;

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
        // The frame's bytes come out of the connection's and the node's budgets
        // before they are read: while a budget is spent the socket is not read.
        let permit = tokio::select! {
            p = slot.take_bytes(n as usize) => p,
            _ = shutdown.changed() => break,
        };
        // Read straight into uninitialised capacity (no zero-fill pass over every
        // request byte), and never past this frame.
        let mut frame = BytesMut::with_capacity(n as usize);
        let mut body = (&mut rd).take(n as u64);
        let mut complete = true;
        while frame.len() < n as usize {
            match body.read_buf(&mut frame).await {
                Ok(0) | Err(_) => {
                    complete = false;
                    break;
                }
                Ok(_) => {}
            }
        }
        if !complete {
            break;
        }
        let frame = frame.freeze();
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
