//! The one place internal errors become Kafka error codes.

use weir_storage::StorageError;

use crate::partition::AppendError;

/// Kafka error codes Weir sends.
#[allow(missing_docs)]
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_FETCH_SIZE: i16 = 4;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REQUEST: i16 = 42;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// The Kafka error code for a storage error.
pub fn storage(e: &StorageError) -> i16 {
    match e {
        StorageError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        StorageError::InvalidBatch { .. } | StorageError::NonContiguous { .. } => {
            code::CORRUPT_MESSAGE
        }
        StorageError::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        StorageError::Closed(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        _ => code::KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code for a failed append.
pub fn append(e: &AppendError) -> i16 {
    match e {
        AppendError::Storage(s) => storage(s),
        AppendError::Producer(p) => p.code(),
        AppendError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
    }
}
