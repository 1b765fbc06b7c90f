//! The real trainer on a worker given two (CPU) devices: a CIFAR search and an evaluation run
//! data-parallel, one rank per device, and take the steps of the single-device run (the same
//! global batches, sharded), writing one run directory.

use prime_core::dataset::Dataset;
use prime_core::genotype::Genotype;
use prime_core::observer::NullObserver;
use prime_core::settings::{DataSource, RunSettings};
use prime_core::trial::{result_keys, TrialKind, TrialSpec};
use prime_worker::nas::NasTrainer;
use prime_worker::{Device, TrainEnd, TrainJob, Trainer};
use std::path::Path;

fn spec(kind: TrialKind) -> TrialSpec {
    let genotype = Genotype::builtin("DARTS_V2").unwrap();
    TrialSpec {
        grid: "g".into(),
        kind,
        method: "darts-prime".into(),
        label: "DARTS-PRIME".into(),
        dataset: Dataset::Cifar10,
        search_seed: 101,
        eval_seed: (kind == TrialKind::Evaluation).then_some(0),
        settings: RunSettings {
            epochs: Some(1),
            batch_size: Some(16),
            init_channels: Some(2),
            layers: Some(3),
            data: Some(DataSource::Synthetic),
            train_samples: Some(40),
            ..RunSettings::default()
        },
        genotype: (kind == TrialKind::Evaluation).then(|| serde_json::to_value(genotype).unwrap()),
        evaluation: None,
        priority: 0,
        retries: 3,
    }
}

fn train(trainer: &NasTrainer, kind: TrialKind, run_dir: &Path, devices: usize) -> TrainEnd {
    let job = TrainJob {
        trial_id: 1,
        spec: spec(kind),
        run_dir: run_dir.to_path_buf(),
        devices: vec![Device::Cpu; devices],
        slots: (0..devices as u32).collect(),
        resume: false,
    };
    trainer.train(&job, &mut NullObserver).unwrap()
}

/// The steps trained by the end of the last epoch, from its epoch record.
fn steps(run_dir: &Path) -> u64 {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let last_epoch: serde_json::Value = text
        .lines()
        .rev()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|record| record["kind"] == "epoch")
        .expect("an epoch record");
    last_epoch["step"]
        .as_u64()
        .expect("the epoch record's step")
}

#[test]
fn cifar_trials_on_two_devices_run_data_parallel_with_the_single_device_steps() {
    tch::set_num_threads(1);
    let work = tempfile::tempdir().unwrap();
    let trainer = NasTrainer {
        methods_dir: None,
        data_dir: work.path().join("data"),
        synthetic_dir: work.path().join("synthetic"),
        own_streams: false,
    };
    for kind in [TrialKind::Search, TrialKind::Evaluation] {
        let one = work.path().join(format!("{kind:?}-one"));
        let two = work.path().join(format!("{kind:?}-two"));
        let results = [
            train(&trainer, kind, &one, 1),
            train(&trainer, kind, &two, 2),
        ]
        .map(|end| match end {
            TrainEnd::Finished { result, .. } => result,
            other => panic!("{kind:?} did not finish: {other:?}"),
        });
        assert!(steps(&one) >= 2, "{kind:?}: too few steps to compare");
        assert_eq!(
            steps(&two),
            steps(&one),
            "{kind:?}: the same global batches"
        );
        let key = match kind {
            TrialKind::Search => result_keys::ALPHA_STEPS,
            TrialKind::Evaluation => result_keys::TEST_ERROR,
        };
        assert!(
            results[1].metrics.contains_key(key),
            "{kind:?}: {:?}",
            results[1]
        );
        if kind == TrialKind::Search {
            assert!(results[1].genotype.is_some());
        }
    }
}
