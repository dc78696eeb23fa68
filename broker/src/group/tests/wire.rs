//! Every response the coordinator builds encodes at every version it advertises, and the
//! advertised ranges stay inside the crate's.

use bytes::BytesMut;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message};

use super::runtime::{client, commit_req, fetch_v3, join_req, s, start, sync_req};
use super::support::config;
use crate::group::*;

fn encodes<T: Encodable>(resp: &T, version: i16, what: &str) {
    let mut buf = BytesMut::new();
    if let Err(e) = resp.encode(&mut buf, version) {
        panic!("{what} v{version} does not encode: {e}");
    }
}

fn within<T: Message>(range: (i16, i16)) {
    assert!(range.0 >= T::VERSIONS.min && range.1 <= T::VERSIONS.max);
}

#[test]
fn advertised_ranges_are_within_the_crate() {
    within::<JoinGroupRequest>(JOIN_GROUP_VERSIONS);
    within::<JoinGroupResponse>(JOIN_GROUP_VERSIONS);
    within::<SyncGroupRequest>(SYNC_GROUP_VERSIONS);
    within::<HeartbeatRequest>(HEARTBEAT_VERSIONS);
    within::<LeaveGroupRequest>(LEAVE_GROUP_VERSIONS);
    within::<OffsetCommitRequest>(OFFSET_COMMIT_VERSIONS);
    within::<OffsetCommitResponse>(OFFSET_COMMIT_VERSIONS);
    within::<OffsetFetchRequest>(OFFSET_FETCH_VERSIONS);
    within::<OffsetFetchResponse>(OFFSET_FETCH_VERSIONS);
    within::<ListGroupsRequest>(LIST_GROUPS_VERSIONS);
    within::<DescribeGroupsRequest>(DESCRIBE_GROUPS_VERSIONS);
    within::<DeleteGroupsRequest>(DELETE_GROUPS_VERSIONS);
    within::<OffsetDeleteRequest>(OFFSET_DELETE_VERSIONS);
}

fn versions(range: (i16, i16)) -> impl Iterator<Item = i16> {
    range.0..=range.1
}

#[tokio::test(start_paused = true)]
async fn membership_responses_encode_at_every_version() {
    let (c, _) = start(config());
    for v in versions(JOIN_GROUP_VERSIONS) {
        let group = format!("g{v}");
        let mut req = join_req(&group, "");
        if v >= 5 {
            req.group_instance_id = Some(s("static"));
        }
        let mut joined = c.join_group(req.clone(), v, &client()).await;
        encodes(&joined, v, "JoinGroup");
        if joined.error_code == 79 {
            req.member_id = joined.member_id.clone();
            joined = c.join_group(req, v, &client()).await;
            encodes(&joined, v, "JoinGroup");
        }
        assert_eq!(joined.error_code, 0, "v{v}");
        assert_eq!(joined.members.len(), 1);
        let bad = c.join_group(join_req(&group, "ghost"), v, &client()).await;
        encodes(&bad, v, "JoinGroup error");
        let me = joined.member_id.as_str().to_owned();
        let sv = v.min(SYNC_GROUP_VERSIONS.1);
        let mut sync = sync_req(&group, &me, joined.generation_id, &[(&me, b"x")]);
        if sv >= 3 && v >= 5 {
            sync.group_instance_id = Some(s("static"));
        }
        if sv >= 5 {
            sync.protocol_type = Some(s("consumer"));
            sync.protocol_name = Some(s("range"));
        }
        let synced = c.sync_group(sync, sv).await;
        assert_eq!(synced.error_code, 0, "v{v}");
        encodes(&synced, sv, "SyncGroup");
    }
    for v in versions(SYNC_GROUP_VERSIONS) {
        encodes(
            &c.sync_group(sync_req("g0", "ghost", 1, &[]), v).await,
            v,
            "SyncGroup error",
        );
    }
    for v in versions(HEARTBEAT_VERSIONS) {
        let mut hb = HeartbeatRequest::default();
        hb.group_id = GroupId(s("g0"));
        hb.member_id = s("ghost");
        encodes(&c.heartbeat(hb, v).await, v, "Heartbeat");
    }
    for v in versions(LEAVE_GROUP_VERSIONS) {
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(s("g0"));
        if v >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = s("ghost");
            m.group_instance_id = Some(s("static")).filter(|_| v >= 3);
            leave.members = vec![m];
        } else {
            leave.member_id = s("ghost");
        }
        let resp = c.leave_group(leave, v).await;
        encodes(&resp, v, "LeaveGroup");
    }
}

#[tokio::test(start_paused = true)]
async fn admin_and_offset_responses_encode_at_every_version() {
    let (c, _) = start(config());
    let joined = c.join_group(join_req("g", ""), 4, &client()).await;
    let joined = c
        .join_group(join_req("g", joined.member_id.as_str()), 4, &client())
        .await;
    let me = joined.member_id.as_str().to_owned();
    c.sync_group(sync_req("g", &me, 1, &[(&me, b"x")]), 3).await;
    for v in versions(OFFSET_COMMIT_VERSIONS) {
        let resp = c
            .offset_commit(commit_req("g", 1, &me, &[(0, i64::from(v))]), v)
            .await;
        assert_eq!(resp.topics[0].partitions[0].error_code, 0, "v{v}");
        encodes(&resp, v, "OffsetCommit");
    }
    for v in versions(OFFSET_FETCH_VERSIONS) {
        let resp = if v >= 8 {
            let mut g = OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s("g"));
            g.topics = None;
            let mut req = OffsetFetchRequest::default();
            req.groups = vec![g];
            c.offset_fetch(req, v).await
        } else {
            c.offset_fetch(fetch_v3("g", &[0, 1]), v).await
        };
        encodes(&resp, v, "OffsetFetch");
    }
    for v in versions(LIST_GROUPS_VERSIONS) {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req.states_filter = vec![s("Stable")];
        }
        let resp = c.list_groups(req, v).await;
        assert_eq!(resp.groups.len(), 1);
        encodes(&resp, v, "ListGroups");
        if v >= 5 {
            // KIP-848's filter by group type: every Weir group is classic
            // (the Java AdminClient's `withTypes(CLASSIC)` needs v5).
            let mut req = ListGroupsRequest::default();
            req.types_filter = vec![s("classic")];
            let resp = c.list_groups(req, v).await;
            assert_eq!(resp.groups.len(), 1);
            assert_eq!(resp.groups[0].group_type.as_str(), "classic");
            let mut req = ListGroupsRequest::default();
            req.types_filter = vec![s("consumer")];
            assert!(c.list_groups(req, v).await.groups.is_empty());
        }
    }
    for v in versions(DESCRIBE_GROUPS_VERSIONS) {
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![GroupId(s("g")), GroupId(s("missing"))];
        req.include_authorized_operations = v >= 3;
        let resp = c.describe_groups(req, v).await;
        assert_eq!(resp.groups[0].members[0].member_assignment.as_ref(), b"x");
        assert_eq!(resp.groups[1].group_state.as_str(), "Dead");
        encodes(&resp, v, "DescribeGroups");
    }
    for v in versions(DELETE_GROUPS_VERSIONS) {
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(s("g"))];
        let resp = c.delete_groups(req, v).await;
        assert_eq!(resp.results[0].error_code, 68);
        encodes(&resp, v, "DeleteGroups");
    }
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(s("missing"));
    let resp = c.offset_delete(req, 0).await;
    assert_eq!(resp.error_code, 69);
    encodes(&resp, 0, "OffsetDelete");
}
