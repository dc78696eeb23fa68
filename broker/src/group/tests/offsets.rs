//! Committed offsets, group deletion, listing and reload, on the pure manager.

use super::support::*;
use crate::group::events::Action;
use crate::group::manager::GroupManager;
use crate::group::offsets::{CommitParams, DurableOp, PartitionCommit, Write};
use crate::group::record::Record;
use crate::group::state::GroupState;
use crate::group::subscription::subscribed_to;

fn commit(group: &str, generation: i32, member: &str, parts: &[(&str, i32, i64)]) -> CommitParams {
    CommitParams {
        group_id: group.into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        partitions: parts
            .iter()
            .map(|(t, p, o)| PartitionCommit {
                topic: (*t).into(),
                partition: *p,
                offset: *o,
                leader_epoch: 3,
                metadata: "m".into(),
                exists: true,
            })
            .collect(),
        timestamp_ms: 1_000,
    }
}

/// Commits and applies as the runtime would on a durable write; returns the error codes.
fn commit_and_apply(m: &mut GroupManager, p: CommitParams, log: &mut Vec<Record>) -> Vec<i16> {
    let plan = m.commit_offsets(p, 0);
    if let Some(Write { records, op }) = plan.write {
        log.extend(records);
        m.apply(op, 0);
    }
    plan.results
        .iter()
        .map(|(_, e)| e.as_ref().map_or(0, |e| e.code()))
        .collect()
}

#[test]
fn simple_commit_then_fetch() {
    let mut m = GroupManager::new(config(), 1);
    let mut log = Vec::new();
    let codes = commit_and_apply(
        &mut m,
        commit("admin", -1, "", &[("t", 0, 5), ("t", 1, 7)]),
        &mut log,
    );
    assert_eq!(codes, vec![0, 0]);
    assert_eq!(log.len(), 2);
    let fetched = m.fetch_offsets("admin", Some(vec![("t".into(), vec![0, 1, 2])]));
    let parts = &fetched[0].1;
    assert_eq!(parts[0].1.as_ref().unwrap().offset, 5);
    assert_eq!(parts[0].1.as_ref().unwrap().leader_epoch, 3);
    assert_eq!(parts[1].1.as_ref().unwrap().offset, 7);
    assert_eq!(parts[2].1, None, "uncommitted partition");
    let all = m.fetch_offsets("admin", None);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.len(), 2);
    assert!(m.fetch_offsets("nope", None).is_empty());
    assert_eq!(
        m.fetch_offsets("nope", Some(vec![("t".into(), vec![0])]))[0].1[0].1,
        None
    );
    assert_eq!(m.group("admin").unwrap().state, GroupState::Empty);
}

#[test]
fn commit_is_invisible_until_applied() {
    let mut m = GroupManager::new(config(), 1);
    let plan = m.commit_offsets(commit("g", -1, "", &[("t", 0, 5)]), 0);
    assert!(m.fetch_offsets("g", None).is_empty());
    m.apply(plan.write.unwrap().op, 0);
    assert_eq!(
        m.fetch_offsets("g", None)[0].1[0]
            .1
            .as_ref()
            .unwrap()
            .offset,
        5
    );
}

#[test]
fn member_commits_are_checked_against_the_generation() {
    let mut h = Harness::new();
    let (a, _b, generation) = h.stable_pair();
    let mut log = Vec::new();
    let ok = commit_and_apply(
        &mut h.m,
        commit(GROUP, generation, &a, &[("t", 0, 1)]),
        &mut log,
    );
    assert_eq!(ok, vec![0]);
    let stale = commit_and_apply(
        &mut h.m,
        commit(GROUP, generation - 1, &a, &[("t", 0, 2)]),
        &mut log,
    );
    assert_eq!(stale, vec![22]);
    let unknown = commit_and_apply(
        &mut h.m,
        commit(GROUP, generation, "x", &[("t", 0, 2)]),
        &mut log,
    );
    assert_eq!(unknown, vec![25]);
    let simple = commit_and_apply(&mut h.m, commit(GROUP, -1, "", &[("t", 0, 2)]), &mut log);
    assert_eq!(simple, vec![25], "simple commits need an empty group");
    let gone = commit_and_apply(&mut h.m, commit("other", 4, "x", &[("t", 0, 2)]), &mut log);
    assert_eq!(gone, vec![22]);
    // During the join phase current members may still commit (before revoking).
    h.join("");
    let during = commit_and_apply(
        &mut h.m,
        commit(GROUP, generation, &a, &[("t", 0, 3)]),
        &mut log,
    );
    assert_eq!(during, vec![0]);
    assert_eq!(log.len(), 2);
}

#[test]
fn commit_in_completing_rebalance_says_rebalancing() {
    let mut h = Harness::new();
    let r = h.join_now("");
    let p = commit(GROUP, r.generation, &r.member_id, &[("t", 0, 1)]);
    assert_eq!(commit_and_apply(&mut h.m, p, &mut Vec::new()), vec![27]);
}

#[test]
fn per_partition_errors() {
    let mut m = GroupManager::new(config(), 1);
    let mut p = commit("g", -1, "", &[("t", 0, 1), ("t", 1, 1), ("gone", 0, 1)]);
    p.partitions[1].metadata = "x".repeat(5_000);
    p.partitions[2].exists = false;
    let plan = m.commit_offsets(p, 0);
    let codes: Vec<i16> = plan
        .results
        .iter()
        .map(|(_, e)| e.as_ref().map_or(0, |e| e.code()))
        .collect();
    assert_eq!(codes, vec![0, 12, 3]);
    assert_eq!(plan.write.unwrap().records.len(), 1);
}

#[test]
fn offset_delete_respects_subscriptions() {
    let mut h = Harness::new();
    let mut log = Vec::new();
    assert_eq!(h.m.delete_offsets(GROUP, vec![]).unwrap_err().code(), 69);
    let (a, _b, generation) = h.stable_pair();
    commit_and_apply(
        &mut h.m,
        commit(GROUP, generation, &a, &[("range", 0, 1), ("other", 0, 1)]),
        &mut log,
    );
    // The harness's metadata ("range") is no readable subscription: every topic counts
    // as subscribed, as in Kafka.
    let group = h.m.group(GROUP).unwrap();
    assert!(subscribed_to(group, "other"));
    let (results, write) =
        h.m.delete_offsets(GROUP, vec![("other".into(), vec![0])])
            .unwrap();
    assert_eq!(results[0].1[0].1.as_ref().unwrap().code(), 86);
    assert!(write.is_none());
    // Once Empty, offsets can go.
    h.m.leave(GROUP, &[leaving(&a)], 0).0.unwrap();
    let b =
        h.m.group(GROUP)
            .unwrap()
            .members
            .keys()
            .next()
            .unwrap()
            .clone();
    h.m.leave(GROUP, &[leaving(&b)], 0).0.unwrap();
    assert_eq!(h.state(), GroupState::Empty);
    let (results, write) =
        h.m.delete_offsets(GROUP, vec![("other".into(), vec![0, 9])])
            .unwrap();
    assert_eq!(
        results[0]
            .1
            .iter()
            .map(|(_, e)| e.is_none())
            .collect::<Vec<_>>(),
        vec![true, true]
    );
    let write = write.unwrap();
    assert_eq!(
        write.records.len(),
        1,
        "only committed partitions get tombstones"
    );
    assert_eq!(write.records[0].1, None);
    h.m.apply(write.op, 0);
    assert_eq!(h.m.fetch_offsets(GROUP, None).len(), 1);
}

fn leaving(member: &str) -> crate::group::leave::LeavingMember {
    crate::group::leave::LeavingMember {
        member_id: member.into(),
        instance_id: None,
    }
}

#[test]
fn delete_groups() {
    let mut h = Harness::new();
    let mut log = Vec::new();
    commit_and_apply(&mut h.m, commit("empty", -1, "", &[("t", 0, 1)]), &mut log);
    h.join_now("");
    let ids = ["empty".to_owned(), GROUP.to_owned(), "missing".to_owned()];
    let (results, write) = h.m.delete_groups(&ids);
    let codes: Vec<i16> = results
        .iter()
        .map(|e| e.as_ref().map_or(0, |e| e.code()))
        .collect();
    assert_eq!(codes, vec![0, 68, 69]);
    let write = write.unwrap();
    assert_eq!(write.records.len(), 2, "offset tombstone + group tombstone");
    assert_eq!(h.m.group("empty").unwrap().state, GroupState::Dead);
    // While Dead: commits and deletes are refused.
    let codes = commit_and_apply(&mut h.m, commit("empty", -1, "", &[("t", 0, 2)]), &mut log);
    assert_eq!(codes, vec![15]);
    assert_eq!(
        h.m.delete_groups(&ids[..1]).0[0].as_ref().unwrap().code(),
        69
    );
    // A failed write brings it back; a durable one removes it.
    h.m.abort(write.op.clone());
    assert_eq!(h.m.group("empty").unwrap().state, GroupState::Empty);
    let (_, write) = h.m.delete_groups(&ids[..1]);
    h.m.apply(write.unwrap().op, 0);
    assert!(h.m.group("empty").is_none());
    assert!(matches!(
        DurableOp::DeleteGroups(vec![]),
        DurableOp::DeleteGroups(_)
    ));
}

#[test]
fn list_and_describe() {
    let mut h = Harness::new();
    commit_and_apply(
        &mut h.m,
        commit("simple", -1, "", &[("t", 0, 1)]),
        &mut Vec::new(),
    );
    let (a, b, _) = h.stable_pair();
    let all = h.m.list_groups(&[], &[]);
    assert_eq!(all.len(), 2);
    let stable = h.m.list_groups(&["STABLE".into()], &[]);
    assert_eq!(stable.len(), 1);
    assert_eq!(stable[0].group_id, GROUP);
    assert_eq!(stable[0].protocol_type, "consumer");
    assert_eq!(h.m.list_groups(&["Empty".into()], &[])[0].protocol_type, "");
    assert_eq!(h.m.list_groups(&[], &["classic".into()]).len(), 2);
    assert!(h.m.list_groups(&[], &["consumer".into()]).is_empty());
    let d = h.m.describe_group(GROUP).unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.protocol_data, "range");
    assert_eq!(d.members.len(), 2);
    assert_eq!(d.members[0].member_id, a);
    assert_eq!(d.members[0].assignment.as_ref(), b"A");
    assert_eq!(d.members[1].member_id, b);
    assert_eq!(d.members[1].client_host, "/127.0.0.1");
    assert!(h.m.describe_group("missing").is_none());
    // Outside Stable, no metadata or assignment is shown.
    h.join("");
    let d = h.m.describe_group(GROUP).unwrap();
    assert_eq!(d.protocol_data, "");
    assert!(d.members.iter().all(|m| m.assignment.is_empty()));
}

#[test]
fn reload_rebuilds_offsets_and_groups() {
    let mut h = Harness::new();
    let mut log = Vec::new();
    let (a, _b, generation) = h.stable_pair();
    for action in h.m.tick(0) {
        if let Action::Persist(records) = action {
            log.extend(records);
        }
    }
    let group_record = crate::group::record::group_record(
        GROUP,
        Some(&crate::group::record::GroupValue {
            generation,
            protocol_type: "consumer".into(),
            protocol_name: Some("range".into()),
            leader: None,
            members: Vec::new(),
        }),
    );
    log.push(group_record);
    commit_and_apply(
        &mut h.m,
        commit(GROUP, generation, &a, &[("t", 0, 10), ("t", 1, 11)]),
        &mut log,
    );
    commit_and_apply(&mut h.m, commit("simple", -1, "", &[("u", 0, 1)]), &mut log);
    let (_, write) =
        h.m.delete_offsets("simple", vec![("u".into(), vec![0])])
            .unwrap();
    log.extend(write.unwrap().records);
    log.push((bytes::Bytes::from_static(&[7, 7]), None));
    let mut reloaded = GroupManager::new(config(), 2);
    assert_eq!(reloaded.load(&log, 0), 1, "the garbage record is skipped");
    assert_eq!(
        reloaded.fetch_offsets(GROUP, None),
        h.m.fetch_offsets(GROUP, None)
    );
    let g = reloaded.group(GROUP).unwrap();
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation, generation);
    assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
    assert!(reloaded.fetch_offsets("simple", None).is_empty());
}

/// Found from outside: a member of a Stable group whose coordinator moved
/// (kill -9 of the leader of its offsets partition) got UNKNOWN_MEMBER_ID
/// on its next commit, rejoined and read again what it had not committed:
/// the group was stored without its members. A Stable group is now stored
/// with them, so the coordinator that loads it knows its members, their
/// generation and assignments, and their sessions start at the load.
#[test]
fn reload_keeps_a_stable_groups_members() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    let Action::Persist(stored) = h.m.group(GROUP).unwrap().metadata_record() else {
        panic!("a metadata record");
    };
    let mut log = stored.clone();
    let mut reloaded = GroupManager::new(config(), 2);
    let loaded_at = 5_000;
    assert_eq!(reloaded.load(&log, loaded_at), 0);
    let g = reloaded.group(GROUP).unwrap();
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.generation, generation);
    assert_eq!(g.leader.as_deref(), Some(a.as_str()));
    assert_eq!(g.members.len(), 2);
    assert_eq!(
        reloaded.heartbeat(GROUP, &b, None, generation, loaded_at),
        Ok(())
    );
    assert_eq!(
        commit_and_apply(
            &mut reloaded,
            commit(GROUP, generation, &a, &[("t", 0, 10)]),
            &mut log
        ),
        vec![0],
        "a member's commit after the move"
    );
    // Its sync (a consumer that was mid-rejoin) gets its assignment back.
    let reply = crate::group::member::ReplyId(99);
    let actions = reloaded.sync(
        crate::group::events::SyncParams {
            group_id: GROUP.into(),
            generation,
            member_id: b.clone(),
            instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: Vec::new(),
            reply,
        },
        loaded_at,
    );
    assert_eq!(
        sync_of(&actions, Some(reply)).unwrap().assignment.as_ref(),
        b"B"
    );
    // Members that never come back expire a session after the load.
    let session = u64::try_from(SESSION_MS).unwrap();
    // (b's session runs from the load, a's from its commit, at 0 here.)
    reloaded.tick(loaded_at + session - 1);
    assert!(reloaded.group(GROUP).unwrap().members.contains_key(&b));
    reloaded.tick(loaded_at + 3 * session);
    assert!(reloaded.group(GROUP).unwrap().members.is_empty());
    // A group stored Empty after it was Stable comes back Empty.
    let mut h2 = Harness::new();
    let r = h2.join_now("");
    h2.sync(&r.member_id, r.generation, &[]);
    let Action::Persist(stable) = h2.m.group(GROUP).unwrap().metadata_record() else {
        panic!("a metadata record");
    };
    h2.leave(&r.member_id).0.unwrap();
    let Action::Persist(empty) = h2.m.group(GROUP).unwrap().metadata_record() else {
        panic!("a metadata record");
    };
    let mut again = GroupManager::new(config(), 3);
    again.load(&[stable, empty].concat(), 0);
    let g = again.group(GROUP).unwrap();
    assert_eq!((g.state, g.members.len()), (GroupState::Empty, 0));
}

#[test]
fn empty_groups_without_offsets_are_forgotten_after_retention() {
    let mut h = Harness::new();
    let r = h.join_now("");
    h.leave(&r.member_id).0.unwrap();
    assert_eq!(h.state(), GroupState::Empty);
    assert!(h
        .tick_to(1_000)
        .iter()
        .all(|a| !matches!(a, Action::Persist(_))));
    let acts = h.tick_to(600_000);
    assert!(matches!(&acts[..], [Action::Persist(r)] if r[0].1.is_none()));
    assert!(h.m.group(GROUP).is_none());
}
