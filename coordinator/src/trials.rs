//! Trial-facing operations of the state machine: grid submission, reports (metrics,
//! checkpoints, outcomes) under fencing, search -> evaluation chaining, cancellation and
//! queries.

use crate::db::{self, DbError, MetricRow, Transaction};
use crate::error::CoordinatorError;
use crate::model::{CheckpointRecord, NewCheckpoint, Trial, TrialSummary};
use crate::paging::Page;
use crate::retention::checkpoints_to_delete;
use crate::state::State;
use prime_core::grid::GridSpec;
use prime_core::observer::Progress;
use prime_core::trial::{
    AttemptOutcome, SpawnError, TrialId, TrialKind, TrialResult, TrialSpec, TrialState,
};

/// How a worker says an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The run finished with this result.
    Succeeded(TrialResult),
    /// The run says it finished, but its result message is malformed (what is wrong): the
    /// attempt counts as a crash and the worker is told why.
    MalformedResult(String),
    /// The training code failed (`diverged`: NaN or infinite loss; `invalid`: a configuration
    /// that cannot run).
    Failed {
        /// What went wrong.
        reason: String,
        /// Whether the loss diverged (no retry).
        diverged: bool,
        /// Whether the trial's configuration cannot run (no retry).
        invalid: bool,
    },
    /// The device ran out of memory (`Failed` with the reason): a trial that shared its
    /// GPU is requeued unshared, without counting as a failure.
    OutOfMemory(String),
    /// The run checkpointed and stopped on request.
    Preempted,
}

/// Stores a new queued trial with its creation log line.
pub(crate) fn insert_trial(
    transaction: &dyn Transaction,
    spec: &TrialSpec,
    parent_id: Option<TrialId>,
) -> Result<Trial, DbError> {
    let id = transaction.insert_trial(spec, parent_id)?;
    transaction.insert_log(id, &format!("created: {}", spec.describe()))?;
    Ok(Trial {
        id,
        parent_id,
        spec: spec.clone(),
        state: TrialState::Queued,
        epoch: 0,
        failures: 0,
        attempts: 0,
        placement: None,
        last_placement: None,
        progress: Progress {
            epochs_done: 0,
            epochs_total: spec.settings.epochs.unwrap_or(0),
            steps_done: 0,
            steps_total: 0,
        },
        result: None,
        reason: String::new(),
        run_ms: 0,
        attempt_started_unix_ms: None,
    })
}

impl State {
    /// Validates a grid and stores it with its search trials, all or nothing.
    pub fn submit_grid(
        &mut self,
        file_name: &str,
        text: &str,
    ) -> Result<(String, usize), CoordinatorError> {
        let grid = GridSpec::parse(file_name, text)
            .map_err(|error| CoordinatorError::InvalidGrid(error.to_string()))?;
        let trials = grid.trial_count();
        let limit = self.config.max_grid_trials;
        if trials > limit {
            return Err(CoordinatorError::InvalidGrid(format!(
                "{file_name}: grid `{}` holds {trials} trials (searches and the evaluations they \
                 spawn); this coordinator accepts at most {limit} per grid (--max-grid-trials)",
                grid.name
            )));
        }
        if self.db.grid_exists(&grid.name)? {
            return Err(CoordinatorError::GridExists(grid.name));
        }
        let specs = grid.search_trials();
        let trials = self.db.transaction(|transaction| {
            transaction.insert_grid(&grid.name, file_name, text)?;
            specs
                .iter()
                .map(|spec| insert_trial(transaction, spec, None))
                .collect::<Result<Vec<_>, DbError>>()
        })?;
        tracing::info!(grid = %grid.name, trials = trials.len(), "grid submitted");
        let count = trials.len();
        for trial in trials {
            self.install(trial);
        }
        Ok((grid.name, count))
    }

    /// The trials of grid `grid` (and the evaluations they spawn) that ask for more GPUs
    /// than any registered worker has: "cannot be placed yet" lines for the submitter.
    pub fn unplaceable(&self, grid: &str) -> Vec<String> {
        let largest = self
            .workers
            .values()
            .map(|worker| worker.slots.len() as u32)
            .max()
            .unwrap_or(0);
        let specs: Vec<TrialSpec> = self
            .trials
            .values()
            .filter(|trial| trial.spec.grid == grid && trial.state == TrialState::Queued)
            .map(|trial| trial.spec.clone())
            .collect();
        crate::placement::unplaceable(&specs, largest)
    }

    /// Stores a batch of metrics and log lines of a running trial.
    pub fn ingest_metrics(
        &mut self,
        trial_id: TrialId,
        epoch: u64,
        rows: &[MetricRow],
        logs: &[String],
    ) -> Result<(), CoordinatorError> {
        self.check_fence(trial_id, epoch)?;
        self.db.transaction(|transaction| {
            transaction.insert_metrics(trial_id, rows)?;
            logs.iter()
                .try_for_each(|line| transaction.insert_log(trial_id, line))
        })?;
        Ok(())
    }

    /// Stores several metric batches (already fenced) in one transaction.
    pub fn ingest_metric_batches(
        &mut self,
        batches: &[(TrialId, Vec<MetricRow>, Vec<String>)],
    ) -> Result<(), CoordinatorError> {
        self.db.transaction(|transaction| {
            for (trial_id, rows, logs) in batches {
                transaction.insert_metrics(*trial_id, rows)?;
                for line in logs {
                    transaction.insert_log(*trial_id, line)?;
                }
            }
            Ok::<_, DbError>(())
        })?;
        Ok(())
    }

    /// Records a verified checkpoint of a running trial and applies retention; returns its
    /// id and the store keys to delete.
    pub fn record_checkpoint(
        &mut self,
        trial_id: TrialId,
        epoch: u64,
        checkpoint: &NewCheckpoint,
    ) -> Result<(u64, Vec<String>), CoordinatorError> {
        self.check_fence(trial_id, epoch)?;
        let id = self.db.transaction(|transaction| {
            let id = transaction.insert_checkpoint(trial_id, epoch, checkpoint)?;
            transaction.insert_log(
                trial_id,
                &format!(
                    "checkpoint {id} committed at {}/{} epochs ({} bytes{})",
                    checkpoint.progress.epochs_done,
                    checkpoint.progress.epochs_total,
                    checkpoint.size,
                    if checkpoint.is_final { ", final" } else { "" }
                ),
            )?;
            Ok::<_, DbError>(id)
        })?;
        let all = self.db.checkpoints(trial_id)?;
        let doomed = checkpoints_to_delete(&all, self.config.keep_checkpoints);
        let keys: Vec<String> = all
            .iter()
            .filter(|c| doomed.contains(&c.id))
            .map(|c| c.key.clone())
            .collect();
        self.db
            .transaction(|transaction| transaction.delete_checkpoints(&doomed))?;
        Ok((id, keys))
    }

    /// Ends a running attempt as the worker reports; a successful search chains to its
    /// evaluation trials in the same transaction.
    pub fn finish(
        &mut self,
        trial_id: TrialId,
        epoch: u64,
        finish: Finish,
    ) -> Result<(), CoordinatorError> {
        self.check_fence(trial_id, epoch)?;
        let trial = self.trial(trial_id)?.clone();
        let (outcome, result, invalid) = match finish {
            Finish::Succeeded(result) => match check_result(&trial, &result) {
                Ok(()) => match spawned_evaluations(&trial.spec, &result) {
                    Ok(children) => (AttemptOutcome::Succeeded, Some((result, children)), None),
                    // A spec stored before the grid limits: fail this trial, keep its result.
                    Err(error) => (
                        AttemptOutcome::Invalid(error.to_string()),
                        Some((result, Vec::new())),
                        None,
                    ),
                },
                Err(message) => (
                    AttemptOutcome::Crashed(message.clone()),
                    None,
                    Some(message),
                ),
            },
            Finish::MalformedResult(message) => (
                AttemptOutcome::Crashed(message.clone()),
                None,
                Some(message),
            ),
            Finish::Failed { diverged: true, .. } => (AttemptOutcome::Diverged, None, None),
            Finish::Failed {
                reason,
                invalid: true,
                ..
            } => (AttemptOutcome::Invalid(reason), None, None),
            Finish::Failed { reason, .. } => (AttemptOutcome::Crashed(reason), None, None),
            Finish::OutOfMemory(reason) if trial.spec.resources().gpu_share > 1 => {
                (AttemptOutcome::OutOfMemoryShared(reason), None, None)
            }
            Finish::OutOfMemory(reason) => (AttemptOutcome::OutOfMemory(reason), None, None),
            Finish::Preempted => (AttemptOutcome::Preempted, None, None),
        };
        let mut closed = Self::closed_attempt(&trial, &outcome);
        let unshared = matches!(outcome, AttemptOutcome::OutOfMemoryShared(_));
        if unshared {
            closed.spec.settings.gpu_share = Some(1);
        }
        let children = self.db.transaction(|transaction| {
            if unshared {
                transaction.save_spec(closed.id, &closed.spec)?;
            }
            let mut children = Vec::new();
            if let Some((result, specs)) = &result {
                closed.result = Some(result.clone());
                closed.progress.epochs_done = closed.progress.epochs_total;
                closed.progress.steps_done = closed.progress.steps_total;
                for spec in specs {
                    children.push(insert_trial(transaction, spec, Some(trial.id))?);
                }
            }
            Self::save_closed_attempt(transaction, &closed, &outcome)?;
            transaction.save_trial(&closed)?;
            Ok::<_, DbError>(children)
        })?;
        tracing::info!(trial_id, epoch, outcome = %outcome.describe(), evaluations = children.len(), "trial attempt finished");
        self.install(closed);
        for child in children {
            self.install(child);
        }
        match invalid {
            Some(message) => Err(CoordinatorError::Invalid(message)),
            None => Ok(()),
        }
    }

    /// Cancels one trial, or every unfinished trial of a grid; returns how many.
    pub fn cancel(
        &mut self,
        trial_id: Option<TrialId>,
        grid: Option<&str>,
    ) -> Result<usize, CoordinatorError> {
        let targets: Vec<TrialId> = match (trial_id, grid) {
            (Some(id), _) => vec![self.trial(id)?.id],
            (None, Some(grid)) => {
                if !self.db.grid_exists(grid)? {
                    return Err(CoordinatorError::UnknownGrid(grid.to_string()));
                }
                self.trials
                    .values()
                    .filter(|trial| trial.spec.grid == grid)
                    .map(|trial| trial.id)
                    .collect()
            }
            (None, None) => return Err(CoordinatorError::Invalid("cancel what?".into())),
        };
        let live: Vec<&Trial> = targets
            .iter()
            .filter_map(|id| self.trials.get(id))
            .filter(|trial| !trial.state.is_terminal())
            .collect();
        let running: Vec<TrialId> = live
            .iter()
            .filter(|trial| trial.state == TrialState::Running)
            .map(|trial| trial.id)
            .collect();
        let waiting: Vec<Trial> = live
            .iter()
            .filter(|trial| trial.state != TrialState::Running)
            .map(|trial| Trial {
                state: TrialState::Cancelled,
                reason: "cancelled".into(),
                ..(*trial).clone()
            })
            .collect();
        let count = running.len() + waiting.len();
        self.close_attempts(&running, &AttemptOutcome::Cancelled)?;
        self.db.transaction(|transaction| {
            waiting.iter().try_for_each(|trial| {
                transaction.save_trial(trial)?;
                transaction.insert_log(trial.id, "cancelled")
            })
        })?;
        for trial in waiting {
            self.install(trial);
        }
        Ok(count)
    }

    /// The trials of `grid` (every grid when empty), for status tables and results.
    pub fn list_trials(&self, grid: &str) -> Vec<TrialSummary> {
        let now_ms = db::unix_ms();
        self.trials
            .values()
            .filter(|trial| grid.is_empty() || trial.spec.grid == grid)
            .map(|trial| TrialSummary {
                id: trial.id,
                spec: trial.spec.clone(),
                state: trial.state,
                progress: trial.progress,
                attempts: trial.attempts,
                failures: trial.failures,
                worker: trial
                    .placement
                    .as_ref()
                    .or(trial
                        .last_placement
                        .as_ref()
                        .filter(|_| trial.state.is_terminal()))
                    .map(|p| format!("{}/{}", p.worker, p.slot_list())),
                result: trial.result.clone(),
                reason: trial.reason.clone(),
                parent_id: trial.parent_id,
                run_seconds: (trial.run_ms
                    + trial
                        .attempt_started_unix_ms
                        .map_or(0, |started| now_ms.saturating_sub(started)))
                    as f64
                    / 1000.0,
            })
            .collect()
    }

    /// A trial's log lines with their Unix milliseconds, oldest first.
    pub fn logs(&self, trial_id: TrialId) -> Result<Vec<(u64, String)>, CoordinatorError> {
        self.logs_page(trial_id, Page::ALL)
    }

    /// A page of a trial's log lines, oldest first.
    pub fn logs_page(
        &self,
        trial_id: TrialId,
        page: Page,
    ) -> Result<Vec<(u64, String)>, CoordinatorError> {
        self.trial(trial_id)?;
        Ok(self.db.logs(trial_id, page)?)
    }

    /// A trial's stored metric rows, by step then kind.
    pub fn metrics(&self, trial_id: TrialId) -> Result<Vec<MetricRow>, CoordinatorError> {
        self.metrics_page(trial_id, Page::ALL)
    }

    /// A page of a trial's stored metric rows, by step then kind.
    pub fn metrics_page(
        &self,
        trial_id: TrialId,
        page: Page,
    ) -> Result<Vec<MetricRow>, CoordinatorError> {
        self.trial(trial_id)?;
        Ok(self.db.metrics(trial_id, page)?)
    }

    /// A trial's retained checkpoints, oldest first.
    pub fn checkpoints(
        &self,
        trial_id: TrialId,
    ) -> Result<Vec<CheckpointRecord>, CoordinatorError> {
        self.trial(trial_id)?;
        Ok(self.db.checkpoints(trial_id)?)
    }
}

/// The evaluation trials a search's result spawns (none for an evaluation or without a
/// genotype); bounded by the grid limits whatever the stored spec says.
fn spawned_evaluations(
    spec: &TrialSpec,
    result: &TrialResult,
) -> Result<Vec<TrialSpec>, SpawnError> {
    match &result.genotype {
        Some(genotype) => spec.evaluation_trials(genotype),
        None => Ok(Vec::new()),
    }
}

/// Why `result` cannot be the result of `trial`, if it cannot.
fn check_result(trial: &Trial, result: &TrialResult) -> Result<(), String> {
    if trial.spec.kind == TrialKind::Search && result.genotype.is_none() {
        return Err("invalid result: a search result needs a genotype".into());
    }
    if let Some((name, value)) = result.metrics.iter().find(|(_, value)| !value.is_finite()) {
        return Err(format!("invalid result: `{name}` is {value}"));
    }
    Ok(())
}
