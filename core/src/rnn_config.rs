//! Configurations of the recurrent (Penn Treebank) search and evaluation: TOML, `version = 1`,
//! unknown keys rejected, validated once at load with the field path in every error, `--set`
//! overrides as for the CNN configs. Defaults are the reference scripts' (SPEC 7.7, 7.9).

use crate::config::{
    check_schedule, finite_non_negative, finite_positive, locate, overridden_origin,
    parse_with_overrides, unit_fraction, AdamSettings, ArchOrder, Checker, CheckpointConfig,
    Compat, ConfigError, RegularizerKind, ScheduleConfig, ScheduleKind, SearchConfig,
    CONFIG_VERSION,
};
use crate::genotype::RnnGenotype;
use crate::limits;
use crate::primitives::Activation;
use serde::{Deserialize, Serialize};
use std::path::Path;

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

/// Width and dropouts of the language model (emsize = nhid = nhidlast).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnNetworkConfig {
    /// Embedding and hidden width, 1..=2,048.
    pub nhid: i64,
    /// Dropout rates below, each in [0, 1). Locked dropout on the cell outputs.
    pub dropout: f64,
    /// Variational dropout on the hidden state inside the cell.
    pub dropouth: f64,
    /// Variational dropout on the input inside the cell.
    pub dropoutx: f64,
    /// Locked dropout on the embeddings.
    pub dropouti: f64,
    /// Embedding (word) dropout.
    pub dropoute: f64,
}

impl RnnNetworkConfig {
    /// The search model of SPEC 7.7 (300-d, no embedding dropout).
    pub fn search() -> Self {
        Self {
            nhid: 300,
            dropout: 0.75,
            dropouth: 0.25,
            dropoutx: 0.75,
            dropouti: 0.2,
            dropoute: 0.0,
        }
    }

    /// The evaluation model of SPEC 7.9 (850-d, embedding dropout 0.1).
    pub fn evaluation() -> Self {
        Self {
            nhid: 850,
            dropoute: 0.1,
            ..Self::search()
        }
    }

    fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.count("network.nhid", self.nhid, &limits::WIDTH)?;
        let rates = [
            ("network.dropout", self.dropout),
            ("network.dropouth", self.dropouth),
            ("network.dropoutx", self.dropoutx),
            ("network.dropouti", self.dropouti),
            ("network.dropoute", self.dropoute),
        ];
        for (field, rate) in rates {
            check.ensure(field, unit_fraction(rate), "expected a rate 0 <= p < 1")?;
        }
        Ok(())
    }
}

impl Default for RnnNetworkConfig {
    fn default() -> Self {
        Self::search()
    }
}

/// The weight optimizer (SGD, constant LR scaled by seq_len / bptt) and the loss terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnWeightsConfig {
    /// Learning rate; finite, > 0.
    pub lr: f64,
    /// L2 weight decay; finite, >= 0.
    pub weight_decay: f64,
    /// Global gradient-norm clip; finite, > 0.
    pub grad_clip: f64,
    /// Activation regularisation (AR) coefficient on the dropped outputs; finite, >= 0.
    pub ar_alpha: f64,
    /// Temporal activation regularisation (TAR) coefficient on the raw outputs; finite, >= 0.
    pub tar_beta: f64,
}

impl Default for RnnWeightsConfig {
    fn default() -> Self {
        Self {
            lr: 20.0,
            weight_decay: 5e-7,
            grad_clip: 0.25,
            ar_alpha: 0.0,
            tar_beta: 1e-3,
        }
    }
}

impl RnnWeightsConfig {
    fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.ensure(
            "weights.lr",
            finite_positive(self.lr),
            "expected a finite number > 0",
        )?;
        let non_negative = [
            ("weights.weight_decay", self.weight_decay),
            ("weights.ar_alpha", self.ar_alpha),
            ("weights.tar_beta", self.tar_beta),
        ];
        for (field, value) in non_negative {
            check.ensure(
                field,
                finite_non_negative(value),
                "expected a finite number >= 0",
            )?;
        }
        check.ensure(
            "weights.grad_clip",
            finite_positive(self.grad_clip),
            "expected a finite number > 0",
        )
    }
}

/// The recurrent alphas and their optimizer (Adam with PyTorch's default betas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnArchConfig {
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
    /// L2 weight decay of alpha; finite, >= 0.
    pub weight_decay: f64,
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

/// The alpha-step schedule; the RNN script's EWMA default is 1.0 (no smoothing, SPEC A7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnScheduleConfig {
    /// Which schedule.
    pub kind: ScheduleKind,
    /// r (`--schedfreq`), 1..=1,000.
    pub ratio: u32,
    /// FIMT initial threshold h0; finite, > 0.
    pub h0: f64,
    /// FIMT threshold growth h_i; finite, > 1.
    pub hi: f64,
    /// FIMT EWMA coefficient lambda, in (0, 1].
    pub ewma: f64,
}

impl Default for RnnScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Alternate,
            ratio: 1,
            h0: 1.0,
            hi: 1.05,
            ewma: 1.0,
        }
    }
}

impl RnnScheduleConfig {
    /// The same values as the shared schedule config.
    pub fn to_schedule_config(&self) -> ScheduleConfig {
        ScheduleConfig {
            kind: self.kind,
            ratio: self.ratio,
            h0: self.h0,
            hi: self.hi,
            ewma: self.ewma,
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
    #[serde(default = "default_method")]
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
    /// Data.
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
    #[serde(default)]
    pub schedule: RnnScheduleConfig,
    /// Alpha regularizer.
    #[serde(default)]
    pub regularizer: RnnRegularizerConfig,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

fn default_method() -> String {
    "darts".to_string()
}

fn default_search_seed() -> u64 {
    3
}

fn default_search_epochs() -> u32 {
    50
}

impl Default for RnnSearchConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            method: default_method(),
            seed: default_search_seed(),
            compat: Compat::default(),
            epochs: default_search_epochs(),
            data: RnnDataConfig::default(),
            network: RnnNetworkConfig::search(),
            weights: RnnWeightsConfig::default(),
            arch: RnnArchConfig::default(),
            schedule: RnnScheduleConfig::default(),
            regularizer: RnnRegularizerConfig::default(),
            checkpoint: CheckpointConfig::default(),
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
        config.schedule = RnnScheduleConfig {
            kind: method.schedule.kind,
            ratio: method.schedule.ratio,
            h0: method.schedule.h0,
            hi: method.schedule.hi,
            ewma: match method.compat {
                Compat::Reference => 1.0,
                Compat::Fixed => method.schedule.ewma,
            },
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

    /// Reads and validates a config file, applying `overrides` (`key=value`, dotted keys).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = read(path)?;
        Self::from_toml(&text, &origin, overrides)
    }

    /// The defaults with `overrides` applied, validated.
    pub fn from_overrides(overrides: &[String]) -> Result<Self, ConfigError> {
        Self::from_toml("version = 1\n", "recurrent search defaults", overrides)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let config: Self = parse_with_overrides(text, origin, overrides)?;
        config
            .validate(&overridden_origin(origin, overrides))
            .map_err(|error| locate(error, text, overrides))?;
        Ok(config)
    }

    /// This config with `overrides` applied, validated.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        Self::from_toml(&self.to_toml(), "recurrent search config", overrides)
    }

    /// The config as TOML text (written next to a run's artifacts).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks every range (documented on each field); the error names the field.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check_common(&check, self.version, self.epochs, self.data.limit)?;
        check.method(&self.method)?;
        check_batches(
            &check,
            &[
                ("data.batch_size", self.data.batch_size),
                ("data.eval_batch_size", self.data.eval_batch_size),
            ],
            self.data.bptt,
        )?;
        self.network.validate(&check)?;
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
        check.ensure(
            "regularizer.kind",
            self.regularizer.kind != RegularizerKind::Admm,
            "ADMM is not available for the recurrent search (use none or prox)",
        )?;
        check.real("regularizer.rho", self.regularizer.rho, &limits::RHO)?;
        check.count(
            "checkpoint.every_epochs",
            self.checkpoint.every_epochs,
            &limits::CHECKPOINT_EVERY_EPOCHS,
        )
    }
}

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
    /// Data.
    #[serde(default)]
    pub data: RnnEvalDataConfig,
    /// Model width and dropouts.
    #[serde(default = "RnnNetworkConfig::evaluation")]
    pub network: RnnNetworkConfig,
    /// Weight optimizer.
    #[serde(default)]
    pub weights: RnnEvalWeightsConfig,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
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

    /// Reads and validates a config file, applying `overrides` (`key=value`, dotted keys).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = read(path)?;
        Self::from_toml(&text, &origin, overrides)
    }

    /// The defaults with `overrides` applied, validated.
    pub fn from_overrides(overrides: &[String]) -> Result<Self, ConfigError> {
        Self::from_toml("version = 1\n", "recurrent evaluation defaults", overrides)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let config: Self = parse_with_overrides(text, origin, overrides)?;
        config
            .validate(&overridden_origin(origin, overrides))
            .map_err(|error| locate(error, text, overrides))?;
        Ok(config)
    }

    /// This config with `overrides` applied, validated.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        Self::from_toml(&self.to_toml(), "recurrent evaluation config", overrides)
    }

    /// The config as TOML text; arrays stay on one line.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks every range (documented on each field) and the genotype; the error names the
    /// field.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check_common(&check, self.version, self.epochs, self.data.limit)?;
        check.count("convergence", self.convergence, &limits::CONVERGENCE)?;
        check_batches(
            &check,
            &[
                ("data.batch_size", self.data.batch_size),
                ("data.eval_batch_size", self.data.eval_batch_size),
                ("data.test_batch_size", self.data.test_batch_size),
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
        check.count("weights.nonmono", weights.nonmono, &limits::NONMONO)?;
        if let Some(epoch) = weights.asgd_at_epoch {
            check.count("weights.asgd_at_epoch", epoch, &limits::EPOCH_INDEX)?;
        }
        check.ensure(
            "weights.seq_len_std",
            finite_non_negative(weights.seq_len_std),
            "expected a finite number >= 0",
        )?;
        check.count(
            "checkpoint.every_epochs",
            self.checkpoint.every_epochs,
            &limits::CHECKPOINT_EVERY_EPOCHS,
        )?;
        match self.genotype.validate() {
            Ok(()) => Ok(()),
            Err(error) => Err(ConfigError::invalid(origin, "genotype", error.to_string())),
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        origin: path.display().to_string(),
        source,
    })
}

fn check_common(
    check: &Checker<'_>,
    version: u32,
    epochs: u32,
    limit: Option<usize>,
) -> Result<(), ConfigError> {
    check.ensure(
        "version",
        version == CONFIG_VERSION,
        "expected 1 (the only config version this build reads)",
    )?;
    check.count("epochs", epochs, &limits::EPOCHS)?;
    if let Some(limit) = limit {
        check.count("data.limit", limit, &limits::TRAIN_SAMPLES)?;
        check.ensure(
            "data.limit",
            limit >= 3,
            "expected at least 3 training tokens (or no limit)",
        )?;
    }
    Ok(())
}

fn check_batches(
    check: &Checker<'_>,
    batches: &[(&str, usize)],
    bptt: usize,
) -> Result<(), ConfigError> {
    for (field, size) in batches {
        check.count(field, *size, &limits::BATCH_SIZE)?;
    }
    check.count("data.bptt", bptt, &limits::BPTT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::method_config;

    #[test]
    fn defaults_are_the_reference_scripts() {
        let search = RnnSearchConfig::from_toml("version = 1\n", "s.toml", &[]).unwrap();
        assert_eq!(search, RnnSearchConfig::default());
        assert_eq!((search.seed, search.network.nhid), (3, 300));
        assert_eq!(search.schedule.ewma, 1.0);
        assert_eq!(search.arch.beta1, 0.9);
        let eval = RnnEvalConfig::from_toml("version = 1\n", "e.toml", &[]).unwrap();
        assert_eq!(eval, RnnEvalConfig::default());
        assert_eq!((eval.seed, eval.epochs, eval.convergence), (1267, 1200, 20));
        assert_eq!((eval.network.nhid, eval.network.dropoute), (850, 0.1));
        let partial =
            RnnEvalConfig::from_toml("version = 1\n[network]\nnhid = 16\n", "p", &[]).unwrap();
        assert_eq!(partial.network.nhid, 16);
    }

    #[test]
    fn overrides_and_errors_name_the_field() {
        let overrides: Vec<String> = ["data.bptt=7", "network.nhid=12", "data.limit=500"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let config = RnnSearchConfig::from_overrides(&overrides).unwrap();
        assert_eq!(
            (config.data.bptt, config.network.nhid, config.data.limit),
            (7, 12, Some(500))
        );
        let error = RnnSearchConfig::from_overrides(&["network.dropout=1.5".to_string()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `network.dropout`"), "{error}");
        let error = RnnEvalConfig::from_toml("version = 1\n[data]\nbpt = 3\n", "x.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("x.toml") && error.contains("bpt"), "{error}");
        let error = RnnEvalConfig::from_overrides(&["oops".to_string()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected key=value"), "{error}");
    }

    #[test]
    fn numbers_out_of_range_and_unknown_methods_name_file_line_and_field() {
        let search_error = |text: &str| {
            RnnSearchConfig::from_toml(text, "s.toml", &[])
                .unwrap_err()
                .to_string()
        };
        let error = search_error("version = 1\nmethod = \"nosuch\"\n");
        assert!(
            error.contains("s.toml:2: field `method`: unknown method `nosuch`"),
            "{error}"
        );
        let error = search_error("version = 1\n[network]\nnhid = 100000\n");
        assert!(error.contains("s.toml:3: field `network.nhid`"), "{error}");
        let error = search_error("version = 1\n[data]\nbptt = 4294967295\n");
        assert!(error.contains("s.toml:3: field `data.bptt`"), "{error}");
        let error = search_error("version = 1\n[weights]\nar_alpha = -1.0\n");
        assert!(error.contains("field `weights.ar_alpha`"), "{error}");
        let error = search_error("version = 1\n[weights]\ngrad_clip = inf\n");
        assert!(error.contains("field `weights.grad_clip`"), "{error}");
        let eval_error = |text: &str| {
            RnnEvalConfig::from_toml(text, "e.toml", &[])
                .unwrap_err()
                .to_string()
        };
        let error = eval_error("version = 1\nepochs = 4294967295\n");
        assert!(error.contains("e.toml:2: field `epochs`"), "{error}");
        let error = eval_error("version = 1\n[weights]\nnonmono = 4294967295\n");
        assert!(
            error.contains("e.toml:3: field `weights.nonmono`"),
            "{error}"
        );
        let error = eval_error("version = 1\n[data]\ntest_batch_size = 0\n");
        assert!(
            error.contains("e.toml:3: field `data.test_batch_size`"),
            "{error}"
        );
        let error = eval_error("version = 1\n[weights]\nasgd_at_epoch = 10000\n");
        assert!(
            error.contains("e.toml:3: field `weights.asgd_at_epoch`"),
            "{error}"
        );
        let forced = RnnEvalConfig::from_toml(
            "version = 1\n",
            "e.toml",
            &["weights.asgd_at_epoch=3".into()],
        );
        assert_eq!(forced.unwrap().weights.asgd_at_epoch, Some(3));
    }

    #[test]
    fn method_presets_map_onto_the_recurrent_search() {
        let prime =
            RnnSearchConfig::from_method(&method_config("darts-prime", &[]).unwrap()).unwrap();
        assert_eq!(prime.method, "darts-prime");
        assert_eq!(prime.schedule.kind, ScheduleKind::Fimt);
        assert_eq!((prime.schedule.ratio, prime.schedule.ewma), (10, 1.0));
        assert_eq!(
            (prime.regularizer.kind, prime.regularizer.rho),
            (RegularizerKind::Prox, 0.1)
        );
        let fixed = method_config("darts-prime", &["compat=fixed".to_string()]).unwrap();
        let fixed = RnnSearchConfig::from_method(&fixed).unwrap();
        assert_eq!((fixed.schedule.ewma, fixed.regularizer.rho), (0.2, 1.0));
        let crb = RnnSearchConfig::from_method(&method_config("crb", &[]).unwrap()).unwrap();
        assert_eq!(
            (crb.arch.activation, crb.arch.weight_decay),
            (Activation::Crb, 0.0)
        );
        let error = RnnSearchConfig::from_method(&method_config("admm", &[]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("ADMM"), "{error}");
        let small = prime.with_overrides(&["epochs=2".to_string()]).unwrap();
        assert_eq!((small.epochs, small.method.as_str()), (2, "darts-prime"));
    }

    #[test]
    fn configs_round_trip_and_bad_genotypes_are_rejected() {
        let eval = RnnEvalConfig::for_genotype(
            RnnGenotype::builtin("ENAS").unwrap(),
            "ENAS",
            &["epochs=3".to_string()],
        )
        .unwrap();
        assert_eq!(
            RnnEvalConfig::from_toml(&eval.to_toml(), "x", &[]).unwrap(),
            eval
        );
        let mut bad = RnnEvalConfig::default();
        bad.genotype.concat = vec![0];
        let error = bad.validate("b").unwrap_err().to_string();
        assert!(error.contains("field `genotype`"), "{error}");
        let search = RnnSearchConfig::default();
        assert_eq!(
            RnnSearchConfig::from_toml(&search.to_toml(), "y", &[]).unwrap(),
            search
        );
    }
}
