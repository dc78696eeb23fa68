//! `weir topic create|list|describe|alter|delete`.

use clap::{Args, Subcommand};

use super::{parse_key_value, ConnectArgs};
use crate::admin::{Admin, AlterConfigOp, ConfigResource, NewTopic};

/// Topic subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List(ListArgs),
    /// Show partitions, leaders, replicas and configs.
    Describe(DescribeArgs),
    /// Add partitions or change configs.
    Alter(AlterArgs),
    /// Delete topics.
    Delete(DeleteArgs),
}

/// `topic create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    #[arg(long, short = 'p', default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor (-1 = broker default).
    #[arg(long, short = 'r', default_value_t = -1)]
    pub replication_factor: i16,
    /// Topic config `key=value` (repeatable).
    #[arg(long, short = 'c', value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Succeed if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// `topic list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include internal topics.
    #[arg(long)]
    pub internal: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// `topic describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Topics (all if none).
    pub names: Vec<String>,
    /// Also show non-default configs.
    #[arg(long)]
    pub configs: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// `topic alter`.
#[derive(Debug, Args)]
pub struct AlterArgs {
    /// Topic name.
    pub name: String,
    /// New total partition count.
    #[arg(long, short = 'p')]
    pub partitions: Option<i32>,
    /// Config to set, `key=value` (repeatable).
    #[arg(long, value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Config to revert to its default (repeatable).
    #[arg(long)]
    pub delete: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// `topic delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Topics to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

pub(super) async fn run(cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create(a) => {
            let admin = Admin::connect(a.connect.client_config()).await?;
            let topic = NewTopic {
                name: a.name.clone(),
                partitions: a.partitions,
                replication_factor: a.replication_factor,
                configs: a.config,
            };
            admin.create_topic(topic, a.if_not_exists).await?;
            println!("created topic {} ({} partitions)", a.name, a.partitions);
        }
        TopicCommand::List(a) => {
            let admin = Admin::connect(a.connect.client_config()).await?;
            for name in admin.list_topics(a.internal).await? {
                println!("{name}");
            }
        }
        TopicCommand::Describe(a) => describe(a).await?,
        TopicCommand::Alter(a) => {
            let admin = Admin::connect(a.connect.client_config()).await?;
            if let Some(p) = a.partitions {
                admin.create_partitions(&a.name, p).await?;
                println!("{}: now {p} partitions", a.name);
            }
            let mut ops: Vec<AlterConfigOp> = a
                .set
                .into_iter()
                .map(|(k, v)| AlterConfigOp::Set(k, v))
                .collect();
            ops.extend(a.delete.into_iter().map(AlterConfigOp::Delete));
            if !ops.is_empty() {
                admin
                    .alter_configs(&ConfigResource::Topic(a.name.clone()), &ops)
                    .await?;
                println!("{}: {} config change(s) applied", a.name, ops.len());
            }
        }
        TopicCommand::Delete(a) => {
            let admin = Admin::connect(a.connect.client_config()).await?;
            admin.delete_topics(&a.names).await?;
            for n in &a.names {
                println!("deleted topic {n}");
            }
        }
    }
    Ok(())
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(a.connect.client_config()).await?;
    let ids = |v: &[i32]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for t in admin.describe_topics(&a.names).await? {
        println!(
            "Topic: {}\tPartitions: {}{}",
            t.name,
            t.partitions.len(),
            if t.is_internal { "\t(internal)" } else { "" }
        );
        for p in &t.partitions {
            println!(
                "\tPartition: {}\tLeader: {}\tEpoch: {}\tReplicas: {}\tIsr: {}",
                p.partition,
                p.leader,
                p.leader_epoch,
                ids(&p.replicas),
                ids(&p.isr)
            );
        }
        if a.configs {
            match admin
                .describe_configs(&ConfigResource::Topic(t.name.clone()))
                .await
            {
                Ok(entries) => {
                    for e in entries.iter().filter(|e| !e.is_default) {
                        let v = if e.sensitive {
                            "<sensitive>".to_string()
                        } else {
                            e.value.clone().unwrap_or_default()
                        };
                        println!("\tConfig: {}={}", e.name, v);
                    }
                }
                Err(e) => eprintln!("\tconfigs unavailable: {e}"),
            }
        }
    }
    Ok(())
}
