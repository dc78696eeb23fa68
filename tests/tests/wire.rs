//! The Kafka wire protocol from a bare Rust client: idempotent duplicates and
//! sequence gaps, MESSAGE_TOO_LARGE, and bad input (bad frame lengths, garbage
//! bodies, unknown APIs, unsupported versions) that must never take the node
//! down or stop it serving other clients.

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, MetadataRequest, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use weir_tests::raw::{self, batch, create_topic, fetch, list_offset, produce, RawConn};
use weir_tests::WeirNode;

/// A well-behaved client produces one record and reads it back.
fn served(node: &mut WeirNode, value: &str) -> Result<()> {
    let mut c = RawConn::connect(node.bootstrap())?;
    let (err, base) = produce(&mut c, "health", 0, 1, batch(&[value.as_bytes()], None)?)?;
    ensure!(err == 0, "produce to health: error {err}");
    let (err, records) = fetch(&mut c, "health", 0, base)?;
    ensure!(err == 0, "fetch from health: error {err}");
    let got = raw::values(&records)?;
    ensure!(
        got.iter()
            .any(|(o, v)| *o == base && v.as_deref() == Some(value.as_bytes())),
        "record {base} ({value}) not read back: {got:?}"
    );
    node.assert_alive()
}

fn node_with_health_topic() -> Result<WeirNode> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "health", 1, &[])? == 0);
    Ok(node)
}

/// Sends `bytes` on a fresh connection and expects the node to close it
/// (possibly after an error response).
fn expect_closed(node: &mut WeirNode, what: &str, bytes: &[u8]) -> Result<()> {
    let mut c = RawConn::connect(node.bootstrap())?;
    c.send_bytes(bytes)?;
    ensure!(
        c.is_closed_by_peer()?,
        "{what}: connection still open after 10 s"
    );
    served(node, what).with_context(|| format!("after {what}"))
}

fn header(api_key: i16, version: i16, correlation: i32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api_key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&correlation.to_be_bytes());
    h.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    h
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// An idempotent batch sent twice gets the same base offset and is written
/// once; a sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER (45); the expected
/// sequence is still accepted afterwards.
#[test]
fn idempotent_duplicate_and_sequence_gap() -> Result<()> {
    let mut node = node_with_health_topic()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "idem", 1, &[])? == 0);
    let init = c.request(
        1,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1),
    )?;
    ensure!(
        init.error_code == 0,
        "InitProducerId error {}",
        init.error_code
    );
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    ensure!(pid >= 0, "producer id {pid}");

    let b0 = batch(&[b"a", b"b", b"c"], Some((pid, epoch, 0)))?;
    let first = produce(&mut c, "idem", 0, -1, b0.clone())?;
    let again = produce(&mut c, "idem", 0, -1, b0)?;
    assert_eq!(first, (0, 0), "first idempotent batch");
    assert_eq!(again, (0, 0), "retried batch must get the original offsets");
    assert_eq!(
        list_offset(&mut c, "idem", 0, -1)?,
        3,
        "log end after a duplicate"
    );

    let gap = produce(
        &mut c,
        "idem",
        0,
        -1,
        batch(&[b"x"], Some((pid, epoch, 5)))?,
    )?;
    assert_eq!(
        gap.0, 45,
        "sequence gap must be OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(
        list_offset(&mut c, "idem", 0, -1)?,
        3,
        "log end after a refused gap"
    );

    let next = produce(
        &mut c,
        "idem",
        0,
        -1,
        batch(&[b"d"], Some((pid, epoch, 3)))?,
    )?;
    assert_eq!(next, (0, 3), "the expected sequence after a refused gap");
    let (err, records) = fetch(&mut c, "idem", 0, 0)?;
    ensure!(err == 0);
    let vals: Vec<_> = raw::values(&records)?
        .into_iter()
        .map(|(o, v)| (o, v.unwrap_or_default()))
        .collect();
    assert_eq!(
        vals,
        vec![
            (0, "a".into()),
            (1, "b".into()),
            (2, "c".into()),
            (3, "d".into())
        ]
    );
    served(&mut node, "after idempotence")
}

/// A batch above the topic's `max.message.bytes` gets MESSAGE_TOO_LARGE (10)
/// and nothing is written; the same record fits a topic with a higher limit.
#[test]
fn message_above_max_message_bytes_is_refused() -> Result<()> {
    let mut node = node_with_health_topic()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "small", 1, &[("max.message.bytes", "10000")])? == 0);
    ensure!(create_topic(&mut c, "default-limit", 1, &[])? == 0);
    let big = vec![b'x'; 20_000];
    let (err, _) = produce(&mut c, "small", 0, 1, batch(&[&big], None)?)?;
    assert_eq!(err, 10, "20 kB batch on a 10 kB topic");
    assert_eq!(list_offset(&mut c, "small", 0, -1)?, 0);
    let huge = vec![b'y'; 1_100_000];
    let (err, _) = produce(&mut c, "default-limit", 0, 1, batch(&[&huge], None)?)?;
    assert_eq!(err, 10, "1.1 MB batch over the default 1048588");
    let (err, base) = produce(&mut c, "default-limit", 0, 1, batch(&[&big], None)?)?;
    assert_eq!((err, base), (0, 0), "20 kB under the default limit");
    served(&mut node, "after too-large")
}

/// ApiVersions at a version the node does not know is answered with a v0
/// ApiVersions response carrying error 35 and the API list (so clients can
/// downgrade), and the connection stays usable.
#[test]
fn api_versions_v99_gets_error_35_and_the_api_list() -> Result<()> {
    let mut node = node_with_health_topic()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let mut body = header(18, 99, 4242);
    body.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // a body no version defines
    c.send_bytes(&frame(&body))?;
    let mut resp = c
        .read_frame()?
        .context("connection closed instead of an ApiVersions response")?;
    let h = ResponseHeader::decode(&mut resp, 0)?;
    assert_eq!(h.correlation_id, 4242);
    let r = ApiVersionsResponse::decode(&mut resp, 0)?;
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    let av = r
        .api_keys
        .iter()
        .find(|k| k.api_key == 18)
        .context("ApiVersions missing from its own list")?;
    assert!(av.min_version == 0 && av.max_version >= 3, "{av:?}");
    for key in [0i16, 1, 3] {
        assert!(
            r.api_keys.iter().any(|k| k.api_key == key),
            "API {key} missing"
        );
    }
    // The client downgrades on the same connection.
    let ok = c.request(
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir-tests"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )?;
    assert_eq!(ok.error_code, 0);
    served(&mut node, "after ApiVersions v99")
}

/// Bad frames close the offending connection only: a negative length, a huge
/// length, a length too short for a header, a garbage body of a known API, a
/// frame of random bytes, an unknown API key, an unsupported Metadata version,
/// and a frame cut off mid-way. After each, another client is served and the
/// node is alive.
#[test]
fn bad_input_closes_only_the_offending_connection() -> Result<()> {
    let mut node = node_with_health_topic()?;
    expect_closed(&mut node, "negative length", &(-5i32).to_be_bytes())?;
    expect_closed(&mut node, "huge length", &i32::MAX.to_be_bytes())?;
    expect_closed(&mut node, "length 4", &frame(&[0, 3, 0, 1]))?;

    let mut garbage = header(3, 1, 7); // Metadata v1 ...
    garbage.extend_from_slice(&[0x00, 0x00, 0x00, 0x09, 0x01]); // ... 9 topics, 1 byte
    expect_closed(&mut node, "garbage Metadata body", &frame(&garbage))?;

    let mut produce_garbage = header(0, 7, 8); // Produce v7 ...
    produce_garbage.extend_from_slice(&[0xff; 64]); // ... with nonsense fields
    expect_closed(&mut node, "garbage Produce body", &frame(&produce_garbage))?;

    let random: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    expect_closed(&mut node, "random bytes", &frame(&random))?;

    expect_closed(&mut node, "unknown API key", &frame(&header(999, 0, 9)))?;
    expect_closed(&mut node, "negative API key", &frame(&header(-3, 0, 9)))?;

    let mut c = RawConn::connect(node.bootstrap())?;
    let (_, md) = c.encode(0, &MetadataRequest::default())?;
    let mut md = md.to_vec();
    md[6..8].copy_from_slice(&99i16.to_be_bytes()); // Metadata v99
    c.send_bytes(&md)?;
    ensure!(
        c.is_closed_by_peer()?,
        "Metadata v99: connection still open"
    );
    served(&mut node, "after Metadata v99")?;

    // A frame that promises 100 bytes, delivers 10, then the client goes away.
    {
        let mut c = RawConn::connect(node.bootstrap())?;
        let mut partial = 100i32.to_be_bytes().to_vec();
        partial.extend_from_slice(&header(3, 1, 10));
        c.send_bytes(&partial)?;
    }
    served(&mut node, "after a truncated frame")?;

    // The node counted the bad requests.
    let (status, metrics) = node.http_get("/metrics")?;
    assert_eq!(status, 200);
    let bad: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weir_bad_requests_total "))
        .context("no weir_bad_requests_total")?
        .trim()
        .parse()?;
    assert!(bad >= 9, "weir_bad_requests_total {bad}");
    node.assert_alive()
}

/// A request whose array length claims far more elements than the frame holds
/// (Metadata v1 with 2^31-1 topics in a 19-byte frame) must be refused like
/// any malformed request. kafka-protocol 0.18 sized the allocation from the wire
/// count and the node aborted; the vendored patch (vendor/kafka-protocol) bounds it.
#[test]
fn huge_array_count_does_not_crash_the_node() -> Result<()> {
    let mut node = node_with_health_topic()?;
    let mut garbage = header(3, 1, 7);
    garbage.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0x01]);
    expect_closed(&mut node, "Metadata with 2^31-1 topics", &frame(&garbage))
}

/// The admin listener answers `/metrics` (Prometheus text with request
/// counters that move with traffic), `/v1/health` (JSON status ok) and 404s
/// unknown paths.
#[test]
fn admin_http_metrics_and_health() -> Result<()> {
    let mut node = node_with_health_topic()?;
    served(&mut node, "metrics traffic")?;
    let (status, body) = node.http_get("/v1/health")?;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(body.trim())?;
    assert_eq!(v["status"], "ok", "{body}");
    // Every hosted partition (the topic's and __consumer_offsets) has a leader.
    assert_eq!(v["checks"]["partitions_led"], true, "{body}");
    assert_eq!(v["leaderless_count"], 0, "{body}");
    let (status, body) = node.http_get("/metrics")?;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE weir_requests_total counter"),
        "{body}"
    );
    assert!(
        body.contains("weir_requests_total{api_key=\"0\"}"),
        "no produce counter: {body}"
    );
    let produced: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("weir_produce_bytes_total "))
        .context("no weir_produce_bytes_total")?
        .trim()
        .parse()?;
    assert!(produced > 0, "weir_produce_bytes_total {produced}");
    let (status, _) = node.http_get("/no/such/path")?;
    assert_eq!(status, 404);
    // A request head arriving in two TCP segments is still read whole.
    let (status, _) = weir_tests::http_request(
        node.admin_addr(),
        &[b"GET /v1/hea", b"lth HTTP/1.1\r\nHost: x\r\n\r\n"],
    )?;
    assert_eq!(status, 200, "split request head");
    // Found from outside: a body or head over the limits reset the
    // connection without an answer.
    let big = vec![b' '; (1 << 20) + 1024];
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    let (status, body) = weir_tests::http_request(node.admin_addr(), &[head.as_bytes(), &big])?;
    assert_eq!(status, 413, "oversized body: {body}");
    assert!(body.contains("over the 1048576-byte limit"), "{body}");
    let long = format!(
        "GET /v1/jobs/x/state?key={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    let (status, body) = weir_tests::http_request(node.admin_addr(), &[long.as_bytes()])?;
    assert_eq!(status, 431, "oversized head: {body}");
    node.assert_alive()
}

/// Fetch long-polls: on an empty partition it waits up to `max_wait_ms`, and a
/// produce to that partition (not to another one) ends the wait at once.
#[test]
fn long_poll_fetch_waits_and_is_woken_by_a_produce() -> Result<()> {
    use std::time::{Duration, Instant};
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "lp", 1, &[])? == 0);
    ensure!(create_topic(&mut c, "lp-other", 1, &[])? == 0);

    let start = Instant::now();
    let (code, recs) = raw::fetch_wait(&mut c, "lp", 0, 0, 400)?;
    ensure!(
        code == 0 && recs.is_empty(),
        "empty partition: code {code}, {} bytes",
        recs.len()
    );
    ensure!(
        start.elapsed() >= Duration::from_millis(350),
        "returned after {:?}, before max_wait",
        start.elapsed()
    );

    let fetches = |node: &WeirNode| -> Result<u64> {
        let (_, body) = weir_tests::http_get(node.admin_addr(), "/metrics")?;
        Ok(body
            .lines()
            .find(|l| l.starts_with("weir_requests_total{api_key=\"1\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    };
    let before = fetches(&node)?;
    let addr = node.bootstrap().to_string();
    let waiter = std::thread::spawn(move || -> Result<(Duration, i16, bytes::Bytes)> {
        let mut c = RawConn::connect(&addr)?;
        let start = Instant::now();
        let (code, recs) = raw::fetch_wait(&mut c, "lp", 0, 0, 30_000)?;
        Ok((start.elapsed(), code, recs))
    });
    // Produce only once the long poll is in the node.
    weir_tests::poll_until(Duration::from_secs(10), || {
        Ok((fetches(&node)? > before).then_some(()))
    })?;
    ensure!(produce(&mut c, "lp-other", 0, 1, batch(&[b"x"], None)?)?.0 == 0);
    ensure!(produce(&mut c, "lp", 0, 1, batch(&[b"y"], None)?)?.0 == 0);
    let (elapsed, code, recs) = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("fetch thread panicked"))??;
    ensure!(
        code == 0 && !recs.is_empty(),
        "woken fetch: code {code}, {} bytes",
        recs.len()
    );
    ensure!(
        elapsed < Duration::from_secs(20),
        "fetch waited {elapsed:?}: the produce did not wake it"
    );
    Ok(())
}

/// A topic with `message.timestamp.type=LogAppendTime` gets the broker's time:
/// the fetched batch carries the LogAppendTime attribute and a maxTimestamp at or
/// after the produce, whatever timestamp the producer set.
#[test]
fn log_append_time_topics_carry_the_broker_time() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(
        create_topic(
            &mut c,
            "lat",
            1,
            &[("message.timestamp.type", "LogAppendTime")]
        )? == 0
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    ensure!(produce(&mut c, "lat", 0, 1, batch(&[b"a", b"b"], None)?)?.0 == 0);
    let (code, recs) = fetch(&mut c, "lat", 0, 0)?;
    ensure!(code == 0, "fetch error {code}");
    let h = weir_storage::BatchHeader::parse(&recs).context("fetched batch")?;
    ensure!(h.log_append_time(), "attributes {:#x}", h.attributes);
    ensure!(
        h.max_timestamp >= before,
        "maxTimestamp {} before the produce at {before}",
        h.max_timestamp
    );
    weir_storage::validate_batch(&recs, usize::MAX, weir_storage::CountRule::Stored)
        .context("CRC after stamping")?;
    Ok(())
}

/// A record acknowledged with acks=1 is visible to the very next request, as
/// on a one-replica Kafka partition: ListOffsets (latest) already counts it
/// and a fetch returns it (on a single node the high watermark does not wait
/// for the group-commit fsync at acks=1).
#[test]
fn acks_1_records_are_visible_to_the_next_request() -> Result<()> {
    let node = node_with_health_topic()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    for i in 0..50 {
        let (err, base) = produce(
            &mut c,
            "health",
            0,
            1,
            batch(&[format!("v{i}").as_bytes()], None)?,
        )?;
        ensure!(err == 0, "produce: error {err}");
        let latest = list_offset(&mut c, "health", 0, -1)?;
        ensure!(
            latest > base,
            "acked offset {base} not visible: latest {latest}"
        );
    }
    Ok(())
}

/// Found from outside: every acks=all produce logged a warning from
/// openraft's responder (the proposal is answered at the commit, so nobody
/// waits for the apply's answer any more): thousands of lines an hour on a
/// busy node. A node serving acks=all writes logs no warning for them.
#[test]
fn acks_all_produces_log_no_warnings() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "quiet", 1, &[])? == 0);
    let mut produce_one = |i: usize| -> Result<()> {
        let (err, _) = produce(
            &mut c,
            "quiet",
            0,
            -1,
            batch(&[format!("v{i}").as_bytes()], None)?,
        )?;
        ensure!(err == 0, "produce: error {err}");
        Ok(())
    };
    // The partition leads once the first produce is answered; what its
    // election logged before (openraft warns of messages of an older
    // vote) is not what this test is about.
    produce_one(0)?;
    let before = node.stderr_all().lines().count();
    for i in 1..50 {
        produce_one(i)?;
    }
    let warnings: Vec<String> = node
        .stderr_all()
        .lines()
        .skip(before)
        .filter(|l| l.contains("WARN"))
        .map(str::to_string)
        .collect();
    ensure!(
        warnings.is_empty(),
        "warnings logged:\n{}",
        warnings.join("\n")
    );
    Ok(())
}

/// Found from outside: an idempotent confluent-kafka producer whose topic
/// was deleted and created again got UNKNOWN_PRODUCER_ID (59) for its next
/// batch, which librdkafka takes as fatal. Kafka accepts the batch of a
/// producer its partition has no state for at any sequence ("If there is no
/// current producer epoch (possibly because all producer records have been
/// deleted due to retention or the DeleteRecords API) accept writes with any
/// sequence number", `ProducerAppendInfo`); from there on the producer is
/// known: its retries are answered with their offsets and a gap is out of
/// order.
#[test]
fn a_producer_the_partition_does_not_know_is_taken_at_any_sequence() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "unknown-pid", 1, &[])? == 0);
    let send = |c: &mut RawConn, seq: i32| {
        produce(
            c,
            "unknown-pid",
            0,
            -1,
            batch(&[b"v"], Some((7500, 0, seq)))?,
        )
    };
    let (err, first) = send(&mut c, 999)?;
    ensure!(
        err == 0,
        "a producer with no state at sequence 999: error {err}"
    );
    let (err, next) = send(&mut c, 1000)?;
    ensure!(
        err == 0 && next == first + 1,
        "the next batch: error {err} at {next}"
    );
    let (err, again) = send(&mut c, 999)?;
    ensure!(
        err == 0 && again == first,
        "a retry: error {err} at {again}"
    );
    let (err, _) = send(&mut c, 1005)?;
    ensure!(
        err == 45,
        "a gap: error {err}, not OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    Ok(())
}

/// The topics holding Weir's own state.
const INTERNAL_TOPICS: [&str; 3] = [
    "__consumer_offsets",
    "__weir_job_state",
    "__weir_job_status",
];

/// Found from outside: DeleteRecords to the end of `__consumer_offsets`
/// was accepted, and the next load of the groups found no committed offset.
/// As Kafka does for internal topics, it is refused with
/// INVALID_TOPIC_EXCEPTION and nothing is deleted.
#[test]
fn delete_records_on_internal_topics_is_refused() -> Result<()> {
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    for topic in INTERNAL_TOPICS {
        let (code, low) = weir_tests::raw::delete_records(&mut c, topic, 0, -1)?;
        ensure!(
            code == 17 && low == -1,
            "DeleteRecords on {topic}: error {code}, low watermark {low}"
        );
    }
    Ok(())
}

/// Found from outside: DeleteTopics of the stream jobs' checkpoint and
/// status topics was accepted (every job would restart from nothing); like
/// `__consumer_offsets`, they are refused with INVALID_TOPIC_EXCEPTION and a
/// message that says why.
#[test]
fn deleting_internal_topics_is_refused() -> Result<()> {
    use kafka_protocol::messages::{DeleteTopicsRequest, TopicName};
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    for topic in INTERNAL_TOPICS {
        let resp = c.request(
            5,
            &DeleteTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topic_names(vec![TopicName(StrBytes::from_string(topic.into()))]),
        )?;
        let r = resp.responses.first().context("no result")?;
        let message = r.error_message.as_deref().unwrap_or_default();
        ensure!(
            r.error_code == 17 && message.contains("Weir's own state"),
            "DeleteTopics {topic}: error {} {message:?}",
            r.error_code
        );
    }
    Ok(())
}

/// Found from outside: ListOffsets MAX_TIMESTAMP (-3, KIP-734) answered the
/// last offset with timestamp -1. It answers the first record holding the
/// largest timestamp, and that timestamp, as Kafka does.
#[test]
fn list_offsets_max_timestamp_finds_the_latest_record_time() -> Result<()> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
    let node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "maxts", 1, &[])? == 0);
    let now = weir_tests::raw::now_ms();
    // Ten records; the fifth (offset 5) carries the largest timestamp, and
    // offset 8 carries it again.
    let times: Vec<i64> = (0..10)
        .map(|i| match i {
            5 | 8 => now + 60_000,
            i => now + i,
        })
        .collect();
    let specs: Vec<weir_storage::record::RecordSpec> = times
        .iter()
        .map(|t| (None, Some(b"v".to_vec()), *t))
        .collect();
    let records = bytes::Bytes::from(weir_storage::record::build_batch(&specs));
    let (err, _) = produce(&mut c, "maxts", 0, -1, records)?;
    ensure!(err == 0, "produce: error {err}");
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("maxts")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-3)])]);
    let resp = c.request(7, &req)?;
    let p = &resp.topics[0].partitions[0];
    ensure!(
        (p.error_code, p.offset, p.timestamp) == (0, 5, now + 60_000),
        "MAX_TIMESTAMP: error {}, offset {}, timestamp {} (want 5 at {})",
        p.error_code,
        p.offset,
        p.timestamp,
        now + 60_000
    );
    Ok(())
}
