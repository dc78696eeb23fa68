//! ListGroups and DescribeGroups views of the groups.

use bytes::Bytes;

use super::classic::ClassicGroup;
use super::manager::GroupManager;
use super::state::GroupState;

/// The only group type this coordinator runs (KIP-848 `consumer` groups are not supported).
pub(crate) const CLASSIC_GROUP_TYPE: &str = "classic";

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupListing {
    /// The group id.
    pub(crate) group_id: String,
    /// The protocol type, empty for offset-only groups.
    pub(crate) protocol_type: String,
    /// The state.
    pub(crate) state: GroupState,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberDescription {
    /// The member id.
    pub(crate) member_id: String,
    /// The static instance id.
    pub(crate) instance_id: Option<String>,
    /// The client id.
    pub(crate) client_id: String,
    /// The client host.
    pub(crate) client_host: String,
    /// Metadata for the selected protocol (Stable groups only, as in Kafka).
    pub(crate) metadata: Bytes,
    /// The current assignment (Stable groups only).
    pub(crate) assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupDescription {
    /// The state.
    pub(crate) state: GroupState,
    /// The protocol type.
    pub(crate) protocol_type: String,
    /// The selected protocol when Stable, else empty.
    pub(crate) protocol_data: String,
    /// The members in join order.
    pub(crate) members: Vec<MemberDescription>,
}

impl GroupManager {
    /// ListGroups: groups whose state is in `states` and type in `types` (empty: any),
    /// both compared case-insensitively.
    pub(crate) fn list_groups(&self, states: &[String], types: &[String]) -> Vec<GroupListing> {
        let type_ok = types.is_empty()
            || types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(CLASSIC_GROUP_TYPE));
        if !type_ok {
            return Vec::new();
        }
        let states: Vec<Option<GroupState>> = states.iter().map(|s| GroupState::parse(s)).collect();
        self.groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&Some(g.state)))
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    /// DescribeGroups: `None` if the group does not exist.
    pub(crate) fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        self.groups.get(group_id).map(describe)
    }
}

fn describe(g: &ClassicGroup) -> GroupDescription {
    let stable = g.is(GroupState::Stable);
    let protocol = if stable {
        g.protocol_name.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let members = g
        .members_in_order()
        .into_iter()
        .map(|m| MemberDescription {
            member_id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            metadata: if stable {
                m.metadata(&protocol)
            } else {
                Bytes::new()
            },
            assignment: if stable {
                m.assignment.clone()
            } else {
                Bytes::new()
            },
        })
        .collect();
    GroupDescription {
        state: g.state,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol_data: protocol,
        members,
    }
}
