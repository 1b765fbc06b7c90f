//! `prime submit --dry-run`: the trials a grid will run, the GPUs each asks for, and an
//! estimate of its GPU-hours from the configured epochs and the epoch times measured on the
//! cluster's workers.
//!
//! The measure is GPU-seconds per epoch of finished and running trials of the same kind and
//! dataset: an attempt's wall time times the GPUs it held (1/K of one for a trial sharing
//! its GPU with K-1 others), divided by the epochs it completed. The estimate assumes that
//! this cost does not change with the number of GPUs (perfect data-parallel scaling) or with
//! the model's size within a kind, so it is a planning figure, not a promise; a kind and
//! dataset that nothing has measured yet is "unknown".

use prime_core::config::ConfigError;
use prime_core::dataset::Dataset;
use prime_core::eval_config::EvalConfig;
use prime_core::grid::GridSpec;
use prime_core::presets::method_config;
use prime_core::resources::Resources;
use prime_core::rnn_config::{RnnEvalConfig, RnnSearchConfig};
use prime_core::trial::{TrialKind, TrialSpec};
use prime_proto::pb;
use std::collections::HashMap;
use std::fmt::Write as _;

/// One trial of a grid as the plan shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTrial {
    /// `search darts cifar10 seed 101`, `eval ... (eval seed 0)`.
    pub name: String,
    /// Search or evaluation.
    pub kind: TrialKind,
    /// The dataset.
    pub dataset: Dataset,
    /// The GPUs it asks for.
    pub resources: Resources,
    /// Epochs it is configured to train.
    pub epochs: u32,
}

/// The trials of `grid`: its searches, each followed by the evaluations it will spawn.
pub fn planned_trials(grid: &GridSpec) -> anyhow::Result<Vec<PlannedTrial>> {
    let mut trials = Vec::new();
    for search in grid.search_trials() {
        let evaluations = search.evaluation_trials(&serde_json::Value::Null)?;
        for spec in std::iter::once(&search).chain(&evaluations) {
            trials.push(PlannedTrial {
                name: spec.describe(),
                kind: spec.kind,
                dataset: spec.dataset,
                resources: spec.resources(),
                epochs: configured_epochs(spec)
                    .map_err(|error| anyhow::anyhow!("{}: {error}", spec.describe()))?,
            });
        }
    }
    Ok(trials)
}

/// The epochs `spec` trains: its own setting, else its preset's or the evaluation default.
fn configured_epochs(spec: &TrialSpec) -> Result<u32, ConfigError> {
    if let Some(epochs) = spec.settings.epochs {
        return Ok(epochs);
    }
    let recurrent = spec.dataset.uses_perplexity();
    Ok(match (spec.kind, recurrent) {
        (TrialKind::Search, false) => method_config(&spec.method, &[])?.epochs,
        (TrialKind::Search, true) => {
            RnnSearchConfig::from_method(&method_config(&spec.method, &[])?)?.epochs
        }
        (TrialKind::Evaluation, false) => EvalConfig::default().epochs,
        (TrialKind::Evaluation, true) => RnnEvalConfig::default().epochs,
    })
}

/// GPU-seconds per epoch measured on the cluster, by kind and dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasuredCosts {
    seconds: HashMap<(TrialKind, Dataset), f64>,
}

impl MeasuredCosts {
    /// The mean GPU-seconds per epoch of every listed trial that completed an epoch.
    pub fn from_trials(trials: &[pb::TrialView]) -> MeasuredCosts {
        let mut sums: HashMap<(TrialKind, Dataset), (f64, u32)> = HashMap::new();
        for trial in trials {
            let Ok(spec) = trial.trial_spec() else {
                continue;
            };
            let epochs = trial.progress.as_ref().map_or(0, |p| p.epochs_done);
            if epochs == 0 || !trial.run_seconds.is_finite() || trial.run_seconds <= 0.0 {
                continue;
            }
            let gpu_seconds = trial.run_seconds * spec.resources().gpu_fraction();
            let entry = sums.entry((spec.kind, spec.dataset)).or_default();
            entry.0 += gpu_seconds / f64::from(epochs);
            entry.1 += 1;
        }
        MeasuredCosts {
            seconds: sums
                .into_iter()
                .map(|(key, (sum, count))| (key, sum / f64::from(count)))
                .collect(),
        }
    }

    /// The estimated GPU-hours of `trial`; `None` where nothing of its kind was measured.
    pub fn gpu_hours(&self, trial: &PlannedTrial) -> Option<f64> {
        self.seconds
            .get(&(trial.kind, trial.dataset))
            .map(|seconds| seconds * f64::from(trial.epochs) / 3600.0)
    }
}

/// The plan as a table with a total line.
pub fn render(trials: &[PlannedTrial], costs: &MeasuredCosts) -> String {
    let width = trials
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:width$}  {:>9}  {:>6}  {:>9}\n",
        "TRIAL", "GPUS", "EPOCHS", "GPU-HOURS"
    );
    let (mut total, mut unknown) = (0.0, 0);
    for trial in trials {
        let hours = costs.gpu_hours(trial);
        let shown = hours.map_or("unknown".to_string(), |hours| format!("{hours:.2}"));
        total += hours.unwrap_or(0.0);
        unknown += usize::from(hours.is_none());
        let _ = writeln!(
            out,
            "{:width$}  {:>9}  {:>6}  {:>9}",
            trial.name,
            trial.resources.to_string(),
            trial.epochs,
            shown
        );
    }
    let _ = match unknown {
        0 => writeln!(out, "{} trials, about {total:.2} GPU-hours", trials.len()),
        _ if unknown == trials.len() => writeln!(
            out,
            "{} trials, GPU-hours unknown: no trial of their kind has run on this cluster yet",
            trials.len()
        ),
        _ => writeln!(
            out,
            "{} trials, about {total:.2} GPU-hours for {} of them; unknown for {unknown} \
             (no trial of their kind has run on this cluster yet)",
            trials.len(),
            trials.len() - unknown
        ),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: &str = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [1, 2]\n\
                        [[methods]]\npreset = \"darts\"\n[search]\ngpu_share = 4\n\
                        [evaluation]\ngpus = 2\nrun = { epochs = 30 }\n";

    fn view(spec: &TrialSpec, run_seconds: f64, epochs_done: u32) -> pb::TrialView {
        pb::TrialView {
            spec: Some(spec.into()),
            run_seconds,
            progress: Some(pb::Progress {
                epochs_done,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_grid_plans_its_searches_and_their_evaluations_with_their_gpus() {
        let grid = GridSpec::parse("g.toml", GRID).unwrap();
        let trials = planned_trials(&grid).unwrap();
        assert_eq!(trials.len(), 4);
        assert_eq!(trials[0].name, "search darts cifar10 seed 1");
        assert_eq!(trials[0].resources.to_string(), "1/4 GPU");
        assert_eq!(trials[0].epochs, 50, "the preset's epochs");
        assert_eq!(trials[1].kind, TrialKind::Evaluation);
        assert_eq!(trials[1].resources.to_string(), "2 GPUs");
        assert_eq!(trials[1].epochs, 30);
    }

    #[test]
    fn gpu_hours_come_from_measured_epochs_or_are_unknown() {
        let grid = GridSpec::parse("g.toml", GRID).unwrap();
        let trials = planned_trials(&grid).unwrap();
        let search = &grid.search_trials()[0];
        // A shared search: 2 epochs in 1,440 s on a quarter GPU = 180 GPU-s per epoch.
        let costs = MeasuredCosts::from_trials(&[view(search, 1440.0, 2), view(search, 500.0, 0)]);
        assert_eq!(costs.gpu_hours(&trials[0]), Some(180.0 * 50.0 / 3600.0));
        assert_eq!(costs.gpu_hours(&trials[1]), None);
        let table = render(&trials, &costs);
        assert!(table.contains("1/4 GPU"), "{table}");
        assert!(table.contains("2.50"), "{table}");
        assert!(table.contains("unknown"), "{table}");
        assert!(
            table.ends_with("4 trials, about 5.00 GPU-hours for 2 of them; unknown for 2 (no trial of their kind has run on this cluster yet)\n"),
            "{table}"
        );
        let nothing = render(&trials, &MeasuredCosts::default());
        assert!(
            nothing.ends_with(
                "GPU-hours unknown: no trial of their kind has run on this cluster yet\n"
            ),
            "{nothing}"
        );
    }
}
