//! Trial specs and results on the wire. The core types carry a genotype as a JSON document
//! (its shape depends on the search space), which travels as JSON text inside the typed
//! message; everything else is a typed field. A malformed message (an unspecified or unknown
//! enum value, genotype text that is not JSON) is refused with the path of the field.

use super::ConvertError;
use crate::pb;
use prime_core::dataset::Dataset;
use prime_core::resources::Resources;
use prime_core::settings::{DataSource, EvaluationSettings, RunSettings, MAX_SET_KEYS};
use prime_core::trial::{TrialKind, TrialResult, TrialSpec};

fn invalid(field: &'static str, message: impl Into<String>) -> ConvertError {
    ConvertError {
        field,
        message: message.into(),
    }
}

impl From<TrialKind> for pb::TrialKind {
    fn from(kind: TrialKind) -> Self {
        match kind {
            TrialKind::Search => pb::TrialKind::Search,
            TrialKind::Evaluation => pb::TrialKind::Evaluation,
        }
    }
}

impl From<Dataset> for pb::Dataset {
    fn from(dataset: Dataset) -> Self {
        match dataset {
            Dataset::Cifar10 => pb::Dataset::Cifar10,
            Dataset::Cifar100 => pb::Dataset::Cifar100,
            Dataset::Ptb => pb::Dataset::Ptb,
        }
    }
}

impl From<DataSource> for pb::DataSource {
    fn from(source: DataSource) -> Self {
        match source {
            DataSource::Real => pb::DataSource::Real,
            DataSource::Synthetic => pb::DataSource::Synthetic,
        }
    }
}

fn trial_kind(value: i32) -> Result<TrialKind, ConvertError> {
    match pb::TrialKind::try_from(value) {
        Ok(pb::TrialKind::Search) => Ok(TrialKind::Search),
        Ok(pb::TrialKind::Evaluation) => Ok(TrialKind::Evaluation),
        Ok(pb::TrialKind::Unspecified) | Err(_) => Err(invalid(
            "spec.kind",
            format!("expected search or evaluation, got the value {value}"),
        )),
    }
}

fn dataset(value: i32) -> Result<Dataset, ConvertError> {
    match pb::Dataset::try_from(value) {
        Ok(pb::Dataset::Cifar10) => Ok(Dataset::Cifar10),
        Ok(pb::Dataset::Cifar100) => Ok(Dataset::Cifar100),
        Ok(pb::Dataset::Ptb) => Ok(Dataset::Ptb),
        Ok(pb::Dataset::Unspecified) | Err(_) => Err(invalid(
            "spec.dataset",
            format!("expected cifar10, cifar100 or ptb, got the value {value}"),
        )),
    }
}

fn data_source(value: i32, field: &'static str) -> Result<DataSource, ConvertError> {
    match pb::DataSource::try_from(value) {
        Ok(pb::DataSource::Real) => Ok(DataSource::Real),
        Ok(pb::DataSource::Synthetic) => Ok(DataSource::Synthetic),
        Ok(pb::DataSource::Unspecified) | Err(_) => Err(invalid(
            field,
            format!("expected real or synthetic, got the value {value}"),
        )),
    }
}

fn json_document(
    text: Option<String>,
    field: &'static str,
) -> Result<Option<serde_json::Value>, ConvertError> {
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|error| invalid(field, format!("not a JSON document: {error}")))
    })
    .transpose()
}

impl From<&RunSettings> for pb::RunSettings {
    fn from(settings: &RunSettings) -> Self {
        pb::RunSettings {
            epochs: settings.epochs,
            batch_size: settings.batch_size,
            init_channels: settings.init_channels,
            layers: settings.layers,
            rho: settings.rho,
            compat: settings.compat.clone(),
            data: settings.data.map(|data| pb::DataSource::from(data) as i32),
            train_samples: settings.train_samples,
            gpus: settings.gpus,
            gpu_share: settings.gpu_share,
            set: settings
                .set
                .iter()
                .map(|(key, value)| (key.clone(), value.to_string()))
                .collect(),
        }
    }
}

/// The core settings of `settings`; `data_field` names its `data` field in errors.
fn run_settings(
    settings: pb::RunSettings,
    data_field: &'static str,
) -> Result<RunSettings, ConvertError> {
    Ok(RunSettings {
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        init_channels: settings.init_channels,
        layers: settings.layers,
        rho: settings.rho,
        compat: settings.compat,
        data: settings
            .data
            .map(|value| data_source(value, data_field))
            .transpose()?,
        train_samples: settings.train_samples,
        gpus: settings.gpus,
        gpu_share: settings.gpu_share,
        set: check_set_count(settings.set)?
            .into_iter()
            .map(|(key, text)| {
                let value = toml_value(&text).map_err(|message| {
                    invalid("run settings set", format!("`{key}`: {message}"))
                })?;
                Ok((key, value))
            })
            .collect::<Result<_, ConvertError>>()?,
    })
}

fn check_set_count(
    set: std::collections::HashMap<String, String>,
) -> Result<std::collections::HashMap<String, String>, ConvertError> {
    if set.len() > MAX_SET_KEYS {
        return Err(invalid(
            "run settings set",
            format!("{} values; at most {MAX_SET_KEYS}", set.len()),
        ));
    }
    Ok(set)
}

/// A TOML value written as text (`4.0`, `"fixed"`).
fn toml_value(text: &str) -> Result<toml::Value, String> {
    let table: toml::Table = format!("value = {text}")
        .parse()
        .map_err(|error: toml::de::Error| format!("not a TOML value: {}", error.message()))?;
    table
        .get("value")
        .cloned()
        .ok_or_else(|| "not a TOML value".to_string())
}

impl From<&EvaluationSettings> for pb::EvaluationSettings {
    fn from(evaluation: &EvaluationSettings) -> Self {
        pb::EvaluationSettings {
            seeds: evaluation.seeds,
            first_seed: evaluation.first_seed,
            run: Some((&evaluation.run).into()),
            gpus: evaluation.gpus,
            gpu_share: evaluation.gpu_share,
        }
    }
}

impl From<&TrialSpec> for pb::TrialSpec {
    fn from(spec: &TrialSpec) -> Self {
        pb::TrialSpec {
            grid: spec.grid.clone(),
            kind: pb::TrialKind::from(spec.kind) as i32,
            method: spec.method.clone(),
            label: spec.label.clone(),
            dataset: pb::Dataset::from(spec.dataset) as i32,
            search_seed: spec.search_seed,
            eval_seed: spec.eval_seed,
            settings: Some((&spec.settings).into()),
            genotype_json: spec.genotype.as_ref().map(|genotype| genotype.to_string()),
            evaluation: spec.evaluation.as_ref().map(Into::into),
            priority: spec.priority,
            retries: spec.retries,
        }
    }
}

impl TryFrom<pb::TrialSpec> for TrialSpec {
    type Error = ConvertError;

    fn try_from(spec: pb::TrialSpec) -> Result<Self, Self::Error> {
        let evaluation = spec
            .evaluation
            .map(|evaluation| {
                Ok::<_, ConvertError>(EvaluationSettings {
                    seeds: evaluation.seeds,
                    first_seed: evaluation.first_seed,
                    run: run_settings(
                        evaluation.run.unwrap_or_default(),
                        "spec.evaluation.run.data",
                    )?,
                    gpus: evaluation.gpus,
                    gpu_share: evaluation.gpu_share,
                })
            })
            .transpose()?;
        if let Some(evaluation) = &evaluation {
            check_resources(&evaluation.run_settings(), "spec.evaluation")?;
        }
        let settings = run_settings(spec.settings.unwrap_or_default(), "spec.settings.data")?;
        check_resources(&settings, "spec.settings")?;
        Ok(TrialSpec {
            grid: spec.grid,
            kind: trial_kind(spec.kind)?,
            method: spec.method,
            label: spec.label,
            dataset: dataset(spec.dataset)?,
            search_seed: spec.search_seed,
            eval_seed: spec.eval_seed,
            settings,
            genotype: json_document(spec.genotype_json, "spec.genotype_json")?,
            evaluation,
            priority: spec.priority,
            retries: spec.retries,
        })
    }
}

/// Refuses GPU requests out of range, or a shared multi-GPU request, of the settings at
/// `table` (`spec.settings` or `spec.evaluation`).
fn check_resources(settings: &RunSettings, table: &'static str) -> Result<(), ConvertError> {
    Resources::of(settings).map(|_| ()).map_err(|error| {
        let field = match (table, error.field) {
            ("spec.settings", "gpus") => "spec.settings.gpus",
            ("spec.settings", _) => "spec.settings.gpu_share",
            (_, "gpus") => "spec.evaluation.gpus",
            _ => "spec.evaluation.gpu_share",
        };
        invalid(field, error.message)
    })
}

impl From<&TrialResult> for pb::TrialResult {
    fn from(result: &TrialResult) -> Self {
        pb::TrialResult {
            genotype_json: result
                .genotype
                .as_ref()
                .map(|genotype| genotype.to_string()),
            metrics: result.metrics.clone().into_iter().collect(),
            manifest_json: result
                .manifest
                .as_ref()
                .map(|manifest| manifest.to_string()),
        }
    }
}

impl TryFrom<pb::TrialResult> for TrialResult {
    type Error = ConvertError;

    fn try_from(result: pb::TrialResult) -> Result<Self, Self::Error> {
        Ok(TrialResult {
            genotype: json_document(result.genotype_json, "result.genotype_json")?,
            metrics: result.metrics.into_iter().collect(),
            manifest: json_document(result.manifest_json, "result.manifest_json")?,
        })
    }
}

fn required(spec: Option<pb::TrialSpec>) -> Result<TrialSpec, ConvertError> {
    spec.ok_or_else(|| invalid("spec", "missing"))
        .and_then(TrialSpec::try_from)
}

impl pb::Assignment {
    /// The spec of the assigned trial, or why it is missing or malformed.
    pub fn trial_spec(&self) -> Result<TrialSpec, ConvertError> {
        required(self.spec.clone())
    }
}

impl pb::TrialView {
    /// The trial's spec, or why it is missing or malformed.
    pub fn trial_spec(&self) -> Result<TrialSpec, ConvertError> {
        required(self.spec.clone())
    }

    /// The trial's result; `None` while it has none.
    pub fn trial_result(&self) -> Result<Option<TrialResult>, ConvertError> {
        self.result.clone().map(TrialResult::try_from).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::grid::GridSpec;

    fn specs() -> Vec<TrialSpec> {
        let text = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\", \"ptb\"]\nseeds = [7]\n\
                    priority = -3\nretries = 4\n[search]\nepochs = 3\nrho = 0.25\n\
                    compat = \"fixed\"\ndata = \"synthetic\"\ntrain_samples = 64\n\
                    gpu_share = 4\n[[methods]]\npreset = \"pr\"\nlabel = \"PR\"\n\
                    overrides = { batch_size = 8, init_channels = 4, layers = 5 }\n\
                    [evaluation]\nseeds = 2\nfirst_seed = 3\ngpus = 2\n\
                    run = { epochs = 5, data = \"real\" }\n";
        let searches = GridSpec::parse("g.toml", text).unwrap().search_trials();
        let genotype =
            serde_json::json!({"normal": [["sep_conv_3x3", 0]], "reduce_concat": [2, 3]});
        let evaluations = searches[0].evaluation_trials(&genotype).unwrap();
        searches.into_iter().chain(evaluations).collect()
    }

    #[test]
    fn specs_and_results_round_trip() {
        for spec in specs() {
            let wire = pb::TrialSpec::from(&spec);
            assert_eq!(TrialSpec::try_from(wire).unwrap(), spec);
        }
        let result = TrialResult {
            genotype: Some(serde_json::json!({"recurrent": [["tanh", 0]], "concat": [1, 2]})),
            metrics: [
                ("test_error".to_string(), 2.75),
                ("params_m".to_string(), 3.3),
            ]
            .into_iter()
            .collect(),
            manifest: Some(serde_json::json!({"seed": 101, "machine": {"device": "cuda:0"}})),
        };
        let wire = pb::TrialResult::from(&result);
        assert_eq!(TrialResult::try_from(wire).unwrap(), result);
        let empty = TrialResult::default();
        assert_eq!(
            TrialResult::try_from(pb::TrialResult::from(&empty)).unwrap(),
            empty
        );
    }

    #[test]
    fn a_malformed_spec_or_result_names_its_field() {
        let spec = pb::TrialSpec::from(&specs()[0]);
        let field_of = |wire: pb::TrialSpec| TrialSpec::try_from(wire).unwrap_err().field;
        assert_eq!(
            field_of(pb::TrialSpec {
                kind: 0,
                ..spec.clone()
            }),
            "spec.kind"
        );
        assert_eq!(
            field_of(pb::TrialSpec {
                dataset: 17,
                ..spec.clone()
            }),
            "spec.dataset"
        );
        let mut bad_data = spec.clone();
        bad_data.settings.as_mut().unwrap().data = Some(9);
        assert_eq!(field_of(bad_data), "spec.settings.data");
        let mut bad_run = spec.clone();
        bad_run
            .evaluation
            .as_mut()
            .unwrap()
            .run
            .as_mut()
            .unwrap()
            .data = Some(0);
        assert_eq!(field_of(bad_run), "spec.evaluation.run.data");
        let mut no_gpus = spec.clone();
        no_gpus.settings.as_mut().unwrap().gpus = Some(0);
        assert_eq!(field_of(no_gpus), "spec.settings.gpus");
        let mut shared_gang = spec.clone();
        shared_gang.evaluation.as_mut().unwrap().gpu_share = Some(2);
        let error = TrialSpec::try_from(shared_gang).unwrap_err();
        assert_eq!(error.field, "spec.evaluation.gpu_share");
        assert!(
            error.message.contains("only single-GPU trials share"),
            "{error}"
        );
        let error = TrialSpec::try_from(pb::TrialSpec {
            genotype_json: Some("{not json".into()),
            ..spec
        })
        .unwrap_err();
        assert_eq!(error.field, "spec.genotype_json");
        assert!(
            error
                .to_string()
                .starts_with("invalid spec.genotype_json: not a JSON document"),
            "{error}"
        );
        let error = TrialResult::try_from(pb::TrialResult {
            genotype_json: Some("[1,".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "result.genotype_json");
        let error = TrialResult::try_from(pb::TrialResult {
            manifest_json: Some("{".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "result.manifest_json");
        let error = pb::TrialView::default().trial_spec().unwrap_err();
        assert_eq!(error.to_string(), "invalid spec: missing");
        assert_eq!(pb::TrialView::default().trial_result(), Ok(None));
    }

    #[test]
    fn absent_settings_are_the_preset_defaults() {
        let spec = TrialSpec::try_from(pb::TrialSpec {
            kind: pb::TrialKind::Search as i32,
            dataset: pb::Dataset::Cifar100 as i32,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(spec.settings, RunSettings::default());
        assert_eq!((spec.evaluation, spec.genotype), (None, None));
    }
}
