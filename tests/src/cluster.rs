//! A local cluster of `weir` processes for tests: nodes 1..=n on loopback,
//! each with its own data directory, joined by `--peers`.

use std::time::Duration;

use anyhow::{anyhow, Result};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use crate::ports::{free_ports, lost_a_port};
use crate::proxy::FaultProxy;
use crate::raw::RawConn;
use crate::{poll_until, NodeOpts, WeirNode};

/// A running cluster; node `i` (1-based id) is `nodes[i - 1]`.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, by id order.
    pub nodes: Vec<WeirNode>,
    /// With [`Cluster::start_with_proxies`]: the proxy every byte from node
    /// `from` to node `to` goes through, by `(from, to)`.
    pub links: std::collections::BTreeMap<(i32, i32), FaultProxy>,
}

/// Runs `start` with fresh Raft ports until no node lost its port to
/// another process (at most three times).
fn start_retrying(n: usize, mut start: impl FnMut(&[u16]) -> Result<Cluster>) -> Result<Cluster> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ports = free_ports(n)?;
        match start(&ports) {
            Err(e) if attempt < 3 && lost_a_port(&e) => {
                eprintln!("a node lost its Raft port to another process; starting again: {e:#}");
            }
            other => return other,
        }
    }
}

/// Launches nodes 1..=n (node i with `--peers peers(i)`), all before any
/// is awaited: a node listens once a quorum runs.
fn launch_all(
    n: usize,
    peers: impl Fn(usize) -> String,
    extra: &[(&str, &str)],
) -> Result<Vec<WeirNode>> {
    let mut nodes = Vec::new();
    for i in 1..=n {
        let mut opts = NodeOpts::default()
            .arg("--node-id", i)
            .arg("--peers", peers(i));
        for (k, v) in extra {
            opts = opts.arg(k, v);
        }
        nodes.push(WeirNode::launch(opts)?);
    }
    for node in &mut nodes {
        node.await_listening()?;
    }
    Ok(nodes)
}

impl Cluster {
    /// Starts `n` nodes with the same `--peers` (all launched before any is
    /// awaited: a node listens once a quorum runs) and `extra` flags.
    pub fn start(n: usize, extra: &[(&str, &str)]) -> Result<Self> {
        start_retrying(n, |ports| {
            let peers = (1..=n)
                .map(|j| format!("{j}@127.0.0.1:{}", ports[j - 1]))
                .collect::<Vec<_>>()
                .join(",");
            let nodes = launch_all(n, |_| peers.clone(), extra)?;
            Ok(Self {
                nodes,
                links: Default::default(),
            })
        })
    }

    /// Starts `n` nodes whose Raft traffic goes through a [`FaultProxy`]
    /// per ordered pair of nodes: node i reaches node j at the proxy
    /// `(i, j)` (each node's `--peers` names its own proxies), so a test can
    /// cut or hold any direction between two nodes.
    pub fn start_with_proxies(n: usize, extra: &[(&str, &str)]) -> Result<Self> {
        start_retrying(n, |ports| Self::start_proxied_on(ports, extra))
    }

    fn start_proxied_on(ports: &[u16], extra: &[(&str, &str)]) -> Result<Self> {
        let n = ports.len();
        let mut links = std::collections::BTreeMap::new();
        for from in 1..=n {
            for to in 1..=n {
                if from != to {
                    let target = format!("127.0.0.1:{}", ports[to - 1]).parse()?;
                    links.insert((from as i32, to as i32), FaultProxy::start(target)?);
                }
            }
        }
        let nodes = launch_all(
            n,
            |i| {
                (1..=n)
                    .map(|j| {
                        if j == i {
                            format!("{j}@127.0.0.1:{}", ports[j - 1])
                        } else {
                            format!("{j}@{}", links[&(i as i32, j as i32)].addr())
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            },
            extra,
        )?;
        Ok(Self { nodes, links })
    }

    /// Kills node `id` (-9) once its log of `topic` partition `partition`
    /// holds more than `bytes`, while `client` (a thread running a client)
    /// still runs; fails with the client's result if it ended first.
    pub fn kill_once_written(
        &mut self,
        id: i32,
        topic: &str,
        partition: i32,
        bytes: usize,
        client: std::thread::JoinHandle<Result<std::process::Output>>,
    ) -> Result<std::thread::JoinHandle<Result<std::process::Output>>> {
        let dir = self.node(id).data_dir().to_path_buf();
        let running = poll_until(Duration::from_secs(60), || {
            if client.is_finished() {
                return Ok(Some(false));
            }
            Ok((log_bytes(&dir, topic, partition)?.len() > bytes).then_some(true))
        })?;
        if !running {
            let out = client.join().expect("client thread");
            anyhow::bail!("the client ended before node {id} was killed: {out:?}");
        }
        self.node(id).kill()?;
        Ok(client)
    }

    /// Waits until every node's log of each of `partitions` partitions of
    /// `topic` is byte-identical.
    pub fn await_identical_replicas(&self, topic: &str, partitions: i32) -> Result<()> {
        use anyhow::Context;
        let dirs: Vec<_> = self
            .nodes
            .iter()
            .map(|n| n.data_dir().to_path_buf())
            .collect();
        for p in 0..partitions {
            poll_until(Duration::from_secs(60), || {
                let reference = log_bytes(&dirs[0], topic, p)?;
                for d in &dirs[1..] {
                    if log_bytes(d, topic, p)? != reference {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            })
            .with_context(|| {
                format!(
                    "partition {p} of {topic}: replicas differ\n{}",
                    replicas_report(&dirs, topic, p)
                )
            })?;
        }
        Ok(())
    }

    /// Produces `records` (acks=all) to `topic`/`partition` through the
    /// node that leads it now, `down` being a node that is not running:
    /// leadership may move between the live nodes on a busy machine, so a
    /// NOT_LEADER_OR_FOLLOWER (refused before any append) is retried, for
    /// up to 30 s, through the node that leads then. Any other outcome,
    /// which might have stored the records, fails at once. Returns the node
    /// that took the records and their base offset.
    pub fn produce_to_leader(
        &self,
        topic: &str,
        partition: i32,
        down: i32,
        records: &bytes::Bytes,
    ) -> Result<(i32, i64)> {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self.new_leader(topic, partition, down)?;
            let node = usize::try_from(leader - 1)
                .ok()
                .and_then(|i| self.nodes.get(i))
                .ok_or_else(|| anyhow!("no node {leader}"))?;
            let mut conn = RawConn::connect(node.bootstrap())?;
            let (code, base) =
                crate::raw::produce(&mut conn, topic, partition, -1, records.clone())?;
            match code {
                0 => return Ok((leader, base)),
                6 if std::time::Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return Err(anyhow!("produce through node {leader}: error code {code}")),
            }
        }
    }

    /// The node other than `gone` that reports itself leader of
    /// `topic`/`partition` in its own Metadata, polled for up to 30 s (after
    /// `gone`, the old leader, was killed or cut off).
    pub fn new_leader(&self, topic: &str, partition: i32, gone: i32) -> Result<i32> {
        poll_until(Duration::from_secs(30), || {
            for (i, n) in self.nodes.iter().enumerate() {
                let id = i as i32 + 1;
                if id == gone {
                    continue;
                }
                let Ok(md) = metadata(n.bootstrap(), &[topic]) else {
                    continue;
                };
                let led = md.topics.first().and_then(|t| {
                    t.partitions
                        .iter()
                        .find(|p| p.partition_index == partition)
                        .map(|p| p.leader_id.0)
                });
                if led == Some(id) {
                    return Ok(Some(id));
                }
            }
            Ok(None)
        })
    }

    /// Cuts every link to and from node `id` (its Raft traffic; clients
    /// still reach its Kafka listener).
    pub fn isolate(&self, id: i32) {
        for ((from, to), p) in &self.links {
            if *from == id || *to == id {
                p.cut();
            }
        }
    }

    /// Holds every Raft byte going to node `id` (requests of the others'
    /// connections to it, answers on its connections to them), while node
    /// `id` still reaches the others: it can send, not hear.
    pub fn deafen(&self, id: i32) {
        for ((from, to), p) in &self.links {
            if *to == id {
                p.hold_one_way(true);
            } else if *from == id {
                p.hold_one_way(false);
            }
        }
    }

    /// Delays every chunk of bytes on every Raft link by `delay`, each way
    /// (zero: none).
    pub fn delay_all(&self, delay: Duration) {
        for p in self.links.values() {
            p.set_delay(delay);
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for p in self.links.values() {
            p.heal();
        }
    }

    /// The node with id `id`.
    pub fn node(&mut self, id: i32) -> &mut WeirNode {
        &mut self.nodes[usize::try_from(id - 1).expect("node ids start at 1")]
    }

    /// Bootstrap list of the nodes running now.
    pub fn bootstrap(&mut self) -> String {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.is_alive().then(|| n.bootstrap().to_string()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Metadata of `topics` (all when empty) as node `id` answers it.
    pub fn metadata(&mut self, id: i32, topics: &[&str]) -> Result<MetadataResponse> {
        metadata(self.node(id).bootstrap(), topics)
    }

    /// The leader of `topic`'s `partition` once node `id` reports one.
    pub fn leader(&mut self, id: i32, topic: &str, partition: i32) -> Result<i32> {
        let addr = self.node(id).bootstrap().to_string();
        poll_until(Duration::from_secs(30), || {
            let md = metadata(&addr, &[topic])?;
            let leader = md
                .topics
                .first()
                .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
                .map(|p| p.leader_id.0)
                .unwrap_or(-1);
            Ok((leader >= 0).then_some(leader))
        })
    }
}

/// The `.log` segment files of `topic-partition` under a node's data dir, in
/// offset order.
fn segment_files(
    data_dir: &std::path::Path,
    topic: &str,
    partition: i32,
) -> Result<Vec<std::path::PathBuf>> {
    use anyhow::Context;
    let dir = data_dir.join("logs").join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    Ok(segments)
}

/// What each node in `dirs` holds of `topic-partition`: its segment files
/// with their sizes and its records (the last 40), for a failure message.
fn replicas_report(dirs: &[std::path::PathBuf], topic: &str, partition: i32) -> String {
    let mut out = String::new();
    for (i, d) in dirs.iter().enumerate() {
        let files: Vec<String> = segment_files(d, topic, partition)
            .unwrap_or_default()
            .iter()
            .map(|f| {
                let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                format!("{name} ({len} B)")
            })
            .collect();
        let records = match records_on_disk(d, topic, partition) {
            Ok(r) => {
                let skip = r.len().saturating_sub(40);
                format!("{} records, last: {:?}", r.len(), &r[skip..])
            }
            Err(e) => format!("unreadable: {e:#}"),
        };
        out.push_str(&format!("node {}: {files:?}; {records}\n", i + 1));
    }
    out
}

/// Every `.log` segment of `topic-partition` under a node's data dir, in
/// order, concatenated: what replicas must agree on byte for byte.
pub fn log_bytes(data_dir: &std::path::Path, topic: &str, partition: i32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for s in segment_files(data_dir, topic, partition)? {
        out.extend(std::fs::read(s)?);
    }
    Ok(out)
}

/// The records (offset, value) a node's log of `topic`/`partition` holds on
/// disk, in order: what a replica stores, whether or not it leads. Each
/// segment's batches are read up to the first zero length (the unused tail
/// of a preallocated file).
pub fn records_on_disk(
    data_dir: &std::path::Path,
    topic: &str,
    partition: i32,
) -> Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for s in segment_files(data_dir, topic, partition)? {
        let bytes = std::fs::read(&s)?;
        let mut end = 0;
        while end + 12 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[end + 8..end + 12].try_into()?) as usize;
            if len == 0 || end + 12 + len > bytes.len() {
                break;
            }
            end += 12 + len;
        }
        let records = bytes::Bytes::copy_from_slice(&bytes[..end]);
        for (offset, value) in crate::raw::values(&records)? {
            let value = String::from_utf8_lossy(&value.unwrap_or_default()).to_string();
            out.push((offset, value));
        }
    }
    Ok(out)
}

/// Metadata v12 of `topics` (all when empty) from the node at `addr`.
pub fn metadata(addr: &str, topics: &[&str]) -> Result<MetadataResponse> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    let mut conn = RawConn::connect(addr)?;
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(if topics.is_empty() {
            None
        } else {
            Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                    })
                    .collect(),
            )
        });
    conn.request(12, &req)
        .map_err(|e| anyhow!("metadata from {addr}: {e}"))
}
