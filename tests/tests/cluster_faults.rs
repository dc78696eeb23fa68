//! A seeded randomized fault run against a three-node cluster: while an
//! idempotent acks=all producer (confluent-kafka) writes, one node at a time
//! is killed (-9) and restarted, paused (SIGSTOP/SIGCONT), cut off from its
//! peers, or held (a partition whose bytes arrive after healing). A quorum is
//! always up, so every record must be delivered; afterwards the whole history
//! is checked: acknowledged == read, offsets dense, per-key order, no
//! duplicates, and every replica byte-identical.
//!
//! `WEIR_FAULT_SECS` bounds the run (default 20 s, what CI runs);
//! `WEIR_FAULT_SEED` replays a run (the seed is printed at the start and in
//! every failure). A longer run:
//! `WEIR_FAULT_SECS=600 cargo test -p weir-tests --test cluster_faults -- --nocapture`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use weir_tests::cluster::Cluster;
use weir_tests::raw::{create_topic_replicated, RawConn};
use weir_tests::{check_keyed, poll_until, python, recs_from_script, unique};

/// xorshift64*: a small deterministic generator for the fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Waits until every node answers its health check (all partitions led).
fn healthy(c: &mut Cluster) -> Result<()> {
    let admins: Vec<String> = c.nodes.iter().map(|n| n.admin_addr().to_string()).collect();
    poll_until(Duration::from_secs(60), || {
        for a in &admins {
            if weir_tests::http_get(a, "/v1/health")?.0 != 200 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .context("the cluster did not become healthy again")
}

#[test]
fn randomized_faults_lose_and_duplicate_nothing() -> Result<()> {
    let seed: u64 = match std::env::var("WEIR_FAULT_SEED") {
        Ok(s) => s.parse().context("WEIR_FAULT_SEED")?,
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64
                | 1
        }
    };
    let secs: u64 = std::env::var("WEIR_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("fault run: WEIR_FAULT_SEED={seed} WEIR_FAULT_SECS={secs}");
    run(seed, secs).with_context(|| format!("replay with WEIR_FAULT_SEED={seed}"))
}

fn run(seed: u64, secs: u64) -> Result<()> {
    let mut rng = Rng(seed);
    // WEIR_FAULT_KINDS=0,2 narrows the faults (0 kill, 1 pause, 2 cut, 3 hold).
    let kinds: Vec<u64> = std::env::var("WEIR_FAULT_KINDS")
        .ok()
        .map(|s| s.split(',').filter_map(|k| k.trim().parse().ok()).collect())
        .filter(|k: &Vec<u64>| !k.is_empty())
        .unwrap_or_else(|| vec![0, 1, 2, 3]);
    let mut c = Cluster::start_with_proxies(3, &[])?;
    let topic = unique("faults");
    let mut conn = RawConn::connect(c.node(1).bootstrap())?;
    anyhow::ensure!(create_topic_replicated(&mut conn, &topic, 2, 3, &[])? == 0);
    drop(conn);
    healthy(&mut c)?;

    // ~200 records a second for the run, every one acknowledged by acks=all.
    let count = (secs * 200).max(500) as usize;
    let boot = c.bootstrap();
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            weir_tests::python_within(
                Duration::from_secs(secs * 2 + 120),
                "confluent_produce",
                &boot,
                &[
                    "--topic",
                    &topic,
                    "--count",
                    &count.to_string(),
                    "--keys",
                    "24",
                    "--idempotence",
                    "true",
                    "--interval-ms",
                    "5",
                ],
            )
        })
    };

    let end = Instant::now() + Duration::from_secs(secs);
    let mut faults = Vec::new();
    while Instant::now() < end && !producer.is_finished() {
        let node = 1 + rng.below(3) as i32;
        let hold = Duration::from_millis(500 + rng.below(2500));
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        faults.push(format!("{kind}@{node}/{}ms", hold.as_millis()));
        match kind {
            0 => {
                c.node(node).kill()?;
                std::thread::sleep(hold); // the fault's duration, not a wait for a condition
                c.node(node).restart()?;
            }
            1 => {
                c.node(node).signal("-STOP")?;
                std::thread::sleep(hold);
                c.node(node).signal("-CONT")?;
            }
            2 => {
                c.isolate(node);
                std::thread::sleep(hold);
                c.heal_all();
            }
            _ => {
                for ((from, to), p) in &c.links {
                    if *from == node || *to == node {
                        p.hold();
                    }
                }
                std::thread::sleep(hold);
                c.heal_all();
            }
        }
        healthy(&mut c)?;
    }
    eprintln!("faults (kind@node/duration; 0 kill, 1 pause, 2 cut, 3 hold): {faults:?}");

    let produced = producer.join().expect("producer thread")?;
    let mut seen = std::collections::BTreeMap::new();
    for v in weir_tests::json_lines(&produced)? {
        let at = (
            v["partition"].as_i64().unwrap_or(-1) as i32,
            v["offset"].as_i64().unwrap_or(-1),
        );
        seen.entry(at)
            .or_insert_with(Vec::new)
            .push(v["key"].as_str().unwrap_or_default().to_string());
    }
    // Offset -1: acknowledged without an offset (a retry the broker found
    // older than the batches it remembers: DUPLICATE_SEQUENCE_NUMBER, which
    // clients count as delivered, as with Kafka). Those records are checked
    // by content below (every key's sequence complete, once each).
    let doubled: Vec<_> = seen
        .iter()
        .filter(|((_, offset), keys)| *offset >= 0 && keys.len() > 1)
        .collect();
    anyhow::ensure!(
        doubled.is_empty(),
        "offsets acknowledged to more than one record: {doubled:?}"
    );
    let acked: BTreeSet<(i32, i64)> = seen.into_keys().filter(|(_, o)| *o >= 0).collect();
    let out = python(
        "confluent_consume",
        &c.bootstrap(),
        &[
            "--topic",
            &topic,
            "--expect",
            &count.to_string(),
            "--timeout",
            "60",
        ],
    )?;
    let recs = recs_from_script(&out)?;
    check_keyed(&recs, count)?;
    let read: BTreeSet<(i32, i64)> = recs.iter().map(|r| (r.partition, r.offset)).collect();
    let missing: Vec<_> = acked.difference(&read).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "acknowledged offsets not read: {missing:?}"
    );

    c.await_identical_replicas(&topic, 2)?;
    Ok(())
}
