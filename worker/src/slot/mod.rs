//! One trial on its slots (one, N for a trial on N devices, or a share of one): restore the
//! last committed checkpoint, train on a dedicated thread, stream metrics in batches, upload
//! checkpoints, and report how it ended.
//!
//! `run_trial` drives an attempt and decides what to report; `restore` prepares the run
//! directory; `training` runs the trainer's thread and turns its end into an outcome;
//! `reporter` delivers metrics, logs and the final report under retries and fencing;
//! `upload` sends checkpoints and final artifacts; `watchdog` notices a stalled thread.

use crate::observer::SlotControl;
use crate::shared::{until_shutdown, RunningTrial, Shared, Stall};
use crate::trainer::{Device, TrainEnd, TrainError};
use prime_core::trial::TrialSpec;
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

/// Records `assignment` as running on the slots it names (`asked`, the slot the worker
/// asked on, when it names none) before it starts, so that the request loop's next look at
/// the slots sees it; its slots and its control.
pub(crate) fn occupy(
    shared: &Shared,
    asked: u32,
    assignment: &pb::Assignment,
) -> (Vec<u32>, Arc<SlotControl>) {
    let slots = if assignment.slots.is_empty() {
        vec![asked]
    } else {
        assignment.slots.clone()
    };
    let share = assignment
        .spec
        .clone()
        .and_then(|spec| TrialSpec::try_from(spec).ok())
        .map_or(1, |spec| spec.resources().gpu_share);
    let control = Arc::new(SlotControl::default());
    if shared.shutting_down.load(Ordering::SeqCst) {
        control.preempt.store(true, Ordering::SeqCst);
    }
    shared.running().insert(
        assignment.trial_id,
        RunningTrial {
            epoch: assignment.epoch,
            slots: slots.clone(),
            share,
            control: control.clone(),
        },
    );
    (slots, control)
}

/// The devices of `slots`, or why the worker cannot run on them.
fn devices_of(shared: &Shared, slots: &[u32]) -> Result<Vec<Device>, String> {
    let devices = &shared.config.devices;
    slots
        .iter()
        .map(|slot| {
            devices.get(*slot as usize).copied().ok_or_else(|| {
                format!(
                    "assigned to slot {slot}, and this worker has slots 0 to {}",
                    devices.len().saturating_sub(1)
                )
            })
        })
        .collect()
}

/// Runs one assignment on its `slots` (see `occupy`), from restore to the final report.
pub(crate) async fn run_trial(
    shared: Arc<Shared>,
    slots: Vec<u32>,
    control: Arc<SlotControl>,
    assignment: pb::Assignment,
) {
    let shared = &shared;
    let trial_id = assignment.trial_id;
    let mut reporter = Reporter {
        shared,
        trial_id,
        epoch: assignment.epoch,
        control: control.clone(),
        fenced: false,
        uploads: 0,
        held: Vec::new(),
        pending: Vec::new(),
        logs: Vec::new(),
    };
    let at = slot_names(&slots);
    tracing::info!(trial_id, epoch = assignment.epoch, slots = %at, "trial started");
    let end = match devices_of(shared, &slots) {
        Ok(devices) => training::train(shared, &mut reporter, &slots, devices, &assignment).await,
        Err(reason) => AttemptEnd::Report(invalid(reason)),
    };
    match end {
        AttemptEnd::Report(outcome) => reporter.finish(outcome).await,
        AttemptEnd::Silent => {}
        AttemptEnd::Stalled { idle, thread } => {
            let reason = format!("stalled: no progress for {} s", whole_or_tenths(idle));
            tracing::error!(
                trial_id,
                slots = %at,
                reason,
                "training thread stalled: failing the attempt; its slots take no trial until \
                 the thread ends (restart the worker to free them sooner)"
            );
            for slot in &slots {
                shared.stalled().insert(
                    *slot,
                    Stall {
                        trial_id,
                        idle,
                        detected: tokio::time::Instant::now(),
                    },
                );
            }
            reporter.finish(failed(reason)).await;
            shared.forget_running(trial_id, assignment.epoch);
            let ended = until_shutdown(shared, thread).await.is_some();
            for slot in &slots {
                shared.stalled().remove(slot);
            }
            if ended {
                tracing::warn!(
                    trial_id,
                    slots = %at,
                    "the stalled training thread ended; its slots are back in service"
                );
            }
        }
    }
    shared.forget_running(trial_id, assignment.epoch);
    shared.freed.notify_waiters();
    tracing::info!(trial_id, slots = %at, "slots free");
}

/// `slot 0`, or `slots 0,1` for a trial on several slots (log lines).
fn slot_names(slots: &[u32]) -> String {
    let list: Vec<String> = slots.iter().map(u32::to_string).collect();
    match slots.len() {
        1 => format!("slot {}", list[0]),
        _ => format!("slots {}", list.join(",")),
    }
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
        out_of_memory: false,
    })
}

/// The device ran out of memory (`reason`: the allocator's message): the coordinator
/// records "out of GPU memory" and retries a trial that shared its GPU on a GPU of its own.
fn out_of_memory(reason: String) -> Outcome {
    Outcome::Failed(pb::Failure {
        reason,
        diverged: false,
        invalid: false,
        out_of_memory: true,
    })
}

/// A NaN or infinite loss: recorded as divergence, not retried.
fn diverged() -> Outcome {
    Outcome::Failed(pb::Failure {
        reason: "diverged".into(),
        diverged: true,
        invalid: false,
        out_of_memory: false,
    })
}

/// A failure that no retry can mend: the trial's configuration cannot run.
fn invalid(reason: String) -> Outcome {
    Outcome::Failed(pb::Failure {
        reason,
        diverged: false,
        invalid: true,
        out_of_memory: false,
    })
}
