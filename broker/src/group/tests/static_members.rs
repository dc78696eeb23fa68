//! Static membership (group.instance.id).

use super::support::*;
use crate::group::events::JoinParams;
use crate::group::leave::LeavingMember;
use crate::group::state::GroupState;

fn static_params(h: &mut Harness, member_id: &str, instance: &str) -> JoinParams {
    let mut p = h.params(member_id);
    p.instance_id = Some(instance.into());
    p.require_known_member_id = true;
    p
}

/// A static member "i1" (leader) and a dynamic member in a Stable generation.
fn stable_with_static(h: &mut Harness) -> (String, String, i32) {
    let p = static_params(h, "", "i1");
    let (ra, acts) = h.join_with(p);
    let a = join_of(&acts, ra).unwrap();
    assert_eq!(code(&a), 0, "static members skip MEMBER_ID_REQUIRED");
    assert!(a.member_id.starts_with("i1-"));
    h.sync(&a.member_id, 1, &[(&a.member_id, "A")]);
    let (rb, _) = h.join("");
    let p = static_params(h, &a.member_id, "i1");
    let (ra, acts) = h.join_with(p);
    let generation = join_of(&acts, ra).unwrap().generation;
    let b = join_of(&acts, rb).unwrap().member_id;
    h.sync(&b, generation, &[]);
    h.sync(&a.member_id, generation, &[(&a.member_id, "A"), (&b, "B")]);
    assert_eq!(h.state(), GroupState::Stable);
    (a.member_id, b, generation)
}

#[test]
fn static_rejoin_with_same_protocols_replaces_the_member_without_rebalance() {
    let mut h = Harness::new();
    let (old, b, generation) = stable_with_static(&mut h);
    let p = static_params(&mut h, "", "i1");
    let (reply, acts) = h.join_with(p);
    let r = join_of(&acts, reply).unwrap();
    assert_eq!(code(&r), 0);
    assert_ne!(r.member_id, old);
    assert_eq!(r.generation, generation);
    assert_eq!(
        r.leader, old,
        "the old leader id keeps the new member from assigning"
    );
    assert!(r.members.is_empty());
    assert_eq!(h.state(), GroupState::Stable);
    // The new id gets the old member's assignment; the old id is fenced.
    let (reply, acts) = h.sync(&r.member_id, generation, &[]);
    assert_eq!(
        sync_of(&acts, Some(reply)).unwrap().assignment.as_ref(),
        b"A"
    );
    let fenced = h.m.heartbeat(GROUP, &old, Some("i1"), generation, h.now);
    assert_eq!(fenced.unwrap_err().code(), 82);
    assert_eq!(h.heartbeat(&old, generation).unwrap_err().code(), 25);
    assert_eq!(h.heartbeat(&b, generation), Ok(()));
    let g = h.m.group(GROUP).unwrap();
    assert_eq!(g.leader.as_deref(), Some(r.member_id.as_str()));
    assert_eq!(g.static_members["i1"], r.member_id);
}

/// A restarted consumer sends other metadata for the same protocol (the
/// Java client: no owned partitions, generation -1): as Kafka, the group
/// skips the rebalance while the protocol it would select stays the one it
/// runs, and the new member gets the assignment it had.
#[test]
fn static_rejoin_with_other_metadata_of_the_same_protocol_skips_the_rebalance() {
    let mut h = Harness::new();
    let (old, b, generation) = stable_with_static(&mut h);
    let mut p = static_params(&mut h, "", "i1");
    p.protocols[0].metadata = bytes::Bytes::from_static(b"no owned partitions");
    let (reply, acts) = h.join_with(p);
    let r = join_of(&acts, reply).expect("answered at once");
    assert_eq!((code(&r), r.generation), (0, generation));
    assert_eq!(r.leader, old);
    assert_eq!(h.state(), GroupState::Stable);
    let (reply, acts) = h.sync(&r.member_id, generation, &[]);
    assert_eq!(
        sync_of(&acts, Some(reply)).unwrap().assignment.as_ref(),
        b"A"
    );
    assert_eq!(h.heartbeat(&b, generation), Ok(()));
}

/// A static member rejoining with protocols that change the group's
/// selected protocol makes the group rebalance.
#[test]
fn static_rejoin_changing_the_selected_protocol_triggers_a_rebalance() {
    let mut h = Harness::new();
    let p = static_params(&mut h, "", "i1");
    let (ra, acts) = h.join_with(p);
    let a = join_of(&acts, ra).unwrap();
    h.sync(&a.member_id, a.generation, &[(&a.member_id, "A")]);
    assert_eq!(h.state(), GroupState::Stable);
    let mut p = static_params(&mut h, "", "i1");
    p.protocols = protocols(&["sticky"]);
    let (reply, acts) = h.join_with(p);
    let r = join_of(&acts, reply).expect("the only member: the join completes");
    assert_eq!(code(&r), 0);
    assert_eq!(r.generation, a.generation + 1, "a new generation");
    assert_eq!(r.protocol_name.as_deref(), Some("sticky"));
}

#[test]
fn static_member_with_stale_member_id_is_fenced() {
    let mut h = Harness::new();
    let (old, _b, generation) = stable_with_static(&mut h);
    let p = static_params(&mut h, "", "i1");
    h.join_with(p);
    let p = static_params(&mut h, &old, "i1");
    let (reply, acts) = h.join_with(p);
    assert_eq!(code(&join_of(&acts, reply).unwrap()), 82);
    let leaving = [LeavingMember {
        member_id: old.clone(),
        instance_id: Some("i1".into()),
    }];
    let (result, _) = h.m.leave(GROUP, &leaving, h.now);
    assert_eq!(result.unwrap()[0].as_ref().unwrap_err().code(), 82);
    let _ = generation;
}

#[test]
fn replacing_a_member_waiting_in_a_rebalance_fences_its_join() {
    let mut h = Harness::new();
    let (old, _b, _) = stable_with_static(&mut h);
    let p = static_params(&mut h, &old, "i1");
    let (stale, _) = h.join_with(p);
    let p = static_params(&mut h, "", "i1");
    let (_, acts) = h.join_with(p);
    assert_eq!(code(&join_of(&acts, stale).unwrap()), 82);
}

#[test]
fn leave_by_instance_id_alone() {
    let mut h = Harness::new();
    let (_a, b, _) = stable_with_static(&mut h);
    let leaving = [
        LeavingMember {
            member_id: String::new(),
            instance_id: Some("i1".into()),
        },
        LeavingMember {
            member_id: String::new(),
            instance_id: Some("unknown".into()),
        },
    ];
    let (result, _) = h.m.leave(GROUP, &leaving, h.now);
    let results = result.unwrap();
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1].as_ref().unwrap_err().code(), 25);
    let g = h.m.group(GROUP).unwrap();
    assert_eq!(g.members.keys().collect::<Vec<_>>(), vec![&b]);
    assert!(g.static_members.is_empty());
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn expired_static_member_is_removed() {
    let mut h = Harness::new();
    let (a, b, generation) = stable_with_static(&mut h);
    h.now = 9_000;
    h.heartbeat(&b, generation).unwrap();
    h.tick_to(SESSION_MS as u64 + 1);
    let g = h.m.group(GROUP).unwrap();
    assert!(!g.members.contains_key(&a));
    assert!(g.static_members.is_empty());
}

/// A lone static member that stops heart-beating expires at its session
/// timeout exactly (not a tick or a rebalance later): at the deadline the group
/// is Empty and can be deleted (librdkafka test 0102 deletes it then).
#[test]
fn a_silent_static_member_expires_at_its_session_timeout() {
    let mut h = Harness::new();
    let p = static_params(&mut h, "", "solo");
    let (reply, acts) = h.join_with(p);
    let a = join_of(&acts, reply).unwrap();
    h.sync(&a.member_id, a.generation, &[(&a.member_id, "A")]);
    assert_eq!(h.state(), GroupState::Stable);
    let last_beat = h.now;
    let deadline = last_beat + SESSION_MS as u64;
    h.tick_to(deadline - 1);
    assert_eq!(h.state(), GroupState::Stable, "expired before its deadline");
    h.tick_to(deadline);
    assert_eq!(
        h.state(),
        GroupState::Empty,
        "not Empty at the session deadline"
    );
    let (results, _) = h.m.delete_groups(&[GROUP.to_string()]);
    assert!(results[0].is_none(), "delete at the deadline: {results:?}");
}
