//! Weir's Rust client: producer, consumer and admin over the Kafka wire protocol.
