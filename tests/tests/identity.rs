//! A data directory records the cluster and node it belongs to
//! (`meta.properties`): clients see that cluster id, a restart keeps it, and a
//! node started on another node's or another cluster's directory refuses with
//! a precise error and touches no data. A directory written before the file
//! existed opens with its data and gets one.

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::messages::MetadataRequest;
use weir_tests::raw::{batch, create_topic, fetch, produce, RawConn};
use weir_tests::{NodeOpts, WeirNode};

fn cluster_id(node: &WeirNode) -> Result<String> {
    let mut c = RawConn::connect(node.bootstrap())?;
    let resp = c.request(9, &MetadataRequest::default().with_topics(Some(vec![])))?;
    resp.cluster_id
        .map(|s| s.to_string())
        .ok_or_else(|| anyhow!("Metadata has no cluster id"))
}

fn start(dir: &std::path::Path, args: &[(&str, &str)]) -> Result<WeirNode> {
    let opts = args.iter().fold(
        NodeOpts {
            data_dir: Some(dir.to_path_buf()),
            args: Vec::new(),
        },
        |o, (k, v)| o.arg(k, v),
    );
    WeirNode::start(opts)
}

/// Starts a node that must refuse; returns its stderr.
fn refused(dir: &std::path::Path, args: &[(&str, &str)]) -> Result<String> {
    let opts = args.iter().fold(
        NodeOpts {
            data_dir: Some(dir.to_path_buf()),
            args: Vec::new(),
        },
        |o, (k, v)| o.arg(k, v),
    );
    let out = std::process::Command::new(weir_tests::weir_bin()?)
        .arg("broker")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(&opts.args)
        .output()?;
    ensure!(!out.status.success(), "the node started");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn data_dir_identity_is_kept_and_enforced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = start(dir.path(), &[("--node-id", "3")])?;
    let id = cluster_id(&node)?;
    ensure!(id.len() == 22, "not a Kafka-style cluster id: {id:?}");
    let mut c = RawConn::connect(node.bootstrap())?;
    ensure!(create_topic(&mut c, "kept", 1, &[])? == 0);
    ensure!(produce(&mut c, "kept", 0, -1, batch(&[b"v"], None)?)?.0 == 0);
    drop(c);
    node.stop()?;

    let err = refused(dir.path(), &[("--node-id", "4")])?;
    ensure!(
        err.contains("belongs to node 3, not node 4"),
        "no precise error for another node id:\n{err}"
    );
    let err = refused(dir.path(), &[("--node-id", "3"), ("--cluster-id", "other")])?;
    ensure!(
        err.contains(&id) && err.contains("other"),
        "no precise error for another cluster id:\n{err}"
    );

    node.restart()?;
    ensure!(
        cluster_id(&node)? == id,
        "cluster id changed across a restart"
    );
    let mut c = RawConn::connect(node.bootstrap())?;
    let (code, recs) = fetch(&mut c, "kept", 0, 0)?;
    ensure!(code == 0 && !recs.is_empty(), "data lost: code {code}");
    drop(c);
    node.stop()?;

    // meta.properties lost: the node opens with its data and records again
    // the cluster id its controller metadata holds.
    std::fs::remove_file(dir.path().join("meta.properties"))?;
    node.restart()?;
    let new_id = cluster_id(&node)?;
    ensure!(new_id == id, "cluster id {new_id:?} after {id:?}");
    let mut c = RawConn::connect(node.bootstrap())?;
    let (code, recs) = fetch(&mut c, "kept", 0, 0)?;
    ensure!(code == 0 && !recs.is_empty(), "data lost: code {code}");
    ensure!(dir.path().join("meta.properties").is_file());
    Ok(())
}
