//! Evaluation (retraining) of a recurrent genotype on Penn Treebank (SPEC 7.9): jittered
//! sequence lengths, SGD switching to averaged SGD by the non-monotone trigger (NT-ASGD),
//! validation with the averaged weights while averaging, early stop, and the test perplexity
//! of the best weights with batch size 1.
//!
//! The run directory holds `config.toml` (genotype included), `genotype.json` /
//! `genotype.txt`, `metrics.jsonl`, `checkpoints/`, `best_weights.safetensors` (the weights of
//! the best validation loss, averaged ones in the ASGD phase) and at the end `test.json`.
//!
//! A NaN or infinite training loss fails the run with [`EvalError::Diverged`]; the reference
//! instead reloads its best checkpoint and continues.

use super::corpus::{batchify, corpus_files, get_batch, load_corpus};
use super::dropout::{DropoutMasks, DropoutRates};
use super::model::{evaluate, parameter_count, RnnModel};
use super::trainer::{eval_seq_len, perplexity, scaled_lr, should_switch_to_asgd, training_loss};
use super::{draw_key, DrawStream};
use crate::checkpoint::{self, annotate, sha256_hex, Checkpoint, CheckpointError};
use crate::eval::{
    EvalError, RunOptions, CHECKPOINT_DIR, CONFIG_FILE, GENOTYPE_JSON, GENOTYPE_TEXT,
};
use crate::fingerprint::DataFingerprint;
use crate::optim::{self, Asgd, AsgdConfig, OptimError, Optimizer, Sgd, SgdConfig};
use crate::search::records::{RecordLengths, RunRecords};
use prime_core::config::LayeredConfig;
use prime_core::genotype::RnnGenotype;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, Progress, RunObserver};
use prime_core::rnn_config::RnnEvalConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Weights of the best validation loss.
pub const BEST_WEIGHTS: &str = "best_weights.safetensors";
/// The test report of a finished run.
pub const TEST_REPORT: &str = "test.json";
/// A step record is written every this many global steps.
const STEP_RECORD_EVERY: u64 = 50;
/// ASGD's power of the eta update (PyTorch default; irrelevant with lambd = 0).
const ASGD_ALPHA: f64 = 0.75;

/// What a recurrent evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnEvalOutcome {
    /// Whether training ended (all epochs or early stop) and the test ran.
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// exp(best validation loss).
    pub valid_ppl: Option<f64>,
    /// Test perplexity of the best weights (batch size 1), once finished.
    pub test_ppl: Option<f64>,
    /// 0-based epoch of the best validation loss.
    pub best_epoch: Option<u32>,
    /// 0-based epoch after which the optimizer switched to ASGD.
    pub asgd_epoch: Option<u32>,
    /// Trainable parameters.
    pub params: i64,
}

/// Loads the recurrent genotype an argument names: a run directory (its `genotype.json`, else
/// its `genotype.txt`), a genotype file (JSON or reference text), or a built-in name
/// (DARTS_V1, DARTS_V2 = DARTS, ENAS). Returns the genotype and a label for records.
pub fn resolve_rnn_genotype(argument: &str) -> Result<(RnnGenotype, String), EvalError> {
    let path = Path::new(argument);
    let stem = |path: &Path| {
        path.file_stem()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| argument.to_string())
    };
    let load = |file: &Path| {
        RnnGenotype::load(file).map_err(|error| EvalError::Genotype(error.to_string()))
    };
    if path.is_dir() {
        let file = [GENOTYPE_JSON, GENOTYPE_TEXT]
            .iter()
            .map(|name| path.join(name))
            .find(|file| file.is_file())
            .ok_or_else(|| {
                EvalError::Genotype(format!(
                    "{}: no {GENOTYPE_JSON} or {GENOTYPE_TEXT} in this directory (is it a \
                     search run directory?)",
                    path.display()
                ))
            })?;
        return Ok((load(&file)?, stem(path)));
    }
    if path.is_file() {
        return Ok((load(path)?, stem(path)));
    }
    let genotype = RnnGenotype::builtin(argument).map_err(|_| {
        EvalError::Genotype(format!(
            "`{argument}` is neither a run directory, a genotype file nor a built-in recurrent \
             genotype (built-ins: {})",
            RnnGenotype::builtin_names().join(", ")
        ))
    })?;
    let label = RnnGenotype::builtin_names()
        .iter()
        .find(|name| name.eq_ignore_ascii_case(argument))
        .map_or_else(|| argument.to_string(), |name| name.to_string());
    Ok((genotype, label))
}

/// The weight optimizer: SGD until the NT-ASGD trigger, then a fresh ASGD.
enum WeightOptimizer {
    Sgd(Sgd),
    Asgd(Asgd),
}

impl WeightOptimizer {
    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        match self {
            WeightOptimizer::Sgd(optimizer) => optimizer.step(lr),
            WeightOptimizer::Asgd(optimizer) => optimizer.step(lr),
        }
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        match self {
            WeightOptimizer::Sgd(optimizer) => optimizer.state(),
            WeightOptimizer::Asgd(optimizer) => optimizer.state(),
        }
    }

    fn zero_grad(&self) -> Result<(), OptimError> {
        match self {
            WeightOptimizer::Sgd(optimizer) => optimizer.zero_grad(),
            WeightOptimizer::Asgd(optimizer) => optimizer.zero_grad(),
        }
    }
}

/// Everything besides tensors that a checkpoint restores.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
    epoch: u32,
    cursor: usize,
    batch: u64,
    global_step: u64,
    asgd: bool,
    asgd_epoch: Option<u32>,
    /// Validation losses of the SGD-phase epochs.
    history: Vec<f64>,
    best_valid_loss: Option<f64>,
    best_epoch: Option<u32>,
    epochs_since_best: u32,
    converged: bool,
    train_loss_sum: f64,
    train_batches: u64,
    records: RecordLengths,
    config_sha256: String,
}

/// Runs (or resumes) a recurrent evaluation as configured, writing into `options.run_dir`,
/// whose `data_dir` is the corpus folder.
pub fn run_rnn_eval(
    config: &RnnEvalConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<RnnEvalOutcome, EvalError> {
    config.validate("recurrent evaluation config")?;
    let run_dir = &options.run_dir;
    let config_text = config.to_toml();
    let config_sha256 = sha256_hex(config_text.as_bytes());
    let checkpoint_dir = run_dir.join(CHECKPOINT_DIR);
    let device = options.device;
    super::download::ensure_ptb(&options.data_dir, options.download)?;
    let corpus = load_corpus(&options.data_dir)?;
    let limit = config
        .data
        .limit
        .unwrap_or(corpus.train.len())
        .min(corpus.train.len());
    let train = batchify(
        &corpus.train[..limit],
        config.data.batch_size,
        device,
        "train",
    )?;
    let valid = batchify(&corpus.valid, config.data.eval_batch_size, device, "valid")?;
    let test = batchify(&corpus.test, config.data.test_batch_size, device, "test")?;
    std::fs::create_dir_all(run_dir).map_err(|error| annotate(run_dir, error))?;
    let resuming = options.resume && checkpoint::has_checkpoint(&checkpoint_dir);
    DataFingerprint::of_files(&options.data_dir, &corpus_files(&options.data_dir)?)?
        .record_or_check(run_dir, resuming)?;

    let vs = nn::VarStore::new(device);
    let model = crate::torch_rng::seeded(config.seed, || {
        RnnModel::fixed(
            &vs.root(),
            corpus.vocab(),
            config.network.nhid,
            &config.genotype,
        )
    });
    let params = parameter_count(&vs);
    let weights = optim::trainable_parameters(&vs);
    let sgd = || {
        Sgd::new(
            copies(&weights),
            SgdConfig {
                momentum: 0.0,
                weight_decay: config.weights.weight_decay,
            },
        )
    };
    let asgd = || {
        Asgd::new(
            copies(&weights),
            AsgdConfig {
                lambd: 0.0,
                alpha: ASGD_ALPHA,
                t0: 0.0,
                weight_decay: config.weights.weight_decay,
            },
        )
    };
    let mut optimizer = WeightOptimizer::Sgd(sgd()?);
    let batch_size = config.data.batch_size as i64;
    let bptt = config.data.bptt;
    let train_rows = train.size()[0] as usize;
    let steps_total = u64::from(config.epochs) * train_rows.saturating_sub(2).div_ceil(bptt) as u64;
    let rates = DropoutRates::from(&config.network);

    let mut state = LoopState {
        epoch: 0,
        cursor: 0,
        batch: 0,
        global_step: 0,
        asgd: false,
        asgd_epoch: None,
        history: Vec::new(),
        best_valid_loss: None,
        best_epoch: None,
        epochs_since_best: 0,
        converged: false,
        train_loss_sum: 0.0,
        train_batches: 0,
        records: RecordLengths::default(),
        config_sha256: config_sha256.clone(),
    };
    let mut hidden = model.init_hidden(batch_size);
    let mut records = if resuming {
        let (saved, path) = Checkpoint::read_latest(&checkpoint_dir)?;
        state = saved.loop_state(&path)?;
        if state.config_sha256 != config_sha256 {
            return Err(EvalError::Resume {
                dir: run_dir.clone(),
                message: checkpoint::CONFIG_CHANGED.to_string(),
            });
        }
        let variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        checkpoint::restore_named(&variables, saved.group("weights"), &path)?;
        optimizer = if state.asgd {
            let mut restored = asgd()?;
            restored.load_state(saved.group("optimizer"))?;
            WeightOptimizer::Asgd(restored)
        } else {
            let mut restored = sgd()?;
            restored.load_state(saved.group("optimizer"))?;
            WeightOptimizer::Sgd(restored)
        };
        let saved_hidden = [("train".to_string(), hidden.shallow_clone())];
        checkpoint::restore_named(&saved_hidden, saved.group("hidden"), &path)?;
        tracing::info!(
            epoch = state.epoch,
            step = state.global_step,
            "resumed from {}",
            path.display()
        );
        RunRecords::open_metrics_only(run_dir, Some(state.records))?
    } else {
        std::fs::write(run_dir.join(CONFIG_FILE), &config_text)
            .map_err(|error| annotate(run_dir, error))?;
        config
            .genotype
            .save_json(run_dir.join(GENOTYPE_JSON))
            .map_err(|error| EvalError::Genotype(error.to_string()))?;
        let text_path = run_dir.join(GENOTYPE_TEXT);
        std::fs::write(&text_path, config.genotype.to_reference_text() + "\n")
            .map_err(|error| annotate(&text_path, error))?;
        RunRecords::open_metrics_only(run_dir, None)?
    };

    while state.epoch < config.epochs && !state.converged {
        let epoch = state.epoch;
        if state.batch == 0 {
            hidden = model.init_hidden(batch_size);
        }
        loop {
            let progress = Progress {
                epochs_done: epoch,
                epochs_total: config.epochs,
                steps_done: state.global_step,
                steps_total,
            };
            let control = observer.control(&progress);
            if control != Control::Continue {
                save(
                    &vs,
                    &optimizer,
                    &hidden,
                    &mut state,
                    &mut records,
                    &checkpoint_dir,
                    observer,
                    &progress,
                )?;
            }
            if control == Control::CheckpointAndStop {
                return Ok(outcome(&state, false, None, params));
            }
            if state.cursor + 2 >= train_rows {
                break;
            }
            let seq_len = eval_seq_len(
                draw_key(config.seed, epoch, state.batch, DrawStream::SequenceLength),
                bptt,
                config.weights.seq_len_std,
            );
            let lr = scaled_lr(config.weights.lr, seq_len, bptt);
            let (input, targets) = get_batch(&train, state.cursor, seq_len);
            let masks = DropoutMasks::draw(
                draw_key(config.seed, epoch, state.batch, DrawStream::WeightMasks),
                &rates,
                model.vocab,
                batch_size,
                model.nhid,
                device,
            );
            optimizer.zero_grad()?;
            let output = model.forward(&input, &hidden, Some(&masks));
            let (raw, loss) = training_loss(
                &output,
                &targets,
                config.weights.ar_alpha,
                config.weights.tar_beta,
            );
            loss.backward();
            let grad_norm =
                optim::clip_grad_norm(weights.iter().map(|(_, t)| t), config.weights.grad_clip)?;
            optimizer.step(lr)?;
            hidden = output.hidden.detach();
            state.cursor += seq_len;
            state.batch += 1;
            state.global_step += 1;
            let loss = raw.double_value(&[]);
            if !loss.is_finite() {
                return Err(EvalError::Diverged {
                    epoch,
                    step: state.global_step,
                    loss,
                });
            }
            state.train_loss_sum += loss;
            state.train_batches += 1;
            if state.global_step.is_multiple_of(STEP_RECORD_EVERY) {
                let record =
                    MetricRecord::new(MetricKind::Step, epoch, state.global_step, f64::from(epoch))
                        .with("lr", lr)
                        .with("seq_len", seq_len as f64)
                        .with("loss", loss)
                        .with("ppl", perplexity(loss))
                        .with("grad_norm", optim::read_scalar(&grad_norm)?);
                records.metric(&record)?;
                observer.on_metric(&record);
            }
        }

        let valid_loss = match &optimizer {
            WeightOptimizer::Asgd(asgd) => with_averaged_weights(&weights, asgd, || {
                let loss = evaluate(&model, &valid, bptt);
                if state.best_valid_loss.is_none_or(|best| loss < best) {
                    write_weights(&run_dir.join(BEST_WEIGHTS), &vs)?;
                }
                Ok(loss)
            })?,
            WeightOptimizer::Sgd(_) => {
                let loss = evaluate(&model, &valid, bptt);
                if state.best_valid_loss.is_none_or(|best| loss < best) {
                    write_weights(&run_dir.join(BEST_WEIGHTS), &vs)?;
                }
                loss
            }
        };
        if !valid_loss.is_finite() {
            return Err(EvalError::Diverged {
                epoch,
                step: state.global_step,
                loss: valid_loss,
            });
        }
        if state.best_valid_loss.is_none_or(|best| valid_loss < best) {
            state.best_valid_loss = Some(valid_loss);
            state.best_epoch = Some(epoch);
            state.epochs_since_best = 0;
        } else {
            state.epochs_since_best += 1;
        }
        if !state.asgd {
            let forced = config.weights.asgd_at_epoch == Some(epoch);
            if forced || should_switch_to_asgd(&state.history, valid_loss, config.weights.nonmono) {
                optimizer = WeightOptimizer::Asgd(asgd()?);
                state.asgd = true;
                state.asgd_epoch = Some(epoch);
                tracing::info!(epoch, "switching to ASGD");
            }
            state.history.push(valid_loss);
        }
        let train_loss = state.train_loss_sum / state.train_batches.max(1) as f64;
        let best = state.best_valid_loss.unwrap_or(valid_loss);
        let record = MetricRecord::new(
            MetricKind::Epoch,
            epoch,
            state.global_step,
            f64::from(epoch + 1),
        )
        .with("lr", config.weights.lr)
        .with("train_loss", train_loss)
        .with("train_ppl", perplexity(train_loss))
        .with("valid_loss", valid_loss)
        .with("valid_ppl", perplexity(valid_loss))
        .with("best_valid_ppl", perplexity(best))
        .with("asgd", f64::from(u8::from(state.asgd)));
        records.metric(&record)?;
        observer.on_metric(&record);

        state.epoch += 1;
        state.cursor = 0;
        state.batch = 0;
        state.train_loss_sum = 0.0;
        state.train_batches = 0;
        state.converged = config.convergence > 0 && state.epochs_since_best >= config.convergence;
        if state.converged
            || checkpoint::due_after_epoch(
                state.epoch,
                config.epochs,
                config.checkpoint.every_epochs,
            )
        {
            let progress = Progress {
                epochs_done: state.epoch,
                epochs_total: config.epochs,
                steps_done: state.global_step,
                steps_total,
            };
            let zeros = model.init_hidden(batch_size);
            save(
                &vs,
                &optimizer,
                &zeros,
                &mut state,
                &mut records,
                &checkpoint_dir,
                observer,
                &progress,
            )?;
        }
    }

    let best_path = run_dir.join(BEST_WEIGHTS);
    let best = Tensor::read_safetensors(&best_path).map_err(|source| {
        EvalError::Checkpoint(CheckpointError::Tensor {
            path: best_path.clone(),
            source,
        })
    })?;
    let variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    checkpoint::restore_named(&variables, &best, &best_path)?;
    let test_loss = evaluate(&model, &test, bptt);
    let test_ppl = perplexity(test_loss);
    let mut final_record = MetricRecord::new(
        MetricKind::Final,
        state.epoch,
        state.global_step,
        f64::from(state.epoch),
    )
    .with("params", params as f64)
    .with("test_loss", test_loss)
    .with("test_ppl", test_ppl);
    if let Some(loss) = state.best_valid_loss {
        final_record = final_record
            .with("valid_loss", loss)
            .with("valid_ppl", perplexity(loss));
    }
    records.metric(&final_record)?;
    records.flush()?;
    observer.on_metric(&final_record);
    let finished = outcome(&state, true, Some(test_ppl), params);
    let report = serde_json::json!({
        "label": config.label,
        "dataset": "ptb",
        "seed": config.seed,
        "epochs": state.epoch,
        "stopped_early": state.converged,
        "steps": state.global_step,
        "params": params,
        "best_epoch": state.best_epoch,
        "asgd_epoch": state.asgd_epoch,
        "valid_loss": state.best_valid_loss,
        "valid_ppl": finished.valid_ppl,
        "test_loss": test_loss,
        "test_ppl": test_ppl,
        "genotype": config.genotype,
    });
    let report_path = run_dir.join(TEST_REPORT);
    std::fs::write(
        &report_path,
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    )
    .map_err(|error| annotate(&report_path, error))?;
    Ok(finished)
}

fn outcome(
    state: &LoopState,
    finished: bool,
    test_ppl: Option<f64>,
    params: i64,
) -> RnnEvalOutcome {
    RnnEvalOutcome {
        finished,
        epochs_done: state.epoch,
        valid_ppl: state.best_valid_loss.map(perplexity),
        test_ppl,
        best_epoch: state.best_epoch,
        asgd_epoch: state.asgd_epoch,
        params,
    }
}

fn copies(named: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    named
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
        .collect()
}

/// Runs `body` with every parameter that has an ASGD average replaced by it, then puts the
/// raw parameters back (SPEC 7.9).
fn with_averaged_weights<R>(
    weights: &[(String, Tensor)],
    asgd: &Asgd,
    body: impl FnOnce() -> Result<R, EvalError>,
) -> Result<R, EvalError> {
    let mut saved = Vec::new();
    tch::no_grad(|| -> Result<(), EvalError> {
        for (name, param) in weights {
            if let Some(average) = asgd.averaged(name)? {
                saved.push((param.shallow_clone(), param.detach().copy()));
                param.shallow_clone().copy_(average);
            }
        }
        Ok(())
    })?;
    let result = body();
    tch::no_grad(|| {
        for (mut param, raw) in saved {
            param.copy_(&raw);
        }
    });
    result
}

/// Writes the variables to `path` through a temporary file and a rename, so a crash never
/// leaves a half-written file.
fn write_weights(path: &Path, vs: &nn::VarStore) -> Result<(), EvalError> {
    let tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.detach().to_device(Device::Cpu)))
        .collect();
    let temporary = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&tensors, &temporary).map_err(|source| {
        EvalError::Checkpoint(CheckpointError::Tensor {
            path: temporary.clone(),
            source,
        })
    })?;
    std::fs::rename(&temporary, path).map_err(|error| EvalError::Io(annotate(path, error)))
}

#[allow(clippy::too_many_arguments)]
fn save(
    vs: &nn::VarStore,
    optimizer: &WeightOptimizer,
    hidden: &Tensor,
    state: &mut LoopState,
    records: &mut RunRecords,
    checkpoint_dir: &Path,
    observer: &mut dyn RunObserver,
    progress: &Progress,
) -> Result<(), EvalError> {
    state.records = records.flush()?;
    let mut saved = Checkpoint::default();
    saved
        .groups
        .insert("weights".to_string(), vs.variables().into_iter().collect());
    saved
        .groups
        .insert("optimizer".to_string(), optimizer.state()?);
    saved.groups.insert(
        "hidden".to_string(),
        vec![("train".to_string(), hidden.shallow_clone())],
    );
    saved.state = serde_json::to_value(&*state).unwrap_or_default();
    let tag = format!("step-{:09}", state.global_step);
    let path = saved.write(checkpoint_dir, &tag)?;
    observer.on_checkpoint(&path, progress);
    Ok(())
}
