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
struct Counters {
    epoch: u32,
    global_step: u64,
}

/// Runs (or, with `options.resume` and a checkpoint in the run directory, resumes) `task`
/// in `options.run_dir`, reporting to `observer`.
pub fn run<T: Task>(
    mut task: T,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<T::Outcome, RunError> {
    let plan = task.plan()?;
    let run_dir = &options.run_dir;
    let checkpoint_dir = run_dir.join(CHECKPOINT_DIR);
    let config_sha256 = sha256_hex(plan.config_text.as_bytes());
    // Created only once the task holds its data, so a bad --data-dir leaves nothing behind.
    std::fs::create_dir_all(run_dir).map_err(|error| annotate(run_dir, error))?;
    let resuming = options.resume && checkpoint::has_checkpoint(&checkpoint_dir);
    let fingerprint = DataFingerprint::of_files(&options.data_dir, &plan.data_files)?;
    fingerprint.record_or_check(run_dir, resuming)?;
    let machine = Machine::current(options.device);
    let new_manifest = || {
        RunManifest::new(
            machine.clone(),
            plan.seed,
            &config_sha256,
            fingerprint.files.clone(),
            plan.precision,
        )
    };

    let (mut counters, mut records) = if resuming {
        let (counters, mut records) = resume(&mut task, &plan, run_dir, &config_sha256)?;
        let notice = match RunManifest::read(run_dir)? {
            Some(mut manifest) => {
                let notice =
                    manifest.record_resume(counters.epoch, counters.global_step, machine.clone());
                manifest.write(run_dir)?;
                notice
            }
            None => {
                tracing::info!("the run directory has no {MANIFEST_FILE}; writing one for this part of the run");
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
                records: &mut records,
                observer,
                run_dir,
            }
            .metric(&record)?;
        }
        (counters, records)
    } else {
        super::files::write_text(&run_dir.join(CONFIG_FILE), &plan.config_text)?;
        new_manifest().write(run_dir)?;
        let mut records = open_records(&plan, run_dir, None)?;
        task.start(&mut Sink {
            records: &mut records,
            observer,
            run_dir,
        })?;
        let counters = Counters {
            epoch: 0,
            global_step: 0,
        };
        (counters, records)
    };

    let policy = CheckpointPolicy {
        epochs: plan.epochs,
        every_epochs: plan.checkpoint_every,
    };
    let progress = |counters: &Counters| Progress {
        epochs_done: counters.epoch,
        epochs_total: plan.epochs,
        steps_done: counters.global_step,
        steps_total: plan.steps_total,
    };
    let mut saver = Saver {
        run_dir,
        checkpoint_dir: &checkpoint_dir,
        config_sha256: &config_sha256,
    };
    while counters.epoch < plan.epochs && !task.ended_early() {
        let mut sink = Sink {
            records: &mut records,
            observer,
            run_dir,
        };
        task.begin_epoch(at(&counters), &mut sink)?;
        loop {
            let now = progress(&counters);
            let decision = policy.before_step(observer.control(&now));
            if decision != Decision::Continue {
                saver.save(&mut task, &mut records, observer, &counters, &now)?;
            }
            if decision == Decision::SaveAndStop {
                return task.stopped(counters.epoch);
            }
            let mut sink = Sink {
                records: &mut records,
                observer,
                run_dir,
            };
            match task.train_step(at(&counters), &mut sink)? {
                Step::Trained => counters.global_step += 1,
                Step::EpochDone => break,
            }
        }
        let mut sink = Sink {
            records: &mut records,
            observer,
            run_dir,
        };
        task.end_epoch(at(&counters), &mut sink)?;
        counters.epoch += 1;
        if policy.after_epoch(counters.epoch, task.ended_early()) == Decision::Save {
            let now = progress(&counters);
            saver.save(&mut task, &mut records, observer, &counters, &now)?;
        }
    }

    let outcome = task.finish(
        at(&counters),
        &mut Sink {
            records: &mut records,
            observer,
            run_dir,
        },
    )?;
    records.flush()?;
    Ok(outcome)
}

fn at(counters: &Counters) -> At {
    At {
        epoch: counters.epoch,
        global_step: counters.global_step,
    }
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
/// before touching any tensor.
fn resume<T: Task>(
    task: &mut T,
    plan: &Plan,
    run_dir: &Path,
    config_sha256: &str,
) -> Result<(Counters, RunRecords), RunError> {
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
    Ok((counters, open_records(plan, run_dir, Some(saved.records))?))
}

/// Writes checkpoints of one run.
struct Saver<'a> {
    run_dir: &'a Path,
    checkpoint_dir: &'a Path,
    config_sha256: &'a str,
}

impl Saver<'_> {
    fn save<T: Task>(
        &mut self,
        task: &mut T,
        records: &mut RunRecords,
        observer: &mut dyn RunObserver,
        counters: &Counters,
        progress: &Progress,
    ) -> Result<(), RunError> {
        task.flush(&mut Sink {
            records,
            observer,
            run_dir: self.run_dir,
        })?;
        let mut groups = TensorGroups::new();
        let state = SavedState {
            epoch: counters.epoch,
            global_step: counters.global_step,
            task: task.checkpoint(&mut groups)?,
            records: records.flush()?,
            config_sha256: self.config_sha256.to_string(),
        };
        let state = serde_json::to_value(&state).map_err(|error| {
            RunError::Io(std::io::Error::other(format!(
                "the checkpoint state cannot be serialised: {error}"
            )))
        })?;
        let checkpoint = Checkpoint { groups, state };
        let tag = format!("step-{:09}", counters.global_step);
        let path = checkpoint.write(self.checkpoint_dir, &tag)?;
        observer.on_checkpoint(&path, progress);
        Ok(())
    }
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
