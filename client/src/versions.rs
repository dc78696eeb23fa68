//! The highest version of each API this client speaks.
//!
//! Caps stay below the versions that address topics by id only (Produce 13,
//! Fetch 13, OffsetCommit/OffsetFetch 10), since this client works by name.

use kafka_protocol::messages::ApiKey;

/// Our highest version for API `key` (further capped by the crate's range).
pub(crate) fn client_max(key: i16) -> i16 {
    match ApiKey::try_from(key) {
        Ok(ApiKey::ApiVersions) => 3,
        Ok(ApiKey::Metadata) => 12,
        Ok(ApiKey::Produce) => 11,
        Ok(ApiKey::Fetch) => 12,
        Ok(ApiKey::ListOffsets) => 7,
        Ok(ApiKey::FindCoordinator) => 4,
        Ok(ApiKey::JoinGroup) => 7,
        Ok(ApiKey::SyncGroup) => 5,
        Ok(ApiKey::Heartbeat) => 4,
        Ok(ApiKey::LeaveGroup) => 4,
        Ok(ApiKey::OffsetCommit) => 8,
        Ok(ApiKey::OffsetFetch) => 8,
        Ok(ApiKey::InitProducerId) => 4,
        Ok(ApiKey::CreateTopics) => 7,
        Ok(ApiKey::DeleteTopics) => 5,
        Ok(ApiKey::CreatePartitions) => 3,
        Ok(ApiKey::DescribeConfigs) => 4,
        Ok(ApiKey::IncrementalAlterConfigs) => 1,
        Ok(ApiKey::ListGroups) => 4,
        Ok(ApiKey::DescribeGroups) => 5,
        Ok(ApiKey::DeleteGroups) => 2,
        Ok(ApiKey::DeleteRecords) => 2,
        _ => 0,
    }
}

/// A readable API name for errors.
pub(crate) fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::JoinGroup) => "JoinGroup",
        Ok(ApiKey::SyncGroup) => "SyncGroup",
        Ok(ApiKey::Heartbeat) => "Heartbeat",
        Ok(ApiKey::LeaveGroup) => "LeaveGroup",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::InitProducerId) => "InitProducerId",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::CreatePartitions) => "CreatePartitions",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::IncrementalAlterConfigs) => "IncrementalAlterConfigs",
        Ok(ApiKey::ListGroups) => "ListGroups",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        Ok(ApiKey::DeleteGroups) => "DeleteGroups",
        Ok(ApiKey::DeleteRecords) => "DeleteRecords",
        _ => "UnknownApi",
    }
}
