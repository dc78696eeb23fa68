//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};

use super::s;
use crate::assignment;
use crate::broker::{Broker, Placement};
use crate::error_code::code;
use crate::topic_config;

fn effective_configs(b: &Broker, configs: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    let defaults = &b.config.log_defaults;
    topic_config::keys()
        .map(|k| {
            let (value, source) = match configs.get(k) {
                Some(v) => (v.clone(), 1),
                None => (topic_config::default_value(k, defaults), 5),
            };
            CreatableTopicConfigs::default()
                .with_name(s(k))
                .with_value(Some(s(value)))
                .with_config_source(source)
        })
        .collect()
}

/// Creates topics: `replication_factor` replicas per partition (-1: the
/// node's default), or the replicas a client assigned; names of Weir's own
/// topics only for `writer` a task (see [`crate::reserved`]).
pub fn create(
    b: &Broker,
    req: CreateTopicsRequest,
    version: i16,
    writer: crate::reserved::Writer,
) -> CreateTopicsResponse {
    let mut created = Vec::new();
    let topics: Vec<CreatableTopicResult> = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let r = CreatableTopicResult::default().with_name(t.name.clone());
            if let Some(why) = crate::reserved::creation_refusal(&name, writer) {
                return r
                    .with_error_code(code::INVALID_TOPIC)
                    .with_error_message(Some(s(why)));
            }
            let explicit: Vec<(i32, Vec<i32>)> = t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect();
            let partitions = if !explicit.is_empty() {
                // The partition count comes from the assignments (Kafka's rule:
                // num_partitions and replication_factor are then -1).
                match assignment::for_create(
                    &explicit,
                    t.num_partitions,
                    t.replication_factor,
                    &b.live_brokers(),
                ) {
                    Ok(n) => n,
                    Err(e) => {
                        return r
                            .with_error_code(e.code())
                            .with_error_message(Some(s(e.to_string())))
                    }
                }
            } else if t.num_partitions == -1 {
                b.config.default_partitions
            } else {
                t.num_partitions
            };
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            let placement = if explicit.is_empty() {
                Placement::Factor(t.replication_factor)
            } else {
                let mut sorted = explicit.clone();
                sorted.sort_by_key(|(p, _)| *p);
                Placement::Explicit(sorted.into_iter().map(|(_, r)| r).collect())
            };
            let factor = match &placement {
                Placement::Explicit(r) => r.first().map_or(1, Vec::len) as i16,
                Placement::Factor(-1) => b.config.default_replication_factor,
                Placement::Factor(f) => *f,
            };
            let nodes = b.cluster.nodes();
            if factor < 1 || factor as usize > nodes {
                return r
                    .with_error_code(code::INVALID_REPLICATION_FACTOR)
                    .with_error_message(Some(s(format!(
                        "replication factor {factor} is not between 1 and the {nodes} nodes of this cluster"
                    ))));
            }
            let outcome = if req.validate_only {
                configs
                    .iter()
                    .try_for_each(|(k, v)| topic_config::validate(k, v).map_err(Into::into))
                    .and_then(|()| match (b.meta.topic(&name), b.meta.colliding_with(&name)) {
                        (Some(_), _) => Err(crate::metadata::TopicError::Exists(name.clone()).into()),
                        (None, Some(existing)) => Err(crate::metadata::TopicError::Collides {
                            name: name.clone(),
                            existing,
                        }
                        .into()),
                        (None, None) => Ok(None),
                    })
            } else {
                b.create_topic_with(&name, partitions, configs.clone(), placement)
                    .map(Some)
            };
            match outcome {
                Ok(meta) => {
                    if meta.is_some() {
                        created.push(name.clone());
                    }
                    let r = r
                        .with_num_partitions(partitions)
                        .with_replication_factor(factor);
                    let r = match meta {
                        Some(m) => r.with_topic_id(uuid::Uuid::from_u128(m.id)),
                        None => r,
                    };
                    if version >= 5 {
                        r.with_configs(Some(effective_configs(b, &configs)))
                    } else {
                        r
                    }
                }
                Err(e) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    // The new partitions' leaders, within the client's timeout (at most
    // LEADERS_WAIT): the topic is created either way.
    if !created.is_empty() {
        let wait = std::time::Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0))
            .min(LEADERS_WAIT);
        if !b.await_leaders(&created, std::time::Instant::now() + wait) {
            tracing::info!(topics = ?created, "created; some partitions have no leader yet");
        }
    }
    CreateTopicsResponse::default().with_topics(topics)
}

/// The longest CreateTopics waits for the new partitions' leaders.
const LEADERS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Deletes topics by name (topic ids of v6 are resolved too).
pub fn delete(b: &Broker, req: DeleteTopicsRequest, _version: i16) -> DeleteTopicsResponse {
    // Each topic by name, or (v6) by id; a result carries both, as Kafka's
    // do: the Java AdminClient matches results by the id it asked for.
    let mut asked: Vec<(Option<String>, Option<uuid::Uuid>)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), None))
        .collect();
    for t in &req.topics {
        let name = match &t.name {
            Some(n) => Some(n.0.to_string()),
            None => b.meta.name_of_id(t.topic_id.as_u128()),
        };
        asked.push((name, Some(t.topic_id)));
    }
    let responses = asked
        .into_iter()
        .map(|(name, id)| {
            let Some(name) = name else {
                return DeletableTopicResult::default()
                    .with_topic_id(id.unwrap_or_default())
                    .with_error_code(code::UNKNOWN_TOPIC_ID)
                    .with_error_message(Some(s("no topic has this id".to_string())));
            };
            let known = b.meta.topic(&name).map(|m| uuid::Uuid::from_u128(m.id));
            let r = DeletableTopicResult::default()
                .with_name(Some(super::topic_name(&name)))
                .with_topic_id(id.or(known).unwrap_or_default());
            match b.delete_topic(&name) {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Raises partition counts.
pub fn create_partitions(b: &Broker, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let r = CreatePartitionsTopicResult::default().with_name(t.name);
            let mut explicit = None;
            if let (Some(assignments), Some(meta)) = (&t.assignments, b.meta.topic(&name)) {
                let given: Vec<Vec<i32>> = assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect();
                if let Err(e) = assignment::for_added(
                    &given,
                    meta.partitions,
                    t.count,
                    meta.replication_factor(),
                    &b.live_brokers(),
                ) {
                    return r
                        .with_error_code(e.code())
                        .with_error_message(Some(s(e.to_string())));
                }
                explicit = Some(given);
            }
            let outcome = if req.validate_only {
                match b.meta.topic(&name) {
                    None => Err(crate::metadata::TopicError::Unknown(name).into()),
                    Some(m) if t.count <= m.partitions => {
                        Err(crate::metadata::TopicError::InvalidPartitions(t.count).into())
                    }
                    Some(_) => Ok(()),
                }
            } else {
                b.add_partitions(&name, t.count, explicit)
            };
            match outcome {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
