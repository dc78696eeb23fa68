//! Explicit replica assignments of CreateTopics and CreatePartitions, checked as
//! Kafka checks them, against the brokers that are alive.

use std::collections::BTreeSet;

use crate::error_code::code;

/// Why an assignment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    /// Assignments together with a partition count or replication factor.
    #[error("both num_partitions/replication_factor and replica assignments were set")]
    Both,
    /// The assignment itself is malformed or names brokers that do not exist.
    #[error("{0}")]
    Invalid(String),
}

impl AssignmentError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::Both => code::INVALID_REQUEST,
            Self::Invalid(_) => code::INVALID_REPLICA_ASSIGNMENT,
        }
    }
}

fn invalid(msg: String) -> AssignmentError {
    AssignmentError::Invalid(msg)
}

/// Checks one partition's replica list: not empty, no broker twice, every
/// broker alive.
fn check_replicas(partition: i32, replicas: &[i32], live: &[i32]) -> Result<(), AssignmentError> {
    if replicas.is_empty() {
        return Err(invalid(format!("partition {partition} has no replicas")));
    }
    let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
    if distinct.len() != replicas.len() {
        return Err(invalid(format!(
            "partition {partition} names a broker twice: {replicas:?}"
        )));
    }
    if let Some(b) = replicas.iter().find(|b| !live.contains(b)) {
        return Err(invalid(format!(
            "partition {partition} is assigned to broker {b}, which is not alive (live brokers: {live:?})"
        )));
    }
    Ok(())
}

/// Replicas of partitions `from..to`, `factor` each, spread over `nodes` as
/// Kafka spreads them: partition `p`'s replicas are `factor` consecutive
/// nodes starting at `(start + p) mod n`, so replicas and preferred leaders
/// (the first replica) are even across the nodes.
pub fn spread(from: i32, to: i32, factor: usize, nodes: &[i32], start: usize) -> Vec<Vec<i32>> {
    let n = nodes.len().max(1);
    (from..to)
        .map(|p| {
            let first = start + usize::try_from(p).unwrap_or(0);
            (0..factor.min(nodes.len()))
                .map(|i| nodes[(first + i) % n])
                .collect()
        })
        .collect()
}

/// Checks CreateTopics' `assignments` (partition index → replicas) and
/// returns the topic's partition count. `num_partitions` and
/// `replication_factor` must be -1 when assignments are given.
pub fn for_create(
    assignments: &[(i32, Vec<i32>)],
    num_partitions: i32,
    replication_factor: i16,
    live: &[i32],
) -> Result<i32, AssignmentError> {
    if num_partitions != -1 || replication_factor != -1 {
        return Err(AssignmentError::Both);
    }
    let mut indexes: Vec<i32> = assignments.iter().map(|(p, _)| *p).collect();
    indexes.sort_unstable();
    if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
        return Err(invalid(format!(
            "partitions must be a consecutive 0-based sequence, got {indexes:?}"
        )));
    }
    let factor = assignments.first().map_or(0, |(_, r)| r.len());
    for (p, replicas) in assignments {
        check_replicas(*p, replicas, live)?;
        if replicas.len() != factor {
            return Err(invalid(
                "all partitions must have the same number of replicas".into(),
            ));
        }
    }
    i32::try_from(assignments.len()).map_err(|_| invalid("too many partitions".into()))
}

/// Checks CreatePartitions' `assignments` for the partitions added when a
/// topic goes from `current` to `count` partitions of `factor` replicas each.
pub fn for_added(
    assignments: &[Vec<i32>],
    current: i32,
    count: i32,
    factor: usize,
    live: &[i32],
) -> Result<(), AssignmentError> {
    let added = i64::from(count) - i64::from(current);
    if assignments.len() as i64 != added {
        return Err(invalid(format!(
            "increasing the partition count by {added} needs {added} assignments, got {}",
            assignments.len()
        )));
    }
    for (i, replicas) in assignments.iter().enumerate() {
        let partition = current + i as i32;
        check_replicas(partition, replicas, live)?;
        if replicas.len() != factor {
            return Err(invalid(format!(
                "partition {partition} has {} replicas, the topic has {factor}",
                replicas.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every partition gets `factor` distinct nodes, and each node holds as
    /// many replicas and leads as many partitions as any other (within one).
    #[test]
    fn spread_is_even_and_distinct() {
        let nodes = [1, 2, 3];
        let r = spread(0, 6, 2, &nodes, 1);
        assert_eq!(r.len(), 6);
        for (p, replicas) in r.iter().enumerate() {
            assert_eq!(replicas.len(), 2);
            assert_ne!(replicas[0], replicas[1], "partition {p}");
        }
        for n in nodes {
            let held = r.iter().filter(|x| x.contains(&n)).count();
            let led = r.iter().filter(|x| x[0] == n).count();
            assert_eq!((held, led), (4, 2), "node {n}");
        }
        // Added partitions continue the rotation.
        assert_eq!(spread(6, 7, 2, &nodes, 1), vec![r[0].clone()]);
    }

    #[test]
    fn create_takes_the_partition_count_from_the_assignments() {
        let a: Vec<(i32, Vec<i32>)> = (0..4).map(|p| (p, vec![0])).collect();
        assert_eq!(for_create(&a, -1, -1, &[0]), Ok(4));
        assert_eq!(for_create(&a, 4, -1, &[0]), Err(AssignmentError::Both));
        assert_eq!(for_create(&a, -1, 1, &[0]), Err(AssignmentError::Both));
        let bad = |a: &[(i32, Vec<i32>)]| for_create(a, -1, -1, &[0]).unwrap_err().code();
        assert_eq!(
            bad(&[(0, vec![1])]),
            code::INVALID_REPLICA_ASSIGNMENT,
            "dead broker"
        );
        assert_eq!(
            bad(&[(0, vec![0, 0])]),
            code::INVALID_REPLICA_ASSIGNMENT,
            "twice"
        );
        assert_eq!(
            bad(&[(0, vec![])]),
            code::INVALID_REPLICA_ASSIGNMENT,
            "empty"
        );
        assert_eq!(
            bad(&[(1, vec![0])]),
            code::INVALID_REPLICA_ASSIGNMENT,
            "gap"
        );
        assert_eq!(
            for_create(&[(0, vec![0]), (1, vec![0, 1])], -1, -1, &[0, 1])
                .unwrap_err()
                .code(),
            code::INVALID_REPLICA_ASSIGNMENT,
            "uneven"
        );
    }

    #[test]
    fn added_partitions_need_one_live_assignment_each() {
        assert_eq!(for_added(&[vec![0], vec![0]], 2, 4, 1, &[0]), Ok(()));
        assert!(for_added(&[vec![0]], 2, 4, 1, &[0]).is_err(), "too few");
        assert!(
            for_added(&[vec![5], vec![0]], 2, 4, 1, &[0]).is_err(),
            "dead broker"
        );
        assert!(for_added(&[vec![0, 0], vec![0]], 2, 4, 1, &[0]).is_err());
    }
}
