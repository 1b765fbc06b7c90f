//! The event loop: one thread owns the `State`; gRPC handlers send it closures and await
//! their answers, so the state never needs a lock and SQLite is written from one place.
//!
//! Metric batches take a faster path: they are fenced on arrival, then written together in
//! one transaction when the loop has nothing else queued (group commit), and acknowledged
//! only after that commit. Assignments therefore never wait behind a queue of separate
//! metric transactions, and an acknowledged metric is never lost.

use crate::db::MetricRow;
use crate::error::CoordinatorError;
use crate::state::State;
use prime_core::trial::TrialId;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

/// Rows that trigger a group commit even while requests keep arriving.
const GROUP_COMMIT_ROWS: usize = 2048;

type Call = Box<dyn FnOnce(&mut State) + Send>;

/// One metric batch waiting for its group commit.
struct MetricBatch {
    trial_id: TrialId,
    epoch: u64,
    rows: Vec<MetricRow>,
    logs: Vec<String>,
    reply: oneshot::Sender<Result<(), CoordinatorError>>,
}

enum Job {
    Call(Call),
    Metrics(MetricBatch),
}

/// A cheap, cloneable handle to the event loop.
#[derive(Clone)]
pub struct StateHandle {
    sender: mpsc::UnboundedSender<Job>,
}

fn commit(state: &mut State, pending: &mut Vec<MetricBatch>) {
    let batches: Vec<(TrialId, Vec<MetricRow>, Vec<String>)> = pending
        .iter_mut()
        .map(|batch| {
            (
                batch.trial_id,
                std::mem::take(&mut batch.rows),
                std::mem::take(&mut batch.logs),
            )
        })
        .collect();
    let result = state.ingest_metric_batches(&batches);
    for batch in pending.drain(..) {
        let answer = match &result {
            Ok(()) => Ok(()),
            Err(error) => Err(CoordinatorError::Invalid(format!(
                "metrics not stored: {error}"
            ))),
        };
        // The caller may have gone away (client disconnect); the rows are stored anyway.
        let _ = batch.reply.send(answer);
    }
}

fn run_loop(mut state: State, mut receiver: mpsc::UnboundedReceiver<Job>) {
    let mut pending: Vec<MetricBatch> = Vec::new();
    let mut pending_rows = 0;
    loop {
        let job = if pending.is_empty() {
            match receiver.blocking_recv() {
                Some(job) => job,
                None => return,
            }
        } else {
            match receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {
                    commit(&mut state, &mut pending);
                    pending_rows = 0;
                    continue;
                }
            }
        };
        match job {
            Job::Call(call) => call(&mut state),
            Job::Metrics(batch) => match state.check_fence(batch.trial_id, batch.epoch) {
                Err(error) => {
                    let _ = batch.reply.send(Err(error));
                }
                Ok(()) => {
                    pending_rows += batch.rows.len() + batch.logs.len();
                    pending.push(batch);
                    if pending_rows >= GROUP_COMMIT_ROWS {
                        commit(&mut state, &mut pending);
                        pending_rows = 0;
                    }
                }
            },
        }
    }
}

impl StateHandle {
    /// Moves `state` onto its own thread; the loop ends when every handle is dropped.
    pub fn spawn(state: State) -> (StateHandle, std::thread::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("coordinator-state".into())
            .spawn(move || run_loop(state, receiver))
            .expect("spawning the coordinator state thread");
        (StateHandle { sender }, thread)
    }

    /// Runs `job` on the event loop and returns its value.
    pub async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job::Call(Box::new(move |state| {
                // The caller may have gone away (client disconnect); the work is done anyway.
                let _ = reply.send(job(state));
            })))
            .map_err(|_| CoordinatorError::ShuttingDown)?;
        answer.await.map_err(|_| CoordinatorError::ShuttingDown)
    }

    /// Like `call`, for jobs that can fail.
    pub async fn try_call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut State) -> Result<T, CoordinatorError> + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        self.call(job).await?
    }

    /// Stores a metric batch of a running trial (fenced by `epoch`), acknowledged once it is
    /// committed.
    pub async fn ingest_metrics(
        &self,
        trial_id: TrialId,
        epoch: u64,
        rows: Vec<MetricRow>,
        logs: Vec<String>,
    ) -> Result<(), CoordinatorError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job::Metrics(MetricBatch {
                trial_id,
                epoch,
                rows,
                logs,
                reply,
            }))
            .map_err(|_| CoordinatorError::ShuttingDown)?;
        answer.await.map_err(|_| CoordinatorError::ShuttingDown)?
    }
}
