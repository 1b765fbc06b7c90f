//! One trial on one slot: restore the last committed checkpoint, train on a dedicated
//! thread, stream metrics in batches, upload checkpoints, and report how it ended.
//!
//! `run_trial` drives an attempt and decides what to report; `restore` prepares the run
//! directory; `training` runs the trainer's thread and turns its end into an outcome;
//! `reporter` delivers metrics, logs and the final report under retries and fencing;
//! `upload` sends checkpoints and final artifacts; `watchdog` notices a stalled thread.

use crate::observer::SlotControl;
use crate::shared::{until_shutdown, RunningTrial, Shared, Stall};
use crate::trainer::{Device, TrainEnd, TrainError};
use prime_proto::pb::{self, finish_trial_request::Outcome};
use reporter::Reporter;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod reporter;
mod restore;
mod training;
mod upload;
mod watchdog;

/// How a training thread ended: its panic, or what the trainer returned.
type TrainResult = std::thread::Result<Result<TrainEnd, TrainError>>;

/// Runs one assignment on `slot`, from restore to the final report.
pub(crate) async fn run_trial(
    shared: &Arc<Shared>,
    slot: u32,
    device: Device,
    assignment: pb::Assignment,
) {
    let control = Arc::new(SlotControl::default());
    if shared.shutting_down.load(Ordering::SeqCst) {
        control.preempt.store(true, Ordering::SeqCst);
    }
    shared.running().insert(
        slot,
        RunningTrial {
            trial_id: assignment.trial_id,
            epoch: assignment.epoch,
            control: control.clone(),
        },
    );
    let mut reporter = Reporter {
        shared,
        trial_id: assignment.trial_id,
        epoch: assignment.epoch,
        control: control.clone(),
        fenced: false,
        uploads: 0,
        held: Vec::new(),
        pending: Vec::new(),
        logs: Vec::new(),
    };
    tracing::info!(trial_id = assignment.trial_id, epoch = assignment.epoch, slot, %device, "trial started");
    match training::train(shared, &mut reporter, slot, device, &assignment).await {
        AttemptEnd::Report(outcome) => reporter.finish(outcome).await,
        AttemptEnd::Silent => {}
        AttemptEnd::Stalled { idle, thread } => {
            let reason = format!("stalled: no progress for {} s", whole_or_tenths(idle));
            tracing::error!(
                trial_id = assignment.trial_id,
                slot,
                %device,
                reason,
                "training thread stalled: failing the attempt; the slot takes no trial until \
                 the thread ends (restart the worker to free it sooner)"
            );
            shared.stalled().insert(
                slot,
                Stall {
                    trial_id: assignment.trial_id,
                    idle,
                    detected: tokio::time::Instant::now(),
                },
            );
            reporter.finish(failed(reason)).await;
            shared.running().remove(&slot);
            let ended = until_shutdown(shared, thread).await.is_some();
            shared.stalled().remove(&slot);
            if ended {
                tracing::warn!(
                    trial_id = assignment.trial_id,
                    slot,
                    "the stalled training thread ended; the slot is back in service"
                );
            }
        }
    }
    shared.running().remove(&slot);
    tracing::info!(trial_id = assignment.trial_id, slot, "slot free");
}

/// Seconds of `duration`: whole from ten seconds on, else to a tenth (short test timeouts).
fn whole_or_tenths(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 10.0 {
        format!("{}", duration.as_secs())
    } else {
        format!("{seconds:.1}")
    }
}

/// How an attempt ended, for `run_trial`.
enum AttemptEnd {
    /// Report this outcome.
    Report(Outcome),
    /// Report nothing (stopped on request, or fenced).
    Silent,
    /// The training thread made no progress for `idle`; it has been told to stop, and
    /// `thread` answers once it ends, if it ever does.
    Stalled {
        idle: Duration,
        thread: tokio::sync::oneshot::Receiver<TrainResult>,
    },
}

/// A failure of the training code; the coordinator retries the trial.
fn failed(reason: String) -> Outcome {
    Outcome::Failed(pb::Failure {
        reason,
        diverged: false,
        invalid: false,
    })
}

/// A NaN or infinite loss: recorded as divergence, not retried.
fn diverged() -> Outcome {
    Outcome::Failed(pb::Failure {
        reason: "diverged".into(),
        diverged: true,
        invalid: false,
    })
}

/// A failure that no retry can mend: the trial's configuration cannot run.
fn invalid(reason: String) -> Outcome {
    Outcome::Failed(pb::Failure {
        reason,
        diverged: false,
        invalid: true,
    })
}
