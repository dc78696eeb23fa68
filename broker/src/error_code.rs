//! The one place internal errors become Kafka error codes.

use weir_storage::{BatchError, StorageError};

use crate::partition::{AppendError, DeleteRecordsError, LeaderError};

/// Kafka error codes Weir sends.
#[allow(missing_docs)]
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_FETCH_SIZE: i16 = 4;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_REQUEST: i16 = 42;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const INVALID_RECORD: i16 = 87;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 76;
    pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// The Kafka error code for a storage error.
pub fn storage(e: &StorageError) -> i16 {
    match e {
        StorageError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        StorageError::InvalidBatch { source, .. } => batch(source),
        StorageError::NonContiguous { .. } => code::CORRUPT_MESSAGE,
        StorageError::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        StorageError::Closed(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        _ => code::KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code for a refused batch: a record that breaks a rule is
/// INVALID_RECORD (or INVALID_TIMESTAMP), damaged framing is CORRUPT_MESSAGE.
pub fn batch(e: &BatchError) -> i16 {
    match e {
        BatchError::InvalidRecord { .. } | BatchError::NotAllowed(_) => code::INVALID_RECORD,
        BatchError::InvalidTimestamp { .. } => code::INVALID_TIMESTAMP,
        BatchError::Records(all) => all.first().map_or(code::INVALID_RECORD, batch),
        // Not retried by clients: the same batch would be refused again.
        BatchError::DecompressedTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        _ => code::CORRUPT_MESSAGE,
    }
}

/// The records a refused batch was refused for, with each one's reason (Produce
/// v8+ `record_errors`); empty when the batch as a whole is at fault.
pub fn record_errors(e: &AppendError) -> Vec<(i32, String)> {
    fn of(e: &BatchError) -> Vec<(i32, String)> {
        match e {
            BatchError::InvalidRecord { index, .. }
            | BatchError::InvalidTimestamp { index, .. } => {
                vec![(*index, e.to_string())]
            }
            BatchError::Records(all) => all.iter().flat_map(of).collect(),
            _ => Vec::new(),
        }
    }
    match e {
        AppendError::Storage(StorageError::InvalidBatch { source, .. }) => of(source),
        _ => Vec::new(),
    }
}

/// The Kafka error code for a failed append.
pub fn append(e: &AppendError) -> i16 {
    match e {
        AppendError::Storage(s) => storage(s),
        AppendError::Producer(p) => p.code(),
        AppendError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
        AppendError::Stopped(_) => code::KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code for a request this node does not serve at the epoch it
/// names (KIP-320).
pub fn leader(e: &LeaderError) -> i16 {
    match e {
        LeaderError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
        LeaderError::FencedEpoch { .. } => code::FENCED_LEADER_EPOCH,
        LeaderError::UnknownEpoch { .. } => code::UNKNOWN_LEADER_EPOCH,
    }
}

/// The Kafka error code for a refused DeleteRecords.
pub fn delete_records(e: &DeleteRecordsError) -> i16 {
    match e {
        DeleteRecordsError::OutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        DeleteRecordsError::RaftLogBusy => code::REQUEST_TIMED_OUT,
        DeleteRecordsError::Storage(s) => storage(s),
    }
}
