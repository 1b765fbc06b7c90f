//! The worker runtime: registers with the coordinator, keeps its lease with heartbeats,
//! sends step progress between them, and runs the request loop: while a slot has room it asks for a trial on it, and runs each
//! assignment on the slots the coordinator chose, each trial on its own thread.

use crate::config::WorkerConfig;
use crate::progress::report_progress;
use crate::shared::{grace_over, pause, until_shutdown, Shared, MAX_BACKOFF, MIN_BACKOFF};
use crate::slot::{occupy, run_trial};
use crate::trainer::{Device, Trainer};
use prime_proto::client::{connect, is_transient, UrlError};
use prime_proto::pb;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tonic::Code;

/// A worker failure that ends it.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator URL is malformed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The coordinator refused the worker.
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
}

/// Handle to stop a running worker.
#[derive(Clone)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
}

impl WorkerHandle {
    /// Preemption (SIGTERM, SIGUSR1): running trials checkpoint, report "preempted" and stop;
    /// `Worker::run` returns once they have.
    pub fn preempt_and_exit(&self) {
        tracing::info!("preempting running trials and exiting");
        self.shared.begin_shutdown();
    }
}

/// A worker: one slot per device.
pub struct Worker {
    shared: Arc<Shared>,
}

fn slots(devices: &[Device]) -> Vec<pb::Slot> {
    devices
        .iter()
        .enumerate()
        .map(|(index, device)| pb::Slot {
            index: index as u32,
            device: device.to_string(),
        })
        .collect()
}

impl Worker {
    /// A worker for `config` that trains with `trainer`.
    pub fn new(config: WorkerConfig, trainer: Arc<dyn Trainer>) -> Result<Worker, WorkerError> {
        if config.devices.is_empty() {
            return Err(WorkerError::Config(
                "a worker needs at least one device".into(),
            ));
        }
        let client = connect(
            &config.coordinator,
            config.request_timeout,
            &config.credentials,
        )?;
        let (session, _) = watch::channel(0);
        Ok(Worker {
            shared: Arc::new(Shared {
                config,
                trainer,
                client,
                session,
                running: Mutex::new(BTreeMap::new()),
                stalled: Mutex::new(BTreeMap::new()),
                freed: Notify::new(),
                shutting_down: AtomicBool::new(false),
                shutdown: Notify::new(),
                shutdown_deadline: Mutex::new(None),
            }),
        })
    }

    /// A handle to stop the worker.
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs until `WorkerHandle::preempt_and_exit` and every trial has finished, or
    /// the shutdown grace period is over (then unfinished reports are abandoned: their trials
    /// resume from their last committed checkpoint once the coordinator's lease expires).
    pub async fn run(self) -> Result<(), WorkerError> {
        let session_task = tokio::spawn(keep_session(self.shared.clone()));
        let progress_task = tokio::spawn(report_progress(self.shared.clone()));
        let mut requests = tokio::spawn(request_loop(self.shared.clone()));
        tokio::select! {
            joined = &mut requests => {
                if let Err(error) = joined {
                    tracing::error!(%error, "request loop failed");
                }
            }
            _ = grace_over(&self.shared) => {
                tracing::error!(
                    unfinished = self.shared.running().len(),
                    grace_s = self.shared.config.shutdown_grace.as_secs_f64(),
                    "shutdown grace period over: exiting without the unfinished reports; \
                     their trials resume from their last committed checkpoint"
                );
                // Aborting the loop drops its trial tasks with it.
                requests.abort();
            }
        }
        progress_task.abort();
        session_task.abort();
        match session_task.await {
            Ok(Err(error)) => Err(error),
            _ => Ok(()),
        }
    }
}

/// The GPUs as the wire carries them.
fn gpu_reports(shared: &Shared) -> Vec<pb::GpuInfo> {
    shared
        .config
        .gpus
        .snapshot()
        .iter()
        .map(Into::into)
        .collect()
}

async fn register(shared: &Shared) -> Result<pb::RegisterWorkerReply, WorkerError> {
    let mut backoff = MIN_BACKOFF;
    loop {
        let request = pb::RegisterWorkerRequest {
            name: shared.config.name.clone(),
            slots: slots(&shared.config.devices),
            running: shared.running_reports(),
            stalled: shared.stalled_reports(),
            gpus: gpu_reports(shared),
            torch_variant: shared.config.torch.variant.clone(),
            torch_version: shared.config.torch.version.clone(),
        };
        match shared.client.clone().register_worker(request).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) if is_transient(&status) => {
                tracing::warn!(%status, "coordinator unreachable; retrying registration");
            }
            Err(status) => return Err(WorkerError::Refused(status.message().to_string())),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn keep_session(shared: Arc<Shared>) -> Result<(), WorkerError> {
    let mut heartbeat_every = Duration::from_secs(5);
    loop {
        if *shared.session.borrow() == 0 {
            let reply = register(&shared).await?;
            heartbeat_every = Duration::from_millis(reply.heartbeat_ms.max(10));
            for (trial_id, trial) in shared.running().iter() {
                if !reply.accepted.contains(trial_id) {
                    tracing::warn!(trial_id, "trial no longer ours; stopping it");
                    trial.control.stop.store(true, Ordering::SeqCst);
                }
            }
            tracing::info!(session = reply.session, "registered with the coordinator");
            shared.session.send_replace(reply.session);
        }
        tokio::time::sleep(heartbeat_every).await;
        let request = pb::HeartbeatRequest {
            name: shared.config.name.clone(),
            session: *shared.session.borrow(),
            running: shared.running_reports(),
            stalled: shared.stalled_reports(),
            gpus: gpu_reports(&shared),
            progress_only: false,
        };
        match shared.client.clone().heartbeat(request).await {
            Ok(reply) => shared.obey(reply.into_inner()),
            Err(status) if status.code() == Code::Unauthenticated => {
                tracing::warn!(%status, "session expired; registering again");
                shared.session_expired();
            }
            Err(status) => tracing::warn!(%status, "heartbeat failed"),
        }
    }
}

/// Asks for work while a slot has room and starts each assignment as its own task; on
/// shutdown it stops asking and waits for its trials to end.
async fn request_loop(shared: Arc<Shared>) {
    let mut trials = tokio::task::JoinSet::new();
    let mut session_changes = shared.session.subscribe();
    loop {
        while let Some(joined) = trials.try_join_next() {
            if let Err(error) = joined {
                tracing::error!(%error, "trial task failed");
            }
        }
        if shared.shutting_down.load(Ordering::SeqCst) {
            break;
        }
        let session = *session_changes.borrow_and_update();
        if session == 0 {
            tokio::select! {
                _ = session_changes.changed() => {}
                _ = pause(&shared, MAX_BACKOFF) => {}
            }
            continue;
        }
        // Created before the check: a slot freed in between still wakes it.
        let freed = shared.freed.notified();
        let Some(slot) = shared.slot_with_room() else {
            until_shutdown(&shared, freed).await;
            continue;
        };
        let request = pb::RequestTrialRequest {
            name: shared.config.name.clone(),
            session,
            slot,
        };
        match shared.client.clone().request_trial(request).await {
            Ok(reply) => match reply.into_inner().assignment {
                Some(assignment) => {
                    let (slots, control) = occupy(&shared, slot, &assignment);
                    trials.spawn(run_trial(shared.clone(), slots, control, assignment));
                }
                None => pause(&shared, shared.config.poll_interval).await,
            },
            Err(status) if status.code() == Code::Unauthenticated => {
                if *shared.session.borrow() == session {
                    shared.session_expired();
                }
            }
            Err(status) => {
                tracing::warn!(%status, slot, "asking for work failed");
                pause(&shared, shared.config.poll_interval.max(MIN_BACKOFF)).await;
            }
        }
    }
    while let Some(joined) = trials.join_next().await {
        if let Err(error) = joined {
            tracing::error!(%error, "trial task failed");
        }
    }
}
