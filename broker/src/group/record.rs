//! The key/value records the coordinator keeps in the compacted `__consumer_offsets` topic.
//!
//! All integers are big-endian. A string is a `u32` byte length followed by that many
//! UTF-8 bytes; a nullable string uses the length `0xFFFF_FFFF` for null.
//!
//! **Key** (its first byte says what it identifies; equal keys compact together):
//!
//! | bytes | offset key (type 0)            | group key (type 1) |
//! |-------|--------------------------------|--------------------|
//! | 0     | `0u8`                          | `1u8`              |
//! | 1..   | group id: string               | group id: string   |
//! | ..    | topic: string                  | —                  |
//! | ..    | partition: `i32`               | —                  |
//!
//! **Offset value** (version 0), 25 bytes + metadata:
//! `version u8 = 0 | committed offset i64 | leader epoch i32 (-1 = unknown) |
//!  commit timestamp i64 (ms since the Unix epoch) | metadata: string`
//!
//! **Group value** (version 0, a group without members):
//! `version u8 = 0 | generation i32 | protocol type: string |
//!  selected protocol: nullable string`
//!
//! **Group value** (version 1, a Stable group, written when the leader's
//! assignment arrives): version 0's fields with `version u8 = 1`, then
//! `leader: nullable string | member count u32 | members`, each member
//! `member id: string | group instance id: nullable string | client id:
//!  string | client host: string | session timeout ms u32 | rebalance
//!  timeout ms u32 | subscription: bytes | assignment: bytes` (bytes: a `u32`
//! length, then the bytes). A coordinator that loads it (a new leader of the
//! offsets partition, a restart) has the members and their assignments, so
//! they go on heartbeating and committing without a rebalance, as with
//! Kafka's `GroupMetadataValue`.
//!
//! A `None` value is a tombstone: it deletes the offset or the group metadata.
//! Readers skip records whose key type or value version they do not know, so newer
//! writers can add types and versions.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// One stored record: a key and a value, `None` for a tombstone.
pub type Record = (Bytes, Option<Bytes>);

const OFFSET_KEY: u8 = 0;
const GROUP_KEY: u8 = 1;
const VALUE_V0: u8 = 0;
const VALUE_V1: u8 = 1;
const NULL_LEN: u32 = u32::MAX;

/// What a record key identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordKey {
    /// The committed offset of (group, topic, partition).
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The metadata of a group.
    Group {
        /// The group.
        group: String,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    /// The committed offset (next offset to consume).
    pub(crate) offset: i64,
    /// The leader epoch of the committed record, -1 if unknown.
    pub(crate) leader_epoch: i32,
    /// The commit metadata string.
    pub(crate) metadata: String,
    /// When it was committed, ms since the Unix epoch.
    pub(crate) commit_timestamp: i64,
}

/// Group metadata as stored: the generation, and a Stable group's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    /// The generation.
    pub(crate) generation: i32,
    /// The protocol type (empty for offset-only groups).
    pub(crate) protocol_type: String,
    /// The selected protocol of the generation.
    pub(crate) protocol_name: Option<String>,
    /// The leader's member id (a Stable group).
    pub(crate) leader: Option<String>,
    /// The members of a Stable group with their assignments; empty otherwise.
    pub(crate) members: Vec<StoredMember>,
}

/// A member of a Stable group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMember {
    /// The coordinator-assigned member id.
    pub(crate) id: String,
    /// The static group.instance.id, if any.
    pub(crate) instance_id: Option<String>,
    /// The client id it joined with.
    pub(crate) client_id: String,
    /// The client host it joined from.
    pub(crate) client_host: String,
    /// Its session timeout.
    pub(crate) session_timeout_ms: u32,
    /// Its rebalance timeout.
    pub(crate) rebalance_timeout_ms: u32,
    /// Its metadata for the selected protocol (a consumer's subscription).
    pub(crate) metadata: Bytes,
    /// Its assignment in the generation.
    pub(crate) assignment: Bytes,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum RecordError {
    /// The record ended early.
    #[error("record truncated")]
    Truncated,
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    Utf8,
    /// Unknown key type (a newer writer): skip.
    #[error("unknown key type {0}")]
    UnknownKey(u8),
    /// Unknown value version (a newer writer): skip.
    #[error("unknown value version {0}")]
    UnknownVersion(u8),
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32(u32::try_from(s.len()).unwrap_or(NULL_LEN - 1));
    buf.put_slice(s.as_bytes());
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_u32(NULL_LEN),
    }
}

impl RecordKey {
    /// Encodes the key.
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Self::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_u8(OFFSET_KEY);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            Self::Group { group } => {
                buf.put_u8(GROUP_KEY);
                put_str(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// Decodes a key.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        match r.u8()? {
            OFFSET_KEY => Ok(Self::Offset {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            }),
            GROUP_KEY => Ok(Self::Group { group: r.string()? }),
            other => Err(RecordError::UnknownKey(other)),
        }
    }
}

impl OffsetValue {
    /// Encodes the value.
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(25 + self.metadata.len());
        buf.put_u8(VALUE_V0);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        buf.put_i64(self.commit_timestamp);
        put_str(&mut buf, &self.metadata);
        buf.freeze()
    }

    /// Decodes a value.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        r.version()?;
        Ok(Self {
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            commit_timestamp: r.i64()?,
            metadata: r.string()?,
        })
    }
}

impl GroupValue {
    /// Encodes the value: version 0 without members (readable by nodes
    /// that predate version 1), else version 1.
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        let with_members = !self.members.is_empty();
        buf.put_u8(if with_members { VALUE_V1 } else { VALUE_V0 });
        buf.put_i32(self.generation);
        put_str(&mut buf, &self.protocol_type);
        put_opt_str(&mut buf, self.protocol_name.as_deref());
        if with_members {
            put_opt_str(&mut buf, self.leader.as_deref());
            buf.put_u32(u32::try_from(self.members.len()).unwrap_or(u32::MAX));
            for m in &self.members {
                put_str(&mut buf, &m.id);
                put_opt_str(&mut buf, m.instance_id.as_deref());
                put_str(&mut buf, &m.client_id);
                put_str(&mut buf, &m.client_host);
                buf.put_u32(m.session_timeout_ms);
                buf.put_u32(m.rebalance_timeout_ms);
                put_bytes(&mut buf, &m.metadata);
                put_bytes(&mut buf, &m.assignment);
            }
        }
        buf.freeze()
    }

    /// Decodes a value.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version > VALUE_V1 {
            return Err(RecordError::UnknownVersion(version));
        }
        let mut value = Self {
            generation: r.i32()?,
            protocol_type: r.string()?,
            protocol_name: r.opt_string()?,
            leader: None,
            members: Vec::new(),
        };
        if version == VALUE_V1 {
            value.leader = r.opt_string()?;
            let count = u32::from_be_bytes(r.take()?);
            for _ in 0..count {
                value.members.push(StoredMember {
                    id: r.string()?,
                    instance_id: r.opt_string()?,
                    client_id: r.string()?,
                    client_host: r.string()?,
                    session_timeout_ms: u32::from_be_bytes(r.take()?),
                    rebalance_timeout_ms: u32::from_be_bytes(r.take()?),
                    metadata: r.bytes()?,
                    assignment: r.bytes()?,
                });
            }
        }
        Ok(value)
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
    buf.put_slice(b);
}

/// A bounds-checked big-endian reader.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(RecordError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take::<1>()?[0])
    }

    fn version(&mut self) -> Result<(), RecordError> {
        match self.u8()? {
            VALUE_V0 => Ok(()),
            other => Err(RecordError::UnknownVersion(other)),
        }
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn opt_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = u32::from_be_bytes(self.take()?);
        if len == NULL_LEN {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| RecordError::Truncated)?;
        if self.0.len() < len {
            return Err(RecordError::Truncated);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec())
            .map(Some)
            .map_err(|_| RecordError::Utf8)
    }

    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = usize::try_from(u32::from_be_bytes(self.take()?))
            .map_err(|_| RecordError::Truncated)?;
        if self.0.len() < len {
            return Err(RecordError::Truncated);
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(Bytes::copy_from_slice(b))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        self.opt_string().map(Option::unwrap_or_default)
    }
}

/// The record storing a committed offset.
pub(crate) fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    value: &OffsetValue,
) -> Record {
    (offset_key(group, topic, partition), Some(value.encode()))
}

/// The tombstone deleting a committed offset.
pub(crate) fn offset_tombstone(group: &str, topic: &str, partition: i32) -> Record {
    (offset_key(group, topic, partition), None)
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    RecordKey::Offset {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    }
    .encode()
}

/// The record storing group metadata, or its tombstone when `value` is `None`.
pub(crate) fn group_record(group: &str, value: Option<&GroupValue>) -> Record {
    let key = RecordKey::Group {
        group: group.to_owned(),
    }
    .encode();
    (key, value.map(GroupValue::encode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_layout_is_byte_exact() {
        let key = offset_key("g", "t", 7);
        assert_eq!(
            key.as_ref(),
            &[0, 0, 0, 0, 1, b'g', 0, 0, 0, 1, b't', 0, 0, 0, 7]
        );
        assert_eq!(
            RecordKey::decode(&key).unwrap(),
            RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7
            }
        );
    }

    #[test]
    fn values_round_trip() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: -1,
            metadata: "meta".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        let bytes = v.encode();
        assert_eq!(bytes.len(), 25 + 4);
        assert_eq!(OffsetValue::decode(&bytes).unwrap(), v);
        let g = GroupValue {
            generation: 3,
            protocol_type: "consumer".into(),
            protocol_name: None,
            leader: None,
            members: Vec::new(),
        };
        assert_eq!(g.encode()[0], VALUE_V0, "no members: version 0");
        assert_eq!(GroupValue::decode(&g.encode()).unwrap(), g);
        let (key, value) = group_record("g", Some(&g));
        assert_eq!(key.as_ref(), &[1, 0, 0, 0, 1, b'g']);
        assert!(value.is_some());
    }

    #[test]
    fn a_stable_groups_members_round_trip() {
        let member = |id: &str, instance: Option<&str>| StoredMember {
            id: id.into(),
            instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            metadata: Bytes::from_static(b"sub"),
            assignment: Bytes::from_static(b"\x00\x01"),
        };
        let g = GroupValue {
            generation: 7,
            protocol_type: "consumer".into(),
            protocol_name: Some("range".into()),
            leader: Some("a".into()),
            members: vec![member("a", None), member("b", Some("static-b"))],
        };
        let bytes = g.encode();
        assert_eq!(bytes[0], VALUE_V1);
        assert_eq!(GroupValue::decode(&bytes).unwrap(), g);
        for cut in 0..bytes.len() {
            assert!(GroupValue::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(RecordKey::decode(&[]), Err(RecordError::Truncated));
        assert_eq!(RecordKey::decode(&[9]), Err(RecordError::UnknownKey(9)));
        assert_eq!(
            RecordKey::decode(&[0, 0xff, 0xff, 0xff, 0xfe]),
            Err(RecordError::Truncated)
        );
        assert_eq!(
            OffsetValue::decode(&[1]),
            Err(RecordError::UnknownVersion(1))
        );
        assert_eq!(OffsetValue::decode(&[0, 1, 2]), Err(RecordError::Truncated));
        assert_eq!(
            RecordKey::decode(&[1, 0, 0, 0, 1, 0xff]),
            Err(RecordError::Utf8)
        );
    }
}
