//! The group coordinators of one node: one per `__consumer_offsets`
//! partition this node leads, each loaded from that partition's log for the
//! leader epoch it was loaded in. A group belongs to the partition its id
//! hashes to (Kafka's rule: Java's `String.hashCode`, made non-negative,
//! modulo the partition count), so its coordinator is that partition's
//! leader.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::group::GroupCoordinator;

/// Default partition count of `__consumer_offsets` for a new cluster (as
/// Redpanda's `group_topic_partitions`; Kafka's default is 50).
pub const DEFAULT_OFFSETS_PARTITIONS: i32 = 16;

/// The `__consumer_offsets` partition of `group_id` when the topic has
/// `partitions` partitions (Kafka's `Utils.abs(groupId.hashCode()) %
/// partitions`, so a group lands where a Kafka cluster would put it).
pub fn offsets_partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    // Kafka's Utils.abs: i32::MIN maps to 0.
    hash.checked_abs().unwrap_or(0) % partitions.max(1)
}

/// A coordinator and the leader epoch of its partition it was loaded in.
#[derive(Debug, Clone)]
struct Loaded {
    epoch: i32,
    coordinator: Arc<GroupCoordinator>,
}

/// The coordinators this node runs, by `__consumer_offsets` partition.
#[derive(Debug, Default)]
pub struct Coordinators {
    // Read by every group request, written on leadership changes; never
    // held across an `.await`.
    by_partition: RwLock<HashMap<i32, Loaded>>,
}

impl Coordinators {
    /// The coordinator of `partition` when it was loaded in leader epoch
    /// `epoch` (the partition's current one).
    pub fn get(&self, partition: i32, epoch: i32) -> Option<Arc<GroupCoordinator>> {
        self.read()
            .get(&partition)
            .filter(|l| l.epoch == epoch)
            .map(|l| Arc::clone(&l.coordinator))
    }

    /// The epoch `partition`'s coordinator was loaded in, if any.
    pub fn loaded_epoch(&self, partition: i32) -> Option<i32> {
        self.read().get(&partition).map(|l| l.epoch)
    }

    /// Installs the coordinator of `partition` loaded in `epoch`.
    pub fn install(&self, partition: i32, epoch: i32, coordinator: GroupCoordinator) {
        self.by_partition
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                partition,
                Loaded {
                    epoch,
                    coordinator: Arc::new(coordinator),
                },
            );
    }

    /// Drops the coordinator of `partition` (this node no longer leads it);
    /// returns whether there was one.
    pub fn remove(&self, partition: i32) -> bool {
        self.by_partition
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition)
            .is_some()
    }

    /// Every coordinator with the partition and epoch it was loaded for.
    pub fn all(&self) -> Vec<(i32, i32, Arc<GroupCoordinator>)> {
        self.read()
            .iter()
            .map(|(p, l)| (*p, l.epoch, Arc::clone(&l.coordinator)))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i32, Loaded>> {
        self.by_partition.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups land on the partitions a Kafka cluster with the same count
    /// would choose (`Utils.abs("...".hashCode()) % n`, hashes computed apart).
    #[test]
    fn partitions_follow_javas_string_hash() {
        // "group".hashCode() = 98629247; "group-€-x" = -1476214967 (UTF-16
        // units, negative); "kafka-streams-app" = -2143363552.
        assert_eq!(offsets_partition_for("a", 50), 47);
        assert_eq!(offsets_partition_for("group", 16), 15);
        assert_eq!(offsets_partition_for("my-consumer-group", 16), 9);
        assert_eq!(offsets_partition_for("group-€-x", 16), 7);
        assert_eq!(offsets_partition_for("kafka-streams-app", 16), 0);
        assert_eq!(offsets_partition_for("", 16), 0);
        assert_eq!(offsets_partition_for("anything", 1), 0);
        // Every partition is in range, also for hashes that overflow.
        for i in 0..1000 {
            let p = offsets_partition_for(&format!("consumer-group-{i}-ÿ€"), 16);
            assert!((0..16).contains(&p));
        }
    }
}
