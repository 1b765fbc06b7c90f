//! The search configuration: TOML, `version = 1`, unknown keys rejected, validated once at
//! load with the field path in every error. Every default is the paper's CIFAR setting
//! (SPEC 3.1).

use crate::dataset::DatasetKind;
use crate::limits;
use crate::presets::{is_method, METHOD_NAMES};
use crate::primitives::Activation;
use crate::toml_spans::{line_column, SpanTree};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::ops::RangeInclusive;
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
    #[error("{origin}: {}{message}", field_prefix(.field))]
    Parse {
        /// File name or other origin.
        origin: String,
        /// Dotted path of the field the error points at; empty when unknown.
        field: String,
        /// Parser message with line and column.
        message: String,
    },
    /// A value outside its range.
    #[error("{origin}{}: field `{field}`: {message}", line_suffix(.line))]
    Invalid {
        /// File name or other origin.
        origin: String,
        /// 1-based line of the field in the file, when it is set there.
        line: Option<usize>,
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

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map_or(String::new(), |line| format!(":{line}"))
}

impl ConfigError {
    /// An `Invalid` error without a line.
    pub fn invalid(origin: &str, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.to_string(),
            line: None,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// What a config's `method` may say besides a preset name: settings that follow no preset.
pub const CUSTOM_METHOD: &str = "custom";

/// Range checks of one config: each failure names the config's origin and the field.
pub(crate) struct Checker<'a> {
    origin: &'a str,
}

impl<'a> Checker<'a> {
    /// Checks for the config read from `origin`.
    pub(crate) fn new(origin: &'a str) -> Self {
        Checker { origin }
    }

    /// `Err` naming `field` unless `ok`.
    pub(crate) fn ensure(&self, field: &str, ok: bool, message: &str) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(ConfigError::invalid(self.origin, field, message))
        }
    }

    /// `Err` naming `field` unless the integer `value` lies in `range`.
    pub(crate) fn count<T>(
        &self,
        field: &str,
        value: T,
        range: &RangeInclusive<u64>,
    ) -> Result<(), ConfigError>
    where
        T: TryInto<u64> + Display + Copy,
    {
        limits::check_count(value, range)
            .map_err(|message| ConfigError::invalid(self.origin, field, message))
    }

    /// `Err` naming `field` unless `value` lies in `range`.
    pub(crate) fn real(
        &self,
        field: &str,
        value: f64,
        range: &RangeInclusive<f64>,
    ) -> Result<(), ConfigError> {
        limits::check_real(value, range)
            .map_err(|message| ConfigError::invalid(self.origin, field, message))
    }

    /// `Err` unless `method` names a preset or is `custom`: the name labels results, run
    /// directories and figures, so a misspelt or invented one would mislabel them.
    pub(crate) fn method(&self, method: &str) -> Result<(), ConfigError> {
        let known = is_method(method) || method == CUSTOM_METHOD;
        self.ensure(
            "method",
            known,
            &format!(
                "unknown method `{method}`: expected one of {}, or `{CUSTOM_METHOD}` for \
                 settings that follow no preset",
                METHOD_NAMES.join(", ")
            ),
        )
    }
}

/// Whether `value` is a finite number greater than 0.
pub(crate) fn finite_positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

/// Whether `value` is a finite number not below 0.
pub(crate) fn finite_non_negative(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

/// Whether `value` is a probability-like fraction in [0, 1).
pub(crate) fn unit_fraction(value: f64) -> bool {
    (0.0..1.0).contains(&value)
}

/// Parses config `text` (keeping line, column and field in its errors), then applies
/// `overrides` (`key=value`, dotted keys).
pub(crate) fn parse_with_overrides<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<T, ConfigError> {
    let config: T = toml::from_str(text).map_err(|error| {
        let field = error
            .span()
            .and_then(|span| SpanTree::parse(text)?.field_at(&span))
            .unwrap_or_default();
        ConfigError::Parse {
            origin: origin.to_string(),
            field,
            message: error.to_string(),
        }
    })?;
    if overrides.is_empty() {
        return Ok(config);
    }
    let parse_error = |origin: &str, error: toml::de::Error| ConfigError::Parse {
        origin: origin.to_string(),
        field: String::new(),
        message: error.to_string(),
    };
    let mut table: toml::Table = text.parse().map_err(|error| parse_error(origin, error))?;
    for text in overrides {
        apply_override(&mut table, text)?;
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|error| parse_error(&overridden_origin(origin, overrides), error))
}

/// `origin`, marked as changed by `--set` when there are overrides.
pub(crate) fn overridden_origin(origin: &str, overrides: &[String]) -> String {
    if overrides.is_empty() {
        origin.to_string()
    } else {
        format!("{origin} (with --set overrides)")
    }
}

/// `error` with the line of its field in `text`, unless an override set that field.
pub(crate) fn locate(error: ConfigError, text: &str, overrides: &[String]) -> ConfigError {
    let ConfigError::Invalid {
        origin,
        line: None,
        field,
        message,
    } = error
    else {
        return error;
    };
    let overridden = overrides.iter().any(|text| {
        text.split_once('=')
            .is_some_and(|(key, _)| key.trim() == field)
    });
    let line = SpanTree::parse(text)
        .filter(|_| !overridden)
        .and_then(|spans| spans.span_of(&field))
        .map(|span| line_column(text, span.start).0);
    ConfigError::Invalid {
        origin,
        line,
        field,
        message,
    }
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
    /// Minibatch size of weight and alpha batches, 1..=65,536.
    pub batch_size: usize,
    /// Fraction of the training images used for weights (the rest is for alphas), strictly
    /// between 0 and 1.
    pub train_portion: f64,
    /// Split r/(r+1) with r = `schedule.ratio` instead of `train_portion` (SPEC 3.2).
    pub dynamic_split: bool,
    /// Use only the first N training images (small demos), 1..=100,000,000; none = all.
    pub limit: Option<usize>,
    /// Cutout augmentation (off in search).
    pub cutout: bool,
    /// Cutout square side in pixels, 1..=32.
    pub cutout_length: usize,
    /// Batches decoded ahead of the training thread, per stream, 1..=64.
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
    /// Initial channels C: even, 2..=2,048.
    pub init_channels: i64,
    /// Number of cells, 3..=256.
    pub layers: i64,
    /// Intermediate nodes per cell, 1..=16.
    pub steps: usize,
    /// States concatenated into a cell's output, 1..=steps.
    pub multiplier: usize,
    /// Stem width factor, 1..=16.
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
    /// Initial learning rate; finite, > 0.
    pub lr: f64,
    /// Final learning rate of the cosine schedule, 0..=lr.
    pub lr_min: f64,
    /// Epoch e trains with lr(e + lr_offset): 1 = authors' code, 0 = original DARTS.
    pub lr_offset: u32,
    /// SGD momentum, in [0, 1).
    pub momentum: f64,
    /// L2 weight decay; finite, >= 0.
    pub weight_decay: f64,
    /// Global gradient-norm clip; finite, > 0.
    pub grad_clip: f64,
}

/// The alpha optimizer's Adam settings, checked alike by the CNN and the recurrent search.
pub(crate) struct AdamSettings {
    pub(crate) lr: f64,
    pub(crate) beta1: f64,
    pub(crate) beta2: f64,
    pub(crate) eps: f64,
    pub(crate) weight_decay: f64,
}

impl AdamSettings {
    /// Checks each setting against the range documented on the `arch` fields.
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        let arch = self;
        check.ensure(
            "arch.lr",
            finite_positive(arch.lr),
            "expected a finite number > 0",
        )?;
        check.ensure(
            "arch.beta1",
            unit_fraction(arch.beta1),
            "expected 0 <= beta1 < 1",
        )?;
        check.ensure(
            "arch.beta2",
            unit_fraction(arch.beta2),
            "expected 0 <= beta2 < 1",
        )?;
        check.ensure(
            "arch.eps",
            finite_positive(arch.eps),
            "expected a finite number > 0",
        )?;
        check.ensure(
            "arch.weight_decay",
            finite_non_negative(arch.weight_decay),
            "expected a finite number >= 0",
        )?;
        Ok(())
    }
}

impl WeightsConfig {
    /// Checks every field against its documented range (the evaluation's optimizer too).
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        let weights = self;
        check.ensure(
            "weights.lr",
            finite_positive(weights.lr),
            "expected a finite number > 0",
        )?;
        check.ensure(
            "weights.lr_min",
            finite_non_negative(weights.lr_min) && weights.lr_min <= weights.lr,
            "expected 0 <= lr_min <= lr",
        )?;
        check.ensure(
            "weights.lr_offset",
            weights.lr_offset <= 1,
            "expected 0 (original DARTS) or 1 (authors' code)",
        )?;
        check.ensure(
            "weights.momentum",
            unit_fraction(weights.momentum),
            "expected 0 <= momentum < 1",
        )?;
        check.ensure(
            "weights.weight_decay",
            finite_non_negative(weights.weight_decay),
            "expected a finite number >= 0",
        )?;
        check.ensure(
            "weights.grad_clip",
            finite_positive(weights.grad_clip),
            "expected a finite number > 0",
        )?;
        Ok(())
    }
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
    /// Adam learning rate (constant); finite, > 0.
    pub lr: f64,
    /// Adam beta1, in [0, 1).
    pub beta1: f64,
    /// Adam beta2, in [0, 1).
    pub beta2: f64,
    /// Adam epsilon; finite, > 0.
    pub eps: f64,
    /// L2 weight decay of alpha (forced to 0 with CRB); finite, >= 0.
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
    /// r: weight steps per alpha step (CS-k period; FIMT ratio), 1..=1,000.
    pub ratio: u32,
    /// FIMT initial threshold h0; finite, > 0.
    pub h0: f64,
    /// FIMT threshold growth h_i per iteration without an alpha step; finite, > 1.
    pub hi: f64,
    /// FIMT EWMA coefficient lambda, in (0, 1].
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
    /// rho, 0..=1,000.
    pub rho: f64,
    /// ADMM: Z/U update every this many alpha steps, 1..=100,000.
    pub admm_freq: u32,
    /// ADMM: discount lambda_u of U, in [0, 1].
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
    /// Every this many epochs, 0..=10,000 (0 = only at the end).
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
    /// Method name, for the record: a preset name (`prime_core::presets::METHOD_NAMES`), or
    /// `custom` for settings that follow no preset. It labels run directories, results and
    /// figures and selects nothing: the other fields say what runs.
    #[serde(default = "default_method")]
    pub method: String,
    /// Random seed (weights, alphas, data order, augmentation).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Reference or fixed behaviour of the reference code's quirks.
    #[serde(default)]
    pub compat: Compat,
    /// Number of epochs, 1..=10,000.
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
        let config: SearchConfig = parse_with_overrides(text, origin, overrides)?;
        config
            .validate(&overridden_origin(origin, overrides))
            .map_err(|error| locate(error, text, overrides))?;
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

    /// Checks every range (documented on each field); the error names the field.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check.ensure(
            "version",
            self.version == CONFIG_VERSION,
            "expected 1 (the only config version this build reads)",
        )?;
        check.method(&self.method)?;
        check.count("epochs", self.epochs, &limits::EPOCHS)?;
        let data = &self.data;
        check.count("data.batch_size", data.batch_size, &limits::BATCH_SIZE)?;
        check.ensure(
            "data.train_portion",
            data.train_portion > 0.0 && data.train_portion < 1.0,
            "expected a fraction strictly between 0 and 1",
        )?;
        if let Some(limit) = data.limit {
            check.count("data.limit", limit, &limits::TRAIN_SAMPLES)?;
        }
        check.count(
            "data.cutout_length",
            data.cutout_length,
            &limits::CUTOUT_LENGTH,
        )?;
        check.count("data.prefetch", data.prefetch, &limits::PREFETCH)?;
        let network = &self.network;
        check.count(
            "network.init_channels",
            network.init_channels,
            &limits::CNN_WIDTH,
        )?;
        check.ensure(
            "network.init_channels",
            network.init_channels % 2 == 0,
            "expected an even number (factorized reductions halve channels)",
        )?;
        check.count("network.layers", network.layers, &limits::CNN_LAYERS)?;
        check.count("network.steps", network.steps, &limits::CELL_STEPS)?;
        check.count(
            "network.multiplier",
            network.multiplier,
            &(1..=network.steps as u64),
        )?;
        check.count(
            "network.stem_multiplier",
            network.stem_multiplier,
            &limits::STEM_MULTIPLIER,
        )?;
        self.weights.validate(&check)?;
        let arch = &self.arch;
        AdamSettings {
            lr: arch.lr,
            beta1: arch.beta1,
            beta2: arch.beta2,
            eps: arch.eps,
            weight_decay: arch.weight_decay,
        }
        .validate(&check)?;
        let schedule = &self.schedule;
        check_schedule(
            &check,
            schedule.ratio,
            schedule.h0,
            schedule.hi,
            schedule.ewma,
        )?;
        let regularizer = &self.regularizer;
        check.real("regularizer.rho", regularizer.rho, &limits::RHO)?;
        check.count(
            "regularizer.admm_freq",
            regularizer.admm_freq,
            &limits::ADMM_FREQ,
        )?;
        check.ensure(
            "regularizer.admm_discount",
            (0.0..=1.0).contains(&regularizer.admm_discount),
            "expected 0 <= lambda_u <= 1",
        )?;
        check.count(
            "checkpoint.every_epochs",
            self.checkpoint.every_epochs,
            &limits::CHECKPOINT_EVERY_EPOCHS,
        )
    }
}

/// Checks the alpha-step schedule's values (shared by the CNN and RNN searches).
pub(crate) fn check_schedule(
    check: &Checker<'_>,
    ratio: u32,
    h0: f64,
    hi: f64,
    ewma: f64,
) -> Result<(), ConfigError> {
    check.count("schedule.ratio", ratio, &limits::SCHEDULE_RATIO)?;
    check.ensure(
        "schedule.h0",
        finite_positive(h0),
        "expected a finite number > 0",
    )?;
    check.ensure(
        "schedule.hi",
        hi.is_finite() && hi > 1.0,
        "expected a finite number > 1",
    )?;
    check.ensure(
        "schedule.ewma",
        ewma > 0.0 && ewma <= 1.0,
        "expected 0 < ewma <= 1",
    )
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
            error.contains("b.toml:3: field `data.train_portion`"),
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

    fn error_of(text: &str, overrides: &[&str]) -> String {
        let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
        SearchConfig::from_toml(text, "t.toml", &overrides)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn numbers_out_of_range_name_file_line_and_field() {
        let cases = [
            (
                "epochs = 4294967295",
                "t.toml:2: field `epochs`: must be between 1 and 10000",
            ),
            (
                "[data]\nbatch_size = 4294967295",
                "t.toml:3: field `data.batch_size`",
            ),
            (
                "[data]\nprefetch = 100000",
                "t.toml:3: field `data.prefetch`",
            ),
            (
                "[network]\ninit_channels = 4096",
                "t.toml:3: field `network.init_channels`",
            ),
            (
                "[network]\nlayers = 4294967295",
                "t.toml:3: field `network.layers`",
            ),
            ("[network]\nsteps = 1000", "t.toml:3: field `network.steps`"),
            (
                "[weights]\ngrad_clip = inf",
                "t.toml:3: field `weights.grad_clip`",
            ),
            (
                "[weights]\nlr = 0.1\nlr_min = 0.5",
                "t.toml:4: field `weights.lr_min`",
            ),
            ("[arch]\nbeta2 = 1.0", "t.toml:3: field `arch.beta2`"),
            (
                "[arch]\nweight_decay = -1.0",
                "t.toml:3: field `arch.weight_decay`",
            ),
            (
                "[schedule]\nratio = 4294967295",
                "t.toml:3: field `schedule.ratio`",
            ),
            (
                "[regularizer]\nrho = nan",
                "t.toml:3: field `regularizer.rho`",
            ),
            (
                "[checkpoint]\nevery_epochs = 99999",
                "t.toml:3: field `checkpoint.every_epochs`",
            ),
        ];
        for (body, expected) in cases {
            let error = error_of(&format!("version = 1\n{body}\n"), &[]);
            assert!(error.contains(expected), "{body}: {error}");
        }
        // A value set by `--set` has no line in the file.
        let error = error_of("version = 1\nepochs = 3\n", &["epochs=0"]);
        assert!(
            error.starts_with("t.toml (with --set overrides): field `epochs`"),
            "{error}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field() {
        let error = error_of("version = 1\n[data]\nbatch_size = -1\n", &[]);
        assert!(error.contains("field `data.batch_size`"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        let error = error_of("version = 1\nepochs = 4294967296\n", &[]);
        assert!(error.contains("t.toml: field `epochs`"), "{error}");
    }

    #[test]
    fn the_method_is_a_preset_name_or_custom() {
        let error = error_of("version = 1\nmethod = \"nosuch\"\n", &[]);
        assert!(
            error.contains("t.toml:2: field `method`: unknown method `nosuch`"),
            "{error}"
        );
        assert!(
            error.contains("darts-prime") && error.contains("`custom`"),
            "{error}"
        );
        let custom = SearchConfig::from_toml("version = 1\nmethod = \"custom\"\n", "c", &[]);
        assert_eq!(custom.unwrap().method, CUSTOM_METHOD);
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
