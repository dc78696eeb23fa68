//! Admin APIs through real admin clients (confluent-kafka AdminClient and
//! kafka-python KafkaAdminClient), and kafka-python's idempotent producer and
//! group consumer.

use anyhow::Result;
use weir_tests::{json_lines, WeirNode};

/// confluent AdminClient: create topics (a duplicate is refused), create
/// partitions, describe/alter/incrementally alter configs (a bad value is
/// refused), delete records (watermarks move), list/describe/delete groups,
/// list group offsets, delete topics — each checked against what clients see.
#[test]
fn confluent_admin_client() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    let out = node.python("confluent_admin", &["--prefix", "adm"])?;
    let lines = json_lines(&out)?;
    assert_eq!(lines.last().map(|l| l["ok"].clone()), Some(true.into()));
    node.assert_alive()
}

/// kafka-python: KafkaAdminClient creates a topic with a config, adds a
/// partition, describes and alters configs, lists/describes/deletes groups and
/// deletes the topic; its idempotent producer writes dense per-partition
/// offsets with per-key order; a group consumer commits and a second member
/// of the group gets nothing re-delivered.
#[test]
fn kafka_python_admin_idempotent_producer_and_group() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    let out = node.python("kafka_python_basic", &["--prefix", "kp"])?;
    let lines = json_lines(&out)?;
    assert_eq!(lines.last().map(|l| l["ok"].clone()), Some(true.into()));
    node.assert_alive()
}
