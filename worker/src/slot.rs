//! One trial on one slot: restore the last committed checkpoint, train on a dedicated
//! thread, stream metrics in batches, upload checkpoints, and report how it ended.

use crate::observer::{SlotControl, SlotObserver, TrainEvent};
use crate::shared::{until_shutdown, RunningTrial, Shared, Stall, MAX_BACKOFF, MIN_BACKOFF};
use crate::trainer::{Device, TrainEnd, TrainError, TrainJob};
use crate::transfer::{self, Upload};
use prime_core::observer::Progress;
use prime_core::trial::{TrialId, TrialSpec};
use prime_proto::client::is_transient;
use prime_proto::pb::{self, finish_trial_request::Outcome};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Code, Status};

mod restore;

type TrainResult = std::thread::Result<Result<TrainEnd, TrainError>>;

/// Why a report was not delivered.
enum Undelivered {
    /// The assignment is fenced, or the coordinator was unreachable too long: the trial has
    /// been given up (already logged).
    GivenUp,
    /// The coordinator refused the report for good.
    Refused(Status),
}

/// Sends a trial's reports, retrying while the coordinator is unreachable and noticing when
/// the assignment has been fenced.
struct Reporter<'a> {
    shared: &'a Shared,
    trial_id: TrialId,
    epoch: u64,
    control: Arc<SlotControl>,
    /// The coordinator refused a report: the assignment is no longer ours.
    fenced: bool,
    uploads: u32,
    pending: Vec<pb::Metric>,
    logs: Vec<String>,
}

impl Reporter<'_> {
    /// Calls `op` until it succeeds, is refused, or the outage lasts too long.
    async fn call<T, F, Fut>(&mut self, what: &str, mut op: F) -> Result<T, Undelivered>
    where
        F: FnMut(prime_proto::client::Client) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        if self.fenced {
            return Err(Undelivered::GivenUp);
        }
        let started = Instant::now();
        let mut backoff = MIN_BACKOFF;
        loop {
            match op(self.shared.client.clone()).await {
                Ok(value) => return Ok(value),
                Err(status) if is_transient(&status) => {
                    if started.elapsed() > self.shared.config.max_outage {
                        tracing::error!(trial_id = self.trial_id, %status, what, "coordinator unreachable too long; giving the trial up");
                        self.give_up();
                        return Err(Undelivered::GivenUp);
                    }
                    tracing::debug!(trial_id = self.trial_id, %status, what, "coordinator unreachable; will retry");
                }
                Err(status)
                    if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) =>
                {
                    tracing::warn!(trial_id = self.trial_id, %status, what, "report refused: assignment fenced");
                    self.give_up();
                    return Err(Undelivered::GivenUp);
                }
                Err(status) => return Err(Undelivered::Refused(status)),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn give_up(&mut self) {
        self.fenced = true;
        self.control.stop.store(true, Ordering::SeqCst);
    }

    async fn send_metrics(&mut self, batch: &pb::MetricBatch) -> Result<(), Undelivered> {
        self.call("metrics", |mut client| {
            let batch = batch.clone();
            async move { client.report_metrics(batch).await }
        })
        .await
        .map(drop)
    }

    /// Sends the pending metrics and logs. Nothing is dropped quietly: transient failures
    /// are retried (`call`); a batch refused as invalid is sent again without the records the
    /// coordinator cannot store, each of which is logged at error level; any other refusal
    /// is logged at error level with what was lost.
    async fn flush(&mut self) {
        if self.pending.is_empty() && self.logs.is_empty() {
            return;
        }
        let batch = pb::MetricBatch {
            trial_id: self.trial_id,
            epoch: self.epoch,
            metrics: std::mem::take(&mut self.pending),
            logs: std::mem::take(&mut self.logs),
        };
        let Err(Undelivered::Refused(status)) = self.send_metrics(&batch).await else {
            return;
        };
        let (storable, dropped) = match status.code() {
            Code::InvalidArgument => prime_proto::convert::storable_part(&batch),
            _ => (pb::MetricBatch::default(), Vec::new()),
        };
        for reason in &dropped {
            tracing::error!(
                trial_id = self.trial_id,
                reason,
                "metric data the coordinator cannot store is dropped"
            );
        }
        let nothing_left = storable.metrics.is_empty() && storable.logs.is_empty();
        if dropped.is_empty() || nothing_left {
            tracing::error!(
                trial_id = self.trial_id,
                %status,
                records = batch.metrics.len(),
                logs = batch.logs.len(),
                "the coordinator refused a metric batch; its records are lost"
            );
            return;
        }
        tracing::error!(trial_id = self.trial_id, %status, dropped = dropped.len(), kept = storable.metrics.len(), "the coordinator refused a metric batch; sending it again without what it cannot store");
        if let Err(Undelivered::Refused(status)) = self.send_metrics(&storable).await {
            tracing::error!(
                trial_id = self.trial_id,
                %status,
                records = storable.metrics.len(),
                logs = storable.logs.len(),
                "the coordinator refused a metric batch again; its records are lost"
            );
        }
    }

    async fn upload(
        &mut self,
        archive: &[u8],
        progress: Progress,
        score: Option<f64>,
        is_final: bool,
    ) {
        self.uploads += 1;
        let upload = Upload {
            trial_id: self.trial_id,
            epoch: self.epoch,
            upload_id: format!("u{}", self.uploads),
            archive,
            progress,
            is_final,
            score,
        };
        let (chunk_size, corrupt) = (
            self.shared.config.chunk_size,
            self.shared.config.faults.corrupt_chunks.clone(),
        );
        let committed = self
            .call("checkpoint", |mut client| {
                let (upload, corrupt) = (&upload, corrupt.clone());
                async move { transfer::upload(&mut client, upload, chunk_size, &corrupt).await }
            })
            .await;
        match committed {
            Ok(checkpoint_id) => tracing::info!(
                trial_id = self.trial_id,
                checkpoint_id,
                epochs_done = progress.epochs_done,
                bytes = archive.len(),
                "checkpoint committed"
            ),
            Err(Undelivered::Refused(status)) => {
                tracing::error!(trial_id = self.trial_id, %status, "checkpoint rejected")
            }
            Err(Undelivered::GivenUp) => {}
        }
    }

    async fn handle(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Metric(record) => {
                self.pending.push((&record).into());
                if self.pending.len() >= self.shared.config.metric_batch {
                    self.flush().await;
                }
            }
            TrainEvent::Checkpoint {
                archive,
                progress,
                score,
            } => {
                self.flush().await;
                self.upload(&archive, progress, score, false).await;
            }
        }
    }

    async fn finish(&mut self, outcome: Outcome) {
        self.flush().await;
        let request = pb::FinishTrialRequest {
            trial_id: self.trial_id,
            epoch: self.epoch,
            outcome: Some(outcome),
        };
        let reported = self
            .call("finish", |mut client| {
                let request = request.clone();
                async move { client.finish_trial(request).await }
            })
            .await;
        if let Err(Undelivered::Refused(status)) = reported {
            tracing::error!(trial_id = self.trial_id, %status, "finish report rejected");
        }
    }
}

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
        pending: Vec::new(),
        logs: Vec::new(),
    };
    tracing::info!(trial_id = assignment.trial_id, epoch = assignment.epoch, slot, %device, "trial started");
    match attempt(shared, &mut reporter, slot, device, &assignment).await {
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
            reporter.finish(failed(reason, false)).await;
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

/// Watches a training thread's activity counter; fires after `timeout` without a change
/// (never when `timeout` is zero).
struct StallWatchdog {
    timeout: Duration,
    seen: u64,
    since: tokio::time::Instant,
    ticks: tokio::time::Interval,
}

impl StallWatchdog {
    fn new(timeout: Duration, control: &SlotControl) -> Self {
        // Checking four times per timeout bounds the overshoot to a quarter of it.
        let every = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        StallWatchdog {
            timeout,
            seen: control.activity.load(Ordering::SeqCst),
            since: tokio::time::Instant::now(),
            ticks: tokio::time::interval(every),
        }
    }

    /// Waits until the thread has been idle for the timeout (forever when disabled); how long
    /// it has been idle. Cancel-safe: the select loop drops and recreates it.
    async fn stalled(&mut self, control: &SlotControl) -> Duration {
        if self.timeout.is_zero() {
            return std::future::pending().await;
        }
        loop {
            self.ticks.tick().await;
            let now = tokio::time::Instant::now();
            let activity = control.activity.load(Ordering::SeqCst);
            if activity != self.seen {
                self.seen = activity;
                self.since = now;
                continue;
            }
            let idle = now.saturating_duration_since(self.since);
            if idle >= self.timeout {
                return idle;
            }
        }
    }
}

fn failed(reason: String, diverged: bool) -> Outcome {
    Outcome::Failed(pb::Failure {
        reason,
        diverged,
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

/// Restores, trains and uploads; how the attempt ended.
async fn attempt(
    shared: &Arc<Shared>,
    reporter: &mut Reporter<'_>,
    slot: u32,
    device: Device,
    assignment: &pb::Assignment,
) -> AttemptEnd {
    match train(shared, reporter, slot, device, assignment).await {
        Ok(Some(outcome)) => AttemptEnd::Report(outcome),
        Ok(None) => AttemptEnd::Silent,
        Err(stalled) => stalled,
    }
}

/// `attempt` proper: the outcome to report, `None` when nothing may be reported (stopped or
/// fenced), or `Err(AttemptEnd::Stalled)` when the watchdog fired.
async fn train(
    shared: &Arc<Shared>,
    reporter: &mut Reporter<'_>,
    slot: u32,
    device: Device,
    assignment: &pb::Assignment,
) -> Result<Option<Outcome>, AttemptEnd> {
    let spec = match assignment.spec.clone().map(TrialSpec::try_from) {
        Some(Ok(spec)) => spec,
        Some(Err(error)) => return Ok(Some(invalid(format!("unreadable trial spec: {error}")))),
        None => {
            return Ok(Some(invalid(
                "unreadable trial spec: the assignment carries none".into(),
            )))
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
            return Ok(None);
        }
        Err(reason) => return Ok(Some(failed(reason, false))),
    };
    reporter.logs.push(format!(
        "epoch {}: started on worker {} slot {slot} ({device}), {}",
        assignment.epoch,
        shared.config.name,
        restored.map_or("from the start".to_string(), |restored| format!(
            "resuming from checkpoint {} ({} epochs done)",
            restored.checkpoint_id, restored.epochs_done
        ))
    ));
    if reporter.control.preempt.load(Ordering::SeqCst) {
        return Ok(Some(Outcome::Preempted(pb::Preempted {})));
    }
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let job = TrainJob {
        trial_id: assignment.trial_id,
        spec,
        run_dir: run_dir.clone(),
        device,
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
        return Ok(Some(failed(
            format!("cannot start the training thread: {error}"),
            false,
        )));
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
                return Err(AttemptEnd::Stalled { idle, thread: done });
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
        return Ok(None);
    }
    if control.diverged.load(Ordering::SeqCst) {
        return Ok(Some(failed("diverged".into(), true)));
    }
    Ok(match result {
        Ok(Ok(TrainEnd::Finished { result, artifacts })) => {
            if let Some(artifacts) = artifacts {
                upload_artifacts(reporter, &run_dir, artifacts).await;
            }
            Some(Outcome::Succeeded(pb::TrialResult::from(&result)))
        }
        Ok(Ok(TrainEnd::Stopped)) if control.preempt.load(Ordering::SeqCst) => {
            Some(Outcome::Preempted(pb::Preempted {}))
        }
        Ok(Ok(TrainEnd::Stopped)) => Some(failed(
            "the trainer stopped without being asked".into(),
            false,
        )),
        Ok(Err(TrainError::Diverged(reason))) => {
            tracing::warn!(reason, "trial diverged");
            Some(failed("diverged".into(), true))
        }
        Ok(Err(TrainError::Invalid(reason))) => {
            tracing::warn!(reason, "trial configuration is invalid");
            Some(invalid(reason))
        }
        Ok(Err(TrainError::Failed(reason))) => Some(failed(reason, false)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Some(failed(format!("the trainer panicked: {message}"), false))
        }
    })
}

/// Uploads the final artifacts, packed relative to the run directory like every checkpoint
/// (`prime fetch` unpacks them where the run directory's root was).
async fn upload_artifacts(
    reporter: &mut Reporter<'_>,
    run_dir: &std::path::Path,
    artifacts: PathBuf,
) {
    let base = run_dir.to_path_buf();
    let packed =
        tokio::task::spawn_blocking(move || prime_proto::archive::pack_dir(&base, &artifacts))
            .await;
    match packed {
        Ok(Ok(archive)) => {
            let progress = reporter.control.progress().unwrap_or(Progress {
                epochs_done: 0,
                epochs_total: 0,
                steps_done: 0,
                steps_total: 0,
            });
            reporter.upload(&archive, progress, None, true).await;
        }
        Ok(Err(error)) => tracing::error!(%error, "cannot pack the final artifacts"),
        Err(error) => tracing::error!(%error, "packing the final artifacts failed"),
    }
}
