//! One file per Kafka API (or family): each takes a decoded request and returns
//! the response; bytes stay in `connection` and `dispatch`.

pub mod api_versions;
pub mod configs;
pub mod delete_records;
pub mod describe_cluster;
pub mod fetch;
pub mod find_coordinator;
pub mod group_routing;
pub mod init_producer_id;
pub mod job_groups;
pub mod list_offsets;
pub mod metadata;
pub mod not_coordinator;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod topics;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// A wire string from a Rust string.
pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// A topic name for a response.
pub(crate) fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}
