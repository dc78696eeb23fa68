//! Tests of the pure state machine (no sockets, no runtime) and of the async runtime.

mod offsets;
mod rebalance;
mod runtime;
mod static_members;
mod support;
mod wire;
