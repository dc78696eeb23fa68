//! The durable store of the coordinator's records, implemented by the broker over the
//! compacted `__consumer_offsets` log. The record format is in [`super::record`].

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use super::record::Record;

/// Why the store failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GroupStoreError {
    /// An IO error of the underlying log.
    #[error("group store io: {0}")]
    Io(#[from] std::io::Error),
    /// The log cannot take writes now (not leader, shutting down, …).
    #[error("group store unavailable: {0}")]
    Unavailable(String),
}

/// The future [`GroupStore::append`] returns.
pub type AppendFuture = Pin<Box<dyn Future<Output = Result<(), GroupStoreError>> + Send + 'static>>;

/// Durable storage of the coordinator's records (the broker backs it with the
/// `__consumer_offsets` log, which it compacts by key).
pub trait GroupStore: Send + Sync + 'static {
    /// Appends `records` as one batch, after every record of earlier calls.
    ///
    /// Order: records must reach the log in call order. Implementations should enqueue
    /// them in `append` itself, before returning; a future that appends when first
    /// polled is also correct (the coordinator polls append futures one at a time, in
    /// call order) but serialises fsyncs. `append` must not block.
    ///
    /// Durability: the future resolves `Ok` once the records are durable per the log's
    /// fsync policy; only then is a commit acknowledged and visible to OffsetFetch. On
    /// `Err` the coordinator treats the records as not written and the client retries.
    fn append(&self, records: Vec<Record>) -> AppendFuture;

    /// Reads every record in log order, for the reload on start. Called once, before any
    /// `append`. Duplicate keys are fine: later records win, tombstones delete.
    fn load(&self) -> Result<Vec<Record>, GroupStoreError>;
}

/// An in-memory store for tests: keeps every appended record, can be told to fail.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    records: std::sync::Mutex<Vec<Record>>,
    fail: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl MemoryStore {
    /// Every record appended so far.
    pub(crate) fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Makes later appends fail (or succeed again).
    pub(crate) fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
impl GroupStore for MemoryStore {
    fn append(&self, records: Vec<Record>) -> AppendFuture {
        let result = if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err(GroupStoreError::Unavailable("test failure".into()))
        } else {
            self.records.lock().unwrap().extend(records);
            Ok(())
        };
        Box::pin(async move {
            tokio::task::yield_now().await;
            result
        })
    }

    fn load(&self) -> Result<Vec<Record>, GroupStoreError> {
        Ok(self.records())
    }
}
