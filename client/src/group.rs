//! Classic consumer-group membership: JoinGroup (with the member-id-required
//! retry), SyncGroup (the leader runs the range assignor), a background
//! Heartbeat task and LeaveGroup.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use crate::assignor::{self, PROTOCOL_TYPE, RANGE};
use crate::cluster::Cluster;
use crate::error::{check, codes, Error, Result};
use crate::offsets::coordinator_moved;
use crate::topic_partition::TopicPartition;

/// Timing of group membership.
#[derive(Debug, Clone)]
pub(crate) struct GroupTimings {
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
}

/// `rejoin` value meaning "in the group, nothing to do".
const STABLE: i32 = 0;
/// `rejoin` value meaning "not joined yet".
const NOT_JOINED: i32 = -1;

/// This consumer's membership in one group.
#[derive(Debug)]
pub(crate) struct Membership {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    /// STABLE, NOT_JOINED, or the error code the heartbeat saw (27, 22, 25).
    rejoin: Arc<AtomicI32>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Whether a Kafka error code means "rejoin the group".
pub(crate) fn is_rebalance_code(code: Option<i16>) -> bool {
    matches!(
        code,
        Some(codes::REBALANCE_IN_PROGRESS | codes::ILLEGAL_GENERATION | codes::UNKNOWN_MEMBER_ID)
    )
}

impl Membership {
    pub(crate) fn new(group_id: &str) -> Self {
        Self {
            group_id: group_id.to_string(),
            member_id: String::new(),
            generation: -1,
            rejoin: Arc::new(AtomicI32::new(NOT_JOINED)),
            heartbeat: None,
        }
    }

    /// Whether a (re)join is due.
    pub(crate) fn needs_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::Relaxed) != STABLE
    }

    /// Marks the membership stale after a rebalance error seen elsewhere.
    pub(crate) fn request_rejoin(&self, code: i16) {
        self.rejoin.store(i32::from(code), Ordering::Relaxed);
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// Joins (or rejoins) the group subscribed to `topics`; returns our assignment.
    pub(crate) async fn join(
        &mut self,
        cluster: &Arc<Cluster>,
        timings: &GroupTimings,
        topics: &[String],
    ) -> Result<Vec<TopicPartition>> {
        self.stop_heartbeat();
        if self.rejoin.load(Ordering::Relaxed) == i32::from(codes::UNKNOWN_MEMBER_ID) {
            self.member_id.clear();
        }
        let metadata = assignor::encode_subscription(topics)?;
        let mut attempts = 0u32;
        loop {
            match self.join_once(cluster, timings, metadata.clone()).await {
                Ok(assignment) => {
                    self.rejoin.store(STABLE, Ordering::Relaxed);
                    self.heartbeat = Some(tokio::spawn(heartbeat_loop(
                        cluster.clone(),
                        self.group_id.clone(),
                        self.member_id.clone(),
                        self.generation,
                        timings.heartbeat_interval,
                        self.rejoin.clone(),
                    )));
                    tracing::info!(group = %self.group_id, generation = self.generation,
                        member = %self.member_id, partitions = assignment.len(), "joined group");
                    return Ok(assignment);
                }
                Err(e) => {
                    attempts += 1;
                    if attempts > 50 {
                        return Err(e);
                    }
                    match e.kafka_code() {
                        Some(codes::MEMBER_ID_REQUIRED) => continue,
                        Some(codes::UNKNOWN_MEMBER_ID) => self.member_id.clear(),
                        Some(codes::ILLEGAL_GENERATION | codes::REBALANCE_IN_PROGRESS) => {}
                        _ if coordinator_moved(&e) => {
                            cluster.invalidate_coordinator(&self.group_id)
                        }
                        _ if e.is_retriable() => {}
                        _ => return Err(e),
                    }
                    tracing::debug!(group = %self.group_id, error = %e, "join failed; retrying");
                    tokio::time::sleep(cluster.config().retry_backoff).await;
                }
            }
        }
    }

    async fn join_once(
        &mut self,
        cluster: &Arc<Cluster>,
        timings: &GroupTimings,
        metadata: bytes::Bytes,
    ) -> Result<Vec<TopicPartition>> {
        let conn = cluster.coordinator(&self.group_id).await?;
        let mut proto = JoinGroupRequestProtocol::default();
        proto.name = s(RANGE);
        proto.metadata = metadata;
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(s(&self.group_id));
        req.session_timeout_ms = timings.session_timeout.as_millis() as i32;
        req.rebalance_timeout_ms = timings.rebalance_timeout.as_millis() as i32;
        req.member_id = s(&self.member_id);
        req.protocol_type = s(PROTOCOL_TYPE);
        req.protocols = vec![proto];
        let resp = conn
            .send_with_extra_timeout(&req, timings.rebalance_timeout)
            .await?;
        if resp.error_code == codes::MEMBER_ID_REQUIRED {
            self.member_id = resp.member_id.to_string();
        }
        check(
            resp.error_code,
            "JoinGroup",
            format!("group {}", self.group_id),
            None,
        )?;
        self.member_id = resp.member_id.to_string();
        self.generation = resp.generation_id;
        let protocol = resp.protocol_name.clone().unwrap_or_else(|| s(RANGE));
        let assignments = if resp.leader == resp.member_id {
            leader_assignments(cluster, &resp.members).await?
        } else {
            Vec::new()
        };
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(&self.group_id));
        sync.generation_id = self.generation;
        sync.member_id = s(&self.member_id);
        sync.protocol_type = Some(s(PROTOCOL_TYPE));
        sync.protocol_name = Some(protocol);
        sync.assignments = assignments;
        let resp = conn
            .send_with_extra_timeout(&sync, timings.rebalance_timeout)
            .await?;
        check(
            resp.error_code,
            "SyncGroup",
            format!("group {}", self.group_id),
            None,
        )?;
        assignor::decode_assignment(resp.assignment)
    }

    /// Leaves the group (best effort) and stops heartbeating.
    pub(crate) async fn leave(&mut self, cluster: &Cluster) -> Result<()> {
        self.stop_heartbeat();
        if self.member_id.is_empty() {
            return Ok(());
        }
        let conn = cluster.coordinator(&self.group_id).await?;
        let version = conn.version_for::<LeaveGroupRequest>()?;
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(s(&self.group_id));
        if version >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = s(&self.member_id);
            req.members = vec![m];
        } else {
            req.member_id = s(&self.member_id);
        }
        let resp = conn.send_versioned(&req, version, None).await?;
        self.member_id.clear();
        self.generation = -1;
        self.rejoin.store(NOT_JOINED, Ordering::Relaxed);
        check(
            resp.error_code,
            "LeaveGroup",
            format!("group {}", self.group_id),
            None,
        )
    }
}

/// The leader's job: decode subscriptions, look up partition counts, assign.
async fn leader_assignments(
    cluster: &Cluster,
    members: &[JoinGroupResponseMember],
) -> Result<Vec<SyncGroupRequestAssignment>> {
    let mut subs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in members {
        subs.insert(
            m.member_id.to_string(),
            assignor::decode_subscription(m.metadata.clone())?,
        );
    }
    let mut topics: Vec<String> = subs.values().flatten().cloned().collect();
    topics.sort();
    topics.dedup();
    let meta = cluster.fetch_metadata(Some(&topics), false).await?;
    let counts: HashMap<String, i32> = meta
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.partitions.len() as i32)))
        .collect();
    let plan = assignor::range_assign(&subs, &counts);
    plan.into_iter()
        .map(|(member, tps)| {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = s(&member);
            a.assignment = assignor::encode_assignment(&tps)?;
            Ok(a)
        })
        .collect()
}

async fn heartbeat_loop(
    cluster: Arc<Cluster>,
    group: String,
    member_id: String,
    generation: i32,
    interval: Duration,
    rejoin: Arc<AtomicI32>,
) {
    let mut req = HeartbeatRequest::default();
    req.group_id = GroupId(s(&group));
    req.generation_id = generation;
    req.member_id = s(&member_id);
    loop {
        tokio::time::sleep(interval).await;
        let result = match cluster.coordinator(&group).await {
            Ok(conn) => conn
                .send(&req)
                .await
                .and_then(|r| check(r.error_code, "Heartbeat", format!("group {group}"), None)),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {}
            Err(e) if is_rebalance_code(e.kafka_code()) => {
                tracing::info!(%group, error = %e, "rebalance needed");
                rejoin.store(i32::from(e.kafka_code().unwrap_or(0)), Ordering::Relaxed);
                return;
            }
            Err(e) if coordinator_moved(&e) => cluster.invalidate_coordinator(&group),
            Err(Error::Kafka { code, .. }) => {
                tracing::warn!(%group, code, "heartbeat failed; rejoining");
                rejoin.store(i32::from(code), Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::debug!(%group, error = %e, "heartbeat failed"),
        }
    }
}
