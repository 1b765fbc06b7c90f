//! What the training-loop tests share: observers that stop a run with a checkpoint, and the
//! tensors of a run's latest checkpoint.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use prime_core::metrics::MetricRecord;
use prime_core::observer::{Control, Progress, RunObserver};
use prime_nas::checkpoint::Checkpoint;
use prime_nas::search::CHECKPOINT_DIR;
use std::path::Path;

/// Stops the run (with a checkpoint) once `stop_at` steps are done; counts checkpoints.
pub struct StopAt {
    /// Steps after which the run stops.
    pub stop_at: u64,
    /// Checkpoints written so far.
    pub checkpoints: usize,
}

impl StopAt {
    /// Stops after `steps` steps.
    pub fn after(steps: u64) -> Self {
        Self {
            stop_at: steps,
            checkpoints: 0,
        }
    }
}

impl RunObserver for StopAt {
    fn on_metric(&mut self, _record: &MetricRecord) {}
    fn on_checkpoint(&mut self, _dir: &Path, _progress: &Progress) {
        self.checkpoints += 1;
    }
    fn control(&mut self, progress: &Progress) -> Control {
        if progress.steps_done == self.stop_at {
            Control::CheckpointAndStop
        } else {
            Control::Continue
        }
    }
}

/// Stops the run (with a checkpoint) at the first step boundary of `epoch`.
pub struct StopAtEpochStart {
    /// The 0-based epoch at whose start the run stops.
    pub epoch: u32,
}

impl RunObserver for StopAtEpochStart {
    fn on_metric(&mut self, _record: &MetricRecord) {}
    fn on_checkpoint(&mut self, _dir: &Path, _progress: &Progress) {}
    fn control(&mut self, progress: &Progress) -> Control {
        if progress.epochs_done == self.epoch {
            Control::CheckpointAndStop
        } else {
            Control::Continue
        }
    }
}

/// Every tensor of the run's latest checkpoint as (group, name, tensor), sorted.
pub fn tensors_of_latest(run_dir: &Path) -> Vec<(String, String, tch::Tensor)> {
    let (checkpoint, _) = Checkpoint::read_latest(&run_dir.join(CHECKPOINT_DIR)).unwrap();
    let mut all = Vec::new();
    for (group, tensors) in &checkpoint.groups {
        for (name, tensor) in tensors {
            all.push((group.clone(), name.clone(), tensor.shallow_clone()));
        }
    }
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    all
}
