//! The gRPC service: translates requests into event-loop calls and maps domain errors to
//! statuses. Wire messages are converted to domain values here, at the edge (`edge`), and
//! back for the replies. Checkpoint bytes are written and verified off the event loop.

use crate::error::CoordinatorError;
use crate::event_loop::StateHandle;
use crate::latency::AssignmentTimings;
use crate::metric_rows;
use crate::model::{NewCheckpoint, RunningReport, StalledSlot, WorkerSlot, NO_PROGRESS};
use crate::store::{CheckpointStore, StoreError};
use crate::trials::Finish;
use crate::workers::WorkerMode;
use prime_core::trial::TrialResult;
use prime_proto::convert::{gpus_from_wire, hardware_from_wire};
use prime_proto::pb::coordinator_server::Coordinator;
use prime_proto::pb::{self, finish_trial_request::Outcome};
use prime_proto::verify::{verify_checkpoint_archive, Expect};
use std::sync::Arc;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

/// Largest checkpoint read served in one call.
const MAX_READ_BYTES: u32 = 4 << 20;

/// The coordinator's gRPC service.
#[derive(Clone)]
pub struct CoordinatorService {
    state: StateHandle,
    store: Arc<dyn CheckpointStore>,
    timings: Arc<AssignmentTimings>,
}

type Reply<T> = Result<Response<T>, Status>;

fn staged_name(trial_id: u64, epoch: u64, upload_id: &str) -> String {
    format!("t{trial_id}-e{epoch}-{upload_id}")
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CoordinatorError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|_| CoordinatorError::ShuttingDown)?
        .map_err(|error| match error {
            StoreError::Mismatch(message) => CoordinatorError::Integrity(message),
            StoreError::Unreadable(message) => CoordinatorError::Invalid(format!(
                "checkpoint refused, not committed (it cannot be opened): {message}"
            )),
            other => CoordinatorError::Store(other),
        })
}

impl CoordinatorService {
    /// A service over the event loop `state` and the checkpoint `store` that records the
    /// latency of its assignments in `timings`.
    pub fn new(
        state: StateHandle,
        store: Arc<dyn CheckpointStore>,
        timings: Arc<AssignmentTimings>,
    ) -> Self {
        CoordinatorService {
            state,
            store,
            timings,
        }
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Reply<pb::RegisterWorkerReply> {
        let request = request.into_inner();
        let now = Instant::now();
        let name = request.name;
        let slots: Vec<WorkerSlot> = request.slots.into_iter().map(Into::into).collect();
        let running: Vec<RunningReport> = request.running.iter().map(Into::into).collect();
        let stalled: Vec<StalledSlot> = request.stalled.into_iter().map(Into::into).collect();
        let hardware =
            hardware_from_wire(request.gpus, request.torch_variant, request.torch_version)
                .map_err(|error| CoordinatorError::Invalid(error.to_string()))?;
        let (session, accepted, lease, heartbeat) = self
            .state
            .try_call(move |state| {
                let (session, accepted) = state.register(&name, slots, &running, now)?;
                state.record_stalled(&name, session, stalled, now)?;
                state.record_hardware(&name, session, hardware)?;
                Ok((
                    session,
                    accepted,
                    state.config.lease,
                    state.config.heartbeat,
                ))
            })
            .await?;
        Ok(Response::new(pb::RegisterWorkerReply {
            session,
            lease_ms: lease.as_millis() as u64,
            heartbeat_ms: heartbeat.as_millis() as u64,
            accepted,
        }))
    }

    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Reply<pb::HeartbeatReply> {
        let request = request.into_inner();
        let now = Instant::now();
        let (name, session) = (request.name, request.session);
        let running: Vec<RunningReport> = request.running.iter().map(Into::into).collect();
        let stalled: Vec<StalledSlot> = request.stalled.into_iter().map(Into::into).collect();
        let gpus = gpus_from_wire(request.gpus)
            .map_err(|error| CoordinatorError::Invalid(error.to_string()))?;
        let orders = self
            .state
            .try_call(move |state| {
                let orders = state.heartbeat(&name, session, &running, now)?;
                state.record_stalled(&name, session, stalled, now)?;
                state.record_gpus(&name, session, gpus)?;
                Ok(orders)
            })
            .await?;
        Ok(Response::new(pb::HeartbeatReply {
            stop: orders.stop,
            preempt: orders.preempt,
        }))
    }

    async fn request_trial(
        &self,
        request: Request<pb::RequestTrialRequest>,
    ) -> Reply<pb::RequestTrialReply> {
        let received = std::time::Instant::now();
        let request = request.into_inner();
        let now = Instant::now();
        let (assignment, queued, on_loop) = self
            .state
            .try_call(move |state| {
                let started = std::time::Instant::now();
                let assignment =
                    state.request_trial(&request.name, request.session, request.slot, now)?;
                Ok((
                    assignment,
                    started.saturating_duration_since(received),
                    started.elapsed(),
                ))
            })
            .await?;
        if assignment.is_some() {
            self.timings.queued.record(queued);
            self.timings.on_loop.record(on_loop);
            self.timings.total.record(received.elapsed());
        }
        Ok(Response::new(pb::RequestTrialReply {
            assignment: assignment.as_ref().map(Into::into),
        }))
    }

    async fn report_metrics(&self, request: Request<pb::MetricBatch>) -> Reply<pb::Ack> {
        let batch = request.into_inner();
        let rows = metric_rows::rows_of(&batch)?;
        self.state
            .ingest_metrics(batch.trial_id, batch.epoch, rows, batch.logs)
            .await?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn put_checkpoint_chunk(&self, request: Request<pb::CheckpointChunk>) -> Reply<pb::Ack> {
        let chunk = request.into_inner();
        let (trial_id, epoch) = (chunk.trial_id, chunk.epoch);
        self.state
            .try_call(move |state| state.check_fence(trial_id, epoch))
            .await?;
        let store = self.store.clone();
        let name = staged_name(trial_id, epoch, &chunk.upload_id);
        blocking(move || store.write_chunk(&name, chunk.offset, &chunk.data, &chunk.sha256))
            .await?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn commit_checkpoint(
        &self,
        request: Request<pb::CommitCheckpointRequest>,
    ) -> Reply<pb::CommitCheckpointReply> {
        let commit = request.into_inner();
        let (trial_id, epoch) = (commit.trial_id, commit.epoch);
        self.state
            .try_call(move |state| state.check_fence(trial_id, epoch))
            .await?;
        let name = staged_name(trial_id, epoch, &commit.upload_id);
        let key = format!("{name}.tar");
        let store = self.store.clone();
        let (staged, object, sha256) = (name.clone(), key.clone(), commit.sha256.clone());
        let expect = if commit.r#final {
            Expect::Artifacts
        } else {
            Expect::Resumable
        };
        let verify = move |archive: &mut dyn std::io::Read| {
            verify_checkpoint_archive(archive, expect)
                .map(drop)
                .map_err(|error| error.to_string())
        };
        let committed =
            blocking(move || store.commit(&staged, commit.size, &sha256, &object, &verify)).await;
        if let Err(CoordinatorError::Invalid(message)) = &committed {
            tracing::error!(trial_id, epoch, %message, "checkpoint refused");
            let line = format!("a checkpoint upload was refused: {message}");
            // Best effort: the refusal itself is what the worker must hear.
            let _ = self
                .state
                .ingest_metrics(trial_id, epoch, Vec::new(), vec![line])
                .await;
        }
        committed?;
        let checkpoint = NewCheckpoint {
            size: commit.size,
            sha256: commit.sha256,
            progress: commit.progress.as_ref().map_or(NO_PROGRESS, Into::into),
            is_final: commit.r#final,
            score: commit.score.filter(|score| score.is_finite()),
            key: key.clone(),
        };
        let recorded = self
            .state
            .try_call(move |state| state.record_checkpoint(trial_id, epoch, &checkpoint))
            .await;
        let store = self.store.clone();
        let (checkpoint_id, doomed) = match recorded {
            Ok(recorded) => recorded,
            Err(error) => {
                blocking(move || store.delete(&key)).await?;
                return Err(error.into());
            }
        };
        blocking(move || doomed.iter().try_for_each(|key| store.delete(key))).await?;
        Ok(Response::new(pb::CommitCheckpointReply { checkpoint_id }))
    }

    async fn read_checkpoint(
        &self,
        request: Request<pb::ReadCheckpointRequest>,
    ) -> Reply<pb::ReadCheckpointReply> {
        let read = request.into_inner();
        let (trial_id, checkpoint_id) = (read.trial_id, read.checkpoint_id);
        let key = self
            .state
            .try_call(move |state| {
                state
                    .checkpoints(trial_id)?
                    .into_iter()
                    .find(|checkpoint| checkpoint.id == checkpoint_id)
                    .map(|checkpoint| checkpoint.key)
                    .ok_or_else(|| {
                        CoordinatorError::Invalid(format!(
                            "trial {trial_id} has no retained checkpoint {checkpoint_id}"
                        ))
                    })
            })
            .await?;
        let store = self.store.clone();
        let length = read.length.min(MAX_READ_BYTES) as usize;
        let data = blocking(move || store.read(&key, read.offset, length)).await?;
        Ok(Response::new(pb::ReadCheckpointReply { data }))
    }

    async fn finish_trial(&self, request: Request<pb::FinishTrialRequest>) -> Reply<pb::Ack> {
        let request = request.into_inner();
        let finish = match request.outcome {
            Some(Outcome::Succeeded(result)) => match TrialResult::try_from(result) {
                Ok(result) => Finish::Succeeded(result),
                Err(error) => Finish::MalformedResult(format!("invalid result: {error}")),
            },
            Some(Outcome::Failed(failure)) => Finish::Failed {
                reason: failure.reason,
                diverged: failure.diverged,
                invalid: failure.invalid,
            },
            Some(Outcome::Preempted(_)) => Finish::Preempted,
            None => {
                return Err(Status::invalid_argument(
                    "a finished trial needs an outcome",
                ))
            }
        };
        let (trial_id, epoch) = (request.trial_id, request.epoch);
        self.state
            .try_call(move |state| state.finish(trial_id, epoch, finish))
            .await?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn submit_grid(
        &self,
        request: Request<pb::SubmitGridRequest>,
    ) -> Reply<pb::SubmitGridReply> {
        let request = request.into_inner();
        let (grid, count) = self
            .state
            .try_call(move |state| state.submit_grid(&request.file_name, &request.toml))
            .await?;
        Ok(Response::new(pb::SubmitGridReply {
            grid,
            search_trials: count as u32,
        }))
    }

    async fn list_trials(
        &self,
        request: Request<pb::ListTrialsRequest>,
    ) -> Reply<pb::ListTrialsReply> {
        let grid = request.into_inner().grid;
        let trials = self
            .state
            .call(move |state| state.list_trials(&grid))
            .await?;
        Ok(Response::new(pb::ListTrialsReply {
            trials: trials.iter().map(Into::into).collect(),
        }))
    }

    async fn cancel_trials(&self, request: Request<pb::CancelRequest>) -> Reply<pb::CancelReply> {
        let (trial_id, grid) = match request.into_inner().target {
            Some(pb::cancel_request::Target::TrialId(id)) => (Some(id), None),
            Some(pb::cancel_request::Target::Grid(grid)) => (None, Some(grid)),
            None => {
                return Err(Status::invalid_argument(
                    "cancel needs a trial id or a grid",
                ))
            }
        };
        let cancelled = self
            .state
            .try_call(move |state| state.cancel(trial_id, grid.as_deref()))
            .await?;
        Ok(Response::new(pb::CancelReply {
            cancelled: cancelled as u32,
        }))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Reply<pb::ListWorkersReply> {
        let now = Instant::now();
        let workers = self
            .state
            .call(move |state| state.list_workers(now))
            .await?;
        Ok(Response::new(pb::ListWorkersReply {
            workers: workers.iter().map(Into::into).collect(),
        }))
    }

    async fn set_worker_mode(&self, request: Request<pb::SetWorkerModeRequest>) -> Reply<pb::Ack> {
        let request = request.into_inner();
        let mode: WorkerMode = request.mode.parse()?;
        self.state
            .try_call(move |state| state.set_worker_mode(&request.name, mode))
            .await?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn trial_logs(&self, request: Request<pb::TrialRef>) -> Reply<pb::TrialLogsReply> {
        let trial_id = request.into_inner().trial_id;
        let lines = self
            .state
            .try_call(move |state| state.logs(trial_id))
            .await?
            .into_iter()
            .map(|(unix_ms, line)| pb::LogLine { unix_ms, line })
            .collect();
        Ok(Response::new(pb::TrialLogsReply { lines }))
    }

    async fn trial_metrics(&self, request: Request<pb::TrialRef>) -> Reply<pb::TrialMetricsReply> {
        let trial_id = request.into_inner().trial_id;
        let metrics = self
            .state
            .try_call(move |state| state.metrics(trial_id))
            .await?
            .iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(pb::TrialMetricsReply { metrics }))
    }

    async fn trial_checkpoints(
        &self,
        request: Request<pb::TrialRef>,
    ) -> Reply<pb::TrialCheckpointsReply> {
        let trial_id = request.into_inner().trial_id;
        let checkpoints = self
            .state
            .try_call(move |state| state.checkpoints(trial_id))
            .await?
            .iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(pb::TrialCheckpointsReply { checkpoints }))
    }
}
