//! Cluster metadata of a node: topics (id, partition count, configs) and the
//! producer-id allocator, persisted as `meta/topics.json` (written to a temp
//! file, fsynced and renamed, so a crash leaves the old or the new version).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

#[derive(Debug, Default, Serialize, Deserialize)]
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
            Self::InvalidPartitions(_) => 37,
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

/// The persisted metadata, behind a std mutex held only for in-memory edits and
/// the small file write that makes each edit durable.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    inner: Mutex<(MetaFile, i64)>,
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
        let next = file.producer_id_reserved;
        Ok(Self {
            path,
            inner: Mutex::new((file, next)),
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
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut copy = MetaFile {
            topics: guard.0.topics.clone(),
            producer_id_reserved: guard.0.producer_id_reserved,
        };
        let out = f(&mut copy)?;
        self.save(&copy)?;
        guard.0 = copy;
        Ok(out)
    }

    /// All topics.
    pub fn topics(&self) -> BTreeMap<String, TopicMeta> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .topics
            .clone()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .topics
            .get(name)
            .cloned()
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
        {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if g.1 < g.0.producer_id_reserved {
                g.1 += 1;
                return Ok(g.1 - 1);
            }
        }
        let start = self.edit(|f| {
            let start = f.producer_id_reserved;
            f.producer_id_reserved += PRODUCER_ID_BLOCK;
            Ok(start)
        })?;
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1 = start + 1;
        Ok(start)
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
}
