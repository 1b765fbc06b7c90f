//! Evaluation of a genotype on CIFAR (SPEC section 6): retraining NetworkCIFAR from scratch,
//! testing after every epoch, the run directory, checkpoints and exact resume.
//!
//! The run directory holds `config.toml` (everything the run used, genotype included),
//! `genotype.json` / `genotype.txt`, `metrics.jsonl`, `checkpoints/`, `best_weights.safetensors`
//! (highest test accuracy so far; the test set is not a validation set, so this is for
//! inspection, not for reporting), and at the end `weights.safetensors` (final weights) and
//! `test.json` (test error of the final weights, parameters, multiply-accumulates).

pub mod precision;
pub mod trainer;

pub use crate::search::RunOptions;
pub use crate::search::{CHECKPOINT_DIR, CONFIG_FILE, GENOTYPE_JSON, GENOTYPE_TEXT};

use crate::checkpoint::{self, annotate, sha256_hex, Checkpoint, CheckpointError};
use crate::cnn::eval_net::{multiply_accumulates, EvalNetError, ParameterCounts};
use crate::data::{
    batches_per_pass, load_cifar, BatchStream, CifarData, DataError, StreamConfig, StreamId,
    StreamPosition, IMAGE_SIDE,
};
use crate::fingerprint::{DataFingerprint, FingerprintError};
use crate::optim::{self, OptimError};
use crate::search::records::{RecordLengths, RunRecords};
use crate::search::trainer::StepTensors;
use prime_core::config::{ConfigError, LayeredConfig};
use prime_core::eval_config::EvalConfig;
use prime_core::genotype::Genotype;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, Progress, RunObserver};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainer::{network_shape, EvalTrainer};

/// Weights after the last epoch (what the test report is about).
pub const FINAL_WEIGHTS: &str = "weights.safetensors";
/// Weights of the epoch with the highest test accuracy so far.
pub const BEST_WEIGHTS: &str = "best_weights.safetensors";
/// The test report of a finished run.
pub const TEST_REPORT: &str = "test.json";
/// Metric values that measure time and so differ between otherwise identical runs.
pub const TIMING_KEYS: [&str; 2] = ["images_per_s", "seconds"];
/// Mixed into the seed of every training step's drop-path masks.
const DROP_PATH_DOMAIN: u64 = 0x6472_6f70_7061_7468;

/// What an evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOutcome {
    /// Whether every epoch ran (false when the observer stopped the run).
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// Test top-1 accuracy (%) after the last completed epoch.
    pub test_acc: Option<f64>,
    /// Test error (%) = 100 - test accuracy.
    pub test_error: Option<f64>,
    /// Test cross-entropy after the last completed epoch.
    pub test_loss: Option<f64>,
    /// Highest test accuracy (%) of any completed epoch.
    pub best_test_acc: Option<f64>,
    /// Trainable parameters without the auxiliary head, and of the head (SPEC 6.7).
    pub params: ParameterCounts,
    /// Multiply-accumulates of one inference on a 32x32 image.
    pub macs: i64,
}

/// Evaluation errors.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The network cannot be built.
    #[error(transparent)]
    Network(#[from] EvalNetError),
    /// Reading or streaming data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The text corpus of a recurrent evaluation could not be read.
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
    /// A genotype could not be found or read.
    #[error("{0}")]
    Genotype(String),
    /// The run cannot be done as configured.
    #[error("{0}")]
    Unsupported(String),
    /// The resume state does not belong to this config.
    #[error("{}: cannot resume: {message}", .dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// The loss became NaN or infinite.
    #[error("diverged: training loss is {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// Epoch.
        epoch: u32,
        /// Global step.
        step: u64,
        /// The loss value.
        loss: f64,
    },
}

impl From<FingerprintError> for EvalError {
    fn from(error: FingerprintError) -> Self {
        match error {
            FingerprintError::Io(error) => EvalError::Io(error),
            FingerprintError::Changed { ref run_dir, .. } => EvalError::Resume {
                dir: run_dir.clone(),
                message: error.to_string(),
            },
        }
    }
}

/// Loads the genotype an argument names: a run directory (its `genotype.json`, else its
/// `genotype.txt`), a genotype file (JSON or reference text), or a built-in name. Returns the
/// genotype and a label for records (the directory or file stem, or the built-in name).
pub fn resolve_genotype(argument: &str) -> Result<(Genotype, String), EvalError> {
    let path = Path::new(argument);
    let stem = |path: &Path| {
        path.file_stem()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| argument.to_string())
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
        let genotype =
            Genotype::load(&file).map_err(|error| EvalError::Genotype(error.to_string()))?;
        return Ok((genotype, stem(path)));
    }
    if path.is_file() {
        let genotype =
            Genotype::load(path).map_err(|error| EvalError::Genotype(error.to_string()))?;
        return Ok((genotype, stem(path)));
    }
    let genotype = Genotype::builtin(argument).map_err(|_| {
        EvalError::Genotype(format!(
            "`{argument}` is neither a run directory, a genotype file nor a built-in genotype \
             (built-ins: {})",
            Genotype::builtin_names().join(", ")
        ))
    })?;
    let label = Genotype::builtin_names()
        .iter()
        .find(|name| name.eq_ignore_ascii_case(argument))
        .map_or_else(|| argument.to_string(), |name| name.to_string());
    Ok((genotype, label))
}

/// Everything besides tensors that a checkpoint must restore. Floats are stored as decimal
/// strings that read back to the same bits (serde_json's number parser may not).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
    epoch: u32,
    step_in_epoch: u64,
    global_step: u64,
    #[serde(with = "exact_float")]
    train_loss_sum: f64,
    #[serde(with = "exact_float")]
    train_correct: f64,
    train_count: u64,
    #[serde(with = "exact_float")]
    train_seconds: f64,
    #[serde(with = "exact_optional_float")]
    test_acc: Option<f64>,
    #[serde(with = "exact_optional_float")]
    test_loss: Option<f64>,
    #[serde(with = "exact_optional_float")]
    best_test_acc: Option<f64>,
    best_epoch: Option<u32>,
    records: RecordLengths,
    config_sha256: String,
}

/// An f64 as its shortest round-trip decimal string.
mod exact_float {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes the float as a string.
    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    /// Reads the float back from its string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| D::Error::custom(format!("`{text}` is not a number")))
    }
}

/// An optional f64 as its shortest round-trip decimal string, or null.
mod exact_optional_float {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes the float as a string, or null.
    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_some(&value.to_string()),
            None => serializer.serialize_none(),
        }
    }

    /// Reads the float back from its string, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                text.parse()
                    .map_err(|_| D::Error::custom(format!("`{text}` is not a number")))
            })
            .transpose()
    }
}

/// The training loss and correct count of the epoch so far, summed on the device in float64.
struct EpochSums {
    loss: Tensor,
    correct: Tensor,
    count: u64,
}

impl EpochSums {
    fn new(loss: f64, correct: f64, count: u64, device: Device) -> Self {
        Self {
            loss: Tensor::from(loss).to_device(device),
            correct: Tensor::from(correct).to_device(device),
            count,
        }
    }

    fn add(&mut self, step: &StepTensors) {
        let loss = step.loss.to_kind(Kind::Double) * step.count as f64;
        self.loss += loss;
        self.correct += step.correct.to_kind(Kind::Double);
        self.count += step.count as u64;
    }

    /// (loss sum, correct count): one synchronisation.
    fn host(&self) -> (f64, f64) {
        let both = Tensor::stack(&[&self.loss, &self.correct], 0).to_device(Device::Cpu);
        (both.double_value(&[0]), both.double_value(&[1]))
    }
}

/// Runs (or resumes) an evaluation as configured, writing into `options.run_dir`.
pub fn run_eval(
    config: &EvalConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<EvalOutcome, EvalError> {
    config.validate("evaluation config")?;
    let run_dir = &options.run_dir;
    std::fs::create_dir_all(run_dir).map_err(|error| annotate(run_dir, error))?;
    let config_text = config.to_toml();
    let config_sha256 = sha256_hex(config_text.as_bytes());
    let checkpoint_dir = run_dir.join(CHECKPOINT_DIR);
    let device = options.device;

    let data = load_cifar(&options.data_dir, config.data.dataset, options.download)?;
    let resuming = options.resume && checkpoint::has_checkpoint(&checkpoint_dir);
    DataFingerprint::of_files(&options.data_dir, &data.files())?
        .record_or_check(run_dir, resuming)?;
    let limit = |available: usize| config.data.limit.unwrap_or(available).min(available);
    let train_count = limit(data.train.len());
    let test_count = limit(data.test.len());
    let batch_size = config.data.batch_size;
    let steps_per_epoch = batches_per_pass(train_count, batch_size) as u64;
    if steps_per_epoch == 0 || test_count == 0 {
        return Err(EvalError::Unsupported(format!(
            "{}: {train_count} training and {test_count} test images; both sets need at least \
             one",
            options.data_dir.display()
        )));
    }

    let single_image_batch = batch_size == 1 || train_count % batch_size == 1;
    if config.network.auxiliary && single_image_batch {
        return Err(EvalError::Unsupported(format!(
            "{train_count} training images in batches of {batch_size} give a batch of a single \
             image, but the auxiliary head's batch norm over 1x1 maps needs at least two images \
             in training; change data.batch_size or data.limit"
        )));
    }

    let mut trainer = EvalTrainer::new(config, device)?;
    let params = trainer.parameter_counts();
    let macs = multiply_accumulates(&network_shape(config), &config.genotype, IMAGE_SIDE as i64);
    let mut state = LoopState {
        epoch: 0,
        step_in_epoch: 0,
        global_step: 0,
        train_loss_sum: 0.0,
        train_correct: 0.0,
        train_count: 0,
        train_seconds: 0.0,
        test_acc: None,
        test_loss: None,
        best_test_acc: None,
        best_epoch: None,
        records: RecordLengths::default(),
        config_sha256: config_sha256.clone(),
    };
    let mut records = if resuming {
        let (checkpoint, path) = Checkpoint::read_latest(&checkpoint_dir)?;
        state = restore(&mut trainer, &checkpoint, &path)?;
        if state.config_sha256 != config_sha256 {
            return Err(EvalError::Resume {
                dir: run_dir.clone(),
                message: checkpoint::CONFIG_CHANGED.to_string(),
            });
        }
        tracing::info!(
            epoch = state.epoch,
            step = state.global_step,
            "resumed from {}",
            path.display()
        );
        RunRecords::open_metrics_only(run_dir, Some(state.records))?
    } else {
        write_run_files(run_dir, config, &config_text)?;
        RunRecords::open_metrics_only(run_dir, None)?
    };

    let steps_total = steps_per_epoch * u64::from(config.epochs);
    while state.epoch < config.epochs {
        let epoch = state.epoch;
        let lr = optim::cosine_lr(
            config.weights.lr,
            config.weights.lr_min,
            config.epochs as usize,
            epoch as usize,
            config.weights.lr_offset as usize,
        )?;
        let drop_prob = config.drop_path_at(epoch);
        let mut stream_config =
            StreamConfig::per_epoch(config.seed, u64::from(epoch), StreamId::WEIGHTS, batch_size)
                .starting_at(StreamPosition {
                    pass: 0,
                    batch: state.step_in_epoch,
                })
                .with_prefetch(config.data.prefetch);
        if config.data.cutout {
            stream_config = stream_config.with_cutout(config.data.cutout_length);
        }
        let mut stream = BatchStream::spawn(data.train.clone(), 0..train_count, stream_config)?;
        let mut sums = EpochSums::new(
            state.train_loss_sum,
            state.train_correct,
            state.train_count,
            device,
        );
        let mut clock = Instant::now();
        let mut report = (Instant::now(), sums.count);

        loop {
            let progress = Progress {
                epochs_done: epoch,
                epochs_total: config.epochs,
                steps_done: state.global_step,
                steps_total,
            };
            let control = observer.control(&progress);
            if control != Control::Continue {
                state.train_seconds += clock.elapsed().as_secs_f64();
                clock = Instant::now();
                save(
                    &trainer,
                    &mut state,
                    &sums,
                    &mut records,
                    &checkpoint_dir,
                    observer,
                    &progress,
                )?;
                if control == Control::CheckpointAndStop {
                    return Ok(outcome(&state, false, params, macs));
                }
            }
            let Some(batch) = stream.next_batch() else {
                break;
            };
            let batch = batch?.to_device(device);
            let step = trainer.train_step(
                &batch.images,
                &batch.labels,
                lr,
                drop_prob,
                drop_path_key(config.seed, state.global_step),
            )?;
            sums.add(&step);
            state.global_step += 1;
            state.step_in_epoch += 1;
            if state
                .global_step
                .is_multiple_of(u64::from(config.report_every))
            {
                let (loss_sum, correct) = sums.host();
                let count = sums.count as f64;
                let loss = loss_sum / count;
                check_finite(loss, epoch, state.global_step)?;
                let images = (sums.count - report.1) as f64;
                let record = MetricRecord::new(
                    MetricKind::Step,
                    epoch,
                    state.global_step,
                    clock_of(state.global_step, steps_per_epoch),
                )
                .with("lr", lr)
                .with("drop_path_prob", drop_prob)
                .with("loss", loss)
                .with("acc", 100.0 * correct / count)
                .with(
                    "images_per_s",
                    images / report.0.elapsed().as_secs_f64().max(1e-9),
                );
                records.metric(&record)?;
                observer.on_metric(&record);
                report = (Instant::now(), sums.count);
            }
        }
        drop(stream);
        state.train_seconds += clock.elapsed().as_secs_f64();

        let (loss_sum, correct) = sums.host();
        let count = sums.count.max(1) as f64;
        let train_loss = loss_sum / count;
        check_finite(train_loss, epoch, state.global_step)?;
        let (test_loss, test_acc) = test_pass(&trainer, &data, test_count, config, device)?;
        state.test_loss = Some(test_loss);
        state.test_acc = Some(test_acc);
        if state.best_test_acc.is_none_or(|best| test_acc > best) {
            state.best_test_acc = Some(test_acc);
            state.best_epoch = Some(epoch);
            write_weights(&run_dir.join(BEST_WEIGHTS), &trainer.variables())?;
        }
        let epoch_record = MetricRecord::new(
            MetricKind::Epoch,
            epoch,
            state.global_step,
            clock_of(state.global_step, steps_per_epoch),
        )
        .with("lr", lr)
        .with("drop_path_prob", drop_prob)
        .with("train_loss", train_loss)
        .with("train_acc", 100.0 * correct / count)
        .with("test_loss", test_loss)
        .with("test_acc", test_acc)
        .with("test_error", 100.0 - test_acc)
        .with("seconds", state.train_seconds)
        .with(
            "images_per_s",
            sums.count as f64 / state.train_seconds.max(1e-9),
        );
        records.metric(&epoch_record)?;
        observer.on_metric(&epoch_record);

        state.epoch += 1;
        state.step_in_epoch = 0;
        state.train_loss_sum = 0.0;
        state.train_correct = 0.0;
        state.train_count = 0;
        state.train_seconds = 0.0;
        if checkpoint::due_after_epoch(state.epoch, config.epochs, config.checkpoint.every_epochs) {
            let progress = Progress {
                epochs_done: state.epoch,
                epochs_total: config.epochs,
                steps_done: state.global_step,
                steps_total,
            };
            let sums = EpochSums::new(0.0, 0.0, 0, device);
            save(
                &trainer,
                &mut state,
                &sums,
                &mut records,
                &checkpoint_dir,
                observer,
                &progress,
            )?;
        }
    }

    write_weights(&run_dir.join(FINAL_WEIGHTS), &trainer.variables())?;
    let finished = outcome(&state, true, params, macs);
    let mut final_record = MetricRecord::new(
        MetricKind::Final,
        state.epoch,
        state.global_step,
        f64::from(state.epoch),
    )
    .with("params", params.network as f64)
    .with("aux_params", params.auxiliary as f64)
    .with("params_m", params.millions())
    .with("macs", macs as f64);
    if let (Some(acc), Some(loss)) = (state.test_acc, state.test_loss) {
        final_record = final_record
            .with("test_acc", acc)
            .with("test_error", 100.0 - acc)
            .with("test_loss", loss);
    }
    if let Some(best) = state.best_test_acc {
        final_record = final_record.with("best_test_acc", best);
    }
    records.metric(&final_record)?;
    records.flush()?;
    observer.on_metric(&final_record);
    write_report(run_dir, config, &state, &finished)?;
    Ok(finished)
}

/// The outcome as of `state`.
fn outcome(state: &LoopState, finished: bool, params: ParameterCounts, macs: i64) -> EvalOutcome {
    EvalOutcome {
        finished,
        epochs_done: state.epoch,
        test_acc: state.test_acc,
        test_error: state.test_acc.map(|acc| 100.0 - acc),
        test_loss: state.test_loss,
        best_test_acc: state.best_test_acc,
        params,
        macs,
    }
}

/// Fractional epochs after `step` global steps.
fn clock_of(step: u64, steps_per_epoch: u64) -> f64 {
    step as f64 / steps_per_epoch as f64
}

fn check_finite(loss: f64, epoch: u32, step: u64) -> Result<(), EvalError> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(EvalError::Diverged { epoch, step, loss })
    }
}

/// The key of the drop-path masks of global training step `step`: the masks are a function of
/// (seed, step), so a resumed run draws the same ones without any generator state in the
/// checkpoint (and without libtorch's global generator, which other threads may share).
fn drop_path_key(seed: u64, step: u64) -> u64 {
    splitmix64(splitmix64(seed ^ DROP_PATH_DOMAIN) ^ step)
}

/// The SplitMix64 finaliser: a bijective scramble of 64 bits.
pub(crate) fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Eval-mode mean loss and top-1 accuracy (%) over the first `count` test images, in order,
/// with the test transform.
fn test_pass(
    trainer: &EvalTrainer,
    data: &CifarData,
    count: usize,
    config: &EvalConfig,
    device: Device,
) -> Result<(f64, f64), EvalError> {
    let stream_config =
        StreamConfig::eval(config.data.batch_size).with_prefetch(config.data.prefetch);
    let stream = BatchStream::spawn(data.test.clone(), 0..count, stream_config)?;
    let mut sums = EpochSums::new(0.0, 0.0, 0, device);
    for batch in stream {
        let batch = batch?.to_device(device);
        let step = trainer.test_batch(&batch.images, &batch.labels);
        sums.loss += step.loss.to_kind(Kind::Double);
        sums.correct += step.correct.to_kind(Kind::Double);
        sums.count += step.count as u64;
    }
    let (loss, correct) = sums.host();
    let count = sums.count.max(1) as f64;
    Ok((loss / count, 100.0 * correct / count))
}

/// Writes config.toml and the genotype files of a new run.
fn write_run_files(
    run_dir: &Path,
    config: &EvalConfig,
    config_text: &str,
) -> Result<(), EvalError> {
    let config_path = run_dir.join(CONFIG_FILE);
    std::fs::write(&config_path, config_text).map_err(|error| annotate(&config_path, error))?;
    config
        .genotype
        .save_json(run_dir.join(GENOTYPE_JSON))
        .map_err(|error| EvalError::Genotype(error.to_string()))?;
    let text_path = run_dir.join(GENOTYPE_TEXT);
    std::fs::write(&text_path, config.genotype.to_reference_text() + "\n")
        .map_err(|error| annotate(&text_path, error))?;
    Ok(())
}

/// Writes named tensors as safetensors under a temporary name, then renames it into place.
fn write_weights(path: &Path, variables: &[(String, Tensor)]) -> Result<(), EvalError> {
    let host: Vec<(String, Tensor)> = variables
        .iter()
        .map(|(name, tensor)| {
            (
                name.clone(),
                tensor.detach().to_device(Device::Cpu).contiguous(),
            )
        })
        .collect();
    let temp = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&host, &temp).map_err(|source| CheckpointError::Tensor {
        path: temp.clone(),
        source,
    })?;
    std::fs::rename(&temp, path).map_err(|error| annotate(path, error))?;
    Ok(())
}

/// Writes the test report of a finished run: pretty JSON, the genotype on one line.
fn write_report(
    run_dir: &Path,
    config: &EvalConfig,
    state: &LoopState,
    outcome: &EvalOutcome,
) -> Result<(), EvalError> {
    let report = serde_json::json!({
        "label": config.label,
        "dataset": config.data.dataset,
        "seed": config.seed,
        "epochs": state.epoch,
        "steps": state.global_step,
        "test_acc": outcome.test_acc,
        "test_error": outcome.test_error,
        "test_loss": outcome.test_loss,
        "best_test_acc": outcome.best_test_acc,
        "best_epoch": state.best_epoch,
        "params": outcome.params.network,
        "aux_params": outcome.params.auxiliary,
        "params_m": outcome.params.millions(),
        "macs": outcome.macs,
        "speed": config.speed,
    });
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    let body = text.strip_suffix("\n}").unwrap_or(&text);
    let text = format!(
        "{body},\n  \"genotype\": {}\n}}\n",
        config.genotype.to_json()
    );
    let path = run_dir.join(TEST_REPORT);
    std::fs::write(&path, text).map_err(|error| annotate(&path, error))?;
    Ok(())
}

fn save(
    trainer: &EvalTrainer,
    state: &mut LoopState,
    sums: &EpochSums,
    records: &mut RunRecords,
    checkpoint_dir: &Path,
    observer: &mut dyn RunObserver,
    progress: &Progress,
) -> Result<(), EvalError> {
    let (loss_sum, correct) = sums.host();
    state.train_loss_sum = loss_sum;
    state.train_correct = correct;
    state.train_count = sums.count;
    state.records = records.flush()?;
    let mut checkpoint = Checkpoint::default();
    checkpoint
        .groups
        .insert("weights".to_string(), trainer.variables());
    checkpoint
        .groups
        .insert("optimizer".to_string(), trainer.optimizer_state()?);
    if let Some(scaler) = trainer.loss_scale_state() {
        checkpoint.groups.insert("loss_scale".to_string(), scaler);
    }
    checkpoint.state = serde_json::to_value(&*state).unwrap_or_default();
    let tag = format!("step-{:09}", state.global_step);
    let path = checkpoint.write(checkpoint_dir, &tag)?;
    observer.on_checkpoint(&path, progress);
    Ok(())
}

fn restore(
    trainer: &mut EvalTrainer,
    checkpoint: &Checkpoint,
    path: &Path,
) -> Result<LoopState, EvalError> {
    checkpoint::restore_named(&trainer.variables(), checkpoint.group("weights"), path)?;
    trainer.load_optimizer_state(checkpoint.group("optimizer"))?;
    if let Some(scaler) = trainer.loss_scale_state() {
        checkpoint::restore_named(&scaler, checkpoint.group("loss_scale"), path)?;
    }
    trainer.refresh_compute_copy()?;
    Ok(checkpoint.loop_state(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_keys_differ_by_step_and_seed_and_repeat() {
        assert_eq!(drop_path_key(0, 5), drop_path_key(0, 5));
        assert_ne!(drop_path_key(0, 5), drop_path_key(0, 6));
        assert_ne!(drop_path_key(0, 5), drop_path_key(1, 5));
        assert_ne!(drop_path_key(1, 0), drop_path_key(0, 1));
    }

    #[test]
    fn loop_state_floats_survive_json_bit_for_bit() {
        let state = LoopState {
            epoch: 1,
            step_in_epoch: 2,
            global_step: 3,
            train_loss_sum: 0.3 * 3.0 / 4.0,
            train_correct: 1.0 / 3.0,
            train_count: 4,
            train_seconds: 1e-300,
            test_acc: Some(22.916666666666668),
            test_loss: None,
            best_test_acc: Some(f64::MAX),
            best_epoch: Some(0),
            records: RecordLengths::default(),
            config_sha256: String::new(),
        };
        let text = serde_json::to_string(&state).unwrap();
        let back: LoopState = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.train_loss_sum.to_bits(),
            state.train_loss_sum.to_bits()
        );
        assert_eq!(back.train_correct.to_bits(), state.train_correct.to_bits());
        assert_eq!(back.train_seconds.to_bits(), state.train_seconds.to_bits());
        assert_eq!(back.test_acc, state.test_acc);
        assert_eq!(back.test_loss, None);
        assert_eq!(back.best_test_acc, state.best_test_acc);
    }

    #[test]
    fn genotype_arguments_resolve_to_builtins_files_and_run_directories() {
        let (genotype, label) = resolve_genotype("darts_v2").unwrap();
        assert_eq!(genotype, Genotype::builtin("DARTS_V2").unwrap());
        assert_eq!(label, "DARTS_V2");

        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("darts-cifar10-seed2");
        std::fs::create_dir(&run).unwrap();
        let error = resolve_genotype(run.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no genotype.json or genotype.txt"),
            "{error}"
        );
        let nasnet = Genotype::builtin("NASNet").unwrap();
        std::fs::write(run.join(GENOTYPE_TEXT), nasnet.to_reference_text()).unwrap();
        let (genotype, label) = resolve_genotype(run.to_str().unwrap()).unwrap();
        assert_eq!(
            (genotype, label.as_str()),
            (nasnet.clone(), "darts-cifar10-seed2")
        );

        let file = dir.path().join("mine.json");
        nasnet.save_json(&file).unwrap();
        let (genotype, label) = resolve_genotype(file.to_str().unwrap()).unwrap();
        assert_eq!((genotype, label.as_str()), (nasnet, "mine"));

        let error = resolve_genotype("no-such-thing").unwrap_err().to_string();
        assert!(error.contains("AmoebaNet"), "{error}");
    }

    #[test]
    fn malformed_genotype_files_name_the_op_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("bad.json");
        std::fs::write(
            &json,
            "{\"normal\": [[\"sep_conv_3x3\", 0],\n [\"sep_conv_9x9\", 1]],\n\
             \"normal_concat\": [2], \"reduce\": [], \"reduce_concat\": [2]}\n",
        )
        .unwrap();
        let error = resolve_genotype(json.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("sep_conv_9x9"), "{error}");
        assert!(error.contains("line 2"), "{error}");
        let text = dir.path().join("bad.txt");
        std::fs::write(
            &text,
            "Genotype(\n  normal=[('sep_conv_3x3', 0),\n          ('sep_conv_9x9', 1)],\n\
             normal_concat=[2], reduce=[], reduce_concat=[2])\n",
        )
        .unwrap();
        let error = resolve_genotype(text.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("sep_conv_9x9"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("bad.txt"), "{error}");
    }
}
