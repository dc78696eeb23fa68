//! Topic configs (`retention.ms`, `cleanup.policy`, …): validation, defaults, and
//! their mapping onto the partition log's settings.

use std::collections::BTreeMap;

use weir_storage::{CleanupPolicy, LogConfig};

/// The topic configs Weir supports, as Kafka names them.
pub const KEYS: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
];

/// Why a config was refused (Kafka error INVALID_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config {key}={value}: {reason}")]
pub struct ConfigError {
    /// Config name.
    pub key: String,
    /// Value given.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

fn err(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Whether `key` holds a comma-separated list (IncrementalAlterConfigs
/// APPEND/SUBTRACT apply to these only).
pub fn is_list(key: &str) -> bool {
    matches!(
        key,
        "cleanup.policy"
            | "leader.replication.throttled.replicas"
            | "follower.replication.throttled.replicas"
    )
}

/// Checks one config name and value.
pub fn validate(key: &str, value: &str) -> Result<(), ConfigError> {
    let int = |min: i64| {
        value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= min)
            .map(|_| ())
            .ok_or_else(|| err(key, value, &format!("expected an integer >= {min}")))
    };
    match key {
        "cleanup.policy" => parse_policy(value)
            .map(|_| ())
            .ok_or_else(|| err(key, value, "expected delete, compact or compact,delete")),
        "message.timestamp.type" => matches!(value, "CreateTime" | "LogAppendTime")
            .then_some(())
            .ok_or_else(|| err(key, value, "expected CreateTime or LogAppendTime")),
        "retention.ms" | "retention.bytes" => int(-1),
        "segment.bytes" => int(14),
        "segment.index.bytes" => int(12),
        "max.message.bytes" => int(0),
        "index.interval.bytes" | "delete.retention.ms" => int(0),
        "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => int(0),
        "segment.ms" => int(1),
        _ => Err(err(key, value, "unknown topic config")),
    }
}

fn parse_policy(v: &str) -> Option<CleanupPolicy> {
    let mut parts: Vec<&str> = v.split(',').map(str::trim).collect();
    parts.sort_unstable();
    match parts.as_slice() {
        ["delete"] => Some(CleanupPolicy::Delete),
        ["compact"] => Some(CleanupPolicy::Compact),
        ["compact", "delete"] => Some(CleanupPolicy::CompactDelete),
        _ => None,
    }
}

/// The value a key has by default (from the node's log defaults).
pub fn default_value(key: &str, d: &LogConfig) -> String {
    let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    match key {
        "cleanup.policy" => "delete".into(),
        "delete.retention.ms" => d.delete_retention_ms.to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "message.timestamp.before.max.ms" => d.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => d.timestamp_after_max_ms.to_string(),
        "retention.bytes" => opt(d.retention_bytes),
        "retention.ms" => opt(d.retention_ms),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.index.bytes" => d.segment_index_bytes.to_string(),
        "segment.ms" => opt(d.segment_ms),
        _ => String::new(),
    }
}

/// The log settings of a topic: node defaults overridden by its configs.
pub fn log_config(configs: &BTreeMap<String, String>, defaults: &LogConfig) -> LogConfig {
    let mut c = defaults.clone();
    let num = |k: &str| configs.get(k).and_then(|v| v.parse::<i64>().ok());
    let unsigned = |k: &str| num(k).map(|v| u64::try_from(v).ok());
    if let Some(v) = unsigned("retention.ms") {
        c.retention_ms = v;
    }
    if let Some(v) = unsigned("retention.bytes") {
        c.retention_bytes = v;
    }
    if let Some(Some(v)) = unsigned("segment.bytes") {
        c.segment_bytes = v;
    }
    if let Some(Some(v)) = unsigned("segment.index.bytes") {
        c.segment_index_bytes = v;
    }
    if let Some(v) = unsigned("segment.ms") {
        c.segment_ms = v;
    }
    if let Some(Some(v)) = unsigned("max.message.bytes") {
        c.max_message_bytes = v;
    }
    if let Some(Some(v)) = unsigned("index.interval.bytes") {
        c.index_interval_bytes = v;
    }
    if let Some(Some(v)) = unsigned("delete.retention.ms") {
        c.delete_retention_ms = v;
    }
    if let Some(v) = num("message.timestamp.before.max.ms").filter(|v| *v >= 0) {
        c.timestamp_before_max_ms = v;
    }
    if let Some(v) = num("message.timestamp.after.max.ms").filter(|v| *v >= 0) {
        c.timestamp_after_max_ms = v;
    }
    if let Some(p) = configs.get("cleanup.policy").and_then(|v| parse_policy(v)) {
        c.cleanup_policy = p;
    }
    c.log_append_time = configs
        .get("message.timestamp.type")
        .is_some_and(|v| v == "LogAppendTime");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_map_onto_log_settings() {
        let mut m = BTreeMap::new();
        m.insert("retention.ms".to_string(), "-1".to_string());
        m.insert("cleanup.policy".to_string(), "delete,compact".to_string());
        m.insert("segment.bytes".to_string(), "1024".to_string());
        let c = log_config(&m, &LogConfig::default());
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(c.segment_bytes, 1024);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("retention.ms", "-1").is_ok());
    }
}
