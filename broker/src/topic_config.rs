//! Topic configs: every topic config Kafka 3.x/4.x defines, with Kafka's types,
//! ranges and defaults; their validation; and the mapping of those that mean
//! something on a Weir node onto the partition log's settings.
//!
//! Honoured: `cleanup.policy`, `compression.type` (kept, or recompressed to,
//! as Kafka does), `delete.retention.ms`, `flush.messages` (1 = fsync every
//! acknowledged append), `index.interval.bytes`, `max.message.bytes`,
//! `message.timestamp.*`, `min.compaction.lag.ms`, `retention.*`, `segment.*`
//! except `segment.jitter.ms`. Accepted, stored, described and without effect
//! on a single node (the README lists them): the rest.

use std::collections::BTreeMap;

use weir_storage::{CleanupPolicy, Durability, LogConfig};

/// The type and range of a config's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A long in `[min, i64::MAX]`.
    Long(i64),
    /// An int in `[min, max]`.
    Int(i64, i64),
    /// An int in `[min, max]`, or exactly `-1` (compression levels' "codec default").
    Level(i64, i64),
    /// `true` or `false`.
    Bool,
    /// A double in `[0, 1]`.
    Ratio,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A comma-separated list of `delete` / `compact`.
    Policy,
    /// `""`, `"*"`, or `partition:broker` pairs separated by commas.
    Replicas,
    /// Any non-empty string (`message.format.version`).
    Text,
}

/// Where a config's default comes from.
#[derive(Debug, Clone, Copy)]
enum Default {
    /// A fixed value, as Kafka's.
    Fixed(&'static str),
    /// The node's log defaults (`--retention-ms` …).
    Node(fn(&LogConfig) -> String),
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
struct Def {
    name: &'static str,
    kind: Kind,
    default: Default,
}

const LONG_MAX: &str = "9223372036854775807";

fn opt(v: Option<u64>) -> String {
    v.map_or("-1".to_string(), |v| v.to_string())
}

/// Every topic config, in name order.
const DEFS: &[Def] = &[
    Def {
        name: "cleanup.policy",
        kind: Kind::Policy,
        default: Default::Fixed("delete"),
    },
    Def {
        name: "compression.gzip.level",
        kind: Kind::Level(1, 9),
        default: Default::Fixed("-1"),
    },
    Def {
        name: "compression.lz4.level",
        kind: Kind::Int(1, 17),
        default: Default::Fixed("9"),
    },
    Def {
        name: "compression.type",
        kind: Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        default: Default::Fixed("producer"),
    },
    Def {
        name: "compression.zstd.level",
        kind: Kind::Int(-131_072, 22),
        default: Default::Fixed("3"),
    },
    Def {
        name: "delete.retention.ms",
        kind: Kind::Long(0),
        default: Default::Node(|d| d.delete_retention_ms.to_string()),
    },
    Def {
        name: "file.delete.delay.ms",
        kind: Kind::Long(0),
        default: Default::Fixed("60000"),
    },
    Def {
        name: "flush.messages",
        kind: Kind::Long(1),
        default: Default::Fixed(LONG_MAX),
    },
    Def {
        name: "flush.ms",
        kind: Kind::Long(0),
        default: Default::Fixed(LONG_MAX),
    },
    Def {
        name: "follower.replication.throttled.replicas",
        kind: Kind::Replicas,
        default: Default::Fixed(""),
    },
    Def {
        name: "index.interval.bytes",
        kind: Kind::Int(0, i32::MAX as i64),
        default: Default::Node(|d| d.index_interval_bytes.to_string()),
    },
    Def {
        name: "leader.replication.throttled.replicas",
        kind: Kind::Replicas,
        default: Default::Fixed(""),
    },
    Def {
        name: "local.retention.bytes",
        kind: Kind::Long(-2),
        default: Default::Fixed("-2"),
    },
    Def {
        name: "local.retention.ms",
        kind: Kind::Long(-2),
        default: Default::Fixed("-2"),
    },
    Def {
        name: "max.compaction.lag.ms",
        kind: Kind::Long(1),
        default: Default::Fixed(LONG_MAX),
    },
    Def {
        name: "max.message.bytes",
        kind: Kind::Int(0, i32::MAX as i64),
        default: Default::Node(|d| d.max_message_bytes.to_string()),
    },
    Def {
        name: "message.downconversion.enable",
        kind: Kind::Bool,
        default: Default::Fixed("true"),
    },
    Def {
        name: "message.format.version",
        kind: Kind::Text,
        default: Default::Fixed("3.0-IV1"),
    },
    Def {
        name: "message.timestamp.after.max.ms",
        kind: Kind::Long(0),
        default: Default::Node(|d| d.timestamp_after_max_ms.to_string()),
    },
    Def {
        name: "message.timestamp.before.max.ms",
        kind: Kind::Long(0),
        default: Default::Node(|d| d.timestamp_before_max_ms.to_string()),
    },
    Def {
        name: "message.timestamp.difference.max.ms",
        kind: Kind::Long(0),
        default: Default::Fixed(LONG_MAX),
    },
    Def {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        default: Default::Fixed("CreateTime"),
    },
    Def {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Ratio,
        default: Default::Fixed("0.5"),
    },
    Def {
        name: "min.compaction.lag.ms",
        kind: Kind::Long(0),
        default: Default::Node(|d| d.min_compaction_lag_ms.to_string()),
    },
    Def {
        name: "min.insync.replicas",
        kind: Kind::Int(1, i32::MAX as i64),
        default: Default::Fixed("1"),
    },
    Def {
        name: "preallocate",
        kind: Kind::Bool,
        default: Default::Fixed("false"),
    },
    Def {
        name: "remote.log.copy.disable",
        kind: Kind::Bool,
        default: Default::Fixed("false"),
    },
    Def {
        name: "remote.log.delete.on.disable",
        kind: Kind::Bool,
        default: Default::Fixed("false"),
    },
    Def {
        name: "remote.storage.enable",
        kind: Kind::Bool,
        default: Default::Fixed("false"),
    },
    Def {
        name: "retention.bytes",
        kind: Kind::Long(i64::MIN),
        default: Default::Node(|d| opt(d.retention_bytes)),
    },
    Def {
        name: "retention.ms",
        kind: Kind::Long(-1),
        default: Default::Node(|d| opt(d.retention_ms)),
    },
    Def {
        name: "segment.bytes",
        kind: Kind::Int(14, i32::MAX as i64),
        default: Default::Node(|d| d.segment_bytes.to_string()),
    },
    Def {
        name: "segment.index.bytes",
        kind: Kind::Int(4, i32::MAX as i64),
        default: Default::Node(|d| d.segment_index_bytes.to_string()),
    },
    Def {
        name: "segment.jitter.ms",
        kind: Kind::Long(0),
        default: Default::Fixed("0"),
    },
    Def {
        name: "segment.ms",
        kind: Kind::Long(1),
        default: Default::Node(|d| opt(d.segment_ms)),
    },
    Def {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: Default::Fixed("false"),
    },
];

/// The names of every topic config, in name order.
pub fn keys() -> impl Iterator<Item = &'static str> {
    DEFS.iter().map(|d| d.name)
}

fn def(key: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.name == key)
}

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

/// Whether a Weir node acts on config `key` (the others are accepted,
/// stored and described, as the module docs say).
pub fn is_honoured(key: &str) -> bool {
    const HONOURED: &[&str] = &[
        "cleanup.policy",
        "compression.type",
        "delete.retention.ms",
        "flush.messages",
        "index.interval.bytes",
        "max.message.bytes",
        "min.compaction.lag.ms",
        "min.insync.replicas",
    ];
    HONOURED.contains(&key)
        || key.starts_with("message.timestamp.")
        || key.starts_with("retention.")
        || (key.starts_with("segment.") && key != "segment.jitter.ms")
}

/// Kafka's type code of config `key` for DescribeConfigs v3+ (1 BOOLEAN, 2
/// STRING, 3 INT, 5 LONG, 6 DOUBLE, 7 LIST; 0 UNKNOWN for a name Weir does
/// not define).
pub fn type_code(key: &str) -> i8 {
    match def(key).map(|d| d.kind) {
        Some(Kind::Bool) => 1,
        Some(Kind::Choice(_) | Kind::Text) => 2,
        Some(Kind::Int(..) | Kind::Level(..)) => 3,
        Some(Kind::Long(_)) => 5,
        Some(Kind::Ratio) => 6,
        Some(Kind::Policy | Kind::Replicas) => 7,
        None => 0,
    }
}

/// One line on config `key` for DescribeConfigs' documentation: its values
/// and whether Weir acts on it.
pub fn documentation(key: &str) -> Option<String> {
    let d = def(key)?;
    let values = match d.kind {
        Kind::Long(min) => format!("a long, at least {min}"),
        Kind::Int(min, max) => format!("an int in [{min}, {max}]"),
        Kind::Level(min, max) => format!("an int in [{min}, {max}], or -1 for the codec's default"),
        Kind::Bool => "true or false".into(),
        Kind::Ratio => "a double in [0, 1]".into(),
        Kind::Choice(words) => format!("one of {}", words.join(", ")),
        Kind::Policy => "a list of delete and compact".into(),
        Kind::Replicas => "empty, *, or partition:broker pairs".into(),
        Kind::Text => "text".into(),
    };
    let effect = if is_honoured(key) {
        "Weir acts on it as Kafka does"
    } else {
        "accepted and stored; no effect on a Weir node"
    };
    Some(format!("Kafka's topic config {key}: {values}. {effect}."))
}

/// Whether `key` holds a comma-separated list (IncrementalAlterConfigs
/// APPEND/SUBTRACT apply to these only).
pub fn is_list(key: &str) -> bool {
    def(key).is_some_and(|d| matches!(d.kind, Kind::Policy | Kind::Replicas))
}

fn in_range(key: &str, value: &str, min: i64, max: i64) -> Result<(), ConfigError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .map(|_| ())
        .ok_or_else(|| {
            err(
                key,
                value,
                &format!("expected an integer in [{min}, {max}]"),
            )
        })
}

fn replicas_ok(value: &str) -> bool {
    let v = value.trim();
    v.is_empty()
        || v == "*"
        || v.split(',').all(|pair| {
            pair.trim().split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
            })
        })
}

/// Checks one config name and value against Kafka's type and range.
pub fn validate(key: &str, value: &str) -> Result<(), ConfigError> {
    let Some(d) = def(key) else {
        return Err(err(key, value, "unknown topic config"));
    };
    match d.kind {
        Kind::Long(min) => in_range(key, value, min, i64::MAX),
        Kind::Int(min, max) => in_range(key, value, min, max),
        Kind::Level(min, max) => match value.trim() {
            "-1" => Ok(()),
            _ => in_range(key, value, min, max),
        },
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err(err(key, value, "expected true or false")),
        },
        Kind::Ratio => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| (0.0..=1.0).contains(v))
            .map(|_| ())
            .ok_or_else(|| err(key, value, "expected a number in [0, 1]")),
        Kind::Choice(words) => words
            .contains(&value.trim())
            .then_some(())
            .ok_or_else(|| err(key, value, &format!("expected one of {}", words.join(", ")))),
        Kind::Policy => parse_policy(value)
            .map(|_| ())
            .ok_or_else(|| err(key, value, "expected delete, compact or compact,delete")),
        Kind::Replicas => replicas_ok(value)
            .then_some(())
            .ok_or_else(|| err(key, value, "expected \"\", \"*\" or partition:broker pairs")),
        Kind::Text => (!value.trim().is_empty())
            .then_some(())
            .ok_or_else(|| err(key, value, "expected a value")),
    }
}

fn parse_policy(v: &str) -> Option<CleanupPolicy> {
    let mut parts: Vec<&str> = v.split(',').map(str::trim).collect();
    parts.sort_unstable();
    parts.dedup();
    match parts.as_slice() {
        ["delete"] => Some(CleanupPolicy::Delete),
        ["compact"] => Some(CleanupPolicy::Compact),
        ["compact", "delete"] => Some(CleanupPolicy::CompactDelete),
        _ => None,
    }
}

/// The value a key has by default (from the node's log defaults where the
/// node has a setting for it); empty for an unknown key.
pub fn default_value(key: &str, d: &LogConfig) -> String {
    match def(key).map(|d| d.default) {
        Some(Default::Fixed(v)) => v.to_string(),
        Some(Default::Node(f)) => f(d),
        None => String::new(),
    }
}

/// The Kafka codec id `compression.type` asks the log to store batches in;
/// `None` for `producer` (keep the producer's codec).
fn codec(value: &str) -> Option<i16> {
    match value {
        "uncompressed" => Some(0),
        "gzip" => Some(1),
        "snappy" => Some(2),
        "lz4" => Some(3),
        "zstd" => Some(4),
        _ => None,
    }
}

/// The log settings of a topic: node defaults overridden by its configs.
pub fn log_config(configs: &BTreeMap<String, String>, defaults: &LogConfig) -> LogConfig {
    let mut c = defaults.clone();
    let num = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i64>().ok());
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
    if let Some(Some(v)) = unsigned("min.compaction.lag.ms") {
        c.min_compaction_lag_ms = v;
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
    if let Some(v) = configs.get("compression.type") {
        c.compression = codec(v.trim());
    }
    // flush.messages=1 asks for an fsync of every message: the node's
    // fsync-every-acknowledged-append policy, for this topic.
    if num("flush.messages") == Some(1) {
        c.durability = Durability::EveryAppend;
    }
    c.log_append_time = configs
        .get("message.timestamp.type")
        .is_some_and(|v| v.trim() == "LogAppendTime");
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
        m.insert("compression.type".to_string(), "zstd".to_string());
        m.insert("min.compaction.lag.ms".to_string(), "5000".to_string());
        m.insert("flush.messages".to_string(), "1".to_string());
        let c = log_config(&m, &LogConfig::default());
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(c.segment_bytes, 1024);
        assert_eq!(c.compression, Some(4));
        assert_eq!(c.min_compaction_lag_ms, 5000);
        assert_eq!(c.durability, Durability::EveryAppend);
        let plain = log_config(&BTreeMap::new(), &LogConfig::default());
        assert_eq!(plain.compression, None);
    }

    #[test]
    fn every_kafka_topic_config_is_accepted_with_its_type_and_range() {
        let good = [
            ("compression.type", "lz4"),
            ("compression.type", "producer"),
            ("min.insync.replicas", "2"),
            ("file.delete.delay.ms", "0"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("min.compaction.lag.ms", "100"),
            ("max.compaction.lag.ms", "86400000"),
            ("message.timestamp.before.max.ms", "1000"),
            ("message.timestamp.after.max.ms", "1000"),
            ("segment.jitter.ms", "10"),
            ("flush.messages", "1"),
            ("flush.ms", "1000"),
            ("unclean.leader.election.enable", "true"),
            ("preallocate", "false"),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("follower.replication.throttled.replicas", "*"),
            ("compression.gzip.level", "-1"),
            ("compression.zstd.level", "-5"),
            ("retention.bytes", "-1"),
            ("message.format.version", "3.0-IV1"),
        ];
        for (k, v) in good {
            assert_eq!(validate(k, v), Ok(()), "{k}={v}");
        }
        let bad = [
            ("retention.ms", "soon"),
            ("cleanup.policy", "shred"),
            ("no.such.config", "1"),
            ("min.insync.replicas", "0"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("compression.type", "brotli"),
            ("compression.gzip.level", "10"),
            ("compression.lz4.level", "0"),
            ("segment.bytes", "13"),
            ("segment.bytes", "3000000000"),
            ("preallocate", "maybe"),
            ("flush.messages", "0"),
            ("leader.replication.throttled.replicas", "zero"),
        ];
        for (k, v) in bad {
            assert!(validate(k, v).is_err(), "{k}={v} accepted");
        }
        assert_eq!(validate("retention.ms", "-1"), Ok(()));
        // Every config has a default that passes its own validation.
        for k in keys() {
            let d = default_value(k, &LogConfig::default());
            let ok = validate(k, &d).is_ok() || (k.ends_with("replicas") && d.is_empty());
            assert!(ok, "default {k}={d} does not validate");
        }
    }

    #[test]
    fn only_list_configs_are_lists() {
        assert!(is_list("cleanup.policy"));
        assert!(is_list("leader.replication.throttled.replicas"));
        assert!(!is_list("retention.ms"));
    }
}
