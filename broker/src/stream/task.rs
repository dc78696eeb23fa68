//! The IO shell of a job: reads every input partition with Weir's own
//! client, feeds the window operator, writes results to the output topic,
//! late and unreadable records to the late topic, and checkpoints.
//!
//! # Checkpoints and exactly once
//!
//! When it starts, and then every [`CHECKPOINT_EVERY`] (and when stopped),
//! the task waits until every result written so far is acknowledged, then
//! writes one record keyed by the job's name to the compacted topic
//! [`STATE_TOPIC`]: the operator's state, the next input offsets, and the
//! end offset of each output partition. It also commits the input offsets
//! to the job's consumer group (so `weir group describe` shows its lag).
//!
//! A task that starts again, here or on another node, resumes from the last
//! checkpoint. Final results are emitted in an order that does not depend on
//! how the input partitions interleave: by window close, then group key
//! (the firing watermark only grows, and windows closing together fire
//! together, sorted). So the results replay from the checkpoint emits are
//! the ones the crashed task emitted after it, in the same order in every
//! output partition, and the task skips as many of them in each output
//! partition as that partition gained since the checkpoint. Every final
//! result is written exactly once, provided the job is its output topic's
//! only writer. Updates of open windows (`--emit changes`) and the late
//! topic are written at least once (their order depends on the
//! interleaving).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use weir_client::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture, NewTopic,
    OffsetSpec, Producer, ProducerConfig, ProducerRecord, StartPosition, TopicPartition,
};

use super::job::{JobDef, JobReport, PartitionReport, SharedReport, StartFrom};
use super::plan::JobPlan;
use super::row::Reader;
use super::window::{Outcome, WindowOperator, WindowResult};

/// The compacted topic of job checkpoints (key: job name).
pub const STATE_TOPIC: &str = "__weir_job_state";
/// How often a running task checkpoints.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The largest checkpoint record (the state topic's `max.message.bytes`).
const MAX_CHECKPOINT_BYTES: usize = 64 << 20;

/// Why a task stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// Talking to the cluster failed.
    #[error(transparent)]
    Client(#[from] weir_client::Error),
    /// The stored checkpoint could not be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// A read of a key's open windows (queryable state).
#[derive(Debug)]
pub struct StateQuery {
    /// The group key.
    pub key: super::window::GroupKey,
    /// Gets each open window as the output record it will become.
    pub reply: oneshot::Sender<Vec<serde_json::Value>>,
}

/// What a checkpoint holds.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    /// The statement it was taken under (a changed job starts afresh).
    sql: String,
    operator: WindowOperator,
    /// Next offset of each input partition.
    positions: BTreeMap<i32, i64>,
    /// End offset of each output partition when it was taken.
    #[serde(default)]
    output_ends: BTreeMap<i32, i64>,
}

/// Runs job `def` (plan `plan`) against the cluster at `bootstrap` until
/// `stop` turns true; reports into `report`.
pub async fn run(
    def: JobDef,
    plan: JobPlan,
    bootstrap: String,
    report: Arc<SharedReport>,
    stop: watch::Receiver<bool>,
    mut queries: mpsc::Receiver<StateQuery>,
) -> Result<(), TaskError> {
    let admin = Admin::connect(ClientConfig::new(&bootstrap)).await?;
    let inputs = admin.partitions(&plan.input_topic).await?;
    let n = inputs.len();
    prepare_topics(&admin, &def, &plan, n as i32).await?;
    let restored = load_checkpoint(&bootstrap, &def).await?;
    let mut op = match &restored {
        Some(c) => c.operator.clone(),
        None => WindowOperator::new(
            plan.window,
            def.grace_ms,
            plan.aggregates.iter().map(|a| a.kind).collect(),
            n,
            def.emit,
        ),
    };
    let mut consumer = ConsumerConfig::new(&bootstrap)
        .group(format!("weir-job-{}", def.name))
        .auto_commit(false)
        .client_id(format!("weir-job-{}", def.name))
        .build()
        .await?;
    consumer.assign(inputs.clone());
    // Concrete start offsets before the first checkpoint, so that a crash
    // before the next one resumes where this run started (a `--from
    // latest` job must not replay the whole history then).
    let start = match &restored {
        Some(c) => c.positions.clone(),
        None => {
            let spec = match def.from {
                StartFrom::Earliest => OffsetSpec::Earliest,
                StartFrom::Latest => OffsetSpec::Latest,
                StartFrom::Timestamp(t) => OffsetSpec::Timestamp(t),
            };
            let found = admin.list_offsets(&inputs, spec).await?;
            let latest = ends(&admin, &inputs).await?;
            inputs
                .iter()
                .map(|tp| {
                    let end = latest.get(&tp.partition).copied().unwrap_or(0);
                    // No record at or after the time: start at the end.
                    let at = found
                        .get(tp)
                        .map_or(end, |l| if l.offset < 0 { end } else { l.offset });
                    (tp.partition, at)
                })
                .collect()
        }
    };
    for tp in &inputs {
        consumer.seek(tp, start.get(&tp.partition).copied().unwrap_or(0))?;
    }
    let outputs = admin.partitions(&plan.output_topic).await?;
    let ends_now = ends(&admin, &outputs).await?;
    // Results the crashed task wrote after its checkpoint: replay emits
    // them again, in the same order, and they are skipped.
    // Only final results come in an order replay repeats: with every
    // change emitted too, nothing is skipped (at least once).
    let skip: BTreeMap<i32, i64> = match &restored {
        Some(c) if def.emit == super::window::EmitMode::Final => ends_now
            .iter()
            .map(|(q, end)| (*q, end - c.output_ends.get(q).copied().unwrap_or(*end)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        _ => BTreeMap::new(),
    };
    tracing::info!(
        job = %def.name,
        restored = restored.is_some(),
        positions = ?restored.as_ref().map(|c| &c.positions),
        checkpoint_output_ends = ?restored.as_ref().map(|c| &c.output_ends),
        output_ends = ?ends_now,
        ?skip,
        "job task resuming"
    );
    let producer = ProducerConfig::new(&bootstrap)
        .acks(Acks::All)
        .idempotent(true)
        .linger(Duration::from_millis(5))
        .client_id(format!("weir-job-{}", def.name))
        .build()
        .await?;
    let mut shell = Shell {
        reader: Reader::new(&plan),
        counts: Counts::default(),
        def,
        plan,
        inputs,
        producer,
        pending: Vec::new(),
        positions: start,
        outputs,
        skip,
        last_record: vec![Instant::now(); n],
        report,
        counted: (Instant::now(), 0),
    };
    shell.report.update(|r| r.state = "running".into());
    let mut out = Vec::new();
    // A first checkpoint before any result: a crash from here on replays
    // against known output ends.
    shell.checkpoint(&op, &mut consumer, &admin).await?;
    let mut last_checkpoint = Instant::now();
    loop {
        // Not raced against the stop signal or queries: a poll dropped
        // half-way could have moved positions past records it never
        // returned. It returns within 200 ms.
        let records = consumer.poll(Duration::from_millis(200)).await?;
        while let Ok(q) = queries.try_recv() {
            let open = op
                .open_for(&q.key)
                .iter()
                .map(|r| {
                    let (_, value) = super::output::record(&shell.plan, r);
                    serde_json::from_slice(&value).unwrap_or(serde_json::Value::Null)
                })
                .collect();
            let _ = q.reply.send(open);
        }
        // One clock read per poll, not per record.
        let now = (
            Instant::now(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        );
        for r in records {
            shell.take(&mut op, r, now, &mut out).await?;
            shell.write(&mut out).await?;
        }
        shell.tend_idle(&mut op, &mut out);
        shell.write(&mut out).await?;
        shell.publish_counts();
        let stopping = *stop.borrow();
        if stopping || last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            shell.checkpoint(&op, &mut consumer, &admin).await?;
            last_checkpoint = Instant::now();
        }
        if stopping {
            shell.report.update(|r| r.state = "stopped".into());
            return Ok(());
        }
    }
}

/// Counts not yet added to the report (it is updated once per poll).
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    records_in: u64,
    late: u64,
    bad: u64,
    records_out: u64,
    skipped: u64,
}

/// The task's IO state.
struct Shell {
    reader: Reader,
    counts: Counts,
    def: JobDef,
    plan: JobPlan,
    inputs: Vec<TopicPartition>,
    producer: Producer,
    /// Results written since the last checkpoint, not yet known acknowledged.
    pending: Vec<DeliveryFuture>,
    positions: BTreeMap<i32, i64>,
    /// The output topic's partitions.
    outputs: Vec<TopicPartition>,
    /// Results to skip per output partition: written before a crash.
    skip: BTreeMap<i32, i64>,
    /// When each input partition last gave a record.
    last_record: Vec<Instant>,
    report: Arc<SharedReport>,
    /// Start of the rate interval and records in at its start.
    counted: (Instant, u64),
}

impl Shell {
    /// Feeds one input record to the operator.
    async fn take(
        &mut self,
        op: &mut WindowOperator,
        r: ConsumerRecord,
        now: (Instant, i64),
        out: &mut Vec<WindowResult>,
    ) -> Result<(), TaskError> {
        let p = r.partition;
        self.positions.insert(p, r.offset + 1);
        if let Some(t) = self.last_record.get_mut(p as usize) {
            *t = now.0;
        }
        let value = r.value.clone().unwrap_or_default();
        let (late, bad) = match self.reader.row(&value, r.timestamp, now.1) {
            Ok(Some(row)) => (op.process(p as usize, row, out) == Outcome::Late, None),
            Ok(None) => (false, None),
            Err(e) => (false, Some(e.to_string())),
        };
        self.counts.records_in += 1;
        self.counts.late += u64::from(late);
        self.counts.bad += u64::from(bad.is_some());
        if late || bad.is_some() {
            if let Some(topic) = &self.def.late_topic {
                let mut rec = ProducerRecord::new(topic.clone(), value)
                    .header("weir-source-partition", p.to_string())
                    .header("weir-source-offset", r.offset.to_string())
                    .header("weir-reason", bad.unwrap_or_else(|| "late".into()))
                    .timestamp(r.timestamp);
                if let Some(k) = r.key {
                    rec = rec.key(k);
                }
                self.pending.push(self.producer.send(rec).await?);
            }
        }
        Ok(())
    }

    /// Adds the counts since the last call to the report.
    fn publish_counts(&mut self) {
        let c = std::mem::take(&mut self.counts);
        if c != Counts::default() {
            self.report.update(|rep| {
                rep.records_in += c.records_in;
                rep.late += c.late;
                rep.bad += c.bad;
                rep.records_out += c.records_out;
                rep.skipped_on_recovery += c.skipped;
            });
        }
    }

    /// Writes the results in `out` to the output topic.
    async fn write(&mut self, out: &mut Vec<WindowResult>) -> Result<(), TaskError> {
        let (mut written, mut skipped) = (0u64, 0u64);
        for r in out.drain(..) {
            // The record's timestamp is the time it is written, not the
            // window's end: results of a replay of old history would
            // otherwise fall under retention at once.
            let (key, value) = super::output::record(&self.plan, &r);
            let q = weir_client::partitioner::partition_for_key(&key, self.outputs.len() as i32);
            if r.is_final {
                if let Some(n) = self.skip.get_mut(&q).filter(|n| **n > 0) {
                    *n -= 1;
                    skipped += 1;
                    continue;
                }
            }
            let mut rec = ProducerRecord::new(self.plan.output_topic.clone(), Bytes::from(value))
                .key(Bytes::from(key))
                .partition(q);
            if self.def.emit == super::window::EmitMode::Changes {
                // Tells a window's last (final) result from its updates.
                rec = rec.header("weir-final", if r.is_final { "true" } else { "false" });
            }
            self.pending.push(self.producer.send(rec).await?);
            written += 1;
        }
        self.counts.records_out += written;
        self.counts.skipped += skipped;
        Ok(())
    }

    /// Marks input partitions idle after the job's idle timeout.
    fn tend_idle(&mut self, op: &mut WindowOperator, out: &mut Vec<WindowResult>) {
        let Some(ms) = self.def.idle_timeout_ms else {
            return;
        };
        let timeout = Duration::from_millis(ms as u64);
        for (p, at) in self.last_record.iter().enumerate() {
            if at.elapsed() >= timeout {
                op.set_idle(p, true, out);
            }
        }
    }

    /// Waits for the results written so far, then stores the state and the
    /// input positions (see the module docs); refreshes the report.
    async fn checkpoint(
        &mut self,
        op: &WindowOperator,
        consumer: &mut Consumer,
        admin: &Admin,
    ) -> Result<(), TaskError> {
        self.producer.flush().await?;
        for d in self.pending.drain(..) {
            d.await?;
        }
        for tp in &self.inputs {
            if let Some(at) = consumer.position(tp) {
                self.positions.insert(tp.partition, at);
            }
        }
        // Results still to skip were written before the crash: they count
        // in the output's end already.
        let output_ends = ends(admin, &self.outputs)
            .await?
            .into_iter()
            .map(|(q, end)| (q, end - self.skip.get(&q).copied().unwrap_or(0)))
            .collect();
        let cp = Checkpoint {
            sql: self.def.sql.clone(),
            operator: op.clone(),
            positions: self.positions.clone(),
            output_ends,
        };
        let bytes = serde_json::to_vec(&cp).map_err(|e| TaskError::Checkpoint(e.to_string()))?;
        if bytes.len() > MAX_CHECKPOINT_BYTES {
            return Err(TaskError::Checkpoint(format!(
                "the state is {} bytes, over the {MAX_CHECKPOINT_BYTES}-byte limit",
                bytes.len()
            )));
        }
        self.producer
            .send_and_wait(
                ProducerRecord::new(STATE_TOPIC, Bytes::from(bytes))
                    .key(Bytes::from(self.def.name.clone())),
            )
            .await?;
        let offsets = self
            .positions
            .iter()
            .map(|(p, o)| (TopicPartition::new(&self.plan.input_topic, *p), *o))
            .collect();
        consumer.commit_offsets(offsets).await?;
        let ends = admin.list_offsets(&self.inputs, OffsetSpec::Latest).await?;
        let (since, before) = self.counted;
        self.report.update(|rep| {
            let secs = since.elapsed().as_secs_f64().max(1e-3);
            rep.records_per_sec = (rep.records_in - before) as f64 / secs;
            rep.open_windows = op.open_windows();
            rep.watermark = op.watermarks().firing();
            rep.partitions = self
                .inputs
                .iter()
                .map(|tp| {
                    let end = ends.get(tp).map_or(0, |l| l.offset);
                    let position = self.positions.get(&tp.partition).copied().unwrap_or(0);
                    (
                        tp.partition,
                        PartitionReport {
                            position,
                            log_end: end,
                            watermark: op.watermarks().of(tp.partition as usize),
                        },
                    )
                })
                .collect();
            rep.caught_up = rep.partitions.values().all(|p| p.position >= p.log_end);
        });
        let now_in = self.report.get().records_in;
        self.counted = (Instant::now(), now_in);
        Ok(())
    }
}

/// The end offset of each of `tps` (their partition numbers as keys).
async fn ends(admin: &Admin, tps: &[TopicPartition]) -> Result<BTreeMap<i32, i64>, TaskError> {
    Ok(admin
        .list_offsets(tps, OffsetSpec::Latest)
        .await?
        .into_iter()
        .map(|(tp, l)| (tp.partition, l.offset))
        .collect())
}

/// Creates the output, late and state topics when missing.
async fn prepare_topics(
    admin: &Admin,
    def: &JobDef,
    plan: &JobPlan,
    partitions: i32,
) -> Result<(), TaskError> {
    admin
        .create_topic(NewTopic::new(plan.output_topic.clone(), partitions), true)
        .await?;
    if let Some(t) = &def.late_topic {
        admin
            .create_topic(NewTopic::new(t.clone(), partitions), true)
            .await?;
    }
    let mut state = NewTopic::new(STATE_TOPIC, 1);
    state.configs = vec![
        ("cleanup.policy".into(), "compact".into()),
        ("max.message.bytes".into(), MAX_CHECKPOINT_BYTES.to_string()),
    ];
    admin.create_topic(state, true).await?;
    Ok(())
}

/// The job's last checkpoint, if it has one taken under the same statement.
async fn load_checkpoint(bootstrap: &str, def: &JobDef) -> Result<Option<Checkpoint>, TaskError> {
    let mut c = ConsumerConfig::new(bootstrap).build().await?;
    let tp = TopicPartition::new(STATE_TOPIC, 0);
    c.assign(vec![tp.clone()]);
    c.set_start_position(StartPosition::Earliest);
    let admin = Admin::from_cluster(c.cluster().clone());
    let end = admin
        .list_offsets(std::slice::from_ref(&tp), OffsetSpec::Latest)
        .await?
        .get(&tp)
        .map_or(0, |l| l.offset);
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.position(&tp).unwrap_or(0) < end {
        if Instant::now() > deadline {
            return Err(TaskError::Checkpoint(format!(
                "{STATE_TOPIC} could not be read to its end ({end}) in 30 s"
            )));
        }
        for r in c.poll(Duration::from_millis(200)).await? {
            if r.key.as_deref() == Some(def.name.as_bytes()) {
                last = r.value;
            }
            if r.offset + 1 >= end {
                break;
            }
        }
    }
    let Some(bytes) = last else {
        return Ok(None);
    };
    let cp: Checkpoint =
        serde_json::from_slice(&bytes).map_err(|e| TaskError::Checkpoint(e.to_string()))?;
    Ok((cp.sql == def.sql).then_some(cp))
}

/// A report for a job that is defined but whose task runs elsewhere or has
/// not started.
pub fn idle_report(state: &str) -> JobReport {
    JobReport {
        state: state.into(),
        ..JobReport::default()
    }
}
