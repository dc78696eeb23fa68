//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, and the writes they plan.
//!
//! A commit is validated against the group now, written to the store by the runtime, and
//! applied to memory only once durable ([`GroupManager::apply`]), in the order the writes
//! were issued; so OffsetFetch never returns an offset that could be lost.

use super::classic::ClassicGroup;
use super::error::GroupError;
use super::manager::GroupManager;
use super::record::{group_record, offset_record, offset_tombstone, OffsetValue, Record};
use super::state::GroupState;
use super::subscription::subscribed_to;

/// A (topic, partition).
pub(crate) type TopicPartition = (String, i32);

/// What to change in memory once a write is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurableOp {
    /// Set these committed offsets.
    Commit {
        /// The group.
        group: String,
        /// The offsets.
        offsets: Vec<(TopicPartition, OffsetValue)>,
    },
    /// Forget these committed offsets.
    DeleteOffsets {
        /// The group.
        group: String,
        /// The partitions.
        partitions: Vec<TopicPartition>,
    },
    /// Forget these groups (marked Dead meanwhile).
    DeleteGroups(Vec<String>),
}

/// Records to append and the change to apply once they are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    /// The records, in order.
    pub(crate) records: Vec<Record>,
    /// The change.
    pub(crate) op: DurableOp,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionCommit {
    /// The topic.
    pub(crate) topic: String,
    /// The partition.
    pub(crate) partition: i32,
    /// The committed offset.
    pub(crate) offset: i64,
    /// The leader epoch, -1 if unknown.
    pub(crate) leader_epoch: i32,
    /// The metadata string.
    pub(crate) metadata: String,
    /// Whether the broker has the partition (from the partition check).
    pub(crate) exists: bool,
}

/// An OffsetCommit, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitParams {
    /// The group.
    pub(crate) group_id: String,
    /// The generation, -1 for a simple (non-member) commit.
    pub(crate) generation: i32,
    /// The member id, empty for a simple commit.
    pub(crate) member_id: String,
    /// The static instance id.
    pub(crate) instance_id: Option<String>,
    /// The partitions.
    pub(crate) partitions: Vec<PartitionCommit>,
    /// When the commit happens, ms since the Unix epoch.
    pub(crate) timestamp_ms: i64,
}

/// The plan of an OffsetCommit: per-partition errors known now, and the write for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitPlan {
    /// One entry per requested partition, in order; `None` means "written by `write`".
    pub(crate) results: Vec<(TopicPartition, Option<GroupError>)>,
    /// The write, if any partition is to be committed.
    pub(crate) write: Option<Write>,
}

/// Requested partitions for OffsetFetch / OffsetDelete: (topic, partitions).
pub(crate) type TopicRequest = Vec<(String, Vec<i32>)>;

/// Committed offsets by topic: (topic, [(partition, offset if committed)]).
pub(crate) type FetchedOffsets = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

/// OffsetDelete results by topic.
pub(crate) type DeleteResults = Vec<(String, Vec<(i32, Option<GroupError>)>)>;

impl ClassicGroup {
    /// Kafka's `ClassicGroup.validateOffsetCommit`.
    fn validate_commit(&self, p: &CommitParams) -> Result<(), GroupError> {
        if self.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable(self.id.clone()));
        }
        if p.generation < 0 && self.is(GroupState::Empty) {
            return Ok(()); // admin tools and consumers without group management
        }
        if p.generation >= 0 || !p.member_id.is_empty() || p.instance_id.is_some() {
            self.validate_member(&p.member_id, p.instance_id.as_deref())?;
            self.check_generation(p.generation)?;
        } else if !self.is(GroupState::Empty) {
            return Err(GroupError::unknown_member(&self.id, &p.member_id));
        }
        if self.is(GroupState::CompletingRebalance) {
            return Err(GroupError::RebalanceInProgress(self.id.clone()));
        }
        Ok(())
    }
}

impl GroupManager {
    /// Validates an OffsetCommit and plans its write.
    pub(crate) fn commit_offsets(&mut self, p: CommitParams, now: u64) -> CommitPlan {
        let group_error = self.check_commit(&p, now).err();
        let mut results = Vec::with_capacity(p.partitions.len());
        let mut offsets = Vec::new();
        for c in p.partitions {
            let tp = (c.topic.clone(), c.partition);
            let error = group_error.clone().or_else(|| self.partition_error(&c));
            if error.is_none() {
                let value = OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata,
                    commit_timestamp: p.timestamp_ms,
                };
                offsets.push((tp.clone(), value));
            }
            results.push((tp, error));
        }
        let write = (!offsets.is_empty()).then(|| commit_write(p.group_id, offsets));
        CommitPlan { results, write }
    }

    fn check_commit(&mut self, p: &CommitParams, now: u64) -> Result<(), GroupError> {
        if !self.groups.contains_key(&p.group_id) && p.generation >= 0 {
            // A member of a generation this node does not know: make it rejoin.
            return Err(GroupError::IllegalGeneration {
                group_id: p.group_id.clone(),
                got: p.generation,
                current: -1,
            });
        }
        let group = self.group_or_create(&p.group_id, now);
        group.validate_commit(p)?;
        if let Some(member) = group.members.get_mut(&p.member_id) {
            member.touch(now);
        }
        Ok(())
    }

    fn partition_error(&self, c: &PartitionCommit) -> Option<GroupError> {
        if !c.exists {
            Some(GroupError::UnknownTopicOrPartition {
                topic: c.topic.clone(),
                partition: c.partition,
            })
        } else if c.metadata.len() > self.cfg.max_metadata_bytes {
            Some(GroupError::OffsetMetadataTooLarge(c.metadata.len()))
        } else {
            None
        }
    }

    /// OffsetFetch: the committed offsets of the requested partitions (all when `None`).
    pub(crate) fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<TopicRequest>,
    ) -> FetchedOffsets {
        let group = self.groups.get(group_id);
        let Some(topics) = topics else {
            return group.map(all_offsets).unwrap_or_default();
        };
        topics
            .into_iter()
            .map(|(topic, partitions)| {
                let offsets = partitions
                    .into_iter()
                    .map(|p| {
                        let key = (topic.clone(), p);
                        (p, group.and_then(|g| g.offsets.get(&key)).cloned())
                    })
                    .collect();
                (topic, offsets)
            })
            .collect()
    }

    /// OffsetDelete: plans tombstones for partitions of topics the group does not consume.
    pub(crate) fn delete_offsets(
        &self,
        group_id: &str,
        topics: TopicRequest,
    ) -> Result<(DeleteResults, Option<Write>), GroupError> {
        let group = self
            .groups
            .get(group_id)
            .filter(|g| !g.is(GroupState::Dead))
            .ok_or_else(|| GroupError::GroupIdNotFound(group_id.to_owned()))?;
        let consuming = !group.is(GroupState::Empty);
        if consuming && group.protocol_type.as_deref() != Some("consumer") {
            return Err(GroupError::NonEmptyGroup(group_id.to_owned()));
        }
        let mut results = Vec::new();
        let mut partitions_to_delete = Vec::new();
        for (topic, partitions) in topics {
            let subscribed = consuming && subscribed_to(group, &topic);
            let error = subscribed.then(|| GroupError::GroupSubscribedToTopic {
                group_id: group_id.to_owned(),
                topic: topic.clone(),
            });
            for &p in &partitions {
                let tp = (topic.clone(), p);
                if error.is_none() && group.offsets.contains_key(&tp) {
                    partitions_to_delete.push(tp);
                }
            }
            let per_partition = partitions.into_iter().map(|p| (p, error.clone())).collect();
            results.push((topic, per_partition));
        }
        let write = (!partitions_to_delete.is_empty()).then(|| Write {
            records: partitions_to_delete
                .iter()
                .map(|(t, p)| offset_tombstone(group_id, t, *p))
                .collect(),
            op: DurableOp::DeleteOffsets {
                group: group_id.to_owned(),
                partitions: partitions_to_delete,
            },
        });
        Ok((results, write))
    }

    /// Applies a write that became durable.
    pub(crate) fn apply(&mut self, op: DurableOp, now: u64) {
        match op {
            DurableOp::Commit { group, offsets } => {
                let g = self.group_or_create(&group, now);
                g.offsets.extend(offsets);
            }
            DurableOp::DeleteOffsets { group, partitions } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    for tp in &partitions {
                        g.offsets.remove(tp);
                    }
                }
            }
            DurableOp::DeleteGroups(groups) => {
                for id in groups {
                    if self.groups.get(&id).is_some_and(|g| g.is(GroupState::Dead)) {
                        self.groups.remove(&id);
                    }
                }
            }
        }
    }

    /// Undoes the effects of planning a write that failed: groups marked Dead come back Empty.
    pub(crate) fn abort(&mut self, op: DurableOp) {
        if let DurableOp::DeleteGroups(groups) = op {
            for id in groups {
                if let Some(g) = self.groups.get_mut(&id).filter(|g| g.is(GroupState::Dead)) {
                    g.state = GroupState::Empty;
                }
            }
        }
    }

    /// DeleteGroups: each group must exist and be Empty; it is marked Dead now and removed
    /// once its tombstones are durable.
    pub(crate) fn delete_groups(
        &mut self,
        group_ids: &[String],
    ) -> (Vec<Option<GroupError>>, Option<Write>) {
        let mut results = Vec::with_capacity(group_ids.len());
        let mut records = Vec::new();
        let mut deleted = Vec::new();
        for id in group_ids {
            let result = self.mark_dead(id, &mut records);
            if result.is_ok() {
                deleted.push(id.clone());
            }
            results.push(result.err());
        }
        let write = (!deleted.is_empty()).then(|| Write {
            records,
            op: DurableOp::DeleteGroups(deleted),
        });
        (results, write)
    }

    fn mark_dead(&mut self, id: &str, records: &mut Vec<Record>) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(id)
            .filter(|g| !g.is(GroupState::Dead))
            .ok_or_else(|| GroupError::GroupIdNotFound(id.to_owned()))?;
        if !group.is(GroupState::Empty) || !group.members.is_empty() {
            return Err(GroupError::NonEmptyGroup(id.to_owned()));
        }
        group.state = GroupState::Dead;
        for (topic, partition) in group.offsets.keys() {
            records.push(offset_tombstone(id, topic, *partition));
        }
        records.push(group_record(id, None));
        Ok(())
    }
}

fn commit_write(group: String, offsets: Vec<(TopicPartition, OffsetValue)>) -> Write {
    let records = offsets
        .iter()
        .map(|((topic, partition), value)| offset_record(&group, topic, *partition, value))
        .collect();
    Write {
        records,
        op: DurableOp::Commit { group, offsets },
    }
}

fn all_offsets(group: &ClassicGroup) -> FetchedOffsets {
    let mut out: FetchedOffsets = Vec::new();
    for ((topic, partition), value) in &group.offsets {
        match out.last_mut() {
            Some((t, parts)) if t == topic => parts.push((*partition, Some(value.clone()))),
            _ => out.push((topic.clone(), vec![(*partition, Some(value.clone()))])),
        }
    }
    out
}
