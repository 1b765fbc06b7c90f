//! The service as callers meet it: every RPC passes here, where worker calls are checked
//! against the token holding the session or trial they act on, and every state-changing
//! call is written to the audit log, before and after the `service` does the work. The
//! role check itself happened earlier, in `auth::AuthLayer`.

use crate::audit::{audit, Subject, Volume};
use crate::auth::Caller;
use crate::error::CoordinatorError;
use crate::event_loop::StateHandle;
use crate::limits;
use crate::service::CoordinatorService;
use prime_core::trial::TrialId;
use prime_proto::pb::coordinator_server::Coordinator;
use prime_proto::pb::{self, cancel_request::Target};
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// `CoordinatorService` behind holder checks and the audit log.
#[derive(Clone)]
pub struct GuardedService {
    inner: CoordinatorService,
    state: StateHandle,
}

impl GuardedService {
    /// Guards `inner`, which works on `state`.
    pub fn new(inner: CoordinatorService, state: StateHandle) -> GuardedService {
        GuardedService { inner, state }
    }

    /// Refuses a call about `trial_id` unless the caller's token holds the trial's worker
    /// session (open coordinators, and readers when `readers_pass`, pass).
    async fn check_trial(
        &self,
        caller: &Caller,
        trial_id: TrialId,
        readers_pass: bool,
    ) -> Result<(), Status> {
        if readers_pass && caller.is_reader() {
            return Ok(());
        }
        let Some(holder) = caller.holder().map(str::to_string) else {
            return Ok(());
        };
        self.state
            .try_call(move |state| state.check_trial_holder(trial_id, Some(&holder)))
            .await
            .map_err(Status::from)
    }

    /// Refuses a call on the session of worker `name` unless the caller's token holds it.
    async fn check_session(&self, caller: &Caller, name: &str, session: u64) -> Result<(), Status> {
        let Some(holder) = caller.holder().map(str::to_string) else {
            return Ok(());
        };
        let name = name.to_string();
        self.state
            .try_call(move |state| state.check_session_holder(&name, session, Some(&holder)))
            .await
            .map_err(Status::from)
    }
}

fn refused<T>(error: CoordinatorError) -> Result<T, Status> {
    Err(error.into())
}

#[tonic::async_trait]
impl Coordinator for GuardedService {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Reply<pb::RegisterWorkerReply> {
        let caller = Caller::of(&request);
        let name = request.get_ref().name.clone();
        let result = match limits::register(request.get_ref()) {
            Ok(()) => self.inner.register_worker(request).await,
            Err(status) => Err(status),
        };
        audit(
            &caller,
            "RegisterWorker",
            Subject::worker(&name),
            Volume::Change,
            result,
        )
    }

    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Reply<pb::HeartbeatReply> {
        let caller = Caller::of(&request);
        let (name, session) = (request.get_ref().name.clone(), request.get_ref().session);
        let checked = match limits::heartbeat(request.get_ref()) {
            Ok(()) => self.check_session(&caller, &name, session).await,
            Err(status) => Err(status),
        };
        let result = match checked {
            Ok(()) => self.inner.heartbeat(request).await,
            Err(status) => Err(status),
        };
        audit(
            &caller,
            "Heartbeat",
            Subject::worker(&name),
            Volume::Routine,
            result,
        )
    }

    async fn request_trial(
        &self,
        request: Request<pb::RequestTrialRequest>,
    ) -> Reply<pb::RequestTrialReply> {
        let caller = Caller::of(&request);
        let (name, session) = (request.get_ref().name.clone(), request.get_ref().session);
        let checked = match limits::worker_name(&name) {
            Ok(()) => self.check_session(&caller, &name, session).await,
            Err(status) => Err(status),
        };
        let result = match checked {
            Ok(()) => self.inner.request_trial(request).await,
            Err(status) => Err(status),
        };
        let assigned = result
            .as_ref()
            .ok()
            .and_then(|reply| reply.get_ref().assignment.as_ref())
            .map(|assignment| assignment.trial_id);
        let (subject, volume) = match assigned {
            Some(trial) => (
                Subject {
                    trial: Some(trial),
                    worker: Some(&name),
                    grid: None,
                },
                Volume::Change,
            ),
            None => (Subject::worker(&name), Volume::Routine),
        };
        audit(&caller, "RequestTrial", subject, volume, result)
    }

    async fn report_metrics(&self, request: Request<pb::MetricBatch>) -> Reply<pb::Ack> {
        let caller = Caller::of(&request);
        let trial = request.get_ref().trial_id;
        let result = match self.check_trial(&caller, trial, false).await {
            Ok(()) => self.inner.report_metrics(request).await,
            Err(status) => Err(status),
        };
        audit(
            &caller,
            "ReportMetrics",
            Subject::trial(trial),
            Volume::Routine,
            result,
        )
    }

    async fn put_checkpoint_chunk(&self, request: Request<pb::CheckpointChunk>) -> Reply<pb::Ack> {
        let caller = Caller::of(&request);
        let trial = request.get_ref().trial_id;
        let checked = match limits::chunk(request.get_ref()) {
            Ok(()) => self.check_trial(&caller, trial, false).await,
            Err(status) => Err(status),
        };
        let result = match checked {
            Ok(()) => self.inner.put_checkpoint_chunk(request).await,
            Err(status) => Err(status),
        };
        audit(
            &caller,
            "PutCheckpointChunk",
            Subject::trial(trial),
            Volume::Routine,
            result,
        )
    }

    async fn commit_checkpoint(
        &self,
        request: Request<pb::CommitCheckpointRequest>,
    ) -> Reply<pb::CommitCheckpointReply> {
        let caller = Caller::of(&request);
        let trial = request.get_ref().trial_id;
        let checked = match limits::commit(request.get_ref()) {
            Ok(()) => self.check_trial(&caller, trial, false).await,
            Err(status) => Err(status),
        };
        let result = match checked {
            Ok(()) => self.inner.commit_checkpoint(request).await,
            Err(status) => Err(status),
        };
        audit(
            &caller,
            "CommitCheckpoint",
            Subject::trial(trial),
            Volume::Change,
            result,
        )
    }

    async fn read_checkpoint(
        &self,
        request: Request<pb::ReadCheckpointRequest>,
    ) -> Reply<pb::ReadCheckpointReply> {
        let caller = Caller::of(&request);
        self.check_trial(&caller, request.get_ref().trial_id, true)
            .await?;
        self.inner.read_checkpoint(request).await
    }

    async fn finish_trial(&self, request: Request<pb::FinishTrialRequest>) -> Reply<pb::Ack> {
        let caller = Caller::of(&request);
        let trial = request.get_ref().trial_id;
        let checked = match limits::finish(request.get_ref()) {
            Ok(()) => self.check_trial(&caller, trial, false).await,
            Err(status) => Err(status),
        };
        let result = match checked {
            Ok(()) => self.inner.finish_trial(request).await,
            Err(status) => Err(status),
        };
        audit(
            &caller,
            "FinishTrial",
            Subject::trial(trial),
            Volume::Change,
            result,
        )
    }

    async fn submit_grid(
        &self,
        request: Request<pb::SubmitGridRequest>,
    ) -> Reply<pb::SubmitGridReply> {
        let caller = Caller::of(&request);
        let file = request.get_ref().file_name.clone();
        let result = match limits::submission(request.get_ref()) {
            Ok(()) => self.inner.submit_grid(request).await,
            Err(status) => Err(status),
        };
        let grid = result
            .as_ref()
            .map(|reply| reply.get_ref().grid.clone())
            .unwrap_or(file);
        audit(
            &caller,
            "SubmitGrid",
            Subject::grid(&grid),
            Volume::Change,
            result,
        )
    }

    async fn list_trials(
        &self,
        request: Request<pb::ListTrialsRequest>,
    ) -> Reply<pb::ListTrialsReply> {
        limits::grid_name(&request.get_ref().grid)?;
        self.inner.list_trials(request).await
    }

    async fn cancel_trials(&self, request: Request<pb::CancelRequest>) -> Reply<pb::CancelReply> {
        let caller = Caller::of(&request);
        let subject = match &request.get_ref().target {
            Some(Target::TrialId(id)) => Subject::trial(*id),
            Some(Target::Grid(grid)) => {
                limits::grid_name(grid)?;
                Subject::grid(grid)
            }
            None => {
                return refused(CoordinatorError::Invalid(
                    "cancel needs a trial id or a grid".into(),
                ))
            }
        };
        let grid = subject.grid.map(str::to_string);
        let trial = subject.trial;
        let result = self.inner.cancel_trials(request).await;
        let subject = Subject {
            grid: grid.as_deref(),
            trial,
            worker: None,
        };
        audit(&caller, "CancelTrials", subject, Volume::Change, result)
    }

    async fn retry_trials(&self, request: Request<pb::RetryRequest>) -> Reply<pb::RetryReply> {
        let caller = Caller::of(&request);
        let (grid, trial) = match &request.get_ref().target {
            Some(pb::retry_request::Target::TrialId(id)) => (None, Some(*id)),
            Some(pb::retry_request::Target::Grid(grid)) => {
                limits::grid_name(grid)?;
                (Some(grid.clone()), None)
            }
            None => {
                return refused(CoordinatorError::Invalid(
                    "retry needs a trial id or a grid".into(),
                ))
            }
        };
        let result = self.inner.retry_trials(request).await;
        let subject = Subject {
            grid: grid.as_deref(),
            trial,
            worker: None,
        };
        audit(&caller, "RetryTrials", subject, Volume::Change, result)
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Reply<pb::ListWorkersReply> {
        self.inner.list_workers(request).await
    }

    async fn set_worker_mode(&self, request: Request<pb::SetWorkerModeRequest>) -> Reply<pb::Ack> {
        let caller = Caller::of(&request);
        let name = request.get_ref().name.clone();
        let result = match limits::worker_mode(request.get_ref()) {
            Ok(()) => self.inner.set_worker_mode(request).await,
            Err(status) => Err(status),
        };
        audit(
            &caller,
            "SetWorkerMode",
            Subject::worker(&name),
            Volume::Change,
            result,
        )
    }

    async fn trial_logs(&self, request: Request<pb::TrialRef>) -> Reply<pb::TrialLogsReply> {
        self.inner.trial_logs(request).await
    }

    async fn trial_metrics(&self, request: Request<pb::TrialRef>) -> Reply<pb::TrialMetricsReply> {
        self.inner.trial_metrics(request).await
    }

    type BackupDatabaseStream = <CoordinatorService as Coordinator>::BackupDatabaseStream;

    async fn backup_database(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Reply<Self::BackupDatabaseStream> {
        let caller = Caller::of(&request);
        let result = self.inner.backup_database(request).await;
        audit(
            &caller,
            "BackupDatabase",
            Subject::default(),
            Volume::Change,
            result,
        )
    }

    async fn trial_checkpoints(
        &self,
        request: Request<pb::TrialRef>,
    ) -> Reply<pb::TrialCheckpointsReply> {
        let caller = Caller::of(&request);
        self.check_trial(&caller, request.get_ref().trial_id, true)
            .await?;
        self.inner.trial_checkpoints(request).await
    }
}
