//! A replica that lost its Raft state rejoins without a vote.
//!
//! Raft's safety rests on every voter keeping what it wrote: its vote and the
//! entries it acknowledged. A node whose disk was replaced (or wiped, or
//! restored from an old copy) comes back empty and has forgotten both. Were
//! it to vote at once, it and a replica that lagged would be a majority, and
//! the candidate they elect could lack records a quorum had acknowledged
//! (found from outside: two replicas ended with later records at the offsets
//! of acknowledged ones). Kafka keeps such a replica out of the ISR until it
//! caught up; Weir does the same with the vote: a replica that may have held
//! the group before (its node was already a member of the cluster) and opens
//! with an empty Raft log neither grants votes, nor campaigns, nor takes
//! leadership handed over, until a leader's append leaves its log at or
//! beyond that leader's commit index. It still acknowledges appends, so it
//! helps commit what it really holds.
//!
//! The state is kept in a marker file in the partition directory, so a node
//! restarted before it caught up stays without a vote.
//!
//! The controller group rejoins differently: a node whose data directory is
//! new cannot tell a lost disk from a cluster still forming before the
//! controller caught it up, and a forming cluster must elect. Its rejoining
//! replica votes only for a candidate whose log holds nothing but the
//! group's first entry (no controller replica of a formed cluster has so
//! short a log, so such a candidate is another new node) and may campaign
//! (a formed cluster's replicas refuse a candidate with so short a log).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::durable_file;
use crate::error::Result;
use crate::types::TypeConfig;

/// The marker of a replica that has not caught up since it lost its state.
pub(crate) const MARKER_FILE: &str = "raft-rejoin";

/// Whether a group's replica on this node may have lost its state, and how
/// it rejoins when its Raft log is empty at open (see [`super::rejoin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LostState {
    /// It cannot have: it never rejoins.
    #[default]
    Impossible,
    /// A partition of a node the cluster knew before: until caught up it
    /// neither votes, nor campaigns, nor takes leadership handed over.
    Possible,
    /// The controller of a node whose data directory is new: until caught
    /// up it votes only for candidates that hold no more than the group's
    /// first entry, and may campaign.
    PossibleWhileForming,
}

/// Whether one group's replica on this node is rejoining (see the module).
#[derive(Debug)]
pub(crate) struct Rejoin {
    dir: PathBuf,
    active: AtomicBool,
    /// Whether openraft's election timer runs once it has caught up (off
    /// when quiescence elects instead).
    elects: bool,
    /// Whether it still votes for candidates of a group that never had a
    /// leader, and may campaign ([`LostState::PossibleWhileForming`]).
    forming: bool,
    /// The highest commit index a leader's append announced while
    /// rejoining, plus one (0: none yet).
    needed: AtomicU64,
}

impl Rejoin {
    /// The state of the replica in partition directory `dir`: rejoining if
    /// its marker is there. `elects`: whether openraft's election timer
    /// runs once it has caught up; `how`: how it rejoins.
    pub(crate) fn open(dir: &Path, elects: bool, how: LostState) -> Self {
        Self {
            dir: dir.to_path_buf(),
            elects,
            forming: how == LostState::PossibleWhileForming,
            active: AtomicBool::new(dir.join(MARKER_FILE).exists()),
            needed: AtomicU64::new(0),
        }
    }

    /// Starts rejoining (durably: the marker is fsynced).
    pub(crate) fn begin(&self) -> Result<()> {
        durable_file::write(&self.dir, MARKER_FILE, b"", durable_file::Sync::Durable)?;
        self.active.store(true, Ordering::SeqCst);
        if self.forming {
            // Every new node's controller comes here (a new data directory
            // and a lost one look alike): no warning for the normal case
            // (found from outside: one warning per node of a new cluster).
            tracing::info!(
                dir = %self.dir.display(),
                "controller replica of a new data directory: it votes fully once a leader has caught it up"
            );
        } else {
            tracing::warn!(
                dir = %self.dir.display(),
                "replica lost its Raft state: it votes again once a leader has caught it up"
            );
        }
        Ok(())
    }

    /// Whether openraft's election timer is to run once it has caught up.
    pub(crate) fn elects(&self) -> bool {
        self.elects
    }

    /// Whether the replica is still rejoining.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Whether it must neither campaign nor take leadership handed over.
    pub(crate) fn holds_back(&self) -> bool {
        self.is_active() && !self.forming
    }

    /// Its answer to the (pre-)vote `req` when it must refuse it: not
    /// granted, and nothing learnt from it (its own vote is not changed).
    pub(crate) fn refusal(
        &self,
        req: &openraft::raft::VoteRequest<TypeConfig>,
    ) -> Option<openraft::raft::VoteResponse<TypeConfig>> {
        let first_entry_only = req.last_log_id.as_ref().is_none_or(|l| l.index == 0);
        let refuses = self.is_active() && !(self.forming && first_entry_only);
        refuses.then_some(openraft::raft::VoteResponse {
            vote: req.vote,
            vote_granted: false,
            last_log_id: None,
        })
    }

    /// A leader's append arrived announcing `leader_commit` (its commit
    /// index, if any).
    pub(crate) fn heard(&self, leader_commit: Option<u64>) {
        if let Some(c) = leader_commit {
            self.needed.fetch_max(c + 1, Ordering::SeqCst);
        }
    }

    /// An append succeeded and left this replica's log matching the
    /// leader's up to `matched`. Returns true when that ends rejoining: the
    /// log reaches every commit index announced so far (the marker is
    /// removed; should that fail, the replica only stays without a vote
    /// for longer).
    pub(crate) fn caught_up(&self, matched: Option<u64>) -> bool {
        if !self.is_active() {
            return false;
        }
        let needed = self.needed.load(Ordering::SeqCst);
        if matched.map_or(0, |m| m + 1) < needed {
            return false;
        }
        self.end()
    }

    /// This replica was elected leader: only a replica that may campaign
    /// ([`LostState::PossibleWhileForming`]) can be, and only with the votes
    /// of a majority whose logs are no longer than its own, so its log
    /// holds everything committed and rejoining ends.
    pub(crate) fn elected(&self) {
        if self.is_active() {
            self.end();
        }
    }

    /// Removes the marker (should that fail, the replica only stays
    /// without a vote for longer after a restart) and votes again. Returns
    /// whether it was rejoining.
    fn end(&self) -> bool {
        if let Err(e) = std::fs::remove_file(self.dir.join(MARKER_FILE)) {
            tracing::warn!(error = %e, "could not remove the rejoin marker");
        }
        if self.active.swap(false, Ordering::SeqCst) {
            tracing::info!(dir = %self.dir.display(), "replica caught up: it votes again");
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejoining_ends_once_an_append_reaches_every_announced_commit() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rejoin::open(dir.path(), true, LostState::Possible);
        assert!(!r.is_active());
        r.begin().unwrap();
        // Survives a restart.
        let r = Rejoin::open(dir.path(), true, LostState::Possible);
        assert!(r.is_active());
        r.heard(Some(9));
        assert!(!r.caught_up(None));
        assert!(!r.caught_up(Some(8)));
        r.heard(Some(12));
        assert!(!r.caught_up(Some(9)));
        assert!(r.caught_up(Some(12)));
        assert!(!r.is_active());
        assert!(!dir.path().join(MARKER_FILE).exists());
        assert!(!Rejoin::open(dir.path(), true, LostState::Possible).is_active());
    }

    #[test]
    fn a_forming_replica_votes_only_for_candidates_of_a_new_group_until_elected() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rejoin::open(dir.path(), true, LostState::PossibleWhileForming);
        r.begin().unwrap();
        let ask = |index: Option<u64>| {
            openraft::raft::VoteRequest::<TypeConfig>::new(
                openraft::Vote::new(3, 2),
                index.map(|i| crate::types::log_id(1, i)),
            )
        };
        assert!(r.refusal(&ask(None)).is_none());
        assert!(r.refusal(&ask(Some(0))).is_none());
        assert!(r.refusal(&ask(Some(4))).is_some());
        assert!(!r.holds_back());
        r.elected();
        assert!(!r.is_active());
        assert!(r.refusal(&ask(Some(4))).is_none());
        assert!(!dir.path().join(MARKER_FILE).exists());
    }

    #[test]
    fn a_partition_replica_refuses_every_vote_and_holds_back() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rejoin::open(dir.path(), true, LostState::Possible);
        r.begin().unwrap();
        let req = openraft::raft::VoteRequest::<TypeConfig>::new(openraft::Vote::new(3, 2), None);
        assert!(r.refusal(&req).is_some());
        assert!(r.holds_back());
    }

    #[test]
    fn a_leader_with_nothing_committed_ends_it_at_the_first_match() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rejoin::open(dir.path(), true, LostState::Possible);
        r.begin().unwrap();
        r.heard(None);
        assert!(r.caught_up(None));
    }
}
