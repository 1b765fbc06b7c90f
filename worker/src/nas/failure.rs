//! The one place where an engine error becomes a retry decision. Each engine error says its
//! kind ([`prime_nas::error::ErrorKind`], classified beside the error types); this maps kinds
//! to how the attempt failed:
//!
//! | kind        | attempt ends as          | the coordinator                     |
//! |-------------|--------------------------|-------------------------------------|
//! | `Invalid`   | [`TrainError::Invalid`]  | fails the trial at once             |
//! | `Transient` | [`TrainError::Failed`]   | retries it (here or on another node)|
//! | `Diverged`  | [`TrainError::Diverged`] | records the divergence, no retry    |
//!
//! Before the kinds, an allocator's out-of-memory message (libtorch's "CUDA out of memory")
//! becomes [`TrainError::OutOfMemory`]: the coordinator retries a trial that shared its GPU
//! on a GPU of its own, and counts it as a failure otherwise.
//!
//! Stalls (a training thread without progress) and cancellations (preemption, a stop) are
//! not engine errors: the slot's watchdog and control decide those.

use crate::trainer::{is_out_of_memory, TrainError};
use prime_nas::error::{ErrorKind, RunError};

/// How an engine run failed, as the worker reports it.
pub(super) fn train_error(error: RunError) -> TrainError {
    let message = error.to_string();
    if is_out_of_memory(&message) {
        return TrainError::OutOfMemory(message);
    }
    match error.kind() {
        ErrorKind::Invalid => TrainError::Invalid(message),
        ErrorKind::Transient => TrainError::Failed(message),
        ErrorKind::Diverged => TrainError::Diverged(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::config::{LayeredConfig, SearchConfig};
    use prime_nas::checkpoint::{CheckpointError, CONFIG_CHANGED};
    use std::path::PathBuf;

    #[test]
    fn invalid_errors_fail_the_trial_without_a_retry() {
        let config_error = SearchConfig::from_toml("epochs = -1\n", "grid.toml", &[]).unwrap_err();
        let never_runnable = [
            RunError::Resume {
                dir: PathBuf::from("runs/t1"),
                message: CONFIG_CHANGED.to_string(),
            },
            RunError::Config(config_error),
            RunError::Unsupported("an empty alpha split".into()),
            RunError::Genotype("unknown genotype `X`".into()),
            RunError::Checkpoint(CheckpointError::Malformed {
                path: PathBuf::from("checkpoints/step-1/state.json"),
                message: "state: missing field `epoch`".into(),
            }),
        ];
        for error in never_runnable {
            let text = error.to_string();
            assert_eq!(
                train_error(error),
                TrainError::Invalid(text.clone()),
                "{text}"
            );
        }
    }

    #[test]
    fn transient_errors_are_retried() {
        let error = RunError::Io(std::io::Error::other("disk full"));
        assert_eq!(train_error(error), TrainError::Failed("disk full".into()));
    }

    #[test]
    fn libtorch_out_of_memory_errors_are_reported_as_such() {
        let message = "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.77 GiB total \
                       capacity)";
        let error = RunError::Io(std::io::Error::other(message));
        assert_eq!(train_error(error), TrainError::OutOfMemory(message.into()));
    }

    #[test]
    fn divergence_is_reported_as_divergence() {
        let error = RunError::check_finite("loss", f64::NAN, 0, 3).unwrap_err();
        assert!(matches!(train_error(error), TrainError::Diverged(text) if text.contains("NaN")));
    }
}
