//! `prime search`: a local architecture search with a progress bar.

use crate::device::{apply_threads, parse_device};
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prime_core::config::SearchConfig;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, Progress, RunObserver};
use prime_core::presets;
use prime_nas::data::DownloadPolicy;
use prime_nas::search::{run_search, RunOptions, CONFIG_FILE};
use std::path::{Path, PathBuf};

/// Arguments of `prime search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Config file (TOML, version = 1); default: the `--method` preset.
    #[arg(long, value_name = "FILE", conflicts_with = "method")]
    config: Option<PathBuf>,
    /// Method preset of configs/methods (darts, cs10, fimt, pr, darts-prime, crb, ...).
    #[arg(long, value_name = "NAME")]
    method: Option<String>,
    /// Dataset (cifar10 or cifar100); shorthand for --set data.dataset=NAME.
    #[arg(long)]
    dataset: Option<String>,
    /// Seed; shorthand for --set seed=N.
    #[arg(long)]
    seed: Option<u64>,
    /// Override a config value (dotted key), e.g. --set data.batch_size=32. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Directory holding the dataset (or where to download it).
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Never download a missing dataset.
    #[arg(long)]
    no_download: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run directory (default: runs/<method>-<dataset>-seed<seed>, made unique).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint, with the config stored there.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// libtorch intra-op threads.
    #[arg(long)]
    threads: Option<i32>,
    /// No progress bar (log epoch lines only).
    #[arg(long)]
    quiet: bool,
}

/// Runs `prime search`.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    apply_threads(args.threads)?;
    let device = parse_device(&args.device)?;
    let (config, run_dir, resume) = match &args.resume {
        Some(dir) => {
            if args.method.is_some()
                || args.dataset.is_some()
                || args.seed.is_some()
                || !args.overrides.is_empty()
            {
                bail!("--resume continues with the config stored in the run directory; drop --method, --dataset, --seed and --set");
            }
            let config = SearchConfig::load(&dir.join(CONFIG_FILE), &[])
                .with_context(|| format!("{} is not a search run directory", dir.display()))?;
            (config, dir.clone(), true)
        }
        None => {
            let mut overrides = Vec::new();
            if let Some(dataset) = &args.dataset {
                let dataset: prime_core::dataset::DatasetKind = dataset.parse()?;
                overrides.push(format!("data.dataset=\"{dataset}\""));
            }
            if let Some(seed) = args.seed {
                overrides.push(format!("seed={seed}"));
            }
            overrides.extend(args.overrides.iter().cloned());
            let config = match &args.config {
                Some(path) => SearchConfig::load(path, &overrides)?,
                None => {
                    presets::method_config(args.method.as_deref().unwrap_or("darts"), &overrides)?
                }
            };
            let run_dir = match &args.out {
                Some(dir) => dir.clone(),
                None => unique_run_dir(&config),
            };
            (config, run_dir, false)
        }
    };
    let options = RunOptions {
        run_dir: run_dir.clone(),
        data_dir: args.data_dir.clone(),
        device,
        resume,
        download: if args.no_download {
            DownloadPolicy::Never
        } else {
            DownloadPolicy::IfMissing
        },
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
    let mut observer = ProgressObserver::new(args.quiet, config.epochs);
    let outcome = run_search(&config, &options, &mut observer)?;
    observer.bar.finish_and_clear();
    println!("{}", outcome.genotype.to_json());
    eprintln!(
        "search finished: genotype in {}",
        run_dir.join("genotype.txt").display()
    );
    Ok(())
}

fn unique_run_dir(config: &SearchConfig) -> PathBuf {
    let base = format!(
        "{}-{}-seed{}",
        config.method, config.data.dataset, config.seed
    );
    let runs = Path::new("runs");
    let mut candidate = runs.join(&base);
    let mut counter = 2;
    while candidate.exists() {
        candidate = runs.join(format!("{base}-{counter}"));
        counter += 1;
    }
    candidate
}

/// Shows progress on stderr: a bar with loss, accuracy and ETA; a line per epoch.
struct ProgressObserver {
    bar: ProgressBar,
    quiet: bool,
    epochs: u32,
}

impl ProgressObserver {
    fn new(quiet: bool, epochs: u32) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} steps  {msg}  elapsed {elapsed_precise}  eta {eta_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        };
        Self { bar, quiet, epochs }
    }
}

impl RunObserver for ProgressObserver {
    fn on_metric(&mut self, record: &MetricRecord) {
        match record.kind {
            MetricKind::Step => {
                self.bar.set_position(record.step);
                if let (Some(loss), Some(acc)) = (record.get("loss"), record.get("acc")) {
                    self.bar
                        .set_message(format!("loss {loss:.4}  acc {acc:5.1}%"));
                }
            }
            MetricKind::Epoch => {
                let line = format!(
                    "epoch {}/{}: train loss {:.4} acc {:.2}%  valid loss {:.4} acc {:.2}%  alpha steps {}",
                    record.epoch + 1,
                    self.epochs,
                    record.get("train_loss").unwrap_or(f64::NAN),
                    record.get("train_acc").unwrap_or(f64::NAN),
                    record.get("valid_loss").unwrap_or(f64::NAN),
                    record.get("valid_acc").unwrap_or(f64::NAN),
                    record.get("alpha_steps").unwrap_or(0.0),
                );
                if self.quiet || self.bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    self.bar.println(line);
                }
            }
            MetricKind::AlphaStep | MetricKind::Final => {}
        }
    }

    fn on_checkpoint(&mut self, dir: &Path, _progress: &Progress) {
        tracing::debug!("checkpoint written to {}", dir.display());
    }

    fn control(&mut self, progress: &Progress) -> Control {
        if self.bar.length() != Some(progress.steps_total) {
            self.bar.set_length(progress.steps_total);
            self.bar.set_position(progress.steps_done);
        }
        self.bar.set_prefix(format!(
            "epoch {}/{}",
            progress.epochs_done + 1,
            progress.epochs_total
        ));
        Control::Continue
    }
}
