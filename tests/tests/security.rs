//! The coordinator as a secured service: a grid over mutual TLS with tokens, every RPC from
//! every role allowed or refused as the role table says (with nothing stored changing on a
//! refusal), token rotation on SIGHUP, and the refusal to serve a non-loopback address
//! without tokens. Certificates and tokens come from the real `prime certs init` and
//! `prime token new`.

use prime_coordinator::auth::TokenSource;
use prime_coordinator::tls::ServerTls;
use prime_proto::client::{connect, Client, Credentials};
use prime_proto::pb::{self, cancel_request::Target, finish_trial_request::Outcome};
use prime_tests::process::{binaries_dir, start_coordinator_with, start_worker_with};
use prime_tests::{all_succeeded, small_grid, test_coordinator_config, Cluster};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `prime ARGS`; its stdout, or a panic with its stderr.
fn prime(args: &[&str]) -> String {
    let output = Command::new(binaries_dir().join("prime"))
        .args(args)
        .output()
        .expect("running prime");
    assert!(
        output.status.success(),
        "prime {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A new token of `role` from `prime token new`: (token, tokens-file line).
fn new_token(role: &str) -> (String, String) {
    let json: serde_json::Value =
        serde_json::from_str(prime(&["token", "new", "--role", role]).trim()).expect("JSON");
    assert_eq!(json["role"], role);
    let token = json["token"].as_str().expect("token").to_string();
    let line = format!("{role} {}\n", json["sha256"].as_str().expect("sha256"));
    (token, line)
}

/// `prime certs init` for 127.0.0.1 into `dir/certs`.
fn certificates(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    prime(&[
        "certs",
        "init",
        "--out",
        certs.to_str().unwrap(),
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
    ]);
    certs
}

fn credentials(token: Option<&str>, certs: &Path) -> Credentials {
    Credentials {
        token: token.map(str::to_string),
        ca: Some(certs.join("ca.pem")),
        identity: Some((certs.join("client.pem"), certs.join("client.key"))),
    }
}

fn client(url: &str, token: Option<&str>, certs: &Path) -> Client {
    connect(url, Duration::from_secs(10), &credentials(token, certs)).expect("client")
}

/// What a refusal leaves unchanged: every trial and worker as the admin sees them, and the
/// held trial's logs and metrics.
async fn snapshot(admin: &mut Client, trial_id: u64) -> String {
    let trials = admin
        .list_trials(pb::ListTrialsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .trials;
    let workers = admin
        .list_workers(pb::ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workers;
    let logs = admin
        .trial_logs(pb::TrialRef {
            trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .lines
        .len();
    let metrics = admin
        .trial_metrics(pb::TrialRef {
            trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .metrics
        .len();
    let trials: Vec<String> = trials
        .iter()
        .map(|t| {
            format!(
                "{}:{}:{}:{}:{}:{}:{}",
                t.trial_id,
                t.state,
                t.attempts,
                t.failures,
                t.worker,
                t.reason,
                t.result.is_some()
            )
        })
        .collect();
    let workers: Vec<String> = workers
        .iter()
        .map(|w| format!("{}:{}:{}:{:?}", w.name, w.status, w.cordoned, w.trials))
        .collect();
    format!("{trials:?} {workers:?} logs={logs} metrics={metrics}")
}

/// The worker session and running trial every call of the table acts on.
#[derive(Clone, Copy)]
struct Held {
    session: u64,
    trial_id: u64,
    epoch: u64,
}

const VICTIM: &str = "victim";

/// Calls RPC `method` as a hostile or careless caller would, against `target`; the status
/// code it gets.
async fn call(client: &mut Client, method: &str, target: Held) -> Code {
    let Held {
        session,
        trial_id,
        epoch,
    } = target;
    let result = match method {
        "RegisterWorker" => client
            .register_worker(pb::RegisterWorkerRequest {
                name: VICTIM.into(),
                slots: vec![pb::Slot {
                    index: 0,
                    device: "cuda:0".into(),
                }],
                ..Default::default()
            })
            .await
            .map(drop),
        "Heartbeat" => client
            .heartbeat(pb::HeartbeatRequest {
                name: VICTIM.into(),
                session,
                ..Default::default()
            })
            .await
            .map(drop),
        "RequestTrial" => client
            .request_trial(pb::RequestTrialRequest {
                name: VICTIM.into(),
                session,
                slot: 0,
            })
            .await
            .map(drop),
        "ReportMetrics" => client
            .report_metrics(pb::MetricBatch {
                trial_id,
                epoch,
                metrics: Vec::new(),
                logs: vec!["forged line".into()],
            })
            .await
            .map(drop),
        "PutCheckpointChunk" => client
            .put_checkpoint_chunk(pb::CheckpointChunk {
                trial_id,
                epoch,
                upload_id: "forged".into(),
                offset: 0,
                data: vec![1, 2, 3],
                sha256: "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81".into(),
            })
            .await
            .map(drop),
        "CommitCheckpoint" => client
            .commit_checkpoint(pb::CommitCheckpointRequest {
                trial_id,
                epoch,
                upload_id: "forged".into(),
                size: 3,
                sha256: "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "FinishTrial" => client
            .finish_trial(pb::FinishTrialRequest {
                trial_id,
                epoch,
                outcome: Some(Outcome::Failed(pb::Failure {
                    reason: "forged".into(),
                    diverged: false,
                    invalid: true,
                    out_of_memory: false,
                })),
            })
            .await
            .map(drop),
        "SubmitGrid" => client
            .submit_grid(pb::SubmitGridRequest {
                file_name: "forged.toml".into(),
                toml: small_grid("forged", &["darts"], &[1], 1, 1),
                extend: false,
            })
            .await
            .map(drop),
        "CancelTrials" => client
            .cancel_trials(pb::CancelRequest {
                target: Some(Target::TrialId(trial_id)),
            })
            .await
            .map(drop),
        "SetWorkerMode" => client
            .set_worker_mode(pb::SetWorkerModeRequest {
                name: VICTIM.into(),
                mode: "drain".into(),
            })
            .await
            .map(drop),
        "ListTrials" => client
            .list_trials(pb::ListTrialsRequest::default())
            .await
            .map(drop),
        "ListWorkers" => client
            .list_workers(pb::ListWorkersRequest::default())
            .await
            .map(drop),
        "TrialLogs" => client
            .trial_logs(pb::TrialRef {
                trial_id,
                ..Default::default()
            })
            .await
            .map(drop),
        "TrialMetrics" => client
            .trial_metrics(pb::TrialRef {
                trial_id,
                ..Default::default()
            })
            .await
            .map(drop),
        "TrialCheckpoints" => client
            .trial_checkpoints(pb::TrialRef {
                trial_id,
                ..Default::default()
            })
            .await
            .map(drop),
        "ReadCheckpoint" => client
            .read_checkpoint(pb::ReadCheckpointRequest {
                trial_id,
                checkpoint_id: 1,
                offset: 0,
                length: 16,
            })
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => {
            assert!(
                !status.message().contains("prime_"),
                "a refusal echoed a token: {status:?}"
            );
            status.code()
        }
    }
}

const WORKER_CALLS: [&str; 7] = [
    "RegisterWorker",
    "Heartbeat",
    "RequestTrial",
    "ReportMetrics",
    "PutCheckpointChunk",
    "CommitCheckpoint",
    "FinishTrial",
];
const ADMIN_CALLS: [&str; 3] = ["SubmitGrid", "CancelTrials", "SetWorkerMode"];
const READ_CALLS: [&str; 4] = ["ListTrials", "ListWorkers", "TrialLogs", "TrialMetrics"];
const CHECKPOINT_CALLS: [&str; 2] = ["TrialCheckpoints", "ReadCheckpoint"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_mutual_tls_with_tokens_a_grid_runs_and_every_role_gets_only_what_the_table_allows() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let (admin, admin_line) = new_token("admin");
    let (worker_a, worker_a_line) = new_token("worker");
    let (worker_b, worker_b_line) = new_token("worker");
    let (intruder, intruder_line) = new_token("worker");
    let (viewer, viewer_line) = new_token("viewer");
    let tokens_path = dir.path().join("tokens");
    std::fs::write(
        &tokens_path,
        format!("# cluster tokens\n{admin_line}{worker_a_line}{worker_b_line}\n{intruder_line}{viewer_line}"),
    )
    .unwrap();
    let mut config = test_coordinator_config();
    config.tokens = Some(Arc::new(TokenSource::open(&tokens_path).unwrap()));
    config.tls = Some(ServerTls {
        cert: certs.join("server.pem"),
        key: certs.join("server.key"),
        client_ca: Some(certs.join("ca.pem")),
    });
    let state_dir = tempfile::tempdir().unwrap();
    let mut cluster =
        Cluster::start_in(state_dir, config, credentials(Some(&admin), &certs), 10, 10).await;
    let url = cluster.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // A whole grid over TLS: the worker presents its worker token and client certificate.
    let worker_credentials = credentials(Some(&worker_a), &certs);
    cluster.add_worker("w1", 1, |config| config.credentials = worker_credentials);
    cluster
        .submit(&small_grid("secure", &["darts"], &[1], 1, 1))
        .await;
    cluster
        .wait_for("secure", LIMIT, "the grid over TLS", |trials| {
            all_succeeded(trials, 2)
        })
        .await;

    // A victim worker session holding a running trial, registered with worker token B.
    let mut admin_client = cluster.client();
    admin_client
        .set_worker_mode(pb::SetWorkerModeRequest {
            name: "w1".into(),
            mode: "cordon".into(),
        })
        .await
        .unwrap();
    cluster
        .submit(&small_grid("held", &["darts"], &[2], 1, 1))
        .await;
    let mut victim = client(&url, Some(&worker_b), &certs);
    let (session, assignment) = prime_tests::take_a_trial(&mut victim, VICTIM).await;
    let target = Held {
        session,
        trial_id: assignment.trial_id,
        epoch: assignment.epoch,
    };

    // The role table. Each refusal is checked to leave every trial and worker unchanged.
    let every: Vec<&str> = [
        &WORKER_CALLS[..],
        &ADMIN_CALLS,
        &READ_CALLS,
        &CHECKPOINT_CALLS,
    ]
    .concat();
    let session_calls = [
        "RegisterWorker",
        "Heartbeat",
        "RequestTrial",
        "ReportMetrics",
        "PutCheckpointChunk",
        "CommitCheckpoint",
        "FinishTrial",
    ];
    let intruder_refused: Vec<&str> = [
        &WORKER_CALLS[..],
        &ADMIN_CALLS,
        &READ_CALLS,
        &CHECKPOINT_CALLS,
    ]
    .concat();
    let refusals: Vec<(&str, Option<&str>, Code, Vec<&str>)> = vec![
        ("no token", None, Code::Unauthenticated, every.clone()),
        (
            "unknown token",
            Some("prime_00000000000000000000000000000000"),
            Code::Unauthenticated,
            every.clone(),
        ),
        (
            "viewer",
            Some(&viewer),
            Code::PermissionDenied,
            [&WORKER_CALLS[..], &ADMIN_CALLS].concat(),
        ),
        (
            "another worker's token",
            Some(&intruder),
            Code::PermissionDenied,
            intruder_refused,
        ),
        (
            "admin acting as the victim's session",
            Some(&admin),
            Code::PermissionDenied,
            session_calls.to_vec(),
        ),
    ];
    for (who, token, code, methods) in refusals {
        let mut caller = client(&url, token, &certs);
        for method in methods {
            let before = snapshot(&mut admin_client, target.trial_id).await;
            let got = call(&mut caller, method, target).await;
            assert_eq!(got, code, "{method} from {who}");
            let after = snapshot(&mut admin_client, target.trial_id).await;
            assert_eq!(before, after, "{method} from {who} changed the state");
        }
    }

    // What each role may do, it can.
    let mut viewer_client = client(&url, Some(&viewer), &certs);
    for method in [&READ_CALLS[..], &CHECKPOINT_CALLS].concat() {
        let code = call(&mut viewer_client, method, target).await;
        assert!(
            !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
            "{method} from the viewer: {code:?}"
        );
    }
    for method in ["Heartbeat", "ReportMetrics", "TrialCheckpoints"] {
        assert_eq!(
            call(&mut victim, method, target).await,
            Code::Ok,
            "{method}"
        );
    }
    assert_eq!(
        call(&mut victim, "ListTrials", target).await,
        Code::PermissionDenied
    );
    assert_eq!(
        call(&mut admin_client, "CancelTrials", target).await,
        Code::Ok
    );

    // TLS is required: neither plain HTTP/2 nor a client without a certificate gets in.
    let plain = url.replacen("https://", "http://", 1);
    let mut plain_client = connect(
        &plain,
        Duration::from_secs(5),
        &Credentials {
            token: Some(admin.clone()),
            ..Credentials::default()
        },
    )
    .unwrap();
    assert_ne!(
        call(&mut plain_client, "ListTrials", target).await,
        Code::Ok
    );
    let mut no_certificate = connect(
        &url,
        Duration::from_secs(5),
        &Credentials {
            token: Some(admin.clone()),
            ca: Some(certs.join("ca.pem")),
            identity: None,
        },
    )
    .unwrap();
    assert_ne!(
        call(&mut no_certificate, "ListTrials", target).await,
        Code::Ok
    );
    cluster.shutdown().await;
}

/// Polls `check` every 50 ms until it holds, or panics after `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn list_code(url: &str, token: &str) -> Code {
    let credentials = Credentials {
        token: Some(token.to_string()),
        ..Credentials::default()
    };
    let mut client = connect(url, Duration::from_secs(5), &credentials).unwrap();
    match client.list_trials(pb::ListTrialsRequest::default()).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_tokens_and_running_trials_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (old_admin, old_admin_line) = new_token("admin");
    let (new_admin, new_admin_line) = new_token("admin");
    let (worker, worker_line) = new_token("worker");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{old_admin_line}{worker_line}")).unwrap();
    let (coordinator, addr) = start_coordinator_with(
        &dir.path().join("state"),
        "127.0.0.1:0",
        &dir.path().join("coordinator.log"),
        &["--tokens", tokens.to_str().unwrap()],
    );
    let url = format!("http://{addr}");
    let worker_token = dir.path().join("worker.token");
    std::fs::write(&worker_token, format!("{worker}\n")).unwrap();
    let _worker = start_worker_with(
        &url,
        "w1",
        &dir.path().join("w1"),
        20,
        &dir.path().join("w1.log"),
        &["--token-file", worker_token.to_str().unwrap()],
    );

    // The CLI takes the admin token from a file; without one it says how to give it.
    let admin_token = dir.path().join("admin.token");
    std::fs::write(&admin_token, &old_admin).unwrap();
    let grid = dir.path().join("grid.toml");
    std::fs::write(&grid, small_grid("rotate", &["darts"], &[1], 40, 1)).unwrap();
    let submitted = prime(&[
        "submit",
        grid.to_str().unwrap(),
        "--coordinator",
        &url,
        "--token-file",
        admin_token.to_str().unwrap(),
    ]);
    assert!(!submitted.contains(&old_admin));
    let refused = Command::new(binaries_dir().join("prime"))
        .args(["status", "--coordinator", &url])
        .env_remove("PRIME_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--token-file"), "{stderr}");

    let running = |trials: &[pb::TrialView]| trials.iter().any(|t| t.state == "running");
    let admin_client = |token: &str| {
        connect(
            &url,
            Duration::from_secs(5),
            &Credentials {
                token: Some(token.to_string()),
                ..Credentials::default()
            },
        )
        .unwrap()
    };
    let mut old = admin_client(&old_admin);
    eventually(LIMIT, "the search running", async || {
        old.list_trials(pb::ListTrialsRequest::default())
            .await
            .is_ok_and(|reply| running(&reply.into_inner().trials))
    })
    .await;
    assert_eq!(list_code(&url, &new_admin).await, Code::Unauthenticated);

    std::fs::write(&tokens, format!("{new_admin_line}{worker_line}")).unwrap();
    coordinator.signal("HUP");
    eventually(LIMIT, "the new admin token accepted", async || {
        list_code(&url, &new_admin).await == Code::Ok
    })
    .await;
    assert_eq!(list_code(&url, &old_admin).await, Code::Unauthenticated);

    // A token file that no longer parses leaves the tokens in force.
    std::fs::write(&tokens, "admin not-a-hash\n").unwrap();
    coordinator.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(list_code(&url, &new_admin).await, Code::Ok);

    let mut new = admin_client(&new_admin);
    eventually(
        LIMIT,
        "the grid finished on the first attempt",
        async || {
            new.list_trials(pb::ListTrialsRequest::default())
                .await
                .is_ok_and(|reply| {
                    let trials = reply.into_inner().trials;
                    all_succeeded(&trials, 2) && trials.iter().all(|t| t.attempts == 1)
                })
        },
    )
    .await;
    let log = coordinator.log_text();
    assert!(log.contains("token file not reloaded"), "{log}");
    assert!(!log.contains(&old_admin) && !log.contains(&new_admin));
}

#[test]
fn a_non_loopback_address_needs_tokens_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binaries_dir().join("coordinator"))
        .args(["--listen", "0.0.0.0:0", "--state"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen"), "{stderr}");
    assert!(
        stderr.contains("--tokens") && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "nothing is created before the refusal"
    );

    let (mut insecure, _addr) = start_coordinator_with(
        &dir.path().join("state"),
        "0.0.0.0:0",
        &dir.path().join("insecure.log"),
        &["--insecure"],
    );
    let deadline = std::time::Instant::now() + LIMIT;
    while !insecure
        .log_text()
        .contains("--insecure: serving without tokens")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no insecure warning logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    insecure.kill9();
}
