//! Fuzzing the coordinator's handling of every RPC, over real gRPC with tokens: random and
//! mutated messages from every role. No call may make the coordinator fail internally (a
//! panic in a handler surfaces as `INTERNAL`), and a refused call must leave every trial and
//! worker as they were. Bounded to a few seconds.

use prime_coordinator::auth::TokenSource;
use prime_proto::auth::{new_token, token_sha256};
use prime_proto::client::{connect, Client, Credentials};
use prime_proto::pb::{self, cancel_request::Target, finish_trial_request::Outcome};
use prime_tests::{small_grid, test_coordinator_config, Cluster};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

/// A string a hostile caller might send: empty, long, escapes, or random text.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("victim".to_string()),
        Just("\u{1b}[2J\u{1b}]0;pwned\u{7}".to_string()),
        (1usize..200_000).prop_map(|n| "x".repeat(n)),
        "\\PC{0,64}",
    ]
}

/// An id: the live trial's or session's, or anything.
fn id(real: u64) -> impl Strategy<Value = u64> {
    prop_oneof![Just(real), Just(0u64), Just(u64::MAX), any::<u64>()]
}

/// Byte edits applied to an encoded message.
fn byte_edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 0..6)
}

/// `seed` re-encoded with `edits` applied, if it still decodes; else `seed`.
fn mutated<M: Message + Default + Clone>(seed: &M, edits: &[(usize, u8)]) -> M {
    let mut bytes = seed.encode_to_vec();
    if bytes.is_empty() {
        return seed.clone();
    }
    for &(at, value) in edits {
        let at = at % bytes.len();
        bytes[at] = value;
    }
    M::decode(bytes.as_slice()).unwrap_or_else(|_| seed.clone())
}

/// One fuzzed call: which caller, which RPC, and the material its message is built from.
#[derive(Debug, Clone)]
struct Fuzz {
    caller: usize,
    method: usize,
    text: String,
    other: String,
    trial: u64,
    session: u64,
    number: u64,
    edits: Vec<(usize, u8)>,
}

fn fuzz(trial: u64, session: u64) -> impl Strategy<Value = Fuzz> {
    (
        0usize..6,
        0usize..16,
        hostile_text(),
        hostile_text(),
        id(trial),
        id(session),
        any::<u64>(),
        byte_edits(),
    )
        .prop_map(
            |(caller, method, text, other, trial, session, number, edits)| Fuzz {
                caller,
                method,
                text,
                other,
                trial,
                session,
                number,
                edits,
            },
        )
}

async fn send(client: &mut Client, f: &Fuzz) -> Result<(), tonic::Status> {
    let e = &f.edits;
    let slot = pb::Slot {
        index: f.number as u32,
        device: f.other.clone(),
    };
    match f.method {
        0 => {
            let gpu = pb::GpuInfo {
                index: f.number as u32,
                name: f.other.clone(),
                capability_major: (f.number >> 8) as u32,
                ..Default::default()
            };
            let seed = pb::RegisterWorkerRequest {
                name: f.text.clone(),
                slots: vec![slot; (f.number % 3) as usize],
                gpus: vec![gpu; (f.number % 4) as usize],
                torch_variant: f.other.clone(),
                torch_version: f.text.clone(),
                ..Default::default()
            };
            client.register_worker(mutated(&seed, e)).await.map(drop)
        }
        1 => {
            let seed = pb::HeartbeatRequest {
                name: f.text.clone(),
                session: f.session,
                ..Default::default()
            };
            client.heartbeat(mutated(&seed, e)).await.map(drop)
        }
        2 => {
            let seed = pb::RequestTrialRequest {
                name: f.text.clone(),
                session: f.session,
                slot: f.number as u32,
            };
            client.request_trial(mutated(&seed, e)).await.map(drop)
        }
        3 => {
            let seed = pb::MetricBatch {
                trial_id: f.trial,
                epoch: f.number,
                metrics: vec![pb::Metric {
                    kind: f.other.clone(),
                    epoch: 0,
                    step: f.number,
                    clock: 0.0,
                    values: [(f.text.clone(), f.number as f64)].into(),
                }],
                logs: vec![f.text.clone()],
            };
            client.report_metrics(mutated(&seed, e)).await.map(drop)
        }
        4 => {
            let seed = pb::CheckpointChunk {
                trial_id: f.trial,
                epoch: f.number % 4,
                upload_id: f.other.clone(),
                offset: f.number,
                data: f.text.as_bytes().to_vec(),
                sha256: f.other.clone(),
            };
            client
                .put_checkpoint_chunk(mutated(&seed, e))
                .await
                .map(drop)
        }
        5 => {
            let seed = pb::CommitCheckpointRequest {
                trial_id: f.trial,
                epoch: f.number % 4,
                upload_id: f.other.clone(),
                size: f.number,
                sha256: f.text.clone(),
                ..Default::default()
            };
            client.commit_checkpoint(mutated(&seed, e)).await.map(drop)
        }
        6 => {
            let seed = pb::FinishTrialRequest {
                trial_id: f.trial,
                epoch: f.number % 4,
                outcome: Some(Outcome::Failed(pb::Failure {
                    reason: f.text.clone(),
                    diverged: f.number.is_multiple_of(2),
                    invalid: f.number.is_multiple_of(3),
                    out_of_memory: f.number.is_multiple_of(5),
                })),
            };
            client.finish_trial(mutated(&seed, e)).await.map(drop)
        }
        7 => {
            let seed = pb::SubmitGridRequest {
                file_name: f.other.clone(),
                toml: f.text.clone(),
                extend: false,
            };
            client.submit_grid(mutated(&seed, e)).await.map(drop)
        }
        8 => {
            let target = if f.number.is_multiple_of(2) {
                Target::TrialId(f.trial)
            } else {
                Target::Grid(f.text.clone())
            };
            let seed = pb::CancelRequest {
                target: Some(target),
            };
            client.cancel_trials(mutated(&seed, e)).await.map(drop)
        }
        9 => {
            let seed = pb::SetWorkerModeRequest {
                name: f.text.clone(),
                mode: f.other.clone(),
            };
            client.set_worker_mode(mutated(&seed, e)).await.map(drop)
        }
        10 => {
            let seed = pb::ListTrialsRequest {
                grid: f.text.clone(),
                ..Default::default()
            };
            client.list_trials(mutated(&seed, e)).await.map(drop)
        }
        11 => client
            .list_workers(pb::ListWorkersRequest::default())
            .await
            .map(drop),
        12 => {
            let seed = pb::TrialRef {
                trial_id: f.trial,
                ..Default::default()
            };
            client.trial_logs(mutated(&seed, e)).await.map(drop)
        }
        13 => {
            let seed = pb::TrialRef {
                trial_id: f.trial,
                ..Default::default()
            };
            client.trial_metrics(mutated(&seed, e)).await.map(drop)
        }
        14 => {
            let seed = pb::TrialRef {
                trial_id: f.trial,
                ..Default::default()
            };
            client.trial_checkpoints(mutated(&seed, e)).await.map(drop)
        }
        _ => {
            let seed = pb::ReadCheckpointRequest {
                trial_id: f.trial,
                checkpoint_id: f.number % 8,
                offset: f.number,
                length: f.number as u32,
            };
            client.read_checkpoint(mutated(&seed, e)).await.map(drop)
        }
    }
}

/// Every trial and worker as the admin sees them.
async fn snapshot(admin: &mut Client) -> String {
    let trials = admin
        .list_trials(pb::ListTrialsRequest::default())
        .await
        .expect("the coordinator still answers")
        .into_inner()
        .trials;
    let workers = admin
        .list_workers(pb::ListWorkersRequest::default())
        .await
        .expect("the coordinator still answers")
        .into_inner()
        .workers;
    let trials: Vec<String> = trials
        .iter()
        .map(|t| {
            format!(
                "{}:{}:{}:{}:{}",
                t.trial_id, t.state, t.attempts, t.worker, t.reason
            )
        })
        .collect();
    let workers: Vec<String> = workers
        .iter()
        .map(|w| format!("{}:{}:{}:{:?}", w.name, w.status, w.cordoned, w.trials))
        .collect();
    format!("{trials:?} {workers:?}")
}

fn client_with(url: &str, token: Option<String>) -> Client {
    let credentials = Credentials {
        token,
        ..Credentials::default()
    };
    connect(url, Duration::from_secs(10), &credentials).expect("client")
}

#[test]
fn random_and_mutated_calls_from_every_role_never_fail_internally_and_refusals_change_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<(&str, String)> = ["admin", "worker", "worker", "viewer"]
        .into_iter()
        .map(|role| (role, new_token()))
        .collect();
    let file: String = tokens
        .iter()
        .map(|(role, token)| format!("{role} {}\n", token_sha256(token)))
        .collect();
    std::fs::write(dir.path().join("tokens"), file).unwrap();
    let mut config = test_coordinator_config();
    // Nothing heartbeats here: leases must not expire during the run.
    config.lease = Duration::from_secs(600);
    config.tokens = Some(Arc::new(
        TokenSource::open(&dir.path().join("tokens")).unwrap(),
    ));
    let admin_credentials = Credentials {
        token: Some(tokens[0].1.clone()),
        ..Credentials::default()
    };
    let state_dir = tempfile::tempdir().unwrap();
    let (cluster, trial, session) = runtime.block_on(async {
        let cluster = Cluster::start_in(state_dir, config, admin_credentials, 10, 10).await;
        cluster
            .submit(&small_grid(
                "fuzz",
                &["darts", "darts-prime"],
                &[1, 2],
                1,
                1,
            ))
            .await;
        let mut victim = client_with(&cluster.url(), Some(tokens[1].1.clone()));
        let (session, assignment) = prime_tests::take_a_trial(&mut victim, "victim").await;
        let trial = assignment.trial_id;
        (cluster, trial, session)
    });
    let url = cluster.url();
    let _context = runtime.enter();
    let callers: Vec<Client> = [
        None,
        Some("prime_unknown".to_string()),
        Some(tokens[3].1.clone()),
        Some(tokens[2].1.clone()),
        Some(tokens[1].1.clone()),
        Some(tokens[0].1.clone()),
    ]
    .into_iter()
    .map(|token| client_with(&url, token))
    .collect();
    let admin = cluster.client();
    let mut runner = TestRunner::new(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    });
    let refused_codes = [
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::InvalidArgument,
        Code::NotFound,
        Code::FailedPrecondition,
        Code::ResourceExhausted,
        Code::OutOfRange,
        Code::AlreadyExists,
    ];
    let tally = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    runner
        .run(&fuzz(trial, session), |f| {
            runtime.block_on(async {
                let (mut caller, mut admin) = (callers[f.caller].clone(), admin.clone());
                let before = snapshot(&mut admin).await;
                let result = send(&mut caller, &f).await;
                let after = snapshot(&mut admin).await;
                let code = result.as_ref().err().map_or(Code::Ok, tonic::Status::code);
                *tally
                    .lock()
                    .unwrap()
                    .entry(format!("{code:?}"))
                    .or_default() += 1;
                if let Err(status) = result {
                    prop_assert!(
                        !matches!(status.code(), Code::Internal | Code::Unknown),
                        "internal failure: {status:?}"
                    );
                    if refused_codes.contains(&status.code()) {
                        prop_assert_eq!(before, after, "refused call changed the state");
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    let tally = tally.into_inner().unwrap();
    eprintln!("fuzzed calls by outcome: {tally:?}");
    for code in [
        "Ok",
        "Unauthenticated",
        "PermissionDenied",
        "InvalidArgument",
    ] {
        assert!(tally.contains_key(code), "no call ended {code}: {tally:?}");
    }
    runtime.block_on(cluster.shutdown());
}
