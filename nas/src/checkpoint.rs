//! Atomic, verified checkpoints: a directory of safetensors files and a JSON state, with a
//! manifest holding the sha256 of every file.
//!
//! A checkpoint is written under a temporary name, flushed, renamed into place, and only then
//! named by the `LATEST` pointer (itself replaced by a rename), so a crash at any point leaves
//! the previous checkpoint intact. Loading verifies every file against the manifest.

use prime_core::checkpoint_layout::{Manifest, MANIFEST_FILE};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

pub use prime_core::checkpoint_layout::{CHECKPOINT_FORMAT, LATEST_FILE};
const STATE_FILE: &str = "state.json";
/// Complete checkpoints kept besides the newest one.
const KEEP_PREVIOUS: usize = 1;

/// Checkpoint errors; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// No checkpoint was found.
    #[error("{}: no checkpoint to resume from (no {LATEST_FILE} file)", .dir.display())]
    NotFound {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// A file does not match the manifest.
    #[error("{}: sha256 {actual} does not match the manifest's {expected} (corrupt checkpoint)", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Hash in the manifest.
        expected: String,
        /// Hash of the file.
        actual: String,
    },
    /// A manifest or state file is malformed, or of another format version.
    #[error("{}: {message}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// libtorch failed to read or write tensors.
    #[error("{}: {source}", .path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: tch::TchError,
    },
}

/// Why a resume is refused when the run's config changed since its checkpoint was written.
pub const CONFIG_CHANGED: &str = "the config differs from the one the checkpoint was written \
                                  with (see config.toml in the run directory)";

/// A checkpoint in memory: named groups of named tensors plus a JSON state.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Tensor groups, each stored as `<group>.safetensors`.
    pub groups: BTreeMap<String, Vec<(String, Tensor)>>,
    /// Everything else (counters, positions, schedule state).
    pub state: serde_json::Value,
}

impl Checkpoint {
    /// The loop state saved in this checkpoint (read from `path`, named in errors).
    pub fn loop_state<S: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<S, CheckpointError> {
        serde_json::from_value(self.state.clone()).map_err(|error| CheckpointError::Malformed {
            path: path.to_path_buf(),
            message: format!("state: {error}"),
        })
    }

    /// The tensors of `group` (empty if absent).
    pub fn group(&self, group: &str) -> &[(String, Tensor)] {
        self.groups.get(group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Writes the checkpoint as `<dir>/<tag>/` and points `<dir>/LATEST` at it; older
    /// checkpoints beyond the previous one are removed. Returns the checkpoint's directory.
    pub fn write(&self, dir: &Path, tag: &str) -> Result<PathBuf, CheckpointError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let final_dir = dir.join(tag);
        let temp_dir = dir.join(format!(".{tag}.tmp"));
        if temp_dir.exists() {
            fs::remove_dir_all(&temp_dir).map_err(io(&temp_dir))?;
        }
        fs::create_dir_all(&temp_dir).map_err(io(&temp_dir))?;
        let mut files = BTreeMap::new();
        for (group, tensors) in &self.groups {
            let name = format!("{group}.safetensors");
            let path = temp_dir.join(&name);
            let host: Vec<(String, Tensor)> = tensors
                .iter()
                .map(|(name, tensor)| {
                    (
                        name.clone(),
                        tensor.detach().to_device(Device::Cpu).contiguous(),
                    )
                })
                .collect();
            Tensor::write_safetensors(&host, &path).map_err(|source| CheckpointError::Tensor {
                path: path.clone(),
                source,
            })?;
            files.insert(name, sync_and_hash(&path)?);
        }
        let state_path = temp_dir.join(STATE_FILE);
        write_synced(&state_path, &to_json(&self.state, &state_path)?)?;
        files.insert(STATE_FILE.to_string(), sync_and_hash(&state_path)?);
        let manifest = Manifest {
            format: CHECKPOINT_FORMAT,
            tag: tag.to_string(),
            files,
        };
        let manifest_path = temp_dir.join(MANIFEST_FILE);
        write_synced(&manifest_path, &to_json(&manifest, &manifest_path)?)?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        fs::rename(&temp_dir, &final_dir).map_err(io(&final_dir))?;
        let pointer_temp = dir.join(format!(".{LATEST_FILE}.tmp"));
        write_synced(&pointer_temp, tag.as_bytes())?;
        fs::rename(&pointer_temp, dir.join(LATEST_FILE)).map_err(io(dir))?;
        sync_dir(dir);
        prune_old(dir, tag)?;
        Ok(final_dir)
    }

    /// Reads the checkpoint `LATEST` names in `dir`, verifying every file.
    pub fn read_latest(dir: &Path) -> Result<(Checkpoint, PathBuf), CheckpointError> {
        let pointer = dir.join(LATEST_FILE);
        if !pointer.exists() {
            return Err(CheckpointError::NotFound {
                dir: dir.to_path_buf(),
            });
        }
        let tag = fs::read_to_string(&pointer).map_err(|source| CheckpointError::Io {
            path: pointer.clone(),
            source,
        })?;
        let checkpoint_dir = dir.join(tag.trim());
        Ok((Self::read_dir(&checkpoint_dir)?, checkpoint_dir))
    }

    /// Reads and verifies the checkpoint in `checkpoint_dir`.
    pub fn read_dir(checkpoint_dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let manifest_path = checkpoint_dir.join(MANIFEST_FILE);
        let bytes = fs::read(&manifest_path).map_err(|source| CheckpointError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|error| CheckpointError::Malformed {
                path: manifest_path.clone(),
                message: error.to_string(),
            })?;
        if manifest.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Malformed {
                path: manifest_path,
                message: format!(
                    "checkpoint format {} (this build reads {CHECKPOINT_FORMAT})",
                    manifest.format
                ),
            });
        }
        let mut checkpoint = Checkpoint::default();
        for (name, expected) in &manifest.files {
            let path = checkpoint_dir.join(name);
            let actual = hash_file(&path)?;
            if &actual != expected {
                return Err(CheckpointError::Corrupt {
                    path,
                    expected: expected.clone(),
                    actual,
                });
            }
            if name == STATE_FILE {
                let bytes = fs::read(&path).map_err(|source| CheckpointError::Io {
                    path: path.clone(),
                    source,
                })?;
                checkpoint.state =
                    serde_json::from_slice(&bytes).map_err(|error| CheckpointError::Malformed {
                        path: path.clone(),
                        message: error.to_string(),
                    })?;
            } else if let Some(group) = name.strip_suffix(".safetensors") {
                let tensors =
                    Tensor::read_safetensors(&path).map_err(|source| CheckpointError::Tensor {
                        path: path.clone(),
                        source,
                    })?;
                checkpoint.groups.insert(group.to_string(), tensors);
            }
        }
        Ok(checkpoint)
    }
}

/// Whether `dir` holds a checkpoint to resume from.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(LATEST_FILE).exists()
}

/// Hex sha256 of a file's bytes.
pub fn hash_file(path: &Path) -> Result<String, CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(sha256_hex(&bytes))
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An I/O error that names `path`.
pub fn annotate(path: &Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

fn sync_and_hash(path: &Path) -> Result<String, CheckpointError> {
    let file = fs::File::open(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    file.sync_all().map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    hash_file(path)
}

/// Pretty JSON of `value`, to be written to `path` (named in the error).
fn to_json(value: &impl serde::Serialize, path: &Path) -> Result<Vec<u8>, CheckpointError> {
    serde_json::to_vec_pretty(value).map_err(|error| CheckpointError::Malformed {
        path: path.to_path_buf(),
        message: format!("cannot be serialised: {error}"),
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir) {
        // Best effort: some file systems do not support syncing a directory.
        let _ = handle.sync_all();
    }
}

fn prune_old(dir: &Path, newest: &str) -> Result<(), CheckpointError> {
    let entries = fs::read_dir(dir).map_err(|source| CheckpointError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut tags: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join(MANIFEST_FILE).exists())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|tag| tag != newest && !tag.starts_with('.'))
        .collect();
    tags.sort();
    let excess = tags.len().saturating_sub(KEEP_PREVIOUS);
    for tag in tags.into_iter().take(excess) {
        let path = dir.join(&tag);
        fs::remove_dir_all(&path).map_err(|source| CheckpointError::Io { path, source })?;
    }
    Ok(())
}

/// Copies `saved` tensors into `targets` by name (under no_grad), checking that every target
/// is present with the same shape; `what` names the group in errors.
pub fn restore_named(
    targets: &[(String, Tensor)],
    saved: &[(String, Tensor)],
    origin: &Path,
) -> Result<(), CheckpointError> {
    let saved: BTreeMap<&str, &Tensor> = saved.iter().map(|(name, t)| (name.as_str(), t)).collect();
    for (name, target) in targets {
        let source = saved
            .get(name.as_str())
            .ok_or_else(|| CheckpointError::Malformed {
                path: origin.to_path_buf(),
                message: format!("tensor `{name}` is missing"),
            })?;
        if source.size() != target.size() {
            return Err(CheckpointError::Malformed {
                path: origin.to_path_buf(),
                message: format!(
                    "tensor `{name}` has shape {:?}, the network needs {:?}",
                    source.size(),
                    target.size()
                ),
            });
        }
        tch::no_grad(|| {
            let mut target = target.shallow_clone();
            target.copy_(source);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn sample(value: f64) -> Checkpoint {
        let mut checkpoint = Checkpoint::default();
        checkpoint.groups.insert(
            "weights".to_string(),
            vec![(
                "a".to_string(),
                Tensor::full([2, 3], value, (Kind::Float, Device::Cpu)),
            )],
        );
        checkpoint.state = serde_json::json!({ "epoch": value });
        checkpoint
    }

    #[test]
    fn writes_atomically_and_reads_back_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        sample(1.0).write(dir.path(), "step-000001").unwrap();
        sample(2.0).write(dir.path(), "step-000002").unwrap();
        sample(3.0).write(dir.path(), "step-000003").unwrap();
        let (checkpoint, path) = Checkpoint::read_latest(dir.path()).unwrap();
        assert!(path.ends_with("step-000003"));
        assert_eq!(checkpoint.state["epoch"], 3.0);
        assert_eq!(checkpoint.group("weights")[0].1.double_value(&[1, 2]), 3.0);
        assert!(
            !dir.path().join("step-000001").exists(),
            "old checkpoints are pruned"
        );
        assert!(
            dir.path().join("step-000002").exists(),
            "the previous one is kept"
        );
    }

    #[test]
    fn a_corrupted_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let written = sample(1.0).write(dir.path(), "step-000001").unwrap();
        let file = written.join("weights.safetensors");
        let mut bytes = fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&file, bytes).unwrap();
        let error = Checkpoint::read_latest(dir.path()).unwrap_err().to_string();
        assert!(error.contains("weights.safetensors"), "{error}");
        assert!(error.contains("corrupt"), "{error}");
    }

    #[test]
    fn a_missing_checkpoint_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let error = Checkpoint::read_latest(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no checkpoint to resume from"), "{error}");
    }

    #[test]
    fn restore_checks_names_and_shapes() {
        let target = vec![(
            "a".to_string(),
            Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
        )];
        let saved = sample(5.0);
        restore_named(&target, saved.group("weights"), Path::new("x")).unwrap();
        assert_eq!(target[0].1.double_value(&[0, 0]), 5.0);
        let wrong = vec![(
            "a".to_string(),
            Tensor::zeros([3], (Kind::Float, Device::Cpu)),
        )];
        let error = restore_named(&wrong, saved.group("weights"), Path::new("x")).unwrap_err();
        assert!(error.to_string().contains("shape"));
    }
}
