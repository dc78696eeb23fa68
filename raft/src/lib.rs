//! Replication for Weir: one Raft group per partition whose Raft log *is* the
//! partition log (see DESIGN.md, decision 4).
//!
//! This slice holds the Raft log storage over the partition log (entries that
//! carry record batches are written once, into the partition log; the others
//! live in a small side file) and the offset translation between Raft indexes
//! and Kafka offsets. Nothing here is wired into the broker yet: the crate's
//! public face comes with the network and the group manager.

pub use error::RaftStoreError;
pub use weir_storage as storage;

// Used by the tests only until the broker is wired to replication.
#[cfg_attr(not(test), allow(dead_code))]
mod batch_reader;
#[cfg_attr(not(test), allow(dead_code))]
mod durable_file;
#[cfg_attr(not(test), allow(dead_code))]
mod error;
#[cfg_attr(not(test), allow(dead_code))]
mod flusher;
pub mod group;
#[cfg_attr(not(test), allow(dead_code))]
mod log_store;
mod no_peers;
#[cfg_attr(not(test), allow(dead_code))]
mod offset_translator;
#[cfg_attr(not(test), allow(dead_code))]
mod side_entries;
#[cfg_attr(not(test), allow(dead_code))]
mod state_machine;
#[cfg_attr(not(test), allow(dead_code))]
mod sync_points;
#[cfg_attr(not(test), allow(dead_code))]
mod types;

// The group manager that registers groups is not written yet.
#[cfg_attr(not(test), allow(dead_code))]
mod transport;
pub use transport::{Transport, TransportConfig};
