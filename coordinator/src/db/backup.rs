//! Online backups of the database through SQLite's backup API: a consistent copy taken while
//! the coordinator keeps writing.

use super::check::check_readonly;
use super::sqlite::SCHEMA_VERSION;
use super::DbError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Pause before a backup step is tried again while the database is locked.
const LOCKED_RETRY: Duration = Duration::from_millis(20);

/// Longest wait for a lock before the backup is given up (a write transaction of the
/// coordinator lasts milliseconds).
const MAX_LOCKED_WAIT: Duration = Duration::from_secs(10);

/// Copies the database at `database` into the new file `target`, in one step (so the copy is
/// one consistent snapshot), then checks the copy as a start would.
pub fn backup(database: &Path, target: &Path) -> Result<(), DbError> {
    let failed = |error: rusqlite::Error| {
        DbError::Open(format!(
            "backup of {} into {} failed: {error}",
            database.display(),
            target.display()
        ))
    };
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    let mut copy = Connection::open(target).map_err(failed)?;
    copy_all_pages(&source, &mut copy).map_err(failed)?;
    // One self-contained file: no write-ahead log beside it.
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(failed)?;
    drop(copy);
    check_readonly(target, SCHEMA_VERSION)
}

/// Checks that the file at `path` is an intact coordinator database of this schema version
/// (a backup before it is kept or restored); why it is not, naming the file.
pub fn check_database_file(path: &Path) -> Result<(), String> {
    check_readonly(path, SCHEMA_VERSION).map_err(|error| error.to_string())
}

/// Copies every page of `source` into `copy` in one step (one read transaction of the
/// source, so one consistent snapshot); retried while a writer holds the source locked.
fn copy_all_pages(source: &Connection, copy: &mut Connection) -> rusqlite::Result<()> {
    let backup = Backup::new(source, copy)?;
    let mut waited = Duration::ZERO;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            _ if waited < MAX_LOCKED_WAIT => {
                std::thread::sleep(LOCKED_RETRY);
                waited += LOCKED_RETRY;
            }
            _ => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(format!(
                        "the database stayed locked for {} s",
                        MAX_LOCKED_WAIT.as_secs()
                    )),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Database, Db};

    #[test]
    fn a_backup_holds_what_was_committed_and_passes_the_start_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.sqlite3");
        let mut db = Db::open(&path).unwrap();
        let transaction = db.begin().unwrap();
        transaction
            .insert_grid("g1", "g1.toml", "version = 1")
            .unwrap();
        transaction.commit().unwrap();
        let copy = dir.path().join("copy.sqlite3");
        backup(&path, &copy).unwrap();
        assert!(Db::open(&copy).unwrap().grid_exists("g1").unwrap());
    }
}
