//! openraft's network for one group, over the node's shared links.
//!
//! [`NetworkFactory`] is what a group's `Raft::new` takes; each
//! [`GroupNetwork`] it makes sends one group's RPCs to one node, resolving the
//! link to that node per call (so a re-addressed or reconnected node is picked
//! up, and every group shares the one connection).
//!
//! Why not `openraft-multi`: its `GroupNetworkAdapter` is this binding of
//! (target, group) to a shared router and nothing more (230 lines, no
//! receive-side dispatch, no batching), and it implements `RaftNetworkV2`
//! without `stream_append`, so each (group, follower) would replicate one
//! AppendEntries at a time. Being a foreign type, its `stream_append` cannot be
//! overridden. Implementing `RaftNetworkV2` here costs the same lines and gives
//! the pipelined `stream_append` and the byte budget below.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesOrdered};
use futures_util::{FutureExt, Stream, StreamExt};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::frame::Kind;
use super::message::{Snapshot, SnapshotData, SnapshotRequest, WireError};
use super::peer::LinkError;
use super::Peers;
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// The least time an AppendEntries (a heartbeat, or a part of a pipeline
/// without progress) is given before it counts as failed. openraft offers
/// 0.75 of the heartbeat interval (112 ms): over links with a longer round
/// trip (distant zones, a congested network) every AppendEntries timed out,
/// nothing committed and no leader was replaced (found from outside, links
/// of 140 ms). A follower that is gone is still found at once when its
/// connection fails; one that swallows bytes, within this.
pub(crate) const APPEND_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

/// The time an AppendEntries is given: openraft's, at least
/// [`APPEND_TIMEOUT_FLOOR`].
fn append_timeout(option: &RPCOption) -> Duration {
    option.soft_ttl().max(APPEND_TIMEOUT_FLOOR)
}

type Append = AppendEntriesRequest<TypeConfig>;
type RpcError = RPCError<TypeConfig>;
type AppendOutcome = Result<StreamAppendResult<TypeConfig>, RpcError>;

/// Makes the [`GroupNetwork`]s of one group.
#[derive(Debug, Clone)]
pub(crate) struct NetworkFactory {
    pub(crate) peers: Arc<Peers>,
    pub(crate) group: u64,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> GroupNetwork {
        GroupNetwork {
            peers: self.peers.clone(),
            group: self.group,
            target,
            addr: node.addr.clone(),
        }
    }
}

/// One group's RPCs to one node.
#[derive(Debug, Clone)]
pub(crate) struct GroupNetwork {
    peers: Arc<Peers>,
    group: u64,
    target: u64,
    /// The address in the group's membership (empty: use the configured one).
    addr: String,
}

impl GroupNetwork {
    /// Sends `msg` as a `kind` request and decodes the answer.
    async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        kind: Kind,
        action: RPCTypes,
        msg: &T,
        timeout: Duration,
    ) -> Result<R, RpcError> {
        let link = self
            .peers
            .link(self.target, &self.addr)
            .map_err(|e| self.rpc_error(e, action))?;
        link.call(kind, self.group, msg, timeout)
            .await
            .map_err(|e| self.rpc_error(e, action))
    }

    /// What openraft should make of a failed call: back off (`Unreachable`),
    /// retry now (`Network`), or count a timeout.
    fn rpc_error(&self, e: LinkError, action: RPCTypes) -> RpcError {
        match e {
            LinkError::Timeout { timeout, .. } => RPCError::Timeout(Timeout {
                action,
                id: self.peers.node_id,
                target: self.target,
                timeout,
            }),
            LinkError::ConnectionLost { .. }
            | LinkError::Frame { .. }
            | LinkError::Remote {
                error: WireError::Busy(_) | WireError::PipelineReset(_),
                ..
            } => RPCError::Network(NetworkError::new(&e)),
            // Not reachable, no such group there (yet), its Raft stopped, or we
            // are shutting down: all worth a retry, none soon.
            _ => RPCError::Unreachable(Unreachable::new(&e)),
        }
    }

    /// Fails, unsent, an AppendEntries to a silent peer (see
    /// [`crate::Transport::set_silent`]).
    fn check_heard(&self) -> Result<(), RpcError> {
        if !self.peers.is_silent(self.target) {
            return Ok(());
        }
        let e = LinkError::Unreachable {
            node: self.target,
            addr: String::new(),
            reason: "it has not answered this node lately".to_string(),
            refused: false,
        };
        Err(RPCError::Unreachable(Unreachable::new(&e)))
    }

    /// Sends one AppendEntries (under the budget) as a `'static` future, for
    /// the pipeline.
    fn send_append(&self, req: Append, timeout: Duration) -> BoxFuture<'static, AppendOutcome> {
        let net = self.clone();
        async move {
            net.call(Kind::AppendEntries, RPCTypes::AppendEntries, &req, timeout)
                .await
        }
        .boxed()
    }
}

impl RaftNetworkV2<TypeConfig> for GroupNetwork {
    type SnapshotData = SnapshotData;

    /// One AppendEntries, sent as consecutive parts under the byte budget, one
    /// after the other. openraft's replication uses `stream_append`; this is
    /// for callers of the unary form.
    async fn append_entries(
        &mut self,
        rpc: Append,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcError> {
        self.check_heard()?;
        let mut acked: Option<Option<LogId>> = None;
        for part in split_by_budget(rpc, self.peers.config.append_budget_bytes) {
            let last = last_log_id(&part);
            let res = self.send_append(part, append_timeout(&option)).await;
            match (res, &acked) {
                (Ok(Ok(_)), _) => acked = Some(last),
                (Ok(Err(StreamAppendError::HigherVote(v))), _) => {
                    return Ok(AppendEntriesResponse::HigherVote(v))
                }
                (Ok(Err(StreamAppendError::Conflict(_))), None) => {
                    return Ok(AppendEntriesResponse::Conflict)
                }
                (Err(e), None) => return Err(e),
                // A later part failed: report what the earlier ones stored.
                (_, Some(done)) => return Ok(AppendEntriesResponse::PartialSuccess(*done)),
            }
        }
        Ok(AppendEntriesResponse::Success)
    }

    /// Pipelined AppendEntries: see [`Pipeline`].
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, AppendOutcome>, RpcError>>
    where
        S: Stream<Item = Append> + Send + Unpin + 'static,
    {
        if let Err(e) = self.check_heard() {
            return async move { Err(e) }.boxed();
        }
        let pipeline = Pipeline {
            net: self.clone(),
            input,
            input_done: false,
            parts: VecDeque::new(),
            inflight: FuturesOrdered::new(),
            window: self.peers.config.append_window.max(1),
            timeout: append_timeout(&option),
            progress: tokio::time::Instant::now(),
            stopped: false,
        };
        let stream = futures_util::stream::unfold(pipeline, |mut p| async move {
            p.next().await.map(|r| (r, p))
        });
        async move { Ok(stream.boxed()) }.boxed()
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        self.call(Kind::Vote, RPCTypes::Vote, &rpc, option.soft_ttl())
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        self.call(Kind::PreVote, RPCTypes::Vote, &rpc, option.soft_ttl())
            .await
    }

    /// The whole snapshot in one frame: snapshots of a partition group are
    /// small metadata (see [`SnapshotData`]). One over the frame cap fails.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let sending = self.call(
            Kind::Snapshot,
            RPCTypes::InstallSnapshot,
            &req,
            option.soft_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = sending => res.map_err(StreamingError::from),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RpcError> {
        self.call(
            Kind::TransferLeader,
            RPCTypes::TransferLeader,
            &req,
            option.soft_ttl(),
        )
        .await
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(self.peers.config.backoff()))
    }
}

/// The sending side of pipelined replication to one follower.
///
/// Up to `window` AppendEntries frames are in flight at once; their results
/// come back in request order (a [`FuturesOrdered`]), as openraft requires:
/// its replication task matches each `Ok(matching)` against its own queue of
/// sent ranges, and treats the first error (conflict, higher vote, RPC
/// failure) as the end of the stream, after which this yields nothing more.
/// Requests over the byte budget are split into consecutive parts first; each
/// part yields its own result, which openraft reads as a cumulative
/// acknowledgement (`Ok(last of part)`, a partial ack of the whole request).
///
/// The timeout (`soft_ttl`, 3/4 of openraft's heartbeat interval for streams)
/// is a progress timeout, as openraft advises for streams: it fails the stream
/// when requests are in flight and no result has come for that long. A
/// per-request deadline would also count the time a request waits behind the
/// earlier ones of the window on the follower.
struct Pipeline<S> {
    net: GroupNetwork,
    input: S,
    input_done: bool,
    /// Parts of split requests not sent yet.
    parts: VecDeque<Append>,
    inflight: FuturesOrdered<BoxFuture<'static, AppendOutcome>>,
    window: usize,
    timeout: Duration,
    /// When the last result came, or the window last went from idle to busy.
    progress: tokio::time::Instant,
    stopped: bool,
}

impl<S: Stream<Item = Append> + Unpin> Pipeline<S> {
    async fn next(&mut self) -> Option<AppendOutcome> {
        loop {
            if self.stopped {
                return None;
            }
            self.fill_window();
            let can_read =
                !self.input_done && self.parts.is_empty() && self.inflight.len() < self.window;
            let stalled = self.progress + self.timeout;
            tokio::select! {
                // Results first: openraft should hear of progress (or failure) at once.
                biased;
                Some(res) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.progress = tokio::time::Instant::now();
                    self.stopped = !matches!(res, Ok(Ok(_)));
                    return Some(res);
                }
                () = tokio::time::sleep_until(stalled), if !self.inflight.is_empty() => {
                    self.stopped = true;
                    let err = LinkError::Timeout { node: self.net.target, timeout: self.timeout };
                    return Some(Err(self.net.rpc_error(err, RPCTypes::AppendEntries)));
                }
                req = self.input.next(), if can_read => match req {
                    Some(req) => {
                        let budget = self.net.peers.config.append_budget_bytes;
                        self.parts.extend(split_by_budget(req, budget));
                    }
                    None => self.input_done = true,
                },
                else => return None,
            }
        }
    }

    /// Sends queued parts while the window has room.
    fn fill_window(&mut self) {
        while self.inflight.len() < self.window {
            let Some(part) = self.parts.pop_front() else {
                break;
            };
            if self.inflight.is_empty() {
                self.progress = tokio::time::Instant::now();
            }
            // The progress timeout above is what bounds a request; this only
            // reclaims one that can never be answered.
            let bound = self.timeout * (self.window as u32 + 1);
            self.inflight.push_back(self.net.send_append(part, bound));
        }
    }
}

/// The last log id an AppendEntries covers: its last entry's, or `prev_log_id`.
fn last_log_id(req: &Append) -> Option<LogId> {
    req.entries.last().map(|e| e.log_id).or(req.prev_log_id)
}

/// About what an entry adds to a frame: a data entry's batch bytes plus its log
/// id and framing; membership entries are small but variable, counted high.
fn entry_bytes(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(batch) => batch.0.len() + 32,
        EntryPayload::Blank => 32,
        EntryPayload::Membership(_) => 1024,
    }
}

/// Splits `req` into consecutive AppendEntries whose entries fit in `budget`
/// bytes each (an entry bigger than the budget goes alone). Each part carries
/// the same vote and commit; its `prev_log_id` is the last entry of the part
/// before it, so the follower checks and appends the parts one after the other.
pub(crate) fn split_by_budget(req: Append, budget: usize) -> Vec<Append> {
    if req.entries.iter().map(entry_bytes).sum::<usize>() <= budget {
        return vec![req];
    }
    let AppendEntriesRequest {
        vote,
        mut prev_log_id,
        entries,
        leader_commit,
    } = req;
    let mut parts = Vec::new();
    let mut current: Vec<Entry> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry_bytes(&entry);
        if !current.is_empty() && bytes + size > budget {
            let next_prev = current.last().map(|e| e.log_id);
            let entries = std::mem::take(&mut current);
            parts.push(AppendEntriesRequest {
                vote,
                prev_log_id,
                entries,
                leader_commit,
            });
            prev_log_id = next_prev;
            bytes = 0;
        }
        bytes += size;
        current.push(entry);
    }
    parts.push(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries: current,
        leader_commit,
    });
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{log_id, RecordBatch};
    use bytes::Bytes;
    use openraft::entry::RaftEntry;

    fn batch_entry(index: u64, len: usize) -> Entry {
        Entry::new_normal(log_id(1, index), RecordBatch(Bytes::from(vec![7u8; len])))
    }

    #[test]
    fn small_requests_are_not_split() {
        let req = Append {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 4)),
            entries: (5..10).map(|i| batch_entry(i, 100)).collect(),
            leader_commit: None,
        };
        let parts = split_by_budget(req, 10_000);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].entries.len(), 5);
    }

    #[test]
    fn big_requests_split_into_consecutive_parts_under_the_budget() {
        let req = Append {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 4)),
            entries: vec![
                batch_entry(5, 400),
                batch_entry(6, 400),
                batch_entry(7, 5000), // over the budget alone
                batch_entry(8, 100),
                Entry::new_blank(log_id(1, 9)),
            ],
            leader_commit: Some(log_id(1, 3)),
        };
        let parts = split_by_budget(req, 1000);
        let shape: Vec<(Option<u64>, Vec<u64>)> = parts
            .iter()
            .map(|p| {
                (
                    p.prev_log_id.map(|l| l.index),
                    p.entries.iter().map(|e| e.log_id.index).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (Some(4), vec![5, 6]),
                (Some(6), vec![7]),
                (Some(7), vec![8, 9])
            ]
        );
        assert!(parts.iter().all(|p| p.leader_commit == Some(log_id(1, 3))));
    }
}
