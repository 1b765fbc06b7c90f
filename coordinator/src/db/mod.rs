//! The coordinator's database: grids, trials with their attempts, workers' cordon flags,
//! metrics, logs and checkpoints. Every state change is one transaction, committed before the
//! coordinator answers, so a kill -9 loses nothing it acknowledged. The event loop groups the
//! transactions of the requests it serves back to back into one commit (`begin_group`), and
//! answers them only after it.
//!
//! The state layer sees only the `Database` and `Transaction` traits and domain values
//! (`model`); `sqlite` is their implementation (SQLite in WAL mode) and holds every SQL
//! statement and every storage encoding (specs, results and attempt outcomes as JSON text,
//! progress as a JSON array).

use crate::model::{CheckpointRecord, NewCheckpoint, Placement, Trial};
use crate::paging::Page;
use prime_core::observer::Progress;
use prime_core::trial::{AttemptOutcome, TrialId, TrialSpec};
use std::time::{SystemTime, UNIX_EPOCH};

mod backup;
mod check;
mod sqlite;

pub use backup::{backup, check_database_file};
pub use sqlite::Db;

/// Milliseconds since the Unix epoch, for stored timestamps.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not decode (a row written by hand or by a broken build).
    #[error("{0}")]
    Corrupt(String),
    /// A value cannot be encoded for storage.
    #[error("{0}")]
    Encode(String),
    /// The database file cannot be opened, or is not one the coordinator may use.
    #[error("{0}")]
    Open(String),
}

/// One metric row as stored; a trial's rows are keyed by (kind, step), so a resumed attempt
/// that repeats steps replaces them instead of duplicating them.
#[derive(Debug, Clone)]
pub struct MetricRow {
    /// Metric kind name, as the worker sent it (checked on arrival).
    pub kind: String,
    /// Global training step of the record.
    pub step: u64,
    /// Epoch the record belongs to.
    pub epoch: u32,
    /// Fractional epochs done when the record was taken (the x axis of plots).
    pub clock: f64,
    /// JSON object of the values (see `metric_rows` for its encoding).
    pub values_json: String,
}

/// One attempt of a trial as stored (the dashboard lists them).
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    /// The fencing epoch of the attempt.
    pub epoch: u64,
    /// The worker that ran it.
    pub worker: String,
    /// Its slot on that worker.
    pub slot: u32,
    /// When it started.
    pub started_unix_ms: u64,
    /// When it ended, if it has.
    pub ended_unix_ms: Option<u64>,
    /// How it ended, if it has.
    pub outcome: Option<AttemptOutcome>,
}

/// What the state layer reads from its database; writes go through `begin`, one
/// transaction each.
pub trait Database: Send {
    /// Every trial, by id; a running trial keeps the placement of its running attempt.
    fn load_trials(&self) -> Result<Vec<Trial>, DbError>;
    /// Names of cordoned workers.
    fn cordoned_workers(&self) -> Result<Vec<String>, DbError>;
    /// Whether a grid of that name exists.
    fn grid_exists(&self, name: &str) -> Result<bool, DbError>;
    /// The retained checkpoints of a trial, oldest first.
    fn checkpoints(&self, trial_id: TrialId) -> Result<Vec<CheckpointRecord>, DbError>;
    /// A trial's log lines with their Unix milliseconds, oldest first.
    fn logs(&self, trial_id: TrialId, page: Page) -> Result<Vec<(u64, String)>, DbError>;
    /// A trial's metric rows, by step then kind.
    fn metrics(&self, trial_id: TrialId, page: Page) -> Result<Vec<MetricRow>, DbError>;
    /// Every grid's name and submission time, oldest first.
    fn grids(&self) -> Result<Vec<(String, u64)>, DbError>;
    /// A trial's attempts, oldest first.
    fn attempts(&self, trial_id: TrialId) -> Result<Vec<AttemptRow>, DbError>;
    /// A trial's last `count` log lines with their Unix milliseconds, oldest first.
    fn log_tail(&self, trial_id: TrialId, count: u64) -> Result<Vec<(u64, String)>, DbError>;
    /// A trial's last `count` metric rows, newest first.
    fn latest_metrics(&self, trial_id: TrialId, count: u64) -> Result<Vec<MetricRow>, DbError>;
    /// How many ended attempts ended each way (`crashed`, `lost`, ...), by outcome name.
    fn attempt_outcomes(&self) -> Result<Vec<(String, u64)>, DbError>;
    /// Commits a tiny write, to show that the database still takes writes (readiness).
    fn probe_write(&mut self) -> Result<(), DbError>;
    /// Starts a transaction; dropped without `commit`, it changes nothing. Inside a group its
    /// `commit` keeps its writes for the group's commit.
    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, DbError>;
    /// Opens a group (nothing when one is open): the transactions until `commit_group` are
    /// made durable together, by one commit.
    fn begin_group(&mut self) -> Result<(), DbError>;
    /// Makes the open group's writes durable (nothing when no group is open).
    fn commit_group(&mut self) -> Result<(), DbError>;
    /// Undoes the open group's writes: after its commit failed.
    fn rollback_group(&mut self) -> Result<(), DbError>;
    /// Makes the next `commit_group` fail (tests).
    #[cfg(test)]
    fn fail_next_group_commit(&mut self);
}

/// The writes of one transaction.
pub trait Transaction {
    /// Stores a grid file.
    fn insert_grid(&self, name: &str, file_name: &str, toml: &str) -> Result<(), DbError>;
    /// Replaces the stored text of grid `name` (a grid extended with new trials).
    fn update_grid(&self, name: &str, file_name: &str, toml: &str) -> Result<(), DbError>;
    /// Stores a new queued trial; its id.
    fn insert_trial(
        &self,
        spec: &TrialSpec,
        parent_id: Option<TrialId>,
    ) -> Result<TrialId, DbError>;
    /// Writes every mutable column of `trial`.
    fn save_trial(&self, trial: &Trial) -> Result<(), DbError>;
    /// Writes only the progress of a trial (heartbeats).
    fn save_progress(&self, trial_id: TrialId, progress: &Progress) -> Result<(), DbError>;
    /// Replaces a trial's spec (a packed trial that ran out of GPU memory runs unshared).
    fn save_spec(&self, trial_id: TrialId, spec: &TrialSpec) -> Result<(), DbError>;
    /// Records the start of an attempt on the slots of its placement.
    fn open_attempt(
        &self,
        trial_id: TrialId,
        epoch: u64,
        placement: &Placement,
        started_unix_ms: u64,
    ) -> Result<(), DbError>;
    /// Records how an attempt ended.
    fn close_attempt(
        &self,
        trial_id: TrialId,
        epoch: u64,
        outcome: &AttemptOutcome,
    ) -> Result<(), DbError>;
    /// Records a verified checkpoint of the attempt at `epoch`; its id.
    fn insert_checkpoint(
        &self,
        trial_id: TrialId,
        epoch: u64,
        checkpoint: &NewCheckpoint,
    ) -> Result<u64, DbError>;
    /// Forgets checkpoints (retention).
    fn delete_checkpoints(&self, ids: &[u64]) -> Result<(), DbError>;
    /// Sets a worker's cordon flag.
    fn set_cordoned(&self, name: &str, cordoned: bool) -> Result<(), DbError>;
    /// Inserts metric rows (a resumed attempt's repeated steps replace the earlier ones).
    fn insert_metrics(&self, trial_id: TrialId, rows: &[MetricRow]) -> Result<(), DbError>;
    /// Appends a log line to a trial.
    fn insert_log(&self, trial_id: TrialId, line: &str) -> Result<(), DbError>;
    /// Makes the writes durable.
    fn commit(self: Box<Self>) -> Result<(), DbError>;
}

impl dyn Database + '_ {
    /// Runs `body` in one transaction, committed when it returns `Ok`.
    pub fn transaction<T, E: From<DbError>>(
        &mut self,
        body: impl FnOnce(&dyn Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let transaction = self.begin()?;
        let value = body(&*transaction)?;
        transaction.commit()?;
        Ok(value)
    }
}
