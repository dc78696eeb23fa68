//! The operations a client may perform on a resource, as the bit fields that
//! Metadata, DescribeCluster and DescribeGroups report (bit n = Kafka's
//! `AclOperation` code n). With no authorizer configured Kafka reports every
//! operation the resource type supports, and so does Weir until ACLs exist.

/// Kafka's `AclOperation` codes.
mod op {
    pub(super) const READ: u8 = 3;
    pub(super) const WRITE: u8 = 4;
    pub(super) const CREATE: u8 = 5;
    pub(super) const DELETE: u8 = 6;
    pub(super) const ALTER: u8 = 7;
    pub(super) const DESCRIBE: u8 = 8;
    pub(super) const CLUSTER_ACTION: u8 = 9;
    pub(super) const DESCRIBE_CONFIGS: u8 = 10;
    pub(super) const ALTER_CONFIGS: u8 = 11;
    pub(super) const IDEMPOTENT_WRITE: u8 = 12;
}

const fn bits(ops: &[u8]) -> i32 {
    let mut v = 0i32;
    let mut i = 0;
    while i < ops.len() {
        v |= 1 << ops[i];
        i += 1;
    }
    v
}

/// What a request that did not ask for authorized operations gets (Kafka's
/// `Integer.MIN_VALUE`).
pub const NOT_REQUESTED: i32 = i32::MIN;

/// Every operation on a topic (Kafka's `AclEntry.supportedOperations(TOPIC)`).
pub const TOPIC: i32 = bits(&[
    op::READ,
    op::WRITE,
    op::CREATE,
    op::DELETE,
    op::ALTER,
    op::DESCRIBE,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
]);

/// Every operation on a consumer group.
pub const GROUP: i32 = bits(&[op::READ, op::DELETE, op::DESCRIBE]);

/// Every operation on the cluster.
pub const CLUSTER: i32 = bits(&[
    op::CREATE,
    op::CLUSTER_ACTION,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
    op::IDEMPOTENT_WRITE,
    op::ALTER,
    op::DESCRIBE,
]);

/// `ops` when the request asked for them, else [`NOT_REQUESTED`].
pub fn if_requested(requested: bool, ops: i32) -> i32 {
    if requested {
        ops
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_match_kafkas_values() {
        // Values a Kafka 3.x broker without an authorizer reports.
        assert_eq!(TOPIC, 3576);
        assert_eq!(GROUP, 328);
        assert_eq!(CLUSTER, 8096);
    }
}
