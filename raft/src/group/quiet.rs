//! Quiescence: idle groups cost no CPU.
//!
//! openraft drives every group with its own timers: a tick every
//! `heartbeat_interval * 13 / 64` (about 30 ms), a heartbeat per follower
//! every interval, an election timer on followers. A node hosting 1,000
//! partitions spent close to half a core on that while nothing was
//! produced. Redpanda coalesces heartbeats per node pair; openraft has no
//! hook for that (a heartbeat must pass through each group's core to renew
//! leases), so Weir stops the timers of groups that need none and replaces
//! the failure detector:
//!
//! - **Leaders** whose log is fully replicated and committed, with no
//!   proposal for [`IDLE_AFTER`], turn their tick and heartbeats off. Every
//!   [`REFRESH_EVERY`] a quiesced leader still sends one heartbeat (a
//!   follower that restarted meanwhile learns its leader and catches up).
//!   A proposal wakes the group first: timers on, one heartbeat, and the
//!   proposal is submitted once a quorum acknowledged it, because openraft
//!   0.10 refuses writes from a leader whose lease (a quorum ack within
//!   `election_timeout_max`) lapsed.
//! - **Followers** learn that their leader lives from the leader's own
//!   word: every node tells its peers, a few times a second and in one frame
//!   per peer, which groups it leads (the broker's announcer, see
//!   [`crate::group::LeaderNotice`]). While a fresh claim names a leader at
//!   this node's term or later (or the follower's Raft instance learned of
//!   its leader less than [`NEW_LEADER_GRACE`] ago, before a first claim
//!   could arrive), the follower's tick and elections are off.
//!   When claims stop (the leader died, was cut off, or lost the group), the
//!   follower turns its timers back on and openraft elects as usual; one
//!   designated follower (the first replica besides the silent leader, in
//!   the group's preference order) campaigns at once, the others only after
//!   [`OTHERS_WAIT`], so that two followers of an idle group, whose election
//!   timers both expired long ago, do not split the vote. openraft's own
//!   election switch starts off: a new group's preferred leader campaigns
//!   first, and the others join only after [`OTHERS_WAIT_NEW`], so leaders
//!   stay spread as assigned although replicas create a partition seconds
//!   apart.

use std::sync::Mutex;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{RaftMetrics, ServerState};
use tokio::time::Instant;

use super::RaftHandle;

/// A leader quiesces once it had no proposal for this long.
pub(crate) const IDLE_AFTER: Duration = Duration::from_secs(1);
/// How often a quiesced leader still sends one heartbeat.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long followers other than the designated one wait after their
/// leader went silent before they may campaign.
pub(crate) const OTHERS_WAIT: Duration = Duration::from_millis(1000);
/// How long the others wait for the preferred leader of a group that never
/// had a leader (a new partition: its replicas create it seconds apart, and
/// leaders stay spread only if the preferred one wins).
pub(crate) const OTHERS_WAIT_NEW: Duration = Duration::from_secs(5);
/// How long a follower trusts a leader its Raft instance just learned of
/// before that leader's first claim can have reached it (claims go out every
/// 250 ms): without it, a follower of a freshly elected leader would take
/// the missing claim for silence and depose it.
pub(crate) const NEW_LEADER_GRACE: Duration = Duration::from_secs(2);
/// How long a live leader seen at one [`Quiet::tend`] keeps (pre-)votes
/// for other candidates refused: a claim counts as fresh for 1 s, and
/// tending runs every 250 ms.
const STICKY_FOR: Duration = Duration::from_millis(1000);
/// How long a woken leader waits for a quorum to acknowledge its heartbeat
/// before it submits anyway (openraft may then refuse the write, which the
/// proposal reports as a lost leadership).
const WAKE_WAIT: Duration = Duration::from_secs(2);

/// Whether this node, by the metrics `m` of its Raft instance, reaches no
/// quorum of the group's voters when it cannot reach the nodes `down`
/// (itself counted as reached).
pub(crate) fn reaches_no_quorum(m: &RaftMetrics<crate::types::TypeConfig>, down: &[u64]) -> bool {
    let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
    let heard = voters
        .iter()
        .filter(|v| **v == m.id || !down.contains(v))
        .count();
    heard * 2 <= voters.len()
}

/// The quiescence state of one group.
#[derive(Debug)]
pub(crate) struct Quiet {
    state: Mutex<State>,
    /// The voters, the preferred leader first: the first of them that is
    /// not the silent leader campaigns at once.
    preference: Vec<u64>,
}

#[derive(Debug)]
struct State {
    /// The term this node quiesced in as leader, while it is quiesced.
    quiesced_in: Option<u64>,
    last_proposal: Instant,
    last_refresh: Instant,
    /// Since when no fresh claim names this follower's leader.
    silent_since: Option<Instant>,
    /// The leader this follower's Raft instance knows, and since when.
    leader_since: Option<(u64, Instant)>,
    /// This node leads the group and reaches no quorum of its voters.
    cut_off: bool,
    /// The live leader this node knows, and when it last knew it: itself
    /// while it leads and reaches a quorum, or the leader of a fresh
    /// claim. Votes for another candidate are refused meanwhile (see
    /// [`Quiet::refuses`]).
    live_leader: Option<(u64, Instant)>,
}

impl Quiet {
    /// A group that just started, with `preference` its voters, the
    /// preferred leader first: not quiesced.
    pub(crate) fn new(preference: Vec<u64>) -> Self {
        let now = Instant::now();
        Self {
            preference,
            state: Mutex::new(State {
                quiesced_in: None,
                last_proposal: now,
                last_refresh: now,
                silent_since: None,
                leader_since: None,
                cut_off: false,
                live_leader: None,
            }),
        }
    }

    /// Whether this node quiesced the group as its leader.
    pub(crate) fn is_quiesced(&self) -> bool {
        self.lock().quiesced_in.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called before proposals are submitted: records the activity and, if
    /// the group was quiesced, wakes it (timers on, one heartbeat, waits for
    /// a quorum's acknowledgement, at most [`WAKE_WAIT`]).
    pub(crate) async fn before_submit(&self, raft: &RaftHandle) {
        let was = {
            let mut s = self.lock();
            s.last_proposal = Instant::now();
            if s.cut_off {
                // Woken, its heartbeats would keep the others from electing
                // while it cannot commit (see [`Self::tend`]); openraft
                // refuses the write once its lease lapsed.
                return;
            }
            s.quiesced_in.take()
        };
        if was.is_none() {
            return;
        }
        let rc = raft.runtime_config();
        rc.tick(true);
        rc.heartbeat(true);
        if !super::heartbeat_acked(raft, WAKE_WAIT).await {
            tracing::debug!("a woken leader's heartbeat was not acknowledged in time");
        }
    }

    /// Whether this node refuses a (pre-)vote for `candidate`: it knows a
    /// live leader other than the candidate, within [`STICKY_FOR`] (itself,
    /// leading with a quorum in reach, or the leader of a fresh claim). A
    /// quiesced leader sends no heartbeats, so openraft's own lease, which
    /// is what keeps a returning node from deposing a healthy leader, has
    /// lapsed on every replica: without this, a node that heard nothing for
    /// a while (and so claimed nothing of the others) won elections with
    /// the votes it had sent, delivered when its links healed (found from
    /// outside: 13 of 44 idle partitions moved to it). A leader that dies
    /// or is cut off stops claiming, and the refusals end with its claims.
    pub(crate) fn refuses(&self, candidate: u64) -> bool {
        self.lock()
            .live_leader
            .is_some_and(|(leader, at)| leader != candidate && at.elapsed() < STICKY_FOR)
    }

    /// Periodic step: quiesces an idle leader, refreshes a quiesced one, and
    /// sets a follower's timers from `claim`, the freshest leadership claim
    /// heard for the group (leader node, term), if any. `down` are the nodes
    /// this one cannot reach now: a leader quiesces without waiting for them
    /// to replicate its log (openraft's replication task keeps retrying them
    /// with backoff, timers or not, and catches them up when they return).
    pub(crate) async fn tend(&self, raft: &RaftHandle, claim: Option<(u64, u64)>, down: &[u64]) {
        let m = raft.metrics().borrow_watched().clone();
        let rc = raft.runtime_config();
        let now = Instant::now();
        if m.state == ServerState::Leader {
            // A leader that reaches no quorum of the voters (it may still
            // send to them: a one-way partition) commits nothing. Its
            // heartbeats would still renew the followers' leases, so that
            // none of them could win an election: it stops them, and they
            // elect once their lease of it lapsed. Healed, a newer leader
            // deposes it, or, if none was elected, it goes on.
            let cut_off = reaches_no_quorum(&m, down);
            {
                let mut s = self.lock();
                if s.cut_off != cut_off {
                    tracing::info!(
                        term = m.current_term,
                        cut_off,
                        "a leader's reach of a quorum of its voters changed"
                    );
                }
                s.cut_off = cut_off;
                if cut_off {
                    s.quiesced_in = None;
                    s.live_leader = None;
                } else {
                    s.live_leader = Some((m.id, now));
                }
            }
            if cut_off {
                rc.heartbeat(false);
                rc.tick(false);
                return;
            }
            let refresh = {
                let mut s = self.lock();
                s.silent_since = None;
                if s.quiesced_in == Some(m.current_term) {
                    let due = now.duration_since(s.last_refresh) >= REFRESH_EVERY;
                    if due {
                        s.last_refresh = now;
                    }
                    due
                } else {
                    s.quiesced_in = None;
                    let idle = now.duration_since(s.last_proposal) >= IDLE_AFTER;
                    let last = m.last_log_index;
                    let committed = m.local_committed.as_ref().map(|l| l.index);
                    let replicated = m.replication.as_ref().is_some_and(|r| {
                        r.iter().all(|(node, matched)| {
                            matched.as_ref().map(|l| l.index) == last || down.contains(node)
                        })
                    });
                    if idle && replicated && committed == last {
                        s.quiesced_in = Some(m.current_term);
                        s.last_refresh = now;
                        rc.heartbeat(false);
                        rc.tick(false);
                    } else {
                        rc.tick(true);
                        rc.heartbeat(true);
                    }
                    false
                }
            };
            if refresh {
                let _ = raft.trigger().heartbeat().await;
            }
            return;
        }
        let claimed = claim.is_some_and(|(leader, term)| leader != m.id && term >= m.current_term);
        let since = {
            let mut s = self.lock();
            s.quiesced_in = None;
            s.cut_off = false;
            let new_leader = match m.current_leader {
                Some(l) if l != m.id => {
                    let since = match s.leader_since {
                        Some((known, t)) if known == l => t,
                        _ => {
                            s.leader_since = Some((l, now));
                            now
                        }
                    };
                    now.duration_since(since) < NEW_LEADER_GRACE
                }
                _ => {
                    s.leader_since = None;
                    false
                }
            };
            let alive = claimed || new_leader;
            s.live_leader = match claim {
                Some((leader, _)) if claimed => Some((leader, now)),
                _ => None,
            };
            if alive {
                s.silent_since = None;
                None
            } else {
                Some(*s.silent_since.get_or_insert(now))
            }
        };
        let Some(since) = since else {
            rc.elect(false);
            rc.tick(false);
            return;
        };
        let silent = claim.map(|(l, _)| l).or(m.current_leader);
        let designated = self.preference.iter().find(|v| Some(**v) != silent) == Some(&m.id);
        let wait = match (designated, silent) {
            (true, _) => Duration::ZERO,
            (false, None) => OTHERS_WAIT_NEW,
            (false, Some(_)) => OTHERS_WAIT,
        };
        if now.duration_since(since) >= wait {
            rc.tick(true);
            rc.elect(true);
        }
        if designated && m.state == ServerState::Follower {
            // Campaign now rather than when this node's own election timer
            // expires (up to lease + timeout after the leader's last
            // heartbeat); the others grant the vote once their lease of the
            // old leader lapsed, and a pre-vote changes no term meanwhile.
            let _ = raft.trigger().elect(true).await;
        }
    }
}
