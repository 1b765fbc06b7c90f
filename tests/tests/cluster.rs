//! In-process clusters over real gRPC on 127.0.0.1:0 with the simulated trainer.

use prime_core::trial::{TrialKind, TrialResult, TrialSpec};
use prime_proto::archive::sha256_hex;
use prime_proto::pb;
use prime_tests::{all_succeeded, small_grid, Cluster};
use prime_worker::simulated::{expected_checksum, Fault, FaultRule};
use std::sync::atomic::Ordering;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn spec(trial: &pb::TrialView) -> TrialSpec {
    trial.trial_spec().unwrap()
}

fn result(trial: &pb::TrialView) -> TrialResult {
    trial.trial_result().unwrap().unwrap()
}

/// Every succeeded trial's result equals an uninterrupted run's.
fn assert_exact(trials: &[pb::TrialView], steps_per_epoch: u64) {
    for trial in trials.iter().filter(|t| t.state == "succeeded") {
        let checksum = result(trial).metrics["checksum"];
        assert_eq!(
            checksum,
            expected_checksum(&spec(trial), steps_per_epoch),
            "trial {}",
            trial.trial_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_chain_to_evaluations_without_double_booking() {
    let mut cluster = Cluster::start(6, 3).await;
    cluster.add_worker("a", 2, |_| {});
    cluster.add_worker("b", 1, |_| {});
    let reply = cluster
        .submit(&small_grid(
            "chain",
            &["darts", "darts-prime"],
            &[101, 102],
            2,
            2,
        ))
        .await;
    assert_eq!(reply.search_trials, 4);
    let trials = cluster
        .wait_for("chain", LIMIT, "searches and evaluations", |t| {
            all_succeeded(t, 8)
        })
        .await;
    let searches: Vec<_> = trials
        .iter()
        .filter(|t| spec(t).kind == TrialKind::Search)
        .collect();
    for evaluation in trials
        .iter()
        .filter(|t| spec(t).kind == TrialKind::Evaluation)
    {
        let parent = searches
            .iter()
            .find(|s| s.trial_id == evaluation.parent_id)
            .unwrap();
        assert_eq!(spec(evaluation).genotype, result(parent).genotype);
        assert_eq!(spec(evaluation).search_seed, spec(parent).search_seed);
        assert!(result(evaluation).metrics.contains_key("test_error"));
    }
    assert_exact(&trials, 6);
    assert_eq!(cluster.trainer.double_bookings(), 0);
    let mut client = cluster.client();
    let checkpoints = client
        .trial_checkpoints(pb::TrialRef {
            trial_id: searches[0].trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    let last = checkpoints
        .iter()
        .find(|c| c.r#final)
        .expect("final artifacts are kept");
    let progress = last
        .progress
        .as_ref()
        .expect("the final artifacts have a progress");
    assert_eq!(
        progress.epochs_done, progress.epochs_total,
        "the final artifacts are reported at the end of the run"
    );
    assert!(
        checkpoints.len() <= 4,
        "retention keeps the last two, the best and the final"
    );
    let metrics = client
        .trial_metrics(pb::TrialRef {
            trial_id: searches[0].trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .metrics;
    assert_eq!(metrics.iter().filter(|m| m.kind == "step").count(), 12);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chunk_is_refused_and_sent_again() {
    let mut cluster = Cluster::start(4, 2).await;
    cluster.add_worker("flaky", 1, |config| {
        config.faults.corrupt_chunks.store(3, Ordering::SeqCst);
    });
    cluster
        .submit(&small_grid("chunks", &["pr"], &[7], 2, 1))
        .await;
    let trials = cluster
        .wait_for("chunks", LIMIT, "the grid", |t| all_succeeded(t, 2))
        .await;
    assert_eq!(
        cluster.workers[0]
            .faults
            .corrupt_chunks
            .load(Ordering::SeqCst),
        0
    );
    let mut client = cluster.client();
    let logs = client
        .trial_logs(pb::TrialRef {
            trial_id: trials[0].trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .lines;
    assert!(
        logs.iter().any(|line| line.line.contains("checkpoint")),
        "{logs:?}"
    );
    // A raw corrupted chunk gets DATA_LOSS.
    let status = client
        .put_checkpoint_chunk(pb::CheckpointChunk {
            trial_id: trials[0].trial_id,
            epoch: 1,
            upload_id: "raw".into(),
            offset: 0,
            data: b"abc".to_vec(),
            sha256: sha256_hex(b"abd"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "a finished trial is fenced first"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_spend_the_retry_budget_and_divergence_fails_at_once() {
    let mut cluster = Cluster::start(4, 2).await;
    let rule = |method: &str, fault, times| FaultRule {
        method: Some(method.into()),
        seed: None,
        kind: Some(TrialKind::Search),
        fault,
        times,
    };
    cluster
        .trainer
        .inject(rule("darts", Fault::Crash { at_epoch: 1 }, 1));
    cluster
        .trainer
        .inject(rule("pr", Fault::Diverge { at_epoch: 1 }, 1));
    cluster
        .trainer
        .inject(rule("fimt", Fault::CorruptResult, 1));
    cluster
        .trainer
        .inject(rule("cs10", Fault::Crash { at_epoch: 0 }, 5));
    cluster.add_worker("w", 2, |_| {});
    cluster
        .submit(&small_grid(
            "faults",
            &["darts", "pr", "fimt", "cs10"],
            &[1],
            2,
            1,
        ))
        .await;
    let trials = cluster
        .wait_for("faults", LIMIT, "every trial to settle", |t| {
            t.len() == 6
                && t.iter()
                    .all(|t| matches!(t.state.as_str(), "succeeded" | "failed"))
        })
        .await;
    let search = |method: &str| {
        trials
            .iter()
            .find(|t| spec(t).method == method && spec(t).kind == TrialKind::Search)
            .unwrap()
    };
    let crashed = search("darts");
    assert_eq!(
        (crashed.state.as_str(), crashed.failures, crashed.attempts),
        ("succeeded", 1, 2)
    );
    let diverged = search("pr");
    assert_eq!(
        (diverged.state.as_str(), diverged.reason.as_str()),
        ("failed", "failed: diverged")
    );
    let corrupt = search("fimt");
    assert_eq!((corrupt.state.as_str(), corrupt.failures), ("succeeded", 1));
    let doomed = search("cs10");
    assert_eq!(
        (doomed.state.as_str(), doomed.failures),
        ("failed", 3),
        "retries = 2"
    );
    assert!(
        doomed.reason.contains("simulated crash"),
        "{}",
        doomed.reason
    );
    assert_exact(&trials, 4);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_fails_at_once_without_spending_retries() {
    let mut cluster = Cluster::start(4, 2).await;
    cluster.trainer.inject(FaultRule {
        method: Some("darts".into()),
        seed: None,
        kind: Some(TrialKind::Search),
        fault: Fault::Reject,
        times: 5,
    });
    cluster.add_worker("w", 1, |_| {});
    cluster
        .submit(&small_grid("invalid", &["darts"], &[1], 2, 1))
        .await;
    let trials = cluster
        .wait_for("invalid", LIMIT, "the trial to fail", |t| {
            t.iter().any(|t| t.state == "failed")
        })
        .await;
    assert_eq!(trials.len(), 1, "a failed search has no evaluations");
    let trial = &trials[0];
    assert_eq!(
        (trial.attempts, trial.failures),
        (1, 1),
        "retries = 2, yet one attempt"
    );
    assert_eq!(
        trial.reason,
        "failed: invalid configuration: simulated rejection of method `darts`"
    );
    assert_eq!(cluster.trainer.starts().len(), 1, "never retried");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_coordinator_cannot_store_are_dropped_alone_and_the_rest_delivered() {
    let mut cluster = Cluster::start(4, 2).await;
    cluster.trainer.inject(FaultRule {
        method: Some("darts".into()),
        seed: None,
        kind: Some(TrialKind::Search),
        fault: Fault::UnstorableMetrics { at_epoch: 1 },
        times: 1,
    });
    // One batch per epoch or so: the bad records share it with good ones.
    cluster.add_worker("w", 1, |config| config.metric_batch = 8);
    cluster
        .submit(&small_grid("metrics", &["darts"], &[1], 2, 1))
        .await;
    let trials = cluster
        .wait_for("metrics", LIMIT, "the search and its evaluation", |t| {
            all_succeeded(t, 2)
        })
        .await;
    let search = trials
        .iter()
        .find(|t| spec(t).kind == TrialKind::Search)
        .unwrap();
    let metrics = cluster
        .client()
        .trial_metrics(pb::TrialRef {
            trial_id: search.trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .metrics;
    let count = |kind: &str| metrics.iter().filter(|m| m.kind == kind).count();
    assert_eq!(
        (count("step"), count("epoch")),
        (8, 2),
        "every good record arrived"
    );
    assert_eq!(count("alpha_step"), 0, "the unstorable ones were left out");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preempted_trial_resumes_elsewhere_from_its_checkpoint() {
    let mut cluster = Cluster::start(10, 10).await;
    cluster.add_worker("first", 1, |_| {});
    cluster
        .submit(&small_grid("preempt", &["darts-prime"], &[3], 4, 1))
        .await;
    cluster
        .wait_for("preempt", LIMIT, "two epochs", |t| {
            t.first()
                .and_then(|t| t.progress)
                .is_some_and(|p| p.epochs_done >= 2)
        })
        .await;
    let first = cluster.workers.remove(0);
    first.handle.preempt_and_exit();
    tokio::time::timeout(Duration::from_secs(10), first.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let trials = cluster.trials("preempt").await;
    assert_eq!(trials[0].state, "preempted");
    assert_eq!(trials[0].failures, 0);
    cluster.add_worker("second", 1, |_| {});
    let trials = cluster
        .wait_for("preempt", LIMIT, "the grid", |t| all_succeeded(t, 2))
        .await;
    let resumed = cluster.trainer.starts();
    assert!(
        resumed
            .iter()
            .any(|s| s.trial_id == trials[0].trial_id && s.from_epoch >= 2),
        "{resumed:?}"
    );
    assert_exact(&trials, 10);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_trials_and_protocol_mismatch_is_refused() {
    let mut cluster = Cluster::start(1000, 10).await;
    cluster.add_worker("w", 1, |_| {});
    cluster
        .submit(&small_grid("cancel", &["darts", "pr"], &[1], 50, 1))
        .await;
    cluster
        .wait_for("cancel", LIMIT, "a running trial", |t| {
            t.iter().any(|t| t.state == "running")
        })
        .await;
    let cancelled = cluster
        .client()
        .cancel_trials(pb::CancelRequest {
            target: Some(pb::cancel_request::Target::Grid("cancel".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .cancelled;
    assert_eq!(cancelled, 2);
    // The worker stops the trial once a heartbeat tells it to, and starts no other.
    let mut client = cluster.client();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let workers = client
            .list_workers(pb::ListWorkersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .workers;
        if workers[0].trials.is_empty() && cluster.trainer.starts().len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{workers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = cluster.submit_raw_without_version().await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(error.message().contains("protocol"), "{}", error.message());
    // A peer of protocol version 1 (specs and results as JSON strings) is told to upgrade.
    let error = cluster.call_raw_with_version("1").await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(
        error.message().contains("protocol version mismatch")
            && error.message().contains("the caller sent \"1\""),
        "{}",
        error.message()
    );
    cluster.shutdown().await;
}

trait RawCalls {
    async fn submit_raw_without_version(&self) -> Result<(), tonic::Status>;
    async fn call_raw_with_version(&self, version: &'static str) -> Result<(), tonic::Status>;
}

impl RawCalls for Cluster {
    async fn submit_raw_without_version(&self) -> Result<(), tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = pb::coordinator_client::CoordinatorClient::new(channel);
        client
            .list_workers(pb::ListWorkersRequest::default())
            .await
            .map(drop)
    }

    async fn call_raw_with_version(&self, version: &'static str) -> Result<(), tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = pb::coordinator_client::CoordinatorClient::new(channel);
        let mut request = tonic::Request::new(pb::ListWorkersRequest::default());
        request.metadata_mut().insert(
            prime_proto::PROTOCOL_HEADER,
            tonic::metadata::MetadataValue::from_static(version),
        );
        client.list_workers(request).await.map(drop)
    }
}

/// The slots worker `name` reports as stalled, per `ListWorkers`.
async fn stalled_slots(cluster: &Cluster, name: &str) -> Vec<pb::StalledSlot> {
    cluster
        .client()
        .list_workers(pb::ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workers
        .into_iter()
        .find(|worker| worker.name == name)
        .map(|worker| worker.stalled)
        .unwrap_or_default()
}

/// Polls until worker `name`'s stalled slots satisfy `done`, or panics after `LIMIT`.
async fn wait_for_stalled(
    cluster: &Cluster,
    name: &str,
    what: &str,
    done: impl Fn(&[pb::StalledSlot]) -> bool,
) -> Vec<pb::StalledSlot> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let stalled = stalled_slots(cluster, name).await;
        if done(&stalled) {
            return stalled;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {stalled:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_training_thread_fails_its_attempt_and_its_slot_waits_for_the_thread() {
    let mut cluster = Cluster::start(4, 10).await;
    cluster.trainer.inject(FaultRule {
        method: None,
        seed: Some(1),
        kind: Some(TrialKind::Search),
        fault: Fault::Freeze { at_epoch: 1 },
        times: 1,
    });
    let stall_timeout = |config: &mut prime_worker::WorkerConfig| {
        config.stall_timeout = Duration::from_millis(500);
    };
    cluster.add_worker("w1", 1, stall_timeout);
    cluster
        .submit(&small_grid("stall", &["darts"], &[1], 3, 1))
        .await;
    let stalled = cluster
        .wait_for("stall", LIMIT, "the stalled attempt to fail", |t| {
            t.len() == 1 && t[0].failures == 1
        })
        .await;
    let search = &stalled[0];
    assert_eq!(
        search.state, "queued",
        "a stall spends a retry, not the trial"
    );
    assert!(
        search.reason.contains("stalled: no progress for"),
        "{}",
        search.reason
    );
    let slots = wait_for_stalled(&cluster, "w1", "w1 to report its stalled slot", |s| {
        !s.is_empty()
    })
    .await;
    assert_eq!((slots[0].slot, slots[0].trial_id), (0, search.trial_id));
    assert!(slots[0].no_progress_ms >= 500, "{slots:?}");

    // The frozen thread still holds w1's only GPU: the retry must go to another worker.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = cluster.trials("stall").await;
    assert_eq!(
        waiting[0].state, "queued",
        "w1 took a trial on its stalled slot"
    );
    cluster.add_worker("w2", 1, stall_timeout);
    let trials = cluster
        .wait_for(
            "stall",
            LIMIT,
            "the retried search and its evaluation",
            |t| all_succeeded(t, 2),
        )
        .await;
    let search = trials.iter().find(|t| t.parent_id == 0).unwrap();
    assert_eq!((search.attempts, search.failures), (2, 1));
    assert_eq!(search.worker, "w2/0");
    assert_exact(&trials, 4);
    let resumed = cluster
        .trainer
        .starts()
        .into_iter()
        .filter(|start| start.trial_id == search.trial_id)
        .map(|start| start.from_epoch)
        .collect::<Vec<_>>();
    assert_eq!(
        resumed,
        [0, 1],
        "the retry resumed from the last checkpoint"
    );
    assert_eq!(cluster.trainer.double_bookings(), 0);
    assert_eq!(stalled_slots(&cluster, "w1").await.len(), 1);

    // Once the thread ends the slot serves again.
    cluster.trainer.thaw();
    wait_for_stalled(&cluster, "w1", "w1's slot back in service", |s| {
        s.is_empty()
    })
    .await;
    let mut client = cluster.client();
    client
        .set_worker_mode(pb::SetWorkerModeRequest {
            name: "w2".into(),
            mode: "cordon".into(),
        })
        .await
        .unwrap();
    cluster
        .submit(&small_grid("after", &["darts"], &[2], 1, 1))
        .await;
    let after = cluster
        .wait_for("after", LIMIT, "w1 to run a new grid", |t| {
            all_succeeded(t, 2)
        })
        .await;
    assert!(after.iter().all(|t| t.worker == "w1/0"), "{after:?}");
    assert_eq!(cluster.trainer.double_bookings(), 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_stalled_slot_still_stops_cleanly_on_preemption() {
    let mut cluster = Cluster::start(4, 20).await;
    cluster.trainer.inject(FaultRule {
        method: Some("darts".into()),
        seed: None,
        kind: Some(TrialKind::Search),
        fault: Fault::Freeze { at_epoch: 0 },
        times: 1,
    });
    cluster.add_worker("w", 2, |config| {
        config.stall_timeout = Duration::from_millis(300);
    });
    cluster
        .submit(&small_grid("mixed", &["darts", "pr"], &[1], 50, 1))
        .await;
    wait_for_stalled(&cluster, "w", "the frozen slot", |s| !s.is_empty()).await;
    cluster
        .wait_for("mixed", LIMIT, "the healthy trial to run", |t| {
            t.iter().any(|t| t.state == "running")
        })
        .await;
    let worker = cluster.workers.remove(0);
    worker.handle.preempt_and_exit();
    tokio::time::timeout(Duration::from_secs(20), worker.task)
        .await
        .expect("the worker exits although a training thread is hung")
        .unwrap()
        .unwrap();
    let trials = cluster.trials("mixed").await;
    let state_of = |method: &str| {
        let trial = trials.iter().find(|t| spec(t).method == method).unwrap();
        (trial.state.as_str(), trial.failures)
    };
    assert_eq!(state_of("darts"), ("queued", 1), "failed as stalled");
    assert_eq!(
        state_of("pr"),
        ("preempted", 0),
        "checkpointed and requeued"
    );
    cluster.trainer.thaw();
    cluster.shutdown().await;
}

/// The stored object (in the coordinator's checkpoint store) whose bytes hash to `sha256`.
fn stored_object(cluster: &Cluster, sha256: &str) -> std::path::PathBuf {
    let objects = cluster.dir.path().join("state/checkpoints/objects");
    std::fs::read_dir(&objects)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| sha256_hex(&std::fs::read(path).unwrap()) == sha256)
        .unwrap_or_else(|| panic!("no object with sha256 {sha256} in {}", objects.display()))
}

/// Flips one byte in the middle of a stored checkpoint (disk rot on the head node).
fn rot(cluster: &Cluster, checkpoint: &pb::CheckpointInfo) {
    let path = stored_object(cluster, &checkpoint.sha256);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

async fn resumable_checkpoints(cluster: &Cluster, trial_id: u64) -> Vec<pb::CheckpointInfo> {
    let mut checkpoints = cluster
        .client()
        .trial_checkpoints(pb::TrialRef {
            trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    checkpoints.retain(|checkpoint| !checkpoint.r#final);
    checkpoints.sort_by_key(|checkpoint| checkpoint.checkpoint_id);
    checkpoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_latest_checkpoint_falls_back_without_spending_retries() {
    let mut cluster = Cluster::start(4, 25).await;
    cluster.add_worker("first", 2, |_| {});
    cluster
        .submit(&small_grid("rot", &["darts", "pr"], &[1], 6, 1))
        .await;
    cluster
        .wait_for("rot", LIMIT, "two epochs of both searches", |t| {
            t.len() == 2
                && t.iter()
                    .all(|t| t.progress.is_some_and(|p| p.epochs_done >= 2))
        })
        .await;
    let first = cluster.workers.remove(0);
    first.handle.preempt_and_exit();
    tokio::time::timeout(Duration::from_secs(10), first.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let trials = cluster.trials("rot").await;
    let trial_of = |method: &str| {
        trials
            .iter()
            .find(|t| spec(t).method == method)
            .unwrap()
            .trial_id
    };
    let (partly, wholly) = (trial_of("darts"), trial_of("pr"));
    // darts: only its latest checkpoint rots; pr: every resumable one does.
    let checkpoints = resumable_checkpoints(&cluster, partly).await;
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    let (previous, latest) = (
        &checkpoints[checkpoints.len() - 2],
        &checkpoints[checkpoints.len() - 1],
    );
    rot(&cluster, latest);
    for checkpoint in resumable_checkpoints(&cluster, wholly).await {
        rot(&cluster, &checkpoint);
    }
    cluster.add_worker("second", 2, |_| {});
    let trials = cluster
        .wait_for("rot", LIMIT, "the grid despite the rot", |t| {
            all_succeeded(t, 4)
        })
        .await;
    for search in trials.iter().filter(|t| t.parent_id == 0) {
        assert_eq!(
            (search.attempts, search.failures),
            (2, 0),
            "trial {}: no retry spent",
            search.trial_id
        );
    }
    let lines = cluster.log_lines(partly).await;
    let unusable = format!("checkpoint {} cannot be restored", latest.checkpoint_id);
    assert!(lines.iter().any(|l| l.contains(&unusable)), "{lines:?}");
    let fallback = format!("resuming from checkpoint {}", previous.checkpoint_id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("worker second") && l.contains(&fallback)),
        "{lines:?}"
    );
    let lines = cluster.log_lines(wholly).await;
    assert!(
        lines.iter().any(|l| l.contains("starting afresh")),
        "{lines:?}"
    );
    let fresh_starts = cluster
        .trainer
        .starts()
        .iter()
        .filter(|start| start.trial_id == wholly && start.from_epoch == 0)
        .count();
    assert_eq!(fresh_starts, 2, "pr started afresh on the second worker");
    assert_exact(&trials, 4);
    cluster.shutdown().await;
}

/// A run directory packed as a worker uploads it: a `checkpoint/` whose manifest lists
/// `weights.bin` with the sha256 of `listed`, while the file holds `held`.
fn packed_run_dir(held: &[u8], listed: &[u8]) -> Vec<u8> {
    use prime_core::checkpoint_layout::{Manifest, CHECKPOINT_FORMAT, MANIFEST_FILE};
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir_all(&checkpoint).unwrap();
    std::fs::write(checkpoint.join("weights.bin"), held).unwrap();
    let manifest = Manifest {
        format: CHECKPOINT_FORMAT,
        tag: "checkpoint".into(),
        files: [("weights.bin".to_string(), sha256_hex(listed))].into(),
    };
    std::fs::write(
        checkpoint.join(MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    prime_proto::archive::pack_dir(dir.path(), dir.path()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_cannot_be_opened_is_refused_and_never_committed() {
    let cluster = Cluster::start(4, 10).await;
    cluster
        .submit(&small_grid("refuse", &["darts"], &[1], 2, 1))
        .await;
    // A hand-driven worker, so the uploads are exactly these bytes.
    let mut client = cluster.client();
    let session = client
        .register_worker(pb::RegisterWorkerRequest {
            name: "raw".into(),
            slots: vec![pb::Slot {
                index: 0,
                device: "cuda:0".into(),
            }],
            running: Vec::new(),
            stalled: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session;
    let assignment = client
        .request_trial(pb::RequestTrialRequest {
            name: "raw".into(),
            session,
            slot: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .assignment
        .unwrap();
    let (trial_id, epoch) = (assignment.trial_id, assignment.epoch);
    let upload = |upload_id: &str, archive: Vec<u8>| {
        let mut client = client.clone();
        let upload_id = upload_id.to_string();
        async move {
            // Renews the lease, which the test's short one could otherwise let expire, and
            // lists the trial as running, as a worker does (one it left out twice in a row
            // would be taken for lost).
            client
                .heartbeat(pb::HeartbeatRequest {
                    name: "raw".into(),
                    session,
                    running: vec![pb::RunningTrial {
                        trial_id,
                        epoch,
                        ..Default::default()
                    }],
                    stalled: Vec::new(),
                    ..Default::default()
                })
                .await?;
            client
                .put_checkpoint_chunk(pb::CheckpointChunk {
                    trial_id,
                    epoch,
                    upload_id: upload_id.clone(),
                    offset: 0,
                    sha256: sha256_hex(&archive),
                    data: archive.clone(),
                })
                .await?;
            client
                .commit_checkpoint(pb::CommitCheckpointRequest {
                    trial_id,
                    epoch,
                    upload_id,
                    size: archive.len() as u64,
                    sha256: sha256_hex(&archive),
                    progress: None,
                    r#final: false,
                    score: None,
                })
                .await
                .map(|reply| reply.into_inner().checkpoint_id)
        }
    };
    let not_an_archive = b"weights and hope".repeat(64);
    let lying_manifest = packed_run_dir(b"rotten weights", b"weights");
    let no_checkpoint = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), b"{}\n").unwrap();
        prime_proto::archive::pack_dir(dir.path(), dir.path()).unwrap()
    };
    for (name, archive) in [
        ("garbage", not_an_archive),
        ("lying", lying_manifest),
        ("empty", no_checkpoint),
    ] {
        let status = upload(name, archive).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{name}: {status:?}"
        );
        assert!(
            status.message().contains("not committed"),
            "{name}: {status:?}"
        );
    }
    assert!(
        resumable_checkpoints(&cluster, trial_id).await.is_empty(),
        "nothing was committed"
    );
    let lines = cluster.log_lines(trial_id).await;
    assert!(
        lines.iter().any(|l| l.contains("upload was refused")),
        "{lines:?}"
    );
    let intact = packed_run_dir(b"weights", b"weights");
    let committed = upload("intact", intact).await.unwrap();
    let stored = resumable_checkpoints(&cluster, trial_id).await;
    assert_eq!(
        stored.iter().map(|c| c.checkpoint_id).collect::<Vec<_>>(),
        [committed]
    );
    cluster.shutdown().await;
}

/// A fake GPU inventory whose free memory drops by 1 GiB at every reading, so a heartbeat's
/// report is told apart from the registration's.
#[derive(Debug)]
struct DrainingGpu {
    readings: std::sync::atomic::AtomicU64,
}

impl prime_worker::hardware::GpuSource for DrainingGpu {
    fn snapshot(&self) -> Vec<prime_core::gpu::GpuInfo> {
        let reading = self.readings.fetch_add(1, Ordering::SeqCst).min(60);
        vec![prime_core::gpu::GpuInfo {
            index: 0,
            name: "NVIDIA H200".into(),
            capability: prime_core::gpu::ComputeCapability { major: 9, minor: 0 },
            memory_total_bytes: 141 << 30,
            memory_free_bytes: (141 - reading) << 30,
            driver_version: "580.65.06".into(),
            utilization_percent: 50,
            temperature_celsius: 45,
        }]
    }
}

#[tokio::test]
async fn workers_report_gpus_and_torch_build_at_registration_and_in_heartbeats() {
    let mut cluster = Cluster::start(4, 5).await;
    cluster.add_worker("gpu-node", 1, |config| {
        config.gpus = std::sync::Arc::new(DrainingGpu {
            readings: std::sync::atomic::AtomicU64::new(0),
        });
        config.torch.variant = "cu126".into();
        config.torch.version = "2.11.0+cu126".into();
    });
    let mut client = cluster.client();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let worker = loop {
        let workers = client
            .list_workers(pb::ListWorkersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .workers;
        // The registration reported 141 GiB free; a later heartbeat less.
        if let Some(worker) = workers.into_iter().find(|worker| {
            worker
                .gpus
                .first()
                .is_some_and(|gpu| gpu.memory_free_bytes < 141 << 30)
        }) {
            break worker;
        }
        assert!(tokio::time::Instant::now() < deadline, "no GPU heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (worker.torch_variant.as_str(), worker.torch_version.as_str()),
        ("cu126", "2.11.0+cu126")
    );
    let gpu = &worker.gpus[0];
    assert_eq!(
        (
            gpu.name.as_str(),
            gpu.capability_major,
            gpu.memory_total_bytes
        ),
        ("NVIDIA H200", 9, 141 << 30)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_requests_travel_with_the_trials_and_unplaceable_ones_are_reported() {
    let mut cluster = Cluster::start(4, 2).await;
    cluster.add_worker("pair", 2, |_| {});
    let deadline = tokio::time::Instant::now() + LIMIT;
    while prime_proto::paging::all_workers(&cluster.client())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grid = small_grid("gpus", &["darts"], &[101, 102], 1, 1)
        .replace("[search]\n", "[search]\ngpu_share = 2\n")
        .replace("[evaluation]\n", "[evaluation]\ngpus = 4\n");
    let reply = cluster.submit(&grid).await;
    assert_eq!(reply.unplaceable.len(), 2, "{:?}", reply.unplaceable);
    assert!(
        reply.unplaceable[0]
            .contains("needs 4 GPUs on one worker and the largest registered worker has 2"),
        "{:?}",
        reply.unplaceable
    );
    let trials = cluster
        .wait_for(
            "gpus",
            LIMIT,
            "the shared searches and their queued evaluations",
            |t| {
                t.len() == 4
                    && t.iter().all(|t| {
                        t.state
                            == if spec(t).kind == TrialKind::Search {
                                "succeeded"
                            } else {
                                "queued"
                            }
                    })
            },
        )
        .await;
    for trial in &trials {
        let resources = spec(trial).resources();
        match spec(trial).kind {
            TrialKind::Search => assert_eq!((resources.gpus, resources.gpu_share), (1, 2)),
            TrialKind::Evaluation => assert_eq!((resources.gpus, resources.gpu_share), (4, 1)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_progress_reaches_the_coordinator_between_heartbeats() {
    // Heartbeats every 30 s and one checkpoint per 10 s epoch: only the worker's progress
    // updates can show a step count inside the first epoch within the test's time.
    let mut cluster = Cluster::start_with(400, 25, |config| {
        config.heartbeat = Duration::from_secs(30);
        config.lease = Duration::from_secs(90);
    })
    .await;
    cluster.add_worker("live", 1, |config| {
        config.progress_every = Duration::from_millis(200);
    });
    cluster
        .submit(&small_grid("steps", &["darts"], &[1], 2, 1))
        .await;
    let inside_first_epoch = |trials: &[pb::TrialView]| {
        trials
            .iter()
            .filter_map(|trial| trial.progress)
            .find(|progress| progress.epochs_done == 0 && progress.steps_done > 0)
    };
    let limit = Duration::from_secs(8);
    let first = cluster
        .wait_for("steps", limit, "a step count", |trials| {
            inside_first_epoch(trials).is_some()
        })
        .await;
    let earlier = inside_first_epoch(&first).unwrap().steps_done;
    let later = cluster
        .wait_for("steps", limit, "the step count moving on", |trials| {
            inside_first_epoch(trials).is_some_and(|progress| progress.steps_done > earlier)
        })
        .await;
    let progress = inside_first_epoch(&later).unwrap();
    assert!(progress.steps_done < 400, "{progress:?}");
    assert_eq!(progress.steps_total, 800, "{progress:?}");
    cluster.shutdown().await;
}
