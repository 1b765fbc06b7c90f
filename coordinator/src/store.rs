//! Checkpoint storage: uploads are staged chunk by chunk, verified by sha256 and only then
//! committed under a key. A directory store by default; the trait lets object stores follow.

use prime_proto::archive::sha256_hex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest checkpoint archive accepted unless configured otherwise: 4 GiB, far above the
/// largest real checkpoint (tens of MB) and far below what fills a head node's disk.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 4 << 30;

/// A staged upload not written to for this long is abandoned: a worker that lost its
/// connection mid-upload starts a new upload, never continues an hour-old one.
pub const STAGED_UPLOAD_EXPIRY: Duration = Duration::from_secs(3600);

/// Uploads staged at once (every slot of a large cluster uploading at the same time).
pub const MAX_STAGED_UPLOADS: usize = 1024;

/// Longest name of a staged upload or a stored object.
const MAX_NAME_CHARS: usize = 200;

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
    #[error(
        "invalid name `{0}`: 1 to 200 characters of A-Z a-z 0-9 - _ . not starting with a dot"
    )]
    InvalidName(String),
    /// A chunk outside what an upload may hold (a gap, a rewrite, or past the size limit).
    #[error("{0}")]
    OutOfBounds(String),
    /// Too many uploads are staged at once.
    #[error("{0}")]
    Busy(String),
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
    /// the hex sha256 `chunk_sha256`. Chunks come in order: `offset` is at most the bytes
    /// received so far (a chunk sent again repeats bytes already received).
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
    /// Removes staged uploads not written to since `now - STAGED_UPLOAD_EXPIRY`; how many.
    fn expire_staged(&self, now: Instant) -> Result<usize, StoreError>;
}

/// An upload being received: its bytes so far and their running sha256, so a commit never
/// reads the staged file again to hash it.
struct Staged {
    received: u64,
    hasher: Sha256,
    touched: Instant,
}

/// A store in a local directory: `uploads/` for staged uploads, `objects/` for commits.
pub struct DirStore {
    root: PathBuf,
    max_upload_bytes: u64,
    staged: Mutex<HashMap<String, Staged>>,
}

impl std::fmt::Debug for DirStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DirStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn checked_name(name: &str) -> Result<&str, StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
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
    /// A store rooted at `root` (created if missing) taking archives of at most
    /// `max_upload_bytes`. Uploads staged before a restart cannot be continued (their running
    /// hashes are gone): they are removed.
    pub fn open(root: &Path, max_upload_bytes: u64) -> io::Result<DirStore> {
        fs::create_dir_all(root.join("uploads"))?;
        fs::create_dir_all(root.join("objects"))?;
        let mut removed = 0;
        for entry in fs::read_dir(root.join("uploads"))? {
            fs::remove_file(entry?.path())?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "removed uploads left staged by the previous run");
        }
        Ok(DirStore {
            root: root.to_path_buf(),
            max_upload_bytes,
            staged: Mutex::new(HashMap::new()),
        })
    }

    fn upload_path(&self, upload: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("uploads").join(checked_name(upload)?))
    }

    fn object_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("objects").join(checked_name(key)?))
    }

    fn staged(&self) -> std::sync::MutexGuard<'_, HashMap<String, Staged>> {
        self.staged
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Writes the part of `data` (at `offset`) past what `staged` holds, after checking that
    /// the part it repeats is identical.
    fn append(
        &self,
        path: &Path,
        upload: &str,
        staged: &mut Staged,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let repeated = ((staged.received - offset) as usize).min(data.len());
        if repeated > 0 {
            let mut earlier = vec![0u8; repeated];
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut earlier)?;
            if earlier != data[..repeated] {
                return Err(StoreError::OutOfBounds(format!(
                    "offset: the chunk at offset {offset} of upload {upload} differs from the                      bytes received there before; start a new upload"
                )));
            }
        }
        let new = &data[repeated..];
        if !new.is_empty() {
            file.seek(SeekFrom::Start(staged.received))?;
            file.write_all(new)?;
            staged.hasher.update(new);
            staged.received += new.len() as u64;
        }
        Ok(())
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
        let path = self.upload_path(upload)?;
        let end = offset.saturating_add(data.len() as u64);
        if end > self.max_upload_bytes {
            return Err(StoreError::OutOfBounds(format!(
                "offset: a chunk of {} bytes at offset {offset} of upload {upload} passes the                  limit of {} bytes per checkpoint (the coordinator's --max-upload-bytes)",
                data.len(),
                self.max_upload_bytes
            )));
        }
        let actual = sha256_hex(data);
        if actual != chunk_sha256 {
            return Err(StoreError::Mismatch(format!(
                "chunk at offset {offset} of upload {upload}: sha256 {actual}, expected                  {chunk_sha256}"
            )));
        }
        let mut staged = self.staged();
        let now = Instant::now();
        if !staged.contains_key(upload) {
            if offset != 0 {
                return Err(StoreError::OutOfBounds(format!(
                    "offset: upload {upload} has received nothing, a chunk at offset {offset}                      would leave a gap; an upload starts at offset 0"
                )));
            }
            if staged.len() >= MAX_STAGED_UPLOADS {
                return Err(StoreError::Busy(format!(
                    "{MAX_STAGED_UPLOADS} uploads are staged already (the limit); send it                      again later"
                )));
            }
            File::create(&path)?;
            staged.insert(
                upload.to_string(),
                Staged {
                    received: 0,
                    hasher: Sha256::new(),
                    touched: now,
                },
            );
        }
        let entry = staged.get_mut(upload).expect("inserted above");
        if offset > entry.received {
            return Err(StoreError::OutOfBounds(format!(
                "offset: {offset} is past the {} bytes upload {upload} has received so far;                  chunks are sent in order, without gaps",
                entry.received
            )));
        }
        entry.touched = now;
        if let Err(error) = self.append(&path, upload, entry, offset, data) {
            if matches!(error, StoreError::Io(_)) {
                // The staged file may be half written: the upload cannot go on.
                staged.remove(upload);
                let _ = fs::remove_file(&path);
            }
            return Err(error);
        }
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
        let staged_path = self.upload_path(upload)?;
        let object_path = self.object_path(key)?;
        let staged = self
            .staged()
            .remove(upload)
            .ok_or_else(|| StoreError::NotFound(format!("staged upload {upload}")))?;
        let actual = hex::encode(staged.hasher.finalize());
        if staged.received != size || actual != sha256 {
            fs::remove_file(&staged_path)?;
            return Err(StoreError::Mismatch(format!(
                "upload {upload}: {} bytes with sha256 {actual}, expected {size} bytes with \
                 sha256 {sha256}; upload it again",
                staged.received
            )));
        }
        let mut file = File::open(&staged_path)?;
        if let Err(message) = verify(&mut BufReader::new(&mut file)) {
            fs::remove_file(&staged_path)?;
            return Err(StoreError::Unreadable(format!(
                "upload {upload}: {message}"
            )));
        }
        file.sync_all()?;
        fs::rename(&staged_path, object_path)?;
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

    fn expire_staged(&self, now: Instant) -> Result<usize, StoreError> {
        let mut staged = self.staged();
        let abandoned: Vec<String> = staged
            .iter()
            .filter(|(_, upload)| {
                now.saturating_duration_since(upload.touched) >= STAGED_UPLOAD_EXPIRY
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &abandoned {
            staged.remove(name);
            match fs::remove_file(self.upload_path(name)?) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
                _ => tracing::info!(upload = %name, "removed an abandoned staged upload"),
            }
        }
        Ok(abandoned.len())
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
        let store = DirStore::open(dir.path(), 1 << 20).unwrap();
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
        let store = DirStore::open(dir.path(), 1 << 20).unwrap();
        let (first, second) = (b"hello ".as_slice(), b"world".as_slice());
        let error = store
            .write_chunk("u1", 0, first, &sha256_hex(b"other"))
            .unwrap_err();
        assert!(matches!(error, StoreError::Mismatch(_)));
        store
            .write_chunk("u1", 0, first, &sha256_hex(first))
            .unwrap();
        // A chunk sent again (its answer was lost) is accepted and changes nothing.
        store
            .write_chunk("u1", 0, first, &sha256_hex(first))
            .unwrap();
        store
            .write_chunk("u1", 6, second, &sha256_hex(second))
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

    #[test]
    fn gaps_rewrites_and_oversized_uploads_are_refused_naming_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path(), 100).unwrap();
        let chunk = [7u8; 10];
        let hash = sha256_hex(&chunk);
        let refused = |result: Result<(), StoreError>, expected: &str| match result {
            Err(StoreError::OutOfBounds(message)) => {
                assert!(message.starts_with("offset: "), "{message}");
                assert!(message.contains(expected), "{message}");
            }
            other => panic!("{other:?}"),
        };
        refused(
            store.write_chunk("u1", 1 << 40, &chunk, &hash),
            "limit of 100 bytes",
        );
        refused(
            store.write_chunk("u1", 10, &chunk, &hash),
            "starts at offset 0",
        );
        store.write_chunk("u1", 0, &chunk, &hash).unwrap();
        refused(store.write_chunk("u1", 20, &chunk, &hash), "10 bytes");
        refused(
            store.write_chunk("u1", 95, &chunk, &hash),
            "limit of 100 bytes",
        );
        let other = [8u8; 10];
        refused(
            store.write_chunk("u1", 5, &other, &sha256_hex(&other)),
            "differs",
        );
        let staged = std::fs::metadata(dir.path().join("uploads/u1"))
            .unwrap()
            .len();
        assert_eq!(staged, 10, "no sparse or rewritten bytes");
    }

    #[test]
    fn abandoned_uploads_expire_and_a_restart_removes_staged_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path(), 100).unwrap();
        store
            .write_chunk("u1", 0, b"abc", &sha256_hex(b"abc"))
            .unwrap();
        let staged = dir.path().join("uploads/u1");
        assert_eq!(store.expire_staged(Instant::now()).unwrap(), 0);
        assert!(staged.exists());
        let later = Instant::now() + STAGED_UPLOAD_EXPIRY;
        assert_eq!(store.expire_staged(later).unwrap(), 1);
        assert!(!staged.exists());
        assert!(matches!(
            store.commit("u1", 3, &sha256_hex(b"abc"), "k1", &accept),
            Err(StoreError::NotFound(_))
        ));
        store
            .write_chunk("u2", 0, b"abc", &sha256_hex(b"abc"))
            .unwrap();
        drop(store);
        DirStore::open(dir.path(), 100).unwrap();
        assert!(!dir.path().join("uploads/u2").exists());
    }
}
