//! Keyed randomness: every draw a resumed run must repeat (drop-path masks, dropout masks,
//! sequence lengths) is a pure function of a key built from the seed and the step, so a
//! checkpoint needs no generator state.

/// The SplitMix64 finaliser: a bijective scramble of 64 bits.
pub fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
