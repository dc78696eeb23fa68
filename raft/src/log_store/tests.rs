//! openraft's conformance suite, then the record-batch path it does not cover.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;
use weir_storage::LogConfig;

use super::*;
use crate::state_machine::StateMachine;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), "t-0", LogConfig::default()).unwrap();
        let store = LogStore::open(Arc::new(log)).unwrap();
        Ok((dir, store, StateMachine::new()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.unwrap();
}
