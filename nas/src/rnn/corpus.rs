//! The Penn Treebank corpus (SPEC 7.1): reading the three text files into token ids with one
//! shared dictionary, batchify and get_batch, and a synthetic stand-in for tests and demos.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The end-of-sentence token appended to every line.
pub const EOS: &str = "<eos>";
/// The corpus folder's name inside a data directory (beside the CIFAR folders).
pub const CORPUS_FOLDER: &str = "ptb";
/// The three splits, in dictionary order.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// Corpus errors; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// Neither accepted name of a split exists in the folder.
    #[error(
        "{}: no {split} file (looked for {}); expected the Mikolov PTB files train.txt, \
         valid.txt, test.txt (or ptb.train.txt, ptb.valid.txt, ptb.test.txt)",
        .dir.display(), .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Missing {
        /// The corpus folder.
        dir: PathBuf,
        /// `train`, `valid` or `test`.
        split: &'static str,
        /// The paths tried.
        tried: Vec<PathBuf>,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line is not valid UTF-8.
    #[error("{}: line {line} is not valid UTF-8", .path.display())]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// Downloading or unpacking the official archive failed.
    #[error("cannot obtain the Penn Treebank from {url}: {message}")]
    Download {
        /// The archive's address.
        url: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Extracted files do not have the published token counts.
    #[error("{}: the extracted corpus has {found}, expected {expected} (corrupt archive?)", .dir.display())]
    Unverified {
        /// The corpus folder.
        dir: PathBuf,
        /// The published counts.
        expected: String,
        /// The counts found.
        found: String,
    },
    /// A split is too small for the batch layout asked for.
    #[error("{split} split: {tokens} tokens cannot fill {rows_needed} rows of {batch} columns")]
    TooSmall {
        /// The split.
        split: &'static str,
        /// Tokens available.
        tokens: usize,
        /// Batch columns.
        batch: usize,
        /// Rows needed at least.
        rows_needed: usize,
    },
}

/// Words in order of first appearance and their ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dictionary {
    words: Vec<String>,
    ids: HashMap<String, i64>,
}

impl Dictionary {
    /// The id of `word`, adding it if new.
    pub fn add(&mut self, word: &str) -> i64 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = self.words.len() as i64;
        self.words.push(word.to_string());
        self.ids.insert(word.to_string(), id);
        id
    }

    /// The id of `word`, if known.
    pub fn id(&self, word: &str) -> Option<i64> {
        self.ids.get(word).copied()
    }

    /// The word of `id`, if any.
    pub fn word(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|index| self.words.get(index))
            .map(String::as_str)
    }

    /// Vocabulary size.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether no word was added.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// The three splits as token-id streams with their shared dictionary.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// Dictionary built over train, valid, test in that order.
    pub dictionary: Dictionary,
    /// Training tokens.
    pub train: Vec<i64>,
    /// Validation tokens.
    pub valid: Vec<i64>,
    /// Test tokens.
    pub test: Vec<i64>,
}

impl Corpus {
    /// Vocabulary size as a tensor dimension.
    pub fn vocab(&self) -> i64 {
        self.dictionary.len() as i64
    }
}

/// The file of `split` in `dir`: `<split>.txt`, else `ptb.<split>.txt`.
pub fn split_path(dir: &Path, split: &'static str) -> Result<PathBuf, CorpusError> {
    let tried = vec![
        dir.join(format!("{split}.txt")),
        dir.join(format!("ptb.{split}.txt")),
    ];
    tried
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| CorpusError::Missing {
            dir: dir.to_path_buf(),
            split,
            tried,
        })
}

/// The train, valid and test files of the corpus folder `dir` as (split, path).
pub fn corpus_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, CorpusError> {
    SPLITS
        .iter()
        .map(|split| Ok((split.to_string(), split_path(dir, split)?)))
        .collect()
}

/// Reads the corpus folder `dir` (SPEC 7.1): whitespace tokens plus `<eos>` per line (empty
/// lines included), one dictionary in order of first appearance over train, valid, test.
pub fn load_corpus(dir: &Path) -> Result<Corpus, CorpusError> {
    let paths: Vec<PathBuf> = corpus_files(dir)?
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    let mut dictionary = Dictionary::default();
    let mut streams = Vec::with_capacity(3);
    for path in &paths {
        streams.push(tokenize_file(path, &mut dictionary)?);
    }
    let test = streams.pop().unwrap_or_default();
    let valid = streams.pop().unwrap_or_default();
    let train = streams.pop().unwrap_or_default();
    Ok(Corpus {
        dictionary,
        train,
        valid,
        test,
    })
}

/// The token ids of one file, extending `dictionary`.
pub fn tokenize_file(path: &Path, dictionary: &mut Dictionary) -> Result<Vec<i64>, CorpusError> {
    let bytes = std::fs::read(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut ids = Vec::with_capacity(bytes.len() / 5);
    // Python's line iteration: a final line without a newline still counts.
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if bytes.is_empty() {
        return Ok(ids);
    }
    for (index, line) in body.split(|&byte| byte == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|_| CorpusError::Utf8 {
            path: path.to_path_buf(),
            line: index + 1,
        })?;
        for word in line.split_whitespace() {
            ids.push(dictionary.add(word));
        }
        ids.push(dictionary.add(EOS));
    }
    Ok(ids)
}

/// Lays `tokens` out as (n_rows, batch) with n_rows = len / batch, column b holding the
/// contiguous segment b: element [t, b] = tokens[b * n_rows + t].
pub fn batchify(
    tokens: &[i64],
    batch: usize,
    device: Device,
    split: &'static str,
) -> Result<Tensor, CorpusError> {
    let rows = tokens.len() / batch.max(1);
    // get_batch needs a target row after every input row.
    if batch == 0 || rows < 2 {
        return Err(CorpusError::TooSmall {
            split,
            tokens: tokens.len(),
            batch,
            rows_needed: 2,
        });
    }
    Ok(Tensor::from_slice(&tokens[..rows * batch])
        .view([batch as i64, rows as i64])
        .tr()
        .contiguous()
        .to_device(device))
}

/// Rows [i, i+T) as inputs (T, B) and rows [i+1, i+1+T) flattened time-major as targets
/// (T * B), with T = min(seq_len, n_rows - 1 - i).
pub fn get_batch(source: &Tensor, i: usize, seq_len: usize) -> (Tensor, Tensor) {
    let rows = source.size()[0] as usize;
    let length = seq_len.min(rows.saturating_sub(1 + i)) as i64;
    let input = source.narrow(0, i as i64, length);
    let target = source.narrow(0, i as i64 + 1, length).reshape([-1]);
    (input, target)
}

/// Token counts of a written synthetic corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticCorpus {
    /// Distinct words including `<eos>`.
    pub vocab: usize,
    /// Tokens (with `<eos>`) of train, valid and test.
    pub tokens: [usize; 3],
}

/// Words of the synthetic language besides `<eos>`.
const SYNTHETIC_WORDS: usize = 40;
/// Probability that a sentence ends after a word.
const SYNTHETIC_STOP: f64 = 0.12;

/// Writes `train.txt`, `valid.txt`, `test.txt` of about the given token counts into `dir`:
/// sentences from a first-order Markov chain over 40 words in which every word has two
/// successors (probabilities 0.8 / 0.2), so a model can reach a perplexity near 2-3, far below
/// the vocabulary size. The chain is drawn from `seed`; every word occurs in the training text.
pub fn write_synthetic_corpus(
    dir: &Path,
    train_tokens: usize,
    valid_tokens: usize,
    test_tokens: usize,
    seed: u64,
) -> Result<SyntheticCorpus, CorpusError> {
    std::fs::create_dir_all(dir).map_err(|source| CorpusError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut rng = Pcg64::seed_from_u64(seed);
    let successors: Vec<[usize; 2]> = (0..SYNTHETIC_WORDS)
        .map(|_| {
            [
                rng.gen_range(0..SYNTHETIC_WORDS),
                rng.gen_range(0..SYNTHETIC_WORDS),
            ]
        })
        .collect();
    let mut written = [0usize; 3];
    for (index, (split, target)) in SPLITS
        .iter()
        .zip([train_tokens, valid_tokens, test_tokens])
        .enumerate()
    {
        let mut text = String::new();
        let mut count = 0;
        // The training text first lists every word once, so no split adds new words.
        if index == 0 {
            let all: Vec<String> = (0..SYNTHETIC_WORDS).map(|w| format!("w{w}")).collect();
            text.push_str(&all.join(" "));
            text.push('\n');
            count += SYNTHETIC_WORDS + 1;
        }
        let mut word = rng.gen_range(0..SYNTHETIC_WORDS);
        let mut line = Vec::new();
        while count < target {
            line.push(format!("w{word}"));
            count += 1;
            word = successors[word][usize::from(rng.gen_bool(0.2))];
            if rng.gen_bool(SYNTHETIC_STOP) || count + 1 >= target {
                text.push_str(&line.join(" "));
                text.push('\n');
                count += 1;
                line.clear();
            }
        }
        let path = dir.join(format!("{split}.txt"));
        std::fs::write(&path, text).map_err(|source| CorpusError::Io { path, source })?;
        written[index] = count;
    }
    Ok(SyntheticCorpus {
        vocab: SYNTHETIC_WORDS + 1,
        tokens: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_eos_and_dictionary_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.txt"), " a b  a \n\nc").unwrap();
        std::fs::write(dir.path().join("ptb.valid.txt"), "d a\n").unwrap();
        std::fs::write(dir.path().join("test.txt"), "e\n").unwrap();
        let corpus = load_corpus(dir.path()).unwrap();
        // a=0 b=1 <eos>=2 c=3 d=4 e=5
        assert_eq!(corpus.train, vec![0, 1, 0, 2, 2, 3, 2]);
        assert_eq!(corpus.valid, vec![4, 0, 2]);
        assert_eq!(corpus.test, vec![5, 2]);
        assert_eq!(corpus.dictionary.len(), 6);
        assert_eq!(corpus.dictionary.word(2), Some(EOS));
        assert_eq!(corpus.dictionary.id("d"), Some(4));
    }

    #[test]
    fn missing_files_and_bad_utf8_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.txt"), "a\n").unwrap();
        let error = load_corpus(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no valid file"), "{error}");
        assert!(error.contains("ptb.valid.txt"), "{error}");
        std::fs::write(dir.path().join("valid.txt"), b"ok\nbad \xff\n").unwrap();
        std::fs::write(dir.path().join("test.txt"), "a\n").unwrap();
        let error = load_corpus(dir.path()).unwrap_err().to_string();
        assert!(error.contains("valid.txt: line 2"), "{error}");
    }

    #[test]
    fn batchify_and_get_batch_follow_the_spec_layout() {
        let tokens: Vec<i64> = (0..11).collect();
        let data = batchify(&tokens, 2, Device::Cpu, "train").unwrap();
        // 5 rows; column 0 = 0..5, column 1 = 5..10; token 10 dropped.
        assert_eq!(data.size(), vec![5, 2]);
        assert_eq!(Vec::<i64>::try_from(data.get(0)).unwrap(), vec![0, 5]);
        assert_eq!(Vec::<i64>::try_from(data.get(4)).unwrap(), vec![4, 9]);
        let (input, target) = get_batch(&data, 1, 2);
        assert_eq!(input.size(), vec![2, 2]);
        assert_eq!(
            Vec::<i64>::try_from(input.reshape([-1])).unwrap(),
            vec![1, 6, 2, 7]
        );
        assert_eq!(Vec::<i64>::try_from(target).unwrap(), vec![2, 7, 3, 8]);
        // Near the end T shrinks to n_rows - 1 - i.
        let (input, target) = get_batch(&data, 3, 35);
        assert_eq!(input.size(), vec![1, 2]);
        assert_eq!(Vec::<i64>::try_from(target).unwrap(), vec![4, 9]);
        assert!(batchify(&tokens, 6, Device::Cpu, "valid").is_err());
    }

    #[test]
    fn synthetic_corpus_is_deterministic_and_closed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let summary = write_synthetic_corpus(a.path(), 500, 100, 80, 4).unwrap();
        write_synthetic_corpus(b.path(), 500, 100, 80, 4).unwrap();
        for split in SPLITS {
            let name = format!("{split}.txt");
            assert_eq!(
                std::fs::read(a.path().join(&name)).unwrap(),
                std::fs::read(b.path().join(&name)).unwrap()
            );
        }
        let corpus = load_corpus(a.path()).unwrap();
        assert_eq!(corpus.dictionary.len(), summary.vocab);
        assert_eq!(
            [corpus.train.len(), corpus.valid.len(), corpus.test.len()],
            summary.tokens
        );
        assert!((500..=502).contains(&corpus.train.len()));
    }
}
