//! Helpers for darts-prime integration tests: whole clusters in one process over real gRPC
//! on 127.0.0.1:0, driven by the simulated trainer.

pub mod process;
pub mod webdriver;

use prime_coordinator::{CoordinatorConfig, RunningCoordinator};
use prime_proto::client::{connect, Client, Credentials};
use prime_proto::pb;
use prime_worker::observer::CheckpointPolicy;
use prime_worker::simulated::SimulatedTrainer;
use prime_worker::{Device, Faults, Worker, WorkerConfig, WorkerHandle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Lease of test coordinators: short, so lost workers are noticed quickly.
pub const TEST_LEASE: Duration = Duration::from_millis(1500);
/// Heartbeat interval of test coordinators.
pub const TEST_HEARTBEAT: Duration = Duration::from_millis(150);

/// A coordinator configuration for tests.
pub fn test_coordinator_config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease: TEST_LEASE,
        heartbeat: TEST_HEARTBEAT,
        keep_checkpoints: 2,
        ..Default::default()
    }
}

/// A worker configuration for tests: fast polling and small chunks.
pub fn test_worker_config(url: &str, name: &str, slots: u32, work_dir: &Path) -> WorkerConfig {
    let mut config = WorkerConfig::new(
        url,
        name,
        (0..slots).map(Device::Cuda).collect(),
        work_dir.to_path_buf(),
    );
    config.checkpoint = CheckpointPolicy {
        every_epochs: 1,
        every: Duration::from_secs(3600),
    };
    config.poll_interval = Duration::from_millis(30);
    config.metric_flush = Duration::from_millis(50);
    config.chunk_size = 16 << 10;
    config.request_timeout = Duration::from_secs(10);
    config
}

/// A worker running as a task of the test's runtime.
pub struct TestWorker {
    /// Its name.
    pub name: String,
    /// Stops it (preemption).
    pub handle: WorkerHandle,
    /// Its injected faults.
    pub faults: Faults,
    /// The task running it.
    pub task: JoinHandle<Result<(), prime_worker::WorkerError>>,
}

/// A coordinator and workers in this process.
pub struct Cluster {
    /// State and work directories.
    pub dir: tempfile::TempDir,
    /// The coordinator.
    pub coordinator: Option<RunningCoordinator>,
    /// The trainer every worker shares.
    pub trainer: Arc<SimulatedTrainer>,
    /// The workers started so far.
    pub workers: Vec<TestWorker>,
    /// What `client` presents (an admin token on a secured coordinator).
    pub credentials: Credentials,
}

impl Cluster {
    /// Starts a coordinator on 127.0.0.1:0 with a simulated trainer of `steps_per_epoch`
    /// steps of `step_ms` milliseconds.
    pub async fn start(steps_per_epoch: u64, step_ms: u64) -> Cluster {
        Cluster::start_with(steps_per_epoch, step_ms, |_| {}).await
    }

    /// Like `start`, with the coordinator's configuration changed by `adjust`.
    pub async fn start_with(
        steps_per_epoch: u64,
        step_ms: u64,
        adjust: impl FnOnce(&mut CoordinatorConfig),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_coordinator_config();
        adjust(&mut config);
        Cluster::start_in(
            dir,
            config,
            Credentials::default(),
            steps_per_epoch,
            step_ms,
        )
        .await
    }

    /// Like `start`, in `dir`, with the coordinator configured by `config` (tokens, TLS) and
    /// a client presenting `credentials`.
    pub async fn start_in(
        dir: tempfile::TempDir,
        config: CoordinatorConfig,
        credentials: Credentials,
        steps_per_epoch: u64,
        step_ms: u64,
    ) -> Cluster {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let coordinator = prime_coordinator::start(listener, &Cluster::state_dir_in(&dir), config)
            .await
            .expect("coordinator starts");
        let trainer = Arc::new(SimulatedTrainer::new(
            steps_per_epoch,
            Duration::from_millis(step_ms),
            40 << 10,
        ));
        Cluster {
            dir,
            coordinator: Some(coordinator),
            trainer,
            workers: Vec::new(),
            credentials,
        }
    }

    /// The coordinator's state directory.
    pub fn state_dir(&self) -> PathBuf {
        Cluster::state_dir_in(&self.dir)
    }

    fn state_dir_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("state")
    }

    /// The running coordinator.
    pub fn coordinator(&self) -> &RunningCoordinator {
        self.coordinator.as_ref().expect("coordinator running")
    }

    /// The coordinator's URL.
    pub fn url(&self) -> String {
        self.coordinator
            .as_ref()
            .expect("coordinator running")
            .url()
    }

    /// A client of the coordinator.
    pub fn client(&self) -> Client {
        connect(&self.url(), Duration::from_secs(10), &self.credentials).expect("client")
    }

    /// The work directory of worker `name`.
    pub fn work_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("workers").join(name)
    }

    /// Starts a worker with `slots` GPUs; `adjust` may change its configuration.
    pub fn add_worker(&mut self, name: &str, slots: u32, adjust: impl FnOnce(&mut WorkerConfig)) {
        let mut config = test_worker_config(&self.url(), name, slots, &self.work_dir(name));
        adjust(&mut config);
        let faults = config.faults.clone();
        let worker = Worker::new(config, self.trainer.clone()).expect("worker");
        let handle = worker.handle();
        let task = tokio::spawn(worker.run());
        self.workers.push(TestWorker {
            name: name.to_string(),
            handle,
            faults,
            task,
        });
    }

    /// Submits a grid; panics with the coordinator's message if it is refused.
    pub async fn submit(&self, toml: &str) -> pb::SubmitGridReply {
        self.client()
            .submit_grid(pb::SubmitGridRequest {
                file_name: "grid.toml".into(),
                toml: toml.to_string(),
                extend: false,
            })
            .await
            .expect("grid accepted")
            .into_inner()
    }

    /// The trials of `grid`.
    pub async fn trials(&self, grid: &str) -> Vec<pb::TrialView> {
        self.client()
            .list_trials(pb::ListTrialsRequest {
                grid: grid.into(),
                ..Default::default()
            })
            .await
            .expect("list trials")
            .into_inner()
            .trials
    }

    /// The log lines of trial `trial_id`, without their times.
    pub async fn log_lines(&self, trial_id: u64) -> Vec<String> {
        self.client()
            .trial_logs(pb::TrialRef {
                trial_id,
                ..Default::default()
            })
            .await
            .expect("trial logs")
            .into_inner()
            .lines
            .into_iter()
            .map(|line| line.line)
            .collect()
    }

    /// Polls the trials of `grid` until `done` holds, or panics after `limit`.
    pub async fn wait_for(
        &self,
        grid: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&[pb::TrialView]) -> bool,
    ) -> Vec<pb::TrialView> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let trials = self
                .client()
                .list_trials(pb::ListTrialsRequest {
                    grid: grid.into(),
                    ..Default::default()
                })
                .await
                .map(|reply| reply.into_inner().trials)
                .unwrap_or_default();
            if done(&trials) {
                return trials;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; trials: {}",
                describe(&trials)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Preempts every worker and waits for them to exit, then stops the coordinator.
    pub async fn shutdown(mut self) {
        for worker in self.workers.drain(..) {
            worker.handle.preempt_and_exit();
            let _ = tokio::time::timeout(Duration::from_secs(10), worker.task).await;
        }
        if let Some(coordinator) = self.coordinator.take() {
            coordinator.shutdown().await.expect("coordinator stops");
        }
    }
}

/// A grid of `methods` x `seeds` on CIFAR-10 with `epochs` search epochs and one evaluation
/// of `eval_epochs` per genotype.
pub fn small_grid(
    name: &str,
    methods: &[&str],
    seeds: &[u64],
    epochs: u32,
    eval_epochs: u32,
) -> String {
    let mut text = format!(
        "version = 1\nname = \"{name}\"\ndatasets = [\"cifar10\"]\nseeds = {seeds:?}\nretries = 2\n\
         [search]\nepochs = {epochs}\n[evaluation]\nseeds = 1\nrun = {{ epochs = {eval_epochs} }}\n"
    );
    for method in methods {
        text.push_str(&format!("[[methods]]\npreset = \"{method}\"\n"));
    }
    text
}

/// Trial id, state, worker and reason of each trial, for failure messages.
fn describe(trials: &[pb::TrialView]) -> String {
    let states: Vec<String> = trials
        .iter()
        .map(|t| format!("{}:{}:{}:{}", t.trial_id, t.state, t.worker, t.reason))
        .collect();
    format!("{states:?}")
}

/// Whether every trial is succeeded.
pub fn all_succeeded(trials: &[pb::TrialView], expected: usize) -> bool {
    trials.len() == expected && trials.iter().all(|trial| trial.state == "succeeded")
}

/// The trials of `grid` at the coordinator `url`; empty while it is unreachable.
pub async fn list_trials(url: &str, grid: &str) -> Vec<pb::TrialView> {
    let Ok(mut client) = connect(url, Duration::from_secs(5), &Credentials::default()) else {
        return Vec::new();
    };
    client
        .list_trials(pb::ListTrialsRequest {
            grid: grid.into(),
            ..Default::default()
        })
        .await
        .map(|reply| reply.into_inner().trials)
        .unwrap_or_default()
}

/// Polls the trials of `grid` at `url` until `done` holds, or panics after `limit`.
pub async fn wait_for(
    url: &str,
    grid: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&[pb::TrialView]) -> bool,
) -> Vec<pb::TrialView> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let trials = list_trials(url, grid).await;
        if done(&trials) {
            return trials;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; trials: {}",
                describe(&trials)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers a one-slot worker `name` through `client` (a hand-driven worker session, as an
/// attacker's victim) and takes a trial on its slot 0; returns the session and the assignment.
pub async fn take_a_trial(client: &mut Client, name: &str) -> (u64, pb::Assignment) {
    let session = client
        .register_worker(pb::RegisterWorkerRequest {
            name: name.into(),
            slots: vec![pb::Slot {
                index: 0,
                device: "cuda:0".into(),
            }],
            ..Default::default()
        })
        .await
        .expect("the worker registers")
        .into_inner()
        .session;
    let assignment = client
        .request_trial(pb::RequestTrialRequest {
            name: name.into(),
            session,
            slot: 0,
        })
        .await
        .expect("the request is answered")
        .into_inner()
        .assignment
        .expect("a queued trial is assigned");
    (session, assignment)
}
