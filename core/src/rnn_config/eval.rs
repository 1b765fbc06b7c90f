//! The recurrent (Penn Treebank) evaluation configuration: retraining one cell with NT-ASGD.
//! Defaults are the reference script's (SPEC 7.9).

use super::shared::{
    check_batches, check_common, RnnNetworkConfig, RnnSpeedConfig, RnnWeightsConfig,
};
use crate::config::eval_keys::LABEL;
use crate::config::keys::CHECKPOINT_EVERY_EPOCHS;
use crate::config::rnn_keys::{
    RNN_ASGD_AT_EPOCH, RNN_CONVERGENCE, RNN_EVAL_BATCH_SIZE, RNN_EVAL_BATCH_SIZE_VALID,
    RNN_EVAL_KEYS, RNN_EVAL_READ_BACK_EVERY, RNN_NONMONO, RNN_SEQ_LEN_STD, RNN_TEST_BATCH_SIZE,
};
use crate::config::{
    annotated_toml, to_toml_text, Checker, CheckpointConfig, ConfigError, LayeredConfig,
    CONFIG_VERSION,
};
use crate::genotype::RnnGenotype;
use serde::{Deserialize, Serialize};

/// Data settings of a recurrent evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnEvalDataConfig {
    /// Columns of the training batches, 1..=65,536.
    pub batch_size: usize,
    /// Columns of the per-epoch validation pass, 1..=65,536.
    pub eval_batch_size: usize,
    /// Columns of the final test pass, 1..=65,536.
    pub test_batch_size: usize,
    /// Base sequence length (BPTT), 2..=10,000.
    pub bptt: usize,
    /// Use only the first N training tokens (small runs), 3..=100,000,000; none = all.
    pub limit: Option<usize>,
}

impl Default for RnnEvalDataConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            eval_batch_size: 10,
            test_batch_size: 1,
            bptt: 35,
            limit: None,
        }
    }
}

/// The evaluation's weight optimizer: SGD switching to averaged SGD (NT-ASGD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnEvalWeightsConfig {
    /// Learning rate; finite, > 0.
    pub lr: f64,
    /// L2 weight decay; finite, >= 0.
    pub weight_decay: f64,
    /// Global gradient-norm clip; finite, > 0.
    pub grad_clip: f64,
    /// AR coefficient; finite, >= 0.
    pub ar_alpha: f64,
    /// TAR coefficient; finite, >= 0.
    pub tar_beta: f64,
    /// NT-ASGD non-monotone interval in epochs, 0..=1,000.
    pub nonmono: usize,
    /// Standard deviation of the sequence-length jitter; finite, >= 0.
    pub seq_len_std: f64,
    /// Switch to averaged SGD at the end of this 0-based epoch (0..=9,999) at the latest,
    /// whatever the validation history; unset (the reference), only the non-monotone trigger
    /// switches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asgd_at_epoch: Option<u32>,
}

impl Default for RnnEvalWeightsConfig {
    fn default() -> Self {
        Self {
            lr: 20.0,
            weight_decay: 8e-7,
            grad_clip: 0.25,
            ar_alpha: 0.0,
            tar_beta: 1e-3,
            nonmono: 5,
            seq_len_std: 5.0,
            asgd_at_epoch: None,
        }
    }
}

/// Everything a recurrent evaluation (retraining) run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnEvalConfig {
    /// Format version; must be 1.
    pub version: u32,
    /// Name of the evaluated genotype, for records.
    #[serde(default = "default_label")]
    pub label: String,
    /// Random seed.
    #[serde(default = "default_eval_seed")]
    pub seed: u64,
    /// Maximum number of epochs, 1..=10,000.
    #[serde(default = "default_eval_epochs")]
    pub epochs: u32,
    /// Stop after this many epochs without a new best validation loss, 0..=10,000 (0 = never).
    #[serde(default = "default_convergence")]
    pub convergence: u32,
    /// The data: dataset or corpus, batch sizes, the image or token limit.
    #[serde(default)]
    pub data: RnnEvalDataConfig,
    /// Model width and dropouts.
    #[serde(default = "RnnNetworkConfig::evaluation")]
    pub network: RnnNetworkConfig,
    /// Weight optimizer.
    #[serde(default)]
    pub weights: RnnEvalWeightsConfig,
    /// How often the run checkpoints (besides the observer's requests and the run's end).
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// GPU speed options.
    #[serde(default, skip_serializing_if = "RnnSpeedConfig::is_default")]
    pub speed: RnnSpeedConfig,
    /// The cell to train.
    #[serde(default = "default_genotype")]
    pub genotype: RnnGenotype,
}

fn default_label() -> String {
    "DARTS_V2".to_string()
}

fn default_eval_seed() -> u64 {
    1267
}

fn default_eval_epochs() -> u32 {
    1200
}

fn default_convergence() -> u32 {
    20
}

fn default_genotype() -> RnnGenotype {
    RnnGenotype::builtin("DARTS_V2").unwrap_or_else(|_| unreachable!("DARTS_V2 is built in"))
}

impl Default for RnnEvalConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            label: default_label(),
            seed: default_eval_seed(),
            epochs: default_eval_epochs(),
            convergence: default_convergence(),
            data: RnnEvalDataConfig::default(),
            network: RnnNetworkConfig::evaluation(),
            weights: RnnEvalWeightsConfig::default(),
            checkpoint: CheckpointConfig::default(),
            speed: RnnSpeedConfig::default(),
            genotype: default_genotype(),
        }
    }
}

impl RnnEvalConfig {
    /// The defaults for `genotype` (labelled `label`) with `overrides` applied, validated.
    pub fn for_genotype(
        genotype: RnnGenotype,
        label: &str,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let config = RnnEvalConfig {
            genotype,
            label: label.to_string(),
            ..RnnEvalConfig::default()
        };
        config.with_overrides(overrides)
    }

    /// This config with `overrides` applied, validated.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        Self::from_toml(&self.to_toml()?, "recurrent evaluation config", overrides)
    }

    /// The config as TOML text; arrays stay on one line.
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
        Ok(annotated_toml(&text, RNN_EVAL_KEYS))
    }
}

impl LayeredConfig for RnnEvalConfig {
    const DEFAULTS_ORIGIN: &'static str = "recurrent evaluation defaults";

    /// Checks every range (documented on each field) and the genotype.
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check_common(&check, self.version, self.epochs, self.data.limit)?;
        check.text(&LABEL, &self.label)?;
        check.integer(&RNN_CONVERGENCE, self.convergence)?;
        check.integer(&RNN_EVAL_READ_BACK_EVERY, self.speed.read_back_every)?;
        check_batches(
            &check,
            &[
                (&RNN_EVAL_BATCH_SIZE, self.data.batch_size),
                (&RNN_EVAL_BATCH_SIZE_VALID, self.data.eval_batch_size),
                (&RNN_TEST_BATCH_SIZE, self.data.test_batch_size),
            ],
            self.data.bptt,
        )?;
        self.network.validate(&check)?;
        let weights = &self.weights;
        let shared = RnnWeightsConfig {
            lr: weights.lr,
            weight_decay: weights.weight_decay,
            grad_clip: weights.grad_clip,
            ar_alpha: weights.ar_alpha,
            tar_beta: weights.tar_beta,
        };
        shared.validate(&check)?;
        check.integer(&RNN_NONMONO, weights.nonmono)?;
        if let Some(epoch) = weights.asgd_at_epoch {
            check.integer(&RNN_ASGD_AT_EPOCH, epoch)?;
        }
        check.number(&RNN_SEQ_LEN_STD, weights.seq_len_std)?;
        check.integer(&CHECKPOINT_EVERY_EPOCHS, self.checkpoint.every_epochs)?;
        match self.genotype.validate() {
            Ok(()) => Ok(()),
            Err(error) => Err(ConfigError::invalid(origin, "genotype", error.to_string())),
        }
    }
}
