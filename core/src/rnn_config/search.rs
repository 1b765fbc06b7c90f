//! The recurrent (Penn Treebank) search configuration. Defaults are the reference script's
//! (SPEC 7.7); a CNN method preset maps onto it with [`RnnSearchConfig::from_method`].

use super::shared::{
    check_batches, check_common, RnnNetworkConfig, RnnSpeedConfig, RnnWeightsConfig,
};
use crate::config::keys::{CHECKPOINT_EVERY_EPOCHS, SPEED_READ_BACK_EVERY};
use crate::config::rnn_keys::{
    RNN_EVAL_BATCH_SIZE_VALID, RNN_REGULARIZER_KIND, RNN_REGULARIZER_RHO, RNN_SEARCH_BATCH_SIZE,
    RNN_SEARCH_KEYS,
};
use crate::config::{
    annotated_toml, to_toml_text, AdamSettings, ArchOrder, Checker, CheckpointConfig, Compat,
    ConfigError, LayeredConfig, RegularizerKind, ScheduleConfig, SearchConfig, CONFIG_VERSION,
};
use crate::primitives::Activation;
use serde::{Deserialize, Serialize};

/// Data settings of a recurrent search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnDataConfig {
    /// Columns of the weight and alpha batches (train and valid streams), 1..=65,536.
    pub batch_size: usize,
    /// Columns of the per-epoch validation pass, 1..=65,536.
    pub eval_batch_size: usize,
    /// Base sequence length (BPTT), 2..=10,000.
    pub bptt: usize,
    /// Use only the first N training tokens (small runs), 3..=100,000,000; none = all.
    pub limit: Option<usize>,
}

impl Default for RnnDataConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            eval_batch_size: 10,
            bptt: 35,
            limit: None,
        }
    }
}

/// The recurrent alphas and their optimizer (Adam with PyTorch's default betas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnArchConfig {
    /// Activation of alpha.
    pub activation: Activation,
    /// Adam learning rate of the recurrent search (3e-3, ten times the CNN's); finite, > 0.
    pub lr: f64,
    /// Adam beta1 (PyTorch's default 0.9, not the CNN search's 0.5), in [0, 1).
    pub beta1: f64,
    /// Adam beta2 (PyTorch's default 0.999), in [0, 1).
    pub beta2: f64,
    /// Adam epsilon (PyTorch's default 1e-8); finite, > 0.
    pub eps: f64,
    /// L2 weight decay of the recurrent alphas (1e-3); finite, >= 0.
    pub weight_decay: f64,
}

impl RnnArchConfig {
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

impl Default for RnnArchConfig {
    fn default() -> Self {
        Self {
            activation: Activation::Softmax,
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-3,
        }
    }
}

/// The alpha regularizer (none or prox; the reference has no RNN ADMM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnRegularizerConfig {
    /// `none` or `prox`.
    pub kind: RegularizerKind,
    /// rho, 0..=1,000 (RNN script default 0.1; the paper states 1.0 for PTB, SPEC A6).
    pub rho: f64,
}

impl Default for RnnRegularizerConfig {
    fn default() -> Self {
        Self {
            kind: RegularizerKind::None,
            rho: 0.1,
        }
    }
}

/// Everything a recurrent search run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnSearchConfig {
    /// Format version; must be 1.
    pub version: u32,
    /// Method name, for the record: a preset name or `custom` (see
    /// `SearchConfig::method`).
    #[serde(default = "crate::config::default_method")]
    pub method: String,
    /// Random seed (weights, alphas, dropout masks, sequence lengths).
    #[serde(default = "default_search_seed")]
    pub seed: u64,
    /// Reference or fixed behaviour of the reference code's quirks.
    #[serde(default)]
    pub compat: Compat,
    /// Number of epochs, 1..=10,000.
    #[serde(default = "default_search_epochs")]
    pub epochs: u32,
    /// The data: dataset or corpus, batch sizes, the image or token limit.
    #[serde(default)]
    pub data: RnnDataConfig,
    /// Model width and dropouts.
    #[serde(default)]
    pub network: RnnNetworkConfig,
    /// Weight optimizer.
    #[serde(default)]
    pub weights: RnnWeightsConfig,
    /// Architecture parameters.
    #[serde(default)]
    pub arch: RnnArchConfig,
    /// Alpha-step schedule.
    #[serde(default = "default_schedule")]
    pub schedule: ScheduleConfig,
    /// Alpha regularizer.
    #[serde(default)]
    pub regularizer: RnnRegularizerConfig,
    /// How often the run checkpoints (besides the observer's requests and the run's end).
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// GPU speed options.
    #[serde(default, skip_serializing_if = "RnnSpeedConfig::is_default")]
    pub speed: RnnSpeedConfig,
}

fn default_search_seed() -> u64 {
    3
}

fn default_search_epochs() -> u32 {
    50
}

/// The CNN search's schedule with the RNN script's EWMA of 1.0 (no smoothing, SPEC A7).
fn default_schedule() -> ScheduleConfig {
    ScheduleConfig {
        ewma: 1.0,
        ..ScheduleConfig::default()
    }
}

impl Default for RnnSearchConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            method: crate::config::default_method(),
            seed: default_search_seed(),
            compat: Compat::default(),
            epochs: default_search_epochs(),
            data: RnnDataConfig::default(),
            network: RnnNetworkConfig::search(),
            weights: RnnWeightsConfig::default(),
            arch: RnnArchConfig::default(),
            schedule: default_schedule(),
            regularizer: RnnRegularizerConfig::default(),
            checkpoint: CheckpointConfig::default(),
            speed: RnnSpeedConfig::default(),
        }
    }
}

impl RnnSearchConfig {
    /// The recurrent search of a CNN method preset: method name, seed, compat, epochs,
    /// checkpoint cadence, alpha activation, schedule kind/ratio/h0/h_i and regularizer kind
    /// come from `method`; everything else is the RNN script's default.
    ///
    /// `compat = reference` keeps the RNN script's EWMA 1.0 and rho 0.1; `compat = fixed`
    /// takes the paper's values, the preset's EWMA and rho 1.0 (SPEC A6, A7, Appendix C).
    /// CRB sets the alpha weight decay to 0 (SPEC 5.5). ADMM and the second-order step are
    /// errors: the reference has neither for the RNN.
    pub fn from_method(method: &SearchConfig) -> Result<Self, ConfigError> {
        let origin = format!("method `{}` (recurrent search)", method.method);
        let invalid = |field: &str, message: &str| ConfigError::invalid(&origin, field, message);
        if method.regularizer.kind == RegularizerKind::Admm {
            return Err(invalid(
                "regularizer.kind",
                "ADMM is not available for the recurrent (PTB) search; the reference has no \
                 RNN ADMM (use none or prox)",
            ));
        }
        if method.arch.order == ArchOrder::Second {
            return Err(invalid(
                "arch.order",
                "the second-order step is not available for the recurrent search (SPEC B13)",
            ));
        }
        let mut config = RnnSearchConfig {
            method: method.method.clone(),
            seed: method.seed,
            compat: method.compat,
            epochs: method.epochs,
            checkpoint: method.checkpoint.clone(),
            ..RnnSearchConfig::default()
        };
        config.arch.activation = method.arch.activation;
        if method.arch.activation == Activation::Crb {
            config.arch.weight_decay = 0.0;
        }
        config.schedule = ScheduleConfig {
            ewma: match method.compat {
                Compat::Reference => 1.0,
                Compat::Fixed => method.schedule.ewma,
            },
            ..method.schedule.clone()
        };
        config.regularizer = RnnRegularizerConfig {
            kind: method.regularizer.kind,
            rho: match method.compat {
                Compat::Reference => 0.1,
                Compat::Fixed => 1.0,
            },
        };
        config.validate("recurrent search from method")?;
        Ok(config)
    }

    /// This config with `overrides` applied, validated.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        Self::from_toml(&self.to_toml()?, "recurrent search config", overrides)
    }

    /// The config as TOML text (written next to a run's artifacts).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        to_toml_text(self, false)
    }

    /// The config as TOML text with a one-line comment (meaning, type, range) above every key.
    pub fn to_annotated_toml(&self) -> Result<String, ConfigError> {
        let mut text = self.to_toml()?;
        if self.speed.is_default() {
            text.push_str("\n[speed]\n");
            text.push_str(&to_toml_text(&self.speed, true)?);
        }
        Ok(annotated_toml(&text, RNN_SEARCH_KEYS))
    }
}

impl LayeredConfig for RnnSearchConfig {
    const DEFAULTS_ORIGIN: &'static str = "recurrent search defaults";

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check_common(&check, self.version, self.epochs, self.data.limit)?;
        check.method(&self.method)?;
        check_batches(
            &check,
            &[
                (&RNN_SEARCH_BATCH_SIZE, self.data.batch_size),
                (&RNN_EVAL_BATCH_SIZE_VALID, self.data.eval_batch_size),
            ],
            self.data.bptt,
        )?;
        self.network.validate(&check)?;
        self.weights.validate(&check)?;
        self.arch.adam().validate(&check)?;
        self.schedule.validate(&check)?;
        check.ensure(
            RNN_REGULARIZER_KIND.name,
            self.regularizer.kind != RegularizerKind::Admm,
            "ADMM is not available for the recurrent search (use none or prox)",
        )?;
        check.number(&RNN_REGULARIZER_RHO, self.regularizer.rho)?;
        check.integer(&CHECKPOINT_EVERY_EPOCHS, self.checkpoint.every_epochs)?;
        check.integer(&SPEED_READ_BACK_EVERY, self.speed.read_back_every)
    }
}
