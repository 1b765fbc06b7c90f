//! Random generators keyed by a tuple of integers, and bias-free bounded draws.
//!
//! The data order and augmentation of a run must stay the same across versions of the `rand`
//! crate (checkpoints store positions, not generator states), so only PCG-64's raw `next_u64`
//! output is used, and the derivations below are our own.

use rand::RngCore;
use rand_pcg::Pcg64;

/// SplitMix64's finaliser of `x + golden ratio`: a bijective, well-mixing map.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A PCG-64 generator that depends on `key` and nothing else.
pub(crate) fn keyed_rng(key: &[u64]) -> Pcg64 {
    // "PRIMEDAT": separates these generators from any other use of the same integers.
    let mut hash = 0x5052_494D_4544_4154u64;
    for &part in key {
        hash = mix(hash ^ mix(part));
    }
    let word = |k: u64| u128::from(mix(hash ^ k));
    Pcg64::new(word(1) << 64 | word(2), word(3) << 64 | word(4))
}

/// Uniform in `0..n` without modulo bias (Lemire's multiply-and-reject); 0 when `n` is 0.
pub(crate) fn below(rng: &mut Pcg64, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let threshold = n.wrapping_neg() % n;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        if product as u64 >= threshold {
            return (product >> 64) as u64;
        }
    }
}

/// Shuffles `items` in place (Fisher-Yates, from the back).
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut Pcg64) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_uniform_and_in_range() {
        let mut rng = keyed_rng(&[1]);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[below(&mut rng, 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (850..1150).contains(&n)),
            "{counts:?}"
        );
        assert_eq!(below(&mut rng, 1), 0);
        assert_eq!(below(&mut rng, 0), 0);
    }

    #[test]
    fn keys_select_distinct_reproducible_streams() {
        let draw = |key: &[u64]| keyed_rng(key).next_u64();
        assert_eq!(draw(&[1, 2, 3]), draw(&[1, 2, 3]));
        assert_ne!(draw(&[1, 2, 3]), draw(&[1, 2, 4]));
        assert_ne!(draw(&[1, 2, 3]), draw(&[2, 1, 3]));
        assert_ne!(draw(&[0]), draw(&[0, 0]));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..100).collect();
        shuffle(&mut items, &mut keyed_rng(&[7]));
        assert_ne!(items, (0..100).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..100).collect::<Vec<_>>());
    }
}
