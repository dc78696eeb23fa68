//! The controller: a Raft group of every node (group 0) whose log holds the
//! cluster's metadata commands (register a broker, create or delete a topic,
//! producer-id blocks, the cluster id).
//!
//! Its log is a partition log like any other (`controller/__cluster_metadata-0`
//! in the data directory, as KRaft's), one JSON command per record. Any node
//! proposes: a follower forwards to the leader over the Raft transport
//! ([`weir_raft::group::PartitionGroup::propose_anywhere`]). Every node
//! applies the committed commands in log order to its [`MetadataStore`], so
//! each decision is made once, by the proposer (topic ids, replica
//! assignments), and the apply is deterministic. A proposer learns the outcome
//! of its command from the metadata once its own node has applied it.
//!
//! A node without peers runs the controller as a one-voter group: the same
//! path, no network.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use weir_raft::group::{GroupHooks, GroupSettings, Leadership, PartitionGroup, ProposeError};
use weir_storage::{Log, LogConfig};

use crate::metadata::{MetadataStore, TopicMeta};

/// The Raft group id of the controller.
pub const GROUP_ID: u64 = 0;

/// How long a command may take to be committed and applied here.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A change of the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// A node announces its advertised Kafka listener.
    RegisterBroker {
        /// Its node id.
        node: i32,
        /// Advertised host.
        host: String,
        /// Advertised port.
        port: i32,
        /// Its admin HTTP listener (host:port), when it registered one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin: Option<String>,
    },
    /// Records the cluster id (the first one applied wins).
    SetClusterId {
        /// The id.
        id: String,
    },
    /// Creates a topic unless the name is taken.
    CreateTopic {
        /// Its name.
        name: String,
        /// Its metadata (id and replicas chosen by the proposer).
        topic: TopicMeta,
    },
    /// Deletes the topic `name` if its id is `id`.
    DeleteTopic {
        /// Its name.
        name: String,
        /// Its id.
        id: u128,
    },
    /// Adds partitions with `replicas` to topic `name` (id `id`) if it has
    /// `from` partitions.
    AddPartitions {
        /// Its name.
        name: String,
        /// Its id.
        id: u128,
        /// The partition count the proposer saw.
        from: i32,
        /// The replicas of each new partition.
        replicas: Vec<Vec<i32>>,
    },
    /// Replaces the explicit configs of topic `name` (id `id`).
    SetConfigs {
        /// Its name.
        name: String,
        /// Its id.
        id: u128,
        /// The configs.
        configs: BTreeMap<String, String>,
    },
    /// Raises the log start of partition `partition` of topic `name` (id
    /// `id`) to `offset` on every replica (DeleteRecords).
    DeleteRecords {
        /// Its name.
        name: String,
        /// Its id.
        id: u128,
        /// The partition.
        partition: i32,
        /// The new log start (never lowered).
        offset: i64,
    },
    /// Gives `node` the next block of producer ids.
    AllocateProducerIds {
        /// The node.
        node: i32,
    },
    /// Defines a stream job unless its name is taken.
    CreateJob {
        /// The job.
        def: crate::stream::job::JobDef,
    },
    /// Drops the stream job `name`.
    DropJob {
        /// Its name.
        name: String,
    },
}

/// Why a command did not take effect.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControllerError {
    /// No controller leader could be reached in time (NOT_CONTROLLER,
    /// retriable).
    #[error("no controller leader: {0}")]
    NoLeader(String),
    /// The command was committed but this node did not apply it in time
    /// (REQUEST_TIMED_OUT).
    #[error("the command was not applied here within {0:?}")]
    NotApplied(Duration),
    /// The controller stopped (node shutting down, or its log failed).
    #[error("the controller stopped: {0}")]
    Stopped(String),
}

impl ControllerError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        use crate::error_code::code;
        match self {
            Self::NoLeader(_) => code::NOT_CONTROLLER,
            Self::NotApplied(_) => code::REQUEST_TIMED_OUT,
            Self::Stopped(_) => code::KAFKA_STORAGE_ERROR,
        }
    }
}

/// The controller group on this node.
#[derive(Debug)]
pub struct Controller {
    group: PartitionGroup,
    /// Its log, closed (with a clean-shutdown marker) after the group stops.
    log: Arc<Log>,
    applied: watch::Receiver<i64>,
    changed: Arc<Notify>,
}

/// Applies committed commands to the metadata.
#[derive(Debug)]
struct Hooks {
    meta: Arc<MetadataStore>,
    applied: watch::Sender<i64>,
    changed: Arc<Notify>,
    limit: usize,
}

impl GroupHooks for Hooks {
    fn committed(&self, batch: &[u8], base_offset: i64, last_offset: i64) {
        match weir_storage::record::decode_records(&Bytes::copy_from_slice(batch), self.limit) {
            Ok(records) => {
                for (i, r) in records.iter().enumerate() {
                    let offset = base_offset + i as i64;
                    let Some(value) = &r.value else { continue };
                    match serde_json::from_slice::<Command>(value) {
                        Ok(cmd) => {
                            if let Err(e) = self.meta.apply(offset, &cmd) {
                                tracing::error!(offset, error = %e, "applying a controller command failed");
                            }
                        }
                        Err(e) => {
                            tracing::error!(offset, error = %e, "a controller record is not a command");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(base_offset, error = %e, "a controller batch does not decode")
            }
        }
        self.applied.send_replace(last_offset + 1);
        self.changed.notify_one();
    }

    fn leadership(&self, _view: Leadership) {}

    fn failed(&self, why: &str) {
        tracing::error!(error = why, "the controller's raft stopped; restarting it");
    }
}

/// Where the controller's peers are.
#[derive(Debug)]
pub enum Voters<'a> {
    /// This node alone.
    Alone,
    /// Every node of `--peers` (node id → Raft address), over `transport`.
    Peers(&'a BTreeMap<i32, String>, &'a weir_raft::Transport),
}

impl Controller {
    /// Opens the controller's log under `data_dir/controller` and starts its
    /// group. Committed commands are applied to `meta` from now on.
    pub async fn open(
        data_dir: &std::path::Path,
        node: u64,
        voters: Voters<'_>,
        meta: Arc<MetadataStore>,
        settings: GroupSettings,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("controller").join("__cluster_metadata-0");
        let config = LogConfig {
            // Kept whole: the log is the metadata's history (a snapshot of
            // the metadata file will let it be trimmed later).
            retention_ms: None,
            segment_bytes: 64 << 20,
            ..LogConfig::default()
        };
        let log = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || Log::open(&dir, "__cluster_metadata-0", config))
                .await??
                .0
        };
        let log = Arc::new(log);
        let changed = Arc::new(Notify::new());
        let (applied_tx, applied) = watch::channel(meta.applied());
        let limit = weir_storage::record::decompress_limit(log.config().max_message_bytes);
        let hooks: Arc<dyn GroupHooks> = Arc::new(Hooks {
            meta,
            applied: applied_tx,
            changed: Arc::clone(&changed),
            limit,
        });
        let group = match voters {
            Voters::Alone => {
                PartitionGroup::open_local(node, GROUP_ID, Arc::clone(&log), hooks, settings)
                    .await?
            }
            Voters::Peers(peers, transport) => {
                // Addresses come from each node's own --peers (see
                // `Cluster::voters`).
                let voters: Vec<(u64, String)> = peers
                    .keys()
                    .map(|id| (u64::try_from(*id).unwrap_or(0), String::new()))
                    .collect();
                PartitionGroup::open_replicated(
                    node,
                    GROUP_ID,
                    Arc::clone(&log),
                    &voters,
                    hooks,
                    transport,
                    settings,
                )
                .await?
            }
        };
        Ok(Self {
            group,
            log,
            applied,
            changed,
        })
    }

    /// The controller group's periodic step (`down`: the nodes this one
    /// cannot reach): a controller that reaches no quorum stops holding the
    /// others back (see [`PartitionGroup::tend`]).
    pub async fn tend(&self, down: &[u64]) {
        self.group.tend(None, down).await;
    }

    /// Commits `cmds` (in order, one batch) through the controller leader and
    /// waits until this node has applied them.
    pub async fn submit(&self, cmds: &[Command]) -> Result<(), ControllerError> {
        self.submit_within(cmds, COMMAND_TIMEOUT).await
    }

    /// [`Controller::submit`], given up after `timeout` (for requests whose
    /// clients wait less than [`COMMAND_TIMEOUT`] for an answer).
    pub async fn submit_within(
        &self,
        cmds: &[Command],
        timeout: Duration,
    ) -> Result<(), ControllerError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let records: Vec<_> = cmds
            .iter()
            .map(|c| {
                let v = serde_json::to_vec(c).expect("commands serialize");
                (None, Some(v), now)
            })
            .collect();
        let batch = Bytes::from(weir_storage::record::build_batch(&records));
        let offsets = self
            .group
            .propose_anywhere(batch, timeout)
            .await
            .map_err(|e| match e {
                ProposeError::Stopped(why) => ControllerError::Stopped(why),
                other => ControllerError::NoLeader(other.to_string()),
            })?;
        let mut applied = self.applied.clone();
        tokio::time::timeout(timeout, applied.wait_for(|a| *a > offsets.last_offset))
            .await
            .map_err(|_| ControllerError::NotApplied(timeout))?
            .map_err(|_| ControllerError::Stopped("the controller was shut down".into()))?;
        Ok(())
    }

    /// [`Controller::submit`] from a blocking thread (not a runtime worker).
    pub fn submit_blocking(&self, cmds: &[Command]) -> Result<(), ControllerError> {
        tokio::runtime::Handle::current().block_on(self.submit(cmds))
    }

    /// [`Controller::submit_within`] from a blocking thread.
    pub fn submit_blocking_within(
        &self,
        cmds: &[Command],
        timeout: Duration,
    ) -> Result<(), ControllerError> {
        tokio::runtime::Handle::current().block_on(self.submit_within(cmds, timeout))
    }

    /// The controller leader, when known.
    pub fn leader(&self) -> Option<i32> {
        self.group
            .leadership()
            .borrow()
            .leader
            .and_then(|l| i32::try_from(l).ok())
    }

    /// Whether this node leads the controller.
    pub fn is_leader(&self) -> bool {
        self.group.leadership().borrow().is_leader
    }

    /// Notified when a command was applied or the leadership changed.
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// Stops the group and closes its log.
    pub async fn shutdown(&self) {
        self.group.stop().await;
        if let Err(e) = self.log.close() {
            tracing::warn!(error = %e, "closing the controller's log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commands survive their JSON record form, 128-bit topic ids included.
    #[test]
    fn commands_round_trip_through_json() {
        let cmds = [
            Command::CreateTopic {
                name: "t".into(),
                topic: TopicMeta {
                    id: u128::MAX - 7,
                    partitions: 2,
                    configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
                    internal: false,
                    replicas: vec![vec![1, 2], vec![2, 3]],
                    log_start_floors: BTreeMap::from([(1, 42)]),
                },
            },
            Command::DeleteRecords {
                name: "t".into(),
                id: 9,
                partition: 1,
                offset: 77,
            },
            Command::DeleteTopic {
                name: "t".into(),
                id: u128::MAX,
            },
            Command::AllocateProducerIds { node: 3 },
        ];
        for c in cmds {
            let json = serde_json::to_vec(&c).unwrap();
            assert_eq!(serde_json::from_slice::<Command>(&json).unwrap(), c);
        }
    }
}
