//! The one loop of every run: start or resume, epochs and steps, the observer's requests,
//! checkpoints as the policy decides, and the end of the run.

use super::layout::{RunOptions, CHECKPOINT_DIR, CONFIG_FILE};
use super::policy::{CheckpointPolicy, Decision};
use super::records::{RecordLengths, RunRecords};
use super::{At, Histories, Plan, Saved, Sink, Step, Task, TensorGroups};
use crate::checkpoint::{self, annotate, sha256_hex, Checkpoint, CONFIG_CHANGED};
use crate::error::RunError;
use crate::fingerprint::DataFingerprint;
use crate::run::manifest::{Machine, RunManifest, MANIFEST_FILE};
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Progress, RunObserver};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The metric a resume on other kernels records (value 1) at the step it resumed from; the
/// notice itself is in the log and in `manifest.json`.
pub const RESUMED_NOT_BITWISE: &str = "resumed_not_bitwise";

/// A checkpoint's `state.json`: the driver's counters and the task's state side by side in
/// one object.
#[derive(Debug, Serialize, Deserialize)]
struct SavedState<S> {
    epoch: u32,
    global_step: u64,
    #[serde(flatten)]
    task: S,
    records: RecordLengths,
    config_sha256: String,
}

/// The driver's counters.
#[derive(Debug, Default)]
struct Counters {
    epoch: u32,
    global_step: u64,
}

/// Runs (or, with `options.resume` and a checkpoint in the run directory, resumes) `task`
/// in `options.run_dir`, reporting to `observer`. A rank of a data-parallel run other than
/// rank 0 writes nothing and reports nothing; it resumes from rank 0's checkpoint.
pub fn run<T: Task>(
    mut task: T,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<T::Outcome, RunError> {
    let plan = task.plan()?;
    let run_dir = &options.run_dir;
    let checkpoint_dir = run_dir.join(CHECKPOINT_DIR);
    let config_sha256 = sha256_hex(plan.config_text.as_bytes());
    let resuming = options.resume && checkpoint::has_checkpoint(&checkpoint_dir);
    let writes = task.data_parallel().is_none_or(|ranks| ranks.writes());
    let (counters, records) = if !writes {
        let counters = if resuming {
            resume(&mut task, run_dir, &config_sha256)?.0
        } else {
            Counters::default()
        };
        (counters, None)
    } else {
        let (counters, records) = open_run(
            &mut task,
            &plan,
            options,
            &config_sha256,
            resuming,
            observer,
        )?;
        (counters, Some(records))
    };
    let mut driver = Driver {
        plan: &plan,
        run_dir,
        checkpoint_dir: &checkpoint_dir,
        config_sha256: &config_sha256,
        counters,
        records,
    };
    driver.drive(task, observer)
}

/// Prepares rank 0's (or the single device's) run directory: a new run's config, manifest,
/// first records and task files, or a resumed run's checkpoint, records and manifest.
fn open_run<T: Task>(
    task: &mut T,
    plan: &Plan,
    options: &RunOptions,
    config_sha256: &str,
    resuming: bool,
    observer: &mut dyn RunObserver,
) -> Result<(Counters, RunRecords), RunError> {
    let run_dir = &options.run_dir;
    // Created only once the task holds its data, so a bad --data-dir leaves nothing behind.
    std::fs::create_dir_all(run_dir).map_err(|error| annotate(run_dir, error))?;
    let fingerprint = DataFingerprint::of_files(&options.data_dir, &plan.data_files)?;
    fingerprint.record_or_check(run_dir, resuming)?;
    let ranks = task.data_parallel().map_or(1, |ranks| ranks.world_size());
    let machine = Machine {
        collectives: task.data_parallel().map(|ranks| ranks.backend()),
        ..Machine::current(options.device, ranks)
    };
    let new_manifest = || {
        RunManifest::new(
            machine.clone(),
            plan.seed,
            config_sha256,
            fingerprint.files.clone(),
            plan.precision,
        )
    };

    if !resuming {
        super::files::write_text(&run_dir.join(CONFIG_FILE), &plan.config_text)?;
        new_manifest().write(run_dir)?;
        let mut records = open_records(plan, run_dir, None)?;
        task.start(&mut Sink {
            records: Some(&mut records),
            observer,
            run_dir,
        })?;
        return Ok((Counters::default(), records));
    }
    let (counters, lengths) = resume(task, run_dir, config_sha256)?;
    let mut records = open_records(plan, run_dir, Some(lengths))?;
    let notice = match RunManifest::read(run_dir)? {
        Some(mut manifest) => {
            let notice =
                manifest.record_resume(counters.epoch, counters.global_step, machine.clone());
            manifest.write(run_dir)?;
            notice
        }
        None => {
            tracing::info!(
                "the run directory has no {MANIFEST_FILE}; writing one for this part of the run"
            );
            new_manifest().write(run_dir)?;
            None
        }
    };
    if let Some(notice) = notice {
        tracing::warn!(
            epoch = counters.epoch,
            step = counters.global_step,
            "{notice}"
        );
        let record = MetricRecord::new(
            MetricKind::Step,
            counters.epoch,
            counters.global_step,
            f64::from(counters.epoch),
        )
        .with(RESUMED_NOT_BITWISE, 1.0);
        Sink {
            records: Some(&mut records),
            observer,
            run_dir,
        }
        .metric(&record)?;
    }
    Ok((counters, records))
}

/// The loop of one run (of one rank): its counters and, where it writes them, its records.
struct Driver<'a> {
    plan: &'a Plan,
    run_dir: &'a Path,
    checkpoint_dir: &'a Path,
    config_sha256: &'a str,
    counters: Counters,
    records: Option<RunRecords>,
}

impl Driver<'_> {
    fn sink<'s>(&'s mut self, observer: &'s mut dyn RunObserver) -> Sink<'s> {
        Sink {
            records: self.records.as_mut(),
            observer,
            run_dir: self.run_dir,
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            epochs_done: self.counters.epoch,
            epochs_total: self.plan.epochs,
            steps_done: self.counters.global_step,
            steps_total: self.plan.steps_total,
        }
    }

    fn at(&self) -> At {
        At {
            epoch: self.counters.epoch,
            global_step: self.counters.global_step,
        }
    }

    fn drive<T: Task>(
        &mut self,
        mut task: T,
        observer: &mut dyn RunObserver,
    ) -> Result<T::Outcome, RunError> {
        let policy = CheckpointPolicy {
            epochs: self.plan.epochs,
            every_epochs: self.plan.checkpoint_every,
        };
        while self.counters.epoch < self.plan.epochs && !task.ended_early() {
            task.begin_epoch(self.at(), &mut self.sink(observer))?;
            loop {
                let now = self.progress();
                let decision = agree(&mut task, policy.before_step(observer.control(&now)))?;
                if decision != Decision::Continue {
                    self.save(&mut task, observer, &now)?;
                }
                if decision == Decision::SaveAndStop {
                    return task.stopped(self.counters.epoch);
                }
                let at = self.at();
                match task.train_step(at, &mut self.sink(observer))? {
                    Step::Trained => self.counters.global_step += 1,
                    Step::EpochDone => break,
                }
            }
            task.end_epoch(self.at(), &mut self.sink(observer))?;
            self.counters.epoch += 1;
            if policy.after_epoch(self.counters.epoch, task.ended_early()) == Decision::Save {
                let now = self.progress();
                self.save(&mut task, observer, &now)?;
            }
        }
        let at = self.at();
        let outcome = task.finish(at, &mut self.sink(observer))?;
        if let Some(records) = &mut self.records {
            records.flush()?;
        }
        Ok(outcome)
    }

    /// Writes a checkpoint (rank 0); the other ranks of a data-parallel run take their
    /// checkpoint state too (the task may settle running sums), and drop it.
    fn save<T: Task>(
        &mut self,
        task: &mut T,
        observer: &mut dyn RunObserver,
        progress: &Progress,
    ) -> Result<(), RunError> {
        task.flush(&mut self.sink(observer))?;
        let mut groups = TensorGroups::new();
        let task_state = task.checkpoint(&mut groups)?;
        let Some(records) = &mut self.records else {
            return Ok(());
        };
        let state = SavedState {
            epoch: self.counters.epoch,
            global_step: self.counters.global_step,
            task: task_state,
            records: records.flush()?,
            config_sha256: self.config_sha256.to_string(),
        };
        let state = serde_json::to_value(&state).map_err(|error| {
            RunError::Io(std::io::Error::other(format!(
                "the checkpoint state cannot be serialised: {error}"
            )))
        })?;
        let checkpoint = Checkpoint { groups, state };
        let tag = format!("step-{:09}", self.counters.global_step);
        let path = checkpoint.write(self.checkpoint_dir, &tag)?;
        observer.on_checkpoint(&path, progress);
        Ok(())
    }
}

/// Rank 0's `decision` on every rank of a data-parallel run (only rank 0 asks its
/// observer); `decision` itself on a single device.
fn agree<T: Task>(task: &mut T, decision: Decision) -> Result<Decision, RunError> {
    let Some(ranks) = task.data_parallel() else {
        return Ok(decision);
    };
    let code = match decision {
        Decision::Continue => 0,
        Decision::Save => 1,
        Decision::SaveAndStop => 2,
    };
    Ok(match ranks.agree(code)? {
        0 => Decision::Continue,
        1 => Decision::Save,
        _ => Decision::SaveAndStop,
    })
}

fn open_records(
    plan: &Plan,
    run_dir: &Path,
    lengths: Option<RecordLengths>,
) -> Result<RunRecords, RunError> {
    Ok(match plan.histories {
        Histories::WithAlphas => RunRecords::open(run_dir, lengths)?,
        Histories::MetricsOnly => RunRecords::open_metrics_only(run_dir, lengths)?,
    })
}

/// Restores the task from the newest checkpoint; refuses one written for another config
/// before touching any tensor. Returns the counters and the record lengths it holds.
fn resume<T: Task>(
    task: &mut T,
    run_dir: &Path,
    config_sha256: &str,
) -> Result<(Counters, RecordLengths), RunError> {
    let (checkpoint, path) = Checkpoint::read_latest(&run_dir.join(CHECKPOINT_DIR))?;
    let saved: SavedState<T::State> = checkpoint.loop_state(&path)?;
    if saved.config_sha256 != config_sha256 {
        return Err(RunError::Resume {
            dir: run_dir.to_path_buf(),
            message: CONFIG_CHANGED.to_string(),
        });
    }
    task.restore(Saved {
        checkpoint: &checkpoint,
        path: &path,
        state: saved.task,
    })?;
    tracing::info!(
        epoch = saved.epoch,
        step = saved.global_step,
        "resumed from {}",
        path.display()
    );
    let counters = Counters {
        epoch: saved.epoch,
        global_step: saved.global_step,
    };
    Ok((counters, saved.records))
}

/// A task state through a checkpoint's `state.json` and back, as a resume reads it.
#[cfg(test)]
pub(crate) fn saved_state_round_trip<S: Serialize + serde::de::DeserializeOwned>(state: &S) -> S {
    let saved = SavedState {
        epoch: 1,
        global_step: 3,
        task: state,
        records: RecordLengths::default(),
        config_sha256: String::new(),
    };
    let text = serde_json::to_string(&saved).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let back: SavedState<S> = serde_json::from_value(value).unwrap();
    assert_eq!((back.epoch, back.global_step), (1, 3));
    back.task
}

/// The driver's counters and the task state of a checkpoint's `state.json` text.
#[cfg(test)]
pub(crate) fn read_saved_state<S: serde::de::DeserializeOwned>(json: &str) -> (u32, u64, S) {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let saved: SavedState<S> = serde_json::from_value(value).unwrap();
    (saved.epoch, saved.global_step, saved.task)
}
