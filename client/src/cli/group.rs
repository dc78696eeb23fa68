//! `weir group list|describe|reset-offsets|delete`.

use std::collections::BTreeMap;

use clap::{ArgGroup, Args, Subcommand};

use super::time::parse_rfc3339_ms;
use super::ConnectArgs;
use crate::admin::Admin;
use crate::offsets::OffsetSpec;
use crate::topic_partition::TopicPartition;

/// Group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups.
    List(ListArgs),
    /// Show members, committed offsets and lag.
    Describe(DescribeArgs),
    /// Move a group's committed offsets (the group must be inactive).
    ResetOffsets(ResetArgs),
    /// Delete groups.
    Delete(DeleteArgs),
}

/// `group list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// `group describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Group id.
    pub group: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// `group reset-offsets`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_datetime", "to_offset"])))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// Topic whose partitions to reset (repeatable).
    #[arg(long, short = 't', required = true)]
    pub topic: Vec<String>,
    /// Reset to the log start.
    #[arg(long)]
    pub to_earliest: bool,
    /// Reset to the log end.
    #[arg(long)]
    pub to_latest: bool,
    /// Reset to the first record at or after this RFC 3339 datetime.
    #[arg(long, value_parser = parse_rfc3339_ms)]
    pub to_datetime: Option<i64>,
    /// Reset to this offset.
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// Print the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

/// `group delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Groups to delete.
    #[arg(required = true)]
    pub groups: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
}

pub(super) async fn run(cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::List(a) => {
            let admin = Admin::connect(a.connect.client_config()).await?;
            for g in admin.list_groups().await? {
                println!("{}\t{}\t{}", g.group_id, g.protocol_type, g.state);
            }
        }
        GroupCommand::Describe(a) => describe(a).await?,
        GroupCommand::ResetOffsets(a) => reset(a).await?,
        GroupCommand::Delete(a) => {
            let admin = Admin::connect(a.connect.client_config()).await?;
            admin.delete_groups(&a.groups).await?;
            for g in &a.groups {
                println!("deleted group {g}");
            }
        }
    }
    Ok(())
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(a.connect.client_config()).await?;
    let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
    for g in admin
        .describe_groups(std::slice::from_ref(&a.group))
        .await?
    {
        println!(
            "Group: {}\tState: {}\tProtocol: {} {}\tMembers: {}",
            g.group_id,
            g.state,
            g.protocol_type,
            g.protocol,
            g.members.len()
        );
        for m in &g.members {
            println!(
                "\tMember: {}\tClient: {}\tHost: {}\tPartitions: {}",
                m.member_id,
                m.client_id,
                m.client_host,
                m.assignment.len()
            );
            for tp in &m.assignment {
                owners.insert(tp.clone(), m.member_id.clone());
            }
        }
    }
    let committed = admin.group_offsets(&a.group).await?;
    let tps: Vec<TopicPartition> = committed
        .keys()
        .chain(owners.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let ends = admin.list_offsets(&tps, OffsetSpec::Latest).await?;
    println!(
        "\n{:<30} {:>9} {:>14} {:>14} {:>10}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
    );
    for tp in &tps {
        let c = committed.get(tp).copied();
        let end = ends.get(tp).map(|o| o.offset);
        let lag = match (c, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => "-".into(),
        };
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "{:<30} {:>9} {:>14} {:>14} {:>10}  {}",
            tp.topic,
            tp.partition,
            show(c),
            show(end),
            lag,
            owners.get(tp).map_or("-", |s| s.as_str())
        );
    }
    Ok(())
}

async fn reset(a: ResetArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(a.connect.client_config()).await?;
    // As Kafka's tool: a group with active members would not see the new
    // offsets (and its next commit overwrites them).
    for g in admin
        .describe_groups(std::slice::from_ref(&a.group))
        .await?
    {
        if g.state != "Empty" && g.state != "Dead" {
            let why = match g.protocol.as_str() {
                // Reported by Weir for a stream job's group.
                "weir-job" => {
                    "; it is the group of a stream job, which resumes from its own \
                               checkpoints: drop the job first, or create another job with --from"
                }
                _ => "",
            };
            anyhow::bail!(
                "offsets can only be reset while group {} is inactive, but its state is {}{why}",
                a.group,
                g.state
            );
        }
    }
    let mut tps = Vec::new();
    for t in &a.topic {
        tps.extend(admin.partitions(t).await?);
    }
    let new: BTreeMap<TopicPartition, i64> = if let Some(o) = a.to_offset {
        tps.iter().map(|tp| (tp.clone(), o)).collect()
    } else {
        let spec = match (a.to_earliest, a.to_latest, a.to_datetime) {
            (true, _, _) => OffsetSpec::Earliest,
            (_, true, _) => OffsetSpec::Latest,
            (_, _, Some(t)) => OffsetSpec::Timestamp(t),
            _ => anyhow::bail!(
                "one of --to-earliest, --to-latest, --to-datetime, --to-offset is required"
            ),
        };
        let found = admin.list_offsets(&tps, spec).await?;
        let missing: Vec<TopicPartition> = tps
            .iter()
            .filter(|tp| found.get(*tp).is_none_or(|o| o.offset < 0))
            .cloned()
            .collect();
        let ends = admin.list_offsets(&missing, OffsetSpec::Latest).await?;
        tps.iter()
            .map(|tp| {
                let o = found
                    .get(tp)
                    .filter(|o| o.offset >= 0)
                    .or_else(|| ends.get(tp))
                    .map_or(0, |o| o.offset);
                (tp.clone(), o)
            })
            .collect()
    };
    println!("{:<30} {:>9} {:>14}", "TOPIC", "PARTITION", "NEW-OFFSET");
    for (tp, o) in &new {
        println!("{:<30} {:>9} {:>14}", tp.topic, tp.partition, o);
    }
    if a.dry_run {
        println!("(dry run: nothing committed)");
    } else {
        admin.commit_group_offsets(&a.group, &new).await?;
        println!("committed {} offset(s) for group {}", new.len(), a.group);
    }
    Ok(())
}
