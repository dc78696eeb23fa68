//! Admin work that touches many files (deleting a large topic) must not stall
//! produce and fetch on other partitions: file work runs behind the node's
//! blocking boundary, and no lock that produce or fetch needs is held while it
//! runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::{DeleteTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_tests::raw::{batch, create_topic, fetch, produce, RawConn};
use weir_tests::{NodeOpts, WeirNode};

const PARTITIONS: i32 = 300;

/// Produce + fetch round trips on another topic complete all along while a
/// topic of 300 partitions (each with data, fsync on every append) is deleted.
#[test]
fn produce_and_fetch_go_on_while_a_large_topic_is_deleted() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default().arg("--fsync", "always"))?;
    let mut admin = RawConn::connect(node.bootstrap())?;
    // Creating hundreds of partitions is slow on some filesystems (ext4 scans
    // for a free inode); the deletion, not the creation, is under test.
    admin.set_timeout(Duration::from_secs(120))?;
    ensure!(create_topic(&mut admin, "big", PARTITIONS, &[]).context("create big")? == 0);
    ensure!(create_topic(&mut admin, "other", 1, &[])? == 0);
    for p in 0..PARTITIONS {
        let (err, _) = produce(&mut admin, "big", p, 1, batch(&[b"payload"], None)?)
            .with_context(|| format!("produce to big/{p}"))?;
        ensure!(err == 0, "produce to big/{p}: {err}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let bootstrap = node.bootstrap().to_string();
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<Vec<Instant>> {
            let mut c = RawConn::connect(&bootstrap)?;
            let mut done = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (err, base) = produce(&mut c, "other", 0, 1, batch(&[b"x"], None)?)?;
                ensure!(err == 0, "produce to other: {err}");
                let (err, records) = fetch(&mut c, "other", 0, base)?;
                ensure!(err == 0 && !records.is_empty(), "fetch from other: {err}");
                done.push(Instant::now());
            }
            Ok(done)
        })
    };
    // Let the round trips get going before the deletion starts.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        std::thread::yield_now();
    }

    let started = Instant::now();
    let resp = admin.request(
        4,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(60_000)
            .with_topic_names(vec![TopicName(StrBytes::from_static_str("big"))]),
    )?;
    let finished = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let done = worker.join().expect("worker thread")?;
    let code = resp.responses.first().map(|r| r.error_code);
    ensure!(code == Some(0), "DeleteTopics: {code:?}");

    let took = finished - started;
    ensure!(
        took >= Duration::from_millis(100),
        "deleting {PARTITIONS} partitions took only {took:?}: too fast to show anything"
    );
    // The longest wait between two completed round trips while the deletion ran.
    let mut marks: Vec<Instant> = done
        .iter()
        .copied()
        .filter(|t| *t > started && *t < finished)
        .collect();
    let during = marks.len();
    marks.insert(0, started);
    marks.push(finished);
    let longest = marks
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!("deletion took {took:?}; {during} round trips meanwhile, longest gap {longest:?}");
    ensure!(
        during >= 5 && longest < took / 2,
        "other partitions stalled during the deletion ({took:?}): {during} round trips, longest gap {longest:?}"
    );
    Ok(())
}

/// Joins group `group` as its only member (JoinGroup v5 with the KIP-394
/// member-id round trip, then SyncGroup); returns (member id, generation).
fn join_alone(c: &mut RawConn, group: &str) -> Result<(StrBytes, i32)> {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest, SyncGroupRequest};
    let join = |member: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_session_timeout_ms(6_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(member)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::new())])
    };
    let first = c.request(5, &join(StrBytes::default()))?;
    let member = first.member_id;
    let joined = c.request(5, &join(member.clone()))?;
    ensure!(joined.error_code == 0, "JoinGroup: {}", joined.error_code);
    let synced = c.request(
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(joined.generation_id)
            .with_member_id(member.clone()),
    )?;
    ensure!(synced.error_code == 0, "SyncGroup: {}", synced.error_code);
    Ok((member, joined.generation_id))
}

/// A group member keeps heart-beating every 100 ms while another client
/// deletes 100 topics: every heartbeat is answered with no error (its 6 s
/// session never lapses) and none waits long behind the deletions
/// (librdkafka test 0113 saw a 6 s stall).
#[test]
fn heartbeats_are_answered_while_many_topics_are_deleted() -> Result<()> {
    use kafka_protocol::messages::{GroupId, HeartbeatRequest};
    const TOPICS: usize = 100;
    let node = WeirNode::start(NodeOpts::default().arg("--group-initial-rebalance-delay-ms", 0))?;
    let mut admin = RawConn::connect(node.bootstrap())?;
    admin.set_timeout(Duration::from_secs(120))?;
    let names: Vec<String> = (0..TOPICS).map(|i| format!("doomed-{i}")).collect();
    for n in &names {
        ensure!(create_topic(&mut admin, n, 2, &[])? == 0, "create {n}");
        let (err, _) = produce(&mut admin, n, 0, 1, batch(&[b"x"], None)?)?;
        ensure!(err == 0);
    }
    let mut member_conn = RawConn::connect(node.bootstrap())?;
    let (member, generation) = join_alone(&mut member_conn, "steady")?;

    let stop = Arc::new(AtomicBool::new(false));
    let beats = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<Vec<Duration>> {
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = member_conn.request(
                    4,
                    &HeartbeatRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("steady")))
                        .with_generation_id(generation)
                        .with_member_id(member.clone()),
                )?;
                ensure!(r.error_code == 0, "heartbeat error {}", r.error_code);
                waits.push(sent.elapsed());
                let next = sent + Duration::from_millis(100);
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::yield_now();
                }
            }
            Ok(waits)
        })
    };
    let started = Instant::now();
    let resp = admin.request(
        4,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(60_000)
            .with_topic_names(
                names
                    .iter()
                    .map(|n| TopicName(StrBytes::from_string(n.clone())))
                    .collect(),
            ),
    )?;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let waits = beats.join().expect("heartbeat thread")?;
    ensure!(
        resp.responses.iter().all(|r| r.error_code == 0),
        "DeleteTopics failed"
    );
    let longest = waits.iter().max().copied().unwrap_or_default();
    eprintln!(
        "deleting {TOPICS} topics took {took:?}; {} heartbeats, longest {longest:?}",
        waits.len()
    );
    ensure!(!waits.is_empty(), "no heartbeat completed");
    ensure!(
        longest < Duration::from_secs(2),
        "a heartbeat waited {longest:?} while topics were deleted ({took:?})"
    );
    Ok(())
}
