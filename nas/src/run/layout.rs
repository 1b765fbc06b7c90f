//! Where and how a run executes, and the names of the files of its run directory.

use crate::data::DownloadPolicy;
use std::path::PathBuf;
use tch::Device;

/// The resolved config of a run; its sha256 ties every checkpoint to it.
pub const CONFIG_FILE: &str = "config.toml";
/// Checkpoints live in this sub-directory of the run directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// The run's genotype as JSON (a search's result, an evaluation's input).
pub const GENOTYPE_JSON: &str = "genotype.json";
/// The run's genotype in the reference's Python text form.
pub const GENOTYPE_TEXT: &str = "genotype.txt";
/// What a finished search found.
pub const SUMMARY_FILE: &str = "summary.json";
/// Weights after the last epoch of an evaluation.
pub const FINAL_WEIGHTS: &str = "weights.safetensors";
/// Weights of an evaluation's best epoch so far.
pub const BEST_WEIGHTS: &str = "best_weights.safetensors";
/// The test report of a finished evaluation.
pub const TEST_REPORT: &str = "test.json";

/// Where and how a run executes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run directory (config, records, checkpoints, results).
    pub run_dir: PathBuf,
    /// Directory holding the dataset (the corpus folder for Penn Treebank runs).
    pub data_dir: PathBuf,
    /// Device for tensors.
    pub device: Device,
    /// Continue from the last checkpoint in `run_dir`.
    pub resume: bool,
    /// Whether a missing dataset may be downloaded.
    pub download: DownloadPolicy,
}
