//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::s;
use crate::broker::{Broker, TopicChangeError};
use crate::error_code::code;
use crate::metadata::TopicError;
use crate::topic_config;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (DescribeConfigs v1+).
const TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Describes topic configs (explicit ones with source TOPIC_CONFIG, others DEFAULT_CONFIG).
pub fn describe(b: &Broker, req: DescribeConfigsRequest, _version: i16) -> DescribeConfigsResponse {
    let with_synonyms = req.include_synonyms;
    let results = req
        .resources
        .iter()
        .map(|r| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if r.resource_type == BROKER {
                return describe_broker(b, r, with_synonyms, out);
            }
            if r.resource_type != TOPIC {
                return out
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(s(format!(
                        "configs of resource type {} are not served (TOPIC and BROKER are)",
                        r.resource_type
                    ))));
            }
            let Some(t) = b.meta.topic(r.resource_name.as_str()) else {
                return out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
            };
            let wanted = |k: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|x| x.as_str() == k))
            };
            let configs = topic_config::keys()
                .filter(|k| wanted(k))
                .map(|k| {
                    let default = topic_config::default_value(k, &b.config.log_defaults);
                    let (value, source) = match t.configs.get(k) {
                        Some(v) => (v.clone(), TOPIC_CONFIG),
                        None => (default.clone(), DEFAULT_CONFIG),
                    };
                    // Where the value comes from, then what it falls back
                    // to: the topic's own value, then the default (Kafka
                    // lists the broker-level synonyms the same way).
                    let synonyms = if with_synonyms {
                        let own = t.configs.get(k).map(|v| (v.clone(), TOPIC_CONFIG));
                        own.into_iter()
                            .chain([(default, DEFAULT_CONFIG)])
                            .map(|(v, source)| {
                                DescribeConfigsSynonym::default()
                                    .with_name(s(k))
                                    .with_value(Some(s(v)))
                                    .with_source(source)
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    DescribeConfigsResourceResult::default()
                        .with_name(s(k))
                        .with_value(Some(s(value)))
                        .with_config_source(source)
                        .with_config_type(topic_config::type_code(k))
                        .with_synonyms(synonyms)
                        .with_documentation(
                            topic_config::documentation(k)
                                .filter(|_| req.include_documentation)
                                .map(s),
                        )
                })
                .collect();
            out.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The node's own settings (the BROKER resource, named by this node's id or
/// empty): given by a flag (STATIC_BROKER_CONFIG) or default (DEFAULT_CONFIG);
/// read-only, as Weir has no dynamic broker configs.
fn describe_broker(
    b: &Broker,
    r: &kafka_protocol::messages::describe_configs_request::DescribeConfigsResource,
    with_synonyms: bool,
    out: DescribeConfigsResult,
) -> DescribeConfigsResult {
    let name = r.resource_name.as_str();
    if !name.is_empty() && name != b.config.node_id.to_string() {
        return out
            .with_error_code(code::INVALID_REQUEST)
            .with_error_message(Some(s(format!(
                "this is broker {}, not {name}",
                b.config.node_id
            ))));
    }
    let wanted = |k: &str| {
        r.configuration_keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|x| x.as_str() == k))
    };
    let advertised = format!("{}:{}", b.advertised_host, b.advertised_port);
    let configs = b
        .config
        .settings(
            &advertised,
            b.meta
                .topic(crate::broker::OFFSETS_TOPIC)
                .map(|t| (t.partitions, t.replication_factor())),
        )
        .into_iter()
        .filter(|c| wanted(c.name))
        .map(|c| {
            let source = if c.is_default {
                DEFAULT_CONFIG
            } else {
                STATIC_BROKER_CONFIG
            };
            let synonyms = if with_synonyms {
                vec![DescribeConfigsSynonym::default()
                    .with_name(s(c.name))
                    .with_value(Some(s(c.value.clone())))
                    .with_source(source)]
            } else {
                Vec::new()
            };
            DescribeConfigsResourceResult::default()
                .with_name(s(c.name))
                .with_value(Some(s(c.value)))
                .with_read_only(true)
                .with_config_source(source)
                .with_synonyms(synonyms)
        })
        .collect();
    out.with_configs(configs)
}

/// Refuses a change of the BROKER resource naming `keys`. Weir has no
/// dynamic broker configs: its own settings (those DescribeConfigs lists)
/// are set at start, and a change to one is INVALID_REQUEST, as Kafka
/// answers for a static config (found from outside: the Java AdminClient's
/// `SET log.retention.ms` and `SET node.id` were accepted and did nothing);
/// a name Kafka does not define is INVALID_CONFIG. Security settings
/// (`ssl.*`, `sasl.*`, `listener.name.*`) are accepted with no effect until
/// Weir has TLS and SASL (librdkafka's test 0081 sets one and expects
/// NO_ERROR).
fn check_broker_keys(b: &Broker, keys: &[String]) -> Result<(), TopicChangeError> {
    let own: Vec<&str> = b.config.settings("", None).iter().map(|c| c.name).collect();
    for key in keys {
        if own.contains(&key.as_str()) {
            return Err(TopicChangeError::InvalidRequest(format!(
                "cannot update {key} dynamically: a Weir node's settings are set at start \
                 (flags, WEIR_* variables or the config file)"
            )));
        }
        let security = ["ssl.", "sasl.", "listener.name."]
            .iter()
            .any(|p| key.starts_with(p));
        if !security {
            return Err(topic_config::ConfigError {
                key: key.clone(),
                value: String::new(),
                reason: "not a broker config a Weir node knows".into(),
            }
            .into());
        }
    }
    Ok(())
}

fn apply(
    b: &Broker,
    kind: i8,
    name: &str,
    keys: &[String],
    validate_only: bool,
    edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), TopicChangeError>,
) -> Result<(), TopicChangeError> {
    if kind == BROKER {
        // Only security settings are accepted, with no effect
        // ([`check_broker_keys`]); the README says so.
        if !name.is_empty() && name != b.config.node_id.to_string() {
            return Err(TopicChangeError::InvalidRequest(format!(
                "this is broker {}, not {name}",
                b.config.node_id
            )));
        }
        check_broker_keys(b, keys)?;
        edit(&mut BTreeMap::new())?;
        if !validate_only {
            tracing::info!(
                broker = name,
                "broker config change accepted with no effect"
            );
        }
        return Ok(());
    }
    if kind != TOPIC {
        // GROUP (32) and the rest: Kafka before 4.0 answers INVALID_REQUEST.
        return Err(TopicChangeError::InvalidRequest(format!(
            "configs of resource type {kind} are not supported"
        )));
    }
    let t = b
        .meta
        .topic(name)
        .ok_or_else(|| TopicError::Unknown(name.into()))?;
    let mut configs = t.configs;
    edit(&mut configs)?;
    for (k, v) in &configs {
        topic_config::validate(k, v)?;
    }
    if validate_only {
        return Ok(());
    }
    b.set_topic_configs(name, configs)
}

fn error_of(r: Result<(), TopicChangeError>) -> (i16, Option<String>) {
    match r {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(e.to_string())),
    }
}

/// Replaces the whole config set of each topic.
pub fn alter(b: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let keys: Vec<String> = r.configs.iter().map(|x| x.name.to_string()).collect();
            let (code, msg) = error_of(apply(
                b,
                r.resource_type,
                &name,
                &keys,
                req.validate_only,
                |c| {
                    *c = r
                        .configs
                        .iter()
                        .filter_map(|x| {
                            x.value
                                .as_ref()
                                .map(|v| (x.name.to_string(), v.to_string()))
                        })
                        .collect();
                    Ok(())
                },
            ));
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(msg.map(s))
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// Applies one IncrementalAlterConfigs operation to a topic's explicit
/// configs: SET (0), DELETE (1), and, on list configs only, APPEND (2) and
/// SUBTRACT (3), which act on the current value — the explicit one, else the
/// default (APPEND `compact` to the default `delete` gives `delete,compact`).
fn incremental_op(
    c: &mut BTreeMap<String, String>,
    defaults: &weir_storage::LogConfig,
    op: u8,
    key: String,
    value: String,
) -> Result<(), TopicChangeError> {
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    match op {
        0 => {
            c.insert(key, value);
        }
        1 => {
            c.remove(&key);
        }
        2 | 3 => {
            if !topic_config::is_list(&key) {
                return Err(topic_config::ConfigError {
                    key,
                    value,
                    reason: "APPEND and SUBTRACT apply to list configs only".into(),
                }
                .into());
            }
            let current = c
                .get(&key)
                .cloned()
                .unwrap_or_else(|| topic_config::default_value(&key, defaults));
            let mut items = list(&current);
            for item in list(&value) {
                if op == 2 && !items.contains(&item) {
                    items.push(item);
                } else if op == 3 {
                    items.retain(|x| *x != item);
                }
            }
            c.insert(key, items.join(","));
        }
        other => {
            return Err(topic_config::ConfigError {
                key,
                value,
                reason: format!("unknown config operation {other}"),
            }
            .into())
        }
    }
    Ok(())
}

/// Applies SET, DELETE, APPEND and SUBTRACT operations (see [`incremental_op`]).
pub fn incremental_alter(
    b: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let defaults = &b.config.log_defaults;
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let keys: Vec<String> = r.configs.iter().map(|x| x.name.to_string()).collect();
            let (code, msg) = error_of(apply(
                b,
                r.resource_type,
                &name,
                &keys,
                req.validate_only,
                |c| {
                    for op in &r.configs {
                        let key = op.name.to_string();
                        let value = op.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                        incremental_op(c, defaults, op.config_operation as u8, key, value)?;
                    }
                    Ok(())
                },
            ));
            IncrementalResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(msg.map(s))
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &mut BTreeMap<String, String>, op: u8, key: &str, value: &str) -> bool {
        incremental_op(c, &Default::default(), op, key.into(), value.into()).is_ok()
    }

    #[test]
    fn append_and_subtract_act_on_the_current_value_of_list_configs() {
        let mut c = BTreeMap::new();
        assert!(run(&mut c, 2, "cleanup.policy", "compact"));
        assert_eq!(c["cleanup.policy"], "delete,compact");
        assert!(run(&mut c, 2, "cleanup.policy", "compact"), "no duplicate");
        assert_eq!(c["cleanup.policy"], "delete,compact");
        assert!(run(&mut c, 3, "cleanup.policy", "delete"));
        assert_eq!(c["cleanup.policy"], "compact");
        assert!(!run(&mut c, 2, "retention.ms", "5"), "not a list");
        assert!(run(&mut c, 1, "cleanup.policy", ""));
        assert!(c.is_empty());
        assert!(!run(&mut c, 9, "retention.ms", "5"), "unknown operation");
    }
}
