//! DescribeCluster: the cluster id, the controller and the live brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::s;
use crate::authorized_operations;
use crate::broker::Broker;
use crate::error_code::code;

/// Describes the cluster (its brokers' Kafka listeners; endpoint type 1).
pub fn handle(b: &Broker, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let resp = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(s(&b.identity.cluster_id))
        .with_controller_id(BrokerId(b.controller_id()))
        .with_cluster_authorized_operations(authorized_operations::if_requested(
            req.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ));
    if req.endpoint_type != 1 {
        // Only broker endpoints exist (no separate controller listeners).
        return resp
            .with_error_code(code::UNSUPPORTED_ENDPOINT_TYPE)
            .with_error_message(Some(s(format!(
                "endpoint type {} is not served; use 1 (brokers)",
                req.endpoint_type
            ))));
    }
    resp.with_brokers(
        b.brokers()
            .into_iter()
            .map(|(id, m)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(s(m.host))
                    .with_port(m.port)
            })
            .collect(),
    )
}
