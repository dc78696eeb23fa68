//! LeaveGroup on a classic group (v3+ leaves a batch of members, possibly by instance id).

use super::classic::ClassicGroup;
use super::config::GroupConfig;
use super::error::GroupError;
use super::events::Action;
use super::state::GroupState;

/// One member leaving: by member id, or by group.instance.id alone (admin removal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeavingMember {
    /// The member id, empty to leave by instance id.
    pub(crate) member_id: String,
    /// The static instance id.
    pub(crate) instance_id: Option<String>,
}

impl ClassicGroup {
    /// Removes the leaving members; returns one result per member, in order.
    pub(crate) fn leave(
        &mut self,
        leaving: &[LeavingMember],
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Action>,
    ) -> Vec<Result<(), GroupError>> {
        leaving
            .iter()
            .map(|m| self.leave_one(m, now, cfg, out))
            .collect()
    }

    fn leave_one(
        &mut self,
        m: &LeavingMember,
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Action>,
    ) -> Result<(), GroupError> {
        if self.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable(self.id.clone()));
        }
        if m.member_id.is_empty() {
            let current = m
                .instance_id
                .as_ref()
                .and_then(|i| self.static_members.get(i))
                .cloned()
                .ok_or_else(|| GroupError::unknown_member(&self.id, &m.member_id))?;
            self.remove_member_and_update(&current, now, cfg, out);
            return Ok(());
        }
        if self.pending_members.remove(&m.member_id).is_some() {
            self.maybe_complete_join(now, cfg, out);
            return Ok(());
        }
        self.validate_member(&m.member_id, m.instance_id.as_deref())?;
        self.remove_member_and_update(&m.member_id, now, cfg, out);
        Ok(())
    }
}
