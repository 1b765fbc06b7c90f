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
    /// The slot's device.
    pub device: Device,
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
    /// Anything else that went wrong in the training code.
    #[error("{0}")]
    Failed(String),
}

/// Trains one trial on the calling thread (the worker gives each slot its own thread).
pub trait Trainer: Send + Sync + 'static {
    /// Runs `job`, reporting through `observer` and honouring its `control` answers.
    fn train(&self, job: &TrainJob, observer: &mut dyn RunObserver)
        -> Result<TrainEnd, TrainError>;
}
