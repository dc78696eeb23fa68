//! Partition choice compatible with the Java client: murmur2 of the key for
//! keyed records, a sticky partition for records without a key.

use std::collections::HashMap;
use std::sync::Mutex;

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's `Utils.toPositive`: clears the sign bit.
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition the Java default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

/// Sticky choice for records without a key: stay on one partition until about
/// a batch worth of bytes went there, then move on round-robin.
#[derive(Debug)]
pub struct StickyPartitioner {
    batch_size: usize,
    /// Per topic: (current partition, bytes sent to it). A std mutex, held for a map update.
    state: Mutex<HashMap<String, (i32, usize)>>,
}

impl StickyPartitioner {
    /// A partitioner that switches partitions after `batch_size` bytes.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size: batch_size.max(1),
            state: Mutex::default(),
        }
    }

    /// The partition for a record of `size` bytes without a key.
    pub fn next(&self, topic: &str, size: usize, num_partitions: i32) -> i32 {
        let n = num_partitions.max(1);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Look up before inserting: no String allocation per record.
        if !st.contains_key(topic) {
            st.insert(topic.to_string(), (start_partition(topic, n), 0));
        }
        let Some(entry) = st.get_mut(topic) else {
            return 0;
        };
        if entry.1 >= self.batch_size || entry.0 >= n {
            entry.0 = (entry.0 + 1) % n;
            entry.1 = 0;
        }
        entry.1 += size;
        entry.0
    }
}

fn start_partition(topic: &str, n: i32) -> i32 {
    // Spread producers over partitions without a random number generator.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    to_positive(murmur2(topic.as_bytes()) ^ nanos as i32) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_java_vectors() {
        // Kafka clients UtilsTest#testMurmur2.
        let cases: &[(&str, i32)] = &[
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
            ("", 275646681),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), *expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn partition_is_non_negative_and_in_range() {
        for key in ["21", "foobar", "abc", "", "key-17"] {
            let p = partition_for_key(key.as_bytes(), 7);
            assert!((0..7).contains(&p));
        }
        // -973932308 & 0x7fffffff = 1173551340; % 10 = 0
        assert_eq!(partition_for_key(b"21", 10), 0);
        assert_eq!(partition_for_key(b"abc", 3), 479470107 % 3);
    }

    #[test]
    fn sticky_switches_after_a_batch() {
        let s = StickyPartitioner::new(100);
        let first = s.next("t", 60, 3);
        assert_eq!(s.next("t", 60, 3), first);
        let second = s.next("t", 60, 3);
        assert_eq!(second, (first + 1) % 3);
    }
}
