//! Cluster metadata as this node has applied it: brokers, topics (id,
//! partition count, replicas, configs), producer-id blocks and the cluster id,
//! persisted as `meta/topics.json` (written to a temp file, fsynced and
//! renamed, so a crash leaves the old or the new version).
//!
//! The metadata changes only by [`MetadataStore::apply`]ing the controller's
//! committed commands ([`crate::controller::Command`]), in log order, on every
//! node alike; the file records the next controller offset to apply, so a
//! command re-applied after a restart changes nothing.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

/// Producer ids are reserved this many at a time per node, so allocation
/// rarely goes through the controller.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// One topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// 128-bit topic id (non-zero).
    pub id: u128,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic configs set explicitly (others take node defaults).
    pub configs: BTreeMap<String, String>,
    /// Whether the topic is internal (`__consumer_offsets`).
    #[serde(default)]
    pub internal: bool,
    /// The replicas (node ids) of each partition, the preferred leader
    /// first. Empty in a file written before replication: every partition
    /// then lives on the one node (see [`TopicMeta::replicas_of`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<i32>>,
    /// Per partition, the offset DeleteRecords raised its log start to: every
    /// replica removes the records below it (up to its high watermark).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_start_floors: BTreeMap<i32, i64>,
}

impl TopicMeta {
    /// The replicas of `partition`; `local` for a topic written before
    /// replication (or a partition without an assignment).
    pub fn replicas_of(&self, partition: i32, local: i32) -> Vec<i32> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.replicas.get(p))
            .filter(|r| !r.is_empty())
            .cloned()
            .unwrap_or_else(|| vec![local])
    }

    /// The replication factor (1 for a topic written before replication).
    pub fn replication_factor(&self) -> usize {
        self.replicas.first().map_or(1, Vec::len)
    }
}

/// A broker as registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    /// Advertised Kafka host.
    pub host: String,
    /// Advertised Kafka port.
    pub port: i32,
    /// Its admin HTTP listener (host:port), where other nodes forward the
    /// requests it alone can answer; absent in metadata written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MetaFile {
    topics: BTreeMap<String, TopicMeta>,
    /// First producer id of no block yet (blocks go to nodes in order).
    producer_id_reserved: i64,
    /// The last block of producer ids given to each node.
    #[serde(default)]
    producer_blocks: BTreeMap<i32, i64>,
    /// Registered brokers.
    #[serde(default)]
    brokers: BTreeMap<i32, BrokerMeta>,
    /// The cluster id, once the controller recorded one.
    #[serde(default)]
    cluster_id: Option<String>,
    /// The next controller offset to apply.
    #[serde(default)]
    applied: i64,
    /// Stream jobs, by name.
    #[serde(default)]
    jobs: BTreeMap<String, crate::stream::job::JobDef>,
}

/// Why a topic operation failed; each maps to a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// TOPIC_ALREADY_EXISTS (36).
    #[error("topic {0} already exists")]
    Exists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    #[error("topic {0} does not exist")]
    Unknown(String),
    /// INVALID_TOPIC_EXCEPTION (17).
    #[error("invalid topic name {0:?}")]
    InvalidName(String),
    /// INVALID_TOPIC_EXCEPTION (17): the name differs from an existing
    /// topic's only by `.` against `_`, which collide in metric names (as
    /// Kafka refuses).
    #[error("topic {name:?} collides with existing topic {existing:?} ('.' and '_' collide)")]
    Collides {
        /// The name asked for.
        name: String,
        /// The existing topic's.
        existing: String,
    },
    /// INVALID_TOPIC_EXCEPTION (17): an internal topic no client may delete.
    #[error("topic {topic} cannot be deleted: {why}")]
    Kept {
        /// The topic.
        topic: String,
        /// Whose it is.
        why: String,
    },
    /// INVALID_PARTITIONS (37).
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    /// INVALID_PARTITIONS (37): the node would host more than `--max-partitions`.
    #[error("{asked} more partitions would exceed the node's limit of {max} (it hosts {hosted}; --max-partitions)")]
    TooManyPartitions {
        /// Partitions the request adds.
        asked: i64,
        /// Partitions hosted now.
        hosted: i64,
        /// The limit.
        max: i64,
    },
    /// KAFKA_STORAGE_ERROR (56): the metadata file could not be written.
    #[error("metadata write failed: {0}")]
    Io(String),
}

impl TopicError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::Exists(_) => 36,
            Self::Unknown(_) => 3,
            Self::InvalidName(_) | Self::Collides { .. } | Self::Kept { .. } => 17,
            Self::InvalidPartitions(_) | Self::TooManyPartitions { .. } => 37,
            Self::Io(_) => 56,
        }
    }
}

/// Checks a topic name as Kafka does: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The persisted metadata.
///
/// Readers take the current snapshot under `current`, held only to clone an
/// `Arc`; they never wait for a file write. Edits are serialized by `writer`,
/// which is held across the file write and fsync that make an edit durable,
/// after which the new snapshot is swapped in. Edits are blocking file work:
/// the request path calls them through [`crate::blocking::run`].
///
/// Lock order: `writer`, then `current`.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    current: RwLock<Arc<MetaFile>>,
    writer: Mutex<()>,
}

/// A random non-zero 128-bit id (topic ids).
pub fn random_id() -> u128 {
    let s = std::collections::hash_map::RandomState::new();
    let mut a = s.build_hasher();
    a.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut b = s.build_hasher();
    b.write_u64(a.finish());
    ((u128::from(a.finish()) << 64) | u128::from(b.finish())).max(1)
}

impl MetadataStore {
    /// Opens (or creates) the store under `data_dir/meta`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("meta");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("topics.json");
        let file: MetaFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetaFile::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            current: RwLock::new(Arc::new(file)),
            writer: Mutex::new(()),
        })
    }

    fn save(&self, file: &MetaFile) -> Result<(), TopicError> {
        let io = |e: std::io::Error| TopicError::Io(e.to_string());
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(file).map_err(|e| TopicError::Io(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    fn edit<T>(
        &self,
        f: impl FnOnce(&mut MetaFile) -> Result<T, TopicError>,
    ) -> Result<T, TopicError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut copy = MetaFile::clone(&self.snapshot());
        let out = f(&mut copy)?;
        self.save(&copy)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(copy);
        Ok(out)
    }

    /// The metadata as of the last completed edit.
    fn snapshot(&self) -> Arc<MetaFile> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// All topics.
    pub fn topics(&self) -> BTreeMap<String, TopicMeta> {
        self.snapshot().topics.clone()
    }

    /// Partitions of every topic together.
    pub fn total_partitions(&self) -> i64 {
        self.snapshot()
            .topics
            .values()
            .map(|t| i64::from(t.partitions))
            .sum()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.snapshot().topics.get(name).cloned()
    }

    /// An existing topic whose name equals `name` once every `.` is read
    /// as `_` (but is not `name` itself).
    pub fn colliding_with(&self, name: &str) -> Option<String> {
        let folded = |n: &str| n.replace('.', "_");
        let want = folded(name);
        self.snapshot()
            .topics
            .keys()
            .find(|n| n.as_str() != name && folded(n) == want)
            .cloned()
    }

    /// The name of the topic whose id is `id` (topic ids of Metadata v10+
    /// and DeleteTopics v6).
    pub fn name_of_id(&self, id: u128) -> Option<String> {
        self.snapshot()
            .topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.clone())
    }

    /// The `min.insync.replicas` of topic `name` (1 when unset or unknown).
    pub fn min_insync_replicas(&self, name: &str) -> usize {
        self.snapshot()
            .topics
            .get(name)
            .and_then(|t| t.configs.get("min.insync.replicas"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1)
    }

    /// Stream jobs, by name.
    pub fn jobs(&self) -> BTreeMap<String, crate::stream::job::JobDef> {
        self.snapshot().jobs.clone()
    }

    /// Whether stream job `name` exists.
    pub fn has_job(&self, name: &str) -> bool {
        self.snapshot().jobs.contains_key(name)
    }

    /// Registered brokers.
    pub fn brokers(&self) -> BTreeMap<i32, BrokerMeta> {
        self.snapshot().brokers.clone()
    }

    /// The cluster id the controller recorded, if any yet.
    pub fn cluster_id(&self) -> Option<String> {
        self.snapshot().cluster_id.clone()
    }

    /// The next controller offset to apply.
    pub fn applied(&self) -> i64 {
        self.snapshot().applied
    }

    /// The last block of producer ids given to `node`.
    pub fn producer_block(&self, node: i32) -> Option<i64> {
        self.snapshot().producer_blocks.get(&node).copied()
    }

    /// Whether `id` may have been handed out by some node: below the first id
    /// of no block yet.
    pub fn producer_id_allocated(&self, id: i64) -> bool {
        (0..self.snapshot().producer_id_reserved).contains(&id)
    }

    /// Assigns replicas to topics of a file written before replication (each
    /// partition on `node`, the only node there was). A local fix-up at
    /// open, before any command is applied.
    pub fn adopt_unassigned(&self, node: i32) -> Result<(), TopicError> {
        if self
            .snapshot()
            .topics
            .values()
            .all(|t| t.replicas.len() == usize::try_from(t.partitions).unwrap_or(0))
        {
            return Ok(());
        }
        self.edit(|f| {
            for t in f.topics.values_mut() {
                let n = usize::try_from(t.partitions).unwrap_or(0);
                while t.replicas.len() < n {
                    t.replicas.push(vec![node]);
                }
            }
            Ok(())
        })
    }

    /// Applies the controller command at `offset` (durable on return). A
    /// command at an offset already applied changes nothing; a command that
    /// no longer fits (a topic created twice, deleted before) changes nothing
    /// either: its proposer sees the outcome in the metadata.
    pub fn apply(&self, offset: i64, cmd: &crate::controller::Command) -> Result<(), TopicError> {
        use crate::controller::Command;
        if offset < self.snapshot().applied {
            return Ok(());
        }
        self.edit(|f| {
            f.applied = offset + 1;
            match cmd {
                Command::RegisterBroker {
                    node,
                    host,
                    port,
                    admin,
                } => {
                    f.brokers.insert(
                        *node,
                        BrokerMeta {
                            host: host.clone(),
                            port: *port,
                            admin: admin.clone(),
                        },
                    );
                }
                Command::SetClusterId { id } => {
                    if f.cluster_id.is_none() {
                        f.cluster_id = Some(id.clone());
                    }
                }
                Command::CreateTopic { name, topic } => {
                    if !f.topics.contains_key(name) && valid_topic_name(name) {
                        f.topics.insert(name.clone(), topic.clone());
                    }
                }
                Command::DeleteTopic { name, id } => {
                    if f.topics.get(name).is_some_and(|t| t.id == *id) {
                        f.topics.remove(name);
                    }
                }
                Command::AddPartitions {
                    name,
                    id,
                    from,
                    replicas,
                } => {
                    if let Some(t) = f.topics.get_mut(name) {
                        if t.id == *id && t.partitions == *from {
                            let n = usize::try_from(t.partitions).unwrap_or(0);
                            let local = t.replicas_of(0, 0);
                            while t.replicas.len() < n {
                                t.replicas.push(local.clone());
                            }
                            t.replicas.extend(replicas.iter().cloned());
                            t.partitions = from + i32::try_from(replicas.len()).unwrap_or(0);
                        }
                    }
                }
                Command::SetConfigs { name, id, configs } => {
                    if let Some(t) = f.topics.get_mut(name) {
                        if t.id == *id {
                            t.configs = configs.clone();
                        }
                    }
                }
                Command::DeleteRecords {
                    name,
                    id,
                    partition,
                    offset,
                } => {
                    if let Some(t) = f.topics.get_mut(name) {
                        if t.id == *id && (0..t.partitions).contains(partition) {
                            let floor = t.log_start_floors.entry(*partition).or_insert(0);
                            *floor = (*floor).max(*offset);
                        }
                    }
                }
                Command::CreateJob { def } => {
                    f.jobs
                        .entry(def.name.clone())
                        .or_insert_with(|| def.clone());
                }
                Command::DropJob { name } => {
                    f.jobs.remove(name);
                }
                Command::AllocateProducerIds { node } => {
                    let start = f.producer_id_reserved;
                    f.producer_id_reserved = start.saturating_add(PRODUCER_ID_BLOCK);
                    f.producer_blocks.insert(*node, start);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Command;

    fn topic(id: u128, partitions: i32) -> TopicMeta {
        TopicMeta {
            id,
            partitions,
            configs: BTreeMap::new(),
            internal: false,
            replicas: (0..partitions).map(|p| vec![p % 3, (p + 1) % 3]).collect(),
            log_start_floors: BTreeMap::new(),
        }
    }

    fn create(name: &str, t: TopicMeta) -> Command {
        Command::CreateTopic {
            name: name.into(),
            topic: t,
        }
    }

    /// Commands apply in order, once: a command at an offset already applied
    /// (re-applied after a restart) changes nothing, and the state survives a
    /// reopen.
    #[test]
    fn commands_apply_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = MetadataStore::open(dir.path()).unwrap();
            s.apply(0, &create("orders", topic(7, 3))).unwrap();
            // The same name again (another proposer lost the race): no change.
            s.apply(1, &create("orders", topic(8, 5))).unwrap();
            s.apply(2, &Command::AllocateProducerIds { node: 2 })
                .unwrap();
            s.apply(3, &Command::AllocateProducerIds { node: 1 })
                .unwrap();
            assert_eq!(s.applied(), 4);
        }
        let s = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(s.topic("orders").unwrap().id, 7);
        assert_eq!(s.topic("orders").unwrap().replicas_of(1, 9), vec![1, 2]);
        assert_eq!(s.producer_block(2), Some(0));
        assert_eq!(s.producer_block(1), Some(PRODUCER_ID_BLOCK));
        // Re-applied after the restart: nothing moves.
        s.apply(3, &Command::AllocateProducerIds { node: 1 })
            .unwrap();
        assert_eq!(s.producer_block(1), Some(PRODUCER_ID_BLOCK));
        assert!(s.producer_id_allocated(2 * PRODUCER_ID_BLOCK - 1));
        assert!(!s.producer_id_allocated(2 * PRODUCER_ID_BLOCK));
    }

    /// Deleting, growing or reconfiguring a topic names its id: a command
    /// about a topic that was deleted and created again under the same name
    /// changes nothing.
    #[test]
    fn commands_about_an_older_topic_of_the_same_name_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::open(dir.path()).unwrap();
        s.apply(0, &create("t", topic(1, 1))).unwrap();
        s.apply(
            1,
            &Command::DeleteTopic {
                name: "t".into(),
                id: 1,
            },
        )
        .unwrap();
        s.apply(2, &create("t", topic(2, 1))).unwrap();
        s.apply(
            3,
            &Command::DeleteTopic {
                name: "t".into(),
                id: 1,
            },
        )
        .unwrap();
        let grow = |id| Command::AddPartitions {
            name: "t".into(),
            id,
            from: 1,
            replicas: vec![vec![0], vec![1]],
        };
        s.apply(4, &grow(1)).unwrap();
        assert_eq!(s.topic("t").unwrap().partitions, 1);
        s.apply(5, &grow(2)).unwrap();
        let t = s.topic("t").unwrap();
        assert_eq!((t.id, t.partitions), (2, 3));
        assert_eq!(t.replicas_of(2, 9), vec![1]);
    }

    /// A file written before replication gets every partition on the node.
    #[test]
    fn topics_without_replicas_are_adopted_by_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::open(dir.path()).unwrap();
        let mut t = topic(1, 2);
        t.replicas.clear();
        s.apply(0, &create("old", t)).unwrap();
        s.adopt_unassigned(4).unwrap();
        let t = MetadataStore::open(dir.path())
            .unwrap()
            .topic("old")
            .unwrap();
        assert_eq!(t.replicas, vec![vec![4], vec![4]]);
    }

    /// A reader is answered while an edit is in progress (the edit's file write
    /// and fsync happen under the writer lock only), and sees the edit once it
    /// completes.
    #[test]
    fn readers_do_not_wait_for_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::open(dir.path()).unwrap();
        s.apply(0, &create("a", topic(1, 1))).unwrap();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let s = &s;
            let editor = scope.spawn(move || {
                s.edit(|f| {
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    f.topics.remove("a");
                    Ok(())
                })
            });
            entered_rx.recv().unwrap();
            // The edit holds the writer lock now; reads go on.
            assert!(s.topic("a").is_some());
            assert_eq!(s.topics().len(), 1);
            release_tx.send(()).unwrap();
            editor.join().unwrap().unwrap();
        });
        assert!(s.topic("a").is_none());
    }
}
