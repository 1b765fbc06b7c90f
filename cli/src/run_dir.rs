//! Run directories of `prime search` and `prime eval`: a new run never mixes its files with an
//! old one's, a resumed run finds the data it started with, and a run can be stopped after a
//! given number of steps.

use crate::device::MachineArgs;
use anyhow::{bail, Context};
use clap::Args;
use prime_nas::fingerprint::DataFingerprint;
use std::path::{Path, PathBuf};

/// The data directory when `--data-dir` is not given to a new run.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Where a run lives and when it stops early; shared by `prime search` and `prime eval`.
#[derive(Debug, Args)]
pub struct RunDirArgs {
    /// Run directory, absent or empty (default: a new directory under runs/ named after the
    /// run).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Delete everything in a non-empty --out run directory first (the run it held is lost);
    /// a folder that holds no run is never deleted.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Continue the run in DIR from its last checkpoint, with the config and the data
    /// directory stored there.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Checkpoint and stop once this many weight steps are done in all (counted from the
    /// run's start), as Ctrl-C does; continue later with --resume.
    #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stop_after: Option<u64>,
}

impl RunDirArgs {
    /// The directory of a new run: `--out` (checked empty, or cleared with `--force`), else
    /// `default`.
    pub fn new_run_dir(
        &self,
        command: &str,
        default: impl FnOnce() -> PathBuf,
    ) -> anyhow::Result<PathBuf> {
        let Some(dir) = &self.out else {
            return Ok(default());
        };
        prepare_new(dir, self.force, command)?;
        Ok(dir.clone())
    }
}

/// Makes `dir` ready for a new run: absent or empty, or emptied when `force` is given.
pub fn prepare_new(dir: &Path, force: bool, command: &str) -> anyhow::Result<()> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", dir.display())),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !force {
        bail!(
            "{dir} is not empty: continue the run it holds with `prime {command} --resume {dir}`, \
             delete its contents with --force, or choose another --out",
            dir = dir.display()
        );
    }
    // --force clears an old run, never an arbitrary folder given by mistake.
    let holds_a_run = ["config.toml", "checkpoints", "metrics.jsonl"]
        .iter()
        .any(|name| dir.join(name).exists());
    if !holds_a_run {
        bail!(
            "{} is not empty and holds no run (no config.toml, checkpoints or metrics.jsonl); \
             --force only clears a run directory: choose another --out",
            dir.display()
        );
    }
    eprintln!(
        "{command}: --force: deleting the contents of {}",
        dir.display()
    );
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    Ok(())
}

/// The data directory of a run: `--data-dir` when given; for a resume, the directory the run
/// recorded when it started; else `data`.
pub fn data_dir(machine: &MachineArgs, resume: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &machine.data_dir {
        return Ok(dir.clone());
    }
    if let Some(run_dir) = resume {
        if let Some(record) = DataFingerprint::read(run_dir)? {
            return Ok(record.data_dir);
        }
    }
    Ok(PathBuf::from(DEFAULT_DATA_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_needs_an_empty_directory_or_force() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("run");
        prepare_new(&dir, false, "search").unwrap();
        std::fs::create_dir(&dir).unwrap();
        prepare_new(&dir, false, "search").unwrap();
        std::fs::write(dir.join("config.toml"), "version = 1\n").unwrap();
        let error = prepare_new(&dir, false, "search").unwrap_err().to_string();
        assert!(error.contains("--resume"), "{error}");
        assert!(error.contains("--force"), "{error}");
        assert!(
            dir.join("config.toml").exists(),
            "nothing is deleted without --force"
        );
        prepare_new(&dir, true, "search").unwrap();
        assert!(!dir.exists());

        let folder = parent.path().join("papers");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("draft.tex"), "keep me").unwrap();
        let error = prepare_new(&folder, true, "search")
            .unwrap_err()
            .to_string();
        assert!(error.contains("holds no run"), "{error}");
        assert!(folder.join("draft.tex").exists());
    }
}
