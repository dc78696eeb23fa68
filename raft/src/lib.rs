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

mod batch_reader;
mod durable_file;
mod error;
mod flusher;
pub mod group;
mod log_store;
mod no_peers;
mod offset_translator;
mod side_entries;
mod slot_file;
mod state_machine;
mod sync_points;
mod types;

mod transport;
pub use transport::{AnnounceError, ClusterIdCell, Transport, TransportConfig};
