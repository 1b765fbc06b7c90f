//! The `Trainer` trait: the one interface between the worker and whatever trains a trial
//! (the prime-nas engine, or the simulated trainer of cluster tests). A spec goes in,
//! metrics and checkpoints come out through the observer.

use prime_core::observer::RunObserver;
use prime_core::trial::{TrialId, TrialResult, TrialSpec};
use std::fmt;
use std::path::PathBuf;

/// A device a worker slot trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The CUDA device with this index.
    Cuda(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// One trial to train, as handed to a trainer.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The trial.
    pub trial_id: TrialId,
    /// What to train.
    pub spec: TrialSpec,
    /// The run directory; on resume it holds the last committed checkpoint.
    pub run_dir: PathBuf,
    /// The devices of the slots it holds: one, or N for a trial on N devices (the worker
    /// holds all N for it, no other trial runs on them meanwhile). A trial with
    /// `gpu_share` K may share its one device with up to K-1 others, each on its own thread.
    pub devices: Vec<Device>,
    /// The worker's slot indices of `devices`, in the same order.
    pub slots: Vec<u32>,
    /// Continue from the checkpoint in `run_dir`.
    pub resume: bool,
}

/// How a training run ended without error.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEnd {
    /// The run completed: its result, and a directory of final artifacts (weights, genotype,
    /// metrics) under the run directory to upload, if any.
    Finished {
        /// The result.
        result: TrialResult,
        /// Final artifacts to keep.
        artifacts: Option<PathBuf>,
    },
    /// The observer asked the run to stop (after a checkpoint).
    Stopped,
}

/// A training run that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    #[error("diverged: {0}")]
    Diverged(String),
    /// The trial's configuration cannot run (an unknown method, a setting or data set the
    /// engine rejects); retrying cannot help.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The device ran out of memory (libtorch's "CUDA out of memory"); the coordinator
    /// retries a trial that shared its GPU on a GPU of its own.
    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),
    /// Anything else that went wrong in the training code.
    #[error("{0}")]
    Failed(String),
}

impl TrainError {
    /// `Failed` becomes `OutOfMemory` when its message is an allocator's out-of-memory
    /// error; other errors stay as they are.
    pub fn classified(self) -> TrainError {
        match self {
            TrainError::Failed(message) if is_out_of_memory(&message) => {
                TrainError::OutOfMemory(message)
            }
            other => other,
        }
    }
}

/// Whether `message` is an out-of-memory error of a device allocator: libtorch's CUDA
/// caching allocator says "CUDA out of memory. Tried to allocate ...", other paths "out of
/// memory" (cuBLAS and cuDNN: `CUBLAS_STATUS_ALLOC_FAILED`, `CUDNN_STATUS_ALLOC_FAILED`).
pub fn is_out_of_memory(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["out of memory", "status_alloc_failed"]
        .iter()
        .any(|marker| message.contains(marker))
}

/// Trains one trial on the calling thread (the worker gives each trial its own thread).
pub trait Trainer: Send + Sync + 'static {
    /// Runs `job`, reporting through `observer` and honouring its `control` answers.
    fn train(&self, job: &TrainJob, observer: &mut dyn RunObserver)
        -> Result<TrainEnd, TrainError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_failures_are_classified_as_out_of_memory() {
        let libtorch = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total \
                        capacity; 77.30 GiB already allocated)";
        assert_eq!(
            TrainError::Failed(libtorch.into()).classified(),
            TrainError::OutOfMemory(libtorch.into())
        );
        let cublas = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`";
        assert!(is_out_of_memory(cublas));
        let other = TrainError::Failed("disk full".into());
        assert_eq!(other.clone().classified(), other);
        let invalid = TrainError::Invalid("out of memory in a message of another kind".into());
        assert_eq!(invalid.clone().classified(), invalid);
    }
}
