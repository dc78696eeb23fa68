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
    /// Start a local cluster of N nodes (Kafka on base-port..., Raft on
    /// base-port+100..., admin on base-port+552..., i.e. 9644 for 9092) and
    /// stop it cleanly on Ctrl-C.
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
        /// Admin HTTP port of node 1 (default: base-port + 552, so 9644 for
        /// 9092; it moves with --base-port).
        #[arg(long)]
        admin_base_port: Option<u16>,
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

async fn up(
    nodes: u16,
    dir: PathBuf,
    base: u16,
    admin_base: Option<u16>,
    host: &str,
) -> Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let raft_base = base
        .checked_add(100)
        .context("--base-port too high for the Raft ports (base-port + 100)")?;
    let admin_base = match admin_base {
        Some(a) => a,
        None => base
            .checked_add(552)
            .context("--base-port too high for the admin ports (base-port + 552)")?,
    };
    // Each node takes one port of each range; two ranges must not meet.
    let ranges = [
        ("Kafka (--base-port)", base),
        ("Raft (base-port + 100)", raft_base),
        ("admin (--admin-base-port)", admin_base),
    ];
    for (i, (a, x)) in ranges.iter().enumerate() {
        for (b, y) in &ranges[i + 1..] {
            if x.abs_diff(*y) < nodes || u32::from(*x.max(y)) + u32::from(nodes) > 65_536 {
                bail!("the {a} ports {x}.. and the {b} ports {y}.. of {nodes} nodes overlap or run past 65535");
            }
        }
    }
    let peers = (1..=nodes)
        .map(|i| format!("{i}@{host}:{}", raft_base + i - 1))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let mut children: Vec<(u16, Child, String)> = Vec::new();
    for i in 1..=nodes {
        let node_dir = dir.join(format!("node-{i}"));
        let log_path = dir.join(format!("node-{i}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let args: Vec<String> = vec![
            "broker".into(),
            "--node-id".into(),
            i.to_string(),
            "--data-dir".into(),
            node_dir.display().to_string(),
            "--listen".into(),
            format!("{host}:{}", base + i - 1),
            "--admin-listen".into(),
            format!("{host}:{}", admin_base + i - 1),
            "--peers".into(),
            peers.clone(),
        ];
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // Not in our process group: Ctrl-C reaches this process only, which
        // then stops the nodes one by one.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
        println!(
            "node {i}: pid {} kafka {host}:{} admin {host}:{} raft {host}:{} data {} log {}",
            child.id(),
            base + i - 1,
            admin_base + i - 1,
            raft_base + i - 1,
            node_dir.display(),
            log_path.display()
        );
        let restart = std::iter::once(exe.display().to_string())
            .chain(args)
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ");
        let restart = format!(
            "{restart} 2>>{}",
            shell_quote(&log_path.display().to_string())
        );
        children.push((i, child, restart));
    }
    let bootstrap = (1..=nodes)
        .map(|i| format!("{host}:{}", base + i - 1))
        .collect::<Vec<_>>()
        .join(",");
    println!("bootstrap servers: {bootstrap}");
    println!("Ctrl-C stops the cluster");
    // Until Ctrl-C or SIGTERM: a node that exits on its own (a crash, or a
    // `kill -9` to watch a failover) is reported with the command that
    // restarts it, and the others run on, as a cluster that lost one node
    // does. When every node has exited there is nothing left to run.
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
        let mut running: Vec<&mut (u16, Child, String)> = children.iter_mut().collect();
        while !running.is_empty() {
            let mut still = Vec::with_capacity(running.len());
            for node in running {
                let (i, c, restart) = &mut *node;
                match c.try_wait() {
                    Ok(Some(s)) => {
                        eprintln!("node {i} exited ({s}); the others run on. Restart it with:");
                        eprintln!("  {restart}");
                    }
                    _ => still.push(node),
                }
            }
            running = still;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let all_exited = tokio::select! {
        r = stop => { r?; false }
        () = watch => true,
    };
    if all_exited {
        bail!("every node has exited");
    }
    for (i, c, _) in &mut children {
        match c.try_wait() {
            Ok(None) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
                let status = tokio::task::block_in_place(|| c.wait())?;
                println!("node {i} stopped ({status})");
            }
            Ok(Some(status)) => println!("node {i} had exited ({status})"),
            Err(e) => println!("node {i}: {e}"),
        }
    }
    Ok(())
}

/// `arg` as one word for a POSIX shell (single-quoted unless plain).
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:,@=".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// One GET of `path` from an admin listener, given up after 3 s (a node
/// stopped by SIGSTOP held `cluster status` for 30 s); anything but 200 is
/// an error.
fn http_get(addr: &str, path: &str) -> Result<String> {
    let (status, body) = weir_broker::admin_client::request_within(
        addr,
        "GET",
        path,
        None,
        std::time::Duration::from_secs(3),
    )?;
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
        // None while no node can vouch for one (a quorum down).
        first["controller"]
            .as_i64()
            .map_or_else(|| "none".to_string(), |c| c.to_string())
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
    // Per partition: each replica's view (node → log end, leader, term, HW,
    // rejoining), and the replicas assigned to it.
    type Replica = (i64, i64, i64, i64, bool);
    type Part = (BTreeMap<i64, Replica>, Vec<i64>);
    let mut parts: BTreeMap<(String, i64), Part> = BTreeMap::new();
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
                p["rejoining"].as_bool().unwrap_or(false),
            );
            let part = parts.entry(key).or_default();
            part.0.insert(node, r);
            for n in p["replicas"].as_array().into_iter().flatten() {
                if let Some(n) = n.as_i64().filter(|n| !part.1.contains(n)) {
                    part.1.push(n);
                }
            }
        }
    }
    writeln!(
        out,
        "{:<40} {:>6} {:>6} {:>12}  replicas (node:lag, down: did not answer, \
         rejoining: lost its state, votes once caught up)",
        "partition", "leader", "term", "committed"
    )?;
    for ((topic, p), (replicas, assigned)) in &mut parts {
        // The leader's view when it answered, else any replica's.
        let view = replicas
            .iter()
            .find(|(n, r)| r.1 == **n)
            .or_else(|| replicas.iter().next())
            .map(|(_, r)| *r)
            .unwrap_or((-1, -1, -1, -1, false));
        let lead_end = replicas.get(&view.1).map_or(view.0, |r| r.0);
        let answered: Vec<i64> = replicas
            .keys()
            .filter(|n| !assigned.contains(n))
            .copied()
            .collect();
        assigned.extend(answered);
        assigned.sort_unstable();
        let lags = assigned
            .iter()
            .map(|n| match replicas.get(n) {
                Some(r) if r.4 => format!("{n}:{}:rejoining", (lead_end - r.0).max(0)),
                Some(r) => format!("{n}:{}", (lead_end - r.0).max(0)),
                None => format!("{n}:down"),
            })
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
