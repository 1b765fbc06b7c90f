//! Delivering a trial's reports to the coordinator: metric batches and log lines, and the
//! final report. Transient failures are retried up to the worker's outage limit; a refusal
//! that says the assignment is fenced stops the trial, since it is no longer ours.

use crate::observer::{SlotControl, TrainEvent};
use crate::shared::{Shared, MAX_BACKOFF, MIN_BACKOFF};
use prime_core::trial::TrialId;
use prime_proto::client::is_transient;
use prime_proto::pb::{self, finish_trial_request::Outcome};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Code, Status};

/// Why a report was not delivered.
pub(super) enum Undelivered {
    /// The assignment is fenced, or the coordinator was unreachable too long: the trial has
    /// been given up (already logged).
    GivenUp,
    /// The coordinator refused the report for good.
    Refused(Status),
    /// The coordinator has no room for it now (`RESOURCE_EXHAUSTED`, e.g. its disk is
    /// full); it is kept and sent again later.
    Full(Status),
}

/// A checkpoint the coordinator had no room for, kept to be sent again.
pub(super) struct HeldCheckpoint {
    /// The tar archive.
    pub(super) archive: Vec<u8>,
    /// Where the run stood.
    pub(super) progress: prime_core::observer::Progress,
    /// Higher is better.
    pub(super) score: Option<f64>,
    /// Final artifacts rather than a resumable state.
    pub(super) is_final: bool,
}

/// What a call does when the coordinator answers that it has no room now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenFull {
    /// Wait and retry, like an outage.
    Wait,
    /// Return `Undelivered::Full` at once: the caller keeps the data for later.
    Hold,
}

/// Sends a trial's reports, retrying while the coordinator is unreachable and noticing when
/// the assignment has been fenced.
pub(super) struct Reporter<'a> {
    pub(super) shared: &'a Shared,
    pub(super) trial_id: TrialId,
    /// The fencing epoch of the assignment, carried by every report.
    pub(super) epoch: u64,
    pub(super) control: Arc<SlotControl>,
    /// The coordinator refused a report: the assignment is no longer ours.
    pub(super) fenced: bool,
    /// Checkpoint uploads so far; numbers the next upload's id.
    pub(super) uploads: u32,
    /// Checkpoints the coordinator had no room for, oldest first, to send again later.
    pub(super) held: Vec<HeldCheckpoint>,
    /// Metric records not yet sent.
    pub(super) pending: Vec<pb::Metric>,
    /// Log lines for the trial's log at the coordinator, not yet sent.
    pub(super) logs: Vec<String>,
}

impl Reporter<'_> {
    /// Calls `op` until it succeeds, is refused, or the outage lasts too long.
    pub(super) async fn call<T, F, Fut>(&mut self, what: &str, op: F) -> Result<T, Undelivered>
    where
        F: FnMut(prime_proto::client::Client) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_when_full(what, WhenFull::Wait, op).await
    }

    /// Like `call`; `when_full` says whether a coordinator without room is waited for.
    pub(super) async fn call_when_full<T, F, Fut>(
        &mut self,
        what: &str,
        when_full: WhenFull,
        mut op: F,
    ) -> Result<T, Undelivered>
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
                Err(status)
                    if status.code() == Code::ResourceExhausted && when_full == WhenFull::Hold =>
                {
                    return Err(Undelivered::Full(status))
                }
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

    /// Stops the trial: its reports can no longer be delivered.
    fn give_up(&mut self) {
        self.fenced = true;
        self.control.stop.store(true, Ordering::SeqCst);
    }

    /// Sends one metric batch.
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
    pub(super) async fn flush(&mut self) {
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

    /// Queues a metric (flushing a full batch) or uploads a checkpoint.
    pub(super) async fn handle(&mut self, event: TrainEvent) {
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

    /// Sends what is pending (held checkpoints first, waiting for room up to the outage
    /// limit: after the outcome they could no longer be delivered), then the attempt's
    /// outcome.
    pub(super) async fn finish(&mut self, outcome: Outcome) {
        self.deliver_held(WhenFull::Wait).await;
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
