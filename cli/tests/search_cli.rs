//! `prime search` as a user runs it: synthetic data, a tiny search, the run directory, resume
//! and bad input.

use std::path::Path;
use std::process::{Command, Output};

fn prime(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the prime binary runs")
}

const TINY: [&str; 14] = [
    "--set",
    "network.init_channels=2",
    "--set",
    "network.layers=3",
    "--set",
    "network.steps=2",
    "--set",
    "network.multiplier=2",
    "--set",
    "data.batch_size=8",
    "--set",
    "data.limit=64",
    "--set",
    "epochs=1",
];

/// Writes a synthetic CIFAR-10 set of `size` training and `test_size` test images to `data`
/// under `dir`.
fn synthetic_data(dir: &Path, size: &str, test_size: &str) {
    let synth = prime(
        &[
            "data",
            "synth",
            "--out",
            "data",
            "--size",
            size,
            "--test-size",
            test_size,
        ],
        dir,
    );
    assert!(synth.status.success(), "{}", text(&synth.stderr));
}

#[test]
fn search_writes_a_genotype_and_resume_of_a_finished_run_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_data(dir.path(), "128", "16");
    let mut args = vec![
        "search",
        "--method",
        "darts-prime",
        "--seed",
        "5",
        "--no-download",
        "--threads",
        "1",
        "--out",
        "run",
    ];
    args.extend(TINY);
    let search = prime(&args, dir.path());
    let stderr = String::from_utf8_lossy(&search.stderr);
    assert!(search.status.success(), "{stderr}");
    assert!(stderr.contains("epoch 1/1:"), "{stderr}");
    let genotype: serde_json::Value =
        serde_json::from_slice(&search.stdout).expect("genotype JSON on stdout");
    assert_eq!(genotype["normal"].as_array().unwrap().len(), 4);
    let run = dir.path().join("run");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "alphas.jsonl",
        "genotype.json",
        "genotype.txt",
    ] {
        assert!(run.join(file).exists(), "{file}");
    }
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("method = \"darts-prime\"") && config.contains("seed = 5"),
        "{config}"
    );
    let resumed = prime(
        &[
            "search",
            "--resume",
            "run",
            "--no-download",
            "--threads",
            "1",
        ],
        dir.path(),
    );
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        resumed.stdout, search.stdout,
        "resuming a finished run gives the same genotype"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = prime(&["search", "--method", "dartz"], dir.path());
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown method preset `dartz`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let range = prime(&["search", "--set", "data.train_portion=2"], dir.path());
    let stderr = String::from_utf8_lossy(&range.stderr);
    assert!(stderr.contains("field `data.train_portion`"), "{stderr}");
    let missing = prime(&["search", "--no-download", "--out", "run"], dir.path());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("data_batch_1.bin"), "{stderr}");
    assert!(
        !dir.path().join("run").exists(),
        "a failed start leaves no run directory"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A search stopped right after the last (partial) step of its first epoch, before that
/// epoch's validation, resumes (from another working directory, without --data-dir) to the
/// result of a straight run; a non-empty --out is refused unless --force.
#[test]
fn a_search_stopped_after_an_epochs_last_step_resumes_to_the_straight_result() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_data(dir.path(), "128", "16");
    let search = |out: &str, extra: &[&str]| {
        let mut args = vec!["search", "--method", "darts-prime", "--seed", "5"];
        args.extend(["--no-download", "--threads", "1", "--out", out]);
        args.extend(&TINY[..12]);
        args.extend(["--set", "epochs=2"]);
        args.extend(extra);
        prime(&args, dir.path())
    };
    let straight = search("straight", &[]);
    assert!(straight.status.success(), "{}", text(&straight.stderr));
    let metrics = std::fs::read_to_string(dir.path().join("straight/metrics.jsonl")).unwrap();
    let steps_in_epoch_0 = metrics
        .lines()
        .filter(|line| line.contains("\"kind\":\"step\"") && line.contains("\"epoch\":0,"))
        .count();
    assert!(steps_in_epoch_0 > 2, "{metrics}");

    let stop_after = steps_in_epoch_0.to_string();
    let stopped = search("stopped", &["--stop-after", &stop_after]);
    let stderr = text(&stopped.stderr);
    assert!(stopped.status.success(), "{stderr}");
    assert!(
        stderr.contains("continue with: prime search --resume stopped\n"),
        "{stderr}"
    );
    let stopped_dir = dir.path().join("stopped");
    assert!(!stopped_dir.join("genotype.json").exists());

    let elsewhere = tempfile::tempdir().unwrap();
    let resumed = prime(
        &[
            "search",
            "--resume",
            stopped_dir.to_str().unwrap(),
            "--threads",
            "1",
        ],
        elsewhere.path(),
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(resumed.stdout, straight.stdout, "the same genotype");
    for file in [
        "metrics.jsonl",
        "alphas.jsonl",
        "genotypes.jsonl",
        "genotype.json",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join("straight").join(file)).unwrap(),
            std::fs::read(stopped_dir.join(file)).unwrap(),
            "{file} differs from the straight run's"
        );
    }

    let config_before = std::fs::read(stopped_dir.join("config.toml")).unwrap();
    let again = search("stopped", &["--set", "seed=6"]);
    let stderr = text(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains("is not empty") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(stopped_dir.join("config.toml")).unwrap(),
        config_before
    );
    let forced = search("stopped", &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("straight/metrics.jsonl")).unwrap(),
        std::fs::read(stopped_dir.join("metrics.jsonl")).unwrap(),
        "--force starts the run afresh"
    );
}

#[test]
fn a_bf16_search_and_bench_run_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_data(dir.path(), "64", "8");
    let mut args = vec![
        "search",
        "--no-download",
        "--threads",
        "1",
        "--out",
        "run",
        "--set",
        "speed.search_precision=bf16",
    ];
    args.extend(TINY);
    let search = prime(&args, dir.path());
    assert!(search.status.success(), "{}", text(&search.stderr));
    let run = dir.path().join("run");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("search_precision = \"bf16\""), "{config}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["precision"], "bf16");

    // A tiny search step; `extra` adds to the flags.
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "search-step", "--channels", "2", "--layers", "3"];
        args.extend(["--batch", "2", "--image-size", "8", "--threads", "1"]);
        args.extend(extra);
        prime(&args, dir.path())
    };
    let bf16 = bench(&[
        "--iters",
        "1",
        "--warmup",
        "0",
        "--set",
        "speed.search_precision=bf16",
    ]);
    assert!(bf16.status.success(), "{}", text(&bf16.stderr));
    let line: serde_json::Value = serde_json::from_slice(&bf16.stdout).unwrap();
    assert_eq!(line["search_precision"], "bf16");
    assert_eq!(line["trials"], 1);
    assert!(line["median_s"].as_f64().unwrap() > 0.0);
    // Two searches sharing the device: their rates summed.
    let shared = bench(&["--iters", "2", "--warmup", "1", "--trials", "2"]);
    assert!(shared.status.success(), "{}", text(&shared.stderr));
    let line: serde_json::Value = serde_json::from_slice(&shared.stdout).unwrap();
    assert_eq!(line["trials"], 2);
    let (median, rate) = (
        line["median_s"].as_f64().unwrap(),
        line["images_per_s"].as_f64().unwrap(),
    );
    assert!(median > 0.0 && rate > 0.0, "{line}");
    let too_many = prime(&["bench", "search-step", "--trials", "17"], dir.path());
    assert!(
        text(&too_many.stderr).contains("17 is not in 1..=16"),
        "{}",
        text(&too_many.stderr)
    );
    let bad = prime(
        &[
            "bench",
            "search-step",
            "--set",
            "speed.search_precision=fp8",
        ],
        dir.path(),
    );
    assert!(!bad.status.success());
    let stderr = text(&bad.stderr);
    assert!(stderr.contains("speed.search_precision"), "{stderr}");
}

/// `--devices cpu,cpu` searches with two ranks: the start line names both devices, the
/// manifest records two ranks, and the run finishes with a genotype; stopped, it prints the
/// `--resume` command with its devices, and resumed on one device it continues with the
/// not-bitwise notice (log, manifest, metrics). `--devices` is refused with `--device` and for
/// Penn Treebank.
#[test]
fn devices_search_data_parallel_and_a_resume_on_fewer_says_it_is_not_bitwise() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_data(dir.path(), "128", "16");
    let search = |out: &str, extra: &[&str]| {
        let mut args = vec!["search", "--method", "darts-prime", "--seed", "5"];
        args.extend(["--no-download", "--threads", "1", "--quiet", "--out", out]);
        args.extend(["--devices", "cpu,cpu"]);
        args.extend(TINY);
        args.extend(extra);
        prime(&args, dir.path())
    };
    let manifest = |out: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(out).join("manifest.json")).unwrap())
            .unwrap()
    };

    let two = search("two", &[]);
    let stderr = text(&two.stderr);
    assert!(two.status.success(), "{stderr}");
    assert!(stderr.contains("devices [Cpu, Cpu]) -> two"), "{stderr}");
    assert!(stderr.contains("search finished"), "{stderr}");
    let genotype: serde_json::Value =
        serde_json::from_slice(&two.stdout).expect("genotype JSON on stdout");
    assert_eq!(genotype["normal"].as_array().unwrap().len(), 4);
    assert_eq!(manifest("two")["machine"]["ranks"], 2);
    assert_eq!(manifest("two")["machine"]["collectives"], "cpu");
    assert!(dir.path().join("two/genotype.json").exists());

    let stopped = search("stopped", &["--stop-after", "2"]);
    let stderr = text(&stopped.stderr);
    assert!(stopped.status.success(), "{stderr}");
    assert!(
        stderr.contains("continue with: prime search --resume stopped --devices cpu,cpu\n"),
        "{stderr}"
    );
    let resumed = prime(
        &["search", "--resume", "stopped", "--threads", "1", "--quiet"],
        dir.path(),
    );
    let stderr = text(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let notice = "resumed on different kernels: data-parallel ranks 2 -> 1; not bitwise";
    assert!(stderr.contains(notice), "{stderr}");
    assert!(stderr.contains("devices [Cpu]) -> stopped"), "{stderr}");
    let stopped_manifest = manifest("stopped");
    assert_eq!(stopped_manifest["resumes"][0]["machine"]["ranks"], 1);
    assert_eq!(stopped_manifest["resumes"][0]["notice"], notice);
    let metrics = std::fs::read_to_string(dir.path().join("stopped/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"resumed_not_bitwise\":1.0"), "{metrics}");

    let both = search("both", &["--device", "cpu"]);
    assert!(!both.status.success());
    let stderr = text(&both.stderr);
    assert!(
        stderr.contains("'--devices <LIST>' cannot be used with"),
        "{stderr}"
    );
    let ptb = prime(
        &[
            "search",
            "--dataset",
            "ptb",
            "--no-download",
            "--devices",
            "cpu,cpu",
        ],
        dir.path(),
    );
    assert!(!ptb.status.success());
    let stderr = text(&ptb.stderr);
    assert!(
        stderr.contains("--devices: Penn Treebank searches run on one device; use --device"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
