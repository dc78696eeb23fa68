//! The aggregate task of one shard: reads partition N of the job's
//! repartition topic, runs the window operator over the rows routed there
//! ([`Shard`]), and writes the results to output partition N, of which it is
//! the only writer (a result's key is the group key, hashed alike for the
//! shard and the output partition).
//!
//! A job grouping by the record key has no repartition topic: its task N
//! reads input partition N itself (for the job's consumer group), judges
//! lateness by that partition's watermark (the route half, [`Router`]) and
//! writes output partition N. Everything below holds for it too; its
//! checkpoint also keeps the router.
//!
//! # Exactly once
//!
//! Its checkpoint holds the shard (the operator's state and the highest
//! source offset taken from each input partition), the next repartition
//! offset, the end of its output partition, and the identity its output is
//! written with: an idempotent producer id and epoch, and the sequence
//! number of its next result. Final results are emitted in an order that
//! does not depend on how the source partitions interleave: by window
//! close, then group key (the firing watermark only grows, and windows
//! closing together fire together, sorted). So the results a restarted task
//! emits while it replays from the checkpoint are the ones the crashed task
//! wrote after it, in the same order: the task skips as many of them as its
//! output partition gained since the checkpoint, and writes the rest with
//! the checkpoint's identity, each result under the sequence number the
//! crashed task gave it or would have (checkpoint's sequence number + its
//! place after the checkpoint).
//!
//! That also fences a deposed task (its node lost the shard but has not
//! noticed, or its producer still retries a batch): whatever it writes
//! after the new task counted the output carries sequence numbers the new
//! task writes too, so the output partition either answers it as a
//! duplicate or refuses it as out of order, whichever of the two lands
//! first; a batch the new task finds refused that way fails the task,
//! which starts again from its checkpoint and counts again. Every final
//! result is written exactly once, provided the job is its output topic's
//! only writer. Updates of open windows (`--emit changes`) are written at
//! least once (their order depends on the interleaving; a fresh identity
//! each start).
//!
//! When the output partition no longer knows the identity (it expired
//! after `producer.id.expiration.ms` without a write, so nothing was
//! written after the checkpoint), the broker takes the next result at the
//! sequence the checkpoint gives (as Kafka does since 2.5); a broker that
//! answers UNKNOWN_PRODUCER_ID instead gets the results numbered from 0
//! again, and the next checkpoint keeps that numbering. A checkpoint from
//! before identities were kept gets a new producer id.
//!
//! After each checkpoint the task deletes the repartition records below its
//! position: the repartition topic holds only what is still to be read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use weir_client::{Admin, Consumer, FetchedRecord, OffsetSpec, Producer, TopicPartition};
use weir_storage::BatchBuilder;

use super::job::{InputRate, JobDef, PartitionReport, SharedReport, Tally};
use super::local_read::LocalReader;
use super::plan::JobPlan;
use super::repartition::{Routed, Router, Shard, Took};
use super::row::Reader;
use super::task::{self, StateQuery, TaskContext, TaskError, TaskId, CHECKPOINT_EVERY};
use super::window::{EmitMode, WindowOperator, WindowResult};

/// Bytes of results an aggregate task writes into one output batch before
/// it hands it over (the producer's default batch size).
const OUTPUT_BATCH_BYTES: usize = 256 * 1024;

/// What an aggregate task's checkpoint holds (borrowed when written: the
/// shard is not copied).
#[derive(Debug, Serialize, Deserialize)]
struct AggregateCheckpoint<S> {
    shard: S,
    /// Next repartition offset.
    position: i64,
    /// The output partition's end when it was taken.
    output_end: i64,
    /// The task's counts up to `position` (absent before they were kept).
    #[serde(default)]
    tally: Tally,
    /// The identity the output is written with (absent before it was kept).
    #[serde(default)]
    output: Option<OutputIdentity>,
    /// A task reading its input partition itself (a job grouping by the
    /// record key): the partition's watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    router: Option<Router>,
}

/// Who writes a shard's output partition and how far: an idempotent
/// producer id and epoch, and the sequence number of its next result there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct OutputIdentity {
    producer_id: i64,
    epoch: i16,
    next_sequence: i32,
}

/// The leader epoch of the task's shard while this node leads it and
/// reaches a quorum of its replicas. A task whose node lost it (or leads it
/// in another epoch now) writes nothing more, not even a checkpoint: the
/// new leader's task may have read its output partition's end already.
pub type Leads = Box<dyn Fn() -> Option<i32> + Send + Sync>;

/// Runs the aggregate task of shard `r` of the job in `cx` until its stop signal turns true or `leads` turns false;
/// answers `queries`.
pub async fn run(
    cx: TaskContext,
    r: i32,
    mut queries: mpsc::Receiver<StateQuery>,
    leads: Leads,
) -> Result<(), TaskError> {
    // The shard's epoch this task runs in: a row appended in a later one
    // comes from a new leader (its own task runs there), so this task is
    // deposed even before it hears so (a leader cut off from its quorum).
    let Some(epoch) = leads() else {
        return Ok(());
    };
    let leads = move || leads() == Some(epoch);
    let (admin, sources, shards) = cx.setup().await?;
    let TaskContext {
        def,
        plan,
        bootstrap,
        report,
        stop,
        node,
    } = cx;
    let outputs = task::retrying(|| admin.partitions(&plan.output_topic))
        .await?
        .len() as i32;
    if outputs != shards {
        return Err(TaskError::Topics(format!(
            "output topic {} has {outputs} partitions and the job's repartition topic {shards}: \
             drop the job and create it again",
            plan.output_topic
        )));
    }
    let key = TaskId::Aggregate(r).state_key(&def.name);
    let restored: Option<AggregateCheckpoint<Shard>> =
        task::load_checkpoint(&bootstrap, &def, &key).await?;
    // A job grouping by the record key has no repartition topic: the task
    // reads input partition `r` itself, its only source.
    let keyed = plan.copartitioned();
    let input = TopicPartition::new(task::shard_topic(&def, &plan), r);
    let output = TopicPartition::new(&plan.output_topic, r);
    let output_end = end_of(&admin, &output).await?;
    let (shard, position, skip, identity, router) = match restored {
        Some(c) => {
            // Results the crashed task wrote after its checkpoint: replay
            // emits them again, in the same order, and they are skipped.
            // Only final results come in an order replay repeats: with every
            // change emitted too, nothing is skipped and the task writes
            // with a new identity (at least once).
            let (skip, identity) = match def.emit {
                EmitMode::Final => {
                    let skip = (output_end - c.output_end).max(0);
                    (skip, c.output.map(|id| (id, skip)))
                }
                EmitMode::Changes => (0, None),
            };
            report.update(|rep| rep.counts = c.tally);
            let router = keyed.then(|| {
                c.router
                    .unwrap_or_else(|| Router::new(plan.window, def.grace_ms))
            });
            (c.shard, c.position, skip, identity, router)
        }
        None => {
            let op = WindowOperator::new(
                plan.window,
                def.grace_ms,
                plan.aggregates.iter().map(|a| a.kind).collect(),
                if keyed { 1 } else { sources },
                def.emit,
            );
            let start = if keyed {
                task::start_offset(&admin, &input, def.from).await?
            } else {
                task::retrying(|| {
                    admin.list_offsets(std::slice::from_ref(&input), OffsetSpec::Earliest)
                })
                .await?
                .get(&input)
                .map_or(0, |l| l.offset)
            };
            let router = keyed.then(|| Router::new(plan.window, def.grace_ms));
            (Shard::new(op), start, 0, None, router)
        }
    };
    tracing::info!(job = %def.name, shard = r, epoch, position, output_end, skip, resumed = ?identity, "aggregate task starting");
    // A task reading the input itself commits its position to the job's
    // consumer group, as route tasks do.
    let mut committer = match keyed {
        true => Some(task::group_committer(&bootstrap, &def, &input).await?),
        false => None,
    };
    let mut reader = LocalReader::new(node.clone(), input.clone(), position);
    let producer = task::producer(
        &bootstrap,
        &node,
        format!("weir-job-{}-state-{r}", def.name),
    )
    .await?;
    let mut writer =
        task::producer_config(&bootstrap, &node, format!("weir-job-{}-out-{r}", def.name));
    if let Some((id, skip)) = identity {
        // The first result written is the first not skipped.
        let next = weir_client::sequence_after(id.next_sequence, skip);
        writer = writer.resume(id.producer_id, id.epoch, &output.topic, r, next);
    }
    let writer = writer.build().await?;
    let report_in = report.get().counts.records_in;
    let mut a = Aggregate {
        direct: router.map(|router| Direct {
            reader: Reader::new(&plan),
            router,
            proctime: plan.time == super::plan::TimeSource::ProcessingTime,
            rate: InputRate::new(report_in),
        }),
        format: super::output::Output::new(&plan),
        buf: BytesMut::with_capacity(64 * 1024),
        pending: None,
        def,
        plan,
        r,
        input,
        output,
        shard,
        producer,
        writer,
        skip,
        report,
        counts: Tally::default(),
        late_rows: Vec::new(),
        routed_args: Vec::new(),
    };
    a.report.update(|rep| rep.state = "running".into());
    // A first checkpoint before any result: a crash from here on replays
    // against a known output end.
    a.checkpoint(committer.as_mut(), reader.position(), &admin)
        .await?;
    let mut last_checkpoint = Instant::now();
    let mut out = Vec::new();
    loop {
        // Not raced against the stop signal or queries: a poll dropped
        // half-way could have moved the position past records it never
        // returned. It returns within 200 ms.
        let batches = reader.poll(Duration::from_millis(200)).await?;
        while let Ok(q) = queries.try_recv() {
            let open = super::top_n::as_they_stand(&a.plan, a.shard.op.open_for(&q.key))
                .iter()
                .map(|(w, rank)| {
                    let (_, value) = a.format.record(w, *rank, &mut a.buf);
                    serde_json::from_slice(&value).unwrap_or(serde_json::Value::Null)
                })
                .collect();
            let _ = q.reply.send(open);
        }
        let now_ms = task::now_ms();
        for rec in batches.records() {
            let rec = rec?;
            if rec.leader_epoch > epoch {
                a.deposed();
                return Ok(());
            }
            if a.direct.is_some() {
                a.take_input(&rec, now_ms, &mut out).await?;
            } else {
                a.take_routed(&rec, &mut out);
            }
            if !out.is_empty() && !leads() {
                a.deposed();
                return Ok(());
            }
            a.write(&mut out).await?;
        }
        a.advance_input(now_ms, &mut out);
        if !out.is_empty() && !leads() {
            a.deposed();
            return Ok(());
        }
        a.write(&mut out).await?;
        a.hand_over().await?;
        a.copy_late(&bootstrap).await?;
        a.publish_counts();
        if !leads() {
            a.deposed();
            return Ok(());
        }
        let stopping = *stop.borrow();
        if stopping || last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            a.checkpoint(committer.as_mut(), reader.position(), &admin)
                .await?;
            last_checkpoint = Instant::now();
        }
        if stopping {
            a.report.update(|rep| rep.state = "stopped".into());
            return Ok(());
        }
    }
}

impl Aggregate {
    /// Takes one record of the repartition topic.
    fn take_routed(&mut self, rec: &FetchedRecord<'_>, out: &mut Vec<WindowResult>) {
        let value = rec.value.unwrap_or_default();
        match Routed::decode(rec.key, value, &mut self.routed_args) {
            Ok(routed) => {
                let origin = match &routed {
                    Routed::Row { source, offset, .. } => Some((*source, *offset)),
                    Routed::Mark { .. } => None,
                };
                match self.shard.take(routed, out) {
                    Took::Row | Took::Mark => {}
                    Took::Duplicate => self.counts.duplicates += 1,
                    Took::Late => {
                        self.counts.late += 1;
                        self.late_rows.extend(origin);
                    }
                }
            }
            // Only route tasks write there: a record they did not write
            // is skipped, loudly.
            Err(e) => {
                tracing::warn!(job = %self.def.name, shard = self.r, offset = rec.offset, error = %e, "skipping a repartition record");
            }
        }
    }

    /// Takes one record of the input partition (a task reading it itself):
    /// its row goes into the windows, or the record to the late topic.
    async fn take_input(
        &mut self,
        rec: &FetchedRecord<'_>,
        now_ms: i64,
        out: &mut Vec<WindowResult>,
    ) -> Result<(), TaskError> {
        let Some(d) = self.direct.as_mut() else {
            return Ok(());
        };
        let value = rec.value.unwrap_or_default();
        let (late, bad) = match d.reader.row(rec.key, value, rec.timestamp, now_ms) {
            Ok(Some(row)) => match d.router.route(0, rec.offset, row) {
                Some(routed) => match self.shard.take(routed, out) {
                    Took::Late => (true, None),
                    Took::Duplicate => {
                        self.counts.duplicates += 1;
                        (false, None)
                    }
                    Took::Row | Took::Mark => (false, None),
                },
                None => (true, None),
            },
            Ok(None) => (false, None),
            Err(e) => (false, Some(e.to_string())),
        };
        task::tally_input(
            &mut self.counts,
            &self.producer,
            &self.def,
            self.r,
            rec,
            late,
            bad,
        )
        .await
    }

    /// After a poll of a task reading its input itself: the partition's
    /// watermark (moved to the clock under `PROCTIME()`) fires the windows
    /// it closed. Idleness is not told: no other partition's windows wait
    /// for this one.
    fn advance_input(&mut self, now_ms: i64, out: &mut Vec<WindowResult>) {
        let Some(d) = self.direct.as_mut() else {
            return;
        };
        if d.proctime {
            d.router.advance_to(now_ms);
        }
        let mark = Routed::Mark {
            source: 0,
            wm: d.router.wm,
            idle: false,
        };
        self.shard.take(mark, out);
    }
}

/// The end offset of `tp`.
async fn end_of(admin: &Admin, tp: &TopicPartition) -> Result<i64, TaskError> {
    Ok(task::ends(admin, std::slice::from_ref(tp))
        .await?
        .get(&tp.partition)
        .copied()
        .unwrap_or(0))
}

/// An aggregate task's IO state.
struct Aggregate {
    /// Writes the output records.
    format: super::output::Output,
    /// Where a record's value is written before it goes into the batch
    /// (reused), and state queries' answers.
    buf: BytesMut,
    /// The results written since the last hand-over, encoded straight into
    /// the record batch the writer then only stamps and sends.
    pending: Option<BatchBuilder>,
    def: JobDef,
    plan: JobPlan,
    r: i32,
    /// The shard: partition `r` of the repartition topic.
    input: TopicPartition,
    /// Output partition `r`.
    output: TopicPartition,
    shard: Shard,
    /// Writes checkpoints, statuses and late records.
    producer: Producer,
    /// Writes the output partition, with the identity its checkpoints keep.
    writer: Producer,
    /// Final results still to skip: written before a crash.
    skip: i64,
    report: Arc<SharedReport>,
    /// Counts not yet added to the report (it is updated once per poll).
    counts: Tally,
    /// Input partition and offset of rows late at the shard since the
    /// last poll (their windows fired while their partition was idle).
    late_rows: Vec<(i32, i64)>,
    /// Set when the task reads its input partition itself (a job grouping
    /// by the record key).
    direct: Option<Direct>,
    /// The arguments of the repartition record being taken (reused).
    routed_args: Vec<serde_json::Value>,
}

/// What a task reading its input partition itself needs beside the shard:
/// the route half of a route task.
struct Direct {
    reader: Reader,
    /// The partition's watermark; lateness.
    router: Router,
    /// Event time is processing time (`PROCTIME()`).
    proctime: bool,
    rate: InputRate,
}

impl Aggregate {
    /// Stops without writing: the node no longer leads the shard.
    fn deposed(&self) {
        tracing::info!(job = %self.def.name, shard = self.r, "aggregate task stops: this node no longer leads its shard");
        self.report
            .update(|rep| rep.state = "stopped: its shard's leadership moved".into());
    }

    /// Copies the input records of the rows late at the shard to the late
    /// topic, if the job has one. The shard holds only their rows, so each
    /// is read back from its input partition; as with the route task's late
    /// records, at least once.
    async fn copy_late(&mut self, bootstrap: &str) -> Result<(), TaskError> {
        let rows = std::mem::take(&mut self.late_rows);
        let Some(topic) = self.def.late_topic.clone() else {
            return Ok(());
        };
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (p, o) in rows {
            by_partition.entry(p).or_default().push(o);
        }
        for (p, mut offsets) in by_partition {
            offsets.sort_unstable();
            let found = task::read_at(bootstrap, &self.plan.input_topic, p, &offsets).await?;
            if found.len() < offsets.len() {
                tracing::warn!(job = %self.def.name, partition = p, missing = offsets.len() - found.len(), "late records gone from the input before they could be copied");
            }
            for rec in &found {
                let out = task::late_record(&topic, p, rec.into(), "late".into());
                self.producer.send_detached(out).await?;
            }
        }
        Ok(())
    }

    /// Adds the counts since the last call to the report.
    fn publish_counts(&mut self) {
        let c = std::mem::take(&mut self.counts);
        if c != Tally::default() {
            self.report.update(|rep| rep.counts += c);
        }
    }

    /// Writes the results in `out` into the pending output batch (with a
    /// Top-N, only the best of each window), handing it to the writer once
    /// it is full.
    async fn write(&mut self, out: &mut Vec<WindowResult>) -> Result<(), TaskError> {
        if out.is_empty() {
            return Ok(());
        }
        // The records' timestamp is the time they are written, not the
        // window's end: results of a replay of old history would otherwise
        // fall under retention at once.
        let now = task::now_ms();
        if self.plan.top.is_some() {
            for (w, rank) in super::top_n::rank(&self.plan, std::mem::take(out)) {
                self.write_result(&w, rank, now);
            }
        } else {
            for w in out.drain(..) {
                self.write_result(&w, None, now);
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|b| b.records_len() >= OUTPUT_BATCH_BYTES)
        {
            self.hand_over().await?;
        }
        Ok(())
    }

    /// Hands the pending output batch to the writer (which numbers and
    /// sends it).
    async fn hand_over(&mut self) -> Result<(), TaskError> {
        if let Some(batch) = self.pending.take() {
            self.writer
                .send_built_batch(&self.plan.output_topic, self.r, batch)
                .await?;
        }
        Ok(())
    }

    /// Writes the output record of one result, ranked `rank`, into the
    /// pending batch; skips it when it was written before a restart (see
    /// the module docs).
    fn write_result(&mut self, w: &WindowResult, rank: Option<u64>, now: i64) {
        self.counts.records_out += 1;
        if w.is_final && self.skip > 0 {
            self.skip -= 1;
            self.counts.skipped_on_recovery += 1;
            // Written by the task before the crash, after its checkpoint
            // (whose tally does not count it): it is in the output.
            return;
        }
        self.format.value_into(w, rank, &mut self.buf);
        let key = self.format.key_of(w);
        // Under `--emit changes`, tells a window's last (final) result from
        // its updates.
        let flag: &[u8] = if w.is_final { b"true" } else { b"false" };
        let changes = self.def.emit == EmitMode::Changes;
        let header = changes.then_some((&b"weir-final"[..], Some(flag)));
        self.pending
            .get_or_insert_with(|| BatchBuilder::new(-1, -1, -1, OUTPUT_BATCH_BYTES + 4096))
            .push(
                now,
                key.as_deref().map(str::as_bytes),
                Some(&self.buf),
                header.into_iter(),
            );
        // State queries split their answers off the same buffer.
        self.buf.clear();
    }

    /// Waits for the results written so far, then stores the shard,
    /// `position` (the next input offset) and the output end (see the module
    /// docs), commits the position to the job's group (a task reading the
    /// input itself) or deletes the repartition records read, and refreshes
    /// the report.
    async fn checkpoint(
        &mut self,
        committer: Option<&mut Consumer>,
        position: i64,
        admin: &Admin,
    ) -> Result<(), TaskError> {
        for p in [&self.writer, &self.producer] {
            p.flush().await?;
            if let Some(e) = p.take_detached_error() {
                return Err(e.into());
            }
        }
        let (producer_id, epoch) = self.writer.identity();
        // The sequence number of the next result emitted: results still
        // to skip have theirs already.
        let next_sequence = i64::from(
            self.writer
                .next_sequence(&self.output.topic, self.r)
                .await?,
        ) - self.skip;
        // Results still to skip were written before the crash: they count
        // in the output's end already.
        let output_end = end_of(admin, &self.output).await? - self.skip;
        let cp = AggregateCheckpoint {
            shard: &self.shard,
            position,
            output_end,
            tally: self.report.get().counts,
            // A new producer id still skipping has numbered none of the
            // skipped results: a restart from here gets a new one too.
            output: i32::try_from(next_sequence)
                .ok()
                .filter(|n| *n >= 0)
                .map(|next_sequence| OutputIdentity {
                    producer_id,
                    epoch,
                    next_sequence,
                }),
            router: self.direct.as_ref().map(|d| d.router.clone()),
        };
        let key = TaskId::Aggregate(self.r).state_key(&self.def.name);
        task::store_checkpoint(&self.producer, &self.def, &key, &cp).await?;
        if let Some(consumer) = committer {
            consumer
                .commit_offsets([(self.input.clone(), position)].into())
                .await?;
        } else if position > 0 {
            let below = BTreeMap::from([(self.input.clone(), position)]);
            if let Err(e) = admin.delete_records(&below).await {
                tracing::debug!(job = %self.def.name, error = %e, "repartition records not deleted yet");
            }
        }
        let log_end = end_of(admin, &self.input).await?;
        let op = &self.shard.op;
        let (open, firing, r) = (op.open_windows(), op.watermarks().firing(), self.r);
        let at = PartitionReport {
            position,
            log_end,
            watermark: firing,
        };
        let direct = self.direct.as_mut();
        self.report.update(|rep| {
            rep.open_windows = open;
            rep.watermark = firing;
            match direct {
                // An input partition, as a route task reports it.
                Some(d) => {
                    let at = PartitionReport {
                        watermark: d.router.wm,
                        ..at
                    };
                    d.rate.report(rep, r, at);
                }
                None => {
                    rep.shards = [(r, at)].into();
                    rep.caught_up = position >= log_end;
                }
            }
        });
        let report = self.report.get();
        task::publish_status(&self.producer, &self.def, TaskId::Aggregate(r), report).await
    }
}
