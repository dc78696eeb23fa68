//! Metadata: brokers, topics and partition leaders; auto-creates topics when allowed.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{s, topic_name};
use crate::authorized_operations;
use crate::broker::Broker;
use crate::metadata::TopicMeta;

fn topic(b: &Broker, name: &str, t: &TopicMeta, ops: i32) -> MetadataResponseTopic {
    let node = BrokerId(b.config.node_id);
    let partitions = (0..t.partitions)
        .map(|p| {
            let epoch = b.partition(name, p).map_or(-1, |part| part.leader_epoch());
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(epoch)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
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
            .filter_map(|t| t.name)
            .map(|n| {
                let name = n.0.to_string();
                let allow = version < 4 || req.allow_auto_topic_creation;
                match b.topic_or_create(&name, allow) {
                    Ok(t) => topic(b, &name, &t, ops),
                    Err(e) => MetadataResponseTopic::default()
                        .with_name(Some(n))
                        .with_error_code(e.code()),
                }
            })
            .collect(),
    };
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(b.config.node_id))
        .with_host(s(b.advertised_host.clone()))
        .with_port(b.advertised_port);
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(s(&b.identity.cluster_id)))
        .with_controller_id(BrokerId(b.config.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}
