//! Consecutive whole batches of the partition log from a given offset, read
//! zero-copy in chunks (one `Log::read` serves many small batches).

use bytes::Bytes;
use weir_storage::{BatchHeader, HeaderWalk, Log, ReadBound};

use crate::error::{RaftStoreError, Result};

/// Bytes asked of the log by the first read (a read returns at least one whole
/// batch, and the log walks the headers of what it returns, so a one-entry read
/// must not ask for much); each later read asks for four times more, up to
/// [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 1024;
const MAX_CHUNK: usize = 256 * 1024;

/// Reads the batches of `log` one after the other from a batch start.
#[derive(Debug)]
pub(crate) struct BatchReader<'a> {
    log: &'a Log,
    next: i64,
    chunk: Bytes,
    pos: usize,
    ask: usize,
}

impl<'a> BatchReader<'a> {
    /// Starts at `offset`, which must be the base offset of a batch.
    pub(crate) fn new(log: &'a Log, offset: i64) -> Self {
        Self {
            log,
            next: offset,
            chunk: Bytes::new(),
            pos: 0,
            ask: FIRST_CHUNK,
        }
    }

    /// The offset after the last batch returned.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next
    }

    /// The next batch: its header and its bytes. A batch missing, or not starting
    /// where the previous one ended (compaction, a gap), is reported as corruption:
    /// the Raft log requires one batch per data entry, back to back.
    pub(crate) fn next_batch(&mut self) -> Result<(BatchHeader, Bytes)> {
        if self.pos >= self.chunk.len() {
            // A log start inside a batch (DeleteRecords or retention at any
            // offset, as in Kafka) leaves that batch on disk, and its later
            // records are data: the log reads from its start the batch that
            // holds it, based where the Raft log expects it (an offset below
            // the start is refused to consumers, not to the Raft log). Whole
            // batches gone below it are found missing below.
            let from = self.next.max(self.log.log_start_offset());
            self.chunk = self.log.read(from, self.ask, ReadBound::LogEnd)?.records;
            self.pos = 0;
            self.ask = (self.ask * 4).min(MAX_CHUNK);
        }
        let found = HeaderWalk::new(&self.chunk, self.pos).next();
        let Some((at, h)) = found else {
            return Err(self.missing("no batch"));
        };
        if h.base_offset != self.next {
            return Err(self.missing(&format!("a batch based at {}", h.base_offset)));
        }
        let bytes = self.chunk.slice(at..at + h.size());
        self.pos = at + h.size();
        self.next = h.next_offset();
        Ok((h, bytes))
    }

    fn missing(&self, found: &str) -> RaftStoreError {
        RaftStoreError::corrupt(
            self.log.dir(),
            format!(
                "expected a batch at offset {} (log end {}), found {found}",
                self.next,
                self.log.log_end_offset()
            ),
        )
    }
}
