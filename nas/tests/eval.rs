//! End-to-end evaluation tests on tiny synthetic data: exact resume, learning, the run
//! directory, and the speed options on the CPU.

use prime_core::config::LayeredConfig;
use prime_core::dataset::ImageDataset;
use prime_core::eval_config::EvalConfig;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::NullObserver;
use prime_nas::data::{write_synthetic, DownloadPolicy};
use prime_nas::eval::{run_eval, TIMING_KEYS};
use prime_nas::run::layout::CHECKPOINT_DIR;
use prime_nas::run::records::read_metrics;
use prime_nas::run::RunOptions;
use std::path::Path;
use tch::Device;

mod common;

use common::{
    assert_same_runs, last_step_of_epoch, run_straight_and_interrupted_at_the_first_epoch_end,
    tensors_of_latest, StopAt,
};

fn tiny_config(epochs: u32, extra: &[&str]) -> EvalConfig {
    let mut overrides: Vec<String> = [
        "data.batch_size=16",
        "data.limit=128",
        "data.prefetch=2",
        "network.init_channels=4",
        "network.layers=3",
        "network.drop_path_prob=0.3",
        "report_every=3",
        "seed=7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.push(format!("epochs={epochs}"));
    overrides.extend(extra.iter().map(|s| s.to_string()));
    EvalConfig::from_overrides(&overrides).unwrap()
}

fn options(run_dir: &Path, data_dir: &Path, resume: bool) -> RunOptions {
    RunOptions {
        run_dir: run_dir.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        device: Device::Cpu,
        resume,
        download: DownloadPolicy::Never,
    }
}

/// Metric records without the values that measure time.
fn untimed_metrics(run_dir: &Path) -> Vec<MetricRecord> {
    let mut records = read_metrics(run_dir).unwrap();
    for record in &mut records {
        for key in TIMING_KEYS {
            record.values.remove(key);
        }
    }
    records
}

fn assert_same_tensors(a: &Path, b: &Path) {
    let a = tensors_of_latest(a);
    let b = tensors_of_latest(b);
    assert_eq!(a.len(), b.len());
    for ((group_a, name_a, tensor_a), (group_b, name_b, tensor_b)) in a.iter().zip(&b) {
        assert_eq!((group_a, name_a), (group_b, name_b));
        assert!(
            tensor_a.equal(tensor_b),
            "{group_a}/{name_a} differs after resume"
        );
    }
}

#[test]
fn resumed_evaluation_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 128, 48, 3).unwrap();
    // Drop path is on in epoch 1 (p = 0.15), cutout and the auxiliary head throughout.
    let config = tiny_config(2, &[]);

    let straight = tempfile::tempdir().unwrap();
    let outcome = run_eval(
        &config,
        &options(straight.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);

    let resumed = tempfile::tempdir().unwrap();
    // 8 steps per epoch: stop mid-epoch 1, resume, stop again at the same step right away
    // (a second checkpoint at one position), then run to the end.
    for stop_at in [11, 11] {
        let mut observer = StopAt::after(stop_at);
        let resume = stop_at == 11 && resumed.path().join(CHECKPOINT_DIR).exists();
        let stopped = run_eval(
            &config,
            &options(resumed.path(), data.path(), resume),
            &mut observer,
        )
        .unwrap();
        assert!(!stopped.finished);
        assert_eq!(stopped.epochs_done, 1);
    }
    let outcome_resumed = run_eval(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    assert_eq!(outcome_resumed, outcome);
    assert_same_tensors(straight.path(), resumed.path());
    assert_eq!(
        untimed_metrics(straight.path()),
        untimed_metrics(resumed.path()),
        "metrics differ or were duplicated by the resume"
    );
    for file in [
        "weights.safetensors",
        "best_weights.safetensors",
        "test.json",
    ] {
        let a = std::fs::read(straight.path().join(file)).unwrap();
        let b = std::fs::read(resumed.path().join(file)).unwrap();
        assert!(a == b, "{file} differs after resume");
    }
}

/// 120 images in batches of 16: 8 steps per epoch, the last one partial; stopped after step 8
/// (before the epoch's validation) and crashed after the epoch-end checkpoint.
#[test]
fn resume_at_an_epochs_last_step_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 128, 48, 3).unwrap();
    let config = tiny_config(2, &["data.limit=120"]);
    let (straight, interrupted) =
        run_straight_and_interrupted_at_the_first_epoch_end(|dir, resume, observer| {
            run_eval(&config, &options(dir, data.path(), resume), observer).map(|o| o.finished)
        });
    assert_eq!(last_step_of_epoch(straight.path(), 0), 8);
    assert_same_runs(
        straight.path(),
        interrupted.path(),
        &[
            "weights.safetensors",
            "best_weights.safetensors",
            "test.json",
        ],
    );
    assert_eq!(
        untimed_metrics(straight.path()),
        untimed_metrics(interrupted.path()),
        "metrics differ or were duplicated by the resume"
    );
}

#[test]
fn tiny_evaluation_learns_and_writes_its_run_directory() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 512, 128, 5).unwrap();
    let config = tiny_config(
        4,
        &[
            "data.limit=512",
            "data.batch_size=32",
            "weights.lr=0.05",
            "checkpoint.every_epochs=2",
        ],
    );
    let run = tempfile::tempdir().unwrap();
    let mut observer = StopAt::after(u64::MAX);
    let outcome = run_eval(
        &config,
        &options(run.path(), data.path(), false),
        &mut observer,
    )
    .unwrap();
    assert_eq!(observer.checkpoints, 2, "epochs 2 and 4");
    let test_acc = outcome.test_acc.unwrap();
    assert!(
        test_acc > 40.0,
        "test accuracy {test_acc}% is not well above the 10% chance level"
    );
    assert_eq!(outcome.test_error, Some(100.0 - test_acc));
    assert!(outcome.best_test_acc.unwrap() >= test_acc);
    for file in [
        "config.toml",
        "genotype.json",
        "genotype.txt",
        "metrics.jsonl",
        "weights.safetensors",
        "best_weights.safetensors",
        "test.json",
    ] {
        assert!(run.path().join(file).exists(), "{file} missing");
    }
    assert!(!run.path().join("alphas.jsonl").exists());
    let metrics = read_metrics(run.path()).unwrap();
    let epochs: Vec<&MetricRecord> = metrics
        .iter()
        .filter(|r| r.kind == MetricKind::Epoch)
        .collect();
    assert_eq!(epochs.len(), 4);
    let drop_path: Vec<f64> = epochs
        .iter()
        .map(|r| r.get("drop_path_prob").unwrap())
        .collect();
    for (epoch, value) in drop_path.iter().enumerate() {
        assert!(
            (value - 0.3 * epoch as f64 / 4.0).abs() < 1e-12,
            "{drop_path:?}"
        );
    }
    for epoch in &epochs {
        assert!(epoch.get("images_per_s").unwrap() > 0.0);
        let acc = epoch.get("test_acc").unwrap();
        assert_eq!(epoch.get("test_error").unwrap(), 100.0 - acc);
    }
    // 16 steps per epoch, a step record every 3 steps.
    let steps = metrics
        .iter()
        .filter(|r| r.kind == MetricKind::Step)
        .count();
    assert_eq!(steps, 64 / 3);
    let last = metrics.last().unwrap();
    assert_eq!(last.kind, MetricKind::Final);
    assert_eq!(last.get("params").unwrap(), outcome.params.network as f64);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("test.json")).unwrap())
            .unwrap();
    assert_eq!(report["test_error"].as_f64(), outcome.test_error);
    assert_eq!(report["params"].as_i64(), Some(outcome.params.network));
    assert_eq!(report["label"].as_str(), Some("DARTS_V2"));
    let genotype: prime_core::genotype::Genotype =
        serde_json::from_value(report["genotype"].clone()).unwrap();
    assert_eq!(genotype, config.genotype);
    let saved = EvalConfig::load(&run.path().join("config.toml"), &[]).unwrap();
    assert_eq!(saved, config);
}

#[test]
fn speed_options_train_on_the_cpu_and_resume_exactly() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar100, 64, 32, 9).unwrap();
    let common = ["data.dataset=cifar100", "data.limit=64", "weights.lr=0.1"];
    for speed in [
        "speed.autocast=bf16",
        "speed.autocast=fp16",
        "speed.channels_last=true",
    ] {
        let mut extra = common.to_vec();
        extra.push(speed);
        let config = tiny_config(2, &extra);
        let straight = tempfile::tempdir().unwrap();
        let outcome = run_eval(
            &config,
            &options(straight.path(), data.path(), false),
            &mut NullObserver,
        )
        .unwrap();
        assert!(outcome.test_loss.unwrap().is_finite(), "{speed}");
        let resumed = tempfile::tempdir().unwrap();
        let mut observer = StopAt::after(6);
        run_eval(
            &config,
            &options(resumed.path(), data.path(), false),
            &mut observer,
        )
        .unwrap();
        let outcome_resumed = run_eval(
            &config,
            &options(resumed.path(), data.path(), true),
            &mut NullObserver,
        )
        .unwrap();
        assert_eq!(outcome_resumed, outcome, "{speed}");
        assert_same_tensors(straight.path(), resumed.path());
    }
    // Both together: bf16 depthwise gradients in the channels-last format are not bitwise
    // reproducible on the CPU, so only check that training works.
    let mut extra = common.to_vec();
    extra.extend(["speed.autocast=bf16", "speed.channels_last=true"]);
    let run = tempfile::tempdir().unwrap();
    let outcome = run_eval(
        &tiny_config(1, &extra),
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.test_loss.unwrap().is_finite());
}

#[test]
fn resuming_with_another_config_is_refused() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 32, 16, 1).unwrap();
    let config = tiny_config(2, &["data.limit=32"]);
    let run = tempfile::tempdir().unwrap();
    let mut observer = StopAt::after(1);
    run_eval(
        &config,
        &options(run.path(), data.path(), false),
        &mut observer,
    )
    .unwrap();
    let other = tiny_config(3, &["data.limit=32"]);
    let error = run_eval(
        &other,
        &options(run.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("cannot resume"), "{error}");
}

#[test]
fn a_single_image_batch_with_the_auxiliary_head_is_refused() {
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 33, 8, 1).unwrap();
    let config = tiny_config(1, &["data.limit=33"]);
    let run = tempfile::tempdir().unwrap();
    let error = run_eval(
        &config,
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("single image"), "{error}");
    let without_head = tiny_config(1, &["data.limit=33", "network.auxiliary=false"]);
    let outcome = run_eval(
        &without_head,
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    assert_eq!(outcome.params.auxiliary, 0);
}
