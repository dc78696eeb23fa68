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
