//! Cluster metadata: bootstrap, brokers, partition leaders, coordinators and
//! one shared connection per broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{check, codes, Error, Result};

/// Settings shared by producer, consumer and admin clients.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to bootstrap from.
    pub bootstrap: Vec<String>,
    /// Connection settings (client id and timeouts).
    pub connection: ConnectionConfig,
    /// Pause between retries of a failed request.
    pub retry_backoff: Duration,
    /// How many times metadata-related failures are retried.
    pub metadata_retries: u32,
}

impl ClientConfig {
    /// A config bootstrapping from a comma-separated address list.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            connection: ConnectionConfig::default(),
            retry_backoff: Duration::from_millis(100),
            metadata_retries: 10,
        }
    }

    /// Sets the client id sent with every request.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.connection.client_id = id.into();
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.connection.request_timeout = timeout;
        self
    }
}

/// One broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Broker (node) id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// One partition's replicas and leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id (-1 if none).
    pub leader: i32,
    /// Leader epoch (-1 if unknown).
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// Partition-level error code.
    pub error_code: i16,
}

/// One topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Whether the topic is internal (e.g. `__consumer_offsets`).
    pub is_internal: bool,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// The partition with index `p`.
    pub fn partition(&self, p: i32) -> Option<&PartitionMetadata> {
        self.partitions.iter().find(|m| m.partition == p)
    }
}

/// Cached metadata. A std mutex: it guards map lookups only, never an `.await`.
#[derive(Debug, Default)]
struct State {
    brokers: HashMap<i32, BrokerMetadata>,
    conns: HashMap<String, Arc<Connection>>,
    topics: HashMap<String, Arc<TopicMetadata>>,
    /// Metadata requests so far: each goes to the next broker in turn.
    metadata_turn: usize,
    coordinators: HashMap<String, i32>,
    controller: Option<i32>,
    cluster_id: Option<String>,
}

/// A handle on the cluster: metadata cache plus a connection pool.
#[derive(Debug)]
pub struct Cluster {
    config: ClientConfig,
    state: Mutex<State>,
}

impl Cluster {
    /// Connects to the first reachable bootstrap broker and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap.is_empty() {
            return Err(Error::InvalidArgument(
                "empty bootstrap address list".into(),
            ));
        }
        let cluster = Arc::new(Cluster {
            config,
            state: Mutex::default(),
        });
        cluster.fetch_metadata(Some(&[]), false).await?;
        Ok(cluster)
    }

    /// The config this cluster handle was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live connection to `addr`, opened on demand.
    pub async fn connection_to(&self, addr: &str) -> Result<Arc<Connection>> {
        if let Some(c) = self.state().conns.get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let conn = Arc::new(Connection::connect(addr, &self.config.connection).await?);
        let mut st = self.state();
        // Another task may have connected meanwhile; keep whichever is live.
        match st.conns.get(addr) {
            Some(existing) if !existing.is_closed() => Ok(existing.clone()),
            _ => {
                st.conns.insert(addr.to_string(), conn.clone());
                Ok(conn)
            }
        }
    }

    /// A connection to broker `id`, refreshing metadata once if the id is unknown.
    pub async fn broker(&self, id: i32) -> Result<Arc<Connection>> {
        let addr = self.broker_addr(id);
        let addr = match addr {
            Some(a) => a,
            None => {
                self.fetch_metadata(Some(&[]), false).await?;
                self.broker_addr(id)
                    .ok_or_else(|| Error::NoBrokerAvailable(format!("broker id {id} is unknown")))?
            }
        };
        self.connection_to(&addr).await
    }

    fn broker_addr(&self, id: i32) -> Option<String> {
        self.state()
            .brokers
            .get(&id)
            .map(|b| format!("{}:{}", b.host, b.port))
    }

    /// Known brokers, sorted by id.
    pub fn brokers(&self) -> Vec<BrokerMetadata> {
        let mut v: Vec<_> = self.state().brokers.values().cloned().collect();
        v.sort_by_key(|b| b.id);
        v
    }

    /// The controller id from the last metadata response.
    pub fn controller_id(&self) -> Option<i32> {
        self.state().controller
    }

    /// The cluster id from the last metadata response.
    pub fn cluster_id(&self) -> Option<String> {
        self.state().cluster_id.clone()
    }

    /// Any live connection: an open one, else a known broker, else a bootstrap address.
    pub async fn any_broker(&self) -> Result<Arc<Connection>> {
        let (open, mut addrs) = {
            let st = self.state();
            let open = st.conns.values().find(|c| !c.is_closed()).cloned();
            let addrs: Vec<String> = st
                .brokers
                .values()
                .map(|b| format!("{}:{}", b.host, b.port))
                .collect();
            (open, addrs)
        };
        if let Some(c) = open {
            return Ok(c);
        }
        addrs.extend(self.config.bootstrap.iter().cloned());
        let mut last = None;
        for addr in addrs {
            match self.connection_to(&addr).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "broker unreachable");
                    last = Some(e);
                }
            }
        }
        Err(Error::NoBrokerAvailable(
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no addresses".into()),
        ))
    }

    /// The broker for the next Metadata request: every known broker in
    /// turn (a bootstrap address while none is known). One broker's view
    /// can be stale (a leader cut off from its peers still names itself, or
    /// no leader); asking the next one each time, as librdkafka picks a
    /// random broker, lets a client learn the new leader from the others.
    async fn metadata_broker(&self) -> Result<Arc<Connection>> {
        let (mut addrs, turn) = {
            let mut st = self.state();
            let mut known: Vec<(i32, String)> = st
                .brokers
                .values()
                .map(|b| (b.id, format!("{}:{}", b.host, b.port)))
                .collect();
            known.sort_unstable();
            st.metadata_turn = st.metadata_turn.wrapping_add(1);
            (
                known.into_iter().map(|(_, a)| a).collect::<Vec<_>>(),
                st.metadata_turn,
            )
        };
        if addrs.is_empty() {
            return self.any_broker().await;
        }
        let start = turn % addrs.len();
        addrs.rotate_left(start);
        for addr in &addrs {
            match self.connection_to(addr).await {
                Ok(c) => return Ok(c),
                Err(e) => tracing::debug!(%addr, error = %e, "broker unreachable"),
            }
        }
        self.any_broker().await
    }

    /// The controller connection (for topic admin), or any broker if unknown.
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        match self.controller_id() {
            Some(id) if id >= 0 => match self.broker(id).await {
                Ok(c) => Ok(c),
                Err(_) => self.any_broker().await,
            },
            _ => self.any_broker().await,
        }
    }

    /// Sends a Metadata request (`None` = all topics, `Some(&[])` = brokers only)
    /// and updates the cache from the answer.
    pub async fn fetch_metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse> {
        let mut req = MetadataRequest::default();
        req.allow_auto_topic_creation = allow_auto_create;
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut mt = MetadataRequestTopic::default();
                    mt.name = Some(TopicName(StrBytes::from_string(t.clone())));
                    mt
                })
                .collect()
        });
        let mut attempt = 0;
        let resp = loop {
            let conn = self.metadata_broker().await?;
            match conn.send(&req).await {
                Ok(r) => break r,
                Err(e) if e.is_retriable() && attempt < self.config.metadata_retries => {
                    attempt += 1;
                    tracing::debug!(error = %e, "metadata request failed; retrying");
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.update(&resp);
        Ok(resp)
    }

    fn update(&self, resp: &MetadataResponse) {
        let mut st = self.state();
        st.brokers = resp
            .brokers
            .iter()
            .map(|b| {
                let meta = BrokerMetadata {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (b.node_id.0, meta)
            })
            .collect();
        st.controller = Some(resp.controller_id.0).filter(|id| *id >= 0);
        st.cluster_id = resp.cluster_id.as_ref().map(|c| c.to_string());
        for t in &resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 {
                st.topics.remove(&name);
                continue;
            }
            st.topics
                .insert(name.clone(), Arc::new(topic_from_response(name, t)));
        }
    }

    /// Metadata of `topic`, loaded from the broker if not cached.
    ///
    /// Retries while the topic is unknown or has no leaders (it may be being created).
    pub async fn topic(&self, topic: &str, allow_auto_create: bool) -> Result<Arc<TopicMetadata>> {
        if let Some(t) = self.state().topics.get(topic) {
            return Ok(t.clone());
        }
        let mut attempt = 0;
        loop {
            let resp = self
                .fetch_metadata(Some(&[topic.to_string()]), allow_auto_create)
                .await?;
            let err = resp
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                .map(|t| t.error_code)
                .unwrap_or(codes::UNKNOWN_TOPIC_OR_PARTITION);
            if err == 0 {
                if let Some(t) = self.state().topics.get(topic) {
                    return Ok(t.clone());
                }
            }
            let retriable = matches!(
                err,
                codes::LEADER_NOT_AVAILABLE | codes::UNKNOWN_TOPIC_OR_PARTITION
            ) && (allow_auto_create || err == codes::LEADER_NOT_AVAILABLE);
            if !retriable || attempt >= self.config.metadata_retries {
                check(err, "Metadata", topic, None)?;
                return Err(Error::Kafka {
                    api: "Metadata",
                    resource: topic.to_string(),
                    code: codes::UNKNOWN_TOPIC_OR_PARTITION,
                    message: None,
                });
            }
            attempt += 1;
            tokio::time::sleep(self.config.retry_backoff).await;
        }
    }

    /// Cached metadata of `topic` without any network call.
    pub fn cached_topic(&self, topic: &str) -> Option<Arc<TopicMetadata>> {
        self.state().topics.get(topic).cloned()
    }

    /// Number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str, allow_auto_create: bool) -> Result<i32> {
        Ok(self.topic(topic, allow_auto_create).await?.partitions.len() as i32)
    }

    /// Forgets `topic` so the next lookup reloads it (after NOT_LEADER and similar).
    pub fn invalidate_topic(&self, topic: &str) {
        self.state().topics.remove(topic);
    }

    /// Broker id leading `topic`/`partition`.
    pub async fn leader_id(&self, topic: &str, partition: i32) -> Result<i32> {
        let meta = self.topic(topic, false).await?;
        let not_leader = |code| Error::Kafka {
            api: "Metadata",
            resource: format!("{topic}-{partition}"),
            code,
            message: None,
        };
        let p = meta
            .partition(partition)
            .ok_or_else(|| not_leader(codes::UNKNOWN_TOPIC_OR_PARTITION))?;
        if p.leader < 0 {
            self.invalidate_topic(topic);
            return Err(not_leader(codes::LEADER_NOT_AVAILABLE));
        }
        Ok(p.leader)
    }

    /// Connection to the leader of `topic`/`partition`.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Arc<Connection>> {
        let id = self.leader_id(topic, partition).await?;
        self.broker(id).await
    }

    /// Connection to the coordinator of consumer group `group` (cached).
    pub async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let cached = self.state().coordinators.get(group).copied();
        if let Some(id) = cached {
            if let Ok(c) = self.broker(id).await {
                return Ok(c);
            }
        }
        let mut attempt = 0;
        loop {
            match self.find_coordinator(group).await {
                Ok(id) => {
                    self.state().coordinators.insert(group.to_string(), id);
                    return self.broker(id).await;
                }
                Err(e) if e.is_retriable() && attempt < self.config.metadata_retries => {
                    attempt += 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forgets the coordinator of `group` (after NOT_COORDINATOR and similar).
    pub fn invalidate_coordinator(&self, group: &str) {
        self.state().coordinators.remove(group);
    }

    async fn find_coordinator(&self, group: &str) -> Result<i32> {
        let conn = self.any_broker().await?;
        let version = conn.version_for::<FindCoordinatorRequest>()?;
        let mut req = FindCoordinatorRequest::default();
        req.key_type = 0;
        if version >= 4 {
            req.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
        } else {
            req.key = StrBytes::from_string(group.to_string());
        }
        let resp = conn.send_versioned(&req, version, None).await?;
        let (code, msg, node, host, port) = if version >= 4 {
            let c = resp.coordinators.first().ok_or_else(|| {
                Error::protocol("reading FindCoordinator response", "no coordinator entry")
            })?;
            (
                c.error_code,
                c.error_message.clone(),
                c.node_id,
                c.host.clone(),
                c.port,
            )
        } else {
            (
                resp.error_code,
                resp.error_message.clone(),
                resp.node_id,
                resp.host.clone(),
                resp.port,
            )
        };
        check(code, "FindCoordinator", group, msg.as_ref())?;
        let BrokerId(id) = node;
        let mut st = self.state();
        st.brokers.entry(id).or_insert_with(|| BrokerMetadata {
            id,
            host: host.to_string(),
            port,
            rack: None,
        });
        Ok(id)
    }
}

fn topic_from_response(
    name: String,
    t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> TopicMetadata {
    let mut partitions: Vec<PartitionMetadata> = t
        .partitions
        .iter()
        .map(|p| PartitionMetadata {
            partition: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            error_code: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    TopicMetadata {
        name,
        is_internal: t.is_internal,
        partitions,
    }
}
