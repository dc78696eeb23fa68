//! Metadata: brokers, topics and partition leaders; auto-creates topics when allowed.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{s, topic_name};
use crate::authorized_operations;
use crate::broker::Broker;
use crate::error_code::code;
use crate::metadata::TopicMeta;

fn topic(b: &Broker, name: &str, t: &TopicMeta, ops: i32) -> MetadataResponseTopic {
    let partitions = (0..t.partitions)
        .map(|p| {
            let (leader, epoch) = b.leader_for_clients(name, t, p);
            let replicas = t.replicas_of(p, b.config.node_id);
            let r = MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch)
                .with_isr_nodes(
                    b.in_sync(name, p, leader, &replicas)
                        .into_iter()
                        .map(BrokerId)
                        .collect(),
                )
                .with_replica_nodes(replicas.into_iter().map(BrokerId).collect());
            if leader < 0 {
                r.with_error_code(code::LEADER_NOT_AVAILABLE)
            } else {
                r
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(uuid::Uuid::from_u128(t.id))
        .with_is_internal(t.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(ops)
}

/// Describes the requested topics (all when the list is null).
pub fn handle(b: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let ops = authorized_operations::if_requested(
        req.include_topic_authorized_operations,
        authorized_operations::TOPIC,
    );
    let cluster_ops = authorized_operations::if_requested(
        req.include_cluster_authorized_operations,
        authorized_operations::CLUSTER,
    );
    let topics = match req.topics {
        None => b
            .meta
            .topics()
            .iter()
            .map(|(n, t)| topic(b, n, t, ops))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|t| {
                // A topic asked by id (v10+, the Java AdminClient's
                // `describeTopics(TopicCollection.ofTopicIds(..))`) has no
                // name; an unknown id is UNKNOWN_TOPIC_ID with the id echoed.
                let n = match t.name {
                    Some(n) if !n.0.is_empty() || t.topic_id.is_nil() => n,
                    _ => match b.meta.name_of_id(t.topic_id.as_u128()) {
                        Some(name) => topic_name(&name),
                        None => {
                            return MetadataResponseTopic::default()
                                .with_topic_id(t.topic_id)
                                .with_error_code(code::UNKNOWN_TOPIC_ID)
                        }
                    },
                };
                let name = n.0.to_string();
                // Weir's own topics are made by their owners, with their
                // configs, never by a client's lookup ([`crate::reserved`]).
                let allow = (version < 4 || req.allow_auto_topic_creation)
                    && !crate::reserved::is_reserved(&name);
                match b.topic_or_create(&name, allow) {
                    Ok(t) => topic(b, &name, &t, ops),
                    Err(e) => MetadataResponseTopic::default()
                        .with_name(Some(n))
                        .with_error_code(e.code()),
                }
            })
            .collect(),
    };
    let brokers = b
        .brokers()
        .into_iter()
        .map(|(id, m)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(s(m.host))
                .with_port(m.port)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(s(&b.identity.cluster_id)))
        .with_controller_id(BrokerId(b.controller_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}
