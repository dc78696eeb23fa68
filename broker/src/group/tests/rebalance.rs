//! Dynamic membership: join, sync, heartbeat, leave, timeouts.

use super::support::*;
use crate::group::events::Action;
use crate::group::state::GroupState;

#[test]
fn single_member_joins_leads_and_syncs() {
    let mut h = Harness::new();
    let r = h.join_now("");
    assert_eq!(code(&r), 0);
    assert_eq!(r.generation, 1);
    assert_eq!(r.leader, r.member_id);
    assert!(r.member_id.starts_with("client-"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata.as_ref(), b"range");
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let (reply, acts) = h.sync(&r.member_id, 1, &[(&r.member_id, "A")]);
    let s = sync_of(&acts, Some(reply)).unwrap();
    assert_eq!(s.error, None);
    assert_eq!(s.assignment.as_ref(), b"A");
    assert_eq!(h.state(), GroupState::Stable);
    // A resent SyncGroup in Stable returns the same assignment at once.
    let (reply, acts) = h.sync(&r.member_id, 1, &[]);
    assert_eq!(
        sync_of(&acts, Some(reply)).unwrap().assignment.as_ref(),
        b"A"
    );
}

#[test]
fn v4_member_id_required_round_trip() {
    let mut h = Harness::new();
    let mut p = h.params("");
    p.require_known_member_id = true;
    let (reply, acts) = h.join_with(p);
    let r = join_of(&acts, reply).unwrap();
    assert_eq!(code(&r), 79);
    assert!(r.member_id.starts_with("client-"));
    assert_eq!(
        h.state(),
        GroupState::Empty,
        "no rebalance before the rejoin"
    );
    let mut p = h.params(&r.member_id);
    p.require_known_member_id = true;
    let (reply, acts) = h.join_with(p);
    let joined = join_of(&acts, reply).unwrap();
    assert_eq!(code(&joined), 0);
    assert_eq!(joined.member_id, r.member_id);
    assert_eq!(joined.leader, r.member_id);
}

#[test]
fn unknown_member_id_is_rejected() {
    let mut h = Harness::new();
    let (reply, acts) = h.join("ghost");
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 25);
    h.join_now("");
    let (reply, acts) = h.join("ghost");
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 25);
}

#[test]
fn two_members_rebalance_and_the_leader_gets_all_metadata() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    assert_eq!(generation, 2);
    assert_ne!(a, b);
    let g = h.m.group(GROUP).unwrap();
    assert_eq!(g.leader.as_deref(), Some(a.as_str()));
    assert_eq!(g.members[&b].assignment.as_ref(), b"B");
    assert_eq!(h.heartbeat(&a, generation), Ok(()));
    assert_eq!(h.heartbeat(&b, generation), Ok(()));
}

#[test]
fn followers_get_no_member_list() {
    let mut h = Harness::new();
    let a = h.join_now("").member_id;
    h.sync(&a, 1, &[]);
    let (b_reply, _) = h.join("");
    let (a_reply, acts) = h.join(&a);
    let ra = join_of(&acts, a_reply).unwrap();
    let rb = join_of(&acts, b_reply).unwrap();
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    assert_eq!(rb.leader, a);
    assert_eq!((ra.generation, rb.generation), (2, 2));
}

#[test]
fn heartbeat_during_rebalance_says_rejoin() {
    let mut h = Harness::new();
    let (a, _b, generation) = h.stable_pair();
    h.join("");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&a, generation).unwrap_err().code(), 27);
    let (reply, acts) = h.sync(&a, generation, &[]);
    assert_eq!(
        sync_of(&acts, Some(reply)).unwrap().error.unwrap().code(),
        27
    );
}

#[test]
fn wrong_generation_and_unknown_member() {
    let mut h = Harness::new();
    let (a, _b, generation) = h.stable_pair();
    assert_eq!(h.heartbeat(&a, generation + 1).unwrap_err().code(), 22);
    assert_eq!(h.heartbeat("nobody", generation).unwrap_err().code(), 25);
    let (reply, acts) = h.sync(&a, generation - 1, &[]);
    assert_eq!(
        sync_of(&acts, Some(reply)).unwrap().error.unwrap().code(),
        22
    );
    let (reply, acts) = h.sync("nobody", generation, &[]);
    assert_eq!(
        sync_of(&acts, Some(reply)).unwrap().error.unwrap().code(),
        25
    );
    assert_eq!(
        h.m.heartbeat("other-group", &a, None, generation, 0)
            .unwrap_err()
            .code(),
        25
    );
}

#[test]
fn one_leaves_and_the_other_rebalances_alone() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    let (result, _) = h.leave(&a);
    assert_eq!(result, Ok(()));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&b, generation).unwrap_err().code(), 27);
    let (reply, acts) = h.join(&b);
    let r = join_of(&acts, reply).unwrap();
    assert_eq!(r.generation, generation + 1);
    assert_eq!(r.leader, b, "leadership moved to the remaining member");
    assert_eq!(r.members.len(), 1);
    assert_eq!(h.leave("nobody").0.unwrap_err().code(), 25);
}

#[test]
fn last_member_leaving_empties_the_group_keeping_the_generation() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    h.leave(&a).0.unwrap();
    let (reply, acts) = h.join(&b);
    let r = join_of(&acts, reply).unwrap();
    let (_, acts) = h.sync(&b, r.generation, &[]);
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::Sync { .. }))
            .count(),
        1
    );
    let (result, acts) = h.leave(&b);
    assert_eq!(result, Ok(()));
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.generation(), generation + 2);
    let g = h.m.group(GROUP).unwrap();
    assert!(g.members.is_empty());
    assert_eq!(g.protocol_name, None);
    assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
    assert!(acts.iter().any(|a| matches!(a, Action::Persist(_))));
    // A new member starts the next generation after the kept one.
    assert_eq!(h.join_now("").generation, generation + 3);
}

#[test]
fn member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    h.now = 1_000;
    let (c_reply, _) = h.join("");
    let (a_reply, acts) = h.join(&a);
    assert!(join_of(&acts, a_reply).is_none(), "B has not rejoined yet");
    // B keeps heartbeating, so only the rebalance timeout removes it.
    for now in [5_000, 14_000, 23_000] {
        h.now = now;
        assert_eq!(h.heartbeat(&b, generation).unwrap_err().code(), 27);
    }
    let acts = h.tick_to(1_000 + REBALANCE_MS as u64 - 1);
    assert!(acts.is_empty());
    let acts = h.tick_to(1_000 + REBALANCE_MS as u64);
    let ra = join_of(&acts, a_reply).unwrap();
    let rc = join_of(&acts, c_reply).unwrap();
    assert_eq!(ra.generation, generation + 1);
    assert_eq!(rc.generation, generation + 1);
    assert_eq!(ra.members.len(), 2);
    assert!(!ra.members.iter().any(|m| m.member_id == b));
    assert_eq!(h.heartbeat(&b, generation).unwrap_err().code(), 25);
}

#[test]
fn session_expiry_removes_the_member_and_rebalances() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    h.now = 9_000;
    h.heartbeat(&a, generation).unwrap();
    let acts = h.tick_to(SESSION_MS as u64 + 1);
    assert!(acts.iter().all(|a| !matches!(a, Action::Join { .. })));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert!(!h.m.group(GROUP).unwrap().members.contains_key(&b));
    assert_eq!(h.heartbeat(&a, generation).unwrap_err().code(), 27);
    let (reply, acts) = h.join(&a);
    assert_eq!(join_of(&acts, reply).unwrap().generation, generation + 1);
}

#[test]
fn everyone_expiring_empties_the_group() {
    let mut h = Harness::new();
    let (_a, _b, generation) = h.stable_pair();
    h.tick_to(SESSION_MS as u64 + 1);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.generation(), generation + 1);
}

#[test]
fn leader_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    h.join("");
    h.join(&b);
    let (_, acts) = h.join(&a);
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::Join { .. }))
            .count(),
        3
    );
    let (b_sync, acts) = h.sync(&b, generation + 1, &[]);
    assert!(acts.is_empty());
    let acts = h.tick_to(REBALANCE_MS as u64);
    // A and C never synced: they are removed; B's waiting sync is told to rejoin.
    assert_eq!(
        sync_of(&acts, Some(b_sync)).unwrap().error.unwrap().code(),
        27
    );
    let g = h.m.group(GROUP).unwrap();
    assert_eq!(g.members.keys().collect::<Vec<_>>(), vec![&b]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn inconsistent_protocols_are_rejected() {
    let mut h = Harness::new();
    h.join_now("");
    let mut p = h.params("");
    p.protocol_type = "connect".into();
    let (reply, acts) = h.join_with(p);
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 23);
    let mut p = h.params("");
    p.protocols = protocols(&["sticky"]);
    let (reply, acts) = h.join_with(p);
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 23);
    let mut p = h.params("");
    p.protocols.clear();
    let (reply, acts) = h.join_with(p);
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 23);
}

#[test]
fn invalid_session_timeout_and_group_id() {
    let mut h = Harness::new();
    let mut p = h.params("");
    p.session_timeout_ms = 10;
    let (reply, acts) = h.join_with(p);
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 26);
    let mut p = h.params("");
    p.group_id.clear();
    let (reply, acts) = h.join_with(p);
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 24);
}

#[test]
fn protocol_is_chosen_by_vote_among_common_ones() {
    let mut h = Harness::new();
    let mut p = h.params("");
    p.protocols = protocols(&["range", "roundrobin", "sticky"]);
    let (ra, acts) = h.join_with(p);
    let a = join_of(&acts, ra).unwrap().member_id;
    h.sync(&a, 1, &[]);
    let mut p = h.params("");
    p.protocols = protocols(&["roundrobin", "range"]);
    let (rb, _) = h.join_with(p);
    let mut p = h.params("");
    p.protocols = protocols(&["roundrobin", "range"]);
    let (rc, _) = h.join_with(p);
    let mut p = h.params(&a);
    p.protocols = protocols(&["range", "roundrobin", "sticky"]);
    let (ra, acts) = h.join_with(p);
    for reply in [ra, rb, rc] {
        let r = join_of(&acts, reply).unwrap();
        assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
    }
    let leader = join_of(&acts, ra).unwrap();
    assert!(leader
        .members
        .iter()
        .all(|m| m.metadata.as_ref() == b"roundrobin"));
}

#[test]
fn rejoin_in_completing_rebalance_with_same_protocols_is_answered_at_once() {
    let mut h = Harness::new();
    let r = h.join_now("");
    let (reply, acts) = h.join(&r.member_id);
    let again = join_of(&acts, reply).unwrap();
    assert_eq!(again.generation, r.generation);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
}

#[test]
fn initial_delay_waits_for_more_members() {
    let cfg = crate::group::config::GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..config()
    };
    let mut h = Harness::with_config(cfg);
    let (ra, acts) = h.join("");
    assert!(acts.is_empty());
    h.now = 1_000;
    let (rb, acts) = h.join("");
    assert!(acts.is_empty());
    assert!(
        h.tick_to(3_000).is_empty(),
        "B arrived: the delay is extended"
    );
    let acts = h.tick_to(6_000);
    let a = join_of(&acts, ra).unwrap();
    let b = join_of(&acts, rb).unwrap();
    assert_eq!((a.generation, b.generation), (1, 1));
    assert_eq!(a.members.len() + b.members.len(), 2);
}

#[test]
fn handed_out_member_ids_expire_and_stop_blocking_rebalances() {
    let mut h = Harness::new();
    let (a, _b, generation) = h.stable_pair();
    let mut p = h.params("");
    p.require_known_member_id = true;
    let (reply, acts) = h.join_with(p);
    let pending = join_of(&acts, reply).unwrap().member_id;
    h.leave(&a).0.unwrap();
    // B must rejoin, and the pending member id holds the join phase open...
    let b =
        h.m.group(GROUP)
            .unwrap()
            .members
            .keys()
            .next()
            .unwrap()
            .clone();
    let (rb, acts) = h.join(&b);
    assert!(join_of(&acts, rb).is_none());
    // ...until it expires with the session timeout.
    let acts = h.tick_to(SESSION_MS as u64);
    assert_eq!(join_of(&acts, rb).unwrap().generation, generation + 1);
    let (reply, acts) = h.join(&pending);
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 25);
}

#[test]
fn a_second_join_while_waiting_supersedes_the_first() {
    let mut h = Harness::new();
    let (a, b, _) = h.stable_pair();
    let (first, _) = h.join(&a);
    let (second, acts) = h.join(&a);
    assert_eq!(code(&join_of(&acts, first).unwrap()), 27);
    let (_, acts) = h.join(&b);
    assert_eq!(code(&join_of(&acts, second).unwrap()), 0);
}
