//! The messages that frame bodies carry besides openraft's own: the snapshot
//! request and the error a server answers with.

use serde::{Deserialize, Serialize};

use crate::types::{TypeConfig, Vote};

/// What a group's snapshot is on the wire and in the state machine: its bytes.
///
/// Snapshots of a partition group are small metadata (the log is the partition
/// log; a snapshot only records where it starts, see RAFT_NOTES.md), so the
/// whole snapshot travels in one frame, under the frame cap. A state machine of
/// a group served by this transport must use this type as its `SnapshotData`.
pub(crate) type SnapshotData = crate::state_machine::SnapshotData;

/// Metadata of a group's snapshot.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<
    openraft::vote::leader_id_std::CommittedLeaderId<u64>,
    u64,
    openraft::impls::BasicNode,
>;

/// The body of a [`Kind::Snapshot`](super::frame::Kind::Snapshot) frame: a whole
/// snapshot and the vote of the leader that sends it.
/// The first frame of a connection: the connecting node's cluster id, once
/// it has one (a new node learns it from the controller it joins).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) cluster_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotRequest {
    /// The sending leader's vote, checked by the receiver.
    pub(crate) vote: Vote,
    /// What the snapshot covers.
    pub(crate) meta: SnapshotMeta,
    /// The snapshot's bytes.
    #[serde(with = "serde_bytes_vec")]
    pub(crate) data: Vec<u8>,
}

/// The body of a [`Kind::Propose`](super::frame::Kind::Propose) frame: a
/// record batch a follower forwards to the group's leader.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProposeRequest {
    /// The batch (one RecordBatch v2).
    #[serde(with = "serde_bytes_vec")]
    pub(crate) batch: Vec<u8>,
}

/// The body of a [`Kind::ReadLog`](super::frame::Kind::ReadLog) frame: a
/// follower installing a snapshot of a compacted partition asks the leader
/// for the records it keeps below the snapshot's boundary.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct ReadLogRequest {
    /// First offset wanted (the leader answers from its log start when that
    /// is higher).
    pub(crate) from: i64,
    /// Offset before which the batches end (the snapshot's boundary).
    pub(crate) upto: i64,
    /// Most bytes in one answer (at least one batch is sent).
    pub(crate) max_bytes: u32,
}

/// The answer to a [`ReadLogRequest`]: whole batches, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogChunk {
    /// The leader's log start when it answered.
    pub(crate) log_start: i64,
    /// Where the next request starts: `upto` once nothing is left below it.
    pub(crate) next: i64,
    /// Whole batches, base offsets below `upto`.
    #[serde(with = "serde_bytes_vec")]
    pub(crate) bytes: Vec<u8>,
}

/// Why a server could not answer a request: the body of a
/// [`Kind::Err`](super::frame::Kind::Err) frame. Every one of them is worth a retry
/// by the caller; none says anything about the Raft state of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum WireError {
    /// The node has no group with this id (not created yet, or removed).
    #[error("group {0} is not on this node")]
    UnknownGroup(u64),
    /// The group's append pipeline on this connection is full.
    #[error("group {0} has too many appends in flight")]
    Busy(u64),
    /// An earlier append of the same pipeline failed, so this one was not run.
    #[error("append pipeline of group {0} was reset by an earlier failure")]
    PipelineReset(u64),
    /// The connecting node belongs to another cluster.
    #[error("{0}")]
    OtherCluster(String),
    /// The group's Raft is stopping or stopped.
    #[error("group {group} failed: {reason}")]
    Fatal {
        /// The group.
        group: u64,
        /// openraft's description.
        reason: String,
    },
}

/// Sends a `Vec<u8>` as a byte string (length + raw bytes) rather than a
/// sequence of numbers.
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(ByteBuf)
    }

    struct ByteBuf;

    impl serde::de::Visitor<'_> for ByteBuf {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
}

/// A snapshot as openraft hands it over.
pub(crate) type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;
