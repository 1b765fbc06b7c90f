//! The CNN architecture search (SPEC section 3): the scheduled search as a [`Task`] of the
//! run driver ([`task`]), its trainer, the FIMT schedule and the regularizers.
//!
//! The run directory holds `config.toml`, `metrics.jsonl`, `alphas.jsonl` (act(alpha) after
//! every weight step), `genotypes.jsonl` (genotype at the start of every epoch),
//! `checkpoints/`, and at the end `genotype.json` / `genotype.txt` and `summary.json`.
//!
//! [`Task`]: crate::run::Task

pub(crate) mod pending;
pub mod regularizer;
pub mod schedule;
pub mod task;
pub mod trainer;

use crate::data::load_cifar;
use crate::error::RunError;
use crate::run::{self, RunOptions};
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::genotype::projection::derive_genotype;
use prime_core::genotype::Genotype;
use prime_core::observer::RunObserver;
use serde::{Deserialize, Serialize};
use tch::Device;
use trainer::SearchTrainer;

/// What a search produced.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    /// The genotype of the final alphas (or of the alphas when the run was stopped).
    pub genotype: Genotype,
    /// Whether every epoch ran (false when the observer stopped the run).
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// Inference accuracy (%) on the alpha split after the last completed epoch.
    pub valid_acc: Option<f64>,
    /// Inference loss on the alpha split after the last completed epoch.
    pub valid_loss: Option<f64>,
    /// Alpha steps taken over the whole run.
    pub alpha_steps: u64,
}

/// One line of `alphas.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaRecord {
    /// Global weight steps done when the values were taken.
    pub step: u64,
    /// Fractional epochs.
    pub clock: f64,
    /// act(alpha) of the normal cells, (edges, ops).
    pub normal: Vec<Vec<f32>>,
    /// act(alpha) of the reduction cells.
    pub reduce: Vec<Vec<f32>>,
}

/// Runs (or resumes) a search as configured, writing into `options.run_dir`.
pub fn run_search(
    config: &SearchConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<SearchOutcome, RunError> {
    run::run(task::SearchTask::new(config, options)?, options, observer)
}

/// Runs (or resumes) a search as configured on `devices`: on one device as [`run_search`]
/// (on that device), on several data-parallel, one rank per device (each device replaces
/// `options.device` for its rank), every weight and alpha step sharding the global batch of
/// the single-device run. Collectives time out after [`crate::parallel::DEFAULT_COLLECTIVE_TIMEOUT`].
pub fn run_search_data_parallel(
    devices: &[Device],
    config: &SearchConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<SearchOutcome, RunError> {
    run::run_on_devices(
        devices,
        options,
        observer,
        |options| task::SearchTask::new(config, options),
        || {
            config.validate("search config")?;
            Ok(load_cifar(
                &options.data_dir,
                config.data.dataset,
                options.download,
            )?)
        },
        |ranks, options, data| task::SearchTask::new_rank(config, options, ranks, data),
    )
}

/// The genotype of the current alphas (SPEC 2).
pub fn current_genotype(trainer: &SearchTrainer) -> Result<Genotype, RunError> {
    let (normal, reduce) = trainer.arch().activated_rows();
    let primitives = trainer.arch().activation.primitives();
    derive_genotype(&normal, &reduce, primitives)
        .map(|(genotype, _, _)| genotype)
        .map_err(|error| RunError::Projection(error.to_string()))
}
