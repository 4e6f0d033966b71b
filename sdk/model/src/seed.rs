//! The one rule for deriving seeds: a stream for every purpose (a tensor's initialisation, an
//! epoch's data order, a sampler) from the node's seed and a label, so that adding a stream never
//! shifts another.

/// A 64-bit seed for `label` under `seed` (FNV-1a of the label, mixed by SplitMix64).
pub fn derive(seed: u64, label: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(seed ^ h)
}

/// One SplitMix64 step: a well-mixed 64-bit value from any input.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn streams_differ_and_are_stable() {
        assert_ne!(super::derive(1, "a"), super::derive(1, "b"));
        assert_ne!(super::derive(1, "a"), super::derive(2, "a"));
        assert_eq!(super::derive(7, "epoch 3"), super::derive(7, "epoch 3"));
    }
}
