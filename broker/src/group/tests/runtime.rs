//! The async runtime: deferred responses, durability and reload, with paused time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::support::config;
use crate::group::store::MemoryStore;
use crate::group::{ClientInfo, GroupConfig, GroupCoordinator, GroupStore};

pub(crate) fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

pub(crate) fn start(cfg: GroupConfig) -> (GroupCoordinator, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let c = GroupCoordinator::start(store.clone() as Arc<dyn GroupStore>, cfg).unwrap();
    (c, store)
}

pub(crate) fn client() -> ClientInfo {
    ClientInfo {
        client_id: "rdkafka".into(),
        client_host: "/10.0.0.1".into(),
    }
}

pub(crate) fn join_req(group: &str, member_id: &str) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = s("range");
    protocol.metadata = Bytes::from_static(b"sub");
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(s(group));
    req.member_id = s(member_id);
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = 30_000;
    req.protocol_type = s("consumer");
    req.protocols = vec![protocol];
    req
}

/// JoinGroup v5 with the MEMBER_ID_REQUIRED round trip.
async fn join_v5(c: &GroupCoordinator, group: &str) -> JoinGroupResponse {
    let first = c.join_group(join_req(group, ""), 5, &client()).await;
    assert_eq!(first.error_code, 79);
    assert!(first.member_id.as_str().starts_with("rdkafka-"));
    c.join_group(join_req(group, first.member_id.as_str()), 5, &client())
        .await
}

pub(crate) fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assign: &[(&str, &'static [u8])],
) -> SyncGroupRequest {
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(s(group));
    req.member_id = s(member);
    req.generation_id = generation;
    req.assignments = assign
        .iter()
        .map(|(m, a)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = s(m);
            x.assignment = Bytes::from_static(a);
            x
        })
        .collect();
    req
}

pub(crate) fn commit_req(
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(i32, i64)],
) -> OffsetCommitRequest {
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(s("t"));
    topic.partitions = offsets
        .iter()
        .map(|(p, o)| {
            let mut x = OffsetCommitRequestPartition::default();
            x.partition_index = *p;
            x.committed_offset = *o;
            x.committed_leader_epoch = 2;
            x.committed_metadata = Some(s("meta"));
            x
        })
        .collect();
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(s(group));
    req.generation_id_or_member_epoch = generation;
    req.member_id = s(member);
    req.topics = vec![topic];
    req
}

pub(crate) fn fetch_v3(group: &str, partitions: &[i32]) -> OffsetFetchRequest {
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = TopicName(s("t"));
    topic.partition_indexes = partitions.to_vec();
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(s(group));
    req.topics = Some(vec![topic]);
    req
}

/// (partition, offset) pairs of a v1–7 OffsetFetch response.
fn offsets_of(resp: &OffsetFetchResponse) -> Vec<(i32, i64)> {
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn two_members_join_concurrently_and_sync() {
    let (c, store) = start(GroupConfig::default()); // 3 s initial delay gathers both
    let (a, b) = tokio::join!(join_v5(&c, "g"), join_v5(&c, "g"));
    assert_eq!((a.error_code, b.error_code), (0, 0));
    assert_eq!(a.generation_id, 1);
    assert_eq!(a.generation_id, b.generation_id);
    assert_eq!(a.leader, b.leader);
    let (leader, follower) = if a.leader == a.member_id {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    assert_eq!(
        leader.protocol_name.as_ref().map(|p| p.as_str()),
        Some("range")
    );
    let (l, f) = (leader.member_id.as_str(), follower.member_id.as_str());
    let assignment: &[(&str, &'static [u8])] = &[(l, b"L"), (f, b"F")];
    let (fs, ls) = tokio::join!(c.sync_group(sync_req("g", f, 1, &[]), 3), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.sync_group(sync_req("g", l, 1, assignment), 3).await
    });
    assert_eq!((fs.error_code, ls.error_code), (0, 0));
    assert_eq!(fs.assignment.as_ref(), b"F");
    assert_eq!(ls.assignment.as_ref(), b"L");
    // The generation was persisted.
    assert!(!store.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn commit_then_fetch_and_reload() {
    let (c, store) = start(config());
    let resp = c
        .offset_commit(commit_req("g", -1, "", &[(0, 10), (1, 20)]), 8)
        .await;
    let codes: Vec<i16> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 0]);
    let fetched = c.offset_fetch(fetch_v3("g", &[0, 1, 2]), 3).await;
    assert_eq!(offsets_of(&fetched), vec![(0, 10), (1, 20), (2, -1)]);
    let mut group = OffsetFetchRequestGroup::default();
    group.group_id = GroupId(s("g"));
    group.topics = None;
    let mut req = OffsetFetchRequest::default();
    req.groups = vec![group];
    let v8 = c.offset_fetch(req.clone(), 8).await;
    let p = &v8.groups[0].topics[0].partitions;
    assert_eq!(
        (p[0].committed_offset, p[0].committed_leader_epoch),
        (10, 2)
    );
    assert_eq!(p[1].metadata.as_ref().map(|m| m.as_str()), Some("meta"));
    // A coordinator started over the same store sees the same offsets.
    drop(c);
    let reloaded = GroupCoordinator::start(store.clone() as Arc<dyn GroupStore>, config()).unwrap();
    let again = reloaded.offset_fetch(req, 8).await;
    assert_eq!(again.groups, v8.groups);
    let listed = reloaded.list_groups(ListGroupsRequest::default(), 4).await;
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_state.as_str(), "Empty");
}

#[tokio::test(start_paused = true)]
async fn failed_append_is_not_acknowledged() {
    let (c, store) = start(config());
    store.set_failing(true);
    let resp = c
        .offset_commit(commit_req("g", -1, "", &[(0, 10)]), 2)
        .await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 15);
    let fetched = c.offset_fetch(fetch_v3("g", &[0]), 3).await;
    assert_eq!(offsets_of(&fetched), vec![(0, -1)]);
    store.set_failing(false);
    let resp = c
        .offset_commit(commit_req("g", -1, "", &[(0, 11)]), 2)
        .await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        offsets_of(&c.offset_fetch(fetch_v3("g", &[0]), 3).await),
        vec![(0, 11)]
    );
}

#[tokio::test(start_paused = true)]
async fn member_commit_heartbeat_leave_and_session_expiry() {
    let (c, _store) = start(config());
    let joined = c.join_group(join_req("g", ""), 3, &client()).await;
    assert_eq!(joined.error_code, 0);
    let me = joined.member_id.as_str().to_owned();
    let synced = c.sync_group(sync_req("g", &me, 1, &[(&me, b"A")]), 3).await;
    assert_eq!(synced.assignment.as_ref(), b"A");
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(s("g"));
    hb.member_id = s(&me);
    hb.generation_id = 1;
    assert_eq!(c.heartbeat(hb.clone(), 3).await.error_code, 0);
    let commit = c.offset_commit(commit_req("g", 1, &me, &[(0, 5)]), 7).await;
    assert_eq!(commit.topics[0].partitions[0].error_code, 0);
    let stale = c.offset_commit(commit_req("g", 0, &me, &[(0, 6)]), 7).await;
    assert_eq!(stale.topics[0].partitions[0].error_code, 22);
    // No heartbeat for longer than the session timeout: the member is gone.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(c.heartbeat(hb, 3).await.error_code, 25);
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![GroupId(s("g"))];
    let d = c.describe_groups(describe, 5).await;
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    // Leaving an unknown member: per-member error from v3, top level before.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s("g"));
    leave.member_id = s(&me);
    assert_eq!(c.leave_group(leave, 1).await.error_code, 25);
}

#[tokio::test(start_paused = true)]
async fn delete_groups_and_offsets_through_the_store() {
    let (c, store) = start(config());
    c.offset_commit(commit_req("g", -1, "", &[(0, 1), (1, 2)]), 2)
        .await;
    let mut od = OffsetDeleteRequest::default();
    od.group_id = GroupId(s("g"));
    let mut topic =
        kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default();
    topic.name = TopicName(s("t"));
    let mut part =
        kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default();
    part.partition_index = 1;
    topic.partitions = vec![part];
    od.topics = vec![topic];
    let resp = c.offset_delete(od, 0).await;
    assert_eq!(
        (resp.error_code, resp.topics[0].partitions[0].error_code),
        (0, 0)
    );
    assert_eq!(
        offsets_of(&c.offset_fetch(fetch_v3("g", &[0, 1]), 3).await),
        vec![(0, 1), (1, -1)]
    );
    let mut dg = DeleteGroupsRequest::default();
    dg.groups_names = vec![GroupId(s("g")), GroupId(s("nope"))];
    let resp = c.delete_groups(dg, 2).await;
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 69]);
    assert!(c
        .list_groups(ListGroupsRequest::default(), 3)
        .await
        .groups
        .is_empty());
    let reloaded = GroupCoordinator::start(store.clone() as Arc<dyn GroupStore>, config()).unwrap();
    assert!(reloaded
        .list_groups(ListGroupsRequest::default(), 3)
        .await
        .groups
        .is_empty());
}

/// Appends that become durable in reverse order: the first waits longer.
#[derive(Debug, Default)]
struct SlowFirstStore {
    calls: std::sync::atomic::AtomicU64,
}

impl GroupStore for SlowFirstStore {
    fn append(&self, _records: Vec<crate::group::Record>) -> crate::group::AppendFuture {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let delay = Duration::from_millis(if n == 0 { 50 } else { 1 });
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(())
        })
    }

    fn load(&self) -> Result<Vec<crate::group::Record>, crate::group::GroupStoreError> {
        Ok(Vec::new())
    }
}

#[tokio::test(start_paused = true)]
async fn memory_follows_log_order_when_appends_resolve_out_of_order() {
    let store: Arc<dyn GroupStore> = Arc::new(SlowFirstStore::default());
    let c = GroupCoordinator::start(store, config()).unwrap();
    let (first, second) = tokio::join!(
        c.offset_commit(commit_req("g", -1, "", &[(0, 1)]), 2),
        async {
            tokio::task::yield_now().await;
            c.offset_commit(commit_req("g", -1, "", &[(0, 2)]), 2).await
        }
    );
    assert_eq!(first.topics[0].partitions[0].error_code, 0);
    assert_eq!(second.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        offsets_of(&c.offset_fetch(fetch_v3("g", &[0]), 3).await),
        vec![(0, 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn partition_check_rejects_unknown_partitions() {
    let (c, _) = start(config());
    c.set_partition_check(crate::group::PartitionCheck(Arc::new(|_, p| p == 0)));
    let resp = c
        .offset_commit(commit_req("g", -1, "", &[(0, 1), (5, 1)]), 2)
        .await;
    let codes: Vec<i16> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 3]);
}

/// Appends that become durable only when the test opens the gate.
#[derive(Debug)]
struct GatedStore {
    gate: Arc<tokio::sync::Semaphore>,
}

impl GroupStore for GatedStore {
    fn append(&self, _records: Vec<crate::group::Record>) -> crate::group::AppendFuture {
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.acquire().await.expect("gate open").forget();
            Ok(())
        })
    }

    fn load(&self) -> Result<Vec<crate::group::Record>, crate::group::GroupStoreError> {
        Ok(Vec::new())
    }
}

/// With `max_pending_writes` writes waiting on the store, a further commit waits
/// for room (counted), without holding the coordinator's lock: reads are served
/// meanwhile, and every commit completes once the store catches up.
#[tokio::test(start_paused = true)]
async fn the_write_queue_is_bounded_and_waits_outside_the_lock() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let store: Arc<dyn GroupStore> = Arc::new(GatedStore { gate: gate.clone() });
    let cfg = GroupConfig {
        max_pending_writes: 2,
        ..config()
    };
    let counters = cfg.counters.clone();
    let c = Arc::new(GroupCoordinator::start(store, cfg).unwrap());
    let commits: Vec<_> = (0..6)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.offset_commit(commit_req(&format!("g{i}"), -1, "", &[(0, i)]), 2)
                    .await
            })
        })
        .collect();
    while counters.waited.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // The lock is free: a read is answered while commits wait for room.
    assert_eq!(
        offsets_of(&c.offset_fetch(fetch_v3("g0", &[0]), 3).await),
        vec![(0, -1)]
    );
    assert!(commits.iter().all(|t| !t.is_finished()));
    gate.add_permits(100);
    for (i, t) in commits.into_iter().enumerate() {
        let resp = t.await.unwrap();
        assert_eq!(resp.topics[0].partitions[0].error_code, 0, "commit {i}");
    }
    assert_eq!(
        offsets_of(&c.offset_fetch(fetch_v3("g5", &[0]), 3).await),
        vec![(0, 5)]
    );
}

/// A static member that stops heart-beating is gone within one coordinator
/// tick of its session deadline, so its group can be deleted right then
/// (librdkafka test 0102 deletes it 6 s after the last heartbeat of a 6 s
/// session; Weir used to answer NON_EMPTY_GROUP for up to a 100 ms tick more).
#[tokio::test(start_paused = true)]
async fn a_silent_static_member_expires_within_a_tick_of_its_deadline() {
    let (c, _store) = start(config());
    let mut join = join_req("solo", "");
    join.group_instance_id = Some(s("i1"));
    join.session_timeout_ms = 6_000;
    let joined = c.join_group(join, 5, &client()).await;
    assert_eq!(joined.error_code, 0);
    let me = joined.member_id.as_str().to_owned();
    // Off the tick grid: the deadline falls between two ticks.
    tokio::time::sleep(Duration::from_millis(37)).await;
    let synced = c
        .sync_group(sync_req("solo", &me, 1, &[(&me, b"A")]), 3)
        .await;
    assert_eq!(synced.error_code, 0);
    let delete = || {
        let mut d = DeleteGroupsRequest::default();
        d.groups_names = vec![GroupId(s("solo"))];
        d
    };
    tokio::time::sleep(Duration::from_millis(5_990)).await;
    assert_eq!(
        c.delete_groups(delete(), 2).await.results[0].error_code,
        68,
        "NON_EMPTY_GROUP before the deadline"
    );
    // Exactly at the deadline, before any tick: DeleteGroups expires the
    // overdue member itself (librdkafka test 0081 deletes right then).
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        c.delete_groups(delete(), 2).await.results[0].error_code,
        0,
        "still a member at its deadline"
    );
}
