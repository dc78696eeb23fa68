//! The storage crate's one error type.

use std::path::PathBuf;

/// Why a RecordBatch was rejected or found damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than a v2 batch header (61 bytes) or than the batch length says.
    #[error("batch truncated: {available} bytes available, {needed} needed")]
    Truncated {
        /// Bytes present.
        available: usize,
        /// Bytes the header or length field requires.
        needed: usize,
    },
    /// The batchLength field is below the v2 minimum or above the allowed maximum.
    #[error("invalid batch length {0}")]
    InvalidLength(i32),
    /// The magic byte is not 2 (only RecordBatch v2 is supported).
    #[error("unsupported magic {0} (only RecordBatch v2 is supported)")]
    UnsupportedMagic(i8),
    /// The CRC-32C over attributes..end does not match the stored one.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the batch header.
        stored: u32,
        /// CRC computed over the batch bytes.
        computed: u32,
    },
    /// recordCount disagrees with lastOffsetDelta.
    #[error("record count {count} does not match lastOffsetDelta {last_offset_delta}")]
    RecordCount {
        /// recordCount from the header.
        count: i32,
        /// lastOffsetDelta from the header.
        last_offset_delta: i32,
    },
    /// The records section could not be decoded (bad varint, bad length, bad compression).
    #[error("malformed records: {0}")]
    MalformedRecords(String),
    /// The compressed records decompress to more than the limit
    /// ([`crate::record::decompress_limit`]): the batch is too large, not
    /// damaged.
    #[error("records decompress to more than {limit} bytes (the most a batch may expand to: max.message.bytes or 64 MiB, the larger)")]
    DecompressedTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Record `index` of the batch is malformed or breaks a rule (Kafka's
    /// INVALID_RECORD, with the index in the response's record errors).
    #[error("record {index}: {reason}")]
    InvalidRecord {
        /// Position of the record in its batch, from 0.
        index: i32,
        /// What is wrong with it.
        reason: String,
    },
    /// Record `index` has a timestamp outside the topic's allowed range
    /// (`message.timestamp.before.max.ms` / `after.max.ms`).
    #[error("record {index}: timestamp {timestamp} is {reason}")]
    InvalidTimestamp {
        /// Position of the record in its batch, from 0.
        index: i32,
        /// The record's timestamp.
        timestamp: i64,
        /// How far from the broker's clock, and which limit it breaks.
        reason: String,
    },
    /// Several records break rules (each an [`BatchError::InvalidRecord`] or
    /// [`BatchError::InvalidTimestamp`]), in record order.
    #[error("{} records refused, the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Records(Vec<BatchError>),
    /// The records section ends before the declared number of records.
    #[error("batch declares {declared} records but holds {found}")]
    RecordsPresent {
        /// recordCount from the header.
        declared: i32,
        /// Records actually present.
        found: i32,
    },
    /// Bytes remain in the records section after the declared records.
    #[error("{extra} bytes remain after the {declared} declared records")]
    TrailingBytes {
        /// recordCount from the header.
        declared: i32,
        /// Bytes left over.
        extra: usize,
    },
    /// A well-formed batch that a client may not write (control batches, a
    /// producer id without a sequence).
    #[error("{0}")]
    NotAllowed(String),
    /// The compression codec bits name no known codec.
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    /// A batch's base offset goes backwards relative to the batch before it.
    #[error("batch base offset {base_offset} is below the expected next offset {expected}")]
    OffsetOrder {
        /// Base offset found.
        base_offset: i64,
        /// Smallest acceptable base offset.
        expected: i64,
    },
}

/// Every error the partition log can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation on a file of the log failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A produced batch was rejected; nothing was written.
    #[error("invalid batch at byte {position} of the request: {source}")]
    InvalidBatch {
        /// Byte position of the bad batch inside the appended buffer.
        position: usize,
        /// What was wrong.
        #[source]
        source: BatchError,
    },
    /// The appended records exceed the log's maximum batch size.
    #[error("batch of {size} bytes exceeds the maximum of {max} bytes")]
    BatchTooLarge {
        /// Size of the batch.
        size: usize,
        /// Configured maximum (max.message.bytes).
        max: usize,
    },
    /// A read or lookup asked for an offset outside [log start, log end].
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// First offset in the log.
        log_start: i64,
        /// Next offset to be written.
        log_end: i64,
    },
    /// A replicated append did not start at the log end offset.
    #[error("replicated batch starts at {base_offset}, log end is {log_end}")]
    NonContiguous {
        /// Base offset of the first batch given.
        base_offset: i64,
        /// The log end offset.
        log_end: i64,
    },
    /// A file of the log holds bytes that cannot be what Weir wrote, beyond repair.
    #[error("corrupt {path}: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log was closed or its directory deleted.
    #[error("log {0} is closed")]
    Closed(String),
    /// The storage volume has no space left; nothing was acknowledged.
    #[error("no space left on device writing {path}")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// The `leader-epoch-checkpoint` file is not a valid epoch cache (an open
    /// rebuilds it from the batches instead of failing).
    #[error("invalid leader-epoch checkpoint {path}, line {line}: {reason}")]
    InvalidEpochCheckpoint {
        /// The file.
        path: PathBuf,
        /// The line at fault, from 1 (0 when the file ends too early).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// [`crate::Log::reset_to`] was asked for a negative offset.
    #[error("cannot reset the log in {path} to negative offset {offset}")]
    NegativeResetOffset {
        /// The log's directory.
        path: PathBuf,
        /// The offset asked for.
        offset: i64,
    },
    /// A partition directory name is not `<topic>-<partition>`.
    #[error("invalid partition directory name {0:?}")]
    InvalidPartitionDir(String),
}

/// Result alias of the storage crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`, telling a full disk apart.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.into();
    move |source| {
        if source.raw_os_error() == Some(28) {
            StorageError::DiskFull { path }
        } else {
            StorageError::Io { path, source }
        }
    }
}
