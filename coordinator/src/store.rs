//! Checkpoint storage: uploads are staged chunk by chunk, verified by sha256 and only then
//! committed under a key. A directory store by default; the trait lets object stores follow.

use prime_proto::archive::sha256_hex;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A checkpoint store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A chunk or archive does not match its sha256.
    #[error("{0}")]
    Mismatch(String),
    /// No object under that key, or no staged upload of that name.
    #[error("not found: {0}")]
    NotFound(String),
    /// A name with characters a store cannot hold.
    #[error("invalid name `{0}`")]
    InvalidName(String),
    /// The upload's bytes are intact but not a checkpoint that can be opened.
    #[error("{0}")]
    Unreadable(String),
    /// Underlying IO.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Checks the bytes of a staged upload before it is committed; why they are refused.
pub type Verifier<'a> = dyn Fn(&mut dyn Read) -> Result<(), String> + 'a;

/// Where committed checkpoints live.
pub trait CheckpointStore: Send + Sync + 'static {
    /// Writes `data` at `offset` of the staged upload `upload`, after checking it against
    /// the hex sha256 `chunk_sha256`.
    fn write_chunk(
        &self,
        upload: &str,
        offset: u64,
        data: &[u8],
        chunk_sha256: &str,
    ) -> Result<(), StoreError>;
    /// Verifies the staged upload's size and sha256, then that `verify` accepts its bytes,
    /// and only then commits it under `key`. A mismatch or a refusal discards the staged
    /// upload.
    fn commit(
        &self,
        upload: &str,
        size: u64,
        sha256: &str,
        key: &str,
        verify: &Verifier<'_>,
    ) -> Result<(), StoreError>;
    /// Reads up to `length` bytes of the object `key` from `offset`.
    fn read(&self, key: &str, offset: u64, length: usize) -> Result<Vec<u8>, StoreError>;
    /// Deletes the object `key` (retention); a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// A store in a local directory: `uploads/` for staged uploads, `objects/` for commits.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

fn checked_name(name: &str) -> Result<&str, StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::InvalidName(name.to_string()))
    }
}

impl DirStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: &Path) -> io::Result<DirStore> {
        fs::create_dir_all(root.join("uploads"))?;
        fs::create_dir_all(root.join("objects"))?;
        Ok(DirStore {
            root: root.to_path_buf(),
        })
    }

    fn upload_path(&self, upload: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("uploads").join(checked_name(upload)?))
    }

    fn object_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("objects").join(checked_name(key)?))
    }
}

impl CheckpointStore for DirStore {
    fn write_chunk(
        &self,
        upload: &str,
        offset: u64,
        data: &[u8],
        chunk_sha256: &str,
    ) -> Result<(), StoreError> {
        let actual = sha256_hex(data);
        if actual != chunk_sha256 {
            return Err(StoreError::Mismatch(format!(
                "chunk at offset {offset} of upload {upload}: sha256 {actual}, expected \
                 {chunk_sha256}"
            )));
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.upload_path(upload)?)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)?;
        Ok(())
    }

    fn commit(
        &self,
        upload: &str,
        size: u64,
        sha256: &str,
        key: &str,
        verify: &Verifier<'_>,
    ) -> Result<(), StoreError> {
        let staged = self.upload_path(upload)?;
        let mut file = File::open(&staged)
            .map_err(|_| StoreError::NotFound(format!("staged upload {upload}")))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            total += read as u64;
            hasher.update(&buffer[..read]);
        }
        let actual = hex::encode(hasher.finalize());
        if total != size || actual != sha256 {
            fs::remove_file(&staged)?;
            return Err(StoreError::Mismatch(format!(
                "upload {upload}: {total} bytes with sha256 {actual}, expected {size} bytes with \
                 sha256 {sha256}; upload it again"
            )));
        }
        file.seek(SeekFrom::Start(0))?;
        if let Err(message) = verify(&mut BufReader::new(&mut file)) {
            fs::remove_file(&staged)?;
            return Err(StoreError::Unreadable(format!(
                "upload {upload}: {message}"
            )));
        }
        file.sync_all()?;
        fs::rename(&staged, self.object_path(key)?)?;
        File::open(self.root.join("objects"))?.sync_all()?;
        Ok(())
    }

    fn read(&self, key: &str, offset: u64, length: usize) -> Result<Vec<u8>, StoreError> {
        let mut file = File::open(self.object_path(key)?)
            .map_err(|_| StoreError::NotFound(format!("checkpoint object {key}")))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut data = Vec::with_capacity(length);
        file.take(length as u64).read_to_end(&mut data)?;
        Ok(data)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match fs::remove_file(self.object_path(key)?) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(_: &mut dyn Read) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn an_upload_its_verifier_refuses_is_discarded_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let whole = sha256_hex(b"not a checkpoint");
        store
            .write_chunk("u1", 0, b"not a checkpoint", &whole)
            .unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let refuse = |bytes: &mut dyn Read| {
            bytes
                .read_to_end(&mut seen.lock().unwrap())
                .map_err(|error| error.to_string())?;
            Err("no manifest".to_string())
        };
        let error = store.commit("u1", 16, &whole, "k1", &refuse).unwrap_err();
        assert!(
            matches!(&error, StoreError::Unreadable(message) if message.contains("no manifest")),
            "{error}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            b"not a checkpoint",
            "it saw the upload"
        );
        assert!(matches!(
            store.read("k1", 0, 1),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.commit("u1", 16, &whole, "k1", &accept),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn verifies_chunks_and_archives_before_committing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let (first, second) = (b"hello ".as_slice(), b"world".as_slice());
        let error = store
            .write_chunk("u1", 0, first, &sha256_hex(b"other"))
            .unwrap_err();
        assert!(matches!(error, StoreError::Mismatch(_)));
        store
            .write_chunk("u1", 6, second, &sha256_hex(second))
            .unwrap();
        store
            .write_chunk("u1", 0, first, &sha256_hex(first))
            .unwrap();
        let whole = sha256_hex(b"hello world");
        let wrong = store
            .commit("u1", 11, &sha256_hex(b"x"), "k1", &accept)
            .unwrap_err();
        assert!(matches!(wrong, StoreError::Mismatch(_)));
        assert!(matches!(
            store.commit("u1", 11, &whole, "k1", &accept),
            Err(StoreError::NotFound(_))
        ));
        store.write_chunk("u2", 0, b"hello world", &whole).unwrap();
        store.commit("u2", 11, &whole, "k1", &accept).unwrap();
        assert_eq!(store.read("k1", 6, 100).unwrap(), b"world");
        store.delete("k1").unwrap();
        store.delete("k1").unwrap();
        assert!(matches!(
            store.read("k1", 0, 1),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.write_chunk("../evil", 0, first, &sha256_hex(first)),
            Err(StoreError::InvalidName(_))
        ));
    }
}
