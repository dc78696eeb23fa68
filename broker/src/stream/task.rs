//! What the two kinds of job task share: which part of a job a task runs,
//! why a task stops, the topics a job needs, and its checkpoints.
//!
//! # Checkpoints
//!
//! A task checkpoints when it starts, then every
//! [`super::checkpoint::CHECKPOINT_EVERY`] (less often for a large state)
//! and when stopped: it waits until everything it wrote so far is
//! acknowledged, then stores its state in the compacted topic
//! [`STATE_TOPIC`], keyed by the job and the task ([`TaskId::state_key`]),
//! as one record or in chunks ([`super::checkpoint`]). A task that starts
//! again, here or on another node, resumes from its last checkpoint taken
//! under the same statement. What each kind stores, and why that gives
//! exactly once, is in [`super::route`] and [`super::aggregate`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use weir_client::{
    Admin, ConsumerConfig, ConsumerRecord, FetchedRecord, Header, NewTopic, OffsetSpec, Producer,
    ProducerRecord, StartPosition, TopicPartition,
};

use super::job::{JobDef, JobReport, SharedReport, StartFrom};
use super::local_write::LocalWriter;
use super::plan::JobPlan;
use crate::broker::Broker;

/// The compacted topic of job checkpoints (key: [`TaskId::state_key`]).
pub const STATE_TOPIC: &str = "__weir_job_state";
/// The compacted topic of task reports (key: [`TaskId::state_key`]), which
/// lets any node describe a job whose tasks run on several.
pub const STATUS_TOPIC: &str = "__weir_job_status";
/// The state topic's `max.message.bytes`: room for a checkpoint chunk
/// ([`super::checkpoint::CHUNK_BYTES`]; topics made before chunks held
/// whole checkpoints up to this size).
const STATE_RECORD_LIMIT: usize = 64 << 20;

/// Which part of a job a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskId {
    /// Reads input partition N and routes its rows to the shards; runs on
    /// that partition's leader.
    Route(i32),
    /// Runs the windows of shard N (partition N of the repartition topic)
    /// and writes output partition N; runs on that shard's leader.
    Aggregate(i32),
}

impl TaskId {
    /// The task's key in [`STATE_TOPIC`].
    pub fn state_key(&self, job: &str) -> String {
        format!("{job}#{self}")
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskId::Route(p) => write!(f, "route-{p}"),
            TaskId::Aggregate(r) => write!(f, "aggregate-{r}"),
        }
    }
}

/// What every task gets from the node that starts it.
#[derive(Debug)]
pub struct TaskContext {
    /// The job.
    pub def: JobDef,
    /// Its plan.
    pub plan: JobPlan,
    /// This node's Kafka listener.
    pub bootstrap: String,
    /// Where the task reports.
    pub report: Arc<SharedReport>,
    /// Turns true when the task is to stop.
    pub stop: watch::Receiver<bool>,
    /// This node: the task reads its input partition from it in-process.
    pub node: Weak<Broker>,
}

impl TaskContext {
    /// Connects to the cluster and makes sure the job's topics exist;
    /// returns the admin client, the number of input partitions and the
    /// number of shards.
    pub async fn setup(&self) -> Result<(Admin, usize, i32), TaskError> {
        // Its client id lets it create and trim the job's own topics.
        let id = crate::reserved::task_client_id(&format!("{}-admin", self.def.group()));
        let admin =
            Admin::connect(weir_client::ClientConfig::new(&self.bootstrap).client_id(id)).await?;
        let sources = retrying(|| admin.partitions(&self.plan.input_topic))
            .await?
            .len();
        let shards = prepare_topics(&admin, &self.def, &self.plan, sources as i32).await?;
        Ok((admin, sources, shards))
    }
}

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
    /// The job's topics do not fit together.
    #[error("{0}")]
    Topics(String),
    /// Reading the task's input partition on this node failed.
    #[error("reading the input: {0}")]
    Read(String),
    /// The task panicked (a bug): it is restarted like a failed one.
    #[error("the task panicked: {0}")]
    Panicked(String),
}

/// A read of a key's open windows (queryable state).
#[derive(Debug)]
pub struct StateQuery {
    /// The group key.
    pub key: super::window::GroupKey,
    /// Gets each open window as the output record it will become.
    pub reply: oneshot::Sender<Vec<serde_json::Value>>,
}

/// How long a starting task retries what fails with a retriable error.
const SETTLE: Duration = Duration::from_secs(30);

/// `f`'s result, retried while it fails with a retriable error for up to
/// [`SETTLE`]: the tasks of a new job start together with the topics they
/// create, before those have leaders.
pub async fn retrying<T, F, Fut>(mut f: F) -> Result<T, weir_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, weir_client::Error>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match f().await {
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tracing::debug!(error = %e, "job task start: retrying");
                // A back-off between attempts, bounded by the deadline.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

/// A consumer of the job's group that only commits the positions of `tps`
/// (tasks read their input in-process, [`super::local_read`]), so that
/// `weir group describe` shows the job's lag.
pub async fn group_committer(
    bootstrap: &str,
    def: &JobDef,
    tps: Vec<TopicPartition>,
) -> Result<weir_client::Consumer, TaskError> {
    let mut c = ConsumerConfig::new(bootstrap)
        // A task's commits, told from clients' ([`crate::handlers::job_groups`]).
        .client_id(crate::reserved::task_client_id(&def.group()))
        .group(def.group())
        .auto_commit(false)
        .build()
        .await?;
    c.assign(tps);
    Ok(c)
}

/// The producer a task writes with: idempotent (so a retried batch lands
/// once and in order), acknowledged by every in-sync replica.
pub async fn producer(
    bootstrap: &str,
    node: &Weak<Broker>,
    client_id: String,
) -> Result<Producer, TaskError> {
    Ok(producer_config(bootstrap, node, client_id).build().await?)
}

/// The settings of [`producer`], for a task that adds its own (an
/// identity to resume). Batches of partitions `node` leads are handed to
/// it in-process ([`LocalWriter`]).
pub fn producer_config(
    bootstrap: &str,
    node: &Weak<Broker>,
    client_id: String,
) -> weir_client::ProducerConfig {
    weir_client::ProducerConfig::new(bootstrap)
        .local(LocalWriter::new(node.clone()))
        .acks(weir_client::Acks::All)
        .idempotent(true)
        .linger(Duration::from_millis(5))
        // A node runs many tasks on its cores: the least CPU per record
        // beats one producer's parallel encoding (BENCHMARKS.md, "batch
        // lists reused").
        .encode_when_sealed(true)
        // Tasks write the job's own topics ([`crate::reserved`]).
        .client_id(crate::reserved::task_client_id(&client_id))
        // The job created its topics when it started; a task still running
        // after `job drop` deleted them must not bring them back (found
        // from outside: orphan one-partition repartition topics).
        .auto_create_topics(false)
}

/// Counts input record `rec` of partition `p` as read, and late or bad
/// (`bad`: why it could not be read); a late or bad one is set aside in
/// the job's late topic, if it has one.
#[allow(clippy::too_many_arguments)]
pub async fn tally_input(
    counts: &mut super::job::Tally,
    producer: &Producer,
    node: &Weak<Broker>,
    def: &JobDef,
    p: i32,
    rec: &FetchedRecord<'_>,
    late: bool,
    bad: Option<String>,
) -> Result<(), TaskError> {
    counts.records_in += 1;
    counts.late += u64::from(late);
    counts.bad += u64::from(bad.is_some());
    if late || bad.is_some() {
        if let Some(topic) = &def.late_topic {
            let reason = bad.unwrap_or_else(|| "late".into());
            let limit = batch_limit(node, topic);
            producer
                .send_detached(late_record(topic, p, rec.into(), reason, limit))
                .await?;
        }
    }
    Ok(())
}

/// The end offset of each of `tps` (their partition numbers as keys).
pub async fn ends(admin: &Admin, tps: &[TopicPartition]) -> Result<BTreeMap<i32, i64>, TaskError> {
    Ok(retrying(|| admin.list_offsets(tps, OffsetSpec::Latest))
        .await?
        .into_iter()
        .map(|(tp, l)| (tp.partition, l.offset))
        .collect())
}

/// The first offset of `tp` to read for job `def` when its task has no
/// checkpoint: for `--from latest`, the partition's end when the job was
/// created ([`JobDef::created_at_ends`], within the log as it is now; a
/// partition added since starts at its beginning).
pub async fn start_offset(
    admin: &Admin,
    tp: &TopicPartition,
    def: &JobDef,
) -> Result<i64, TaskError> {
    let tps = std::slice::from_ref(tp);
    let spec = match def.from {
        StartFrom::Earliest => OffsetSpec::Earliest,
        StartFrom::Latest if !def.created_at_ends.is_empty() => {
            let start = retrying(|| admin.list_offsets(tps, OffsetSpec::Earliest))
                .await?
                .get(tp)
                .map_or(0, |l| l.offset);
            let end = ends(admin, tps)
                .await?
                .get(&tp.partition)
                .copied()
                .unwrap_or(0);
            return Ok(match def.created_at_ends.get(&tp.partition) {
                Some(&at) => at.min(end).max(start),
                None => start,
            });
        }
        StartFrom::Latest => OffsetSpec::Latest,
        StartFrom::Timestamp(t) => OffsetSpec::Timestamp(t),
    };
    let found = retrying(|| admin.list_offsets(tps, spec)).await?;
    let end = ends(admin, tps)
        .await?
        .get(&tp.partition)
        .copied()
        .unwrap_or(0);
    // No record at or after the time: start at the end.
    Ok(found
        .get(tp)
        .map_or(end, |l| if l.offset < 0 { end } else { l.offset }))
}

/// The topic aggregate task N reads partition N of (and runs on the leader
/// of): the job's repartition topic, or the input itself for a
/// co-partitioned job (grouping by the record key, or over an input of one
/// partition).
pub fn shard_topic(def: &JobDef, plan: &JobPlan) -> String {
    if plan.copartitioned() {
        plan.input_topic.clone()
    } else {
        super::repartition::topic(def)
    }
}

/// Creates the output, repartition, late and state topics when missing:
/// the output with as many partitions as the input (`partitions`), the
/// repartition topic with as many as the output (shard N writes output
/// partition N), none for a job grouping by the record key (input
/// partition N writes output partition N). Returns the number of shards
/// (output partitions).
pub async fn prepare_topics(
    admin: &Admin,
    def: &JobDef,
    plan: &JobPlan,
    partitions: i32,
) -> Result<i32, TaskError> {
    admin
        .create_topic(NewTopic::new(plan.output_topic.clone(), partitions), true)
        .await?;
    let shards = retrying(|| admin.partitions(&plan.output_topic))
        .await?
        .len() as i32;
    if let Some(why) = plan.partitions_mismatch(partitions, shards) {
        return Err(TaskError::Topics(why));
    }
    if !plan.copartitioned() {
        let mut repartition = NewTopic::new(super::repartition::topic(def), shards);
        // Aggregate tasks delete what they checkpointed past; time must not
        // delete what they have not read.
        repartition.configs = vec![("retention.ms".into(), "-1".into())];
        admin.create_topic(repartition, true).await?;
    }
    if let Some(t) = &def.late_topic {
        admin
            .create_topic(NewTopic::new(t.clone(), partitions), true)
            .await?;
    }
    let mut state = NewTopic::new(STATE_TOPIC, 1);
    state.configs = vec![
        ("cleanup.policy".into(), "compact".into()),
        ("max.message.bytes".into(), STATE_RECORD_LIMIT.to_string()),
        // Every task checkpoints each second: small segments, rolled at
        // least every 10 minutes, let compaction keep what a starting task
        // reads short.
        ("segment.bytes".into(), (2 * STATE_RECORD_LIMIT).to_string()),
        ("segment.ms".into(), "600000".into()),
    ];
    admin.create_topic(state, true).await?;
    let mut status = NewTopic::new(STATUS_TOPIC, 1);
    status.configs = vec![
        ("cleanup.policy".into(), "compact".into()),
        ("segment.ms".into(), "60000".into()),
    ];
    admin.create_topic(status, true).await?;
    Ok(shards)
}

/// The copy of input record `rec` of partition `source` for the late
/// topic `topic`: its key, value (null stays null) and headers, then
/// headers saying where it came from, when it was made and why it is set
/// aside (`late`, or why it could not be read). Its timestamp is the time
/// it is written, as for results: the input's own would let the late
/// topic's time retention delete a replay's late records at once (found
/// from outside: a job's late topic over 2023 events held nothing; the
/// input's headers and tombstones were lost too).
///
/// A copy that would not fit in a batch of `limit` bytes (the late topic's
/// `max.message.bytes`) leaves out the value, then the key and headers,
/// and says so in a `weir-left-out` header: the source headers still lead
/// to the record in the input (found from outside: a 2 MB unreadable record
/// in an input allowing it, over the late topic's 1 MiB, failed the task at
/// each restart, for ever).
pub fn late_record(
    topic: &str,
    source: i32,
    rec: SetAside,
    reason: String,
    limit: usize,
) -> ProducerRecord {
    let mut out = ProducerRecord::new(topic.to_string(), Bytes::new());
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    let headers: usize = rec
        .headers
        .iter()
        .map(|h| h.key.len() + len(&h.value) + 10)
        .sum();
    // The batch header, the record's framing and the headers added here.
    let framing = weir_storage::HEADER_LEN + 64 + 200 + reason.len();
    let (key, value) = (len(&rec.key), len(&rec.value));
    let mut left_out = None;
    if framing + key + value + headers <= limit {
        out.value = rec.value;
        out.key = rec.key;
        out.headers = rec.headers;
    } else if framing + key + headers <= limit {
        out.value = None;
        out.key = rec.key;
        out.headers = rec.headers;
        left_out = Some(format!(
            "the value ({value} bytes): over {topic}'s max.message.bytes"
        ));
    } else {
        out.value = None;
        left_out = Some(format!(
            "the key, value and headers ({} bytes): over {topic}'s max.message.bytes",
            key + value + headers
        ));
    }
    out = out
        .header("weir-source-partition", source.to_string())
        .header("weir-source-offset", rec.offset.to_string())
        .header("weir-source-timestamp", rec.timestamp.to_string())
        .header("weir-reason", reason);
    if let Some(what) = left_out {
        out = out.header("weir-left-out", what);
    }
    out.timestamp(now_ms())
}

/// The largest batch `topic` takes (its `max.message.bytes` as `node`'s
/// metadata has it; unlimited when unknown).
pub fn batch_limit(node: &Weak<Broker>, topic: &str) -> usize {
    node.upgrade()
        .and_then(|b| {
            let t = b.meta.topic(topic)?;
            usize::try_from(b.topic_log_config(&t).max_message_bytes).ok()
        })
        .unwrap_or(usize::MAX)
}

/// What of an input record its late-topic copy keeps.
#[derive(Debug, Clone)]
pub struct SetAside {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp.
    pub timestamp: i64,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its value.
    pub value: Option<Bytes>,
    /// Its headers.
    pub headers: Vec<Header>,
}

impl From<&ConsumerRecord> for SetAside {
    fn from(r: &ConsumerRecord) -> Self {
        SetAside {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        }
    }
}

impl From<&FetchedRecord<'_>> for SetAside {
    fn from(r: &FetchedRecord<'_>) -> Self {
        SetAside {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.bytes(r.key),
            value: r.bytes(r.value),
            headers: r.owned_headers(),
        }
    }
}

/// The records at `offsets` (ascending) of `topic`/`partition`, those that
/// are still there (retention may have removed some), read within 30 s.
pub async fn read_at(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offsets: &[i64],
) -> Result<Vec<ConsumerRecord>, TaskError> {
    let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
        return Ok(Vec::new());
    };
    let mut c = ConsumerConfig::new(bootstrap).build().await?;
    let tp = TopicPartition::new(topic, partition);
    c.assign(vec![tp.clone()]);
    c.seek(&tp, first)?;
    let deadline = Instant::now() + SETTLE;
    let mut found = Vec::new();
    while c.position(&tp).unwrap_or(first) <= last && Instant::now() < deadline {
        let records = match c.poll(Duration::from_millis(200)).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => continue,
            Err(e) => return Err(e.into()),
        };
        let past = records.last().is_some_and(|r| r.offset >= last);
        found.extend(
            records
                .into_iter()
                .filter(|r| offsets.binary_search(&r.offset).is_ok()),
        );
        if past {
            break;
        }
    }
    Ok(found)
}

/// The latest value of every key of `topic` (one partition) that `wanted`
/// accepts, read from its start to its end (a key whose latest record is a
/// tombstone is left out).
pub(super) async fn read_latest(
    bootstrap: &str,
    topic: &str,
    wanted: impl Fn(&[u8]) -> bool,
) -> Result<BTreeMap<Vec<u8>, Bytes>, TaskError> {
    let mut c = ConsumerConfig::new(bootstrap).build().await?;
    let tp = TopicPartition::new(topic, 0);
    c.assign(vec![tp.clone()]);
    c.set_start_position(StartPosition::Earliest);
    let admin = Admin::from_cluster(c.cluster().clone());
    let end = ends(&admin, std::slice::from_ref(&tp))
        .await?
        .get(&0)
        .copied()
        .unwrap_or(0);
    let mut latest = BTreeMap::new();
    let deadline = Instant::now() + SETTLE;
    while c.position(&tp).unwrap_or(0) < end {
        if Instant::now() > deadline {
            return Err(TaskError::Checkpoint(format!(
                "{topic} could not be read to its end ({end}) in 30 s"
            )));
        }
        let records = match c.poll(Duration::from_millis(200)).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => continue,
            Err(e) => return Err(e.into()),
        };
        for r in records {
            if let Some(k) = r.key.as_ref().filter(|k| wanted(k)) {
                match r.value {
                    Some(v) => latest.insert(k.to_vec(), v),
                    None => latest.remove(&k[..]),
                };
            }
            if r.offset + 1 >= end {
                break;
            }
        }
    }
    Ok(latest)
}

/// What a task last said of itself in [`STATUS_TOPIC`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskStatus {
    /// When, epoch ms.
    pub at_ms: i64,
    /// Its report (`node` is the node running it).
    pub report: JobReport,
    /// The incarnation of the job it belongs to ([`JobDef::incarnation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// How long until its next status (its checkpoint interval, longer for
    /// a large state), ms: a status is stale only well after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
}

/// Publishes task `task` of job `job`'s report, so that any node can show
/// the whole job, saying the next comes within `every`; not waited for
/// (the next checkpoint's flush checks it).
pub async fn publish_status(
    producer: &Producer,
    def: &JobDef,
    task: TaskId,
    report: JobReport,
    every: Duration,
) -> Result<(), TaskError> {
    let job = &def.name;
    let status = TaskStatus {
        at_ms: now_ms(),
        report,
        incarnation: def.incarnation,
        every_ms: Some(every.as_millis() as u64),
    };
    let bytes = serde_json::to_vec(&status).map_err(|e| TaskError::Checkpoint(e.to_string()))?;
    producer
        .send_detached(ProducerRecord::new(STATUS_TOPIC, bytes).key(task.state_key(job)))
        .await?;
    Ok(())
}

/// The last status of every task of every job ([`TaskId::state_key`] →
/// status), as published to [`STATUS_TOPIC`]; empty when no job has run.
pub async fn load_statuses(bootstrap: &str) -> Result<BTreeMap<String, TaskStatus>, TaskError> {
    let admin = Admin::connect(weir_client::ClientConfig::new(bootstrap)).await?;
    if admin.partitions(STATUS_TOPIC).await.is_err() {
        return Ok(BTreeMap::new());
    }
    let latest = read_latest(bootstrap, STATUS_TOPIC, |_| true).await?;
    Ok(latest
        .into_iter()
        .filter_map(|(k, v)| {
            let key = String::from_utf8(k).ok()?;
            let status = serde_json::from_slice(&v).ok()?;
            Some((key, status))
        })
        .collect())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A report for a job that is defined but whose tasks run elsewhere or have
/// not started.
pub fn idle_report(state: &str) -> JobReport {
    JobReport {
        state: state.into(),
        ..JobReport::default()
    }
}
