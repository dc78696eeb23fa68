//! ListGroups, DescribeGroups and DeleteGroups.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};

use super::{owned, wire};
use crate::group::admin::{GroupDescription, CLASSIC_GROUP_TYPE};
use crate::group::coordinator::GroupCoordinator;
use crate::group::error::{code_of, GroupError};
use crate::group::state::GroupState;

impl GroupCoordinator {
    /// ListGroups (v0–5; the states filter from v4, the types filter from v5).
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let states: Vec<String> = if version >= 4 {
            req.states_filter.iter().map(owned).collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            req.types_filter.iter().map(owned).collect()
        } else {
            Vec::new()
        };
        let listings = self
            .inner
            .with(|m, _| (m.list_groups(&states, &types), Vec::new()));
        let mut resp = ListGroupsResponse::default();
        resp.groups = listings
            .into_iter()
            .map(|g| {
                let mut listed = ListedGroup::default();
                listed.group_id = GroupId(wire(g.group_id));
                listed.protocol_type = wire(g.protocol_type);
                if version >= 4 {
                    listed.group_state = wire(g.state.name());
                }
                if version >= 5 {
                    listed.group_type = wire(CLASSIC_GROUP_TYPE);
                }
                listed
            })
            .collect();
        resp
    }

    /// DescribeGroups (v0–5). Unknown groups are reported Dead with no error, as Kafka does
    /// before v6.
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let ids: Vec<String> = req.groups.iter().map(|g| owned(g)).collect();
        self.inner.tick();
        let descriptions: Vec<Option<GroupDescription>> = self.inner.with(|m, _| {
            (
                ids.iter().map(|id| m.describe_group(id)).collect(),
                Vec::new(),
            )
        });
        let with_ops = version >= 3 && req.include_authorized_operations;
        let mut resp = DescribeGroupsResponse::default();
        resp.groups = ids
            .into_iter()
            .zip(descriptions)
            .map(|(id, d)| described_group(id, d, version, with_ops))
            .collect();
        resp
    }

    /// DeleteGroups (v0–2): Empty groups only; answers once the tombstones are durable.
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        _version: i16,
    ) -> DeleteGroupsResponse {
        let ids: Vec<String> = req.groups_names.iter().map(|g| owned(g)).collect();
        // Expire overdue members first: librdkafka test 0081 deletes a group
        // exactly one session timeout after its static members' last commit.
        self.inner.tick();
        let (results, done) = self.inner.plan_write(|m, _| m.delete_groups(&ids)).await;
        let write_error = match done {
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(GroupError::Store("writer stopped".into())))
                .err(),
            None => None,
        };
        let mut resp = DeleteGroupsResponse::default();
        resp.results = ids
            .into_iter()
            .zip(results)
            .map(|(id, error)| {
                let mut r = DeletableGroupResult::default();
                r.group_id = GroupId(wire(id));
                r.error_code = code_of(error.as_ref().or(write_error.as_ref()));
                r
            })
            .collect();
        resp
    }
}

fn described_group(
    id: String,
    d: Option<GroupDescription>,
    version: i16,
    with_ops: bool,
) -> DescribedGroup {
    let mut g = DescribedGroup::default();
    g.group_id = GroupId(wire(id));
    g.authorized_operations =
        crate::authorized_operations::if_requested(with_ops, crate::authorized_operations::GROUP);
    let Some(d) = d else {
        g.group_state = wire(GroupState::Dead.name());
        return g;
    };
    g.group_state = wire(d.state.name());
    g.protocol_type = wire(d.protocol_type);
    g.protocol_data = wire(d.protocol_data);
    g.members = d
        .members
        .into_iter()
        .map(|m| {
            let mut member = DescribedGroupMember::default();
            member.member_id = wire(m.member_id);
            member.group_instance_id = m.instance_id.filter(|_| version >= 4).map(wire);
            member.client_id = wire(m.client_id);
            member.client_host = wire(m.client_host);
            member.member_metadata = m.metadata;
            member.member_assignment = m.assignment;
            member
        })
        .collect();
    g
}
