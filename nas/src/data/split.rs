//! The positional train / valid split of the search (SPEC 3.2).

use super::DataError;
use std::ops::Range;

/// The two subsets of the training images used by a search: w batches come from `train`,
/// alpha batches and the per-epoch inference from `valid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Indices `[0, split)`.
    pub train: Range<usize>,
    /// Indices `[split, n)`.
    pub valid: Range<usize>,
}

/// `split = floor(portion * n)`; train = `[0, split)`, valid = `[split, n)`, no shuffling.
pub fn split_by_portion(n: usize, portion: f64) -> Result<Split, DataError> {
    if !(0.0..=1.0).contains(&portion) {
        return Err(DataError::InvalidArgument(format!(
            "train portion {portion} is not within [0, 1]"
        )));
    }
    // The reference computes `int(np.floor(portion * num_train))` in f64.
    let split = ((portion * n as f64).floor() as usize).min(n);
    Ok(Split {
        train: 0..split,
        valid: split..n,
    })
}

/// The train portion of `--dyno_split`: `1 - 1 / (1 + r)` (= r / (r + 1)), with r = schedfreq,
/// written as the reference computes it so that the floor in [`split_by_portion`] matches.
pub fn dynamic_train_portion(r: f64) -> Result<f64, DataError> {
    if !(r.is_finite() && r >= 0.0) {
        return Err(DataError::InvalidArgument(format!(
            "dynamic split ratio r = {r} must be finite and non-negative"
        )));
    }
    Ok(1.0 - 1.0 / (1.0 + r))
}

/// Number of batches in one pass over `len` images: the last partial batch is kept.
pub fn batches_per_pass(len: usize, batch_size: usize) -> usize {
    if batch_size == 0 {
        0
    } else {
        len.div_ceil(batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_half_split_of_cifar() {
        let split = split_by_portion(50_000, 0.5).unwrap();
        assert_eq!(
            split,
            Split {
                train: 0..25_000,
                valid: 25_000..50_000
            }
        );
        assert_eq!(batches_per_pass(split.train.len(), 64), 391);
        assert_eq!(split.train.len() - 390 * 64, 40);
    }

    #[test]
    fn dynamic_split_with_r_10() {
        let portion = dynamic_train_portion(10.0).unwrap();
        assert!((portion - 10.0 / 11.0).abs() < 1e-15);
        let split = split_by_portion(50_000, portion).unwrap();
        assert_eq!(split.train, 0..45_454);
        assert_eq!(split.valid, 45_454..50_000);
        assert_eq!(split.valid.len(), 4_546);
        assert_eq!(batches_per_pass(split.train.len(), 64), 711);
        assert_eq!(split.train.len() - 710 * 64, 14);
        assert_eq!(batches_per_pass(split.valid.len(), 64), 72);
        assert_eq!(split.valid.len() - 71 * 64, 2);
    }

    #[test]
    fn edge_portions_and_bad_input() {
        assert_eq!(split_by_portion(7, 0.0).unwrap().train, 0..0);
        assert_eq!(split_by_portion(7, 1.0).unwrap().valid, 7..7);
        assert_eq!(split_by_portion(7, 0.5).unwrap().train, 0..3);
        assert!(split_by_portion(7, 1.5).is_err());
        assert!(split_by_portion(7, f64::NAN).is_err());
        assert!(dynamic_train_portion(-1.0).is_err());
        assert_eq!(batches_per_pass(5, 0), 0);
    }
}
