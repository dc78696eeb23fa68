//! The raft crate's error type. openraft's storage traits speak `io::Error`:
//! [`RaftStoreError`] is converted at that boundary.

use std::io;
use std::path::PathBuf;

use weir_storage::StorageError;

/// Why a Raft log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftStoreError {
    /// The partition log refused or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An I/O operation on one of the Raft files of the partition failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A Raft file or the partition log holds what Weir cannot have written.
    #[error("corrupt {path}: {reason}")]
    Corrupt {
        /// The file (or partition directory) concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An append does not continue the log at its next index.
    #[error("append at raft index {got}, the log continues at {expected}")]
    NotContiguous {
        /// The index the next entry must have.
        expected: u64,
        /// The index given.
        got: u64,
    },
    /// The entry was purged (covered by a snapshot).
    #[error("raft index {index} is purged (the log starts at {first})")]
    Purged {
        /// The index asked for.
        index: u64,
        /// The first index still in the log.
        first: u64,
    },
    /// A data entry's term does not fit partitionLeaderEpoch (an i32).
    #[error("term {0} does not fit a batch's partitionLeaderEpoch")]
    TermTooLarge(u64),
    /// A data entry is not exactly one RecordBatch v2.
    #[error("raft index {index}: not one record batch: {reason}")]
    BadBatch {
        /// The entry's index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
}

impl RaftStoreError {
    /// An `Io` error on `path`, for `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// A `Corrupt` error.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<RaftStoreError> for io::Error {
    fn from(e: RaftStoreError) -> Self {
        match e {
            RaftStoreError::Io { source, path } => {
                io::Error::new(source.kind(), format!("{}: {source}", path.display()))
            }
            RaftStoreError::Purged { .. } | RaftStoreError::NotContiguous { .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
            }
            RaftStoreError::Corrupt { .. } | RaftStoreError::BadBatch { .. } => {
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
            other => io::Error::other(other.to_string()),
        }
    }
}

/// Result alias of the crate.
pub(crate) type Result<T, E = RaftStoreError> = std::result::Result<T, E>;
