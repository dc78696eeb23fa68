//! An aggregate task's results, written as its window operator fires them:
//! each is encoded at once into the pending record batch of its output
//! partition, borrowed from the operator's windows (no copy of its key or
//! accumulators, no list of results in between). A job with a Top-N keeps
//! its results until they are ranked. Batches that fill up wait for the
//! task to hand them to its writer (an `.await` the operator cannot make).

use bytes::BytesMut;
use weir_client::TopicPartition;
use weir_storage::BatchBuilder;

use super::job::Tally;
use super::output::Output;
use super::plan::JobPlan;
use super::task::{self, TaskError};
use super::window::{Emit, EmitMode, ResultRef, WindowResult};

/// Bytes of results an aggregate task writes into one output batch before
/// it hands it over, when the output topic's `max.message.bytes` allows it
/// (Kafka's default limit is 1 MiB): each batch is one append, one Raft
/// entry and one flush, so a keyed HOP job, which writes about three
/// results per event, took 16 % more events per CPU-second with 1 MiB
/// batches than with 256 KiB ones (BENCHMARKS.md).
pub(super) const OUTPUT_BATCH_BYTES: usize = 1024 * 1024;

/// One output partition a task writes.
pub(super) struct OutputPart {
    pub(super) tp: TopicPartition,
    /// The results written since the last hand-over, encoded straight into
    /// the record batch the writer then only stamps and sends.
    pub(super) pending: Option<BatchBuilder>,
    /// Batches that filled up while results were written, oldest first,
    /// to hand over before `pending`: a batch is closed at
    /// [`OUTPUT_BATCH_BYTES`] instead of growing (a growing buffer is
    /// copied at each doubling and touches fresh pages).
    pub(super) full: Vec<BatchBuilder>,
    /// Final results still to skip: written before a crash.
    pub(super) skip: i64,
}

impl OutputPart {
    /// Output partition `tp`, with `skip` final results written before a
    /// crash still to come.
    pub(super) fn new(tp: TopicPartition, skip: i64) -> Self {
        OutputPart {
            tp,
            pending: None,
            full: Vec::new(),
            skip,
        }
    }
}

/// Writes a task's results into its output partitions' batches.
pub(super) struct ResultWriter {
    /// Writes the output records.
    pub(super) format: Output,
    /// Where state queries' answers are written.
    pub(super) buf: BytesMut,
    /// Bytes of records an output batch holds at most: [`OUTPUT_BATCH_BYTES`],
    /// or less to keep each batch within the output topic's
    /// `max.message.bytes` (see [`Self::set_limit`]).
    batch_bytes: usize,
    /// The most bytes of records one output batch may hold by the output
    /// topic's `max.message.bytes`.
    record_limit: usize,
    /// The output partitions it writes: partition `r`, or every one when
    /// the task runs the whole job.
    pub(super) outputs: Vec<OutputPart>,
    plan: JobPlan,
    /// Under `--emit changes`, each record says whether it is final.
    changes: bool,
    /// With a Top-N: the results fired since the last [`Self::finish`], to
    /// rank.
    kept: Vec<WindowResult>,
    /// Results counted since the task last took the counts.
    pub(super) counts: Tally,
    /// Whether a result came since the last [`Self::finish`].
    fired: bool,
    /// The output records' timestamp: the time the first result since the
    /// last [`Self::finish`] came (results of a replay of old history must
    /// not fall under the output's time retention at once).
    now: i64,
    /// Why a result could not be written: the task fails with it, and the
    /// results after it are not written either.
    failed: Option<TaskError>,
}

impl ResultWriter {
    /// The writer of `plan`'s results into `outputs`, emitting `emit`.
    pub(super) fn new(plan: &JobPlan, emit: EmitMode, outputs: Vec<OutputPart>) -> Self {
        ResultWriter {
            format: Output::new(plan),
            buf: BytesMut::new(),
            batch_bytes: OUTPUT_BATCH_BYTES,
            record_limit: usize::MAX,
            outputs,
            plan: plan.clone(),
            changes: emit == EmitMode::Changes,
            kept: Vec::new(),
            counts: Tally::default(),
            fired: false,
            now: 0,
            failed: None,
        }
    }

    /// Keeps each record within `record_limit` bytes and each batch within
    /// it and [`OUTPUT_BATCH_BYTES`] (the output topic's
    /// `max.message.bytes`, as this node's metadata has it now).
    pub(super) fn set_limit(&mut self, record_limit: usize) {
        self.record_limit = record_limit;
        self.batch_bytes = record_limit.clamp(1, OUTPUT_BATCH_BYTES);
    }

    /// Whether a result came since the last [`Self::finish`].
    pub(super) fn fired(&self) -> bool {
        self.fired
    }

    /// Writes the kept results (ranked by the job's Top-N); fails with the
    /// first result that could not be written since the last call.
    pub(super) fn finish(&mut self) -> Result<(), TaskError> {
        self.fired = false;
        let kept = std::mem::take(&mut self.kept);
        if !kept.is_empty() && self.failed.is_none() {
            for (w, rank) in super::top_n::rank(&self.plan, kept) {
                if let Err(e) = self.write(&w.as_ref(), rank) {
                    self.failed = Some(e);
                    break;
                }
            }
        }
        self.failed.take().map_or(Ok(()), Err)
    }

    /// Whether any output batch is full (waits to be handed over).
    pub(super) fn has_full(&self) -> bool {
        self.outputs.iter().any(|o| !o.full.is_empty())
    }

    /// Whether any output batch holds results not handed over.
    pub(super) fn has_pending(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| o.pending.is_some() || !o.full.is_empty())
    }

    /// Writes the output record of one result, ranked `rank`, into the
    /// pending batch of its output partition; skips it when it was written
    /// before a restart (see the module docs of [`super::aggregate`]).
    fn write(&mut self, w: &ResultRef<'_>, rank: Option<u64>) -> Result<(), TaskError> {
        self.counts.records_out += 1;
        // The output partition of its group key, as its shard's would be.
        let at = match self.outputs.len() {
            1 => 0,
            n => weir_client::partitioner::partition_for_key(
                &self.plan.shard_key(w.key.as_str()),
                n as i32,
            ) as usize,
        };
        let Some(o) = self.outputs.get_mut(at) else {
            return Ok(());
        };
        if w.is_final && o.skip > 0 {
            o.skip -= 1;
            self.counts.skipped_on_recovery += 1;
            // Written by the task before the crash, after its checkpoint
            // (whose tally does not count it): it is in the output.
            return Ok(());
        }
        let key = self.format.key_of(w);
        // Under `--emit changes`, tells a window's last (final) result from
        // its updates.
        let flag: &[u8] = if w.is_final { b"true" } else { b"false" };
        let header = self.changes.then_some((&b"weir-final"[..], Some(flag)));
        let key = key.as_deref().map(str::as_bytes);
        // Written into the batch; taken back out if it took the batch past
        // its limit (then it goes into the next one) or is over the limit
        // by itself.
        for fresh in [false, true] {
            let b = o
                .pending
                .get_or_insert_with(|| BatchBuilder::new(-1, -1, -1, OUTPUT_BATCH_BYTES + 4096));
            let mark = b.mark();
            let before = b.records_len();
            b.push_with(self.now, key, header.into_iter(), |out| {
                self.format.value_into(w, rank, out)
            });
            let size = b.records_len() - before;
            if size > self.record_limit {
                // Never written, so the results after it are not either: the
                // exactly-once skip counts results in order (found from
                // outside: sent alone and refused, it failed the task while
                // a later batch was taken, and after the restart it was
                // skipped as written, lost without a word).
                b.rollback(mark);
                let mut value = Vec::new();
                self.format.value_into(w, rank, &mut value);
                let text = String::from_utf8_lossy(&value[..value.len().min(80)]).into_owned();
                return Err(TaskError::Topics(format!(
                    "a result of about {size} bytes ({text}…) is over output topic {0}'s \
                     max.message.bytes: raise it (weir topic alter {0} --set \
                     max.message.bytes=N) and the job goes on from its last checkpoint",
                    self.plan.output_topic
                )));
            }
            if b.records_len() > self.batch_bytes && !fresh && before > 0 {
                b.rollback(mark);
                o.full.extend(o.pending.take());
                continue;
            }
            break;
        }
        if o.pending
            .as_ref()
            .is_some_and(|b| b.records_len() >= self.batch_bytes)
        {
            o.full.extend(o.pending.take());
        }
        Ok(())
    }
}

impl Emit for ResultWriter {
    fn emit(&mut self, r: ResultRef<'_>) {
        if !self.fired {
            self.fired = true;
            self.now = task::now_ms();
        }
        if self.failed.is_some() {
            return;
        }
        if self.plan.top.is_some() {
            self.kept.push(r.to_owned());
        } else if let Err(e) = self.write(&r, None) {
            self.failed = Some(e);
        }
    }
}
