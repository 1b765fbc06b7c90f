//! What the coordinator checks before it trusts a database file: that it is a SQLite file,
//! that it is ours (application id and schema version), and that its pages are intact. Only a
//! missing file is created; anything else that is wrong stops the start with the file named.

use super::DbError;
use rusqlite::{Connection, OpenFlags};
use std::io::Read;
use std::path::Path;

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// `PRAGMA application_id` of a darts-prime coordinator database ("PRME" in ASCII).
pub const APPLICATION_ID: i64 = 0x5052_4d45;

/// Problems `PRAGMA quick_check` reports at most (it lists every bad page otherwise).
const MAX_REPORTED_PROBLEMS: usize = 5;

/// The tables every database of ours holds (a database written before the application id
/// was set is recognised by them).
const OUR_TABLES: [&str; 3] = ["grids", "trials", "checkpoints"];

/// Why an existing file at `path` cannot be used, naming it.
fn refused(path: &Path, why: &str) -> DbError {
    DbError::Open(format!(
        "database file {}: {why}; the coordinator does not start on it (restore a backup or \
         move the file away; a new database is created only where none exists)",
        path.display()
    ))
}

/// Checks that the existing file at `path` looks like a SQLite database before SQLite opens
/// it: not empty, with SQLite's header.
pub fn check_file(path: &Path) -> Result<(), DbError> {
    let mut file = std::fs::File::open(path)
        .map_err(|error| refused(path, &format!("cannot be read ({error})")))?;
    let length = file
        .metadata()
        .map_err(|error| refused(path, &format!("cannot be read ({error})")))?
        .len();
    if length == 0 {
        return Err(refused(path, "the file exists but is empty (0 bytes)"));
    }
    let mut header = [0u8; 16];
    if file.read_exact(&mut header).is_err() || &header != SQLITE_HEADER {
        return Err(refused(path, "not a SQLite database (its header is wrong)"));
    }
    Ok(())
}

/// Checks an open database: intact pages (`PRAGMA quick_check`), our application id, and
/// schema version `schema_version`.
pub fn check_contents(
    connection: &Connection,
    path: &Path,
    schema_version: i64,
) -> Result<(), DbError> {
    let problems = quick_check(connection)
        .map_err(|error| refused(path, &format!("its integrity check failed ({error})")))?;
    if !problems.is_empty() {
        return Err(refused(
            path,
            &format!("it is corrupt: {}", problems.join("; ")),
        ));
    }
    let application_id: i64 = connection
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|error| refused(path, &format!("cannot read its application id ({error})")))?;
    let user_version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|error| refused(path, &format!("cannot read its schema version ({error})")))?;
    let ours = application_id == APPLICATION_ID
        || (application_id == 0 && user_version == 1 && has_our_tables(connection, path)?);
    if !ours {
        return Err(refused(
            path,
            &format!(
                "a SQLite database of another program (application id {application_id:#x}, \
                 expected {APPLICATION_ID:#x})"
            ),
        ));
    }
    if user_version != schema_version {
        return Err(refused(
            path,
            &format!(
                "schema version {user_version}, this coordinator reads version {schema_version}"
            ),
        ));
    }
    Ok(())
}

/// The problems `PRAGMA quick_check` finds (empty when the database is intact).
fn quick_check(connection: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare("PRAGMA quick_check")?;
    let lines = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(lines
        .into_iter()
        .filter(|line| line != "ok")
        .take(MAX_REPORTED_PROBLEMS)
        .collect())
}

fn has_our_tables(connection: &Connection, path: &Path) -> Result<bool, DbError> {
    let mut statement = connection
        .prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?1, ?2, ?3)")
        .map_err(|error| refused(path, &format!("cannot list its tables ({error})")))?;
    let count: usize = statement
        .query_row(OUR_TABLES, |row| row.get(0))
        .map_err(|error| refused(path, &format!("cannot list its tables ({error})")))?;
    Ok(count == OUR_TABLES.len())
}

/// Opens the existing database at `path` read-only and checks it as a start would (a backup
/// before it is used).
pub fn check_readonly(path: &Path, schema_version: i64) -> Result<(), DbError> {
    check_file(path)?;
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| refused(path, &format!("cannot be opened ({error})")))?;
    check_contents(&connection, path, schema_version)
}

#[cfg(test)]
mod tests {
    use crate::db::sqlite::SCHEMA_VERSION;
    use crate::db::{Database, Db, DbError};
    use rusqlite::{Connection, OpenFlags};
    use std::path::{Path, PathBuf};

    /// Opening `path` fails with a message naming the file and containing `why`.
    fn refused_with(path: &Path, why: &str) {
        let error = match Db::open(path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(error) => error,
        };
        let message = error.to_string();
        assert!(matches!(error, DbError::Open(_)), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(why), "{message}");
    }

    /// A database of ours with enough rows to span many pages, closed (WAL checkpointed).
    fn multi_page_database(dir: &Path) -> PathBuf {
        let path = dir.join("coordinator.sqlite3");
        drop(Db::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        let line = "x".repeat(300);
        for trial_id in 0..400 {
            connection
                .execute(
                    "INSERT INTO logs (trial_id, unix_ms, line) VALUES (?1, 0, ?2)",
                    rusqlite::params![trial_id, line],
                )
                .unwrap();
        }
        drop(connection);
        path
    }

    #[test]
    fn a_missing_file_is_created_and_then_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.sqlite3");
        let mut db = Db::open(&path).unwrap();
        db.probe_write().unwrap();
        drop(db);
        Db::open(&path).unwrap();
    }

    #[test]
    fn an_empty_or_non_sqlite_file_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.sqlite3");
        std::fs::write(&path, b"").unwrap();
        refused_with(&path, "empty (0 bytes)");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "not re-created");
        std::fs::write(&path, vec![0x5a; 10_000]).unwrap();
        refused_with(&path, "not a SQLite database");
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 10_000]);
    }

    #[test]
    fn a_database_of_another_program_or_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.sqlite3");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("CREATE TABLE songs (title TEXT); PRAGMA application_id = 7;")
            .unwrap();
        drop(connection);
        refused_with(&path, "another program (application id 0x7");

        let path = dir.path().join("newer.sqlite3");
        drop(Db::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(connection);
        refused_with(&path, "schema version 2, this coordinator reads version 1");
    }

    #[test]
    fn a_database_written_before_the_application_id_is_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.sqlite3");
        drop(Db::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        connection.pragma_update(None, "application_id", 0).unwrap();
        drop(connection);
        Db::open(&path).unwrap();
    }

    #[test]
    fn a_corrupt_middle_page_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = multi_page_database(dir.path());
        Db::open(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let page_size = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
        assert!(bytes.len() >= 10 * page_size, "{} bytes", bytes.len());
        bytes[2 * page_size..3 * page_size].fill(0xab);
        std::fs::write(&path, bytes).unwrap();
        refused_with(&path, "corrupt");
    }

    #[test]
    fn a_read_only_database_fails_the_write_probe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.sqlite3");
        drop(Db::open(&path).unwrap());
        let connection =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut db = Db::with_connection(connection);
        let error = db.probe_write().unwrap_err();
        assert!(error.to_string().contains("readonly"), "{error}");
    }
}
