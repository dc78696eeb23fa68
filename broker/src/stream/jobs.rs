//! The jobs of this node: every second, each job defined in the cluster
//! metadata runs on the node that leads partition 0 of its input topic
//! (one task per job for now: the split per input partition, with a
//! repartition topic, is a later slice), and stops where that node no longer
//! does or the job was dropped. A task that fails is started again after
//! [`RETRY_AFTER`], from its last checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::job::{JobDef, JobReport, SharedReport};
use crate::broker::Broker;

/// How often the jobs are reconciled with the metadata.
const TEND_EVERY: Duration = Duration::from_secs(1);
/// How long a failed task waits before it starts again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A task this node runs.
#[derive(Debug)]
struct Running {
    def: JobDef,
    stop: watch::Sender<bool>,
    queries: mpsc::Sender<super::task::StateQuery>,
    report: Arc<SharedReport>,
    task: tokio::task::JoinHandle<()>,
}

/// The tasks of this node. A std `Mutex`: taken to look up or swap entries,
/// never across an `.await`.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Mutex<HashMap<String, Running>>,
    /// Jobs whose task failed, and when.
    failed: Mutex<HashMap<String, (Instant, String)>>,
}

/// A job as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// The definition.
    #[serde(flatten)]
    pub def: JobDef,
    /// What its task reports (on the node running it).
    pub status: JobReport,
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
            }
        });
    }

    fn tend(&self, b: &Arc<Broker>) {
        let defs = b.meta.jobs();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Stop what was dropped, changed, moved, or ended.
        running.retain(|name, r| {
            let keep =
                defs.get(name) == Some(&r.def) && runs_here(b, &r.def) && !r.task.is_finished();
            if !keep {
                let _ = r.stop.send(true);
            }
            keep
        });
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.retain(|name, (at, _)| defs.contains_key(name) && at.elapsed() < RETRY_AFTER);
        for (name, def) in defs {
            if running.contains_key(&name) || failed.contains_key(&name) || !runs_here(b, &def) {
                continue;
            }
            let Ok(plan) = def.plan() else { continue };
            let report = Arc::new(SharedReport::default());
            report.update(|r| {
                r.state = "starting".into();
                r.node = b.config.node_id;
            });
            let (stop, stopped) = watch::channel(false);
            let (queries, asked) = mpsc::channel(16);
            let bootstrap = format!("{}:{}", b.advertised_host, b.advertised_port);
            let weak = Arc::downgrade(b);
            let task = {
                let (def, report) = (def.clone(), Arc::clone(&report));
                tokio::spawn(async move {
                    let name = def.name.clone();
                    let res =
                        super::task::run(def, plan, bootstrap, Arc::clone(&report), stopped, asked)
                            .await;
                    if let Err(e) = res {
                        tracing::warn!(job = %name, error = %e, "job task failed; it restarts from its checkpoint");
                        report.update(|r| r.state = format!("failed: {e}"));
                        if let Some(b) = weak.upgrade() {
                            b.jobs
                                .failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(name, (Instant::now(), e.to_string()));
                        }
                    }
                })
            };
            tracing::info!(job = %name, "job task started");
            running.insert(
                name,
                Running {
                    def,
                    stop,
                    queries,
                    report,
                    task,
                },
            );
        }
    }

    /// The open windows of group `key` (the key columns' values) in job
    /// `name`, as the output records they will become; an error when the
    /// job's task does not run on this node.
    pub async fn query(
        &self,
        name: &str,
        key: Vec<serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>, String> {
        let sender = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.get(name).map(|r| r.queries.clone())
        };
        let Some(sender) = sender else {
            return Err(format!("job {name} does not run on this node"));
        };
        let (reply, answer) = oneshot::channel();
        let key = super::window::GroupKey::of(&key);
        sender
            .send(super::task::StateQuery { key, reply })
            .await
            .map_err(|_| format!("job {name} stopped"))?;
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .map_err(|_| format!("job {name} did not answer in 5 s"))?
            .map_err(|_| format!("job {name} stopped"))
    }

    /// Every job, with the status its task reports when it runs here.
    pub fn views(&self, b: &Broker) -> Vec<JobView> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let defs: BTreeMap<String, JobDef> = b.meta.jobs();
        defs.into_values()
            .map(|def| {
                let status = match (running.get(&def.name), failed.get(&def.name)) {
                    (Some(r), _) => r.report.get(),
                    (None, Some((_, why))) => super::task::idle_report(&format!("failed: {why}")),
                    (None, None) => {
                        let input = def.plan().map(|p| p.input_topic).unwrap_or_default();
                        let node = b.meta.topic(&input).map(|t| b.leader_of(&input, &t, 0).0);
                        match node {
                            Some(n) if n >= 0 && n != b.config.node_id => JobReport {
                                state: format!("runs on node {n}"),
                                node: n,
                                ..JobReport::default()
                            },
                            Some(_) => super::task::idle_report("starting"),
                            None => super::task::idle_report("waiting for its input topic"),
                        }
                    }
                };
                JobView { def, status }
            })
            .collect()
    }
}

/// Whether this node runs `def`: it leads partition 0 of the input topic.
fn runs_here(b: &Broker, def: &JobDef) -> bool {
    let Ok(plan) = def.plan() else {
        return false;
    };
    b.partition(&plan.input_topic, 0)
        .is_some_and(|p| matches!(p.leadership().role, crate::partition::Role::Leader))
}

/// Why a job could not be created or dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobChangeError {
    /// The definition is refused.
    #[error(transparent)]
    Invalid(#[from] super::job::JobError),
    /// A job of that name exists.
    #[error("job {0} already exists")]
    Exists(String),
    /// No job of that name.
    #[error("job {0} does not exist")]
    Unknown(String),
    /// The controller did not record it.
    #[error(transparent)]
    Controller(#[from] crate::controller::ControllerError),
}

/// Defines job `def` in the cluster (through the controller); its task
/// starts within a second on the node that leads its input. Blocking.
pub fn create(b: &Broker, def: JobDef) -> Result<(), JobChangeError> {
    def.plan()?;
    if b.meta.jobs().contains_key(&def.name) {
        return Err(JobChangeError::Exists(def.name));
    }
    b.controller
        .submit_blocking(&[crate::controller::Command::CreateJob { def: def.clone() }])?;
    match b.meta.jobs().get(&def.name) {
        Some(d) if *d == def => Ok(()),
        // Another definition of the same name won the race.
        _ => Err(JobChangeError::Exists(def.name)),
    }
}

/// Drops job `name` (its task stops within a second). Its output topic and
/// checkpoint stay. Blocking.
pub fn drop_job(b: &Broker, name: &str) -> Result<(), JobChangeError> {
    if !b.meta.jobs().contains_key(name) {
        return Err(JobChangeError::Unknown(name.into()));
    }
    b.controller
        .submit_blocking(&[crate::controller::Command::DropJob { name: name.into() }])?;
    Ok(())
}
