//! Restarts keep everything: records, topic configs and committed offsets,
//! after a clean SIGTERM shutdown and after SIGKILL, and the log continues at
//! the right offsets afterwards.

use anyhow::{ensure, Result};
use weir_tests::WeirNode;

/// Runs `confluent_state.py` for `topic` (group `<topic>-group`): `write`
/// creates the state, `verify` checks it and appends one record per partition.
fn confluent_state(node: &mut WeirNode, topic: &str, mode: &str, per: usize) -> Result<()> {
    let group = format!("{topic}-group");
    let per = per.to_string();
    let args = [
        "--mode",
        mode,
        "--topic",
        topic,
        "--group",
        &group,
        "--per-partition",
        &per,
    ];
    node.python("confluent_state", &args).map(|_| ())
}

/// Writes a 3-partition topic with a config, 30 records (acks=all) and a
/// group's committed offsets; after SIGTERM + start on the same data dir, and
/// then after SIGKILL + start, all of it reads back, and appends continue at
/// the next offset of each partition.
#[test]
fn sigterm_and_sigkill_restarts_keep_data_configs_and_offsets() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    let state =
        |node: &mut WeirNode, mode: &str, per: usize| confluent_state(node, "durable", mode, per);
    state(&mut node, "write", 10)?;

    // Clean shutdown: exit status 0 and the clean-close log line.
    let status = node.stop()?;
    ensure!(status.success(), "weir exited with {status} on SIGTERM");
    ensure!(
        node.stderr_all().contains("logs closed cleanly"),
        "no clean-close line:\n{}",
        node.stderr_tail()
    );
    node.restart()?;
    state(&mut node, "verify", 10)?;
    // Every log, the controller's included, was closed cleanly: none is
    // recovered as after a crash.
    let all = node.stderr_all();
    let since = &all[all.rfind("logs closed cleanly").unwrap_or(0)..];
    ensure!(
        !since.contains("clean_shutdown: false"),
        "a log was recovered as after a crash:\n{}",
        since
            .lines()
            .filter(|l| l.contains("clean_shutdown: false"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Crash: SIGKILL, then start on the same data dir.
    node.kill()?;
    node.restart()?;
    state(&mut node, "verify", 11)?;

    // And once more cleanly, to check the log recovered after the crash is sound.
    node.restart()?;
    state(&mut node, "verify", 12)?;
    node.assert_alive()
}

/// A data directory whose metadata file is gone is not taken for an empty node:
/// the node refuses to start with a precise error and deletes no log; with the
/// file back, it serves the data again.
#[test]
fn missing_metadata_refuses_to_start_instead_of_deleting_logs() -> Result<()> {
    use weir_tests::raw::{batch, create_topic, fetch, produce, RawConn};
    let mut node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "keep", 1, &[])? == 0);
    ensure!(produce(&mut c, "keep", 0, 1, batch(&[b"precious"], None)?)?.0 == 0);
    drop(c);
    node.stop()?;
    let meta = node.data_dir().join("meta").join("topics.json");
    let aside = node.data_dir().join("topics.json.aside");
    std::fs::rename(&meta, &aside)?;
    ensure!(node.restart().is_err(), "node started without its metadata");
    ensure!(
        node.stderr_all().contains("refusing to start"),
        "no precise error on stderr:\n{}",
        node.stderr_tail()
    );
    ensure!(
        node.data_dir().join("logs").join("keep-0").is_dir(),
        "the log was deleted"
    );
    std::fs::rename(&aside, &meta)?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let (code, recs) = fetch(&mut c, "keep", 0, 0)?;
    ensure!(
        code == 0 && !recs.is_empty(),
        "data gone after restoring metadata: code {code}"
    );
    Ok(())
}

/// A data directory written before partitions were Raft groups (no
/// `meta.properties`, no `raft-*` files beside the partition logs) opens with
/// nothing lost: every record and committed offset reads back, and appends
/// continue at the next offset.
/// (The directory is made by removing what this version adds: the layout of
/// the previous version.)
#[test]
fn a_data_dir_from_before_raft_opens_with_nothing_lost() -> Result<()> {
    let mut node = WeirNode::start_default()?;
    let state =
        |node: &mut WeirNode, mode: &str, per: usize| confluent_state(node, "legacy", mode, per);
    state(&mut node, "write", 10)?;
    ensure!(node.stop()?.success());
    let mut removed = 0;
    std::fs::remove_file(node.data_dir().join("meta.properties"))?;
    for part in std::fs::read_dir(node.data_dir().join("logs"))? {
        for f in std::fs::read_dir(part?.path())? {
            let f = f?;
            if f.file_name().to_string_lossy().starts_with("raft-") {
                std::fs::remove_file(f.path())?;
                removed += 1;
            }
        }
    }
    ensure!(removed > 0, "no raft files found to remove");
    node.restart()?;
    state(&mut node, "verify", 10)?;
    // Writes continue after the old data, and survive another restart.
    node.restart()?;
    state(&mut node, "verify", 11)?;
    node.assert_alive()
}

/// Data removed below the high watermark (DeleteRecords here; retention and
/// compaction take the same path) is forgotten by the partition's Raft log
/// first, so a restart does not try to re-read batches that are gone: the
/// node starts, keeps the new log start, and appends continue.
#[test]
fn a_restart_after_deleted_records_serves_on() -> Result<()> {
    use weir_tests::raw::{batch, create_topic, delete_records, list_offset, produce, RawConn};
    let mut node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "trim", 1, &[("segment.bytes", "1024")])? == 0);
    let value = vec![b'v'; 300];
    for _ in 0..20 {
        ensure!(produce(&mut c, "trim", 0, -1, batch(&[&value], None)?)?.0 == 0);
    }
    let deleted = delete_records(&mut c, "trim", 0, 15)?;
    ensure!(deleted == (0, 15), "DeleteRecords: {deleted:?}");
    drop(c);
    node.kill()?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(list_offset(&mut c, "trim", 0, -2)? == 15, "log start lost");
    let (err, base) = produce(&mut c, "trim", 0, -1, batch(&[b"after"], None)?)?;
    ensure!(
        (err, base) == (0, 20),
        "append after restart: {:?}",
        (err, base)
    );
    node.assert_alive()
}

/// A byte flipped on disk in the middle of a segment (kill -9, then damage)
/// after DeleteRecords: recovery cuts the log at the damaged batch, which is
/// below where the one-voter Raft group had purged to. The node still starts:
/// the records before the damage are served, the lost ones are a gap, and
/// appends continue after it with offsets never handed out twice.
#[test]
fn a_log_damaged_below_its_raft_anchor_serves_on_past_the_gap() -> Result<()> {
    use weir_tests::raw::{
        batch, create_topic, delete_records, list_offset, produce, read_all, RawConn,
    };
    let mut node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "dmg", 1, &[])? == 0);
    for i in 0..20 {
        let value = format!("v{i:02}-{}", "x".repeat(200));
        ensure!(produce(&mut c, "dmg", 0, -1, batch(&[value.as_bytes()], None)?)?.0 == 0);
    }
    ensure!(delete_records(&mut c, "dmg", 0, 5)? == (0, 5));
    drop(c);
    node.kill()?;
    let seg = node.data_dir().join("logs/dmg-0/00000000000000000000.log");
    let mut bytes = std::fs::read(&seg)?;
    // A byte inside batch 10's CRC-covered part (the file may be longer
    // than its batches, so walk them).
    let mut at = 0;
    while i64::from_be_bytes(bytes[at..at + 8].try_into()?) != 10 {
        at += 12 + usize::try_from(i32::from_be_bytes(bytes[at + 8..at + 12].try_into()?))?;
    }
    bytes[at + 40] ^= 0xff;
    std::fs::write(&seg, &bytes)?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(
        list_offset(&mut c, "dmg", 0, -1)? == 20,
        "the end moved back"
    );
    let got = read_all(&mut c, "dmg", 0, 5)?;
    let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
    ensure!(
        offsets == vec![5, 6, 7, 8, 9],
        "served after the damage: {offsets:?}"
    );
    ensure!(got.iter().all(|(o, v)| v.starts_with(&format!("v{o:02}-"))));
    let (err, base) = produce(&mut c, "dmg", 0, -1, batch(&[b"after"], None)?)?;
    ensure!(
        (err, base) == (0, 20),
        "append after the gap: {:?}",
        (err, base)
    );
    let got = read_all(&mut c, "dmg", 0, 7)?;
    ensure!(
        got.last().map(|(o, v)| (*o, v.as_str())) == Some((20, "after")),
        "{got:?}"
    );
    node.assert_alive()
}

/// A partition whose Raft state cannot be opened (its anchor file
/// overwritten) goes offline instead of keeping the node down: the node
/// starts and serves its other partitions, the damaged one answers
/// KAFKA_STORAGE_ERROR and is named by /v1/health (not ready), its files
/// stay untouched, and once the file is repaired a restart serves it again.
#[test]
fn a_partition_with_damaged_raft_state_goes_offline_and_the_rest_is_served() -> Result<()> {
    use weir_tests::raw::{batch, create_topic, produce, read_all, RawConn};
    let mut node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "half", 2, &[])? == 0);
    for p in 0..2 {
        let v = format!("before-{p}");
        ensure!(produce(&mut c, "half", p, -1, batch(&[v.as_bytes()], None)?)?.0 == 0);
    }
    drop(c);
    node.kill()?;
    let anchor = node.data_dir().join("logs/half-0/raft-state");
    let saved = std::fs::read(&anchor)?;
    std::fs::write(&anchor, b"garbage")?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let (err, base) = produce(&mut c, "half", 1, -1, batch(&[b"after-1"], None)?)?;
    ensure!(
        (err, base) == (0, 1),
        "the healthy partition: {:?}",
        (err, base)
    );
    let got: Vec<String> = read_all(&mut c, "half", 1, 0)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    ensure!(got == ["before-1", "after-1"], "{got:?}");
    let (err, _) = produce(&mut c, "half", 0, -1, batch(&[b"after-0"], None)?)?;
    ensure!(
        err == 56,
        "the offline partition answers KAFKA_STORAGE_ERROR, got {err}"
    );
    let (status, body) = node.http_get("/v1/health")?;
    ensure!(
        status != 200 && body.contains("half-0 (offline)"),
        "{status} {body}"
    );
    ensure!(
        std::fs::read(&anchor)? == b"garbage",
        "the damaged file was rewritten"
    );
    drop(c);
    node.stop()?;
    std::fs::write(&anchor, saved)?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let got: Vec<String> = read_all(&mut c, "half", 0, 0)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    ensure!(got == ["before-0"], "after the repair: {got:?}");
    node.assert_alive()
}

/// A lost Raft anchor file after DeleteRecords (the one-voter group had
/// purged its Raft log up to its snapshot) is rebuilt from the snapshot:
/// the records kept are still served and appends continue after them.
/// Found from outside: the group restarted its log past them and every
/// record was dropped, logged at info level.
#[test]
fn a_lost_raft_anchor_is_rebuilt_from_the_snapshot() -> Result<()> {
    use weir_tests::raw::{
        batch, create_topic, delete_records, list_offset, produce, read_all, RawConn,
    };
    let mut node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "noanchor", 1, &[])? == 0);
    for i in 0..30 {
        let v = format!("v{i}");
        ensure!(produce(&mut c, "noanchor", 0, -1, batch(&[v.as_bytes()], None)?)?.0 == 0);
    }
    ensure!(delete_records(&mut c, "noanchor", 0, 5)? == (0, 5));
    drop(c);
    node.kill()?;
    std::fs::remove_file(node.data_dir().join("logs/noanchor-0/raft-state"))?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(list_offset(&mut c, "noanchor", 0, -2)? == 5, "log start");
    let got: Vec<i64> = read_all(&mut c, "noanchor", 0, 5)?
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    ensure!(got == (5..30).collect::<Vec<i64>>(), "served: {got:?}");
    let (err, base) = produce(&mut c, "noanchor", 0, -1, batch(&[b"after"], None)?)?;
    ensure!((err, base) == (0, 30), "append: {:?}", (err, base));
    node.assert_alive()
}

/// A lost Raft side file (the group's entries that are not data, its
/// membership first) with the segments kept: the partition's Raft state
/// starts over around its records, which stay, and appends continue after
/// them. Found from outside: the partition never elected a leader again
/// (produce timed out) while /v1/health said ok.
#[test]
fn a_lost_raft_side_file_starts_the_raft_state_over_around_the_records() -> Result<()> {
    use weir_tests::raw::{batch, create_topic, produce, read_all, RawConn};
    let mut node = WeirNode::start_default()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "noside", 1, &[])? == 0);
    for i in 0..5 {
        let v = format!("v{i}");
        ensure!(produce(&mut c, "noside", 0, -1, batch(&[v.as_bytes()], None)?)?.0 == 0);
    }
    drop(c);
    node.kill()?;
    std::fs::remove_file(node.data_dir().join("logs/noside-0/raft-entries"))?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    let (err, base) = weir_tests::poll_until(std::time::Duration::from_secs(30), || {
        let r = produce(&mut c, "noside", 0, -1, batch(&[b"after"], None)?)?;
        Ok((r.0 == 0).then_some(r))
    })?;
    ensure!((err, base) == (0, 5), "append: {:?}", (err, base));
    let got: Vec<String> = read_all(&mut c, "noside", 0, 0)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    ensure!(got == ["v0", "v1", "v2", "v3", "v4", "after"], "{got:?}");
    node.assert_alive()
}
