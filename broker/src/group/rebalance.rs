//! Rebalance steps of a classic group: prepare, complete the join phase, expire members.

use bytes::Bytes;

use super::classic::{ClassicGroup, Rebalance};
use super::config::GroupConfig;
use super::error::GroupError;
use super::events::{Action, SyncResult};
use super::state::GroupState;

impl ClassicGroup {
    /// Enters PreparingRebalance: members must rejoin within the rebalance timeout.
    /// Waiting SyncGroups of an interrupted CompletingRebalance get REBALANCE_IN_PROGRESS.
    pub(crate) fn prepare_rebalance(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Action>) {
        if self.is(GroupState::CompletingRebalance) {
            self.fail_pending_syncs(out);
        }
        let timeout = self.max_rebalance_timeout();
        let initial = self.is(GroupState::Empty);
        let delay = if initial {
            cfg.initial_rebalance_delay_ms.min(timeout)
        } else {
            0
        };
        self.rebalance = Some(Rebalance {
            deadline: now.saturating_add(timeout),
            delay_until: now.saturating_add(delay),
            initial,
            new_member_added: false,
        });
        self.sync_deadline = None;
        self.state = GroupState::PreparingRebalance;
        self.empty_since = None;
        self.maybe_complete_join(now, cfg, out);
    }

    /// Resets assignments and answers waiting SyncGroups with REBALANCE_IN_PROGRESS.
    fn fail_pending_syncs(&mut self, out: &mut Vec<Action>) {
        let error = GroupError::RebalanceInProgress(self.id.clone());
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(reply) = member.pending_sync.take() {
                let result = SyncResult::error(error.clone());
                out.push(Action::Sync { reply, result });
            }
        }
    }

    /// Completes the join phase if it may: everyone rejoined (after any initial delay)
    /// or the rebalance deadline passed.
    pub(crate) fn maybe_complete_join(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Action>,
    ) {
        let Some(r) = self
            .rebalance
            .filter(|_| self.is(GroupState::PreparingRebalance))
        else {
            return;
        };
        let done = if r.initial {
            now >= r.delay_until && !self.extend_initial_delay(now, cfg)
        } else {
            self.all_members_joined() || now >= r.deadline
        };
        if done {
            self.complete_join(now, out);
        }
    }

    /// Kafka's InitialDelayedJoin: if members arrived during the delay, wait another
    /// delay (bounded by the deadline). Returns whether it extended.
    fn extend_initial_delay(&mut self, now: u64, cfg: &GroupConfig) -> bool {
        let Some(r) = self.rebalance.as_mut() else {
            return false;
        };
        if !r.new_member_added || now >= r.deadline || cfg.initial_rebalance_delay_ms == 0 {
            return false;
        }
        r.new_member_added = false;
        r.delay_until = now
            .saturating_add(cfg.initial_rebalance_delay_ms)
            .min(r.deadline);
        true
    }

    /// Ends the join phase: drops members that did not rejoin, starts the next generation
    /// and answers every waiting JoinGroup (the leader gets all members' metadata).
    pub(crate) fn complete_join(&mut self, now: u64, out: &mut Vec<Action>) {
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.pending_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            self.remove_member(&id, out);
        }
        self.rebalance = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.become_empty(now);
            out.push(self.metadata_record());
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members_in_order().first().map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        self.sync_deadline = Some(now.saturating_add(self.max_rebalance_timeout()));
        self.answer_joins(now, out);
        out.push(self.metadata_record());
    }

    fn answer_joins(&mut self, now: u64, out: &mut Vec<Action>) {
        let ids: Vec<String> = self
            .members_in_order()
            .iter()
            .map(|m| m.id.clone())
            .collect();
        for id in ids {
            let result = self.join_result(&id, None);
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            member.is_new = false;
            member.assignment = Bytes::new();
            member.touch(now);
            if let Some(reply) = member.pending_join.take() {
                out.push(Action::Join { reply, result });
            }
        }
    }

    /// Moves to Empty, keeping the generation and protocol type.
    pub(crate) fn become_empty(&mut self, now: u64) {
        self.state = GroupState::Empty;
        self.protocol_name = None;
        self.leader = None;
        self.sync_deadline = None;
        self.empty_since = Some(now);
    }

    /// Removes a member (leave, expiry) and rebalances the rest.
    pub(crate) fn remove_member_and_update(
        &mut self,
        member_id: &str,
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Action>,
    ) {
        if self.remove_member(member_id, out).is_none() {
            return;
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {}
            GroupState::PreparingRebalance => self.maybe_complete_join(now, cfg, out),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.prepare_rebalance(now, cfg, out)
            }
        }
    }

    /// Advances the group's timers to `now`: expires handed-out ids, sessions, the
    /// join phase and the sync phase.
    pub(crate) fn tick(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Action>) {
        self.pending_members.retain(|_, expiry| *expiry > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.is_expired(now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session expired");
            self.remove_member_and_update(&id, now, cfg, out);
        }
        self.maybe_complete_join(now, cfg, out);
        self.expire_sync_phase(now, cfg, out);
    }

    /// Members that did not send SyncGroup in time are removed (Kafka's pending-sync timeout).
    fn expire_sync_phase(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Action>) {
        let due = self.is(GroupState::CompletingRebalance)
            && self.sync_deadline.is_some_and(|d| now >= d);
        if !due {
            return;
        }
        let laggards: Vec<String> = self
            .members
            .values()
            .filter(|m| m.pending_sync.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in laggards {
            self.remove_member(&id, out);
        }
        self.prepare_rebalance(now, cfg, out);
    }
}
