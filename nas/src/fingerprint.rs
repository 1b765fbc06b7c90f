//! The data a run read, recorded in its run directory (`data.json`): the data directory it was
//! given and the sha256 of every file it read. A resume finds its data there without being
//! told again, and is refused when the files differ from those the run started with (the
//! resumed run would silently be another experiment).

use crate::checkpoint::annotate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The record's file name in the run directory.
pub const DATA_RECORD_FILE: &str = "data.json";

/// Where a run's data came from and what it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// The data directory as given to the run, made absolute.
    pub data_dir: PathBuf,
    /// sha256 (hex) of every file read, by its role (a CIFAR file's canonical name, a corpus
    /// split): the same data laid out differently on another machine still matches.
    pub files: BTreeMap<String, String>,
}

impl DataFingerprint {
    /// Hashes `files`, given as (role, path).
    pub fn of_files(data_dir: &Path, files: &[(String, PathBuf)]) -> std::io::Result<Self> {
        let absolute = std::path::absolute(data_dir).map_err(|error| annotate(data_dir, error))?;
        let mut hashes = BTreeMap::new();
        for (role, path) in files {
            hashes.insert(role.clone(), sha256_of_file(path)?);
        }
        Ok(Self {
            data_dir: absolute,
            files: hashes,
        })
    }

    /// The record of `run_dir`; `None` when the run directory has none (written by an older
    /// version, before data was recorded).
    pub fn read(run_dir: &Path) -> std::io::Result<Option<Self>> {
        let path = run_dir.join(DATA_RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(annotate(&path, error)),
        };
        serde_json::from_str(&text).map(Some).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            )
        })
    }

    /// Writes the record into `run_dir`.
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        let path = run_dir.join(DATA_RECORD_FILE);
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, text + "\n").map_err(|error| annotate(&path, error))
    }

    /// Why `self` (the data found now) is not the data of `recorded`, if it is not: the first
    /// file whose content differs, or that one of them lacks.
    pub fn differs_from(&self, recorded: &DataFingerprint) -> Option<String> {
        for (name, hash) in &recorded.files {
            match self.files.get(name) {
                None => return Some(format!("{name} was read by the run but not now")),
                Some(now) if now != hash => {
                    return Some(format!(
                        "{name} in {} differs from the file the run started with (sha256 {} \
                         now, {} then)",
                        self.data_dir.display(),
                        short(now),
                        short(hash)
                    ))
                }
                Some(_) => {}
            }
        }
        self.files
            .keys()
            .find(|name| !recorded.files.contains_key(*name))
            .map(|name| format!("{name} is read now but was not by the run"))
    }

    /// Writes the record of a new run, or checks a resumed run's data against its record
    /// (a run directory without one is accepted as it is).
    pub fn record_or_check(&self, run_dir: &Path, resume: bool) -> Result<(), FingerprintError> {
        if !resume {
            return Ok(self.write(run_dir)?);
        }
        let Some(recorded) = Self::read(run_dir)? else {
            return Ok(());
        };
        match self.differs_from(&recorded) {
            Some(difference) => Err(FingerprintError::Changed {
                run_dir: run_dir.to_path_buf(),
                recorded_dir: recorded.data_dir,
                difference,
            }),
            None => Ok(()),
        }
    }
}

/// Why a run's data record could not be written, or a resume's data is refused.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// The record or a data file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A resumed run's data is not the data it started with.
    #[error(
        "the data changed since the run started: {difference}; resume with the data in {}",
        .recorded_dir.display()
    )]
    Changed {
        /// The run directory being resumed.
        run_dir: PathBuf,
        /// The data directory the run started with.
        recorded_dir: PathBuf,
        /// The first difference found.
        difference: String,
    },
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path).map_err(|error| annotate(path, error))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|error| annotate(path, error))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_tell_changed_files() {
        let data = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let (a, b) = (data.path().join("a.bin"), data.path().join("b.bin"));
        std::fs::write(&a, b"first").unwrap();
        std::fs::write(&b, b"second").unwrap();
        let files = |paths: &[&PathBuf]| -> Vec<(String, PathBuf)> {
            paths
                .iter()
                .map(|path| {
                    (
                        path.file_name().unwrap().to_string_lossy().into(),
                        (*path).clone(),
                    )
                })
                .collect()
        };
        let recorded = DataFingerprint::of_files(data.path(), &files(&[&a, &b])).unwrap();
        assert_eq!(DataFingerprint::read(run.path()).unwrap(), None);
        recorded.record_or_check(run.path(), false).unwrap();
        assert_eq!(
            DataFingerprint::read(run.path()).unwrap().as_ref(),
            Some(&recorded)
        );
        assert_eq!(recorded.files.len(), 2);
        assert!(recorded.files.contains_key("a.bin"));
        recorded.record_or_check(run.path(), true).unwrap();

        std::fs::write(&b, b"changed").unwrap();
        let now = DataFingerprint::of_files(data.path(), &files(&[&a, &b])).unwrap();
        let error = now
            .record_or_check(run.path(), true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("b.bin in"), "{error}");
        assert!(
            error.contains("differs from the file the run started with"),
            "{error}"
        );
        let fewer = DataFingerprint::of_files(data.path(), &files(&[&a])).unwrap();
        assert!(fewer.differs_from(&recorded).unwrap().contains("b.bin"));
    }

    #[test]
    fn a_run_directory_without_a_record_resumes() {
        let data = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let file = data.path().join("x");
        std::fs::write(&file, b"x").unwrap();
        let now = DataFingerprint::of_files(data.path(), &[("x".to_string(), file)]).unwrap();
        now.record_or_check(run.path(), true).unwrap();
        assert!(!run.path().join(DATA_RECORD_FILE).exists());
    }
}
