//! The documented ranges of the numeric settings that grids and configs share, in one place so
//! that a grid and the configs its trials expand to agree. Every bound admits the paper's
//! settings (`configs/methods/`, `configs/grids/`) with room to spare, and keeps one grid or
//! one run from asking for absurd work or memory (a `u32::MAX` field passed every check once).

use std::fmt::Display;
use std::ops::RangeInclusive;

/// Training epochs of any run. The paper's longest run is the PTB evaluation (1,200 epochs
/// here; the original DARTS script's 8,000 also fits).
pub const EPOCHS: RangeInclusive<u64> = 1..=10_000;

/// A 0-based epoch of a run of at most [`EPOCHS`] epochs.
pub const EPOCH_INDEX: RangeInclusive<u64> = 0..=9_999;

/// Minibatch size: images (CNN) or sequence columns (RNN). The paper uses 1 to 256.
pub const BATCH_SIZE: RangeInclusive<u64> = 1..=65_536;

/// Channels of the first cell (CNN: 16 and 36 in the paper) or the embedding and hidden width
/// (RNN: 300 and 850; AWD-LSTM's 1,150 also fits).
pub const WIDTH: RangeInclusive<u64> = 1..=2_048;

/// Cells of a CNN (the paper uses 5, 8 and 20).
pub const LAYERS: RangeInclusive<u64> = 1..=256;

/// Training images (CNN) or tokens (RNN) a run may be limited to; CIFAR has 50,000 images and
/// PTB about 930,000 tokens.
pub const TRAIN_SAMPLES: RangeInclusive<u64> = 1..=100_000_000;

/// Training tokens a recurrent run may be limited to: at least 3, so that a batch has an
/// input and a target after the split into columns.
pub const TRAIN_TOKENS: RangeInclusive<u64> = 3..=100_000_000;

/// Characters of a genotype label: a built-in name or a genotype file's name, which file
/// systems keep to 255 bytes.
pub const LABEL_CHARS: RangeInclusive<u64> = 1..=255;

/// Evaluation runs per genotype (the paper uses 1); each one is a multi-day trial.
pub const EVALUATION_SEEDS: RangeInclusive<u64> = 1..=64;

/// Search seeds one grid may list (the paper uses 4).
pub const MAX_GRID_SEEDS: usize = 1_000;

/// GPUs one trial trains on (`gpus`), all on one worker: the largest nodes carry 8 or 16.
pub const GPUS_PER_TRIAL: RangeInclusive<u64> = 1..=64;

/// Trials of one kind that may share a GPU (`gpu_share`): eight 10 GB searches fit a 141 GB
/// card; more than 64 would starve each other of compute long before memory runs out.
pub const GPU_SHARE: RangeInclusive<u64> = 1..=64;

/// Crashes a trial may survive before it fails for good.
pub const RETRIES: RangeInclusive<u64> = 0..=100;

/// The proximity / ADMM coefficient rho (the paper uses 0.1 to 1.0).
pub const RHO: RangeInclusive<f64> = 0.0..=1_000.0;

/// Epochs between checkpoints (0: only at the end).
pub const CHECKPOINT_EVERY_EPOCHS: RangeInclusive<u64> = 0..=10_000;

/// Search steps whose records are read back from the device together.
pub const READ_BACK_EVERY: RangeInclusive<u64> = 1..=10_000;

/// Batches decoded ahead of a training thread.
pub const PREFETCH: RangeInclusive<u64> = 1..=64;

/// Channels of the first CNN cell: even, since factorized reductions halve them.
pub const CNN_WIDTH: RangeInclusive<u64> = 2..=2_048;

/// Cells of a CNN config: at least two reduction cells and a normal one.
pub const CNN_LAYERS: RangeInclusive<u64> = 3..=256;

/// Intermediate nodes of a CNN cell (the paper uses 4; alphas grow with its square).
pub const CELL_STEPS: RangeInclusive<u64> = 1..=16;

/// Width factor of the CNN stem (the paper uses 3).
pub const STEM_MULTIPLIER: RangeInclusive<u64> = 1..=16;

/// Side of the cutout square in pixels, at most a whole 32x32 image (the paper uses 16).
pub const CUTOUT_LENGTH: RangeInclusive<u64> = 1..=32;

/// Weight steps per alpha step of the CS-k and FIMT schedules (the paper uses 1 and 10).
pub const SCHEDULE_RATIO: RangeInclusive<u64> = 1..=1_000;

/// Alpha steps between ADMM Z/U updates (the paper uses 10).
pub const ADMM_FREQ: RangeInclusive<u64> = 1..=100_000;

/// Training steps between step records of a CNN evaluation (the paper's scripts use 50).
pub const REPORT_EVERY: RangeInclusive<u64> = 1..=1_000_000;

/// Base BPTT sequence length of the RNN (the paper uses 35).
pub const BPTT: RangeInclusive<u64> = 2..=10_000;

/// NT-ASGD non-monotone interval in epochs (the paper uses 5; 0 switches at the first
/// epoch that is worse than the best).
pub const NONMONO: RangeInclusive<u64> = 0..=1_000;

/// Epochs without a new best validation loss before an RNN evaluation stops (0: never; the
/// paper's scripts use 20).
pub const CONVERGENCE: RangeInclusive<u64> = 0..=10_000;

/// Trials (searches plus the evaluations they spawn) one grid may hold unless the coordinator
/// is told otherwise; the paper's largest table holds 40.
pub const DEFAULT_MAX_GRID_TRIALS: u64 = 10_000;

/// `Err("must be between 1 and 10000, got 0")` unless the integer `value` lies in `range`.
pub fn check_count<T>(value: T, range: &RangeInclusive<u64>) -> Result<(), String>
where
    T: TryInto<u64> + Display + Copy,
{
    match value.try_into() {
        Ok(count) if range.contains(&count) => Ok(()),
        _ => Err(format!(
            "must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )),
    }
}

/// `Err("must be a number between 0 and 1000, got NaN")` unless `value` lies in `range` (NaN
/// never does).
pub fn check_real(value: f64, range: &RangeInclusive<f64>) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "must be a number between {} and {}, got {value}",
            range.start(),
            range.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reals_are_checked_against_their_range() {
        assert_eq!(check_count(1u32, &EPOCHS), Ok(()));
        assert_eq!(check_count(10_000usize, &EPOCHS), Ok(()));
        assert_eq!(
            check_count(u32::MAX, &EPOCHS),
            Err("must be between 1 and 10000, got 4294967295".to_string())
        );
        assert!(check_count(-3i64, &WIDTH).is_err());
        assert!(check_count(0u32, &BATCH_SIZE).is_err());
        assert_eq!(check_real(0.5, &RHO), Ok(()));
        assert!(check_real(f64::NAN, &RHO).unwrap_err().contains("NaN"));
        assert!(check_real(f64::INFINITY, &RHO).is_err());
        assert!(check_real(-0.1, &RHO).is_err());
    }
}
