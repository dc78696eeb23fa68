//! FindCoordinator: the coordinator of a group is the leader of the
//! `__consumer_offsets` partition its id hashes to.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::s;
use crate::broker::{Broker, OFFSETS_TOPIC};
use crate::error_code::code;

/// The coordinator of group `key` (the leader of its `__consumer_offsets`
/// partition) and its listener, or COORDINATOR_NOT_AVAILABLE while that
/// partition has no leader.
fn coordinator(b: &Broker, key: &str) -> Result<(i32, String, i32), i16> {
    let t = b
        .meta
        .topic(OFFSETS_TOPIC)
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
    let (leader, _) = b.leader_for_clients(OFFSETS_TOPIC, &t, b.offsets_partition_of(key));
    let m = b
        .brokers()
        .remove(&leader)
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
    Ok((leader, m.host, m.port))
}

/// Answers with the coordinator for each key.
pub fn handle(b: &Broker, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = coordinator(b, &key);
                let c = Coordinator::default().with_key(key);
                match found {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(s(host))
                        .with_port(port),
                    Err(e) => c.with_error_code(e).with_node_id(BrokerId(-1)),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match coordinator(b, &req.key) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(s(host))
            .with_port(port),
        Err(e) => FindCoordinatorResponse::default()
            .with_error_code(e)
            .with_node_id(BrokerId(-1)),
    }
}
