//! A harness driving the pure [`GroupManager`] with explicit time.

use bytes::Bytes;

use crate::group::config::GroupConfig;
use crate::group::error::GroupError;
use crate::group::events::{Action, JoinParams, JoinResult, SyncParams, SyncResult};
use crate::group::leave::LeavingMember;
use crate::group::manager::GroupManager;
use crate::group::member::{Protocol, ReplyId};
use crate::group::state::GroupState;

pub(crate) const GROUP: &str = "g";
pub(crate) const SESSION_MS: i32 = 10_000;
pub(crate) const REBALANCE_MS: i32 = 30_000;

/// Settings for tests: no initial delay.
pub(crate) fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

/// Protocols [(name, metadata = name)].
pub(crate) fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: (*n).to_owned(),
            metadata: Bytes::from(n.to_string()),
        })
        .collect()
}

/// A pure manager plus a clock and reply ids.
pub(crate) struct Harness {
    pub(crate) m: GroupManager,
    pub(crate) now: u64,
    next_reply: u64,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(config())
    }

    pub(crate) fn with_config(cfg: GroupConfig) -> Self {
        Self {
            m: GroupManager::new(cfg, 42),
            now: 0,
            next_reply: 0,
        }
    }

    pub(crate) fn reply(&mut self) -> ReplyId {
        self.next_reply += 1;
        ReplyId(self.next_reply)
    }

    /// Join params as a v3 client would send (no MEMBER_ID_REQUIRED round trip).
    pub(crate) fn params(&mut self, member_id: &str) -> JoinParams {
        JoinParams {
            group_id: GROUP.into(),
            member_id: member_id.into(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: protocols(&["range"]),
            require_known_member_id: false,
            reply: self.reply(),
        }
    }

    pub(crate) fn join_with(&mut self, p: JoinParams) -> (ReplyId, Vec<Action>) {
        let reply = p.reply;
        (reply, self.m.join(p, self.now))
    }

    pub(crate) fn join(&mut self, member_id: &str) -> (ReplyId, Vec<Action>) {
        let p = self.params(member_id);
        self.join_with(p)
    }

    /// A new member joins and the join phase completes at once (it is alone or everyone
    /// else is already waiting); returns its result.
    pub(crate) fn join_now(&mut self, member_id: &str) -> JoinResult {
        let (reply, actions) = self.join(member_id);
        join_of(&actions, reply).expect("join answered")
    }

    pub(crate) fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> (ReplyId, Vec<Action>) {
        let reply = self.reply();
        let p = SyncParams {
            group_id: GROUP.into(),
            generation,
            member_id: member_id.into(),
            instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| ((*m).to_owned(), Bytes::from(a.to_string())))
                .collect(),
            reply,
        };
        (reply, self.m.sync(p, self.now))
    }

    pub(crate) fn heartbeat(&mut self, member_id: &str, generation: i32) -> Result<(), GroupError> {
        self.m
            .heartbeat(GROUP, member_id, None, generation, self.now)
    }

    pub(crate) fn leave(&mut self, member_id: &str) -> (Result<(), GroupError>, Vec<Action>) {
        let leaving = [LeavingMember {
            member_id: member_id.into(),
            instance_id: None,
        }];
        let (result, actions) = self.m.leave(GROUP, &leaving, self.now);
        let first = result.and_then(|r| r.into_iter().next().unwrap_or(Ok(())));
        (first, actions)
    }

    pub(crate) fn tick_to(&mut self, now: u64) -> Vec<Action> {
        self.now = now;
        self.m.tick(now)
    }

    pub(crate) fn state(&self) -> GroupState {
        self.m
            .group(GROUP)
            .map(|g| g.state)
            .unwrap_or(GroupState::Dead)
    }

    pub(crate) fn generation(&self) -> i32 {
        self.m.group(GROUP).map(|g| g.generation).unwrap_or(-1)
    }

    /// Two members A and B in a Stable generation; returns (a, b, generation).
    pub(crate) fn stable_pair(&mut self) -> (String, String, i32) {
        let a = self.join_now("").member_id;
        let (_, acts) = self.sync(&a, 1, &[]);
        assert!(sync_of(&acts, None).is_some());
        let (b_reply, acts) = self.join("");
        assert!(join_of(&acts, b_reply).is_none(), "B waits for A to rejoin");
        let (a_reply, acts) = self.join(&a);
        let ra = join_of(&acts, a_reply).unwrap();
        let rb = join_of(&acts, b_reply).unwrap();
        let generation = ra.generation;
        let (_, acts) = self.sync(&rb.member_id, generation, &[]);
        assert!(acts.is_empty(), "follower waits for the leader");
        let (_, acts) = self.sync(&a, generation, &[(&a, "A"), (&rb.member_id, "B")]);
        let syncs = acts
            .iter()
            .filter(|a| matches!(a, Action::Sync { .. }))
            .count();
        assert_eq!(syncs, 2);
        assert!(
            acts.iter().any(|a| matches!(a, Action::Persist(_))),
            "the Stable group's members are stored"
        );
        assert_eq!(self.state(), GroupState::Stable);
        (a, rb.member_id, generation)
    }
}

/// The JoinGroup result for `reply` among `actions`.
pub(crate) fn join_of(actions: &[Action], reply: ReplyId) -> Option<JoinResult> {
    actions.iter().find_map(|a| match a {
        Action::Join { reply: r, result } if *r == reply => Some(result.clone()),
        _ => None,
    })
}

/// The SyncGroup result for `reply` (any sync result if `None`) among `actions`.
pub(crate) fn sync_of(actions: &[Action], reply: Option<ReplyId>) -> Option<SyncResult> {
    actions.iter().find_map(|a| match a {
        Action::Sync { reply: r, result } if reply.is_none_or(|x| x == *r) => Some(result.clone()),
        _ => None,
    })
}

/// The error code of a join result.
pub(crate) fn code(r: &JoinResult) -> i16 {
    r.error.as_ref().map_or(0, GroupError::code)
}
