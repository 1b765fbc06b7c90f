//! The shell scripts' offline parts: `scripts/setup.sh --print-plan` chooses the torch build
//! from the GPUs a fake `nvidia-smi` reports, and refuses bad arguments with a clear message.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A directory holding an `nvidia-smi` that prints the given compute capabilities, one a line,
/// for `--query-gpu=compute_cap`.
fn fake_nvidia_smi(capabilities: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("nvidia-smi");
    let lines: String = capabilities.iter().map(|c| format!("echo {c}\n")).collect();
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncase \"$*\" in *compute_cap*) ;; *) exit 9 ;; esac\n{lines}exit 0\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `scripts/setup.sh ARGS` with `extra_path` first on PATH and no LIBTORCH.
fn setup(extra_path: Option<&Path>, args: &[&str]) -> Output {
    let path = std::env::var("PATH").unwrap_or_default();
    let path = match extra_path {
        Some(dir) => format!("{}:{path}", dir.display()),
        None => path,
    };
    Command::new("bash")
        .arg(repo_root().join("scripts/setup.sh"))
        .args(args)
        .env("PATH", path)
        .env_remove("LIBTORCH")
        .output()
        .expect("running bash scripts/setup.sh")
}

/// The `key=value` line of a plan.
fn plan_value(output: &Output, key: &str) -> String {
    assert!(
        output.status.success(),
        "setup.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no `{key}=` in plan:\n{stdout}"))
        .to_string()
}

#[test]
fn auto_takes_cu126_when_a_gpu_is_volta() {
    let smi = fake_nvidia_smi(&["9.0", "7.0"]);
    let plan = setup(Some(smi.path()), &["--print-plan"]);
    assert_eq!(plan_value(&plan, "variant"), "cu126");
    assert!(plan_value(&plan, "reason").contains("7"));
    let pip = plan_value(&plan, "pip");
    assert!(pip.contains("torch==2.11.0+cu126"), "{pip}");
    assert!(
        pip.contains("--index-url https://download.pytorch.org/whl/cu126"),
        "{pip}"
    );
    assert!(plan_value(&plan, "arch_list").contains("sm_70"));
}

#[test]
fn auto_takes_the_pypi_wheel_for_hopper_and_without_gpu() {
    let smi = fake_nvidia_smi(&["9.0", "9.0"]);
    let hopper = setup(Some(smi.path()), &["--print-plan"]);
    assert_eq!(plan_value(&hopper, "variant"), "cu130");
    let pip = plan_value(&hopper, "pip");
    assert!(
        pip.ends_with("install --quiet --disable-pip-version-check torch==2.11.0"),
        "{pip}"
    );
    assert!(!plan_value(&hopper, "arch_list").contains("sm_70"));

    // A driver-less machine: nvidia-smi present but reporting no GPU.
    let none = fake_nvidia_smi(&[]);
    let no_gpu = setup(Some(none.path()), &["--print-plan"]);
    assert_eq!(plan_value(&no_gpu, "variant"), "cu130");
    assert!(plan_value(&no_gpu, "reason").contains("no GPU"));
}

#[test]
fn explicit_variants_build_their_pip_command() {
    let smi = fake_nvidia_smi(&["7.0"]);
    let cu130 = setup(Some(smi.path()), &["--torch", "cu130", "--print-plan"]);
    assert_eq!(plan_value(&cu130, "variant"), "cu130");
    assert!(plan_value(&cu130, "pip").ends_with("torch==2.11.0"));
    let cpu = setup(Some(smi.path()), &["--torch=cpu", "--print-plan"]);
    assert_eq!(plan_value(&cpu, "variant"), "cpu");
    assert!(plan_value(&cpu, "pip")
        .contains("torch==2.11.0+cpu --index-url https://download.pytorch.org/whl/cpu"));
    assert_eq!(plan_value(&cpu, "arch_list"), "");
    let site = setup(None, &["--libtorch", "/opt/libtorch", "--print-plan"]);
    assert_eq!(plan_value(&site, "variant"), "site");
    assert_eq!(plan_value(&site, "link"), ".libtorch -> /opt/libtorch");
}

#[test]
fn bad_arguments_are_refused_with_what_was_expected() {
    let unknown = setup(None, &["--torch", "cu118", "--print-plan"]);
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("`cu118`: expected auto, cu130, cu126 or cpu"),
        "{stderr}"
    );
    let both = setup(
        None,
        &["--torch", "cpu", "--libtorch", "/opt/lt", "--print-plan"],
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("give one"));
    let stray = setup(None, &["--frobnicate"]);
    assert_eq!(stray.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stray.stderr).contains("unknown argument `--frobnicate`"));
}

/// Runs `scripts/gpu-check.sh ARGS`.
fn gpu_check(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/gpu-check.sh"))
        .args(args)
        .output()
        .expect("running bash scripts/gpu-check.sh")
}

#[test]
fn the_gpu_check_table_sets_ours_beside_the_yardstick() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("gpu-check.json");
    std::fs::write(
        &results,
        r#"{"gpu": "NVIDIA H200, 9.0, 143771 MiB, 580.65.06", "rows": [
            {"check": "search step", "setting": "batch 64 round 1", "ours_s": 0.05,
             "yardstick_s": 0.2, "peak_mib": 3000, "yardstick_peak_mib": 3500, "status": "ok"},
            {"check": "eval step", "setting": "batch 96 bf16", "ours_s": 0.03, "peak_mib": 2000,
             "status": "ok"},
            {"check": "test tier", "setting": "gpu", "status": "passed: ok. 6 passed"},
            {"check": "shared search step", "setting": "K=2, batch 64 each", "ours_s": 0.06,
             "images_per_s": 4266.67, "peak_mib": 5000, "status": "ok"}
        ]}"#,
    )
    .unwrap();
    let output = gpu_check(&["--table", results.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("check"), "{table}");
    let search: Vec<&str> = lines[2]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        search,
        [
            "search step",
            "batch 64 round 1",
            "0.05",
            "0.2",
            "4.00x",
            "3000",
            "3500",
            "-",
            "ok"
        ]
    );
    let eval: Vec<&str> = lines[3]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(eval[4], "-", "{table}");
    assert!(lines[4].contains("passed: ok. 6 passed"), "{table}");
    let shared: Vec<&str> = lines[5]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        shared,
        [
            "shared search step",
            "K=2, batch 64 each",
            "0.06",
            "-",
            "-",
            "5000",
            "-",
            "4266.7",
            "ok"
        ]
    );
    assert_eq!(lines[6], "GPU: NVIDIA H200, 9.0, 143771 MiB, 580.65.06");
}

#[test]
fn the_gpu_check_refuses_bad_arguments_and_bad_results() {
    let stray = gpu_check(&["--bogus"]);
    assert_eq!(stray.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stray.stderr).contains("unknown argument `--bogus`"));
    let missing = gpu_check(&["--out"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--out needs a directory"));

    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("bad.json");
    std::fs::write(&results, r#"{"rows": [{"setting": "x"}]}"#).unwrap();
    let bad = gpu_check(&["--table", results.to_str().unwrap()]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("bad.json: rows[0] has no `check`"),
        "{stderr}"
    );
    let absent = gpu_check(&["--table", "/nonexistent/results.json"]);
    assert!(String::from_utf8_lossy(&absent.stderr).contains("/nonexistent/results.json"));
}

/// Writes an executable script.
fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An unpacked pack of stand-ins in a fresh directory: a `prime` that prints bench lines (and
/// its library path with `--version`), daemons that wait, a test executable that passes,
/// yardsticks that print their line, an `nvidia-smi` that reports one GPU, and `.libtorch/lib`
/// when `with_libtorch`.
fn stand_in_pack(with_libtorch: bool) -> tempfile::TempDir {
    let pack = tempfile::tempdir().unwrap();
    let root = pack.path();
    for dir in ["target/release", "tests", "scripts", "bench", "fakebin"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    if with_libtorch {
        std::fs::create_dir_all(root.join(".libtorch/lib")).unwrap();
    }
    std::fs::copy(
        repo_root().join("scripts/gpu-check.sh"),
        root.join("scripts/gpu-check.sh"),
    )
    .unwrap();
    executable(
        &root.join("target/release/prime"),
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo \"prime 0.1.0 (libraries: $LD_LIBRARY_PATH)\";;\n  \
         bench) echo \"$*\" >>bench-args.txt; echo '{\"median_s\": 0.05}';;\n  \
         status) printf '1 a succeeded\\n2 b succeeded\\n';;\nesac\nexit 0\n",
    );
    for daemon in ["worker", "coordinator"] {
        executable(
            &root.join("target/release").join(daemon),
            "#!/bin/sh\nexec sleep 30\n",
        );
    }
    executable(
        &root.join("tests/gpu-0123"),
        "#!/bin/sh\necho 'test result: ok. 7 passed; 0 failed'\n",
    );
    for yardstick in ["pytorch_search_step.py", "pytorch_rnn_search_step.py"] {
        std::fs::write(
            root.join("bench").join(yardstick),
            "import json\nprint(json.dumps({\"median_s\": 0.2}))\n",
        )
        .unwrap();
    }
    executable(
        &root.join("fakebin/nvidia-smi"),
        "#!/bin/sh\ncase \"$*\" in\n  *memory.used*) echo 1000;;\n  \
         *compute_cap*) echo 'NVIDIA H200, 9.0, 143771 MiB, 580.65';;\n  *) echo smi;;\nesac\n",
    );
    pack
}

/// Runs the pack's `scripts/gpu-check.sh --quick --out out ARGS` with the fake `nvidia-smi`
/// first on PATH and `envs` set.
fn run_pack(root: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let path = format!(
        "{}:{}",
        root.join("fakebin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg(root.join("scripts/gpu-check.sh"))
        .args(["--quick", "--out", "out"])
        .args(args)
        .current_dir(root)
        .env("PATH", path)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

/// The run mode end to end on this machine, against a pack of stand-ins. Every section leaves
/// its rows, and the raw JSON and the table agree.
#[test]
fn the_gpu_check_run_mode_measures_every_section_against_stand_ins() {
    let pack = stand_in_pack(true);
    let root = pack.path();
    let output = run_pack(root, &[], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("out/gpu-check.json")).unwrap()).unwrap();
    let rows = results["rows"].as_array().unwrap();
    let checks: Vec<&str> = rows
        .iter()
        .map(|row| row["check"].as_str().unwrap())
        .collect();
    // Tier, 2 rounds at batch 64 and 2 at the largest batch, bf16 at batch 64, 6 eval
    // settings, 5 shared-card searches (K = 1, 2, 4; 2 and 4 on streams of their own), 3
    // one-rank collectives (one GPU), 3 search runs, RNN, grid.
    assert_eq!(checks.len(), 25, "{checks:?}");
    assert_eq!(checks[0], "test tier");
    assert_eq!(checks.iter().filter(|c| **c == "search step").count(), 5);
    assert!(rows
        .iter()
        .any(|row| row["setting"] == "batch 64 bf16" && row["yardstick_s"] == 0.2));
    assert_eq!(checks.iter().filter(|c| **c == "eval step").count(), 6);
    assert_eq!(checks.iter().filter(|c| **c == "search run").count(), 3);
    assert_eq!(
        checks
            .iter()
            .filter(|c| **c == "shared search step")
            .count(),
        5
    );
    assert_eq!(
        checks
            .iter()
            .filter(|c| **c == "data-parallel eval step")
            .count(),
        3
    );
    let bench_args = std::fs::read_to_string(root.join("bench-args.txt")).unwrap();
    for expected in [
        "search-step --device cuda --batch 64 --iters 3 --warmup 2 --trials 4\n",
        "search-step --device cuda --batch 64 --iters 3 --warmup 2 --trials 4 --own-streams",
        "eval-step --device cuda --batch 96 --iters 3 --warmup 2 --ranks 1 --collectives nccl",
        "eval-step --device cuda --batch 96 --iters 3 --warmup 2 --ranks 1 --collectives cpu",
    ] {
        assert!(bench_args.contains(expected), "{expected}: {bench_args}");
    }
    assert!(!bench_args.contains("--ranks 2"), "one GPU: {bench_args}");
    assert!(rows
        .iter()
        .all(|row| row["status"].as_str().unwrap().starts_with("ok")
            || row["status"].as_str().unwrap().starts_with("passed")));
    assert_eq!(rows[1]["ours_s"], 0.05);
    assert_eq!(rows[1]["yardstick_s"], 0.2);
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(table.lines().count(), 2 + 25 + 1, "{table}");
    assert!(table.contains("4.00x"), "{table}");
    let inventory = std::fs::read_to_string(root.join("out/inventory.txt")).unwrap();
    let own = std::fs::canonicalize(root.join(".libtorch/lib")).unwrap();
    assert!(
        inventory.contains(&format!("libraries: {}", own.display())),
        "{inventory}"
    );
}

/// A pack without `.libtorch` takes libtorch from the `torch/lib` of the Python it is given
/// (a stand-in `torch` package here), and says what to do when that Python has no torch.
#[test]
fn the_gpu_check_finds_libtorch_in_pythons_torch_when_the_pack_has_none() {
    let pack = stand_in_pack(false);
    let root = pack.path();
    let site = root.join("site");
    std::fs::create_dir_all(site.join("torch/lib")).unwrap();
    std::fs::write(site.join("torch/__init__.py"), "").unwrap();
    let output = run_pack(root, &[], &[("PYTHONPATH", &site)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let inventory = std::fs::read_to_string(root.join("out/inventory.txt")).unwrap();
    assert!(
        inventory.contains(&format!("libraries: {}", site.join("torch/lib").display())),
        "{inventory}"
    );

    // An interpreter without site-packages cannot import torch.
    executable(
        &root.join("fakebin/python-without-torch"),
        "#!/bin/sh\nexec python3 -I -S \"$@\"\n",
    );
    let output = run_pack(root, &["--python", "python-without-torch"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no .libtorch and `python-without-torch -c 'import torch'` failed")
            && stderr.contains("give --python with torch 2.11.0"),
        "{stderr}"
    );
}
