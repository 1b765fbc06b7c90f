//! The coordinator as a service: probes and Prometheus metrics over real HTTP, the standard
//! gRPC health service, the disk threshold, an online backup taken with the real `prime`
//! binary and restored, and a damaged database refused by the real `coordinator` binary.

use prime_coordinator::CoordinatorConfig;
use prime_proto::pb;
use prime_tests::process::binaries_dir;
use prime_tests::{all_succeeded, list_trials, small_grid, test_coordinator_config, Cluster};
use prime_worker::simulated::{Fault, FaultRule};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(60);

/// A free-space threshold above any real disk: every new checkpoint and grid is refused.
const FULL_DISK: u64 = 1 << 62;

fn with_http(config: &mut CoordinatorConfig) {
    config.http = Some("127.0.0.1:0".parse().expect("an address"));
}

/// GETs `path` from `addr` over HTTP/1.1: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// The samples of a Prometheus text exposition, by series (`name{labels}`).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse().expect("a sample value"))
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    samples(&text)
}

async fn checkpoints(cluster: &Cluster, trial_id: u64) -> Vec<pb::CheckpointInfo> {
    cluster
        .client()
        .trial_checkpoints(pb::TrialRef {
            trial_id,
            ..Default::default()
        })
        .await
        .expect("checkpoints")
        .into_inner()
        .checkpoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_after_a_small_grid_match_its_trials() {
    let mut cluster = Cluster::start_with(4, 2, with_http).await;
    let http = cluster.coordinator().http_addr.expect("an HTTP listener");
    assert_eq!(get(http, "/healthz").await.0, 200);
    let (ready, body) = get(http, "/readyz").await;
    assert_eq!(ready, 200, "{body}");
    let channel = tonic::transport::Endpoint::from_shared(cluster.url())
        .expect("a URL")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: pb::coordinator_server::SERVICE_NAME.to_string(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(
        serving,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    cluster.add_worker("w1", 2, |_| {});
    cluster
        .submit(&small_grid("m", &["darts"], &[1, 2], 2, 1))
        .await;
    let trials = cluster
        .wait_for("m", LIMIT, "every trial", |trials| all_succeeded(trials, 4))
        .await;
    let mut client = cluster.client();
    let (mut stored_points, mut retained_bytes) = (0, 0);
    for trial in &trials {
        let trial_id = trial.trial_id;
        stored_points += client
            .trial_metrics(pb::TrialRef {
                trial_id,
                ..Default::default()
            })
            .await
            .expect("metrics")
            .into_inner()
            .metrics
            .len();
        retained_bytes += checkpoints(&cluster, trial_id)
            .await
            .iter()
            .map(|checkpoint| checkpoint.size)
            .sum::<u64>();
    }
    let samples = scrape(http).await;
    let trial_series: Vec<&String> = samples
        .keys()
        .filter(|series| series.starts_with("prime_trials{"))
        .collect();
    assert_eq!(trial_series, ["prime_trials{state=\"succeeded\"}"]);
    assert_eq!(samples["prime_trials{state=\"succeeded\"}"], 4.0);
    assert!(
        !samples
            .keys()
            .any(|series| series.starts_with("prime_queue_depth{")),
        "the queue is empty: {samples:?}"
    );
    assert_eq!(samples["prime_assignment_latency_seconds_count"], 4.0);
    assert_eq!(samples["prime_attempts_ended{outcome=\"succeeded\"}"], 4.0);
    assert_eq!(samples["prime_trial_retries"], 0.0);
    assert_eq!(samples["prime_workers{condition=\"ready\"}"], 1.0);
    assert_eq!(samples["prime_worker_slots{state=\"total\"}"], 2.0);
    assert_eq!(samples["prime_worker_slots{state=\"busy\"}"], 0.0);
    assert_eq!(
        samples["prime_metric_points_received_total"],
        stored_points as f64
    );
    assert!(retained_bytes > 0);
    assert!(samples["prime_checkpoint_bytes_received_total"] >= retained_bytes as f64);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_false_while_the_state_directory_takes_no_new_file() {
    let cluster = Cluster::start_with(4, 2, with_http).await;
    let http = cluster.coordinator().http_addr.expect("an HTTP listener");
    let state_dir = cluster.state_dir();
    let writable = std::fs::metadata(&state_dir).unwrap().permissions();
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if tempfile::NamedTempFile::new_in(&state_dir).is_ok() {
        std::fs::set_permissions(&state_dir, writable).unwrap();
        eprintln!(
            "SKIPPED readyz_is_false_while_the_state_directory_takes_no_new_file: this process \
             writes into read-only directories (root); the failing write probe is covered by \
             db::check::tests::a_read_only_database_fails_the_write_probe"
        );
        cluster.shutdown().await;
        return;
    }
    let (not_ready, body) = get(http, "/readyz").await;
    let (alive, _) = get(http, "/healthz").await;
    std::fs::set_permissions(&state_dir, writable).unwrap();
    assert_eq!(not_ready, 503, "{body}");
    assert!(
        body.contains(&state_dir.display().to_string()),
        "names the directory: {body}"
    );
    assert_eq!(alive, 200, "alive while not ready");
    assert_eq!(get(http, "/readyz").await.0, 200, "ready again");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_disk_threshold_new_data_is_refused_reads_answer_and_held_checkpoints_arrive() {
    let mut cluster = Cluster::start_with(4, 20, with_http).await;
    let http = cluster.coordinator().http_addr.expect("an HTTP listener");
    cluster
        .submit(&small_grid("d", &["darts"], &[1], 2, 1))
        .await;
    cluster.coordinator().set_min_free_disk(FULL_DISK);
    cluster.add_worker("w1", 1, |_| {});

    let refused = "prime_refused_calls_total{reason=\"resource_exhausted\"}";
    let deadline = tokio::time::Instant::now() + LIMIT;
    while scrape(http).await.get(refused).copied().unwrap_or(0.0) < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint chunk was refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = cluster
        .client()
        .submit_grid(pb::SubmitGridRequest {
            file_name: "more.toml".into(),
            toml: small_grid("more", &["darts"], &[1], 1, 1),
            extend: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let state_dir = cluster.state_dir().display().to_string();
    assert!(
        status.message().contains(&state_dir),
        "{}",
        status.message()
    );
    assert!(list_trials(&cluster.url(), "more").await.is_empty());

    let trials = cluster.trials("d").await;
    assert_eq!(trials.len(), 1, "reads answer");
    let search = trials[0].trial_id;
    assert!(checkpoints(&cluster, search).await.is_empty());
    let workers = cluster
        .client()
        .list_workers(pb::ListWorkersRequest::default())
        .await
        .expect("workers answer")
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 1);

    cluster.coordinator().set_min_free_disk(0);
    cluster
        .wait_for("d", LIMIT, "the grid", |trials| all_succeeded(trials, 2))
        .await;
    let delivered = checkpoints(&cluster, search).await;
    assert!(
        delivered.iter().any(|checkpoint| checkpoint.r#final),
        "the held final artifacts arrived: {delivered:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_during_a_running_grid_holds_every_committed_trial() {
    let prime = tokio::task::spawn_blocking(|| binaries_dir().join("prime"))
        .await
        .unwrap();
    let mut cluster = Cluster::start(4, 20).await;
    cluster.add_worker("w1", 2, |_| {});
    cluster
        .submit(&small_grid("b", &["darts"], &[1, 2], 2, 1))
        .await;
    // Its search hangs on the second slot, so it is running during the backup.
    cluster.trainer.inject(FaultRule {
        method: None,
        seed: Some(7),
        kind: None,
        fault: Fault::Hang { at_epoch: 1 },
        times: 1,
    });
    cluster
        .submit(&small_grid("long", &["darts"], &[7], 2, 1))
        .await;
    let before = cluster
        .wait_for("b", LIMIT, "the first grid", |trials| {
            all_succeeded(trials, 4)
        })
        .await;
    let out = cluster.dir.path().join("backup.sqlite3");
    let (url, target) = (cluster.url(), out.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(prime)
            .args(["admin", "backup", "--coordinator", &url, "--out"])
            .arg(&target)
            .output()
            .expect("running prime admin backup")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let long = cluster.trials("long").await;
    assert_eq!(long[0].state, "running", "a grid ran during the backup");

    let restored_dir = cluster.dir.path().join("restored");
    std::fs::create_dir(&restored_dir).unwrap();
    std::fs::copy(&out, restored_dir.join(prime_coordinator::DATABASE_FILE)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let restored = prime_coordinator::start(listener, &restored_dir, test_coordinator_config())
        .await
        .expect("the backup starts a coordinator");
    let restored_trials = list_trials(&restored.url(), "b").await;
    for trial in &before {
        let copy = restored_trials
            .iter()
            .find(|copy| copy.trial_id == trial.trial_id)
            .unwrap_or_else(|| panic!("trial {} is missing from the backup", trial.trial_id));
        assert_eq!(copy.state, "succeeded");
        assert_eq!(copy.result, trial.result);
    }
    restored.shutdown().await.unwrap();
    cluster.shutdown().await;
}

#[test]
fn the_coordinator_binary_refuses_an_empty_database_file_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join(prime_coordinator::DATABASE_FILE);
    std::fs::write(&database, b"").unwrap();
    let output = Command::new(binaries_dir().join("coordinator"))
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path())
        .output()
        .expect("running the coordinator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&database.display().to_string()), "{stderr}");
    assert!(stderr.contains("empty"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&database).unwrap().len(),
        0,
        "left as it was"
    );
}
