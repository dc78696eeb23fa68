//! The partition log of Weir: the durable, append-only log of one partition and
//! the manager of all partition logs on a node.
//!
//! A partition is a directory of segments named by their 20-digit zero-padded base
//! offset: `.log` holds Kafka RecordBatch v2 bytes as produced (only baseOffset and
//! partitionLeaderEpoch are set by the log), `.index` and `.timeindex` are sparse
//! memory-mapped indexes (layouts in [`index`](crate::index) docs). See [`Log`] for
//! the durability contract and [`recovery`] for what opening a log does.
//!
//! The replication layer uses this log as its Raft log: partitionLeaderEpoch holds
//! the term of the leader that appended a batch, and [`Log::append_replicated`]
//! writes batches that already carry their offsets, so there is one copy of the data.

mod batch;
pub mod batch_builder;
mod checkpoint;
mod cleaner;
mod codec;
mod config;
mod epoch_cache;
mod error;
mod index;
mod log;
mod manager;
mod mmap;
pub mod record;
pub mod recovery;
mod segment;
mod validate;

pub use batch::{
    seal as seal_batch, set_base_sequence, stamp as stamp_batch, validate as validate_batch,
    BatchHeader, CountRule, HeaderWalk, HEADER_LEN,
};
pub use batch_builder::{BatchBuilder, BatchMark};
pub use cleaner::CompactionOutcome;
pub use config::{CleanupPolicy, Durability, LogConfig};
pub use error::{BatchError, Result, StorageError};
pub use log::{
    AppendInfo, Log, Origin, Prepared, ReadBound, ReadResult, RetentionOutcome, SegmentInfo,
    TimestampOffset,
};
pub use manager::{LogManager, PartitionReport, TopicPartition};
pub use recovery::RecoveryReport;
pub use validate::{built_batch_needs_checks, validate_records, AppendRules, TimestampRule};
