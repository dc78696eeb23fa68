//! A producer living inside a broker process: batches for the partitions
//! that process leads go to its produce path directly, with no request
//! encoded, sent over loopback, read and answered on the way.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

/// The answer of an in-process produce: the response, or `None` for acks=0.
pub type LocalProduceFuture = Pin<Box<dyn Future<Output = Option<ProduceResponse>> + Send>>;

/// The broker a producer runs inside ([`crate::ProducerConfig::local`]).
pub trait LocalProduce: Send + Sync + fmt::Debug {
    /// Handles `req` (one partition's batch) as a Produce request off the
    /// network would be, when this process leads that partition; gives the
    /// request back to be sent over the network otherwise.
    fn produce(&self, req: ProduceRequest) -> Result<LocalProduceFuture, ProduceRequest>;
}
