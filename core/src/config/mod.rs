//! The search configuration: TOML, `version = 1`, unknown keys rejected, validated once at
//! load with the field path in every error. Every default is the paper's CIFAR setting
//! (SPEC 3.1). The submodules hold what every config shares: its errors, its range checks
//! and its loader.

mod check;
mod error;
pub mod eval_keys;
#[cfg(test)]
pub(crate) mod key_checks;
pub mod keys;
mod load;
pub mod rnn_keys;
mod show;

pub(crate) use check::{check_cnn_size, check_image_data, AdamSettings, Checker};
pub use error::ConfigError;
pub use keys::CUSTOM_METHOD;
pub(crate) use load::to_toml_text;
pub use load::{apply_override, LayeredConfig, CONFIG_VERSION};
pub use show::annotated_toml;

use crate::dataset::ImageDataset;
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
        check.number(&keys::WEIGHTS_LR, self.lr)?;
        check.number(&keys::WEIGHTS_LR_MIN, self.lr_min)?;
        check.ensure(
            keys::WEIGHTS_LR_MIN.name,
            self.lr_min <= self.lr,
            "expected lr_min <= lr",
        )?;
        check.integer(&keys::WEIGHTS_LR_OFFSET, self.lr_offset)?;
        check.number(&keys::WEIGHTS_MOMENTUM, self.momentum)?;
        check.number(&keys::WEIGHTS_WEIGHT_DECAY, self.weight_decay)?;
        check.number(&keys::WEIGHTS_GRAD_CLIP, self.grad_clip)
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
        check.integer(&keys::SCHEDULE_RATIO, self.ratio)?;
        check.number(&keys::SCHEDULE_H0, self.h0)?;
        check.number(&keys::SCHEDULE_HI, self.hi)?;
        check.number(&keys::SCHEDULE_EWMA, self.ewma)
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

/// The arithmetic of the search network's forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchPrecision {
    /// Float32 everywhere (the reference's arithmetic).
    #[default]
    Float32,
    /// bfloat16 convolutions, activations and edge weights; the alphas, the weights' master
    /// copies, every optimizer state and the FIMT statistics stay float32.
    Bf16,
}

impl SearchPrecision {
    /// The name used in configs and manifests.
    pub fn name(self) -> &'static str {
        match self {
            SearchPrecision::Float32 => "float32",
            SearchPrecision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for SearchPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// GPU speed options of a CNN search. The read-back interval changes no result;
/// `cudnn_benchmark` lets cuDNN pick faster convolution algorithms on a GPU (then runs are not
/// bitwise reproducible); `search_precision = "bf16"` changes the arithmetic on every device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSpeedConfig {
    /// Weight steps whose step records (loss, accuracy, FIMT, alphas) are read back from the
    /// device together, 1..=10,000: one synchronisation per this many steps instead of several
    /// per step. The records are the same; they reach the files and the observer later.
    pub read_back_every: u32,
    /// Let cuDNN time its convolution algorithms and keep the fastest (CUDA only).
    pub cudnn_benchmark: bool,
    /// The arithmetic of the network's forward and backward passes.
    pub search_precision: SearchPrecision,
}

impl Default for SearchSpeedConfig {
    fn default() -> Self {
        Self {
            read_back_every: 1,
            cudnn_benchmark: true,
            search_precision: SearchPrecision::Float32,
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

    /// The config as TOML text with a one-line comment (meaning, type, range) above every key.
    /// The `[speed]` table is written even when it holds the defaults (which `config.toml`
    /// leaves out), so every key is shown.
    pub fn to_annotated_toml(&self) -> Result<String, ConfigError> {
        let mut text = self.to_toml()?;
        if self.speed.is_default() {
            text.push_str("\n[speed]\n");
            text.push_str(&to_toml_text(&self.speed, true)?);
        }
        Ok(annotated_toml(&text, keys::SEARCH_KEYS))
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
        check.integer(&keys::EPOCHS, self.epochs)?;
        let data = &self.data;
        check.integer(&keys::DATA_BATCH_SIZE, data.batch_size)?;
        check.number(&keys::DATA_TRAIN_PORTION, data.train_portion)?;
        check_image_data(
            &check,
            (&keys::DATA_LIMIT, data.limit),
            data.cutout_length,
            data.prefetch,
        )?;
        let network = &self.network;
        check_cnn_size(&check, network.init_channels, network.layers)?;
        check.integer(&keys::NETWORK_STEPS, network.steps)?;
        check.integer(&keys::NETWORK_MULTIPLIER, network.multiplier)?;
        check.count(
            keys::NETWORK_MULTIPLIER.name,
            network.multiplier,
            &(1..=network.steps as u64),
        )?;
        check.integer(&keys::NETWORK_STEM_MULTIPLIER, network.stem_multiplier)?;
        self.weights.validate(&check)?;
        self.arch.adam().validate(&check)?;
        self.schedule.validate(&check)?;
        let regularizer = &self.regularizer;
        check.number(&keys::REGULARIZER_RHO, regularizer.rho)?;
        check.integer(&keys::REGULARIZER_ADMM_FREQ, regularizer.admm_freq)?;
        check.number(&keys::REGULARIZER_ADMM_DISCOUNT, regularizer.admm_discount)?;
        check.integer(&keys::CHECKPOINT_EVERY_EPOCHS, self.checkpoint.every_epochs)?;
        check.integer(&keys::SPEED_READ_BACK_EVERY, self.speed.read_back_every)
    }
}

#[cfg(test)]
mod tests;
