//! The consumer: manual assignment or group subscription, positions, seeks,
//! pause/resume, long-poll fetching and offset commits.
//!
//! A `Consumer` is owned by one task (`&mut self`), like the Java consumer;
//! group heartbeats run in a background task and flag rebalances, which the
//! next `poll` acts on.
//!
//! Fetches are pipelined like the Java consumer's: when `poll` returns records
//! it has already sent the next fetch round (one Fetch per leader) from the new
//! positions, in a background task, so the broker reads and the client decodes
//! while the application processes. At most one round is outstanding and its
//! answer is held until the next `poll`, so buffered data stays below about
//! two rounds' worth (the returned records plus one `fetch_max_bytes` answer).
//! A prefetched round remembers the positions it fetched from; data for a
//! partition whose position changed since (`seek`, reset, rebalance) or that is
//! paused or no longer assigned is discarded, never returned.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{codes, Error, Result};
use crate::fetcher::{fetch_round, FetchOutcome, FetchParams};
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
    /// The fetch round in flight (or answered but not yet consumed), if any.
    prefetch: Option<Prefetch>,
}

/// A fetch round running in the background, with the positions it fetched from.
#[derive(Debug)]
struct Prefetch {
    positions: BTreeMap<TopicPartition, i64>,
    task: tokio::task::JoinHandle<Result<FetchOutcome>>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Abandoned rounds are cancelled (a no-op once the task finished); the
        // connection routes the late answer nowhere.
        self.task.abort();
    }
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
            prefetch: None,
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
    ///
    /// Before returning records it sends the next fetch round (see the module docs).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maybe_rejoin().await?;
            self.maybe_auto_commit().await;
            self.init_positions().await?;
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let fetchable = self.fetchable();
            if self
                .prefetch
                .as_ref()
                .is_some_and(|p| p.positions != fetchable)
            {
                // Seeked, paused, resumed or reassigned since the round left: its
                // answer would be partly stale and it does not cover every
                // partition, so drop it and fetch afresh.
                self.prefetch = None;
            }
            if self.prefetch.is_none() {
                if fetchable.is_empty() {
                    if remaining.is_zero() {
                        return Ok(Vec::new());
                    }
                    tokio::time::sleep(remaining.min(Duration::from_millis(100))).await;
                    continue;
                }
                self.start_fetch(fetchable, remaining.min(self.config.fetch_max_wait));
            }
            let round_start = Instant::now();
            let Some(pending) = self.prefetch.as_mut() else {
                continue;
            };
            let joined = match tokio::time::timeout(remaining, &mut pending.task).await {
                Ok(joined) => joined,
                // Still in flight: keep it for the next poll.
                Err(_) => return Ok(Vec::new()),
            };
            let Some(done) = self.prefetch.take() else {
                continue;
            };
            let outcome = match joined {
                Ok(outcome) => outcome?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Only aborted when dropped, so never seen here.
                Err(_) => continue,
            };
            let records = self.absorb(&done.positions, outcome).await?;
            if !records.is_empty() {
                // Pipelining: the next round is on its way while the caller works.
                let next = self.fetchable();
                if !next.is_empty() {
                    self.start_fetch(next, self.config.fetch_max_wait);
                }
                return Ok(records);
            }
            if Instant::now() >= deadline {
                return Ok(records);
            }
            if round_start.elapsed() < Duration::from_millis(5) {
                // The broker answered at once with nothing (or ignored max_wait): do not spin.
                tokio::time::sleep(Duration::from_millis(10).min(remaining)).await;
            }
        }
    }

    /// Assigned, positioned, unpaused partitions and their positions.
    fn fetchable(&self) -> BTreeMap<TopicPartition, i64> {
        self.positions
            .iter()
            .filter(|(tp, _)| !self.paused.contains(*tp))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect()
    }

    /// Sends a fetch round from `positions` in the background.
    fn start_fetch(&mut self, positions: BTreeMap<TopicPartition, i64>, max_wait: Duration) {
        let params = FetchParams {
            max_wait,
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            partition_max_bytes: self.config.max_partition_fetch_bytes,
        };
        let cluster = self.cluster.clone();
        let snapshot = positions.clone();
        let task = tokio::spawn(async move { fetch_round(&cluster, &positions, params).await });
        self.prefetch = Some(Prefetch {
            positions: snapshot,
            task,
        });
    }

    /// Applies a finished round, keeping only partitions still fetchable at the
    /// position the round fetched from; everything else is discarded.
    async fn absorb(
        &mut self,
        fetched_from: &BTreeMap<TopicPartition, i64>,
        outcome: FetchOutcome,
    ) -> Result<Vec<ConsumerRecord>> {
        let valid = |c: &Consumer, tp: &TopicPartition| {
            !c.paused.contains(tp)
                && c.positions.contains_key(tp)
                && c.positions.get(tp) == fetched_from.get(tp)
        };
        let stale: Vec<&TopicPartition> =
            fetched_from.keys().filter(|tp| !valid(self, tp)).collect();
        let mut records = outcome.records;
        if !stale.is_empty() {
            records.retain(|r| {
                !stale
                    .iter()
                    .any(|tp| tp.partition == r.partition && *tp.topic == *r.topic)
            });
        }
        let mut advanced = Vec::new();
        for (tp, next) in outcome.positions {
            if valid(self, &tp) {
                advanced.push((tp, next));
            }
        }
        let out_of_range: Vec<TopicPartition> = outcome
            .out_of_range
            .into_iter()
            .filter(|tp| valid(self, tp))
            .collect();
        self.positions.extend(advanced);
        if !out_of_range.is_empty() {
            self.reset(&out_of_range).await?;
        }
        Ok(records)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, MetadataResponse,
        TopicName,
    };
    use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::records::{encode_batch, PendingRecord, ProducerStamp};

    const RECORDS_PER_FETCH: i64 = 5;

    use crate::connection::test_frame as frame;

    /// One batch of records `from..from+RECORDS_PER_FETCH`, each valued its own offset.
    fn batch(from: i64) -> Bytes {
        let records: Vec<PendingRecord> = (from..from + RECORDS_PER_FETCH)
            .map(|o| PendingRecord {
                key: None,
                value: Some(Bytes::from(o.to_string())),
                headers: Vec::new(),
                timestamp: 0,
            })
            .collect();
        let data = encode_batch(&records, ProducerStamp::NONE, Default::default()).unwrap();
        let mut data = BytesMut::from(&data[..]);
        // The base offset is outside the CRC.
        data[..8].copy_from_slice(&from.to_be_bytes());
        data.freeze()
    }

    /// A fake one-node cluster with topic `t` (one partition) whose every offset
    /// holds a record; Fetch answers after `delay` with a few records from the
    /// requested offset.
    async fn fake_broker(listener: TcpListener, fetches: Arc<AtomicUsize>, delay: Duration) {
        let port = listener.local_addr().unwrap().port();
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let fetches = fetches.clone();
            tokio::spawn(async move {
                let (mut read, write) = sock.into_split();
                let write = Arc::new(tokio::sync::Mutex::new(write));
                while let Ok(len) = read.read_u32().await {
                    let mut buf = BytesMut::zeroed(len as usize);
                    read.read_exact(&mut buf).await.unwrap();
                    let mut bytes = buf.freeze();
                    let header = decode_request_header_from_buffer(&mut bytes).unwrap();
                    let (id, v) = (header.correlation_id, header.request_api_version);
                    let out = match ApiKey::try_from(header.request_api_key) {
                        Ok(ApiKey::ApiVersions) => {
                            let mut resp = ApiVersionsResponse::default();
                            for (key, max) in [
                                (ApiKey::ApiVersions, 3),
                                (ApiKey::Metadata, 12),
                                (ApiKey::Fetch, 12),
                            ] {
                                let mut a = ApiVersion::default();
                                a.api_key = key as i16;
                                a.max_version = max;
                                resp.api_keys.push(a);
                            }
                            frame(id, &resp, v)
                        }
                        Ok(ApiKey::Metadata) => {
                            let mut resp = MetadataResponse::default();
                            let mut b = MetadataResponseBroker::default();
                            b.node_id = BrokerId(0);
                            b.host = StrBytes::from_static_str("127.0.0.1");
                            b.port = i32::from(port);
                            resp.brokers.push(b);
                            resp.controller_id = BrokerId(0);
                            let mut p = MetadataResponsePartition::default();
                            p.leader_id = BrokerId(0);
                            let mut t = MetadataResponseTopic::default();
                            t.name = Some(TopicName(StrBytes::from_static_str("t")));
                            t.partitions.push(p);
                            resp.topics.push(t);
                            frame(id, &resp, v)
                        }
                        Ok(ApiKey::Fetch) => {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            let req = FetchRequest::decode(&mut bytes, v).unwrap();
                            let mut resp = FetchResponse::default();
                            for t in req.topics {
                                let mut rt = FetchableTopicResponse::default();
                                rt.topic = t.topic.clone();
                                for p in t.partitions {
                                    let mut pd = PartitionData::default();
                                    pd.partition_index = p.partition;
                                    pd.high_watermark = 1_000_000;
                                    pd.records = Some(batch(p.fetch_offset));
                                    rt.partitions.push(pd);
                                }
                                resp.responses.push(rt);
                            }
                            let out = frame(id, &resp, v);
                            // Answer later, without blocking the next request.
                            let write = write.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = write.lock().await.write_all(&out).await;
                            });
                            continue;
                        }
                        other => panic!("unexpected request {other:?}"),
                    };
                    write.lock().await.write_all(&out).await.unwrap();
                }
            });
        }
    }

    async fn consumer(delay: Duration) -> (Consumer, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fetches = Arc::new(AtomicUsize::new(0));
        tokio::spawn(fake_broker(listener, fetches.clone(), delay));
        // Make sure the listener is up before connecting.
        drop(TcpStream::connect(&addr).await.unwrap());
        let mut c = ConsumerConfig::new(&addr).build().await.unwrap();
        c.assign(vec![tp()]);
        (c, fetches)
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn offsets(records: &[ConsumerRecord]) -> Vec<i64> {
        for r in records {
            let value = r.value.as_deref().unwrap();
            assert_eq!(
                value,
                r.offset.to_string().as_bytes(),
                "value matches offset"
            );
        }
        records.iter().map(|r| r.offset).collect()
    }

    fn run(from: i64) -> Vec<i64> {
        (from..from + RECORDS_PER_FETCH).collect()
    }

    #[tokio::test]
    async fn prefetches_and_discards_prefetched_data_after_seek() {
        let (mut c, fetches) = consumer(Duration::ZERO).await;
        let wait = Duration::from_secs(5);
        c.seek(&tp(), 0).unwrap();
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(0));
        assert_eq!(c.position(&tp()), Some(5));
        // The next round left before poll returned and has been answered by now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "next round prefetched");
        // Prefetched 5..10 must not be returned after a seek.
        c.seek(&tp(), 100).unwrap();
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(100));
        assert_eq!(c.position(&tp()), Some(105));
        // Undisturbed, the prefetched round is what the next poll returns.
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(105));
        // Seeking back to where the prefetch started is fine either way.
        c.seek(&tp(), 7).unwrap();
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(7));
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(12));
    }

    #[tokio::test]
    async fn seek_while_prefetch_in_flight_and_pause_resume() {
        let (mut c, _) = consumer(Duration::from_millis(50)).await;
        let wait = Duration::from_secs(5);
        c.seek(&tp(), 0).unwrap();
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(0));
        // The prefetch from 5 is still on the wire.
        c.seek(&tp(), 200).unwrap();
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(200));
        // A paused partition returns nothing and keeps its position.
        c.pause(&[tp()]);
        assert!(c.poll(Duration::from_millis(150)).await.unwrap().is_empty());
        assert_eq!(c.position(&tp()), Some(205));
        c.resume(&[tp()]);
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(205));
        // A poll that times out keeps the round for the next one.
        assert!(c.poll(Duration::from_millis(1)).await.unwrap().is_empty());
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(210));
        // Reassigned away and back: the old round is not used, the position restarts.
        c.assign(vec![]);
        c.assign(vec![tp()]);
        c.set_start_position(StartPosition::Offset(500));
        assert_eq!(offsets(&c.poll(wait).await.unwrap()), run(500));
    }
}
