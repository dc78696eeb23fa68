//! The coordinator's errors and their Kafka error codes, mapped in one place.

use thiserror::Error;

/// An error of the group coordinator; [`GroupError::code`] gives the Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group id is empty where a group id is required.
    #[error("invalid group id {0:?}")]
    InvalidGroupId(String),
    /// The member id is not a member of the group (or the group does not exist).
    #[error("unknown member {member_id:?} of group {group_id:?}")]
    UnknownMemberId {
        /// The group.
        group_id: String,
        /// The member id the client sent.
        member_id: String,
    },
    /// The client must rejoin with the member id the coordinator returned.
    #[error("group {group_id:?} requires a known member id, assigned {member_id:?}")]
    MemberIdRequired {
        /// The group.
        group_id: String,
        /// The member id generated for the client.
        member_id: String,
    },
    /// The request is for another generation than the group's.
    #[error("generation {got} is not the current generation {current} of group {group_id:?}")]
    IllegalGeneration {
        /// The group.
        group_id: String,
        /// The generation the client sent.
        got: i32,
        /// The group's generation.
        current: i32,
    },
    /// The group is rebalancing; the member must rejoin.
    #[error("group {0:?} is rebalancing")]
    RebalanceInProgress(String),
    /// The protocol type or protocols do not match the group's.
    #[error("inconsistent group protocol for group {0:?}")]
    InconsistentGroupProtocol(String),
    /// The session timeout is outside the configured bounds.
    #[error("session timeout {0} ms is outside the allowed range")]
    InvalidSessionTimeout(i32),
    /// Another member with the same group.instance.id replaced this one.
    #[error("instance {instance_id:?} of group {group_id:?} is fenced by a newer member")]
    FencedInstanceId {
        /// The group.
        group_id: String,
        /// The static instance id.
        instance_id: String,
    },
    /// The group has as many members as it may have.
    #[error("group {0:?} reached its maximum size")]
    GroupMaxSizeReached(String),
    /// The group is being deleted or unloaded.
    #[error("coordinator not available for group {0:?}")]
    CoordinatorNotAvailable(String),
    /// The group has members, so it cannot be deleted.
    #[error("group {0:?} is not empty")]
    NonEmptyGroup(String),
    /// The group does not exist.
    #[error("group {0:?} not found")]
    GroupIdNotFound(String),
    /// Offsets of a topic the group consumes cannot be deleted.
    #[error("group {group_id:?} is subscribed to topic {topic:?}")]
    GroupSubscribedToTopic {
        /// The group.
        group_id: String,
        /// The topic.
        topic: String,
    },
    /// The broker has no such topic partition.
    #[error("unknown topic partition {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The commit metadata string is longer than allowed.
    #[error("offset metadata of {0} bytes is too large")]
    OffsetMetadataTooLarge(usize),
    /// The durable store failed; the client should retry.
    #[error("group store failed: {0}")]
    Store(String),
}

impl GroupError {
    /// The Kafka error code of this error.
    pub fn code(&self) -> i16 {
        match self {
            Self::UnknownTopicOrPartition { .. } => 3,
            Self::OffsetMetadataTooLarge(_) => 12,
            Self::CoordinatorNotAvailable(_) | Self::Store(_) => 15,
            Self::IllegalGeneration { .. } => 22,
            Self::InconsistentGroupProtocol(_) => 23,
            Self::InvalidGroupId(_) => 24,
            Self::UnknownMemberId { .. } => 25,
            Self::InvalidSessionTimeout(_) => 26,
            Self::RebalanceInProgress(_) => 27,
            Self::NonEmptyGroup(_) => 68,
            Self::GroupIdNotFound(_) => 69,
            Self::MemberIdRequired { .. } => 79,
            Self::GroupMaxSizeReached(_) => 81,
            Self::FencedInstanceId { .. } => 82,
            Self::GroupSubscribedToTopic { .. } => 86,
        }
    }

    /// Shorthand for [`GroupError::UnknownMemberId`].
    pub(crate) fn unknown_member(group_id: &str, member_id: &str) -> Self {
        Self::UnknownMemberId {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
        }
    }

    /// Shorthand for [`GroupError::FencedInstanceId`].
    pub(crate) fn fenced(group_id: &str, instance_id: &str) -> Self {
        Self::FencedInstanceId {
            group_id: group_id.to_owned(),
            instance_id: instance_id.to_owned(),
        }
    }
}

/// The error code of an optional error: 0 when there is none.
pub(crate) fn code_of(error: Option<&GroupError>) -> i16 {
    error.map_or(0, GroupError::code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(GroupError::unknown_member("g", "m").code(), 25);
        assert_eq!(GroupError::fenced("g", "i").code(), 82);
        assert_eq!(GroupError::RebalanceInProgress("g".into()).code(), 27);
        assert_eq!(code_of(None), 0);
    }
}
