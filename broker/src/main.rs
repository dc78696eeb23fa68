//! The `weir` command: `weir broker` runs a node, `weir cluster up` a local
//! cluster; the other subcommands are clients (cluster status, job, topic,
//! produce, consume, group, bench).

mod cluster_cmd;
mod job_cmd;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use weir_broker::broker::Broker;
use weir_broker::config::BrokerArgs;
use weir_broker::health::Health;

/// Weir: a Kafka-compatible event log.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a node.
    Broker(Box<BrokerArgs>),
    /// Start a local cluster, or show a cluster's status.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCmd),
    /// Create, list, describe and drop windowed SQL jobs.
    #[command(subcommand)]
    Job(job_cmd::JobCmd),
    #[command(flatten)]
    Client(weir_client::cli::Command),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                // openraft logs every election and membership step at info,
                // and each failed heartbeat or append to a peer that is down
                // at warn (hundreds a second with 1,000 partitions); Weir
                // logs a peer going and coming back once (`cluster`). Its
                // responder warns for every entry applied after its
                // proposal was answered at the commit (acks=all does not
                // wait for the apply, docs/cluster.md "acks"), which is
                // every entry of a busy partition. Its core warns of each
                // vote sent to a peer that is down or has not created the
                // group yet, and of each message a role change made stale:
                // the ordinary races of an election.
                .unwrap_or_else(|_| {
                    "info,openraft=warn,openraft::core::heartbeat=error,\
                     openraft::core::raft_core=error,\
                     openraft::replication=error,\
                     openraft::engine::handler::replication_handler=error,\
                     openraft::raft::responder=error"
                        .into()
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Not for the processes that serve: a node, and `cluster up`, which
    // must outlive its output to stop its nodes.
    if !matches!(
        cli.cmd,
        Cmd::Broker(_) | Cmd::Cluster(cluster_cmd::ClusterCmd::Up { .. })
    ) {
        restore_sigpipe();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Broker(args) => rt.block_on(run_broker(*args)),
        Cmd::Cluster(cmd) => rt.block_on(cluster_cmd::run(cmd)),
        Cmd::Job(cmd) => job_cmd::run(cmd),
        Cmd::Client(cmd) => rt.block_on(weir_client::cli::run(cmd)),
    }
}

/// Gives SIGPIPE its default action back (Rust ignores it, so a write to a
/// closed pipe returns EPIPE and `println!` panics): a client command whose
/// reader went away (`weir topic describe t | head`) ends quietly, as `cat`
/// does. A node keeps ignoring it: a client closing its socket must not
/// kill the node (nodes are also separate processes, whose Rust runtime
/// ignores it again at start).
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: sets a signal's disposition to the default, before any other
    // thread of this process runs; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Binds `addr` for `what`; a failure names the listener and its address.
async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {what} {addr}: {e}"))
}

async fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    let mut config = args.resolve()?;
    let kafka = bind(&config.listen, "the Kafka listener").await?;
    let admin = bind(&config.admin_listen, "the admin listener").await?;
    // The address bound (a port 0 resolved), which the node registers.
    config.admin_listen = admin.local_addr()?.to_string();
    let bound = kafka.local_addr()?;
    let (host, port) = match &config.advertise {
        Some(a) => {
            let (h, p) = a
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("--advertise must be host:port"))?;
            (h.to_string(), p.parse()?)
        }
        None => (bound.ip().to_string(), i32::from(bound.port())),
    };
    // The admin listener answers from now on: /v1/health says 503 until the
    // logs are loaded and the Kafka listener accepts.
    let admin_addr = admin.local_addr()?;
    let health = Health::new(config.node_id, config.data_dir.clone());
    let (admin_stop, mut admin_stopped) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(weir_broker::admin_http::serve(
        admin,
        health.clone(),
        async move {
            let _ = admin_stopped.changed().await;
        },
    ));
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, host, port)).await??;
    health.loaded(broker.clone());
    // One line on stdout, for scripts and tests that bind port 0.
    println!("weir listening kafka={bound} admin={admin_addr}");
    let result = weir_broker::server::run(kafka, broker, health, shutdown_signal()).await;
    let _ = admin_stop.send(true);
    let _ = admin_task.await;
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
