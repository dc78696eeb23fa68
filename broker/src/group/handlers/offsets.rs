//! OffsetCommit, OffsetFetch and OffsetDelete.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{owned, wire};
use crate::group::coordinator::{wall_clock_ms, GroupCoordinator};
use crate::group::error::{code_of, GroupError};
use crate::group::offsets::{CommitParams, FetchedOffsets, PartitionCommit, TopicRequest};
use crate::group::record::OffsetValue;

impl GroupCoordinator {
    /// OffsetCommit (v2–9). Answers once the offsets are durable.
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let params = self.commit_params(&req, version);
        let (plan, done) = self
            .inner
            .plan_write(|m, now| {
                let plan = m.commit_offsets(params, now);
                let write = plan.write.clone();
                (plan, write)
            })
            .await;
        let write_error = match done {
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(GroupError::Store("writer stopped".into())))
                .err(),
            None => None,
        };
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for ((topic, partition), error) in plan.results {
            let mut p = OffsetCommitResponsePartition::default();
            p.partition_index = partition;
            p.error_code = code_of(error.as_ref().or(write_error.as_ref()));
            match topics.last_mut() {
                Some(t) if t.name.as_str() == topic => t.partitions.push(p),
                _ => {
                    let mut t = OffsetCommitResponseTopic::default();
                    t.name = TopicName(wire(topic));
                    t.partitions.push(p);
                    topics.push(t);
                }
            }
        }
        let mut resp = OffsetCommitResponse::default();
        resp.topics = topics;
        resp
    }

    fn commit_params(&self, req: &OffsetCommitRequest, version: i16) -> CommitParams {
        let check = self.inner.partition_check();
        let partitions = req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p)))
            .map(|(topic, p)| PartitionCommit {
                topic: topic.to_owned(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(owned).unwrap_or_default(),
                exists: check
                    .as_ref()
                    .is_none_or(|c| (c.0)(topic, p.partition_index)),
            })
            .collect();
        CommitParams {
            group_id: owned(&req.group_id),
            generation: req.generation_id_or_member_epoch,
            member_id: owned(&req.member_id),
            instance_id: req
                .group_instance_id
                .as_ref()
                .filter(|_| version >= 7)
                .map(owned),
            partitions,
            timestamp_ms: wall_clock_ms(),
        }
    }

    /// OffsetFetch (v1–9): one group below v8, a batch of groups from v8.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut resp = OffsetFetchResponse::default();
        if version >= 8 {
            resp.groups = req
                .groups
                .iter()
                .map(|g| {
                    let topics = g.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (owned(&t.name), t.partition_indexes.clone()))
                            .collect()
                    });
                    let mut group = OffsetFetchResponseGroup::default();
                    group.group_id = g.group_id.clone();
                    group.topics = topics_v8(self.fetch(&owned(&g.group_id), topics));
                    group
                })
                .collect();
            return resp;
        }
        let topics: Option<TopicRequest> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (owned(&t.name), t.partition_indexes.clone()))
                .collect()
        });
        resp.topics = topics_v1(self.fetch(&owned(&req.group_id), topics), version);
        resp
    }

    fn fetch(&self, group_id: &str, topics: Option<TopicRequest>) -> FetchedOffsets {
        self.inner
            .with(|m, _| (m.fetch_offsets(group_id, topics), Vec::new()))
    }

    /// OffsetDelete (v0). Answers once the tombstones are durable.
    pub async fn offset_delete(
        &self,
        req: OffsetDeleteRequest,
        _version: i16,
    ) -> OffsetDeleteResponse {
        let group_id = owned(&req.group_id);
        let topics: TopicRequest = req
            .topics
            .iter()
            .map(|t| {
                let parts = t.partitions.iter().map(|p| p.partition_index).collect();
                (owned(&t.name), parts)
            })
            .collect();
        let (result, done) = self
            .inner
            .plan_write(|m, _| match m.delete_offsets(&group_id, topics) {
                Ok((results, write)) => (Ok(results), write),
                Err(e) => (Err(e), None),
            })
            .await;
        let mut resp = OffsetDeleteResponse::default();
        let results = match result {
            Ok(results) => results,
            Err(error) => {
                resp.error_code = error.code();
                return resp;
            }
        };
        if let Some(rx) = done {
            let outcome = rx
                .await
                .unwrap_or_else(|_| Err(GroupError::Store("writer stopped".into())));
            if let Err(error) = outcome {
                resp.error_code = error.code();
                return resp;
            }
        }
        resp.topics = results
            .into_iter()
            .map(|(topic, partitions)| {
                let mut t = OffsetDeleteResponseTopic::default();
                t.name = TopicName(wire(topic));
                t.partitions = partitions
                    .into_iter()
                    .map(|(p, error)| {
                        let mut part = OffsetDeleteResponsePartition::default();
                        part.partition_index = p;
                        part.error_code = code_of(error.as_ref());
                        part
                    })
                    .collect();
                t
            })
            .collect();
        resp
    }
}

/// Offset, epoch and metadata to report: -1, -1 and "" for partitions without a commit.
fn reported(value: Option<OffsetValue>) -> (i64, i32, String) {
    value.map_or((-1, -1, String::new()), |v| {
        (v.offset, v.leader_epoch, v.metadata)
    })
}

fn topics_v1(fetched: FetchedOffsets, version: i16) -> Vec<OffsetFetchResponseTopic> {
    fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = TopicName(wire(topic));
            t.partitions = partitions
                .into_iter()
                .map(|(index, value)| {
                    let (offset, epoch, metadata) = reported(value);
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
                    p.committed_offset = offset;
                    if version >= 5 {
                        p.committed_leader_epoch = epoch;
                    }
                    p.metadata = Some(wire(metadata));
                    p
                })
                .collect();
            t
        })
        .collect()
}

fn topics_v8(fetched: FetchedOffsets) -> Vec<OffsetFetchResponseTopics> {
    fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = OffsetFetchResponseTopics::default();
            t.name = TopicName(wire(topic));
            t.partitions = partitions
                .into_iter()
                .map(|(index, value)| {
                    let (offset, epoch, metadata) = reported(value);
                    let mut p = OffsetFetchResponsePartitions::default();
                    p.partition_index = index;
                    p.committed_offset = offset;
                    p.committed_leader_epoch = epoch;
                    p.metadata = Some(wire(metadata));
                    p
                })
                .collect();
            t
        })
        .collect()
}
