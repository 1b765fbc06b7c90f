//! Obtaining the official archives: a local archive or a download, MD5 verification, extraction.

use super::cifar::{locate, preferred_folder, CifarLayout};
use super::DataError;
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether missing dataset files may be downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownloadPolicy {
    /// Never touch the network; missing files are an error.
    #[default]
    Never,
    /// Download the official archive when files are missing.
    IfMissing,
}

/// How long to wait for the server to accept a connection and to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the response headers once connected.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

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
    let local_archive = root.join(layout.archive_name);
    let cause = if local_archive.is_file() {
        verify_and_extract(&local_archive, md5, &root)
            .err()
            .map(|e| e.to_string())
    } else if policy == DownloadPolicy::IfMissing {
        download_and_extract(layout, md5, &root, fetch).err()
    } else {
        None
    };
    match locate(dir, layout) {
        Ok(folder) => Ok(folder),
        Err((expected, missing)) => Err(DataError::MissingFiles {
            kind: layout.kind,
            dir: root,
            missing,
            expected,
            url: layout.archive_url,
            cause: cause.or_else(|| {
                (local_archive.is_file() || policy == DownloadPolicy::IfMissing).then(|| {
                    format!(
                        "the archive did not contain the files under {}",
                        layout.folder
                    )
                })
            }),
        }),
    }
}

fn download_and_extract(
    layout: &CifarLayout,
    md5: &str,
    root: &Path,
    fetch: &dyn Fn(&str, &Path) -> Result<(), String>,
) -> Result<(), String> {
    std::fs::create_dir_all(root).map_err(|e| DataError::io(root, e).to_string())?;
    let partial = root.join(format!("{}.part", layout.archive_name));
    tracing::info!(url = layout.archive_url, to = %partial.display(), "downloading");
    let result = fetch(layout.archive_url, &partial)
        .map_err(|e| format!("downloading {}: {e}", layout.archive_url))
        .and_then(|()| verify_and_extract(&partial, md5, root).map_err(|e| e.to_string()));
    // The archive is large and no longer needed once extracted; a corrupt one must not linger.
    let _ = std::fs::remove_file(&partial);
    result
}

/// Checks that `archive` (a .tar.gz) has MD5 `expected_md5` (hex, any case) and unpacks it into
/// `destination`. Entries that would land outside `destination` are refused by the unpacker.
pub fn verify_and_extract(
    archive: &Path,
    expected_md5: &str,
    destination: &Path,
) -> Result<(), DataError> {
    let actual = md5_hex(archive)?;
    if !actual.eq_ignore_ascii_case(expected_md5) {
        return Err(DataError::ChecksumMismatch {
            archive: archive.to_path_buf(),
            expected: expected_md5.to_ascii_lowercase(),
            actual,
        });
    }
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let decoder = flate2::read::GzDecoder::new(BufReader::new(file));
    let mut tar = tar::Archive::new(decoder);
    std::fs::create_dir_all(destination).map_err(|e| DataError::io(destination, e))?;
    tar.unpack(destination).map_err(|error| DataError::Extract {
        archive: archive.to_path_buf(),
        error,
    })
}

/// The MD5 of a file, lower-case hex.
fn md5_hex(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| DataError::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Downloads `url` to `destination` over HTTPS.
pub(crate) fn http_fetch(url: &str, destination: &Path) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| e.to_string())?;
    let mut reader = response.into_body().into_reader();
    let mut file =
        File::create(destination).map_err(|e| DataError::io(destination, e).to_string())?;
    std::io::copy(&mut reader, &mut file).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar::CIFAR10_LAYOUT;
    use crate::data::synth::write_synthetic;
    use prime_core::dataset::DatasetKind;
    use std::cell::Cell;

    /// A .tar.gz of a synthetic CIFAR-10 folder, and its MD5.
    fn synthetic_archive(workdir: &Path) -> (PathBuf, String) {
        let source = workdir.join("source");
        write_synthetic(&source, DatasetKind::Cifar10, 12, 3, 9).unwrap();
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
    fn verifies_and_extracts_a_good_archive() {
        let work = tempfile::tempdir().unwrap();
        let (archive, md5) = synthetic_archive(work.path());
        let destination = work.path().join("data");
        verify_and_extract(&archive, &md5.to_ascii_uppercase(), &destination).unwrap();
        for file in CIFAR10_LAYOUT.all_files() {
            let extracted = destination.join(CIFAR10_LAYOUT.folder).join(file);
            let original = work
                .path()
                .join("source")
                .join(CIFAR10_LAYOUT.folder)
                .join(file);
            assert_eq!(
                std::fs::read(extracted).unwrap(),
                std::fs::read(original).unwrap()
            );
        }
    }

    #[test]
    fn refuses_an_archive_with_the_wrong_checksum() {
        let work = tempfile::tempdir().unwrap();
        let (archive, md5) = synthetic_archive(work.path());
        let destination = work.path().join("data");
        let wrong = "0123456789abcdef0123456789abcdef";
        let error = verify_and_extract(&archive, wrong, &destination).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, DataError::ChecksumMismatch { .. }));
        assert!(message.contains("archive.tar.gz"), "{message}");
        assert!(
            message.contains(wrong) && message.contains(&md5),
            "{message}"
        );
        assert!(!destination.exists(), "nothing may be extracted");
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
