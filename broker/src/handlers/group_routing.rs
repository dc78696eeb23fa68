//! Group requests naming several groups (OffsetFetch v8+, DescribeGroups,
//! DeleteGroups): each group goes to its coordinator on this node (the
//! leader of its `__consumer_offsets` partition), and a group coordinated
//! elsewhere gets NOT_COORDINATOR in its own slot.

use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};

use super::not_coordinator;
use crate::broker::Broker;

/// OffsetFetch: one group before v8, any number from v8.
pub async fn offset_fetch(
    b: &Broker,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    // A read: the coordinator's leadership is confirmed by a quorum first
    // ([`Broker::coordinator_for_read`]).
    if version < 8 {
        return match b.coordinator_for_read(&req.group_id.0).await {
            Some(g) => g.offset_fetch(req, version).await,
            None => not_coordinator::offset_fetch(&req, version),
        };
    }
    let mut out = OffsetFetchResponse::default();
    for group in &req.groups {
        let mut one = req.clone();
        one.groups = vec![group.clone()];
        let r = match b.coordinator_for_read(&group.group_id.0).await {
            Some(g) => g.offset_fetch(one, version).await,
            None => not_coordinator::offset_fetch(&one, version),
        };
        out.groups.extend(r.groups);
    }
    out
}

/// DescribeGroups.
pub async fn describe_groups(
    b: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut out = DescribeGroupsResponse::default();
    for group in &req.groups {
        let mut one = req.clone();
        one.groups = vec![group.clone()];
        // A read, as OffsetFetch: confirmed by a quorum first (found from
        // outside: a cut-off former coordinator described the group as its
        // own for 3 s into the cut and 2 s after the heal).
        let r = match b.coordinator_for_read(&group.0).await {
            Some(g) => g.describe_groups(one, version).await,
            None => not_coordinator::describe_groups(&one),
        };
        out.groups.extend(r.groups);
    }
    out
}

/// DeleteGroups.
pub async fn delete_groups(
    b: &Broker,
    req: DeleteGroupsRequest,
    version: i16,
) -> DeleteGroupsResponse {
    let mut out = DeleteGroupsResponse::default();
    for group in &req.groups_names {
        let mut one = req.clone();
        one.groups_names = vec![group.clone()];
        let r = match b.coordinator(&group.0) {
            Some(g) => g.delete_groups(one, version).await,
            None => not_coordinator::delete_groups(&one),
        };
        out.results.extend(r.results);
    }
    out
}
