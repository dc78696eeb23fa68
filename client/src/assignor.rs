//! The range assignor and the "consumer" protocol's embedded
//! subscription/assignment encodings (an i16 version, then the body).

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTp;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use crate::error::{Error, Result};
use crate::topic_partition::{by_topic, TopicPartition};

/// Protocol type of consumer groups.
pub const PROTOCOL_TYPE: &str = "consumer";
/// Name of the range assignor.
pub const RANGE: &str = "range";

/// Java's `RangeAssignor`: per topic, members sorted by id get contiguous
/// ranges; the first `partitions % members` members get one extra.
pub fn range_assign(
    members: &BTreeMap<String, Vec<String>>,
    partitions_per_topic: &HashMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let mut topics: Vec<&String> = members.values().flatten().collect();
    topics.sort();
    topics.dedup();
    for topic in topics {
        let Some(&n) = partitions_per_topic.get(topic) else {
            continue;
        };
        let subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        let c = subscribed.len() as i32;
        if c == 0 {
            continue;
        }
        let (per, extra) = (n / c, n % c);
        for (i, member) in subscribed.into_iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            if let Some(list) = out.get_mut(member) {
                list.extend((start..start + len).map(|p| TopicPartition::new(topic.clone(), p)));
            }
        }
    }
    out
}

/// Encodes a subscription to `topics` (version 0).
pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    encode_versioned(&sub, 0, "subscription")
}

/// Topics of an encoded subscription.
pub fn decode_subscription(mut data: Bytes) -> Result<Vec<String>> {
    let version = read_version(&mut data, "subscription")?;
    let v = version.min(ConsumerProtocolSubscription::VERSIONS.max);
    let sub = ConsumerProtocolSubscription::decode(&mut data, v)
        .map_err(|e| Error::protocol("decoding consumer subscription", e))?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// Encodes an assignment (version 0).
pub fn encode_assignment(tps: &[TopicPartition]) -> Result<Bytes> {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = by_topic(tps)
        .into_iter()
        .map(|(t, ps)| {
            let mut at = AssignedTp::default();
            at.topic = TopicName(StrBytes::from_string(t));
            at.partitions = ps;
            at
        })
        .collect();
    encode_versioned(&a, 0, "assignment")
}

/// Partitions of an encoded assignment (empty input = nothing assigned).
pub fn decode_assignment(mut data: Bytes) -> Result<Vec<TopicPartition>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let version = read_version(&mut data, "assignment")?;
    let v = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let a = ConsumerProtocolAssignment::decode(&mut data, v)
        .map_err(|e| Error::protocol("decoding consumer assignment", e))?;
    Ok(a.assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.0.to_string(), *p))
        })
        .collect())
}

fn encode_versioned<M: Encodable>(m: &M, version: i16, what: &str) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    m.encode(&mut buf, version)
        .map_err(|e| Error::protocol(format!("encoding consumer {what}"), e))?;
    Ok(buf.freeze())
}

fn read_version(data: &mut Bytes, what: &str) -> Result<i16> {
    if data.len() < 2 {
        return Err(Error::protocol(
            format!("decoding consumer {what}"),
            "shorter than its version",
        ));
    }
    let v = i16::from_be_bytes([data[0], data[1]]);
    let _ = data.split_to(2);
    if v < 0 {
        return Err(Error::protocol(
            format!("decoding consumer {what}"),
            format!("bad version {v}"),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
        list.iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect()
    }

    #[test]
    fn range_matches_java_example() {
        // RangeAssignor javadoc: C0, C1 subscribed to t0 and t1, 3 partitions each.
        let members: BTreeMap<String, Vec<String>> = [
            ("C0".to_string(), vec!["t0".to_string(), "t1".to_string()]),
            ("C1".to_string(), vec!["t0".to_string(), "t1".to_string()]),
        ]
        .into();
        let parts: HashMap<String, i32> = [("t0".to_string(), 3), ("t1".to_string(), 3)].into();
        let a = range_assign(&members, &parts);
        assert_eq!(a["C0"], tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]));
        assert_eq!(a["C1"], tps(&[("t0", 2), ("t1", 2)]));
    }

    #[test]
    fn range_handles_partial_subscriptions_and_more_members_than_partitions() {
        let members: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec!["x".to_string()]),
            ("b".to_string(), vec!["x".to_string(), "y".to_string()]),
            ("c".to_string(), vec!["x".to_string()]),
        ]
        .into();
        let parts: HashMap<String, i32> = [("x".to_string(), 2), ("y".to_string(), 1)].into();
        let a = range_assign(&members, &parts);
        assert_eq!(a["a"], tps(&[("x", 0)]));
        assert_eq!(a["b"], tps(&[("x", 1), ("y", 0)]));
        assert!(a["c"].is_empty());
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let topics = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            decode_subscription(encode_subscription(&topics).unwrap()).unwrap(),
            topics
        );
        let list = tps(&[("a", 0), ("a", 2), ("b", 1)]);
        assert_eq!(
            decode_assignment(encode_assignment(&list).unwrap()).unwrap(),
            list
        );
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
    }
}
