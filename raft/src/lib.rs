//! Replication for Weir: one Raft group per partition whose Raft log *is* the
//! partition log (see DESIGN.md, decision 4).
//!
//! This crate is filled in by the cluster step; the single-node broker uses the
//! partition log directly through `weir_storage`.

pub use weir_storage as storage;
