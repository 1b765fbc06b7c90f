//! The SQLite implementation of `Database`: the schema, every SQL statement, and the JSON
//! encodings of what the trial rows hold.

use super::check;
use super::{unix_ms, AttemptRow, Database, DbError, MetricRow, Transaction};
use crate::model::{CheckpointRecord, NewCheckpoint, Placement, Trial, NO_PROGRESS};
use crate::paging::Page;
use prime_core::observer::Progress;
use prime_core::trial::{AttemptOutcome, TrialId, TrialResult, TrialSpec, TrialState};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// Version of the schema below, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

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
CREATE TABLE IF NOT EXISTS attempt_slots (
    trial_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    position INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    PRIMARY KEY (trial_id, epoch, position)
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS readiness (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    unix_ms INTEGER NOT NULL
);
";

/// Encodes a progress for storage: `[epochs_done, epochs_total, steps_done, steps_total]`.
fn progress_json(progress: &Progress) -> String {
    format!(
        "[{},{},{},{}]",
        progress.epochs_done, progress.epochs_total, progress.steps_done, progress.steps_total
    )
}

/// Decodes a stored progress; anything unreadable is zero progress (it only feeds status
/// tables, and the next heartbeat replaces it).
fn parse_progress(text: &str) -> Progress {
    let Ok(values) = serde_json::from_str::<[u64; 4]>(text) else {
        return NO_PROGRESS;
    };
    Progress {
        epochs_done: values[0] as u32,
        epochs_total: values[1] as u32,
        steps_done: values[2],
        steps_total: values[3],
    }
}

/// The JSON text of a value to store, or why it has none.
fn encode(what: &str, json: serde_json::Result<String>) -> Result<String, DbError> {
    json.map_err(|error| DbError::Encode(format!("{what}: {error}")))
}

/// The SQLite database.
pub struct Db {
    connection: Connection,
    /// Whether a group (`begin_group`) is open: transactions are savepoints inside it.
    group_open: bool,
    /// Fails the next group commit (tests of what a failed commit leaves behind).
    #[cfg(test)]
    fail_next_group_commit: bool,
}

impl Db {
    /// Opens the database file in WAL mode. An existing file must be an intact database of
    /// ours (`check`); only a missing file is created, and that is logged.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let exists = path.try_exists().map_err(|error| {
            DbError::Open(format!(
                "cannot look for database file {}: {error}",
                path.display()
            ))
        })?;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if exists {
            check::check_file(path)?;
        } else {
            tracing::info!(path = %path.display(), "no database file yet: creating a new one");
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let cannot = |error: rusqlite::Error| {
            DbError::Open(format!(
                "cannot open database file {} for writing: {error} (is its directory writable?)",
                path.display()
            ))
        };
        let connection = Connection::open_with_flags(path, flags).map_err(cannot)?;
        if exists {
            check::check_contents(&connection, path, SCHEMA_VERSION)?;
        }
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(cannot)?;
        // WAL with synchronous=NORMAL: a committed transaction survives a process crash.
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(cannot)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(cannot)?;
        connection.execute_batch(SCHEMA).map_err(cannot)?;
        connection
            .pragma_update(None, "application_id", check::APPLICATION_ID)
            .map_err(cannot)?;
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(cannot)?;
        Ok(Db::over(connection))
    }

    fn over(connection: Connection) -> Db {
        Db {
            connection,
            group_open: false,
            #[cfg(test)]
            fail_next_group_commit: false,
        }
    }

    /// The database over an already open connection (tests open read-only ones).
    #[cfg(test)]
    pub fn with_connection(connection: Connection) -> Db {
        Db::over(connection)
    }
}

/// The columns of a trial row, before decoding.
struct StoredTrial {
    id: TrialId,
    parent_id: Option<TrialId>,
    spec_json: String,
    state: String,
    epoch: u64,
    failures: u32,
    attempts: u32,
    placement: Option<Placement>,
    progress_json: String,
    result_json: Option<String>,
    reason: String,
    run_ms: u64,
    attempt_started_unix_ms: Option<u64>,
    last_placement: Option<Placement>,
}

fn placement(worker: Option<String>, slot: Option<u32>) -> Option<Placement> {
    match (worker, slot) {
        (Some(worker), Some(slot)) => Some(Placement {
            worker,
            slots: vec![slot],
        }),
        _ => None,
    }
}

impl Db {
    /// The slots after the first of every trial's latest attempt (trials on several
    /// devices), in placement order.
    fn further_slots(&self) -> Result<Vec<(TrialId, u32)>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT s.trial_id, s.slot FROM attempt_slots s
             JOIN trials t ON t.id = s.trial_id AND t.epoch = s.epoch
             ORDER BY s.trial_id, s.position",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl StoredTrial {
    fn decode(self) -> Result<Trial, DbError> {
        let id = self.id;
        let spec: TrialSpec = serde_json::from_str(&self.spec_json)
            .map_err(|error| DbError::Corrupt(format!("stored spec of trial {id}: {error}")))?;
        let state: TrialState = self.state.parse().map_err(DbError::Corrupt)?;
        let result = self
            .result_json
            .map(|json| {
                serde_json::from_str::<TrialResult>(&json).map_err(|error| {
                    DbError::Corrupt(format!("stored result of trial {id}: {error}"))
                })
            })
            .transpose()?;
        Ok(Trial {
            id,
            parent_id: self.parent_id,
            spec,
            // Only a running trial holds a slot.
            placement: self.placement.filter(|_| state == TrialState::Running),
            state,
            epoch: self.epoch,
            failures: self.failures,
            attempts: self.attempts,
            last_placement: self.last_placement,
            progress: parse_progress(&self.progress_json),
            result,
            reason: self.reason,
            run_ms: self.run_ms,
            attempt_started_unix_ms: self.attempt_started_unix_ms,
        })
    }
}

impl Database for Db {
    fn load_trials(&self) -> Result<Vec<Trial>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT t.id, t.parent_id, t.spec_json, t.state, t.epoch, t.failures, t.attempts,
                    t.worker, t.slot, t.progress_json, t.result_json, t.reason, t.run_ms,
                    t.attempt_started_unix_ms, a.worker, a.slot
             FROM trials t LEFT JOIN attempts a ON a.trial_id = t.id AND a.epoch = t.epoch
             ORDER BY t.id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(StoredTrial {
                id: row.get(0)?,
                parent_id: row.get(1)?,
                spec_json: row.get(2)?,
                state: row.get(3)?,
                epoch: row.get(4)?,
                failures: row.get(5)?,
                attempts: row.get(6)?,
                placement: placement(row.get(7)?, row.get(8)?),
                progress_json: row.get(9)?,
                result_json: row.get(10)?,
                reason: row.get(11)?,
                run_ms: row.get(12)?,
                attempt_started_unix_ms: row.get(13)?,
                last_placement: placement(row.get(14)?, row.get(15)?),
            })
        })?;
        let mut trials: Vec<Trial> = rows
            .map(|row| row.map_err(DbError::from).and_then(StoredTrial::decode))
            .collect::<Result<_, _>>()?;
        for (trial_id, slot) in self.further_slots()? {
            let Ok(index) = trials.binary_search_by_key(&trial_id, |trial| trial.id) else {
                continue;
            };
            let trial = &mut trials[index];
            let placements = [&mut trial.placement, &mut trial.last_placement];
            for placement in placements.into_iter().flatten() {
                placement.slots.push(slot);
            }
        }
        Ok(trials)
    }

    fn cordoned_workers(&self) -> Result<Vec<String>, DbError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT name FROM workers WHERE cordoned = 1")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn grid_exists(&self, name: &str) -> Result<bool, DbError> {
        Ok(self
            .connection
            .query_row("SELECT 1 FROM grids WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn checkpoints(&self, trial_id: TrialId) -> Result<Vec<CheckpointRecord>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, trial_id, size, sha256, progress_json, final, score, key, created_unix_ms
             FROM checkpoints WHERE trial_id = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map([trial_id], |row| {
            Ok(CheckpointRecord {
                id: row.get(0)?,
                trial_id: row.get(1)?,
                size: row.get(2)?,
                sha256: row.get(3)?,
                progress: parse_progress(&row.get::<_, String>(4)?),
                is_final: row.get(5)?,
                score: row.get(6)?,
                key: row.get(7)?,
                created_unix_ms: row.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn logs(&self, trial_id: TrialId, page: Page) -> Result<Vec<(u64, String)>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT unix_ms, line FROM logs WHERE trial_id = ?1 ORDER BY rowid LIMIT ?2 OFFSET ?3",
        )?;
        let rows = statement.query_map(page_params(trial_id, page), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn metrics(&self, trial_id: TrialId, page: Page) -> Result<Vec<MetricRow>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT kind, step, epoch, clock, values_json FROM metrics
             WHERE trial_id = ?1 ORDER BY step, kind LIMIT ?2 OFFSET ?3",
        )?;
        let rows = statement.query_map(page_params(trial_id, page), metric_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn grids(&self) -> Result<Vec<(String, u64)>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT name, created_unix_ms FROM grids ORDER BY created_unix_ms, name",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn attempts(&self, trial_id: TrialId) -> Result<Vec<AttemptRow>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT epoch, worker, slot, started_unix_ms, ended_unix_ms, outcome_json
             FROM attempts WHERE trial_id = ?1 ORDER BY epoch",
        )?;
        let rows = statement.query_map([trial_id], |row| {
            let outcome: Option<String> = row.get(5)?;
            Ok(AttemptRow {
                epoch: row.get(0)?,
                worker: row.get(1)?,
                slot: row.get(2)?,
                started_unix_ms: row.get(3)?,
                ended_unix_ms: row.get(4)?,
                outcome: outcome.and_then(|json| serde_json::from_str(&json).ok()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn log_tail(&self, trial_id: TrialId, count: u64) -> Result<Vec<(u64, String)>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT unix_ms, line FROM (SELECT rowid, unix_ms, line FROM logs WHERE trial_id = ?1
             ORDER BY rowid DESC LIMIT ?2) ORDER BY rowid",
        )?;
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![trial_id, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn latest_metrics(&self, trial_id: TrialId, count: u64) -> Result<Vec<MetricRow>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT kind, step, epoch, clock, values_json FROM metrics
             WHERE trial_id = ?1 ORDER BY step DESC, kind LIMIT ?2",
        )?;
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![trial_id, limit], metric_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn attempt_outcomes(&self) -> Result<Vec<(String, u64)>, DbError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT json_extract(outcome_json, '$.outcome') AS outcome, count(*) FROM attempts
             WHERE outcome_json IS NOT NULL GROUP BY outcome ORDER BY outcome",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?.unwrap_or_default(),
                row.get(1)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn probe_write(&mut self) -> Result<(), DbError> {
        let transaction = self.connection.savepoint()?;
        transaction.execute(
            "INSERT OR REPLACE INTO readiness (id, unix_ms) VALUES (1, ?1)",
            [unix_ms()],
        )?;
        Ok(transaction.commit()?)
    }

    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, DbError> {
        // A savepoint is a transaction of its own outside a group and a nested one inside it:
        // released, it commits or joins the group; dropped, it undoes only its own writes.
        Ok(Box::new(SqliteTransaction(self.connection.savepoint()?)))
    }

    fn begin_group(&mut self) -> Result<(), DbError> {
        if !self.group_open {
            self.connection.execute_batch("BEGIN")?;
            self.group_open = true;
        }
        Ok(())
    }

    fn commit_group(&mut self) -> Result<(), DbError> {
        if !self.group_open {
            return Ok(());
        }
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_group_commit) {
            return Err(DbError::Open("injected failure of a group commit".into()));
        }
        self.connection.execute_batch("COMMIT")?;
        self.group_open = false;
        Ok(())
    }

    fn rollback_group(&mut self) -> Result<(), DbError> {
        if !self.group_open {
            return Ok(());
        }
        self.group_open = false;
        // A failed COMMIT may have ended the transaction already; then there is nothing to undo.
        if !self.connection.is_autocommit() {
            self.connection.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn fail_next_group_commit(&mut self) {
        self.fail_next_group_commit = true;
    }
}

/// A metric row of the columns `kind, step, epoch, clock, values_json`, in that order.
fn metric_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MetricRow> {
    Ok(MetricRow {
        kind: row.get(0)?,
        step: row.get(1)?,
        epoch: row.get(2)?,
        clock: row.get(3)?,
        values_json: row.get(4)?,
    })
}

/// The parameters of a paged query: the trial, then LIMIT and OFFSET as SQLite integers.
fn page_params(trial_id: TrialId, page: Page) -> [i64; 3] {
    let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    [clamp(trial_id), clamp(page.limit), clamp(page.offset)]
}

/// A transaction of `Db`: a savepoint, so that it nests in a group.
struct SqliteTransaction<'c>(rusqlite::Savepoint<'c>);

impl Transaction for SqliteTransaction<'_> {
    fn insert_grid(&self, name: &str, file_name: &str, toml: &str) -> Result<(), DbError> {
        self.0.execute(
            "INSERT INTO grids (name, file_name, toml, created_unix_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, file_name, toml, unix_ms()],
        )?;
        Ok(())
    }

    fn update_grid(&self, name: &str, file_name: &str, toml: &str) -> Result<(), DbError> {
        self.0.execute(
            "UPDATE grids SET file_name = ?2, toml = ?3 WHERE name = ?1",
            params![name, file_name, toml],
        )?;
        Ok(())
    }

    fn insert_trial(
        &self,
        spec: &TrialSpec,
        parent_id: Option<TrialId>,
    ) -> Result<TrialId, DbError> {
        let spec_json = encode("trial spec", serde_json::to_string(spec))?;
        self.0
            .prepare_cached(
                "INSERT INTO trials (grid, parent_id, spec_json, state) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                spec.grid,
                parent_id,
                spec_json,
                TrialState::Queued.name()
            ])?;
        Ok(self.0.last_insert_rowid() as TrialId)
    }

    fn save_trial(&self, trial: &Trial) -> Result<(), DbError> {
        let (worker, slot) = match &trial.placement {
            Some(placement) => (
                Some(placement.worker.as_str()),
                placement.slots.first().copied(),
            ),
            None => (None, None),
        };
        let result_json = trial
            .result
            .as_ref()
            .map(|result| encode("trial result", serde_json::to_string(result)))
            .transpose()?;
        self.0
            .prepare_cached(
                "UPDATE trials SET state = ?2, epoch = ?3, failures = ?4, attempts = ?5, worker = ?6,
                     slot = ?7, progress_json = ?8, result_json = ?9, reason = ?10, run_ms = ?11,
                     attempt_started_unix_ms = ?12
                 WHERE id = ?1",
            )?
            .execute(params![
                trial.id,
                trial.state.name(),
                trial.epoch,
                trial.failures,
                trial.attempts,
                worker,
                slot,
                progress_json(&trial.progress),
                result_json,
                trial.reason,
                trial.run_ms,
                trial.attempt_started_unix_ms,
            ])?;
        Ok(())
    }

    fn save_progress(&self, trial_id: TrialId, progress: &Progress) -> Result<(), DbError> {
        self.0
            .prepare_cached("UPDATE trials SET progress_json = ?2 WHERE id = ?1")?
            .execute(params![trial_id, progress_json(progress)])?;
        Ok(())
    }

    fn open_attempt(
        &self,
        trial_id: TrialId,
        epoch: u64,
        placement: &Placement,
        started_unix_ms: u64,
    ) -> Result<(), DbError> {
        let Some((first, further)) = placement.slots.split_first() else {
            return Err(DbError::Encode(format!(
                "attempt {epoch} of trial {trial_id}: a placement without slots"
            )));
        };
        self.0
            .prepare_cached(
                "INSERT INTO attempts (trial_id, epoch, worker, slot, started_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                trial_id,
                epoch,
                placement.worker,
                first,
                started_unix_ms
            ])?;
        for (position, slot) in further.iter().enumerate() {
            self.0
                .prepare_cached(
                    "INSERT INTO attempt_slots (trial_id, epoch, position, slot)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![trial_id, epoch, position, slot])?;
        }
        Ok(())
    }

    fn save_spec(&self, trial_id: TrialId, spec: &TrialSpec) -> Result<(), DbError> {
        let spec_json = encode("trial spec", serde_json::to_string(spec))?;
        self.0
            .prepare_cached("UPDATE trials SET spec_json = ?2 WHERE id = ?1")?
            .execute(params![trial_id, spec_json])?;
        Ok(())
    }

    fn close_attempt(
        &self,
        trial_id: TrialId,
        epoch: u64,
        outcome: &AttemptOutcome,
    ) -> Result<(), DbError> {
        let outcome_json = encode("attempt outcome", serde_json::to_string(outcome))?;
        self.0
            .prepare_cached(
                "UPDATE attempts SET ended_unix_ms = ?3, outcome_json = ?4
                 WHERE trial_id = ?1 AND epoch = ?2",
            )?
            .execute(params![trial_id, epoch, unix_ms(), outcome_json])?;
        Ok(())
    }

    fn insert_checkpoint(
        &self,
        trial_id: TrialId,
        epoch: u64,
        checkpoint: &NewCheckpoint,
    ) -> Result<u64, DbError> {
        self.0.execute(
            "INSERT INTO checkpoints
                 (trial_id, epoch, size, sha256, progress_json, final, score, key, created_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                trial_id,
                epoch,
                checkpoint.size,
                checkpoint.sha256,
                progress_json(&checkpoint.progress),
                checkpoint.is_final,
                checkpoint.score,
                checkpoint.key,
                unix_ms()
            ],
        )?;
        Ok(self.0.last_insert_rowid() as u64)
    }

    fn delete_checkpoints(&self, ids: &[u64]) -> Result<(), DbError> {
        let mut statement = self
            .0
            .prepare_cached("DELETE FROM checkpoints WHERE id = ?1")?;
        for id in ids {
            statement.execute([id])?;
        }
        Ok(())
    }

    fn set_cordoned(&self, name: &str, cordoned: bool) -> Result<(), DbError> {
        self.0.execute(
            "INSERT INTO workers (name, cordoned) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET cordoned = ?2",
            params![name, cordoned],
        )?;
        Ok(())
    }

    fn insert_metrics(&self, trial_id: TrialId, rows: &[MetricRow]) -> Result<(), DbError> {
        let mut statement = self.0.prepare_cached(
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

    fn insert_log(&self, trial_id: TrialId, line: &str) -> Result<(), DbError> {
        self.0
            .prepare_cached("INSERT INTO logs (trial_id, unix_ms, line) VALUES (?1, ?2, ?3)")?
            .execute(params![trial_id, unix_ms(), line])?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), DbError> {
        Ok(self.0.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_stored_as_a_json_array_and_unreadable_progress_is_zero() {
        let progress = Progress {
            epochs_done: 3,
            epochs_total: 50,
            steps_done: 1200,
            steps_total: 20000,
        };
        let text = progress_json(&progress);
        assert_eq!(text, "[3,50,1200,20000]");
        assert_eq!(parse_progress(&text), progress);
        // The column's default before the first heartbeat.
        assert_eq!(parse_progress("{}"), NO_PROGRESS);
    }
}
