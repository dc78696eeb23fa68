//! The consumer: manual assignment or group subscription, positions, seeks,
//! pause/resume, long-poll fetching and offset commits.
//!
//! A `Consumer` is owned by one task (`&mut self`), like the Java consumer;
//! group heartbeats run in a background task and flag rebalances, which the
//! next `poll` acts on.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{codes, Error, Result};
use crate::fetcher::{fetch_round, FetchParams};
use crate::group::{is_rebalance_code, GroupTimings, Membership};
use crate::offsets::{commit_offsets, fetch_committed, list_offsets, OffsetSpec};
use crate::records::ConsumerRecord;
use crate::topic_partition::TopicPartition;

/// Where to start when a partition has no committed offset (or it is out of range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only new records.
    #[default]
    Latest,
    /// Fail instead.
    None,
}

/// Where newly assigned partitions start, overriding committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The committed offset, else `auto_offset_reset`.
    #[default]
    Committed,
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record at or after this timestamp (ms since the epoch), else the end.
    Timestamp(i64),
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Cluster connection settings.
    pub client: ClientConfig,
    /// Consumer group (required for `subscribe` and commits).
    pub group_id: Option<String>,
    /// Where to start without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Commit positions automatically from `poll`.
    pub enable_auto_commit: bool,
    /// Interval between automatic commits.
    pub auto_commit_interval: Duration,
    /// Group session timeout.
    pub session_timeout: Duration,
    /// Group rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Longest a Fetch waits on the broker for `fetch_min_bytes`.
    pub fetch_max_wait: Duration,
    /// Bytes the broker should accumulate before answering a Fetch.
    pub fetch_min_bytes: i32,
    /// Upper bound on a Fetch response.
    pub fetch_max_bytes: i32,
    /// Upper bound per partition in a Fetch response.
    pub max_partition_fetch_bytes: i32,
}

impl ConsumerConfig {
    /// Defaults like the Java client's, with auto commit on when a group is set.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
        }
    }

    /// Sets the group id.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Sets the reset policy.
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Turns automatic commits on or off.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.enable_auto_commit = on;
        self
    }

    /// Sets the client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client = self.client.client_id(id);
        self
    }

    /// Connects and builds the consumer.
    pub async fn build(self) -> Result<Consumer> {
        Consumer::new(self).await
    }
}

/// An async Kafka consumer.
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    subscription: Vec<String>,
    membership: Option<Membership>,
    assignment: BTreeSet<TopicPartition>,
    positions: BTreeMap<TopicPartition, i64>,
    paused: HashSet<TopicPartition>,
    start: StartPosition,
    last_commit: Instant,
    /// Positions at the last successful commit, to skip no-op commits.
    committed: BTreeMap<TopicPartition, i64>,
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Consumer {
            cluster,
            config,
            subscription: Vec::new(),
            membership: None,
            assignment: BTreeSet::new(),
            positions: BTreeMap::new(),
            paused: HashSet::new(),
            start: StartPosition::Committed,
            last_commit: Instant::now(),
            committed: BTreeMap::new(),
        })
    }

    /// The cluster handle.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Joins the configured group subscribed to `topics`; the assignment arrives in `poll`.
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<()> {
        let group = self.config.group_id.clone().ok_or_else(|| {
            Error::InvalidArgument("subscribe needs a group id (ConsumerConfig::group)".into())
        })?;
        self.subscription = topics.iter().map(|t| t.as_ref().to_string()).collect();
        match &self.membership {
            Some(m) => m.request_rejoin(codes::REBALANCE_IN_PROGRESS),
            None => self.membership = Some(Membership::new(&group)),
        }
        Ok(())
    }

    /// Assigns partitions manually (no group membership).
    pub fn assign(&mut self, tps: Vec<TopicPartition>) {
        self.membership = None;
        self.subscription.clear();
        self.set_assignment(tps);
    }

    /// Assigns all partitions of `topic` manually.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<()> {
        let meta = self.cluster.topic(topic, false).await?;
        let mut tps: Vec<TopicPartition> = self.assignment.iter().cloned().collect();
        tps.extend(
            meta.partitions
                .iter()
                .map(|p| TopicPartition::new(topic, p.partition)),
        );
        self.assign(tps);
        Ok(())
    }

    fn set_assignment(&mut self, tps: Vec<TopicPartition>) {
        self.assignment = tps.into_iter().collect();
        self.positions.retain(|tp, _| self.assignment.contains(tp));
        self.paused.retain(|tp| self.assignment.contains(tp));
        self.committed.retain(|tp, _| self.assignment.contains(tp));
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.iter().cloned().collect()
    }

    /// Where newly assigned partitions start (default: committed offsets).
    pub fn set_start_position(&mut self, start: StartPosition) {
        self.start = start;
    }

    /// The next offset to fetch for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    /// Moves `tp` (which must be assigned) to `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        if !self.assignment.contains(tp) {
            return Err(Error::InvalidArgument(format!("{tp} is not assigned")));
        }
        self.positions.insert(tp.clone(), offset);
        Ok(())
    }

    /// Moves every assigned partition to the log start, log end or a timestamp.
    pub async fn seek_to(&mut self, spec: OffsetSpec) -> Result<()> {
        let tps = self.assignment();
        self.resolve(&tps, spec).await
    }

    /// Moves every assigned partition to the first record at or after `timestamp_ms`.
    pub async fn seek_to_timestamp(&mut self, timestamp_ms: i64) -> Result<()> {
        self.seek_to(OffsetSpec::Timestamp(timestamp_ms)).await
    }

    async fn resolve(&mut self, tps: &[TopicPartition], spec: OffsetSpec) -> Result<()> {
        if tps.is_empty() {
            return Ok(());
        }
        let found = list_offsets(&self.cluster, tps, spec).await?;
        let mut missing = Vec::new();
        for tp in tps {
            match found.get(tp) {
                Some(o) if o.offset >= 0 => {
                    self.positions.insert(tp.clone(), o.offset);
                }
                _ => missing.push(tp.clone()),
            }
        }
        // No record at or after the timestamp: start at the end.
        if !missing.is_empty() && spec != OffsetSpec::Latest {
            let ends = list_offsets(&self.cluster, &missing, OffsetSpec::Latest).await?;
            for (tp, o) in ends {
                self.positions.insert(tp, o.offset.max(0));
            }
        }
        Ok(())
    }

    /// Stops fetching `tps` until `resume`.
    pub fn pause(&mut self, tps: &[TopicPartition]) {
        self.paused.extend(tps.iter().cloned());
    }

    /// Resumes fetching `tps`.
    pub fn resume(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.paused.remove(tp);
        }
    }

    /// Partitions currently paused.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.paused.iter().cloned().collect()
    }

    /// Waits up to `timeout` for records; returns as soon as a fetch round yields any.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maybe_rejoin().await?;
            self.maybe_auto_commit().await;
            self.init_positions().await?;
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let fetchable: BTreeMap<TopicPartition, i64> = self
                .positions
                .iter()
                .filter(|(tp, _)| !self.paused.contains(*tp))
                .map(|(tp, o)| (tp.clone(), *o))
                .collect();
            if fetchable.is_empty() {
                if remaining.is_zero() {
                    return Ok(Vec::new());
                }
                tokio::time::sleep(remaining.min(Duration::from_millis(100))).await;
                continue;
            }
            let params = FetchParams {
                max_wait: remaining.min(self.config.fetch_max_wait),
                min_bytes: self.config.fetch_min_bytes,
                max_bytes: self.config.fetch_max_bytes,
                partition_max_bytes: self.config.max_partition_fetch_bytes,
            };
            let round_start = Instant::now();
            let outcome = fetch_round(&self.cluster, &fetchable, params).await?;
            for (tp, next) in outcome.positions {
                // Only if nobody re-assigned or seeked meanwhile (we hold &mut self, so never).
                if self.positions.get(&tp) == fetchable.get(&tp) {
                    self.positions.insert(tp, next);
                }
            }
            if !outcome.out_of_range.is_empty() {
                self.reset(&outcome.out_of_range).await?;
            }
            if !outcome.records.is_empty() || Instant::now() >= deadline {
                return Ok(outcome.records);
            }
            if round_start.elapsed() < Duration::from_millis(5) {
                // The broker answered at once with nothing (or ignored max_wait): do not spin.
                tokio::time::sleep(Duration::from_millis(10).min(remaining)).await;
            }
        }
    }

    async fn maybe_rejoin(&mut self) -> Result<()> {
        let Some(m) = self.membership.as_ref() else {
            return Ok(());
        };
        if !m.needs_rejoin() {
            return Ok(());
        }
        if self.config.enable_auto_commit && m.generation >= 0 {
            // Best effort: the old generation may already be fenced.
            let _ = self.commit().await;
        }
        let timings = GroupTimings {
            session_timeout: self.config.session_timeout,
            rebalance_timeout: self.config.rebalance_timeout,
            heartbeat_interval: self.config.heartbeat_interval,
        };
        let topics = self.subscription.clone();
        let cluster = self.cluster.clone();
        let Some(m) = self.membership.as_mut() else {
            return Ok(());
        };
        let assignment = m.join(&cluster, &timings, &topics).await?;
        self.set_assignment(assignment);
        Ok(())
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.config.group_id.is_none()
            || self.last_commit.elapsed() < self.config.auto_commit_interval
        {
            return;
        }
        if let Err(e) = self.commit().await {
            tracing::warn!(error = %e, "auto commit failed");
        }
    }

    /// Gives partitions without a position one: start override, committed, or reset policy.
    async fn init_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let spec = match self.start {
            StartPosition::Committed => None,
            StartPosition::Earliest => Some(OffsetSpec::Earliest),
            StartPosition::Latest => Some(OffsetSpec::Latest),
            StartPosition::Timestamp(t) => Some(OffsetSpec::Timestamp(t)),
            StartPosition::Offset(o) => {
                for tp in missing {
                    self.positions.insert(tp, o);
                }
                return Ok(());
            }
        };
        if let Some(spec) = spec {
            return self.resolve(&missing, spec).await;
        }
        let mut rest = missing;
        if let Some(group) = self.config.group_id.clone() {
            let committed = fetch_committed(&self.cluster, &group, Some(&rest)).await?;
            rest.retain(|tp| !committed.contains_key(tp));
            self.committed.extend(committed.clone());
            self.positions.extend(committed);
        }
        self.reset(&rest).await
    }

    async fn reset(&mut self, tps: &[TopicPartition]) -> Result<()> {
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => self.resolve(tps, OffsetSpec::Earliest).await,
            OffsetReset::Latest => self.resolve(tps, OffsetSpec::Latest).await,
            OffsetReset::None if tps.is_empty() => Ok(()),
            OffsetReset::None => Err(Error::InvalidArgument(format!(
                "no valid offset for {} and auto_offset_reset is none",
                tps[0]
            ))),
        }
    }

    /// Commits the current positions (the offsets of the next records to read).
    pub async fn commit(&mut self) -> Result<()> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .positions
            .iter()
            .filter(|(tp, o)| self.committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        self.commit_offsets(offsets).await
    }

    /// Commits explicit offsets (the next offset to read, i.e. last processed + 1).
    pub async fn commit_offsets(&mut self, offsets: BTreeMap<TopicPartition, i64>) -> Result<()> {
        let group = self
            .config
            .group_id
            .clone()
            .ok_or_else(|| Error::InvalidArgument("commit needs a group id".into()))?;
        self.last_commit = Instant::now();
        let (generation, member) = match &self.membership {
            Some(m) => (m.generation, m.member_id.clone()),
            None => (-1, String::new()),
        };
        match commit_offsets(&self.cluster, &group, generation, &member, &offsets).await {
            Ok(()) => {
                self.committed.extend(offsets);
                Ok(())
            }
            Err(e) => {
                if let (Some(m), true) = (&self.membership, is_rebalance_code(e.kafka_code())) {
                    m.request_rejoin(e.kafka_code().unwrap_or(0));
                }
                Err(e)
            }
        }
    }

    /// Committed offsets of the group for `tps`.
    pub async fn committed(&self, tps: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        let group = self
            .config
            .group_id
            .as_deref()
            .ok_or_else(|| Error::InvalidArgument("committed needs a group id".into()))?;
        fetch_committed(&self.cluster, group, Some(tps)).await
    }

    /// Commits (if auto commit is on) and leaves the group.
    pub async fn close(mut self) -> Result<()> {
        if self.config.enable_auto_commit && self.config.group_id.is_some() {
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "final commit failed");
            }
        }
        let cluster = self.cluster.clone();
        if let Some(m) = self.membership.as_mut() {
            m.leave(&cluster).await?;
        }
        Ok(())
    }
}
