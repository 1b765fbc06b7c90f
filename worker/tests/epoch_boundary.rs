//! A search trial whose worker checkpoints right after the last step of an epoch (the
//! worker's time-based checkpoint, before the epoch's validation) and then dies: the retry
//! resumes from that checkpoint and ends as the straight run does, its result carrying the
//! run's manifest with the resume recorded.

use prime_core::dataset::Dataset;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, NullObserver, Progress, RunObserver};
use prime_core::settings::{DataSource, RunSettings};
use prime_core::trial::{TrialKind, TrialSpec};
use prime_worker::nas::NasTrainer;
use prime_worker::{Device, TrainEnd, TrainJob, Trainer};
use std::path::{Path, PathBuf};

/// Asks for a checkpoint once `at_step` steps are done, then dies (panics) at the next epoch
/// record: the checkpoint is the last one the attempt leaves.
struct CheckpointThenDie {
    at_step: u64,
    checkpointed: bool,
}

impl RunObserver for CheckpointThenDie {
    fn on_metric(&mut self, record: &MetricRecord) {
        if self.checkpointed && record.kind == MetricKind::Epoch {
            panic!(
                "simulated worker death after the checkpoint at step {}",
                self.at_step
            );
        }
    }
    fn on_checkpoint(&mut self, _dir: &Path, _progress: &Progress) {}
    fn control(&mut self, progress: &Progress) -> Control {
        if progress.steps_done == self.at_step && !self.checkpointed {
            self.checkpointed = true;
            Control::Checkpoint
        } else {
            Control::Continue
        }
    }
}

fn job(run_dir: &Path, resume: bool) -> TrainJob {
    TrainJob {
        trial_id: 1,
        spec: TrialSpec {
            grid: "g".into(),
            kind: TrialKind::Search,
            method: "darts-prime".into(),
            label: "DARTS-PRIME".into(),
            dataset: Dataset::Cifar10,
            search_seed: 101,
            eval_seed: None,
            settings: RunSettings {
                epochs: Some(2),
                batch_size: Some(16),
                init_channels: Some(2),
                layers: Some(3),
                data: Some(DataSource::Synthetic),
                // A weight split of 60 images at the preset's dynamic split r/(r+1):
                // 4 batches of 16, the last one partial.
                train_samples: Some(66),
                ..RunSettings::default()
            },
            genotype: None,
            evaluation: None,
            priority: 0,
            retries: 3,
        },
        run_dir: run_dir.to_path_buf(),
        devices: vec![Device::Cpu],
        slots: vec![0],
        resume,
    }
}

fn steps_of_epoch_0(run_dir: &Path) -> u64 {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| line.contains("\"kind\":\"step\"") && line.contains("\"epoch\":0,"))
        .count() as u64
}

#[test]
fn a_retry_resumes_from_a_checkpoint_taken_after_an_epochs_last_step() {
    tch::set_num_threads(1);
    let work = tempfile::tempdir().unwrap();
    let trainer = NasTrainer {
        methods_dir: None,
        data_dir: PathBuf::new(),
        synthetic_dir: work.path().join("synthetic"),
        own_streams: false,
    };
    let straight_dir = work.path().join("straight");
    let straight = trainer
        .train(&job(&straight_dir, false), &mut NullObserver)
        .unwrap();
    let TrainEnd::Finished { result, .. } = &straight else {
        panic!("the straight run did not finish: {straight:?}");
    };
    let last_step = steps_of_epoch_0(&straight_dir);
    assert!(last_step >= 2);

    let retried_dir = work.path().join("retried");
    let mut dying = CheckpointThenDie {
        at_step: last_step,
        checkpointed: false,
    };
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trainer.train(&job(&retried_dir, false), &mut dying)
    }));
    assert!(died.is_err() && dying.checkpointed);
    let retried = trainer
        .train(&job(&retried_dir, true), &mut NullObserver)
        .unwrap();
    let TrainEnd::Finished {
        result: retried_result,
        ..
    } = &retried
    else {
        panic!("the retry did not finish: {retried:?}");
    };
    assert_eq!(retried_result.genotype, result.genotype);
    // Both results carry their run's manifest; the retry's records its resume, on the same
    // kernels (no notice).
    let manifest = result.manifest.as_ref().expect("the result's manifest");
    assert_eq!(manifest["machine"]["device"], "cpu");
    assert!(manifest["config_sha256"]
        .as_str()
        .is_some_and(|hash| hash.len() == 64));
    let retried_manifest = retried_result
        .manifest
        .as_ref()
        .expect("the retry's manifest");
    let resumes = retried_manifest["resumes"].as_array().unwrap();
    assert_eq!(resumes.len(), 1);
    assert!(resumes[0]["notice"].is_null(), "{retried_manifest}");
    for file in ["metrics.jsonl", "alphas.jsonl", "genotypes.jsonl"] {
        assert_eq!(
            std::fs::read(straight_dir.join(file)).unwrap(),
            std::fs::read(retried_dir.join(file)).unwrap(),
            "{file} differs from the straight run's"
        );
    }
}
