//! Node settings: command-line flags, `WEIR_*` environment variables, an optional
//! TOML file, then defaults that need no setting for a local run (in that order).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_storage::{Durability, LogConfig};

use crate::limits::LimitsConfig;
use crate::producer_state::ProducerLimits;

/// Flags of `weir broker`; each also reads `WEIR_<NAME>` and the `--config` file.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BrokerArgs {
    /// TOML file with the same keys as these flags (kebab-case).
    #[arg(long, env = "WEIR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for partition logs and metadata [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "WEIR_LISTEN")]
    pub listen: Option<String>,
    /// host:port put in Metadata responses [default: the bound listener].
    #[arg(long, env = "WEIR_ADVERTISE")]
    pub advertise: Option<String>,
    /// HTTP admin listener (/metrics, /v1/health) [default: 127.0.0.1:9644].
    #[arg(long, env = "WEIR_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// This node's id [default: 0].
    #[arg(long, env = "WEIR_NODE_ID")]
    pub node_id: Option<i32>,
    /// Cluster id recorded in a new data directory and required of an existing
    /// one [default: a random id at first start].
    #[arg(long, env = "WEIR_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// The cluster's nodes as `ID@HOST:PORT,...` (their Raft addresses, this
    /// node's included); nodes started with the same list form a cluster by
    /// themselves [default: none, a one-node cluster].
    #[arg(long, env = "WEIR_PEERS")]
    pub peers: Option<String>,
    /// Raft listener for the other nodes [default: this node's address in --peers].
    #[arg(long, env = "WEIR_RAFT_LISTEN")]
    pub raft_listen: Option<String>,
    /// Replicas of a topic created with replication factor -1 (and of
    /// auto-created topics) [default: min(3, nodes)].
    #[arg(long, env = "WEIR_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// How often retention, compaction, producer expiry and log flushes run, in ms [default: 30000].
    #[arg(long, env = "WEIR_MAINTENANCE_INTERVAL_MS")]
    pub maintenance_interval_ms: Option<u64>,
    /// Let idle replicated partitions stop their Raft timers; followers then
    /// elect only once their leader stops claiming the partition [default:
    /// true] (false: openraft's heartbeats and election timers run always).
    #[arg(long, env = "WEIR_RAFT_QUIESCE")]
    pub raft_quiesce: Option<bool>,
    /// Create unknown topics on Metadata/Produce [default: true].
    #[arg(long, env = "WEIR_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "WEIR_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Largest request frame accepted, in bytes [default: 104857600].
    #[arg(long, env = "WEIR_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// fsync policy of logs: `group` (group commit), `always` (each append), `none` (page cache) [default: group].
    #[arg(long, env = "WEIR_FSYNC")]
    pub fsync: Option<String>,
    /// Default segment size in bytes [default: 1073741824].
    #[arg(long, env = "WEIR_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default retention in ms, -1 for forever [default: 604800000].
    #[arg(long, env = "WEIR_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    /// How long a new group waits for more members before its first rebalance [default: 3000].
    #[arg(long, env = "WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Most group coordinator writes (commits, membership) issued and not yet durable; more commits wait [default: 1024].
    #[arg(long, env = "WEIR_GROUP_MAX_PENDING_WRITES")]
    pub group_max_pending_writes: Option<usize>,
    /// Forget an idempotent producer's state after this long without an append, in ms (Kafka's `producer.id.expiration.ms`) [default: 86400000].
    #[arg(long, env = "WEIR_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<u64>,
    /// Most idempotent producers whose state a partition keeps; a new one evicts the one idle longest [default: 10000].
    #[arg(long, env = "WEIR_MAX_PRODUCERS_PER_PARTITION")]
    pub max_producers_per_partition: Option<usize>,
    /// Most partitions the node hosts; CreateTopics/CreatePartitions beyond it get INVALID_PARTITIONS [default: 20000].
    #[arg(long, env = "WEIR_MAX_PARTITIONS")]
    pub max_partitions: Option<usize>,
    /// Most open client connections; more are closed at once [default: 10000].
    #[arg(long, env = "WEIR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most open client connections from one IP address; more are closed at once [default: 1000].
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Most request bytes read and not yet answered, node-wide; then connections stop reading (Kafka's `queued.max.request.bytes`) [default: 536870912].
    #[arg(long, env = "WEIR_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// Most request bytes read and not yet answered on one connection; then it stops reading [default: 104857600].
    #[arg(long, env = "WEIR_MAX_INFLIGHT_BYTES_PER_CONNECTION")]
    pub max_inflight_bytes_per_connection: Option<usize>,
    /// Most time a request's frame may take to arrive once its size was read; a slower connection is closed, freeing its budget (clients give up on a request after their `request.timeout.ms`, 30 s by default) [default: 30000].
    #[arg(long, env = "WEIR_REQUEST_READ_TIMEOUT_MS")]
    pub request_read_timeout_ms: Option<usize>,
}

/// Resolved node settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Directory for partition logs and metadata.
    pub data_dir: PathBuf,
    /// Kafka listener address.
    pub listen: String,
    /// Address advertised in Metadata; `None`: the bound listener's.
    pub advertise: Option<String>,
    /// HTTP admin listener.
    pub admin_listen: String,
    /// Node id.
    pub node_id: i32,
    /// The cluster id asked for (`--cluster-id`), if any.
    pub cluster_id: Option<String>,
    /// The cluster's nodes (node id → Raft address); empty on a one-node
    /// cluster.
    pub peers: std::collections::BTreeMap<i32, String>,
    /// Raft listener, when the node has peers.
    pub raft_listen: Option<String>,
    /// Replicas of topics created with replication factor -1.
    pub default_replication_factor: i16,
    /// How often maintenance (retention, compaction, flushes) runs, in ms.
    pub maintenance_interval_ms: u64,
    /// Whether idle replicated partitions quiesce (see `--raft-quiesce`).
    pub raft_quiesce: bool,
    /// Auto-create topics.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: i32,
    /// Largest request frame.
    pub max_frame_bytes: usize,
    /// Default settings of new logs (topic configs override them).
    pub log_defaults: LogConfig,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// Most group coordinator writes pending durability.
    pub group_max_pending_writes: usize,
    /// Bounds of each partition's idempotent-producer state.
    pub producer_limits: ProducerLimits,
    /// Bounds on connections and request bytes in flight.
    pub limits: LimitsConfig,
    /// Most partitions the node hosts.
    pub max_partitions: usize,
    /// The flags given (on the command line, in the environment or the file),
    /// by flag name; the rest are defaults.
    pub explicit: std::collections::BTreeSet<&'static str>,
}

/// One node setting as DescribeConfigs shows it for the BROKER resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Kafka's name for it.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// Whether no flag set it.
    pub is_default: bool,
}

impl BrokerConfig {
    /// The node's settings under Kafka's broker config names, marked default
    /// or given. `advertised` is the `host:port` clients are given;
    /// `offsets_topic` the partitions and replication factor
    /// `__consumer_offsets` has (made with the node's defaults when `None`).
    pub fn settings(&self, advertised: &str, offsets_topic: Option<(i32, usize)>) -> Vec<Setting> {
        let d = &self.log_defaults;
        let given = |flag: &str| self.explicit.contains(flag);
        let fsync_always = d.durability == Durability::EveryAppend;
        let long_max = i64::MAX.to_string();
        let rows: Vec<(&'static str, String, &str)> = vec![
            ("broker.id", self.node_id.to_string(), "node-id"),
            ("node.id", self.node_id.to_string(), "node-id"),
            (
                "listeners",
                format!("PLAINTEXT://{}", self.listen),
                "listen",
            ),
            (
                "advertised.listeners",
                format!("PLAINTEXT://{advertised}"),
                "advertise",
            ),
            (
                "log.dirs",
                self.data_dir.join("logs").display().to_string(),
                "data-dir",
            ),
            (
                "num.partitions",
                self.default_partitions.to_string(),
                "default-partitions",
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics.to_string(),
                "auto-create-topics",
            ),
            (
                "socket.request.max.bytes",
                self.max_frame_bytes.to_string(),
                "max-frame-bytes",
            ),
            (
                "log.segment.bytes",
                d.segment_bytes.to_string(),
                "segment-bytes",
            ),
            (
                "log.retention.ms",
                d.retention_ms.map_or("-1".into(), |v| v.to_string()),
                "retention-ms",
            ),
            (
                "log.flush.interval.messages",
                if fsync_always {
                    "1".into()
                } else {
                    long_max.clone()
                },
                "fsync",
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
                "group-initial-rebalance-delay-ms",
            ),
            (
                "producer.id.expiration.ms",
                self.producer_limits.expiration_ms.to_string(),
                "producer-id-expiration-ms",
            ),
            (
                "max.connections",
                self.limits.max_connections.to_string(),
                "max-connections",
            ),
            (
                "max.connections.per.ip",
                self.limits.max_connections_per_ip.to_string(),
                "max-connections-per-ip",
            ),
            (
                "queued.max.request.bytes",
                self.limits.max_inflight_bytes.to_string(),
                "max-inflight-bytes",
            ),
            ("message.max.bytes", d.max_message_bytes.to_string(), ""),
            ("log.retention.bytes", "-1".into(), ""),
            ("log.cleanup.policy", "delete".into(), ""),
            (
                "log.index.interval.bytes",
                d.index_interval_bytes.to_string(),
                "",
            ),
            (
                "log.index.size.max.bytes",
                d.segment_index_bytes.to_string(),
                "",
            ),
            ("log.message.timestamp.type", "CreateTime".into(), ""),
            (
                "log.message.timestamp.before.max.ms",
                d.timestamp_before_max_ms.to_string(),
                "",
            ),
            (
                "log.message.timestamp.after.max.ms",
                d.timestamp_after_max_ms.to_string(),
                "",
            ),
            ("compression.type", "producer".into(), ""),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
                "default-replication-factor",
            ),
            ("min.insync.replicas", "1".into(), ""),
            (
                "offsets.topic.replication.factor",
                offsets_topic.map_or(self.default_replication_factor.to_string(), |(_, rf)| {
                    rf.to_string()
                }),
                "",
            ),
            (
                "offsets.topic.num.partitions",
                offsets_topic
                    .map_or(crate::coordinators::DEFAULT_OFFSETS_PARTITIONS, |(n, _)| n)
                    .to_string(),
                "",
            ),
        ];
        rows.into_iter()
            .map(|(name, value, flag)| Setting {
                name,
                value,
                is_default: flag.is_empty() || !given(flag),
            })
            .collect()
    }
}

/// Parses `--peers`: `ID@HOST:PORT` separated by commas, each id once.
pub fn parse_peers(list: &str) -> anyhow::Result<std::collections::BTreeMap<i32, String>> {
    let mut peers = std::collections::BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| anyhow::anyhow!("--peers item {item:?} is not ID@HOST:PORT"))?;
        let id: i32 = id
            .parse()
            .map_err(|_| anyhow::anyhow!("--peers item {item:?}: {id:?} is not a node id"))?;
        anyhow::ensure!(id >= 0, "--peers item {item:?}: node ids are not negative");
        anyhow::ensure!(
            addr.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
            "--peers item {item:?}: {addr:?} is not HOST:PORT"
        );
        anyhow::ensure!(
            peers.insert(id, addr.to_string()).is_none(),
            "--peers names node {id} twice"
        );
    }
    Ok(peers)
}

impl BrokerArgs {
    fn or(self, file: BrokerArgs) -> BrokerArgs {
        BrokerArgs {
            config: self.config,
            data_dir: self.data_dir.or(file.data_dir),
            listen: self.listen.or(file.listen),
            advertise: self.advertise.or(file.advertise),
            admin_listen: self.admin_listen.or(file.admin_listen),
            node_id: self.node_id.or(file.node_id),
            cluster_id: self.cluster_id.or(file.cluster_id),
            peers: self.peers.or(file.peers),
            maintenance_interval_ms: self
                .maintenance_interval_ms
                .or(file.maintenance_interval_ms),
            raft_listen: self.raft_listen.or(file.raft_listen),
            default_replication_factor: self
                .default_replication_factor
                .or(file.default_replication_factor),
            raft_quiesce: self.raft_quiesce.or(file.raft_quiesce),
            auto_create_topics: self.auto_create_topics.or(file.auto_create_topics),
            default_partitions: self.default_partitions.or(file.default_partitions),
            max_frame_bytes: self.max_frame_bytes.or(file.max_frame_bytes),
            fsync: self.fsync.or(file.fsync),
            segment_bytes: self.segment_bytes.or(file.segment_bytes),
            retention_ms: self.retention_ms.or(file.retention_ms),
            group_initial_rebalance_delay_ms: self
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms),
            group_max_pending_writes: self
                .group_max_pending_writes
                .or(file.group_max_pending_writes),
            producer_id_expiration_ms: self
                .producer_id_expiration_ms
                .or(file.producer_id_expiration_ms),
            max_producers_per_partition: self
                .max_producers_per_partition
                .or(file.max_producers_per_partition),
            max_partitions: self.max_partitions.or(file.max_partitions),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(file.max_connections_per_ip),
            max_inflight_bytes: self.max_inflight_bytes.or(file.max_inflight_bytes),
            max_inflight_bytes_per_connection: self
                .max_inflight_bytes_per_connection
                .or(file.max_inflight_bytes_per_connection),
            request_read_timeout_ms: self
                .request_read_timeout_ms
                .or(file.request_read_timeout_ms),
        }
    }

    /// Merges flags/env with the config file and defaults.
    pub fn resolve(self) -> anyhow::Result<BrokerConfig> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => BrokerArgs::default(),
        };
        let a = self.or(file);
        let mut log_defaults = LogConfig::default();
        log_defaults.durability = match a.fsync.as_deref().unwrap_or("group") {
            "group" => log_defaults.durability,
            "always" => Durability::EveryAppend,
            "none" => Durability::PageCache,
            other => anyhow::bail!("--fsync must be group, always or none, not {other:?}"),
        };
        if let Some(b) = a.segment_bytes {
            log_defaults.segment_bytes = b;
        }
        if let Some(ms) = a.retention_ms {
            log_defaults.retention_ms = u64::try_from(ms).ok();
        }
        let mut producer_limits = ProducerLimits::default();
        if let Some(ms) = a.producer_id_expiration_ms {
            anyhow::ensure!(ms > 0, "--producer-id-expiration-ms must be at least 1");
            producer_limits.expiration_ms = i64::try_from(ms).unwrap_or(i64::MAX);
        }
        if let Some(n) = a.max_producers_per_partition {
            anyhow::ensure!(n > 0, "--max-producers-per-partition must be at least 1");
            producer_limits.max_producers = n;
        }
        let mut limits = LimitsConfig::default();
        for (flag, given, slot) in [
            (
                "--max-connections",
                a.max_connections,
                &mut limits.max_connections,
            ),
            (
                "--max-connections-per-ip",
                a.max_connections_per_ip,
                &mut limits.max_connections_per_ip,
            ),
            (
                "--max-inflight-bytes",
                a.max_inflight_bytes,
                &mut limits.max_inflight_bytes,
            ),
            (
                "--max-inflight-bytes-per-connection",
                a.max_inflight_bytes_per_connection,
                &mut limits.max_inflight_bytes_per_connection,
            ),
            (
                "--request-read-timeout-ms",
                a.request_read_timeout_ms,
                &mut limits.request_read_timeout_ms,
            ),
        ] {
            if let Some(n) = given {
                anyhow::ensure!(n > 0, "{flag} must be at least 1");
                *slot = n;
            }
        }
        let node_id = a.node_id.unwrap_or(0);
        let peers = match &a.peers {
            Some(list) => parse_peers(list)?,
            None => std::collections::BTreeMap::new(),
        };
        if !peers.is_empty() && !peers.contains_key(&node_id) {
            anyhow::bail!(
                "--peers {:?} does not name this node (--node-id {node_id})",
                a.peers.as_deref().unwrap_or_default()
            );
        }
        let raft_listen = a
            .raft_listen
            .clone()
            .or_else(|| peers.get(&node_id).cloned());
        let nodes = peers.len().max(1);
        let default_replication_factor = match a.default_replication_factor {
            Some(f) if f < 1 || f as usize > nodes => anyhow::bail!(
                "--default-replication-factor {f} must be between 1 and the {nodes} nodes of the cluster"
            ),
            Some(f) => f,
            None => nodes.min(3) as i16,
        };
        let explicit = [
            ("data-dir", a.data_dir.is_some()),
            ("listen", a.listen.is_some()),
            ("advertise", a.advertise.is_some()),
            ("admin-listen", a.admin_listen.is_some()),
            ("node-id", a.node_id.is_some()),
            ("cluster-id", a.cluster_id.is_some()),
            ("peers", a.peers.is_some()),
            (
                "maintenance-interval-ms",
                a.maintenance_interval_ms.is_some(),
            ),
            ("raft-listen", a.raft_listen.is_some()),
            ("raft-quiesce", a.raft_quiesce.is_some()),
            (
                "default-replication-factor",
                a.default_replication_factor.is_some(),
            ),
            ("auto-create-topics", a.auto_create_topics.is_some()),
            ("default-partitions", a.default_partitions.is_some()),
            ("max-frame-bytes", a.max_frame_bytes.is_some()),
            ("fsync", a.fsync.is_some()),
            ("segment-bytes", a.segment_bytes.is_some()),
            ("retention-ms", a.retention_ms.is_some()),
            (
                "group-initial-rebalance-delay-ms",
                a.group_initial_rebalance_delay_ms.is_some(),
            ),
            (
                "group-max-pending-writes",
                a.group_max_pending_writes.is_some(),
            ),
            (
                "producer-id-expiration-ms",
                a.producer_id_expiration_ms.is_some(),
            ),
            (
                "max-producers-per-partition",
                a.max_producers_per_partition.is_some(),
            ),
            ("max-partitions", a.max_partitions.is_some()),
            ("max-connections", a.max_connections.is_some()),
            ("max-connections-per-ip", a.max_connections_per_ip.is_some()),
            ("max-inflight-bytes", a.max_inflight_bytes.is_some()),
            (
                "max-inflight-bytes-per-connection",
                a.max_inflight_bytes_per_connection.is_some(),
            ),
            (
                "request-read-timeout-ms",
                a.request_read_timeout_ms.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        Ok(BrokerConfig {
            explicit,
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("./weir-data")),
            listen: a.listen.unwrap_or_else(|| "127.0.0.1:9092".into()),
            peers,
            raft_listen,
            default_replication_factor,
            maintenance_interval_ms: a.maintenance_interval_ms.unwrap_or(30_000),
            advertise: a.advertise,
            admin_listen: a.admin_listen.unwrap_or_else(|| "127.0.0.1:9644".into()),
            node_id: a.node_id.unwrap_or(0),
            cluster_id: a.cluster_id,
            raft_quiesce: a.raft_quiesce.unwrap_or(true),
            auto_create_topics: a.auto_create_topics.unwrap_or(true),
            default_partitions: a.default_partitions.unwrap_or(1).max(1),
            max_frame_bytes: a.max_frame_bytes.unwrap_or(100 << 20),
            log_defaults,
            group_initial_rebalance_delay_ms: a.group_initial_rebalance_delay_ms.unwrap_or(3000),
            group_max_pending_writes: a.group_max_pending_writes.unwrap_or(1024).max(1),
            producer_limits,
            limits,
            max_partitions: a.max_partitions.unwrap_or(20_000).max(1),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<BrokerArgs> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing config {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nnode-id = 7\nfsync = \"always\"\n",
        )
        .unwrap();
        let args = BrokerArgs {
            config: Some(path),
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.node_id, 7);
        assert_eq!(c.log_defaults.durability, Durability::EveryAppend);
        assert_eq!(c.data_dir, PathBuf::from("./weir-data"));
    }

    #[test]
    fn producer_state_bounds_default_and_resolve() {
        let c = BrokerArgs::default().resolve().unwrap();
        assert_eq!(c.producer_limits.expiration_ms, 86_400_000);
        assert_eq!(c.producer_limits.max_producers, 10_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "producer-id-expiration-ms = 60000\nmax-producers-per-partition = 50\n",
        )
        .unwrap();
        let c = BrokerArgs {
            config: Some(path),
            max_producers_per_partition: Some(7),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.producer_limits.expiration_ms, 60_000);
        assert_eq!(c.producer_limits.max_producers, 7);
        for bad in [
            BrokerArgs {
                producer_id_expiration_ms: Some(0),
                ..Default::default()
            },
            BrokerArgs {
                max_producers_per_partition: Some(0),
                ..Default::default()
            },
        ] {
            assert!(bad.resolve().is_err());
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let args = BrokerArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(args.resolve().is_err());
    }
}
