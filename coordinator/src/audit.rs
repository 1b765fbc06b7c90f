//! The audit log: every state-changing call, with the caller's role, a short id of its
//! token, what it acted on and the outcome, as structured `tracing` events of target
//! `audit`. Calls that every worker makes every few seconds (heartbeats, metric batches,
//! checkpoint chunks, polls that got no trial) are logged at debug level
//! (`RUST_LOG=info,audit=debug` shows them); every other change at info; refusals at warn.

use crate::auth::Caller;
use tonic::Status;

/// What a call acted on.
#[derive(Debug, Default)]
pub struct Subject<'a> {
    /// The grid.
    pub grid: Option<&'a str>,
    /// The trial.
    pub trial: Option<u64>,
    /// The worker.
    pub worker: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// A call about a trial.
    pub fn trial(trial: u64) -> Subject<'a> {
        Subject {
            trial: Some(trial),
            ..Subject::default()
        }
    }

    /// A call about a worker.
    pub fn worker(worker: &'a str) -> Subject<'a> {
        Subject {
            worker: Some(worker),
            ..Subject::default()
        }
    }

    /// A call about a grid.
    pub fn grid(grid: &'a str) -> Subject<'a> {
        Subject {
            grid: Some(grid),
            ..Subject::default()
        }
    }
}

/// How loud an audit record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volume {
    /// Periodic calls of every worker.
    Routine,
    /// Everything else that changes state.
    Change,
}

/// Logs one state-changing call and passes its result through.
pub fn audit<T>(
    caller: &Caller,
    method: &'static str,
    subject: Subject<'_>,
    volume: Volume,
    result: Result<T, Status>,
) -> Result<T, Status> {
    let role = caller.role_name();
    let token = caller.short_id();
    let grid = subject.grid.map(crate::sanitize::for_log);
    let worker = subject.worker.map(crate::sanitize::for_log);
    let trial = subject.trial;
    match (&result, volume) {
        (Ok(_), Volume::Routine) => {
            tracing::debug!(target: "audit", role, token, method, ?grid, ?trial, ?worker, outcome = "ok")
        }
        (Ok(_), Volume::Change) => {
            tracing::info!(target: "audit", role, token, method, ?grid, ?trial, ?worker, outcome = "ok")
        }
        (Err(status), _) => tracing::warn!(
            target: "audit",
            role,
            token,
            method,
            ?grid,
            ?trial,
            ?worker,
            outcome = ?status.code(),
            reason = %crate::sanitize::for_log(status.message()),
        ),
    }
    result
}
