//! The recurrent-cell search on Penn Treebank (SPEC 7.7): the model with its two optimizers,
//! the epoch loop with the reference schedule (sticky `arch_step` flag under `compat =
//! reference`), per-epoch validation, the best-validation genotype, checkpoints and resume.
//!
//! The run directory holds `config.toml`, `metrics.jsonl`, `alphas.jsonl` (act(alpha) after
//! every weight step), `genotypes.jsonl` (genotype at the start of every epoch),
//! `genotype.json` / `genotype.txt` (the genotype of the epoch with the best validation loss,
//! rewritten whenever it improves), `checkpoints/` and, at the end, `summary.json`.

use super::corpus::{batchify, corpus_files, get_batch, load_corpus, CorpusError};
use super::dropout::{DropoutMasks, DropoutRates};
use super::model::{evaluate, parameter_count};
use super::search_trainer::RnnSearchTrainer;
use super::trainer::{perplexity, scaled_lr, search_seq_len};
use super::{draw_key, DrawStream};
use crate::checkpoint::{self, annotate, sha256_hex, Checkpoint};
use crate::cnn::search_net::to_rows;
use crate::fingerprint::DataFingerprint;
use crate::optim;
use crate::search::records::{RecordLengths, RunRecords};
use crate::search::schedule::{AlphaSchedule, ScheduleState};
use crate::search::{
    RunOptions, SearchError, CHECKPOINT_DIR, CONFIG_FILE, GENOTYPE_JSON, GENOTYPE_TEXT,
    SUMMARY_FILE,
};
use prime_core::config::{Compat, LayeredConfig, RegularizerKind, ScheduleKind};
use prime_core::genotype::projection::{
    frobenius_distance as frobenius_distance_rows, project_rnn,
};
use prime_core::genotype::{rnn_primitives, RnnGenotype};
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, Progress, RunObserver};
use prime_core::rnn_config::RnnSearchConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Tensor;

/// What a recurrent search produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnSearchOutcome {
    /// Whether every epoch ran (false when the observer stopped the run).
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// The genotype of the epoch with the best validation loss (the current alphas' genotype
    /// when no epoch completed).
    pub genotype: RnnGenotype,
    /// exp(best validation loss), if an epoch completed.
    pub best_valid_ppl: Option<f64>,
    /// 0-based epoch of the best validation loss.
    pub best_epoch: Option<u32>,
    /// Trainable parameters of the model.
    pub params: i64,
}

/// One line of `alphas.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RnnAlphaRecord {
    /// Global weight steps done.
    pub step: u64,
    /// The clock.
    pub clock: f64,
    /// act(alpha), (36, P).
    pub recurrent: Vec<Vec<f32>>,
}

/// Everything besides tensors that a checkpoint restores.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
    epoch: u32,
    /// Row cursor i of the training data.
    cursor: usize,
    /// In-epoch batch counter.
    batch: u64,
    global_step: u64,
    clock: f64,
    schedule: ScheduleState,
    /// The reference's `arch_step` flag (sticky within an epoch under `reference`).
    arch_flag: bool,
    /// Row of the most recently fetched alpha batch in the epoch.
    alpha_row: Option<usize>,
    alpha_steps_in_epoch: u64,
    /// Whether this epoch's genotype line is written (a checkpoint at an epoch's first step
    /// must not make the resumed run write it twice).
    epoch_genotype_written: bool,
    train_loss_sum: f64,
    train_batches: u64,
    best_valid_loss: Option<f64>,
    best_epoch: Option<u32>,
    best_genotype: Option<RnnGenotype>,
    records: RecordLengths,
    config_sha256: String,
}

/// The data of a search as device tensors.
struct SearchData {
    train: Tensor,
    alpha: Tensor,
    valid: Tensor,
    vocab: i64,
}

fn load_data(config: &RnnSearchConfig, options: &RunOptions) -> Result<SearchData, CorpusError> {
    super::download::ensure_ptb(&options.data_dir, options.download)?;
    let corpus = load_corpus(&options.data_dir)?;
    let limit = config
        .data
        .limit
        .unwrap_or(corpus.train.len())
        .min(corpus.train.len());
    let device = options.device;
    Ok(SearchData {
        train: batchify(
            &corpus.train[..limit],
            config.data.batch_size,
            device,
            "train",
        )?,
        alpha: batchify(&corpus.valid, config.data.batch_size, device, "valid")?,
        valid: batchify(&corpus.valid, config.data.eval_batch_size, device, "valid")?,
        vocab: corpus.vocab(),
    })
}

/// Runs (or resumes) a recurrent search as configured, writing into `options.run_dir`, whose
/// `data_dir` is the corpus folder.
pub fn run_rnn_search(
    config: &RnnSearchConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<RnnSearchOutcome, SearchError> {
    config
        .validate("recurrent search config")
        .map_err(|error| SearchError::Unsupported(error.to_string()))?;
    let run_dir = &options.run_dir;
    let config_text = config.to_toml();
    let config_sha256 = sha256_hex(config_text.as_bytes());
    let checkpoint_dir = run_dir.join(CHECKPOINT_DIR);
    let data = load_data(config, options)?;
    std::fs::create_dir_all(run_dir).map_err(|error| annotate(run_dir, error))?;
    let resuming = options.resume && checkpoint::has_checkpoint(&checkpoint_dir);
    DataFingerprint::of_files(&options.data_dir, &corpus_files(&options.data_dir)?)?
        .record_or_check(run_dir, resuming)?;

    let mut trainer = RnnSearchTrainer::new(config, data.vocab, options.device)?;
    let params = parameter_count(&trainer.vs);
    let mut schedule = AlphaSchedule::new(&config.schedule, config.compat);
    let batch_size = config.data.batch_size as i64;
    let bptt = config.data.bptt;
    let train_rows = data.train.size()[0] as usize;
    let alpha_rows = data.alpha.size()[0] as usize;
    // The reference normalises the clock by rows // bptt (SPEC 5.1).
    let clock_step = 1.0 / (train_rows / bptt).max(1) as f64;
    let steps_total = u64::from(config.epochs) * train_rows.saturating_sub(2).div_ceil(bptt) as u64;
    let rates = DropoutRates::from(&config.network);

    let mut state = LoopState {
        epoch: 0,
        cursor: 0,
        batch: 0,
        global_step: 0,
        clock: 0.0,
        schedule: schedule.state,
        arch_flag: false,
        alpha_row: None,
        alpha_steps_in_epoch: 0,
        epoch_genotype_written: false,
        train_loss_sum: 0.0,
        train_batches: 0,
        best_valid_loss: None,
        best_epoch: None,
        best_genotype: None,
        records: RecordLengths::default(),
        config_sha256: config_sha256.clone(),
    };
    let mut resumed_hidden = None;
    let mut records = if resuming {
        let (saved, path) = Checkpoint::read_latest(&checkpoint_dir)?;
        state = saved.loop_state(&path)?;
        if state.config_sha256 != config_sha256 {
            return Err(SearchError::Resume {
                dir: run_dir.clone(),
                message: checkpoint::CONFIG_CHANGED.to_string(),
            });
        }
        trainer.restore(&saved, &path)?;
        schedule.state = state.schedule;
        let hidden = [
            ("train".to_string(), trainer.model.init_hidden(batch_size)),
            ("alpha".to_string(), trainer.model.init_hidden(batch_size)),
        ];
        checkpoint::restore_named(&hidden, saved.group("hidden"), &path)?;
        let [(_, train), (_, alpha)] = hidden;
        resumed_hidden = Some((train, alpha));
        tracing::info!(
            epoch = state.epoch,
            step = state.global_step,
            "resumed from {}",
            path.display()
        );
        RunRecords::open(run_dir, Some(state.records))?
    } else {
        std::fs::write(run_dir.join(CONFIG_FILE), &config_text)
            .map_err(|error| annotate(run_dir, error))?;
        let mut records = RunRecords::open(run_dir, None)?;
        records.alphas(&RnnAlphaRecord {
            step: 0,
            clock: 0.0,
            recurrent: trainer.activated_rows(),
        })?;
        records
    };

    let mut final_genotype = None;
    while state.epoch < config.epochs {
        let epoch = state.epoch;
        let (mut hidden, mut hidden_alpha) = match resumed_hidden.take() {
            Some(saved) if state.batch > 0 => saved,
            _ => (
                trainer.model.init_hidden(batch_size),
                trainer.model.init_hidden(batch_size),
            ),
        };
        if !state.epoch_genotype_written {
            records.genotype(epoch, &trainer.projection()?.genotype)?;
            state.epoch_genotype_written = true;
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
                    &trainer,
                    &mut state,
                    &schedule,
                    [&hidden, &hidden_alpha],
                    &mut records,
                    &checkpoint_dir,
                    observer,
                    &progress,
                )?;
            }
            if control == Control::CheckpointAndStop {
                let genotype = match &state.best_genotype {
                    Some(genotype) => genotype.clone(),
                    None => trainer.projection()?.genotype,
                };
                return Ok(outcome(&state, false, genotype, params));
            }
            if state.cursor + 2 >= train_rows {
                break;
            }
            let seq_len = search_seq_len(
                draw_key(config.seed, epoch, state.batch, DrawStream::SequenceLength),
                bptt,
            );
            let lr = scaled_lr(config.weights.lr, seq_len, bptt);
            let threshold = schedule.state.threshold;
            let decided = schedule.decide(state.batch);
            if decided {
                state.alpha_row = Some(state.cursor % (alpha_rows - 1));
                state.arch_flag = true;
            }
            let alpha_step = match config.compat {
                // The reference never resets the flag within an epoch (SPEC 7.7, B1).
                Compat::Reference => state.arch_flag,
                Compat::Fixed => decided,
            };
            let (input, targets) = get_batch(&data.train, state.cursor, seq_len);
            state.clock += clock_step;
            let mut record =
                MetricRecord::new(MetricKind::Step, epoch, state.global_step + 1, state.clock)
                    .with("lr", lr)
                    .with("seq_len", seq_len as f64)
                    .with("alpha_step", f64::from(u8::from(alpha_step)));
            if config.schedule.kind == ScheduleKind::Fimt {
                record = record.with("threshold", threshold);
            }
            if let (true, Some(row)) = (alpha_step, state.alpha_row) {
                let (alpha_input, alpha_targets) = get_batch(&data.alpha, row, bptt);
                let masks = DropoutMasks::draw(
                    draw_key(config.seed, epoch, state.batch, DrawStream::AlphaMasks),
                    &rates,
                    data.vocab,
                    batch_size,
                    config.network.nhid,
                    options.device,
                );
                let extra = prox_term(&trainer, config, state.clock)?;
                let extra_value = extra.as_ref().map(|term| term.detach().double_value(&[]));
                let (alpha_loss, next_hidden) = trainer.arch_step(
                    &alpha_input,
                    &alpha_targets,
                    &hidden_alpha,
                    &masks,
                    extra,
                )?;
                hidden_alpha = next_hidden;
                state.alpha_steps_in_epoch += 1;
                record = record.with("alpha_loss", alpha_loss.double_value(&[]));
                if let Some(value) = extra_value {
                    record = record.with("regularizer", value);
                }
            }
            let masks = DropoutMasks::draw(
                draw_key(config.seed, epoch, state.batch, DrawStream::WeightMasks),
                &rates,
                data.vocab,
                batch_size,
                config.network.nhid,
                options.device,
            );
            let step = trainer.weight_step(&input, &targets, &hidden, &masks, lr)?;
            hidden = step.hidden;
            state.global_step += 1;
            state.batch += 1;
            state.cursor += seq_len;
            let loss = step.raw_loss.double_value(&[]);
            if !loss.is_finite() {
                return Err(SearchError::Diverged {
                    epoch,
                    step: state.global_step,
                    loss,
                });
            }
            let fimt = optim::read_scalar(&step.fimt)?;
            let ewma = schedule.observe_fimt(fimt);
            state.train_loss_sum += loss;
            state.train_batches += 1;
            let rows = trainer.activated_rows();
            let projection = trainer.projection()?;
            record = record
                .with("loss", loss)
                .with("ppl", perplexity(loss))
                .with("fimt", fimt)
                .with("fimt_ewma", ewma)
                .with("grad_norm", optim::read_scalar(&step.grad_norm)?)
                .with("dist", frobenius_distance_rows(&rows, &projection.z));
            if let Some(pruned) = trainer.pruned_count() {
                record = record.with("pruned", pruned as f64);
            }
            records.metric(&record)?;
            observer.on_metric(&record);
            records.alphas(&RnnAlphaRecord {
                step: state.global_step,
                clock: state.clock,
                recurrent: rows,
            })?;
        }

        let valid_loss = evaluate(&trainer.model, &data.valid, bptt);
        let projection = trainer.projection()?;
        if !valid_loss.is_finite() {
            return Err(SearchError::Diverged {
                epoch,
                step: state.global_step,
                loss: valid_loss,
            });
        }
        if state.best_valid_loss.is_none_or(|best| valid_loss < best) {
            state.best_valid_loss = Some(valid_loss);
            state.best_epoch = Some(epoch);
            state.best_genotype = Some(projection.genotype.clone());
            write_genotype(run_dir, &projection.genotype)?;
        }
        let train_loss = state.train_loss_sum / state.train_batches.max(1) as f64;
        let best = state.best_valid_loss.unwrap_or(valid_loss);
        let record = MetricRecord::new(MetricKind::Epoch, epoch, state.global_step, state.clock)
            .with("train_loss", train_loss)
            .with("train_ppl", perplexity(train_loss))
            .with("valid_loss", valid_loss)
            .with("valid_ppl", perplexity(valid_loss))
            .with("best_valid_ppl", perplexity(best))
            .with("alpha_steps", state.alpha_steps_in_epoch as f64)
            .with(
                "dist",
                frobenius_distance_rows(&trainer.activated_rows(), &projection.z),
            );
        records.metric(&record)?;
        observer.on_metric(&record);
        final_genotype = Some(projection.genotype);

        state.epoch += 1;
        state.cursor = 0;
        state.batch = 0;
        state.arch_flag = false;
        state.alpha_row = None;
        state.alpha_steps_in_epoch = 0;
        state.epoch_genotype_written = false;
        state.train_loss_sum = 0.0;
        state.train_batches = 0;
        if checkpoint::due_after_epoch(state.epoch, config.epochs, config.checkpoint.every_epochs) {
            let progress = Progress {
                epochs_done: state.epoch,
                epochs_total: config.epochs,
                steps_done: state.global_step,
                steps_total,
            };
            let zeros = trainer.model.init_hidden(batch_size);
            save(
                &trainer,
                &mut state,
                &schedule,
                [&zeros, &zeros],
                &mut records,
                &checkpoint_dir,
                observer,
                &progress,
            )?;
        }
    }

    let last_genotype = match final_genotype {
        Some(genotype) => genotype,
        None => trainer.projection()?.genotype,
    };
    let genotype = state
        .best_genotype
        .clone()
        .unwrap_or_else(|| last_genotype.clone());
    write_genotype(run_dir, &genotype)?;
    let mut final_record = MetricRecord::new(
        MetricKind::Final,
        state.epoch,
        state.global_step,
        state.clock,
    )
    .with("params", params as f64);
    if let (Some(loss), Some(epoch)) = (state.best_valid_loss, state.best_epoch) {
        final_record = final_record
            .with("valid_loss", loss)
            .with("valid_ppl", perplexity(loss))
            .with("best_epoch", f64::from(epoch));
    }
    records.metric(&final_record)?;
    records.flush()?;
    observer.on_metric(&final_record);
    let summary = serde_json::json!({
        "method": config.method,
        "dataset": "ptb",
        "seed": config.seed,
        "compat": config.compat,
        "epochs": state.epoch,
        "steps": state.global_step,
        "params": params,
        "best_valid_loss": state.best_valid_loss,
        "best_valid_ppl": state.best_valid_loss.map(perplexity),
        "best_epoch": state.best_epoch,
        "genotype": genotype,
        "genotype_text": genotype.to_reference_text(),
        "last_genotype": last_genotype,
    });
    let summary_path = run_dir.join(SUMMARY_FILE);
    std::fs::write(
        &summary_path,
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    )
    .map_err(|error| annotate(&summary_path, error))?;
    Ok(outcome(&state, true, genotype, params))
}

fn outcome(
    state: &LoopState,
    finished: bool,
    genotype: RnnGenotype,
    params: i64,
) -> RnnSearchOutcome {
    RnnSearchOutcome {
        finished,
        epochs_done: state.epoch,
        genotype,
        best_valid_ppl: state.best_valid_loss.map(perplexity),
        best_epoch: state.best_epoch,
        params,
    }
}

/// The proximity term c * rho / 2 * ||act(alpha) - Pi_S(act(alpha))||_F (SPEC 5.2) with
/// c = clock / epochs (`fixed` clamps c to 1, SPEC A14); none without prox.
fn prox_term(
    trainer: &RnnSearchTrainer,
    config: &RnnSearchConfig,
    clock: f64,
) -> Result<Option<Tensor>, SearchError> {
    if config.regularizer.kind != RegularizerKind::Prox {
        return Ok(None);
    }
    let Some(activated) = trainer.model.activated_alphas() else {
        return Ok(None);
    };
    let mut coefficient = clock / f64::from(config.epochs);
    if config.compat == Compat::Fixed {
        coefficient = coefficient.min(1.0);
    }
    let projection = project_rnn(&to_rows(&activated), rnn_primitives(config.arch.activation))
        .map_err(|error| SearchError::Genotype(error.to_string()))?;
    let z: Vec<f32> = projection.z.concat();
    let z = Tensor::from_slice(&z)
        .view([projection.z.len() as i64, -1])
        .to_device(activated.device());
    Ok(Some(
        (activated - z).norm() * (coefficient * config.regularizer.rho / 2.0),
    ))
}

/// Writes `genotype.json` and `genotype.txt` (the reference text form).
fn write_genotype(run_dir: &Path, genotype: &RnnGenotype) -> Result<(), SearchError> {
    genotype
        .save_json(run_dir.join(GENOTYPE_JSON))
        .map_err(|error| SearchError::Genotype(error.to_string()))?;
    let text_path = run_dir.join(GENOTYPE_TEXT);
    std::fs::write(&text_path, genotype.to_reference_text() + "\n")
        .map_err(|error| annotate(&text_path, error))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn save(
    trainer: &RnnSearchTrainer,
    state: &mut LoopState,
    schedule: &AlphaSchedule,
    [hidden, hidden_alpha]: [&Tensor; 2],
    records: &mut RunRecords,
    checkpoint_dir: &Path,
    observer: &mut dyn RunObserver,
    progress: &Progress,
) -> Result<(), SearchError> {
    state.schedule = schedule.state;
    state.records = records.flush()?;
    let mut saved = Checkpoint::default();
    for (group, tensors) in trainer.checkpoint_groups()? {
        saved.groups.insert(group.to_string(), tensors);
    }
    saved.groups.insert(
        "hidden".to_string(),
        vec![
            ("train".to_string(), hidden.shallow_clone()),
            ("alpha".to_string(), hidden_alpha.shallow_clone()),
        ],
    );
    saved.state = serde_json::to_value(&*state).unwrap_or_default();
    let tag = format!("step-{:09}", state.global_step);
    let path = saved.write(checkpoint_dir, &tag)?;
    observer.on_checkpoint(&path, progress);
    Ok(())
}
