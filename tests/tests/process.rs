//! Process-level faults with the real `coordinator` and `worker` binaries: kill -9, SIGSTOP,
//! SIGTERM and SIGUSR1, a coordinator restart, and a malformed grid.

use prime_core::trial::{TrialKind, TrialResult, TrialSpec};
use prime_proto::client::{connect, Credentials};
use prime_proto::pb;
use prime_tests::process::{start_coordinator, start_worker, start_worker_with, STEPS_PER_EPOCH};
use prime_tests::{all_succeeded, small_grid, wait_for};
use prime_worker::simulated::expected_checksum;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn spec(trial: &pb::TrialView) -> TrialSpec {
    trial.trial_spec().unwrap()
}

async fn submit(url: &str, text: &str) {
    connect(url, Duration::from_secs(5), &Credentials::default())
        .unwrap()
        .submit_grid(pb::SubmitGridRequest {
            file_name: "grid.toml".into(),
            toml: text.into(),
            extend: false,
        })
        .await
        .expect("grid accepted");
}

/// Every search has exactly one evaluation, and every result equals an uninterrupted run's.
fn assert_complete_and_exact(trials: &[pb::TrialView]) {
    for trial in trials {
        assert_eq!(trial.state, "succeeded", "trial {}", trial.trial_id);
        let result: TrialResult = trial.trial_result().unwrap().unwrap();
        assert_eq!(
            result.metrics["checksum"],
            expected_checksum(&spec(trial), STEPS_PER_EPOCH)
        );
        if spec(trial).kind == TrialKind::Search {
            let children = trials
                .iter()
                .filter(|t| t.parent_id == trial.trial_id)
                .count();
            assert_eq!(
                children, 1,
                "search {} has {children} evaluations",
                trial.trial_id
            );
        }
    }
}

fn running_epochs(trials: &[pb::TrialView], at_least: u32) -> bool {
    trials
        .iter()
        .any(|t| t.state == "running" && t.progress.is_some_and(|p| p.epochs_done >= at_least))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_trial_resumes_on_another_worker_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, addr) = start_coordinator(
        &dir.path().join("state"),
        "127.0.0.1:0",
        &dir.path().join("c.log"),
    );
    let url = format!("http://{addr}");
    submit(&url, &small_grid("kill", &["darts"], &[5], 5, 1)).await;
    let mut first = start_worker(
        &url,
        "first",
        &dir.path().join("w1"),
        30,
        &dir.path().join("w1.log"),
    );
    wait_for(&url, "kill", LIMIT, "two epochs on the first worker", |t| {
        running_epochs(t, 2)
    })
    .await;
    first.kill9();
    let _second = start_worker(
        &url,
        "second",
        &dir.path().join("w2"),
        30,
        &dir.path().join("w2.log"),
    );
    let trials = wait_for(&url, "kill", LIMIT, "the grid", |t| all_succeeded(t, 2)).await;
    let search = trials
        .iter()
        .find(|t| spec(t).kind == TrialKind::Search)
        .unwrap();
    assert_eq!(
        (search.attempts, search.failures),
        (2, 0),
        "a lost worker is not a failure"
    );
    let logs = connect(&url, Duration::from_secs(5), &Credentials::default())
        .unwrap()
        .trial_logs(pb::TrialRef {
            trial_id: search.trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .lines;
    let resumed = logs
        .iter()
        .any(|l| l.line.contains("worker second") && l.line.contains("resuming from checkpoint"));
    assert!(resumed, "{logs:?}");
    assert_complete_and_exact(&trials);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_continues_the_grid_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (mut coordinator, addr) =
        start_coordinator(&state, "127.0.0.1:0", &dir.path().join("c1.log"));
    let url = format!("http://{addr}");
    submit(
        &url,
        &small_grid("restart", &["darts", "pr"], &[1, 2], 3, 1),
    )
    .await;
    let _worker = start_worker(
        &url,
        "w",
        &dir.path().join("w"),
        15,
        &dir.path().join("w.log"),
    );
    wait_for(
        &url,
        "restart",
        LIMIT,
        "a finished search and a running trial",
        |t| t.iter().any(|t| t.state == "succeeded") && running_epochs(t, 1),
    )
    .await;
    coordinator.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_coordinator, _) = start_coordinator(&state, &addr, &dir.path().join("c2.log"));
    let trials = wait_for(&url, "restart", LIMIT, "the grid", |t| all_succeeded(t, 8)).await;
    assert_complete_and_exact(&trials);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_fenced_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, addr) = start_coordinator(
        &dir.path().join("state"),
        "127.0.0.1:0",
        &dir.path().join("c.log"),
    );
    let url = format!("http://{addr}");
    submit(&url, &small_grid("freeze", &["fimt"], &[9], 4, 1)).await;
    let frozen = start_worker(
        &url,
        "frozen",
        &dir.path().join("w1"),
        30,
        &dir.path().join("w1.log"),
    );
    wait_for(&url, "freeze", LIMIT, "an epoch on the first worker", |t| {
        running_epochs(t, 1)
    })
    .await;
    frozen.signal("STOP");
    let _healthy = start_worker(
        &url,
        "healthy",
        &dir.path().join("w2"),
        30,
        &dir.path().join("w2.log"),
    );
    wait_for(&url, "freeze", LIMIT, "reassignment", |t| {
        t.iter().any(|t| t.worker.starts_with("healthy"))
    })
    .await;
    frozen.signal("CONT");
    let trials = wait_for(&url, "freeze", LIMIT, "the grid", |t| all_succeeded(t, 2)).await;
    assert_complete_and_exact(&trials);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !frozen.log_text().contains("no longer ours") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = frozen.log_text();
    assert!(
        log.contains("no longer ours") || log.contains("fenced"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigusr1_checkpoint_report_preempted_and_exit_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, addr) = start_coordinator(
        &dir.path().join("state"),
        "127.0.0.1:0",
        &dir.path().join("c.log"),
    );
    let url = format!("http://{addr}");
    submit(&url, &small_grid("preempt", &["cs10"], &[4], 6, 1)).await;
    for (index, signal) in ["TERM", "USR1"].into_iter().enumerate() {
        let name = format!("w{index}");
        let mut worker = start_worker(
            &url,
            &name,
            &dir.path().join(&name),
            30,
            &dir.path().join(format!("{name}.log")),
        );
        let at_least = 2 * index as u32 + 1;
        wait_for(&url, "preempt", LIMIT, "progress", |t| {
            running_epochs(t, at_least)
        })
        .await;
        worker.signal(signal);
        assert_eq!(
            worker.wait_exit(Duration::from_secs(20)),
            Some(0),
            "SIG{signal}: {}",
            worker.log_text()
        );
        // The log went to a file, not a terminal: plain text, no colour codes.
        let log = worker.log_text();
        assert!(log.contains("INFO"), "{log}");
        assert!(!log.contains('\u{1b}'), "{log}");
        let trials = wait_for(&url, "preempt", LIMIT, "preempted", |t| {
            t.iter().any(|t| t.state == "preempted")
        })
        .await;
        assert_eq!(trials[0].failures, 0);
    }
    let _last = start_worker(
        &url,
        "last",
        &dir.path().join("last"),
        30,
        &dir.path().join("last.log"),
    );
    let trials = wait_for(&url, "preempt", LIMIT, "the grid", |t| all_succeeded(t, 2)).await;
    assert_eq!(trials[0].attempts, 3);
    assert_complete_and_exact(&trials);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_coordinator_unreachable_exits_within_the_shutdown_grace() {
    const GRACE: Duration = Duration::from_secs(2);
    /// Start-up of the runtime's shutdown and the process exit, on a busy 2-core machine.
    const MARGIN: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, addr) = start_coordinator(
        &dir.path().join("state"),
        "127.0.0.1:0",
        &dir.path().join("c.log"),
    );
    let url = format!("http://{addr}");
    submit(&url, &small_grid("grace", &["darts"], &[2], 50, 1)).await;
    let work_dir = dir.path().join("w");
    let mut worker = start_worker_with(
        &url,
        "w",
        &work_dir,
        30,
        &dir.path().join("w.log"),
        &["--shutdown-grace", &format!("{}s", GRACE.as_secs())],
    );
    wait_for(&url, "grace", LIMIT, "an epoch", |t| running_epochs(t, 1)).await;
    // A stopped coordinator accepts connections but never answers: the worst case.
    coordinator.signal("STOP");
    let signalled = std::time::Instant::now();
    worker.signal("TERM");
    let code = worker.wait_exit(GRACE + MARGIN);
    let log = worker.log_text();
    assert_eq!(
        code,
        Some(0),
        "no clean exit within {GRACE:?} + {MARGIN:?}: {log}"
    );
    assert!(
        signalled.elapsed() >= GRACE,
        "it gave the coordinator its grace period: {log}"
    );
    assert!(log.contains("shutdown grace period over"), "{log}");
    let local = work_dir.join("trial-1/checkpoint/manifest.json");
    assert!(local.exists(), "the trial checkpointed locally: {log}");
    coordinator.signal("CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grid_is_refused_with_its_line_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_coordinator, addr) = start_coordinator(
        &dir.path().join("state"),
        "127.0.0.1:0",
        &dir.path().join("c.log"),
    );
    let url = format!("http://{addr}");
    let bad = small_grid("bad", &["darts", "darts-prim"], &[1], 2, 1);
    let status = connect(&url, Duration::from_secs(5), &Credentials::default())
        .unwrap()
        .submit_grid(pb::SubmitGridRequest {
            file_name: "bad.toml".into(),
            toml: bad,
            extend: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("bad.toml:14:"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("methods[1].preset"),
        "{}",
        status.message()
    );
    assert!(prime_tests::list_trials(&url, "").await.is_empty());
}
