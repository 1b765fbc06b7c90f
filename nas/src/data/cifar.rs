//! The official CIFAR binary distributions: file layout, reading and validation.

use super::augment::IMAGE_BYTES;
use super::cifar_layout::{ensure_present, layout, CifarLayout};
use super::download::{http_fetch, DownloadPolicy};
use super::DataError;
use prime_core::dataset::ImageDataset;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Labelled 32x32 RGB images in memory, each stored as 3072 bytes in CHW order (planes R, G, B,
/// each row-major), exactly as in the binary files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    kind: ImageDataset,
    images: Vec<u8>,
    labels: Vec<u8>,
}

impl ImageSet {
    /// Wraps `images` (`labels.len()` times 3072 bytes, CHW) and their labels.
    pub fn new(kind: ImageDataset, images: Vec<u8>, labels: Vec<u8>) -> Result<Self, DataError> {
        if images.len() != labels.len() * IMAGE_BYTES {
            return Err(DataError::InvalidArgument(format!(
                "{} image bytes do not hold {} images of {IMAGE_BYTES} bytes",
                images.len(),
                labels.len()
            )));
        }
        if let Some(position) = labels
            .iter()
            .position(|&l| usize::from(l) >= kind.classes())
        {
            return Err(DataError::InvalidArgument(format!(
                "label {} of image {position} is out of range for {kind} ({} classes)",
                labels[position],
                kind.classes()
            )));
        }
        Ok(ImageSet {
            kind,
            images,
            labels,
        })
    }

    /// Wraps parts already known to be consistent (built by this module's generators).
    pub(crate) fn from_valid_parts(kind: ImageDataset, images: Vec<u8>, labels: Vec<u8>) -> Self {
        debug_assert_eq!(images.len(), labels.len() * IMAGE_BYTES);
        debug_assert!(labels.iter().all(|&l| usize::from(l) < kind.classes()));
        ImageSet {
            kind,
            images,
            labels,
        }
    }

    /// The dataset the images belong to (selects the normalisation statistics).
    pub fn kind(&self) -> ImageDataset {
        self.kind
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 3072 CHW bytes of image `index` (panics if out of range, like slice indexing).
    pub fn image(&self, index: usize) -> &[u8] {
        &self.images[index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES]
    }

    /// The label of image `index`.
    pub fn label(&self, index: usize) -> u8 {
        self.labels[index]
    }

    /// All labels in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// All image bytes in order.
    pub fn images(&self) -> &[u8] {
        &self.images
    }
}

/// A CIFAR dataset read from disk: the training and the test images in canonical order.
#[derive(Debug, Clone)]
pub struct CifarData {
    /// The dataset.
    pub kind: ImageDataset,
    /// The folder the files were read from.
    pub folder: PathBuf,
    /// The 50,000 (official) training images, shared with the stream threads.
    pub train: Arc<ImageSet>,
    /// The 10,000 (official) test images.
    pub test: Arc<ImageSet>,
}

impl CifarData {
    /// Every file of the distribution as (canonical name, path), for the run's data record.
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        layout(self.kind)
            .all_files()
            .into_iter()
            .map(|name| (name.to_string(), self.folder.join(name)))
            .collect()
    }
}

/// Loads `kind` from `dir` (which holds the distribution's folder, or is that folder). When files
/// are missing: an archive with the official name in `dir` is verified and extracted; otherwise,
/// if `policy` allows, the official archive is downloaded, verified against its published MD5 and
/// extracted into `dir`.
pub fn load_cifar(
    dir: &Path,
    kind: ImageDataset,
    policy: DownloadPolicy,
) -> Result<CifarData, DataError> {
    let layout = layout(kind);
    let folder = ensure_present(dir, layout, policy, layout.archive_md5, &http_fetch)?;
    read_cifar_dir(&folder, kind)
}

/// Reads the files of `kind` from `folder` (the distribution's own folder), without any download.
pub fn read_cifar_dir(folder: &Path, kind: ImageDataset) -> Result<CifarData, DataError> {
    let layout = layout(kind);
    let train_paths: Vec<PathBuf> = layout.train_files.iter().map(|f| folder.join(f)).collect();
    let train = read_records(&train_paths, layout)?;
    let test = read_records(&[folder.join(layout.test_file)], layout)?;
    Ok(CifarData {
        kind,
        folder: folder.to_path_buf(),
        train: Arc::new(train),
        test: Arc::new(test),
    })
}

/// Reads and concatenates the records of `files`, validating sizes and labels.
fn read_records(files: &[PathBuf], layout: &CifarLayout) -> Result<ImageSet, DataError> {
    let record_size = layout.record_size();
    let mut sizes = Vec::with_capacity(files.len());
    for file in files {
        let size = std::fs::metadata(file)
            .map_err(|e| DataError::io(file, e))?
            .len();
        if size % record_size as u64 != 0 {
            return Err(DataError::Truncated {
                file: file.clone(),
                size,
                record_size,
            });
        }
        sizes.push(size as usize / record_size);
    }
    let total: usize = sizes.iter().sum();
    let mut images = Vec::with_capacity(total * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(total);
    let classes = layout.kind.classes();
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| DataError::io(file, e))?;
        if bytes.len() % record_size != 0 {
            return Err(DataError::Truncated {
                file: file.clone(),
                size: bytes.len() as u64,
                record_size,
            });
        }
        for (record, chunk) in bytes.chunks_exact(record_size).enumerate() {
            let label = chunk[layout.label_bytes - 1];
            if usize::from(label) >= classes {
                return Err(DataError::BadLabel {
                    file: file.clone(),
                    record,
                    label,
                    kind: layout.kind,
                    classes,
                });
            }
            labels.push(label);
            images.extend_from_slice(&chunk[layout.label_bytes..]);
        }
    }
    ImageSet::new(layout.kind, images, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar_layout::{CIFAR100_LAYOUT, CIFAR10_LAYOUT};
    use crate::data::synth::write_synthetic;

    fn write_record_file(path: &Path, layout: &CifarLayout, labels: &[u8]) {
        let mut bytes = Vec::new();
        for (i, &label) in labels.iter().enumerate() {
            if layout.label_bytes == 2 {
                bytes.push(label / 5);
            }
            bytes.push(label);
            bytes.extend((0..IMAGE_BYTES).map(|p| ((p + i) % 251) as u8));
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn reads_cifar10_batches_in_canonical_order() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(CIFAR10_LAYOUT.folder);
        std::fs::create_dir_all(&folder).unwrap();
        for (b, file) in CIFAR10_LAYOUT.train_files.iter().enumerate() {
            write_record_file(&folder.join(file), &CIFAR10_LAYOUT, &[b as u8, 9 - b as u8]);
        }
        write_record_file(&folder.join("test_batch.bin"), &CIFAR10_LAYOUT, &[7]);
        let data = load_cifar(dir.path(), ImageDataset::Cifar10, DownloadPolicy::Never).unwrap();
        assert_eq!(data.train.labels(), &[0, 9, 1, 8, 2, 7, 3, 6, 4, 5]);
        assert_eq!(data.test.labels(), &[7]);
        assert_eq!(data.train.image(1)[0], 1);
        assert_eq!(data.train.image(1)[3071], ((3071 + 1) % 251) as u8);
        assert_eq!(data.folder, folder);
        // The folder itself is accepted too.
        let again = load_cifar(&folder, ImageDataset::Cifar10, DownloadPolicy::Never).unwrap();
        assert_eq!(again.train, data.train);
    }

    #[test]
    fn reads_the_fine_label_of_cifar100() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(CIFAR100_LAYOUT.folder);
        std::fs::create_dir_all(&folder).unwrap();
        write_record_file(&folder.join("train.bin"), &CIFAR100_LAYOUT, &[99, 42, 0]);
        write_record_file(&folder.join("test.bin"), &CIFAR100_LAYOUT, &[13]);
        let data = load_cifar(dir.path(), ImageDataset::Cifar100, DownloadPolicy::Never).unwrap();
        assert_eq!(data.train.labels(), &[99, 42, 0]);
        assert_eq!(data.test.labels(), &[13]);
        assert_eq!(data.train.image(2)[5], 7);
    }

    #[test]
    fn synthetic_round_trip_has_the_written_counts_and_labels() {
        for kind in ImageDataset::ALL {
            let dir = tempfile::tempdir().unwrap();
            let summary = write_synthetic(dir.path(), kind, 23, 7, 5).unwrap();
            let data = load_cifar(dir.path(), kind, DownloadPolicy::Never).unwrap();
            assert_eq!(data.train.len(), 23);
            assert_eq!(data.test.len(), 7);
            let expected = crate::data::synthetic_image_set(kind, 23, 5, 0);
            assert_eq!(*data.train, expected);
            assert_eq!(summary.folder, data.folder);
            assert!(data
                .train
                .labels()
                .iter()
                .all(|&l| usize::from(l) < kind.classes()));
        }
    }

    #[test]
    fn truncated_file_names_file_size_and_record_size() {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic(dir.path(), ImageDataset::Cifar10, 10, 2, 1).unwrap();
        let file = dir.path().join("cifar-10-batches-bin/data_batch_3.bin");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() - 100);
        std::fs::write(&file, &bytes).unwrap();
        let error = load_cifar(dir.path(), ImageDataset::Cifar10, DownloadPolicy::Never)
            .unwrap_err()
            .to_string();
        assert!(error.contains("data_batch_3.bin"), "{error}");
        assert!(error.contains(&format!("{} bytes", bytes.len())), "{error}");
        assert!(error.contains("3073-byte records (truncated?)"), "{error}");
    }

    #[test]
    fn bad_label_names_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic(dir.path(), ImageDataset::Cifar100, 6, 4, 1).unwrap();
        let file = dir.path().join("cifar-100-binary/test.bin");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[2 * 3074 + 1] = 100;
        std::fs::write(&file, &bytes).unwrap();
        let error =
            load_cifar(dir.path(), ImageDataset::Cifar100, DownloadPolicy::Never).unwrap_err();
        assert!(matches!(
            error,
            DataError::BadLabel {
                record: 2,
                label: 100,
                ..
            }
        ));
        let message = error.to_string();
        assert!(
            message.contains("test.bin: record 2 has label 100"),
            "{message}"
        );
        assert!(message.contains("0..100"), "{message}");
    }

    #[test]
    fn missing_files_error_lists_every_expected_file_and_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            load_cifar(dir.path(), ImageDataset::Cifar10, DownloadPolicy::Never).unwrap_err();
        let DataError::MissingFiles {
            missing,
            expected,
            cause,
            ..
        } = &error
        else {
            panic!("unexpected error {error}");
        };
        assert_eq!(missing.len(), 6);
        assert_eq!(expected.len(), 6);
        assert!(cause.is_none());
        let message = error.to_string();
        let folder = dir.path().join("cifar-10-batches-bin");
        assert!(
            message.contains(&format!("{} lacks", folder.display())),
            "{message}"
        );
        assert_eq!(expected[5], folder.join("test_batch.bin"));
        for file in CIFAR10_LAYOUT.all_files() {
            assert_eq!(
                message.matches(file).count(),
                1,
                "each file once: {message}"
            );
        }
        assert!(message.contains(CIFAR10_LAYOUT.archive_url), "{message}");
        assert!(message.contains("downloading was not allowed"), "{message}");
    }

    #[test]
    fn partially_present_folder_reports_only_the_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic(dir.path(), ImageDataset::Cifar10, 10, 2, 1).unwrap();
        let folder = dir.path().join("cifar-10-batches-bin");
        std::fs::remove_file(folder.join("data_batch_2.bin")).unwrap();
        // Given the folder itself, the expected files are reported inside it.
        let error = load_cifar(&folder, ImageDataset::Cifar10, DownloadPolicy::Never).unwrap_err();
        let DataError::MissingFiles { missing, .. } = &error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(missing, &vec![folder.join("data_batch_2.bin")]);
    }

    #[test]
    fn image_set_rejects_inconsistent_input() {
        assert!(ImageSet::new(ImageDataset::Cifar10, vec![0; 10], vec![1]).is_err());
        let error =
            ImageSet::new(ImageDataset::Cifar10, vec![0; IMAGE_BYTES], vec![10]).unwrap_err();
        assert!(error.to_string().contains("out of range"));
    }
}
