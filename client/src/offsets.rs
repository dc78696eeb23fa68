//! Offset look-ups shared by consumer and admin: ListOffsets against partition
//! leaders, OffsetCommit and OffsetFetch against a group coordinator.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::error::{check, codes, Error, Result};
use crate::topic_partition::{by_topic, TopicPartition};

/// What to look up with ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            // Before the epoch: every record is at or after it. Sent as is,
            // -1 and -5 would ask for the end (found from outside: a job
            // `--from 1969-12-31T23:59:59.999Z` skipped the whole input).
            OffsetSpec::Timestamp(t) if t < 0 => -2,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset (-1 when no record has a timestamp at or after the target).
    pub offset: i64,
    /// The timestamp of that record, or -1.
    pub timestamp: i64,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Looks up offsets for `tps`, one request per leader, retrying stale leaders.
pub async fn list_offsets(
    cluster: &Cluster,
    tps: &[TopicPartition],
    spec: OffsetSpec,
) -> Result<HashMap<TopicPartition, ListedOffset>> {
    let mut out = HashMap::new();
    let mut todo: Vec<TopicPartition> = tps.to_vec();
    let mut attempt = 0;
    while !todo.is_empty() {
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in todo.drain(..) {
            let leader = cluster.leader_id(&tp.topic, tp.partition).await?;
            by_leader.entry(leader).or_default().push(tp);
        }
        let mut last_err = None;
        for (leader, group) in by_leader {
            match list_offsets_on(cluster, leader, &group, spec).await {
                Ok(found) => {
                    for (tp, r) in found {
                        match r {
                            Ok(o) => {
                                out.insert(tp, o);
                            }
                            Err(e) if e.is_stale_metadata() => {
                                cluster.invalidate_topic(&tp.topic);
                                todo.push(tp);
                                last_err = Some(e);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.is_retriable() => {
                    for tp in &group {
                        cluster.invalidate_topic(&tp.topic);
                    }
                    todo.extend(group);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if !todo.is_empty() {
            attempt += 1;
            if attempt > cluster.config().metadata_retries {
                return Err(
                    last_err.unwrap_or_else(|| Error::NoBrokerAvailable("ListOffsets".into()))
                );
            }
            tokio::time::sleep(cluster.config().retry_backoff).await;
        }
    }
    Ok(out)
}

type PerPartition<T> = Vec<(TopicPartition, Result<T>)>;

async fn list_offsets_on(
    cluster: &Cluster,
    leader: i32,
    tps: &[TopicPartition],
    spec: OffsetSpec,
) -> Result<PerPartition<ListedOffset>> {
    let conn = cluster.broker(leader).await?;
    let mut req = ListOffsetsRequest::default();
    req.replica_id = (-1).into();
    req.topics = by_topic(tps)
        .into_iter()
        .map(|(t, ps)| {
            let mut lt = ListOffsetsTopic::default();
            lt.name = name(&t);
            lt.partitions = ps
                .into_iter()
                .map(|p| {
                    let mut lp = ListOffsetsPartition::default();
                    lp.partition_index = p;
                    lp.timestamp = spec.wire();
                    lp
                })
                .collect();
            lt
        })
        .collect();
    let resp = conn.send(&req).await?;
    let mut out = Vec::new();
    for t in &resp.topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            let r = check(p.error_code, "ListOffsets", &tp, None).map(|_| ListedOffset {
                offset: p.offset,
                timestamp: p.timestamp,
            });
            out.push((tp, r));
        }
    }
    Ok(out)
}

/// Commits `offsets` for `group`. Use generation -1 and an empty member id outside a group.
pub async fn commit_offsets(
    cluster: &Cluster,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.generation_id_or_member_epoch = generation;
    req.member_id = StrBytes::from_string(member_id.to_string());
    req.topics = by_topic(offsets.keys())
        .into_iter()
        .map(|(t, ps)| {
            let mut ct = OffsetCommitRequestTopic::default();
            ct.partitions = ps
                .into_iter()
                .map(|p| {
                    let mut cp = OffsetCommitRequestPartition::default();
                    cp.partition_index = p;
                    cp.committed_offset = offsets
                        .get(&TopicPartition::new(t.clone(), p))
                        .copied()
                        .unwrap_or(-1);
                    cp.committed_leader_epoch = -1;
                    cp
                })
                .collect();
            ct.name = name(&t);
            ct
        })
        .collect();
    let req = &req;
    coordinator_call(cluster, group, |conn| async move {
        let resp = conn.send(req).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                let what = format!("group {group} {}-{}", t.name.0, p.partition_index);
                check(p.error_code, "OffsetCommit", what, None)?;
            }
        }
        Ok(())
    })
    .await
}

/// Committed offsets of `group` (`None` = all partitions the group has offsets for).
/// Partitions without a committed offset are left out.
pub async fn fetch_committed(
    cluster: &Cluster,
    group: &str,
    tps: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let topics = tps.map(by_topic);
    let topics = &topics;
    coordinator_call(cluster, group, |conn| async move {
        let version = conn.version_for::<OffsetFetchRequest>()?;
        let req = offset_fetch_request(group, topics.as_deref(), version);
        let resp = conn.send_versioned(&req, version, None).await?;
        let mut out = BTreeMap::new();
        let mut add = |t: &TopicName, p: i32, offset: i64, code: i16| -> Result<()> {
            let tp = TopicPartition::new(t.0.to_string(), p);
            check(code, "OffsetFetch", format!("group {group} {tp}"), None)?;
            if offset >= 0 {
                out.insert(tp, offset);
            }
            Ok(())
        };
        if version >= 8 {
            for g in &resp.groups {
                check(g.error_code, "OffsetFetch", format!("group {group}"), None)?;
                for t in &g.topics {
                    for p in &t.partitions {
                        add(&t.name, p.partition_index, p.committed_offset, p.error_code)?;
                    }
                }
            }
        } else {
            check(
                resp.error_code,
                "OffsetFetch",
                format!("group {group}"),
                None,
            )?;
            for t in &resp.topics {
                for p in &t.partitions {
                    add(&t.name, p.partition_index, p.committed_offset, p.error_code)?;
                }
            }
        }
        Ok(out)
    })
    .await
}

fn offset_fetch_request(
    group: &str,
    topics: Option<&[(String, Vec<i32>)]>,
    version: i16,
) -> OffsetFetchRequest {
    let group_id = GroupId(StrBytes::from_string(group.to_string()));
    let mut req = OffsetFetchRequest::default();
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = group_id;
        g.topics = topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    let mut ft = OffsetFetchRequestTopics::default();
                    ft.name = name(t);
                    ft.partition_indexes = ps.clone();
                    ft
                })
                .collect()
        });
        req.groups = vec![g];
    } else {
        req.group_id = group_id;
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    let mut ft = OffsetFetchRequestTopic::default();
                    ft.name = name(t);
                    ft.partition_indexes = ps.clone();
                    ft
                })
                .collect()
        });
    }
    req
}

/// Runs `call` against the coordinator of `group`, re-finding it when it moved.
pub(crate) async fn coordinator_call<T, F, Fut>(
    cluster: &Cluster,
    group: &str,
    mut call: F,
) -> Result<T>
where
    F: FnMut(std::sync::Arc<crate::connection::Connection>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        let result = match cluster.coordinator(group).await {
            Ok(conn) => call(conn).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if coordinator_moved(&e) && attempt < cluster.config().metadata_retries => {
                attempt += 1;
                cluster.invalidate_coordinator(group);
                tokio::time::sleep(cluster.config().retry_backoff).await;
            }
            other => return other,
        }
    }
}

/// Errors after which the coordinator must be looked up again.
pub(crate) fn coordinator_moved(e: &Error) -> bool {
    matches!(
        e.kafka_code(),
        Some(
            codes::NOT_COORDINATOR
                | codes::COORDINATOR_NOT_AVAILABLE
                | codes::COORDINATOR_LOAD_IN_PROGRESS
        )
    ) || matches!(e, Error::Io { .. } | Error::ConnectionClosed { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time before the epoch asks for the log start, never for one of
    /// ListOffsets' special values (-1 latest, -3 max timestamp, -4 local
    /// start, -5 latest tiered).
    #[test]
    fn times_before_the_epoch_ask_for_the_log_start() {
        for t in [-1, -2, -3, -4, -5, -1000, i64::MIN] {
            assert_eq!(OffsetSpec::Timestamp(t).wire(), -2, "{t}");
        }
        assert_eq!(OffsetSpec::Timestamp(0).wire(), 0);
        assert_eq!(
            OffsetSpec::Timestamp(1_700_000_000_000).wire(),
            1_700_000_000_000
        );
    }
}
