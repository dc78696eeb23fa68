//! The pure coordinator: every group of this node, driven by events and `tick(now)`.
//! It does no IO; it returns [`Action`]s and write plans for the runtime to carry out.

use std::collections::BTreeMap;

use super::classic::ClassicGroup;
use super::config::GroupConfig;
use super::error::GroupError;
use super::events::{Action, JoinParams, JoinResult, SyncParams, SyncResult};
use super::ids::IdGen;
use super::leave::LeavingMember;
use super::record::{group_record, GroupValue, OffsetValue, Record, RecordKey};
use super::state::GroupState;

/// All groups coordinated by this node.
#[derive(Debug)]
pub(crate) struct GroupManager {
    pub(crate) cfg: GroupConfig,
    pub(crate) groups: BTreeMap<String, ClassicGroup>,
    ids: IdGen,
}

impl GroupManager {
    /// An empty manager; `seed` makes member ids unique across restarts.
    pub(crate) fn new(cfg: GroupConfig, seed: u64) -> Self {
        Self {
            cfg,
            groups: BTreeMap::new(),
            ids: IdGen::new(seed),
        }
    }

    /// Handles a JoinGroup; its response is among the returned actions, now or later.
    pub(crate) fn join(&mut self, p: JoinParams, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if p.group_id.is_empty() {
            let result = JoinResult::error(GroupError::InvalidGroupId(p.group_id), &p.member_id);
            out.push(Action::Join {
                reply: p.reply,
                result,
            });
            return out;
        }
        if !self.groups.contains_key(&p.group_id) && !p.member_id.is_empty() {
            let error = GroupError::unknown_member(&p.group_id, &p.member_id);
            let result = JoinResult::error(error, &p.member_id);
            out.push(Action::Join {
                reply: p.reply,
                result,
            });
            return out;
        }
        let group = self
            .groups
            .entry(p.group_id.clone())
            .or_insert_with(|| ClassicGroup::new(&p.group_id, now));
        group.join(p, now, &self.cfg, &mut self.ids, &mut out);
        out
    }

    /// Handles a SyncGroup; its response is among the returned actions, now or later.
    pub(crate) fn sync(&mut self, p: SyncParams, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        match self.groups.get_mut(&p.group_id) {
            Some(group) => group.sync(p, now, &mut out),
            None => {
                let error = if p.group_id.is_empty() {
                    GroupError::InvalidGroupId(p.group_id)
                } else {
                    GroupError::unknown_member(&p.group_id, &p.member_id)
                };
                let result = SyncResult::error(error);
                out.push(Action::Sync {
                    reply: p.reply,
                    result,
                });
            }
        }
        out
    }

    /// Handles a Heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: u64,
    ) -> Result<(), GroupError> {
        match self.groups.get_mut(group_id) {
            Some(group) => group.heartbeat(member_id, instance_id, generation, now),
            None if group_id.is_empty() => Err(GroupError::InvalidGroupId(String::new())),
            None => Err(GroupError::unknown_member(group_id, member_id)),
        }
    }

    /// Handles a LeaveGroup: a group-level error, or one result per leaving member.
    #[allow(clippy::type_complexity)]
    pub(crate) fn leave(
        &mut self,
        group_id: &str,
        leaving: &[LeavingMember],
        now: u64,
    ) -> (Result<Vec<Result<(), GroupError>>, GroupError>, Vec<Action>) {
        let mut out = Vec::new();
        let result = match self.groups.get_mut(group_id) {
            Some(group) if group.is(GroupState::Dead) => {
                Err(GroupError::CoordinatorNotAvailable(group_id.to_owned()))
            }
            Some(group) => Ok(group.leave(leaving, now, &self.cfg, &mut out)),
            None if group_id.is_empty() => Err(GroupError::InvalidGroupId(String::new())),
            None => Ok(leaving
                .iter()
                .map(|m| Err(GroupError::unknown_member(group_id, &m.member_id)))
                .collect()),
        };
        (result, out)
    }

    /// Advances every group's timers to `now`; forgets Empty groups without offsets after
    /// the retention time (writing their tombstone).
    pub(crate) fn tick(&mut self, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        for group in self.groups.values_mut() {
            group.tick(now, &self.cfg, &mut out);
        }
        let retention = self.cfg.empty_group_retention_ms;
        let stale: Vec<String> = self
            .groups
            .values()
            .filter(|g| is_forgettable(g, now, retention))
            .map(|g| g.id.clone())
            .collect();
        for id in stale {
            self.groups.remove(&id);
            out.push(Action::Persist(vec![group_record(&id, None)]));
        }
        out
    }

    /// The group, if this node knows it.
    #[cfg(test)]
    pub(crate) fn group(&self, group_id: &str) -> Option<&ClassicGroup> {
        self.groups.get(group_id)
    }

    /// Rebuilds state from stored records, in log order. Returns how many records were
    /// skipped as unreadable (logged).
    pub(crate) fn load(&mut self, records: &[Record], now: u64) -> usize {
        let mut skipped = 0;
        for (index, (key, value)) in records.iter().enumerate() {
            if let Err(error) = self.load_record(key, value.as_deref(), now) {
                tracing::warn!(index, %error, "skipping unreadable __consumer_offsets record");
                skipped += 1;
            }
        }
        skipped
    }

    fn load_record(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        now: u64,
    ) -> Result<(), super::record::RecordError> {
        match (RecordKey::decode(key)?, value) {
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                Some(v),
            ) => {
                let value = OffsetValue::decode(v)?;
                self.group_or_create(&group, now)
                    .offsets
                    .insert((topic, partition), value);
            }
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                None,
            ) => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            (RecordKey::Group { group }, Some(v)) => {
                let value = GroupValue::decode(v)?;
                self.group_or_create(&group, now).restore(value, now);
            }
            (RecordKey::Group { group }, None) => {
                if self
                    .groups
                    .get(&group)
                    .is_some_and(|g| g.offsets.is_empty())
                {
                    self.groups.remove(&group);
                }
            }
        }
        Ok(())
    }

    /// The group, created Empty if unknown.
    pub(crate) fn group_or_create(&mut self, group_id: &str, now: u64) -> &mut ClassicGroup {
        self.groups
            .entry(group_id.to_owned())
            .or_insert_with(|| ClassicGroup::new(group_id, now))
    }
}

fn is_forgettable(g: &ClassicGroup, now: u64, retention: u64) -> bool {
    g.is(GroupState::Empty)
        && g.members.is_empty()
        && g.pending_members.is_empty()
        && g.offsets.is_empty()
        && g.empty_since
            .is_some_and(|t| now.saturating_sub(t) >= retention)
}
