//! Checkpoint archives: a checkpoint directory travels as one tar archive, verified by sha256.

use sha2::{Digest, Sha256};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Packs the directory `dir` into a tar archive whose entries are relative to `base`, so
/// that unpacking under another base recreates the same layout.
pub fn pack_dir(base: &Path, dir: &Path) -> io::Result<Vec<u8>> {
    let relative = dir.strip_prefix(base).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not inside {}", dir.display(), base.display()),
        )
    })?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    if relative.as_os_str().is_empty() {
        builder.append_dir_all(".", dir)?;
    } else {
        builder.append_dir_all(relative, dir)?;
    }
    builder.into_inner()
}

/// Unpacks an archive made by `pack_dir` under `base`.
pub fn unpack(archive: &[u8], base: &Path) -> io::Result<()> {
    std::fs::create_dir_all(base)?;
    tar::Archive::new(archive).unpack(base)
}

/// The distinct first components of the archive's entries (`checkpoint`, `final`, ...), in
/// the order they first appear.
pub fn top_level_entries(archive: &[u8]) -> io::Result<Vec<PathBuf>> {
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in tar::Archive::new(archive).entries()? {
        let entry = entry?;
        let path = entry.path()?;
        let first = path.components().find_map(|component| match component {
            Component::Normal(name) => Some(PathBuf::from(name)),
            _ => None,
        });
        if let Some(first) = first {
            if !names.contains(&first) {
                names.push(first);
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_a_directory_relative_to_its_base() {
        let source = tempfile::tempdir().unwrap();
        let dir = source.path().join("checkpoint");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("weights.bin"), [1u8, 2, 3]).unwrap();
        std::fs::write(dir.join("sub/state.json"), b"{}").unwrap();
        let archive = pack_dir(source.path(), &dir).unwrap();
        assert_eq!(sha256_hex(&archive), sha256_hex(&archive.clone()));
        let target = tempfile::tempdir().unwrap();
        unpack(&archive, target.path()).unwrap();
        let weights = std::fs::read(target.path().join("checkpoint/weights.bin")).unwrap();
        assert_eq!(weights, [1, 2, 3]);
        assert!(target.path().join("checkpoint/sub/state.json").exists());
        assert!(pack_dir(&dir, source.path()).is_err());
        assert_eq!(
            top_level_entries(&archive).unwrap(),
            [PathBuf::from("checkpoint")]
        );
        std::fs::write(source.path().join("genotype.json"), b"{}").unwrap();
        let whole = pack_dir(source.path(), source.path()).unwrap();
        let mut names = top_level_entries(&whole).unwrap();
        names.sort();
        assert_eq!(
            names,
            [PathBuf::from("checkpoint"), PathBuf::from("genotype.json")]
        );
        assert!(top_level_entries(b"not a tar archive at all").is_err());
    }
}
