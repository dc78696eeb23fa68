//! kafkajs 2.2.4 (Node.js), a third independent client: admin createTopics,
//! keyed produce (plain and gzip, acks -1), a consumer group with commit and
//! no re-delivery, admin fetchOffsets and fetchTopicOffsetsByTimestamp. The
//! checks live in `tests/clients/js/kafkajs_basic.js`.

use anyhow::Result;
use weir_tests::{json_lines, unique, NodeOpts, WeirNode};

#[test]
fn kafkajs_produce_group_consume_commit_and_admin_offsets() -> Result<()> {
    let mut node =
        WeirNode::start(NodeOpts::default().arg("--group-initial-rebalance-delay-ms", 0))?;
    let topic = unique("kafkajs");
    let group = unique("kafkajs-group");
    let out = node.node(
        "kafkajs_basic",
        &["--topic", topic.as_str(), "--group", group.as_str()],
    )?;
    let lines = json_lines(&out)?;
    assert_eq!(lines.len(), 1, "summary lines: {lines:?}");
    let summary = &lines[0];
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["consumed"], 60, "{summary}");
    node.assert_alive()
}
