//! Tests of the transport over real TCP.
