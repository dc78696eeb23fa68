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
//!
//! # One task for the whole job
//!
//! A job over an input of one partition, or created on a cluster of one
//! node ([`JobPlan::whole`]), has one task: it reads every input partition
//! in-process (each judged late by its own watermark, as its route task
//! would, and numbered as that source in the operator), runs the windows
//! of every group, and writes each result to the output partition its
//! group key hashes to (where the shard of that key would have written
//! it). Its checkpoint holds every input position and, for every output
//! partition, its end and next sequence number under the one identity; the
//! results for each output partition come in the same order on a replay
//! (a subsequence of an order that does not depend on the interleaving),
//! so the argument above holds partition by partition.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use weir_client::{
    sequence_after, Admin, Consumer, FetchedBatches, FetchedRecord, OffsetSpec, Producer,
    TopicPartition,
};
use weir_storage::BatchBuilder;

use super::checkpoint::{self, Checkpoints};
use super::job::{InputRate, JobDef, PartitionReport, SharedReport, Tally};
use super::local_read::{Incarnation, LocalReader};
use super::plan::JobPlan;
use super::repartition::{Routed, Router, Shard, Took};
use super::result_writer::{OutputPart, ResultWriter};
use super::row::Reader;
use super::task::{self, StateQuery, TaskContext, TaskError, TaskId};
use super::window::{EmitMode, WindowOperator};
use crate::broker::Broker;

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
    /// The creation of the first input partition `position` is in (a task
    /// reading its input itself).
    #[serde(default, skip_serializing_if = "Incarnation::is_unknown")]
    input: Incarnation,
    /// A task reading several input partitions: those after the first
    /// (whose are `position` and `router`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    more_inputs: Vec<InputMark>,
    /// A task writing several output partitions: those after the first
    /// (whose are `output_end` and the identity's sequence number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    more_outputs: Vec<OutputMark>,
}

/// Where a task stands in one more input partition it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InputMark {
    partition: i32,
    /// Next offset.
    position: i64,
    router: Router,
    /// The creation of the partition `position` is in.
    #[serde(default, skip_serializing_if = "Incarnation::is_unknown")]
    input: Incarnation,
}

/// One more output partition a task writes: its end when the checkpoint
/// was taken and the sequence number of its next result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct OutputMark {
    partition: i32,
    output_end: i64,
    next_sequence: i32,
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
    let (restored, checkpoints): (Option<AggregateCheckpoint<Shard>>, _) =
        checkpoint::load(&bootstrap, &def, &key).await?;
    // A task reading the input itself (no repartition topic) reads input
    // partition `r`, or every input partition when it runs the whole job;
    // the others read partition `r` of the repartition topic.
    let keyed = plan.copartitioned();
    let shard_topic = task::shard_topic(&def, &plan);
    let input_tps: Vec<TopicPartition> = if plan.whole() {
        (0..sources as i32)
            .map(|p| TopicPartition::new(&shard_topic, p))
            .collect()
    } else {
        vec![TopicPartition::new(&shard_topic, r)]
    };
    let output_tps: Vec<TopicPartition> = if plan.whole() {
        (0..shards)
            .map(|o| TopicPartition::new(&plan.output_topic, o))
            .collect()
    } else {
        vec![TopicPartition::new(&plan.output_topic, r)]
    };
    let output_ends = task::ends(&admin, &output_tps).await?;
    let end_now = |tp: &TopicPartition| output_ends.get(&tp.partition).copied().unwrap_or(0);
    // The operator's sources: every input partition, except for a task of
    // one input partition grouping by the record key (its own only).
    let op_sources = if keyed && !plan.whole() { 1 } else { sources };
    let restored = match restored {
        Some(c) if c.shard.op.watermarks().partitions() != op_sources => {
            return Err(TaskError::Topics(format!(
                "input topic {} has {sources} partitions now, but the job's windows were started \
                 over {}: drop the job and create it again",
                plan.input_topic,
                c.shard.op.watermarks().partitions()
            )));
        }
        other => other,
    };
    let (shard, positions, routers, skips, identity) = match restored {
        Some(c) => {
            report.update(|rep| rep.counts = c.tally);
            let marks: BTreeMap<i32, &OutputMark> =
                c.more_outputs.iter().map(|m| (m.partition, m)).collect();
            // Each output partition's end and next sequence number at the
            // checkpoint.
            let at_checkpoint: Vec<(i64, Option<i32>)> = output_tps
                .iter()
                .enumerate()
                .map(|(i, tp)| match (i, marks.get(&tp.partition)) {
                    (0, _) => (c.output_end, c.output.map(|id| id.next_sequence)),
                    (_, Some(m)) => (m.output_end, Some(m.next_sequence)),
                    (_, None) => (end_now(tp), None),
                })
                .collect();
            // Results the crashed task wrote after its checkpoint: replay
            // emits them again, in the same order, and they are skipped.
            // Only final results come in an order replay repeats: with every
            // change emitted too, nothing is skipped and the task writes
            // with a new identity (at least once).
            let skips: Vec<i64> = match def.emit {
                EmitMode::Final => output_tps
                    .iter()
                    .zip(&at_checkpoint)
                    .map(|(tp, (end, _))| (end_now(tp) - end).max(0))
                    .collect(),
                EmitMode::Changes => vec![0; output_tps.len()],
            };
            let identity = match (def.emit, c.output) {
                (EmitMode::Final, Some(id)) => at_checkpoint
                    .iter()
                    .zip(&skips)
                    .map(|((_, next), skip)| next.map(|n| sequence_after(n, *skip)))
                    .collect::<Option<Vec<i32>>>()
                    .map(|next| (id.producer_id, id.epoch, next)),
                _ => None,
            };
            let more: BTreeMap<i32, &InputMark> =
                c.more_inputs.iter().map(|m| (m.partition, m)).collect();
            let mut positions = Vec::new();
            let mut routers = Vec::new();
            for (i, tp) in input_tps.iter().enumerate() {
                let (position, router) = match (i, more.get(&tp.partition)) {
                    (0, _) => (Some((c.position, c.input)), c.router.clone()),
                    (_, Some(m)) => (Some((m.position, m.input)), Some(m.router.clone())),
                    (_, None) => (None, None),
                };
                positions.push(position);
                routers.push(router);
            }
            (c.shard, positions, routers, skips, identity)
        }
        None => {
            let op = WindowOperator::new(
                plan.window,
                def.grace_ms,
                plan.aggregates.iter().map(|a| a.kind).collect(),
                op_sources,
                def.emit,
            );
            let n = input_tps.len();
            (
                Shard::new(op),
                vec![None; n],
                vec![None; n],
                vec![0; output_tps.len()],
                None,
            )
        }
    };
    let mut inputs = Vec::new();
    for ((tp, position), router) in input_tps.iter().zip(positions).zip(routers) {
        let (position, incarnation) = match position {
            Some(p) => p,
            None if keyed => (
                task::start_offset(&admin, tp, &def).await?,
                Incarnation::default(),
            ),
            None => {
                let earliest = task::retrying(|| {
                    admin.list_offsets(std::slice::from_ref(tp), OffsetSpec::Earliest)
                })
                .await?;
                (
                    earliest.get(tp).map_or(0, |l| l.offset),
                    Incarnation::default(),
                )
            }
        };
        let direct = keyed.then(|| Direct {
            reader: Reader::new(&plan),
            router: router.unwrap_or_else(|| Router::new(plan.window, def.grace_ms)),
            source: if plan.whole() { tp.partition } else { 0 },
            idle: false,
            last_record: Instant::now(),
        });
        let reader = LocalReader::new(node.clone(), tp.clone(), position);
        inputs.push(Input {
            // An input partition read directly follows the topic's
            // creations; the repartition topic is the job's own.
            reader: match keyed {
                true => reader.following(incarnation),
                false => reader,
            },
            direct,
        });
    }
    let positions: Vec<i64> = inputs.iter().map(|i| i.reader.position()).collect();
    tracing::info!(job = %def.name, shard = r, epoch, ?positions, ?output_ends, ?skips, resumed = ?identity, "aggregate task starting");
    // A task reading the input itself commits its positions to the job's
    // consumer group, as route tasks do.
    let mut committer = match keyed {
        true => Some(task::group_committer(&bootstrap, &def, input_tps.clone()).await?),
        false => None,
    };
    let producer = task::producer(
        &bootstrap,
        &node,
        format!("weir-job-{}-state-{r}", def.name),
    )
    .await?;
    let mut writer =
        task::producer_config(&bootstrap, &node, format!("weir-job-{}-out-{r}", def.name));
    if let Some((producer_id, epoch, next)) = identity {
        // The first result written to each partition is the first not
        // skipped there.
        for (tp, next) in output_tps.iter().zip(next) {
            writer = writer.resume(producer_id, epoch, &tp.topic, tp.partition, next);
        }
    }
    let writer = writer.build().await?;
    let report_in = report.get().counts.records_in;
    let mut a = Aggregate {
        rate: InputRate::new(report_in),
        proctime: plan.time == super::plan::TimeSource::ProcessingTime,
        // Idleness matters only where other partitions' windows wait.
        idle_after: def
            .idle_timeout_ms
            .filter(|_| op_sources > 1)
            .map(|ms| Duration::from_millis(ms as u64)),
        results: ResultWriter::new(
            &plan,
            def.emit,
            output_tps
                .into_iter()
                .zip(skips)
                .map(|(tp, skip)| OutputPart::new(tp, skip))
                .collect(),
        ),
        output_id: None,
        def,
        plan,
        r,
        node: node.clone(),
        shard,
        producer,
        checkpoints,
        writer,
        report,
        counts: Tally::default(),
        late_rows: Vec::new(),
        routed_args: Vec::new(),
        stored: None,
    };
    // A first checkpoint before any result: a crash from here on replays
    // against a known output end.
    a.checkpoint(committer.as_mut(), &inputs, &admin).await?;
    // Running once that checkpoint is stored: a job `--from latest` killed
    // from then on resumes where it started, not at a later end (found in
    // CI: "running" was reported before it, and a kill right after lost the
    // records produced meanwhile).
    a.report.update(|rep| rep.state = "running".into());
    task::publish_status(
        &a.producer,
        &a.def,
        TaskId::Aggregate(r),
        a.report.get(),
        a.checkpoints.interval(),
    )
    .await?;
    loop {
        // Not raced against the stop signal or queries: a poll dropped
        // half-way could have moved the position past records it never
        // returned. It returns within 200 ms.
        let polled = poll_inputs(&mut inputs).await?;
        let renewed: Vec<usize> = (0..inputs.len())
            .filter(|&i| inputs[i].reader.take_renewed())
            .collect();
        if !renewed.is_empty() {
            // The input topic was created again: what was read is read
            // again after a checkpoint, or by another task.
            for (i, _) in &polled {
                let first = inputs[*i].reader.read_from();
                inputs[*i].reader.seek(first);
            }
            if !leads() {
                // Another node leads the new creation: this task's last
                // checkpoint is of the old one.
                for &i in &renewed {
                    inputs[i].reader.undo_renewal();
                }
                return a.stop_unled(&inputs, &admin).await;
            }
            // Results written after the checkpoint came from records of the
            // old creation, which replay no longer reads: none of the new
            // results is one of them. A checkpoint before any record of the
            // new creation is taken keeps it so across a crash (replay from
            // an earlier one would not know which results came from which
            // creation).
            for o in &mut a.results.outputs {
                o.skip = 0;
            }
            // Stored whatever it saw: results to skip are no more.
            a.stored = None;
            a.checkpoint(committer.as_mut(), &inputs, &admin).await?;
            continue;
        }
        while let Ok(q) = queries.try_recv() {
            let open = super::top_n::as_they_stand(&a.plan, a.shard.op.open_for(&q.key))
                .iter()
                .map(|(w, rank)| {
                    let r = &mut a.results;
                    let (_, value) = r.format.record(w, *rank, &mut r.buf);
                    serde_json::from_slice(&value).unwrap_or(serde_json::Value::Null)
                })
                .collect();
            let _ = q.reply.send(open);
        }
        let now_ms = task::now_ms();
        // The output topic's limit as this node's metadata has it now.
        let limit = a.output_record_limit();
        a.results.set_limit(limit);
        // Records are taken from the input whose watermark is lowest (one
        // that showed nothing first), switching as it passes another's: the
        // partitions move on together in event time, so the lowest
        // watermark, which fires the windows, holds few of them open (read
        // in turn, a partition with fewer records per second of event time
        // ran minutes ahead, its windows open meanwhile; BENCHMARKS.md,
        // "Stream jobs on one node without the repartition topic"). When
        // the input taken runs out of what was read while its log holds
        // more, the round ends and the others are read again from their
        // first record not taken.
        let mut records: Vec<_> = polled.iter().map(|(_, b)| b.records().peekable()).collect();
        let mut taken: Vec<Option<i64>> = vec![None; polled.len()];
        let wm_of =
            |inputs: &[Input], k: usize| inputs[polled[k].0].direct.as_ref().map(|d| d.router.wm);
        let at_start: Vec<_> = (0..polled.len()).map(|k| wm_of(&inputs, k)).collect();
        let mut current: Option<usize> = None;
        loop {
            let next = (0..polled.len())
                .filter(|&k| records[k].peek().is_some())
                .min_by_key(|&k| wm_of(&inputs, k));
            let Some(k) = next else { break };
            if let Some(c) = current.filter(|&c| c != k && records[c].peek().is_none()) {
                // The input taken so far ran out of what was read while
                // behind the next: if its log holds more, it is read again
                // before the others run ahead. Not when its watermark did
                // not move (records without a usable time, or a clock
                // shared by all under `PROCTIME()`): reading it again
                // first would only hold the others back.
                let (behind, moved) = (
                    wm_of(&inputs, c) < wm_of(&inputs, k),
                    wm_of(&inputs, c) != at_start[c],
                );
                if behind && moved && inputs[polled[c].0].reader.has_more() {
                    break;
                }
            }
            current = Some(k);
            let Some(rec) = records[k].next() else { break };
            let rec = rec?;
            let i = polled[k].0;
            // The task's leadership is that of its first partition.
            if i == 0 && rec.leader_epoch > epoch {
                a.deposed();
                return Ok(());
            }
            taken[k] = Some(rec.offset);
            let shift = inputs[i].reader.incarnation().shift;
            match inputs[i].direct.as_mut() {
                Some(d) => a.take_input(d, &rec, shift, now_ms).await?,
                None => a.take_routed(&rec),
            }
            if a.results.fired() && !leads() {
                return a.stop_unled(&inputs, &admin).await;
            }
            a.write().await?;
        }
        // Inputs with records read but not taken are read again from the
        // first of them.
        for (k, rest) in records.iter_mut().enumerate() {
            if rest.peek().is_some() {
                let i = polled[k].0;
                let first = inputs[i].reader.read_from();
                inputs[i].reader.seek(taken[k].map_or(first, |o| o + 1));
            }
        }
        for input in &mut inputs {
            if let Some(d) = input.direct.as_mut() {
                a.advance_input(d, now_ms);
            }
        }
        if a.results.fired() && !leads() {
            return a.stop_unled(&inputs, &admin).await;
        }
        a.write().await?;
        a.hand_over().await?;
        a.copy_late(&bootstrap).await?;
        a.publish_counts();
        if !leads() {
            return a.stop_unled(&inputs, &admin).await;
        }
        let stopping = *stop.borrow();
        if stopping || a.checkpoints.due() {
            a.checkpoint(committer.as_mut(), &inputs, &admin).await?;
        }
        if stopping {
            a.report.update(|rep| rep.state = "stopped".into());
            return Ok(());
        }
    }
}

/// Waits up to 200 ms for records in any of `inputs`.
async fn poll_inputs(inputs: &mut [Input]) -> Result<Vec<(usize, FetchedBatches)>, TaskError> {
    let mut readers: Vec<&mut LocalReader> = inputs.iter_mut().map(|i| &mut i.reader).collect();
    LocalReader::poll_any(&mut readers, Duration::from_millis(200)).await
}

/// One partition an aggregate task reads.
struct Input {
    reader: LocalReader,
    /// Set when it is an input partition read directly (no repartition
    /// topic).
    direct: Option<Direct>,
}

/// What a task reading an input partition itself needs beside the shard:
/// the route half of a route task.
struct Direct {
    reader: Reader,
    /// The partition's watermark; lateness.
    router: Router,
    /// The source its rows are in the operator: 0 in a task of one input
    /// partition, the partition in a task reading them all.
    source: i32,
    /// Whether it showed no record for the job's idle timeout.
    idle: bool,
    last_record: Instant,
}

impl Aggregate {
    /// Takes one record of the repartition topic.
    fn take_routed(&mut self, rec: &FetchedRecord<'_>) {
        let value = rec.value.unwrap_or_default();
        match Routed::decode(rec.key, value, &mut self.routed_args) {
            Ok(routed) => {
                let origin = match &routed {
                    Routed::Row { source, offset, .. } => Some((*source, *offset)),
                    Routed::Mark { .. } => None,
                };
                match self.shard.take(routed, &mut self.results) {
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

    /// Takes one record of an input partition the task reads itself (`d`,
    /// its offsets shifted by `shift`, see [`Incarnation`]): its row goes
    /// into the windows, or the record to the late topic.
    async fn take_input(
        &mut self,
        d: &mut Direct,
        rec: &FetchedRecord<'_>,
        shift: i64,
        now_ms: i64,
    ) -> Result<(), TaskError> {
        if self.idle_after.is_some() {
            // Awake again, if it was idle: the row tells the operator so.
            d.last_record = Instant::now();
            d.idle = false;
        }
        let (late, bad) = match d.reader.record(rec.key, rec.value, rec.timestamp, now_ms) {
            Ok(Some(row)) => match d.router.route(d.source, rec.offset, shift, row) {
                Some(routed) => match self.shard.take(routed, &mut self.results) {
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
        let p = if self.plan.whole() { d.source } else { self.r };
        task::tally_input(
            &mut self.counts,
            &self.producer,
            &self.node,
            &self.def,
            p,
            rec,
            late,
            bad,
        )
        .await
    }

    /// After a poll, for an input partition read directly (`d`): its
    /// watermark (moved to the clock under `PROCTIME()`), and whether it is
    /// idle when other partitions' windows wait for it, fire the windows
    /// they closed.
    fn advance_input(&mut self, d: &mut Direct, now_ms: i64) {
        if self.proctime {
            d.router.advance_to(now_ms);
        }
        if let Some(after) = self.idle_after {
            d.idle |= d.last_record.elapsed() >= after;
        }
        let mark = Routed::Mark {
            source: d.source,
            wm: d.router.wm,
            idle: d.idle,
        };
        self.shard.take(mark, &mut self.results);
    }
}

/// An aggregate task's IO state.
struct Aggregate {
    /// How fast it reads the input partitions it reads itself.
    rate: InputRate,
    /// Event time is processing time (`PROCTIME()`).
    proctime: bool,
    /// After how long without records an input partition the task reads
    /// itself stops holding the windows of the others back (none: never,
    /// or the operator has one source).
    idle_after: Option<Duration>,
    /// Writes the results as the operator fires them.
    results: ResultWriter,
    /// The output topic's id when this node's metadata first showed it:
    /// the task stops once that topic is gone (deleted, or deleted and
    /// created again), instead of retrying its writes into it for half a
    /// minute while `job describe` shows it running.
    output_id: Option<u128>,
    def: JobDef,
    plan: JobPlan,
    r: i32,
    /// This node (whether it still leads the input partitions).
    node: Weak<Broker>,
    shard: Shard,
    /// Writes checkpoints, statuses and late records.
    producer: Producer,
    /// Where its checkpoints go.
    checkpoints: Checkpoints,
    /// Writes the output partitions, with the identity its checkpoints
    /// keep.
    writer: Producer,
    report: Arc<SharedReport>,
    /// Counts not yet added to the report (it is updated once per poll).
    counts: Tally,
    /// Input partition and offset of rows late at the shard since the
    /// last poll (their windows fired while their partition was idle).
    late_rows: Vec<(i32, i64)>,
    /// The arguments of the repartition record being taken (reused).
    routed_args: Vec<serde_json::Value>,
    /// What the last checkpoint stored saw: each input's position and the
    /// tally. The same again means that no record was taken and no result
    /// or late record written since; the state can then differ only by
    /// watermarks that time moved (an idle input, `PROCTIME()`), which a
    /// restart from the stored checkpoint moves again alike, so it is not
    /// serialized and written again (found: an idle job with 43 MB of
    /// open windows spent 4.5 % of a core serializing it every 10 s).
    stored: Option<(Vec<i64>, Tally)>,
}

impl Aggregate {
    /// Stops once this node no longer leads the task's shard. When the
    /// creation of the input it read is gone (the topic was deleted, or
    /// deleted and created again), nobody leads it or reads it again: the
    /// task writes the results it holds and checkpoints, as its
    /// last word, so that a task on a new creation resumes with every
    /// record of the old one taken (results written after an earlier
    /// checkpoint came from records no replay reads). Otherwise the new
    /// leader's task goes on, and this one writes nothing more.
    async fn stop_unled(&mut self, inputs: &[Input], admin: &Admin) -> Result<(), TaskError> {
        if !inputs
            .iter()
            .any(|i| i.direct.is_some() && i.reader.creation_gone())
        {
            self.deposed();
            return Ok(());
        }
        self.write().await?;
        self.hand_over().await?;
        self.check_output()?;
        // The round's counts go into the checkpoint's tally.
        self.publish_counts();
        self.store(inputs, admin).await?;
        tracing::info!(job = %self.def.name, shard = self.r, "aggregate task stops: its input topic was deleted; it checkpointed what it took of it");
        self.report
            .update(|rep| rep.state = "stopped: its input topic was deleted".into());
        Ok(())
    }

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
            let limit = task::batch_limit(&self.node, &topic);
            for rec in &found {
                let out = task::late_record(&topic, p, rec.into(), "late".into(), limit);
                self.producer.send_detached(out).await?;
            }
        }
        Ok(())
    }

    /// Adds the counts since the last call to the report.
    fn publish_counts(&mut self) {
        let mut c = std::mem::take(&mut self.counts);
        c += std::mem::take(&mut self.results.counts);
        if c != Tally::default() {
            self.report.update(|rep| rep.counts += c);
        }
    }

    /// Finishes the results fired since the last call (with a Top-N, writes
    /// the best of each window) and hands the output batches that filled up
    /// to the writer.
    async fn write(&mut self) -> Result<(), TaskError> {
        if !self.results.fired() {
            return Ok(());
        }
        self.results.finish()?;
        // Checked where batches are sent, not per result: it reads this
        // node's metadata.
        if self.results.has_full() {
            self.check_output()?;
        }
        for o in &mut self.results.outputs {
            for batch in o.full.drain(..) {
                send(&self.writer, &o.tp, batch).await?;
            }
        }
        Ok(())
    }

    /// Hands every pending output batch to the writer (which numbers and
    /// sends them).
    async fn hand_over(&mut self) -> Result<(), TaskError> {
        if self.results.has_pending() {
            self.check_output()?;
        }
        for o in &mut self.results.outputs {
            hand_over(&self.writer, o).await?;
        }
        Ok(())
    }

    /// Bytes of records the output topic's `max.message.bytes` (as this
    /// node's metadata has it) lets one batch hold; batches are cut at the
    /// smaller of it and [`super::result_writer::OUTPUT_BATCH_BYTES`]
    /// (found from outside: a job writing into a topic made with a 20 KB
    /// limit failed over and over with MESSAGE_TOO_LARGE).
    fn output_record_limit(&self) -> usize {
        task::batch_limit(&self.node, &self.plan.output_topic)
            .saturating_sub(weir_storage::HEADER_LEN)
    }

    /// Stops the task once the output topic it writes was deleted (found
    /// from outside: it retried its writes for 30 s, reading nothing, while
    /// `job describe` said running and caught up). Restarted, the task
    /// creates the topic again and goes on from its checkpoint; what the
    /// deleted topic held is gone with it.
    fn check_output(&mut self) -> Result<(), TaskError> {
        let Some(b) = self.node.upgrade() else {
            return Ok(());
        };
        let now = b.meta.topic(&self.plan.output_topic).map(|t| t.id);
        match (self.output_id, now) {
            (None, now) => self.output_id = now,
            (Some(id), Some(now)) if id == now => {}
            (Some(_), _) => {
                return Err(TaskError::Topics(format!(
                    "output topic {} was deleted; the task creates it again and goes on from \
                     its last checkpoint",
                    self.plan.output_topic
                )))
            }
        }
        Ok(())
    }

    /// Refuses to go on, for a shard of a repartitioned job, when the
    /// input has another number of partitions than its windows were started
    /// over (added, or the topic created again with another count: a new
    /// partition's rows would move no watermark, a partition gone would
    /// hold every window open), as it refuses at start; and for a task
    /// running the whole job, when the input gained partitions (its
    /// operator has one source per partition it had, and a group could now
    /// be split) or another node leads one of them (they are read from this
    /// node's replicas; the job was made for a cluster of one node).
    fn check_inputs(&self, inputs: &[Input]) -> Result<(), TaskError> {
        let Some(b) = self.node.upgrade() else {
            return Ok(());
        };
        let Some(t) = b.meta.topic(&self.plan.input_topic) else {
            return Ok(());
        };
        if !self.plan.copartitioned() {
            let started = self.shard.op.watermarks().partitions();
            if t.partitions as usize != started {
                return Err(TaskError::Topics(format!(
                    "input topic {} has {} partitions now, but the job's windows were started \
                     over {started}: drop the job and create it again",
                    self.plan.input_topic, t.partitions
                )));
            }
            return Ok(());
        }
        if !self.plan.whole() {
            return Ok(());
        }
        if t.partitions as usize != inputs.len() {
            let outputs = self.results.outputs.len() as i32;
            return Err(TaskError::Topics(
                self.plan
                    .partitions_mismatch(t.partitions, outputs)
                    .unwrap_or_else(|| {
                        format!(
                            "input topic {} has {} partitions now, but the job's one task was \
                             started over {}: drop the job and create it again",
                            self.plan.input_topic,
                            t.partitions,
                            inputs.len()
                        )
                    }),
            ));
        }
        for i in inputs {
            let p = i.reader.partition().partition;
            let (leader, _) = b.leader_of(&self.plan.input_topic, &t, p);
            if leader >= 0 && leader != b.config.node_id {
                return Err(TaskError::Topics(format!(
                    "the job was created on a cluster of one node, so one task reads every \
                     partition of {} on its node, but node {leader} leads partition {p}: drop the \
                     job and create it again",
                    self.plan.input_topic
                )));
            }
        }
        Ok(())
    }

    /// Waits for the results written so far, then stores the shard, the
    /// position in each partition read and the output ends (see the module
    /// docs), commits the positions to the job's group (a task reading the
    /// input itself) or deletes the repartition records read, and
    /// refreshes the report.
    async fn checkpoint(
        &mut self,
        committer: Option<&mut Consumer>,
        inputs: &[Input],
        admin: &Admin,
    ) -> Result<(), TaskError> {
        self.check_inputs(inputs)?;
        self.check_output()?;
        self.store(inputs, admin).await?;
        self.committed(committer, inputs, admin).await
    }

    /// Waits for the results written so far, then stores the shard, the
    /// position in each partition read and the output ends: the checkpoint
    /// a restarted task resumes from.
    async fn store(&mut self, inputs: &[Input], admin: &Admin) -> Result<(), TaskError> {
        let seen = (
            inputs
                .iter()
                .map(|i| i.reader.position())
                .collect::<Vec<_>>(),
            self.report.get().counts,
        );
        if self.stored.as_ref() == Some(&seen) {
            self.checkpoints.unchanged();
            return Ok(());
        }
        for p in [&self.writer, &self.producer] {
            p.flush().await?;
            if let Some(e) = p.take_detached_error() {
                return Err(e.into());
            }
        }
        let (producer_id, epoch) = self.writer.identity();
        let output_tps: Vec<TopicPartition> =
            self.results.outputs.iter().map(|o| o.tp.clone()).collect();
        let ends = task::ends(admin, &output_tps).await?;
        let mut marks = Vec::new();
        for o in &self.results.outputs {
            // The sequence number of the next result emitted: results
            // still to skip have theirs already.
            let next_sequence = i64::from(
                self.writer
                    .next_sequence(&o.tp.topic, o.tp.partition)
                    .await?,
            ) - o.skip;
            // Results still to skip were written before the crash: they
            // count in the output's end already.
            let output_end = ends.get(&o.tp.partition).copied().unwrap_or(0) - o.skip;
            marks.push((
                o.tp.partition,
                output_end,
                i32::try_from(next_sequence).ok(),
            ));
        }
        // A new producer id still skipping has numbered none of the skipped
        // results: a restart from here gets a new one too.
        let numbered = marks.iter().all(|(_, _, n)| n.is_some_and(|n| n >= 0));
        let first_input = inputs.first();
        let cp = AggregateCheckpoint {
            shard: &self.shard,
            position: first_input.map_or(0, |i| i.reader.position()),
            output_end: marks.first().map_or(0, |m| m.1),
            tally: self.report.get().counts,
            output: marks
                .first()
                .and_then(|m| m.2)
                .filter(|_| numbered)
                .map(|next_sequence| OutputIdentity {
                    producer_id,
                    epoch,
                    next_sequence,
                }),
            router: first_input
                .and_then(|i| i.direct.as_ref())
                .map(|d| d.router.clone()),
            input: first_input
                .map(|i| i.reader.incarnation())
                .unwrap_or_default(),
            more_inputs: inputs
                .iter()
                .skip(1)
                .filter_map(|i| {
                    Some(InputMark {
                        partition: i.reader.partition().partition,
                        position: i.reader.position(),
                        router: i.direct.as_ref()?.router.clone(),
                        input: i.reader.incarnation(),
                    })
                })
                .collect(),
            more_outputs: marks
                .iter()
                .skip(1)
                .map(|&(partition, output_end, next)| OutputMark {
                    partition,
                    output_end,
                    next_sequence: next.unwrap_or(0),
                })
                .collect(),
        };
        self.checkpoints
            .store(&self.producer, &self.def, &cp)
            .await?;
        self.stored = Some(seen);
        Ok(())
    }

    /// The checkpoint's commit of the positions and report, after
    /// [`Aggregate::store`].
    async fn committed(
        &mut self,
        committer: Option<&mut Consumer>,
        inputs: &[Input],
        admin: &Admin,
    ) -> Result<(), TaskError> {
        let read: Vec<TopicPartition> = inputs
            .iter()
            .map(|i| i.reader.partition().clone())
            .collect();
        let positions: BTreeMap<TopicPartition, i64> = inputs
            .iter()
            .map(|i| (i.reader.partition().clone(), i.reader.position()))
            .collect();
        if let Some(consumer) = committer {
            consumer.commit_offsets(positions.clone()).await?;
        } else if positions.values().any(|p| *p > 0) {
            if let Err(e) = admin.delete_records(&positions).await {
                tracing::debug!(job = %self.def.name, error = %e, "repartition records not deleted yet");
            }
        }
        let log_ends = task::ends(admin, &read).await?;
        let op = &self.shard.op;
        let (open, firing, r) = (op.open_windows(), op.watermarks().firing(), self.r);
        let at = |i: &Input| PartitionReport {
            position: i.reader.position(),
            log_end: log_ends
                .get(&i.reader.partition().partition)
                .copied()
                .unwrap_or(0),
            watermark: firing,
        };
        let direct: BTreeMap<i32, PartitionReport> = inputs
            .iter()
            .filter_map(|i| {
                let d = i.direct.as_ref()?;
                let p = if self.plan.whole() { d.source } else { r };
                Some((
                    p,
                    PartitionReport {
                        watermark: d.router.wm,
                        ..at(i)
                    },
                ))
            })
            .collect();
        let shard = inputs.first().map(at);
        let rate = &mut self.rate;
        self.report.update(|rep| {
            rep.open_windows = open;
            rep.watermark = firing;
            match shard {
                // Input partitions, as route tasks report them.
                _ if !direct.is_empty() => rate.report(rep, direct),
                Some(at) => {
                    rep.shards = [(r, at)].into();
                    rep.caught_up = at.position >= at.log_end;
                }
                None => {}
            }
        });
        let report = self.report.get();
        let every = self.checkpoints.interval();
        task::publish_status(
            &self.producer,
            &self.def,
            TaskId::Aggregate(r),
            report,
            every,
        )
        .await
    }
}

/// Hands `o`'s full and pending batches to `writer` (which numbers and
/// sends them), in the order they were written.
async fn hand_over(writer: &Producer, o: &mut OutputPart) -> Result<(), TaskError> {
    for batch in o.full.drain(..).chain(o.pending.take()) {
        send(writer, &o.tp, batch).await?;
    }
    Ok(())
}

/// Hands one output batch of `tp` to `writer`.
async fn send(
    writer: &Producer,
    tp: &TopicPartition,
    batch: BatchBuilder,
) -> Result<(), TaskError> {
    writer
        .send_built_batch(&tp.topic, tp.partition, batch)
        .await?;
    Ok(())
}
