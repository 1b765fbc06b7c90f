//! The coordinator's SQLite database (WAL): grids, trials with their attempts, workers'
//! cordon flags, metrics, logs and checkpoints. Every state change is one transaction,
//! committed before the coordinator answers, so a kill -9 loses nothing it acknowledged.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Version of the schema below, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grids (
    name TEXT PRIMARY KEY,
    file_name TEXT NOT NULL,
    toml TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    grid TEXT NOT NULL,
    parent_id INTEGER,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    slot INTEGER,
    progress_json TEXT NOT NULL DEFAULT '{}',
    result_json TEXT,
    reason TEXT NOT NULL DEFAULT '',
    run_ms INTEGER NOT NULL DEFAULT 0,
    attempt_started_unix_ms INTEGER
);
CREATE INDEX IF NOT EXISTS trials_by_grid ON trials (grid);
CREATE TABLE IF NOT EXISTS attempts (
    trial_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    worker TEXT NOT NULL,
    slot INTEGER NOT NULL,
    started_unix_ms INTEGER NOT NULL,
    ended_unix_ms INTEGER,
    outcome_json TEXT,
    PRIMARY KEY (trial_id, epoch)
);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    cordoned INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    clock REAL NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (trial_id, kind, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    trial_id INTEGER NOT NULL,
    unix_ms INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_trial ON logs (trial_id);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    progress_json TEXT NOT NULL,
    final INTEGER NOT NULL,
    score REAL,
    key TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_by_trial ON checkpoints (trial_id);
";

/// Milliseconds since the Unix epoch, for stored timestamps.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// A trial row as stored.
#[derive(Debug, Clone)]
pub struct TrialRow {
    /// Trial id.
    pub id: u64,
    /// Parent search trial of an evaluation.
    pub parent_id: Option<u64>,
    /// `TrialSpec` JSON.
    pub spec_json: String,
    /// State name.
    pub state: String,
    /// Fencing epoch of the latest assignment.
    pub epoch: u64,
    /// Crashes counted against the retry budget.
    pub failures: u32,
    /// Assignments so far.
    pub attempts: u32,
    /// Worker of the running attempt.
    pub worker: Option<String>,
    /// Slot of the running attempt.
    pub slot: Option<u32>,
    /// Last reported progress (JSON of `[epochs_done, epochs_total, steps_done, steps_total]`).
    pub progress_json: String,
    /// `TrialResult` JSON once succeeded.
    pub result_json: Option<String>,
    /// Why the trial failed or was last interrupted.
    pub reason: String,
    /// Wall time of finished attempts.
    pub run_ms: u64,
    /// Start of the running attempt.
    pub attempt_started_unix_ms: Option<u64>,
    /// Worker and slot of the latest attempt (running or ended), from the attempt history.
    pub last_placement: Option<(String, u32)>,
}

/// A stored checkpoint's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    /// Checkpoint id (increasing).
    pub id: u64,
    /// Owning trial.
    pub trial_id: u64,
    /// Archive size in bytes.
    pub size: u64,
    /// Hex sha256 of the archive.
    pub sha256: String,
    /// Progress JSON (same encoding as trials).
    pub progress_json: String,
    /// Whether it holds the final artifacts.
    pub is_final: bool,
    /// Higher is better.
    pub score: Option<f64>,
    /// Key in the checkpoint store.
    pub key: String,
    /// Commit time.
    pub created_unix_ms: u64,
}

/// One metric row to insert.
#[derive(Debug, Clone)]
pub struct MetricRow {
    /// Metric kind name.
    pub kind: String,
    /// Global step.
    pub step: u64,
    /// Epoch.
    pub epoch: u32,
    /// Fractional epochs.
    pub clock: f64,
    /// JSON object of the values.
    pub values_json: String,
}

/// The open database.
pub struct Db {
    connection: Connection,
}

impl Db {
    /// Opens (creating if needed) the database file in WAL mode.
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // WAL with synchronous=NORMAL: a committed transaction survives a process crash.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.execute_batch(SCHEMA)?;
        connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Db { connection })
    }

    /// Runs `body` in one transaction, committed when it returns `Ok`.
    pub fn transaction<T, E: From<rusqlite::Error>>(
        &mut self,
        body: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let transaction = self.connection.transaction()?;
        let value = body(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    /// Every trial, by id.
    pub fn load_trials(&self) -> rusqlite::Result<Vec<TrialRow>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT t.id, t.parent_id, t.spec_json, t.state, t.epoch, t.failures, t.attempts,
                    t.worker, t.slot, t.progress_json, t.result_json, t.reason, t.run_ms,
                    t.attempt_started_unix_ms, a.worker, a.slot
             FROM trials t LEFT JOIN attempts a ON a.trial_id = t.id AND a.epoch = t.epoch
             ORDER BY t.id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(TrialRow {
                id: row.get(0)?,
                parent_id: row.get(1)?,
                spec_json: row.get(2)?,
                state: row.get(3)?,
                epoch: row.get(4)?,
                failures: row.get(5)?,
                attempts: row.get(6)?,
                worker: row.get(7)?,
                slot: row.get(8)?,
                progress_json: row.get(9)?,
                result_json: row.get(10)?,
                reason: row.get(11)?,
                run_ms: row.get(12)?,
                attempt_started_unix_ms: row.get(13)?,
                last_placement: match (row.get(14)?, row.get(15)?) {
                    (Some(worker), Some(slot)) => Some((worker, slot)),
                    _ => None,
                },
            })
        })?;
        rows.collect()
    }

    /// Names of cordoned workers.
    pub fn cordoned_workers(&self) -> rusqlite::Result<Vec<String>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT name FROM workers WHERE cordoned = 1")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        rows.collect()
    }

    /// Whether a grid of that name exists.
    pub fn grid_exists(&self, name: &str) -> rusqlite::Result<bool> {
        self.connection
            .query_row("SELECT 1 FROM grids WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
    }

    /// The checkpoints of a trial, oldest first.
    pub fn checkpoints(&self, trial_id: u64) -> rusqlite::Result<Vec<CheckpointRow>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, trial_id, size, sha256, progress_json, final, score, key, created_unix_ms
             FROM checkpoints WHERE trial_id = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map([trial_id], |row| {
            Ok(CheckpointRow {
                id: row.get(0)?,
                trial_id: row.get(1)?,
                size: row.get(2)?,
                sha256: row.get(3)?,
                progress_json: row.get(4)?,
                is_final: row.get(5)?,
                score: row.get(6)?,
                key: row.get(7)?,
                created_unix_ms: row.get(8)?,
            })
        })?;
        rows.collect()
    }

    /// A trial's log lines, oldest first.
    pub fn logs(&self, trial_id: u64) -> rusqlite::Result<Vec<(u64, String)>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT unix_ms, line FROM logs WHERE trial_id = ?1 ORDER BY rowid")?;
        let rows = statement.query_map([trial_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    }

    /// A trial's metric rows, by kind then step.
    pub fn metrics(&self, trial_id: u64) -> rusqlite::Result<Vec<MetricRow>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT kind, step, epoch, clock, values_json FROM metrics
             WHERE trial_id = ?1 ORDER BY step, kind",
        )?;
        let rows = statement.query_map([trial_id], |row| {
            Ok(MetricRow {
                kind: row.get(0)?,
                step: row.get(1)?,
                epoch: row.get(2)?,
                clock: row.get(3)?,
                values_json: row.get(4)?,
            })
        })?;
        rows.collect()
    }
}

/// Inserts metric rows (a resumed attempt's repeated steps replace the earlier ones).
pub fn insert_metrics(
    transaction: &Transaction<'_>,
    trial_id: u64,
    rows: &[MetricRow],
) -> rusqlite::Result<()> {
    let mut statement = transaction.prepare_cached(
        "INSERT OR REPLACE INTO metrics (trial_id, kind, step, epoch, clock, values_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for row in rows {
        statement.execute(params![
            trial_id,
            row.kind,
            row.step,
            row.epoch,
            row.clock,
            row.values_json
        ])?;
    }
    Ok(())
}

/// Appends a log line to a trial.
pub fn insert_log(
    transaction: &Transaction<'_>,
    trial_id: u64,
    line: &str,
) -> rusqlite::Result<()> {
    transaction
        .prepare_cached("INSERT INTO logs (trial_id, unix_ms, line) VALUES (?1, ?2, ?3)")?
        .execute(params![trial_id, unix_ms(), line])?;
    Ok(())
}
