//! The node's shared state: metadata, partition logs, partitions and the group
//! coordinator, and the operations that change them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use weir_storage::{LogConfig, LogManager, TopicPartition};

use crate::config::BrokerConfig;
use crate::group::{
    AppendFuture, GroupConfig, GroupCoordinator, GroupStore, GroupStoreError, PartitionCheck,
    Record,
};
use crate::identity::{self, Identity};
use crate::limits::Limits;
use crate::metadata::{MetadataStore, TopicError, TopicMeta};
use crate::metrics::Metrics;
use crate::partition::Partition;
use crate::topic_config::{self, ConfigError};

/// The internal topic holding consumer group offsets and metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A node.
#[derive(Debug)]
pub struct Broker {
    /// Resolved settings.
    pub config: BrokerConfig,
    /// The cluster and node this data directory belongs to.
    pub identity: Identity,
    /// Host put in Metadata.
    pub advertised_host: String,
    /// Port put in Metadata.
    pub advertised_port: i32,
    /// Topics and producer ids.
    pub meta: MetadataStore,
    /// Partition logs.
    pub logs: LogManager,
    // Read on every produce/fetch, written when topics change; never held across `.await`.
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Consumer group coordinator.
    pub groups: GroupCoordinator,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Bounds on connections and request bytes in flight.
    pub limits: Arc<Limits>,
}

/// Why a topic change failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicChangeError {
    /// Metadata refused it.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A config was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The log could not be created or deleted.
    #[error(transparent)]
    Storage(#[from] weir_storage::StorageError),
    /// The request asks for something this node does not serve.
    #[error("{0}")]
    InvalidRequest(String),
}

impl TopicChangeError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::Topic(t) => t.code(),
            Self::Config(_) => crate::error_code::code::INVALID_CONFIG,
            Self::Storage(s) => crate::error_code::storage(s),
            Self::InvalidRequest(_) => crate::error_code::code::INVALID_REQUEST,
        }
    }
}

impl Broker {
    /// Opens the node's data directory: metadata, every partition log (recovered
    /// in parallel) and the group coordinator.
    pub fn open(
        config: BrokerConfig,
        advertised_host: String,
        advertised_port: i32,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir)?;
        let identity = identity::load_or_create(
            &config.data_dir,
            config.node_id,
            config.cluster_id.as_deref(),
        )?;
        tracing::info!(cluster_id = %identity.cluster_id, node_id = identity.node_id, "identity");
        let logs_dir = config.data_dir.join("logs");
        let has_logs = std::fs::read_dir(&logs_dir).is_ok_and(|mut d| d.next().is_some());
        if has_logs && !config.data_dir.join("meta").join("topics.json").exists() {
            // Without the metadata every log would look like a deleted topic's:
            // refuse to start rather than delete data.
            anyhow::bail!(
                "{} holds partition logs but no meta/topics.json; refusing to start \
                 (restore the metadata file, or move the logs away to start empty)",
                config.data_dir.display()
            );
        }
        let meta = MetadataStore::open(&config.data_dir)?;
        if meta.topic(OFFSETS_TOPIC).is_none() {
            let mut c = BTreeMap::new();
            c.insert("cleanup.policy".to_string(), "compact".to_string());
            c.insert("segment.bytes".to_string(), (100 << 20).to_string());
            meta.create(OFFSETS_TOPIC, 1, c, true)?;
        }
        let topics = meta.topics();
        let defaults = config.log_defaults.clone();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (logs, reports) = LogManager::open(&logs_dir, threads, |tp| {
            topics.get(&tp.topic).map_or_else(
                || defaults.clone(),
                |t| topic_config::log_config(&t.configs, &defaults),
            )
        })?;
        for r in &reports {
            tracing::debug!(partition = %r.partition, recovery = ?r.recovery, "partition opened");
        }
        let metrics = Metrics::default();
        let mut to_open = Vec::new();
        for (name, t) in &topics {
            let cfg = topic_config::log_config(&t.configs, &config.log_defaults);
            for p in 0..t.partitions {
                let tp = TopicPartition::new(name.clone(), p);
                let log = logs.create(&tp, cfg.clone())?;
                to_open.push((tp, group_id(t.id, p), log));
            }
        }
        let node = u64::try_from(config.node_id)
            .map_err(|_| anyhow::anyhow!("--node-id must not be negative"))?;
        let partitions: HashMap<_, _> = open_groups(
            to_open,
            node,
            config.producer_limits,
            &metrics.producer_states,
        )?
        .into_iter()
        .collect();
        for tp in logs.partitions() {
            if !partitions.contains_key(&tp) {
                // A topic deleted in metadata whose log deletion a crash interrupted.
                tracing::warn!(partition = %tp, "deleting log of a topic that no longer exists");
                logs.delete(&tp)?;
            }
        }
        let offsets_log = partitions
            .get(&TopicPartition::new(OFFSETS_TOPIC, 0))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{OFFSETS_TOPIC} has no partition 0"))?;
        let group_config = GroupConfig {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            max_pending_writes: config.group_max_pending_writes,
            counters: metrics.group_writes.clone(),
            ..GroupConfig::default()
        };
        let groups = GroupCoordinator::start(Arc::new(OffsetsLog(offsets_log)), group_config)?;
        tracing::info!(
            topics = topics.len(),
            partitions = partitions.len(),
            "node opened"
        );
        let config_limits = config.limits;
        let broker = Arc::new(Self {
            config,
            identity,
            advertised_host,
            advertised_port,
            meta,
            logs,
            partitions: RwLock::new(partitions),
            groups,
            metrics,
            limits: Limits::new(config_limits),
        });
        // Commits for partitions that do not exist get UNKNOWN_TOPIC_OR_PARTITION.
        let weak = Arc::downgrade(&broker);
        broker
            .groups
            .set_partition_check(PartitionCheck(Arc::new(move |topic: &str, p: i32| {
                weak.upgrade()
                    .is_some_and(|b| b.partition(topic, p).is_some())
            })));
        Ok(broker)
    }

    /// Ids of the brokers alive in the cluster (this node, on a single node).
    pub fn live_brokers(&self) -> Vec<i32> {
        vec![self.config.node_id]
    }

    /// Number of partitions hosted.
    pub fn partition_count(&self) -> usize {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// A hosted partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    fn open_partitions(
        &self,
        name: &str,
        t: &TopicMeta,
        from: i32,
    ) -> Result<(), TopicChangeError> {
        let cfg = topic_config::log_config(&t.configs, &self.config.log_defaults);
        let mut to_open = Vec::new();
        for p in from..t.partitions {
            let tp = TopicPartition::new(name, p);
            let log = self.logs.create(&tp, cfg.clone())?;
            to_open.push((tp, group_id(t.id, p), log));
        }
        let node = u64::try_from(self.config.node_id).unwrap_or(0);
        let new = open_groups(
            to_open,
            node,
            self.config.producer_limits,
            &self.metrics.producer_states,
        )
        .map_err(|e| TopicChangeError::InvalidRequest(e.to_string()))?;
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(new);
        Ok(())
    }

    /// Creates a topic with its partitions; durable on return.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, TopicChangeError> {
        for (k, v) in &configs {
            topic_config::validate(k, v)?;
        }
        self.check_partition_room(i64::from(partitions))?;
        let t = self.meta.create(name, partitions, configs, false)?;
        self.open_partitions(name, &t, 0)?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(t)
    }

    /// The topic, auto-creating it when allowed.
    pub fn topic_or_create(&self, name: &str, allow: bool) -> Result<TopicMeta, TopicChangeError> {
        if let Some(t) = self.meta.topic(name) {
            return Ok(t);
        }
        if !(allow && self.config.auto_create_topics) {
            return Err(TopicError::Unknown(name.into()).into());
        }
        match self.create_topic(name, self.config.default_partitions, BTreeMap::new()) {
            Err(TopicChangeError::Topic(TopicError::Exists(_))) => self
                .meta
                .topic(name)
                .ok_or_else(|| TopicError::Unknown(name.into()).into()),
            r => r,
        }
    }

    /// Refuses `more` partitions that would take the node past `--max-partitions`
    /// (each partition holds open files and mappings: a request asking for
    /// 100 000 of them must not exhaust the node's file descriptors).
    fn check_partition_room(&self, more: i64) -> Result<(), TopicError> {
        let hosted = self.meta.total_partitions();
        let max = i64::try_from(self.config.max_partitions).unwrap_or(i64::MAX);
        if more > 0 && hosted.saturating_add(more) > max {
            return Err(TopicError::TooManyPartitions {
                asked: more,
                hosted,
                max,
            });
        }
        Ok(())
    }

    /// Deletes a topic and its logs (blocking file work: call it through
    /// [`crate::blocking::run`]).
    ///
    /// The partitions leave the map under its write lock, which is then released
    /// before any file is touched: produce and fetch on other topics never wait
    /// for the logs to close and their files to go.
    pub fn delete_topic(&self, name: &str) -> Result<(), TopicChangeError> {
        if name == OFFSETS_TOPIC {
            return Err(TopicError::InvalidName(name.into()).into());
        }
        let t = self.meta.delete(name)?;
        let removed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            (0..t.partitions)
                .filter_map(|p| parts.remove(&TopicPartition::new(name, p)))
                .collect()
        };
        // Stop the Raft groups before their files go.
        stop_groups(&removed);
        let removed: Vec<TopicPartition> = removed.iter().map(|p| p.tp.clone()).collect();
        if let Err(e) = self.logs.delete_many(&removed) {
            tracing::warn!(topic = name, error = %e, "deleting logs");
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Raises the partition count of a topic.
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<(), TopicChangeError> {
        let before = self
            .meta
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.into()))?;
        self.check_partition_room(i64::from(count) - i64::from(before.partitions))?;
        let t = self.meta.set_partitions(name, count)?;
        self.open_partitions(name, &t, before.partitions)
    }

    /// Replaces a topic's explicit configs and applies them to its logs.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), TopicChangeError> {
        for (k, v) in &configs {
            topic_config::validate(k, v)?;
        }
        let t = self
            .meta
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.into()))?;
        self.meta.set_configs(name, configs.clone())?;
        let cfg = topic_config::log_config(&configs, &self.config.log_defaults);
        for p in 0..t.partitions {
            if let Some(part) = self.partition(name, p) {
                part.set_config(cfg.clone());
            }
        }
        Ok(())
    }

    /// The effective log settings of a topic.
    pub fn topic_log_config(&self, t: &TopicMeta) -> LogConfig {
        topic_config::log_config(&t.configs, &self.config.log_defaults)
    }

    /// Runs retention and compaction over every log once, and flushes it, so
    /// rolled segments reach the disk and recovery points advance even when no
    /// acks=all producer asks for a flush (blocking I/O); forgets idempotent
    /// producers idle past `--producer-id-expiration-ms`.
    pub fn maintain(&self) {
        let now = weir_storage_now();
        let parts = self.hosted();
        for p in parts {
            p.maintain(now);
        }
    }

    /// The partitions hosted here that have no leader now (`topic-partition`),
    /// for readiness.
    pub fn leaderless_partitions(&self) -> Vec<String> {
        self.hosted()
            .iter()
            .filter(|p| !p.has_leader())
            .map(|p| p.tp.to_string())
            .collect()
    }

    /// Every partition hosted, at this moment.
    fn hosted(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Closes every log cleanly (after stopping the Raft groups, so nothing
    /// writes to a closed log).
    pub fn close(&self) -> anyhow::Result<()> {
        let parts = self.hosted();
        stop_groups(&parts);
        self.logs.close_all()?;
        Ok(())
    }
}

/// The Raft group id of a partition: stable across restarts and the same on
/// every node (a hash of the topic id and the partition number).
fn group_id(topic_id: u128, partition: i32) -> u64 {
    use std::hash::{Hash, Hasher};
    // FNV-1a, not the std hasher: std's may change between releases, and
    // every node must compute the same id.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    topic_id.hash(&mut h);
    partition.hash(&mut h);
    h.finish()
}

/// FNV-1a, a fixed 64-bit hash.
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Stops the Raft groups of `parts` (blocking: call it from a blocking thread
/// of the runtime).
fn stop_groups(parts: &[Arc<Partition>]) {
    tokio::runtime::Handle::current().block_on(async {
        for p in parts {
            p.shutdown().await;
        }
    });
}

/// Opens the Raft groups of `parts` concurrently (each election of a lone
/// voter is immediate; the file work runs on the blocking pool). Blocking:
/// call it from a blocking thread of the runtime.
fn open_groups(
    parts: Vec<(TopicPartition, u64, Arc<weir_storage::Log>)>,
    node: u64,
    limits: crate::producer_state::ProducerLimits,
    counters: &Arc<crate::producer_state::ProducerStateCounters>,
) -> anyhow::Result<Vec<(TopicPartition, Arc<Partition>)>> {
    let handle = tokio::runtime::Handle::current();
    handle.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (tp, group, log) in parts {
            let counters = Arc::clone(counters);
            set.spawn(async move {
                let part = Partition::open_local(
                    tp.clone(),
                    log,
                    limits,
                    counters,
                    (node, group),
                    weir_raft::group::GroupSettings::default(),
                )
                .await;
                (tp, part)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (tp, part) = joined?;
            let part = part.map_err(|e| anyhow::anyhow!("{tp}: {e}"))?;
            out.push((tp, part));
        }
        Ok(out)
    })
}

fn weir_storage_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The group coordinator's store: partition 0 of `__consumer_offsets`.
#[derive(Debug)]
struct OffsetsLog(Arc<Partition>);

impl GroupStore for OffsetsLog {
    fn append(&self, records: Vec<Record>) -> AppendFuture {
        let now = weir_storage_now();
        let specs: Vec<_> = records
            .into_iter()
            .map(|(k, v)| (Some(k.to_vec()), v.map(|v| v.to_vec()), now))
            .collect();
        let batch = weir_storage::record::build_batch(&specs);
        let part = self.0.clone();
        // Appended here, before returning, so records reach the log in call order.
        let appended = part.append(&Bytes::from(batch));
        Box::pin(async move {
            let pending = appended.map_err(|e| GroupStoreError::Unavailable(e.to_string()))?;
            // Committed: durable under the fsync policy.
            pending
                .wait(-1, false)
                .await
                .map(|_| ())
                .map_err(|e| GroupStoreError::Unavailable(e.to_string()))
        })
    }

    fn load(&self) -> Result<Vec<Record>, GroupStoreError> {
        let mut out = Vec::new();
        let mut offset = self.0.log_start_offset();
        let limit = weir_storage::record::stored_limit(self.0.config().max_message_bytes);
        loop {
            let r = self
                .0
                .read_log(offset, 1 << 20)
                .map_err(|e| GroupStoreError::Unavailable(e.to_string()))?;
            if r.records.is_empty() {
                break;
            }
            for (at, h) in weir_storage::HeaderWalk::new(&r.records, 0) {
                let batch: Bytes = r.records.slice(at..at + h.size());
                let recs = weir_storage::record::decode_records(&batch, limit)
                    .map_err(|e| GroupStoreError::Unavailable(e.to_string()))?;
                out.extend(recs.into_iter().filter_map(|r| r.key.map(|k| (k, r.value))));
                offset = h.next_offset();
            }
        }
        Ok(out)
    }
}
