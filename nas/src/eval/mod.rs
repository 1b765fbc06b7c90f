//! Evaluation of a genotype on CIFAR (SPEC section 6): retraining NetworkCIFAR from scratch
//! as a task of the run driver ([`task`]), testing after every epoch.
//!
//! The run directory holds `config.toml` (everything the run used, genotype included),
//! `genotype.json` / `genotype.txt`, `metrics.jsonl`, `checkpoints/`, `best_weights.safetensors`
//! (highest test accuracy so far; the test set is not a validation set, so this is for
//! inspection, not for reporting), and at the end `weights.safetensors` (final weights) and
//! `test.json` (test error of the final weights, parameters, multiply-accumulates).

pub mod precision;
pub mod task;
pub mod trainer;

use crate::cnn::eval_cost::ParameterCounts;
use crate::data::load_cifar;
use crate::error::RunError;
use crate::run::{self, RunOptions};
use prime_core::config::LayeredConfig;
use prime_core::eval_config::EvalConfig;
use prime_core::genotype::Genotype;
use prime_core::observer::RunObserver;
use tch::Device;

/// Metric values that measure time and so differ between otherwise identical runs.
pub const TIMING_KEYS: [&str; 2] = ["images_per_s", "seconds"];

/// What an evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOutcome {
    /// Whether every epoch ran (false when the observer stopped the run).
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// Test top-1 accuracy (%) after the last completed epoch.
    pub test_acc: Option<f64>,
    /// Test error (%) = 100 - test accuracy.
    pub test_error: Option<f64>,
    /// Test cross-entropy after the last completed epoch.
    pub test_loss: Option<f64>,
    /// Highest test accuracy (%) of any completed epoch.
    pub best_test_acc: Option<f64>,
    /// Trainable parameters without the auxiliary head, and of the head (SPEC 6.7).
    pub params: ParameterCounts,
    /// Multiply-accumulates of one inference on a 32x32 image.
    pub macs: i64,
}

/// Runs (or resumes) an evaluation as configured, writing into `options.run_dir`.
pub fn run_eval(
    config: &EvalConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<EvalOutcome, RunError> {
    run::run(task::EvalTask::new(config, options)?, options, observer)
}

/// Runs (or resumes) an evaluation as configured on `devices`: on one device as
/// [`run_eval`] (on that device), on several data-parallel, one rank per device (each device
/// replaces `options.device` for its rank), every step sharding the global batch of the
/// single-device run. Collectives time out after [`crate::parallel::DEFAULT_COLLECTIVE_TIMEOUT`].
pub fn run_eval_data_parallel(
    devices: &[Device],
    config: &EvalConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<EvalOutcome, RunError> {
    run::run_on_devices(
        devices,
        options,
        observer,
        |options| task::EvalTask::new(config, options),
        || {
            config.validate("evaluation config")?;
            Ok(load_cifar(
                &options.data_dir,
                config.data.dataset,
                options.download,
            )?)
        },
        |ranks, options, data| task::EvalTask::new_rank(config, options, ranks, data),
    )
}

/// Loads the CNN genotype an argument names (see [`run::genotype::resolve_genotype`]).
pub fn resolve_genotype(argument: &str) -> Result<(Genotype, String), RunError> {
    run::genotype::resolve_genotype(argument)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::layout::GENOTYPE_TEXT;

    #[test]
    fn genotype_arguments_resolve_to_builtins_files_and_run_directories() {
        let (genotype, label) = resolve_genotype("darts_v2").unwrap();
        assert_eq!(genotype, Genotype::builtin("DARTS_V2").unwrap());
        assert_eq!(label, "DARTS_V2");

        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("darts-cifar10-seed2");
        std::fs::create_dir(&run).unwrap();
        let error = resolve_genotype(run.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no genotype.json or genotype.txt"),
            "{error}"
        );
        let nasnet = Genotype::builtin("NASNet").unwrap();
        std::fs::write(run.join(GENOTYPE_TEXT), nasnet.to_reference_text()).unwrap();
        let (genotype, label) = resolve_genotype(run.to_str().unwrap()).unwrap();
        assert_eq!(
            (genotype, label.as_str()),
            (nasnet.clone(), "darts-cifar10-seed2")
        );

        let file = dir.path().join("mine.json");
        nasnet.save_json(&file).unwrap();
        let (genotype, label) = resolve_genotype(file.to_str().unwrap()).unwrap();
        assert_eq!((genotype, label.as_str()), (nasnet, "mine"));

        let error = resolve_genotype("no-such-thing").unwrap_err().to_string();
        assert!(error.contains("AmoebaNet"), "{error}");
    }

    #[test]
    fn malformed_genotype_files_name_the_op_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("bad.json");
        std::fs::write(
            &json,
            "{\"normal\": [[\"sep_conv_3x3\", 0],\n [\"sep_conv_9x9\", 1]],\n\
             \"normal_concat\": [2], \"reduce\": [], \"reduce_concat\": [2]}\n",
        )
        .unwrap();
        let error = resolve_genotype(json.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("sep_conv_9x9"), "{error}");
        assert!(error.contains("line 2"), "{error}");
        let text = dir.path().join("bad.txt");
        std::fs::write(
            &text,
            "Genotype(\n  normal=[('sep_conv_3x3', 0),\n          ('sep_conv_9x9', 1)],\n\
             normal_concat=[2], reduce=[], reduce_concat=[2])\n",
        )
        .unwrap();
        let error = resolve_genotype(text.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("sep_conv_9x9"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("bad.txt"), "{error}");
    }
}
