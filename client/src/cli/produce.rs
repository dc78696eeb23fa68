//! `weir produce`: one record per input line.

use std::path::PathBuf;

use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{parse_key_value, ConnectArgs};
use crate::producer::{Acks, DeliveryFuture, ProducerConfig, ProducerRecord};
use crate::records::Compression;

/// `produce` arguments.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Split each line at the first occurrence into key and value.
    #[arg(long, short = 'k')]
    pub key_separator: Option<String>,
    /// Acknowledgements: 0, 1 or all (-1).
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// Write every record to this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Header `key=value` added to every record (repeatable).
    #[arg(long, short = 'H', value_parser = parse_key_value)]
    pub header: Vec<(String, String)>,
    /// Idempotent producer: a batch retried after a lost answer is never
    /// written twice. The default with `--acks all`, as Kafka's producer
    /// since 3.0; refused with `--acks 0` or `1`.
    #[arg(long, conflicts_with = "no_idempotent")]
    pub idempotent: bool,
    /// Turn the idempotent producer off.
    #[arg(long)]
    pub no_idempotent: bool,
    /// Linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// Whether `a` asks for an idempotent producer (as Kafka: on by default
/// with acks=all, off by default otherwise, and refused with acks 0 or 1
/// when asked for).
fn idempotence(a: &ProduceArgs) -> anyhow::Result<bool> {
    let all = a.acks == Acks::All;
    if a.idempotent && !all {
        anyhow::bail!("--idempotent needs --acks all (an idempotent producer waits for every in-sync replica)");
    }
    Ok(all && !a.no_idempotent)
}

pub(super) async fn run(a: ProduceArgs) -> anyhow::Result<()> {
    let mut config = ProducerConfig::new(&a.connect.bootstrap)
        .acks(a.acks)
        .compression(a.compression)
        .idempotent(idempotence(&a)?)
        .linger(std::time::Duration::from_millis(a.linger_ms))
        .client_id("weir-cli");
    config.client = a.connect.client_config();
    let producer = config.build().await?;
    let input: Box<dyn AsyncRead + Unpin + Send> = match &a.file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let mut lines = BufReader::new(input).lines();
    // Deliveries are checked in order through a bounded queue, so memory stays flat.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<DeliveryFuture>(10_000);
    let checker = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u64, 0u64);
        while let Some(d) = rx.recv().await {
            match d.await {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    if failed <= 10 {
                        eprintln!("delivery failed: {e}");
                    }
                }
            }
        }
        (ok, failed)
    });
    while let Some(line) = lines.next_line().await? {
        let (key, value) = match &a.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let mut rec = ProducerRecord::new(a.topic.clone(), value);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(p) = a.partition {
            rec = rec.partition(p);
        }
        for (k, v) in &a.header {
            rec = rec.header(k.clone(), v.clone());
        }
        let delivery = producer.send(rec).await?;
        if tx.send(delivery).await.is_err() {
            break;
        }
    }
    drop(tx);
    producer.flush().await?;
    let (ok, failed) = checker.await?;
    eprintln!(
        "produced {ok} record(s) to {}{}",
        a.topic,
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    if failed > 0 {
        anyhow::bail!("{failed} record(s) were not delivered");
    }
    Ok(())
}
