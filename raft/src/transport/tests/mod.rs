//! Tests of the transport over real TCP on 127.0.0.1, port 0.

mod cluster;
mod fake;
mod links;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::network::RPCOption;
use openraft::{BasicNode, RaftNetworkFactory};
use tokio::net::TcpListener;

use super::network::GroupNetwork;
use super::{GroupHandler, Transport, TransportConfig};

/// A transport for node `id` on a fresh port.
async fn start(id: u64, config: TransportConfig) -> Transport {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Transport::start(id, listener, HashMap::new(), config).unwrap()
}

/// A transport for node `id` on `addr` (a restart on the same port).
async fn restart(id: u64, addr: std::net::SocketAddr) -> Transport {
    let listener = TcpListener::bind(addr).await.unwrap();
    Transport::start(id, listener, HashMap::new(), TransportConfig::default()).unwrap()
}

/// `group`'s network from `from` to the node listening at `to`.
async fn network(
    from: &Transport,
    group: u64,
    to_id: u64,
    to: std::net::SocketAddr,
) -> GroupNetwork {
    from.network(group)
        .new_client(to_id, &BasicNode::new(to))
        .await
}

fn register(t: &Transport, group: u64, handler: impl GroupHandler) {
    t.register(group, Arc::new(handler));
}

fn option(timeout: Duration) -> RPCOption {
    // soft_ttl is 3/4 of hard_ttl.
    RPCOption::new(timeout * 4 / 3)
}
