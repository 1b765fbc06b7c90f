//! A simulated trainer: no tensors, just deterministic "training" with the timing, metrics,
//! checkpoints and exact resume of a real run. It drives cluster tests and smoke tests of a
//! deployment (`worker --trainer simulated`), and can be told to crash, diverge, hang, run
//! out of GPU memory or report a corrupt result. It trains on any number of devices.

use crate::trainer::{TrainEnd, TrainError, TrainJob, Trainer};
use prime_core::checkpoint_layout::{Manifest, CHECKPOINT_FORMAT, MANIFEST_FILE};
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, Progress, RunObserver};
use prime_core::trial::{result_keys, TrialKind, TrialResult, TrialSpec};
use prime_nas::run::events::EventWriter;
use prime_proto::archive::sha256_hex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Epochs of a simulated run whose spec does not set them.
const DEFAULT_EPOCHS: u32 = 3;
/// Name of the checkpoint directory inside the run directory.
const CHECKPOINT_DIR: &str = "checkpoint";
/// Name of the final artifacts directory inside the run directory.
const FINAL_DIR: &str = "final";
/// The alpha history of a search, as the prime-nas engine names it.
const ALPHAS_FILE: &str = "alphas.jsonl";
/// Edges and ops of a simulated CNN cell (4 nodes, the 8 searched operations).
const CNN_CELL: (usize, usize) = (14, 8);
/// Edges and ops of a simulated recurrent cell (8 nodes, the 5 searched operations).
const RNN_CELL: (usize, usize) = (36, 5);

/// A misbehaviour to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with an error at the start of this epoch.
    Crash {
        /// 0-based epoch.
        at_epoch: u32,
    },
    /// Report a NaN loss at the start of this epoch.
    Diverge {
        /// 0-based epoch.
        at_epoch: u32,
    },
    /// Stop making progress at the start of this epoch (still honours stop requests).
    Hang {
        /// 0-based epoch.
        at_epoch: u32,
    },
    /// Block at the start of this epoch, deaf to stop requests (a deadlock, a stuck
    /// collective) until `SimulatedTrainer::thaw`; then behave like `Hang`.
    Freeze {
        /// 0-based epoch.
        at_epoch: u32,
    },
    /// Report, at the start of this epoch, a record with a NaN clock and one with a step of
    /// 2^63, which the coordinator cannot store, among good records.
    UnstorableMetrics {
        /// 0-based epoch.
        at_epoch: u32,
    },
    /// Panic at the start of this epoch with libtorch's out-of-memory message, as a tch
    /// call does when the CUDA allocator cannot allocate.
    OutOfMemory {
        /// 0-based epoch.
        at_epoch: u32,
    },
    /// Finish with a result the coordinator must refuse.
    CorruptResult,
    /// Refuse the trial's configuration as one that cannot run.
    Reject,
}

/// Which trials a fault applies to, and how many attempts it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Only trials of this method (any when `None`).
    pub method: Option<String>,
    /// Only trials of this search seed (any when `None`).
    pub seed: Option<u64>,
    /// Only searches or only evaluations (any when `None`).
    pub kind: Option<TrialKind>,
    /// The misbehaviour.
    pub fault: Fault,
    /// Attempts it still affects.
    pub times: u32,
}

impl FaultRule {
    fn matches(&self, spec: &TrialSpec) -> bool {
        self.times > 0
            && self
                .method
                .as_ref()
                .is_none_or(|method| *method == spec.method)
            && self.seed.is_none_or(|seed| seed == spec.search_seed)
            && self.kind.is_none_or(|kind| kind == spec.kind)
    }
}

/// One start of a simulated run, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The trial.
    pub trial_id: u64,
    /// Completed epochs it resumed from (0 for a fresh start).
    pub from_epoch: u32,
}

/// The simulated trainer.
#[derive(Debug)]
pub struct SimulatedTrainer {
    /// Weight steps per epoch.
    pub steps_per_epoch: u64,
    /// Wall time of one step.
    pub step_time: Duration,
    /// Size of the simulated weights file in a checkpoint.
    pub weights_bytes: usize,
    faults: Mutex<Vec<FaultRule>>,
    /// Runs on each slot of each worker (by work directory): their share and count.
    active: Mutex<HashMap<(PathBuf, u32), (u32, u32)>>,
    double_bookings: Mutex<u32>,
    most_on_one_slot: Mutex<u32>,
    starts: Mutex<Vec<Start>>,
    thawed: Mutex<bool>,
    thaw_signal: Condvar,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimState {
    epochs_done: u32,
    steps_done: u64,
    accumulator: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// One deterministic "training step": a 64-bit mix of the state and the step.
fn mix(accumulator: u64, step: u64) -> u64 {
    let mut x = accumulator ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The state a fresh run of `spec` starts from: its seeds and method decide everything.
fn initial_accumulator(spec: &TrialSpec) -> u64 {
    let method = spec
        .method
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
    mix(
        spec.search_seed ^ method,
        spec.eval_seed.unwrap_or(u64::MAX),
    )
}

/// A fingerprint of the final state that survives a trip through JSON exactly (12 digits).
fn checksum(accumulator: u64) -> f64 {
    (accumulator % 1_000_000_000_000) as f64
}

fn unit(accumulator: u64) -> f64 {
    (accumulator >> 11) as f64 / (1u64 << 53) as f64
}

fn io_error(what: &str, error: std::io::Error) -> TrainError {
    TrainError::Failed(format!("{what}: {error}"))
}

impl SimulatedTrainer {
    /// A trainer with `steps_per_epoch` steps of `step_time` each.
    pub fn new(steps_per_epoch: u64, step_time: Duration, weights_bytes: usize) -> Self {
        SimulatedTrainer {
            steps_per_epoch: steps_per_epoch.max(1),
            step_time,
            weights_bytes,
            faults: Mutex::new(Vec::new()),
            active: Mutex::new(HashMap::new()),
            double_bookings: Mutex::new(0),
            most_on_one_slot: Mutex::new(0),
            starts: Mutex::new(Vec::new()),
            thawed: Mutex::new(false),
            thaw_signal: Condvar::new(),
        }
    }

    /// Adds a fault rule.
    pub fn inject(&self, rule: FaultRule) {
        lock(&self.faults).push(rule);
    }

    /// Releases every frozen run, and lets later `Freeze` faults pass without blocking.
    pub fn thaw(&self) {
        *lock(&self.thawed) = true;
        self.thaw_signal.notify_all();
    }

    /// Blocks until `thaw`.
    fn wait_for_thaw(&self) {
        let mut thawed = lock(&self.thawed);
        while !*thawed {
            thawed = self
                .thaw_signal
                .wait(thawed)
                .unwrap_or_else(|poison| poison.into_inner());
        }
    }

    /// How often a run started on a slot of a worker that was already training more than
    /// the run's share allows (an unshared run beside another, a shared run beyond its
    /// `gpu_share`, or runs of different shares together).
    pub fn double_bookings(&self) -> u32 {
        *lock(&self.double_bookings)
    }

    /// The most runs that trained on one slot at the same time.
    pub fn most_on_one_slot(&self) -> u32 {
        *lock(&self.most_on_one_slot)
    }

    /// Every start so far.
    pub fn starts(&self) -> Vec<Start> {
        lock(&self.starts).clone()
    }

    fn take_fault(&self, spec: &TrialSpec) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let rule = faults.iter_mut().find(|rule| rule.matches(spec))?;
        rule.times -= 1;
        Some(rule.fault)
    }

    fn write_checkpoint(&self, run_dir: &Path, state: &SimState) -> Result<PathBuf, TrainError> {
        let temporary = run_dir.join(format!("{CHECKPOINT_DIR}.tmp"));
        let target = run_dir.join(CHECKPOINT_DIR);
        let write = || -> std::io::Result<()> {
            if temporary.exists() {
                std::fs::remove_dir_all(&temporary)?;
            }
            std::fs::create_dir_all(&temporary)?;
            let state_json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
            let weights = self.weights(state.accumulator);
            // A manifest like the engine's, so uploads pass the same verification.
            let manifest = Manifest {
                format: CHECKPOINT_FORMAT,
                tag: CHECKPOINT_DIR.to_string(),
                files: [
                    ("state.json".to_string(), sha256_hex(&state_json)),
                    ("weights.bin".to_string(), sha256_hex(&weights)),
                ]
                .into(),
            };
            std::fs::write(temporary.join("state.json"), state_json)?;
            std::fs::write(temporary.join("weights.bin"), weights)?;
            std::fs::write(
                temporary.join(MANIFEST_FILE),
                serde_json::to_vec(&manifest).map_err(std::io::Error::other)?,
            )?;
            if target.exists() {
                std::fs::remove_dir_all(&target)?;
            }
            std::fs::rename(&temporary, &target)
        };
        write().map_err(|error| io_error("writing a checkpoint", error))?;
        Ok(target)
    }

    fn weights(&self, accumulator: u64) -> Vec<u8> {
        let mut x = accumulator;
        (0..self.weights_bytes)
            .map(|index| {
                x = mix(x, index as u64);
                x as u8
            })
            .collect()
    }

    /// Rewrites the alpha history of a search that has done `epochs_done` epochs: one line at
    /// the start and one after every epoch, in the engine's shape (`normal` and `reduce`, or
    /// `recurrent`, activated rows that sum to 1). Every line follows from the spec and the
    /// epoch alone, so a resumed run writes the same file.
    fn write_alphas(
        &self,
        run_dir: &Path,
        spec: &TrialSpec,
        epochs_done: u32,
        epochs: u32,
    ) -> Result<(), TrainError> {
        let seed = initial_accumulator(spec);
        // Each edge drifts towards one op, stronger as the epochs pass.
        let cell = |salt: u64, (edges, ops): (usize, usize), epoch: u32| -> Vec<Vec<f64>> {
            (0..edges)
                .map(|edge| {
                    let favourite = (mix(seed ^ salt, edge as u64) % ops as u64) as usize;
                    let growth = 3.0 * f64::from(epoch) / f64::from(epochs.max(1));
                    let logits: Vec<f64> = (0..ops)
                        .map(|op| {
                            let noise = 0.2 * unit(mix(seed ^ salt, (edge * ops + op) as u64));
                            noise + if op == favourite { growth } else { 0.0 }
                        })
                        .collect();
                    let total: f64 = logits.iter().map(|logit| logit.exp()).sum();
                    logits.iter().map(|logit| logit.exp() / total).collect()
                })
                .collect()
        };
        let mut text = String::new();
        for epoch in 0..=epochs_done {
            let step = u64::from(epoch) * self.steps_per_epoch;
            let line = if spec.dataset.uses_perplexity() {
                serde_json::json!({"step": step, "clock": epoch, "recurrent": cell(3, RNN_CELL, epoch)})
            } else {
                serde_json::json!({
                    "step": step,
                    "clock": epoch,
                    "normal": cell(1, CNN_CELL, epoch),
                    "reduce": cell(2, CNN_CELL, epoch),
                })
            };
            text.push_str(&line.to_string());
            text.push('\n');
        }
        std::fs::write(run_dir.join(ALPHAS_FILE), text)
            .map_err(|error| io_error("writing the alpha history", error))
    }

    fn result(&self, spec: &TrialSpec, state: &SimState) -> TrialResult {
        let quality = unit(state.accumulator);
        let mut result = TrialResult::default();
        result
            .metrics
            .insert("checksum".into(), checksum(state.accumulator));
        match spec.kind {
            TrialKind::Search => {
                let ops = [
                    "sep_conv_3x3",
                    "dil_conv_3x3",
                    "skip_connect",
                    "max_pool_3x3",
                ];
                let pick = |shift: u32| ops[((state.accumulator >> shift) % 4) as usize];
                result.genotype = Some(serde_json::json!({
                    "normal": [[pick(0), 0], [pick(2), 1]],
                    "reduce": [[pick(4), 0], [pick(6), 1]],
                }));
                result
                    .metrics
                    .insert("search_valid_acc".into(), 80.0 + 10.0 * quality);
            }
            TrialKind::Evaluation if spec.dataset.uses_perplexity() => {
                result
                    .metrics
                    .insert(result_keys::TEST_PPL.into(), 60.0 + 5.0 * quality);
                result
                    .metrics
                    .insert(result_keys::VALID_PPL.into(), 62.0 + 5.0 * quality);
                result.metrics.insert(result_keys::PARAMS_M.into(), 23.0);
            }
            TrialKind::Evaluation => {
                result
                    .metrics
                    .insert(result_keys::TEST_ERROR.into(), 2.5 + quality);
                result
                    .metrics
                    .insert(result_keys::PARAMS_M.into(), 3.0 + quality);
            }
        }
        result
    }

    fn load_state(&self, job: &TrainJob) -> Result<SimState, TrainError> {
        if !job.resume {
            return Ok(SimState {
                epochs_done: 0,
                steps_done: 0,
                accumulator: initial_accumulator(&job.spec),
            });
        }
        let path = job.run_dir.join(CHECKPOINT_DIR).join("state.json");
        let text =
            std::fs::read(&path).map_err(|error| io_error("reading the checkpoint", error))?;
        serde_json::from_slice(&text)
            .map_err(|error| TrainError::Failed(format!("corrupt checkpoint state: {error}")))
    }

    fn run(&self, job: &TrainJob, observer: &mut dyn RunObserver) -> Result<TrainEnd, TrainError> {
        let mut state = self.load_state(job)?;
        lock(&self.starts).push(Start {
            trial_id: job.trial_id,
            from_epoch: state.epochs_done,
        });
        let epochs = job.spec.settings.epochs.unwrap_or(DEFAULT_EPOCHS);
        let steps_total = u64::from(epochs) * self.steps_per_epoch;
        let fault = self.take_fault(&job.spec);
        if fault == Some(Fault::Reject) {
            return Err(TrainError::Invalid(format!(
                "simulated rejection of method `{}`",
                job.spec.method
            )));
        }
        let progress = |state: &SimState| Progress {
            epochs_done: state.epochs_done,
            epochs_total: epochs,
            steps_done: state.steps_done,
            steps_total,
        };
        let search = job.spec.kind == TrialKind::Search;
        if search {
            self.write_alphas(&job.run_dir, &job.spec, state.epochs_done, epochs)?;
        }
        while state.epochs_done < epochs {
            let epoch = state.epochs_done;
            match fault {
                Some(Fault::Crash { at_epoch }) if at_epoch == epoch => {
                    return Err(TrainError::Failed(format!(
                        "simulated crash at epoch {epoch}"
                    )));
                }
                Some(Fault::OutOfMemory { at_epoch }) if at_epoch == epoch => {
                    panic!(
                        "CUDA out of memory. Tried to allocate 2.00 GiB (simulated at epoch \
                         {epoch})"
                    );
                }
                Some(Fault::Diverge { at_epoch }) if at_epoch == epoch => {
                    let record = MetricRecord::new(
                        MetricKind::Step,
                        epoch,
                        state.steps_done,
                        f64::from(epoch),
                    )
                    .with("loss", f64::NAN);
                    observer.on_metric(&record);
                }
                Some(Fault::UnstorableMetrics { at_epoch }) if at_epoch == epoch => {
                    let step = state.steps_done;
                    observer.on_metric(&MetricRecord::new(
                        MetricKind::AlphaStep,
                        epoch,
                        step,
                        f64::NAN,
                    ));
                    observer.on_metric(&MetricRecord::new(
                        MetricKind::AlphaStep,
                        epoch,
                        1 << 63,
                        0.0,
                    ));
                }
                Some(Fault::Hang { at_epoch } | Fault::Freeze { at_epoch })
                    if at_epoch == epoch =>
                {
                    if matches!(fault, Some(Fault::Freeze { .. })) {
                        self.wait_for_thaw();
                    }
                    loop {
                        std::thread::sleep(self.step_time.max(Duration::from_millis(5)));
                        if observer.control(&progress(&state)) == Control::CheckpointAndStop {
                            return Ok(TrainEnd::Stopped);
                        }
                    }
                }
                _ => {}
            }
            // A run resumed mid-epoch (after a preemption) finishes that epoch's steps only.
            let epoch_end = u64::from(epoch + 1) * self.steps_per_epoch;
            while state.steps_done < epoch_end {
                match observer.control(&progress(&state)) {
                    Control::Continue => {}
                    Control::Checkpoint => {
                        let dir = self.write_checkpoint(&job.run_dir, &state)?;
                        observer.on_checkpoint(&dir, &progress(&state));
                    }
                    Control::CheckpointAndStop => {
                        let dir = self.write_checkpoint(&job.run_dir, &state)?;
                        observer.on_checkpoint(&dir, &progress(&state));
                        return Ok(TrainEnd::Stopped);
                    }
                }
                std::thread::sleep(self.step_time);
                state.accumulator = mix(state.accumulator, state.steps_done);
                state.steps_done += 1;
                let clock = state.steps_done as f64 / self.steps_per_epoch as f64;
                let loss = 2.3 * (1.0 - 0.5 * clock / f64::from(epochs.max(1)))
                    + 0.1 * unit(state.accumulator);
                let record = MetricRecord::new(MetricKind::Step, epoch, state.steps_done, clock)
                    .with("loss", loss);
                observer.on_metric(&record);
            }
            state.epochs_done += 1;
            let record = MetricRecord::new(
                MetricKind::Epoch,
                epoch,
                state.steps_done,
                f64::from(state.epochs_done),
            )
            .with(
                "valid_acc",
                50.0 + 40.0 * f64::from(state.epochs_done) / f64::from(epochs),
            )
            .with("valid_loss", 1.0 / f64::from(state.epochs_done));
            observer.on_metric(&record);
            if search {
                self.write_alphas(&job.run_dir, &job.spec, state.epochs_done, epochs)?;
            }
            let dir = self.write_checkpoint(&job.run_dir, &state)?;
            observer.on_checkpoint(&dir, &progress(&state));
        }
        if observer.control(&progress(&state)) == Control::CheckpointAndStop {
            return Ok(TrainEnd::Stopped);
        }
        let mut result = self.result(&job.spec, &state);
        if fault == Some(Fault::CorruptResult) {
            result.genotype = None;
            result.metrics.insert("test_error".into(), f64::INFINITY);
        }
        let final_dir = job.run_dir.join(FINAL_DIR);
        let write_final = || -> std::io::Result<()> {
            std::fs::create_dir_all(&final_dir)?;
            std::fs::write(
                final_dir.join("weights.bin"),
                self.weights(state.accumulator),
            )?;
            let result_json = serde_json::to_vec_pretty(&result).map_err(std::io::Error::other)?;
            std::fs::write(final_dir.join("result.json"), result_json)?;
            // The engine's run directory holds a TensorBoard event file; so does this one.
            let mut events = EventWriter::open(&job.run_dir, None)?;
            let scalars = [("final/checksum".to_string(), checksum(state.accumulator))];
            events.scalars(state.steps_done, &scalars)?;
            events.flush().map(drop)
        };
        write_final().map_err(|error| io_error("writing the final artifacts", error))?;
        let record = MetricRecord::new(
            MetricKind::Final,
            epochs,
            state.steps_done,
            f64::from(epochs),
        )
        .with("checksum", checksum(state.accumulator));
        observer.on_metric(&record);
        // Like the prime-nas engine, the whole run directory is the artifact: the last
        // checkpoint and the final weights travel together.
        Ok(TrainEnd::Finished {
            result,
            artifacts: Some(job.run_dir.clone()),
        })
    }
}

impl SimulatedTrainer {
    /// Books `job` on its slots: counts a double booking where the slot's runs and this one
    /// cannot share it, and the most runs seen on one slot.
    fn book(&self, worker: &Path, job: &TrainJob) {
        let share = job.spec.resources().gpu_share;
        let mut active = lock(&self.active);
        for slot in &job.slots {
            let (slot_share, count) = active.entry((worker.to_path_buf(), *slot)).or_default();
            if *count > 0 && (*slot_share != share || *count >= share) {
                *lock(&self.double_bookings) += 1;
            }
            *slot_share = share;
            *count += 1;
            let most = &mut *lock(&self.most_on_one_slot);
            *most = (*most).max(*count);
        }
    }

    fn release(&self, worker: &Path, job: &TrainJob) {
        let mut active = lock(&self.active);
        for slot in &job.slots {
            let key = (worker.to_path_buf(), *slot);
            if let Some((_, count)) = active.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    active.remove(&key);
                }
            }
        }
    }
}

impl Trainer for SimulatedTrainer {
    fn train(
        &self,
        job: &TrainJob,
        observer: &mut dyn RunObserver,
    ) -> Result<TrainEnd, TrainError> {
        let worker = job
            .run_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        self.book(&worker, job);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(job, observer)));
        self.release(&worker, job);
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The result an uninterrupted simulated run of `spec` produces (tests compare resumed runs
/// against it).
pub fn expected_checksum(spec: &TrialSpec, steps_per_epoch: u64) -> f64 {
    let epochs = spec.settings.epochs.unwrap_or(DEFAULT_EPOCHS);
    let mut accumulator = initial_accumulator(spec);
    for step in 0..u64::from(epochs) * steps_per_epoch.max(1) {
        accumulator = mix(accumulator, step);
    }
    checksum(accumulator)
}
