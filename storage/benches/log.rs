//! Benchmarks of the partition log (filled in next).
fn main() {}
