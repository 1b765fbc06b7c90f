//! The search configuration: TOML, `version = 1`, unknown keys rejected, validated once at
//! load with the field path in every error. Every default is the paper's CIFAR setting
//! (SPEC 3.1). The submodules hold what every config shares: its errors, its range checks
//! and its loader.

mod check;
mod error;
mod load;

pub use check::CUSTOM_METHOD;
pub(crate) use check::{
    check_cnn_size, check_image_data, finite_non_negative, finite_positive, unit_fraction,
    AdamSettings, Checker,
};
pub use error::ConfigError;
pub(crate) use load::to_toml_text;
pub use load::{apply_override, LayeredConfig, CONFIG_VERSION};

use crate::dataset::ImageDataset;
use crate::limits;
use crate::primitives::Activation;
use serde::{Deserialize, Serialize};

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
    /// The image dataset searched on (`cifar10` or `cifar100`; `ptb` is refused here).
    pub dataset: ImageDataset,
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
            dataset: ImageDataset::Cifar10,
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
    /// Adam learning rate (constant; DARTS: 3e-4); finite, > 0.
    pub lr: f64,
    /// Adam beta1 (DARTS: 0.5), in [0, 1).
    pub beta1: f64,
    /// Adam beta2 (0.999), in [0, 1).
    pub beta2: f64,
    /// Adam epsilon (1e-8); finite, > 0.
    pub eps: f64,
    /// L2 weight decay of alpha (1e-3, forced to 0 with CRB); finite, >= 0.
    pub weight_decay: f64,
    /// First or second order.
    pub order: ArchOrder,
    /// How alpha batches are drawn.
    pub batch_policy: AlphaBatchPolicy,
}

impl ArchConfig {
    /// The Adam settings of the alpha optimizer, for their shared checks.
    pub(crate) fn adam(&self) -> AdamSettings {
        AdamSettings {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
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

impl ScheduleConfig {
    /// Checks the alpha-step schedule's values (shared by the CNN and RNN searches).
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        let schedule = self;
        check.count("schedule.ratio", schedule.ratio, &limits::SCHEDULE_RATIO)?;
        check.ensure(
            "schedule.h0",
            finite_positive(schedule.h0),
            "expected a finite number > 0",
        )?;
        check.ensure(
            "schedule.hi",
            schedule.hi.is_finite() && schedule.hi > 1.0,
            "expected a finite number > 1",
        )?;
        check.ensure(
            "schedule.ewma",
            schedule.ewma > 0.0 && schedule.ewma <= 1.0,
            "expected 0 < ewma <= 1",
        )
    }
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

/// GPU speed options of a CNN search. None changes a result on the CPU; `cudnn_benchmark`
/// lets cuDNN pick faster convolution algorithms on a GPU (then runs are not bitwise
/// reproducible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSpeedConfig {
    /// Weight steps whose step records (loss, accuracy, FIMT, alphas) are read back from the
    /// device together, 1..=10,000: one synchronisation per this many steps instead of several
    /// per step. The records are the same; they reach the files and the observer later.
    pub read_back_every: u32,
    /// Let cuDNN time its convolution algorithms and keep the fastest (CUDA only).
    pub cudnn_benchmark: bool,
}

impl Default for SearchSpeedConfig {
    fn default() -> Self {
        Self {
            read_back_every: 1,
            cudnn_benchmark: true,
        }
    }
}

impl SearchSpeedConfig {
    /// Whether every value is the default (then `config.toml` leaves the table out, so the
    /// config hash of runs written before it existed is unchanged and they still resume).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
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
    /// The data: dataset or corpus, batch sizes, the image or token limit.
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
    /// How often the run checkpoints (besides the observer's requests and the run's end).
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// GPU speed options.
    #[serde(default, skip_serializing_if = "SearchSpeedConfig::is_default")]
    pub speed: SearchSpeedConfig,
}

/// The method a config without a `method` key runs (plain DARTS, for CNN and RNN searches).
pub(crate) fn default_method() -> String {
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
            speed: SearchSpeedConfig::default(),
        }
    }
}

impl SearchConfig {
    /// The config as TOML text (written next to a run's artifacts).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        to_toml_text(self, true)
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
}

impl LayeredConfig for SearchConfig {
    const DEFAULTS_ORIGIN: &'static str = "search defaults";

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check.version(self.version)?;
        check.method(&self.method)?;
        check.count("epochs", self.epochs, &limits::EPOCHS)?;
        let data = &self.data;
        check.count("data.batch_size", data.batch_size, &limits::BATCH_SIZE)?;
        check.ensure(
            "data.train_portion",
            data.train_portion > 0.0 && data.train_portion < 1.0,
            "expected a fraction strictly between 0 and 1",
        )?;
        check_image_data(&check, data.limit, data.cutout_length, data.prefetch)?;
        let network = &self.network;
        check_cnn_size(&check, network.init_channels, network.layers)?;
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
        self.arch.adam().validate(&check)?;
        self.schedule.validate(&check)?;
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
        )?;
        check.count(
            "speed.read_back_every",
            self.speed.read_back_every,
            &limits::READ_BACK_EVERY,
        )
    }
}

#[cfg(test)]
mod tests;
