//! Consumer groups through confluent-kafka: partition split, rebalance on leave,
//! commit, and resume from committed offsets.

use anyhow::Result;
use weir_tests::{json_lines, WeirNode};

/// Two members split a 4-partition topic; after one closes the other owns all
/// four; offsets committed at 5 per partition are where a new member resumes,
/// with no committed record delivered again.
#[test]
fn members_split_rebalance_commit_and_resume() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    let out = node.python(
        "confluent_groups",
        &["--topic", "group-topic", "--group", "g1"],
    )?;
    let phases = json_lines(&out)?;
    assert_eq!(phases.len(), 3, "phases: {phases:?}");
    assert_eq!(phases[2]["records"], 20);
    node.assert_alive()
}
