//! Offsets by timestamp (ListOffsets with a time) with explicit record
//! timestamps, through confluent-kafka and kafka-python.

use anyhow::Result;
use weir_tests::{raw::now_ms, recs_from_script, WeirNode};

/// Records carry the timestamps the producer set; `offsets_for_times` in both
/// clients finds the first record at or after a time (exact, between records,
/// before the first) and reports none after the last.
#[test]
fn offsets_for_times_with_explicit_timestamps() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    // An hour ago, whole seconds: inside the default 7-day retention, so the
    // node's retention pass cannot delete the records under the test.
    let base_ms = (now_ms() - 3_600_000) / 1000 * 1000;
    let base = base_ms.to_string();
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
        assert_eq!(r.timestamp, Some(base_ms + i as i64 * 1000), "record {r:?}");
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
