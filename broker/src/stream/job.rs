//! A job as users define it (`weir job create`, `POST /v1/jobs`) and what
//! its task reports while it runs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::plan::JobPlan;
use super::window::EmitMode;

/// Where a job starts reading its input the first time it runs: stored as
/// `"earliest"`, `"latest"` or `{"timestamp": ms}`, and read from those or
/// an RFC 3339 time, as `--from` takes it (found from outside: `POST
/// /v1/jobs` refused the CLI's forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", try_from = "StartForm")]
pub enum StartFrom {
    /// The log start: the whole history (Kappa reprocessing).
    #[default]
    Earliest,
    /// The log end: only new records.
    Latest,
    /// The first record at or after this time (epoch ms).
    Timestamp(i64),
}

/// The forms [`StartFrom`] is read from.
#[derive(Deserialize)]
#[serde(untagged)]
enum StartForm {
    /// As stored.
    Stored(StoredStart),
    /// An RFC 3339 time.
    Time(String),
}

/// [`StartFrom`] as stored.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredStart {
    Earliest,
    Latest,
    Timestamp(i64),
}

impl TryFrom<StartForm> for StartFrom {
    type Error = String;

    fn try_from(form: StartForm) -> Result<Self, String> {
        Ok(match form {
            StartForm::Stored(StoredStart::Earliest) => StartFrom::Earliest,
            StartForm::Stored(StoredStart::Latest) => StartFrom::Latest,
            StartForm::Stored(StoredStart::Timestamp(t)) => StartFrom::Timestamp(t),
            StartForm::Time(t) => weir_client::cli::time::parse_rfc3339_ms(&t)
                .map(StartFrom::Timestamp)
                .map_err(|e| {
                    format!("from: expected earliest, latest or an RFC 3339 time, got {t:?}: {e}")
                })?,
        })
    }
}

/// The fields a job definition may have in `POST /v1/jobs` (those a node
/// decides itself are taken and ignored, so that a definition read back
/// from `GET /v1/jobs/NAME` can be posted again).
pub const DEFINITION_FIELDS: [&str; 11] = [
    "name",
    "sql",
    "from",
    "grace_ms",
    "emit",
    "late_topic",
    "idle_timeout_ms",
    "incarnation",
    "one_partition",
    "one_node",
    "created_at_ends",
];

/// A job's definition, as stored in the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDef {
    /// Its name (also its consumer group and state key).
    pub name: String,
    /// The statement.
    pub sql: String,
    /// Where it starts the first time.
    #[serde(default)]
    pub from: StartFrom,
    /// Allowed lateness, ms.
    #[serde(default)]
    pub grace_ms: i64,
    /// Final results only, or every change too.
    #[serde(default = "final_emit")]
    pub emit: EmitMode,
    /// Where late and unreadable records go, if anywhere.
    #[serde(default)]
    pub late_topic: Option<String>,
    /// After how long without records a caught-up input partition stops
    /// holding windows back (off by default: results then never depend on
    /// the pace of reading).
    #[serde(default)]
    pub idle_timeout_ms: Option<i64>,
    /// Which creation of a job of this name it is, chosen when it is
    /// created: checkpoints, statuses and the repartition topic of a
    /// dropped job of the same name are not its own. `None` for jobs
    /// created before incarnations were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// Whether the job was created over an input topic of one partition
    /// (and an output of one, or none yet): every group then lives in that
    /// partition, so its windows run where it is read, with no repartition
    /// topic. Decided by [`super::jobs::create`], never taken from a request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_partition: bool,
    /// Whether the job was created on a cluster of one node, grouping by
    /// something other than the record key over an input of several
    /// partitions: one task then reads every input partition and runs all
    /// the windows, with no repartition topic (every partition is led by
    /// that node). Decided by [`super::jobs::create`], never taken from a
    /// request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_node: bool,
    /// For a job `--from latest`: each input partition's end when the job
    /// was created, where its task starts when it has no checkpoint, so a
    /// job killed before its first checkpoint still reads every record
    /// produced after its creation (partitions added later start at their
    /// beginning). Empty for other jobs, for jobs whose input did not exist
    /// at creation (they start at the end then) and for jobs created before
    /// this was recorded. Decided by [`super::jobs::create`], never taken
    /// from a request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub created_at_ends: BTreeMap<i32, i64>,
}

fn final_emit() -> EmitMode {
    EmitMode::Final
}

/// Why a job definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The name is empty, too long or has characters a topic name cannot.
    #[error("invalid job name {0:?}: use 1 to 200 of [a-zA-Z0-9._-]")]
    BadName(String),
    /// The statement cannot run.
    #[error("{0}")]
    Sql(String),
    /// A setting is out of range.
    #[error("{0}")]
    BadSetting(String),
}

/// The consumer groups of jobs are named this and the job's name.
pub const GROUP_PREFIX: &str = "weir-job-";

impl JobDef {
    /// The consumer group its tasks commit their input positions to (what
    /// `weir group describe` shows of the job; the job itself resumes from
    /// its checkpoints).
    pub fn group(&self) -> String {
        format!("{GROUP_PREFIX}{}", self.name)
    }

    /// Checks the definition and returns its plan.
    pub fn plan(&self) -> Result<JobPlan, JobError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.name.is_empty() || self.name.len() > 200 || !self.name.chars().all(ok) {
            return Err(JobError::BadName(self.name.clone()));
        }
        if self.grace_ms < 0 {
            return Err(JobError::BadSetting("grace must not be negative".into()));
        }
        if self.grace_ms > super::sql::MAX_INTERVAL_MS {
            return Err(JobError::BadSetting(
                "grace must not be longer than 36,500 days".into(),
            ));
        }
        if self.idle_timeout_ms.is_some_and(|t| t <= 0) {
            return Err(JobError::BadSetting("idle timeout must be positive".into()));
        }
        let mut plan =
            super::sql::parse_job(&self.sql).map_err(|e| JobError::Sql(e.to_string()))?;
        plan.one_partition = self.one_partition;
        plan.one_node = self.one_node;
        if plan.output_topic == plan.input_topic {
            return Err(JobError::Sql(
                "INSERT INTO: the output topic is the input topic".into(),
            ));
        }
        // Weir's own topics (group offsets, job state, repartition topics)
        // are not a job's to write (found from outside: a job wrote its
        // results into __consumer_offsets), nor to read: their records are
        // binary, and a job reading __consumer_offsets read its own offset
        // commits without end (found from outside).
        for (topic, what) in [
            (Some(&plan.input_topic), "input"),
            (Some(&plan.output_topic), "output"),
            (self.late_topic.as_ref(), "late"),
        ] {
            if let Some(t) = topic.filter(|t| crate::reserved::is_reserved(t)) {
                return Err(JobError::BadSetting(format!(
                    "the {what} topic {t:?} is one of Weir's internal topics"
                )));
            }
        }
        // A late topic that is the input would feed the job its own late
        // records without end (found from outside: the input grew from 416
        // to 90,000 records a partition in 20 s); the output has one writer.
        if let Some(late) = &self.late_topic {
            for (topic, what) in [(&plan.input_topic, "input"), (&plan.output_topic, "output")] {
                if late == topic {
                    return Err(JobError::BadSetting(format!(
                        "the late topic {late:?} is the job's {what} topic"
                    )));
                }
            }
        }
        if plan.top.is_some() && self.emit == EmitMode::Changes {
            return Err(JobError::BadSetting(
                "a window Top-N emits final results only: use --emit final".into(),
            ));
        }
        Ok(plan)
    }
}

/// What a running job's task reports (`weir job describe`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// `starting`, `running`, `failed: …` or `stopped`.
    pub state: String,
    /// The node reporting (its tasks' figures only).
    pub node: i32,
    /// What its tasks counted (flattened into the report's JSON).
    #[serde(flatten)]
    pub counts: Tally,
    /// Windows not yet final.
    pub open_windows: usize,
    /// Per input partition: next offset to read, log end, watermark.
    pub partitions: BTreeMap<i32, PartitionReport>,
    /// Per shard (partition of the job's repartition topic) running here:
    /// next offset its aggregate task reads, log end, firing watermark.
    #[serde(default)]
    pub shards: BTreeMap<i32, PartitionReport>,
    /// The firing watermark (epoch ms).
    pub watermark: Option<i64>,
    /// Input records per second over the last report interval.
    pub records_per_sec: f64,
    /// Whether every input partition and every shard was read to its end
    /// at the last check.
    pub caught_up: bool,
    /// Input records not yet read (log ends minus positions).
    #[serde(default)]
    pub lag: i64,
    /// Seconds until the input is read to its current end at the current
    /// rate (a `--from earliest` job catching up); none while the rate is 0.
    #[serde(default)]
    pub eta_secs: Option<f64>,
    /// How many times its tasks failed and were restarted from their
    /// checkpoints by the nodes running them (since those nodes started): a
    /// task failing over and over shows here, while its state says
    /// `running` between the failures.
    #[serde(default)]
    pub restarts: u64,
    /// Why a task last failed, if one did.
    #[serde(default)]
    pub last_failure: Option<Failure>,
}

/// A task's failure, as `weir job describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// When, epoch ms.
    pub at_ms: i64,
    /// The task (`route-N`, `aggregate-N`).
    pub task: String,
    /// Why.
    pub error: String,
}

/// What a job's tasks counted since it was created. Each task keeps its
/// own in its checkpoints, so that the figures survive restarts and moves:
/// a task that resumes from a checkpoint counts again only what it reads
/// after it, so the sums count each record once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Input records read.
    pub records_in: u64,
    /// Result records written.
    pub records_out: u64,
    /// Final results recovery found already written (and did not write
    /// again).
    pub skipped_on_recovery: u64,
    /// Routed rows a restarted route task wrote again (dropped by the
    /// aggregate tasks).
    pub duplicates: u64,
    /// Late records (and where they went, if a late topic is set).
    pub late: u64,
    /// Records that could not be read (not JSON, missing or mistyped fields).
    pub bad: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.records_in += o.records_in;
        self.records_out += o.records_out;
        self.skipped_on_recovery += o.skipped_on_recovery;
        self.duplicates += o.duplicates;
        self.late += o.late;
        self.bad += o.bad;
    }
}

/// One input partition of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Next offset the task reads.
    pub position: i64,
    /// The partition's end when last checked.
    pub log_end: i64,
    /// Largest event time seen.
    pub watermark: Option<i64>,
}

/// A job's report, shared between its task and the admin API.
#[derive(Debug, Default)]
pub struct SharedReport(Mutex<JobReport>);

impl SharedReport {
    /// A copy of the report.
    pub fn get(&self) -> JobReport {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the report.
    pub fn update(&self, f: impl FnOnce(&mut JobReport)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// How fast a task reading an input partition reads it: records in per
/// second between two of its reports.
#[derive(Debug, Clone, Copy)]
pub struct InputRate {
    since: Instant,
    records_in: u64,
}

impl InputRate {
    /// Counts from now, with `records_in` records read so far.
    pub fn new(records_in: u64) -> Self {
        Self {
            since: Instant::now(),
            records_in,
        }
    }

    /// Reports in `rep` the rate since the last report and where the task
    /// stands in each input partition it reads (caught up when each is read
    /// to its end); the next interval starts now.
    pub fn report(&mut self, rep: &mut JobReport, parts: BTreeMap<i32, PartitionReport>) {
        let secs = self.since.elapsed().as_secs_f64().max(1e-3);
        rep.records_per_sec = rep.counts.records_in.saturating_sub(self.records_in) as f64 / secs;
        *self = Self::new(rep.counts.records_in);
        rep.caught_up = parts.values().all(|at| at.position >= at.log_end);
        rep.partitions = parts;
    }
}
