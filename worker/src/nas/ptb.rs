//! Penn Treebank trials: the recurrent search of a method preset and the retraining of a
//! recurrent genotype (SPEC 7), scored by perplexity.
//!
//! Grid settings map as for CIFAR where they mean the same thing: `epochs`, `batch_size`,
//! `rho`, `compat`; `init_channels` is the embedding/hidden width (`network.nhid`) and
//! `train_samples` the number of training tokens. `layers` has no recurrent meaning (one cell)
//! and is not used, so one grid can carry CNN settings for its CIFAR rows.

use super::failure::train_error;
use super::{finished_search, NasTrainer, SYNTHETIC_SEED};
use crate::trainer::{TrainEnd, TrainError, TrainJob};
use prime_core::genotype::RnnGenotype;
use prime_core::observer::RunObserver;
use prime_core::rnn_config::{RnnEvalConfig, RnnSearchConfig};
use prime_core::settings::{DataSource, RunSettings};
use prime_core::trial::{result_keys, TrialResult, TrialSpec};
use prime_nas::rnn::corpus::{write_synthetic_corpus, CORPUS_FOLDER};
use prime_nas::rnn::{run_rnn_eval, run_rnn_search};
use std::path::PathBuf;

/// Tokens of the synthetic corpus's training, validation and test text.
const SYNTHETIC_TOKENS: [usize; 3] = [8_000, 2_000, 2_000];

/// Overrides of the method preset (before it becomes a recurrent config).
fn preset_overrides(seed: u64, settings: &RunSettings) -> Vec<String> {
    let mut list = vec![format!("seed={seed}")];
    if let Some(epochs) = settings.epochs {
        list.push(format!("epochs={epochs}"));
    }
    if let Some(compat) = &settings.compat {
        list.push(format!("compat=\"{compat}\""));
    }
    list
}

/// Overrides of a recurrent config (search or evaluation) from a trial's settings.
pub fn rnn_overrides(settings: &RunSettings) -> Vec<String> {
    let mut list = Vec::new();
    if let Some(batch_size) = settings.batch_size {
        list.push(format!("data.batch_size={batch_size}"));
    }
    if let Some(width) = settings.init_channels {
        list.push(format!("network.nhid={width}"));
    }
    if let Some(tokens) = settings.train_samples {
        list.push(format!("data.limit={tokens}"));
    }
    list.extend(settings.set_overrides());
    list
}

impl NasTrainer {
    /// The recurrent search configuration of a PTB search trial; `Invalid` when it cannot run.
    pub(super) fn ptb_search_config(
        &self,
        spec: &TrialSpec,
    ) -> Result<RnnSearchConfig, TrainError> {
        let invalid =
            |error: prime_core::config::ConfigError| TrainError::Invalid(error.to_string());
        let overrides = preset_overrides(spec.search_seed, &spec.settings);
        let preset = self.method_preset(&spec.method, &overrides)?;
        let mut config = RnnSearchConfig::from_method(&preset).map_err(invalid)?;
        if let Some(rho) = spec.settings.rho {
            config.regularizer.rho = rho;
        }
        config
            .with_overrides(&rnn_overrides(&spec.settings))
            .map_err(invalid)
    }

    /// The corpus folder of a trial: the worker's real PTB folder, or a generated synthetic one.
    fn corpus_dir(&self, settings: &RunSettings) -> Result<PathBuf, TrainError> {
        if settings.data != Some(DataSource::Synthetic) {
            return Ok(self.data_dir.join(CORPUS_FOLDER));
        }
        let dir = self.synthetic_dir.join(CORPUS_FOLDER);
        if !dir.join(".complete").exists() {
            let [train, valid, test] = SYNTHETIC_TOKENS;
            write_synthetic_corpus(&dir, train, valid, test, SYNTHETIC_SEED)
                .map_err(|error| TrainError::Failed(format!("synthetic corpus: {error}")))?;
            std::fs::write(dir.join(".complete"), b"")
                .map_err(|error| TrainError::Failed(format!("synthetic corpus: {error}")))?;
        }
        Ok(dir)
    }

    /// Runs a PTB search trial.
    pub(super) fn search_ptb(
        &self,
        job: &TrainJob,
        observer: &mut dyn RunObserver,
    ) -> Result<TrainEnd, TrainError> {
        let config = self.ptb_search_config(&job.spec)?;
        let options = self.run_options(job, self.corpus_dir(&job.spec.settings)?);
        let outcome = run_rnn_search(&config, &options, observer).map_err(train_error)?;
        if !outcome.finished {
            return Ok(TrainEnd::Stopped);
        }
        let metric = ("search_valid_ppl", outcome.best_valid_ppl);
        finished_search(job, &outcome.genotype, metric, outcome.alpha_steps)
    }

    /// Runs a PTB evaluation trial: the genotype retrained from scratch, then tested.
    pub(super) fn evaluate_ptb(
        &self,
        job: &TrainJob,
        observer: &mut dyn RunObserver,
    ) -> Result<TrainEnd, TrainError> {
        let spec = &job.spec;
        let genotype_json = spec
            .genotype
            .clone()
            .ok_or_else(|| TrainError::Invalid("an evaluation trial without a genotype".into()))?;
        let genotype = serde_json::from_value::<RnnGenotype>(genotype_json).map_err(|error| {
            TrainError::Invalid(format!("the recurrent genotype is unreadable: {error}"))
        })?;
        let mut overrides = rnn_overrides(&spec.settings);
        overrides.push(format!("seed={}", spec.eval_seed.unwrap_or(0)));
        if let Some(epochs) = spec.settings.epochs {
            overrides.push(format!("epochs={epochs}"));
        }
        let label = format!("{} {} seed {}", spec.label, spec.dataset, spec.search_seed);
        let config = RnnEvalConfig::for_genotype(genotype, &label, &overrides)
            .map_err(|error| TrainError::Invalid(error.to_string()))?;
        let options = self.run_options(job, self.corpus_dir(&spec.settings)?);
        let outcome = run_rnn_eval(&config, &options, observer).map_err(train_error)?;
        if !outcome.finished {
            return Ok(TrainEnd::Stopped);
        }
        let mut result = TrialResult::default();
        if let Some(test_ppl) = outcome.test_ppl {
            result
                .metrics
                .insert(result_keys::TEST_PPL.into(), test_ppl);
        }
        if let Some(valid_ppl) = outcome.valid_ppl {
            result
                .metrics
                .insert(result_keys::VALID_PPL.into(), valid_ppl);
        }
        result
            .metrics
            .insert(result_keys::PARAMS_M.into(), outcome.params as f64 / 1e6);
        super::attach_manifest(&mut result, &job.run_dir);
        Ok(TrainEnd::Finished {
            result,
            artifacts: Some(job.run_dir.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::config::ScheduleKind;
    use prime_core::dataset::Dataset;
    use prime_core::grid::GridSpec;

    fn trainer() -> NasTrainer {
        NasTrainer {
            methods_dir: None,
            data_dir: PathBuf::from("data"),
            synthetic_dir: PathBuf::new(),
            own_streams: false,
        }
    }

    fn ptb_trial(text: &str) -> TrialSpec {
        GridSpec::parse("g.toml", text)
            .unwrap()
            .search_trials()
            .into_iter()
            .find(|spec| spec.dataset == Dataset::Ptb)
            .unwrap()
    }

    #[test]
    fn grid_settings_reach_the_recurrent_config() {
        let spec = ptb_trial(
            "version = 1\nname = \"g\"\ndatasets = [\"ptb\"]\nseeds = [101]\n\
             [search]\nepochs = 3\nbatch_size = 16\ninit_channels = 32\nlayers = 5\n\
             train_samples = 5000\nrho = 0.5\n\
             [[methods]]\npreset = \"darts-prime\"\n",
        );
        let config = trainer().ptb_search_config(&spec).unwrap();
        assert_eq!(
            (config.method.as_str(), config.seed, config.epochs),
            ("darts-prime", 101, 3)
        );
        assert_eq!(
            (
                config.data.batch_size,
                config.network.nhid,
                config.data.limit
            ),
            (16, 32, Some(5000))
        );
        assert_eq!(config.regularizer.rho, 0.5);
        assert_eq!(config.schedule.kind, ScheduleKind::Fimt);
    }

    #[test]
    fn admm_presets_cannot_search_ptb() {
        let spec = ptb_trial(
            "version = 1\nname = \"g\"\ndatasets = [\"ptb\"]\nseeds = [1]\n\
             [[methods]]\npreset = \"admm\"\n",
        );
        let error = trainer().ptb_search_config(&spec).unwrap_err();
        assert!(
            matches!(&error, TrainError::Invalid(message) if message.contains("ADMM")),
            "{error:?}"
        );
    }

    #[test]
    fn the_real_corpus_is_read_from_the_ptb_folder() {
        let dir = trainer().corpus_dir(&RunSettings::default()).unwrap();
        assert_eq!(dir, PathBuf::from("data").join("ptb"));
    }
}
