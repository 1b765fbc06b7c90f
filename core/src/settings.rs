//! Training settings a grid gives its trials: the run settings layered over a method preset,
//! the data source, and how a search's genotype is evaluated. A leaf of the crate: grids
//! write these and trial specs carry them, so both import them from here and not from each
//! other.

use serde::{Deserialize, Serialize};

/// Where a trial's training data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// The real dataset under the worker's data directory.
    Real,
    /// Small random data of the dataset's shape (demos and smoke tests).
    Synthetic,
}

/// Settings of one training run; every field is optional and falls back to the method preset.
/// The ranges are those of `crate::limits`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Training epochs, 1..=10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// Minibatch size, 1..=65,536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Channels of the first cell (CNN; the config also wants it even) or embedding size
    /// (RNN), 1..=2,048.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_channels: Option<u32>,
    /// Number of cells, 1..=256 (the CNN configs want at least 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,
    /// Proximity / ADMM coefficient rho, 0..=1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// `reference` (the authors' code) or `fixed` behaviour where they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compat: Option<String>,
    /// Real or synthetic data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSource>,
    /// Use only the first N training samples (small runs), 1..=100,000,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_samples: Option<u32>,
}

impl RunSettings {
    /// `self` with every field that `overrides` sets replaced.
    pub fn merged_with(&self, overrides: &RunSettings) -> RunSettings {
        RunSettings {
            epochs: overrides.epochs.or(self.epochs),
            batch_size: overrides.batch_size.or(self.batch_size),
            init_channels: overrides.init_channels.or(self.init_channels),
            layers: overrides.layers.or(self.layers),
            rho: overrides.rho.or(self.rho),
            compat: overrides.compat.clone().or_else(|| self.compat.clone()),
            data: overrides.data.or(self.data),
            train_samples: overrides.train_samples.or(self.train_samples),
        }
    }
}

/// How every genotype of a grid is evaluated (retrained from scratch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSettings {
    /// Evaluation runs per genotype, with seeds `first_seed`, `first_seed + 1`, ...; 1..=64.
    #[serde(default = "one")]
    pub seeds: u32,
    /// Seed of the first evaluation run (the paper's scripts use 0); any non-negative TOML
    /// integer (below 2^63).
    #[serde(default)]
    pub first_seed: u64,
    /// Settings of the evaluation runs.
    #[serde(default)]
    pub run: RunSettings,
}

fn one() -> u32 {
    1
}
