//! The gRPC service: translates requests into event-loop calls and maps domain errors to
//! statuses. Wire messages are converted to domain values here, at the edge (`edge`), and
//! back for the replies. Checkpoint bytes are written and verified off the event loop.

use crate::auth::Caller;
use crate::disk::DiskGuard;
use crate::error::CoordinatorError;
use crate::event_loop::StateHandle;
use crate::latency::AssignmentTimings;
use crate::metric_rows;
use crate::metrics::Metrics;
use crate::model::{NewCheckpoint, RunningReport, StalledSlot, WorkerSlot, NO_PROGRESS};
use crate::paging::{Page, MAX_LOGS_PAGE, MAX_METRICS_PAGE, MAX_TRIALS_PAGE, MAX_WORKERS_PAGE};
use crate::sanitize::for_display;
use crate::store::{CheckpointStore, StoreError};
use crate::trials::Finish;
use crate::workers::WorkerMode;
use prime_core::trial::TrialResult;
use prime_proto::convert::{gpus_from_wire, hardware_from_wire};
use prime_proto::pb::coordinator_server::Coordinator;
use prime_proto::pb::{self, finish_trial_request::Outcome};
use prime_proto::verify::{verify_checkpoint_archive, Expect};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Largest checkpoint read served in one call.
const MAX_READ_BYTES: u32 = 4 << 20;

/// Longest upload id a worker may choose.
const MAX_UPLOAD_ID_CHARS: usize = 64;

/// The coordinator's gRPC service.
#[derive(Clone)]
pub struct CoordinatorService {
    state: StateHandle,
    store: Arc<dyn CheckpointStore>,
    timings: Arc<AssignmentTimings>,
    metrics: Arc<Metrics>,
    disk: DiskGuard,
    state_dir: PathBuf,
}

/// Checks a worker's upload id: the field named, and the rule.
fn checked_upload_id(upload_id: &str) -> Result<(), CoordinatorError> {
    let ok = !upload_id.is_empty()
        && upload_id.len() <= MAX_UPLOAD_ID_CHARS
        && upload_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        return Ok(());
    }
    Err(CoordinatorError::Invalid(format!(
        "upload_id `{}`: expected 1 to {MAX_UPLOAD_ID_CHARS} characters of A-Z a-z 0-9 - _",
        upload_id.escape_default()
    )))
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
            StoreError::OutOfBounds(message) => CoordinatorError::Invalid(message),
            StoreError::Busy(message) => CoordinatorError::ResourceExhausted(message),
            // A staged upload that expired or never began: the worker sends it again.
            StoreError::NotFound(message) => CoordinatorError::Integrity(format!(
                "nothing was committed, the upload is not staged ({message}); send it again"
            )),
            StoreError::InvalidName(message) => CoordinatorError::Invalid(message),
            other => CoordinatorError::Store(other),
        })
}

impl CoordinatorService {
    /// A service over the event loop `state` and the checkpoint `store` that records the
    /// latency of its assignments in `timings` and what it receives and refuses in
    /// `metrics`, taking new data only while `disk` has room; the database lives in
    /// `state_dir`.
    pub fn new(
        state: StateHandle,
        store: Arc<dyn CheckpointStore>,
        timings: Arc<AssignmentTimings>,
        metrics: Arc<Metrics>,
        disk: DiskGuard,
        state_dir: PathBuf,
    ) -> Self {
        CoordinatorService {
            state,
            store,
            timings,
            metrics,
            disk,
            state_dir,
        }
    }

    /// Counts `error` among the refused calls when it is a refusal of bad or over-limit
    /// input, and passes it on.
    fn counted(&self, error: CoordinatorError) -> CoordinatorError {
        match &error {
            CoordinatorError::Invalid(_) | CoordinatorError::InvalidGrid(_) => {
                self.metrics.refused("invalid_argument")
            }
            CoordinatorError::ResourceExhausted(_) => self.metrics.refused("resource_exhausted"),
            _ => {}
        }
        error
    }

    /// Stages one checkpoint chunk (see `put_checkpoint_chunk`).
    async fn stage_chunk(&self, chunk: pb::CheckpointChunk) -> Result<(), CoordinatorError> {
        checked_upload_id(&chunk.upload_id)?;
        let (trial_id, epoch) = (chunk.trial_id, chunk.epoch);
        self.disk
            .check("a checkpoint chunk", chunk.data.len() as u64)?;
        self.state
            .try_call(move |state| state.check_fence(trial_id, epoch))
            .await?;
        let store = self.store.clone();
        let name = staged_name(trial_id, epoch, &chunk.upload_id);
        let bytes = chunk.data.len();
        blocking(move || store.write_chunk(&name, chunk.offset, &chunk.data, &chunk.sha256))
            .await?;
        self.metrics.checkpoint_bytes_received(bytes);
        Ok(())
    }
}

/// Sends the file at `path` as backup chunks of at most `CHUNK_BYTES`, the last one with the
/// size and sha256 of the whole; stops when the receiver is gone.
fn send_backup(
    path: &std::path::Path,
    sender: &tokio::sync::mpsc::Sender<Result<pb::BackupChunk, Status>>,
) -> std::io::Result<()> {
    use sha2::Digest;
    use std::io::Read;
    /// Bytes per backup message, well inside the message size limit.
    const CHUNK_BYTES: usize = 1 << 20;
    let mut file = std::fs::File::open(path)?;
    let total_size = file.metadata()?.len();
    let mut hasher = sha2::Sha256::new();
    let mut sent = 0u64;
    loop {
        let mut data = Vec::with_capacity(CHUNK_BYTES);
        (&mut file)
            .take(CHUNK_BYTES as u64)
            .read_to_end(&mut data)?;
        hasher.update(&data);
        sent += data.len() as u64;
        let last = data.is_empty() || sent == total_size;
        let chunk = pb::BackupChunk {
            data,
            total_size: if last { total_size } else { 0 },
            sha256: if last {
                hex::encode(hasher.clone().finalize())
            } else {
                String::new()
            },
        };
        if sender.blocking_send(Ok(chunk)).is_err() || last {
            return Ok(());
        }
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Reply<pb::RegisterWorkerReply> {
        let holder = Caller::of(&request).holder().map(str::to_string);
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
                let (session, accepted) =
                    state.register(&name, slots, &running, holder.as_deref(), now)?;
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
        let progress_only = request.progress_only;
        let orders = self
            .state
            .try_call(move |state| {
                if progress_only {
                    return state.progress_update(&name, session, &running, now);
                }
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
            self.metrics.assignment(received.elapsed());
        }
        Ok(Response::new(pb::RequestTrialReply {
            assignment: assignment.as_ref().map(Into::into),
        }))
    }

    async fn report_metrics(&self, request: Request<pb::MetricBatch>) -> Reply<pb::Ack> {
        let batch = request.into_inner();
        let rows = metric_rows::rows_of(&batch).map_err(|error| self.counted(error))?;
        let count = rows.len();
        self.state
            .ingest_metrics(batch.trial_id, batch.epoch, rows, batch.logs)
            .await?;
        self.metrics.metric_points_received(count);
        Ok(Response::new(pb::Ack {}))
    }

    async fn put_checkpoint_chunk(&self, request: Request<pb::CheckpointChunk>) -> Reply<pb::Ack> {
        self.stage_chunk(request.into_inner())
            .await
            .map_err(|error| self.counted(error))?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn commit_checkpoint(
        &self,
        request: Request<pb::CommitCheckpointRequest>,
    ) -> Reply<pb::CommitCheckpointReply> {
        let commit = request.into_inner();
        let (trial_id, epoch) = (commit.trial_id, commit.epoch);
        checked_upload_id(&commit.upload_id).map_err(|error| self.counted(error))?;
        self.disk
            .check("a checkpoint commit", 0)
            .map_err(|error| self.counted(error))?;
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
            blocking(move || store.commit(&staged, commit.size, &sha256, &object, &verify))
                .await
                .map_err(|error| self.counted(error));
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
            Some(Outcome::Failed(failure)) if failure.out_of_memory => {
                Finish::OutOfMemory(failure.reason)
            }
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
        self.disk
            .check("a grid submission", request.toml.len() as u64)
            .map_err(|error| self.counted(error))?;
        let (grid, count, unplaceable) = self
            .state
            .try_call(move |state| {
                let (grid, count) = if request.extend {
                    state
                        .extend_grid(&request.file_name, &request.toml)
                        .map(|(grid, added)| (grid, added.len()))?
                } else {
                    state.submit_grid(&request.file_name, &request.toml)?
                };
                let unplaceable = state.unplaceable(&grid);
                Ok((grid, count, unplaceable))
            })
            .await
            .map_err(|error| self.counted(error))?;
        Ok(Response::new(pb::SubmitGridReply {
            grid,
            search_trials: count as u32,
            unplaceable,
        }))
    }

    async fn list_trials(
        &self,
        request: Request<pb::ListTrialsRequest>,
    ) -> Reply<pb::ListTrialsReply> {
        let request = request.into_inner();
        let page = Page::requested(request.offset, request.limit, MAX_TRIALS_PAGE);
        let grid = request.grid;
        let (trials, next) = self
            .state
            .call(move |state| page.of(state.list_trials(&grid)))
            .await?;
        Ok(Response::new(pb::ListTrialsReply {
            trials: trials.iter().map(Into::into).collect(),
            next,
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

    async fn retry_trials(&self, request: Request<pb::RetryRequest>) -> Reply<pb::RetryReply> {
        let request = request.into_inner();
        let fresh = request.fresh;
        let (trial_id, grid) = match request.target {
            Some(pb::retry_request::Target::TrialId(id)) => (Some(id), None),
            Some(pb::retry_request::Target::Grid(grid)) => (None, Some(grid)),
            None => return Err(Status::invalid_argument("retry needs a trial id or a grid")),
        };
        let retried = self
            .state
            .try_call(move |state| state.retry(trial_id, grid.as_deref(), fresh))
            .await?;
        let store = self.store.clone();
        let keys = retried.dropped_keys;
        blocking(move || keys.iter().try_for_each(|key| store.delete(key))).await?;
        Ok(Response::new(pb::RetryReply {
            trial_ids: retried.trial_ids,
        }))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Reply<pb::ListWorkersReply> {
        let request = request.into_inner();
        let page = Page::requested(request.offset, request.limit, MAX_WORKERS_PAGE);
        let now = Instant::now();
        let (workers, next) = self
            .state
            .call(move |state| page.of(state.list_workers(now)))
            .await?;
        Ok(Response::new(pb::ListWorkersReply {
            workers: workers.iter().map(Into::into).collect(),
            next,
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
        let request = request.into_inner();
        let page = Page::requested(request.offset, request.limit, MAX_LOGS_PAGE);
        let trial_id = request.trial_id;
        let rows = self
            .state
            .try_call(move |state| {
                state.logs_page(
                    trial_id,
                    Page {
                        limit: page.probe(),
                        ..page
                    },
                )
            })
            .await?;
        let (rows, next) = page.split(rows);
        let lines = rows
            .into_iter()
            .map(|(unix_ms, line)| pb::LogLine {
                unix_ms,
                line: for_display(&line),
            })
            .collect();
        Ok(Response::new(pb::TrialLogsReply { lines, next }))
    }

    async fn trial_metrics(&self, request: Request<pb::TrialRef>) -> Reply<pb::TrialMetricsReply> {
        let request = request.into_inner();
        let page = Page::requested(request.offset, request.limit, MAX_METRICS_PAGE);
        let trial_id = request.trial_id;
        let rows = self
            .state
            .try_call(move |state| {
                state.metrics_page(
                    trial_id,
                    Page {
                        limit: page.probe(),
                        ..page
                    },
                )
            })
            .await?;
        let (rows, next) = page.split(rows);
        Ok(Response::new(pb::TrialMetricsReply {
            metrics: rows.iter().map(Into::into).collect(),
            next,
        }))
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

    type BackupDatabaseStream = ReceiverStream<Result<pb::BackupChunk, Status>>;

    async fn backup_database(
        &self,
        _request: Request<pb::BackupRequest>,
    ) -> Reply<Self::BackupDatabaseStream> {
        let database = self.state_dir.join(crate::state::DATABASE_FILE);
        let size = std::fs::metadata(&database).map_or(0, |metadata| metadata.len());
        self.disk
            .check("a database backup", size)
            .map_err(|error| self.counted(error))?;
        let dir = self.state_dir.clone();
        let copy = tokio::task::spawn_blocking(move || {
            let copy = tempfile::Builder::new()
                .prefix(".backup-")
                .tempfile_in(&dir)
                .map_err(|error| {
                    CoordinatorError::Storage(format!(
                        "cannot create a backup file in {}: {error}",
                        dir.display()
                    ))
                })?;
            crate::db::backup(&database, copy.path())?;
            Ok::<_, CoordinatorError>(copy)
        })
        .await
        .map_err(|_| CoordinatorError::ShuttingDown)??;
        tracing::info!(bytes = size, "database backup taken; streaming it");
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            if let Err(error) = send_backup(copy.path(), &sender) {
                let _ = sender.blocking_send(Err(Status::internal(format!(
                    "reading the backup failed: {error}"
                ))));
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}
