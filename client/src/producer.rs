//! The producer: a cheap-to-clone handle feeding a background accumulator
//! task that batches records per partition and sends them to partition leaders.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::InitProducerIdRequest;
use tokio::sync::{mpsc, oneshot};

use crate::accumulator::{self, Msg};
use crate::cluster::{ClientConfig, Cluster};
use crate::error::{check, Error, Result};
use crate::partitioner::{partition_for_key, StickyPartitioner};
use crate::records::{BatchRecord, Compression, Header, PendingRecord};

/// How many replicas must acknowledge a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget: the broker sends no response.
    None,
    /// The leader has written the record.
    Leader,
    /// All in-sync replicas have the record.
    #[default]
    All,
}

impl Acks {
    /// The wire value (0, 1 or -1).
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            other => Err(Error::InvalidArgument(format!(
                "acks must be 0, 1, -1 or all, got {other:?}"
            ))),
        }
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Cluster connection settings.
    pub client: ClientConfig,
    /// Acknowledgement level.
    pub acks: Acks,
    /// How long a batch may wait for more records.
    pub linger: Duration,
    /// Bytes after which a batch is sent without waiting for `linger`. A
    /// batch of several records refused with MESSAGE_TOO_LARGE (over the
    /// topic's `max.message.bytes`) is sent again in halves, as Kafka's Java
    /// producer splits one, and the partition's later batches are kept to
    /// the largest half written; only a record too large by itself fails.
    /// Without idempotence, batches in flight beside the split one may land
    /// before it (as on any retry with several in flight).
    pub batch_size: usize,
    /// Batch compression codec.
    pub compression: Compression,
    /// Retries of a failed batch (retriable errors only).
    pub retries: u32,
    /// Pause before the first retry; it doubles after each, up to
    /// [`MAX_RETRY_BACKOFF`] (Kafka's `retry.backoff.max.ms`), so the default
    /// retries outlast a leader election.
    pub retry_backoff: Duration,
    /// Idempotent writes (producer id, epoch and sequence numbers); implies acks=all.
    pub idempotent: bool,
    /// Batches in flight per partition (forced to 1 when idempotent, to keep retries in order).
    pub max_in_flight: usize,
    /// Records buffered before `send` waits.
    pub buffer_records: usize,
    /// Broker-side timeout for Produce requests.
    pub request_timeout: Duration,
    /// An idempotent identity (producer id, epoch) to write with instead of
    /// asking for a new one: a writer taking over from an earlier one (see
    /// [`ProducerConfig::resume`]).
    pub identity: Option<(i64, i16)>,
    /// The next sequence number of partitions an earlier writer with the
    /// same identity wrote to: (topic, partition, next sequence).
    pub sequences: Vec<(String, i32, i32)>,
    /// Whether a batch a partition answers with UNKNOWN_PRODUCER_ID (a
    /// broker before Kafka 2.5 that forgot the producer) goes again from
    /// sequence 0 (default) or fails.
    pub restart_unknown: bool,
    /// Whether sending to a topic the cluster does not know asks it to
    /// create the topic (Metadata's `allow_auto_topic_creation`; the
    /// default, as Kafka's producer) or fails with UNKNOWN_TOPIC_OR_PARTITION.
    pub auto_create_topics: bool,
    /// The broker this producer runs inside, which takes batches of the
    /// partitions it leads in-process (see [`ProducerConfig::local`]).
    pub local: Option<std::sync::Arc<dyn crate::LocalProduce>>,
    /// Whether a batch is encoded by the producer's own task as it is
    /// sealed, while its records are still in cache (least CPU per
    /// record), or (the default) by the task that sends it, so several
    /// batches encode in parallel (most throughput for one producer).
    pub encode_when_sealed: bool,
}

/// The sequence number `n` records after `seq` (`n` may be negative):
/// Kafka's sequence numbers wrap from i32::MAX to 0.
pub fn sequence_after(seq: i32, n: i64) -> i32 {
    (i64::from(seq) + n).rem_euclid(i64::from(i32::MAX) + 1) as i32
}

/// The longest pause between two retries of a batch.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(1);

impl ProducerConfig {
    /// Defaults: acks=all, linger 5 ms, 256 KiB batches, no compression, not idempotent.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 256 * 1024,
            compression: Compression::None,
            // 100 ms, 200, 400, 800, then 1 s each: about 25 s in all.
            retries: 28,
            retry_backoff: Duration::from_millis(100),
            idempotent: false,
            max_in_flight: 5,
            buffer_records: 100_000,
            request_timeout: Duration::from_secs(30),
            identity: None,
            sequences: Vec::new(),
            restart_unknown: true,
            auto_create_topics: true,
            local: None,
            encode_when_sealed: false,
        }
    }

    /// Takes over idempotent identity (`producer_id`, `epoch`) from an earlier
    /// writer that had written up to sequence `next_sequence` (exclusive) of
    /// `topic`/`partition`. A record the earlier writer wrote, sent again
    /// under the same sequence number, is then not written twice: the
    /// broker answers its batch as a duplicate, or refuses it as out of
    /// order when the two writers cut their batches differently.
    pub fn resume(
        mut self,
        producer_id: i64,
        epoch: i16,
        topic: impl Into<String>,
        partition: i32,
        next_sequence: i32,
    ) -> Self {
        self.idempotent = true;
        self.identity = Some((producer_id, epoch));
        self.sequences
            .push((topic.into(), partition, next_sequence));
        self
    }

    /// Sets the acknowledgement level.
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// Encodes each batch as it is sealed (see
    /// [`ProducerConfig::encode_when_sealed`]).
    pub fn encode_when_sealed(mut self, on: bool) -> Self {
        self.encode_when_sealed = on;
        self
    }

    /// Sets the linger time.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets the batch size in bytes.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes.max(1);
        self
    }

    /// Sets the compression codec.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Sets the retry count.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Enables or disables idempotence.
    pub fn idempotent(mut self, on: bool) -> Self {
        self.idempotent = on;
        self
    }

    /// Sets the client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client = self.client.client_id(id);
        self
    }

    /// Sets whether a batch a partition answers with UNKNOWN_PRODUCER_ID
    /// goes again from sequence 0 (`true`, the default) or fails with it.
    pub fn restart_unknown(mut self, on: bool) -> Self {
        self.restart_unknown = on;
        self
    }

    /// Sets whether sending to an unknown topic asks the cluster to create
    /// it (`true`, the default) or fails.
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.auto_create_topics = on;
        self
    }

    /// Hands batches of the partitions `broker` leads to it in-process (a
    /// producer running inside that broker); the rest go over the network.
    pub fn local(mut self, broker: std::sync::Arc<dyn crate::LocalProduce>) -> Self {
        self.local = Some(broker);
        self
    }

    /// Connects and starts the producer.
    pub async fn build(self) -> Result<Producer> {
        Producer::new(self).await
    }
}

/// A record to send.
#[derive(Debug, Clone)]
pub struct ProducerRecord {
    /// Target topic.
    pub topic: String,
    /// Explicit partition, else chosen from the key (murmur2) or sticky for null keys.
    pub partition: Option<i32>,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers.
    pub headers: Vec<Header>,
    /// Timestamp in ms since the epoch; defaults to now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn timestamp(mut self, ts: i64) -> Self {
        self.timestamp = Some(ts);
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, p: i32) -> Self {
        self.partition = Some(p);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 with acks=0 (or when a retried duplicate was dropped by the broker).
    pub offset: i64,
    /// Log-append time if the topic uses it, else -1.
    pub log_append_time: i64,
}

/// Resolves when the broker acknowledged (or rejected) one record.
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed("producer"))))
    }
}

/// An async Kafka producer; clone it freely, all clones share one accumulator.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cluster: Arc<Cluster>,
    tx: mpsc::Sender<Msg>,
    sticky: StickyPartitioner,
    detached_error: accumulator::DetachedError,
    identity: (i64, i16),
    auto_create_topics: bool,
}

impl Producer {
    /// Connects to the cluster, obtains a producer id if idempotent, starts the accumulator.
    pub async fn new(mut config: ProducerConfig) -> Result<Producer> {
        if config.idempotent {
            config.acks = Acks::All;
            config.max_in_flight = 1;
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        let (pid, epoch) = match (config.idempotent, config.identity) {
            (true, Some(identity)) => identity,
            (true, None) => init_producer_id(&cluster).await?,
            (false, _) => (-1, -1),
        };
        let (tx, rx) = mpsc::channel(config.buffer_records.max(1));
        let sticky = StickyPartitioner::new(config.batch_size);
        let detached_error = accumulator::DetachedError::default();
        let auto_create_topics = config.auto_create_topics;
        tokio::spawn(accumulator::run(
            cluster.clone(),
            config,
            pid,
            epoch,
            rx,
            Arc::clone(&detached_error),
        ));
        Ok(Producer {
            inner: Arc::new(Inner {
                cluster,
                tx,
                sticky,
                detached_error,
                identity: (pid, epoch),
                auto_create_topics,
            }),
        })
    }

    /// The idempotent identity (producer id, epoch) this producer writes
    /// with; (−1, −1) when not idempotent.
    pub fn identity(&self) -> (i64, i16) {
        self.inner.identity
    }

    /// The sequence number the next batch of `topic`/`partition` gets
    /// (idempotent producers; 0 before the first).
    pub async fn next_sequence(&self, topic: &str, partition: i32) -> Result<i32> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::NextSequence(topic.to_string(), partition, tx))
            .await
            .map_err(|_| Error::Closed("producer"))?;
        rx.await.map_err(|_| Error::Closed("producer"))
    }

    /// The cluster handle this producer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// Queues a record; the returned future resolves once the broker acknowledged it.
    ///
    /// Awaiting `send` itself only waits for buffer space (back-pressure).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(record, Some(reply)).await?;
        Ok(DeliveryFuture { rx })
    }

    /// Queues a record with no delivery future, for writers of many records
    /// that only need to know that all of them were stored: after
    /// [`Producer::flush`], [`Producer::take_detached_error`] returns the
    /// first failure of such a record since it was last called.
    pub async fn send_detached(&self, record: ProducerRecord) -> Result<()> {
        self.enqueue(record, None).await
    }

    /// Queues `records` for partition `partition` of `topic`, in order, as
    /// one hand-off to the batching task: as [`Producer::send_detached`]
    /// for each, without a topic name, a partition choice and a channel
    /// message per record.
    pub async fn send_detached_batch(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<BatchRecord>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.check_partition(topic, partition).await?;
        let now = now_ms();
        let records = records
            .into_iter()
            .map(|r| PendingRecord {
                key: r.key,
                value: r.value,
                headers: r.headers,
                timestamp: r.timestamp.unwrap_or(now),
            })
            .collect();
        let msg = Msg::Records {
            topic: topic.to_string(),
            partition,
            records,
        };
        self.hand_off(msg).await
    }

    /// Queues `batch`, built by its writer, for partition `partition` of
    /// `topic` as one batch of its own after every record queued before it
    /// there, detached (as [`Producer::send_detached_batch`]): the producer
    /// only stamps it with its id and sequence numbers and sends it. For a
    /// writer that encodes its records straight into the batch format.
    pub async fn send_built_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: weir_storage::BatchBuilder,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.check_partition(topic, partition).await?;
        self.hand_off(Msg::Built {
            topic: topic.to_string(),
            partition,
            batch,
        })
        .await
    }

    /// The first failure of a record queued by [`Producer::send_detached`]
    /// since the last call, if any (call it after [`Producer::flush`]).
    pub fn take_detached_error(&self) -> Option<Error> {
        self.inner
            .detached_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether `topic` has partition `partition`.
    async fn check_partition(&self, topic: &str, partition: i32) -> Result<()> {
        let partitions = self
            .inner
            .cluster
            .partition_count(topic, self.inner.auto_create_topics)
            .await?;
        if partition < 0 || partition >= partitions {
            return Err(Error::InvalidArgument(format!(
                "partition {partition} out of range: {topic} has {partitions}"
            )));
        }
        Ok(())
    }

    /// Picks the record's partition and hands it to the accumulator.
    async fn enqueue(
        &self,
        record: ProducerRecord,
        reply: Option<oneshot::Sender<Result<RecordMetadata>>>,
    ) -> Result<()> {
        let partitions = self
            .inner
            .cluster
            .partition_count(&record.topic, self.inner.auto_create_topics)
            .await?;
        let pending = PendingRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp.unwrap_or_else(now_ms),
        };
        let partition = match (record.partition, &pending.key) {
            (Some(p), _) if p < 0 || p >= partitions => {
                return Err(Error::InvalidArgument(format!(
                    "partition {p} out of range: {} has {partitions}",
                    record.topic
                )))
            }
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => self
                .inner
                .sticky
                .next(&record.topic, pending.size(), partitions),
        };
        let msg = Msg::Record {
            topic: record.topic,
            partition,
            record: pending,
            reply,
        };
        self.hand_off(msg).await
    }

    /// Hands `msg` to the batching task (waits while its queue is full).
    async fn hand_off(&self, msg: Msg) -> Result<()> {
        self.inner
            .tx
            .send(msg)
            .await
            .map_err(|_| Error::Closed("producer"))
    }

    /// Sends a record and waits for its acknowledgement.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }

    /// Sends everything buffered now and waits until all of it is acknowledged.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| Error::Closed("producer"))?;
        rx.await.map_err(|_| Error::Closed("producer"))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn init_producer_id(cluster: &Cluster) -> Result<(i64, i16)> {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = (-1).into();
    req.producer_epoch = -1;
    let mut attempt = 0;
    loop {
        let conn = cluster.any_broker().await?;
        let result = conn.send(&req).await.and_then(|resp| {
            check(
                resp.error_code,
                "InitProducerId",
                "idempotent producer",
                None,
            )?;
            Ok((resp.producer_id.0, resp.producer_epoch))
        });
        match result {
            Err(e) if e.is_retriable() && attempt < cluster.config().metadata_retries => {
                attempt += 1;
                tokio::time::sleep(cluster.config().retry_backoff).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_both_ways() {
        assert_eq!(sequence_after(5, 3), 8);
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 4), 2);
        assert_eq!(sequence_after(0, -1), i32::MAX);
        assert_eq!(sequence_after(8, -8), 0);
    }

    #[test]
    fn acks_parse() {
        assert_eq!("all".parse::<Acks>().unwrap(), Acks::All);
        assert_eq!("-1".parse::<Acks>().unwrap().as_i16(), -1);
        assert_eq!("0".parse::<Acks>().unwrap().as_i16(), 0);
        assert!("2".parse::<Acks>().is_err());
    }
}
