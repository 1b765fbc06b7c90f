//! Running the trainer for one attempt: its dedicated OS thread (a training step never blocks
//! the async runtime), the loop that forwards its events to the reporter while the watchdog
//! watches it, and the mapping of how it ended to the outcome to report.

use super::reporter::Reporter;
use super::restore;
use super::upload::upload_artifacts;
use super::watchdog::StallWatchdog;
use super::{diverged, failed, invalid, out_of_memory, AttemptEnd, TrainResult};
use crate::observer::{SlotObserver, TrainEvent};
use crate::shared::Shared;
use crate::trainer::{is_out_of_memory, Device, TrainEnd, TrainError, TrainJob};
use prime_core::trial::TrialSpec;
use prime_proto::pb::{self, finish_trial_request::Outcome};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Restores, trains and uploads: the outcome to report, nothing when nothing may be reported
/// (stopped or fenced), or the stall when the watchdog fired.
pub(super) async fn train(
    shared: &Arc<Shared>,
    reporter: &mut Reporter<'_>,
    slots: &[u32],
    devices: Vec<Device>,
    assignment: &pb::Assignment,
) -> AttemptEnd {
    let spec = match assignment.spec.clone().map(TrialSpec::try_from) {
        Some(Ok(spec)) => spec,
        Some(Err(error)) => {
            return AttemptEnd::Report(invalid(format!("unreadable trial spec: {error}")))
        }
        None => {
            return AttemptEnd::Report(invalid(
                "unreadable trial spec: the assignment carries none".into(),
            ))
        }
    };
    let run_dir = shared
        .config
        .work_dir
        .join(format!("trial-{}", assignment.trial_id));
    let restored = match restore::restore(reporter, &run_dir, assignment.resume.as_ref()).await {
        Ok(restored) => restored,
        Err(reason) if reporter.fenced => {
            tracing::warn!(reason, "restore abandoned");
            return AttemptEnd::Silent;
        }
        Err(reason) => return AttemptEnd::Report(failed(reason)),
    };
    let on: Vec<String> = devices.iter().map(Device::to_string).collect();
    reporter.logs.push(format!(
        "epoch {}: started on worker {} {} ({}), {}",
        assignment.epoch,
        shared.config.name,
        super::slot_names(slots),
        on.join(", "),
        restored.map_or("from the start".to_string(), |restored| format!(
            "resuming from checkpoint {} ({} epochs done)",
            restored.checkpoint_id, restored.epochs_done
        ))
    ));
    if reporter.control.preempt.load(Ordering::SeqCst) {
        return AttemptEnd::Report(Outcome::Preempted(pb::Preempted {}));
    }
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let job = TrainJob {
        trial_id: assignment.trial_id,
        spec,
        run_dir: run_dir.clone(),
        devices,
        slots: slots.to_vec(),
        resume: restored.is_some(),
    };
    let mut observer = SlotObserver::new(
        &run_dir,
        events,
        reporter.control.clone(),
        shared.config.checkpoint,
        restored.map_or(0, |restored| restored.epochs_done),
    );
    let trainer = shared.trainer.clone();
    let (done_sender, mut done) = tokio::sync::oneshot::channel::<TrainResult>();
    let spawned = std::thread::Builder::new()
        .name(format!("train-{}", assignment.trial_id))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                trainer.train(&job, &mut observer)
            }));
            drop(observer);
            let _ = done_sender.send(result);
        });
    if let Err(error) = spawned {
        return AttemptEnd::Report(failed(format!("cannot start the training thread: {error}")));
    }
    let mut flush_timer = tokio::time::interval(shared.config.metric_flush);
    let control = reporter.control.clone();
    let mut watchdog = StallWatchdog::new(shared.config.stall_timeout, &control);
    let result = loop {
        tokio::select! {
            Some(event) = receiver.recv() => reporter.handle(event).await,
            _ = flush_timer.tick() => reporter.flush().await,
            result = &mut done => break result,
            idle = watchdog.stalled(&control) => {
                // A thread that wakes up stops at its next step, its reports unheard.
                control.stop.store(true, Ordering::SeqCst);
                while let Ok(event) = receiver.try_recv() {
                    if let TrainEvent::Metric(_) = event {
                        reporter.handle(event).await;
                    }
                }
                return AttemptEnd::Stalled { idle, thread: done };
            }
        }
    };
    // The thread always sends before it ends; a closed channel means it was torn down.
    let result = result.unwrap_or_else(|_| {
        Ok(Err(TrainError::Failed(
            "the training thread vanished".into(),
        )))
    });
    while let Some(event) = receiver.recv().await {
        reporter.handle(event).await;
    }
    if reporter.fenced || control.stop.load(Ordering::SeqCst) {
        return AttemptEnd::Silent;
    }
    if control.diverged.load(Ordering::SeqCst) {
        return AttemptEnd::Report(diverged());
    }
    let result = result.map(|ended| ended.map_err(TrainError::classified));
    AttemptEnd::Report(match result {
        Ok(Ok(TrainEnd::Finished { result, artifacts })) => {
            if let Some(artifacts) = artifacts {
                upload_artifacts(reporter, &run_dir, artifacts).await;
            }
            Outcome::Succeeded(pb::TrialResult::from(&result))
        }
        Ok(Ok(TrainEnd::Stopped)) if control.preempt.load(Ordering::SeqCst) => {
            Outcome::Preempted(pb::Preempted {})
        }
        Ok(Ok(TrainEnd::Stopped)) => failed("the trainer stopped without being asked".into()),
        Ok(Err(TrainError::Diverged(reason))) => {
            tracing::warn!(reason, "trial diverged");
            diverged()
        }
        Ok(Err(TrainError::Invalid(reason))) => {
            tracing::warn!(reason, "trial configuration is invalid");
            invalid(reason)
        }
        Ok(Err(TrainError::OutOfMemory(reason))) => {
            tracing::warn!(reason, "trial ran out of GPU memory");
            out_of_memory(reason)
        }
        Ok(Err(TrainError::Failed(reason))) => failed(reason),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            // tch panics where libtorch throws, out-of-memory errors included.
            if is_out_of_memory(&message) {
                out_of_memory(message)
            } else {
                failed(format!("the trainer panicked: {message}"))
            }
        }
    })
}
