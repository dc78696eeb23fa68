//! The job tasks of this node: every second, each job defined in the
//! cluster metadata runs a route task on the leader of each of its input
//! partitions and an aggregate task on the leader of each partition of its
//! repartition topic (see [`super::repartition`]); a task stops where its
//! node no longer leads that partition or the job was dropped. A task that
//! fails is started again after [`RETRY_AFTER`], from its last checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::job::{JobDef, JobReport, SharedReport};
use super::plan::JobPlan;
use super::task::{TaskId, TaskStatus};
use crate::broker::Broker;

/// How often the tasks are reconciled with the metadata.
const TEND_EVERY: Duration = Duration::from_secs(1);
/// How old a task's published status may be and still count, beyond twice
/// the time its task said the next would take ([`stale_after`]).
const STALE_AFTER: Duration = Duration::from_secs(10);
/// How long a failed task waits before it starts again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A task this node runs.
#[derive(Debug)]
struct Running {
    def: JobDef,
    stop: watch::Sender<bool>,
    /// Aggregate tasks answer queries of their keys' open windows.
    queries: Option<mpsc::Sender<super::task::StateQuery>>,
    report: Arc<SharedReport>,
    task: tokio::task::JoinHandle<()>,
}

/// A task: its job's name and which part of the job it runs.
type TaskKey = (String, TaskId);

/// The tasks of this node. A std `Mutex`: taken to look up or swap entries,
/// never across an `.await`.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Mutex<HashMap<TaskKey, Running>>,
    /// Tasks that failed, when, and why.
    failed: Mutex<HashMap<TaskKey, (Instant, String)>>,
    /// How many times each task failed here, and its last failure, under
    /// the job's incarnation.
    restarts: Mutex<HashMap<TaskKey, Restarts>>,
}

/// A task's failures on this node ([`Jobs::restarts`]).
#[derive(Debug, Clone)]
struct Restarts {
    incarnation: Option<u64>,
    count: u64,
    last: super::job::Failure,
}

/// A job as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// The definition.
    #[serde(flatten)]
    pub def: JobDef,
    /// What its tasks on the node asked report, added up.
    pub status: JobReport,
    /// Where each of its tasks runs, and its state when it runs on the node
    /// asked.
    pub tasks: Vec<TaskView>,
    /// The internal topic its rows are repartitioned through; none for a
    /// job grouping by the record key or over an input of one partition (or
    /// an invalid one).
    pub repartition_topic: Option<String>,
}

/// One task of a job, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// `route-N` or `aggregate-N`.
    pub task: String,
    /// The node that leads its partition (−1: none known).
    pub node: i32,
    /// Its state when it runs on the node asked; otherwise where it runs.
    pub state: String,
}

impl Jobs {
    /// Starts the loop that keeps this node's tasks in line with the
    /// metadata.
    pub fn spawn(broker: &Arc<Broker>) {
        let weak: Weak<Broker> = Arc::downgrade(broker);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TEND_EVERY);
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { return };
                b.jobs.tend(&b);
                delete_dropped_groups(&b).await;
            }
        });
    }

    fn tend(&self, b: &Arc<Broker>) {
        let defs = b.meta.jobs();
        let wanted: BTreeMap<TaskKey, (JobDef, JobPlan)> = defs
            .values()
            .filter_map(|def| def.plan().ok().map(|plan| (def, plan)))
            .flat_map(|(def, plan)| {
                tasks_of(b, def, &plan)
                    .into_iter()
                    .filter(|(_, node)| *node == b.config.node_id)
                    .map(move |(id, _)| ((def.name.clone(), id), (def.clone(), plan.clone())))
            })
            .collect();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Stop what was dropped, changed, moved, or ended.
        running.retain(|key, r| {
            let keep = wanted.get(key).is_some_and(|(d, _)| *d == r.def) && !r.task.is_finished();
            if !keep {
                let _ = r.stop.send(true);
            }
            keep
        });
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.retain(|key, (at, _)| wanted.contains_key(key) && at.elapsed() < RETRY_AFTER);
        self.restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, r| {
                wanted
                    .get(key)
                    .is_some_and(|(d, _)| d.incarnation == r.incarnation)
            });
        for (key, (def, plan)) in wanted {
            if running.contains_key(&key) || failed.contains_key(&key) {
                continue;
            }
            running.insert(key.clone(), start(b, key, def, plan));
        }
    }

    /// The open windows of group `key` (the key columns' values) in job
    /// `name`, as the output records they will become; an error when the
    /// task holding that key does not run on this node.
    pub async fn query(
        &self,
        b: &Broker,
        name: &str,
        key: Vec<serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>, QueryError> {
        let failed = |m: String| QueryError::Failed(m);
        let key = super::window::GroupKey::of(&key);
        let Some(def) = b.meta.jobs().get(name).cloned() else {
            return Err(failed(format!("job {name} does not exist")));
        };
        let plan = def.plan().map_err(|e| failed(e.to_string()))?;
        if plan.copartitioned() {
            return self.query_everywhere(b, &def, &plan, key).await;
        }
        let topic = super::repartition::topic(&def);
        let Some(shards) = b.meta.topic(&topic).map(|t| t.partitions) else {
            return Err(failed(format!("job {name} has not started")));
        };
        let shard =
            weir_client::partitioner::partition_for_key(&plan.shard_key(key.as_str()), shards);
        let task = (name.to_string(), TaskId::Aggregate(shard));
        let sender = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.get(&task).and_then(|r| r.queries.clone())
        };
        let Some(sender) = sender else {
            let node = b
                .meta
                .topic(&topic)
                .map_or(-1, |t| b.leader_of(&topic, &t, shard).0);
            if node == b.config.node_id || node < 0 {
                // Found from outside: during a failover a node answered
                // that the key's task ran on itself, "ask that node".
                return Err(QueryError::NotRunning(format!(
                    "task {} of job {name}, which holds that key's windows, is not running \
                     now (it starts, moves or restarts after a failure): ask again shortly",
                    TaskId::Aggregate(shard)
                )));
            }
            return Err(QueryError::Elsewhere {
                job: name.to_string(),
                task: TaskId::Aggregate(shard),
                node,
            });
        };
        ask(name, &sender, key).await
    }

    /// [`Jobs::query`] of a job grouping by the record key: which input
    /// partition holds a key is the producer's choice, so every task of the
    /// job on this node is asked; [`QueryError::Spread`] names the nodes
    /// running the others, to be asked too.
    async fn query_everywhere(
        &self,
        b: &Broker,
        def: &JobDef,
        plan: &JobPlan,
        key: super::window::GroupKey,
    ) -> Result<Vec<serde_json::Value>, QueryError> {
        let mut local = Vec::new();
        let mut nodes = Vec::new();
        {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            for (id, node) in tasks_of(b, def, plan) {
                match running
                    .get(&(def.name.clone(), id))
                    .and_then(|r| r.queries.clone())
                {
                    Some(sender) => local.push(sender),
                    // Found from outside: a failed task here answered `[]`
                    // (this node asked itself), as if it held no window.
                    None if node == b.config.node_id || node < 0 => {
                        return Err(QueryError::NotRunning(format!(
                            "task {id} of job {}, which may hold that key's windows, is not \
                             running now (it starts, moves or restarts after a failure): ask \
                             again shortly",
                            def.name
                        )));
                    }
                    None if !nodes.contains(&node) => nodes.push(node),
                    None => {}
                }
            }
        }
        let mut windows = Vec::new();
        for sender in local {
            windows.extend(ask(&def.name, &sender, key.clone()).await?);
        }
        if nodes.is_empty() {
            Ok(windows)
        } else {
            Err(QueryError::Spread { windows, nodes })
        }
    }

    /// Every job, with what all its tasks report: those running here live,
    /// the others from their last status in [`super::task::STATUS_TOPIC`]
    /// (when it comes from the node now leading the task's partition and is
    /// at most [`STALE_AFTER`] old). Falls back to this node's tasks when the
    /// statuses cannot be read.
    pub async fn views_everywhere(&self, b: &Broker) -> Vec<JobView> {
        if b.meta.jobs().is_empty() {
            return Vec::new();
        }
        let bootstrap = format!("{}:{}", b.advertised_host, b.advertised_port);
        let statuses = match super::task::load_statuses(&bootstrap).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "job statuses not read; describing this node's tasks");
                BTreeMap::new()
            }
        };
        self.views_with(b, &statuses)
    }

    fn views_with(&self, b: &Broker, remote: &BTreeMap<String, TaskStatus>) -> Vec<JobView> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        let defs: BTreeMap<String, JobDef> = b.meta.jobs();
        let now = super::task::now_ms();
        defs.into_values()
            .map(|def| {
                let Ok(plan) = def.plan() else {
                    return JobView {
                        status: super::task::idle_report("invalid"),
                        def,
                        tasks: Vec::new(),
                        repartition_topic: None,
                    };
                };
                let mut reports = Vec::new();
                let mut tasks = Vec::new();
                let mut failures: Vec<(u64, Option<super::job::Failure>)> = Vec::new();
                for (id, node) in tasks_of(b, &def, &plan) {
                    let key = (def.name.clone(), id);
                    let status = remote
                        .get(&id.state_key(&def.name))
                        .filter(|s| s.report.node == node && s.incarnation == def.incarnation);
                    // A task's failures: this node's count for its own
                    // tasks, the running node's report for the others.
                    if node == b.config.node_id {
                        if let Some(r) = restarts
                            .get(&key)
                            .filter(|r| r.incarnation == def.incarnation)
                        {
                            failures.push((r.count, Some(r.last.clone())));
                        }
                    } else if let Some(s) = status {
                        failures.push((s.report.restarts, s.report.last_failure.clone()));
                    }
                    let state = match (running.get(&key), failed.get(&key), status) {
                        (Some(r), _, _) => {
                            let rep = r.report.get();
                            let state = rep.state.clone();
                            reports.push(rep);
                            state
                        }
                        (None, Some((_, why)), _) => format!("failed: {why}"),
                        (None, None, Some(s))
                            if now - s.at_ms <= stale_after(s).as_millis() as i64 =>
                        {
                            reports.push(s.report.clone());
                            s.report.state.clone()
                        }
                        (None, None, Some(s)) => format!(
                            "no report from node {node} for {} s",
                            (now - s.at_ms) / 1000
                        ),
                        (None, None, None) if node == b.config.node_id => "starting".into(),
                        (None, None, None) if node >= 0 => format!("starting on node {node}"),
                        (None, None, None) => "waiting for a leader".into(),
                    };
                    tasks.push(TaskView {
                        task: id.to_string(),
                        node,
                        state,
                    });
                }
                let status = if tasks.is_empty() {
                    super::task::idle_report("waiting for its input topic")
                } else {
                    // The partitions' ends as this node's replicas hold
                    // them now: a report is as old as its task's last
                    // checkpoint, and a task stuck writing makes none.
                    let end_of = |topic: &str, p: i32| {
                        b.partition(topic, p).map(|part| part.high_watermark())
                    };
                    let shard_topic = super::task::shard_topic(&def, &plan);
                    let mut status = merge(
                        b.config.node_id,
                        &tasks,
                        reports,
                        |p| end_of(&plan.input_topic, p),
                        |r| end_of(&shard_topic, r),
                    );
                    // A repartitioned job's shards run on without the input
                    // (found from outside: a cluster said `running` with
                    // the input deleted, a single node `waiting`).
                    if b.meta.topic(&plan.input_topic).is_none()
                        && !status.state.starts_with("failed")
                    {
                        status.state = "waiting for its input topic".into();
                    }
                    status
                };
                let mut status = status;
                status.restarts = failures.iter().map(|f| f.0).sum();
                status.last_failure = failures
                    .into_iter()
                    .filter_map(|f| f.1)
                    .max_by_key(|f| f.at_ms);
                let repartition_topic =
                    (!plan.copartitioned()).then(|| super::repartition::topic(&def));
                JobView {
                    def,
                    status,
                    tasks,
                    repartition_topic,
                }
            })
            .collect()
    }
}

/// Asks the task behind `sender` for the open windows of `key`.
async fn ask(
    job: &str,
    sender: &mpsc::Sender<super::task::StateQuery>,
    key: super::window::GroupKey,
) -> Result<Vec<serde_json::Value>, QueryError> {
    // Retriable: a stopped task restarts (or moves), a busy one answers later.
    let stopped = || {
        QueryError::NotRunning(format!(
            "the task of job {job} holding that key is not running now (it stopped, \
             moves or restarts; `weir job describe {job}` says why): ask again shortly"
        ))
    };
    let (reply, answer) = oneshot::channel();
    sender
        .send(super::task::StateQuery { key, reply })
        .await
        .map_err(|_| stopped())?;
    tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .map_err(|_| {
            QueryError::NotRunning(format!(
                "job {job} did not answer in 5 s: ask again shortly"
            ))
        })?
        .map_err(|_| stopped())
}

/// How old status `s` may be and still count: [`STALE_AFTER`] beyond twice
/// the interval its task announced (found from outside: a task whose 50 MB
/// state is checkpointed every 17 s was said on other nodes to have sent
/// no report for 14 s).
fn stale_after(s: &TaskStatus) -> Duration {
    STALE_AFTER + 2 * Duration::from_millis(s.every_ms.unwrap_or(0))
}

/// Starts task `key` of job `def` on this node.
fn start(b: &Arc<Broker>, key: TaskKey, def: JobDef, plan: JobPlan) -> Running {
    let report = Arc::new(SharedReport::default());
    let past = b
        .jobs
        .restarts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .filter(|r| r.incarnation == def.incarnation)
        .cloned();
    report.update(|r| {
        r.state = "starting".into();
        r.node = b.config.node_id;
        if let Some(past) = past {
            r.restarts = past.count;
            r.last_failure = Some(past.last);
        }
    });
    let (stop, stopped) = watch::channel(false);
    let bootstrap = format!("{}:{}", b.advertised_host, b.advertised_port);
    let weak = Arc::downgrade(b);
    let (queries, asked) = match key.1 {
        TaskId::Aggregate(_) => {
            let (tx, rx) = mpsc::channel(16);
            (Some(tx), Some(rx))
        }
        TaskId::Route(_) => (None, None),
    };
    let task = {
        let (def, report) = (def.clone(), Arc::clone(&report));
        let key = key.clone();
        let failure_to = (def.clone(), bootstrap.clone());
        tokio::spawn(async move {
            let cx = super::task::TaskContext {
                def,
                plan,
                bootstrap,
                report: Arc::clone(&report),
                stop: stopped,
                node: weak.clone(),
            };
            let node = weak.clone();
            let work = tokio::spawn(async move {
                match (key.1, asked) {
                    (TaskId::Route(p), _) => super::route::run(cx, p).await,
                    (TaskId::Aggregate(r), Some(asked)) => {
                        let topic = super::task::shard_topic(&cx.def, &cx.plan);
                        let leads =
                            Box::new(move || node.upgrade().and_then(|b| b.leads(&topic, r)));
                        super::aggregate::run(cx, r, asked, leads).await
                    }
                    (TaskId::Aggregate(_), None) => Ok(()),
                }
            });
            // A panic is a failure too: the task waits its turn to restart
            // instead of starting again at the next tending (found from
            // outside: a panicking task restarted every second).
            let res = match work.await {
                Ok(res) => res,
                Err(e) => Err(super::task::TaskError::Panicked(match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into()),
                    Err(e) => e.to_string(),
                })),
            };
            if res.is_ok() {
                tracing::info!(job = %key.0, task = %key.1, "job task ended");
            }
            if let Err(e) = res {
                tracing::warn!(job = %key.0, task = %key.1, error = %e, "job task failed; it restarts from its checkpoint");
                let failure = super::job::Failure {
                    at_ms: super::task::now_ms(),
                    task: key.1.to_string(),
                    error: e.to_string(),
                };
                report.update(|r| {
                    r.state = format!("failed: {e}");
                    r.restarts += 1;
                    r.last_failure = Some(failure.clone());
                });
                if let Some(b) = weak.upgrade() {
                    b.jobs
                        .failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key.clone(), (Instant::now(), e.to_string()));
                    b.jobs
                        .restarts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(
                            key.clone(),
                            Restarts {
                                incarnation: failure_to.0.incarnation,
                                count: report.get().restarts,
                                last: failure,
                            },
                        );
                }
                // After the failure is recorded: its retry is timed from
                // then, not from the end of this.
                publish_failure(&failure_to.1, &weak, &failure_to.0, key.1, report.get()).await;
            }
        })
    };
    tracing::info!(job = %key.0, task = %key.1, "job task started");
    Running {
        def,
        stop,
        queries,
        report,
        task,
    }
}

/// Every task of job `def` and the node that leads its partition (−1 when
/// none is known): a route task per input partition, an aggregate task per
/// partition of the repartition topic once it exists; for a job grouping
/// by the record key, an aggregate task per input partition; for a job
/// whose one task reads every input partition ([`JobPlan::whole`]), that
/// task.
fn tasks_of(b: &Broker, def: &JobDef, plan: &JobPlan) -> Vec<(TaskId, i32)> {
    let mut out = Vec::new();
    if !plan.copartitioned() {
        if let Some(t) = b.meta.topic(&plan.input_topic) {
            for p in 0..t.partitions {
                out.push((TaskId::Route(p), b.leader_of(&plan.input_topic, &t, p).0));
            }
        }
    }
    let topic = super::task::shard_topic(def, plan);
    if let Some(t) = b.meta.topic(&topic) {
        // One task reads every input partition: it runs where the first is
        // led.
        let tasks = if plan.whole() { 1 } else { t.partitions };
        for r in 0..tasks {
            out.push((TaskId::Aggregate(r), b.leader_of(&topic, &t, r).0));
        }
    }
    out
}

/// One report of a job from the reports of its tasks on node `node`: counts
/// added up, partitions joined, the lowest firing watermark; its state is
/// `running` when every task is. The ends of input partitions and shards
/// are at least `input_end` and `shard_end` say (their ends now, where
/// this node holds them), so the lag counts what arrived since a task's
/// last report, and the job is not caught up before it read that.
fn merge(
    node: i32,
    tasks: &[TaskView],
    reports: Vec<JobReport>,
    input_end: impl Fn(i32) -> Option<i64>,
    shard_end: impl Fn(i32) -> Option<i64>,
) -> JobReport {
    let mut out = JobReport {
        node,
        // Not before a task has reported (found from outside: a job just
        // created said caught up, lag 0, for about a second, so a script
        // polling for it stopped at once), nor while a task is not running
        // (found from outside on three nodes: a task starting on another
        // node after a move had not reported, so its partitions were left
        // out and the job said caught up, lag 0, with a third unread).
        caught_up: !reports.is_empty() && tasks.iter().all(|t| t.state == "running"),
        ..JobReport::default()
    };
    // The job's firing watermark is the lowest of its aggregate tasks'
    // (none while one has none).
    let shards: Vec<Option<i64>> = reports
        .iter()
        .filter(|r| !r.shards.is_empty())
        .map(|r| r.watermark)
        .collect();
    out.watermark = if shards.iter().all(Option::is_some) {
        shards.into_iter().flatten().min()
    } else {
        None
    };
    for r in reports {
        out.counts += r.counts;
        out.open_windows += r.open_windows;
        out.records_per_sec += r.records_per_sec;
        out.caught_up &= r.caught_up;
        out.partitions.extend(r.partitions);
        out.shards.extend(r.shards);
    }
    for (at, end) in (out.partitions.iter_mut().map(|(p, at)| (at, input_end(*p))))
        .chain(out.shards.iter_mut().map(|(r, at)| (at, shard_end(*r))))
    {
        at.log_end = at.log_end.max(end.unwrap_or(0));
        out.caught_up &= at.position >= at.log_end;
    }
    out.lag = out
        .partitions
        .values()
        .map(|p| (p.log_end - p.position).max(0))
        .sum();
    out.eta_secs = (out.records_per_sec > 0.0).then(|| out.lag as f64 / out.records_per_sec);
    // A failure says most (why the job does not go on), then any other
    // state than running.
    let states = || tasks.iter().map(|t| t.state.as_str());
    out.state = states()
        .find(|s| s.starts_with("failed"))
        .or_else(|| states().find(|s| *s != "running"))
        .unwrap_or("running")
        .to_string();
    out
}

/// Publishes the report of a task that failed, so that `job describe` on
/// every node says why (found from outside: asked on another node, a job
/// whose shard refused to go on said only that the task's node had not
/// reported for some seconds). Best effort: the failure is logged anyway.
async fn publish_failure(
    bootstrap: &str,
    node: &std::sync::Weak<Broker>,
    def: &JobDef,
    task: TaskId,
    report: super::job::JobReport,
) {
    let sent = async {
        let client = format!("weir-job-{}-failure", def.name);
        let producer = super::task::producer(bootstrap, node, client).await?;
        super::task::publish_status(&producer, def, task, report, Duration::ZERO).await?;
        producer.flush().await?;
        match producer.take_detached_error() {
            Some(e) => Err(e.into()),
            None => Ok::<_, super::task::TaskError>(()),
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), sent).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(job = %def.name, %task, error = %e, "a failed task's status not published")
        }
        Err(_) => {
            tracing::debug!(job = %def.name, %task, "a failed task's status not published in 5 s")
        }
    }
}

/// Why a job could not be created or dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobChangeError {
    /// The definition is refused.
    #[error(transparent)]
    Invalid(#[from] super::job::JobError),
    /// The job's topics do not fit together.
    #[error("{0}")]
    Topics(String),
    /// A job of that name exists.
    #[error("job {0} already exists")]
    Exists(String),
    /// No job of that name.
    #[error("job {0} does not exist")]
    Unknown(String),
    /// The controller did not record it.
    #[error(transparent)]
    Controller(#[from] crate::controller::ControllerError),
    /// The input's ends (for `--from latest`) could not be read.
    #[error("reading the input's ends: {0}")]
    Input(String),
}

/// Every partition's end offset of `topic`, asked of the cluster.
async fn input_ends(
    bootstrap: &str,
    topic: &str,
) -> Result<std::collections::BTreeMap<i32, i64>, super::task::TaskError> {
    let admin = weir_client::Admin::connect(weir_client::ClientConfig::new(bootstrap)).await?;
    let tps = super::task::retrying(|| admin.partitions(topic)).await?;
    super::task::ends(&admin, &tps).await
}

/// Defines job `def` in the cluster (through the controller); its task
/// tasks start within a second on the leaders of its partitions. Blocking.
pub fn create(b: &Broker, mut def: JobDef) -> Result<(), JobChangeError> {
    let count = |t: &str| b.meta.topic(t).map(|t| t.partitions);
    def.one_partition = false;
    def.one_node = false;
    def.created_at_ends.clear();
    let plan = def.plan()?;
    // Over an input of one partition every group lives in it: the windows
    // run where it is read, as for a job grouping by the record key, and no
    // row crosses a repartition topic. Decided once, here: a job cannot
    // move its groups between the two ways while it runs.
    let (inputs, outputs) = (count(&plan.input_topic), count(&plan.output_topic));
    def.one_partition =
        !plan.copartitioned() && inputs == Some(1) && outputs.is_none_or(|o| o == 1);
    // On a cluster of one node every input partition is led there: one
    // task reads them all and runs the windows of every group, so rows
    // need not cross a repartition topic (a second append, flush and read
    // of each row). Decided once too: the node set is fixed by `--peers`.
    def.one_node = !def.one_partition && !plan.copartitioned() && b.config.peers.len() <= 1;
    let plan = def.plan()?;
    if let (Some(i), Some(o)) = (inputs, outputs) {
        if let Some(why) = plan.partitions_mismatch(i, o) {
            return Err(JobChangeError::Topics(why));
        }
    }
    // Chosen by the proposer, so that applying the command stays
    // deterministic (as topic ids).
    def.incarnation = Some(crate::metadata::random_id() as u64);
    if b.meta.jobs().contains_key(&def.name) {
        return Err(JobChangeError::Exists(def.name));
    }
    // "Latest" is where the input ends now, not where it will end when a
    // task first starts (or starts again after a kill before its first
    // checkpoint, found in CI: the records produced meanwhile were never
    // read).
    if def.from == super::job::StartFrom::Latest && inputs.is_some() {
        let bootstrap = format!("{}:{}", b.advertised_host, b.advertised_port);
        def.created_at_ends = tokio::runtime::Handle::current()
            .block_on(input_ends(&bootstrap, &plan.input_topic))
            .map_err(|e| JobChangeError::Input(e.to_string()))?;
    }
    b.controller
        .submit_blocking(&[crate::controller::Command::CreateJob { def: def.clone() }])?;
    match b.meta.jobs().get(&def.name) {
        Some(d) if *d == def => Ok(()),
        // Another definition of the same name won the race.
        _ => Err(JobChangeError::Exists(def.name)),
    }
}

/// Drops job `name` (its tasks stop within a second) and deletes its
/// repartition topic; its consumer group is deleted by the sweep of the
/// node that coordinates it once the tasks are gone. Its output topic stays; its checkpoints stay in the
/// state topic until compaction replaces them, never read again (a job
/// created under the same name later is another incarnation). Blocking.
pub fn drop_job(b: &Broker, name: &str) -> Result<(), JobChangeError> {
    let Some(def) = b.meta.jobs().get(name).cloned() else {
        return Err(JobChangeError::Unknown(name.into()));
    };
    let mut commands = vec![crate::controller::Command::DropJob { name: name.into() }];
    let repartition = super::repartition::topic(&def);
    if let Some(t) = b.meta.topic(&repartition) {
        commands.push(crate::controller::Command::DeleteTopic {
            name: repartition,
            id: t.id,
        });
    }
    b.controller.submit_blocking(&commands)?;
    Ok(())
}

/// Deletes the consumer groups of dropped jobs (`weir-job-NAME` with no job
/// NAME) that this node coordinates, once they are empty. A task that had
/// not yet stopped when its job was dropped may commit once more; the next
/// sweep deletes the group again.
async fn delete_dropped_groups(b: &Broker) {
    use kafka_protocol::messages::{DeleteGroupsRequest, ListGroupsRequest};
    use kafka_protocol::protocol::StrBytes;
    let jobs = b.meta.jobs();
    let mut list = ListGroupsRequest::default();
    list.states_filter = vec![StrBytes::from_static_str("Empty")];
    let groups: Vec<_> = b
        .list_groups(list, 4)
        .await
        .groups
        .into_iter()
        .map(|g| g.group_id)
        .filter(|g| {
            g.0.strip_prefix(super::job::GROUP_PREFIX)
                .is_some_and(|name| !jobs.contains_key(name))
        })
        .collect();
    if groups.is_empty() {
        return;
    }
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = groups;
    let resp = crate::handlers::group_routing::delete_groups(b, req, 2).await;
    for r in resp.results {
        if r.error_code == 0 {
            tracing::info!(group = %r.group_id.0, "deleted the consumer group of a dropped job");
        } else {
            tracing::debug!(group = %r.group_id.0, code = r.error_code, "deleting a dropped job's group");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::job::{PartitionReport, Tally};

    #[test]
    fn a_status_is_stale_only_well_after_the_interval_its_task_announced() {
        let status = |every_ms| TaskStatus {
            at_ms: 0,
            report: JobReport::default(),
            incarnation: None,
            every_ms,
        };
        // A status of a binary before the interval was announced.
        assert_eq!(stale_after(&status(None)), STALE_AFTER);
        // A task checkpointing a large state every 17 s is not stale at 14 s.
        assert!(stale_after(&status(Some(17_000))) > Duration::from_secs(14));
        assert_eq!(stale_after(&status(Some(1_000))), Duration::from_secs(12));
    }

    fn running(task: &str, node: i32) -> TaskView {
        TaskView {
            task: task.into(),
            node,
            state: "running".into(),
        }
    }

    /// The reports of a job's tasks add up: counts summed, partitions and
    /// shards joined, the lowest shard watermark, the lag and the time to
    /// read it at the current rate.
    #[test]
    fn task_reports_merge_into_one_job_report() {
        let route = |p: i32, position: i64, rate: f64| JobReport {
            state: "running".into(),
            counts: Tally {
                records_in: position as u64,
                late: 1,
                ..Tally::default()
            },
            records_per_sec: rate,
            partitions: [(
                p,
                PartitionReport {
                    position,
                    log_end: 1_000,
                    watermark: Some(5),
                },
            )]
            .into(),
            caught_up: position >= 1_000,
            ..JobReport::default()
        };
        let shard = |r: i32, wm: Option<i64>| JobReport {
            state: "running".into(),
            counts: Tally {
                records_out: 10,
                ..Tally::default()
            },
            open_windows: 3,
            watermark: wm,
            shards: [(
                r,
                PartitionReport {
                    position: 7,
                    log_end: 7,
                    watermark: wm,
                },
            )]
            .into(),
            caught_up: true,
            ..JobReport::default()
        };
        let tasks = [running("route-0", 1), running("route-1", 2)];
        let none = |_| None;
        let reports = || {
            vec![
                route(0, 400, 100.0),
                route(1, 1_000, 100.0),
                shard(0, Some(30)),
                shard(1, Some(20)),
            ]
        };
        let m = merge(1, &tasks, reports(), none, none);
        assert_eq!(m.counts.records_in, 1_400);
        assert_eq!(m.counts.late, 2);
        assert_eq!(m.counts.records_out, 20);
        assert_eq!(m.open_windows, 6);
        assert_eq!(m.partitions.len(), 2);
        assert_eq!(m.shards.len(), 2);
        assert_eq!(m.watermark, Some(20));
        assert!(!m.caught_up, "partition 0 is 600 behind");
        assert_eq!(m.lag, 600);
        assert_eq!(m.eta_secs, Some(3.0));
        assert_eq!(m.state, "running");
        // No task has reported yet: not caught up.
        assert!(!merge(1, &tasks, Vec::new(), none, none).caught_up);
        // A shard with no watermark yet holds the job's back.
        let m = merge(
            1,
            &tasks,
            vec![shard(0, Some(30)), shard(1, None)],
            none,
            none,
        );
        assert_eq!(m.watermark, None);
        // A task that is not running says so for the job.
        let waiting = [
            running("route-0", 1),
            TaskView {
                state: "starting on node 2".into(),
                ..running("route-1", 2)
            },
        ];
        assert_eq!(
            merge(1, &waiting, Vec::new(), none, none).state,
            "starting on node 2"
        );
        // Records that arrived since the tasks' last reports (their ends
        // on this node now) count in the lag: partition 1, read to 1,000
        // when it reported, now ends at 1,500; shard 1 grew by 3.
        let m = merge(
            1,
            &tasks,
            reports(),
            |p| (p == 1).then_some(1_500),
            |r| (r == 1).then_some(10),
        );
        assert_eq!(m.lag, 1_100);
        assert_eq!(m.partitions[&1].log_end, 1_500);
        assert_eq!(m.shards[&1].log_end, 10);
        // An end below the reported one (a replica behind) changes nothing.
        let m = merge(1, &tasks, reports(), |_| Some(5), |_| Some(1));
        assert_eq!(m.lag, 600);
        // Read to the end everywhere, but a shard grew: not caught up.
        let all_read = vec![route(0, 1_000, 0.0), shard(0, Some(1))];
        assert!(merge(1, &tasks, all_read.clone(), none, none).caught_up);
        // What reported is read, but a task starting elsewhere has not
        // reported: not caught up.
        assert!(!merge(1, &waiting, all_read.clone(), none, none).caught_up);
        assert!(!merge(1, &tasks, all_read, none, |_| Some(8)).caught_up);
    }
}

/// Why a state query got no answer from this node.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The key's open windows are held by a task on another node (`-1`:
    /// none leads its shard now).
    #[error(
        "that key's windows are held by task {task} of job {job}, on node {node}: ask that node"
    )]
    Elsewhere {
        /// The job.
        job: String,
        /// The aggregate task holding the key.
        task: TaskId,
        /// The node that runs it.
        node: i32,
    },
    /// A job grouping by the record key runs tasks on other nodes too:
    /// `windows` are those of this node's tasks, `nodes` (`-1`: a task
    /// with no leader now) run the others.
    #[error("job tasks run on nodes {nodes:?} too: ask them")]
    Spread {
        /// The key's open windows held by this node's tasks.
        windows: Vec<serde_json::Value>,
        /// The nodes of the other tasks.
        nodes: Vec<i32>,
    },
    /// The job has not started, stopped, or did not answer.
    #[error("{0}")]
    Failed(String),
    /// The task holding the key is not running now, and no other node runs
    /// it either (retriable).
    #[error("{0}")]
    NotRunning(String),
}
