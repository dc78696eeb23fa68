//! A task's input read in-process from this node's replica of the partition
//! (tasks run where their partition is led), instead of through a Kafka
//! client over loopback: no Fetch request to build, serve and parse, and the
//! batches come zero-copy from the segment mapping. Only committed records
//! are read (up to the high watermark, as a consumer sees them), so a task
//! never takes a row that a leader change could still take back.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_client::{FetchedBatches, TopicPartition};
use weir_storage::StorageError;

use super::task::TaskError;
use crate::broker::Broker;

/// How many bytes of batches one read takes at most.
const READ_BYTES: usize = 4 << 20;

/// How far apart the numbers of two creations of an input partition are
/// (see [`Incarnation`]): offsets stay below 2^48, and a partition may be
/// created again 32,767 times under one job.
const CREATION_STRIDE: i64 = 1 << 48;

/// Which creation of an input partition a task reads, and how its offsets
/// number its records among every record the task took from that
/// partition number: a topic deleted and created again under the same name
/// starts again at offset 0, below offsets already taken from the old one,
/// which the shards would otherwise drop as replays (source offsets are
/// how they recognise rows routed twice). Each creation's numbers start
/// [`CREATION_STRIDE`] above the last one's, whatever the position the
/// switch was noticed at: a task restarted from an earlier checkpoint
/// numbers the new creation's records as the one before it did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incarnation {
    /// The partition's Raft group id, new with each creation of its topic
    /// (none before the first read, or in a checkpoint older than this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
    /// Added to this creation's offsets (a multiple of the stride): its
    /// records come after every record of the creations read before.
    #[serde(default)]
    pub shift: i64,
}

impl Incarnation {
    /// Whether it says nothing a fresh reader would not (kept out of
    /// checkpoints then).
    pub fn is_unknown(&self) -> bool {
        *self == Self::default()
    }
}

/// Reads one partition of this node from a position on, as a consumer
/// assigned to it would.
#[derive(Debug)]
pub struct LocalReader {
    node: Weak<Broker>,
    tp: TopicPartition,
    position: i64,
    /// Where the last read that returned records started.
    read_from: i64,
    /// The creation of the partition read, when the reader follows
    /// creations (an input partition; see [`LocalReader::following`]).
    incarnation: Option<Incarnation>,
    /// Set when the reader moved to a new creation of its topic; taken by
    /// [`LocalReader::take_renewed`].
    renewed: bool,
    /// The creation and position before the last move to a new creation
    /// (see [`LocalReader::undo_renewal`]).
    previous: Option<(Incarnation, i64)>,
    /// Set when the reader went back to a creation it had found gone (see
    /// [`LocalReader::undo_renewal`]).
    left: bool,
}

impl LocalReader {
    /// A reader of `tp` on `node` starting at `position`.
    pub fn new(node: Weak<Broker>, tp: TopicPartition, position: i64) -> Self {
        Self {
            node,
            tp,
            position,
            read_from: position,
            incarnation: None,
            renewed: false,
            previous: None,
            left: false,
        }
    }

    /// The reader of an input partition, of which `position` is in the
    /// creation `incarnation`: when it finds another creation of the topic
    /// (deleted and created again), it reads that one from its start, its
    /// records numbered after the old one's (see [`Incarnation`]). The
    /// creation is looked up at once, so that a checkpoint taken before the
    /// first read knows it (found by the three-node test: a task that
    /// moved right after the topic was created again resumed from such a
    /// checkpoint, took the new creation for the old one, and the shards
    /// dropped its rows as replays of those the first task had routed).
    pub fn following(mut self, incarnation: Incarnation) -> Self {
        self.incarnation = Some(incarnation);
        if let Some(p) = self.hosted() {
            self.follow(&p);
        }
        self
    }

    /// The offset of the next record to read.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Where the last read that returned records started: records read
    /// and not taken are read again from there at the latest.
    pub fn read_from(&self) -> i64 {
        self.read_from
    }

    /// The creation read and the shift of its offsets (unknown when the
    /// reader does not follow creations).
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation.unwrap_or_default()
    }

    /// Whether the reader moved to a new creation of its topic since the
    /// last call.
    pub fn take_renewed(&mut self) -> bool {
        std::mem::take(&mut self.renewed)
    }

    /// Goes back to the creation and position the reader left at its last
    /// move to a new creation, as if it had not seen the new one (for a
    /// task's last checkpoint of the old creation).
    pub fn undo_renewal(&mut self) {
        if let Some((incarnation, position)) = self.previous.take() {
            self.incarnation = Some(incarnation);
            self.position = position;
            self.read_from = position;
            // Gone, even when the creation's group was not known (a
            // checkpoint of an earlier binary).
            self.left = true;
        }
    }

    /// Whether the creation of the partition read so far is gone from this
    /// node (the topic was deleted, or deleted and created again): only
    /// known for a reader that follows creations and has read.
    pub fn creation_gone(&self) -> bool {
        if self.left {
            return true;
        }
        let Some(group) = self.incarnation.and_then(|i| i.group) else {
            return false;
        };
        self.hosted().and_then(|p| p.group_id()) != Some(group)
    }

    /// Follows `partition` when it is another creation of the topic than
    /// the one read so far: reads it from its start, numbering its records
    /// after every one of the old creation (see [`Incarnation`]). A reader
    /// that did not know its creation yet (a checkpoint written before the
    /// first read, or by an earlier binary) takes a position past the log's
    /// end for the sign of a new creation.
    fn follow(&mut self, partition: &crate::partition::Partition) {
        let Some(known) = self.incarnation else {
            return;
        };
        let Some(now) = partition.group_id() else {
            return;
        };
        let renewed = match known.group {
            None => self.position > partition.offsets().log_end,
            Some(g) => g != now,
        };
        if !renewed {
            self.incarnation = Some(Incarnation {
                group: Some(now),
                ..known
            });
            return;
        }
        let start = partition.log_start_offset();
        tracing::warn!(
            partition = %format!("{}-{}", self.tp.topic, self.tp.partition),
            old_position = self.position,
            start,
            "the input topic was deleted and created again: a job task reads the new one from its start"
        );
        self.previous = Some((known, self.position));
        self.incarnation = Some(Incarnation {
            group: Some(now),
            shift: known.shift.saturating_add(CREATION_STRIDE),
        });
        self.position = start;
        self.read_from = start;
        self.renewed = true;
    }

    /// Reads on from `position` (records already read and not taken are
    /// read again).
    pub fn seek(&mut self, position: i64) {
        self.position = position;
    }

    /// Whether the partition holds committed records at or past the
    /// position.
    pub fn has_more(&self) -> bool {
        self.hosted()
            .is_some_and(|p| p.high_watermark() > self.position)
    }

    /// This node's replica of the partition read, when it hosts one.
    fn hosted(&self) -> Option<std::sync::Arc<crate::partition::Partition>> {
        self.node
            .upgrade()?
            .partition(&self.tp.topic, self.tp.partition)
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
                .filter_map(|r| Some(r.hosted()?.subscribe_high_watermark()))
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
    /// time ran out), moving the position past them. A position below the
    /// log start (retention, DeleteRecords) or past its end moves to the log
    /// start: a job reads whatever of its input is still kept. A reader
    /// following creations reads a new creation of the topic from its start
    /// (see [`Incarnation`]).
    pub async fn poll(&mut self, timeout: Duration) -> Result<FetchedBatches, TaskError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(partition) = self.hosted() else {
                // Not (yet, or no longer) hosted here: the task's tending
                // stops it if its node does not lead the partition.
                tokio::time::sleep_until(deadline).await;
                return Ok(FetchedBatches::default());
            };
            self.follow(&partition);
            // Subscribed before the read: a commit between the two wakes
            // the wait below.
            let mut committed = partition.subscribe_high_watermark();
            let from = self.position;
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
                        self.read_from = from;
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
