//! End-to-end search tests on tiny synthetic data: learning, determinism and exact resume.

use prime_core::config::{LayeredConfig, ScheduleKind, SearchConfig};
use prime_core::dataset::ImageDataset;
use prime_core::metrics::MetricKind;
use prime_core::observer::NullObserver;
use prime_nas::data::{write_synthetic, DownloadPolicy};
use prime_nas::run::records::read_metrics;
use prime_nas::run::RunOptions;
use prime_nas::search::run_search;
use std::path::Path;
use tch::Device;

mod common;

use common::{
    assert_same_runs, last_step_of_epoch, run_straight_and_interrupted_at_the_first_epoch_end,
    tensors_of_latest, ReadBackBatches, StopAt, StopAtEpochStart,
};

fn tiny_config(epochs: u32) -> SearchConfig {
    let overrides: Vec<String> = [
        "data.batch_size=16",
        "data.limit=256",
        "data.prefetch=2",
        "network.init_channels=4",
        "network.layers=3",
        "network.steps=2",
        "network.multiplier=2",
        "seed=7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut config = SearchConfig::from_toml("version = 1\n", "test", &overrides).unwrap();
    config.epochs = epochs;
    config
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

fn synthetic_data(dir: &Path) {
    write_synthetic(dir, ImageDataset::Cifar10, 256, 32, 3).unwrap();
}

#[test]
fn resumed_search_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    let config = tiny_config(2);

    let straight = tempfile::tempdir().unwrap();
    let outcome = run_search(
        &config,
        &options(straight.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);

    let resumed = tempfile::tempdir().unwrap();
    // 8 weight steps per epoch: stop at the first step boundary of epoch 1 (its genotype line
    // already written), then mid-epoch 1 (step 11), then run to the end.
    let stopped = run_search(
        &config,
        &options(resumed.path(), data.path(), false),
        &mut StopAtEpochStart { epoch: 1 },
    )
    .unwrap();
    assert!(!stopped.finished);
    let stopped = run_search(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut StopAt::after(11),
    )
    .unwrap();
    assert!(!stopped.finished);
    let outcome_resumed = run_search(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome_resumed.finished);
    assert_eq!(outcome_resumed.genotype, outcome.genotype);

    let a = tensors_of_latest(straight.path());
    let b = tensors_of_latest(resumed.path());
    assert_eq!(a.len(), b.len());
    for ((group_a, name_a, tensor_a), (group_b, name_b, tensor_b)) in a.iter().zip(&b) {
        assert_eq!((group_a, name_a), (group_b, name_b));
        assert!(
            tensor_a.equal(tensor_b),
            "{group_a}/{name_a} differs after resume"
        );
    }
    let metrics_a = read_metrics(straight.path()).unwrap();
    let metrics_b = read_metrics(resumed.path()).unwrap();
    assert_eq!(
        metrics_a, metrics_b,
        "metrics differ or were duplicated by the resume"
    );
    let alphas_a = std::fs::read(straight.path().join("alphas.jsonl")).unwrap();
    let alphas_b = std::fs::read(resumed.path().join("alphas.jsonl")).unwrap();
    assert_eq!(alphas_a, alphas_b);
    let genotypes_a = std::fs::read(straight.path().join("genotypes.jsonl")).unwrap();
    let genotypes_b = std::fs::read(resumed.path().join("genotypes.jsonl")).unwrap();
    assert_eq!(
        genotypes_a, genotypes_b,
        "a genotype line was lost or repeated"
    );
}

/// 124 weight images in batches of 16: 8 steps per epoch, the last one partial. A checkpoint
/// taken after step 8 (before the epoch's validation) records the position one past the pass.
#[test]
fn resume_at_an_epochs_last_step_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    let mut config = tiny_config(2);
    config.data.limit = Some(248);
    let (straight, interrupted) =
        run_straight_and_interrupted_at_the_first_epoch_end(|dir, resume, observer| {
            run_search(&config, &options(dir, data.path(), resume), observer).map(|o| o.finished)
        });
    assert_eq!(last_step_of_epoch(straight.path(), 0), 8);
    assert_same_runs(
        straight.path(),
        interrupted.path(),
        &[
            "metrics.jsonl",
            "alphas.jsonl",
            "genotypes.jsonl",
            "genotype.json",
            "summary.json",
        ],
    );
}

/// SPEC 4.3: the logged EWMA is F_1, F_2 (the reference's tensor aliasing), then blended;
/// under `fixed` it blends from the second step on.
#[test]
fn the_logged_fimt_ewma_follows_the_compat_mode() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    for compat in ["reference", "fixed"] {
        let overrides: Vec<String> = [
            "epochs=1",
            "data.batch_size=16",
            "data.limit=96",
            "network.init_channels=2",
            "network.layers=3",
            "network.steps=2",
            "network.multiplier=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(format!("compat=\"{compat}\"")))
        .collect();
        let config = prime_core::presets::method_config("darts-prime", &overrides).unwrap();
        let run = tempfile::tempdir().unwrap();
        run_search(
            &config,
            &options(run.path(), data.path(), false),
            &mut NullObserver,
        )
        .unwrap();
        let steps: Vec<(f64, f64)> = read_metrics(run.path())
            .unwrap()
            .into_iter()
            .filter(|record| record.kind == MetricKind::Step)
            .map(|record| {
                (
                    record.get("fimt").unwrap(),
                    record.get("fimt_ewma").unwrap(),
                )
            })
            .collect();
        assert!(steps.len() >= 3);
        let lambda = config.schedule.ewma;
        let (f1, f2, f3) = (steps[0].0, steps[1].0, steps[2].0);
        let ewma2 = if compat == "reference" {
            f2
        } else {
            lambda * f2 + (1.0 - lambda) * f1
        };
        assert_ne!(f1, f2);
        assert_eq!(steps[0].1, f1, "{compat}");
        assert_eq!(steps[1].1, ewma2, "{compat}");
        assert_eq!(steps[2].1, lambda * f3 + (1.0 - lambda) * ewma2, "{compat}");
    }
}

#[test]
fn same_seed_gives_the_same_run_and_another_seed_does_not() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    let config = tiny_config(1);
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = run_search(
        &config,
        &options(first.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    let b = run_search(
        &config,
        &options(second.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert_eq!(a.genotype, b.genotype);
    assert_eq!(
        read_metrics(first.path()).unwrap(),
        read_metrics(second.path()).unwrap()
    );

    let mut other = config.clone();
    other.seed = 8;
    let third = tempfile::tempdir().unwrap();
    run_search(
        &other,
        &options(third.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert_ne!(
        read_metrics(first.path()).unwrap(),
        read_metrics(third.path()).unwrap()
    );
}

#[test]
fn tiny_search_learns_well_above_chance_and_writes_its_run_directory() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 512, 32, 5).unwrap();
    let mut config = tiny_config(4);
    config.data.limit = Some(512);
    config.weights.lr = 0.05;
    let run = tempfile::tempdir().unwrap();
    let outcome = run_search(
        &config,
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    let valid_acc = outcome.valid_acc.unwrap();
    assert!(
        valid_acc > 40.0,
        "valid accuracy {valid_acc}% is not well above the 10% chance level"
    );
    for file in [
        "config.toml",
        "metrics.jsonl",
        "alphas.jsonl",
        "genotypes.jsonl",
        "genotype.json",
        "genotype.txt",
        "summary.json",
    ] {
        assert!(run.path().join(file).exists(), "{file} missing");
    }
    let metrics = read_metrics(run.path()).unwrap();
    let epochs = metrics
        .iter()
        .filter(|r| r.kind == MetricKind::Epoch)
        .count();
    assert_eq!(epochs, 4);
    let steps = metrics
        .iter()
        .filter(|r| r.kind == MetricKind::Step)
        .count();
    assert_eq!(steps, 4 * 16);
    let alpha_lines = std::fs::read_to_string(run.path().join("alphas.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(alpha_lines, 1 + 4 * 16);
    let text = std::fs::read_to_string(run.path().join("genotype.txt")).unwrap();
    assert!(text.starts_with("Genotype(normal=["), "{text}");
}

#[test]
fn missing_dataset_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let error = run_search(
        &tiny_config(1),
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("data_batch_1.bin"), "{error}");
}

#[test]
fn every_method_preset_runs_a_few_steps() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    for method in prime_core::presets::METHOD_NAMES {
        let overrides: Vec<String> = [
            "epochs=1",
            "data.batch_size=8",
            "data.limit=96",
            "network.init_channels=2",
            "network.layers=3",
            "network.steps=2",
            "network.multiplier=2",
            "schedule.h0=1000.0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let config = prime_core::presets::method_config(method, &overrides).unwrap();
        let run = tempfile::tempdir().unwrap();
        let outcome = run_search(
            &config,
            &options(run.path(), data.path(), false),
            &mut NullObserver,
        )
        .unwrap_or_else(|error| panic!("{method}: {error}"));
        assert!(outcome.finished, "{method}");
        let metrics = read_metrics(run.path()).unwrap();
        let alpha_steps = metrics
            .iter()
            .filter(|r| r.get("alpha_step").is_some())
            .count();
        assert!(alpha_steps > 0, "{method}: no alpha step was taken");
        let step = metrics.iter().find(|r| r.kind == MetricKind::Step).unwrap();
        assert!(
            step.get("dist_normal").is_some(),
            "{method}: no discretization distance"
        );
        if config.regularizer.kind != prime_core::config::RegularizerKind::None {
            assert!(
                metrics.iter().any(|r| r.get("regularizer").is_some()),
                "{method}: regularizer value not recorded"
            );
        }
    }
}

#[test]
fn resume_is_exact_with_fimt_prox_admm_and_crb() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    for (method, compat) in [
        ("darts-prime", "reference"),
        ("cs10", "reference"),
        ("admm-fimt-crb", "fixed"),
    ] {
        let overrides: Vec<String> = [
            "epochs=2",
            "data.batch_size=8",
            "data.limit=96",
            "network.init_channels=2",
            "network.layers=3",
            "network.steps=2",
            "network.multiplier=2",
            "regularizer.admm_freq=2",
            "schedule.h0=1000.0",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(format!("compat=\"{compat}\"")))
        .collect();
        let config = prime_core::presets::method_config(method, &overrides).unwrap();
        let straight = tempfile::tempdir().unwrap();
        run_search(
            &config,
            &options(straight.path(), data.path(), false),
            &mut NullObserver,
        )
        .unwrap();
        let resumed = tempfile::tempdir().unwrap();
        let stopped = run_search(
            &config,
            &options(resumed.path(), data.path(), false),
            &mut StopAt::after(13),
        )
        .unwrap();
        assert!(!stopped.finished);
        run_search(
            &config,
            &options(resumed.path(), data.path(), true),
            &mut NullObserver,
        )
        .unwrap();
        let a = tensors_of_latest(straight.path());
        let b = tensors_of_latest(resumed.path());
        assert_eq!(a.len(), b.len(), "{method}");
        for ((group, name, tensor_a), (_, _, tensor_b)) in a.iter().zip(&b) {
            assert!(
                tensor_a.equal(tensor_b),
                "{method}: {group}/{name} differs after resume"
            );
        }
        assert_eq!(
            read_metrics(straight.path()).unwrap(),
            read_metrics(resumed.path()).unwrap(),
            "{method}: metrics differ after resume"
        );
    }
}

#[test]
fn second_order_search_runs() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    let mut config = tiny_config(1);
    config.arch.order = prime_core::config::ArchOrder::Second;
    config.data.limit = Some(64);
    let run = tempfile::tempdir().unwrap();
    let outcome = run_search(
        &config,
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
}

#[test]
fn resuming_on_other_data_is_refused_and_names_the_file() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    let config = tiny_config(1);
    let run = tempfile::tempdir().unwrap();
    let stopped = run_search(
        &config,
        &options(run.path(), data.path(), false),
        &mut StopAt::after(2),
    )
    .unwrap();
    assert!(!stopped.finished);
    let record = std::fs::read_to_string(run.path().join("data.json")).unwrap();
    assert!(record.contains("data_batch_1.bin"), "{record}");

    write_synthetic(data.path(), ImageDataset::Cifar10, 256, 32, 4).unwrap();
    let error = run_search(
        &config,
        &options(run.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("the data changed since the run started"),
        "{error}"
    );
    assert!(error.contains("data_batch_1.bin"), "{error}");
}

/// Every run directory gets a complete `manifest.json`; a resume on other kernels (here a
/// manifest doctored to another CPU kernel level) is recorded there and in the metrics, and
/// the run continues to its end.
#[test]
fn the_manifest_is_complete_and_a_resume_on_other_kernels_is_recorded() {
    use prime_nas::run::driver::RESUMED_NOT_BITWISE;
    use prime_nas::run::manifest::{RunManifest, MANIFEST_FILE};
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    let config = tiny_config(2);
    let run = tempfile::tempdir().unwrap();
    let stopped = run_search(
        &config,
        &options(run.path(), data.path(), false),
        &mut StopAtEpochStart { epoch: 1 },
    )
    .unwrap();
    assert!(!stopped.finished);

    let mut manifest = RunManifest::read(run.path()).unwrap().expect(MANIFEST_FILE);
    let config_text = std::fs::read(run.path().join("config.toml")).unwrap();
    assert_eq!(
        manifest.config_sha256,
        prime_nas::checkpoint::sha256_hex(&config_text)
    );
    assert_eq!(manifest.seed, 7);
    assert_eq!(manifest.precision.as_deref(), Some("float32"));
    assert!(!String::from_utf8_lossy(&config_text).contains("[speed]"));
    assert_eq!(manifest.project_version, env!("CARGO_PKG_VERSION"));
    assert!(!manifest.git_commit.is_empty());
    let data_record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.path().join("data.json")).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_value(&manifest.data_files).unwrap(),
        data_record["files"]
    );
    assert!(!manifest.data_files.is_empty());
    let machine = &manifest.machine;
    assert_eq!(machine.device, "cpu");
    assert_eq!(machine.threads, 1);
    assert!(!machine.torch.variant.is_empty() && !machine.cpu_model.is_empty());
    assert_eq!(
        (machine.gpu_model.as_deref(), machine.cudnn_version),
        (None, None)
    );
    assert!(manifest.resumes.is_empty());

    let current = machine.cpu_kernel_level.clone();
    let doctored = if current == "avx512" {
        "avx2"
    } else {
        "avx512"
    };
    manifest.machine.cpu_kernel_level = doctored.to_string();
    manifest.write(run.path()).unwrap();
    let outcome = run_search(
        &config,
        &options(run.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);

    let manifest = RunManifest::read(run.path()).unwrap().unwrap();
    assert_eq!(manifest.resumes.len(), 1);
    assert_eq!(
        manifest.resumes[0].notice.as_deref(),
        Some(
            format!("resumed on different kernels: {doctored} -> {current}; not bitwise").as_str()
        )
    );
    let metrics = read_metrics(run.path()).unwrap();
    let notices: Vec<_> = metrics
        .iter()
        .filter(|record| record.values.get(RESUMED_NOT_BITWISE) == Some(&1.0))
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].epoch, 1);
    assert!(metrics
        .iter()
        .any(|record| record.kind == MetricKind::Epoch && record.epoch == 1));
}

/// Step records read back from the device every 3 steps (and at the epoch's end and before a
/// checkpoint) are exactly those read after every step, under the alternating schedule and
/// under FIMT (whose decision reads one value per step); the host sees 3 read-backs per
/// epoch of 8 steps, not 8.
#[test]
fn records_read_back_in_batches_equal_records_read_every_step() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    for schedule in [ScheduleKind::Alternate, ScheduleKind::Fimt] {
        let mut every_step = tiny_config(1);
        every_step.schedule.kind = schedule;
        let mut batched = every_step.clone();
        batched.speed.read_back_every = 3;

        let straight = tempfile::tempdir().unwrap();
        run_search(
            &every_step,
            &options(straight.path(), data.path(), false),
            &mut NullObserver,
        )
        .unwrap();
        let batches_run = tempfile::tempdir().unwrap();
        let mut observer = ReadBackBatches::default();
        run_search(
            &batched,
            &options(batches_run.path(), data.path(), false),
            &mut observer,
        )
        .unwrap();
        assert_eq!(observer.all(), vec![3, 3, 2], "{schedule:?}");
        let files = ["metrics.jsonl", "alphas.jsonl", "genotypes.jsonl"];
        assert_same_runs(straight.path(), batches_run.path(), &files);

        // A checkpoint after step 4 writes the step held back; the resumed run continues.
        let resumed = tempfile::tempdir().unwrap();
        let stopped = run_search(
            &batched,
            &options(resumed.path(), data.path(), false),
            &mut StopAt::after(4),
        )
        .unwrap();
        assert!(!stopped.finished);
        run_search(
            &batched,
            &options(resumed.path(), data.path(), true),
            &mut NullObserver,
        )
        .unwrap();
        assert_same_runs(straight.path(), resumed.path(), &files);
    }
}

/// A bf16 search (FIMT schedule) resumed mid-run equals the straight bf16 run bitwise, keeps
/// every floating checkpoint tensor in float32, and records its precision in `config.toml` and
/// `manifest.json`; resuming it under float32 is refused as a changed config.
#[test]
fn a_bf16_search_resumes_exactly_and_records_its_precision() {
    use prime_core::config::SearchPrecision;
    use prime_nas::run::manifest::RunManifest;
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    synthetic_data(data.path());
    let overrides: Vec<String> = [
        "epochs=2",
        "data.batch_size=16",
        "data.limit=128",
        "network.init_channels=4",
        "network.layers=3",
        "network.steps=2",
        "network.multiplier=2",
        "seed=7",
        "speed.search_precision=bf16",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let config = prime_core::presets::method_config("darts-prime", &overrides).unwrap();
    assert_eq!(config.speed.search_precision, SearchPrecision::Bf16);
    let (straight, interrupted) =
        run_straight_and_interrupted_at_the_first_epoch_end(|dir, resume, observer| {
            run_search(&config, &options(dir, data.path(), resume), observer).map(|o| o.finished)
        });
    assert_same_runs(
        straight.path(),
        interrupted.path(),
        &["metrics.jsonl", "alphas.jsonl", "genotypes.jsonl"],
    );
    for (group, name, tensor) in tensors_of_latest(straight.path()) {
        if tensor.is_floating_point() {
            assert_eq!(tensor.kind(), tch::Kind::Float, "{group}/{name}");
        }
    }
    let metrics = read_metrics(straight.path()).unwrap();
    assert!(metrics
        .iter()
        .any(|record| record.values.contains_key("fimt_ewma")));
    let config_text = std::fs::read_to_string(straight.path().join("config.toml")).unwrap();
    assert!(config_text.contains("search_precision = \"bf16\""));
    let manifest = RunManifest::read(straight.path()).unwrap().unwrap();
    assert_eq!(manifest.precision.as_deref(), Some("bf16"));

    let mut float32 = config.clone();
    float32.speed.search_precision = SearchPrecision::Float32;
    let error = run_search(
        &float32,
        &options(interrupted.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(prime_nas::checkpoint::CONFIG_CHANGED),
        "{error}"
    );
}
