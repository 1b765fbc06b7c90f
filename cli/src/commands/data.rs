//! `prime data`: synthetic datasets in the CIFAR binary format or as a Penn Treebank-style
//! corpus, and checks of dataset folders.
use anyhow::Context;
use clap::{Args, Subcommand};
use prime_core::dataset::ImageDataset;
use prime_nas::data::{load_cifar, write_synthetic, DownloadPolicy};
use prime_nas::rnn::corpus::{load_corpus, write_synthetic_corpus, CORPUS_FOLDER};
use std::path::PathBuf;

/// Subcommands of `prime data`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a synthetic dataset in the exact CIFAR binary format, or with --ptb a synthetic
    /// corpus in Penn Treebank's text format (usable as --data-dir).
    Synth(SynthArgs),
    /// Read and validate a dataset folder (downloading it if allowed) and print what it holds.
    Check(CheckArgs),
}

/// Arguments of `prime data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Directory to write into; the dataset's own folder is created inside it.
    #[arg(long)]
    out: PathBuf,
    /// 10 writes CIFAR-10's format, 100 writes CIFAR-100's.
    #[arg(long, default_value = "10", value_parser = parse_classes)]
    classes: ImageDataset,
    /// Number of training images.
    #[arg(long, default_value_t = 5000)]
    size: usize,
    /// Number of test images.
    #[arg(long, default_value_t = 1000)]
    test_size: usize,
    /// Seed of the images and labels (or of the corpus's word chain).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write a Penn Treebank-style corpus (`ptb/train.txt`, `valid.txt`, `test.txt`) instead.
    #[arg(long)]
    ptb: bool,
    /// With --ptb: training tokens (validation and test get a fifth of it each).
    #[arg(long, default_value_t = 50_000, requires = "ptb")]
    tokens: usize,
}

/// Arguments of `prime data check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory holding the dataset's folder (or the folder itself).
    #[arg(long)]
    data_dir: PathBuf,
    /// 10 for CIFAR-10, 100 for CIFAR-100.
    #[arg(long, default_value = "10", value_parser = parse_classes)]
    classes: ImageDataset,
    /// Download the official archive (MD5-verified) when files are missing.
    #[arg(long)]
    download: bool,
    /// Check a Penn Treebank corpus folder (`--data-dir` or its `ptb` folder) instead.
    #[arg(long, conflicts_with = "download")]
    ptb: bool,
}

fn parse_classes(value: &str) -> Result<ImageDataset, String> {
    match value {
        "10" => Ok(ImageDataset::Cifar10),
        "100" => Ok(ImageDataset::Cifar100),
        other => Err(format!("expected 10 or 100 classes, got {other}")),
    }
}

/// Runs `prime data`.
pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Synth(args) => synth(args),
        DataCommand::Check(args) => check(args),
    }
}

fn synth(args: SynthArgs) -> anyhow::Result<()> {
    if args.ptb {
        let dir = args.out.join(CORPUS_FOLDER);
        let tokens = args.tokens.max(1);
        let corpus = write_synthetic_corpus(&dir, tokens, tokens / 5, tokens / 5, args.seed)
            .with_context(|| format!("writing a synthetic corpus to {}", dir.display()))?;
        let [train, valid, test] = corpus.tokens;
        println!(
            "synthetic corpus in {}: {} words, {train} / {valid} / {test} train / valid / test \
             tokens",
            dir.display(),
            corpus.vocab
        );
        println!(
            "use it with --dataset ptb --data-dir {}",
            args.out.display()
        );
        return Ok(());
    }
    let summary = write_synthetic(
        &args.out,
        args.classes,
        args.size,
        args.test_size,
        args.seed,
    )
    .with_context(|| format!("writing synthetic data to {}", args.out.display()))?;
    print!("{summary}");
    println!("use it with --data-dir {}", args.out.display());
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    if args.ptb {
        let dir = super::ptb::corpus_dir(&args.data_dir);
        let corpus = load_corpus(&dir).with_context(|| {
            format!(
                "no Penn Treebank corpus: looked for train.txt or ptb.train.txt (with their valid \
                 and test files) in {} and in {}",
                args.data_dir.display(),
                args.data_dir.join(CORPUS_FOLDER).display()
            )
        })?;
        println!(
            "ptb in {}: {} words; {} / {} / {} train / valid / test tokens",
            dir.display(),
            corpus.dictionary.len(),
            corpus.train.len(),
            corpus.valid.len(),
            corpus.test.len()
        );
        return Ok(());
    }
    let policy = if args.download {
        DownloadPolicy::IfMissing
    } else {
        DownloadPolicy::Never
    };
    let data = load_cifar(&args.data_dir, args.classes, policy)?;
    let mut per_class = vec![0usize; args.classes.classes()];
    for &label in data.train.labels() {
        per_class[usize::from(label)] += 1;
    }
    let fewest = per_class.iter().min().copied().unwrap_or(0);
    let most = per_class.iter().max().copied().unwrap_or(0);
    println!(
        "{} in {}: {} training images, {} test images; {} to {} training images per class",
        args.classes,
        data.folder.display(),
        data.train.len(),
        data.test.len(),
        fewest,
        most
    );
    Ok(())
}
