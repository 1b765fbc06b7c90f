//! Changes to submitted grids: retrying failed or cancelled trials (from their last
//! checkpoint, or from the start), and extending a grid with new seeds or methods without
//! touching the trials it has.

use crate::db::DbError;
use crate::error::CoordinatorError;
use crate::model::Trial;
use crate::state::State;
use crate::trials::insert_trial;
use prime_core::grid::GridSpec;
use prime_core::observer::Progress;
use prime_core::trial::{TrialId, TrialKind, TrialSpec, TrialState};

/// What a retry did: the trials requeued, and the store keys of the checkpoints a fresh
/// retry dropped (the caller deletes the files).
#[derive(Debug, Default, PartialEq)]
pub struct Retried {
    /// The requeued trials.
    pub trial_ids: Vec<TrialId>,
    /// Store keys of dropped checkpoints.
    pub dropped_keys: Vec<String>,
}

/// Whether a trial in `state` may be retried.
fn retryable(state: TrialState) -> bool {
    matches!(state, TrialState::Failed | TrialState::Cancelled)
}

/// The first field in which `new` differs from `old`, named as a grid file names it.
fn changed_setting(old: &TrialSpec, new: &TrialSpec) -> Option<&'static str> {
    if old.method != new.method {
        Some("method preset")
    } else if old.settings != new.settings {
        Some("search settings")
    } else if old.evaluation != new.evaluation {
        Some("evaluation settings")
    } else if old.priority != new.priority {
        Some("priority")
    } else if old.retries != new.retries {
        Some("retry budget")
    } else {
        None
    }
}

impl State {
    /// Requeues trial `trial_id`, or every failed or cancelled trial of `grid`: from its last
    /// resumable checkpoint, or from the start when `fresh` (its checkpoints are dropped).
    /// Succeeded, queued and running trials are left alone; naming one is an error.
    pub fn retry(
        &mut self,
        trial_id: Option<TrialId>,
        grid: Option<&str>,
        fresh: bool,
    ) -> Result<Retried, CoordinatorError> {
        let targets: Vec<TrialId> = match (trial_id, grid) {
            (Some(id), _) => {
                let trial = self.trial(id)?;
                if !retryable(trial.state) {
                    return Err(CoordinatorError::Conflict(format!(
                        "trial {id} is {}: only failed or cancelled trials are retried",
                        trial.state
                    )));
                }
                vec![id]
            }
            (None, Some(grid)) => {
                if !self.db.grid_exists(grid)? {
                    return Err(CoordinatorError::UnknownGrid(grid.to_string()));
                }
                self.trials
                    .values()
                    .filter(|trial| trial.spec.grid == grid && retryable(trial.state))
                    .map(|trial| trial.id)
                    .collect()
            }
            (None, None) => return Err(CoordinatorError::Invalid("retry what?".into())),
        };
        let mut retried = Retried::default();
        let mut requeued = Vec::new();
        let mut dropped_ids = Vec::new();
        for id in &targets {
            let trial = self.trial(*id)?;
            let checkpoints = self.db.checkpoints(*id)?;
            let from = if fresh {
                dropped_ids.extend(checkpoints.iter().map(|c| c.id));
                retried
                    .dropped_keys
                    .extend(checkpoints.iter().map(|c| c.key.clone()));
                "the start (--fresh)".to_string()
            } else {
                checkpoints
                    .iter()
                    .rfind(|c| !c.is_final)
                    .map_or("the start (no checkpoint)".to_string(), |c| {
                        format!("checkpoint {}", c.id)
                    })
            };
            let progress = if fresh {
                Progress {
                    epochs_done: 0,
                    steps_done: 0,
                    ..trial.progress
                }
            } else {
                trial.progress
            };
            let line = format!(
                "retried by a user (was {}: {}), resuming from {from}",
                trial.state, trial.reason
            );
            requeued.push((
                Trial {
                    state: TrialState::Queued,
                    failures: 0,
                    reason: String::new(),
                    result: None,
                    progress,
                    ..trial.clone()
                },
                line,
            ));
        }
        self.db.transaction(|transaction| {
            transaction.delete_checkpoints(&dropped_ids)?;
            requeued.iter().try_for_each(|(trial, line)| {
                transaction.save_trial(trial)?;
                transaction.insert_log(trial.id, line)
            })
        })?;
        for (trial, _) in requeued {
            tracing::info!(trial_id = trial.id, fresh, "trial retried");
            retried.trial_ids.push(trial.id);
            self.install(trial);
        }
        Ok(retried)
    }

    /// Adds the search trials of `text` (a new version of submitted grid `name`, with more
    /// seeds or methods) that the grid does not hold yet; returns the grid's name and the
    /// ids of the added trials. A trial the grid holds (same method label, dataset and seed)
    /// must keep every setting: a change is refused, naming the trial.
    pub fn extend_grid(
        &mut self,
        file_name: &str,
        text: &str,
    ) -> Result<(String, Vec<TrialId>), CoordinatorError> {
        let grid = GridSpec::parse(file_name, text)
            .map_err(|error| CoordinatorError::InvalidGrid(error.to_string()))?;
        if !self.db.grid_exists(&grid.name)? {
            return Err(CoordinatorError::UnknownGrid(grid.name));
        }
        let existing: Vec<&Trial> = self
            .trials
            .values()
            .filter(|trial| trial.spec.grid == grid.name && trial.spec.kind == TrialKind::Search)
            .collect();
        let mut added = Vec::new();
        for spec in grid.search_trials() {
            let same = existing.iter().find(|trial| {
                trial.spec.label == spec.label
                    && trial.spec.dataset == spec.dataset
                    && trial.spec.search_seed == spec.search_seed
            });
            match same {
                Some(trial) => {
                    if let Some(setting) = changed_setting(&trial.spec, &spec) {
                        return Err(CoordinatorError::Conflict(format!(
                            "{file_name}: trial {} ({}) exists with different {setting}; \
                             --extend only adds trials: submit the changed settings as a new \
                             grid or under a new method label",
                            trial.id,
                            trial.spec.describe()
                        )));
                    }
                }
                None => added.push(spec),
            }
        }
        let total = grid.trial_count();
        let limit = self.config.max_grid_trials;
        if total > limit {
            return Err(CoordinatorError::InvalidGrid(format!(
                "{file_name}: grid `{}` would hold {total} trials (searches and the evaluations \
                 they spawn); this coordinator accepts at most {limit} per grid \
                 (--max-grid-trials)",
                grid.name
            )));
        }
        let trials = self.db.transaction(|transaction| {
            transaction.update_grid(&grid.name, file_name, text)?;
            added
                .iter()
                .map(|spec| insert_trial(transaction, spec, None))
                .collect::<Result<Vec<_>, DbError>>()
        })?;
        tracing::info!(grid = %grid.name, added = trials.len(), "grid extended");
        let ids = trials.iter().map(|trial| trial.id).collect();
        for trial in trials {
            self.install(trial);
        }
        Ok((grid.name, ids))
    }
}
