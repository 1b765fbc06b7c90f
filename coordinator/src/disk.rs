//! The free space of the coordinator's disk: below a threshold it takes no new data
//! (checkpoint chunks and commits, grids, backups) but keeps serving reads and finishing
//! trials, so nothing it committed is lost to a full disk.

use crate::error::CoordinatorError;
use bytesize::ByteSize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Free space below which the coordinator takes no new data, unless configured otherwise.
pub const DEFAULT_MIN_FREE_DISK: u64 = 1 << 30;

/// Watches the free space of the disk holding the state directory (clones share the
/// threshold).
#[derive(Debug, Clone)]
pub struct DiskGuard {
    state_dir: PathBuf,
    min_free: Arc<AtomicU64>,
}

impl DiskGuard {
    /// A guard of the disk holding `state_dir`, keeping at least `min_free` bytes free.
    pub fn new(state_dir: &Path, min_free: u64) -> DiskGuard {
        DiskGuard {
            state_dir: state_dir.to_path_buf(),
            min_free: Arc::new(AtomicU64::new(min_free)),
        }
    }

    /// Changes the free space to keep.
    pub fn set_min_free(&self, min_free: u64) {
        self.min_free.store(min_free, Ordering::Relaxed);
    }

    /// Bytes available to the coordinator on the disk of the state directory.
    pub fn available(&self) -> Result<u64, CoordinatorError> {
        fs4::available_space(&self.state_dir).map_err(|error| {
            CoordinatorError::Storage(format!(
                "cannot read the free space of the disk holding {}: {error}",
                self.state_dir.display()
            ))
        })
    }

    /// Refuses `what` (which writes about `needed` bytes) when it would leave less than the
    /// minimum free.
    pub fn check(&self, what: &str, needed: u64) -> Result<(), CoordinatorError> {
        refusal(
            &self.state_dir,
            what,
            self.available()?,
            needed,
            self.min_free.load(Ordering::Relaxed),
        )
    }
}

/// The refusal of `what` on the disk of `state_dir` with `available` bytes free, when
/// writing `needed` bytes would leave less than `min_free`.
fn refusal(
    state_dir: &Path,
    what: &str,
    available: u64,
    needed: u64,
    min_free: u64,
) -> Result<(), CoordinatorError> {
    if available >= needed.saturating_add(min_free) {
        return Ok(());
    }
    Err(CoordinatorError::ResourceExhausted(format!(
        "{what} refused: the coordinator's disk holding {} has {} free, it needs {} for this \
         plus {} kept free (--min-free-disk); free space there and send it again",
        state_dir.display(),
        ByteSize(available).display().iec(),
        ByteSize(needed).display().iec(),
        ByteSize(min_free).display().iec(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_threshold_naming_the_disk_and_the_bytes() {
        let dir = Path::new("/srv/prime");
        refusal(dir, "a chunk", 3 << 30, 1 << 20, 1 << 30).unwrap();
        let error = refusal(dir, "a chunk", (1 << 30) + 10, 1 << 20, 1 << 30).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, CoordinatorError::ResourceExhausted(_)));
        assert!(message.contains("/srv/prime"), "{message}");
        assert!(message.contains("1.0 MiB"), "{message}");
        assert!(message.contains("1.0 GiB free"), "{message}");
    }

    #[test]
    fn a_threshold_above_any_disk_refuses_and_zero_accepts() {
        let dir = tempfile::tempdir().unwrap();
        DiskGuard::new(dir.path(), 0).check("a grid", 1).unwrap();
        let error = DiskGuard::new(dir.path(), u64::MAX)
            .check("a grid", 1)
            .unwrap_err();
        assert!(error
            .to_string()
            .contains(&dir.path().display().to_string()));
    }
}
