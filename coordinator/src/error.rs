//! Domain errors of the coordinator and their one mapping to gRPC statuses.

use crate::db::DbError;
use crate::store::StoreError;
use prime_core::trial::TrialId;
use tonic::Status;

/// Everything a coordinator request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A grid file failed validation; nothing was stored.
    #[error("grid rejected, nothing stored: {0}")]
    InvalidGrid(String),
    /// A grid of that name exists already.
    #[error("a grid named `{0}` exists already; rename the new grid")]
    GridExists(String),
    /// No such trial.
    #[error("no trial {0}")]
    UnknownTrial(TrialId),
    /// No such grid.
    #[error("no grid named `{0}`")]
    UnknownGrid(String),
    /// No such worker.
    #[error("no worker named `{0}`")]
    UnknownWorker(String),
    /// The worker's session is unknown or has expired: it must register again.
    #[error("worker `{name}` must register again: {reason}")]
    SessionExpired {
        /// Worker name.
        name: String,
        /// Why the session is no longer valid.
        reason: String,
    },
    /// A report carries an epoch that is no longer the trial's current assignment.
    #[error("stale report for trial {trial_id}: epoch {epoch} is fenced ({reason})")]
    Fenced {
        /// Trial the report is about.
        trial_id: TrialId,
        /// Epoch the report carried.
        epoch: u64,
        /// What superseded it.
        reason: String,
    },
    /// The caller's token may not act on what the request names (another token's worker
    /// session or trial).
    #[error("permission denied: {0}")]
    Denied(String),
    /// The request does not fit the current state of what it names (a retry of a trial that
    /// is running, an extension that would change an existing trial); the message says why.
    #[error("{0}")]
    Conflict(String),
    /// A malformed request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Uploaded data failed its sha256 check.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The checkpoint store failed.
    #[error("checkpoint store error: {0}")]
    Store(#[from] StoreError),
    /// The state directory or its database cannot be used (named in the message).
    #[error("{0}")]
    Storage(String),
    /// A resource of the coordinator (its disk, its staging area) is too full for new data
    /// (named in the message); the same call may succeed later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The coordinator is shutting down.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    /// A bug: handling the request panicked (the coordinator keeps serving).
    #[error("internal error while handling the request: {0}")]
    Internal(String),
}

impl From<DbError> for CoordinatorError {
    /// A stored value that does not decode, or a value that cannot be encoded, is reported as
    /// invalid with what it is; a failure of SQLite itself as a database error.
    fn from(error: DbError) -> CoordinatorError {
        match error {
            DbError::Sqlite(error) => CoordinatorError::Database(error),
            DbError::Corrupt(message) | DbError::Encode(message) => {
                CoordinatorError::Invalid(message)
            }
            DbError::Open(message) => CoordinatorError::Storage(message),
        }
    }
}

/// Longest status message sent back, in bytes: messages may quote what the caller sent, and
/// an unbounded one would exceed the caller's HTTP/2 header limit.
const MAX_STATUS_MESSAGE: usize = 4096;

/// `message` cut to `MAX_STATUS_MESSAGE` bytes at a character boundary, marked when cut.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_STATUS_MESSAGE {
        let mut end = MAX_STATUS_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (cut)");
    }
    message
}

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Status {
        let message = bounded(error.to_string());
        match error {
            CoordinatorError::InvalidGrid(_) | CoordinatorError::Invalid(_) => {
                Status::invalid_argument(message)
            }
            CoordinatorError::GridExists(_) => Status::already_exists(message),
            CoordinatorError::UnknownTrial(_)
            | CoordinatorError::UnknownGrid(_)
            | CoordinatorError::UnknownWorker(_) => Status::not_found(message),
            CoordinatorError::SessionExpired { .. } => Status::unauthenticated(message),
            CoordinatorError::Fenced { .. } | CoordinatorError::Conflict(_) => {
                Status::failed_precondition(message)
            }
            CoordinatorError::Denied(_) => Status::permission_denied(message),
            CoordinatorError::Integrity(_) => Status::data_loss(message),
            CoordinatorError::ShuttingDown => Status::unavailable(message),
            CoordinatorError::ResourceExhausted(_) => Status::resource_exhausted(message),
            CoordinatorError::Database(_)
            | CoordinatorError::Store(_)
            | CoordinatorError::Storage(_)
            | CoordinatorError::Internal(_) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_quoting_a_huge_request_is_cut() {
        let status = Status::from(CoordinatorError::Invalid("é".repeat(10_000)));
        assert!(status.message().len() <= MAX_STATUS_MESSAGE + 16);
        assert!(status.message().ends_with("(cut)"));
    }
}
