//! All partition logs of a node: opened together at start, created and deleted
//! as topics come and go.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::LogConfig;
use crate::error::{io_err, Result};
use crate::log::Log;
use crate::recovery::RecoveryReport;

/// A topic name and partition number; its directory is `<topic>-<partition>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// Makes a topic-partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// Parses a directory name `<topic>-<partition>`.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, p) = name.rsplit_once('-')?;
        let partition = p.parse().ok().filter(|p: &i32| *p >= 0)?;
        (!topic.is_empty()).then(|| Self::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// How one partition came up.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    /// The partition.
    pub partition: TopicPartition,
    /// What recovery found and did.
    pub recovery: RecoveryReport,
}

/// The logs of one node, under one root directory.
#[derive(Debug)]
pub struct LogManager {
    root: PathBuf,
    // Held only to look up or insert an `Arc<Log>`; never across I/O on a log.
    logs: RwLock<HashMap<TopicPartition, Arc<Log>>>,
}

impl LogManager {
    /// Opens every partition directory under `root`, `threads` at a time, each with
    /// the settings `config_for` gives it. Directories left by an unfinished delete
    /// are removed.
    pub fn open(
        root: &Path,
        threads: usize,
        config_for: impl Fn(&TopicPartition) -> LogConfig + Sync,
    ) -> Result<(Self, Vec<PartitionReport>)> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        let mut todo = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io_err(root))? {
            let entry = entry.map_err(io_err(root))?;
            if !entry.file_type().map_err(io_err(entry.path()))?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".delete") {
                std::fs::remove_dir_all(entry.path()).map_err(io_err(entry.path()))?;
            } else if let Some(tp) = TopicPartition::from_dir_name(&name) {
                todo.push(tp);
            } else {
                tracing::warn!(dir = %entry.path().display(), "ignoring directory that is not <topic>-<partition>");
            }
        }
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, todo.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(tp) = todo.get(i) else { break };
                    let r = Log::open(&root.join(tp.to_string()), &tp.to_string(), config_for(tp));
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((tp.clone(), r));
                });
            }
        });
        let mut logs = HashMap::new();
        let mut reports = Vec::new();
        for (tp, r) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let (log, recovery) = r?;
            reports.push(PartitionReport {
                partition: tp.clone(),
                recovery,
            });
            logs.insert(tp, Arc::new(log));
        }
        reports.sort_by(|a, b| a.partition.cmp(&b.partition));
        let mgr = Self {
            root: root.to_path_buf(),
            logs: RwLock::new(logs),
        };
        Ok((mgr, reports))
    }

    /// The log of a partition, if it exists.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        self.logs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .cloned()
    }

    /// Creates the log of a partition, or returns the existing one.
    pub fn create(&self, tp: &TopicPartition, cfg: LogConfig) -> Result<Arc<Log>> {
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        let (log, _) = Log::open(&self.root.join(tp.to_string()), &tp.to_string(), cfg)?;
        let log = Arc::new(log);
        let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
        Ok(logs.entry(tp.clone()).or_insert(log).clone())
    }

    /// Deletes a partition's log and its directory.
    pub fn delete(&self, tp: &TopicPartition) -> Result<()> {
        self.delete_many(std::slice::from_ref(tp))
    }

    /// Deletes the logs of `tps` and their directories (blocking file work).
    ///
    /// Each log is closed without a flush (its data is going), its directory
    /// renamed to `*.delete` — durable with one sync of the root for all of them,
    /// after which a crash cannot bring the partitions back — then removed.
    /// Stops at the first error; partitions not found are skipped.
    pub fn delete_many(&self, tps: &[TopicPartition]) -> Result<()> {
        let logs: Vec<(TopicPartition, Arc<Log>)> = {
            let mut map = self.logs.write().unwrap_or_else(|p| p.into_inner());
            tps.iter()
                .filter_map(|tp| map.remove(tp).map(|log| (tp.clone(), log)))
                .collect()
        };
        let mut doomed = Vec::with_capacity(logs.len());
        for (tp, log) in logs {
            log.abandon();
            let dir = self.root.join(tp.to_string());
            let to = self
                .root
                .join(format!("{tp}.{}.delete", std::process::id()));
            std::fs::rename(&dir, &to).map_err(io_err(&dir))?;
            doomed.push(to);
        }
        if doomed.is_empty() {
            return Ok(());
        }
        crate::checkpoint::sync_dir(&self.root)?;
        for d in doomed {
            std::fs::remove_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(())
    }

    /// Every partition with a log, sorted.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = self
            .logs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Every log, for periodic work (retention, compaction, flushing).
    pub fn logs(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        self.logs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Closes every log cleanly (flush, recovery point, clean-shutdown marker).
    pub fn close_all(&self) -> Result<()> {
        let mut first_err = None;
        for (tp, log) in self.logs() {
            if let Err(e) = log.close() {
                tracing::error!(partition = %tp, error = %e, "close failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
