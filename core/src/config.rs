//! The search configuration: TOML, `version = 1`, unknown keys rejected, validated once at
//! load with the field path in every error. Every default is the paper's CIFAR setting
//! (SPEC 3.1).

use crate::dataset::DatasetKind;
use crate::primitives::Activation;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The only config format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// A configuration error: where it came from and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {source}")]
    Read {
        /// File name.
        origin: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type (the message has line and
    /// column).
    #[error("{origin}: {message}")]
    Parse {
        /// File name or other origin.
        origin: String,
        /// Parser message with line, column and field.
        message: String,
    },
    /// A value outside its range.
    #[error("{origin}: field `{field}`: {message}")]
    Invalid {
        /// File name or other origin.
        origin: String,
        /// Dotted field path.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A malformed `--set key=value` override.
    #[error("override `{text}`: {message}")]
    Override {
        /// The override as given.
        text: String,
        /// What was expected.
        message: String,
    },
}

/// Behaviour where the reference code has a bug or differs from the paper (SPEC section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compat {
    /// Bug-for-bug with the authors' code, to reproduce their numbers.
    #[default]
    Reference,
    /// The recommended behaviour.
    Fixed,
}

/// How the alpha minibatches are drawn (SPEC A11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlphaBatchPolicy {
    /// A persistent per-epoch iterator, recreated when exhausted (the authors' code).
    #[default]
    Persistent,
    /// An independent random batch for every alpha step (original DARTS).
    Random,
}

/// First-order or unrolled (second-order) architecture gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchOrder {
    /// Gradient at the current weights.
    #[default]
    First,
    /// DARTS's unrolled gradient (SPEC 3.7).
    Second,
}

/// When architecture steps happen (SPEC 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// One alpha step before every weight step.
    #[default]
    Alternate,
    /// One alpha step every `ratio` weight steps (CS-k).
    Constant,
    /// The FIMT-triggered dynamic schedule.
    Fimt,
}

/// The regularizer added to the alpha loss (SPEC 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegularizerKind {
    /// None (plain DARTS).
    #[default]
    None,
    /// Proximity regularization with a linearly growing coefficient.
    Prox,
    /// ADMM with Z and U.
    Admm,
}

/// Data settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset.
    pub dataset: DatasetKind,
    /// Minibatch size of weight and alpha batches.
    pub batch_size: usize,
    /// Fraction of the training images used for weights; the rest is for alphas.
    pub train_portion: f64,
    /// Split r/(r+1) with r = `schedule.ratio` instead of `train_portion` (SPEC 3.2).
    pub dynamic_split: bool,
    /// Use only the first N training images (small demos); none = all.
    pub limit: Option<usize>,
    /// Cutout augmentation (off in search).
    pub cutout: bool,
    /// Cutout square side.
    pub cutout_length: usize,
    /// Batches decoded ahead of the training thread, per stream.
    pub prefetch: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Cifar10,
            batch_size: 64,
            train_portion: 0.5,
            dynamic_split: false,
            limit: None,
            cutout: false,
            cutout_length: 16,
            prefetch: 4,
        }
    }
}

/// Search-network shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Initial channels C.
    pub init_channels: i64,
    /// Number of cells.
    pub layers: i64,
    /// Intermediate nodes per cell.
    pub steps: usize,
    /// States concatenated into a cell's output.
    pub multiplier: usize,
    /// Stem width factor.
    pub stem_multiplier: i64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            init_channels: 16,
            layers: 8,
            steps: 4,
            multiplier: 4,
            stem_multiplier: 3,
        }
    }
}

/// The weight optimizer (SGD with momentum) and its cosine schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightsConfig {
    /// Initial learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    pub lr_min: f64,
    /// Epoch e trains with lr(e + lr_offset): 1 = authors' code, 0 = original DARTS.
    pub lr_offset: u32,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        Self {
            lr: 0.025,
            lr_min: 0.001,
            lr_offset: 1,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
        }
    }
}

/// The architecture parameters and their optimizer (Adam).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchConfig {
    /// Activation of alpha.
    pub activation: Activation,
    /// Adam learning rate (constant).
    pub lr: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Adam epsilon.
    pub eps: f64,
    /// L2 weight decay of alpha (forced to 0 with CRB).
    pub weight_decay: f64,
    /// First or second order.
    pub order: ArchOrder,
    /// How alpha batches are drawn.
    pub batch_policy: AlphaBatchPolicy,
}

impl Default for ArchConfig {
    fn default() -> Self {
        Self {
            activation: Activation::Softmax,
            lr: 3e-4,
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-3,
            order: ArchOrder::First,
            batch_policy: AlphaBatchPolicy::Persistent,
        }
    }
}

/// The schedule of alpha steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Which schedule.
    pub kind: ScheduleKind,
    /// r: weight steps per alpha step (CS-k period; FIMT ratio).
    pub ratio: u32,
    /// FIMT initial threshold h0.
    pub h0: f64,
    /// FIMT threshold growth h_i per iteration without an alpha step.
    pub hi: f64,
    /// FIMT EWMA coefficient lambda.
    pub ewma: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Alternate,
            ratio: 1,
            h0: 1.0,
            hi: 1.05,
            ewma: 0.2,
        }
    }
}

/// The alpha regularizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegularizerConfig {
    /// Which regularizer.
    pub kind: RegularizerKind,
    /// rho.
    pub rho: f64,
    /// ADMM: Z/U update every this many alpha steps.
    pub admm_freq: u32,
    /// ADMM: discount lambda_u of U.
    pub admm_discount: f64,
}

impl Default for RegularizerConfig {
    fn default() -> Self {
        Self {
            kind: RegularizerKind::None,
            rho: 0.1,
            admm_freq: 10,
            admm_discount: 1.0,
        }
    }
}

/// When checkpoints are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Every this many epochs (0 = only at the end).
    pub every_epochs: u32,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { every_epochs: 1 }
    }
}

/// Everything a search run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Format version; must be 1.
    pub version: u32,
    /// Method name, for the record (a preset name or anything).
    #[serde(default = "default_method")]
    pub method: String,
    /// Random seed (weights, alphas, data order, augmentation).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Reference or fixed behaviour of the reference code's quirks.
    #[serde(default)]
    pub compat: Compat,
    /// Number of epochs.
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Data.
    #[serde(default)]
    pub data: DataConfig,
    /// Network shape.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Weight optimizer.
    #[serde(default)]
    pub weights: WeightsConfig,
    /// Architecture parameters.
    #[serde(default)]
    pub arch: ArchConfig,
    /// Alpha-step schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Alpha regularizer.
    #[serde(default)]
    pub regularizer: RegularizerConfig,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

fn default_method() -> String {
    "darts".to_string()
}

fn default_seed() -> u64 {
    2
}

fn default_epochs() -> u32 {
    50
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            method: default_method(),
            seed: default_seed(),
            compat: Compat::default(),
            epochs: default_epochs(),
            data: DataConfig::default(),
            network: NetworkConfig::default(),
            weights: WeightsConfig::default(),
            arch: ArchConfig::default(),
            schedule: ScheduleConfig::default(),
            regularizer: RegularizerConfig::default(),
            checkpoint: CheckpointConfig::default(),
        }
    }
}

impl SearchConfig {
    /// Reads and validates a config file, applying `overrides` (`key=value`, dotted keys).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_toml(&text, &origin, overrides)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let parse_error = |origin: &str, error: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: error.to_string(),
        };
        // Parsing the text itself first keeps line and column in the file's errors.
        let mut config: SearchConfig =
            toml::from_str(text).map_err(|error| parse_error(origin, error))?;
        if !overrides.is_empty() {
            let mut table: toml::Table =
                text.parse().map_err(|error| parse_error(origin, error))?;
            for text in overrides {
                apply_override(&mut table, text)?;
            }
            let origin = format!("{origin} (with --set overrides)");
            config = toml::Value::Table(table)
                .try_into()
                .map_err(|error| parse_error(&origin, error))?;
            config.validate(&origin)?;
            return Ok(config);
        }
        config.validate(origin)?;
        Ok(config)
    }

    /// The config as TOML text (written next to a run's artifacts).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The fraction of training images used for weight steps.
    pub fn weight_portion(&self) -> f64 {
        if self.data.dynamic_split {
            let r = f64::from(self.schedule.ratio);
            1.0 - 1.0 / (1.0 + r)
        } else {
            self.data.train_portion
        }
    }

    /// Checks every range; the error names the field.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| {
            Err(ConfigError::Invalid {
                origin: origin.to_string(),
                field: field.to_string(),
                message: message.to_string(),
            })
        };
        if self.version != CONFIG_VERSION {
            return invalid(
                "version",
                "expected 1 (the only config version this build reads)",
            );
        }
        if self.epochs == 0 {
            return invalid("epochs", "expected at least 1");
        }
        if self.data.batch_size == 0 {
            return invalid("data.batch_size", "expected at least 1");
        }
        if !(self.data.train_portion > 0.0 && self.data.train_portion < 1.0) {
            return invalid(
                "data.train_portion",
                "expected a fraction strictly between 0 and 1",
            );
        }
        if self.data.limit == Some(0) {
            return invalid("data.limit", "expected at least 1 image (or no limit)");
        }
        if self.data.cutout_length == 0 || self.data.cutout_length > 32 {
            return invalid("data.cutout_length", "expected 1..=32 pixels");
        }
        if self.data.prefetch == 0 {
            return invalid("data.prefetch", "expected at least 1 batch");
        }
        let network = &self.network;
        if network.init_channels < 2 || network.init_channels % 2 != 0 {
            return invalid(
                "network.init_channels",
                "expected an even number >= 2 (factorized reductions halve channels)",
            );
        }
        if network.layers < 3 {
            return invalid(
                "network.layers",
                "expected at least 3 (two reduction cells and a normal one)",
            );
        }
        if network.steps == 0 {
            return invalid("network.steps", "expected at least 1 node per cell");
        }
        if network.multiplier == 0 || network.multiplier > network.steps {
            return invalid("network.multiplier", "expected 1..=network.steps");
        }
        if network.stem_multiplier < 1 {
            return invalid("network.stem_multiplier", "expected at least 1");
        }
        let weights = &self.weights;
        if !positive(weights.lr) || !non_negative(weights.lr_min) || weights.lr_min > weights.lr {
            return invalid("weights.lr", "expected lr > 0 and 0 <= lr_min <= lr");
        }
        if weights.lr_offset > 1 {
            return invalid(
                "weights.lr_offset",
                "expected 0 (original DARTS) or 1 (authors' code)",
            );
        }
        if !(0.0..1.0).contains(&weights.momentum) {
            return invalid("weights.momentum", "expected 0 <= momentum < 1");
        }
        if !non_negative(weights.weight_decay) {
            return invalid("weights.weight_decay", "expected >= 0");
        }
        if !positive(weights.grad_clip) {
            return invalid("weights.grad_clip", "expected > 0");
        }
        let arch = &self.arch;
        if !positive(arch.lr) {
            return invalid("arch.lr", "expected > 0");
        }
        if !(0.0..1.0).contains(&arch.beta1) || !(0.0..1.0).contains(&arch.beta2) {
            return invalid("arch.beta1", "expected betas in [0, 1)");
        }
        if !positive(arch.eps) || !non_negative(arch.weight_decay) {
            return invalid("arch.eps", "expected eps > 0 and weight_decay >= 0");
        }
        let schedule = &self.schedule;
        if schedule.ratio == 0 {
            return invalid("schedule.ratio", "expected at least 1");
        }
        if !positive(schedule.h0) {
            return invalid("schedule.h0", "expected > 0");
        }
        if !(schedule.hi.is_finite() && schedule.hi > 1.0) {
            return invalid("schedule.hi", "expected > 1");
        }
        if !(schedule.ewma > 0.0 && schedule.ewma <= 1.0) {
            return invalid("schedule.ewma", "expected 0 < ewma <= 1");
        }
        let regularizer = &self.regularizer;
        if !non_negative(regularizer.rho) {
            return invalid("regularizer.rho", "expected >= 0");
        }
        if regularizer.admm_freq == 0 {
            return invalid("regularizer.admm_freq", "expected at least 1");
        }
        if !(0.0..=1.0).contains(&regularizer.admm_discount) {
            return invalid("regularizer.admm_discount", "expected 0 <= lambda_u <= 1");
        }
        Ok(())
    }
}

/// Whether `value` is a number greater than 0 (false for NaN).
fn positive(value: f64) -> bool {
    value > 0.0
}

/// Whether `value` is a number not below 0 (false for NaN).
fn non_negative(value: f64) -> bool {
    value >= 0.0
}

/// Sets `key=value` in `table`; the value is read as TOML (number, bool, string...) and as a
/// bare string otherwise.
pub fn apply_override(table: &mut toml::Table, text: &str) -> Result<(), ConfigError> {
    let fail = |message: &str| ConfigError::Override {
        text: text.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| fail("expected key=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(fail("expected a dotted key such as data.batch_size"));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut parsed| parsed.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| fail(&format!("`{part}` is not a table")))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_the_paper_defaults() {
        let config = SearchConfig::from_toml("version = 1\n", "t.toml", &[]).unwrap();
        assert_eq!(config, SearchConfig::default());
        assert_eq!(config.data.batch_size, 64);
        assert_eq!(config.weights.lr_min, 0.001);
    }

    #[test]
    fn overrides_set_nested_values_with_types() {
        let overrides = vec![
            "data.batch_size=16".to_string(),
            "arch.activation=crb".to_string(),
            "seed = 101".to_string(),
            "data.dataset=\"cifar100\"".to_string(),
        ];
        let config = SearchConfig::from_toml("version = 1\n", "t.toml", &overrides).unwrap();
        assert_eq!(config.data.batch_size, 16);
        assert_eq!(config.arch.activation, Activation::Crb);
        assert_eq!(config.seed, 101);
        assert_eq!(config.data.dataset, DatasetKind::Cifar100);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_place() {
        let error = SearchConfig::from_toml("version = 1\n[data]\nbatchsize = 3\n", "a.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("a.toml"), "{error}");
        assert!(error.contains("batchsize"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        let error =
            SearchConfig::from_toml("version = 1\n[data]\ntrain_portion = 1.5\n", "b.toml", &[])
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("b.toml: field `data.train_portion`"),
            "{error}"
        );
        let error = SearchConfig::from_toml("version = 2\n", "c.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `version`"), "{error}");
        let error = SearchConfig::from_toml("version = 1\n", "d.toml", &["nokey".to_string()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected key=value"), "{error}");
    }

    #[test]
    fn dynamic_split_uses_the_schedule_ratio() {
        let mut config = SearchConfig::default();
        config.data.dynamic_split = true;
        config.schedule.ratio = 10;
        let split = (config.weight_portion() * 50_000.0).floor() as usize;
        assert_eq!(split, 45_454);
    }

    #[test]
    fn config_round_trips_through_toml() {
        let mut config = SearchConfig::default();
        config.data.limit = Some(500);
        let text = config.to_toml();
        assert_eq!(SearchConfig::from_toml(&text, "x", &[]).unwrap(), config);
    }
}
