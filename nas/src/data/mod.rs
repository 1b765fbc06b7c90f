//! CIFAR data: reading the official binary files (with an optional verified download),
//! synthetic stand-ins in the same format, the positional train/valid split, the training and
//! test transforms, and batch streams whose randomness is a pure function of
//! `(seed, epoch, stream, pass, position)` so that a resumed run sees exactly the same batches.
//!
//! A search loop typically does (SPEC 3.2, 3.4, 3.5):
//!
//! ```no_run
//! use prime_core::dataset::ImageDataset;
//! use prime_nas::data::{
//!     load_cifar, split_by_portion, BatchStream, DownloadPolicy, StreamConfig, StreamId,
//!     StreamPosition,
//! };
//! # fn main() -> Result<(), prime_nas::data::DataError> {
//! let data = load_cifar("data".as_ref(), ImageDataset::Cifar10, DownloadPolicy::IfMissing)?;
//! let split = split_by_portion(data.train.len(), 0.5)?;
//! let (seed, epoch, batch_size) = (2, 0, 64);
//! // Saved in the checkpoint of a resumed epoch; START otherwise.
//! let (w_resume, alpha_resume) = (StreamPosition::START, StreamPosition::START);
//! let w_config = StreamConfig::per_epoch(seed, epoch, StreamId::WEIGHTS, batch_size);
//! let mut w_stream =
//!     BatchStream::spawn(data.train.clone(), split.train.clone(), w_config.starting_at(w_resume))?;
//! let alpha_config = StreamConfig::persistent(seed, epoch, StreamId::ALPHA, batch_size);
//! let mut alpha_stream = BatchStream::spawn(
//!     data.train.clone(),
//!     split.valid.clone(),
//!     alpha_config.starting_at(alpha_resume),
//! )?;
//! let device = tch::Device::cuda_if_available();
//! while let Some(batch) = w_stream.next_batch() {
//!     let batch = batch?.to_device(device);
//!     let take_alpha_step = true; // the schedule decides (SPEC 3.4 step 3)
//!     if take_alpha_step {
//!         // A persistent stream never ends: it starts a new permutation when a pass is done.
//!         let Some(alpha_batch) = alpha_stream.next_batch() else { break };
//!         let alpha_batch = alpha_batch?.to_device(device);
//!         // ... alpha step on alpha_batch ...
//!         # let _ = alpha_batch;
//!     }
//!     // ... w step on batch; a checkpoint stores w_stream.next_position() and
//!     // alpha_stream.next_position() ...
//!     # let _ = batch;
//! }
//! // End of epoch: inference over the valid subset, augmented like the reference (A18).
//! let inference = StreamConfig::per_epoch(seed, epoch, StreamId::ALPHA_INFERENCE, batch_size);
//! for batch in BatchStream::spawn(data.train.clone(), split.valid.clone(), inference)? {
//!     let _batch = batch?;
//! }
//! // Evaluation on the test set: in order, test transform.
//! let test = BatchStream::spawn(data.test.clone(), 0..data.test.len(), StreamConfig::eval(256))?;
//! for batch in test {
//!     let _batch = batch?;
//! }
//! # Ok(())
//! # }
//! ```

mod augment;
mod cifar;
mod cifar_layout;
mod device_batches;
mod download;
mod prefetch;
mod rng;
mod split;
mod stream;
mod synth;

pub use augment::{
    test_transform_into, train_transform_into, Normalizer, SampleAugmentation,
    DEFAULT_CUTOUT_LENGTH, IMAGE_BYTES, IMAGE_SIDE, PAD,
};
pub use cifar::{load_cifar, read_cifar_dir, CifarData, ImageSet};
pub use cifar_layout::{layout, CifarLayout, CIFAR100_LAYOUT, CIFAR10_LAYOUT};
pub use device_batches::{copy_to_device, DeviceBatches};
pub(crate) use download::http_fetch;
pub use download::{verify_and_extract, DownloadPolicy};
pub use split::{batches_per_pass, dynamic_train_portion, split_by_portion, Split};
pub use stream::{
    batch_at, Augment, Batch, BatchStream, Passes, StreamConfig, StreamId, StreamPosition,
    DEFAULT_PREFETCH,
};
pub use synth::{synthetic_image_set, write_synthetic, SynthSummary};

use prime_core::dataset::ImageDataset;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, fetching or streaming image data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Some of the expected dataset files are not there (and could not be obtained).
    #[error("{}", missing_files_message(*.kind, .dir, .missing, .expected, .url, .cause.as_deref()))]
    MissingFiles {
        /// The dataset that was asked for.
        kind: ImageDataset,
        /// The data directory the user gave.
        dir: PathBuf,
        /// The expected files that do not exist.
        missing: Vec<PathBuf>,
        /// Every file the dataset needs, where it was looked for.
        expected: Vec<PathBuf>,
        /// The official archive that contains the files.
        url: &'static str,
        /// Why obtaining the files failed, when a download or extraction was attempted.
        cause: Option<String>,
    },
    /// A file's size is not a whole number of records.
    #[error("{}: {size} bytes is not a whole number of {record_size}-byte records (truncated?)", .file.display())]
    Truncated {
        /// The file.
        file: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The size of one record of the format.
        record_size: usize,
    },
    /// A record carries a label outside the dataset's classes.
    #[error("{}: record {record} has label {label}, but {kind} labels are 0..{classes}", .file.display())]
    BadLabel {
        /// The file.
        file: PathBuf,
        /// 0-based record index within the file.
        record: usize,
        /// The label found.
        label: u8,
        /// The dataset.
        kind: ImageDataset,
        /// Its number of classes.
        classes: usize,
    },
    /// Reading or writing a file failed.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A downloaded or supplied archive does not have the published checksum.
    #[error("{}: MD5 {actual} differs from the published {expected} (corrupt or incomplete download?)", .archive.display())]
    ChecksumMismatch {
        /// The archive file.
        archive: PathBuf,
        /// The published MD5 (hex).
        expected: String,
        /// The MD5 of the file (hex).
        actual: String,
    },
    /// An archive could not be unpacked.
    #[error("{}: cannot extract: {error}", .archive.display())]
    Extract {
        /// The archive file.
        archive: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A caller passed an unusable argument (empty subset, batch size 0, portion outside [0, 1], ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The background thread of a stream died.
    #[error("data worker thread failed: {0}")]
    Worker(String),
    /// libtorch refused to build a batch tensor.
    #[error("building a batch tensor: {0}")]
    Tensor(#[from] tch::TchError),
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub(crate) fn io(path: &Path, error: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

fn missing_files_message(
    kind: ImageDataset,
    dir: &Path,
    missing: &[PathBuf],
    expected: &[PathBuf],
    url: &str,
    cause: Option<&str>,
) -> String {
    let names = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| p.file_name().unwrap_or(p.as_os_str()).to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let folder = expected
        .first()
        .and_then(|p| p.parent())
        .unwrap_or(dir)
        .display();
    // Each file once: the missing ones, then the others it wants when only some are missing.
    let present: Vec<PathBuf> = expected
        .iter()
        .filter(|path| !missing.contains(path))
        .cloned()
        .collect();
    let found = if present.is_empty() {
        String::new()
    } else {
        format!(" (it has {})", names(&present))
    };
    let mut message = format!(
        "{} data not found: {folder} lacks {}{found}. Put them there by extracting the official \
         archive {url} into {}",
        display_name(kind),
        names(missing),
        dir.display(),
    );
    match cause {
        Some(cause) => message.push_str(&format!("; obtaining it failed: {cause}")),
        None => message.push_str(" (downloading was not allowed)"),
    }
    message
}

/// The human name of a dataset, as written by its authors.
pub(crate) fn display_name(kind: ImageDataset) -> &'static str {
    match kind {
        ImageDataset::Cifar10 => "CIFAR-10",
        ImageDataset::Cifar100 => "CIFAR-100",
    }
}
