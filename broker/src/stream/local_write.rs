//! A task's writes handed in-process to this node's produce path when it
//! leads the partition written (an aggregate task's output partition, a
//! route task's shards led here, the job's state topics), instead of a
//! Produce request over loopback: the batch the task's idempotent producer
//! built is appended by the same handler, with the same checks (leadership,
//! in-sync replicas, producer sequence, the topic's rules) and the same acks
//! wait, so the exactly-once argument is unchanged; only its CRC and its
//! records, which Weir's own encoder wrote, are not read again
//! ([`weir_storage::Origin::ThisProcess`]). Partitions led elsewhere still go
//! over the network.

use std::sync::{Arc, Weak};

use kafka_protocol::messages::ProduceRequest;
use weir_client::{LocalProduce, LocalProduceFuture};

use crate::broker::Broker;

/// This node, as the producers of its tasks see it.
#[derive(Debug)]
pub struct LocalWriter {
    node: Weak<Broker>,
}

impl LocalWriter {
    /// The in-process produce path of `node`.
    pub fn new(node: Weak<Broker>) -> Arc<Self> {
        Arc::new(Self { node })
    }
}

impl LocalProduce for LocalWriter {
    fn produce(&self, req: ProduceRequest) -> Result<LocalProduceFuture, ProduceRequest> {
        let Some(node) = self.node.upgrade() else {
            return Err(req);
        };
        let led = req.topic_data.iter().all(|t| {
            t.partition_data.iter().all(|p| {
                node.partition(t.name.0.as_str(), p.index)
                    .is_some_and(|part| part.leads())
            })
        });
        if !led {
            return Err(req);
        }
        Ok(Box::pin(crate::handlers::produce::handle(
            &node,
            req,
            9,
            crate::reserved::Writer::Task,
            // Built by the task's producer in this process, handed over in
            // memory: its CRC and records are not read again.
            weir_storage::Origin::ThisProcess,
        )))
    }
}
