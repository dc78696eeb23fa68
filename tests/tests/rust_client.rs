//! Weir's own Rust client (`weir-client`) against a real node: keyed, compressed,
//! idempotent produce; a consumer group of two splitting partitions and resuming
//! from committed offsets; seek by timestamp; admin calls; a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use weir_client::{
    Acks, Admin, ClientConfig, Compression, Consumer, ConsumerConfig, ConsumerRecord, NewTopic,
    OffsetReset, ProducerConfig, ProducerRecord, TopicPartition,
};
use weir_tests::{poll_until, unique, NodeOpts, WeirNode};

fn node() -> Result<WeirNode> {
    WeirNode::start(NodeOpts::default().arg("--group-initial-rebalance-delay-ms", 0))
}

/// Polls `consumer` until `want` records arrived or the deadline passes.
async fn drain(
    consumer: &mut Consumer,
    want: usize,
    deadline: Duration,
) -> Result<Vec<ConsumerRecord>> {
    let end = Instant::now() + deadline;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < end {
        got.extend(consumer.poll(Duration::from_millis(200)).await?);
    }
    ensure!(
        got.len() >= want,
        "got {} of {want} records before the deadline",
        got.len()
    );
    Ok(got)
}

async fn produce_keyed(
    bootstrap: &str,
    topic: &str,
    n: usize,
    compression: Compression,
) -> Result<Vec<(String, i32, i64)>> {
    let producer = ProducerConfig::new(bootstrap)
        .acks(Acks::All)
        .idempotent(true)
        .compression(compression)
        .build()
        .await?;
    let mut pending = Vec::new();
    for i in 0..n {
        let key = format!("key-{}", i % 5);
        let rec = ProducerRecord::new(topic, format!("{i}")).key(key.clone());
        pending.push((key, producer.send(rec).await?));
    }
    producer.flush().await?;
    let mut out = Vec::new();
    for (key, d) in pending {
        let meta = d.await?;
        out.push((key, meta.partition, meta.offset));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_idempotent_produce_keeps_per_key_order_and_dense_offsets() -> Result<()> {
    let node = node()?;
    let admin = Admin::connect(ClientConfig::new(node.bootstrap())).await?;
    let topic = unique("rc-keyed");
    admin.create_topic(NewTopic::new(&topic, 3), false).await?;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        produce_keyed(node.bootstrap(), &topic, 40, codec).await?;
    }
    let mut consumer = ConsumerConfig::new(node.bootstrap())
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    consumer.assign((0..3).map(|p| TopicPartition::new(&topic, p)).collect());
    let got = drain(&mut consumer, 200, Duration::from_secs(20)).await?;
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut key_partition: HashMap<String, i32> = HashMap::new();
    let mut last_value: HashMap<String, i64> = HashMap::new();
    for r in &got {
        by_partition.entry(r.partition).or_default().push(r.offset);
        let key = String::from_utf8(r.key.clone().context("record without key")?.to_vec())?;
        let value: i64 =
            String::from_utf8(r.value.clone().context("no value")?.to_vec())?.parse()?;
        let p = *key_partition.entry(key.clone()).or_insert(r.partition);
        ensure!(
            p == r.partition,
            "key {key} landed on partitions {p} and {}",
            r.partition
        );
        // Values restart at 0 for each codec round; within a round they grow per key.
        if let Some(prev) = last_value.insert(key.clone(), value) {
            ensure!(value > prev || value < 5, "key {key}: {value} after {prev}");
        }
    }
    for (p, offsets) in by_partition {
        let want: Vec<i64> = (0..offsets.len() as i64).collect();
        ensure!(
            offsets == want,
            "partition {p} offsets not dense: {offsets:?}"
        );
    }
    consumer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_split_partitions_and_resume_from_commits() -> Result<()> {
    let mut node = node()?;
    let admin = Admin::connect(ClientConfig::new(node.bootstrap())).await?;
    let topic = unique("rc-group");
    let group = unique("rc-g");
    admin.create_topic(NewTopic::new(&topic, 4), false).await?;
    produce_keyed(node.bootstrap(), &topic, 100, Compression::None).await?;

    let build = |b: String, g: String| async move {
        ConsumerConfig::new(&b)
            .group(&g)
            .auto_offset_reset(OffsetReset::Earliest)
            .auto_commit(false)
            .build()
            .await
    };
    // Each member polls in its own task, as each would in its own process.
    let stop = Arc::new(AtomicBool::new(false));
    let member = || {
        let (b, g, t, stop) = (
            node.bootstrap().to_string(),
            group.clone(),
            topic.clone(),
            stop.clone(),
        );
        let state = Arc::new(Mutex::new((Vec::<TopicPartition>::new(), 0usize)));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut c = build(b, g).await?;
            c.subscribe(&[&t])?;
            while !stop.load(Ordering::Relaxed) {
                let n = c.poll(Duration::from_millis(100)).await?.len();
                let mut s = shared.lock().unwrap();
                s.0 = c.assignment();
                s.1 += n;
            }
            c.commit().await?;
            anyhow::Ok(c)
        });
        (task, state)
    };
    let (ta, sa) = member();
    let (tb, sb) = member();
    poll_until(Duration::from_secs(30), || {
        let (a, b) = (sa.lock().unwrap().clone(), sb.lock().unwrap().clone());
        let all: HashSet<_> = a.0.iter().chain(b.0.iter()).collect();
        let settled =
            !a.0.is_empty() && !b.0.is_empty() && all.len() == 4 && a.0.len() + b.0.len() == 4;
        Ok((settled && a.1 + b.1 >= 100).then_some(()))
    })
    .context("the two members never split the four partitions and read everything")?;
    stop.store(true, Ordering::Relaxed);
    let a = ta.await??;
    let b = tb.await??;
    b.close().await?;
    // After b leaves, a owns all four partitions.
    let mut a = a;
    let end = Instant::now() + Duration::from_secs(30);
    while a.assignment().len() != 4 {
        a.poll(Duration::from_millis(100)).await?;
        ensure!(
            Instant::now() < end,
            "a never took over: {:?}",
            a.assignment()
        );
    }
    a.commit().await?;
    a.close().await?;

    // New records after the commits; a restarted node; a new member resumes with
    // exactly the new records (no re-delivery of committed ones).
    produce_keyed(node.bootstrap(), &topic, 20, Compression::Lz4).await?;
    node.stop()?;
    node.restart()?;
    let mut c = build(node.bootstrap().to_string(), group.clone()).await?;
    c.subscribe(&[&topic])?;
    let got = drain(&mut c, 20, Duration::from_secs(30)).await?;
    let extra = c.poll(Duration::from_millis(500)).await?;
    ensure!(
        got.len() + extra.len() == 20,
        "re-delivered: {} records",
        got.len() + extra.len()
    );
    c.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_to_timestamp_and_admin_calls() -> Result<()> {
    let node = node()?;
    let admin = Admin::connect(ClientConfig::new(node.bootstrap())).await?;
    let topic = unique("rc-time");
    let mut new = NewTopic::new(&topic, 1);
    new.configs.push(("retention.ms".into(), "3600000".into()));
    admin.create_topic(new, false).await?;
    let producer = ProducerConfig::new(node.bootstrap())
        .acks(Acks::Leader)
        .build()
        .await?;
    let base = weir_tests::raw::now_ms() - 600_000;
    for i in 0..30i64 {
        producer
            .send(
                ProducerRecord::new(&topic, format!("{i}"))
                    .timestamp(base + i * 1000)
                    .partition(0),
            )
            .await?;
    }
    producer.flush().await?;
    let mut consumer = ConsumerConfig::new(node.bootstrap()).build().await?;
    consumer.assign(vec![TopicPartition::new(&topic, 0)]);
    consumer.seek_to_timestamp(base + 17_500).await?;
    let got = drain(&mut consumer, 1, Duration::from_secs(10)).await?;
    ensure!(
        got[0].offset == 18 && got[0].timestamp == base + 18_000,
        "first record {:?}",
        got[0]
    );

    let topics = admin.list_topics(false).await?;
    ensure!(topics.contains(&topic), "{topics:?}");
    admin.create_partitions(&topic, 3).await?;
    ensure!(admin.partitions(&topic).await?.len() == 3);
    admin.delete_topics(std::slice::from_ref(&topic)).await?;
    let end = Instant::now() + Duration::from_secs(10);
    while admin.list_topics(false).await?.contains(&topic) {
        ensure!(Instant::now() < end, "topic still listed after delete");
    }
    Ok(())
}

/// Records sent without a delivery future (`send_detached`) are stored like
/// any other; a batch the broker refuses is reported after the flush, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_sends_report_a_refused_batch_after_the_flush() -> Result<()> {
    let node = node()?;
    let admin = Admin::connect(ClientConfig::new(node.bootstrap())).await?;
    let topic = unique("rc-detached");
    let mut new = NewTopic::new(&topic, 1);
    new.configs
        .push(("max.message.bytes".into(), "2000".into()));
    admin.create_topic(new, false).await?;
    let producer = ProducerConfig::new(node.bootstrap())
        .idempotent(true)
        .build()
        .await?;
    for i in 0..100 {
        producer
            .send_detached(ProducerRecord::new(&topic, format!("{i}")).partition(0))
            .await?;
    }
    producer.flush().await?;
    ensure!(
        producer.take_detached_error().is_none(),
        "stored records reported a failure"
    );
    let tp = TopicPartition::new(&topic, 0);
    let end = admin
        .list_offsets(std::slice::from_ref(&tp), weir_client::OffsetSpec::Latest)
        .await?
        .get(&tp)
        .map_or(0, |l| l.offset);
    ensure!(end == 100, "{end} records stored, 100 sent");
    producer
        .send_detached(ProducerRecord::new(&topic, vec![b'x'; 10_000]).partition(0))
        .await?;
    producer.flush().await?;
    let err = producer
        .take_detached_error()
        .context("a batch over max.message.bytes was not reported")?;
    ensure!(
        err.kafka_code() == Some(10),
        "expected MESSAGE_TOO_LARGE (10), got {err}"
    );
    ensure!(
        producer.take_detached_error().is_none(),
        "the failure was reported twice"
    );
    Ok(())
}

/// A batch over the topic's `max.message.bytes` made of records that each
/// fit goes again in smaller batches (as Kafka's Java producer splits it):
/// every small record is stored once, in the order sent, with the offset
/// its future answered; a record over the limit by itself fails alone with
/// MESSAGE_TOO_LARGE and, for an idempotent producer, leaves no gap in the
/// sequence numbers the next batches need. Before, every record of the
/// batch failed (`weir produce` into a 50 KB topic stored nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_topic_limit_is_split_and_only_an_oversized_record_fails() -> Result<()> {
    let node = node()?;
    let admin = Admin::connect(ClientConfig::new(node.bootstrap())).await?;
    for idempotent in [true, false] {
        let topic = unique("rc-split");
        let mut new = NewTopic::new(&topic, 1);
        new.configs
            .push(("max.message.bytes".into(), "20000".into()));
        admin.create_topic(new, false).await?;
        let producer = ProducerConfig::new(node.bootstrap())
            .idempotent(idempotent)
            .linger(Duration::from_secs(3600))
            .build()
            .await?;
        // 200 records of about 1 KB and, 150th, one of 30 KB: one batch.
        let mut futures = Vec::new();
        for i in 0..200 {
            let value = if i == 150 {
                "B".repeat(30_000)
            } else {
                format!("{i:04}{}", "s".repeat(1_000))
            };
            futures.push(
                producer
                    .send(ProducerRecord::new(&topic, value).partition(0))
                    .await?,
            );
        }
        producer.flush().await?;
        let mut offsets = Vec::new();
        for (i, f) in futures.into_iter().enumerate() {
            match (i, f.await) {
                (150, Err(e)) => ensure!(
                    e.kafka_code() == Some(10),
                    "the 30 KB record failed with {e}, not MESSAGE_TOO_LARGE"
                ),
                (150, Ok(m)) => anyhow::bail!("the 30 KB record was stored at {}", m.offset),
                (_, r) => offsets.push(r.with_context(|| format!("record {i} failed"))?.offset),
            }
        }
        ensure!(
            offsets == (0..199).collect::<Vec<i64>>(),
            "offsets answered (idempotent: {idempotent}): {offsets:?}"
        );
        // The producer goes on: the next batch lands after them.
        let next = producer
            .send(ProducerRecord::new(&topic, "after").partition(0))
            .await?;
        producer.flush().await?;
        ensure!(next.await?.offset == 199, "the next record's offset");
        let values = values_of(node.bootstrap(), &topic, 200).await?;
        let want: Vec<String> = (0..200)
            .filter(|i| *i != 150)
            .map(|i| format!("{i:04}{}", "s".repeat(1_000)))
            .chain(["after".to_string()])
            .collect();
        ensure!(
            values == want,
            "stored (idempotent: {idempotent}): {} records, first {:?}",
            values.len(),
            values
                .iter()
                .map(|v| &v[..4.min(v.len())])
                .take(5)
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// Sends `values` to partition 0 of `topic`, one batch per inner list (the
/// producer lingers for an hour: each flush ends a batch).
async fn send_batches(
    producer: &weir_client::Producer,
    topic: &str,
    batches: &[Vec<String>],
) -> Result<()> {
    for batch in batches {
        for v in batch {
            producer
                .send_detached(ProducerRecord::new(topic, v.clone()).partition(0))
                .await?;
        }
        producer.flush().await?;
        if let Some(e) = producer.take_detached_error() {
            return Err(e.into());
        }
    }
    Ok(())
}

/// The values of the first `want` records of `topic`.
async fn values_of(bootstrap: &str, topic: &str, want: usize) -> Result<Vec<String>> {
    Ok(weir_tests::topic_reader::read_topic(bootstrap, topic, want)
        .await?
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect())
}

/// The Kafka error code of a failed send.
fn code_of(err: &anyhow::Error) -> Option<i16> {
    err.downcast_ref::<weir_client::Error>()
        .and_then(weir_client::Error::kafka_code)
}

/// A producer that takes over another's idempotent identity and sequence
/// numbers (as a job task restarted, or started on a new leader, does)
/// sends records the first one wrote already: the broker recognises each
/// batch (the last five as retries, older ones as duplicates) and writes
/// none twice, whichever of the two writers is first; the batch past them
/// is written. A batch cut differently that reaches past what was written
/// is refused as out of order, never dropped as a duplicate nor written.
/// An identity the partition does not know is taken at whatever sequence
/// it sends, as Kafka does since 2.5 (a producer whose state was dropped
/// by retention, DeleteRecords or a recreated topic goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_producer_identity_writes_no_record_twice() -> Result<()> {
    let node = node()?;
    let bootstrap = node.bootstrap();
    let admin = Admin::connect(ClientConfig::new(bootstrap)).await?;
    let (topic, other) = (unique("rc-resume"), unique("rc-unknown"));
    admin.create_topic(NewTopic::new(&topic, 1), false).await?;
    admin.create_topic(NewTopic::new(&other, 1), false).await?;
    // Eight batches of two records; the first writer sends seven
    // (sequences 0–13).
    let batches: Vec<Vec<String>> = (0..8)
        .map(|b| (0..2).map(|i| format!("b{b}-{i}")).collect())
        .collect();
    let first = ProducerConfig::new(bootstrap)
        .idempotent(true)
        .linger(Duration::from_secs(3600))
        .build()
        .await?;
    send_batches(&first, &topic, &batches[..7]).await?;
    ensure!(first.next_sequence(&topic, 0).await? == 14);
    let (pid, epoch) = first.identity();
    ensure!(pid >= 0 && epoch >= 0, "not idempotent: {pid}/{epoch}");
    let resumed = |seq: i32, t: &str| {
        ProducerConfig::new(bootstrap)
            .linger(Duration::from_secs(3600))
            .resume(pid, epoch, t, 0, seq)
    };
    // Takes over from sequence 2 (after the first batch): batch 1 is older
    // than the five the partition remembers, 2–6 are among them, and 7 is
    // new.
    let second = resumed(2, &topic).build().await?;
    ensure!(second.identity() == (pid, epoch));
    send_batches(&second, &topic, &batches[1..]).await?;
    ensure!(second.next_sequence(&topic, 0).await? == 16);
    let want: Vec<String> = batches.concat();
    ensure!(values_of(bootstrap, &topic, 16).await? == want);
    // The earlier writer's last batch again, after the new one moved on:
    // still a duplicate (the earlier writer retrying late).
    send_batches(&resumed(12, &topic).build().await?, &topic, &batches[6..7]).await?;
    // Cut differently: sequences 2–17, older than the batches remembered
    // but reaching past the last written (15). Refused whole.
    let straddling: Vec<String> = (2..18).map(|n| format!("s{n}")).collect();
    let err = send_batches(
        &resumed(2, &topic).retries(0).build().await?,
        &topic,
        &[straddling],
    )
    .await
    .expect_err("a batch reaching past the written sequences was taken");
    ensure!(
        code_of(&err) == Some(45),
        "expected OUT_OF_ORDER_SEQUENCE_NUMBER, got {err:#}"
    );
    ensure!(
        values_of(bootstrap, &topic, 16).await? == want,
        "the log changed after a late retry or a refused batch"
    );
    // Unknown to `other`: taken at sequence 4, and known from then on.
    let unknown = resumed(4, &other).restart_unknown(false).build().await?;
    send_batches(&unknown, &other, &batches[..2]).await?;
    ensure!(unknown.next_sequence(&other, 0).await? == 8);
    let values = values_of(bootstrap, &other, 4).await?;
    ensure!(values == batches[..2].concat(), "{other} holds {values:?}");
    Ok(())
}

/// An idempotent producer idle past `producer.id.expiration.ms` is
/// forgotten by the partitions it wrote to; its next batch is taken at the
/// sequence it carries, as Kafka does since 2.5: nothing fails, nothing is
/// written twice, and the batches after it follow in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_producer_forgotten_by_its_partition_goes_on() -> Result<()> {
    let node = WeirNode::start(
        NodeOpts::default()
            .arg("--producer-id-expiration-ms", 1000)
            .arg("--maintenance-interval-ms", 200),
    )?;
    let bootstrap = node.bootstrap();
    let admin = Admin::connect(ClientConfig::new(bootstrap)).await?;
    let topic = unique("rc-forgot");
    admin.create_topic(NewTopic::new(&topic, 1), false).await?;
    let producer = ProducerConfig::new(bootstrap)
        .idempotent(true)
        .linger(Duration::from_secs(3600))
        .build()
        .await?;
    let batch = |from: usize| -> Vec<String> { (from..from + 4).map(|i| i.to_string()).collect() };
    send_batches(&producer, &topic, &[batch(0), batch(4)]).await?;
    poll_until(Duration::from_secs(30), || {
        Ok(
            (weir_tests::metric(node.admin_addr(), "weir_producer_state_expired_total")? > 0)
                .then_some(()),
        )
    })
    .context("the producer never expired")?;
    ensure!(producer.next_sequence(&topic, 0).await? == 8);
    send_batches(&producer, &topic, &[batch(8), batch(12)]).await?;
    ensure!(
        producer.next_sequence(&topic, 0).await? == 16,
        "numbering did not go on after the partition forgot the producer"
    );
    let values = values_of(bootstrap, &topic, 16).await?;
    let want: Vec<String> = (0..16).map(|i| i.to_string()).collect();
    ensure!(values == want, "the log holds {values:?}");
    Ok(())
}

/// A detached batch (`send_detached_batch`) lands in its partition in order,
/// with its keys, headers and timestamps, interleaved correctly with single
/// sends; a partition out of range is refused before anything is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_batch_lands_in_order_in_its_partition() -> Result<()> {
    // Batches encoded by the task that sends them (the default) and by the
    // producer's own task as they are sealed (what jobs use); small
    // batches, so a list of records fills several.
    for (encode_when_sealed, batch_size) in [(false, 256 * 1024), (false, 8192), (true, 8192)] {
        detached_batches_land_in_order(encode_when_sealed, batch_size)
            .await
            .with_context(|| {
                format!("encode_when_sealed {encode_when_sealed}, batch_size {batch_size}")
            })?;
    }
    Ok(())
}

async fn detached_batches_land_in_order(encode_when_sealed: bool, batch_size: usize) -> Result<()> {
    let node = node()?;
    let admin = Admin::connect(ClientConfig::new(node.bootstrap())).await?;
    let topic = unique("rc-batch");
    admin.create_topic(NewTopic::new(&topic, 2), false).await?;
    let producer = ProducerConfig::new(node.bootstrap())
        .idempotent(true)
        .batch_size(batch_size)
        .encode_when_sealed(encode_when_sealed)
        .build()
        .await?;
    producer
        .send_detached(ProducerRecord::new(&topic, "first").partition(1))
        .await?;
    let batch = |from: usize| -> Vec<weir_client::BatchRecord> {
        (from..from + 500)
            .map(|i| weir_client::BatchRecord {
                key: Some(bytes::Bytes::from(format!("k{i}"))),
                value: Some(bytes::Bytes::from(format!("v{i}"))),
                headers: vec![weir_client::Header {
                    key: "n".into(),
                    value: Some(bytes::Bytes::from(i.to_string())),
                }],
                timestamp: Some(1_700_000_000_000 + i as i64),
            })
            .collect()
    };
    producer.send_detached_batch(&topic, 1, batch(0)).await?;
    // A record someone waits for, between detached ones: its answer is
    // its own offset.
    let awaited = producer
        .send(ProducerRecord::new(&topic, "middle").partition(1))
        .await?;
    producer.send_detached_batch(&topic, 1, batch(500)).await?;
    // A batch its writer encoded (as a job's aggregate task does): numbered
    // after the records queued before it (an idempotent partition refuses
    // it otherwise), sent as it is.
    let mut built = weir_storage::BatchBuilder::new(-1, -1, -1, 64 * 1024);
    for r in batch(1000) {
        let h = &r.headers[0];
        built.push(
            r.timestamp.unwrap_or_default(),
            r.key.as_deref(),
            r.value.as_deref(),
            std::iter::once((h.key.as_bytes(), h.value.as_deref())),
        );
    }
    producer.send_built_batch(&topic, 1, built).await?;
    let last = producer
        .send(ProducerRecord::new(&topic, "last").partition(1))
        .await?;
    let refused = producer.send_detached_batch(&topic, 2, batch(0)).await;
    ensure!(refused.is_err(), "partition 2 of 2 accepted");
    producer.flush().await?;
    ensure!(
        producer.take_detached_error().is_none(),
        "a failure reported"
    );
    let middle = awaited.await?;
    ensure!(
        middle.offset == 501,
        "the awaited record answered offset {}",
        middle.offset
    );
    let last = last.await?;
    ensure!(
        last.offset == 1502,
        "the record after the built batch answered offset {}",
        last.offset
    );
    let mut consumer = ConsumerConfig::new(node.bootstrap())
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    consumer.assign(vec![TopicPartition::new(&topic, 1)]);
    let got = drain(&mut consumer, 1503, Duration::from_secs(20)).await?;
    let value = |r: &weir_client::ConsumerRecord| {
        String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
    };
    ensure!(value(&got[0]) == "first" && value(&got[501]) == "middle");
    ensure!(got[501].offset == middle.offset);
    for (i, r) in got.iter().filter(|r| r.key.is_some()).enumerate() {
        ensure!(
            value(r) == format!("v{i}")
                && r.key.as_deref() == Some(format!("k{i}").as_bytes())
                && r.timestamp == 1_700_000_000_000 + i as i64
                && r.headers.first().and_then(|h| h.value.as_deref())
                    == Some(i.to_string().as_bytes()),
            "record {i} out of place: {r:?}"
        );
    }
    ensure!(value(&got[1502]) == "last");
    ensure!(got.iter().all(|r| r.partition == 1) && got.len() == 1503);
    Ok(())
}

/// What a producer sends is what a consumer gets: a record's headers in
/// order, repeated keys included (Kafka allows them), and under
/// `message.timestamp.type=LogAppendTime` the broker's append time on every
/// record instead of the producer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_append_times_reach_the_consumer_as_sent() -> Result<()> {
    let node = node()?;
    let admin = Admin::connect(ClientConfig::new(node.bootstrap())).await?;
    let topic = unique("rc-append-time");
    let mut new = NewTopic::new(&topic, 1);
    new.configs
        .push(("message.timestamp.type".into(), "LogAppendTime".into()));
    admin.create_topic(new, false).await?;
    let producer = ProducerConfig::new(node.bootstrap()).build().await?;
    let before = weir_tests::raw::now_ms();
    for i in 0..3 {
        producer
            .send(
                ProducerRecord::new(&topic, format!("v{i}"))
                    .timestamp(1_000_000 + i)
                    .header("trace", format!("first-{i}"))
                    .header("trace", format!("second-{i}"))
                    .header("other", "x")
                    .partition(0),
            )
            .await?;
    }
    producer.flush().await?;
    let mut consumer = ConsumerConfig::new(node.bootstrap()).build().await?;
    consumer.assign(vec![TopicPartition::new(&topic, 0)]);
    consumer.seek(&TopicPartition::new(&topic, 0), 0)?;
    let got = drain(&mut consumer, 3, Duration::from_secs(10)).await?;
    ensure!(got.len() == 3, "read {} records", got.len());
    for (i, r) in got.iter().enumerate() {
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        let (first, second) = (format!("first-{i}"), format!("second-{i}"));
        ensure!(
            headers
                == vec![
                    ("trace", Some(first.as_bytes())),
                    ("trace", Some(second.as_bytes())),
                    ("other", Some(&b"x"[..])),
                ],
            "record {i}: headers {headers:?}"
        );
        ensure!(
            r.log_append_time && r.timestamp >= before,
            "record {i}: timestamp {} (log append time: {}), produced after {before}",
            r.timestamp,
            r.log_append_time
        );
    }
    Ok(())
}
