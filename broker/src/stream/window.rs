//! The window operator.
