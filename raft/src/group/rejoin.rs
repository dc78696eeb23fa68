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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::durable_file;
use crate::error::Result;
use crate::types::TypeConfig;

/// The marker of a replica that has not caught up since it lost its state.
pub(crate) const MARKER_FILE: &str = "raft-rejoin";

/// Whether one group's replica on this node is rejoining (see the module).
#[derive(Debug)]
pub(crate) struct Rejoin {
    dir: PathBuf,
    active: AtomicBool,
    /// Whether openraft's election timer runs once it has caught up (off
    /// when quiescence elects instead).
    elects: bool,
    /// The highest commit index a leader's append announced while
    /// rejoining, plus one (0: none yet).
    needed: AtomicU64,
}

impl Rejoin {
    /// The state of the replica in partition directory `dir`: rejoining if
    /// its marker is there. `elects`: whether openraft's election timer
    /// runs once it has caught up.
    pub(crate) fn open(dir: &Path, elects: bool) -> Self {
        Self {
            dir: dir.to_path_buf(),
            elects,
            active: AtomicBool::new(dir.join(MARKER_FILE).exists()),
            needed: AtomicU64::new(0),
        }
    }

    /// Starts rejoining (durably: the marker is fsynced).
    pub(crate) fn begin(&self) -> Result<()> {
        durable_file::write(&self.dir, MARKER_FILE, b"", durable_file::Sync::Durable)?;
        self.active.store(true, Ordering::SeqCst);
        tracing::warn!(
            dir = %self.dir.display(),
            "replica lost its Raft state: it votes again once a leader has caught it up"
        );
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

/// The answer of a rejoining replica to a (pre-)vote request: not granted,
/// and nothing learnt from it (its own vote is not changed).
pub(crate) fn refusal(
    req: &openraft::raft::VoteRequest<TypeConfig>,
) -> openraft::raft::VoteResponse<TypeConfig> {
    openraft::raft::VoteResponse {
        vote: req.vote,
        vote_granted: false,
        last_log_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejoining_ends_once_an_append_reaches_every_announced_commit() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rejoin::open(dir.path(), true);
        assert!(!r.is_active());
        r.begin().unwrap();
        // Survives a restart.
        let r = Rejoin::open(dir.path(), true);
        assert!(r.is_active());
        r.heard(Some(9));
        assert!(!r.caught_up(None));
        assert!(!r.caught_up(Some(8)));
        r.heard(Some(12));
        assert!(!r.caught_up(Some(9)));
        assert!(r.caught_up(Some(12)));
        assert!(!r.is_active());
        assert!(!dir.path().join(MARKER_FILE).exists());
        assert!(!Rejoin::open(dir.path(), true).is_active());
    }

    #[test]
    fn a_leader_with_nothing_committed_ends_it_at_the_first_match() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rejoin::open(dir.path(), true);
        r.begin().unwrap();
        r.heard(None);
        assert!(r.caught_up(None));
    }
}
