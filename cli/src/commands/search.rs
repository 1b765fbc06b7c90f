//! `prime search`: a local architecture search with a progress bar; Ctrl-C stops at the next
//! step with a checkpoint, `--resume DIR` continues.

use super::ptb;
use crate::device::MachineArgs;
use crate::progress::{alpha_steps_summary, unique_run_dir, RunProgress};
use crate::run_dir::{self, RunDirArgs};
use anyhow::{bail, Context};
use clap::Args;
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::dataset::Dataset;
use prime_core::presets;
use prime_core::rnn_config::RnnSearchConfig;
use prime_nas::run::layout::CONFIG_FILE;
use prime_nas::run::RunOptions;
use prime_nas::search::run_search;
use std::path::PathBuf;

/// Arguments of `prime search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Config file (TOML, version = 1; a recurrent search config with --dataset ptb); default:
    /// the `--method` preset.
    #[arg(long, value_name = "FILE", conflicts_with = "method")]
    config: Option<PathBuf>,
    /// Method preset of configs/methods (darts, cs10, fimt, pr, darts-prime, crb, ...).
    #[arg(long, value_name = "NAME")]
    method: Option<String>,
    /// Dataset: cifar10 or cifar100 (shorthand for --set data.dataset=NAME), or ptb for the
    /// recurrent-cell search on Penn Treebank (corpus in --data-dir or its ptb folder).
    #[arg(long)]
    dataset: Option<String>,
    /// Seed; shorthand for --set seed=N.
    #[arg(long)]
    seed: Option<u64>,
    /// Override a config value (dotted key), e.g. --set data.batch_size=32. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    #[command(flatten)]
    run: RunDirArgs,
    #[command(flatten)]
    machine: MachineArgs,
}

/// Where a new CIFAR search's config comes from: a file or a method preset, then the
/// dataset, the seed and the `--set` overrides.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// Config file; `None` for the method preset.
    pub config: Option<PathBuf>,
    /// Method preset (`darts` when neither this nor a file is given).
    pub method: Option<String>,
    /// `cifar10` or `cifar100`.
    pub dataset: Option<String>,
    /// Seed.
    pub seed: Option<u64>,
    /// `key=value` overrides, applied last.
    pub overrides: Vec<String>,
}

/// The validated CIFAR search config `source` resolves to, exactly as `prime search` runs it.
pub fn resolved_config(source: &ConfigSource) -> anyhow::Result<SearchConfig> {
    let mut overrides = Vec::new();
    if let Some(dataset) = &source.dataset {
        let dataset: prime_core::dataset::ImageDataset = dataset.parse()?;
        overrides.push(format!("data.dataset=\"{dataset}\""));
    }
    if let Some(seed) = source.seed {
        overrides.push(format!("seed={seed}"));
    }
    overrides.extend(source.overrides.iter().cloned());
    Ok(match &source.config {
        Some(path) => SearchConfig::load(path, &overrides)?,
        None => presets::method_config(source.method.as_deref().unwrap_or("darts"), &overrides)?,
    })
}

/// The recurrent search config of a PTB run (new or resumed), `None` for a CIFAR run.
fn recurrent_config(args: &SearchArgs) -> anyhow::Result<Option<RnnSearchConfig>> {
    if let Some(dir) = &args.run.resume {
        return ptb::stored_recurrent_config(
            dir,
            |path| RnnSearchConfig::load(path, &[]),
            "a search",
        );
    }
    let Some(dataset) = &args.dataset else {
        return Ok(None);
    };
    if dataset.parse::<Dataset>().ok() != Some(Dataset::Ptb) {
        return Ok(None);
    }
    let mut overrides = Vec::new();
    if let Some(seed) = args.seed {
        overrides.push(format!("seed={seed}"));
    }
    overrides.extend(args.overrides.iter().cloned());
    let config = match &args.config {
        Some(path) => RnnSearchConfig::load(path, &overrides)?,
        None => {
            let preset = presets::method_config(args.method.as_deref().unwrap_or("darts"), &[])?;
            RnnSearchConfig::from_method(&preset)?.with_overrides(&overrides)?
        }
    };
    Ok(Some(config))
}

/// Runs `prime search`.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    if args.run.resume.is_some()
        && (args.method.is_some()
            || args.dataset.is_some()
            || args.seed.is_some()
            || !args.overrides.is_empty())
    {
        bail!("--resume continues with the config stored in the run directory; drop --method, --dataset, --seed and --set");
    }
    if let Some(config) = recurrent_config(&args)? {
        return ptb::search(&config, &args.run, &args.machine);
    }
    let device = args.machine.device()?;
    let (config, run_dir, resume) = match &args.run.resume {
        Some(dir) => {
            let config = SearchConfig::load(&dir.join(CONFIG_FILE), &[])
                .with_context(|| format!("{} is not a search run directory", dir.display()))?;
            (config, dir.clone(), true)
        }
        None => {
            let config = resolved_config(&ConfigSource {
                config: args.config.clone(),
                method: args.method.clone(),
                dataset: args.dataset.clone(),
                seed: args.seed,
                overrides: args.overrides.clone(),
            })?;
            let run_dir = args.run.new_run_dir("search", || {
                unique_run_dir(&format!(
                    "{}-{}-seed{}",
                    config.method, config.data.dataset, config.seed
                ))
            })?;
            (config, run_dir, false)
        }
    };
    let options = RunOptions {
        run_dir: run_dir.clone(),
        data_dir: run_dir::data_dir(&args.machine, args.run.resume.as_deref())?,
        device,
        resume,
        download: args.machine.download(),
    };
    eprintln!(
        "search: method {} on {} (seed {}, {} epochs, device {:?}) -> {}",
        config.method,
        config.data.dataset,
        config.seed,
        config.epochs,
        device,
        run_dir.display()
    );
    let epochs = config.epochs;
    let observer = RunProgress::new(
        args.machine.quiet,
        Box::new(|record| {
            let (loss, acc) = (record.get("loss")?, record.get("acc")?);
            Some(format!("loss {loss:.4}  acc {acc:5.1}%"))
        }),
        Box::new(move |record| {
            let value = |key: &str| record.get(key).unwrap_or(f64::NAN);
            Some(format!(
                "epoch {}/{}: train loss {:.4} acc {:.2}%  valid loss {:.4} acc {:.2}%  alpha steps {}",
                record.epoch + 1,
                epochs,
                value("train_loss"),
                value("train_acc"),
                value("valid_loss"),
                value("valid_acc"),
                record.get("alpha_steps").unwrap_or(0.0),
            ))
        }),
    );
    let mut observer = observer.stopping_after(args.run.stop_after);
    let outcome = run_search(&config, &options, &mut observer)?;
    observer.finish();
    if !outcome.finished {
        eprintln!(
            "search stopped with a checkpoint; continue with: prime search --resume {}",
            run_dir.display()
        );
        return observer.stopped();
    }
    println!("{}", outcome.genotype.to_json());
    eprintln!(
        "search finished after {}: genotype in {}",
        alpha_steps_summary(outcome.alpha_steps),
        run_dir.join("genotype.txt").display()
    );
    Ok(())
}
