//! The arguments that choose a run's configuration, declared once for `prime search`, `prime
//! eval` and `prime config show`, and how they resolve to each of the four configs (CNN or
//! recurrent, search or evaluation) exactly as the commands run them.

use clap::Args;
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::dataset::{Dataset, ImageDataset};
use prime_core::eval_config::EvalConfig;
use prime_core::genotype::{Genotype, RnnGenotype};
use prime_core::presets;
use prime_core::rnn_config::{RnnEvalConfig, RnnSearchConfig};
use std::path::PathBuf;

/// `--config`, `--dataset`, `--seed` and `--set`: a config file or the defaults, then the
/// shorthands, then the overrides.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Config file (TOML, version = 1) instead of the defaults: a search config for `search`, an
    /// evaluation config for `eval` (and `config show --eval`), a recurrent one with --dataset
    /// ptb.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dataset: cifar10 or cifar100 (shorthand for --set data.dataset=NAME), or ptb for the
    /// recurrent-cell search and evaluation on Penn Treebank (corpus in --data-dir or its ptb
    /// folder).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Seed; shorthand for --set seed=N.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override a config value by its dotted key (`prime config keys` lists them), e.g. --set
    /// data.batch_size=32. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// The method preset besides [`ConfigArgs`]: what chooses a search's config.
#[derive(Debug, Clone, Default, Args)]
pub struct SearchConfigArgs {
    /// Method preset of configs/methods (darts, cs10, fimt, pr, darts-prime, crb, ...); default
    /// darts.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub method: Option<String>,
    #[command(flatten)]
    pub source: ConfigArgs,
}

impl ConfigArgs {
    /// Whether any of the arguments is given (a resumed run takes none).
    pub fn any_given(&self) -> bool {
        self.config.is_some()
            || self.dataset.is_some()
            || self.seed.is_some()
            || !self.overrides.is_empty()
    }

    /// Whether `--dataset` chooses Penn Treebank (a recurrent config).
    pub fn is_ptb(&self) -> bool {
        self.dataset.as_deref().and_then(|name| name.parse().ok()) == Some(Dataset::Ptb)
    }

    /// The overrides of a config: the image dataset when `with_dataset`, `epochs`, the seed,
    /// then `--set`.
    fn overrides(&self, with_dataset: bool, epochs: Option<u32>) -> anyhow::Result<Vec<String>> {
        let mut overrides = Vec::new();
        if let (true, Some(dataset)) = (with_dataset, &self.dataset) {
            let dataset: ImageDataset = dataset.parse()?;
            overrides.push(format!("data.dataset=\"{dataset}\""));
        }
        if let Some(epochs) = epochs {
            overrides.push(format!("epochs={epochs}"));
        }
        if let Some(seed) = self.seed {
            overrides.push(format!("seed={seed}"));
        }
        overrides.extend(self.overrides.iter().cloned());
        Ok(overrides)
    }

    /// The CIFAR evaluation config: the file or the paper's settings, `epochs`, the shorthands
    /// and `--set`, then `genotype` (name and cells) when given, validated.
    pub fn eval_config(
        &self,
        epochs: Option<u32>,
        genotype: Option<(Genotype, String)>,
    ) -> anyhow::Result<EvalConfig> {
        let overrides = self.overrides(true, epochs)?;
        let mut config = match &self.config {
            Some(path) => EvalConfig::load(path, &overrides)?,
            None => EvalConfig::from_overrides(&overrides)?,
        };
        if let Some((genotype, label)) = genotype {
            config.genotype = genotype;
            config.label = label;
            config.validate("prime eval")?;
        }
        Ok(config)
    }

    /// The recurrent evaluation config: the file or the reference's settings for `genotype`
    /// (DARTS_V2 when none), `epochs`, the seed and `--set`, validated.
    pub fn recurrent_eval_config(
        &self,
        epochs: Option<u32>,
        genotype: Option<(RnnGenotype, String)>,
    ) -> anyhow::Result<RnnEvalConfig> {
        let overrides = self.overrides(false, epochs)?;
        let mut config = match (&self.config, &genotype) {
            (Some(path), _) => RnnEvalConfig::load(path, &overrides)?,
            (None, Some((genotype, label))) => {
                RnnEvalConfig::for_genotype(genotype.clone(), label, &overrides)?
            }
            (None, None) => RnnEvalConfig::default().with_overrides(&overrides)?,
        };
        if let Some((genotype, label)) = genotype {
            config.genotype = genotype;
            config.label = label;
            config.validate("prime eval")?;
        }
        Ok(config)
    }
}

impl SearchConfigArgs {
    /// Whether any of the arguments is given (a resumed run takes none).
    pub fn any_given(&self) -> bool {
        self.method.is_some() || self.source.any_given()
    }

    /// The validated CIFAR search config, exactly as `prime search` runs it.
    pub fn search_config(&self) -> anyhow::Result<SearchConfig> {
        let overrides = self.source.overrides(true, None)?;
        Ok(match &self.source.config {
            Some(path) => SearchConfig::load(path, &overrides)?,
            None => presets::method_config(self.method_name(), &overrides)?,
        })
    }

    /// The validated recurrent search config: the file, or the method preset mapped onto the
    /// recurrent search; then the seed and `--set`.
    pub fn recurrent_search_config(&self) -> anyhow::Result<RnnSearchConfig> {
        let overrides = self.source.overrides(false, None)?;
        Ok(match &self.source.config {
            Some(path) => RnnSearchConfig::load(path, &overrides)?,
            None => {
                let preset = presets::method_config(self.method_name(), &[])?;
                RnnSearchConfig::from_method(&preset)?.with_overrides(&overrides)?
            }
        })
    }

    /// The method preset, `darts` when none is named.
    fn method_name(&self) -> &str {
        self.method.as_deref().unwrap_or("darts")
    }
}
