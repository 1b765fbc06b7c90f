//! The GPU tier of the cluster: a tiny grid of two search trials through an in-process
//! coordinator and the real `worker --gpu 0` running the libtorch trainer on CUDA.
//!
//! Ignored by default (the reason shows in the test output); run it with `--ignored` on a
//! machine with Rust and a CUDA GPU. Without one the worker refuses `--gpu 0` at start and the
//! test fails quoting the worker's log.

use prime_tests::process::{binaries_dir, Daemon};
use prime_tests::Cluster;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Two one-epoch searches of a small network on synthetic images.
const GRID: &str = r#"version = 1
name = "gpu-tier"
datasets = ["cifar10"]
seeds = [1, 2]

[search]
epochs = 1
batch_size = 32
init_channels = 8
layers = 5
data = "synthetic"
train_samples = 512

[[methods]]
preset = "darts-prime"
"#;

/// Time for both trials, start-up and synthetic data included.
const LIMIT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "GPU tier: needs a CUDA device; run with --ignored"]
async fn a_tiny_grid_runs_through_worker_gpu_0() {
    let cluster = Cluster::start(10, 0).await;
    cluster.submit(GRID).await;
    let work_dir = cluster.dir.path().join("gpu-worker");
    let log = cluster.dir.path().join("gpu-worker.log");
    let child = Command::new(binaries_dir().join("worker"))
        .args([
            "--coordinator",
            &cluster.url(),
            "--gpu",
            "0",
            "--name",
            "gpu",
        ])
        .arg("--work-dir")
        .arg(&work_dir)
        .args(["--poll-secs", "0.05"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("worker log file"))
        .spawn()
        .expect("starting the worker");
    let mut worker = Daemon { child, log };
    let deadline = tokio::time::Instant::now() + LIMIT;
    let trials = loop {
        let trials = cluster.trials("gpu-tier").await;
        if trials.len() == 2 && trials.iter().all(|trial| trial.state == "succeeded") {
            break trials;
        }
        let failed = trials.iter().find(|trial| trial.state == "failed");
        assert!(
            failed.is_none(),
            "a trial failed: {:?}\nworker log:\n{}",
            failed.map(|trial| &trial.reason),
            worker.log_text()
        );
        assert!(
            worker.child.try_wait().expect("worker status").is_none(),
            "the worker exited; its log:\n{}",
            worker.log_text()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grid did not finish in {LIMIT:?}; worker log:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for trial in &trials {
        let result = trial
            .trial_result()
            .expect("a readable result")
            .expect("a result");
        assert!(
            result.metrics.contains_key("search_valid_acc"),
            "trial {} result: {:?}",
            trial.trial_id,
            result.metrics
        );
    }
}
