//! A task's input read in-process from this node's replica of the partition
//! (tasks run where their partition is led), instead of through a Kafka
//! client over loopback: no Fetch request to build, serve and parse, and the
//! batches come zero-copy from the segment mapping. Only committed records
//! are read (up to the high watermark, as a consumer sees them), so a task
//! never takes a row that a leader change could still take back.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use weir_client::{FetchedBatches, TopicPartition};
use weir_storage::StorageError;

use super::task::TaskError;
use crate::broker::Broker;

/// How many bytes of batches one read takes at most.
const READ_BYTES: usize = 4 << 20;

/// Reads one partition of this node from a position on, as a consumer
/// assigned to it would.
#[derive(Debug)]
pub struct LocalReader {
    node: Weak<Broker>,
    tp: TopicPartition,
    position: i64,
}

impl LocalReader {
    /// A reader of `tp` on `node` starting at `position`.
    pub fn new(node: Weak<Broker>, tp: TopicPartition, position: i64) -> Self {
        Self { node, tp, position }
    }

    /// The offset of the next record to read.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Reads on from `position` (records already read and not taken are
    /// read again).
    pub fn seek(&mut self, position: i64) {
        self.position = position;
    }

    /// Whether the partition holds committed records at or past the
    /// position.
    pub fn has_more(&self) -> bool {
        self.node
            .upgrade()
            .and_then(|b| b.partition(&self.tp.topic, self.tp.partition))
            .is_some_and(|p| p.high_watermark() > self.position)
    }

    /// The partition read.
    pub fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// Waits up to `timeout` for committed records at the position of any
    /// of `readers`, and returns the batches of each that has some, by its
    /// index (none when the time ran out), as [`LocalReader::poll`] does
    /// for one.
    pub async fn poll_any(
        readers: &mut [&mut LocalReader],
        timeout: Duration,
    ) -> Result<Vec<(usize, FetchedBatches)>, TaskError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Subscribed before the reads: a commit between the two wakes
            // the wait below.
            let mut commits: Vec<_> = readers
                .iter()
                .filter_map(|r| {
                    let b = r.node.upgrade()?;
                    Some(
                        b.partition(&r.tp.topic, r.tp.partition)?
                            .subscribe_high_watermark(),
                    )
                })
                .collect();
            let mut out = Vec::new();
            for (i, r) in readers.iter_mut().enumerate() {
                let read = r.poll(Duration::ZERO).await?;
                if !read.is_empty() {
                    out.push((i, read));
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let mut waits: Vec<_> = commits.iter_mut().map(|c| Box::pin(c.changed())).collect();
            let any = std::future::poll_fn(|cx| {
                for w in &mut waits {
                    if let std::task::Poll::Ready(r) = w.as_mut().poll(cx) {
                        return std::task::Poll::Ready(r.is_ok());
                    }
                }
                std::task::Poll::Pending
            });
            match tokio::time::timeout_at(deadline, any).await {
                Ok(true) => continue,
                // None hosted here, or one was dropped here: look them up
                // again after the wait.
                Ok(false) => {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(out);
                }
                Err(_) => return Ok(out),
            }
        }
    }

    /// Waits up to `timeout` for committed records at the position and
    /// returns their batches, walked in place by the caller (none when the
    /// time ran out), moving the position past them. A position below the log start (retention, DeleteRecords) or
    /// past its end (the topic was created again) moves to the log start:
    /// a job reads whatever of its input is still kept.
    pub async fn poll(&mut self, timeout: Duration) -> Result<FetchedBatches, TaskError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let partition = self
                .node
                .upgrade()
                .and_then(|b| b.partition(&self.tp.topic, self.tp.partition));
            let Some(partition) = partition else {
                // Not (yet, or no longer) hosted here: the task's tending
                // stops it if its node does not lead the partition.
                tokio::time::sleep_until(deadline).await;
                return Ok(FetchedBatches::default());
            };
            // Subscribed before the read: a commit between the two wakes
            // the wait below.
            let mut committed = partition.subscribe_high_watermark();
            match partition.read(self.position, READ_BYTES, true) {
                Ok(read) if !read.records.is_empty() => {
                    let decoded = FetchedBatches::parse(
                        &self.tp.topic,
                        self.tp.partition,
                        read.records,
                        self.position,
                    )?;
                    match decoded.next_offset {
                        Some(next) if next > self.position => self.position = next,
                        // Not even one whole batch fits in the read: a
                        // corrupt or oversized batch the log should not hold.
                        _ => {
                            return Err(TaskError::Read(format!(
                                "{}-{}: no whole batch at offset {} in {READ_BYTES} bytes",
                                self.tp.topic, self.tp.partition, self.position
                            )))
                        }
                    }
                    if !decoded.is_empty() {
                        return Ok(decoded);
                    }
                    // Only control batches: read on.
                    continue;
                }
                Ok(_) => {}
                Err(StorageError::OffsetOutOfRange {
                    offset, log_start, ..
                }) => {
                    tracing::warn!(
                        partition = %format!("{}-{}", self.tp.topic, self.tp.partition),
                        offset,
                        log_start,
                        "a job task's position is out of the log; it reads on from the log start"
                    );
                    self.position = log_start;
                    continue;
                }
                Err(e) => {
                    return Err(TaskError::Read(format!(
                        "{}-{} at {}: {e}",
                        self.tp.topic, self.tp.partition, self.position
                    )))
                }
            }
            match tokio::time::timeout_at(deadline, committed.changed()).await {
                Ok(Ok(())) => continue,
                // Closed (the partition was dropped here): look it up again
                // after the wait.
                Ok(Err(_)) => {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(FetchedBatches::default());
                }
                Err(_) => return Ok(FetchedBatches::default()),
            }
        }
    }
}
