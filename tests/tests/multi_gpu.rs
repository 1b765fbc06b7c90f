//! Trials on several devices and devices shared by several trials, through a real
//! coordinator and an in-process worker with two CPU "devices" (what `worker --cpu-devices 2`
//! runs), over gRPC. Where trials ran is read from the coordinator's records (each attempt's
//! assignment line names its slots and its GPU request), and the simulated trainer checks at
//! every start that no slot holds more runs than their share allows.

use prime_core::trial::{TrialKind, TrialSpec};
use prime_proto::pb;
use prime_tests::{all_succeeded, small_grid, Cluster};
use prime_worker::simulated::{Fault, FaultRule};
use prime_worker::Device;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn spec(trial: &pb::TrialView) -> TrialSpec {
    trial.trial_spec().unwrap()
}

/// A cluster with one worker `pair` training on two CPU devices.
async fn cluster_of_two_devices() -> Cluster {
    let mut cluster = Cluster::start(6, 5).await;
    cluster.add_worker("pair", 2, |config| {
        config.devices = vec![Device::Cpu, Device::Cpu];
    });
    cluster
}

/// The assignment lines of a trial's attempts, as the coordinator logged them.
async fn assignments(cluster: &Cluster, trial: &pb::TrialView) -> Vec<String> {
    cluster
        .log_lines(trial.trial_id)
        .await
        .into_iter()
        .filter(|line| line.contains(" assigned to "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_device_evaluation_holds_both_devices_and_packed_searches_share_one() {
    let cluster = cluster_of_two_devices().await;
    let grid = small_grid("packed", &["darts"], &[101, 102], 3, 2)
        .replace("[search]\n", "[search]\ngpu_share = 2\n")
        .replace("[evaluation]\n", "[evaluation]\ngpus = 2\n");
    cluster.submit(&grid).await;
    let trials = cluster
        .wait_for("packed", LIMIT, "searches and evaluations", |t| {
            all_succeeded(t, 4)
        })
        .await;
    for trial in &trials {
        let lines = assignments(&cluster, trial).await;
        assert_eq!(lines.len(), 1, "one attempt each: {lines:?}");
        let expected = match spec(trial).kind {
            // Both searches on the first device: packing fills the fullest device that has
            // room, and the other device stays idle for the two-device evaluations.
            TrialKind::Search => "assigned to pair slot 0 (1/2 GPU)",
            TrialKind::Evaluation => "assigned to pair slots 0,1 (2 GPUs)",
        };
        assert!(lines[0].contains(expected), "{lines:?}");
    }
    assert_eq!(
        cluster.trainer.double_bookings(),
        0,
        "an evaluation shared a device with another run, or a search went beyond its share"
    );
    assert_eq!(
        cluster.trainer.most_on_one_slot(),
        2,
        "the two searches trained on the device at the same time"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_gpu_memory_retries_a_shared_trial_unshared_and_fails_an_unshared_one() {
    let cluster = cluster_of_two_devices().await;
    let out_of_memory = |seed| FaultRule {
        method: None,
        seed: Some(seed),
        kind: Some(TrialKind::Search),
        fault: Fault::OutOfMemory { at_epoch: 1 },
        times: 1,
    };
    cluster.trainer.inject(out_of_memory(101));
    cluster.trainer.inject(out_of_memory(103));
    let shared = small_grid("shared", &["darts"], &[101, 102], 2, 1)
        .replace("retries = 2", "retries = 0")
        .replace("[search]\n", "[search]\ngpu_share = 2\n");
    cluster.submit(&shared).await;
    let alone = small_grid("alone", &["darts"], &[103], 2, 1).replace("retries = 2", "retries = 0");
    cluster.submit(&alone).await;

    let trials = cluster
        .wait_for("shared", LIMIT, "the shared searches", |t| {
            all_succeeded(t, 4)
        })
        .await;
    let retried = trials
        .iter()
        .find(|t| spec(t).kind == TrialKind::Search && spec(t).search_seed == 101)
        .unwrap();
    assert_eq!(
        (retried.attempts, retried.failures),
        (2, 0),
        "retried once, not counted against its retries = 0"
    );
    assert_eq!(
        spec(retried).resources().gpu_share,
        1,
        "it now runs unshared"
    );
    let lines = cluster.log_lines(retried.trial_id).await;
    assert!(
        lines.iter().any(
            |line| line.starts_with("attempt 1 out of GPU memory while sharing")
                && line.contains("CUDA out of memory")
                && line.ends_with("trial is queued")
        ),
        "{lines:?}"
    );
    let placed = assignments(&cluster, retried).await;
    assert!(placed[0].contains("(1/2 GPU)"), "{placed:?}");
    assert!(placed[1].contains("(1 GPU)"), "{placed:?}");

    let trials = cluster
        .wait_for("alone", LIMIT, "the unshared search to fail", |t| {
            t.iter().any(|t| t.state == "failed")
        })
        .await;
    let failed = trials.iter().find(|t| t.state == "failed").unwrap();
    assert_eq!((failed.attempts, failed.failures), (1, 1));
    assert!(
        failed
            .reason
            .starts_with("out of GPU memory: CUDA out of memory"),
        "{}",
        failed.reason
    );
    assert_eq!(cluster.trainer.double_bookings(), 0);
    cluster.shutdown().await;
}
