//! A full disk: the data directory lives on a small tmpfs that this test mounts
//! (it needs root, as CI has). Produce gets KAFKA_STORAGE_ERROR, acknowledged
//! records stay readable, /v1/health says the disk is not writable, the node
//! recovers by itself once space is freed, and after a kill -9 and restart every
//! batch in the logs is whole.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use weir_tests::raw::{self, batch, create_topic, fetch, produce, RawConn};
use weir_tests::{poll_until, NodeOpts, WeirNode};

const KAFKA_STORAGE_ERROR: i16 = 56;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("weir-full-").tempdir()?;
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "this test mounts a small tmpfs and needs root (CAP_SYS_ADMIN): mount said {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self { _dir: dir, mount })
    }

    fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Every record value of partition 0 of `topic`, checking each batch's CRC.
fn read_all(c: &mut RawConn, topic: &str) -> Result<Vec<(i64, Option<Bytes>)>> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (err, records) = fetch(c, topic, 0, offset)?;
        ensure!(err == 0, "fetch {topic} at {offset}: {err}");
        if records.is_empty() {
            return Ok(out);
        }
        let mut pos = 0;
        while pos < records.len() {
            let h = weir_storage::validate_batch(
                &records[pos..],
                usize::MAX,
                weir_storage::CountRule::Stored,
            )
            .with_context(|| format!("{topic}: batch at byte {pos} of the fetch from {offset}"))?;
            pos += h.size();
            offset = h.next_offset();
        }
        out.extend(raw::values(&records)?);
    }
}

/// Every acknowledged `(offset, value)` of "keep" reads back (`when` names the moment).
fn all_acked_read_back(c: &mut RawConn, acked: &[(i64, String)], when: &str) -> Result<()> {
    let got = read_all(c, "keep")?;
    for (offset, v) in acked {
        ensure!(
            got.iter()
                .any(|(o, g)| o == offset && g.as_deref() == Some(v.as_bytes())),
            "acknowledged record {offset} ({v}) lost {when}: {got:?}"
        );
    }
    Ok(())
}

/// Produces to `topic` with `size`-byte records until the node refuses one
/// with KAFKA_STORAGE_ERROR; returns how many were acknowledged. (A write that
/// fails stops the partition's Raft group until it can restart from disk, so
/// each record size fills its own topic.)
fn fill(c: &mut RawConn, topic: &str, size: usize) -> Result<usize> {
    let value = vec![b'f'; size];
    for n in 0..100_000 {
        let (err, _) = produce(c, topic, 0, -1, batch(&[&value], None)?)?;
        match err {
            0 => {}
            KAFKA_STORAGE_ERROR => return Ok(n),
            other => bail!("filling with {size}-byte records: error {other}"),
        }
    }
    bail!("the disk never filled")
}

/// The topics the disk is filled through, one per record size.
const FILLS: [&str; 3] = ["fill-64k", "fill-4k", "fill-256"];

#[test]
fn a_full_disk_refuses_produce_keeps_data_and_recovers_when_space_returns() -> Result<()> {
    let disk = SmallDisk::mount("24m")?;
    // Room the test gives back later, as an operator deleting a file would.
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 4 << 20])?;
    let data = disk.path().join("data");
    let mut node = WeirNode::start(
        NodeOpts {
            data_dir: Some(data),
            ..Default::default()
        }
        .arg("--segment-bytes", 1 << 20),
    )?;
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "keep", 1, &[])? == 0);
    for topic in FILLS {
        ensure!(create_topic(&mut c, topic, 1, &[])? == 0);
    }
    let mut acked = Vec::new();
    for i in 0..20 {
        let v = format!("keep-{i}");
        let (err, base) = produce(&mut c, "keep", 0, -1, batch(&[v.as_bytes()], None)?)?;
        ensure!(err == 0, "produce keep-{i}: {err}");
        acked.push((base, v));
    }

    // Fill the disk to the last page: large records first, then smaller ones.
    let mut filled = 0;
    for (topic, size) in FILLS.into_iter().zip([64 << 10, 4 << 10, 256]) {
        filled += fill(&mut c, topic, size)?;
    }
    ensure!(filled > 10, "only {filled} records fitted on the disk");
    let (err, _) = produce(&mut c, "keep", 0, -1, batch(&[&vec![b'k'; 8192]], None)?)?;
    ensure!(err == KAFKA_STORAGE_ERROR, "produce on a full disk: {err}");

    // Still serving: every acknowledged record reads back, whole.
    all_acked_read_back(&mut c, &acked, "on a full disk")?;
    node.assert_alive()?;
    let (status, body) = node.http_get("/v1/health")?;
    ensure!(status == 503, "health on a full disk: {status} {body}");
    let v: serde_json::Value = serde_json::from_str(body.trim())?;
    ensure!(v["checks"]["disk_writable"] == false, "{body}");

    // Space comes back: the node takes writes again by itself.
    std::fs::remove_file(&ballast)?;
    let (base, v) = poll_until(Duration::from_secs(20), || {
        let v = "after-space".to_string();
        let (err, base) = produce(&mut c, "keep", 0, -1, batch(&[v.as_bytes()], None)?)?;
        Ok((err == 0).then_some((base, v)))
    })?;
    acked.push((base, v));
    // Ready again once every partition's group has restarted (with backoff).
    poll_until(Duration::from_secs(20), || {
        let (status, body) = node.http_get("/v1/health")?;
        ensure!(
            status == 200,
            "health after space returned: {status} {body}"
        );
        Ok(Some(()))
    })?;

    // A kill -9 and a restart: every batch of both logs is whole, nothing
    // acknowledged is missing.
    node.kill()?;
    node.restart()?;
    let mut c = RawConn::connect(node.bootstrap())?;
    all_acked_read_back(&mut c, &acked, "after restart")?;
    let mut filled_back = 0;
    for topic in FILLS {
        filled_back += read_all(&mut c, topic)?.len();
    }
    ensure!(
        filled_back >= filled,
        "{filled} fill records acknowledged, {filled_back} read back after restart"
    );
    let (err, _) = produce(&mut c, "keep", 0, -1, batch(&[b"after-restart"], None)?)?;
    ensure!(err == 0, "produce after restart: {err}");
    Ok(())
}
