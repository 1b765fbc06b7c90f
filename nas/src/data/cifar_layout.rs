//! The official CIFAR folder layouts (file names, archive, checksum), finding a layout's
//! files under a data directory, and completing them from the official archive
//! ([`super::download`]) where they are missing.

use super::augment::IMAGE_BYTES;
use super::download::{obtain_archive, Archive, DownloadPolicy, Obtained};
use super::DataError;
use prime_core::dataset::ImageDataset;
use std::path::{Path, PathBuf};

/// Where the files of one CIFAR binary distribution live and how their records look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CifarLayout {
    /// The dataset.
    pub kind: ImageDataset,
    /// The folder the official archive extracts to.
    pub folder: &'static str,
    /// Training files, concatenated in this (canonical) order.
    pub train_files: &'static [&'static str],
    /// The test file.
    pub test_file: &'static str,
    /// Label bytes before the pixels of a record; the last one is the label used.
    pub label_bytes: usize,
    /// The official archive.
    pub archive_url: &'static str,
    /// The file name of the official archive.
    pub archive_name: &'static str,
    /// The MD5 published on the dataset's page for the archive (hex).
    pub archive_md5: &'static str,
}

impl CifarLayout {
    /// Bytes of one record: label bytes plus 3x32x32 pixels.
    pub fn record_size(&self) -> usize {
        self.label_bytes + IMAGE_BYTES
    }

    /// Every file name of the distribution: the training files, then the test file.
    pub fn all_files(&self) -> Vec<&'static str> {
        let mut files = self.train_files.to_vec();
        files.push(self.test_file);
        files
    }
}

/// CIFAR-10, binary version: record = label byte + pixels.
pub const CIFAR10_LAYOUT: CifarLayout = CifarLayout {
    kind: ImageDataset::Cifar10,
    folder: "cifar-10-batches-bin",
    train_files: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    test_file: "test_batch.bin",
    label_bytes: 1,
    archive_url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    archive_name: "cifar-10-binary.tar.gz",
    archive_md5: "c32a1d4ab5d03f1284b67883e8d87530",
};

/// CIFAR-100, binary version: record = coarse label byte + fine label byte + pixels.
pub const CIFAR100_LAYOUT: CifarLayout = CifarLayout {
    kind: ImageDataset::Cifar100,
    folder: "cifar-100-binary",
    train_files: &["train.bin"],
    test_file: "test.bin",
    label_bytes: 2,
    archive_url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    archive_name: "cifar-100-binary.tar.gz",
    archive_md5: "03b5dce01913d631647c71ecec9e9cb8",
};

/// The binary layout of `kind`.
pub fn layout(kind: ImageDataset) -> &'static CifarLayout {
    match kind {
        ImageDataset::Cifar10 => &CIFAR10_LAYOUT,
        ImageDataset::Cifar100 => &CIFAR100_LAYOUT,
    }
}

/// The folder that holds (or should hold) the files of `layout` for a user-given `dir`: `dir`
/// itself when it is named like the folder or directly holds one of the files, else `dir/folder`.
pub(crate) fn preferred_folder(dir: &Path, layout: &CifarLayout) -> PathBuf {
    let named_like_folder = dir.file_name().is_some_and(|name| name == layout.folder);
    let holds_a_file = layout.all_files().iter().any(|f| dir.join(f).is_file());
    if named_like_folder || holds_a_file {
        dir.to_path_buf()
    } else {
        dir.join(layout.folder)
    }
}

/// The folder under `dir` (or `dir` itself) that holds every file of `layout`, or the list of
/// expected files in the preferred folder with the missing ones.
pub(crate) fn locate(
    dir: &Path,
    layout: &CifarLayout,
) -> Result<PathBuf, (Vec<PathBuf>, Vec<PathBuf>)> {
    for candidate in [dir.join(layout.folder), dir.to_path_buf()] {
        if layout
            .all_files()
            .iter()
            .all(|f| candidate.join(f).is_file())
        {
            return Ok(candidate);
        }
    }
    let folder = preferred_folder(dir, layout);
    let expected: Vec<PathBuf> = layout.all_files().iter().map(|f| folder.join(f)).collect();
    let missing = expected.iter().filter(|p| !p.is_file()).cloned().collect();
    Err((expected, missing))
}

/// Makes sure every file of `layout` exists for `dir` and returns the folder that holds them.
/// Missing files are obtained from an archive named `layout.archive_name` in the extraction root
/// (kept afterwards), else, if `policy` allows, by `fetch(url, destination)` (the downloaded
/// archive is removed after extraction). Either archive must have MD5 `md5`.
pub(crate) fn ensure_present(
    dir: &Path,
    layout: &CifarLayout,
    policy: DownloadPolicy,
    md5: &str,
    fetch: &dyn Fn(&str, &Path) -> Result<(), String>,
) -> Result<PathBuf, DataError> {
    if let Ok(folder) = locate(dir, layout) {
        return Ok(folder);
    }
    let folder = preferred_folder(dir, layout);
    let root = folder.parent().unwrap_or(dir).to_path_buf();
    let archive = Archive {
        name: layout.archive_name,
        url: layout.archive_url,
        md5,
    };
    let obtained = obtain_archive(&root, archive, policy, fetch);
    match locate(dir, layout) {
        Ok(folder) => Ok(folder),
        Err((expected, missing)) => Err(DataError::MissingFiles {
            kind: layout.kind,
            dir: root,
            missing,
            expected,
            url: layout.archive_url,
            cause: match obtained {
                Obtained::NotTried => None,
                Obtained::Failed(cause) => Some(cause),
                Obtained::Extracted => Some(format!(
                    "the archive did not contain the files under {}",
                    layout.folder
                )),
            },
        }),
    }
}

#[cfg(test)]
pub(crate) use tests::synthetic_archive;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar_layout::CIFAR10_LAYOUT;
    use crate::data::download::md5_hex;
    use crate::data::synth::write_synthetic;
    use prime_core::dataset::ImageDataset;
    use std::cell::Cell;
    use std::fs::File;

    /// A .tar.gz of a synthetic CIFAR-10 folder, and its MD5.
    pub(crate) fn synthetic_archive(workdir: &Path) -> (PathBuf, String) {
        let source = workdir.join("source");
        write_synthetic(&source, ImageDataset::Cifar10, 12, 3, 9).unwrap();
        let archive = workdir.join("archive.tar.gz");
        let encoder = flate2::write::GzEncoder::new(
            File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(encoder);
        builder
            .append_dir_all(CIFAR10_LAYOUT.folder, source.join(CIFAR10_LAYOUT.folder))
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        let md5 = md5_hex(&archive).unwrap();
        (archive, md5)
    }

    #[test]
    fn missing_files_are_fetched_verified_extracted_and_the_download_removed() {
        let work = tempfile::tempdir().unwrap();
        let (archive, md5) = synthetic_archive(work.path());
        let data_dir = work.path().join("data");
        let calls = Cell::new(0);
        let fetch = |url: &str, destination: &Path| {
            calls.set(calls.get() + 1);
            assert_eq!(url, CIFAR10_LAYOUT.archive_url);
            std::fs::copy(&archive, destination)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let folder = ensure_present(
            &data_dir,
            &CIFAR10_LAYOUT,
            DownloadPolicy::IfMissing,
            &md5,
            &fetch,
        )
        .unwrap();
        assert_eq!(folder, data_dir.join(CIFAR10_LAYOUT.folder));
        assert_eq!(calls.get(), 1);
        let leftovers: Vec<_> = std::fs::read_dir(&data_dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the extracted folder remains");
        // Present files are not fetched again.
        ensure_present(
            &data_dir,
            &CIFAR10_LAYOUT,
            DownloadPolicy::IfMissing,
            &md5,
            &fetch,
        )
        .unwrap();
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn never_policy_does_not_fetch() {
        let work = tempfile::tempdir().unwrap();
        let fetch = |_: &str, _: &Path| -> Result<(), String> { panic!("must not fetch") };
        let error = ensure_present(
            work.path(),
            &CIFAR10_LAYOUT,
            DownloadPolicy::Never,
            "x",
            &fetch,
        )
        .unwrap_err();
        assert!(matches!(error, DataError::MissingFiles { cause: None, .. }));
    }

    #[test]
    fn failed_or_corrupt_downloads_end_in_the_missing_files_error_with_the_cause() {
        let work = tempfile::tempdir().unwrap();
        let offline = |_: &str, _: &Path| Err("connection refused".to_string());
        let error = ensure_present(
            work.path(),
            &CIFAR10_LAYOUT,
            DownloadPolicy::IfMissing,
            "x",
            &offline,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("data_batch_1.bin"), "{message}");
        assert!(message.contains(CIFAR10_LAYOUT.archive_url), "{message}");
        assert!(message.contains("connection refused"), "{message}");

        let (archive, _) = synthetic_archive(work.path());
        let corrupt = |_: &str, destination: &Path| {
            std::fs::copy(&archive, destination)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let data_dir = work.path().join("data");
        let wrong = "0123456789abcdef0123456789abcdef";
        let error = ensure_present(
            &data_dir,
            &CIFAR10_LAYOUT,
            DownloadPolicy::IfMissing,
            wrong,
            &corrupt,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("test_batch.bin"), "{message}");
        assert!(message.contains("differs from the published"), "{message}");
        assert_eq!(
            std::fs::read_dir(&data_dir).unwrap().count(),
            0,
            "corrupt download removed"
        );
    }

    #[test]
    fn a_local_archive_is_used_without_network() {
        let work = tempfile::tempdir().unwrap();
        let (archive, md5) = synthetic_archive(work.path());
        let data_dir = work.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let local = data_dir.join(CIFAR10_LAYOUT.archive_name);
        std::fs::copy(&archive, &local).unwrap();
        let fetch = |_: &str, _: &Path| -> Result<(), String> { panic!("must not fetch") };
        let folder = ensure_present(
            &data_dir,
            &CIFAR10_LAYOUT,
            DownloadPolicy::Never,
            &md5,
            &fetch,
        )
        .unwrap();
        assert!(folder.join("data_batch_5.bin").is_file());
        assert!(local.is_file(), "a user's archive is kept");
    }
}
