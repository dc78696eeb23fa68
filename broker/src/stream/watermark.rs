//! Per-partition watermarks.
