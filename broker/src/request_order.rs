//! The order in which one connection's requests take effect.
//!
//! Kafka handles one request per connection at a time, so a client that
//! pipelines two commits (49, then 50) knows 50 is the one that stays. Weir
//! lets reads overlap, but every request that changes state — or reads state a
//! client expects to see its own earlier changes in — runs on the
//! connection's *ordered lane*: one at a time, each to completion, in arrival
//! order. Produce keeps its fast path: its appends happen when it is
//! dispatched, in arrival order, but only once the lane is idle, so a produce
//! never takes effect before an earlier commit or admin change on the same
//! connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiVersionsRequest, FetchRequest, FindCoordinatorRequest, ListOffsetsRequest,
    OffsetForLeaderEpochRequest, ProduceRequest,
};
use kafka_protocol::protocol::Request;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::dispatch::Pending;

/// How a request is scheduled on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Runs as soon as it is read, overlapping everything else.
    Overlap,
    /// Appends at dispatch, once the ordered lane is idle.
    Produce,
    /// Runs on the ordered lane.
    Ordered,
}

/// The schedule of API `api_key`: reads that never depend on the connection's
/// own earlier changes overlap; Produce has its own path; everything else
/// (commits, group membership, admin changes, and the reads that must see
/// them: OffsetFetch, Metadata, Describe*) is ordered.
pub fn schedule(api_key: i16) -> Schedule {
    match api_key {
        ProduceRequest::KEY => Schedule::Produce,
        FetchRequest::KEY
        | ListOffsetsRequest::KEY
        | ApiVersionsRequest::KEY
        | FindCoordinatorRequest::KEY
        | OffsetForLeaderEpochRequest::KEY => Schedule::Overlap,
        _ => Schedule::Ordered,
    }
}

/// A connection's ordered lane: a task that runs queued requests one at a time.
#[derive(Debug)]
pub struct OrderedLane {
    tx: mpsc::Sender<(Pending, oneshot::Sender<Option<BytesMut>>)>,
    // Requests queued or running.
    busy: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl OrderedLane {
    /// Starts the lane's task, with room for `depth` queued requests; the task
    /// ends when the lane is dropped.
    pub fn new(depth: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Pending, oneshot::Sender<_>)>(depth.max(1));
        let busy = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let (b, i) = (busy.clone(), idle.clone());
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let response = request.await;
                let _ = reply.send(response);
                if b.fetch_sub(1, Ordering::AcqRel) == 1 {
                    i.notify_waiters();
                }
            }
        });
        Self { tx, busy, idle }
    }

    /// Queues `request` (waiting while the lane is full); the returned receiver
    /// gets its response once it ran.
    pub async fn push(&self, request: Pending) -> oneshot::Receiver<Option<BytesMut>> {
        let (reply, rx) = oneshot::channel();
        self.busy.fetch_add(1, Ordering::AcqRel);
        if self.tx.send((request, reply)).await.is_err() {
            self.busy.fetch_sub(1, Ordering::AcqRel);
        }
        rx
    }

    /// Resolves once every queued request has run.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.busy.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(log: Arc<std::sync::Mutex<Vec<u32>>>, id: u32, yields: u32) -> Pending {
        Box::pin(async move {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            log.lock().unwrap().push(id);
            Some(BytesMut::from(&id.to_be_bytes()[..]))
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_take_effect_in_arrival_order_even_when_earlier_ones_are_slower() {
        let lane = OrderedLane::new(64);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Earlier requests take longer: spawned on their own they would finish last.
        let mut replies = Vec::new();
        for i in 0..50u32 {
            replies.push(lane.push(request(log.clone(), i, 50 - i)).await);
        }
        lane.idle().await;
        assert_eq!(*log.lock().unwrap(), (0..50).collect::<Vec<_>>());
        for (i, r) in replies.into_iter().enumerate() {
            assert_eq!(r.await.unwrap().unwrap()[..], (i as u32).to_be_bytes());
        }
    }

    #[test]
    fn only_pure_reads_overlap() {
        assert_eq!(schedule(ProduceRequest::KEY), Schedule::Produce);
        assert_eq!(schedule(FetchRequest::KEY), Schedule::Overlap);
        for key in [8, 11, 12, 13, 14, 9, 3, 19, 20] {
            // OffsetCommit, Join, Heartbeat, Leave, Sync, OffsetFetch, Metadata,
            // CreateTopics, DeleteTopics
            assert_eq!(schedule(key), Schedule::Ordered, "api {key}");
        }
    }
}
