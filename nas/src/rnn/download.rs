//! Obtaining the Mikolov-preprocessed Penn Treebank: `simple-examples.tgz` from a local copy or
//! the official site, extracting `data/ptb.{train,valid,test}.txt`, and verifying the files by
//! their token counts (SPEC 7.1 publishes no checksum).

use super::corpus::{load_corpus, split_path, CorpusError, SPLITS};
use crate::data::DownloadPolicy;
use flate2::read::GzDecoder;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// The official archive of Mikolov's RNNLM examples, which contains the preprocessed PTB.
pub const PTB_URL: &str = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz";
/// The archive's file name (a local copy in the corpus folder is used first).
pub const PTB_ARCHIVE: &str = "simple-examples.tgz";
/// Tokens (with `<eos>`) of train, valid and test (SPEC 7.1).
pub const PTB_TOKENS: [usize; 3] = [929_589, 73_760, 82_430];
/// Vocabulary size of the preprocessed corpus.
pub const PTB_VOCAB: usize = 10_000;

/// Makes sure `dir` holds the three PTB files: nothing to do when they exist; else extracts
/// them from `dir/simple-examples.tgz` or, if `policy` allows, from a download, and verifies
/// the token counts and vocabulary of SPEC 7.1 (files that fail are removed).
pub fn ensure_ptb(dir: &Path, policy: DownloadPolicy) -> Result<(), CorpusError> {
    obtain(
        dir,
        policy,
        &crate::data::http_fetch,
        (PTB_TOKENS, PTB_VOCAB),
    )
}

/// [`ensure_ptb`] with the fetch function and the expected counts as parameters.
pub(crate) fn obtain(
    dir: &Path,
    policy: DownloadPolicy,
    fetch: &dyn Fn(&str, &Path) -> Result<(), String>,
    (tokens, vocab): ([usize; 3], usize),
) -> Result<(), CorpusError> {
    if SPLITS.iter().all(|split| split_path(dir, split).is_ok()) {
        return Ok(());
    }
    let local = dir.join(PTB_ARCHIVE);
    let downloaded = if local.is_file() {
        None
    } else if policy == DownloadPolicy::IfMissing {
        std::fs::create_dir_all(dir).map_err(|source| CorpusError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let partial = dir.join(format!("{PTB_ARCHIVE}.part"));
        tracing::info!(url = PTB_URL, to = %partial.display(), "downloading");
        if let Err(message) = fetch(PTB_URL, &partial) {
            let _ = std::fs::remove_file(&partial);
            return Err(CorpusError::Download {
                url: PTB_URL,
                message,
            });
        }
        Some(partial)
    } else {
        // Let the loader report the missing files.
        return Ok(());
    };
    let archive = downloaded.clone().unwrap_or(local);
    let extracted = extract(&archive, dir);
    if let Some(partial) = downloaded {
        let _ = std::fs::remove_file(partial);
    }
    let written = extracted?;
    let verified = verify(dir, tokens, vocab);
    if verified.is_err() {
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    }
    verified
}

/// Writes every `*/data/ptb.<split>.txt` entry of the archive to `dir/ptb.<split>.txt`.
fn extract(archive: &Path, dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CorpusError::Io { path, source }
    };
    let file = File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut written = Vec::new();
    for entry in tar.entries().map_err(io(archive))? {
        let mut entry = entry.map_err(io(archive))?;
        let name = entry.path().map_err(io(archive))?.into_owned();
        let Some(file_name) = name.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let in_data = name
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|parent| parent == "data");
        let wanted = SPLITS
            .iter()
            .any(|split| file_name == format!("ptb.{split}.txt"));
        if in_data && wanted {
            let target = dir.join(file_name);
            let mut output = File::create(&target).map_err(io(&target))?;
            std::io::copy(&mut entry, &mut output).map_err(io(&target))?;
            written.push(target);
        }
    }
    if written.len() < SPLITS.len() {
        return Err(CorpusError::Download {
            url: PTB_URL,
            message: format!(
                "{}: the archive lacks data/ptb.{{train,valid,test}}.txt",
                archive.display()
            ),
        });
    }
    Ok(written)
}

/// Checks the token counts and the vocabulary size of the corpus in `dir`.
fn verify(dir: &Path, tokens: [usize; 3], vocab: usize) -> Result<(), CorpusError> {
    let corpus = load_corpus(dir)?;
    let found = [corpus.train.len(), corpus.valid.len(), corpus.test.len()];
    if found != tokens || corpus.dictionary.len() != vocab {
        return Err(CorpusError::Unverified {
            dir: dir.to_path_buf(),
            expected: format!("{tokens:?} tokens, {vocab} words"),
            found: format!("{found:?} tokens, {} words", corpus.dictionary.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rnn::corpus::write_synthetic_corpus;

    /// A .tgz laid out like simple-examples.tgz around a synthetic corpus; returns the counts.
    fn archive(work: &Path, destination: &Path) -> ([usize; 3], usize) {
        let source = work.join("source");
        let summary = write_synthetic_corpus(&source, 300, 60, 50, 1).unwrap();
        let encoder = flate2::write::GzEncoder::new(
            File::create(destination).unwrap(),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(encoder);
        for split in SPLITS {
            builder
                .append_path_with_name(
                    source.join(format!("{split}.txt")),
                    format!("./simple-examples/data/ptb.{split}.txt"),
                )
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        (summary.tokens, summary.vocab)
    }

    #[test]
    fn downloads_extracts_and_verifies() {
        let work = tempfile::tempdir().unwrap();
        let served = work.path().join("served.tgz");
        let expected = archive(work.path(), &served);
        let dir = work.path().join("ptb");
        let fetch = |url: &str, to: &Path| -> Result<(), String> {
            assert_eq!(url, PTB_URL);
            std::fs::copy(&served, to)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        obtain(&dir, DownloadPolicy::IfMissing, &fetch, expected).unwrap();
        assert!(dir.join("ptb.valid.txt").is_file());
        assert!(!dir.join(format!("{PTB_ARCHIVE}.part")).exists());
        assert_eq!(load_corpus(&dir).unwrap().train.len(), expected.0[0]);
        // Present files are left alone, without fetching.
        let refuse = |_: &str, _: &Path| -> Result<(), String> { Err("no".to_string()) };
        obtain(&dir, DownloadPolicy::IfMissing, &refuse, expected).unwrap();
    }

    #[test]
    fn wrong_counts_remove_the_files_and_never_means_no_fetch() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("ptb");
        std::fs::create_dir_all(&dir).unwrap();
        let (tokens, vocab) = archive(work.path(), &dir.join(PTB_ARCHIVE));
        let error = obtain(
            &dir,
            DownloadPolicy::Never,
            &|_, _| Err("unused".to_string()),
            ([tokens[0] + 1, tokens[1], tokens[2]], vocab),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("tokens"), "{error}");
        assert!(!dir.join("ptb.train.txt").exists());
        let empty = work.path().join("empty");
        obtain(
            &empty,
            DownloadPolicy::Never,
            &|_, _| Err("no".into()),
            (tokens, vocab),
        )
        .unwrap();
        let error = obtain(
            &empty,
            DownloadPolicy::IfMissing,
            &|_, _| Err("offline".into()),
            (tokens, vocab),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("offline") && error.contains(PTB_URL),
            "{error}"
        );
    }
}
