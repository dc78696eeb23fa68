//! Offsets by timestamp (ListOffsets with a time) with explicit record
//! timestamps, through confluent-kafka and kafka-python.

use anyhow::Result;
use weir_tests::{recs_from_script, WeirNode};

const BASE: i64 = 1_700_000_000_000;

/// Records carry the timestamps the producer set; `offsets_for_times` in both
/// clients finds the first record at or after a time (exact, between records,
/// before the first) and reports none after the last.
#[test]
fn offsets_for_times_with_explicit_timestamps() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    let base = BASE.to_string();
    node.python(
        "confluent_produce",
        &[
            "--topic",
            "ts",
            "--count",
            "10",
            "--partition",
            "0",
            "--timestamp-base",
            &base,
        ],
    )?;
    let out = node.python("confluent_consume", &["--topic", "ts", "--expect", "10"])?;
    let mut recs = recs_from_script(&out)?;
    recs.sort_by_key(|r| r.offset);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.timestamp, Some(BASE + i as i64 * 1000), "record {r:?}");
    }
    for client in ["confluent", "kafka-python"] {
        node.python(
            "offsets_for_times",
            &[
                "--topic", "ts", "--base", &base, "--count", "10", "--client", client,
            ],
        )?;
    }
    node.assert_alive()
}
