//! The Penn Treebank side of `prime search` and `prime eval` (SPEC section 7): a recurrent-cell
//! search of a method preset and the retraining of a recurrent genotype, with the same progress
//! display, Ctrl-C checkpoints and `--resume` as the CIFAR commands.

use crate::device::MachineArgs;
use crate::progress::{unique_run_dir, RunProgress};
use crate::run_dir::{self, RunDirArgs};
use anyhow::Context;
use prime_core::config::ConfigError;
use prime_core::rnn_config::{RnnEvalConfig, RnnSearchConfig};
use prime_nas::rnn::corpus::CORPUS_FOLDER;
use prime_nas::rnn::{run_rnn_eval, run_rnn_search};
use prime_nas::run::layout::{CONFIG_FILE, GENOTYPE_TEXT};
use prime_nas::run::RunOptions;
use std::path::{Path, PathBuf};

/// The corpus folder under `--data-dir`: the directory itself when it holds the corpus files,
/// else its `ptb` subfolder (where the cluster worker looks too).
pub fn corpus_dir(data_dir: &Path) -> PathBuf {
    let holds_corpus = ["train.txt", "ptb.train.txt"]
        .iter()
        .any(|name| data_dir.join(name).is_file());
    if holds_corpus {
        data_dir.to_path_buf()
    } else {
        data_dir.join(CORPUS_FOLDER)
    }
}

/// The config stored in the run directory `dir` when it is a recurrent one (it has a BPTT
/// length), read with `load`; `None` for a CIFAR run. A missing or unparsable file counts as
/// not recurrent, so the CIFAR loader reports what is wrong with it; `kind` names the run in
/// errors.
pub fn stored_recurrent_config<C>(
    dir: &Path,
    load: impl Fn(&Path) -> Result<C, ConfigError>,
    kind: &str,
) -> anyhow::Result<Option<C>> {
    let path = dir.join(CONFIG_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let recurrent = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|table| table.get("data")?.get("bptt").cloned())
        .is_some();
    if !recurrent {
        return Ok(None);
    }
    let config =
        load(&path).with_context(|| format!("{} is not {kind} run directory", dir.display()))?;
    Ok(Some(config))
}

/// The run directory (new, or the one `--resume` names) and the engine's options for it.
fn run_options(
    run: &RunDirArgs,
    machine: &MachineArgs,
    command: &str,
    default_dir: impl FnOnce() -> PathBuf,
) -> anyhow::Result<(PathBuf, RunOptions)> {
    let run_dir = match &run.resume {
        Some(dir) => dir.clone(),
        None => run.new_run_dir(command, default_dir)?,
    };
    let options = RunOptions {
        run_dir: run_dir.clone(),
        data_dir: corpus_dir(&run_dir::data_dir(machine, run.resume.as_deref())?),
        device: machine.device()?,
        resume: run.resume.is_some(),
        download: machine.download(),
    };
    Ok((run_dir, options))
}

/// Runs (or resumes) a recurrent search.
pub fn search(
    config: &RnnSearchConfig,
    run: &RunDirArgs,
    machine: &MachineArgs,
) -> anyhow::Result<()> {
    let (run_dir, options) = run_options(run, machine, "search", || {
        unique_run_dir(&format!("{}-ptb-seed{}", config.method, config.seed))
    })?;
    eprintln!(
        "search: method {} on ptb (seed {}, {} epochs, {}-d cell, batch {}, device {:?}) -> {}",
        config.method,
        config.seed,
        config.epochs,
        config.network.nhid,
        config.data.batch_size,
        options.device,
        run_dir.display()
    );
    let epochs = config.epochs;
    let observer = RunProgress::new(
        machine.quiet,
        Box::new(|record| {
            let (loss, ppl) = (record.get("loss")?, record.get("ppl")?);
            Some(format!("loss {loss:.4}  ppl {ppl:8.2}"))
        }),
        Box::new(move |record| {
            let value = |key: &str| record.get(key).unwrap_or(f64::NAN);
            Some(format!(
                "epoch {}/{}: train ppl {:.2}  valid ppl {:.2} (best {:.2})  alpha steps {}",
                record.epoch + 1,
                epochs,
                value("train_ppl"),
                value("valid_ppl"),
                value("best_valid_ppl"),
                record.get("alpha_steps").unwrap_or(0.0),
            ))
        }),
    );
    let mut observer = observer.stopping_after(run.stop_after);
    let outcome = run_rnn_search(config, &options, &mut observer)?;
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
        "search finished after {}: best valid ppl {:.2}; genotype (best validation epoch) in {}",
        crate::progress::alpha_steps_summary(outcome.alpha_steps),
        outcome.best_valid_ppl.unwrap_or(f64::NAN),
        run_dir.join(GENOTYPE_TEXT).display()
    );
    Ok(())
}

/// Runs (or resumes) a recurrent evaluation.
pub fn eval(config: &RnnEvalConfig, run: &RunDirArgs, machine: &MachineArgs) -> anyhow::Result<()> {
    let (run_dir, options) = run_options(run, machine, "eval", || {
        unique_run_dir(&format!("eval-{}-ptb-seed{}", config.label, config.seed))
    })?;
    eprintln!(
        "eval: {} on ptb ({}-d cell, {} epochs, batch {}, seed {}, device {:?}) -> {}",
        config.label,
        config.network.nhid,
        config.epochs,
        config.data.batch_size,
        config.seed,
        options.device,
        run_dir.display()
    );
    let epochs = config.epochs;
    let observer = RunProgress::new(
        machine.quiet,
        Box::new(|record| {
            let (loss, ppl) = (record.get("loss")?, record.get("ppl")?);
            Some(format!("loss {loss:.4}  ppl {ppl:8.2}"))
        }),
        Box::new(move |record| {
            let value = |key: &str| record.get(key).unwrap_or(f64::NAN);
            Some(format!(
                "epoch {}/{}: train ppl {:.2}  valid ppl {:.2} (best {:.2})",
                record.epoch + 1,
                epochs,
                value("train_ppl"),
                value("valid_ppl"),
                value("best_valid_ppl"),
            ))
        }),
    );
    let mut observer = observer.stopping_after(run.stop_after);
    let outcome = run_rnn_eval(config, &options, &mut observer)?;
    observer.finish();
    if !outcome.finished {
        eprintln!(
            "stopped after {} of {} epochs with a checkpoint; continue with: prime eval --resume {}",
            outcome.epochs_done,
            config.epochs,
            run_dir.display()
        );
        return observer.stopped();
    }
    println!(
        "{}",
        serde_json::json!({
            "valid_ppl": outcome.valid_ppl,
            "test_ppl": outcome.test_ppl,
            "best_epoch": outcome.best_epoch,
            "asgd_epoch": outcome.asgd_epoch,
            "params": outcome.params,
        })
    );
    eprintln!(
        "eval finished: valid ppl {:.2}, test ppl {:.2} with {:.2}M parameters",
        outcome.valid_ppl.unwrap_or(f64::NAN),
        outcome.test_ppl.unwrap_or(f64::NAN),
        outcome.params as f64 / 1e6
    );
    Ok(())
}
