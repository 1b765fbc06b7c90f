//! The CNN architecture search (SPEC section 3): the epoch loop of the authors' scheduled
//! search, run directory, checkpoints and exact resume.

pub mod records;
pub mod regularizer;
pub mod schedule;
pub mod trainer;

use crate::checkpoint::{self, annotate, sha256_hex, Checkpoint, CheckpointError};
use crate::data::{
    load_cifar, split_by_portion, BatchStream, DataError, DownloadPolicy, StreamConfig, StreamId,
    StreamPosition,
};
use crate::fingerprint::{DataFingerprint, FingerprintError};
use crate::optim::{self, OptimError};
use prime_core::config::{AlphaBatchPolicy, ArchOrder, Compat, ScheduleKind, SearchConfig};
use prime_core::genotype::projection::{derive_genotype, frobenius_distance, project_cell};
use prime_core::genotype::Genotype;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, Progress, RunObserver};
use prime_core::primitives::Activation;
use records::{AlphaRecord, RecordLengths, RunRecords};
use regularizer::{ArchRegularizer, RegularizerError};
use schedule::{AlphaSchedule, ScheduleState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use trainer::SearchTrainer;

/// The resolved config of a run, next to its artifacts.
pub const CONFIG_FILE: &str = "config.toml";
/// Checkpoints live in this sub-directory of the run directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// The final genotype as JSON.
pub const GENOTYPE_JSON: &str = "genotype.json";
/// The final genotype in the reference text form.
pub const GENOTYPE_TEXT: &str = "genotype.txt";
/// Summary of a finished run.
pub const SUMMARY_FILE: &str = "summary.json";

/// Where and how a run executes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run directory (config, records, checkpoints, results).
    pub run_dir: PathBuf,
    /// Directory holding the dataset.
    pub data_dir: PathBuf,
    /// Device for tensors.
    pub device: Device,
    /// Continue from the last checkpoint in `run_dir`.
    pub resume: bool,
    /// Whether a missing dataset may be downloaded.
    pub download: DownloadPolicy,
}

/// What a search produced.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    /// The genotype of the final alphas (or of the alphas when the run was stopped).
    pub genotype: Genotype,
    /// Whether every epoch ran (false when the observer stopped the run).
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// Inference accuracy (%) on the alpha split after the last completed epoch.
    pub valid_acc: Option<f64>,
    /// Inference loss on the alpha split after the last completed epoch.
    pub valid_loss: Option<f64>,
}

/// Search errors.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The config asks for something this build cannot do.
    #[error("config: {0}")]
    Unsupported(String),
    /// Reading or streaming data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The text corpus of a recurrent search could not be read.
    #[error(transparent)]
    Corpus(#[from] crate::rnn::corpus::CorpusError),
    /// An optimizer failed.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A run-directory file could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The regularizer failed.
    #[error(transparent)]
    Regularizer(#[from] RegularizerError),
    /// A genotype could not be derived.
    #[error("genotype: {0}")]
    Genotype(String),
    /// The resume state does not belong to this config.
    #[error("{}: cannot resume: {message}", .dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// The loss became NaN or infinite.
    #[error("diverged: loss is {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// Epoch.
        epoch: u32,
        /// Global weight step.
        step: u64,
        /// The loss value.
        loss: f64,
    },
}

impl From<FingerprintError> for SearchError {
    fn from(error: FingerprintError) -> Self {
        match error {
            FingerprintError::Io(error) => SearchError::Io(error),
            FingerprintError::Changed { ref run_dir, .. } => SearchError::Resume {
                dir: run_dir.clone(),
                message: error.to_string(),
            },
        }
    }
}

/// Everything besides tensors that a checkpoint must restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
    epoch: u32,
    step_in_epoch: u64,
    global_step: u64,
    clock: f64,
    alpha_position: StreamPosition,
    schedule: ScheduleState,
    alpha_steps_in_epoch: u64,
    /// Whether this epoch's genotype line is written: a checkpoint at an epoch's first step
    /// boundary must not make the resumed run write it twice.
    #[serde(default)]
    epoch_genotype_written: bool,
    alpha_counter: u64,
    last_alpha_loss: f64,
    train_loss_sum: f64,
    train_correct: f64,
    train_count: f64,
    valid_acc: Option<f64>,
    valid_loss: Option<f64>,
    records: RecordLengths,
    config_sha256: String,
}

/// Runs (or resumes) a search as configured, writing into `options.run_dir`.
pub fn run_search(
    config: &SearchConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<SearchOutcome, SearchError> {
    let run_dir = &options.run_dir;
    let config_text = config.to_toml();
    let config_sha256 = sha256_hex(config_text.as_bytes());
    let checkpoint_dir = run_dir.join(CHECKPOINT_DIR);

    let data = load_cifar(&options.data_dir, config.data.dataset, options.download)?;
    // Created only once the data is there, so a bad --data-dir leaves nothing behind.
    std::fs::create_dir_all(run_dir).map_err(|error| annotate(run_dir, error))?;
    let resuming = options.resume && checkpoint::has_checkpoint(&checkpoint_dir);
    DataFingerprint::of_files(&options.data_dir, &data.files())?
        .record_or_check(run_dir, resuming)?;
    let available = config
        .data
        .limit
        .unwrap_or(data.train.len())
        .min(data.train.len());
    let split = split_by_portion(available, config.weight_portion())?;
    let batch_size = config.data.batch_size;
    let steps_per_epoch = crate::data::batches_per_pass(split.train.len(), batch_size) as u64;
    if steps_per_epoch == 0 || split.valid.is_empty() {
        return Err(SearchError::Unsupported(format!(
            "{available} training images leave an empty weight or alpha split at portion {}",
            config.weight_portion()
        )));
    }

    let classes = config.data.dataset.classes() as i64;
    let mut trainer = SearchTrainer::new(config, classes, options.device)?;
    let mut regularizer = ArchRegularizer::new(config, &trainer.net.arch)?;
    let mut schedule = AlphaSchedule::new(&config.schedule, config.compat);
    let mut state = LoopState {
        epoch: 0,
        step_in_epoch: 0,
        global_step: 0,
        clock: 0.0,
        alpha_position: StreamPosition::START,
        schedule: schedule.state,
        alpha_steps_in_epoch: 0,
        epoch_genotype_written: false,
        alpha_counter: 0,
        last_alpha_loss: 0.0,
        train_loss_sum: 0.0,
        train_correct: 0.0,
        train_count: 0.0,
        valid_acc: None,
        valid_loss: None,
        records: RecordLengths::default(),
        config_sha256: config_sha256.clone(),
    };
    let mut records = if resuming {
        let (checkpoint, path) = Checkpoint::read_latest(&checkpoint_dir)?;
        state = restore(&mut trainer, &regularizer, &checkpoint, &path)?;
        regularizer.alpha_counter = state.alpha_counter;
        if state.config_sha256 != config_sha256 {
            return Err(SearchError::Resume {
                dir: run_dir.clone(),
                message: checkpoint::CONFIG_CHANGED.to_string(),
            });
        }
        schedule.state = state.schedule;
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
        let (normal, reduce) = trainer.net.arch.activated_rows();
        records.alphas(&AlphaRecord {
            step: 0,
            clock: 0.0,
            normal,
            reduce,
        })?;
        records
    };

    let steps_total = steps_per_epoch * u64::from(config.epochs);
    let fimt_schedule = config.schedule.kind == ScheduleKind::Fimt;
    while state.epoch < config.epochs {
        let epoch = state.epoch;
        let lr = optim::cosine_lr(
            config.weights.lr,
            config.weights.lr_min,
            config.epochs as usize,
            epoch as usize,
            config.weights.lr_offset as usize,
        )?;
        if !state.epoch_genotype_written {
            let genotype = current_genotype(&trainer)?;
            records.genotype(epoch, &genotype)?;
            state.epoch_genotype_written = true;
        }
        let w_config =
            StreamConfig::per_epoch(config.seed, u64::from(epoch), StreamId::WEIGHTS, batch_size)
                .starting_at(StreamPosition {
                    pass: 0,
                    batch: state.step_in_epoch,
                })
                .with_prefetch(config.data.prefetch);
        let alpha_base = match config.arch.batch_policy {
            AlphaBatchPolicy::Persistent => StreamConfig::persistent,
            AlphaBatchPolicy::Random => StreamConfig::fresh_each_batch,
        };
        let alpha_config = alpha_base(config.seed, u64::from(epoch), StreamId::ALPHA, batch_size)
            .starting_at(state.alpha_position)
            .with_prefetch(config.data.prefetch);
        let mut w_stream = BatchStream::spawn(data.train.clone(), split.train.clone(), w_config)?;
        let mut alpha_stream =
            BatchStream::spawn(data.train.clone(), split.valid.clone(), alpha_config)?;

        loop {
            let progress = Progress {
                epochs_done: epoch,
                epochs_total: config.epochs,
                steps_done: state.global_step,
                steps_total,
            };
            let control = observer.control(&progress);
            if control != Control::Continue {
                state.alpha_position = alpha_stream.next_position();
                save(
                    &trainer,
                    &regularizer,
                    &mut state,
                    &schedule,
                    &mut records,
                    &checkpoint_dir,
                    observer,
                    &progress,
                )?;
            }
            if control == Control::CheckpointAndStop {
                return Ok(SearchOutcome {
                    genotype: current_genotype(&trainer)?,
                    finished: false,
                    epochs_done: epoch,
                    valid_acc: state.valid_acc,
                    valid_loss: state.valid_loss,
                });
            }
            let Some(batch) = w_stream.next_batch() else {
                break;
            };
            let batch = batch?.to_device(options.device);
            state.clock += 1.0 / steps_per_epoch as f64;
            let threshold = schedule.state.threshold;
            let alpha_step = schedule.decide(state.step_in_epoch);
            let mut step_record =
                MetricRecord::new(MetricKind::Step, epoch, state.global_step + 1, state.clock)
                    .with("lr", lr);
            if fimt_schedule {
                step_record = step_record.with("threshold", threshold);
            }
            if alpha_step {
                let alpha_batch = alpha_stream
                    .next_batch()
                    .ok_or_else(|| DataError::Worker("the alpha stream ended".to_string()))??
                    .to_device(options.device);
                let extra = regularizer.loss(&trainer.net.arch, state.clock)?;
                let extra_value = extra
                    .as_ref()
                    .map(|term| term.detach().to_kind(Kind::Double));
                let arch = match config.arch.order {
                    ArchOrder::First => {
                        trainer.arch_step(&alpha_batch.images, &alpha_batch.labels, extra)?
                    }
                    ArchOrder::Second => trainer.arch_step_unrolled(
                        (&batch.images, &batch.labels),
                        (&alpha_batch.images, &alpha_batch.labels),
                        lr,
                        extra,
                    )?,
                };
                let (alpha_loss, _) = arch.host();
                state.last_alpha_loss = alpha_loss;
                state.alpha_steps_in_epoch += 1;
                step_record = step_record
                    .with("alpha_loss", alpha_loss)
                    .with("alpha_step", 1.0);
                if let Some(value) = extra_value {
                    step_record = step_record.with("regularizer", value.double_value(&[]));
                }
                if regularizer.after_alpha_step(&trainer.net.arch)? {
                    step_record = step_record.with("zu_step", 1.0);
                }
                if config.compat == Compat::Fixed {
                    trainer.mask_alphas(true)?;
                }
            }
            // The FIMT is tracked under every schedule, as the reference logs it (SPEC 8.1).
            let step = trainer.weight_step(&batch.images, &batch.labels, lr, true)?;
            let (loss, correct) = step.tensors.host();
            state.global_step += 1;
            state.step_in_epoch += 1;
            if !loss.is_finite() {
                return Err(SearchError::Diverged {
                    epoch,
                    step: state.global_step,
                    loss,
                });
            }
            if let Some(fimt) = &step.fimt {
                let fimt = optim::read_scalar(fimt)?;
                let ewma = schedule.observe_fimt(fimt);
                step_record = step_record.with("fimt", fimt).with("fimt_ewma", ewma);
            }
            trainer.mask_alphas(config.compat == Compat::Fixed)?;
            if regularizer.after_weight_step(&trainer.net.arch)? {
                step_record = step_record.with("zu_step", 1.0);
            }
            state.alpha_counter = regularizer.alpha_counter;
            let count = step.tensors.count as f64;
            state.train_loss_sum += loss * count;
            state.train_correct += correct;
            state.train_count += count;
            let (normal, reduce) = trainer.net.arch.activated_rows();
            let (dist_normal, dist_reduce) = discretization_distances(&trainer, &normal, &reduce)?;
            step_record = step_record
                .with("loss", loss)
                .with("acc", 100.0 * correct / count)
                .with("dist_normal", dist_normal)
                .with("dist_reduce", dist_reduce);
            if config.arch.activation == Activation::Crb {
                let (pruned_normal, pruned_reduce) = trainer.net.arch.pruned_counts();
                step_record = step_record
                    .with("pruned_normal", pruned_normal as f64)
                    .with("pruned_reduce", pruned_reduce as f64);
            }
            records.metric(&step_record)?;
            observer.on_metric(&step_record);
            records.alphas(&AlphaRecord {
                step: state.global_step,
                clock: state.clock,
                normal,
                reduce,
            })?;
        }
        drop(alpha_stream);

        let (valid_loss, valid_acc) =
            infer(&trainer, &data, &split.valid, config, epoch, options.device)?;
        state.valid_loss = Some(valid_loss);
        state.valid_acc = Some(valid_acc);
        let epoch_record =
            MetricRecord::new(MetricKind::Epoch, epoch, state.global_step, state.clock)
                .with("lr", lr)
                .with(
                    "train_loss",
                    state.train_loss_sum / state.train_count.max(1.0),
                )
                .with(
                    "train_acc",
                    100.0 * state.train_correct / state.train_count.max(1.0),
                )
                .with("valid_loss", valid_loss)
                .with("valid_acc", valid_acc)
                .with("alpha_steps", state.alpha_steps_in_epoch as f64)
                .with("last_alpha_loss", state.last_alpha_loss);
        let (normal, reduce) = trainer.net.arch.activated_rows();
        let (dist_normal, dist_reduce) = discretization_distances(&trainer, &normal, &reduce)?;
        let mut epoch_record = epoch_record
            .with("dist_normal", dist_normal)
            .with("dist_reduce", dist_reduce);
        if config.arch.activation == Activation::Crb {
            let (pruned_normal, pruned_reduce) = trainer.net.arch.pruned_counts();
            epoch_record = epoch_record
                .with("pruned_normal", pruned_normal as f64)
                .with("pruned_reduce", pruned_reduce as f64);
        }
        records.metric(&epoch_record)?;
        observer.on_metric(&epoch_record);

        state.epoch += 1;
        state.step_in_epoch = 0;
        state.epoch_genotype_written = false;
        state.alpha_position = StreamPosition::START;
        state.alpha_steps_in_epoch = 0;
        state.train_loss_sum = 0.0;
        state.train_correct = 0.0;
        state.train_count = 0.0;
        if checkpoint::due_after_epoch(state.epoch, config.epochs, config.checkpoint.every_epochs) {
            let progress = Progress {
                epochs_done: state.epoch,
                epochs_total: config.epochs,
                steps_done: state.global_step,
                steps_total,
            };
            save(
                &trainer,
                &regularizer,
                &mut state,
                &schedule,
                &mut records,
                &checkpoint_dir,
                observer,
                &progress,
            )?;
        }
    }

    let genotype = current_genotype(&trainer)?;
    genotype
        .save_json(run_dir.join(GENOTYPE_JSON))
        .map_err(|error| SearchError::Genotype(error.to_string()))?;
    let text_path = run_dir.join(GENOTYPE_TEXT);
    std::fs::write(&text_path, genotype.to_reference_text() + "\n")
        .map_err(|error| annotate(&text_path, error))?;
    let mut final_record = MetricRecord::new(
        MetricKind::Final,
        state.epoch,
        state.global_step,
        state.clock,
    );
    if let (Some(acc), Some(loss)) = (state.valid_acc, state.valid_loss) {
        final_record = final_record.with("valid_acc", acc).with("valid_loss", loss);
    }
    records.metric(&final_record)?;
    records.flush()?;
    observer.on_metric(&final_record);
    let summary = serde_json::json!({
        "method": config.method,
        "dataset": config.data.dataset,
        "seed": config.seed,
        "compat": config.compat,
        "epochs": state.epoch,
        "steps": state.global_step,
        "valid_acc": state.valid_acc,
        "valid_loss": state.valid_loss,
        "genotype": genotype,
    });
    let summary_path = run_dir.join(SUMMARY_FILE);
    std::fs::write(
        &summary_path,
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    )
    .map_err(|error| annotate(&summary_path, error))?;
    Ok(SearchOutcome {
        genotype,
        finished: true,
        epochs_done: state.epoch,
        valid_acc: state.valid_acc,
        valid_loss: state.valid_loss,
    })
}

/// The genotype of the current alphas (SPEC 2).
pub fn current_genotype(trainer: &SearchTrainer) -> Result<Genotype, SearchError> {
    let (normal, reduce) = trainer.net.arch.activated_rows();
    let primitives = trainer.net.arch.activation.primitives();
    derive_genotype(&normal, &reduce, primitives)
        .map(|(genotype, _, _)| genotype)
        .map_err(|error| SearchError::Genotype(error.to_string()))
}

/// ||act(alpha) - Pi_S(act(alpha))||_F of the normal and the reduce cells (SPEC 8).
fn discretization_distances(
    trainer: &SearchTrainer,
    normal: &[Vec<f32>],
    reduce: &[Vec<f32>],
) -> Result<(f64, f64), SearchError> {
    let primitives = trainer.net.arch.activation.primitives();
    let distance = |rows: &[Vec<f32>]| {
        project_cell(rows, primitives)
            .map(|projection| frobenius_distance(rows, &projection.z))
            .map_err(|error| SearchError::Genotype(error.to_string()))
    };
    Ok((distance(normal)?, distance(reduce)?))
}

/// Eval-mode mean loss and top-1 accuracy (%) over the alpha split, which uses the training
/// transform as in the reference (SPEC A18).
fn infer(
    trainer: &SearchTrainer,
    data: &crate::data::CifarData,
    subset: &std::ops::Range<usize>,
    config: &SearchConfig,
    epoch: u32,
    device: Device,
) -> Result<(f64, f64), SearchError> {
    let stream_config = StreamConfig::per_epoch(
        config.seed,
        u64::from(epoch),
        StreamId::ALPHA_INFERENCE,
        config.data.batch_size,
    )
    .with_prefetch(config.data.prefetch);
    let mut stream = BatchStream::spawn(data.train.clone(), subset.clone(), stream_config)?;
    let mut loss_sum: Option<Tensor> = None;
    let mut correct_sum: Option<Tensor> = None;
    let mut count = 0usize;
    while let Some(batch) = stream.next_batch() {
        let batch = batch?.to_device(device);
        let step = trainer.infer(&batch.images, &batch.labels);
        count += step.count;
        loss_sum = Some(match loss_sum {
            None => step.loss,
            Some(sum) => sum + step.loss,
        });
        correct_sum = Some(match correct_sum {
            None => step.correct,
            Some(sum) => sum + step.correct,
        });
    }
    let (Some(loss), Some(correct)) = (loss_sum, correct_sum) else {
        return Ok((0.0, 0.0));
    };
    let count = count as f64;
    Ok((
        loss.double_value(&[]) / count,
        100.0 * correct.double_value(&[]) / count,
    ))
}

#[allow(clippy::too_many_arguments)]
fn save(
    trainer: &SearchTrainer,
    regularizer: &ArchRegularizer,
    state: &mut LoopState,
    schedule: &AlphaSchedule,
    records: &mut RunRecords,
    checkpoint_dir: &Path,
    observer: &mut dyn RunObserver,
    progress: &Progress,
) -> Result<(), SearchError> {
    state.schedule = schedule.state;
    state.records = records.flush()?;
    let mut checkpoint = Checkpoint::default();
    checkpoint.groups.insert(
        "weights".to_string(),
        trainer.vs.variables().into_iter().collect(),
    );
    let mut arch = trainer.net.arch.named();
    arch.push((
        "alphas_normal_mask".to_string(),
        trainer.net.arch.normal_mask.shallow_clone(),
    ));
    arch.push((
        "alphas_reduce_mask".to_string(),
        trainer.net.arch.reduce_mask.shallow_clone(),
    ));
    checkpoint.groups.insert("arch".to_string(), arch);
    let regularizer_state = regularizer.state_tensors();
    if !regularizer_state.is_empty() {
        checkpoint
            .groups
            .insert("regularizer".to_string(), regularizer_state);
    }
    checkpoint.groups.insert(
        "weight_optimizer".to_string(),
        trainer.weight_optimizer_state()?,
    );
    checkpoint.groups.insert(
        "arch_optimizer".to_string(),
        trainer.arch_optimizer_state()?,
    );
    checkpoint.state = serde_json::to_value(&*state).unwrap_or_default();
    let tag = format!("step-{:09}", state.global_step);
    let path = checkpoint.write(checkpoint_dir, &tag)?;
    observer.on_checkpoint(&path, progress);
    Ok(())
}

fn restore(
    trainer: &mut SearchTrainer,
    regularizer: &ArchRegularizer,
    checkpoint: &Checkpoint,
    path: &Path,
) -> Result<LoopState, SearchError> {
    let variables: Vec<(String, Tensor)> = trainer.vs.variables().into_iter().collect();
    checkpoint::restore_named(&variables, checkpoint.group("weights"), path)?;
    let mut arch = trainer.net.arch.named();
    arch.push((
        "alphas_normal_mask".to_string(),
        trainer.net.arch.normal_mask.shallow_clone(),
    ));
    arch.push((
        "alphas_reduce_mask".to_string(),
        trainer.net.arch.reduce_mask.shallow_clone(),
    ));
    checkpoint::restore_named(&arch, checkpoint.group("arch"), path)?;
    checkpoint::restore_named(
        &regularizer.state_tensors(),
        checkpoint.group("regularizer"),
        path,
    )?;
    trainer.load_optimizer_states(
        checkpoint.group("weight_optimizer"),
        checkpoint.group("arch_optimizer"),
    )?;
    Ok(checkpoint.loop_state(path)?)
}
