//! The one mapping from engine errors to how a trial's attempt failed: diverged, invalid (an
//! error that a retry would meet again: a configuration or checkpoint layout the engine
//! refuses, a data cursor past its data) or a transient failure that a retry may mend (I/O,
//! libtorch, data files on this node).
//!
//! The matches are exhaustive on purpose: a new engine error must be classified here.

use crate::trainer::TrainError;
use prime_nas::checkpoint::CheckpointError;
use prime_nas::data::DataError;
use prime_nas::eval::EvalError;
use prime_nas::optim::OptimError;
use prime_nas::rnn::corpus::CorpusError;
use prime_nas::search::SearchError;

/// Whether retrying an attempt can end differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The same error would come back: fail the trial at once.
    Useless,
    /// The error may not come back (on this worker later, or on another one).
    MayHelp,
}

fn train_error(retry: Retry, message: String) -> TrainError {
    match retry {
        Retry::Useless => TrainError::Invalid(message),
        Retry::MayHelp => TrainError::Failed(message),
    }
}

/// A checkpoint whose layout this build or config cannot read recurs; damaged bytes on this
/// node's disk do not (the next attempt downloads a verified copy).
fn checkpoint_retry(error: &CheckpointError) -> Retry {
    match error {
        CheckpointError::Malformed { .. } => Retry::Useless,
        CheckpointError::Io { .. }
        | CheckpointError::NotFound { .. }
        | CheckpointError::Corrupt { .. }
        | CheckpointError::Tensor { .. } => Retry::MayHelp,
    }
}

/// Optimizer state that does not fit its parameters (a checkpoint's layout) and invalid
/// hyper-parameters recur; a libtorch failure (out of memory, a device error) may not.
fn optim_retry(error: &OptimError) -> Retry {
    match error {
        OptimError::Torch(_) => Retry::MayHelp,
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
        | OptimError::InvalidStateValue { .. } => Retry::Useless,
    }
}

/// An unusable argument (a batch size of 0, a resumed cursor whose "start batch is past" the
/// data) recurs; missing or damaged data files are this node's and may be fine elsewhere.
fn data_retry(error: &DataError) -> Retry {
    match error {
        DataError::InvalidArgument(_) => Retry::Useless,
        DataError::MissingFiles { .. }
        | DataError::Truncated { .. }
        | DataError::BadLabel { .. }
        | DataError::Io { .. }
        | DataError::ChecksumMismatch { .. }
        | DataError::Extract { .. }
        | DataError::Worker(_)
        | DataError::Tensor(_) => Retry::MayHelp,
    }
}

/// A split too small for the configured batch layout recurs; the corpus files are this node's.
fn corpus_retry(error: &CorpusError) -> Retry {
    match error {
        CorpusError::TooSmall { .. } => Retry::Useless,
        CorpusError::Missing { .. }
        | CorpusError::Io { .. }
        | CorpusError::Utf8 { .. }
        | CorpusError::Download { .. }
        | CorpusError::Unverified { .. } => Retry::MayHelp,
    }
}

/// How a search (CIFAR or PTB) failed.
pub(super) fn search_failure(error: SearchError) -> TrainError {
    let retry = match &error {
        SearchError::Diverged { .. } => return TrainError::Diverged(error.to_string()),
        SearchError::Unsupported(_) | SearchError::Resume { .. } | SearchError::Genotype(_) => {
            Retry::Useless
        }
        SearchError::Data(data) => data_retry(data),
        SearchError::Corpus(corpus) => corpus_retry(corpus),
        SearchError::Optim(optim) => optim_retry(optim),
        SearchError::Checkpoint(checkpoint) => checkpoint_retry(checkpoint),
        SearchError::Io(_) | SearchError::Regularizer(_) => Retry::MayHelp,
    };
    train_error(retry, error.to_string())
}

/// How an evaluation (CIFAR or PTB) failed.
pub(super) fn eval_failure(error: EvalError) -> TrainError {
    let retry = match &error {
        EvalError::Diverged { .. } => return TrainError::Diverged(error.to_string()),
        EvalError::Config(_)
        | EvalError::Network(_)
        | EvalError::Genotype(_)
        | EvalError::Unsupported(_)
        | EvalError::Resume { .. } => Retry::Useless,
        EvalError::Data(data) => data_retry(data),
        EvalError::Corpus(corpus) => corpus_retry(corpus),
        EvalError::Optim(optim) => optim_retry(optim),
        EvalError::Checkpoint(checkpoint) => checkpoint_retry(checkpoint),
        EvalError::Io(_) => Retry::MayHelp,
    };
    train_error(retry, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_nas::checkpoint::CONFIG_CHANGED;
    use std::path::PathBuf;

    fn is_invalid(error: &TrainError) -> bool {
        matches!(error, TrainError::Invalid(_))
    }

    fn is_retried(error: &TrainError) -> bool {
        matches!(error, TrainError::Failed(_))
    }

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

    fn past_the_data() -> DataError {
        DataError::InvalidArgument("start batch 40 is past the 25 batches of a pass".into())
    }

    fn io() -> std::io::Error {
        std::io::Error::other("disk full")
    }

    fn resume_refused() -> (PathBuf, String) {
        (PathBuf::from("runs/t1"), CONFIG_CHANGED.to_string())
    }

    #[test]
    fn search_errors_that_would_recur_are_invalid() {
        let (dir, message) = resume_refused();
        let recurring = [
            SearchError::Unsupported("an empty alpha split".into()),
            SearchError::Resume { dir, message },
            SearchError::Genotype("no edge".into()),
            SearchError::Checkpoint(malformed()),
            SearchError::Data(past_the_data()),
            SearchError::Optim(OptimError::MissingStateEntry("w.momentum".into())),
            SearchError::Corpus(CorpusError::TooSmall {
                split: "train",
                tokens: 10,
                batch: 64,
                rows_needed: 2,
            }),
        ];
        for error in recurring {
            let text = error.to_string();
            assert!(is_invalid(&search_failure(error)), "{text}");
        }
    }

    #[test]
    fn transient_search_errors_are_retried_and_divergence_is_its_own_kind() {
        let transient = [
            SearchError::Io(io()),
            SearchError::Checkpoint(corrupt()),
            SearchError::Data(DataError::Worker("the data thread panicked".into())),
        ];
        for error in transient {
            let text = error.to_string();
            assert!(is_retried(&search_failure(error)), "{text}");
        }
        let diverged = SearchError::Diverged {
            epoch: 1,
            step: 7,
            loss: f64::NAN,
        };
        assert!(matches!(search_failure(diverged), TrainError::Diverged(_)));
    }

    #[test]
    fn evaluation_errors_that_would_recur_are_invalid() {
        let (dir, message) = resume_refused();
        let recurring = [
            EvalError::Unsupported("a single-image batch with the auxiliary head".into()),
            EvalError::Resume { dir, message },
            EvalError::Genotype("unknown genotype `X`".into()),
            EvalError::Checkpoint(malformed()),
            EvalError::Data(past_the_data()),
            EvalError::Optim(OptimError::StateShapeMismatch {
                name: "w.momentum".into(),
                expected: vec![3],
                found: vec![4],
            }),
        ];
        for error in recurring {
            let text = error.to_string();
            assert!(is_invalid(&eval_failure(error)), "{text}");
        }
    }

    #[test]
    fn transient_evaluation_errors_are_retried_and_divergence_is_its_own_kind() {
        let transient = [
            EvalError::Io(io()),
            EvalError::Checkpoint(corrupt()),
            EvalError::Checkpoint(CheckpointError::Io {
                path: PathBuf::from("checkpoints"),
                source: io(),
            }),
        ];
        for error in transient {
            let text = error.to_string();
            assert!(is_retried(&eval_failure(error)), "{text}");
        }
        let diverged = EvalError::Diverged {
            epoch: 0,
            step: 3,
            loss: f64::INFINITY,
        };
        assert!(matches!(eval_failure(diverged), TrainError::Diverged(_)));
    }
}
