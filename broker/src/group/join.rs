//! JoinGroup on a classic group: new members, known members and static members.

use super::classic::ClassicGroup;
use super::config::GroupConfig;
use super::error::GroupError;
use super::events::{Action, JoinParams, JoinResult};
use super::ids::IdGen;
use super::member::Member;
use super::state::GroupState;

impl ClassicGroup {
    /// Handles a JoinGroup. The response comes as an [`Action::Join`] for `p.reply`,
    /// now or when the join phase completes.
    pub(crate) fn join(
        &mut self,
        p: JoinParams,
        now: u64,
        cfg: &GroupConfig,
        ids: &mut IdGen,
        out: &mut Vec<Action>,
    ) {
        if let Err(error) = self.check_join(&p, cfg) {
            let result = JoinResult::error(error, &p.member_id);
            out.push(Action::Join {
                reply: p.reply,
                result,
            });
        } else if p.member_id.is_empty() {
            self.join_new(p, now, cfg, ids, out);
        } else {
            self.join_known(p, now, cfg, out);
        }
    }

    fn check_join(&self, p: &JoinParams, cfg: &GroupConfig) -> Result<(), GroupError> {
        if self.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable(self.id.clone()));
        }
        let timeout = p.session_timeout_ms;
        if timeout < cfg.min_session_timeout_ms || timeout > cfg.max_session_timeout_ms {
            return Err(GroupError::InvalidSessionTimeout(timeout));
        }
        // The joining member's own current protocols do not count against it.
        let static_id = p
            .instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i));
        let except = Some(p.member_id.as_str())
            .filter(|m| !m.is_empty())
            .or(static_id.map(String::as_str));
        if !self.supports_protocols(&p.protocol_type, &p.protocols, except) {
            return Err(GroupError::InconsistentGroupProtocol(self.id.clone()));
        }
        Ok(())
    }

    /// A join without a member id: a static member rejoining, a v4+ dynamic member
    /// that must first learn its id, or a brand new member.
    fn join_new(
        &mut self,
        p: JoinParams,
        now: u64,
        cfg: &GroupConfig,
        ids: &mut IdGen,
        out: &mut Vec<Action>,
    ) {
        let prefix = p.instance_id.as_deref().unwrap_or(&p.client_id);
        let member_id = ids.member_id(prefix);
        let known_static = p
            .instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i))
            .cloned();
        if let Some(old_id) = known_static {
            return self.replace_static_member(&old_id, member_id, p, now, cfg, out);
        }
        if self.members.len() >= cfg.max_group_size {
            let error = GroupError::GroupMaxSizeReached(self.id.clone());
            let result = JoinResult::error(error, &p.member_id);
            return out.push(Action::Join {
                reply: p.reply,
                result,
            });
        }
        if p.require_known_member_id && p.instance_id.is_none() {
            let expiry = now.saturating_add(session_ms(&p));
            self.pending_members.insert(member_id.clone(), expiry);
            let error = GroupError::MemberIdRequired {
                group_id: self.id.clone(),
                member_id: member_id.clone(),
            };
            let result = JoinResult::error(error, &member_id);
            return out.push(Action::Join {
                reply: p.reply,
                result,
            });
        }
        self.add_member_and_rebalance(member_id, p, now, cfg, out);
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        p: JoinParams,
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Action>,
    ) {
        self.pending_members.remove(&member_id);
        let member = Member {
            id: member_id,
            instance_id: p.instance_id,
            client_id: p.client_id,
            client_host: p.client_host,
            session_timeout_ms: session_ms_of(p.session_timeout_ms),
            rebalance_timeout_ms: session_ms_of(p.rebalance_timeout_ms),
            protocol_type: p.protocol_type,
            protocols: p.protocols,
            assignment: Default::default(),
            pending_join: Some(p.reply),
            pending_sync: None,
            session_deadline: now.saturating_add(cfg.new_member_join_timeout_ms),
            is_new: true,
            seq: 0,
        };
        self.add_member(member);
        if let Some(r) = self.rebalance.as_mut() {
            r.new_member_added = true;
        }
        self.rebalance_after_join(now, cfg, out);
    }

    fn rebalance_after_join(&mut self, now: u64, cfg: &GroupConfig, out: &mut Vec<Action>) {
        if self.is(GroupState::PreparingRebalance) {
            self.maybe_complete_join(now, cfg, out);
        } else {
            self.prepare_rebalance(now, cfg, out);
        }
    }

    /// A static member rejoined with a new process: the new member id replaces the old one
    /// and the old one is fenced. A Stable group whose selected protocol does not change
    /// skips the rebalance; the member gets the old leader id so it does not run an
    /// assignment, and its SyncGroup returns the assignment it had.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Action>,
    ) {
        let Some(mut member) = self.members.remove(old_id) else {
            return self.add_member_and_rebalance(new_id, p, now, cfg, out);
        };
        let fenced = GroupError::fenced(&self.id, p.instance_id.as_deref().unwrap_or_default());
        if let Some(reply) = member.pending_join.take() {
            let result = JoinResult::error(fenced.clone(), old_id);
            out.push(Action::Join { reply, result });
        }
        if let Some(reply) = member.pending_sync.take() {
            let result = super::events::SyncResult::error(fenced);
            out.push(Action::Sync { reply, result });
        }
        let old_leader = self.leader.clone();
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        member.id = new_id.clone();
        update_member(&mut member, &p, now);
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        // As Kafka: a Stable group skips the rebalance when the protocol it
        // would select next is the one it runs, whatever the protocol
        // metadata says (found from outside: a restarted Java consumer
        // sends other metadata, no owned partitions and generation -1, and
        // every static restart rebalanced the whole group).
        let keeps_protocol =
            self.protocol_name.is_some() && self.select_protocol() == self.protocol_name;
        if self.is(GroupState::Stable) && keeps_protocol {
            let result = self.join_result(&new_id, old_leader);
            return out.push(Action::Join {
                reply: p.reply,
                result,
            });
        }
        if let Some(m) = self.members.get_mut(&new_id) {
            m.pending_join = Some(p.reply);
        }
        self.rebalance_after_join(now, cfg, out);
    }

    /// A join with a member id: a member that got MEMBER_ID_REQUIRED, or a current member.
    fn join_known(&mut self, p: JoinParams, now: u64, cfg: &GroupConfig, out: &mut Vec<Action>) {
        if self.pending_members.contains_key(&p.member_id) {
            if self.members.len() >= cfg.max_group_size {
                let error = GroupError::GroupMaxSizeReached(self.id.clone());
                let result = JoinResult::error(error, &p.member_id);
                return out.push(Action::Join {
                    reply: p.reply,
                    result,
                });
            }
            let id = p.member_id.clone();
            return self.add_member_and_rebalance(id, p, now, cfg, out);
        }
        if let Err(error) = self.validate_member(&p.member_id, p.instance_id.as_deref()) {
            let result = JoinResult::error(error, &p.member_id);
            return out.push(Action::Join {
                reply: p.reply,
                result,
            });
        }
        let Some(member) = self.members.get(&p.member_id) else {
            return;
        };
        let unchanged = member.same_protocols(&p.protocols);
        let is_leader = self.leader.as_deref() == Some(p.member_id.as_str());
        let answer_now = match self.state {
            GroupState::CompletingRebalance => unchanged,
            GroupState::Stable => unchanged && !is_leader,
            _ => false,
        };
        if answer_now {
            let result = self.join_result(&p.member_id, None);
            return out.push(Action::Join {
                reply: p.reply,
                result,
            });
        }
        self.update_member_and_rebalance(p, now, cfg, out);
    }

    fn update_member_and_rebalance(
        &mut self,
        p: JoinParams,
        now: u64,
        cfg: &GroupConfig,
        out: &mut Vec<Action>,
    ) {
        let Some(member) = self.members.get_mut(&p.member_id) else {
            return;
        };
        update_member(member, &p, now);
        if let Some(old) = member.pending_join.replace(p.reply) {
            // The member sent a new JoinGroup while one was waiting: the old one is stale.
            let error = GroupError::RebalanceInProgress(self.id.clone());
            let result = JoinResult::error(error, &p.member_id);
            out.push(Action::Join { reply: old, result });
        }
        self.rebalance_after_join(now, cfg, out);
    }
}

/// Takes the member's new connection details, timeouts and protocols.
fn update_member(member: &mut Member, p: &JoinParams, now: u64) {
    member.client_id = p.client_id.clone();
    member.client_host = p.client_host.clone();
    member.session_timeout_ms = session_ms_of(p.session_timeout_ms);
    member.rebalance_timeout_ms = session_ms_of(p.rebalance_timeout_ms);
    member.protocols = p.protocols.clone();
    member.touch(now);
}

fn session_ms(p: &JoinParams) -> u64 {
    session_ms_of(p.session_timeout_ms)
}

/// A wire timeout as milliseconds; negative values count as zero.
fn session_ms_of(ms: i32) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}
