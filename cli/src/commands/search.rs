//! `prime search`: a local architecture search with a progress bar; Ctrl-C stops at the next
//! step with a checkpoint, `--resume DIR` continues.

use super::ptb;
use crate::config_choice::SearchConfigArgs;
use crate::device::{resume_devices_flag, MachineArgs};
use crate::progress::{alpha_steps_summary, unique_run_dir, RunProgress};
use crate::run_dir::{self, RunDirArgs};
use anyhow::{bail, Context};
use clap::Args;
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::rnn_config::RnnSearchConfig;
use prime_nas::run::layout::CONFIG_FILE;
use prime_nas::run::RunOptions;
use prime_nas::search::run_search_data_parallel;

/// Arguments of `prime search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    config: SearchConfigArgs,
    /// Search data-parallel on these devices, one rank each (e.g. cpu,cpu or cuda:0,cuda:1):
    /// every rank takes its share of each weight and alpha batch of data.batch_size images, and
    /// batch norm normalises each share on its own. Replaces --device; CIFAR and first-order
    /// alpha steps only.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        conflicts_with = "device"
    )]
    devices: Vec<String>,
    #[command(flatten)]
    run: RunDirArgs,
    #[command(flatten)]
    machine: MachineArgs,
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
    if !args.config.source.is_ptb() {
        return Ok(None);
    }
    Ok(Some(args.config.recurrent_search_config()?))
}

/// Runs `prime search`.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    if args.run.resume.is_some() && args.config.any_given() {
        bail!("--resume continues with the config stored in the run directory; drop --config, --method, --dataset, --seed and --set");
    }
    if let Some(config) = recurrent_config(&args)? {
        if !args.devices.is_empty() {
            bail!("--devices: Penn Treebank searches run on one device; use --device");
        }
        return ptb::search(&config, &args.run, &args.machine);
    }
    let devices = args.machine.devices(&args.devices)?;
    let (config, run_dir, resume) = match &args.run.resume {
        Some(dir) => {
            let config = SearchConfig::load(&dir.join(CONFIG_FILE), &[])
                .with_context(|| format!("{} is not a search run directory", dir.display()))?;
            (config, dir.clone(), true)
        }
        None => {
            let config = args.config.search_config()?;
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
        device: devices[0],
        resume,
        download: args.machine.download(),
    };
    eprintln!(
        "search: method {} on {} (seed {}, {} epochs, devices {:?}) -> {}",
        config.method,
        config.data.dataset,
        config.seed,
        config.epochs,
        devices,
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
    let outcome = run_search_data_parallel(&devices, &config, &options, &mut observer)?;
    observer.finish();
    if !outcome.finished {
        let same_devices = resume_devices_flag(&args.devices);
        eprintln!(
            "search stopped with a checkpoint; continue with: prime search --resume {}{same_devices}",
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
