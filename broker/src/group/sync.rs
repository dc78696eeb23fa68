//! SyncGroup and Heartbeat on a classic group.

use std::collections::HashMap;

use bytes::Bytes;

use super::classic::ClassicGroup;
use super::error::GroupError;
use super::events::{Action, SyncParams, SyncResult};
use super::state::GroupState;

impl ClassicGroup {
    /// Handles a SyncGroup. The response comes as an [`Action::Sync`] for `p.reply`: at once
    /// when Stable or on error, otherwise when the leader's assignment arrives.
    pub(crate) fn sync(&mut self, p: SyncParams, now: u64, out: &mut Vec<Action>) {
        let reply = p.reply;
        match self.try_sync(p, now, out) {
            Ok(Some(result)) => out.push(Action::Sync { reply, result }),
            Ok(None) => {}
            Err(error) => {
                let result = SyncResult::error(error);
                out.push(Action::Sync { reply, result });
            }
        }
    }

    fn check_sync(&self, p: &SyncParams) -> Result<(), GroupError> {
        if self.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable(self.id.clone()));
        }
        self.validate_member(&p.member_id, p.instance_id.as_deref())?;
        self.check_generation(p.generation)?;
        let type_ok = p.protocol_type.is_none() || p.protocol_type == self.protocol_type;
        let name_ok = p.protocol_name.is_none() || p.protocol_name == self.protocol_name;
        if !(type_ok && name_ok) {
            return Err(GroupError::InconsistentGroupProtocol(self.id.clone()));
        }
        Ok(())
    }

    /// `Ok(None)` when the response is deferred.
    fn try_sync(
        &mut self,
        p: SyncParams,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<Option<SyncResult>, GroupError> {
        self.check_sync(&p)?;
        let rebalancing = GroupError::RebalanceInProgress(self.id.clone());
        let Some(member) = self.members.get_mut(&p.member_id) else {
            return Err(GroupError::unknown_member(&self.id, &p.member_id));
        };
        member.touch(now);
        match self.state {
            GroupState::Stable => {
                let assignment = member.assignment.clone();
                Ok(Some(self.sync_result(assignment)))
            }
            GroupState::CompletingRebalance => {
                if let Some(old) = member.pending_sync.replace(p.reply) {
                    let result = SyncResult::error(rebalancing);
                    out.push(Action::Sync { reply: old, result });
                }
                if self.leader.as_deref() == Some(p.member_id.as_str()) {
                    self.install_assignment(p.assignments, out);
                }
                Ok(None)
            }
            GroupState::PreparingRebalance => Err(rebalancing),
            GroupState::Empty | GroupState::Dead => {
                Err(GroupError::unknown_member(&self.id, &p.member_id))
            }
        }
    }

    /// The leader's assignment: members it left out get an empty one. The group becomes
    /// Stable and every waiting SyncGroup is answered.
    fn install_assignment(&mut self, assignments: Vec<(String, Bytes)>, out: &mut Vec<Action>) {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        self.state = GroupState::Stable;
        self.sync_deadline = None;
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol_name.clone();
        for member in self.members.values_mut() {
            member.assignment = assignments.remove(&member.id).unwrap_or_default();
            if let Some(reply) = member.pending_sync.take() {
                let result = SyncResult {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                };
                out.push(Action::Sync { reply, result });
            }
        }
        // The members and their assignments, so a coordinator that loads
        // the group (a new leader, a restart) keeps them.
        out.push(self.metadata_record());
    }

    /// Handles a Heartbeat: resets the member's session; REBALANCE_IN_PROGRESS tells it
    /// to rejoin.
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: u64,
    ) -> Result<(), GroupError> {
        if self.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable(self.id.clone()));
        }
        self.validate_member(member_id, instance_id)?;
        self.check_generation(generation)?;
        if let Some(member) = self.members.get_mut(member_id) {
            member.touch(now);
        }
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress(self.id.clone())),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
            GroupState::Empty | GroupState::Dead => {
                Err(GroupError::unknown_member(&self.id, member_id))
            }
        }
    }

    /// ILLEGAL_GENERATION unless `generation` is the group's.
    pub(crate) fn check_generation(&self, generation: i32) -> Result<(), GroupError> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(GroupError::IllegalGeneration {
                group_id: self.id.clone(),
                got: generation,
                current: self.generation,
            })
        }
    }
}
