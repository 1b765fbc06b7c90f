//! The evaluation (retraining) configuration: TOML, `version = 1`, unknown keys rejected,
//! validated once at load with the field path in every error. Every default is the paper's
//! CIFAR evaluation setting (SPEC 6.1, `train.py --auxiliary --cutout`), and the default
//! genotype is DARTS_V2, the reference script's default `--arch DARTS`.

use crate::config::{
    annotated_toml, check_cnn_size, check_image_data, eval_keys, keys, to_toml_text, Checker,
    CheckpointConfig, ConfigError, LayeredConfig, WeightsConfig, CONFIG_VERSION,
};
use crate::dataset::ImageDataset;
use crate::genotype::Genotype;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Data settings of an evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalDataConfig {
    /// The image dataset retrained and tested on (`cifar10` or `cifar100`).
    pub dataset: ImageDataset,
    /// Minibatch size of training and of the test pass, 1..=65,536.
    pub batch_size: usize,
    /// Use only the first N images of the training set and of the test set (small demos and
    /// tests), 1..=100,000,000; none = all.
    pub limit: Option<usize>,
    /// Cutout augmentation of the training images.
    pub cutout: bool,
    /// Cutout square side in pixels, 1..=32.
    pub cutout_length: usize,
    /// Batches decoded ahead of the training thread, 1..=64.
    pub prefetch: usize,
}

impl Default for EvalDataConfig {
    fn default() -> Self {
        Self {
            dataset: ImageDataset::Cifar10,
            batch_size: 96,
            limit: None,
            cutout: true,
            cutout_length: 16,
            prefetch: 4,
        }
    }
}

/// Shape and regularisation of the evaluation network (NetworkCIFAR, SPEC 6.2-6.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalNetworkConfig {
    /// Initial channels C: even, 2..=2,048.
    pub init_channels: i64,
    /// Number of cells, 3..=256; reductions at layers/3 and 2·layers/3.
    pub layers: i64,
    /// Auxiliary classifier on the output of cell 2·layers/3.
    pub auxiliary: bool,
    /// Weight of the auxiliary loss; finite, >= 0.
    pub auxiliary_weight: f64,
    /// Final drop-path probability, in [0, 1); epoch e uses drop_path_prob · e / epochs.
    pub drop_path_prob: f64,
}

impl Default for EvalNetworkConfig {
    fn default() -> Self {
        Self {
            init_channels: 36,
            layers: 20,
            auxiliary: true,
            auxiliary_weight: 0.4,
            drop_path_prob: 0.2,
        }
    }
}

/// Reduced-precision arithmetic for the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Autocast {
    /// Float32 everywhere (the reference's arithmetic).
    #[default]
    Off,
    /// bfloat16 convolutions and activations, float32 master weights and batch norm.
    Bf16,
    /// float16 convolutions and activations with dynamic loss scaling, float32 master weights
    /// and batch norm.
    Fp16,
}

impl Autocast {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Autocast::Off => "off",
            Autocast::Bf16 => "bf16",
            Autocast::Fp16 => "fp16",
        }
    }
}

impl fmt::Display for Autocast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Speed options for GPUs; all off by default for fidelity to the reference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeedConfig {
    /// Keep activations and convolution weights in the channels-last (NHWC) memory format.
    pub channels_last: bool,
    /// Reduced-precision arithmetic.
    pub autocast: Autocast,
    /// Let cuDNN time its convolution algorithms and pick the fastest (not bitwise
    /// reproducible).
    pub cudnn_benchmark: bool,
}

/// Everything an evaluation run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Format version; must be 1.
    pub version: u32,
    /// Name of the evaluated genotype, for records and reports.
    #[serde(default = "default_label")]
    pub label: String,
    /// Random seed (weights, data order, augmentation, drop path).
    #[serde(default)]
    pub seed: u64,
    /// Number of epochs, 1..=10,000.
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Training steps between step records (each one reads the device once), 1..=1,000,000.
    #[serde(default = "default_report_every")]
    pub report_every: u32,
    /// The data: dataset or corpus, batch sizes, the image or token limit.
    #[serde(default)]
    pub data: EvalDataConfig,
    /// Network shape and regularisation.
    #[serde(default)]
    pub network: EvalNetworkConfig,
    /// Weight optimizer; its weight decay and gradient clip cover every parameter, the
    /// auxiliary head's included.
    #[serde(default = "default_weights")]
    pub weights: WeightsConfig,
    /// GPU speed options.
    #[serde(default)]
    pub speed: SpeedConfig,
    /// How often the run checkpoints (besides the observer's requests and the run's end).
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// The cells to train.
    #[serde(default = "default_genotype")]
    pub genotype: Genotype,
}

/// The name of the default genotype.
pub const DEFAULT_GENOTYPE: &str = "DARTS_V2";

fn default_label() -> String {
    DEFAULT_GENOTYPE.to_string()
}

fn default_epochs() -> u32 {
    600
}

fn default_report_every() -> u32 {
    50
}

/// The search's optimizer, annealed to 0 instead of 0.001 (`train.py`).
fn default_weights() -> WeightsConfig {
    WeightsConfig {
        lr_min: 0.0,
        ..WeightsConfig::default()
    }
}

fn default_genotype() -> Genotype {
    Genotype::builtin(DEFAULT_GENOTYPE).unwrap_or_else(|_| unreachable!("DARTS_V2 is built in"))
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            label: default_label(),
            seed: 0,
            epochs: default_epochs(),
            report_every: default_report_every(),
            data: EvalDataConfig::default(),
            network: EvalNetworkConfig::default(),
            weights: default_weights(),
            speed: SpeedConfig::default(),
            checkpoint: CheckpointConfig::default(),
            genotype: default_genotype(),
        }
    }
}

impl EvalConfig {
    /// The config as TOML text (written next to a run's artifacts); arrays stay on one line,
    /// so each genotype cell reads as one line.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        to_toml_text(self, false)
    }

    /// The config as TOML text with a one-line comment (meaning, type, range) above every key.
    pub fn to_annotated_toml(&self) -> Result<String, ConfigError> {
        Ok(annotated_toml(&self.to_toml()?, eval_keys::EVAL_KEYS))
    }

    /// Number of classes of the dataset.
    pub fn classes(&self) -> i64 {
        self.data.dataset.classes() as i64
    }

    /// The drop-path probability of 0-based `epoch`: drop_path_prob · epoch / epochs.
    pub fn drop_path_at(&self, epoch: u32) -> f64 {
        self.network.drop_path_prob * f64::from(epoch) / f64::from(self.epochs.max(1))
    }
}

impl LayeredConfig for EvalConfig {
    const DEFAULTS_ORIGIN: &'static str = "evaluation defaults";

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker::new(origin);
        check.version(self.version)?;
        check.text(&eval_keys::LABEL, &self.label)?;
        check.integer(&keys::EPOCHS, self.epochs)?;
        check.integer(&eval_keys::REPORT_EVERY, self.report_every)?;
        let data = &self.data;
        check.integer(&eval_keys::EVAL_DATA_BATCH_SIZE, data.batch_size)?;
        check_image_data(
            &check,
            (&eval_keys::EVAL_DATA_LIMIT, data.limit),
            data.cutout_length,
            data.prefetch,
        )?;
        let network = &self.network;
        check_cnn_size(&check, network.init_channels, network.layers)?;
        check.number(
            &eval_keys::NETWORK_AUXILIARY_WEIGHT,
            network.auxiliary_weight,
        )?;
        check.number(&eval_keys::NETWORK_DROP_PATH_PROB, network.drop_path_prob)?;
        self.weights.validate(&check)?;
        check.integer(&keys::CHECKPOINT_EVERY_EPOCHS, self.checkpoint.every_epochs)?;
        match self.genotype.validate() {
            Ok(()) => Ok(()),
            Err(error) => Err(ConfigError::invalid(origin, "genotype", error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genotype::Gene;
    use crate::primitives::CnnOp;

    #[test]
    fn minimal_file_gets_the_paper_defaults() {
        let config = EvalConfig::from_toml("version = 1\n", "t.toml", &[]).unwrap();
        assert_eq!(config, EvalConfig::default());
        assert_eq!(
            (config.network.init_channels, config.network.layers),
            (36, 20)
        );
        assert_eq!(
            (config.data.batch_size, config.epochs, config.seed),
            (96, 600, 0)
        );
        assert_eq!(config.weights.lr_min, 0.0);
        assert!(config.network.auxiliary && config.data.cutout);
        assert_eq!(config.network.auxiliary_weight, 0.4);
        assert_eq!(config.speed, SpeedConfig::default());
        assert_eq!(config.speed.autocast, Autocast::Off);
        assert_eq!(config.genotype, Genotype::builtin("DARTS_V2").unwrap());
    }

    #[test]
    fn a_partial_weights_table_keeps_the_evaluation_defaults() {
        let config =
            EvalConfig::from_toml("version = 1\n[weights]\nlr = 0.05\n", "w.toml", &[]).unwrap();
        assert_eq!((config.weights.lr, config.weights.lr_min), (0.05, 0.0));
    }

    #[test]
    fn drop_path_grows_linearly_from_zero() {
        let config = EvalConfig::default();
        assert_eq!(config.drop_path_at(0), 0.0);
        assert!((config.drop_path_at(300) - 0.1).abs() < 1e-12);
        assert!((config.drop_path_at(599) - 0.2 * 599.0 / 600.0).abs() < 1e-12);
    }

    #[test]
    fn overrides_set_nested_values_with_types() {
        let overrides: Vec<String> = [
            "data.dataset=cifar100",
            "epochs=3",
            "speed.autocast=bf16",
            "speed.channels_last=true",
            "network.init_channels=8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let config = EvalConfig::from_overrides(&overrides).unwrap();
        assert_eq!(config.data.dataset, ImageDataset::Cifar100);
        assert_eq!(config.classes(), 100);
        assert_eq!(config.epochs, 3);
        assert_eq!(config.speed.autocast, Autocast::Bf16);
        assert!(config.speed.channels_last);
        assert_eq!(config.network.init_channels, 8);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_place() {
        let error =
            EvalConfig::from_toml("version = 1\n[speed]\nautocast = \"fp8\"\n", "a.toml", &[])
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("a.toml") && error.contains("line 3"),
            "{error}"
        );
        assert!(error.contains("fp8"), "{error}");
        let error =
            EvalConfig::from_toml("version = 1\n[network]\ndroppath = 0.1\n", "b.toml", &[])
                .unwrap_err()
                .to_string();
        assert!(error.contains("droppath"), "{error}");
        let error = EvalConfig::from_overrides(&["network.drop_path_prob=1.5".to_string()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `network.drop_path_prob`"), "{error}");
        let error = EvalConfig::from_overrides(&["network.init_channels=7".to_string()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `network.init_channels`"), "{error}");
    }

    #[test]
    fn numbers_out_of_range_name_file_line_and_field() {
        let error_of = |text: &str| {
            EvalConfig::from_toml(text, "e.toml", &[])
                .unwrap_err()
                .to_string()
        };
        let error = error_of("version = 1\nepochs = 4294967295\n");
        assert!(
            error.contains("e.toml:2: field `epochs`: must be between 1 and 10000"),
            "{error}"
        );
        let error = error_of("version = 1\n[data]\nbatch_size = 4294967295\n");
        assert!(
            error.contains("e.toml:3: field `data.batch_size`"),
            "{error}"
        );
        let error = error_of("version = 1\n[network]\nlayers = 4294967295\n");
        assert!(
            error.contains("e.toml:3: field `network.layers`"),
            "{error}"
        );
        let error = error_of("version = 1\n[weights]\nweight_decay = inf\n");
        assert!(error.contains("field `weights.weight_decay`"), "{error}");
        let error = error_of("version = 1\nreport_every = -5\n");
        assert!(error.contains("field `report_every`"), "{error}");
    }

    #[test]
    fn a_genotype_with_an_unknown_op_names_the_op_and_line() {
        let text = "version = 1\n[genotype]\nnormal = [[\"sep_conv_3x3\", 0], [\"conv_9x9\", 1]]\n\
                    normal_concat = [2]\nreduce = [[\"max_pool_3x3\", 0], [\"max_pool_3x3\", 1]]\n\
                    reduce_concat = [2]\n";
        let error = EvalConfig::from_toml(text, "g.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("conv_9x9"), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn a_malformed_genotype_is_a_field_error() {
        let mut config = EvalConfig::default();
        config.genotype.normal.push(Gene::new(CnnOp::SepConv3x3, 0));
        let error = config.validate("x").unwrap_err().to_string();
        assert!(error.contains("field `genotype`"), "{error}");
        assert!(error.contains("normal cell has 9 genes"), "{error}");
    }

    #[test]
    fn config_round_trips_through_toml() {
        let mut config = EvalConfig::default();
        config.data.limit = Some(500);
        config.speed.autocast = Autocast::Fp16;
        config.genotype = Genotype::builtin("NASNet").unwrap();
        config.label = "NASNet".to_string();
        let text = config.to_toml().unwrap();
        assert!(text.contains("[genotype]"), "{text}");
        assert_eq!(EvalConfig::from_toml(&text, "x", &[]).unwrap(), config);
    }

    #[test]
    fn the_key_table_lists_every_key_once_and_nothing_else() {
        let mut config = EvalConfig::default();
        config.data.limit = Some(100);
        crate::config::key_checks::assert_lists_every_key(&config, eval_keys::EVAL_KEYS);
    }

    #[test]
    fn validation_enforces_exactly_the_listed_ranges() {
        crate::config::key_checks::assert_ranges_enforced::<EvalConfig>(
            eval_keys::EVAL_KEYS,
            |_| Vec::new(),
        );
    }

    #[test]
    fn the_annotated_form_comments_every_key_and_reads_back_unchanged() {
        let mut config = EvalConfig::default();
        let text = config.to_annotated_toml().unwrap();
        crate::config::key_checks::assert_annotated_reads_back(&config, &text);
        assert!(text.contains("# limit is unset. Use only the first N training and N test"));
        assert!(text.contains("# Operations and inputs of the normal cell's nodes."));
        config.data.limit = Some(64);
        config.speed.autocast = Autocast::Bf16;
        config.genotype = Genotype::builtin("NASNet").unwrap();
        let text = config.to_annotated_toml().unwrap();
        crate::config::key_checks::assert_annotated_reads_back(&config, &text);
    }
}
