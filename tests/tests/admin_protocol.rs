//! Admin requests as the Java AdminClient sends them (found from outside
//! with kafka-clients): topics asked and deleted by id (Metadata v12,
//! DeleteTopics v6), names that collide on `.` and `_`, and ListOffsets
//! v8–v10 with the earliest-local (-4) and latest-tiered (-5) specs.

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, ListOffsetsRequest, MetadataRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weir_tests::raw::{batch, create_topic, delete_records, produce, RawConn};
use weir_tests::{unique, WeirNode};

const UNKNOWN_TOPIC_ID: i16 = 100;
const INVALID_TOPIC: i16 = 17;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Metadata v12 for the topics of these ids (no names, as the Java client
/// asks): (error code, name, id) of each answer.
fn metadata_by_id(
    c: &mut RawConn,
    ids: &[uuid::Uuid],
) -> Result<Vec<(i16, Option<String>, uuid::Uuid)>> {
    let req = MetadataRequest::default().with_topics(Some(
        ids.iter()
            .map(|id| MetadataRequestTopic::default().with_topic_id(*id))
            .collect(),
    ));
    let resp = c.request(12, &req)?;
    Ok(resp
        .topics
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.name.as_ref().map(|n| n.0.to_string()),
                t.topic_id,
            )
        })
        .collect())
}

fn id_of(c: &mut RawConn, topic: &str) -> Result<uuid::Uuid> {
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(topic)))
    ]));
    let resp = c.request(12, &req)?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic"))?;
    ensure!(
        t.error_code == 0,
        "Metadata {topic}: error {}",
        t.error_code
    );
    Ok(t.topic_id)
}

#[test]
fn topics_are_described_and_deleted_by_id() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let (a, b) = (unique("by-id-a"), unique("by-id-b"));
    ensure!(create_topic(&mut c, &a, 2, &[])? == 0);
    ensure!(create_topic(&mut c, &b, 1, &[])? == 0);
    let (ida, idb) = (id_of(&mut c, &a)?, id_of(&mut c, &b)?);
    let unknown = uuid::Uuid::from_u128(0x1234_5678);

    let got = metadata_by_id(&mut c, &[ida, unknown])?;
    ensure!(got.len() == 2, "answers: {got:?}");
    ensure!(
        got[0] == (0, Some(a.clone()), ida),
        "topic asked by id answered {:?}",
        got[0]
    );
    ensure!(
        got[1].0 == UNKNOWN_TOPIC_ID && got[1].2 == unknown,
        "unknown id answered {:?} (want UNKNOWN_TOPIC_ID with the id echoed)",
        got[1]
    );

    // DeleteTopics v6 by id: each result names the topic and echoes the id
    // (the Java client matches results by id).
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            DeleteTopicState::default().with_topic_id(idb),
            DeleteTopicState::default().with_topic_id(unknown),
        ]);
    let resp = c.request(6, &req)?;
    let results: Vec<_> = resp
        .responses
        .iter()
        .map(|r| {
            (
                r.error_code,
                r.name.as_ref().map(|n| n.0.to_string()),
                r.topic_id,
            )
        })
        .collect();
    ensure!(
        results.first() == Some(&(0, Some(b.clone()), idb)),
        "delete by id answered {results:?}"
    );
    ensure!(
        results
            .get(1)
            .is_some_and(|r| r.0 == UNKNOWN_TOPIC_ID && r.2 == unknown),
        "delete of an unknown id answered {results:?}"
    );
    let after = metadata_by_id(&mut c, &[idb])?;
    ensure!(
        after.first().is_some_and(|t| t.0 == UNKNOWN_TOPIC_ID),
        "the deleted topic is still described by id: {after:?}"
    );
    Ok(())
}

#[test]
fn names_colliding_on_dot_and_underscore_are_refused() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let base = unique("clash");
    let dotted = format!("{base}.a.b");
    let under = format!("{base}_a.b");
    ensure!(create_topic(&mut c, &dotted, 1, &[])? == 0);
    for validate_only in [true, false] {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_validate_only(validate_only)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(&under))
                .with_num_partitions(1)
                .with_replication_factor(1)]);
        let resp = c.request(5, &req)?;
        let t = resp.topics.first().ok_or_else(|| anyhow!("empty answer"))?;
        let msg = t
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        ensure!(
            t.error_code == INVALID_TOPIC && msg.contains(&dotted),
            "{under} (validate_only {validate_only}) answered {} {msg:?}",
            t.error_code
        );
    }
    // The same name again is still TOPIC_ALREADY_EXISTS, not a collision.
    ensure!(create_topic(&mut c, &dotted, 1, &[])? == 36);
    Ok(())
}

#[test]
fn list_offsets_serves_earliest_local_and_latest_tiered() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let topic = unique("local");
    ensure!(create_topic(&mut c, &topic, 1, &[])? == 0);
    for _ in 0..5 {
        ensure!(produce(&mut c, &topic, 0, -1, batch(&[b"v"], None)?)?.0 == 0);
    }
    ensure!(delete_records(&mut c, &topic, 0, 2)?.0 == 0);
    for version in [8i16, 9, 10] {
        for (spec, want) in [(-4i64, 2i64), (-2, 2), (-1, 5), (-5, -1)] {
            if spec == -5 && version < 9 {
                continue;
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_timeout_ms(5_000)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(&topic))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(spec)])]);
            let resp = c.request(version, &req)?;
            let p = resp
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| anyhow!("empty ListOffsets answer"))?;
            ensure!(
                p.error_code == 0 && p.offset == want,
                "ListOffsets v{version} spec {spec}: error {} offset {} (want {want})",
                p.error_code,
                p.offset
            );
        }
    }
    Ok(())
}

/// DescribeConfigs v4 gives each topic config its type, its synonyms (the
/// topic's own value, then the default) and a line of documentation, as
/// Kafka does for admin tools and UIs (found from outside: every entry came
/// back UNKNOWN, undocumented, without synonyms).
#[test]
fn topic_configs_are_described_with_type_synonyms_and_documentation() -> Result<()> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let topic = unique("described");
    ensure!(create_topic(&mut c, &topic, 1, &[("retention.ms", "60000")])? == 0);
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.clone()))
            .with_configuration_keys(None)]);
    let resp = c.request(4, &req)?;
    let configs = &resp
        .results
        .first()
        .ok_or_else(|| anyhow!("no result"))?
        .configs;
    let entry = |k: &str| {
        configs
            .iter()
            .find(|e| e.name.as_str() == k)
            .ok_or_else(|| anyhow!("{k} not described"))
    };
    let synonyms = |k: &str| -> Result<Vec<(String, i8)>> {
        Ok(entry(k)?
            .synonyms
            .iter()
            .map(|s| {
                (
                    s.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    s.source,
                )
            })
            .collect())
    };
    let retention = entry("retention.ms")?;
    ensure!(
        retention.config_type == 5 && retention.config_source == 1,
        "retention.ms: type {} source {}",
        retention.config_type,
        retention.config_source
    );
    ensure!(
        synonyms("retention.ms")? == vec![("60000".to_string(), 1), ("604800000".to_string(), 5)],
        "retention.ms synonyms {:?}",
        synonyms("retention.ms")?
    );
    let doc = retention
        .documentation
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    ensure!(
        doc.contains("acts on it"),
        "retention.ms documentation {doc:?}"
    );
    let policy = entry("cleanup.policy")?;
    ensure!(
        policy.config_type == 7 && synonyms("cleanup.policy")? == vec![("delete".to_string(), 5)],
        "cleanup.policy: type {} synonyms {:?}",
        policy.config_type,
        synonyms("cleanup.policy")?
    );
    let inert = entry("unclean.leader.election.enable")?;
    ensure!(
        inert.config_type == 1,
        "a boolean typed {}",
        inert.config_type
    );
    Ok(())
}
