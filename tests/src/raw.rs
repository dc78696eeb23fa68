//! A bare, blocking Kafka wire client over `std::net::TcpStream`, built on the
//! `kafka-protocol` codecs: for requests no ordinary client sends (duplicate
//! idempotent batches, sequence gaps, malformed frames).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One connection to a node.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    next_correlation: i32,
}

impl RawConn {
    /// Connects, with a 20 s read timeout so a silent node fails the test instead
    /// of hanging it (longer than the 10 s request timeouts sent, so a broker
    /// answering "timed out" at its deadline is heard).
    pub fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            next_correlation: 1,
        })
    }

    /// Changes the read timeout (for requests that do a lot of file work).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// Writes raw bytes (a whole frame, length prefix included, or not).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads one response frame (without its length prefix); `Ok(None)` when the
    /// node closed the connection.
    pub fn read_frame(&mut self) -> Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if is_closed(&e) => return Ok(None),
            Err(e) => return Err(e).context("reading response length"),
        }
        let n = i32::from_be_bytes(len);
        if n < 4 {
            bail!("response frame length {n}");
        }
        let mut body = vec![0u8; n as usize];
        self.stream
            .read_exact(&mut body)
            .context("reading response body")?;
        Ok(Some(Bytes::from(body)))
    }

    /// Whether the node closed the connection (EOF or reset) within the read
    /// timeout, discarding anything it sent first.
    pub fn is_closed_by_peer(&mut self) -> Result<bool> {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(_) => continue,
                Err(e) if is_closed(&e) => return Ok(true),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(false)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Encodes a request frame (length, header, body) for `version`.
    pub fn encode<R: Request>(&mut self, version: i16, req: &R) -> Result<(i32, BytesMut)> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("weir-tests-raw")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 0]);
        encode_request_header_into_buffer(&mut buf, &header)?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Ok((correlation, buf))
    }

    /// Sends a request and decodes its response.
    pub fn request<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response> {
        let (correlation, frame) = self.encode(version, req)?;
        self.send_bytes(&frame)?;
        let mut body = self
            .read_frame()?
            .ok_or_else(|| anyhow!("connection closed instead of a response to API {}", R::KEY))?;
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if header.correlation_id != correlation {
            bail!(
                "correlation id {} in response, expected {correlation}",
                header.correlation_id
            );
        }
        R::Response::decode(&mut body, version)
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

/// An uncompressed v2 record batch of `values`, with idempotence fields set
/// when `producer` is `Some((producer_id, epoch, base_sequence))`.
pub fn batch(values: &[&[u8]], producer: Option<(i64, i16, i32)>) -> Result<Bytes> {
    encode_batch(values, None, producer, Compression::None)
}

/// A v2 record batch of `values` in `compression`, record `i` keyed
/// `{key_prefix}{i}` when a prefix is given, idempotence fields as in [`batch`].
/// Timestamps are the current time, so the node's retention pass (7 days by
/// default) never races a test for its records.
pub fn encode_batch(
    values: &[&[u8]],
    key_prefix: Option<&str>,
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Result<Bytes> {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let now = now_ms();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if seq < 0 { -1 } else { seq + i as i32 },
            timestamp: now + i as i64,
            key: key_prefix.map(|p| Bytes::from(format!("{p}{i}"))),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

/// Milliseconds since the Unix epoch, for record timestamps retention keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Fetches `topic`/`partition` from `offset` (Fetch v4, up to 4 MiB) and returns
/// the partition's error code and its raw record-batch bytes.
pub fn fetch(conn: &mut RawConn, topic: &str, partition: i32, offset: i64) -> Result<(i16, Bytes)> {
    fetch_wait(conn, topic, partition, offset, 100)
}

/// [`fetch`] with a chosen `max_wait_ms` (and `min_bytes` 1).
pub fn fetch_wait(
    conn: &mut RawConn,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> Result<(i16, Bytes)> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(4 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(4 << 20)])]);
    let resp = conn.request(4, &req)?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("empty fetch response"))?;
    Ok((p.error_code, p.records.clone().unwrap_or_default()))
}

/// The header fields of each record batch in `records`:
/// `(base_offset, last_offset_delta, attributes)`.
pub fn batch_headers(records: &[u8]) -> Vec<(i64, i32, i16)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while records.len() >= at + 61 {
        let r = &records[at..];
        let base = i64::from_be_bytes(r[0..8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(r[8..12].try_into().expect("4 bytes")) as usize;
        let attrs = i16::from_be_bytes(r[21..23].try_into().expect("2 bytes"));
        let delta = i32::from_be_bytes(r[23..27].try_into().expect("4 bytes"));
        if records.len() < at + 12 + len {
            break; // a partial trailing batch (fetch size limit)
        }
        out.push((base, delta, attrs));
        at += 12 + len;
    }
    out
}

fn topic_name(topic: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_string()))
}

/// Creates a topic (CreateTopics v2) with `partitions` and `configs`; returns
/// the topic's error code (0, or 36 TOPIC_ALREADY_EXISTS, ...).
pub fn create_topic(
    conn: &mut RawConn,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<i16> {
    create_topic_replicated(conn, topic, partitions, 1, configs)
}

/// [`create_topic`] with `replication_factor` replicas per partition.
pub fn create_topic_replicated(
    conn: &mut RawConn,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> Result<i16> {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::CreateTopicsRequest;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let resp = conn.request(2, &req)?;
    resp.topics
        .first()
        .map(|t| t.error_code)
        .ok_or_else(|| anyhow!("empty CreateTopics response"))
}

/// Produces one batch (Produce v7) to `topic`/`partition` with `acks`;
/// returns `(error_code, base_offset)`.
pub fn produce(
    conn: &mut RawConn,
    topic: &str,
    partition: i32,
    acks: i16,
    records: Bytes,
) -> Result<(i16, i64)> {
    let p = produce_partition(conn, 7, topic, partition, acks, records)?;
    Ok((p.error_code, p.base_offset))
}

/// Produces `records` to `topic`/`partition` with Produce `version`; returns the
/// partition's whole response (error message and record errors from v8).
pub fn produce_partition(
    conn: &mut RawConn,
    version: i16,
    topic: &str,
    partition: i32,
    acks: i16,
    records: Bytes,
) -> Result<kafka_protocol::messages::produce_response::PartitionProduceResponse> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let resp = conn.request(version, &req)?;
    resp.responses
        .into_iter()
        .next()
        .and_then(|t| t.partition_responses.into_iter().next())
        .ok_or_else(|| anyhow!("empty Produce response"))
}

/// ListOffsets v1 for `timestamp` (-1 latest, -2 earliest): the offset.
pub fn list_offset(conn: &mut RawConn, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let resp = conn.request(1, &req)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("empty ListOffsets response"))?;
    if p.error_code != 0 {
        bail!("ListOffsets {topic}/{partition}: error {}", p.error_code);
    }
    Ok(p.offset)
}

/// FindCoordinator v3 for group `group`: (error code, coordinator node id).
pub fn find_coordinator(conn: &mut RawConn, group: &str) -> Result<(i16, i32)> {
    use kafka_protocol::messages::FindCoordinatorRequest;
    use kafka_protocol::protocol::StrBytes;
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    let resp = conn.request(3, &req)?;
    Ok((resp.error_code, resp.node_id.0))
}

/// OffsetCommit v2 of `offset` for one partition by `group` as a standalone
/// consumer (generation -1, no member): the partition's error code.
pub fn offset_commit(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i16> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
    use kafka_protocol::protocol::StrBytes;
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)])]);
    let resp = conn.request(2, &req)?;
    resp.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .ok_or_else(|| anyhow!("empty OffsetCommit response"))
}

/// OffsetFetch v3 of one partition by `group`: (error code, committed
/// offset), the top-level error code when set, else the partition's.
pub fn offset_fetch(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<(i16, i64)> {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
    use kafka_protocol::protocol::StrBytes;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![partition])]));
    let resp = conn.request(3, &req)?;
    if resp.error_code != 0 {
        return Ok((resp.error_code, -1));
    }
    resp.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| (p.error_code, p.committed_offset))
        .ok_or_else(|| anyhow!("empty OffsetFetch response"))
}

/// DescribeGroups v0 of `group`: its error code.
pub fn describe_group(conn: &mut RawConn, group: &str) -> Result<i16> {
    use kafka_protocol::messages::{DescribeGroupsRequest, GroupId};
    use kafka_protocol::protocol::StrBytes;
    let req = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let resp = conn.request(0, &req)?;
    resp.groups
        .first()
        .map(|g| g.error_code)
        .ok_or_else(|| anyhow!("empty DescribeGroups response"))
}

/// DeleteRecords v2 of one partition up to `offset`: (error code, low watermark).
pub fn delete_records(
    conn: &mut RawConn,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(i16, i64)> {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::DeleteRecordsRequest;
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])]);
    let resp = conn.request(2, &req)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("empty DeleteRecords response"))?;
    Ok((p.error_code, p.low_watermark))
}

/// Every record of `topic`/`partition` from `from` to the end, as (offset,
/// value as text), fetched in a loop; records the first fetch returns below
/// `from` (the rest of a batch that starts before it) are left out.
pub fn read_all(
    conn: &mut RawConn,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<Vec<(i64, String)>> {
    let mut got = Vec::new();
    let mut offset = from;
    loop {
        let (code, records) = fetch(conn, topic, partition, offset)?;
        if code != 0 {
            bail!("fetch {topic}/{partition} at {offset}: error {code}");
        }
        let vals = values(&records)?;
        if vals.is_empty() {
            return Ok(got);
        }
        for (o, v) in vals {
            offset = o + 1;
            if o >= from {
                got.push((
                    o,
                    String::from_utf8_lossy(&v.unwrap_or_default()).to_string(),
                ));
            }
        }
    }
}

/// The values of every record in `records` (decompressing as needed).
pub fn values(records: &Bytes) -> Result<Vec<(i64, Option<Bytes>)>> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    while buf.len() >= 61 {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)?;
        out.extend(set.records.into_iter().map(|r| (r.offset, r.value)));
    }
    Ok(out)
}
