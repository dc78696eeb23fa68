//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
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

/// Describes topic configs (explicit ones with source TOPIC_CONFIG, others DEFAULT_CONFIG).
pub fn describe(b: &Broker, req: DescribeConfigsRequest, _version: i16) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if r.resource_type == BROKER {
                return out;
            }
            if r.resource_type != TOPIC {
                return out.with_error_code(code::INVALID_REQUEST);
            }
            let Some(t) = b.meta.topic(r.resource_name.as_str()) else {
                return out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
            };
            let wanted = |k: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|x| x.as_str() == k))
            };
            let configs = topic_config::KEYS
                .iter()
                .filter(|k| wanted(k))
                .map(|k| {
                    let (value, source) = match t.configs.get(*k) {
                        Some(v) => (v.clone(), 1),
                        None => (topic_config::default_value(k, &b.config.log_defaults), 5),
                    };
                    DescribeConfigsResourceResult::default()
                        .with_name(s(*k))
                        .with_value(Some(s(value)))
                        .with_config_source(source)
                })
                .collect();
            out.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn apply(
    b: &Broker,
    kind: i8,
    name: &str,
    validate_only: bool,
    edit: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<(), TopicChangeError> {
    if kind != TOPIC {
        return Err(TopicError::InvalidName(name.into()).into());
    }
    let t = b
        .meta
        .topic(name)
        .ok_or_else(|| TopicError::Unknown(name.into()))?;
    let mut configs = t.configs;
    edit(&mut configs);
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
            let (code, msg) = error_of(apply(b, r.resource_type, &name, req.validate_only, |c| {
                *c = r
                    .configs
                    .iter()
                    .filter_map(|x| {
                        x.value
                            .as_ref()
                            .map(|v| (x.name.to_string(), v.to_string()))
                    })
                    .collect();
            }));
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(msg.map(s))
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// Applies SET (0) and DELETE (1) operations; APPEND/SUBTRACT (2/3) act on
/// comma-separated lists such as cleanup.policy.
pub fn incremental_alter(
    b: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let (code, msg) = error_of(apply(b, r.resource_type, &name, req.validate_only, |c| {
                for op in &r.configs {
                    let key = op.name.to_string();
                    let value = op.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    match op.config_operation {
                        1 => {
                            c.remove(&key);
                        }
                        2 => {
                            let e = c.entry(key).or_default();
                            if !e.split(',').any(|x| x == value) {
                                if !e.is_empty() {
                                    e.push(',');
                                }
                                e.push_str(&value);
                            }
                        }
                        3 => {
                            if let Some(e) = c.get_mut(&key) {
                                *e = e
                                    .split(',')
                                    .filter(|x| *x != value)
                                    .collect::<Vec<_>>()
                                    .join(",");
                            }
                        }
                        _ => {
                            c.insert(key, value);
                        }
                    }
                }
            }));
            IncrementalResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(msg.map(s))
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
