//! The answers of a node that does not coordinate groups now (it does not
//! lead `__consumer_offsets`, or has not loaded its term's groups yet):
//! NOT_COORDINATOR in the place each response version carries an error, so
//! the client looks the coordinator up again (FindCoordinator).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

/// Kafka's NOT_COORDINATOR.
pub const NOT_COORDINATOR: i16 = 16;

/// JoinGroup.
pub fn join(version: i16) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = NOT_COORDINATOR;
    r.generation_id = -1;
    // Not nullable before v7.
    if version < 7 {
        r.protocol_name = Some(StrBytes::default());
    }
    r
}

/// SyncGroup.
pub fn sync() -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(NOT_COORDINATOR)
}

/// Heartbeat.
pub fn heartbeat() -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(NOT_COORDINATOR)
}

/// LeaveGroup.
pub fn leave() -> LeaveGroupResponse {
    LeaveGroupResponse::default().with_error_code(NOT_COORDINATOR)
}

/// OffsetCommit: every partition of the request.
pub fn offset_commit(req: &OffsetCommitRequest) -> OffsetCommitResponse {
    offset_commit_refused(req, NOT_COORDINATOR)
}

/// OffsetCommit answered `code` for every partition of the request.
pub fn offset_commit_refused(req: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch: per partition (v0–1), at the top (v2–7) or per group (v8+).
pub fn offset_fetch(req: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(NOT_COORDINATOR)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req
        .topics
        .iter()
        .flatten()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(-1)
                                .with_error_code(NOT_COORDINATOR)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_error_code(NOT_COORDINATOR)
        .with_topics(topics)
}

/// OffsetDelete.
pub fn offset_delete() -> OffsetDeleteResponse {
    OffsetDeleteResponse::default().with_error_code(NOT_COORDINATOR)
}

/// DescribeGroups: every group named.
pub fn describe_groups(req: &DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .iter()
        .map(|g| {
            DescribedGroup::default()
                .with_group_id(g.clone())
                .with_error_code(NOT_COORDINATOR)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// DeleteGroups: every group named.
pub fn delete_groups(req: &DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .iter()
        .map(|g| {
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(NOT_COORDINATOR)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
