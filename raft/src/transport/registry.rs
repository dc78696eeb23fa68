//! The node-side table of the groups this node serves: group id → the handler
//! that runs the group's RPCs (its `openraft::Raft`, or a fake in tests).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use openraft::raft::{
    AppendEntriesRequest, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::Raft;

use bytes::Bytes;

use super::message::{Snapshot, SnapshotData};
use crate::group::{LeaderNotice, Offsets, ProposeError};
use crate::types::{TypeConfig, Vote};

/// A group's Raft failed to run a request (it is stopping or stopped).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HandlerError(pub(crate) String);

/// Runs the RPCs a group receives. Implemented for `openraft::Raft` of any state
/// machine whose snapshots are [`SnapshotData`]; tests implement it with fakes.
///
/// Object safe (boxed futures) so that the registry holds groups of different
/// state machine types side by side.
pub(crate) trait GroupHandler: Send + Sync + 'static {
    /// Runs a stream of AppendEntries of one leader, in order, answering each in
    /// order. Entries of a request are submitted to Raft before those of the next
    /// are, while earlier ones may still be flushing (`Raft::stream_append`). The
    /// output ends after the first error.
    fn append_stream(
        &self,
        input: BoxStream<'static, AppendEntriesRequest<TypeConfig>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<TypeConfig>, HandlerError>>;

    /// Runs a RequestVote.
    fn vote(
        &self,
        req: VoteRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<VoteResponse<TypeConfig>, HandlerError>>;

    /// Runs a pre-vote: would this node vote so? Changes nothing.
    fn pre_vote(
        &self,
        req: VoteRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<VoteResponse<TypeConfig>, HandlerError>>;

    /// Installs a whole snapshot sent by the leader of `vote`.
    fn install_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<'static, Result<SnapshotResponse<TypeConfig>, HandlerError>>;

    /// Runs a leader's request that this node take over.
    fn transfer_leader(
        &self,
        req: TransferLeaderRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<TransferLeaderResponse<TypeConfig>, HandlerError>>;

    /// Proposes a batch a follower forwarded, answering once it is committed.
    /// A bare Raft instance takes no proposals: only groups do.
    fn propose(&self, batch: Bytes) -> BoxFuture<'static, Result<Offsets, ProposeError>> {
        drop(batch);
        async { Err(ProposeError::NotLeader { leader: None }) }.boxed()
    }

    /// Reads batches of the group's partition log for a follower installing
    /// a snapshot (see [`super::message::ReadLogRequest`]). A bare Raft
    /// instance has no partition log to read.
    fn read_log(
        &self,
        _req: super::message::ReadLogRequest,
    ) -> Result<super::message::LogChunk, String> {
        Err("this group serves no partition log".to_string())
    }
}

/// Hears the leadership notices peers send (see [`LeaderNotice`]).
pub(crate) type NoticeHandler = Arc<dyn Fn(Vec<LeaderNotice>) + Send + Sync>;

fn fatal(e: impl fmt::Display) -> HandlerError {
    HandlerError(e.to_string())
}

impl<SM> GroupHandler for Raft<TypeConfig, SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    fn append_stream(
        &self,
        input: BoxStream<'static, AppendEntriesRequest<TypeConfig>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<TypeConfig>, HandlerError>> {
        self.stream_append(input).map(|r| r.map_err(fatal)).boxed()
    }

    fn vote(
        &self,
        req: VoteRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<VoteResponse<TypeConfig>, HandlerError>> {
        let raft = self.clone();
        async move { Raft::vote(&raft, req).await.map_err(fatal) }.boxed()
    }

    fn pre_vote(
        &self,
        req: VoteRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<VoteResponse<TypeConfig>, HandlerError>> {
        let raft = self.clone();
        async move { Raft::pre_vote(&raft, req).await.map_err(fatal) }.boxed()
    }

    fn install_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<'static, Result<SnapshotResponse<TypeConfig>, HandlerError>> {
        let raft = self.clone();
        async move {
            raft.install_full_snapshot(vote, snapshot)
                .await
                .map_err(fatal)
        }
        .boxed()
    }

    fn transfer_leader(
        &self,
        req: TransferLeaderRequest<TypeConfig>,
    ) -> BoxFuture<'static, Result<TransferLeaderResponse<TypeConfig>, HandlerError>> {
        let raft = self.clone();
        async move { raft.handle_transfer_leader(req).await.map_err(fatal) }.boxed()
    }
}

/// The groups a node serves. Cheap to clone (shared table).
///
/// A std `RwLock`: lookups are a hash probe and an `Arc` clone, never held across
/// an `.await`; writes (a group added or removed) are rare.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    groups: Arc<RwLock<HashMap<u64, Arc<dyn GroupHandler>>>>,
    notices: Arc<RwLock<Option<NoticeHandler>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.groups.read().map(|g| g.len()).unwrap_or(0);
        f.debug_struct("Registry").field("groups", &n).finish()
    }
}

impl Registry {
    /// Serves `group` with `handler` from now on (replacing an earlier handler).
    pub(crate) fn insert(&self, group: u64, handler: Arc<dyn GroupHandler>) {
        self.groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group, handler);
    }

    /// Stops serving `group`; its requests get `UnknownGroup` from now on.
    pub(crate) fn remove(&self, group: u64) -> bool {
        self.groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&group)
            .is_some()
    }

    /// Sets who hears the leadership notices of peers.
    pub(crate) fn set_notices(&self, handler: NoticeHandler) {
        *self.notices.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Hands peers' leadership notices to the handler, if one is set.
    pub(crate) fn notify(&self, notices: Vec<LeaderNotice>) {
        let handler = self
            .notices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(h) = handler {
            h(notices);
        }
    }

    /// The handler of `group`, if this node serves it.
    pub(crate) fn get(&self, group: u64) -> Option<Arc<dyn GroupHandler>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .cloned()
    }
}
