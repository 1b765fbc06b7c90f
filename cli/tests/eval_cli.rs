//! `prime eval`, `prime genotype params` and `prime bench eval-step` end to end: the real
//! binary on tiny synthetic data.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn prime(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(arguments)
        .output()
        .expect("the prime binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_str(&text(&output.stdout)).unwrap()
}

/// Writes a synthetic CIFAR-10 with `train` training and `test` test images into `dir`.
fn synthetic(dir: &Path, train: usize, test: usize) {
    let out = prime(&[
        "data",
        "synth",
        "--out",
        path(dir),
        "--size",
        &train.to_string(),
        "--test-size",
        &test.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The arguments of a tiny evaluation on the synthetic data in `data`.
fn tiny_eval<'a>(data: &'a Path, out: &'a Path, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "eval",
        "--genotype",
        "DARTS_V2",
        "--dataset",
        "cifar10",
        "--epochs",
        epochs,
        "--set",
        "network.init_channels=4",
        "--set",
        "network.layers=3",
        "--set",
        "data.batch_size=16",
        "--set",
        "report_every=1",
        "--data-dir",
        path(data),
        "--no-download",
        "--threads",
        "1",
        "--quiet",
        "--out",
        path(out),
    ]
}

#[test]
fn genotype_params_follow_the_paper_convention() {
    let cifar10 = json(&prime(&[
        "genotype",
        "params",
        "--genotype",
        "DARTS_V2",
        "--classes",
        "10",
    ]));
    assert_eq!(cifar10["params"], 3_349_342);
    assert_eq!(cifar10["aux_params"], 476_426);
    assert_eq!(cifar10["params_m"], 3.349342);
    assert_eq!(cifar10["macs"], 528_359_040);
    let cifar100 = json(&prime(&[
        "genotype",
        "params",
        "--genotype",
        "darts_v2",
        "--classes",
        "100",
    ]));
    assert_eq!(cifar100["params"], 3_401_272);
    assert_eq!(cifar100["aux_params"], 545_636);
    let small = json(&prime(&[
        "genotype",
        "params",
        "--genotype",
        "DARTS_V1",
        "--channels",
        "16",
        "--layers",
        "8",
    ]));
    assert!(small["params"].as_i64().unwrap() < 1_000_000);
}

#[test]
fn an_unknown_op_or_a_malformed_genotype_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad_op = dir.path().join("bad_op.json");
    std::fs::write(
        &bad_op,
        "{\"normal\": [[\"sep_conv_3x3\", 0], [\"sep_conv_3x3\", 1]],\n\
         \"normal_concat\": [2],\n\
         \"reduce\": [[\"max_pool_3x3\", 0], [\"conv_3x3\", 1]], \"reduce_concat\": [2]}\n",
    )
    .unwrap();
    for command in [
        vec!["genotype", "params", "--genotype", path(&bad_op)],
        vec!["eval", "--genotype", path(&bad_op), "--no-download"],
    ] {
        let out = prime(&command);
        assert!(!out.status.success());
        let error = text(&out.stderr);
        assert!(error.contains("conv_3x3"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("bad_op.json"), "{error}");
    }
    let malformed = dir.path().join("malformed.txt");
    std::fs::write(
        &malformed,
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2],\n\
         reduce=[('max_pool_3x3', 0) ('max_pool_3x3', 1)], reduce_concat=[2])\n",
    )
    .unwrap();
    let out = prime(&["genotype", "params", "--genotype", path(&malformed)]);
    assert!(!out.status.success());
    let error = text(&out.stderr);
    assert!(error.contains("malformed.txt: line 2"), "{error}");
    // One device or several: a Penn Treebank evaluation is refused --devices, never run
    // silently on --device instead.
    for devices in ["cpu", "cpu,cpu"] {
        let out = prime(&[
            "eval",
            "--dataset",
            "ptb",
            "--genotype",
            "DARTS",
            "--devices",
            devices,
        ]);
        assert!(!out.status.success());
        let error = text(&out.stderr);
        assert!(
            error.contains("Penn Treebank evaluations run on one device; use --device"),
            "{error}"
        );
    }
    let out = prime(&["eval", "--genotype", "NoSuchNet"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NASNet"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn eval_writes_its_run_directory_and_prints_the_test_report() {
    let data = tempfile::tempdir().unwrap();
    synthetic(data.path(), 64, 32);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = prime(&tiny_eval(data.path(), &run, "2"));
    let report = json(&out);
    let test_acc = report["test_acc"].as_f64().unwrap();
    assert_eq!(report["test_error"].as_f64().unwrap(), 100.0 - test_acc);
    assert_eq!(report["epochs"], 2);
    assert_eq!(report["label"], "DARTS_V2");
    assert!(report["params_m"].as_f64().unwrap() > 0.0);
    assert!(
        text(&out.stderr).contains("test error"),
        "{}",
        text(&out.stderr)
    );
    for file in [
        "config.toml",
        "genotype.json",
        "metrics.jsonl",
        "weights.safetensors",
        "best_weights.safetensors",
        "test.json",
        "checkpoints/LATEST",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let out = prime(&tiny_eval(data.path(), &run, "2"));
    assert!(
        !out.status.success(),
        "a second run into the same directory"
    );
    assert!(
        text(&out.stderr).contains("--resume"),
        "{}",
        text(&out.stderr)
    );
    let out = prime(&["eval", "--resume", path(&run), "--set", "epochs=3"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("drop"), "{}", text(&out.stderr));
    // Resuming a finished run only reprints its report.
    let resumed = json(&prime(&[
        "eval",
        "--resume",
        path(&run),
        "--data-dir",
        path(data.path()),
        "--no-download",
        "--quiet",
    ]));
    assert_eq!(resumed, report);
}

#[test]
fn ctrl_c_checkpoints_and_resume_finishes_the_run() {
    let data = tempfile::tempdir().unwrap();
    synthetic(data.path(), 64, 16);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(tiny_eval(data.path(), &run, "30"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once training is under way (the first step record is written).
    let metrics = run.join("metrics.jsonl");
    let start = Instant::now();
    while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no training step"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(130),
        "exit status after Ctrl-C: {stderr}"
    );
    assert!(stderr.contains("stopped after"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "continue with: prime eval --resume {}\n",
            run.display()
        )),
        "{stderr}"
    );
    assert!(!run.join("test.json").exists());
    assert!(run.join("checkpoints/LATEST").exists());
    // The run recorded its data directory: the printed command is all a resume needs.
    let report = json(&prime(&[
        "eval",
        "--resume",
        path(&run),
        "--no-download",
        "--threads",
        "1",
        "--quiet",
    ]));
    assert_eq!(report["epochs"], 30);
    assert_eq!(report["steps"], 30 * 4);
}

#[test]
fn bench_eval_step_prints_one_json_line() {
    let line = json(&prime(&[
        "bench",
        "eval-step",
        "--channels",
        "4",
        "--layers",
        "3",
        "--batch",
        "4",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--set",
        "speed.channels_last=true",
    ]));
    assert_eq!(line["bench"], "eval-step");
    assert_eq!(line["genotype"], "DARTS_V2");
    assert_eq!(line["channels_last"], true);
    assert_eq!(line["autocast"], "off");
    for key in ["median_s", "min_s", "max_s", "images_per_s"] {
        assert!(line[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert!(line["params"].as_i64().unwrap() > 0);
}

/// `--collectives` runs the ranks through the back-end asked for and names it; one rank with
/// `--collectives` still goes through the collectives. NCCL on CPU ranks is refused with the
/// reason, and an unknown back-end names the choices.
#[test]
fn bench_eval_step_names_the_collectives_back_end() {
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "eval-step", "--channels", "4", "--layers", "3"];
        args.extend([
            "--batch",
            "4",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
        ]);
        args.extend(extra);
        prime(&args)
    };
    assert_eq!(json(&bench(&[]))["collectives"], "none");
    for extra in [&["--ranks", "2"][..], &["--collectives", "cpu"][..]] {
        let line = json(&bench(extra));
        assert_eq!(
            line["collectives"], "CPU back-end (through host memory)",
            "{extra:?}"
        );
    }
    let nccl = bench(&["--collectives", "nccl"]);
    assert!(!nccl.status.success());
    let stderr = text(&nccl.stderr);
    assert!(
        stderr.contains("NCCL runs between GPUs, not on [Cpu]"),
        "{stderr}"
    );
    let unknown = bench(&["--collectives", "gloo"]);
    let stderr = text(&unknown.stderr);
    assert!(stderr.contains("expected auto, nccl or cpu"), "{stderr}");
}

/// `PRIME_COLLECTIVES` chooses the back-end of a data-parallel run: `nccl` on CPU ranks fails
/// before anything is trained, with the reason; a value that is no back-end names the
/// variable; `cpu` runs.
#[test]
fn prime_collectives_chooses_the_back_end_of_a_devices_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 32, 16);
    let eval = |out: &str, collectives: &str| {
        let out = dir.path().join(out);
        let mut args = tiny_eval(&data, &out, "1");
        args.extend(["--devices", "cpu,cpu"]);
        Command::new(env!("CARGO_BIN_EXE_prime"))
            .args(&args)
            .env("PRIME_COLLECTIVES", collectives)
            .output()
            .expect("the prime binary runs")
    };
    let nccl = eval("nccl", "nccl");
    assert!(!nccl.status.success());
    let stderr = text(&nccl.stderr);
    assert!(
        stderr.contains("NCCL runs between GPUs, not on [Cpu, Cpu]"),
        "{stderr}"
    );
    let unknown = eval("unknown", "mpi");
    assert!(!unknown.status.success());
    let stderr = text(&unknown.stderr);
    assert!(
        stderr.contains("PRIME_COLLECTIVES: unknown collectives back-end \"mpi\""),
        "{stderr}"
    );
    let cpu = eval("cpu", "cpu");
    assert!(cpu.status.success(), "{}", text(&cpu.stderr));
    assert!(dir.path().join("cpu/test.json").exists());
}
