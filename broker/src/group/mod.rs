//! The consumer group coordinator: Kafka's classic rebalance protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), committed offsets and group administration.
//!
//! Layout (habit 3 of STYLE.md: pure state machines, IO at the edge):
//! - pure: [`GroupState`], `member`, `classic` (+ `join`, `sync`, `leave`, `rebalance`)
//!   for one group, `manager` for all groups, `offsets`, `admin`; they take events and
//!   `now` and return actions — deferred JoinGroup/SyncGroup responses are actions naming
//!   the waiting request;
//! - durable format: `record` (byte layout documented there) and the [`GroupStore`] trait
//!   the broker implements over `__consumer_offsets`;
//! - runtime: [`GroupCoordinator`] (a std `Mutex`, oneshot channels, a ticker task and a
//!   writer task that applies writes once durable, in log order) and the per-API methods.
//!
//! The broker must answer a connection's requests in order: a JoinGroup can wait for a
//! whole rebalance, so a connection handler awaiting it must not reorder later responses.

mod admin;
mod classic;
mod config;
mod coordinator;
mod error;
mod events;
mod handlers;
mod ids;
mod join;
mod leave;
mod manager;
mod member;
mod offsets;
mod rebalance;
mod record;
mod state;
mod store;
mod subscription;
mod sync;
mod versions;

#[cfg(test)]
mod tests;

pub use config::{GroupConfig, GroupWriteCounters, PartitionCheck, PartitionExists};
pub use coordinator::GroupCoordinator;
pub use error::GroupError;
pub use handlers::ClientInfo;
pub use record::Record;
pub use state::GroupState;
pub use store::{AppendFuture, GroupStore, GroupStoreError};
pub use versions::*;
