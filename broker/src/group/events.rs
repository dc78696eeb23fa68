//! The events the pure group state machine takes and the actions it returns.
//!
//! JoinGroup and SyncGroup responses are deferred until the rebalance progresses, so the
//! machine never answers them directly: it returns [`Action::Join`] / [`Action::Sync`]
//! naming the [`ReplyId`] of the waiting request, possibly much later (from another
//! member's request or from `tick`).

use bytes::Bytes;

use super::error::GroupError;
use super::member::{Protocol, ReplyId};
use super::record::Record;

/// A JoinGroup request, decoded and version-normalised.
#[derive(Debug, Clone)]
pub(crate) struct JoinParams {
    /// The group.
    pub(crate) group_id: String,
    /// The member id, empty for a new member.
    pub(crate) member_id: String,
    /// The static group.instance.id (v5+).
    pub(crate) instance_id: Option<String>,
    /// The client id of the connection.
    pub(crate) client_id: String,
    /// The client host of the connection.
    pub(crate) client_host: String,
    /// Session timeout in ms.
    pub(crate) session_timeout_ms: i32,
    /// Rebalance timeout in ms (v0: the session timeout).
    pub(crate) rebalance_timeout_ms: i32,
    /// The protocol type, e.g. `consumer`.
    pub(crate) protocol_type: String,
    /// The supported protocols in preference order.
    pub(crate) protocols: Vec<Protocol>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED with its id.
    pub(crate) require_known_member_id: bool,
    /// Where the response goes.
    pub(crate) reply: ReplyId,
}

/// A SyncGroup request, decoded.
#[derive(Debug, Clone)]
pub(crate) struct SyncParams {
    /// The group.
    pub(crate) group_id: String,
    /// The generation the member joined.
    pub(crate) generation: i32,
    /// The member id.
    pub(crate) member_id: String,
    /// The static group.instance.id (v3+).
    pub(crate) instance_id: Option<String>,
    /// v5: the protocol type the member expects, checked against the group's.
    pub(crate) protocol_type: Option<String>,
    /// v5: the protocol name the member expects, checked against the group's.
    pub(crate) protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment). Empty for followers.
    pub(crate) assignments: Vec<(String, Bytes)>,
    /// Where the response goes.
    pub(crate) reply: ReplyId,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    /// Member id.
    pub(crate) member_id: String,
    /// Static instance id.
    pub(crate) instance_id: Option<String>,
    /// Metadata for the selected protocol.
    pub(crate) metadata: Bytes,
}

/// The outcome of a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct JoinResult {
    /// The error, if the join failed.
    pub(crate) error: Option<GroupError>,
    /// The member id (the generated one for new members and for MEMBER_ID_REQUIRED).
    pub(crate) member_id: String,
    /// The new generation (-1 on error).
    pub(crate) generation: i32,
    /// The group's protocol type.
    pub(crate) protocol_type: Option<String>,
    /// The selected protocol.
    pub(crate) protocol_name: Option<String>,
    /// The leader's member id.
    pub(crate) leader: String,
    /// Every member with its metadata; only the leader gets them.
    pub(crate) members: Vec<JoinedMember>,
}

impl JoinResult {
    /// A failed join.
    pub(crate) fn error(error: GroupError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            member_id: member_id.to_owned(),
            generation: -1,
            ..Self::default()
        }
    }
}

/// The outcome of a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SyncResult {
    /// The error, if the sync failed.
    pub(crate) error: Option<GroupError>,
    /// The group's protocol type.
    pub(crate) protocol_type: Option<String>,
    /// The selected protocol.
    pub(crate) protocol_name: Option<String>,
    /// The member's assignment.
    pub(crate) assignment: Bytes,
}

impl SyncResult {
    /// A failed sync.
    pub(crate) fn error(error: GroupError) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }
}

/// What the runtime must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Answer the waiting JoinGroup `reply`.
    Join {
        /// The waiting request.
        reply: ReplyId,
        /// Its response.
        result: JoinResult,
    },
    /// Answer the waiting SyncGroup `reply`.
    Sync {
        /// The waiting request.
        reply: ReplyId,
        /// Its response.
        result: SyncResult,
    },
    /// Append these records (group metadata) to the store; nobody waits for them.
    Persist(Vec<Record>),
}
