//! The API versions the coordinator serves, for the broker's ApiVersions response.
//! Each range lies inside the `kafka-protocol` crate's own range for the message.

/// JoinGroup (key 11).
pub const JOIN_GROUP_VERSIONS: (i16, i16) = (0, 7);
/// SyncGroup (key 14).
pub const SYNC_GROUP_VERSIONS: (i16, i16) = (0, 5);
/// Heartbeat (key 12).
pub const HEARTBEAT_VERSIONS: (i16, i16) = (0, 4);
/// LeaveGroup (key 13).
pub const LEAVE_GROUP_VERSIONS: (i16, i16) = (0, 5);
/// OffsetCommit (key 8); v9 is v8 for classic groups.
pub const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 9);
/// OffsetFetch (key 9); v9's member id/epoch are ignored for classic groups, as in Kafka.
pub const OFFSET_FETCH_VERSIONS: (i16, i16) = (1, 9);
/// ListGroups (key 16); v5's types filter (KIP-848) knows only classic groups.
pub const LIST_GROUPS_VERSIONS: (i16, i16) = (0, 5);
/// DescribeGroups (key 15).
pub const DESCRIBE_GROUPS_VERSIONS: (i16, i16) = (0, 5);
/// DeleteGroups (key 42).
pub const DELETE_GROUPS_VERSIONS: (i16, i16) = (0, 2);
/// OffsetDelete (key 47).
pub const OFFSET_DELETE_VERSIONS: (i16, i16) = (0, 0);
