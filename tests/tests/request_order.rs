//! Requests that change state take effect in the order they arrived on their
//! connection (issue 7, librdkafka test 0030: commit 49 then 50, both
//! acknowledged, then OffsetFetch read 49 back).

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
use weir_tests::raw::{create_topic, RawConn};
use weir_tests::WeirNode;

const COMMITS: i64 = 300;

fn commit(offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("ordered")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(
                (0..4)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                    })
                    .collect(),
            )])
}

/// 300 commits pipelined on one connection (offsets 1..=300 on four
/// partitions), every response read only after all were sent: each is
/// acknowledged in order, and OffsetFetch on the same connection then reads
/// the last one on every partition.
#[test]
fn pipelined_commits_apply_in_arrival_order() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "t", 4, &[])? == 0);
    let mut frames = Vec::new();
    let mut ids = Vec::new();
    for offset in 1..=COMMITS {
        let (id, frame) = c.encode(8, &commit(offset))?;
        ids.push(id);
        frames.extend_from_slice(&frame);
    }
    c.send_bytes(&frames)?;
    for id in ids {
        let mut body = c.read_frame()?.context("connection closed")?;
        let header = ResponseHeader::decode(&mut body, OffsetCommitResponse::header_version(8))?;
        ensure!(
            header.correlation_id == id,
            "response {} out of order, expected {id}",
            header.correlation_id
        );
        let resp = OffsetCommitResponse::decode(&mut body, 8)?;
        for p in &resp.topics[0].partitions {
            ensure!(p.error_code == 0, "commit {id}: error {}", p.error_code);
        }
    }
    let fetched = c.request(
        6,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("ordered")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_indexes((0..4).collect())])),
    )?;
    let offsets: Vec<i64> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    ensure!(
        offsets == vec![COMMITS; 4],
        "committed offsets after {COMMITS} pipelined commits: {offsets:?}"
    );
    Ok(())
}

/// Create, delete, create, … of one topic, pipelined on one connection: each
/// step sees the one before it, so every one succeeds (run concurrently, a
/// create would meet the topic an earlier create made, or a delete miss it).
#[test]
fn pipelined_admin_changes_apply_in_arrival_order() -> Result<()> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{
        CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    };
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let name = || TopicName(StrBytes::from_static_str("flip"));
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..20 {
        let create = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name())
                .with_num_partitions(2)
                .with_replication_factor(1)]);
        let (id, f) = c.encode(4, &create)?;
        frames.extend_from_slice(&f);
        expected.push((id, true));
        let delete = DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topic_names(vec![name()]);
        let (id, f) = c.encode(4, &delete)?;
        frames.extend_from_slice(&f);
        expected.push((id, false));
    }
    c.send_bytes(&frames)?;
    for (id, is_create) in expected {
        let mut body = c.read_frame()?.context("connection closed")?;
        let header_version = if is_create {
            CreateTopicsResponse::header_version(4)
        } else {
            DeleteTopicsResponse::header_version(4)
        };
        let header = ResponseHeader::decode(&mut body, header_version)?;
        ensure!(
            header.correlation_id == id,
            "response {} out of order",
            header.correlation_id
        );
        let code = if is_create {
            CreateTopicsResponse::decode(&mut body, 4)?.topics[0].error_code
        } else {
            DeleteTopicsResponse::decode(&mut body, 4)?.responses[0].error_code
        };
        let what = if is_create { "create" } else { "delete" };
        ensure!(
            code == 0,
            "{what} (request {id}) failed with {code}: it ran out of order"
        );
    }
    Ok(())
}
