//! Weir's Rust client: producer, consumer and admin over the Kafka wire protocol.
//!
//! It talks to Weir or any Kafka-compatible broker using the
//! [`kafka-protocol`](kafka_protocol) codecs, negotiating API versions per
//! connection.
//!
//! ```no_run
//! use weir_client::{Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn demo() -> weir_client::Result<()> {
//! let producer = ProducerConfig::new("127.0.0.1:9092").build().await?;
//! let delivery = producer.send(ProducerRecord::new("events", "hello").key("k1")).await?;
//! let meta = delivery.await?;
//! println!("written to {}-{} at {}", meta.topic, meta.partition, meta.offset);
//! producer.flush().await?;
//! # Ok(())
//! # }
//! ```

mod accumulator;
pub mod admin;
pub mod assignor;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
mod fetcher;
mod group;
pub mod local;
pub mod offsets;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod topic_partition;
mod versions;

pub use admin::{Admin, AlterConfigOp, ConfigEntry, ConfigResource, NewTopic};
pub use cluster::{ClientConfig, Cluster};
pub use connection::{Connection, ConnectionConfig};
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, StartPosition};
pub use error::{Error, Result};
pub use local::{LocalProduce, LocalProduceFuture};
pub use offsets::{ListedOffset, OffsetSpec};
pub use producer::{
    sequence_after, Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use records::{
    decode_fetched, BatchRecord, Compression, ConsumerRecord, DecodedRecords, FetchedBatches,
    FetchedRecord, Header,
};
pub use topic_partition::TopicPartition;
