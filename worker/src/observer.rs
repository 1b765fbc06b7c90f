//! The worker's `RunObserver`: forwards metrics and checkpoints from the training thread to
//! the slot's async side, decides when a checkpoint is due, and turns stop, preemption and a
//! diverged loss into `CheckpointAndStop`.

use prime_core::metrics::MetricRecord;
use prime_core::observer::{Control, Progress, RunObserver};
use prime_proto::verify::{verify_checkpoint_archive, Expect};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// When checkpoints are uploaded: every N epochs or every M of wall time, whichever first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Upload after this many completed epochs since the last upload (0: never by epochs).
    pub every_epochs: u32,
    /// Upload after this much time since the last upload.
    pub every: Duration,
}

/// Flags the async side sets and the training thread reads at each step boundary.
#[derive(Debug, Default)]
pub(crate) struct SlotControl {
    /// Stop at once and discard (cancelled, or reassigned elsewhere).
    pub stop: AtomicBool,
    /// Checkpoint, report preempted, stop (SIGTERM, SIGUSR1, drain).
    pub preempt: AtomicBool,
    /// A non-finite loss was seen.
    pub diverged: AtomicBool,
    /// The latest progress the training loop reported.
    pub progress: Mutex<Option<Progress>>,
    /// Bumped whenever the training thread shows progress (a metric, a checkpoint, or a step
    /// boundary with new progress); the stall watchdog watches it.
    pub activity: AtomicU64,
}

impl SlotControl {
    /// Notes that the training thread made progress.
    pub fn bump_activity(&self) {
        self.activity.fetch_add(1, Ordering::SeqCst);
    }

    /// Records `progress` as the latest; whether it differs from the one before.
    fn note_progress(&self, progress: &Progress) -> bool {
        let previous = self
            .progress
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .replace(*progress);
        previous != Some(*progress)
    }

    /// The latest progress, if any.
    pub fn progress(&self) -> Option<Progress> {
        *self
            .progress
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// What the training thread sends to the slot's async side.
#[derive(Debug)]
pub(crate) enum TrainEvent {
    /// A metric record.
    Metric(MetricRecord),
    /// A packed checkpoint to upload.
    Checkpoint {
        /// Tar archive of the checkpoint directory, relative to the run directory.
        archive: Vec<u8>,
        /// Where the run stood.
        progress: Progress,
        /// Higher is better.
        score: Option<f64>,
    },
}

/// Whether a metric value named `name` is a loss that must stay finite.
fn is_loss(name: &str) -> bool {
    name == "loss" || name.ends_with("_loss")
}

/// The observer handed to a trainer.
pub(crate) struct SlotObserver {
    run_dir: PathBuf,
    events: UnboundedSender<TrainEvent>,
    control: std::sync::Arc<SlotControl>,
    policy: CheckpointPolicy,
    last_upload_epochs: u32,
    last_upload: Instant,
    score: Option<f64>,
}

impl SlotObserver {
    /// An observer for a run in `run_dir` that resumed at `resumed_epochs` completed epochs.
    pub fn new(
        run_dir: &Path,
        events: UnboundedSender<TrainEvent>,
        control: std::sync::Arc<SlotControl>,
        policy: CheckpointPolicy,
        resumed_epochs: u32,
    ) -> Self {
        SlotObserver {
            run_dir: run_dir.to_path_buf(),
            events,
            control,
            policy,
            last_upload_epochs: resumed_epochs,
            last_upload: Instant::now(),
            score: None,
        }
    }

    fn stopping(&self) -> bool {
        self.control.stop.load(Ordering::SeqCst)
            || self.control.preempt.load(Ordering::SeqCst)
            || self.control.diverged.load(Ordering::SeqCst)
            || self.events.is_closed()
    }

    fn due(&self, progress: &Progress) -> bool {
        let by_epochs = self.policy.every_epochs > 0
            && progress.epochs_done >= self.last_upload_epochs + self.policy.every_epochs;
        let by_time = progress.epochs_done > self.last_upload_epochs
            && self.last_upload.elapsed() >= self.policy.every;
        by_epochs || by_time
    }
}

impl RunObserver for SlotObserver {
    fn on_metric(&mut self, record: &MetricRecord) {
        self.control.bump_activity();
        if record
            .values
            .iter()
            .any(|(name, value)| is_loss(name) && !value.is_finite())
        {
            self.control.diverged.store(true, Ordering::SeqCst);
        }
        if let Some(accuracy) = record.get("valid_acc") {
            self.score = Some(accuracy);
        } else if let Some(perplexity) = record.get("valid_ppl") {
            self.score = Some(-perplexity);
        }
        // A closed channel means the slot is gone; `control` stops the run.
        let _ = self.events.send(TrainEvent::Metric(record.clone()));
    }

    fn on_checkpoint(&mut self, dir: &Path, progress: &Progress) {
        self.control.bump_activity();
        // The end of the last epoch reaches the observer only here (no step follows it), and
        // the final artifacts are reported at the latest progress.
        self.control.note_progress(progress);
        let discard = self.control.stop.load(Ordering::SeqCst)
            || self.control.diverged.load(Ordering::SeqCst);
        let wanted = self.control.preempt.load(Ordering::SeqCst) || self.due(progress);
        if discard || !wanted {
            return;
        }
        // The whole run directory travels: besides the checkpoint itself, a resumed run may
        // need its records and resolved config on another worker.
        tracing::debug!(dir = %dir.display(), epochs_done = progress.epochs_done, "packing checkpoint");
        let packed = prime_proto::archive::pack_dir(&self.run_dir, &self.run_dir);
        match packed {
            Ok(archive) => {
                // A checkpoint that cannot be opened would be resumed by every retry: never
                // upload one (the next due checkpoint is tried again).
                if let Err(error) = verify_checkpoint_archive(&archive[..], Expect::Resumable) {
                    tracing::error!(%error, dir = %dir.display(), "the checkpoint cannot be opened; not uploading it");
                    return;
                }
                self.last_upload_epochs = progress.epochs_done;
                self.last_upload = Instant::now();
                let _ = self.events.send(TrainEvent::Checkpoint {
                    archive,
                    progress: *progress,
                    score: self.score,
                });
            }
            Err(error) => {
                tracing::error!(%error, dir = %self.run_dir.display(), "cannot pack checkpoint")
            }
        }
    }

    fn control(&mut self, progress: &Progress) -> Control {
        // Asking again at the same step is no progress (a loop that spins without training).
        if self.control.note_progress(progress) {
            self.control.bump_activity();
        }
        if self.stopping() {
            Control::CheckpointAndStop
        } else if self.due(progress) {
            Control::Checkpoint
        } else {
            Control::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::checkpoint_layout::{Manifest, CHECKPOINT_FORMAT, MANIFEST_FILE};
    use prime_core::metrics::MetricKind;
    use prime_proto::archive::sha256_hex;
    use std::sync::Arc;

    fn progress(epochs_done: u32) -> Progress {
        Progress {
            epochs_done,
            epochs_total: 10,
            steps_done: u64::from(epochs_done) * 5,
            steps_total: 50,
        }
    }

    /// Writes a checkpoint directory `ckpt` with one file `w` holding `content`, and a
    /// manifest that lists `w` with the sha256 of `listed`.
    fn write_checkpoint(run_dir: &Path, content: &[u8], listed: &[u8]) -> PathBuf {
        let checkpoint = run_dir.join("ckpt");
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("w"), content).unwrap();
        let manifest = Manifest {
            format: CHECKPOINT_FORMAT,
            tag: "ckpt".into(),
            files: [("w".to_string(), sha256_hex(listed))].into(),
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        std::fs::write(checkpoint.join(MANIFEST_FILE), json).unwrap();
        checkpoint
    }

    #[test]
    fn a_checkpoint_that_cannot_be_opened_is_not_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = write_checkpoint(dir.path(), b"rotten", b"1");
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let control = Arc::new(SlotControl::default());
        let policy = CheckpointPolicy {
            every_epochs: 1,
            every: Duration::from_secs(3600),
        };
        let mut observer = SlotObserver::new(dir.path(), sender, control.clone(), policy, 0);
        observer.on_checkpoint(&checkpoint, &progress(1));
        assert!(
            receiver.try_recv().is_err(),
            "a corrupt checkpoint was sent"
        );
        assert_eq!(
            control.progress().unwrap().epochs_done,
            1,
            "a checkpoint's progress is the latest even when no step followed it"
        );
        write_checkpoint(dir.path(), b"1", b"1");
        observer.on_checkpoint(&checkpoint, &progress(2));
        assert!(matches!(
            receiver.try_recv(),
            Ok(TrainEvent::Checkpoint { progress, .. }) if progress.epochs_done == 2
        ));
    }

    #[test]
    fn checkpoints_when_due_and_stops_on_divergence() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = write_checkpoint(dir.path(), b"1", b"1");
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let control = Arc::new(SlotControl::default());
        let policy = CheckpointPolicy {
            every_epochs: 2,
            every: Duration::from_secs(3600),
        };
        let mut observer = SlotObserver::new(dir.path(), sender, control.clone(), policy, 0);
        assert_eq!(observer.control(&progress(1)), Control::Continue);
        observer.on_checkpoint(&checkpoint, &progress(1));
        assert_eq!(observer.control(&progress(2)), Control::Checkpoint);
        observer.on_checkpoint(&checkpoint, &progress(2));
        assert!(matches!(
            receiver.try_recv(),
            Ok(TrainEvent::Checkpoint { .. })
        ));
        assert!(receiver.try_recv().is_err(), "epoch 1 was not due");
        assert_eq!(observer.control(&progress(3)), Control::Continue);
        assert_eq!(control.progress().unwrap().epochs_done, 3);
        let active = control.activity.load(Ordering::SeqCst);
        assert_eq!(observer.control(&progress(3)), Control::Continue);
        assert_eq!(
            control.activity.load(Ordering::SeqCst),
            active,
            "the same step again is no progress"
        );
        let record = MetricRecord::new(MetricKind::Step, 3, 15, 3.0).with("loss", f64::NAN);
        observer.on_metric(&record);
        assert_eq!(control.activity.load(Ordering::SeqCst), active + 1);
        assert_eq!(observer.control(&progress(3)), Control::CheckpointAndStop);
        observer.on_checkpoint(&checkpoint, &progress(3));
        assert!(matches!(receiver.try_recv(), Ok(TrainEvent::Metric(_))));
        assert!(
            receiver.try_recv().is_err(),
            "a diverged checkpoint is not uploaded"
        );
    }
}
