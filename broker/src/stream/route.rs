//! The route task of one input partition: reads it with Weir's own client,
//! turns each record into a row, judges lateness by the partition's
//! watermark ([`Router`]), writes each on-time row to its key's shard of the
//! repartition topic and late and unreadable records to the late topic, and
//! tells every shard where the partition's watermark stands.
//!
//! Its checkpoint is the next input offset and the router (the watermark).
//! Rows written after it are written again by a task that restarts from it;
//! the shards drop them by their source offset (see [`super::repartition`]),
//! so routing is exactly once where it matters. The late topic is written
//! at least once.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use weir_client::{Admin, BatchRecord, FetchedRecord, Producer, ProducerRecord, TopicPartition};

use super::checkpoint::{self, Checkpoints};
use super::job::{InputRate, JobDef, PartitionReport, SharedReport, Tally};
use super::local_read::{Incarnation, LocalReader};
use super::plan::{JobPlan, TimeSource};
use super::repartition::{self, Routed, Router};
use super::row::Reader;
use super::task::{self, TaskContext, TaskError, TaskId};
use crate::broker::Broker;

/// How often, at most, a route task tells the shards its partition's
/// watermark moved.
const MARK_EVERY: Duration = Duration::from_millis(100);

/// What a route task's checkpoint holds.
#[derive(Debug, Serialize, Deserialize)]
struct RouteCheckpoint {
    /// Next input offset.
    position: i64,
    router: Router,
    /// The task's counts up to `position` (absent before they were kept).
    #[serde(default)]
    tally: Tally,
    /// The creation of the input topic `position` is in.
    #[serde(default, skip_serializing_if = "Incarnation::is_unknown")]
    input: Incarnation,
}

/// Runs the route task of input partition `p` of the job in `cx` until its
/// stop signal turns true.
pub async fn run(cx: TaskContext, p: i32) -> Result<(), TaskError> {
    let (admin, _, shards) = cx.setup().await?;
    let TaskContext {
        def,
        plan,
        bootstrap,
        report,
        stop,
        node,
    } = cx;
    let key = TaskId::Route(p).state_key(&def.name);
    let (restored, checkpoints): (Option<RouteCheckpoint>, _) =
        checkpoint::load(&bootstrap, &def, &key).await?;
    let tp = TopicPartition::new(&plan.input_topic, p);
    // A concrete start before the first checkpoint, so that a crash before
    // the next one resumes where this run started (a `--from latest` job
    // must not replay the whole history then).
    let (position, router, incarnation) = match restored {
        Some(c) => {
            report.update(|rep| rep.counts = c.tally);
            (c.position, c.router, c.input)
        }
        None => (
            task::start_offset(&admin, &tp, &def).await?,
            Router::new(plan.window, def.grace_ms),
            Incarnation::default(),
        ),
    };
    let mut consumer = task::group_committer(&bootstrap, &def, vec![tp.clone()]).await?;
    let input = LocalReader::new(node.clone(), tp.clone(), position).following(incarnation);
    let producer = task::producer(&bootstrap, &node, format!("weir-job-{}-{p}", def.name)).await?;
    tracing::info!(job = %def.name, partition = p, position, shards, "route task starting");
    let report_in = report.get().counts.records_in;
    let mut r = Route {
        reader: Reader::new(&plan),
        proctime: plan.time == TimeSource::ProcessingTime,
        plan,
        repartition: repartition::topic(&def),
        shards,
        p,
        tp,
        def,
        router,
        input,
        producer,
        node: node.clone(),
        checkpoints,
        routed: (0..shards).map(|_| Vec::new()).collect(),
        buf: BytesMut::with_capacity(64 * 1024),
        marked: (None, false),
        marked_at: Instant::now(),
        idle: false,
        last_record: Instant::now(),
        report,
        counts: Tally::default(),
        rate: InputRate::new(report_in),
    };
    r.checkpoint(&mut consumer, &admin).await?;
    // Running once a first checkpoint is stored (as aggregate tasks).
    r.report.update(|rep| rep.state = "running".into());
    task::publish_status(
        &r.producer,
        &r.def,
        TaskId::Route(p),
        r.report.get(),
        r.checkpoints.interval(),
    )
    .await?;
    loop {
        // Not raced against the stop signal: a poll dropped half-way could
        // have moved the position past records it never returned. It
        // returns within 200 ms.
        let batches = r.input.poll(Duration::from_millis(200)).await?;
        let now = (Instant::now(), task::now_ms());
        for rec in batches.records() {
            r.take(&rec?, now).await?;
        }
        r.send_routed().await?;
        r.publish_counts();
        if r.proctime {
            r.router.advance_to(now.1);
        }
        r.tend_idle();
        r.mark().await?;
        let stopping = *stop.borrow();
        if stopping || r.checkpoints.due() {
            r.checkpoint(&mut consumer, &admin).await?;
        }
        if stopping {
            r.report.update(|rep| rep.state = "stopped".into());
            return Ok(());
        }
    }
}

/// A route task's IO state.
struct Route {
    reader: Reader,
    /// The job's plan (which shard a row goes to).
    plan: JobPlan,
    repartition: String,
    shards: i32,
    p: i32,
    tp: TopicPartition,
    def: JobDef,
    router: Router,
    /// Reads the input partition; its position is the next input offset.
    input: LocalReader,
    producer: Producer,
    /// This node (the late topic's limit).
    node: Weak<Broker>,
    /// Where its checkpoints go.
    checkpoints: Checkpoints,
    /// The rows of this poll routed to each shard, not sent yet.
    routed: Vec<Vec<BatchRecord>>,
    /// Where routed rows are encoded: one allocation shared by many.
    buf: BytesMut,
    /// The watermark and idleness last told to every shard, and when.
    marked: (Option<i64>, bool),
    marked_at: Instant,
    /// Event time is processing time (`PROCTIME()`).
    proctime: bool,
    idle: bool,
    last_record: Instant,
    report: Arc<SharedReport>,
    /// Records in, late and unreadable since the report was last updated.
    counts: Tally,
    rate: InputRate,
}

impl Route {
    /// Routes one input record.
    async fn take(
        &mut self,
        rec: &FetchedRecord<'_>,
        now: (Instant, i64),
    ) -> Result<(), TaskError> {
        self.last_record = now.0;
        self.idle = false;
        let (late, bad) = match self.reader.record(rec.key, rec.value, rec.timestamp, now.1) {
            Ok(Some(row)) => {
                match self
                    .router
                    .route(self.p, rec.offset, self.input.incarnation().shift, row)
                {
                    Some(routed) => {
                        let shard = match &routed {
                            Routed::Row { row, .. } => weir_client::partitioner::partition_for_key(
                                &self.plan.shard_key(row.key),
                                self.shards,
                            ),
                            Routed::Mark { .. } => 0,
                        };
                        let (key, value) = routed.encode(&mut self.buf);
                        let out = BatchRecord {
                            key: Some(key.unwrap_or_default()),
                            value: Some(value),
                            headers: Vec::new(),
                            timestamp: Some(rec.timestamp),
                        };
                        if let Some(rows) = usize::try_from(shard)
                            .ok()
                            .and_then(|i| self.routed.get_mut(i))
                        {
                            rows.push(out);
                        }
                        (false, None)
                    }
                    None => (true, None),
                }
            }
            Ok(None) => (false, None),
            Err(e) => (false, Some(e.to_string())),
        };
        task::tally_input(
            &mut self.counts,
            &self.producer,
            &self.node,
            &self.def,
            self.p,
            rec,
            late,
            bad,
        )
        .await
    }

    /// Sends the rows routed since the last call, one batch per shard
    /// (before any mark that follows them: a shard reads its rows in the
    /// order they were routed).
    async fn send_routed(&mut self) -> Result<(), TaskError> {
        for (shard, rows) in (0..).zip(self.routed.iter_mut()) {
            if !rows.is_empty() {
                self.producer
                    .send_detached_batch(&self.repartition, shard, std::mem::take(rows))
                    .await?;
            }
        }
        Ok(())
    }

    /// Adds the counts since the last call to the report (once per poll,
    /// not per record).
    fn publish_counts(&mut self) {
        let c = std::mem::take(&mut self.counts);
        if c.records_in > 0 {
            self.report.update(|r| r.counts += c);
        }
    }

    /// Marks the partition idle after the job's idle timeout.
    fn tend_idle(&mut self) {
        if let Some(ms) = self.def.idle_timeout_ms {
            if self.last_record.elapsed() >= Duration::from_millis(ms as u64) {
                self.idle = true;
            }
        }
    }

    /// Tells every shard the partition's watermark and idleness, when they
    /// changed since last told: at once when idleness changed, otherwise at
    /// most every [`MARK_EVERY`] (a busy partition's watermark moves with
    /// every poll).
    async fn mark(&mut self) -> Result<(), TaskError> {
        let now = (self.router.wm, self.idle);
        if now == self.marked || (now.1 == self.marked.1 && self.marked_at.elapsed() < MARK_EVERY) {
            return Ok(());
        }
        self.marked_at = Instant::now();
        let (_, bytes) = Routed::Mark {
            source: self.p,
            wm: now.0,
            idle: now.1,
        }
        .encode(&mut self.buf);
        for shard in 0..self.shards {
            let out = ProducerRecord::new(self.repartition.clone(), bytes.clone()).partition(shard);
            self.producer.send_detached(out).await?;
        }
        self.marked = now;
        Ok(())
    }

    /// Waits for what was written so far, then stores the input position
    /// and the router, commits the position to the job's consumer group,
    /// and refreshes the report.
    async fn checkpoint(
        &mut self,
        consumer: &mut weir_client::Consumer,
        admin: &Admin,
    ) -> Result<(), TaskError> {
        self.producer.flush().await?;
        if let Some(e) = self.producer.take_detached_error() {
            return Err(e.into());
        }
        let position = self.input.position();
        let cp = RouteCheckpoint {
            position,
            router: self.router.clone(),
            tally: self.report.get().counts,
            input: self.input.incarnation(),
        };
        self.checkpoints
            .store(&self.producer, &self.def, &cp)
            .await?;
        consumer
            .commit_offsets([(self.tp.clone(), position)].into())
            .await?;
        let end = task::ends(admin, std::slice::from_ref(&self.tp))
            .await?
            .get(&self.p)
            .copied()
            .unwrap_or(0);
        let at = PartitionReport {
            position,
            log_end: end,
            watermark: self.router.wm,
        };
        self.report
            .update(|rep| self.rate.report(rep, [(self.p, at)].into()));
        let report = self.report.get();
        let every = self.checkpoints.interval();
        task::publish_status(
            &self.producer,
            &self.def,
            TaskId::Route(self.p),
            report,
            every,
        )
        .await
    }
}
