//! A Weir node: the Kafka protocol server over the partition log.
//!
//! Layout: `server` accepts connections; `connection` frames bytes and keeps
//! responses in order; `dispatch` decodes requests and routes them to
//! `handlers/*` (one file per API); `broker` holds the node's state;
//! `blocking` is the one door from request handling to blocking file work;
//! `partition` is the unit produce and fetch go through (leader role, epoch,
//! high watermark, idempotence); `group` is the consumer group coordinator.

pub mod admin_client;
pub mod admin_http;
pub mod assignment;
pub mod authorized_operations;
pub mod blocking;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod controller;
pub mod coordinators;
pub mod dispatch;
pub mod error_code;
pub mod group;
pub mod handlers;
pub mod health;
pub mod identity;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod producer_state;
pub mod request_order;
pub mod reserved;
pub mod server;
pub mod stream;
pub mod topic_config;
