//! Restarts keep everything: records, topic configs and committed offsets,
//! after a clean SIGTERM shutdown and after SIGKILL, and the log continues at
//! the right offsets afterwards.

use anyhow::{ensure, Result};
use weir_tests::WeirNode;

/// Writes a 3-partition topic with a config, 30 records (acks=all) and a
/// group's committed offsets; after SIGTERM + start on the same data dir, and
/// then after SIGKILL + start, all of it reads back, and appends continue at
/// the next offset of each partition.
#[test]
fn sigterm_and_sigkill_restarts_keep_data_configs_and_offsets() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    let args = ["--topic", "durable", "--group", "durable-group"];
    let with = |mode: &str, per: usize| -> Vec<String> {
        let mut v: Vec<String> = vec!["--mode".into(), mode.into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.extend(["--per-partition".to_string(), per.to_string()]);
        v
    };
    let run = |node: &mut WeirNode, v: Vec<String>| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        node.python("confluent_state", &refs).map(|_| ())
    };
    run(&mut node, with("write", 10))?;

    // Clean shutdown: exit status 0 and the clean-close log line.
    let status = node.stop()?;
    ensure!(status.success(), "weir exited with {status} on SIGTERM");
    ensure!(
        node.stderr_all().contains("logs closed cleanly"),
        "no clean-close line:\n{}",
        node.stderr_tail()
    );
    node.restart()?;
    run(&mut node, with("verify", 10))?;

    // Crash: SIGKILL, then start on the same data dir.
    node.kill()?;
    node.restart()?;
    run(&mut node, with("verify", 11))?;

    // And once more cleanly, to check the log recovered after the crash is sound.
    node.restart()?;
    run(&mut node, with("verify", 12))?;
    node.assert_alive()
}
