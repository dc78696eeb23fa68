//! Keyed produce and consume through real clients: per-key order, one partition
//! per key, dense offsets, and acks=0.

use anyhow::Result;
use weir_tests::{
    check_keyed, kcat_keyed_input, recs_from_kcat, recs_from_script, NodeOpts, WeirNode,
};

fn four_partition_node() -> Result<WeirNode> {
    WeirNode::start(NodeOpts::default().arg("--default-partitions", 4))
}

/// confluent-kafka produces 300 keyed messages (idempotent) to an auto-created
/// 4-partition topic and consumes them back: dense offsets per partition, each
/// key in one partition, per-key order kept; kcat reads the same log identically.
#[test]
fn confluent_keyed_order_and_dense_offsets() -> Result<()> {
    let mut node = four_partition_node()?;
    let topic = "keyed-confluent";
    let n = "300";
    node.python(
        "confluent_produce",
        &[
            "--topic",
            topic,
            "--count",
            n,
            "--keys",
            "10",
            "--idempotence",
            "true",
        ],
    )?;
    let out = node.python("confluent_consume", &["--topic", topic, "--expect", n])?;
    let per_part = check_keyed(&recs_from_script(&out)?, 300)?;
    assert!(
        per_part.len() > 1,
        "10 keys all landed in one partition: {per_part:?}"
    );
    // Another client reads exactly the same log.
    let out = node.kcat(
        &["-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"],
        b"",
    )?;
    check_keyed(&recs_from_kcat(&out)?, 300)?;
    node.assert_alive()
}

/// kcat produces 200 keyed lines (`-K:`) to a 4-partition topic; confluent-kafka
/// and kcat consume them: dense offsets, one partition per key, per-key order.
#[test]
fn kcat_keyed_order_and_dense_offsets() -> Result<()> {
    let mut node = four_partition_node()?;
    let topic = "keyed-kcat";
    let input = kcat_keyed_input(200, 8);
    node.kcat(
        &["-P", "-t", topic, "-K:", "-X", "acks=all"],
        input.as_bytes(),
    )?;
    let out = node.kcat(
        &["-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"],
        b"",
    )?;
    let per_part = check_keyed(&recs_from_kcat(&out)?, 200)?;
    assert!(
        per_part.len() > 1,
        "8 keys all in one partition: {per_part:?}"
    );
    let out = node.python("confluent_consume", &["--topic", topic, "--expect", "200"])?;
    check_keyed(&recs_from_script(&out)?, 200)?;
    node.assert_alive()
}

/// With acks=0 the producer gets no response, yet every message lands, in order.
#[test]
fn acks_zero_produce_lands() -> Result<()> {
    let mut node = four_partition_node()?;
    let topic = "acks-zero";
    node.python(
        "confluent_produce",
        &["--topic", topic, "--count", "100", "--acks", "0"],
    )?;
    // acks=0 returns before the broker has appended: wait for the log end (bounded).
    let out = node.python("confluent_consume", &["--topic", topic, "--expect", "100"])?;
    check_keyed(&recs_from_script(&out)?, 100)?;
    node.assert_alive()
}
