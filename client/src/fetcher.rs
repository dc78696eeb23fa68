//! One round of Fetch requests: one per partition leader, sent concurrently,
//! decoded into records and next positions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::error::{codes, Result};
use crate::records::{decode_fetched, ConsumerRecord};
use crate::topic_partition::{by_topic, TopicPartition};

/// Fetch sizing and long-poll settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchParams {
    pub(crate) max_wait: Duration,
    pub(crate) min_bytes: i32,
    pub(crate) max_bytes: i32,
    pub(crate) partition_max_bytes: i32,
}

/// What one round produced.
#[derive(Debug, Default)]
pub(crate) struct FetchOutcome {
    pub(crate) records: Vec<ConsumerRecord>,
    /// New positions of partitions that advanced.
    pub(crate) positions: HashMap<TopicPartition, i64>,
    /// Partitions whose position is outside the log.
    pub(crate) out_of_range: Vec<TopicPartition>,
    /// High watermarks seen.
    pub(crate) high_watermarks: HashMap<TopicPartition, i64>,
}

/// Fetches from every leader of `positions` at once and decodes the answers.
pub(crate) async fn fetch_round(
    cluster: &Arc<Cluster>,
    positions: &BTreeMap<TopicPartition, i64>,
    params: FetchParams,
) -> Result<FetchOutcome> {
    let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for tp in positions.keys() {
        match cluster.leader_id(&tp.topic, tp.partition).await {
            Ok(id) => by_leader.entry(id).or_default().push(tp.clone()),
            Err(e) => {
                tracing::debug!(%tp, error = %e, "no leader; skipping this round");
                cluster.invalidate_topic(&tp.topic);
            }
        }
    }
    let mut tasks = JoinSet::new();
    for (leader, tps) in by_leader {
        let req = build_request(&tps, positions, params);
        let cluster = cluster.clone();
        tasks.spawn(async move {
            let result = match cluster.broker(leader).await {
                Ok(conn) => conn.send_with_extra_timeout(&req, params.max_wait).await,
                Err(e) => Err(e),
            };
            (tps, result)
        });
    }
    let mut out = FetchOutcome::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok((tps, result)) = joined else { continue };
        match result {
            Ok(resp) => absorb(cluster, resp, positions, &mut out)?,
            Err(e) => {
                tracing::debug!(error = %e, "fetch failed; refreshing metadata");
                for tp in tps {
                    cluster.invalidate_topic(&tp.topic);
                }
            }
        }
    }
    Ok(out)
}

fn build_request(
    tps: &[TopicPartition],
    positions: &BTreeMap<TopicPartition, i64>,
    params: FetchParams,
) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = (-1).into();
    req.max_wait_ms = params.max_wait.as_millis().min(i32::MAX as u128) as i32;
    req.min_bytes = params.min_bytes;
    req.max_bytes = params.max_bytes;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = by_topic(tps)
        .into_iter()
        .map(|(t, ps)| {
            let mut ft = FetchTopic::default();
            ft.partitions = ps
                .into_iter()
                .map(|p| {
                    let mut fp = FetchPartition::default();
                    fp.partition = p;
                    fp.fetch_offset = positions
                        .get(&TopicPartition::new(t.clone(), p))
                        .copied()
                        .unwrap_or(0);
                    fp.partition_max_bytes = params.partition_max_bytes;
                    fp
                })
                .collect();
            ft.topic = TopicName(StrBytes::from_string(t));
            ft
        })
        .collect();
    req
}

fn absorb(
    cluster: &Cluster,
    resp: FetchResponse,
    positions: &BTreeMap<TopicPartition, i64>,
    out: &mut FetchOutcome,
) -> Result<()> {
    if resp.error_code != 0 {
        tracing::warn!(code = resp.error_code, "fetch returned a top-level error");
        return Ok(());
    }
    for t in resp.responses {
        let topic = t.topic.0.to_string();
        for p in t.partitions {
            let tp = TopicPartition::new(topic.clone(), p.partition_index);
            let Some(&position) = positions.get(&tp) else {
                continue;
            };
            match p.error_code {
                0 => {}
                codes::OFFSET_OUT_OF_RANGE => {
                    out.out_of_range.push(tp);
                    continue;
                }
                code => {
                    tracing::debug!(%tp, code, "fetch partition error");
                    cluster.invalidate_topic(&topic);
                    continue;
                }
            }
            out.high_watermarks.insert(tp.clone(), p.high_watermark);
            let Some(data) = p.records else { continue };
            let decoded = decode_fetched(&topic, tp.partition, data, position)?;
            if let Some(next) = decoded.next_offset {
                if next > position {
                    out.positions.insert(tp, next);
                }
            }
            out.records.extend(decoded.records);
        }
    }
    Ok(())
}
