//! The producer's background task: collects records into per-partition
//! batches, seals them on size or linger, and sends each sealed batch in its
//! own task with retries. Sequence numbers are assigned at sealing, so a
//! retried batch keeps its sequence.
//!
//! Like Kafka's, a partition's open batch keeps growing (up to `batch_size`)
//! while its in-flight window is full: linger only seals a batch when a send
//! slot is free, so a slow broker gets fewer, larger batches instead of a queue
//! of tiny ones.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;
use crate::error::{check, codes, Error, Result};
use crate::producer::sequence_after;
use crate::producer::{ProducerConfig, RecordMetadata};
use crate::records::{encode_batch, records_of, restamp, PendingRecord, ProducerStamp};

/// Messages from producer handles to the accumulator.
#[derive(Debug)]
pub(crate) enum Msg {
    /// One record for one partition.
    Record {
        topic: String,
        partition: i32,
        record: PendingRecord,
        /// `None` for a detached send (see [`crate::Producer::send_detached`]).
        reply: Reply,
    },
    /// Records for one partition, in order, detached (see
    /// [`crate::Producer::send_detached_batch`]).
    Records {
        topic: String,
        partition: i32,
        records: Vec<PendingRecord>,
    },
    /// A batch built by its writer, for one partition, detached (see
    /// [`crate::Producer::send_built_batch`]).
    Built {
        topic: String,
        partition: i32,
        batch: weir_storage::BatchBuilder,
    },
    /// Send everything now; answer when all is acknowledged.
    Flush(oneshot::Sender<()>),
    /// Answer the next sequence number of a partition.
    NextSequence(String, i32, oneshot::Sender<i32>),
}

type Tp = (Arc<str>, i32);

type Reply = Option<oneshot::Sender<Result<RecordMetadata>>>;

/// The records of a batch that someone waits for: their index in the batch
/// and where to answer (detached records have none, and take no room).
type Replies = Vec<(usize, oneshot::Sender<Result<RecordMetadata>>)>;

/// The first failure of a detached record since it was last taken.
pub(crate) type DetachedError = Arc<std::sync::Mutex<Option<Error>>>;

#[derive(Debug)]
struct OpenBatch {
    records: Vec<PendingRecord>,
    replies: Replies,
    bytes: usize,
    created: Instant,
}

#[derive(Debug)]
struct SealedBatch {
    tp: Tp,
    body: Body,
    replies: Replies,
    stamp: ProducerStamp,
}

#[derive(Debug, Default)]
struct PartitionState {
    open: Option<OpenBatch>,
    sealed: VecDeque<SealedBatch>,
    in_flight: usize,
    next_sequence: i32,
    /// Bytes of records a batch holds at most, when a batch was too large
    /// for the topic and split: what the split found ([`Split::cap`]).
    batch_cap: Option<usize>,
}

/// A sealed batch's records: as queued, or already encoded when the batch
/// was sealed (see [`ProducerConfig::encode_when_sealed`]).
#[derive(Debug)]
enum Body {
    Records(Vec<PendingRecord>),
    /// The encoded batch and how many records it holds.
    Encoded(Result<bytes::Bytes>, usize),
}

/// Settings the send tasks need.
#[derive(Debug)]
struct Shared {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    detached_error: DetachedError,
    /// Record lists of sent batches, emptied once their batch was encoded:
    /// the next batches fill them again instead of fresh memory whose pages
    /// fault in (at most [`SPARE_LISTS`]).
    spares: std::sync::Mutex<Vec<Vec<PendingRecord>>>,
}

impl Shared {
    /// An emptied record list to fill, if one is spare.
    fn spare_list(&self) -> Vec<PendingRecord> {
        let mut spares = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        spares.pop().unwrap_or_default()
    }

    /// `records` encoded as one batch stamped `stamp`, and how many they
    /// are; their list is kept for a later batch.
    fn encode(
        &self,
        records: Vec<PendingRecord>,
        stamp: ProducerStamp,
    ) -> (Result<bytes::Bytes>, usize) {
        let data = encode_batch(&records, stamp, self.config.compression);
        let count = records.len();
        self.recycle(records);
        (data, count)
    }

    /// Keeps `list` (emptied here) for a later batch, unless enough are kept.
    fn recycle(&self, mut list: Vec<PendingRecord>) {
        list.clear();
        let mut spares = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        if spares.len() < SPARE_LISTS {
            spares.push(list);
        }
    }
}

struct Accumulator {
    shared: Arc<Shared>,
    producer_id: i64,
    producer_epoch: i16,
    /// Per-partition state; `index` maps a partition to its slot here.
    partitions: Vec<(Tp, PartitionState)>,
    index: HashMap<Tp, usize>,
    topics: HashMap<String, Arc<str>>,
    /// The slot of the last record's partition: consecutive records for the
    /// same partition skip both hash lookups.
    last: Option<usize>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// A settled batch's partition, by how much its sequence numbers moved
    /// down, and the batch cap its split found (see [`Accumulator::sent`]).
    done_tx: mpsc::Sender<(Tp, i32, Option<usize>)>,
}

/// The most emptied record lists the accumulator keeps for reuse.
const SPARE_LISTS: usize = 4;

/// Runs until every producer handle is dropped and every batch is settled.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    producer_id: i64,
    producer_epoch: i16,
    mut rx: mpsc::Receiver<Msg>,
    detached_error: DetachedError,
) {
    let (done_tx, mut done_rx) = mpsc::channel(1024);
    let mut acc = Accumulator {
        shared: Arc::new(Shared {
            cluster,
            config,
            detached_error,
            spares: Default::default(),
        }),
        producer_id,
        producer_epoch,
        partitions: Vec::new(),
        index: HashMap::new(),
        topics: HashMap::new(),
        last: None,
        flush_waiters: Vec::new(),
        done_tx,
    };
    let mut open = true;
    loop {
        let deadline = acc.next_deadline();
        tokio::select! {
            msg = rx.recv(), if open => match msg {
                Some(m) => {
                    acc.handle(m);
                    // Drain whatever else is queued before sealing, to fill batches.
                    for _ in 0..4096 {
                        match rx.try_recv() {
                            Ok(m) => acc.handle(m),
                            Err(_) => break,
                        }
                    }
                }
                None => open = false,
            },
            Some((tp, shift, cap)) = done_rx.recv() => {
                acc.sent(&tp, shift, cap);
                // Settle every other finished batch too before sealing.
                while let Ok((tp, shift, cap)) = done_rx.try_recv() {
                    acc.sent(&tp, shift, cap);
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {}
        }
        let seal_all = !open || !acc.flush_waiters.is_empty();
        acc.seal_due(seal_all);
        acc.dispatch();
        if acc.is_idle() {
            for w in acc.flush_waiters.drain(..) {
                let _ = w.send(());
            }
            if !open {
                break;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

impl Accumulator {
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Flush(w) => self.flush_waiters.push(w),
            Msg::NextSequence(topic, partition, reply) => {
                let slot = self.slot(topic, partition);
                // Records not sealed yet take their numbers when they are.
                let p = &self.partitions[slot].1;
                let open = p.open.as_ref().map_or(0, |o| o.records.len() as i64);
                let _ = reply.send(sequence_after(p.next_sequence, open));
            }
            Msg::Record {
                topic,
                partition,
                record,
                reply,
            } => {
                let slot = self.slot(topic, partition);
                self.add(slot, record, reply);
            }
            Msg::Records {
                topic,
                partition,
                records,
            } => {
                let slot = self.slot(topic, partition);
                self.add_detached(slot, records);
            }
            Msg::Built {
                topic,
                partition,
                batch,
            } => {
                let slot = self.slot(topic, partition);
                // After the records queued before it, in its own batch.
                self.seal(slot);
                self.seal_built(slot, batch);
            }
        }
    }

    /// Numbers `batch` next in `slot`'s partition and queues it to send.
    fn seal_built(&mut self, slot: usize, mut batch: weir_storage::BatchBuilder) {
        let count = batch.len();
        if count == 0 {
            return;
        }
        let stamp = self.next_stamp(slot, count);
        batch.set_producer(stamp.producer_id, stamp.producer_epoch, stamp.base_sequence);
        let data = batch
            .finish(self.shared.config.compression.codec_id())
            .map(bytes::Bytes::from)
            .map_err(|e| Error::protocol("encoding record batch", e));
        let (tp, state) = &mut self.partitions[slot];
        state.sealed.push_back(SealedBatch {
            tp: tp.clone(),
            body: Body::Encoded(data, count),
            replies: Vec::new(),
            stamp,
        });
    }

    /// The producer stamp of `slot`'s next batch, of `count` records: its
    /// sequence numbers are taken.
    fn next_stamp(&mut self, slot: usize, count: usize) -> ProducerStamp {
        if !self.shared.config.idempotent {
            return ProducerStamp::NONE;
        }
        let state = &mut self.partitions[slot].1;
        let base = state.next_sequence;
        state.next_sequence = sequence_after(base, count as i64);
        ProducerStamp {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: base,
        }
    }

    /// Adds `record` to the open batch of `slot`, sealing it once full.
    fn add(&mut self, slot: usize, record: PendingRecord, reply: Reply) {
        let size = record.size();
        let open = self.open(slot);
        if let Some(reply) = reply {
            open.replies.push((open.records.len(), reply));
        }
        open.records.push(record);
        open.bytes += size;
        if open.bytes >= self.batch_size(slot) {
            self.seal(slot);
        }
    }

    /// Bytes of records a batch of `slot` is sealed at.
    fn batch_size(&self, slot: usize) -> usize {
        let cap = self.partitions[slot].1.batch_cap;
        cap.map_or(self.shared.config.batch_size, |c| {
            c.min(self.shared.config.batch_size)
        })
    }

    /// Adds detached `records` to the open batch of `slot` as [`Self::add`]
    /// would one by one, sealing each batch that fills.
    fn add_detached(&mut self, slot: usize, records: Vec<PendingRecord>) {
        let batch_size = self.batch_size(slot);
        let mut records = records.into_iter();
        while records.len() > 0 {
            let open = self.open(slot);
            for record in records.by_ref() {
                open.bytes += record.size();
                open.records.push(record);
                if open.bytes >= batch_size {
                    break;
                }
            }
            if open.bytes >= batch_size {
                self.seal(slot);
            }
        }
    }

    /// The open batch of `slot`, opened (in a spare record list) if there
    /// is none.
    fn open(&mut self, slot: usize) -> &mut OpenBatch {
        let shared = &self.shared;
        self.partitions[slot]
            .1
            .open
            .get_or_insert_with(|| OpenBatch {
                records: shared.spare_list(),
                replies: Vec::new(),
                bytes: 0,
                created: Instant::now(),
            })
    }

    /// The slot of `topic`/`partition`, created on first use.
    fn slot(&mut self, topic: String, partition: i32) -> usize {
        if let Some(i) = self.last {
            let (tp, _) = &self.partitions[i];
            if tp.1 == partition && *tp.0 == *topic {
                return i;
            }
        }
        let name = self
            .topics
            .entry(topic)
            .or_insert_with_key(|t| Arc::from(t.as_str()))
            .clone();
        let tp: Tp = (name, partition);
        let i = match self.index.get(&tp) {
            Some(&i) => i,
            None => {
                let i = self.partitions.len();
                // Where an earlier writer of the same identity left off.
                let next_sequence = self
                    .shared
                    .config
                    .sequences
                    .iter()
                    .find(|(t, p, _)| *p == tp.1 && **t == *tp.0)
                    .map_or(0, |s| s.2);
                self.index.insert(tp.clone(), i);
                self.partitions.push((
                    tp,
                    PartitionState {
                        next_sequence,
                        ..PartitionState::default()
                    },
                ));
                i
            }
        };
        self.last = Some(i);
        i
    }

    /// A batch of `tp` was settled: its send slot is free. When the
    /// partition had forgotten the producer and the batch went again from
    /// sequence 0, `shift` is how far its sequence numbers moved down: the
    /// batches sealed after it (not yet sent: one in flight per partition
    /// when idempotent) and the next ones move alike. `cap`: the batch was
    /// split to fit the topic, in pieces of at most that many bytes of
    /// records, which the partition's next batches hold at most.
    fn sent(&mut self, tp: &Tp, shift: i32, cap: Option<usize>) {
        if let Some(&i) = self.index.get(tp) {
            let p = &mut self.partitions[i].1;
            p.in_flight = p.in_flight.saturating_sub(1);
            if let Some(cap) = cap {
                p.batch_cap = Some(p.batch_cap.map_or(cap, |c| c.min(cap)).max(1));
            }
            if shift != 0 {
                let down = -i64::from(shift);
                p.next_sequence = sequence_after(p.next_sequence, down);
                for b in p.sealed.iter_mut() {
                    b.stamp.base_sequence = sequence_after(b.stamp.base_sequence, down);
                }
            }
        }
    }

    fn max_in_flight(&self) -> usize {
        self.shared.config.max_in_flight.max(1)
    }

    /// Whether a batch sealed now could be sent at once.
    fn has_free_slot(p: &PartitionState, max: usize) -> bool {
        p.in_flight + p.sealed.len() < max
    }

    /// When the next open batch lingers out; batches of partitions whose window
    /// is full are left out (a finished send wakes the loop instead).
    fn next_deadline(&self) -> Option<Instant> {
        let linger = self.shared.config.linger;
        let max = self.max_in_flight();
        self.partitions
            .iter()
            .filter(|(_, p)| Self::has_free_slot(p, max))
            .filter_map(|(_, p)| p.open.as_ref().map(|o| o.created + linger))
            .min()
    }

    /// Seals open batches that lingered out (or all, when flushing or closing),
    /// but only where a send slot is free: otherwise the batch keeps growing.
    fn seal_due(&mut self, all: bool) {
        let linger = self.shared.config.linger;
        let max = self.max_in_flight();
        let now = Instant::now();
        for i in 0..self.partitions.len() {
            let p = &self.partitions[i].1;
            let due = p
                .open
                .as_ref()
                .is_some_and(|o| all || o.created + linger <= now);
            if due && Self::has_free_slot(p, max) {
                self.seal(i);
            }
        }
    }

    fn seal(&mut self, slot: usize) {
        let Some(open) = self.partitions[slot].1.open.take() else {
            return;
        };
        let stamp = self.next_stamp(slot, open.records.len());
        let (tp, state) = &mut self.partitions[slot];
        let body = if self.shared.config.encode_when_sealed {
            let (data, count) = self.shared.encode(open.records, stamp);
            Body::Encoded(data, count)
        } else {
            Body::Records(open.records)
        };
        state.sealed.push_back(SealedBatch {
            tp: tp.clone(),
            body,
            replies: open.replies,
            stamp,
        });
    }

    fn dispatch(&mut self) {
        let max = self.max_in_flight();
        for (_, state) in self.partitions.iter_mut() {
            while state.in_flight < max {
                let Some(batch) = state.sealed.pop_front() else {
                    break;
                };
                state.in_flight += 1;
                tokio::spawn(send_batch(self.shared.clone(), batch, self.done_tx.clone()));
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.partitions
            .iter()
            .all(|(_, p)| p.open.is_none() && p.sealed.is_empty() && p.in_flight == 0)
    }
}

/// Encodes, sends and retries one batch, then completes its records' futures.
/// A broker before Kafka 2.5 whose partition forgot an idempotent producer
/// (it expired there, idle past `producer.id.expiration.ms`) answers
/// UNKNOWN_PRODUCER_ID to a batch not at sequence 0 (Weir and later Kafka
/// take it at its sequence): the batch goes again from 0 (as Kafka's Java
/// producer does for an idempotent producer whose state retention removed),
/// unless the producer was built to report it
/// ([`crate::ProducerConfig::restart_unknown`]).
async fn send_batch(
    shared: Arc<Shared>,
    batch: SealedBatch,
    done: mpsc::Sender<(Tp, i32, Option<usize>)>,
) {
    let (topic, partition) = (batch.tp.0.clone(), batch.tp.1);
    let mut stamp = batch.stamp;
    let (mut data, count) = match batch.body {
        Body::Records(records) => shared.encode(records, stamp),
        Body::Encoded(data, count) => (data, count),
    };
    let result = loop {
        let sent = match &data {
            Ok(bytes) => produce_with_retries(&shared, &topic, partition, bytes.clone()).await,
            Err(e) => Err(e.duplicate()),
        };
        match sent {
            Err(e)
                if e.kafka_code() == Some(codes::UNKNOWN_PRODUCER_ID)
                    && shared.config.restart_unknown
                    && stamp.base_sequence != 0 =>
            {
                tracing::info!(topic = %topic, partition, producer_id = stamp.producer_id, "the partition forgot this producer; numbering its batches from 0 again");
                stamp.base_sequence = 0;
                data = data.and_then(|d| restamp(&d, 0));
            }
            other => break other,
        }
    };
    let mut shift = batch.stamp.base_sequence - stamp.base_sequence;
    // A batch over the topic's `max.message.bytes` goes again in smaller
    // batches, as Kafka's Java producer splits one (found from outside:
    // `weir produce` into a topic with a 50 KB limit failed every record,
    // each 1 KB, in 256 KiB batches).
    let result = match (result, &data) {
        (Err(e), Ok(bytes)) if e.kafka_code() == Some(codes::MESSAGE_TOO_LARGE) && count > 1 => {
            match records_of(bytes) {
                Ok(records) if records.len() == count => {
                    let split = send_split(&shared, &topic, partition, records, stamp).await;
                    shift += split.unwritten;
                    settle_each(&shared, &topic, partition, batch.replies, count, split.each);
                    let _ = done.send((batch.tp, shift, Some(split.cap))).await;
                    return;
                }
                _ => Err(e),
            }
        }
        (result, _) => result,
    };
    match result {
        Ok((base_offset, log_append_time)) => {
            for (i, reply) in batch.replies {
                // Nobody waits for it any more.
                if reply.is_closed() {
                    continue;
                }
                let offset = if base_offset >= 0 {
                    base_offset + i as i64
                } else {
                    -1
                };
                let _ = reply.send(Ok(RecordMetadata {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    log_append_time,
                }));
            }
        }
        Err(e) => {
            tracing::warn!(%topic, partition, error = %e, "batch failed");
            let detached = batch.replies.len() < count;
            for (_, reply) in batch.replies {
                let _ = reply.send(Err(e.duplicate()));
            }
            if detached {
                let mut slot = shared
                    .detached_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| e.duplicate());
            }
        }
    }
    let _ = done.send((batch.tp, shift, None)).await;
}

/// What [`send_split`] did.
struct Split {
    /// Each record's offset and log-append time, or error.
    each: Vec<Result<(i64, i64)>>,
    /// Sequence numbers the records never written took (refused alone as
    /// too large), which the partition's later batches move down by.
    unwritten: i32,
    /// Bytes of records the partition's next batches hold at most: the
    /// largest piece written, or half the smallest piece of several records
    /// refused if that is more (a batch split only because one record in it
    /// is too large by itself must not make every later batch tiny).
    cap: usize,
}

/// Sends `records` (a batch refused as too large, first sequence
/// `stamp.base_sequence`) as halves, halving again each half refused as too
/// large, in order.
async fn send_split(
    shared: &Shared,
    topic: &str,
    partition: i32,
    records: Vec<PendingRecord>,
    stamp: ProducerStamp,
) -> Split {
    let idempotent = stamp.base_sequence >= 0;
    let mut out = Split {
        each: Vec::with_capacity(records.len()),
        unwritten: 0,
        cap: 1,
    };
    // The whole batch was refused.
    let mut smallest_refused = records.iter().map(PendingRecord::size).sum::<usize>();
    // Pieces still to send, next last: (index of their first record, records).
    let mut pieces: Vec<(usize, Vec<PendingRecord>)> = vec![(0, records)];
    while let Some((first, mut piece)) = pieces.pop() {
        let piece_stamp = ProducerStamp {
            base_sequence: if idempotent {
                sequence_after(stamp.base_sequence, first as i64 - i64::from(out.unwritten))
            } else {
                -1
            },
            ..stamp
        };
        let sent = match encode_batch(&piece, piece_stamp, shared.config.compression) {
            Ok(bytes) => produce_with_retries(shared, topic, partition, bytes).await,
            Err(e) => Err(e),
        };
        let bytes = piece.iter().map(PendingRecord::size).sum::<usize>();
        match sent {
            Err(e) if e.kafka_code() == Some(codes::MESSAGE_TOO_LARGE) && piece.len() > 1 => {
                smallest_refused = smallest_refused.min(bytes);
                let back = piece.split_off(piece.len() / 2);
                pieces.push((first + piece.len(), back));
                pieces.push((first, piece));
            }
            Ok((base, append_time)) => {
                out.cap = out.cap.max(bytes);
                out.each.extend((0..piece.len()).map(|i| {
                    let offset = if base >= 0 { base + i as i64 } else { -1 };
                    Ok((offset, append_time))
                }));
            }
            Err(e) => {
                if idempotent && e.kafka_code() == Some(codes::MESSAGE_TOO_LARGE) {
                    out.unwritten += piece.len() as i32;
                }
                out.each
                    .extend((0..piece.len()).map(|_| Err(e.duplicate())));
            }
        }
    }
    out.cap = out.cap.max(smallest_refused / 2);
    out
}

/// Answers each of a split batch's waiting records with its own outcome
/// (`each`, by index in the batch); a failed detached record is kept for
/// [`crate::Producer::take_detached_error`].
fn settle_each(
    shared: &Shared,
    topic: &str,
    partition: i32,
    replies: Replies,
    count: usize,
    each: Vec<Result<(i64, i64)>>,
) {
    let mut waited = vec![false; count];
    for (i, reply) in replies {
        waited[i] = true;
        let answer = match &each[i] {
            Ok((offset, log_append_time)) => Ok(RecordMetadata {
                topic: topic.to_string(),
                partition,
                offset: *offset,
                log_append_time: *log_append_time,
            }),
            Err(e) => Err(e.duplicate()),
        };
        let _ = reply.send(answer);
    }
    let detached_failure = each
        .iter()
        .zip(&waited)
        .find_map(|(r, w)| r.as_ref().err().filter(|_| !w));
    if let Some(e) = detached_failure {
        tracing::warn!(%topic, partition, error = %e, "record failed");
        let mut slot = shared
            .detached_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| e.duplicate());
    }
}

async fn produce_with_retries(
    shared: &Shared,
    topic: &str,
    partition: i32,
    data: bytes::Bytes,
) -> Result<(i64, i64)> {
    let mut attempt = 0;
    let mut backoff = shared.config.retry_backoff;
    loop {
        match produce_once(shared, topic, partition, data.clone()).await {
            Ok(r) => return Ok(r),
            // An earlier attempt was written; the broker kept it.
            Err(e) if e.kafka_code() == Some(codes::DUPLICATE_SEQUENCE_NUMBER) => {
                return Ok((-1, -1))
            }
            Err(e)
                if retriable(&e, shared.config.idempotent) && attempt < shared.config.retries =>
            {
                attempt += 1;
                tracing::debug!(topic, partition, attempt, error = %e, "retrying batch");
                // A timed-out produce may come from a leader cut off from its
                // quorum, which others replaced meanwhile: ask again who leads.
                if e.is_stale_metadata() || e.kafka_code() == Some(codes::REQUEST_TIMED_OUT) {
                    shared.cluster.invalidate_topic(topic);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(crate::producer::MAX_RETRY_BACKOFF.max(backoff));
            }
            Err(e) => return Err(e),
        }
    }
}

fn retriable(e: &Error, idempotent: bool) -> bool {
    e.is_retriable() || (idempotent && e.kafka_code() == Some(codes::OUT_OF_ORDER_SEQUENCE_NUMBER))
}

async fn produce_once(
    shared: &Shared,
    topic: &str,
    partition: i32,
    data: bytes::Bytes,
) -> Result<(i64, i64)> {
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(data);
    let mut td = TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.to_string()));
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.transactional_id = None;
    req.acks = shared.config.acks.as_i16();
    req.timeout_ms = shared
        .config
        .request_timeout
        .as_millis()
        .min(i32::MAX as u128) as i32;
    req.topic_data = vec![td];
    let req = match &shared.config.local {
        Some(local) => match local.produce(req) {
            Ok(answer) => match answer.await {
                Some(resp) => return produced(&resp, topic, partition),
                None => return Ok((-1, -1)),
            },
            Err(req) => req,
        },
        None => req,
    };
    let conn = shared.cluster.leader(topic, partition).await?;
    if req.acks == 0 {
        conn.send_no_response(&req).await?;
        return Ok((-1, -1));
    }
    produced(&conn.send(&req).await?, topic, partition)
}

/// The base offset and log append time `resp` gives `topic`/`partition`'s
/// batch, or its error.
fn produced(resp: &ProduceResponse, topic: &str, partition: i32) -> Result<(i64, i64)> {
    let p = resp
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == partition)
        .ok_or_else(|| {
            Error::protocol(
                format!("reading Produce response for {topic}-{partition}"),
                "partition missing from response",
            )
        })?;
    check(
        p.error_code,
        "Produce",
        format!("{topic}-{partition}"),
        p.error_message.as_ref(),
    )?;
    Ok((p.base_offset, p.log_append_time_ms))
}
