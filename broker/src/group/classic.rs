//! A classic group: its state, members and committed offsets, and the helpers the
//! join/sync/leave/rebalance steps share. Pure: time comes in as `now` (coordinator ms).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::error::GroupError;
use super::events::{Action, JoinResult, JoinedMember, SyncResult};
use super::member::{Member, Protocol};
use super::record::{group_record, GroupValue, OffsetValue, StoredMember};
use super::state::GroupState;

/// The timers of a rebalance in PreparingRebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rebalance {
    /// The join phase ends at this time at the latest; members that did not rejoin are removed.
    pub(crate) deadline: u64,
    /// The join phase does not end before this time (initial delay of an empty group).
    pub(crate) delay_until: u64,
    /// Whether this is the delayed first rebalance of an empty group.
    pub(crate) initial: bool,
    /// A new member joined during the current initial delay.
    pub(crate) new_member_added: bool,
}

/// A classic (JoinGroup/SyncGroup) group.
#[derive(Debug, Clone)]
pub(crate) struct ClassicGroup {
    /// The group id.
    pub(crate) id: String,
    /// The state.
    pub(crate) state: GroupState,
    /// The generation, incremented by each completed join phase.
    pub(crate) generation: i32,
    /// The protocol type of the members (set by the first member).
    pub(crate) protocol_type: Option<String>,
    /// The protocol selected for the current generation.
    pub(crate) protocol_name: Option<String>,
    /// The leader's member id.
    pub(crate) leader: Option<String>,
    /// The members by member id.
    pub(crate) members: BTreeMap<String, Member>,
    /// group.instance.id → member id of static members.
    pub(crate) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry time.
    pub(crate) pending_members: BTreeMap<String, u64>,
    /// The rebalance timers while PreparingRebalance.
    pub(crate) rebalance: Option<Rebalance>,
    /// While CompletingRebalance: members that have not synced by then are removed.
    pub(crate) sync_deadline: Option<u64>,
    /// Committed offsets by (topic, partition).
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// When the group last became Empty.
    pub(crate) empty_since: Option<u64>,
    next_seq: u64,
}

impl ClassicGroup {
    /// A new Empty group.
    pub(crate) fn new(id: &str, now: u64) -> Self {
        Self {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeMap::new(),
            rebalance: None,
            sync_deadline: None,
            offsets: BTreeMap::new(),
            empty_since: Some(now),
            next_seq: 0,
        }
    }

    /// Whether the group is in `state`.
    pub(crate) fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// Adds a member; the first member sets the protocol type and the first leader.
    pub(crate) fn add_member(&mut self, mut member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        member.seq = self.next_seq;
        self.next_seq += 1;
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member, answering its waiting requests with `UNKNOWN_MEMBER_ID`, and
    /// hands leadership to the oldest remaining member if it led. State is unchanged.
    pub(crate) fn remove_member(
        &mut self,
        member_id: &str,
        out: &mut Vec<Action>,
    ) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        let error = GroupError::unknown_member(&self.id, member_id);
        if let Some(reply) = member.pending_join {
            let result = JoinResult::error(error.clone(), member_id);
            out.push(Action::Join { reply, result });
        }
        if let Some(reply) = member.pending_sync {
            let result = SyncResult::error(error);
            out.push(Action::Sync { reply, result });
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.oldest_member();
        }
        Some(member)
    }

    fn oldest_member(&self) -> Option<String> {
        self.members
            .values()
            .min_by_key(|m| m.seq)
            .map(|m| m.id.clone())
    }

    /// Members ordered by join order.
    pub(crate) fn members_in_order(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        members
    }

    /// Protocols every member supports, in the oldest member's order of preference.
    fn candidate_protocols(&self) -> Vec<&str> {
        let members = self.members_in_order();
        let Some(first) = members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| members.iter().all(|m| m.supports(name)))
            .collect()
    }

    /// The protocol for the next generation: every member votes for its preferred
    /// candidate; most votes wins, ties go to the oldest member's preference.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            if let Some(choice) = member.vote(&candidates) {
                if let Some(i) = candidates.iter().position(|c| *c == choice) {
                    votes[i] += 1;
                }
            }
        }
        let best = votes.iter().copied().max()?;
        let index = votes.iter().position(|v| *v == best)?;
        candidates.get(index).map(|s| (*s).to_owned())
    }

    /// Whether a member with this protocol type and protocols may (re)join: the type
    /// must match and at least one protocol must be supported by all other members.
    pub(crate) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[Protocol],
        except: Option<&str>,
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| Some(m.id.as_str()) != except)
            .collect();
        if others.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| others.iter().all(|m| m.supports(&p.name)))
    }

    /// Checks that `member_id` (with `instance_id` for static members) is a current member.
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(GroupError::unknown_member(&self.id, member_id)),
                Some(current) if current != member_id => {
                    Err(GroupError::fenced(&self.id, instance))
                }
                Some(_) => Ok(()),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(GroupError::unknown_member(&self.id, member_id)),
        }
    }

    /// Whether every member has a JoinGroup waiting and no handed-out id is outstanding.
    pub(crate) fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.pending_join.is_some())
    }

    /// The longest rebalance timeout of the members.
    pub(crate) fn max_rebalance_timeout(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// The JoinGroup response of `member` in the current generation.
    pub(crate) fn join_result(
        &self,
        member_id: &str,
        leader_override: Option<String>,
    ) -> JoinResult {
        let leader = leader_override
            .or_else(|| self.leader.clone())
            .unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members_in_order()
                .into_iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            member_id: member_id.to_owned(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            members,
        }
    }

    /// The SyncGroup response carrying `assignment`.
    pub(crate) fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// The group metadata record of the current generation; a Stable
    /// group's carries its members and their assignments.
    pub(crate) fn metadata_record(&self) -> Action {
        let stable = self.is(GroupState::Stable);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if stable {
            self.members_in_order()
                .into_iter()
                .map(|m| StoredMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: u32::try_from(m.session_timeout_ms).unwrap_or(u32::MAX),
                    rebalance_timeout_ms: u32::try_from(m.rebalance_timeout_ms).unwrap_or(u32::MAX),
                    metadata: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let value = GroupValue {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().filter(|_| stable),
            members,
        };
        Action::Persist(vec![group_record(&self.id, Some(&value))])
    }

    /// Restores the group from its stored metadata, read at `now`: Stable
    /// with its members (each session starting now) when the record has
    /// them, else Empty, with the stored generation.
    pub(crate) fn restore(&mut self, value: GroupValue, now: u64) {
        self.generation = value.generation;
        self.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        self.members.clear();
        self.static_members.clear();
        let Some(protocol) = value.protocol_name.filter(|_| !value.members.is_empty()) else {
            self.become_empty(now);
            return;
        };
        let protocol_type = self.protocol_type.clone().unwrap_or_default();
        for m in value.members {
            let seq = self.next_seq;
            self.next_seq += 1;
            let mut member = Member {
                id: m.id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: u64::from(m.session_timeout_ms),
                rebalance_timeout_ms: u64::from(m.rebalance_timeout_ms),
                protocol_type: protocol_type.clone(),
                protocols: vec![Protocol {
                    name: protocol.clone(),
                    metadata: m.metadata,
                }],
                assignment: m.assignment,
                pending_join: None,
                pending_sync: None,
                session_deadline: 0,
                is_new: false,
                seq,
            };
            member.touch(now);
            if let Some(instance) = &member.instance_id {
                self.static_members
                    .insert(instance.clone(), member.id.clone());
            }
            self.members.insert(member.id.clone(), member);
        }
        self.protocol_name = Some(protocol);
        self.leader = value.leader;
        self.state = GroupState::Stable;
        self.rebalance = None;
        self.sync_deadline = None;
        self.empty_since = None;
    }
}
