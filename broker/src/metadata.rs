//! Cluster metadata of a node: topics (id, partition count, configs) and the
//! producer-id allocator, persisted as `meta/topics.json` (written to a temp
//! file, fsynced and renamed, so a crash leaves the old or the new version).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

/// Producer ids are reserved this many at a time, so allocation rarely writes.
const PRODUCER_ID_BLOCK: i64 = 1000;

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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MetaFile {
    topics: BTreeMap<String, TopicMeta>,
    /// First producer id not yet reserved on disk.
    producer_id_reserved: i64,
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
            Self::InvalidName(_) => 17,
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

/// The producer-id allocator: ids in `next..reserved` are persisted as reserved
/// and not yet handed out.
#[derive(Debug)]
struct ProducerIds {
    next: i64,
    reserved: i64,
}

/// The persisted metadata.
///
/// Readers take the current snapshot under `current`, held only to clone an
/// `Arc`; they never wait for a file write. Edits are serialized by `writer`,
/// which is held across the file write and fsync that make an edit durable,
/// after which the new snapshot is swapped in. Edits are blocking file work:
/// the request path calls them through [`crate::blocking::run`].
///
/// Lock order: `producer_ids`, then `writer`, then `current`. The allocator
/// lock is held across a block reservation (an `edit`, which persists), so that
/// no id is handed out unless a persisted reservation covers it and no two
/// callers get the same one.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    current: RwLock<Arc<MetaFile>>,
    writer: Mutex<()>,
    producer_ids: Mutex<ProducerIds>,
}

fn random_id() -> u128 {
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
        // Ids below the persisted mark may have been handed out before a
        // restart: start after it.
        let next = file.producer_id_reserved;
        Ok(Self {
            path,
            current: RwLock::new(Arc::new(file)),
            writer: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIds {
                next,
                reserved: next,
            }),
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

    /// Creates a topic; durable on return.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<TopicMeta, TopicError> {
        if !valid_topic_name(name) {
            return Err(TopicError::InvalidName(name.into()));
        }
        if !(1..=100_000).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions));
        }
        self.edit(|f| {
            if f.topics.contains_key(name) {
                return Err(TopicError::Exists(name.into()));
            }
            let meta = TopicMeta {
                id: random_id(),
                partitions,
                configs,
                internal,
            };
            f.topics.insert(name.into(), meta.clone());
            Ok(meta)
        })
    }

    /// Deletes a topic; durable on return.
    pub fn delete(&self, name: &str) -> Result<TopicMeta, TopicError> {
        self.edit(|f| {
            f.topics
                .remove(name)
                .ok_or_else(|| TopicError::Unknown(name.into()))
        })
    }

    /// Replaces a topic's explicit configs; durable on return.
    pub fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        self.edit(|f| {
            let t = f
                .topics
                .get_mut(name)
                .ok_or_else(|| TopicError::Unknown(name.into()))?;
            t.configs = configs;
            Ok(())
        })
    }

    /// Raises a topic's partition count; durable on return.
    pub fn set_partitions(&self, name: &str, count: i32) -> Result<TopicMeta, TopicError> {
        self.edit(|f| {
            let t = f
                .topics
                .get_mut(name)
                .ok_or_else(|| TopicError::Unknown(name.into()))?;
            if count <= t.partitions || count > 100_000 {
                return Err(TopicError::InvalidPartitions(count));
            }
            t.partitions = count;
            Ok(t.clone())
        })
    }

    /// A producer id never handed out before, across restarts.
    pub fn next_producer_id(&self) -> Result<i64, TopicError> {
        // Held across the reservation below (lock order: before `inner`), so
        // concurrent callers wait for the new block instead of racing it.
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.next >= ids.reserved {
            let reserved = self.edit(|f| {
                // The on-disk mark only moves here, under the allocator lock.
                debug_assert_eq!(f.producer_id_reserved, ids.reserved);
                f.producer_id_reserved = f
                    .producer_id_reserved
                    .checked_add(PRODUCER_ID_BLOCK)
                    .ok_or_else(|| TopicError::Io("producer ids exhausted".into()))?;
                Ok(f.producer_id_reserved)
            })?;
            ids.reserved = reserved;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Whether `id` may have been handed out by this node (in this run or an
    /// earlier one): `0 <= id <` the first id not yet handed out.
    pub fn producer_id_allocated(&self, id: i64) -> bool {
        let ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        (0..ids.next).contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_producer_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<i64> = {
            let s = MetadataStore::open(dir.path()).unwrap();
            s.create("orders", 3, BTreeMap::new(), false).unwrap();
            assert_eq!(
                s.create("orders", 3, BTreeMap::new(), false)
                    .unwrap_err()
                    .code(),
                36
            );
            assert_eq!(
                s.create("bad name", 1, BTreeMap::new(), false)
                    .unwrap_err()
                    .code(),
                17
            );
            (0..3).map(|_| s.next_producer_id().unwrap()).collect()
        };
        let s = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(s.topic("orders").unwrap().partitions, 3);
        let next = s.next_producer_id().unwrap();
        assert!(ids.iter().all(|i| *i < next), "{ids:?} then {next}");
    }

    /// A reader is answered while an edit is in progress (the edit's file write
    /// and fsync happen under the writer lock only), and sees the edit once it
    /// completes.
    #[test]
    fn readers_do_not_wait_for_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::open(dir.path()).unwrap();
        s.create("a", 1, BTreeMap::new(), false).unwrap();
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

    /// Many threads allocate on freshly reopened stores, across several block
    /// boundaries: every id must be handed out once, including across the reopens.
    #[test]
    fn concurrent_producer_ids_are_unique_across_blocks_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let threads = 8;
        let per_thread = 300; // 2400 ids per round: three block reservations
        let mut all = std::collections::HashSet::new();
        for round in 0..3 {
            let s = MetadataStore::open(dir.path()).unwrap();
            let barrier = std::sync::Barrier::new(threads);
            let ids: Vec<i64> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            (0..per_thread)
                                .map(|_| s.next_producer_id().unwrap())
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect()
            });
            assert_eq!(ids.len(), threads * per_thread);
            for id in ids {
                assert!(id >= 0, "negative id {id}");
                assert!(all.insert(id), "id {id} handed out twice (round {round})");
            }
        }
    }
}
