//! The one error type of the engine's runs, and the kind of every error: whether running the
//! same trial again can end differently. The worker turns kinds into retry decisions in one
//! place; each error type below classifies its own variants, beside their definitions' meaning.
//!
//! The matches are exhaustive on purpose: a new error variant must say its kind.

use crate::checkpoint::CheckpointError;
use crate::cnn::eval_net::EvalNetError;
use crate::data::DataError;
use crate::fingerprint::FingerprintError;
use crate::optim::OptimError;
use crate::parallel::CommError;
use crate::rnn::corpus::CorpusError;
use crate::search::regularizer::RegularizerError;
use prime_core::config::ConfigError;
use std::path::PathBuf;

/// How an error bears on retrying the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The same input would fail the same way: a configuration or genotype the engine refuses,
    /// a checkpoint written for another config or layout, a data cursor past its data.
    Invalid,
    /// May not recur on another attempt or node: I/O, libtorch, data files on this node,
    /// damaged checkpoint bytes (the next attempt fetches a verified copy).
    Transient,
    /// The loss became NaN or infinite: the configuration trains, but not to a result.
    Diverged,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config is invalid (file, line and field are in the message).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The config asks for something this build or this data cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The evaluation network cannot be built from the genotype.
    #[error(transparent)]
    Network(#[from] EvalNetError),
    /// Reading or streaming image data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The text corpus of a recurrent run could not be read.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// An optimizer failed.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A run-directory file could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The architecture regularizer failed.
    #[error(transparent)]
    Regularizer(#[from] RegularizerError),
    /// A genotype argument or file could not be found or read.
    #[error("{0}")]
    Genotype(String),
    /// The genotype or projection of the current alphas could not be derived.
    #[error("genotype: {0}")]
    Projection(String),
    /// The checkpoint or data of the run directory do not belong to this run.
    #[error("{}: cannot resume: {message}", .dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why the resume is refused.
        message: String,
    },
    /// A collective of a data-parallel run failed (another rank left, or a timeout).
    #[error(transparent)]
    Collective(#[from] CommError),
    /// A rank of a data-parallel run other than rank 0 failed; the run fails with it.
    #[error("rank {rank} of the data-parallel run failed: {source}")]
    Rank {
        /// The rank.
        rank: usize,
        /// Its error.
        source: Box<RunError>,
    },
    /// A rank of a data-parallel run panicked.
    #[error("rank {rank} of the data-parallel run panicked: {message}")]
    RankPanicked {
        /// The rank.
        rank: usize,
        /// The panic's message.
        message: String,
    },
    /// A loss became NaN or infinite.
    #[error("diverged: {what} is {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// Which loss ("loss", "training loss", "validation loss").
        what: &'static str,
        /// 0-based epoch it happened in.
        epoch: u32,
        /// Global weight steps done.
        step: u64,
        /// The non-finite value.
        loss: f64,
    },
}

impl RunError {
    /// Whether a retry can help (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunError::Diverged { .. } => ErrorKind::Diverged,
            RunError::Config(_)
            | RunError::Unsupported(_)
            | RunError::Network(_)
            | RunError::Genotype(_)
            | RunError::Projection(_)
            | RunError::Resume { .. } => ErrorKind::Invalid,
            RunError::Data(error) => error.kind(),
            RunError::Corpus(error) => error.kind(),
            RunError::Optim(error) => error.kind(),
            RunError::Checkpoint(error) => error.kind(),
            RunError::Rank { source, .. } => source.kind(),
            RunError::Io(_)
            | RunError::Regularizer(_)
            | RunError::Collective(_)
            | RunError::RankPanicked { .. } => ErrorKind::Transient,
        }
    }

    /// A non-finite `loss` as an error, a finite one as `Ok`.
    pub fn check_finite(what: &'static str, loss: f64, epoch: u32, step: u64) -> Result<(), Self> {
        if loss.is_finite() {
            Ok(())
        } else {
            Err(RunError::Diverged {
                what,
                epoch,
                step,
                loss,
            })
        }
    }
}

impl From<FingerprintError> for RunError {
    fn from(error: FingerprintError) -> Self {
        match error {
            FingerprintError::Io(error) => RunError::Io(error),
            FingerprintError::Changed { ref run_dir, .. } => RunError::Resume {
                dir: run_dir.clone(),
                message: error.to_string(),
            },
        }
    }
}

impl CheckpointError {
    /// A layout this build or config cannot read recurs; damaged bytes on this node's disk
    /// do not.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CheckpointError::Malformed { .. } => ErrorKind::Invalid,
            CheckpointError::Io { .. }
            | CheckpointError::NotFound { .. }
            | CheckpointError::Corrupt { .. }
            | CheckpointError::Tensor { .. } => ErrorKind::Transient,
        }
    }
}

impl OptimError {
    /// Optimizer state that does not fit its parameters (a checkpoint's layout) and invalid
    /// hyper-parameters recur; a libtorch failure (out of memory, a device error) may not.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OptimError::Torch(_) => ErrorKind::Transient,
            OptimError::DuplicateParameter(_)
            | OptimError::EmptyParameterName
            | OptimError::UndefinedParameter(_)
            | OptimError::UnknownParameter(_)
            | OptimError::InvalidHyperparameter { .. }
            | OptimError::UnknownStateEntry(_)
            | OptimError::DuplicateStateEntry(_)
            | OptimError::MissingStateEntry(_)
            | OptimError::UndefinedStateEntry(_)
            | OptimError::StateShapeMismatch { .. }
            | OptimError::StateKindMismatch { .. }
            | OptimError::InvalidStateValue { .. } => ErrorKind::Invalid,
        }
    }
}

impl DataError {
    /// An unusable argument (a batch size of 0, a resumed cursor past the data) recurs;
    /// missing or damaged data files are this node's and may be fine elsewhere.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DataError::InvalidArgument(_) => ErrorKind::Invalid,
            DataError::MissingFiles { .. }
            | DataError::Truncated { .. }
            | DataError::BadLabel { .. }
            | DataError::Io { .. }
            | DataError::ChecksumMismatch { .. }
            | DataError::Extract { .. }
            | DataError::Worker(_)
            | DataError::Tensor(_) => ErrorKind::Transient,
        }
    }
}

impl CorpusError {
    /// A split too small for the configured batch layout recurs; the corpus files are this
    /// node's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CorpusError::TooSmall { .. } => ErrorKind::Invalid,
            CorpusError::Missing { .. }
            | CorpusError::Io { .. }
            | CorpusError::Utf8 { .. }
            | CorpusError::Download { .. }
            | CorpusError::Unverified { .. } => ErrorKind::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CONFIG_CHANGED;

    fn malformed() -> CheckpointError {
        CheckpointError::Malformed {
            path: PathBuf::from("checkpoints/step-1/state.json"),
            message: "state: missing field `epoch`".into(),
        }
    }

    fn corrupt() -> CheckpointError {
        CheckpointError::Corrupt {
            path: PathBuf::from("checkpoints/step-1/weights.safetensors"),
            expected: "aa".into(),
            actual: "bb".into(),
        }
    }

    fn assert_kind(errors: Vec<RunError>, kind: ErrorKind) {
        for error in errors {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }

    #[test]
    fn errors_that_would_recur_are_invalid() {
        assert_kind(
            vec![
                RunError::Unsupported("an empty alpha split".into()),
                RunError::Resume {
                    dir: PathBuf::from("runs/t1"),
                    message: CONFIG_CHANGED.to_string(),
                },
                RunError::Genotype("no edge".into()),
                RunError::Network(EvalNetError::Shape("0 layers".into())),
                RunError::Checkpoint(malformed()),
                RunError::Data(DataError::InvalidArgument(
                    "start batch 40 is past the 25 batches of a pass".into(),
                )),
                RunError::Optim(OptimError::MissingStateEntry("w.momentum".into())),
                RunError::Optim(OptimError::StateShapeMismatch {
                    name: "w.momentum".into(),
                    expected: vec![3],
                    found: vec![4],
                }),
                RunError::Corpus(CorpusError::TooSmall {
                    split: "train",
                    tokens: 10,
                    batch: 64,
                    rows_needed: 2,
                }),
            ],
            ErrorKind::Invalid,
        );
    }

    #[test]
    fn errors_of_this_node_or_moment_are_transient() {
        assert_kind(
            vec![
                RunError::Io(std::io::Error::other("disk full")),
                RunError::Checkpoint(corrupt()),
                RunError::Checkpoint(CheckpointError::Io {
                    path: PathBuf::from("checkpoints"),
                    source: std::io::Error::other("disk full"),
                }),
                RunError::Data(DataError::Worker("the data thread panicked".into())),
            ],
            ErrorKind::Transient,
        );
    }

    #[test]
    fn a_non_finite_loss_is_divergence_and_names_the_loss() {
        let error = RunError::check_finite("training loss", f64::NAN, 1, 7).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Diverged);
        assert_eq!(
            error.to_string(),
            "diverged: training loss is NaN at epoch 1, step 7"
        );
        assert!(RunError::check_finite("loss", 2.3, 0, 1).is_ok());
    }
}
