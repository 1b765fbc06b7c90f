//! Trials: what one search or evaluation run is (its spec), where it stands (its state) and
//! what it produced (its result).

use crate::dataset::Dataset;
use crate::limits;
use crate::resources::Resources;
use crate::settings::{EvaluationSettings, RunSettings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Identifier of a trial, unique within a coordinator.
pub type TrialId = u64;

/// What a trial runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialKind {
    /// An architecture search that ends in a genotype.
    Search,
    /// The retraining of a genotype from scratch, ending in a test error or perplexity.
    Evaluation,
}

/// Everything a worker needs to run one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialSpec {
    /// The grid the trial belongs to.
    pub grid: String,
    /// Search or evaluation.
    pub kind: TrialKind,
    /// Method preset name.
    pub method: String,
    /// Method name in result tables.
    pub label: String,
    /// The dataset trained on.
    pub dataset: Dataset,
    /// Seed of the search (for an evaluation: of the search that produced its genotype).
    pub search_seed: u64,
    /// Seed of the evaluation run (evaluations only).
    pub eval_seed: Option<u64>,
    /// Training settings, on top of the method preset.
    pub settings: RunSettings,
    /// The genotype to evaluate (evaluations only), as produced by the search (JSON).
    pub genotype: Option<serde_json::Value>,
    /// How the search's genotype is evaluated (searches only); `None`: no evaluation.
    pub evaluation: Option<EvaluationSettings>,
    /// Scheduling priority: higher first.
    pub priority: i32,
    /// Crashes of the training code the trial may survive.
    pub retries: u32,
}

/// Why a search cannot spawn its evaluation trials: its spec was stored before the grid
/// limits were checked, or was edited by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot spawn the evaluation trials: {0}")]
pub struct SpawnError(String);

impl TrialSpec {
    /// The evaluation trials a successful search chains to, given its genotype. The number
    /// of evaluation seeds is checked against `limits::EVALUATION_SEEDS` before anything is
    /// allocated, so a stored spec can never ask for billions of trials.
    pub fn evaluation_trials(
        &self,
        genotype: &serde_json::Value,
    ) -> Result<Vec<TrialSpec>, SpawnError> {
        let Some(evaluation) = (self.kind == TrialKind::Search)
            .then_some(self.evaluation.as_ref())
            .flatten()
        else {
            return Ok(Vec::new());
        };
        limits::check_count(evaluation.seeds, &limits::EVALUATION_SEEDS)
            .map_err(|message| SpawnError(format!("evaluation.seeds {message}")))?;
        let seeds = u64::from(evaluation.seeds);
        if evaluation.first_seed.checked_add(seeds - 1).is_none() {
            return Err(SpawnError(format!(
                "evaluation.first_seed {} + {seeds} seeds overflows 64 bits",
                evaluation.first_seed
            )));
        }
        Ok((0..seeds)
            .map(|offset| TrialSpec {
                kind: TrialKind::Evaluation,
                eval_seed: Some(evaluation.first_seed + offset),
                settings: evaluation.run_settings(),
                genotype: Some(genotype.clone()),
                evaluation: None,
                ..self.clone()
            })
            .collect())
    }

    /// The GPUs the trial asks for; a spec stored before the ranges were checked, or edited
    /// by hand, reads as one unshared GPU wherever its request is out of range.
    pub fn resources(&self) -> Resources {
        Resources::of(&self.settings).unwrap_or_default()
    }

    /// A short human description: `search darts-prime cifar10 seed 101`.
    pub fn describe(&self) -> String {
        match (self.kind, self.eval_seed) {
            (TrialKind::Evaluation, Some(eval_seed)) => format!(
                "eval {} {} seed {} (eval seed {eval_seed})",
                self.method, self.dataset, self.search_seed
            ),
            _ => format!(
                "search {} {} seed {}",
                self.method, self.dataset, self.search_seed
            ),
        }
    }
}

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Waiting for a slot (never run, or waiting for a retry after a crash).
    Queued,
    /// Assigned to a worker slot under a lease.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Failed for good (retry budget spent, or diverged).
    Failed,
    /// Interrupted (preempted, drained, or its worker was lost); waits to resume from its last
    /// checkpoint. Does not count against the retry budget.
    Preempted,
    /// Cancelled by a user.
    Cancelled,
}

impl TrialState {
    /// Every state.
    pub const ALL: [TrialState; 6] = [
        TrialState::Queued,
        TrialState::Running,
        TrialState::Succeeded,
        TrialState::Failed,
        TrialState::Preempted,
        TrialState::Cancelled,
    ];

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Queued => "queued",
            TrialState::Running => "running",
            TrialState::Succeeded => "succeeded",
            TrialState::Failed => "failed",
            TrialState::Preempted => "preempted",
            TrialState::Cancelled => "cancelled",
        }
    }

    /// Whether the trial is over (no further transition).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TrialState::Succeeded | TrialState::Failed | TrialState::Cancelled
        )
    }

    /// Whether the trial waits for a slot.
    pub fn is_runnable(self) -> bool {
        matches!(self, TrialState::Queued | TrialState::Preempted)
    }

    /// Whether `self -> next` is a legal transition.
    pub fn can_become(self, next: TrialState) -> bool {
        use TrialState::*;
        matches!(
            (self, next),
            (Queued | Preempted, Running)
                | (Queued | Preempted | Running, Cancelled)
                | (Running, Succeeded | Failed | Preempted | Queued)
        )
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TrialState {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        TrialState::ALL
            .into_iter()
            .find(|state| state.name() == name)
            .ok_or_else(|| format!("unknown trial state `{name}`"))
    }
}

/// How one attempt (one assignment to a worker slot) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum AttemptOutcome {
    /// The trial finished.
    Succeeded,
    /// The training code failed; counts against the retry budget.
    Crashed(String),
    /// The loss became NaN or infinite; the trial fails without retry.
    Diverged,
    /// The device ran out of memory while the trial shared it with others (`gpu_share`
    /// above 1): not a failure; the trial is requeued to run on a GPU of its own.
    OutOfMemoryShared(String),
    /// The device ran out of memory while the trial had it to itself: a failure, retried
    /// within the budget like a crash (another worker may have a larger GPU).
    OutOfMemory(String),
    /// The trial's configuration cannot run; the trial fails without retry.
    Invalid(String),
    /// The worker checkpointed and stopped (SIGTERM, SIGUSR1, drain); not a failure.
    Preempted,
    /// The worker's lease expired or it re-registered without the trial; not a failure.
    Lost,
    /// A user cancelled the trial.
    Cancelled,
}

impl AttemptOutcome {
    /// Whether the outcome spends one unit of the retry budget.
    pub fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            AttemptOutcome::Crashed(_)
                | AttemptOutcome::OutOfMemory(_)
                | AttemptOutcome::Diverged
                | AttemptOutcome::Invalid(_)
        )
    }

    /// The trial state after this outcome, given the failures counted so far (including this
    /// one) and the trial's retry budget.
    pub fn next_state(&self, failures: u32, retries: u32) -> TrialState {
        match self {
            AttemptOutcome::Succeeded => TrialState::Succeeded,
            AttemptOutcome::Diverged | AttemptOutcome::Invalid(_) => TrialState::Failed,
            AttemptOutcome::Crashed(_) | AttemptOutcome::OutOfMemory(_) if failures > retries => {
                TrialState::Failed
            }
            AttemptOutcome::Crashed(_) | AttemptOutcome::OutOfMemory(_) => TrialState::Queued,
            AttemptOutcome::OutOfMemoryShared(_) => TrialState::Queued,
            AttemptOutcome::Preempted | AttemptOutcome::Lost => TrialState::Preempted,
            AttemptOutcome::Cancelled => TrialState::Cancelled,
        }
    }

    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        match self {
            AttemptOutcome::Succeeded => "succeeded".to_string(),
            AttemptOutcome::Crashed(reason) => format!("crashed: {reason}"),
            AttemptOutcome::Diverged => "failed: diverged".to_string(),
            AttemptOutcome::OutOfMemoryShared(reason) => format!(
                "out of GPU memory while sharing its GPU ({reason}); requeued to run on a GPU \
                 of its own"
            ),
            AttemptOutcome::OutOfMemory(reason) => format!("out of GPU memory: {reason}"),
            AttemptOutcome::Invalid(reason) => format!("failed: invalid configuration: {reason}"),
            AttemptOutcome::Preempted => "preempted".to_string(),
            AttemptOutcome::Lost => "lost (worker lease expired or worker restarted)".to_string(),
            AttemptOutcome::Cancelled => "cancelled".to_string(),
        }
    }
}

/// Names of the result values used by result tables.
pub mod result_keys {
    /// Test error in percent (CIFAR evaluations).
    pub const TEST_ERROR: &str = "test_error";
    /// Test perplexity (PTB evaluations).
    pub const TEST_PPL: &str = "test_ppl";
    /// Validation perplexity (PTB evaluations).
    pub const VALID_PPL: &str = "valid_ppl";
    /// Parameters of the evaluated network, in millions (SPEC 6.7 convention).
    pub const PARAMS_M: &str = "params_m";
    /// Alpha steps a search took over its whole run.
    pub const ALPHA_STEPS: &str = "alpha_steps";
    /// 1 when a search ran on a GPU, 0 on a CPU (result tables give GPU-days or CPU-hours).
    pub const SEARCH_ON_GPU: &str = "search_on_gpu";
    /// Fewer alpha steps than this leave a search's alphas close to their initial values: its
    /// genotype says little about the method (a summary flags such a search).
    pub const FEW_ALPHA_STEPS: u64 = 5;
}

/// What a finished trial produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// The genotype found (searches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genotype: Option<serde_json::Value>,
    /// Final scalar results (see `result_keys`).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The run's reproducibility manifest (its `manifest.json`), when the trainer writes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_state_machine() {
        use TrialState::*;
        assert!(Queued.can_become(Running));
        assert!(Preempted.can_become(Running));
        assert!(Running.can_become(Preempted));
        assert!(!Succeeded.can_become(Running));
        assert!(!Cancelled.can_become(Queued));
        assert!(!Queued.can_become(Succeeded));
        assert!(!Failed.can_become(Queued));
        for state in TrialState::ALL {
            assert_eq!(state.name().parse::<TrialState>(), Ok(state));
            assert!(!(state.is_terminal() && state.is_runnable()));
        }
    }

    #[test]
    fn retry_budget_counts_only_crashes() {
        let crash = AttemptOutcome::Crashed("segfault".into());
        assert_eq!(crash.next_state(1, 2), TrialState::Queued);
        assert_eq!(crash.next_state(2, 2), TrialState::Queued);
        assert_eq!(crash.next_state(3, 2), TrialState::Failed);
        assert_eq!(AttemptOutcome::Lost.next_state(0, 0), TrialState::Preempted);
        assert!(!AttemptOutcome::Lost.counts_as_failure());
        assert!(!AttemptOutcome::Preempted.counts_as_failure());
        assert_eq!(
            AttemptOutcome::Diverged.next_state(1, 5),
            TrialState::Failed
        );
        let invalid = AttemptOutcome::Invalid("unknown method `nope`".into());
        assert!(invalid.counts_as_failure());
        assert_eq!(invalid.next_state(1, 5), TrialState::Failed);
        assert_eq!(
            invalid.describe(),
            "failed: invalid configuration: unknown method `nope`"
        );
    }

    #[test]
    fn running_out_of_gpu_memory_counts_only_when_the_gpu_was_not_shared() {
        let shared = AttemptOutcome::OutOfMemoryShared("CUDA out of memory".into());
        assert!(!shared.counts_as_failure());
        assert_eq!(shared.next_state(0, 0), TrialState::Queued);
        assert!(shared
            .describe()
            .contains("requeued to run on a GPU of its own"));
        let alone = AttemptOutcome::OutOfMemory("CUDA out of memory".into());
        assert!(alone.counts_as_failure());
        assert_eq!(alone.next_state(1, 1), TrialState::Queued);
        assert_eq!(alone.next_state(1, 0), TrialState::Failed);
        assert_eq!(alone.describe(), "out of GPU memory: CUDA out of memory");
        let json = serde_json::to_string(&shared).unwrap();
        assert_eq!(
            serde_json::from_str::<AttemptOutcome>(&json).unwrap(),
            shared
        );
    }
}
