//! The openraft type configuration of a partition group: one Raft entry carries
//! one Kafka RecordBatch v2, and a data entry's term is its batch's
//! partitionLeaderEpoch, so that the log id of a data entry is recoverable from
//! the partition log alone (with the std leader id, a committed leader id is the
//! term only).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

openraft::declare_raft_types!(
    /// Type configuration of a partition's Raft group.
    pub(crate) TypeConfig:
        D = RecordBatch,
        R = Appended,
        NodeId = u64,
        Node = openraft::impls::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// Term of a Raft group (also the partitionLeaderEpoch of the batches it appends).
pub(crate) type Term = u64;
/// Id of a Raft entry: committed leader id (term) + index.
pub(crate) type LogId = openraft::LogId<openraft::vote::leader_id_std::CommittedLeaderId<Term>>;
/// A stored vote.
pub(crate) type Vote = openraft::impls::Vote<openraft::impls::leader_id_std::LeaderId<Term, u64>>;
/// A Raft entry.
pub(crate) type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
/// A Raft entry's payload.
pub(crate) type Payload = <TypeConfig as openraft::RaftTypeConfig>::Payload;

/// A membership configuration.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) type Membership = openraft::Membership<u64, openraft::impls::BasicNode>;

/// The log id of `index` in `term`.
pub(crate) fn log_id(term: Term, index: u64) -> LogId {
    LogId::new(
        openraft::vote::leader_id_std::CommittedLeaderId::new(term),
        index,
    )
}

/// The term of a log id.
pub(crate) fn term_of(log_id: &LogId) -> Term {
    log_id.leader_id.term
}

/// Exactly one Kafka RecordBatch v2, as the leader validated it. Cloning shares
/// the bytes. Serialised as a byte string (JSON: an array of numbers); the
/// transport will send the bytes as they are.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RecordBatch(pub(crate) Bytes);

impl fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordBatch({} bytes)", self.0.len())
    }
}

impl fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch({}B)", self.0.len())
    }
}

impl Serialize for RecordBatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RecordBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// Accepts a byte string or a sequence of bytes (what JSON makes of one).
struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = RecordBatch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bytes of a record batch")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(RecordBatch(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(RecordBatch(Bytes::from(v)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(RecordBatch(Bytes::from(out)))
    }
}

/// What applying an entry gave it: the Kafka offsets of its records,
/// `base_offset..=last_offset`. An entry that is not data takes no offset: its
/// range is empty (`last_offset == base_offset - 1`, `base_offset` the next
/// offset at that point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Appended {
    /// Offset of the first record.
    pub(crate) base_offset: i64,
    /// Offset of the last record.
    pub(crate) last_offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_batch_serde_round_trips() {
        let b = RecordBatch(Bytes::from_static(b"\x00\x01\xff"));
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "[0,1,255]");
        assert_eq!(serde_json::from_str::<RecordBatch>(&json).unwrap(), b);
    }
}
