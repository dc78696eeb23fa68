//! Append lanes: the receiving end of pipelined AppendEntries.
//!
//! A leader keeps several AppendEntries of one group in flight to a follower
//! (see `network::pipeline`). They must reach the follower's Raft in the order
//! they were sent, or the second would arrive before the first and be refused
//! as a gap. Spawning a task per request would lose that order, so each group
//! gets one lane per incoming connection: a task that feeds the requests, in
//! arrival order, to the group's `append_stream` (openraft's
//! `Raft::stream_append`, which submits each to Raft before the next while
//! earlier ones flush) and answers them in order.
//!
//! A lane's queue is bounded; a request finding it full is answered
//! [`WireError::Busy`] rather than making the connection's reader wait, so a
//! stalled group never stops the frames of other groups.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::message::WireError;
use super::registry::{GroupHandler, HandlerError};
use super::server::Responder;
use crate::types::TypeConfig;

/// AppendEntries of one group queued on one connection before `Busy`. Well
/// above the sender's window, so a well-behaved leader never sees it.
const LANE_DEPTH: usize = 64;

type Append = AppendEntriesRequest<TypeConfig>;

/// The lanes of one connection, by group. Owned by the connection's reader;
/// dropping it closes every lane.
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: HashMap<u64, Lane>,
}

struct Lane {
    handler: Arc<dyn GroupHandler>,
    tx: mpsc::Sender<(u64, Append)>,
}

impl Lanes {
    /// Closes `group`'s lane, if any (the group is gone).
    pub(crate) fn remove(&mut self, group: u64) {
        self.lanes.remove(&group);
    }

    /// Queues request `correlation` on `group`'s lane, opening the lane (or a
    /// new one, if the group was registered again since) as needed.
    pub(crate) async fn submit(
        &mut self,
        group: u64,
        handler: Arc<dyn GroupHandler>,
        correlation: u64,
        req: Append,
        responder: &Responder,
    ) {
        let stale = self.lanes.get(&group).is_none_or(|lane| {
            lane.tx.is_closed()
                || !std::ptr::addr_eq(Arc::as_ptr(&lane.handler), Arc::as_ptr(&handler))
        });
        if stale {
            let (tx, rx) = mpsc::channel(LANE_DEPTH);
            tokio::spawn(run_lane(group, handler.clone(), rx, responder.clone()));
            self.lanes.insert(group, Lane { handler, tx });
        }
        let lane = &self.lanes[&group];
        match lane.tx.try_send((correlation, req)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                responder
                    .send::<()>(group, correlation, Err(WireError::Busy(group)))
                    .await
            }
            Err(TrySendError::Closed(_)) => {
                responder
                    .send::<()>(group, correlation, Err(WireError::PipelineReset(group)))
                    .await;
            }
        }
    }
}

/// Runs `group`'s appends from `rx` in order until the connection closes.
///
/// Each session is one `append_stream`; it ends at the first failed append,
/// whose later requests are answered [`WireError::PipelineReset`] (the leader
/// stops reading its stream at the first failure anyway), and the next request
/// opens a new session.
async fn run_lane(
    group: u64,
    handler: Arc<dyn GroupHandler>,
    mut rx: mpsc::Receiver<(u64, Append)>,
    responder: Responder,
) {
    while let Some((correlation, req)) = rx.recv().await {
        let (input_tx, input_rx) = mpsc::channel(LANE_DEPTH);
        let input: BoxStream<'static, Append> = stream::unfold(input_rx, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        })
        .boxed();
        let mut output = handler.append_stream(input);
        let mut waiting = VecDeque::from([correlation]);
        // Cannot fail: the channel is new and has room.
        let _ = input_tx.try_send(req);
        loop {
            tokio::select! {
                next = rx.recv() => {
                    let Some((correlation, req)) = next else { return };
                    if input_tx.try_send(req).is_err() {
                        responder.send::<()>(group, correlation, Err(WireError::Busy(group))).await;
                    } else {
                        waiting.push_back(correlation);
                    }
                }
                result = output.next(), if !waiting.is_empty() => {
                    let correlation = waiting.pop_front().expect("not empty");
                    if !answer(group, correlation, result, &responder).await {
                        for correlation in waiting.drain(..) {
                            responder.send::<()>(group, correlation, Err(WireError::PipelineReset(group))).await;
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Answers one append; false when the session is over.
async fn answer(
    group: u64,
    correlation: u64,
    result: Option<Result<StreamAppendResult<TypeConfig>, HandlerError>>,
    responder: &Responder,
) -> bool {
    match result {
        Some(Ok(res)) => {
            let ok = res.is_ok();
            responder.send(group, correlation, Ok(res)).await;
            ok
        }
        Some(Err(e)) => {
            responder
                .send::<()>(
                    group,
                    correlation,
                    Err(WireError::Fatal { group, reason: e.0 }),
                )
                .await;
            false
        }
        None => {
            let reason = "append stream ended".to_string();
            responder
                .send::<()>(group, correlation, Err(WireError::Fatal { group, reason }))
                .await;
            false
        }
    }
}
