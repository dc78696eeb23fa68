//! The one error type of the client crate.

use std::time::Duration;

use kafka_protocol::error::ResponseError;

/// Result alias used throughout the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a Kafka-compatible broker.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed.
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        /// The broker address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A message could not be encoded or decoded.
    #[error("protocol error while {context}: {message}")]
    Protocol {
        /// What we were doing.
        context: String,
        /// The codec's message.
        message: String,
    },
    /// The broker answered with a non-zero Kafka error code.
    #[error("{api} failed for {resource}: {} (code {code}){}", code_name(.code), message_suffix(.message))]
    Kafka {
        /// The API that failed, e.g. `Produce`.
        api: &'static str,
        /// The topic, partition or group the error concerns.
        resource: String,
        /// The Kafka error code.
        code: i16,
        /// The broker's error message, if any.
        message: Option<String>,
    },
    /// An operation did not complete in time.
    #[error("{operation} timed out after {timeout:?}")]
    Timeout {
        /// What timed out.
        operation: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// No broker could be reached.
    #[error("no broker available: {0}")]
    NoBrokerAvailable(String),
    /// The connection closed while a request was in flight.
    #[error("connection to {addr} closed")]
    ConnectionClosed {
        /// The broker address.
        addr: String,
    },
    /// The broker and this client share no version of an API.
    #[error("broker {addr} supports no usable version of {api} (client supports {client_min}..={client_max})")]
    UnsupportedVersion {
        /// The API.
        api: &'static str,
        /// The broker address.
        addr: String,
        /// Lowest version this client speaks.
        client_min: i16,
        /// Highest version this client speaks.
        client_max: i16,
    },
    /// A caller passed something invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer or consumer was closed.
    #[error("{0} is closed")]
    Closed(&'static str),
}

fn code_name(code: &i16) -> String {
    match ResponseError::try_from_code(*code) {
        Some(ResponseError::Unknown(c)) => format!("unknown error {c}"),
        Some(e) => format!("{e:?}"),
        None => "NONE".to_string(),
    }
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl Error {
    /// Builds a protocol error from a codec error.
    pub(crate) fn protocol(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Protocol {
            context: context.into(),
            message: format!("{err:#}"),
        }
    }

    /// The Kafka error code, if this is a broker-reported error.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => {
                ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            Error::Io { .. }
            | Error::ConnectionClosed { .. }
            | Error::Timeout { .. }
            | Error::NoBrokerAvailable(_) => true,
            _ => false,
        }
    }

    /// Whether the error means our metadata (leaders, coordinators) is stale.
    pub fn is_stale_metadata(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => matches!(
                *code,
                codes::UNKNOWN_TOPIC_OR_PARTITION
                    | codes::LEADER_NOT_AVAILABLE
                    | codes::NOT_LEADER_OR_FOLLOWER
                    | codes::COORDINATOR_NOT_AVAILABLE
                    | codes::NOT_COORDINATOR
                    | codes::FENCED_LEADER_EPOCH
                    | codes::UNKNOWN_LEADER_EPOCH
            ),
            Error::Io { .. } | Error::ConnectionClosed { .. } => true,
            _ => false,
        }
    }
}

/// Turns a Kafka error code into `Ok(())` or an [`Error::Kafka`].
pub(crate) fn check(
    code: i16,
    api: &'static str,
    resource: impl std::fmt::Display,
    message: Option<&kafka_protocol::protocol::StrBytes>,
) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Kafka {
            api,
            resource: resource.to_string(),
            code,
            message: message.map(|m| m.to_string()),
        })
    }
}

/// Kafka error codes the client acts on.
pub mod codes {
    /// The requested offset is outside the log.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// Topic or partition does not exist (yet).
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// Leader election in progress.
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    /// The broker is not the partition leader.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// The request timed out on the broker.
    pub const REQUEST_TIMED_OUT: i16 = 7;
    /// A batch is over the topic's `max.message.bytes`.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// Coordinator still loading.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// No coordinator for the group yet.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// The broker is not the group coordinator.
    pub const NOT_COORDINATOR: i16 = 16;
    /// Not enough in-sync replicas.
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    /// Not enough in-sync replicas after append.
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    /// The group generation is stale.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The member id is unknown to the coordinator.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The group is rebalancing.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// The topic already exists.
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    /// Unsupported API version.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// Sequence gap for an idempotent producer.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    /// The batch was already written.
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    /// Leader epoch is older than the broker's.
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    /// Leader epoch is newer than the broker's.
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    /// JoinGroup must be retried with the returned member id.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// The producer id is unknown to the broker.
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
}

impl Error {
    /// A copy of this error for each record of a failed batch (I/O sources become text).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { addr, source } => Error::Io {
                addr: addr.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Protocol { context, message } => Error::Protocol {
                context: context.clone(),
                message: message.clone(),
            },
            Error::Kafka {
                api,
                resource,
                code,
                message,
            } => Error::Kafka {
                api,
                resource: resource.clone(),
                code: *code,
                message: message.clone(),
            },
            Error::Timeout { operation, timeout } => Error::Timeout {
                operation: operation.clone(),
                timeout: *timeout,
            },
            Error::NoBrokerAvailable(s) => Error::NoBrokerAvailable(s.clone()),
            Error::ConnectionClosed { addr } => Error::ConnectionClosed { addr: addr.clone() },
            Error::UnsupportedVersion {
                api,
                addr,
                client_min,
                client_max,
            } => Error::UnsupportedVersion {
                api,
                addr: addr.clone(),
                client_min: *client_min,
                client_max: *client_max,
            },
            Error::InvalidArgument(s) => Error::InvalidArgument(s.clone()),
            Error::Closed(s) => Error::Closed(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_error_display_names_the_code() {
        let e = Error::Kafka {
            api: "Produce",
            resource: "t-0".into(),
            code: 6,
            message: None,
        };
        assert_eq!(
            e.to_string(),
            "Produce failed for t-0: NotLeaderOrFollower (code 6)"
        );
        assert!(e.is_retriable());
        assert!(e.is_stale_metadata());
    }
}
