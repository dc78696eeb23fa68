//! The states of a classic group (Kafka's `GroupState`).

use std::fmt;

/// The state of a classic group.
///
/// ```text
/// Empty ──join──▶ PreparingRebalance ──all rejoined / timeout──▶ CompletingRebalance
///   ▲                  ▲      │ (no member left)                      │ leader's SyncGroup
///   └──────────────────┼──────┘                                       ▼
///                      └──── join / leave / expiry / protocol change ── Stable
/// Empty ──DeleteGroups──▶ Dead (removed once the tombstones are durable)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still have committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Members joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// The group is being deleted.
    Dead,
}

impl GroupState {
    /// The state's name as Kafka reports it in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }

    /// Parses a state name case-insensitively (ListGroups' states filter); `None` if unknown.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Empty,
            Self::PreparingRebalance,
            Self::CompletingRebalance,
            Self::Stable,
            Self::Dead,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive() {
        assert_eq!(GroupState::parse("stable"), Some(GroupState::Stable));
        assert_eq!(GroupState::parse("EMPTY"), Some(GroupState::Empty));
        assert_eq!(GroupState::parse("nope"), None);
        assert_eq!(
            GroupState::CompletingRebalance.to_string(),
            "CompletingRebalance"
        );
    }
}
