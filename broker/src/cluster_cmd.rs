//! `weir cluster up` (a local cluster of node processes in one command) and
//! `weir cluster status` (nodes, controller, and per-partition leader, term
//! and replica lag, from each node's `/v1/cluster`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// `weir cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClusterCmd {
    /// Start a local cluster of N nodes (Kafka on base-port..., admin on
    /// 9644..., Raft on base-port+100...) and stop it cleanly on Ctrl-C.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Parent directory of the nodes' data directories (node-1, ...).
        #[arg(long, default_value = "./weir-cluster")]
        data_dir: PathBuf,
        /// Kafka port of node 1 (node i listens on base-port + i - 1).
        #[arg(long, default_value_t = 9092)]
        base_port: u16,
        /// Admin HTTP port of node 1.
        #[arg(long, default_value_t = 9644)]
        admin_base_port: u16,
        /// Host the nodes listen on and advertise.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
    /// Show the nodes, the controller and every partition's leader, term,
    /// high watermark and replica lag.
    Status {
        /// Admin HTTP addresses of the nodes (comma-separated).
        #[arg(
            long,
            env = "WEIR_ADMIN",
            default_value = "127.0.0.1:9644,127.0.0.1:9645,127.0.0.1:9646"
        )]
        admin: String,
    },
}

/// Runs a `weir cluster` subcommand.
pub(crate) async fn run(cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Up {
            nodes,
            data_dir,
            base_port,
            admin_base_port,
            host,
        } => up(nodes, data_dir, base_port, admin_base_port, &host).await,
        ClusterCmd::Status { admin } => {
            let admin = admin.clone();
            let text = tokio::task::spawn_blocking(move || status(&admin)).await??;
            print!("{text}");
            Ok(())
        }
    }
}

async fn up(nodes: u16, dir: PathBuf, base: u16, admin_base: u16, host: &str) -> Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let raft_base = base
        .checked_add(100)
        .context("--base-port too high for the Raft ports (base-port + 100)")?;
    let peers = (1..=nodes)
        .map(|i| format!("{i}@{host}:{}", raft_base + i - 1))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for i in 1..=nodes {
        let node_dir = dir.join(format!("node-{i}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node-{i}.log")))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("broker")
            .args(["--node-id", &i.to_string()])
            .arg("--data-dir")
            .arg(&node_dir)
            .args(["--listen", &format!("{host}:{}", base + i - 1)])
            .args(["--admin-listen", &format!("{host}:{}", admin_base + i - 1)])
            .args(["--peers", &peers])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // Not in our process group: Ctrl-C reaches this process only, which
        // then stops the nodes one by one.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
        println!(
            "node {i}: kafka {host}:{} admin {host}:{} raft {host}:{} data {} log {}",
            base + i - 1,
            admin_base + i - 1,
            raft_base + i - 1,
            node_dir.display(),
            dir.join(format!("node-{i}.log")).display()
        );
        children.push((i, child));
    }
    let bootstrap = (1..=nodes)
        .map(|i| format!("{host}:{}", base + i - 1))
        .collect::<Vec<_>>()
        .join(",");
    println!("bootstrap servers: {bootstrap}");
    println!("Ctrl-C stops the cluster");
    // Wait for Ctrl-C, SIGTERM, or a node exiting on its own.
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, anyhow::Error>(())
    };
    let watch = async {
        loop {
            for (i, c) in children.iter_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    return (*i, s);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let exited = tokio::select! {
        r = stop => { r?; None }
        e = watch => Some(e),
    };
    if let Some((i, s)) = exited {
        eprintln!("node {i} exited ({s}); stopping the others");
    }
    for (i, c) in &mut children {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let status = tokio::task::block_in_place(|| c.wait())?;
        println!("node {i} stopped ({status})");
    }
    Ok(())
}

/// One GET of `path` from an admin listener; anything but 200 is an error.
fn http_get(addr: &str, path: &str) -> Result<String> {
    let (status, body) = weir_broker::admin_client::request(addr, "GET", path, None)?;
    if status != 200 {
        bail!("{addr}{path}: HTTP {status}");
    }
    Ok(body)
}

/// The status report of the nodes at `admin` (comma-separated).
pub(crate) fn status(admin: &str) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut views = Vec::new();
    for addr in admin.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match http_get(addr, "/v1/cluster")
            .and_then(|b| Ok(serde_json::from_str::<serde_json::Value>(&b)?))
        {
            Ok(v) => views.push(v),
            Err(e) => writeln!(out, "{addr}: unreachable ({e})")?,
        }
    }
    let Some(first) = views.first() else {
        bail!("no node answered at {admin}");
    };
    writeln!(
        out,
        "cluster {}  controller {}",
        first["cluster_id"].as_str().unwrap_or("?"),
        first["controller"]
    )?;
    for v in &views {
        let id = v["node_id"].as_i64().unwrap_or(-1);
        let me = v["brokers"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["id"].as_i64() == Some(id)));
        writeln!(
            out,
            "node {id}  kafka {}:{}  up  partitions {}",
            me.and_then(|m| m["host"].as_str()).unwrap_or("?"),
            me.and_then(|m| m["port"].as_i64()).unwrap_or(0),
            v["partitions"].as_array().map_or(0, Vec::len)
        )?;
    }
    // Per partition: each replica's view (node → log end, leader, term, HW).
    type Replica = (i64, i64, i64, i64);
    let mut parts: BTreeMap<(String, i64), BTreeMap<i64, Replica>> = BTreeMap::new();
    for v in &views {
        let node = v["node_id"].as_i64().unwrap_or(-1);
        for p in v["partitions"].as_array().into_iter().flatten() {
            let key = (
                p["topic"].as_str().unwrap_or("?").to_string(),
                p["partition"].as_i64().unwrap_or(-1),
            );
            let r = (
                p["log_end"].as_i64().unwrap_or(-1),
                p["leader"].as_i64().unwrap_or(-1),
                p["term"].as_i64().unwrap_or(-1),
                p["high_watermark"].as_i64().unwrap_or(-1),
            );
            parts.entry(key).or_default().insert(node, r);
        }
    }
    writeln!(
        out,
        "{:<40} {:>6} {:>6} {:>12}  replicas (node:lag)",
        "partition", "leader", "term", "committed"
    )?;
    for ((topic, p), replicas) in &parts {
        // The leader's view when it answered, else any replica's.
        let view = replicas
            .iter()
            .find(|(n, r)| r.1 == **n)
            .or_else(|| replicas.iter().next())
            .map(|(_, r)| *r)
            .unwrap_or((-1, -1, -1, -1));
        let lead_end = replicas.get(&view.1).map_or(view.0, |r| r.0);
        let lags = replicas
            .iter()
            .map(|(n, r)| format!("{n}:{}", (lead_end - r.0).max(0)))
            .collect::<Vec<_>>()
            .join(" ");
        writeln!(
            out,
            "{:<40} {:>6} {:>6} {:>12}  {lags}",
            format!("{topic}-{p}"),
            view.1,
            view.2,
            view.3
        )?;
    }
    Ok(out)
}
