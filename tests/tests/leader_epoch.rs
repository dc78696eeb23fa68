//! KIP-320 leader epochs on the wire: Fetch, ListOffsets and
//! OffsetForLeaderEpoch check the `current_leader_epoch` a client names
//! (UNKNOWN_LEADER_EPOCH when it is newer than the node's), report the real
//! epoch, and OffsetForLeaderEpoch says where an epoch ends, which is what
//! librdkafka and the Java client use to detect log truncation.

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weir_tests::raw::{batch, create_topic, produce, RawConn};
use weir_tests::WeirNode;

const UNKNOWN_LEADER_EPOCH: i16 = 76;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Fetch v12 naming `epoch`: the partition's error code and how many bytes came back.
fn fetch_at_epoch(c: &mut RawConn, topic: &str, epoch: i32) -> Result<(i16, usize)> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(epoch)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.request(12, &req)?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("empty fetch response"))?;
    Ok((p.error_code, p.records.as_ref().map_or(0, |r| r.len())))
}

/// ListOffsets v4 (latest) naming `epoch`: `(error, offset, leader_epoch)`.
fn latest_at_epoch(c: &mut RawConn, topic: &str, epoch: i32) -> Result<(i16, i64, i32)> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(epoch)
                .with_timestamp(-1)])]);
    let resp = c.request(4, &req)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("empty ListOffsets response"))?;
    Ok((p.error_code, p.offset, p.leader_epoch))
}

/// OffsetForLeaderEpoch v3 for `leader_epoch`, naming `current`:
/// `(error, epoch, end_offset)`.
fn epoch_end(
    c: &mut RawConn,
    topic: &str,
    leader_epoch: i32,
    current: i32,
) -> Result<(i16, i32, i64)> {
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(leader_epoch)])]);
    let resp = c.request(3, &req)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("empty OffsetForLeaderEpoch response"))?;
    Ok((p.error_code, p.leader_epoch, p.end_offset))
}

/// Metadata v9's leader epoch of partition 0 of `topic`.
fn metadata_epoch(c: &mut RawConn, topic: &str) -> Result<i32> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(topic)))
    ]));
    let resp = c.request(9, &req)?;
    resp.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.leader_epoch)
        .ok_or_else(|| anyhow!("no partition in Metadata"))
}

#[test]
fn requests_naming_a_leader_epoch_are_checked_against_the_partition() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "epochs", 1, &[])? == 0);
    for v in [&b"a"[..], b"b", b"c"] {
        let (err, _) = produce(&mut c, "epochs", 0, -1, batch(&[v], None)?)?;
        ensure!(err == 0, "produce: error {err}");
    }
    let epoch = metadata_epoch(&mut c, "epochs")?;
    ensure!(epoch >= 0, "Metadata reports no leader epoch: {epoch}");

    // The current epoch, or none named: served.
    for named in [epoch, -1] {
        let (err, bytes) = fetch_at_epoch(&mut c, "epochs", named)?;
        ensure!(
            err == 0 && bytes > 0,
            "fetch at epoch {named}: error {err}, {bytes} bytes"
        );
        let (err, offset, got) = latest_at_epoch(&mut c, "epochs", named)?;
        ensure!(
            (err, offset, got) == (0, 3, epoch),
            "ListOffsets at epoch {named}: {:?}",
            (err, offset, got)
        );
    }
    // An epoch newer than the node's: the client knows of a leader this node
    // does not; it must retry, not read.
    let newer = epoch + 5;
    let (err, bytes) = fetch_at_epoch(&mut c, "epochs", newer)?;
    ensure!(
        (err, bytes) == (UNKNOWN_LEADER_EPOCH, 0),
        "fetch at a newer epoch: error {err}, {bytes} bytes"
    );
    let (err, ..) = latest_at_epoch(&mut c, "epochs", newer)?;
    ensure!(
        err == UNKNOWN_LEADER_EPOCH,
        "ListOffsets at a newer epoch: error {err}"
    );
    let (err, ..) = epoch_end(&mut c, "epochs", epoch, newer)?;
    ensure!(
        err == UNKNOWN_LEADER_EPOCH,
        "OffsetForLeaderEpoch at a newer epoch: error {err}"
    );

    // The current epoch ends at the log end; an epoch the log never had is unknown.
    let got = epoch_end(&mut c, "epochs", epoch, epoch)?;
    ensure!(got == (0, epoch, 3), "end of the current epoch: {got:?}");
    let got = epoch_end(&mut c, "epochs", -1, -1)?;
    ensure!(got == (0, -1, -1), "end of epoch -1: {got:?}");
    Ok(())
}
