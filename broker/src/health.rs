//! Readiness as `/v1/health` reports it: the partition logs are loaded, the
//! Kafka listener is accepting, the data directory takes a write, and every
//! partition the node hosts has a leader (its Raft group runs and has elected
//! one; a group stopped by a storage error has none until it restarts).
//!
//! The admin listener answers from the moment the process binds it, before
//! recovery has loaded the logs, so an orchestrator can tell "starting" (503,
//! `logs_loaded: false`) from "serving" (200) and from "disk full or failing"
//! (503, `disk_writable: false`, with the error).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::broker::Broker;

/// What the health endpoint looks at.
#[derive(Debug)]
pub struct Health {
    node_id: i32,
    data_dir: PathBuf,
    broker: OnceLock<Arc<Broker>>,
    listening: AtomicBool,
}

/// One answer of the health endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every check passed.
    pub ready: bool,
    /// The JSON body.
    pub body: String,
}

impl Health {
    /// Health of a node whose logs are not loaded yet.
    pub fn new(node_id: i32, data_dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            data_dir,
            broker: OnceLock::new(),
            listening: AtomicBool::new(false),
        })
    }

    /// Records that the node's logs are loaded.
    pub fn loaded(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// The node, once its logs are loaded.
    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.get()
    }

    /// Records whether the Kafka listener is accepting connections.
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
    }

    /// Runs the checks (the disk probe on the blocking pool).
    pub async fn check(&self) -> Report {
        let loaded = self.broker.get();
        let listening = self.listening.load(Ordering::Relaxed);
        let dir = self.data_dir.clone();
        let disk = crate::blocking::run(move || probe_disk(&dir)).await;
        let leaderless = loaded.map_or_else(Vec::new, |b| b.leaderless_partitions());
        let ready = loaded.is_some() && listening && disk.is_ok() && leaderless.is_empty();
        let body = serde_json::json!({
            "status": if ready { "ok" } else { "unavailable" },
            "node_id": self.node_id,
            "checks": {
                "logs_loaded": loaded.is_some(),
                "listener": listening,
                "disk_writable": disk.is_ok(),
                "partitions_led": loaded.is_some() && leaderless.is_empty(),
            },
            "partitions": loaded.map(|b| b.partition_count()),
            "leaderless": leaderless.iter().take(20).collect::<Vec<_>>(),
            "leaderless_count": leaderless.len(),
            "error": disk.err(),
        });
        Report {
            ready,
            body: format!("{body}\n"),
        }
    }
}

/// Writes, syncs and removes a small new file in `dir`: a full disk (no block
/// for a new file) or a failing one (EIO on sync) makes it fail.
fn probe_disk(dir: &Path) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join(format!(".health-probe-{}", std::process::id()));
    let result = std::fs::File::create(&path)
        .and_then(|mut f| {
            f.write_all(b"weir health probe\n")?;
            f.sync_data()
        })
        .map_err(|e| format!("data directory {} not writable: {e}", dir.display()));
    let _ = std::fs::remove_file(&path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_ready_until_loaded_and_listening_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let h = Health::new(3, dir.path().to_path_buf());
        let r = h.check().await;
        assert!(!r.ready);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "unavailable");
        assert_eq!(v["checks"]["logs_loaded"], false);
        assert_eq!(v["checks"]["disk_writable"], true);
        assert_eq!(v["node_id"], 3);
        // A data directory that is gone cannot take a write.
        let gone = Health::new(3, dir.path().join("missing"));
        let v: serde_json::Value = serde_json::from_str(&gone.check().await.body).unwrap();
        assert_eq!(v["checks"]["disk_writable"], false);
        assert!(v["error"].as_str().unwrap().contains("not writable"), "{v}");
    }
}
