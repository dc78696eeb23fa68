//! The node's shared state: metadata, partition logs, partitions and the group
//! coordinator, and the operations that change them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use weir_storage::{LogConfig, LogManager, TopicPartition};

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::controller::{Command, Controller, ControllerError, Voters};
use crate::coordinators::{offsets_partition_for, Coordinators, DEFAULT_OFFSETS_PARTITIONS};
use crate::group::{
    AppendFuture, GroupConfig, GroupCoordinator, GroupStore, GroupStoreError, PartitionCheck,
    Record,
};
use crate::identity::{self, Identity};
use crate::limits::Limits;
use crate::metadata::{BrokerMeta, MetadataStore, TopicError, TopicMeta, PRODUCER_ID_BLOCK};
use crate::metrics::Metrics;
use crate::partition::Partition;
use crate::topic_config::{self, ConfigError};

/// How long InitProducerId waits for the controller to record a new block
/// of producer ids before telling the client to retry
/// (COORDINATOR_LOAD_IN_PROGRESS): well inside the shortest request timeout
/// of common clients, so that a cluster without a controller quorum answers
/// instead of holding the connection.
pub const PRODUCER_ID_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The internal topic holding consumer group offsets and metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Topics whose records hold Weir's own state (committed group offsets, the
/// stream jobs' checkpoints and statuses): no client may delete them or
/// their records, as Kafka refuses it for its internal topics.
pub const KEPT_TOPICS: [&str; 3] = [
    OFFSETS_TOPIC,
    crate::stream::task::STATE_TOPIC,
    crate::stream::task::STATUS_TOPIC,
];

/// How long a coordinator waits for a quorum to confirm its leadership
/// before it answers a read of committed offsets (else NOT_COORDINATOR,
/// and the client looks the coordinator up again).
pub const COORDINATOR_READ_CONFIRM: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// Topics and producer ids, as applied from the controller.
    pub meta: Arc<MetadataStore>,
    /// The controller group (metadata commands).
    pub controller: Controller,
    /// The transport to peers and the leaders they announce.
    pub cluster: Arc<Cluster>,
    /// This node's unissued producer ids: `next..end` of its block.
    producer_ids: Mutex<(i64, i64)>,
    /// Held while the hosted partitions are brought in line with the metadata.
    reconciling: Mutex<()>,
    /// Partition logs.
    pub logs: LogManager,
    // Read on every produce/fetch, written when topics change; never held across `.await`.
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Partitions assigned here whose Raft state could not be opened
    /// (damaged files), with the error: offline, their files left as they
    /// are, while the node serves the others (Kafka takes a damaged log
    /// directory offline the same way). A restart tries them again.
    offline: RwLock<BTreeMap<TopicPartition, String>>,
    /// The group coordinators, one per `__consumer_offsets` partition this
    /// node leads (loaded from its log in each new leader epoch).
    coordinators: Coordinators,
    /// Settings of the coordinators this node starts.
    group_config: GroupConfig,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Bounds on connections and request bytes in flight.
    pub limits: Arc<Limits>,
    /// The stream job tasks this node runs.
    pub jobs: crate::stream::jobs::Jobs,
}

/// Partitions opened between two deadline checks of a reconcile.
const OPEN_CHUNK: usize = 64;
/// How long CreateTopics and CreatePartitions wait for this node to open
/// the new partitions before answering (the controller has recorded them;
/// the rest open in the background): well inside a client's default 30 s
/// request timeout.
const CREATE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// The controller did not take the change.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// INVALID_REPLICATION_FACTOR.
    #[error("replication factor {asked} is not between 1 and the {nodes} nodes of this cluster")]
    ReplicationFactor {
        /// The factor asked for.
        asked: i16,
        /// Nodes in the cluster.
        nodes: usize,
    },
}

impl TopicChangeError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::Topic(t) => t.code(),
            Self::Config(_) => crate::error_code::code::INVALID_CONFIG,
            Self::Storage(s) => crate::error_code::storage(s),
            Self::InvalidRequest(_) => crate::error_code::code::INVALID_REQUEST,
            Self::Controller(c) => c.code(),
            Self::ReplicationFactor { .. } => crate::error_code::code::INVALID_REPLICATION_FACTOR,
        }
    }
}

impl Broker {
    /// Opens the node's data directory and joins the cluster: the controller
    /// group (on a node with peers, this waits for a quorum of them), the
    /// node's registration, then every partition log hosted here (recovered
    /// in parallel), their Raft groups and the group coordinator.
    pub fn open(
        config: BrokerConfig,
        advertised_host: String,
        advertised_port: i32,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir)?;
        let node = config.node_id;
        let node_u =
            u64::try_from(node).map_err(|_| anyhow::anyhow!("--node-id must not be negative"))?;
        let handle = tokio::runtime::Handle::current();
        let with_peers = !config.peers.is_empty();
        // The identity recorded in the directory, if any (checked against
        // --node-id and --cluster-id). A new directory records the cluster id
        // the controller holds: the first one proposed (a node's own, or
        // --cluster-id, or a random one) wins.
        let recorded = if config.data_dir.join(identity::FILE).exists() {
            Some(identity::load_or_create(
                &config.data_dir,
                node,
                config.cluster_id.as_deref(),
            )?)
        } else {
            None
        };
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
        let meta = Arc::new(MetadataStore::open(&config.data_dir)?);
        meta.adopt_unassigned(node)?;
        // Peers refuse this node's links if it says another cluster's id, and
        // it refuses theirs (a data directory of another cluster never
        // writes into this one); a new directory says none until it learns
        // the id from the controller.
        let known_id = weir_raft::ClusterIdCell::default();
        if let Some(id) = recorded
            .as_ref()
            .map(|i| i.cluster_id.as_str())
            .or(meta.cluster_id().as_deref())
        {
            known_id.set(id);
        }
        let cluster = Arc::new(match &config.raft_listen {
            Some(listen) if with_peers => handle.block_on(Cluster::join(
                node,
                listen,
                config.peers.clone(),
                known_id.clone(),
            ))?,
            _ => Cluster::alone(),
        });
        let voters = match &cluster.transport {
            Some(t) => Voters::Peers(&cluster.peers, t),
            None => Voters::Alone,
        };
        let controller = handle.block_on(Controller::open(
            &config.data_dir,
            node_u,
            voters,
            Arc::clone(&meta),
            weir_raft::group::GroupSettings {
                // An empty controller log: a new node, or one that lost its
                // disk (see docs/cluster.md, "A node that lost its disk").
                lost_state: weir_raft::group::LostState::PossibleWhileForming,
                ..weir_raft::group::GroupSettings::default()
            },
        ))?;
        if with_peers {
            tracing::info!(peers = ?config.peers, "joining the cluster (waits for a quorum of the nodes)");
        }
        if meta.cluster_id().is_none() {
            // Every node proposes; the first applied wins.
            let candidate = recorded
                .as_ref()
                .map(|i| i.cluster_id.clone())
                .or_else(|| config.cluster_id.clone())
                .unwrap_or_else(identity::new_cluster_id);
            handle.block_on(controller.submit(&[Command::SetClusterId { id: candidate }]))?;
        }
        let cluster_id = meta
            .cluster_id()
            .ok_or_else(|| anyhow::anyhow!("the controller recorded no cluster id"))?;
        if let Some(wanted) = config.cluster_id.as_deref().filter(|w| *w != cluster_id) {
            anyhow::bail!(
                "{} belongs to cluster {cluster_id}, not cluster {wanted}: its metadata records \
                 cluster {cluster_id}; use an empty --data-dir to join cluster {wanted}",
                config.data_dir.display()
            );
        }
        known_id.set(&cluster_id);
        let identity = identity::load_or_create(&config.data_dir, node, Some(&cluster_id))?;
        tracing::info!(cluster_id = %identity.cluster_id, node_id = identity.node_id, "identity");
        // A node the cluster knew before this start may have lost the state
        // of the partitions it opens now (its disk replaced or wiped): those
        // whose Raft log is empty rejoin without a vote until caught up.
        let known_before = meta.brokers().contains_key(&node);
        let me = BrokerMeta {
            host: advertised_host.clone(),
            port: advertised_port,
            admin: Some(advertised_admin(&config.admin_listen, &advertised_host)),
        };
        if meta.brokers().get(&node) != Some(&me) {
            handle.block_on(controller.submit(&[Command::RegisterBroker {
                node,
                host: me.host,
                port: me.port,
                admin: me.admin,
            }]))?;
        }
        if meta.topic(OFFSETS_TOPIC).is_none() {
            let mut c = BTreeMap::new();
            c.insert("cleanup.policy".to_string(), "compact".to_string());
            c.insert("segment.bytes".to_string(), (100 << 20).to_string());
            // Spread as any topic: each group's coordinator is the leader of
            // its partition, so coordination spreads over the nodes too. (A
            // directory from before holds one partition, kept as it is.)
            let nodes = node_ids(&cluster, node);
            let factor = usize::try_from(config.default_replication_factor)
                .unwrap_or(1)
                .clamp(1, nodes.len());
            let topic = TopicMeta {
                id: crate::metadata::random_id(),
                partitions: DEFAULT_OFFSETS_PARTITIONS,
                configs: c,
                internal: true,
                replicas: crate::assignment::spread(
                    0,
                    DEFAULT_OFFSETS_PARTITIONS,
                    factor,
                    &nodes,
                    0,
                ),
                log_start_floors: BTreeMap::new(),
            };
            handle.block_on(controller.submit(&[Command::CreateTopic {
                name: OFFSETS_TOPIC.into(),
                topic,
            }]))?;
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
        for h in hosted_plan(&topics, node, &config.log_defaults) {
            let log = logs.create(&h.tp, h.config.clone())?;
            to_open.push((h, log));
        }
        let (opened, offline) = open_groups(
            to_open,
            node_u,
            &cluster,
            config.producer_limits,
            &metrics.producer_states,
            (
                config.raft_quiesce,
                if known_before {
                    weir_raft::group::LostState::Possible
                } else {
                    weir_raft::group::LostState::Impossible
                },
            ),
        )?;
        let partitions: HashMap<_, _> = opened.into_iter().collect();
        for tp in logs.partitions() {
            if !partitions.contains_key(&tp) && !offline.contains_key(&tp) {
                // A topic deleted in metadata whose log deletion a crash interrupted.
                tracing::warn!(partition = %tp, "deleting log of a topic that no longer exists");
                logs.delete(&tp)?;
            }
        }
        let group_config = GroupConfig {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            max_pending_writes: config.group_max_pending_writes,
            counters: metrics.group_writes.clone(),
            ..GroupConfig::default()
        };
        // A lone voter leads at once: it coordinates from the start. In a
        // cluster the node coordinates the partitions it comes to lead (see
        // `spawn_coordinator_follower`).
        let coordinators = Coordinators::default();
        for (tp, p) in &partitions {
            let l = p.leadership();
            if tp.topic == OFFSETS_TOPIC && matches!(l.role, crate::partition::Role::Leader) {
                let store: Arc<dyn GroupStore> = Arc::new(OffsetsLog {
                    part: Arc::clone(p),
                    node: None,
                });
                let g = GroupCoordinator::start(store, group_config.clone())?;
                coordinators.install(tp.partition, l.epoch, g);
            }
        }
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
            controller,
            cluster,
            producer_ids: Mutex::new((0, 0)),
            reconciling: Mutex::new(()),
            logs,
            partitions: RwLock::new(partitions),
            offline: RwLock::new(offline),
            coordinators,
            group_config,
            metrics,
            limits: Limits::new(config_limits),
            jobs: crate::stream::jobs::Jobs::default(),
        });
        for (_, _, g) in broker.coordinators.all() {
            g.set_partition_check(broker.partition_check());
        }
        broker.spawn_reconciler();
        broker.spawn_tender();
        broker.spawn_coordinator_follower();
        crate::stream::jobs::Jobs::spawn(&broker);
        let weak = Arc::downgrade(&broker);
        broker.cluster.spawn_announcer(move || {
            let b = weak.upgrade()?;
            Some(b.led_groups())
        });
        Ok(broker)
    }

    /// Commits for partitions that do not exist (in the metadata: a
    /// partition may live on other nodes) get UNKNOWN_TOPIC_OR_PARTITION.
    fn partition_check(self: &Arc<Self>) -> PartitionCheck {
        let weak = Arc::downgrade(self);
        PartitionCheck(Arc::new(move |topic: &str, p: i32| {
            weak.upgrade().is_some_and(|b| {
                b.meta
                    .topic(topic)
                    .is_some_and(|t| (0..t.partitions).contains(&p))
            })
        }))
    }

    /// The `__consumer_offsets` partition of `group_id`.
    pub fn offsets_partition_of(&self, group_id: &str) -> i32 {
        let partitions = self.meta.topic(OFFSETS_TOPIC).map_or(1, |t| t.partitions);
        offsets_partition_for(group_id, partitions)
    }

    /// The coordinator of `group_id`, while this node coordinates it: it
    /// leads the group's `__consumer_offsets` partition and has loaded that
    /// partition's groups in its current leader epoch. Group requests get
    /// NOT_COORDINATOR otherwise.
    pub fn coordinator(&self, group_id: &str) -> Option<Arc<GroupCoordinator>> {
        self.coordinator_of_partition(self.offsets_partition_of(group_id))
    }

    /// The coordinator of `group_id` on this node for a read of its
    /// committed offsets or state: as [`Broker::coordinator`], and only once a quorum
    /// confirmed this node still leads the group's `__consumer_offsets`
    /// partition (Raft's ReadIndex, within [`COORDINATOR_READ_CONFIRM`]).
    /// Found from outside: a coordinator cut off from its peers answered
    /// OffsetFetch with the offsets of before the cut, while a newer
    /// coordinator had taken commits, in the seconds before it found itself
    /// cut off and after the cut healed.
    pub async fn coordinator_for_read(&self, group_id: &str) -> Option<Arc<GroupCoordinator>> {
        let g = self.coordinator(group_id)?;
        let p = self.partition(OFFSETS_TOPIC, self.offsets_partition_of(group_id))?;
        p.confirm_leadership(COORDINATOR_READ_CONFIRM)
            .await
            .then_some(g)
    }

    /// The coordinator of `__consumer_offsets` partition `partition`, while
    /// this node coordinates it: it leads it, and reaches a quorum of its
    /// replicas (cut off, it could commit no offset; its clients find the
    /// coordinator the others elected).
    fn coordinator_of_partition(&self, partition: i32) -> Option<Arc<GroupCoordinator>> {
        let l = self.partition(OFFSETS_TOPIC, partition)?.leadership();
        if !matches!(l.role, crate::partition::Role::Leader) {
            return None;
        }
        if !self.partition_reaches_quorum(OFFSETS_TOPIC, partition) {
            return None;
        }
        self.coordinators.get(partition, l.epoch)
    }

    /// ListGroups: the groups of every partition this node coordinates
    /// (clients ask every broker).
    pub async fn list_groups(
        &self,
        req: kafka_protocol::messages::ListGroupsRequest,
        version: i16,
    ) -> kafka_protocol::messages::ListGroupsResponse {
        let mut out = kafka_protocol::messages::ListGroupsResponse::default();
        for (partition, _, _) in self.coordinators.all() {
            if let Some(g) = self.coordinator_of_partition(partition) {
                let r = g.list_groups(req.clone(), version).await;
                if r.error_code != 0 {
                    return r;
                }
                out.groups.extend(r.groups);
            }
        }
        out.groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
        out
    }

    /// Follows the leadership of the `__consumer_offsets` partitions hosted
    /// here: when this node becomes a partition's leader in a new term, it
    /// waits until every entry in its log is committed (the log then holds
    /// every commit acknowledged by any earlier coordinator), loads the
    /// partition's groups into a new coordinator and takes their requests;
    /// when it stops leading, their requests get NOT_COORDINATOR, and clients
    /// look the coordinator up again.
    fn spawn_coordinator_follower(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { return };
                let offsets: Vec<Arc<Partition>> = b
                    .hosted()
                    .into_iter()
                    .filter(|p| p.tp.topic == OFFSETS_TOPIC)
                    .collect();
                for (partition, _, _) in b.coordinators.all() {
                    if !offsets.iter().any(|p| p.tp.partition == partition) {
                        b.coordinators.remove(partition);
                    }
                }
                for p in offsets {
                    b.follow_coordination(&p).await;
                }
            }
        });
    }

    /// One step of [`Broker::spawn_coordinator_follower`] for the offsets
    /// partition `p`.
    async fn follow_coordination(self: &Arc<Self>, p: &Arc<Partition>) {
        let partition = p.tp.partition;
        let l = p.leadership();
        if !matches!(l.role, crate::partition::Role::Leader) {
            if self.coordinators.remove(partition) {
                tracing::info!(partition, "no longer the group coordinator");
            }
            return;
        }
        if self.coordinators.loaded_epoch(partition) == Some(l.epoch) {
            return;
        }
        let o = p.offsets();
        if o.high_watermark < o.log_end {
            return; // the term's first commit is not applied yet
        }
        let config = self.group_config.clone();
        let store: Arc<dyn GroupStore> = Arc::new(OffsetsLog {
            part: Arc::clone(p),
            node: Some(Arc::downgrade(self)),
        });
        let started =
            tokio::task::spawn_blocking(move || GroupCoordinator::start(store, config)).await;
        match started {
            Ok(Ok(g)) => {
                g.set_partition_check(self.partition_check());
                self.coordinators.install(partition, l.epoch, g);
                tracing::info!(
                    partition,
                    epoch = l.epoch,
                    "group coordinator for this term"
                );
            }
            Ok(Err(e)) => tracing::warn!(partition, error = %e, "loading the group coordinator"),
            Err(e) => tracing::warn!(partition, error = %e, "loading the group coordinator"),
        }
    }

    /// Brings the hosted partitions in line with the metadata whenever the
    /// controller applies a command (topics created, deleted or grown by any
    /// node).
    fn spawn_reconciler(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let changed = self.controller.changed();
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                let Some(b) = weak.upgrade() else { return };
                match tokio::task::spawn_blocking(move || b.reconcile()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "bringing partitions in line with the metadata")
                    }
                    Err(e) => tracing::warn!(error = %e, "reconcile task"),
                }
            }
        });
    }

    /// Opens the partitions the metadata assigns to this node and are not
    /// open, and stops and deletes those it no longer assigns here (topic
    /// deleted, or deleted and created again under the same name). Topic
    /// configs are applied to open partitions. Blocking: call it from a
    /// blocking thread.
    pub fn reconcile(&self) -> Result<(), TopicChangeError> {
        self.reconcile_until(None).map(|_| ())
    }

    /// [`Broker::reconcile`], but it stops opening partitions once
    /// `deadline` passed (checked every [`OPEN_CHUNK`] partitions) and leaves
    /// the rest to the background reconciler; returns whether it finished.
    /// A CreateTopics of thousands of partitions is then answered once they
    /// are recorded by the controller and as many as fit are open, as Kafka
    /// answers once the topic is in the metadata, not after the client's
    /// request timeout.
    fn reconcile_until(
        &self,
        deadline: Option<std::time::Instant>,
    ) -> Result<bool, TopicChangeError> {
        let _one = match deadline {
            None => self.reconciling.lock().unwrap_or_else(|p| p.into_inner()),
            // The background reconciler may hold it for the same change:
            // wait for it no longer than the deadline.
            Some(d) => loop {
                match self.reconciling.try_lock() {
                    Ok(g) => break g,
                    Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => {
                        if std::time::Instant::now() >= d {
                            return Ok(false);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            },
        };
        let topics = self.meta.topics();
        let plan = hosted_plan(&topics, self.config.node_id, &self.config.log_defaults);
        let wanted: HashMap<&TopicPartition, u64> = plan.iter().map(|h| (&h.tp, h.group)).collect();
        let removed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<TopicPartition> = parts
                .iter()
                .filter(|(tp, p)| wanted.get(tp).is_none_or(|g| p.group_id() != Some(*g)))
                .map(|(tp, _)| tp.clone())
                .collect();
            gone.iter().filter_map(|tp| parts.remove(tp)).collect()
        };
        let dropped_offline: Vec<TopicPartition> = {
            let mut off = self.offline.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<TopicPartition> = off
                .keys()
                .filter(|tp| !wanted.contains_key(tp))
                .cloned()
                .collect();
            for tp in &gone {
                off.remove(tp);
            }
            gone
        };
        if !dropped_offline.is_empty() {
            if let Err(e) = self.logs.delete_many(&dropped_offline) {
                tracing::warn!(error = %e, "deleting logs of offline partitions");
            }
        }
        if !removed.is_empty() {
            // Stop the Raft groups before their files go.
            stop_groups(&removed);
            let tps: Vec<TopicPartition> = removed.iter().map(|p| p.tp.clone()).collect();
            if let Err(e) = self.logs.delete_many(&tps) {
                tracing::warn!(error = %e, "deleting logs");
            }
            tracing::info!(
                partitions = tps.len(),
                "removed partitions no longer assigned here"
            );
        }
        let mut open: HashSet<TopicPartition> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        open.extend(
            self.offline
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        let floors: Vec<(TopicPartition, i64)> = plan
            .iter()
            .filter(|h| h.floor > 0)
            .map(|h| (h.tp.clone(), h.floor))
            .collect();
        let mut to_open = Vec::new();
        for h in plan {
            if open.contains(&h.tp) {
                if let Some(p) = self.partition(&h.tp.topic, h.tp.partition) {
                    if p.config() != h.config {
                        p.set_config(h.config.clone());
                    }
                }
                continue;
            }
            to_open.push(h);
        }
        let mut finished = true;
        let mut rest = to_open.into_iter().peekable();
        while rest.peek().is_some() {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                // The background reconciler opens the rest.
                self.controller.changed().notify_one();
                finished = false;
                break;
            }
            let mut chunk = Vec::new();
            for h in rest.by_ref().take(OPEN_CHUNK) {
                let log = self.logs.create(&h.tp, h.config.clone())?;
                chunk.push((h, log));
            }
            let (new, failed) = open_groups(
                chunk,
                u64::try_from(self.config.node_id).unwrap_or(0),
                &self.cluster,
                self.config.producer_limits,
                &self.metrics.producer_states,
                (
                    self.config.raft_quiesce,
                    weir_raft::group::LostState::Impossible,
                ),
            )
            .map_err(|e| TopicChangeError::InvalidRequest(e.to_string()))?;
            self.partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .extend(new);
            self.offline
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .extend(failed);
        }
        for (tp, floor) in floors {
            if let Some(p) = self.partition(&tp.topic, tp.partition) {
                p.raise_log_start_floor(floor);
            }
        }
        Ok(finished)
    }

    /// Runs the quiescence step of every replicated partition a few times a
    /// second (see `weir_raft`'s `group::quiet`): idle leaders stop their
    /// timers, and followers elect only when their leader stops claiming the
    /// group.
    fn spawn_tender(self: &Arc<Self>) {
        if self.cluster.transport.is_none() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::cluster::ANNOUNCE_INTERVAL);
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { return };
                let down = b.cluster.unreachable_peers();
                b.controller.tend(&down).await;
                for p in b.hosted() {
                    if let Some(group) = p.group_id() {
                        p.tend(b.cluster.claim(group), &down).await;
                    }
                }
            }
        });
    }

    /// The groups this node leads, as notices for its peers.
    fn led_groups(&self) -> Vec<weir_raft::group::LeaderNotice> {
        let me = u64::try_from(self.config.node_id).unwrap_or(0);
        // Read once per call, and only while a peer is out of reach (4 times
        // a second over every hosted partition: a topic's metadata holds
        // the replicas of all its partitions).
        let topics = (!self.cluster.all_reachable()).then(|| self.meta.topics());
        self.hosted()
            .iter()
            .filter_map(|p| {
                let l = p.leadership();
                if !matches!(l.role, crate::partition::Role::Leader) {
                    return None;
                }
                // A leader that hears no quorum of the replicas commits
                // nothing: it does not claim the group, so the others elect
                // (found from outside: a leader that could send but not
                // hear kept its followers from campaigning for the whole
                // one-way partition).
                if let Some(topics) = &topics {
                    let t = topics.get(&p.tp.topic)?;
                    if !self.reaches_quorum(&t.replicas_of(p.tp.partition, self.config.node_id)) {
                        return None;
                    }
                }
                Some(weir_raft::group::LeaderNotice {
                    group: p.group_id()?,
                    leader: me,
                    term: u64::try_from(l.epoch).ok()?,
                })
            })
            .collect()
    }

    /// The leader (node id, -1 when unknown) and leader epoch of `partition`
    /// of topic `t`: from the partition's group when hosted here, else from
    /// its leader's notices.
    pub fn leader_of(&self, name: &str, t: &TopicMeta, partition: i32) -> (i32, i32) {
        if let Some(p) = self.partition(name, partition) {
            let l = p.leadership();
            let leader = match l.role {
                // A leader cut off from a quorum of the partition's replicas
                // commits nothing (and refuses writes once its lease
                // lapsed) while the others elect a new one: it does not
                // send clients to itself, so they ask other nodes.
                crate::partition::Role::Leader
                    if !self.reaches_quorum(&t.replicas_of(partition, self.config.node_id)) =>
                {
                    -1
                }
                crate::partition::Role::Leader => self.config.node_id,
                // A leader this node has not heard from lately, while this
                // node reaches no quorum of the replicas either (it
                // restarted while the others stay down: no election can
                // succeed), is not named: clients ask again instead of
                // sending to a node that is gone. With a quorum reachable
                // the old leader stays named until the election replaces
                // it, as Kafka's metadata names a dead leader until its
                // controller moves the partition: clients meet a refused
                // connection and ask again, while a leader of -1 sends
                // kafkajs 2.2.4's consumer into a loop that never yields
                // (tulios/kafkajs#1384, fix never released).
                crate::partition::Role::Follower { leader }
                    if !self.cluster.reachable(leader)
                        && !self.reaches_quorum(&t.replicas_of(partition, self.config.node_id)) =>
                {
                    -1
                }
                crate::partition::Role::Follower { leader } => leader,
            };
            return (leader, l.epoch);
        }
        match self.cluster.announced_leader(group_id(t.id, partition)) {
            Some((leader, term)) => (leader, i32::try_from(term).unwrap_or(i32::MAX)),
            None => (-1, -1),
        }
    }

    /// The leader (node id, -1 when none can be named) and leader epoch of
    /// `partition` of topic `t` as Metadata and FindCoordinator name them:
    /// [`Broker::leader_of`], except on a node cut off from a quorum of the
    /// partition's replicas while they run (their addresses did not refuse
    /// it: a cut, not dead processes). There it does not know who leads, but
    /// the others do, and elect one if it led: it names a replica that
    /// runs (the leader it followed first, else the first in replica order)
    /// so that a client that asks only this node, as librdkafka asks the
    /// brokers it is connected to, goes to the others and learns who leads
    /// there (found from outside: with leader -1 an idempotent producer
    /// waited out the whole cut, 30-40 s, though a new leader took writes
    /// after ~5 s). A wrong guess costs that client a
    /// NOT_LEADER_OR_FOLLOWER and a Metadata request to the node it named.
    pub fn leader_for_clients(&self, name: &str, t: &TopicMeta, partition: i32) -> (i32, i32) {
        let (leader, epoch) = self.leader_of(name, t, partition);
        if leader >= 0 || self.cluster.all_reachable() {
            return (leader, epoch);
        }
        let me = self.config.node_id;
        let replicas = t.replicas_of(partition, me);
        if self.reaches_quorum(&replicas) {
            return (leader, epoch);
        }
        let followed = self
            .partition(name, partition)
            .and_then(|p| match p.leadership().role {
                crate::partition::Role::Follower { leader } => Some(leader),
                crate::partition::Role::Leader => None,
            });
        followed
            .into_iter()
            .chain(replicas)
            .find(|r| *r >= 0 && *r != me && self.cluster.may_be_running(*r))
            .map_or((leader, epoch), |guess| (guess, epoch))
    }

    /// The replicas of a partition counted in sync: the leader, and the
    /// other replicas this node can reach; where this node leads, only
    /// followers that matched its log since it leads (a Raft quorum, not
    /// this set, decides what is committed: it is what Kafka tools show as
    /// the ISR and count as under-replicated).
    pub fn in_sync(&self, topic: &str, partition: i32, leader: i32, replicas: &[i32]) -> Vec<i32> {
        let matched = self
            .partition(topic, partition)
            .filter(|p| matches!(p.leadership().role, crate::partition::Role::Leader))
            .and_then(|p| p.raft_status())
            .map(|s| s.matched);
        replicas
            .iter()
            .copied()
            .filter(|r| {
                *r == leader
                    || (self.cluster.reachable(*r)
                        && matched.as_ref().is_none_or(|m| {
                            u64::try_from(*r)
                                .ok()
                                .and_then(|id| m.get(&id).copied().flatten())
                                .is_some()
                        }))
            })
            .collect()
    }

    /// The in-sync replicas of a partition this node leads and its topic's
    /// `min.insync.replicas`, when fewer are in sync than that asks (acks=all
    /// is then refused with NOT_ENOUGH_REPLICAS, as in Kafka); `None` when
    /// enough are.
    pub fn too_few_in_sync(&self, topic: &str, partition: i32) -> Option<(Vec<i32>, usize)> {
        let min = self.meta.min_insync_replicas(topic);
        if min <= 1 {
            return None;
        }
        let replicas = self.replicas(topic, partition)?;
        let isr = self.in_sync(topic, partition, self.config.node_id, &replicas);
        (isr.len() < min).then_some((isr, min))
    }

    /// Whether this node reaches a majority of `replicas` (itself
    /// included; see [`Cluster::reachable`]).
    pub fn reaches_quorum(&self, replicas: &[i32]) -> bool {
        if self.cluster.all_reachable() {
            return true;
        }
        let reached = replicas
            .iter()
            .filter(|r| self.cluster.reachable(**r))
            .count();
        reached * 2 > replicas.len()
    }

    /// KIP-320's leader check of hosted partition `part` (see
    /// [`Partition::check_leader`]), and NOT_LEADER_OR_FOLLOWER from a
    /// leader cut off from a quorum of the partition's replicas: it serves
    /// no stale reads, and its clients ask the others who leads now.
    pub fn check_leader(
        &self,
        part: &Partition,
        current_leader_epoch: i32,
    ) -> Result<i32, crate::partition::LeaderError> {
        let epoch = part.check_leader(current_leader_epoch)?;
        if part.is_replicated() && !self.partition_reaches_quorum(&part.tp.topic, part.tp.partition)
        {
            return Err(crate::partition::LeaderError::NotLeader);
        }
        Ok(epoch)
    }

    /// The leader epoch of hosted partition `topic`/`partition` while this
    /// node leads it and reaches a quorum of its replicas (a leader cut off
    /// from them is about to be replaced), else `None`.
    pub fn leads(&self, topic: &str, partition: i32) -> Option<i32> {
        let l = self.partition(topic, partition)?.leadership();
        (l.role == crate::partition::Role::Leader
            && self.partition_reaches_quorum(topic, partition))
        .then_some(l.epoch)
    }

    /// Whether this node reaches a quorum of the replicas of
    /// `topic`/`partition`; no lookup while every peer is reachable (the hot
    /// paths ask it for every partition of every request).
    pub fn partition_reaches_quorum(&self, topic: &str, partition: i32) -> bool {
        if self.cluster.all_reachable() {
            return true;
        }
        self.replicas(topic, partition)
            .is_none_or(|r| self.reaches_quorum(&r))
    }

    /// The replicas of `topic`/`partition`, if the topic is known.
    fn replicas(&self, topic: &str, partition: i32) -> Option<Vec<i32>> {
        self.meta
            .topic(topic)
            .map(|t| t.replicas_of(partition, self.config.node_id))
    }

    /// Resolves once this node does not reach a quorum of the replicas of
    /// `topic`/`partition` (checked every 250 ms); never on a one-node
    /// cluster.
    pub async fn loses_quorum(&self, topic: &str, partition: i32) {
        loop {
            // Most waits end sooner: no check for them.
            tokio::time::sleep(crate::cluster::ANNOUNCE_INTERVAL).await;
            if !self.partition_reaches_quorum(topic, partition) {
                return;
            }
        }
    }

    /// The brokers clients are told of: every registered node (this one
    /// with its listener of this run).
    pub fn brokers(&self) -> BTreeMap<i32, BrokerMeta> {
        let mut b = self.meta.brokers();
        b.insert(
            self.config.node_id,
            BrokerMeta {
                host: self.advertised_host.clone(),
                port: self.advertised_port,
                admin: Some(advertised_admin(
                    &self.config.admin_listen,
                    &self.advertised_host,
                )),
            },
        );
        b
    }

    /// The node clients should send controller requests to: the controller
    /// leader, or this node while none is known (any node forwards).
    pub fn controller_id(&self) -> i32 {
        self.controller.leader().unwrap_or(self.config.node_id)
    }

    /// The controller's leader as this node can vouch for it: itself while
    /// it reaches a quorum of the nodes, another node while that one is
    /// reachable or a quorum is (an election then replaces a dead one);
    /// `None` when no controller is known or none can be now.
    pub fn named_controller(&self) -> Option<i32> {
        let leader = self.controller.leader()?;
        let voters: Vec<i32> = self.cluster.peers.keys().copied().collect();
        let quorum = voters.is_empty() || self.reaches_quorum(&voters);
        let ok = if leader == self.config.node_id {
            quorum
        } else {
            self.cluster.reachable(leader) || quorum
        };
        ok.then_some(leader)
    }

    /// The leader of hosted partition `p` as Metadata names it
    /// ([`Broker::leader_of`]; -1 when none can be vouched for).
    fn named_leader(&self, p: &Partition) -> i32 {
        match self.meta.topic(&p.tp.topic) {
            Some(t) => self.leader_of(&p.tp.topic, &t, p.tp.partition).0,
            None => match p.leadership().role {
                crate::partition::Role::Leader => self.config.node_id,
                crate::partition::Role::Follower { leader } => leader,
            },
        }
    }

    /// A producer id no node handed out before (blocks of ids come from the
    /// controller; a block is waited for at most [`PRODUCER_ID_WAIT`]).
    /// Blocking.
    pub fn next_producer_id(&self) -> Result<i64, TopicChangeError> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            let node = self.config.node_id;
            // Bounded well inside a client's request timeout: without a
            // controller quorum the client is told to retry (found from
            // outside: the Java producer's InitProducerId hung, and the
            // connection's Metadata requests queued behind it).
            self.controller.submit_blocking_within(
                &[Command::AllocateProducerIds { node }],
                PRODUCER_ID_WAIT,
            )?;
            let start = self.meta.producer_block(node).ok_or_else(|| {
                TopicChangeError::InvalidRequest("no producer id block was recorded".into())
            })?;
            *ids = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Ids of the brokers alive in the cluster (registered with the
    /// controller, and this node).
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers().into_keys().collect()
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

    /// The error for a partition not hosted here: NOT_LEADER_OR_FOLLOWER
    /// when it exists on other nodes (the client asks Metadata again and
    /// finds its leader), UNKNOWN_TOPIC_OR_PARTITION when it does not exist.
    pub fn not_hosted(&self, topic: &str, partition: i32) -> i16 {
        use crate::error_code::code;
        let offline = TopicPartition {
            topic: topic.into(),
            partition,
        };
        if self
            .offline
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&offline)
        {
            return code::KAFKA_STORAGE_ERROR;
        }
        match self.meta.topic(topic) {
            Some(t) if (0..t.partitions).contains(&partition) => code::NOT_LEADER_OR_FOLLOWER,
            _ => code::UNKNOWN_TOPIC_OR_PARTITION,
        }
    }

    /// Creates a topic of `partitions` partitions with the default
    /// replication factor; committed by the controller on return, and its
    /// partitions hosted here open.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, TopicChangeError> {
        self.create_topic_with(name, partitions, configs, Placement::Factor(-1))
    }

    /// Creates a topic placed as `placement` says.
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        placement: Placement,
    ) -> Result<TopicMeta, TopicChangeError> {
        for (k, v) in &configs {
            topic_config::validate(k, v)?;
        }
        if !crate::metadata::valid_topic_name(name) {
            return Err(TopicError::InvalidName(name.into()).into());
        }
        if !(1..=100_000).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions).into());
        }
        if self.meta.topic(name).is_some() {
            return Err(TopicError::Exists(name.into()).into());
        }
        if let Some(existing) = self.meta.colliding_with(name) {
            return Err(TopicError::Collides {
                name: name.into(),
                existing,
            }
            .into());
        }
        let replicas = self.place(placement, 0, partitions)?;
        self.check_partition_room(&replicas)?;
        let topic = TopicMeta {
            id: crate::metadata::random_id(),
            partitions,
            configs,
            internal: false,
            replicas,
            log_start_floors: BTreeMap::new(),
        };
        self.controller.submit_blocking(&[Command::CreateTopic {
            name: name.into(),
            topic: topic.clone(),
        }])?;
        // Another node's topic of the same name may have been applied first.
        if self.meta.topic(name).is_none_or(|t| t.id != topic.id) {
            return Err(TopicError::Exists(name.into()).into());
        }
        if !self.reconcile_until(Some(std::time::Instant::now() + CREATE_WAIT))? {
            tracing::info!(
                topic = name,
                "created topic; its partitions are still being opened"
            );
        }
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// The replicas of partitions `from..to` placed as `placement` says.
    fn place(
        &self,
        placement: Placement,
        from: i32,
        to: i32,
    ) -> Result<Vec<Vec<i32>>, TopicChangeError> {
        let nodes = node_ids(&self.cluster, self.config.node_id);
        match placement {
            Placement::Explicit(r) => Ok(r),
            Placement::Factor(f) => {
                let f = if f == -1 {
                    self.config.default_replication_factor
                } else {
                    f
                };
                if f < 1 || f as usize > nodes.len() {
                    return Err(TopicChangeError::ReplicationFactor {
                        asked: f,
                        nodes: nodes.len(),
                    });
                }
                let start = (crate::metadata::random_id() % nodes.len() as u128) as usize;
                Ok(crate::assignment::spread(
                    from, to, f as usize, &nodes, start,
                ))
            }
        }
    }

    /// Waits until every partition of `topics` has a leader this node
    /// names, or `deadline`; whether they all do. CreateTopics answers after
    /// it, as Kafka's controller names each new partition's leader in the
    /// record that creates it (found from outside: the Java AdminClient's
    /// describeTopics right after createTopics showed partitions without a
    /// leader for up to a second). Blocking; polls, as the leaders are
    /// elected by each partition's own Raft group.
    pub fn await_leaders(&self, topics: &[String], deadline: std::time::Instant) -> bool {
        loop {
            let all_led = topics.iter().all(|name| {
                self.meta
                    .topic(name)
                    .is_none_or(|t| (0..t.partitions).all(|p| self.leader_of(name, &t, p).0 >= 0))
            });
            if all_led || std::time::Instant::now() >= deadline {
                return all_led;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
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

    /// Refuses new partitions (`replicas`) that would take a node past
    /// `--max-partitions` (each partition holds open files and mappings: a
    /// request asking for 100 000 of them must not exhaust a node's file
    /// descriptors).
    fn check_partition_room(&self, replicas: &[Vec<i32>]) -> Result<(), TopicError> {
        let max = i64::try_from(self.config.max_partitions).unwrap_or(i64::MAX);
        let mut added: BTreeMap<i32, i64> = BTreeMap::new();
        for r in replicas {
            for n in r {
                *added.entry(*n).or_default() += 1;
            }
        }
        let topics = self.meta.topics();
        for (node, more) in added {
            let hosted: i64 = topics
                .values()
                .map(|t| {
                    (0..t.partitions)
                        .filter(|p| t.replicas_of(*p, self.config.node_id).contains(&node))
                        .count() as i64
                })
                .sum();
            if hosted.saturating_add(more) > max {
                return Err(TopicError::TooManyPartitions {
                    asked: more,
                    hosted,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Deletes a topic (committed by the controller) and its logs here
    /// (blocking file work: call it through [`crate::blocking::run`]); the
    /// other nodes delete theirs when they apply the command.
    pub fn delete_topic(&self, name: &str) -> Result<(), TopicChangeError> {
        if KEPT_TOPICS.contains(&name) {
            return Err(TopicError::Kept {
                topic: name.into(),
                why: "it holds Weir's own state".into(),
            }
            .into());
        }
        let jobs = self.meta.jobs();
        if let Some(job) = jobs
            .values()
            .find(|d| crate::stream::repartition::topic(d) == name)
        {
            return Err(TopicError::Kept {
                topic: name.into(),
                why: format!("it is job {}'s repartition topic (drop the job)", job.name),
            }
            .into());
        }
        let t = self
            .meta
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.into()))?;
        self.controller.submit_blocking(&[Command::DeleteTopic {
            name: name.into(),
            id: t.id,
        }])?;
        self.reconcile()?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Records through the controller that partition `partition` of `name`
    /// starts at `offset` from now on (DeleteRecords on a replicated
    /// partition): every replica applies it, also one that is down now.
    pub fn record_log_start(
        &self,
        name: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), TopicChangeError> {
        let t = self
            .meta
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.into()))?;
        self.controller.submit_blocking(&[Command::DeleteRecords {
            name: name.into(),
            id: t.id,
            partition,
            offset,
        }])?;
        Ok(())
    }

    /// Raises the partition count of a topic (new partitions placed as
    /// `explicit` says, else spread like the topic's).
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        explicit: Option<Vec<Vec<i32>>>,
    ) -> Result<(), TopicChangeError> {
        let before = self
            .meta
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.into()))?;
        if count <= before.partitions || count > 100_000 {
            return Err(TopicError::InvalidPartitions(count).into());
        }
        let placement = match explicit {
            Some(r) => Placement::Explicit(r),
            None => Placement::Factor(before.replication_factor() as i16),
        };
        let replicas = self.place(placement, before.partitions, count)?;
        self.check_partition_room(&replicas)?;
        self.controller.submit_blocking(&[Command::AddPartitions {
            name: name.into(),
            id: before.id,
            from: before.partitions,
            replicas,
        }])?;
        if self.meta.topic(name).is_none_or(|t| t.partitions != count) {
            return Err(TopicError::InvalidPartitions(count).into());
        }
        self.reconcile_until(Some(std::time::Instant::now() + CREATE_WAIT))
            .map(|_| ())
    }

    /// Replaces a topic's explicit configs; every node applies them to its
    /// logs.
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
        self.controller.submit_blocking(&[Command::SetConfigs {
            name: name.into(),
            id: t.id,
            configs,
        }])?;
        self.reconcile()
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
        self.metrics
            .maintenance_passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Prometheus gauges of the partitions hosted here: how many, how many
    /// this node leads, how many of those are quiesced (their Raft timers
    /// stopped while idle, see `--raft-quiesce`) and under-replicated
    /// (fewer replicas in sync than assigned: Kafka's
    /// UnderReplicatedPartitions), how many have no leader now; and, for
    /// each partition it leads, each follower's lag in Raft entries.
    pub fn partition_gauges(&self) -> String {
        let hosted = self.hosted();
        let me = self.config.node_id;
        // Led as clients are told: not while cut off from a quorum.
        let led: Vec<_> = hosted
            .iter()
            .filter(|p| self.named_leader(p) == me)
            .collect();
        let quiesced = led.iter().filter(|p| p.is_quiesced()).count();
        let under = led
            .iter()
            .filter(|p| {
                let replicas = self
                    .replicas(&p.tp.topic, p.tp.partition)
                    .unwrap_or_default();
                self.in_sync(&p.tp.topic, p.tp.partition, me, &replicas)
                    .len()
                    < replicas.len()
            })
            .count();
        let leaderless = hosted.iter().filter(|p| !self.has_leader(p)).count();
        let mut s = String::new();
        for (name, v) in [
            ("weir_partitions_hosted", hosted.len()),
            ("weir_partitions_led", led.len()),
            ("weir_partitions_quiesced", quiesced),
            ("weir_partitions_under_replicated", under),
            ("weir_partitions_without_leader", leaderless),
        ] {
            s.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
        }
        s.push_str("# TYPE weir_partition_replica_lag gauge\n");
        for p in &led {
            let Some(status) = p.raft_status() else {
                continue;
            };
            let last = status.last_log_index.unwrap_or(0);
            for (node, lag) in status.lags() {
                // A follower that never answered lags by the whole log.
                let lag = lag.unwrap_or(last);
                s.push_str(&format!(
                    "weir_partition_replica_lag{{topic=\"{}\",partition=\"{}\",replica=\"{node}\"}} {lag}\n",
                    p.tp.topic, p.tp.partition
                ));
            }
        }
        s
    }

    /// This node's view of the cluster, as `/v1/cluster` shows it: the
    /// brokers, the controller, and for each partition hosted here its
    /// leader, term and positions (log end, high watermark, Raft indexes).
    pub fn cluster_view(&self) -> serde_json::Value {
        let mut parts: Vec<_> = self
            .hosted()
            .iter()
            .map(|p| {
                let l = p.leadership();
                let o = p.offsets();
                // As Metadata names it (found from outside: with two of
                // three nodes down, the survivor named the dead ones).
                let leader = self.named_leader(p);
                let raft = p.raft_status();
                let replicas = self
                    .replicas(&p.tp.topic, p.tp.partition)
                    .unwrap_or_default();
                serde_json::json!({
                    "topic": p.tp.topic,
                    "partition": p.tp.partition,
                    "leader": leader,
                    "term": l.epoch,
                    "log_end": o.log_end,
                    "high_watermark": o.high_watermark,
                    "committed_index": raft.as_ref().and_then(|r| r.committed_index),
                    "applied_index": raft.as_ref().and_then(|r| r.applied_index),
                    "quiesced": raft.as_ref().is_some_and(|r| r.quiesced),
                    "rejoining": raft.as_ref().is_some_and(|r| r.rejoining),
                    "replica_lag": raft.as_ref().map(replica_lag),
                    "in_sync": self.in_sync(&p.tp.topic, p.tp.partition, leader, &replicas),
                    "replicas": replicas,
                })
            })
            .collect();
        parts.sort_by_key(|v| {
            (
                v["topic"].as_str().map(str::to_string),
                v["partition"].as_i64(),
            )
        });
        let brokers: Vec<_> = self
            .brokers()
            .into_iter()
            .map(|(id, m)| serde_json::json!({"id": id, "host": m.host, "port": m.port}))
            .collect();
        serde_json::json!({
            "node_id": self.config.node_id,
            "cluster_id": self.identity.cluster_id,
            "controller": self.named_controller(),
            "peers": self.cluster.peers,
            "brokers": brokers,
            "partitions": parts,
        })
    }

    /// The partitions hosted here that have no leader now (`topic-partition`),
    /// for readiness.
    pub fn leaderless_partitions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .offline
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|tp| format!("{tp} (offline)"))
            .collect();
        out.extend(
            self.hosted()
                .iter()
                .filter(|p| !self.has_leader(p))
                .map(|p| p.tp.to_string()),
        );
        out
    }

    /// Whether hosted partition `p` has a leader as clients are told
    /// ([`Broker::leader_of`]): a leader this node follows, or this node
    /// while it reaches a quorum of the partition's replicas.
    fn has_leader(&self, p: &Partition) -> bool {
        match self.meta.topic(&p.tp.topic) {
            Some(t) => self.leader_of(&p.tp.topic, &t, p.tp.partition).0 >= 0 && p.has_leader(),
            None => p.has_leader(),
        }
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
        tokio::runtime::Handle::current().block_on(self.controller.shutdown());
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

/// How a new topic's partitions are placed.
#[derive(Debug, Clone)]
pub enum Placement {
    /// This many replicas per partition (-1: `--default-replication-factor`),
    /// spread evenly over the nodes.
    Factor(i16),
    /// The replicas of each partition, as a client assigned them.
    Explicit(Vec<Vec<i32>>),
}

/// Every node of the cluster, in id order (this node alone without peers).
fn node_ids(cluster: &Cluster, node: i32) -> Vec<i32> {
    if cluster.peers.is_empty() {
        vec![node]
    } else {
        cluster.peers.keys().copied().collect()
    }
}

/// A partition the metadata assigns to this node.
#[derive(Debug)]
struct Hosted {
    tp: TopicPartition,
    group: u64,
    replicas: Vec<i32>,
    config: LogConfig,
    /// Where DeleteRecords raised the log start (0: never).
    floor: i64,
}

/// The partitions of `topics` with a replica on `node`.
fn hosted_plan(
    topics: &BTreeMap<String, TopicMeta>,
    node: i32,
    defaults: &LogConfig,
) -> Vec<Hosted> {
    let mut out = Vec::new();
    for (name, t) in topics {
        let config = topic_config::log_config(&t.configs, defaults);
        for p in 0..t.partitions {
            let replicas = t.replicas_of(p, node);
            if replicas.contains(&node) {
                out.push(Hosted {
                    tp: TopicPartition::new(name.clone(), p),
                    group: group_id(t.id, p),
                    replicas,
                    config: config.clone(),
                    floor: t.log_start_floors.get(&p).copied().unwrap_or(0),
                });
            }
        }
    }
    out
}

/// The partitions [`open_groups`] opened, and those it could not (offline,
/// with the error).
type OpenedGroups = (
    Vec<(TopicPartition, Arc<Partition>)>,
    BTreeMap<TopicPartition, String>,
);

/// Opens the Raft groups of `parts` concurrently: a partition whose only
/// replica is this node as a one-voter group (its election is immediate),
/// the others over the cluster's transport. The file work runs on the
/// blocking pool. A partition that cannot be opened is returned offline
/// with its error. `(quiesce, lost_state)`: see
/// [`weir_raft::group::GroupSettings`] (`LostState::Possible` for the
/// partitions a node the cluster already knew opens when it starts).
/// Blocking: call it from a blocking thread of the runtime.
fn open_groups(
    parts: Vec<(Hosted, Arc<weir_storage::Log>)>,
    node: u64,
    cluster: &Arc<Cluster>,
    limits: crate::producer_state::ProducerLimits,
    counters: &Arc<crate::producer_state::ProducerStateCounters>,
    (quiesce, lost_state): (bool, weir_raft::group::LostState),
) -> anyhow::Result<OpenedGroups> {
    let handle = tokio::runtime::Handle::current();
    handle.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut names = HashMap::new();
        for (h, log) in parts {
            let counters = Arc::clone(counters);
            let cluster = Arc::clone(cluster);
            let tp = h.tp.clone();
            let task = set.spawn(async move {
                // Followers elect only once their leader stops claiming the
                // group (quiescence), so the election timeout can be short:
                // failover is about the leader lease (election_max_ms).
                let settings = weir_raft::group::GroupSettings {
                    quiesce,
                    lost_state,
                    election_min_ms: 600,
                    election_max_ms: 900,
                    ..weir_raft::group::GroupSettings::default()
                };
                let alone = h.replicas.len() == 1;
                let part = match &cluster.transport {
                    Some(t) if !alone => {
                        Partition::open_replicated(
                            h.tp.clone(),
                            log,
                            limits,
                            counters,
                            (node, h.group),
                            (cluster.voters(&h.replicas), t),
                            settings,
                        )
                        .await
                    }
                    _ => {
                        Partition::open_local(
                            h.tp.clone(),
                            log,
                            limits,
                            counters,
                            (node, h.group),
                            settings,
                        )
                        .await
                    }
                };
                (h.tp, part)
            });
            names.insert(task.id(), tp);
        }
        let mut opened = Vec::new();
        let mut offline = BTreeMap::new();
        while let Some(joined) = set.join_next_with_id().await {
            let (tp, err) = match joined {
                Ok((_, (tp, Ok(part)))) => {
                    opened.push((tp, part));
                    continue;
                }
                Ok((_, (tp, Err(e)))) => (tp, e.to_string()),
                Err(e) => match names.remove(&e.id()) {
                    Some(tp) => (tp, format!("opening it failed: {e}")),
                    None => return Err(e.into()),
                },
            };
            // One damaged partition does not keep the node down: it stays
            // offline (its files untouched) and the rest is served.
            tracing::error!(partition = %tp, error = %err, "partition offline: its Raft state could not be opened");
            offline.insert(tp, err);
        }
        Ok((opened, offline))
    })
}

fn weir_storage_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The group coordinator's store: a partition of `__consumer_offsets`.
#[derive(Debug)]
struct OffsetsLog {
    part: Arc<Partition>,
    /// The node, where the partition is replicated: a write is given up
    /// (COORDINATOR_NOT_AVAILABLE, retriable) once the node cannot reach a
    /// quorum of the partition's replicas, instead of waiting for a commit
    /// that only a healed cut would bring (found: an OffsetCommit in flight
    /// when its coordinator was cut off got no answer within a minute).
    /// `None` for a lone voter, whose appends commit at once.
    node: Option<Weak<Broker>>,
}

impl OffsetsLog {
    /// Why this node cannot commit to the partition now, if it cannot.
    fn cut_off(&self) -> Option<String> {
        let b = self.node.as_ref()?.upgrade()?;
        let tp = &self.part.tp;
        (self.part.is_replicated() && !b.partition_reaches_quorum(&tp.topic, tp.partition))
            .then(|| format!("this node cannot reach a quorum of the replicas of {tp}"))
    }

    /// Resolves once [`OffsetsLog::cut_off`] says why (checked as often as
    /// reachability changes); never without a node.
    async fn until_cut_off(&self) -> String {
        if self.node.is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(crate::cluster::ANNOUNCE_INTERVAL).await;
            if let Some(why) = self.cut_off() {
                return why;
            }
        }
    }
}

impl GroupStore for OffsetsLog {
    fn append(&self, records: Vec<Record>) -> AppendFuture {
        if let Some(why) = self.cut_off() {
            return Box::pin(async move { Err(GroupStoreError::Unavailable(why)) });
        }
        let now = weir_storage_now();
        let specs: Vec<_> = records
            .into_iter()
            .map(|(k, v)| (Some(k.to_vec()), v.map(|v| v.to_vec()), now))
            .collect();
        let batch = weir_storage::record::build_batch(&specs);
        // Appended here, before returning, so records reach the log in call order.
        let appended = self.part.append(&Bytes::from(batch));
        let watch = OffsetsLog {
            part: Arc::clone(&self.part),
            node: self.node.clone(),
        };
        Box::pin(async move {
            let pending = appended.map_err(|e| GroupStoreError::Unavailable(e.to_string()))?;
            // Committed: durable under the fsync policy.
            tokio::select! {
                w = pending.wait(-1, false) => w
                    .map(|_| ())
                    .map_err(|e| GroupStoreError::Unavailable(e.to_string())),
                why = watch.until_cut_off() => Err(GroupStoreError::Unavailable(why)),
            }
        })
    }

    fn load(&self) -> Result<Vec<Record>, GroupStoreError> {
        let mut out = Vec::new();
        let mut offset = self.part.log_start_offset();
        let limit = weir_storage::record::decompress_limit(self.part.config().max_message_bytes);
        loop {
            let r = self
                .part
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

/// How many Raft entries each follower is behind the leader's log (on the
/// leader; `null` for a follower that has not answered yet).
fn replica_lag(s: &weir_raft::group::GroupStatus) -> serde_json::Value {
    s.lags()
        .map(|(node, lag)| (node.to_string(), serde_json::json!(lag)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The admin listener other nodes reach this one at: `listen`, with the
/// advertised host in place of an unspecified address (0.0.0.0, ::).
fn advertised_admin(listen: &str, advertised_host: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("{advertised_host}:{}", a.port()),
        _ => listen.to_string(),
    }
}
