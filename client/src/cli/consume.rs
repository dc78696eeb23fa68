//! `weir consume`: print records as text or JSON lines.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use super::time::parse_rfc3339_ms;
use super::ConnectArgs;
use crate::consumer::{ConsumerConfig, OffsetReset, StartPosition};
use crate::records::ConsumerRecord;
use crate::topic_partition::TopicPartition;

/// Where consumption starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// An explicit offset.
    Offset(i64),
    /// A timestamp in ms since the epoch.
    Timestamp(i64),
}

impl std::str::FromStr for From {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" | "beginning" => Ok(From::Earliest),
            "latest" | "end" => Ok(From::Latest),
            _ => match s.parse::<i64>() {
                Ok(o) if o >= 0 => Ok(From::Offset(o)),
                _ => parse_rfc3339_ms(s).map(From::Timestamp).map_err(|e| {
                    format!("expected earliest, latest, an offset or an RFC 3339 datetime: {e}")
                }),
            },
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The value (with `key<sep>` in front when `--print-key`).
    Text,
    /// One JSON object per record.
    Json,
}

/// `consume` arguments.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at earliest, latest, an offset or an RFC 3339 datetime
    /// (default: the group's committed offsets, else latest).
    #[arg(long)]
    pub from: Option<From>,
    /// Consume as a member of this group (offsets are committed).
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Only this partition (without a group).
    #[arg(long, short = 'p', conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print keys in text format.
    #[arg(long)]
    pub print_key: bool,
    /// Separator between key and value in text format.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub max_messages: Option<u64>,
    /// Stop after this many seconds without a record.
    #[arg(long)]
    pub timeout: Option<f64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

pub(super) async fn run(a: ConsumeArgs) -> anyhow::Result<()> {
    let mut config = ConsumerConfig::new(&a.connect.bootstrap).client_id("weir-cli");
    config.client = a.connect.client_config();
    config.auto_offset_reset = OffsetReset::Latest;
    config.group_id = a.group.clone();
    // Commit only what was printed: positions past a --max-messages cut would skip records.
    config.enable_auto_commit = false;
    let mut consumer = config.build().await?;
    match &a.group {
        Some(_) => consumer.subscribe(&[a.topic.as_str()])?,
        None => match a.partition {
            Some(p) => consumer.assign(vec![TopicPartition::new(a.topic.clone(), p)]),
            None => consumer.assign_topic(&a.topic).await?,
        },
    }
    consumer.set_start_position(match a.from {
        None => StartPosition::Committed,
        Some(From::Earliest) => StartPosition::Earliest,
        Some(From::Latest) => StartPosition::Latest,
        Some(From::Offset(o)) => StartPosition::Offset(o),
        Some(From::Timestamp(t)) => StartPosition::Timestamp(t),
    });
    let idle_limit = a.timeout.map(Duration::from_secs_f64);
    let mut last_record = Instant::now();
    let mut count = 0u64;
    let mut printed: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let stdout = std::io::stdout();
    'outer: loop {
        let wait = idle_limit.map_or(Duration::from_secs(1), |l| {
            l.saturating_sub(last_record.elapsed())
                .min(Duration::from_secs(1))
        });
        let records = tokio::select! {
            r = consumer.poll(wait) => r?,
            _ = tokio::signal::ctrl_c() => break,
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        let mut out = stdout.lock();
        for r in &records {
            print_record(&mut out, r, &a)?;
            printed.insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
            count += 1;
            if a.max_messages.is_some_and(|m| count >= m) {
                out.flush()?;
                break 'outer;
            }
        }
        out.flush()?;
        drop(out);
        if a.group.is_some() && last_commit.elapsed() >= Duration::from_secs(5) {
            last_commit = Instant::now();
            if let Err(e) = consumer.commit_offsets(printed.clone()).await {
                eprintln!("commit failed: {e}");
            }
        }
        if idle_limit.is_some_and(|l| last_record.elapsed() >= l) {
            break;
        }
    }
    if a.group.is_some() {
        consumer.commit_offsets(printed).await?;
        consumer.close().await?;
    }
    eprintln!("consumed {count} record(s)");
    Ok(())
}

fn text(b: &Option<bytes::Bytes>) -> String {
    b.as_ref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn print_record(out: &mut impl Write, r: &ConsumerRecord, a: &ConsumeArgs) -> std::io::Result<()> {
    match a.format {
        Format::Text if a.print_key => {
            writeln!(out, "{}{}{}", text(&r.key), a.key_separator, text(&r.value))
        }
        Format::Text => writeln!(out, "{}", text(&r.value)),
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|h| {
                    let v = h
                        .value
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    (
                        h.key.clone(),
                        v.map_or(serde_json::Value::Null, serde_json::Value::String),
                    )
                })
                .collect();
            let opt = |b: &Option<bytes::Bytes>| {
                b.as_ref().map_or(serde_json::Value::Null, |v| {
                    serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
                })
            };
            let v = serde_json::json!({
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": opt(&r.key),
                "value": opt(&r.value),
                "headers": headers,
            });
            writeln!(out, "{v}")
        }
    }
}
