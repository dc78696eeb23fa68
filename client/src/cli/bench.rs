//! `weir bench produce|consume|e2e`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, Subcommand};
use tokio::sync::mpsc;

use super::bench_stats::{histogram, spawn_progress, Progress, Summary};
use super::ConnectArgs;
use crate::admin::{Admin, NewTopic};
use crate::consumer::{Consumer, ConsumerConfig, StartPosition};
use crate::producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
use crate::records::Compression;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce as fast as possible; latency is send-to-acknowledgement.
    Produce(ProduceBenchArgs),
    /// Consume a topic from the start; latency is record age at receipt.
    Consume(ConsumeBenchArgs),
    /// Produce and consume at once; latency is produce-to-consume.
    E2e(E2eBenchArgs),
}

/// Options every benchmark shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Topic to use (created if missing, except by `consume`).
    #[arg(long, short = 't', default_value = "weir-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Message value size in bytes.
    #[arg(long, short = 's', default_value_t = 1024)]
    pub message_size: usize,
    /// Number of messages (default 1,000,000 unless --duration is given).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Run for this many seconds.
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

impl CommonArgs {
    fn limits(&self) -> (Option<u64>, Option<Duration>) {
        let d = self.duration.map(Duration::from_secs_f64);
        let c = self
            .count
            .or(if d.is_none() { Some(1_000_000) } else { None });
        (c, d)
    }
}

/// Producer tuning.
#[derive(Debug, Args)]
pub struct ProducerArgs {
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: Acks,
    /// Linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub batch_size: usize,
    /// Compression codec.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// Idempotent producer.
    #[arg(long)]
    pub idempotent: bool,
    /// Produce requests in flight per partition.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Target send rate in messages per second (default: unthrottled).
    ///
    /// Sends are paced against a fixed schedule, so latency can be measured
    /// below saturation without records queueing in the client.
    #[arg(long)]
    pub rate: Option<u64>,
}

/// `bench produce`.
#[derive(Debug, Args)]
pub struct ProduceBenchArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub producer: ProducerArgs,
}

/// `bench consume`.
#[derive(Debug, Args)]
pub struct ConsumeBenchArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    /// Consume as a member of this group instead of by assignment.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Stop after this many seconds without records.
    #[arg(long, default_value_t = 5.0)]
    pub idle_timeout: f64,
}

/// `bench e2e`.
#[derive(Debug, Args)]
pub struct E2eBenchArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub producer: ProducerArgs,
}

pub(super) async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let _summary = match cmd {
        BenchCommand::Produce(a) => produce(a).await?,
        BenchCommand::Consume(a) => consume(a).await?,
        BenchCommand::E2e(a) => e2e(a).await?,
    };
    Ok(())
}

fn emit(summary: &Summary, json: bool) {
    if json {
        println!("{}", summary.to_json());
    } else {
        summary.print_table();
    }
}

async fn ensure_topic(c: &CommonArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(c.connect.client_config()).await?;
    admin
        .create_topic(NewTopic::new(c.topic.clone(), c.partitions), true)
        .await?;
    Ok(())
}

async fn build_producer(c: &CommonArgs, p: &ProducerArgs) -> anyhow::Result<Producer> {
    let mut config = ProducerConfig::new(&c.connect.bootstrap)
        .acks(p.acks)
        .linger(Duration::from_millis(p.linger_ms))
        .batch_size(p.batch_size)
        .compression(p.compression)
        .idempotent(p.idempotent);
    config.max_in_flight = p.max_in_flight;
    config.client = c.connect.client_config().client_id("weir-bench");
    Ok(config.build().await?)
}

fn producer_json(c: &CommonArgs, p: &ProducerArgs) -> serde_json::Value {
    serde_json::json!({
        "topic": c.topic, "message_size": c.message_size, "acks": p.acks.as_i16(),
        "linger_ms": p.linger_ms, "batch_size": p.batch_size,
        "compression": p.compression.to_string(), "idempotent": p.idempotent,
        "rate": p.rate, "max_in_flight": p.max_in_flight,
    })
}

/// A payload of `size` bytes of seeded pseudo-random text (compressible like real data, not trivially).
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut b = BytesMut::with_capacity(size);
    for _ in 0..size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.put_u8(b'a' + (x % 16) as u8);
    }
    b.freeze()
}

/// Sleeps until message number `sent` is due when sending `rate` messages per second from `start`.
///
/// Waits only when the message is more than a millisecond early (the timer's
/// resolution); a sender that falls behind catches up without sleeping.
async fn pace(start: Instant, sent: u64, rate: Option<u64>) {
    if let Some(r) = rate.filter(|r| *r > 0) {
        let due = start + Duration::from_secs_f64(sent as f64 / r as f64);
        if due > Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// Awaits a delivery and tells whether it had already completed when first polled.
async fn await_delivery(mut fut: DeliveryFuture) -> (crate::Result<RecordMetadata>, bool) {
    tokio::select! {
        biased;
        r = &mut fut => (r, true),
        () = std::future::ready(()) => (fut.await, false),
    }
}

fn done(start: Instant, sent: u64, limits: (Option<u64>, Option<Duration>)) -> bool {
    limits.0.is_some_and(|c| sent >= c) || limits.1.is_some_and(|d| start.elapsed() >= d)
}

async fn produce(a: ProduceBenchArgs) -> anyhow::Result<Summary> {
    ensure_topic(&a.common).await?;
    let producer = build_producer(&a.common, &a.producer).await?;
    let progress = Arc::new(Progress::default());
    let value = payload(a.common.message_size);
    let size = value.len() as u64;
    let (tx, mut rx) = mpsc::channel::<(Instant, DeliveryFuture)>(100_000);
    let p2 = progress.clone();
    let collector = tokio::spawn(async move {
        let mut hist = histogram();
        // Records of one batch are acknowledged together by one Produce response:
        // a delivery still pending when the collector reaches it starts a new
        // acknowledgement group. If the collector lags, groups merge, so bytes
        // per group is then an upper bound of the producer's batch size.
        let mut groups = 0u64;
        while let Some((t0, fut)) = rx.recv().await {
            let (res, ready) = await_delivery(fut).await;
            if !ready || groups == 0 {
                groups += 1;
            }
            match res {
                Ok(_) => {
                    hist.saturating_record(t0.elapsed().as_micros() as u64);
                    p2.add(1, size);
                }
                Err(e) => {
                    if p2.messages() == 0 {
                        eprintln!("delivery failed: {e}");
                    }
                    p2.error();
                }
            }
        }
        (hist, groups)
    });
    let ticker = spawn_progress("produce", progress.clone());
    let limits = a.common.limits();
    let start = Instant::now();
    let mut sent = 0u64;
    while !done(start, sent, limits) {
        pace(start, sent, a.producer.rate).await;
        let t0 = Instant::now();
        let fut = producer
            .send(ProducerRecord::new(a.common.topic.clone(), value.clone()))
            .await?;
        if tx.send((t0, fut)).await.is_err() {
            break;
        }
        sent += 1;
    }
    drop(tx);
    producer.flush().await?;
    let (hist, groups) = collector.await?;
    let elapsed = start.elapsed();
    ticker.abort();
    let mut s = Summary::from_progress(
        "produce",
        &progress,
        elapsed,
        hist,
        "send to ack",
        producer_json(&a.common, &a.producer),
    );
    s.ack_groups = Some(groups);
    emit(&s, a.common.json);
    Ok(s)
}

async fn consume(a: ConsumeBenchArgs) -> anyhow::Result<Summary> {
    let mut config = ConsumerConfig::new(&a.common.connect.bootstrap);
    config.client = a.common.connect.client_config().client_id("weir-bench");
    config.group_id = a.group.clone();
    config.max_partition_fetch_bytes = 8 * 1024 * 1024;
    let mut consumer = config.build().await?;
    match &a.group {
        Some(_) => consumer.subscribe(&[a.common.topic.as_str()])?,
        None => consumer.assign_topic(&a.common.topic).await?,
    }
    consumer.set_start_position(StartPosition::Earliest);
    let progress = Arc::new(Progress::default());
    let ticker = spawn_progress("consume", progress.clone());
    let limits = a.common.limits();
    let idle = Duration::from_secs_f64(a.idle_timeout);
    let mut hist = histogram();
    let start = Instant::now();
    let mut last_record = Instant::now();
    let mut end = start;
    while !done(start, progress.messages(), limits) && last_record.elapsed() < idle {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        end = last_record;
        let now = now_micros();
        let bytes: usize = records
            .iter()
            .map(|r| {
                r.value.as_ref().map_or(0, |v| v.len()) + r.key.as_ref().map_or(0, |k| k.len())
            })
            .sum();
        for r in &records {
            hist.saturating_record((now - r.timestamp * 1000).max(0) as u64);
        }
        progress.add(records.len() as u64, bytes as u64);
    }
    ticker.abort();
    let _ = consumer.close().await;
    let config = serde_json::json!({ "topic": a.common.topic, "group": a.group });
    let s = Summary::from_progress(
        "consume",
        &progress,
        end - start,
        hist,
        "record age at receipt",
        config,
    );
    emit(&s, a.common.json);
    Ok(s)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn e2e(a: E2eBenchArgs) -> anyhow::Result<Summary> {
    ensure_topic(&a.common).await?;
    let mut config = ConsumerConfig::new(&a.common.connect.bootstrap);
    config.client = a
        .common
        .connect
        .client_config()
        .client_id("weir-bench-consumer");
    config.fetch_max_wait = Duration::from_millis(100);
    let mut consumer: Consumer = config.build().await?;
    consumer.assign_topic(&a.common.topic).await?;
    consumer.set_start_position(StartPosition::Latest);
    consumer.poll(Duration::ZERO).await?; // resolve start positions before producing
    let producer = build_producer(&a.common, &a.producer).await?;
    let limits = a.common.limits();
    let size = a.common.message_size.max(8);
    let (topic, rate) = (a.common.topic.clone(), a.producer.rate);
    let sender = tokio::spawn(async move {
        let start = Instant::now();
        let mut sent = 0u64;
        let filler = payload(size - 8);
        while !done(start, sent, limits) {
            pace(start, sent, rate).await;
            let mut v = BytesMut::with_capacity(size);
            v.put_i64(now_micros());
            v.extend_from_slice(&filler);
            producer
                .send(ProducerRecord::new(topic.clone(), v.freeze()))
                .await?;
            sent += 1;
        }
        producer.flush().await?;
        anyhow::Ok(sent)
    });
    let progress = Arc::new(Progress::default());
    let ticker = spawn_progress("e2e", progress.clone());
    let mut hist = histogram();
    let start = Instant::now();
    let mut sent_total: Option<u64> = None;
    let mut sender = Some(sender);
    let mut last_record = Instant::now();
    loop {
        if let Some(total) = sent_total {
            if progress.messages() >= total || last_record.elapsed() > Duration::from_secs(10) {
                break;
            }
        } else if sender.as_ref().is_some_and(|s| s.is_finished()) {
            if let Some(s) = sender.take() {
                sent_total = Some(s.await??);
            }
        }
        for r in consumer.poll(Duration::from_millis(200)).await? {
            last_record = Instant::now();
            let Some(v) = r.value.as_ref().filter(|v| v.len() >= 8) else {
                continue;
            };
            let sent_at = i64::from_be_bytes(v[..8].try_into().unwrap_or_default());
            hist.saturating_record((now_micros() - sent_at).max(0) as u64);
            progress.add(1, v.len() as u64);
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    let config = producer_json(&a.common, &a.producer);
    let s = Summary::from_progress(
        "e2e",
        &progress,
        elapsed,
        hist,
        "produce to consume",
        config,
    );
    emit(&s, a.common.json);
    Ok(s)
}
