//! The small interface between a training loop and whoever runs it (CLI, worker).

use crate::metrics::MetricRecord;
use std::path::Path;

/// Where a run stands when it writes a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Epochs fully completed.
    pub epochs_done: u32,
    /// Total epochs of the run.
    pub epochs_total: u32,
    /// Global weight steps done.
    pub steps_done: u64,
    /// Total weight steps of the run.
    pub steps_total: u64,
}

impl Progress {
    /// Fraction of the run done, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.steps_total == 0 {
            return 1.0;
        }
        self.steps_done as f64 / self.steps_total as f64
    }
}

/// What the runner wants the training loop to do at the next step boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Write a checkpoint now, then keep training.
    Checkpoint,
    /// Write a checkpoint now and return (preemption, drain).
    CheckpointAndStop,
}

/// Receives a run's metrics and checkpoints, and may ask it to stop.
///
/// The training loop calls it on its own thread; implementations forward to channels.
pub trait RunObserver {
    /// A metric record was produced.
    fn on_metric(&mut self, record: &MetricRecord);
    /// A complete checkpoint now lies in `dir`.
    fn on_checkpoint(&mut self, dir: &Path, progress: &Progress);
    /// Asked at every step boundary.
    fn control(&mut self, progress: &Progress) -> Control;
}

/// An observer that ignores everything and never stops the run.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullObserver;

impl RunObserver for NullObserver {
    fn on_metric(&mut self, _record: &MetricRecord) {}
    fn on_checkpoint(&mut self, _dir: &Path, _progress: &Progress) {}
    fn control(&mut self, _progress: &Progress) -> Control {
        Control::Continue
    }
}
