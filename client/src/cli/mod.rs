//! The `weir` client commands: `topic`, `produce`, `consume`, `group`, `bench`.
//!
//! The `weir` binary (broker crate) embeds [`Command`] with
//! `#[command(flatten)]` next to its own subcommands and calls [`run`].

mod bench;
mod bench_stats;
mod consume;
mod group;
mod produce;
pub mod time;
mod topic;

use clap::{Args, Subcommand};

pub use bench::BenchCommand;
pub use consume::ConsumeArgs;
pub use group::GroupCommand;
pub use produce::ProduceArgs;
pub use topic::TopicCommand;

use crate::cluster::ClientConfig;

/// Default broker address.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Where to connect; every command takes it.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap: String,
}

impl ConnectArgs {
    /// The client config for these arguments.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(&self.bootstrap).client_id("weir-cli")
    }
}

/// The client subcommands of `weir`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe, alter and delete topics.
    Topic {
        /// What to do.
        #[command(subcommand)]
        cmd: TopicCommand,
    },
    /// Produce records from stdin lines or a file.
    Produce(ProduceArgs),
    /// Consume records and print them.
    Consume(ConsumeArgs),
    /// List, describe, reset offsets of and delete consumer groups.
    Group {
        /// What to do.
        #[command(subcommand)]
        cmd: GroupCommand,
    },
    /// Measure produce, consume and end-to-end throughput and latency.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        cmd: BenchCommand,
    },
}

/// Runs one client command.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Topic { cmd } => topic::run(cmd).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Group { cmd } => group::run(cmd).await,
        Command::Bench { cmd } => bench::run(cmd).await,
    }
}

/// Parses `key=value`.
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: Command,
    }

    fn parse(args: &[&str]) -> Command {
        let mut v = vec!["weir"];
        v.extend_from_slice(args);
        TestCli::try_parse_from(v).unwrap().cmd
    }

    #[test]
    fn topic_create_parses() {
        match parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "6",
            "--config",
            "retention.ms=1000",
        ]) {
            Command::Topic {
                cmd: TopicCommand::Create(a),
            } => {
                assert_eq!(a.name, "orders");
                assert_eq!(a.partitions, 6);
                assert_eq!(
                    a.config,
                    vec![("retention.ms".to_string(), "1000".to_string())]
                );
                assert_eq!(a.connect.bootstrap, DEFAULT_BOOTSTRAP);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn produce_and_consume_parse() {
        match parse(&[
            "produce",
            "t",
            "--key-separator",
            ":",
            "--acks",
            "0",
            "--compression",
            "zstd",
            "-b",
            "h:1",
        ]) {
            Command::Produce(a) => {
                assert_eq!(a.key_separator.as_deref(), Some(":"));
                assert_eq!(a.acks, crate::Acks::None);
                assert_eq!(a.compression, crate::Compression::Zstd);
                assert_eq!(a.connect.bootstrap, "h:1");
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "consume",
            "t",
            "--from",
            "2024-01-02T03:04:05Z",
            "--format",
            "json",
            "--max-messages",
            "5",
        ]) {
            Command::Consume(a) => {
                assert_eq!(a.from, Some(consume::From::Timestamp(1_704_164_645_000)));
                assert_eq!(a.max_messages, Some(5));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["consume", "t", "--from", "42", "--group", "g"]) {
            Command::Consume(a) => assert_eq!(a.from, Some(consume::From::Offset(42))),
            other => panic!("{other:?}"),
        }
        assert!(TestCli::try_parse_from(["weir", "consume", "t", "--from", "yesterday"]).is_err());
    }

    #[test]
    fn group_reset_needs_exactly_one_target() {
        match parse(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--dry-run",
        ]) {
            Command::Group {
                cmd: GroupCommand::ResetOffsets(a),
            } => {
                assert!(a.to_earliest && a.dry_run);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            TestCli::try_parse_from(["weir", "group", "reset-offsets", "g", "--topic", "t"])
                .is_err()
        );
        assert!(TestCli::try_parse_from([
            "weir",
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
    }

    #[test]
    fn bench_defaults() {
        match parse(&["bench", "produce", "--count", "10"]) {
            Command::Bench {
                cmd: BenchCommand::Produce(a),
            } => {
                assert_eq!(a.common.message_size, 1024);
                assert_eq!(a.common.count, Some(10));
                assert!(!a.common.json);
                assert_eq!(a.producer.rate, None);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["bench", "produce", "--rate", "5000", "--acks", "all"]) {
            Command::Bench {
                cmd: BenchCommand::Produce(a),
            } => {
                assert_eq!(a.producer.rate, Some(5000));
                assert_eq!(a.producer.acks, crate::Acks::All);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["bench", "e2e", "--rate", "100"]) {
            Command::Bench {
                cmd: BenchCommand::E2e(a),
            } => assert_eq!(a.producer.rate, Some(100)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_key_value("novalue").is_err());
    }
}
