//! The event loop: one thread owns the `State`; gRPC handlers send it closures and await
//! their answers, so the state never needs a lock and SQLite is written from one place.
//!
//! Two lanes feed it. Requests (assignments, heartbeats, finishes, client queries) always go
//! first. Metric batches take the other lane: they are fenced on arrival, then written
//! together in one transaction when no request is waiting (group commit), fenced again just
//! before that commit (a request in between may have reassigned the trial), and acknowledged
//! only after it. An assignment therefore waits at most for one group commit in progress,
//! never behind a queue of metric rows, and an acknowledged metric is never lost.

use crate::db::MetricRow;
use crate::error::CoordinatorError;
use crate::state::State;
use prime_core::trial::TrialId;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

/// Rows after which pending metric batches are committed even while more keep arriving;
/// bounds how long one commit holds the loop (a few milliseconds) and so a request's wait.
const GROUP_COMMIT_ROWS: usize = 1024;

type Call = Box<dyn FnOnce(&mut State) + Send>;

/// One metric batch waiting for its group commit.
pub(crate) struct MetricBatch {
    trial_id: TrialId,
    epoch: u64,
    rows: Vec<MetricRow>,
    logs: Vec<String>,
    reply: oneshot::Sender<Result<(), CoordinatorError>>,
}

/// A cheap, cloneable handle to the event loop.
#[derive(Clone)]
pub struct StateHandle {
    calls: mpsc::UnboundedSender<Call>,
    metrics: mpsc::UnboundedSender<MetricBatch>,
}

/// Fenced metric batches waiting for their group commit.
#[derive(Default)]
pub(crate) struct PendingMetrics {
    batches: Vec<MetricBatch>,
    rows: usize,
}

impl PendingMetrics {
    /// A batch of `trial_id` at `epoch` and the receiver of its acknowledgement (tests).
    #[cfg(test)]
    pub(crate) fn batch(
        trial_id: TrialId,
        epoch: u64,
        rows: Vec<MetricRow>,
    ) -> (MetricBatch, oneshot::Receiver<Result<(), CoordinatorError>>) {
        let (reply, answer) = oneshot::channel();
        let batch = MetricBatch {
            trial_id,
            epoch,
            rows,
            logs: Vec::new(),
            reply,
        };
        (batch, answer)
    }

    /// Fences `batch` and queues it for the next commit (or refuses it at once).
    pub(crate) fn accept(&mut self, state: &State, batch: MetricBatch) {
        if let Err(error) = state.check_fence(batch.trial_id, batch.epoch) {
            let _ = batch.reply.send(Err(error));
            return;
        }
        self.rows += batch.rows.len() + batch.logs.len();
        self.batches.push(batch);
    }

    /// Writes the pending batches that are still current in one transaction and answers
    /// every one of them.
    pub(crate) fn commit(&mut self, state: &mut State) {
        self.rows = 0;
        let mut current = Vec::new();
        let mut replies = Vec::new();
        for batch in self.batches.drain(..) {
            match state.check_fence(batch.trial_id, batch.epoch) {
                Ok(()) => {
                    current.push((batch.trial_id, batch.rows, batch.logs));
                    replies.push(batch.reply);
                }
                // The caller may have gone away (client disconnect).
                Err(error) => drop(batch.reply.send(Err(error))),
            }
        }
        if current.is_empty() {
            return;
        }
        let answers = match state.ingest_metric_batches(&current) {
            Ok(()) => current.iter().map(|_| Ok(())).collect(),
            Err(error) => {
                // Batches are checked on arrival, so this is rare; one batch must not cost the
                // others their commit: each is tried alone and only the failing ones refused.
                tracing::warn!(%error, batches = current.len(), "group commit of metric batches failed; committing them one by one");
                current
                    .iter()
                    .map(|batch| state.ingest_metric_batches(std::slice::from_ref(batch)))
                    .collect::<Vec<_>>()
            }
        };
        for ((trial_id, _, _), (reply, answer)) in
            current.iter().zip(replies.into_iter().zip(answers))
        {
            if let Err(error) = &answer {
                tracing::error!(trial_id, %error, "metric batch not stored");
            }
            // The caller may have gone away (client disconnect); the rows are stored anyway.
            let _ = reply.send(answer);
        }
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Serves both lanes until the handles are gone: requests first, then metric batches,
/// committing them once no request waits or enough rows have gathered.
async fn run_loop(
    mut state: State,
    mut calls: mpsc::UnboundedReceiver<Call>,
    mut metrics: mpsc::UnboundedReceiver<MetricBatch>,
) {
    let mut pending = PendingMetrics::default();
    loop {
        match calls.try_recv() {
            Ok(call) => {
                call(&mut state);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {}
        }
        match metrics.try_recv() {
            Ok(batch) => {
                pending.accept(&state, batch);
                if pending.rows >= GROUP_COMMIT_ROWS {
                    pending.commit(&mut state);
                }
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {}
        }
        if !pending.batches.is_empty() {
            pending.commit(&mut state);
            continue;
        }
        tokio::select! {
            biased;
            call = calls.recv() => match call {
                Some(call) => call(&mut state),
                None => break,
            },
            batch = metrics.recv() => match batch {
                Some(batch) => pending.accept(&state, batch),
                None => break,
            },
        }
    }
    pending.commit(&mut state);
}

impl StateHandle {
    /// Moves `state` onto its own thread; the loop ends when every handle is dropped.
    pub fn spawn(state: State) -> (StateHandle, std::thread::JoinHandle<()>) {
        let (calls, call_receiver) = mpsc::unbounded_channel::<Call>();
        let (metrics, metric_receiver) = mpsc::unbounded_channel::<MetricBatch>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("building the coordinator state thread's runtime");
        let thread = std::thread::Builder::new()
            .name("coordinator-state".into())
            .spawn(move || runtime.block_on(run_loop(state, call_receiver, metric_receiver)))
            .expect("spawning the coordinator state thread");
        (StateHandle { calls, metrics }, thread)
    }

    /// Runs `job` on the event loop and returns its value. The job is queued at once, so
    /// calls made one after another run in that order even if awaited later.
    pub fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, CoordinatorError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.calls.send(Box::new(move |state| {
            // A bug met by one request must not take the event loop, and so every grid, down.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(state)))
                .map_err(|panic| panic_message(panic.as_ref()));
            if let Err(message) = &outcome {
                tracing::error!(message, "a request panicked on the event loop; it was answered with an internal error (a restart reloads the state from the database)");
            }
            // The caller may have gone away (client disconnect); the work is done anyway.
            let _ = reply.send(outcome);
        }));
        async move {
            sent.map_err(|_| CoordinatorError::ShuttingDown)?;
            answer
                .await
                .map_err(|_| CoordinatorError::ShuttingDown)?
                .map_err(CoordinatorError::Internal)
        }
    }

    /// Like `call`, for jobs that can fail.
    pub fn try_call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut State) -> Result<T, CoordinatorError> + Send + 'static,
    ) -> impl Future<Output = Result<T, CoordinatorError>> {
        let answer = self.call(job);
        async move { answer.await? }
    }

    /// Stores a metric batch of a running trial (fenced by `epoch`), acknowledged once it is
    /// committed. The batch is queued at once.
    pub fn ingest_metrics(
        &self,
        trial_id: TrialId,
        epoch: u64,
        rows: Vec<MetricRow>,
        logs: Vec<String>,
    ) -> impl Future<Output = Result<(), CoordinatorError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.metrics.send(MetricBatch {
            trial_id,
            epoch,
            rows,
            logs,
            reply,
        });
        async move {
            sent.map_err(|_| CoordinatorError::ShuttingDown)?;
            answer.await.map_err(|_| CoordinatorError::ShuttingDown)?
        }
    }
}
