//! Obtaining an official archive: a local copy or a download, MD5 verification, extraction.
//! Knows nothing of what an archive holds; the dataset modules check their files.

use super::DataError;
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
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

/// An official archive: its file name, where to download it, and its MD5.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Archive<'a> {
    /// File name, also of a local copy the user placed in the extraction root.
    pub name: &'a str,
    /// The official download address.
    pub url: &'a str,
    /// The published MD5 (hex).
    pub md5: &'a str,
}

/// What [`obtain_archive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Obtained {
    /// No local copy, and the policy forbids a download.
    NotTried,
    /// A local copy or a download was verified and extracted.
    Extracted,
    /// Verifying, downloading or extracting failed, for this reason.
    Failed(String),
}

/// Extracts `archive` into `root`: a local copy named `archive.name` in `root` first (kept
/// afterwards), else, if `policy` allows, a download by `fetch(url, destination)` (removed
/// after extraction). Either must have the archive's MD5.
pub(crate) fn obtain_archive(
    root: &Path,
    archive: Archive,
    policy: DownloadPolicy,
    fetch: &dyn Fn(&str, &Path) -> Result<(), String>,
) -> Obtained {
    let local = root.join(archive.name);
    let result = if local.is_file() {
        verify_and_extract(&local, archive.md5, root).map_err(|error| error.to_string())
    } else if policy == DownloadPolicy::IfMissing {
        download_and_extract(archive, root, fetch)
    } else {
        return Obtained::NotTried;
    };
    match result {
        Ok(()) => Obtained::Extracted,
        Err(cause) => Obtained::Failed(cause),
    }
}

fn download_and_extract(
    archive: Archive,
    root: &Path,
    fetch: &dyn Fn(&str, &Path) -> Result<(), String>,
) -> Result<(), String> {
    std::fs::create_dir_all(root).map_err(|e| DataError::io(root, e).to_string())?;
    let partial = root.join(format!("{}.part", archive.name));
    tracing::info!(url = archive.url, to = %partial.display(), "downloading");
    let result = fetch(archive.url, &partial)
        .map_err(|e| format!("downloading {}: {e}", archive.url))
        .and_then(|()| verify_and_extract(&partial, archive.md5, root).map_err(|e| e.to_string()));
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
pub(crate) fn md5_hex(path: &Path) -> Result<String, DataError> {
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
    use crate::data::cifar_layout::synthetic_archive;
    use crate::data::cifar_layout::CIFAR10_LAYOUT;

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
}
