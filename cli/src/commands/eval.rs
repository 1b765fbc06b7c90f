//! `prime eval`: retrain a genotype from scratch on CIFAR (SPEC section 6) with a progress
//! bar; Ctrl-C stops at the next step with a checkpoint, `--resume DIR` continues.

use super::ptb;
use crate::config_choice::ConfigArgs;
use crate::device::{resume_devices_flag, MachineArgs};
use crate::progress::{unique_run_dir, RunProgress};
use crate::run_dir::{self, RunDirArgs};
use anyhow::{bail, Context};
use clap::Args;
use prime_core::config::LayeredConfig;
use prime_core::eval_config::EvalConfig;
use prime_core::rnn_config::RnnEvalConfig;
use prime_nas::cnn::eval_cost::{multiply_accumulates, ParameterCounts};
use prime_nas::cnn::eval_net::{EvalNetShape, EvalNetwork};
use prime_nas::data::IMAGE_SIDE;
use prime_nas::eval::{resolve_genotype, run_eval_data_parallel};
use prime_nas::run::layout::{CONFIG_FILE, TEST_REPORT};
use prime_nas::run::RunOptions;

/// Arguments of `prime eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The genotype: a built-in name (DARTS_V2, NASNet, ...; with --dataset ptb darts_v1,
    /// darts_v2, enas), a genotype file (JSON or reference text), or a search run directory
    /// (its genotype.json or genotype.txt).
    #[arg(
        long,
        value_name = "NAME|FILE|RUN_DIR",
        required_unless_present = "resume"
    )]
    genotype: Option<String>,
    /// Epochs (default 600; PTB 1200); shorthand for --set epochs=N.
    #[arg(long)]
    epochs: Option<u32>,
    // The config: by default the paper's evaluation settings (CIFAR: 600 epochs, 36 channels,
    // 20 cells, cutout, drop path, auxiliary head; PTB: the reference's 850-d retraining with
    // NT-ASGD and early stop), which `prime config show --eval` prints.
    #[command(flatten)]
    config: ConfigArgs,
    /// Train data-parallel on these devices, one rank each (e.g. cpu,cpu or cuda:0,cuda:1):
    /// every rank trains on its share of each batch of data.batch_size images, and batch norm
    /// normalises each share on its own. Replaces --device; CIFAR only.
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

/// The recurrent evaluation config of a PTB run (new or resumed), `None` for a CIFAR run.
fn recurrent_config(args: &EvalArgs) -> anyhow::Result<Option<RnnEvalConfig>> {
    if let Some(dir) = &args.run.resume {
        return ptb::stored_recurrent_config(
            dir,
            |path| RnnEvalConfig::load(path, &[]),
            "an evaluation",
        );
    }
    if !args.config.is_ptb() {
        return Ok(None);
    }
    let argument = args
        .genotype
        .as_deref()
        .context("--genotype is required for a new run")?;
    let genotype = prime_nas::rnn::eval::resolve_rnn_genotype(argument)?;
    let config = args
        .config
        .recurrent_eval_config(args.epochs, Some(genotype))?;
    Ok(Some(config))
}

/// Runs `prime eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.run.resume.is_some()
        && (args.genotype.is_some() || args.epochs.is_some() || args.config.any_given())
    {
        bail!(
            "--resume continues with the config stored in the run directory; drop \
             --genotype, --dataset, --epochs, --seed, --config and --set"
        );
    }
    if let Some(config) = recurrent_config(&args)? {
        if !args.devices.is_empty() {
            bail!("--devices: Penn Treebank evaluations run on one device; use --device");
        }
        return ptb::eval(&config, &args.run, &args.machine);
    }
    let devices = args.machine.devices(&args.devices)?;
    let (config, run_dir, resume) = match &args.run.resume {
        Some(dir) => {
            let config = EvalConfig::load(&dir.join(CONFIG_FILE), &[])
                .with_context(|| format!("{} is not an evaluation run directory", dir.display()))?;
            (config, dir.clone(), true)
        }
        None => {
            let config = new_config(&args)?;
            let run_dir = args.run.new_run_dir("eval", || {
                unique_run_dir(&format!(
                    "eval-{}-{}-seed{}",
                    config.label, config.data.dataset, config.seed
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
        "eval: {} on {} (C {}, {} layers, {} epochs, batch {}, seed {}, autocast {}, devices {:?}) -> {}",
        config.label,
        config.data.dataset,
        config.network.init_channels,
        config.network.layers,
        config.epochs,
        config.data.batch_size,
        config.seed,
        config.speed.autocast,
        devices,
        run_dir.display()
    );
    let epochs = config.epochs;
    let observer = RunProgress::new(
        args.machine.quiet,
        Box::new(|record| {
            let value = |key: &str| record.get(key).unwrap_or(f64::NAN);
            Some(format!(
                "loss {:.4}  acc {:5.1}%  {:.0} img/s",
                value("loss"),
                value("acc"),
                value("images_per_s")
            ))
        }),
        Box::new(move |record| {
            let value = |key: &str| record.get(key).unwrap_or(f64::NAN);
            Some(format!(
                "epoch {}/{}: lr {:.6}  drop path {:.3}  train loss {:.4} acc {:.2}%  test acc \
                 {:.2}% error {:.2}%  {:.0} img/s",
                record.epoch + 1,
                epochs,
                value("lr"),
                value("drop_path_prob"),
                value("train_loss"),
                value("train_acc"),
                value("test_acc"),
                value("test_error"),
                value("images_per_s"),
            ))
        }),
    );
    let mut observer = observer.stopping_after(args.run.stop_after);
    let outcome = run_eval_data_parallel(&devices, &config, &options, &mut observer)?;
    observer.finish();
    if !outcome.finished {
        let same_devices = resume_devices_flag(&args.devices);
        eprintln!(
            "stopped after {} of {} epochs with a checkpoint; continue with: prime eval --resume {}{same_devices}",
            outcome.epochs_done,
            config.epochs,
            run_dir.display()
        );
        return observer.stopped();
    }
    let report_path = run_dir.join(TEST_REPORT);
    let report = std::fs::read_to_string(&report_path)
        .with_context(|| format!("cannot read {}", report_path.display()))?;
    print!("{report}");
    eprintln!(
        "eval finished: test error {:.2}% with {:.2}M parameters (paper convention, auxiliary \
         head excluded); report in {}",
        outcome.test_error.unwrap_or(f64::NAN),
        outcome.params.millions(),
        report_path.display()
    );
    Ok(())
}

/// The config of a new run: defaults or `--config`, the shorthands and `--set`, the genotype.
fn new_config(args: &EvalArgs) -> anyhow::Result<EvalConfig> {
    let argument = args
        .genotype
        .as_deref()
        .context("--genotype is required for a new run")?;
    args.config
        .eval_config(args.epochs, Some(resolve_genotype(argument)?))
}

/// Parameters (SPEC 6.7 convention) and multiply-accumulates of the evaluation network of
/// `genotype` (a built-in name, a genotype file or a run directory), as printed by
/// `prime genotype params`.
pub fn params_json(
    genotype: &str,
    classes: i64,
    channels: i64,
    layers: i64,
) -> anyhow::Result<serde_json::Value> {
    let (genotype, _) = resolve_genotype(genotype)?;
    let shape = EvalNetShape {
        channels,
        classes,
        layers,
        auxiliary: true,
    };
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    EvalNetwork::new(&vs, shape, &genotype)?;
    let counts = ParameterCounts::of(&vs);
    Ok(serde_json::json!({
        "params": counts.network,
        "aux_params": counts.auxiliary,
        "params_m": counts.millions(),
        "macs": multiply_accumulates(&shape, &genotype, IMAGE_SIDE as i64),
    }))
}
