//! The real trainer: runs trials with the prime-nas engine.
//!
//! A search trial's method preset (`configs/methods/<method>.toml`) plus its grid settings
//! become a `SearchConfig`; an evaluation trial's settings and genotype become an
//! `EvalConfig` (SPEC 6.1 defaults otherwise). The run directory is the trial's, so a resumed
//! attempt continues from the checkpoint the worker restored there.

use self::failure::train_error;
use crate::trainer::{Device, TrainEnd, TrainError, TrainJob, Trainer};
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::dataset::{Dataset, ImageDataset};
use prime_core::eval_config::EvalConfig;
use prime_core::genotype::Genotype;
use prime_core::observer::RunObserver;
use prime_core::settings::{DataSource, RunSettings};
use prime_core::trial::{result_keys, TrialKind, TrialResult, TrialSpec};
use prime_nas::cuda_stream::OwnStream;
use prime_nas::data::DownloadPolicy;
use prime_nas::eval::run_eval_data_parallel;
use prime_nas::run::RunOptions;
use prime_nas::search::run_search_data_parallel;
use std::path::PathBuf;

mod failure;
mod ptb;

/// Seed of the generated synthetic data sets.
const SYNTHETIC_SEED: u64 = 0;
/// Training images of a synthetic data set (demos and smoke tests).
const SYNTHETIC_TRAIN_IMAGES: usize = 512;
/// Test images of a synthetic data set.
const SYNTHETIC_TEST_IMAGES: usize = 128;

/// Trains with prime-nas.
#[derive(Debug, Clone)]
pub struct NasTrainer {
    /// Directory of method presets (`<method>.toml`) replacing the compiled-in ones.
    pub methods_dir: Option<PathBuf>,
    /// Directory holding the real datasets.
    pub data_dir: PathBuf,
    /// Where synthetic datasets are generated.
    pub synthetic_dir: PathBuf,
    /// Whether a trial that shares its GPU trains on a CUDA stream of its own
    /// (`worker --own-streams`).
    pub own_streams: bool,
}

/// The `--set` overrides that apply an evaluation trial's settings to the SPEC 6.1 defaults.
pub fn eval_overrides(dataset: ImageDataset, seed: u64, settings: &RunSettings) -> Vec<String> {
    let mut list = vec![
        format!("data.dataset=\"{}\"", dataset.name()),
        format!("seed={seed}"),
    ];
    let mut push = |key: &str, value: Option<u32>| {
        if let Some(value) = value {
            list.push(format!("{key}={value}"));
        }
    };
    push("epochs", settings.epochs);
    push("data.batch_size", settings.batch_size);
    push("network.init_channels", settings.init_channels);
    push("network.layers", settings.layers);
    push("data.limit", settings.train_samples);
    list.extend(settings.set_overrides());
    list
}

/// The `--set` overrides that apply a trial's settings to its preset.
pub fn overrides(dataset: ImageDataset, seed: u64, settings: &RunSettings) -> Vec<String> {
    let mut list = vec![
        format!("data.dataset=\"{}\"", dataset.name()),
        format!("seed={seed}"),
    ];
    let mut push = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            list.push(format!("{key}={value}"));
        }
    };
    push("epochs", settings.epochs.map(|v| v.to_string()));
    push(
        "data.batch_size",
        settings.batch_size.map(|v| v.to_string()),
    );
    push(
        "network.init_channels",
        settings.init_channels.map(|v| v.to_string()),
    );
    push("network.layers", settings.layers.map(|v| v.to_string()));
    push("regularizer.rho", settings.rho.map(|v| format!("{v:?}")));
    push(
        "compat",
        settings.compat.as_ref().map(|v| format!("\"{v}\"")),
    );
    push("data.limit", settings.train_samples.map(|v| v.to_string()));
    list.extend(settings.set_overrides());
    list
}

fn image_dataset(task: Dataset) -> Result<ImageDataset, TrainError> {
    match task {
        Dataset::Cifar10 => Ok(ImageDataset::Cifar10),
        Dataset::Cifar100 => Ok(ImageDataset::Cifar100),
        Dataset::Ptb => Err(TrainError::Invalid(
            "Penn Treebank trials run the recurrent engine, not an image network".into(),
        )),
    }
}

impl NasTrainer {
    fn options(&self, job: &TrainJob, dataset: ImageDataset) -> Result<RunOptions, TrainError> {
        Ok(self.run_options(job, self.data_dir(dataset, &job.spec.settings)?))
    }

    /// The engine's options for `job` reading its data from `data_dir`.
    fn run_options(&self, job: &TrainJob, data_dir: PathBuf) -> RunOptions {
        RunOptions {
            run_dir: job.run_dir.clone(),
            data_dir,
            device: torch_devices(job)[0],
            resume: job.resume,
            download: DownloadPolicy::Never,
        }
    }

    fn evaluate(
        &self,
        job: &TrainJob,
        spec: &TrialSpec,
        observer: &mut dyn RunObserver,
    ) -> Result<TrainEnd, TrainError> {
        let dataset = image_dataset(spec.dataset)?;
        let genotype_json = spec
            .genotype
            .clone()
            .ok_or_else(|| TrainError::Invalid("an evaluation trial without a genotype".into()))?;
        let seed = spec.eval_seed.unwrap_or(0);
        let mut config = EvalConfig::from_overrides(&eval_overrides(dataset, seed, &spec.settings))
            .map_err(|error| TrainError::Invalid(error.to_string()))?;
        config.genotype = serde_json::from_value::<Genotype>(genotype_json)
            .map_err(|error| TrainError::Invalid(format!("the genotype is unreadable: {error}")))?;
        config.label = format!("{} {} seed {}", spec.label, spec.dataset, spec.search_seed);
        config
            .validate("evaluation trial")
            .map_err(|error| TrainError::Invalid(error.to_string()))?;
        let options = self.options(job, dataset)?;
        let outcome = run_eval_data_parallel(&torch_devices(job), &config, &options, observer)
            .map_err(train_error)?;
        if !outcome.finished {
            return Ok(TrainEnd::Stopped);
        }
        let mut result = TrialResult::default();
        if let Some(test_error) = outcome.test_error {
            result
                .metrics
                .insert(result_keys::TEST_ERROR.into(), test_error);
        }
        result.metrics.insert(
            result_keys::PARAMS_M.into(),
            outcome.params.network as f64 / 1e6,
        );
        attach_manifest(&mut result, &job.run_dir);
        Ok(TrainEnd::Finished {
            result,
            artifacts: Some(job.run_dir.clone()),
        })
    }

    /// The data set and search configuration of a search trial; `Invalid` when they cannot run.
    fn search_config(&self, spec: &TrialSpec) -> Result<(ImageDataset, SearchConfig), TrainError> {
        let dataset = image_dataset(spec.dataset)?;
        let overrides = overrides(dataset, spec.search_seed, &spec.settings);
        Ok((dataset, self.method_preset(&spec.method, &overrides)?))
    }

    /// The preset of `method` (from `methods_dir` if set, else compiled in) with `overrides`.
    fn method_preset(
        &self,
        method: &str,
        overrides: &[String],
    ) -> Result<SearchConfig, TrainError> {
        match &self.methods_dir {
            Some(dir) => SearchConfig::load(&dir.join(format!("{method}.toml")), overrides),
            None => prime_core::presets::method_config(method, overrides),
        }
        .map_err(|error| TrainError::Invalid(error.to_string()))
    }

    fn data_dir(
        &self,
        dataset: ImageDataset,
        settings: &RunSettings,
    ) -> Result<PathBuf, TrainError> {
        if settings.data != Some(DataSource::Synthetic) {
            return Ok(self.data_dir.clone());
        }
        let dir = self.synthetic_dir.join(dataset.name());
        if !dir.join(".complete").exists() {
            prime_nas::data::write_synthetic(
                &dir,
                dataset,
                SYNTHETIC_TRAIN_IMAGES,
                SYNTHETIC_TEST_IMAGES,
                SYNTHETIC_SEED,
            )
            .map_err(|error| TrainError::Failed(format!("synthetic data: {error}")))?;
            std::fs::write(dir.join(".complete"), b"")
                .map_err(|error| TrainError::Failed(format!("synthetic data: {error}")))?;
        }
        Ok(dir)
    }
}

impl Trainer for NasTrainer {
    fn train(
        &self,
        job: &TrainJob,
        observer: &mut dyn RunObserver,
    ) -> Result<TrainEnd, TrainError> {
        let spec = &job.spec;
        if job.devices.is_empty() || (spec.dataset == Dataset::Ptb && job.devices.len() > 1) {
            return Err(one_device_only(job.devices.len()));
        }
        let _stream = self.own_stream(job);
        match (spec.dataset, spec.kind) {
            (Dataset::Ptb, TrialKind::Search) => return self.search_ptb(job, observer),
            (Dataset::Ptb, TrialKind::Evaluation) => return self.evaluate_ptb(job, observer),
            (_, TrialKind::Evaluation) => return self.evaluate(job, spec, observer),
            (_, TrialKind::Search) => {}
        }
        let (dataset, config) = self.search_config(spec)?;
        let options = self.options(job, dataset)?;
        let outcome = run_search_data_parallel(&torch_devices(job), &config, &options, observer)
            .map_err(train_error)?;
        if !outcome.finished {
            return Ok(TrainEnd::Stopped);
        }
        let metric = ("search_valid_acc", outcome.valid_acc);
        finished_search(job, &outcome.genotype, metric, outcome.alpha_steps)
    }
}

impl NasTrainer {
    /// With `own_streams`, a CUDA stream of this thread's own for a trial that shares its
    /// one GPU, current until the value is dropped; `None` otherwise, or (logged) where
    /// c10 cannot give one: the trial then runs on the device's default stream.
    fn own_stream(&self, job: &TrainJob) -> Option<OwnStream> {
        let shared = job.spec.resources().gpu_share > 1;
        let [Device::Cuda(index)] = job.devices.as_slice() else {
            return None;
        };
        if !self.own_streams || !shared {
            return None;
        }
        match OwnStream::enter(*index as usize) {
            Ok(stream) => {
                tracing::info!(
                    trial_id = job.trial_id,
                    device = index,
                    "trial on a CUDA stream of its own"
                );
                Some(stream)
            }
            Err(reason) => {
                tracing::warn!(trial_id = job.trial_id, %reason, "no stream of its own: the trial runs on the default stream");
                None
            }
        }
    }
}

/// The libtorch devices of `job`, one rank per device: CIFAR searches and evaluations on
/// several devices run data-parallel (`run_*_data_parallel`), on one as a plain run.
fn torch_devices(job: &TrainJob) -> Vec<tch::Device> {
    job.devices
        .iter()
        .map(|device| match device {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(index) => tch::Device::Cuda(*index as usize),
        })
        .collect()
}

/// The refusal of a Penn Treebank trial on `devices` devices (or of a job without any): the
/// recurrent engine trains on exactly one.
fn one_device_only(devices: usize) -> TrainError {
    TrainError::Invalid(format!(
        "this trial asks for {devices} devices; Penn Treebank searches and evaluations train on exactly one (data-parallel training covers the CIFAR networks only): set gpus = 1"
    ))
}

/// A finished search as the coordinator keeps it: the genotype, the search's validation
/// `metric` (name, value when an epoch completed) and its alpha-step count; the run directory
/// is uploaded with it.
fn finished_search(
    job: &TrainJob,
    genotype: &impl serde::Serialize,
    (name, value): (&str, Option<f64>),
    alpha_steps: u64,
) -> Result<TrainEnd, TrainError> {
    let genotype = serde_json::to_value(genotype)
        .map_err(|error| TrainError::Failed(format!("genotype: {error}")))?;
    let mut result = TrialResult {
        genotype: Some(genotype),
        ..TrialResult::default()
    };
    if let Some(value) = value {
        result.metrics.insert(name.into(), value);
    }
    result
        .metrics
        .insert(result_keys::ALPHA_STEPS.into(), alpha_steps as f64);
    let on_gpu = matches!(job.devices[0], crate::trainer::Device::Cuda(_));
    result.metrics.insert(
        result_keys::SEARCH_ON_GPU.into(),
        f64::from(u8::from(on_gpu)),
    );
    attach_manifest(&mut result, &job.run_dir);
    Ok(TrainEnd::Finished {
        result,
        artifacts: Some(job.run_dir.clone()),
    })
}

/// Puts the run's `manifest.json` into its result; a manifest that cannot be read is left out
/// with a warning (the result itself is still good).
pub(crate) fn attach_manifest(result: &mut TrialResult, run_dir: &std::path::Path) {
    let path = run_dir.join(prime_nas::run::manifest::MANIFEST_FILE);
    let manifest = std::fs::read_to_string(&path)
        .map_err(|error| error.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|error| error.to_string()));
    match manifest {
        Ok(manifest) => result.manifest = Some(manifest),
        Err(error) => tracing::warn!("{}: not attached to the result: {error}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_config_overrides() {
        let settings = RunSettings {
            epochs: Some(2),
            rho: Some(0.5),
            compat: Some("fixed".into()),
            train_samples: Some(64),
            ..RunSettings::default()
        };
        let list = overrides(ImageDataset::Cifar100, 101, &settings);
        assert_eq!(
            list,
            vec![
                "data.dataset=\"cifar100\"",
                "seed=101",
                "epochs=2",
                "regularizer.rho=0.5",
                "compat=\"fixed\"",
                "data.limit=64",
            ]
        );
        let preset = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/methods/darts-prime.toml");
        let config = SearchConfig::load(&preset, &list).unwrap();
        assert_eq!(
            (config.epochs, config.seed, config.data.limit),
            (2, 101, Some(64))
        );
        let list = eval_overrides(ImageDataset::Cifar10, 3, &settings);
        let config = EvalConfig::from_overrides(&list).unwrap();
        assert_eq!(
            (config.epochs, config.seed, config.data.limit),
            (2, 3, Some(64))
        );
        let genotype = Genotype::builtin("DARTS_V2").unwrap();
        let json = serde_json::to_value(&genotype).unwrap();
        assert_eq!(serde_json::from_value::<Genotype>(json).unwrap(), genotype);
    }

    #[test]
    fn a_penn_treebank_trial_on_several_devices_is_refused() {
        let grid = "version = 1\nname = \"g\"\ndatasets = [\"ptb\"]\nseeds = [1]\n\
                    [[methods]]\npreset = \"darts\"\n[search]\ngpus = 2\n";
        let spec = prime_core::grid::GridSpec::parse("g.toml", grid)
            .unwrap()
            .search_trials()
            .remove(0);
        let run_dir = tempfile::tempdir().unwrap();
        let job = TrainJob {
            trial_id: 1,
            spec,
            run_dir: run_dir.path().to_path_buf(),
            devices: vec![Device::Cpu, Device::Cpu],
            slots: vec![0, 1],
            resume: false,
        };
        let trainer = NasTrainer {
            methods_dir: None,
            data_dir: run_dir.path().join("data"),
            synthetic_dir: run_dir.path().join("synthetic"),
            own_streams: false,
        };
        let observer = &mut prime_core::observer::NullObserver;
        match trainer.train(&job, observer) {
            Err(TrainError::Invalid(reason)) => assert!(
                reason.contains("asks for 2 devices") && reason.contains("set gpus = 1"),
                "{reason}"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn configurations_that_cannot_run_are_invalid_not_failures() {
        let text = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [1]\n\
                    [[methods]]\npreset = \"darts\"\n";
        let specs = prime_core::grid::GridSpec::parse("g.toml", text)
            .unwrap()
            .search_trials();
        let trainer = NasTrainer {
            methods_dir: None,
            data_dir: PathBuf::new(),
            synthetic_dir: PathBuf::new(),
            own_streams: false,
        };
        let cifar = specs
            .iter()
            .find(|spec| spec.dataset == Dataset::Cifar10)
            .unwrap();
        assert!(trainer.search_config(cifar).is_ok());
        let mut unknown = cifar.clone();
        unknown.method = "no-such-method".into();
        let error = trainer.search_config(&unknown).unwrap_err();
        assert!(matches!(error, TrainError::Invalid(_)), "{error:?}");
    }
}
