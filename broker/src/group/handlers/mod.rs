//! The public async API: one method per Kafka API, taking the decoded request and its
//! version and returning the response filled for that version (fields a version lacks
//! are left at their defaults, so the response always encodes).

mod admin;
mod membership;
mod offsets;

use kafka_protocol::protocol::StrBytes;

/// Who sent a JoinGroup: from the request header and the connection. DescribeGroups
/// reports them, and new member ids start with the client id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The request header's client id (empty if null).
    pub client_id: String,
    /// The client's address as Kafka shows it, e.g. `/127.0.0.1`.
    pub client_host: String,
}

/// A wire string as an owned `String`.
fn owned(s: &StrBytes) -> String {
    s.as_str().to_owned()
}

/// An owned `String` as a wire string.
fn wire(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
