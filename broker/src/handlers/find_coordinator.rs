//! FindCoordinator: on one node, this node coordinates every group.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::s;
use crate::broker::Broker;

/// Answers with this node for each key.
pub fn handle(b: &Broker, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let node = BrokerId(b.config.node_id);
    let host = s(b.advertised_host.clone());
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(b.advertised_port)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_node_id(node)
        .with_host(host)
        .with_port(b.advertised_port)
}
