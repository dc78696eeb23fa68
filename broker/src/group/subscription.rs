//! Which topics a consumer group consumes, read from its members' subscriptions
//! (the `consumer` protocol's metadata), for OffsetDelete.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::classic::ClassicGroup;

/// The newest ConsumerProtocolSubscription version this crate decodes; newer versions
/// only append fields, so their prefix decodes as this one.
const MAX_SUBSCRIPTION_VERSION: i16 = 3;

/// The topics of one member's subscription, `None` if unreadable.
pub(crate) fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(0, MAX_SUBSCRIPTION_VERSION);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(sub.topics.iter().map(|t| t.as_str().to_owned()).collect())
}

/// Whether any member of the group subscribes to `topic`. Unknown or unreadable
/// subscriptions count as subscribed, as in Kafka (deleting offsets in use is worse).
pub(crate) fn subscribed_to(group: &ClassicGroup, topic: &str) -> bool {
    let Some(protocol) = group.protocol_name.as_deref() else {
        return !group.members.is_empty();
    };
    group.members.values().any(|m| {
        subscription_topics(&m.metadata(protocol))
            .is_none_or(|topics| topics.iter().any(|t| t == topic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// Encodes a consumer subscription as clients do: version prefix, then the body.
    pub(crate) fn subscription(version: i16, topics: &[&str]) -> Bytes {
        let mut sub = ConsumerProtocolSubscription::default();
        sub.topics = topics
            .iter()
            .map(|t| StrBytes::from_string((*t).to_owned()))
            .collect();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        sub.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn reads_topics_of_every_version() {
        for v in 0..=3 {
            let topics = subscription_topics(&subscription(v, &["a", "b"])).unwrap();
            assert_eq!(topics, vec!["a", "b"]);
        }
        assert_eq!(subscription_topics(&Bytes::from_static(&[0])), None);
        assert_eq!(
            subscription_topics(&Bytes::from_static(&[0, 0, 0xff])),
            None
        );
    }
}
