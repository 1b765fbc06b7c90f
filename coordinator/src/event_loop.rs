//! The event loop: one thread owns the `State`; gRPC handlers send it closures and await
//! their answers, so the state never needs a lock and SQLite is written from one place.
//!
//! Two lanes feed it. Requests (assignments, heartbeats, finishes, client queries) always go
//! first. Requests served back to back form a group (`RequestGroup`): their transactions are
//! savepoints of one SQLite transaction, committed once when no request waits, after
//! `GROUP_MAX_CALLS` requests or `GROUP_MAX_HOLD`, whichever comes first, and every answer of
//! the group is held until that commit. So at a thousand workers the loop pays one commit per
//! group instead of one per request, while no caller ever hears of a change that is not
//! stored, and the in-memory state (and with it fencing) changes in request order as before.
//! If the group's commit fails, its requests are answered with the error and the state is read
//! back from the database.
//!
//! Metric batches take the other lane: they are fenced on arrival, then written together in
//! one transaction when no request is waiting (group commit), fenced again just before that
//! commit (a request in between may have reassigned the trial), and acknowledged only after
//! it. An assignment therefore waits at most for one group commit in progress, never behind a
//! queue of metric rows, and an acknowledged metric is never lost.

use crate::db::MetricRow;
use crate::error::CoordinatorError;
use crate::state::State;
use prime_core::trial::TrialId;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

/// Rows after which pending metric batches are committed even while more keep arriving;
/// bounds how long one commit holds the loop (a few milliseconds) and so a request's wait.
const GROUP_COMMIT_ROWS: usize = 1024;

/// Requests after which a group is committed even while more keep arriving.
const GROUP_MAX_CALLS: usize = 256;

/// Time after which a group is committed even while more requests keep arriving: bounds how
/// long the first request of a group waits for its answer beyond its own work.
const GROUP_MAX_HOLD: Duration = Duration::from_millis(2);

/// Sends a request's answer once its group's commit is known: `None` when it committed, the
/// reason when it did not.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

type Call = Box<dyn FnOnce(&mut State) -> Answer + Send>;

/// The requests served since the last commit, whose answers wait for the next one.
#[derive(Default)]
pub(crate) struct RequestGroup {
    answers: Vec<Answer>,
    opened: Option<Instant>,
}

impl RequestGroup {
    /// Serves `call` in the open group (opening one first), committing the group when it is
    /// full or old enough.
    pub(crate) fn serve(&mut self, state: &mut State, call: Call) {
        if self.opened.is_none() {
            if let Err(error) = state.db.begin_group() {
                // Served on its own: its transactions commit one by one, as without groups.
                tracing::warn!(%error, "cannot open a group of requests; serving one alone");
                call(state)(None);
                return;
            }
            self.opened = Some(Instant::now());
        }
        self.answers.push(call(state));
        if self.answers.len() >= GROUP_MAX_CALLS
            || self
                .opened
                .is_some_and(|opened| opened.elapsed() >= GROUP_MAX_HOLD)
        {
            self.commit(state);
        }
    }

    /// Whether a group is open.
    pub(crate) fn is_open(&self) -> bool {
        self.opened.is_some()
    }

    /// Commits the open group and answers its requests; if the commit fails, they are
    /// answered with the failure and the state is read back from the database.
    pub(crate) fn commit(&mut self, state: &mut State) {
        if self.opened.take().is_none() {
            return;
        }
        let answers = std::mem::take(&mut self.answers);
        let failure = match state.db.commit_group() {
            Ok(()) => None,
            Err(error) => Some(Self::recover(state, &error.to_string(), answers.len())),
        };
        for answer in answers {
            answer(failure.as_deref());
        }
    }

    /// Undoes a group whose commit failed and makes memory match the database again; the
    /// answer its requests get.
    fn recover(state: &mut State, error: &str, requests: usize) -> String {
        tracing::error!(error, requests, "the database did not commit a group of requests; none of them took effect, and the state is read back from the database");
        if let Err(error) = state.db.rollback_group() {
            tracing::error!(%error, "cannot roll back the failed group");
        }
        if let Err(error) = state.reload(tokio::time::Instant::now()) {
            tracing::error!(%error, "cannot read the state back from the database after a failed commit; restart the coordinator");
        }
        format!("the database did not store this request ({error}); nothing of it took effect, try again")
    }
}

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

/// `job` as a request of the event loop, and the receiver of its answer: its value once its
/// group committed, the failure otherwise.
fn call_of<T: Send + 'static>(
    job: impl FnOnce(&mut State) -> T + Send + 'static,
) -> (Call, oneshot::Receiver<Result<T, CoordinatorError>>) {
    let (reply, answer) = oneshot::channel();
    let call = Box::new(move |state: &mut State| {
        // A bug met by one request must not take the event loop, and so every grid, down.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(state)))
            .map_err(|panic| panic_message(panic.as_ref()));
        if let Err(message) = &outcome {
            tracing::error!(message, "a request panicked on the event loop; it was answered with an internal error (a restart reloads the state from the database)");
        }
        Box::new(move |failed_commit: Option<&str>| {
            let outcome = match failed_commit {
                None => outcome.map_err(CoordinatorError::Internal),
                Some(reason) => Err(CoordinatorError::Storage(reason.to_string())),
            };
            // The caller may have gone away (client disconnect); the work is done anyway.
            let _ = reply.send(outcome);
        }) as Answer
    });
    (call, answer)
}

/// Serves both lanes until the handles are gone: requests first, in groups, then metric
/// batches, committing them once no request waits or enough rows have gathered.
async fn run_loop(
    mut state: State,
    mut calls: mpsc::UnboundedReceiver<Call>,
    mut metrics: mpsc::UnboundedReceiver<MetricBatch>,
) {
    let mut group = RequestGroup::default();
    let mut pending = PendingMetrics::default();
    loop {
        match calls.try_recv() {
            Ok(call) => {
                group.serve(&mut state, call);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {}
        }
        if group.is_open() {
            group.commit(&mut state);
            continue;
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
                Some(call) => group.serve(&mut state, call),
                None => break,
            },
            batch = metrics.recv() => match batch {
                Some(batch) => pending.accept(&state, batch),
                None => break,
            },
        }
    }
    group.commit(&mut state);
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
        let (call, answer) = call_of(job);
        let sent = self.calls.send(call);
        async move {
            sent.map_err(|_| CoordinatorError::ShuttingDown)?;
            answer.await.map_err(|_| CoordinatorError::ShuttingDown)?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Assignment, WorkerSlot};
    use crate::state::{CoordinatorConfig, DATABASE_FILE};
    use prime_core::trial::TrialState;
    use std::path::Path;
    use tokio::sync::oneshot::error::TryRecvError as AnswerPending;

    type Answered = oneshot::Receiver<Result<Option<Assignment>, CoordinatorError>>;

    /// A state with four queued searches and a worker `w1` of four slots; its session.
    fn state_with_worker(dir: &Path) -> (State, u64) {
        let now = tokio::time::Instant::now();
        let mut state = State::open(dir, CoordinatorConfig::default(), now).unwrap();
        let grid = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [1, 2]\n\
                    [[methods]]\npreset = \"darts\"\n[[methods]]\npreset = \"darts-prime\"\n";
        state.submit_grid("g.toml", grid).unwrap();
        let slots = (0..4)
            .map(|index| WorkerSlot {
                index,
                device: format!("cuda:{index}"),
            })
            .collect();
        let (session, _) = state.register("w1", slots, &[], None, now).unwrap();
        (state, session)
    }

    /// A request for a trial on `slot` of `w1`.
    fn ask(session: u64, slot: u32) -> (Call, Answered) {
        call_of(move |state: &mut State| {
            state
                .request_trial("w1", session, slot, tokio::time::Instant::now())
                .unwrap()
        })
    }

    /// Attempts stored, as another connection (a restarted coordinator) reads them.
    fn stored_attempts(dir: &Path) -> i64 {
        let connection = rusqlite::Connection::open_with_flags(
            dir.join(DATABASE_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        connection
            .query_row("SELECT COUNT(*) FROM attempts", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn requests_served_back_to_back_are_stored_by_one_commit_and_answered_only_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut state, session) = state_with_worker(dir.path());
        let mut group = RequestGroup::default();
        let mut answers = Vec::new();
        for slot in 0..3 {
            let (call, answer) = ask(session, slot);
            group.serve(&mut state, call);
            answers.push(answer);
        }
        // Placed in memory, in order, but neither stored nor answered yet.
        assert!(group.is_open());
        let running = |state: &State| {
            state
                .trials
                .values()
                .filter(|trial| trial.state == TrialState::Running)
                .count()
        };
        assert_eq!(running(&state), 3);
        assert_eq!(stored_attempts(dir.path()), 0);
        for answer in &mut answers {
            assert!(matches!(answer.try_recv(), Err(AnswerPending::Empty)));
        }
        group.commit(&mut state);
        assert!(!group.is_open());
        assert_eq!(stored_attempts(dir.path()), 3);
        let slots: Vec<Vec<u32>> = answers
            .iter_mut()
            .map(|answer| answer.try_recv().unwrap().unwrap().unwrap().slots)
            .collect();
        assert_eq!(slots, [[0], [1], [2]]);
        state.check_invariants().unwrap();
    }

    #[test]
    fn a_failed_group_commit_answers_each_request_with_the_failure_and_memory_matches_the_database_again(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut state, session) = state_with_worker(dir.path());
        let mut group = RequestGroup::default();
        let (first, mut first_answer) = ask(session, 0);
        let (second, mut second_answer) = ask(session, 1);
        group.serve(&mut state, first);
        group.serve(&mut state, second);
        state.db.fail_next_group_commit();
        group.commit(&mut state);
        for answer in [&mut first_answer, &mut second_answer] {
            match answer.try_recv().unwrap() {
                Err(CoordinatorError::Storage(reason)) => {
                    assert!(reason.contains("nothing of it took effect"), "{reason}")
                }
                other => panic!("expected the commit's failure, got {other:?}"),
            }
        }
        // Nothing was stored, and memory says so: every trial queued, no slot held.
        assert_eq!(stored_attempts(dir.path()), 0);
        assert!(state
            .trials
            .values()
            .all(|trial| trial.state == TrialState::Queued && trial.placement.is_none()));
        assert!(state.workers["w1"].occupied.is_empty());
        state.check_invariants().unwrap();
        // The same requests again take the same trials, as their first attempt.
        let (again, mut answer) = ask(session, 0);
        group.serve(&mut state, again);
        group.commit(&mut state);
        let assignment = answer.try_recv().unwrap().unwrap().unwrap();
        assert_eq!(assignment.epoch, 1);
        assert_eq!(stored_attempts(dir.path()), 1);
        state.check_invariants().unwrap();
    }

    #[test]
    fn a_group_is_committed_once_it_holds_its_most_requests() {
        let dir = tempfile::tempdir().unwrap();
        let (mut state, _) = state_with_worker(dir.path());
        let mut group = RequestGroup::default();
        let mut answers = Vec::new();
        for _ in 0..GROUP_MAX_CALLS {
            let (call, answer) = call_of(|state: &mut State| state.trials.len());
            group.serve(&mut state, call);
            answers.push(answer);
        }
        assert!(!group.is_open());
        for mut answer in answers {
            assert_eq!(answer.try_recv().unwrap().unwrap(), 4);
        }
    }
}
