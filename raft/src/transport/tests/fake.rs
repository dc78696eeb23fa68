//! A fake group: answers votes by echoing the request with its group id, and
//! appends by acknowledging their last log id, after configurable delays,
//! recording what it saw.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use openraft::raft::{
    AppendEntriesRequest, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};

use crate::transport::message::Snapshot;
use crate::transport::registry::{GroupHandler, HandlerError};
use crate::types::{log_id, TypeConfig, Vote};

/// What a fake group saw, and how slow it is.
#[derive(Debug, Default)]
pub(super) struct FakeState {
    pub(super) group: u64,
    pub(super) vote_delay: Duration,
    pub(super) append_delay: Duration,
    /// (prev index, entry indexes) of each append, in the order received.
    pub(super) appends: Mutex<Vec<(Option<u64>, Vec<u64>)>>,
    inflight: AtomicUsize,
    pub(super) max_inflight: AtomicUsize,
}

/// The handler over a [`FakeState`].
#[derive(Debug, Clone)]
pub(super) struct Fake(pub(super) Arc<FakeState>);

impl Fake {
    pub(super) fn new(group: u64, vote_delay: Duration, append_delay: Duration) -> Fake {
        Fake(Arc::new(FakeState {
            group,
            vote_delay,
            append_delay,
            ..FakeState::default()
        }))
    }
}

impl GroupHandler for Fake {
    fn append_stream(
        &self,
        input: BoxStream<'static, AppendEntriesRequest<TypeConfig>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<TypeConfig>, HandlerError>> {
        let state = self.0.clone();
        input
            .map(move |req| {
                let state = state.clone();
                let indexes = req.entries.iter().map(|e| e.log_id.index).collect();
                state
                    .appends
                    .lock()
                    .unwrap()
                    .push((req.prev_log_id.map(|l| l.index), indexes));
                async move {
                    let now = state.inflight.fetch_add(1, Ordering::SeqCst) + 1;
                    state.max_inflight.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(state.append_delay).await;
                    state.inflight.fetch_sub(1, Ordering::SeqCst);
                    Ok(Ok(req.entries.last().map(|e| e.log_id).or(req.prev_log_id)))
                }
            })
            // Like Raft::stream_append: later requests start before earlier finish.
            .buffered(64)
            .boxed()
    }

    fn vote(
        &self,
        req: VoteRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<VoteResponse<TypeConfig>, HandlerError>> {
        let state = self.0.clone();
        async move {
            tokio::time::sleep(state.vote_delay).await;
            // The answer names the group (as the term) and the request (index).
            let index = req.last_log_id.map_or(0, |l| l.index);
            Ok(VoteResponse::new(
                req.vote,
                Some(log_id(state.group, index)),
                true,
            ))
        }
        .boxed()
    }

    fn pre_vote(
        &self,
        req: VoteRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<VoteResponse<TypeConfig>, HandlerError>> {
        self.vote(req)
    }

    fn install_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<'static, Result<SnapshotResponse<TypeConfig>, HandlerError>> {
        let ok = snapshot.snapshot.as_slice() == b"snapshot bytes";
        async move {
            if ok {
                Ok(SnapshotResponse::new(vote))
            } else {
                Err(HandlerError("wrong snapshot bytes".to_string()))
            }
        }
        .boxed()
    }

    fn transfer_leader(
        &self,
        _req: TransferLeaderRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<TransferLeaderResponse<TypeConfig>, HandlerError>> {
        async { Ok(Ok(())) }.boxed()
    }
}
