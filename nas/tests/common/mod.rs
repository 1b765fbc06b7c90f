//! What the training-loop tests share: observers that stop a run with a checkpoint, and the
//! tensors of a run's latest checkpoint.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, NullObserver, Progress, RunObserver};
use prime_nas::checkpoint::Checkpoint;
use prime_nas::run::layout::CHECKPOINT_DIR;
use prime_nas::run::records::read_metrics;
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

/// Simulates a crash right after the checkpoint written once `epochs_done` epochs are complete
/// (after that epoch's validation, before the next epoch's genotype line or first step): the
/// observer panics, and [`crashes`] catches it.
pub struct CrashAfterEpochCheckpoint {
    /// Completed epochs of the checkpoint after which the run dies.
    pub epochs_done: u32,
}

impl RunObserver for CrashAfterEpochCheckpoint {
    fn on_metric(&mut self, _record: &MetricRecord) {}
    fn on_checkpoint(&mut self, _dir: &Path, progress: &Progress) {
        if progress.epochs_done == self.epochs_done {
            panic!(
                "simulated crash after the checkpoint of epoch {}",
                self.epochs_done
            );
        }
    }
    fn control(&mut self, _progress: &Progress) -> Control {
        Control::Continue
    }
}

/// Whether `run` panicked (a simulated crash).
pub fn crashes<T>(run: impl FnOnce() -> T) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err()
}

/// Runs a training task twice into fresh directories: straight through, and interrupted at the
/// end of epoch 0 both ways a stop can land there — stopped with a checkpoint right after the
/// epoch's last step (before its validation), then crashed right after the checkpoint that
/// follows the epoch-end work — and resumed to the end. `run(dir, resume, observer)` runs the
/// task and says whether it finished; returns the (straight, interrupted) run directories for
/// the caller to compare.
pub fn run_straight_and_interrupted_at_the_first_epoch_end<E: std::fmt::Debug>(
    run: impl Fn(&Path, bool, &mut dyn RunObserver) -> Result<bool, E>,
) -> (tempfile::TempDir, tempfile::TempDir) {
    let straight = tempfile::tempdir().unwrap();
    assert!(run(straight.path(), false, &mut NullObserver).unwrap());
    let last_step_of_epoch_0 = last_step_of_epoch(straight.path(), 0);
    let interrupted = tempfile::tempdir().unwrap();
    let mut stop = StopAt::after(last_step_of_epoch_0);
    let finished = run(interrupted.path(), false, &mut stop).unwrap();
    assert!(
        !finished && stop.checkpoints == 1,
        "not stopped at step {last_step_of_epoch_0}"
    );
    let mut crash = CrashAfterEpochCheckpoint { epochs_done: 1 };
    assert!(crashes(|| run(interrupted.path(), true, &mut crash)));
    assert!(run(interrupted.path(), true, &mut NullObserver).unwrap());
    (straight, interrupted)
}

/// Asserts that two run directories hold the same checkpoint tensors and the same bytes in
/// each of `files`, and that each one's event file holds its metrics once.
pub fn assert_same_runs(a: &Path, b: &Path, files: &[&str]) {
    assert_events_match_metrics(a);
    assert_events_match_metrics(b);
    let tensors_a = tensors_of_latest(a);
    let tensors_b = tensors_of_latest(b);
    assert_eq!(tensors_a.len(), tensors_b.len());
    for ((group_a, name_a, tensor_a), (group_b, name_b, tensor_b)) in
        tensors_a.iter().zip(&tensors_b)
    {
        assert_eq!((group_a, name_a), (group_b, name_b));
        assert!(
            tensor_a.equal(tensor_b),
            "{group_a}/{name_a} differs after resume"
        );
    }
    for file in files {
        assert_eq!(
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            "{file} differs after resume"
        );
    }
}

/// The global step after the last weight step of `epoch`, from the epoch's metric record.
pub fn last_step_of_epoch(run_dir: &Path, epoch: u32) -> u64 {
    read_metrics(run_dir)
        .unwrap()
        .iter()
        .find(|record| record.kind == MetricKind::Epoch && record.epoch == epoch)
        .expect("an epoch record")
        .step
}

/// Checks a run directory's TensorBoard event file against its metrics: one file-version
/// event, then every metric value as a scalar `KIND/NAME` at its record's step, in order and
/// once each (so a resumed run repeated no step), and for searches the activated alphas as
/// histograms at every epoch's end.
pub fn assert_events_match_metrics(run_dir: &Path) {
    use prime_nas::run::events::{read_events, scalars, EventWhat, ValueKind, EVENTS_FILE};
    let events = read_events(&run_dir.join(EVENTS_FILE)).unwrap();
    let versions = events
        .iter()
        .filter(|event| matches!(event.what, Some(EventWhat::FileVersion(_))))
        .count();
    assert_eq!(versions, 1, "one file-version event");
    assert!(matches!(events[0].what, Some(EventWhat::FileVersion(_))));
    let expected: Vec<(i64, String, f32)> = read_metrics(run_dir)
        .unwrap()
        .iter()
        .flat_map(|record| {
            let kind = serde_json::to_value(record.kind).unwrap();
            let kind = kind.as_str().unwrap().to_string();
            record.values.iter().map(move |(name, value)| {
                (record.step as i64, format!("{kind}/{name}"), *value as f32)
            })
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        scalars(&events),
        expected,
        "scalars differ from metrics.jsonl"
    );
    if run_dir.join("alphas.jsonl").exists() {
        let epochs = read_metrics(run_dir)
            .unwrap()
            .iter()
            .filter(|record| record.kind == MetricKind::Epoch)
            .count();
        let histograms: Vec<&str> = events
            .iter()
            .filter_map(|event| match &event.what {
                Some(EventWhat::Summary(summary)) => Some(summary),
                _ => None,
            })
            .flat_map(|summary| &summary.value)
            .filter(|value| matches!(value.value, Some(ValueKind::Histo(_))))
            .map(|value| value.tag.as_str())
            .collect();
        assert!(epochs > 0);
        assert!(
            histograms.iter().all(|tag| tag.starts_with("alphas/")),
            "{histograms:?}"
        );
        assert_eq!(histograms.len() % epochs, 0, "{histograms:?}");
        assert!(histograms.len() >= epochs, "{histograms:?}");
    }
}

/// Counts the step records that reach the observer between two of the driver's questions:
/// each nonzero count is one read-back of the device.
#[derive(Default)]
pub struct ReadBackBatches {
    since_question: usize,
    batches: Vec<usize>,
}

impl ReadBackBatches {
    /// The step records of each read-back, in order.
    pub fn all(mut self) -> Vec<usize> {
        if self.since_question > 0 {
            self.batches.push(self.since_question);
        }
        self.batches
    }
}

impl RunObserver for ReadBackBatches {
    fn on_metric(&mut self, record: &MetricRecord) {
        if record.kind == MetricKind::Step {
            self.since_question += 1;
        }
    }
    fn on_checkpoint(&mut self, _dir: &Path, _progress: &Progress) {}
    fn control(&mut self, _progress: &Progress) -> Control {
        if self.since_question > 0 {
            self.batches.push(self.since_question);
            self.since_question = 0;
        }
        Control::Continue
    }
}
