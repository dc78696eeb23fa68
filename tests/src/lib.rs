//! Harness for integration tests: starts real `weir` processes on loopback.
