//! A member of a classic group: identity, timeouts, protocols and the replies it waits for.

use bytes::Bytes;

/// Identifies a deferred reply (a JoinGroup or SyncGroup waiting for the rebalance);
/// the runtime allocates it and maps it to the channel of the waiting request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ReplyId(pub(crate) u64);

/// One (name, metadata) protocol a member supports, in the member's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    /// The protocol (assignor) name, e.g. `range`.
    pub(crate) name: String,
    /// The opaque protocol metadata (for consumers: the subscription).
    pub(crate) metadata: Bytes,
}

/// A member of a classic group.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The coordinator-assigned member id.
    pub(crate) id: String,
    /// The static group.instance.id, if any.
    pub(crate) instance_id: Option<String>,
    /// The client id of the member's connection.
    pub(crate) client_id: String,
    /// The client host of the member's connection.
    pub(crate) client_host: String,
    /// Session timeout: the member is removed after this long without a heartbeat.
    pub(crate) session_timeout_ms: u64,
    /// How long the coordinator waits for this member to rejoin during a rebalance.
    pub(crate) rebalance_timeout_ms: u64,
    /// The protocol type (e.g. `consumer`).
    pub(crate) protocol_type: String,
    /// The supported protocols in order of preference.
    pub(crate) protocols: Vec<Protocol>,
    /// The assignment the leader gave this member in the current generation.
    pub(crate) assignment: Bytes,
    /// The JoinGroup request of this member waiting for the rebalance to complete.
    pub(crate) pending_join: Option<ReplyId>,
    /// The SyncGroup request of this member waiting for the leader's assignment.
    pub(crate) pending_sync: Option<ReplyId>,
    /// When the session expires without a heartbeat (coordinator millis).
    pub(crate) session_deadline: u64,
    /// True until the member completes its first join; new members may expire while waiting.
    pub(crate) is_new: bool,
    /// Order of joining, to pick a leader deterministically.
    pub(crate) seq: u64,
}

impl Member {
    /// Whether the member supports exactly the same protocols (names and metadata).
    pub(crate) fn same_protocols(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// Whether the member supports the protocol `name`.
    pub(crate) fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|p| p.name == name)
    }

    /// The metadata the member sent for protocol `name` (empty when unsupported).
    pub(crate) fn metadata(&self, name: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// The member's most preferred protocol among `candidates`.
    pub(crate) fn vote<'a>(&self, candidates: &[&'a str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .find_map(|p| candidates.iter().find(|c| **c == p.name).copied())
    }

    /// Whether a heartbeat is due: members awaiting a join or sync response are kept
    /// alive by the rebalance (as in Kafka), except new members, which may expire.
    pub(crate) fn is_expired(&self, now: u64) -> bool {
        let awaiting = self.pending_join.is_some() || self.pending_sync.is_some();
        (self.is_new || !awaiting) && now >= self.session_deadline
    }

    /// Pushes the session deadline to `now + session timeout`.
    pub(crate) fn touch(&mut self, now: u64) {
        self.session_deadline = now.saturating_add(self.session_timeout_ms);
    }
}
