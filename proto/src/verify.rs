//! Structural verification of checkpoint archives, without libtorch: the archive unpacks,
//! every checkpoint manifest in it parses, every file it lists is there with the listed sha256,
//! and every `LATEST` pointer names a checkpoint in the archive.
//!
//! The worker runs it before an upload and after a download, the coordinator before it commits
//! an upload: a checkpoint that cannot be opened is never committed, so a retry never resumes
//! from it.

use prime_core::checkpoint_layout::{Manifest, CHECKPOINT_FORMAT, LATEST_FILE, MANIFEST_FILE};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Largest manifest or `LATEST` file read into memory; real ones are a few kilobytes.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// What an archive must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A state to resume from: at least one checkpoint.
    Resumable,
    /// Final artifacts: checkpoints are optional, but those present must be intact.
    Artifacts,
}

/// Why an archive is not a usable checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableCheckpoint {
    /// The bytes are not a readable tar archive.
    #[error("the archive cannot be read: {0}")]
    Archive(#[from] io::Error),
    /// A manifest does not parse or has another format version.
    #[error("{}: {message}", .path.display())]
    Manifest {
        /// The manifest inside the archive.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A file a manifest lists is not in the archive.
    #[error("{}: listed in its manifest but missing from the archive", .path.display())]
    Missing {
        /// The file inside the archive.
        path: PathBuf,
    },
    /// A file differs from its manifest.
    #[error("{}: sha256 {actual} does not match the manifest's {expected}", .path.display())]
    Mismatch {
        /// The file inside the archive.
        path: PathBuf,
        /// Hash in the manifest.
        expected: String,
        /// Hash of the file.
        actual: String,
    },
    /// A `LATEST` pointer names no checkpoint of the archive.
    #[error("{}: names `{tag}`, which is not a checkpoint in the archive", .path.display())]
    DanglingLatest {
        /// The pointer inside the archive.
        path: PathBuf,
        /// The tag it names.
        tag: String,
    },
    /// A resumable archive without any checkpoint.
    #[error("the archive holds no checkpoint (no {MANIFEST_FILE})")]
    NoCheckpoint,
}

/// The path of an entry without `.` components, so `./a/b` and `a/b` compare equal.
fn normalized(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect()
}

/// What one pass over the archive collected.
#[derive(Default)]
struct Contents {
    hashes: BTreeMap<PathBuf, String>,
    manifests: BTreeMap<PathBuf, Vec<u8>>,
    pointers: BTreeMap<PathBuf, Vec<u8>>,
}

fn read_contents(archive: impl Read) -> Result<Contents, UnreadableCheckpoint> {
    let mut contents = Contents::default();
    for entry in tar::Archive::new(archive).entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = normalized(&entry.path()?);
        // A `manifest.json` at the top of the run directory describes the run (its build,
        // machine and config), not a checkpoint: checkpoints live in directories below.
        let top_level = path
            .parent()
            .is_none_or(|parent| parent.as_os_str().is_empty());
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|_| !top_level);
        let small = match name {
            Some(MANIFEST_FILE) => Some(&mut contents.manifests),
            Some(LATEST_FILE) => Some(&mut contents.pointers),
            _ => None,
        };
        let mut hasher = Sha256::new();
        if let Some(small) = small {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_SMALL_FILE + 1)
                .read_to_end(&mut bytes)?;
            if bytes.len() as u64 > MAX_SMALL_FILE {
                return Err(UnreadableCheckpoint::Manifest {
                    path,
                    message: format!("larger than {MAX_SMALL_FILE} bytes"),
                });
            }
            hasher.update(&bytes);
            small.insert(path.clone(), bytes);
        } else {
            io::copy(&mut entry, &mut hasher)?;
        }
        contents.hashes.insert(path, hex::encode(hasher.finalize()));
    }
    Ok(contents)
}

/// Verifies a checkpoint archive (as `archive::pack_dir` makes it) read from `archive`;
/// returns how many checkpoints it holds.
pub fn verify_checkpoint_archive(
    archive: impl Read,
    expect: Expect,
) -> Result<usize, UnreadableCheckpoint> {
    let contents = read_contents(archive)?;
    for (path, bytes) in &contents.manifests {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|error| UnreadableCheckpoint::Manifest {
                path: path.clone(),
                message: error.to_string(),
            })?;
        if manifest.format != CHECKPOINT_FORMAT {
            return Err(UnreadableCheckpoint::Manifest {
                path: path.clone(),
                message: format!(
                    "checkpoint format {} (this build reads {CHECKPOINT_FORMAT})",
                    manifest.format
                ),
            });
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        for (name, expected) in &manifest.files {
            let file = dir.join(name);
            match contents.hashes.get(&file) {
                None => return Err(UnreadableCheckpoint::Missing { path: file }),
                Some(actual) if actual != expected => {
                    return Err(UnreadableCheckpoint::Mismatch {
                        path: file,
                        expected: expected.clone(),
                        actual: actual.clone(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    for (path, bytes) in &contents.pointers {
        let tag = String::from_utf8_lossy(bytes).trim().to_string();
        let dir = path.parent().unwrap_or(Path::new(""));
        let named = normalized(&dir.join(&tag).join(MANIFEST_FILE));
        if tag.is_empty() || !contents.manifests.contains_key(&named) {
            return Err(UnreadableCheckpoint::DanglingLatest {
                path: path.clone(),
                tag,
            });
        }
    }
    if expect == Expect::Resumable && contents.manifests.is_empty() {
        return Err(UnreadableCheckpoint::NoCheckpoint);
    }
    Ok(contents.manifests.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{pack_dir, sha256_hex};

    /// A run directory with one checkpoint `step-1` under `checkpoints/`, named by `LATEST`.
    fn run_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("checkpoints/step-1");
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("weights.safetensors"), b"weights").unwrap();
        std::fs::write(checkpoint.join("state.json"), b"{}").unwrap();
        let manifest = Manifest {
            format: CHECKPOINT_FORMAT,
            tag: "step-1".into(),
            files: [
                ("weights.safetensors".into(), sha256_hex(b"weights")),
                ("state.json".into(), sha256_hex(b"{}")),
            ]
            .into(),
        };
        std::fs::write(
            checkpoint.join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("checkpoints").join(LATEST_FILE), b"step-1").unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), b"{}\n").unwrap();
        dir
    }

    fn verify(dir: &Path, expect: Expect) -> Result<usize, UnreadableCheckpoint> {
        verify_checkpoint_archive(&pack_dir(dir, dir).unwrap()[..], expect)
    }

    #[test]
    fn an_intact_run_directory_passes() {
        let dir = run_dir();
        assert_eq!(verify(dir.path(), Expect::Resumable).unwrap(), 1);
    }

    #[test]
    fn the_run_manifest_at_the_top_is_not_taken_for_a_checkpoint_manifest() {
        let dir = run_dir();
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            br#"{"version": "0.1.0", "torch": "2.11.0"}"#,
        )
        .unwrap();
        assert_eq!(verify(dir.path(), Expect::Resumable).unwrap(), 1);
    }

    #[test]
    fn a_file_that_differs_from_its_manifest_is_named() {
        let dir = run_dir();
        std::fs::write(
            dir.path().join("checkpoints/step-1/weights.safetensors"),
            b"rot",
        )
        .unwrap();
        let error = verify(dir.path(), Expect::Artifacts).unwrap_err();
        assert!(
            matches!(&error, UnreadableCheckpoint::Mismatch { path, .. }
                if path.ends_with("step-1/weights.safetensors")),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_a_bad_manifest_and_a_dangling_pointer_are_refused() {
        let dir = run_dir();
        std::fs::remove_file(dir.path().join("checkpoints/step-1/state.json")).unwrap();
        let error = verify(dir.path(), Expect::Resumable).unwrap_err();
        assert!(
            matches!(error, UnreadableCheckpoint::Missing { .. }),
            "{error}"
        );

        let dir = run_dir();
        std::fs::write(
            dir.path().join("checkpoints/step-1").join(MANIFEST_FILE),
            b"{",
        )
        .unwrap();
        let error = verify(dir.path(), Expect::Resumable).unwrap_err();
        assert!(
            matches!(error, UnreadableCheckpoint::Manifest { .. }),
            "{error}"
        );

        let dir = run_dir();
        std::fs::write(dir.path().join("checkpoints").join(LATEST_FILE), b"step-2").unwrap();
        let error = verify(dir.path(), Expect::Resumable).unwrap_err();
        assert!(
            matches!(&error, UnreadableCheckpoint::DanglingLatest { tag, .. } if tag == "step-2"),
            "{error}"
        );
    }

    #[test]
    fn garbage_and_checkpointless_archives_are_refused_where_a_state_is_needed() {
        let error = verify_checkpoint_archive(&[7u8; 1500][..], Expect::Resumable).unwrap_err();
        assert!(matches!(error, UnreadableCheckpoint::Archive(_)), "{error}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("genotype.json"), b"{}").unwrap();
        assert!(matches!(
            verify(dir.path(), Expect::Resumable),
            Err(UnreadableCheckpoint::NoCheckpoint)
        ));
        assert_eq!(verify(dir.path(), Expect::Artifacts).unwrap(), 0);
    }
}
