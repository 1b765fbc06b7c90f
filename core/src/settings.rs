//! Training settings a grid gives its trials: the run settings layered over a method preset,
//! the data source, and how a search's genotype is evaluated. A leaf of the crate: grids
//! write these and trial specs carry them, so both import them from here and not from each
//! other.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Most config values one settings table may set by key.
pub const MAX_SET_KEYS: usize = 64;

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
    /// GPUs the run trains on, all on one worker (data-parallel), 1..=64; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Runs of this kind that may share one GPU, 1..=64; default 1 (a GPU of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_share: Option<u32>,
    /// Further config values by the key `--set` takes (`schedule.h0`, `network.init_channels`),
    /// applied after the fields above; at most `MAX_SET_KEYS`. A grid writes them as
    /// `set.schedule.h0 = 4.0` or as a `[search.set]` table; nested tables become dotted keys.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "dotted_keys"
    )]
    pub set: BTreeMap<String, toml::Value>,
}

/// Reads a table of config values, turning nested tables into dotted keys.
fn dotted_keys<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, toml::Value>, D::Error> {
    fn flatten(prefix: &str, table: toml::Table, into: &mut BTreeMap<String, toml::Value>) {
        for (key, value) in table {
            let key = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => flatten(&key, inner, into),
                value => {
                    into.insert(key, value);
                }
            }
        }
    }
    let mut keys = BTreeMap::new();
    flatten("", toml::Table::deserialize(deserializer)?, &mut keys);
    Ok(keys)
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
            gpus: overrides.gpus.or(self.gpus),
            gpu_share: overrides.gpu_share.or(self.gpu_share),
            set: self
                .set
                .iter()
                .chain(&overrides.set)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        }
    }

    /// The `set` values as `--set` overrides (`key=value`, the value as TOML).
    pub fn set_overrides(&self) -> Vec<String> {
        self.set
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect()
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
    /// GPUs each evaluation run trains on (`gpus` under `[evaluation]`), 1..=64; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Evaluation runs that may share one GPU, 1..=64; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_share: Option<u32>,
    /// Settings of the evaluation runs (their GPUs are the two fields above).
    #[serde(default)]
    pub run: RunSettings,
}

impl EvaluationSettings {
    /// The settings of each evaluation run: `run` with the GPUs of `[evaluation]`.
    pub fn run_settings(&self) -> RunSettings {
        RunSettings {
            gpus: self.gpus.or(self.run.gpus),
            gpu_share: self.gpu_share.or(self.run.gpu_share),
            ..self.run.clone()
        }
    }
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_dotted_set_keys_read_alike_and_merge_by_key() {
        let nested: RunSettings =
            toml::from_str("epochs = 2\n[set.schedule]\nh0 = 4.0\n[set.data]\nlimit = 64\n")
                .unwrap();
        let dotted: RunSettings =
            toml::from_str("epochs = 2\nset = { \"schedule.h0\" = 4.0, \"data.limit\" = 64 }\n")
                .unwrap();
        assert_eq!(nested, dotted);
        assert_eq!(nested.set_overrides(), ["data.limit=64", "schedule.h0=4.0"]);
        let json = serde_json::to_string(&nested).unwrap();
        assert_eq!(serde_json::from_str::<RunSettings>(&json).unwrap(), nested);
        let method: RunSettings = toml::from_str("set.schedule.h0 = 8.0\n").unwrap();
        let merged = nested.merged_with(&method);
        assert_eq!(merged.set_overrides(), ["data.limit=64", "schedule.h0=8.0"]);
        assert_eq!(merged.epochs, Some(2));
    }
}
