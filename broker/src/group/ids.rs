//! Member id generation: `{client_id}-{uuid-like}` from a seed and a counter, no RNG needed.

/// Generates unique, random-looking member ids. The runtime seeds it from the clock at
/// start so ids do not repeat across restarts; tests seed it with a constant.
#[derive(Debug, Clone)]
pub(crate) struct IdGen {
    seed: u64,
    counter: u64,
}

impl IdGen {
    /// A generator with this seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    /// The next member id: `{prefix}-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub(crate) fn member_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let hi = splitmix64(self.seed ^ self.counter.rotate_left(32));
        let lo = splitmix64(hi ^ self.counter);
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

/// SplitMix64: a bijective mixer, so distinct counters give distinct ids.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_uuid_shaped() {
        let mut ids = IdGen::new(7);
        let all: HashSet<String> = (0..1000).map(|_| ids.member_id("client")).collect();
        assert_eq!(all.len(), 1000);
        let id = IdGen::new(7).member_id("c");
        assert_eq!(id.len(), "c-".len() + 36);
        assert!(id.starts_with("c-"));
    }
}
