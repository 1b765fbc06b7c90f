//! The run driver: one loop for every training task of the engine (CNN search and evaluation,
//! recurrent search and evaluation).
//!
//! The driver owns what all runs share: the run directory and its files ([`layout`],
//! [`files`], [`genotype`]), the append-only records ([`records`]), the data fingerprint,
//! starting or resuming, the epoch and step counters, the observer's stop and checkpoint
//! requests, the checkpoint policy ([`policy`]) and the checkpoint IO, and the final flush.
//! A [`Task`] supplies what differs: one training step (for searches, the alpha step inside
//! it, as the FIMT schedule decides), the end of an epoch (validation, genotype), the tensors
//! and state of a checkpoint, restoring them, and the outcome.
//!
//! A checkpoint's `state.json` is the driver's counters with the task's state flattened
//! beside them, the same JSON object the loops wrote before the driver existed, so run
//! directories of earlier versions resume.

pub mod data_parallel;
pub mod driver;
pub mod events;
pub mod exact_float;
pub mod files;
pub mod genotype;
pub mod layout;
pub mod manifest;
pub mod policy;
pub mod records;

pub use data_parallel::{run_data_parallel, run_on_devices};
pub use driver::run;
pub use layout::RunOptions;

use crate::error::RunError;
use crate::parallel::rank::DataParallel;
use prime_core::config::ConfigError;
use prime_core::metrics::MetricRecord;
use prime_core::observer::RunObserver;
use records::RunRecords;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Named tensor groups of a checkpoint (each stored as `<group>.safetensors`).
pub type TensorGroups = std::collections::BTreeMap<String, Vec<(String, Tensor)>>;

/// The record files a run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histories {
    /// Metrics only (evaluations).
    MetricsOnly,
    /// Metrics, the activated alphas of every step and the genotype of every epoch
    /// (searches).
    WithAlphas,
}

/// What the driver reads from every config: its resolved text, epochs and checkpoint
/// interval.
pub trait RunConfig {
    /// The resolved config as `config.toml` stores it.
    fn to_toml(&self) -> Result<String, ConfigError>;
    /// Epochs to run.
    fn epochs(&self) -> u32;
    /// A checkpoint every this many epochs (0: only at the end).
    fn checkpoint_every(&self) -> u32;
    /// The run's seed.
    fn seed(&self) -> u64;
    /// The arithmetic of the network's passes (`float32`, `bf16`, `fp16`).
    fn precision(&self) -> &'static str;
}

macro_rules! run_config {
    ($($config:ty => |$this:ident| $precision:expr),* $(,)?) => {$(
        impl RunConfig for $config {
            fn to_toml(&self) -> Result<String, ConfigError> {
                <$config>::to_toml(self)
            }

            fn epochs(&self) -> u32 {
                self.epochs
            }

            fn checkpoint_every(&self) -> u32 {
                self.checkpoint.every_epochs
            }

            fn seed(&self) -> u64 {
                self.seed
            }

            fn precision(&self) -> &'static str {
                let $this = self;
                $precision
            }
        }
    )*};
}

run_config!(
    prime_core::config::SearchConfig => |config| config.speed.search_precision.name(),
    prime_core::eval_config::EvalConfig => |config| match config.speed.autocast {
        prime_core::eval_config::Autocast::Off => "float32",
        reduced => reduced.name(),
    },
    // The recurrent networks always compute in float32.
    prime_core::rnn_config::RnnSearchConfig => |_config| "float32",
    prime_core::rnn_config::RnnEvalConfig => |_config| "float32",
);

/// The fixed facts of a run that the driver needs before its first step.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The resolved config as written to `config.toml`; its sha256 ties checkpoints to it.
    pub config_text: String,
    /// Every data file the run reads (role, path), for the run's data fingerprint.
    pub data_files: Vec<(String, PathBuf)>,
    /// Epochs to run.
    pub epochs: u32,
    /// Weight steps of the whole run (for progress).
    pub steps_total: u64,
    /// A checkpoint every this many epochs (0: only at the end).
    pub checkpoint_every: u32,
    /// The record files the run keeps.
    pub histories: Histories,
    /// The run's seed (for its manifest).
    pub seed: u64,
    /// The arithmetic of the network's passes (for its manifest).
    pub precision: &'static str,
}

impl Plan {
    /// The plan of a run of `config` over `data_files` with `steps_per_epoch` weight steps in
    /// every epoch.
    pub fn new(
        config: &impl RunConfig,
        data_files: Vec<(String, PathBuf)>,
        steps_per_epoch: u64,
        histories: Histories,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            config_text: config.to_toml()?,
            data_files,
            epochs: config.epochs(),
            steps_total: steps_per_epoch * u64::from(config.epochs()),
            checkpoint_every: config.checkpoint_every(),
            histories,
            seed: config.seed(),
            precision: config.precision(),
        })
    }
}

/// What a resume hands a task: the checkpoint (read from `path`) and the task's state in it.
pub struct Saved<'a, S> {
    /// The checkpoint's tensors.
    pub checkpoint: &'a crate::checkpoint::Checkpoint,
    /// Where the checkpoint was read from, for errors.
    pub path: &'a Path,
    /// The task's part of the checkpoint's state.
    pub state: S,
}

/// Where the run is: the 0-based epoch under way (or, after the last, the epochs done) and
/// the weight steps done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// The epoch.
    pub epoch: u32,
    /// Weight steps done before this point.
    pub global_step: u64,
}

/// What a training step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One weight step was taken.
    Trained,
    /// The epoch's data is used up; no step was taken.
    EpochDone,
}

/// The record files and the observer, written together: a metric goes to `metrics.jsonl`
/// and to the observer. The ranks of a data-parallel run other than rank 0 have no record
/// files (and a silent observer).
pub struct Sink<'a> {
    records: Option<&'a mut RunRecords>,
    observer: &'a mut dyn RunObserver,
    run_dir: &'a Path,
}

impl Sink<'_> {
    /// Appends a metric record and reports it.
    pub fn metric(&mut self, record: &MetricRecord) -> Result<(), RunError> {
        if let Some(records) = &mut self.records {
            records.metric(record)?;
        }
        self.observer.on_metric(record);
        Ok(())
    }

    /// Appends a line of the alpha history.
    pub fn alphas(&mut self, record: &impl Serialize) -> Result<(), RunError> {
        match &mut self.records {
            Some(records) => Ok(records.alphas(record)?),
            None => Ok(()),
        }
    }

    /// Appends the genotype at the start of `epoch` to the genotype history.
    pub fn genotype(&mut self, epoch: u32, genotype: &impl Serialize) -> Result<(), RunError> {
        match &mut self.records {
            Some(records) => Ok(records.genotype(epoch, genotype)?),
            None => Ok(()),
        }
    }

    /// The run directory, for the task's own result files. Tasks that run data-parallel
    /// write through [`Sink::output_dir`] instead.
    pub fn run_dir(&self) -> &Path {
        self.run_dir
    }

    /// The run directory where this rank writes the run's files: always on a single device,
    /// on rank 0 only in a data-parallel run.
    pub fn output_dir(&self) -> Option<&Path> {
        self.records.as_ref().map(|_| self.run_dir)
    }
}

/// One kind of training run, driven by [`run`].
///
/// The driver calls, in order: [`Task::plan`]; [`Task::start`] (a new run) or
/// [`Task::restore`] (a resume); then per epoch [`Task::begin_epoch`], [`Task::train_step`]
/// until it returns [`Step::EpochDone`] (asking the observer before every call, and calling
/// [`Task::flush`] and [`Task::checkpoint`] when it asks for one), and [`Task::end_epoch`]; at the end
/// [`Task::finish`], or [`Task::stopped`] when the observer stopped the run.
pub trait Task {
    /// The task's part of a checkpoint's `state.json`: every counter, position and running
    /// sum that a resumed run needs besides the driver's epoch and step counters.
    type State: Serialize + DeserializeOwned;
    /// What the run produced.
    type Outcome;

    /// The fixed facts of the run.
    fn plan(&self) -> Result<Plan, RunError>;

    /// A new run: writes the task's first files and records (the config is written already).
    fn start(&mut self, sink: &mut Sink) -> Result<(), RunError>;

    /// A resumed run: loads the checkpoint's tensors and the task's state.
    fn restore(&mut self, saved: Saved<Self::State>) -> Result<(), RunError>;

    /// Prepares epoch `at.epoch` (learning rate, data streams, the epoch's genotype line);
    /// also called when a run resumes in the middle of the epoch.
    fn begin_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError>;

    /// Takes the next weight step (with the alpha step the schedule asks for), or reports
    /// that the epoch's data is used up. `at.global_step` counts the steps before this one.
    fn train_step(&mut self, at: At, sink: &mut Sink) -> Result<Step, RunError>;

    /// Ends epoch `at.epoch` (validation, best-so-far files, the epoch record) and resets the
    /// per-epoch state, so that a checkpoint taken now resumes at the next epoch's start.
    fn end_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError>;

    /// Whether training ended before the last epoch (early stop on convergence).
    fn ended_early(&self) -> bool {
        false
    }

    /// Writes the records the task holds back (to read values from the device in batches),
    /// so that the records and the state agree; called before every checkpoint.
    fn flush(&mut self, _sink: &mut Sink) -> Result<(), RunError> {
        Ok(())
    }

    /// The data-parallel group this task is one rank of; `None` (the default) on a single
    /// device.
    fn data_parallel(&mut self) -> Option<&mut DataParallel> {
        None
    }

    /// The tensors of a checkpoint taken now, into `groups`, and the task's state.
    fn checkpoint(&mut self, groups: &mut TensorGroups) -> Result<Self::State, RunError>;

    /// The outcome of a run the observer stopped after `epochs_done` epochs.
    fn stopped(&mut self, epochs_done: u32) -> Result<Self::Outcome, RunError>;

    /// The outcome of a completed run, after writing its result files and final record.
    fn finish(&mut self, at: At, sink: &mut Sink) -> Result<Self::Outcome, RunError>;
}
