//! Grid files: an ablation grid (methods x datasets x search seeds), validated whole at load.
//!
//! A grid is TOML with `version = 1`; unknown keys are rejected, and every error names the
//! file, the line and the field. `GridSpec::search_trials` expands a grid into search trials;
//! each search trial carries the evaluation settings from which the coordinator derives its
//! evaluation trials once the search has produced a genotype.

use crate::config::{ConfigError, LayeredConfig};
use crate::dataset::Dataset;
use crate::eval_config::EvalConfig;
use crate::limits;
use crate::presets::{is_method, METHOD_NAMES};
use crate::resources::Resources;
use crate::rnn_config::{RnnEvalConfig, RnnSearchConfig};
use crate::settings::{EvaluationSettings, RunSettings, MAX_SET_KEYS};
use crate::toml_spans::{line_column, SpanTree};
use crate::trial::{TrialKind, TrialSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ops::Range;

/// The only grid file version this build reads.
pub const GRID_VERSION: u32 = 1;

/// Retry budget of a trial when the grid does not set `retries`: crashes of the training code
/// it may survive before it is failed for good.
pub const DEFAULT_RETRIES: u32 = 2;

/// One method row of a grid: a preset from `configs/methods/` with optional overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodEntry {
    /// Preset name (one of `prime_core::presets::METHOD_NAMES`).
    pub preset: String,
    /// Name in result tables (defaults to the preset name).
    pub label: String,
    /// Search settings that replace the grid's `[search]` ones for this method.
    pub overrides: RunSettings,
}

/// A validated grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSpec {
    /// Unique grid name.
    pub name: String,
    /// Higher runs first; FIFO within a priority. Any 32-bit integer.
    pub priority: i32,
    /// Datasets, in file order.
    pub datasets: Vec<Dataset>,
    /// Method rows, in file order.
    pub methods: Vec<MethodEntry>,
    /// Search seeds: 1 to 1,000 distinct non-negative integers.
    pub seeds: Vec<u64>,
    /// Crashes of the training code a trial may survive, 0..=100.
    pub retries: u32,
    /// Search settings shared by every method.
    pub search: RunSettings,
    /// Evaluation of the genotypes; `None` runs searches only.
    pub evaluation: Option<EvaluationSettings>,
}

/// A grid that failed to load: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", field_prefix(.field))]
pub struct GridError {
    /// The file name as given by the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path (`methods[1].preset`), empty when unknown.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrid {
    version: u32,
    name: String,
    #[serde(default)]
    priority: i32,
    datasets: Vec<String>,
    methods: Vec<RawMethod>,
    seeds: Vec<i64>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    search: Option<RunSettings>,
    #[serde(default)]
    evaluation: Option<EvaluationSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMethod {
    preset: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    overrides: Option<RunSettings>,
}

/// Turns a field path or a TOML error into a `GridError` with the file, line and field.
struct Locator<'a> {
    file: &'a str,
    text: &'a str,
    spans: Option<SpanTree>,
}

impl Locator<'_> {
    fn at(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> GridError {
        let (line, column) = line_column(self.text, span.start);
        GridError {
            file: self.file.to_string(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// An error about `field` (a dotted path), located at its key or nearest present parent.
    fn error(&self, field: &str, message: impl Into<String>) -> GridError {
        let span = self
            .spans
            .as_ref()
            .and_then(|spans| spans.span_of(field))
            .unwrap_or(0..0);
        self.at(span, field, message)
    }

    /// A TOML syntax or type error, naming the field its span covers.
    fn parse_error(&self, error: &toml::de::Error) -> GridError {
        let span = error.span().unwrap_or(0..0);
        let field = self
            .spans
            .as_ref()
            .and_then(|spans| spans.field_at(&span))
            .unwrap_or_default();
        self.at(span, &field, error.message().trim())
    }
}

impl GridSpec {
    /// Parses and validates the grid text of `file` (the name is used in errors only).
    pub fn parse(file: &str, text: &str) -> Result<GridSpec, GridError> {
        let locator = Locator {
            file,
            text,
            spans: SpanTree::parse(text),
        };
        let raw: RawGrid = toml::from_str(text).map_err(|error| locator.parse_error(&error))?;
        validate(&locator, raw)
    }

    /// Every trial the grid can hold: its search trials and the evaluation trials they spawn
    /// once they succeed. Saturates instead of overflowing.
    pub fn trial_count(&self) -> u64 {
        let searches = [
            self.datasets.len() as u64,
            self.methods.len() as u64,
            self.seeds.len() as u64,
        ]
        .into_iter()
        .fold(1u64, u64::saturating_mul);
        let per_search = 1 + self
            .evaluation
            .as_ref()
            .map_or(0, |evaluation| u64::from(evaluation.seeds));
        searches.saturating_mul(per_search)
    }

    /// Reads and validates a grid file.
    pub fn load(path: &std::path::Path) -> Result<GridSpec, GridError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| GridError {
            file: file.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read the grid file: {error}"),
        })?;
        GridSpec::parse(&file, &text)
    }

    /// The search trials of the grid, dataset-major then method then seed.
    pub fn search_trials(&self) -> Vec<TrialSpec> {
        let mut trials = Vec::new();
        for &dataset in &self.datasets {
            for method in &self.methods {
                for &seed in &self.seeds {
                    trials.push(TrialSpec {
                        grid: self.name.clone(),
                        kind: TrialKind::Search,
                        method: method.preset.clone(),
                        label: method.label.clone(),
                        dataset,
                        search_seed: seed,
                        eval_seed: None,
                        settings: self.search.merged_with(&method.overrides),
                        genotype: None,
                        evaluation: self.evaluation.clone(),
                        priority: self.priority,
                        retries: self.retries,
                    });
                }
            }
        }
        trials
    }
}

fn validate(locator: &Locator<'_>, raw: RawGrid) -> Result<GridSpec, GridError> {
    if raw.version != GRID_VERSION {
        return Err(locator.error(
            "version",
            format!(
                "unsupported grid version {}: this build reads version {GRID_VERSION}",
                raw.version
            ),
        ));
    }
    let name = raw.name.trim();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(locator.error(
            "name",
            "a grid name is non-empty and uses only letters, digits, `-`, `_` and `.`",
        ));
    }
    let datasets = validate_datasets(locator, &raw.datasets)?;
    let methods = validate_methods(locator, &raw.methods)?;
    let seeds = validate_seeds(locator, &raw.seeds)?;
    let retries = raw.retries.unwrap_or(DEFAULT_RETRIES);
    limits::check_count(retries, &limits::RETRIES)
        .map_err(|message| locator.error("retries", message))?;
    let search = raw.search.unwrap_or_default();
    check_settings(locator, "search", &search)?;
    if let Some(evaluation) = &raw.evaluation {
        limits::check_count(evaluation.seeds, &limits::EVALUATION_SEEDS)
            .map_err(|message| locator.error("evaluation.seeds", message))?;
        check_settings(locator, "evaluation.run", &evaluation.run)?;
        for (name, value) in [
            ("gpus", evaluation.run.gpus),
            ("gpu_share", evaluation.run.gpu_share),
        ] {
            if value.is_some() {
                return Err(locator.error(
                    &format!("evaluation.run.{name}"),
                    format!("write `{name}` directly under [evaluation], not in its `run`"),
                ));
            }
        }
        check_resources(locator, "evaluation", &evaluation.run_settings())?;
    }
    for (index, method) in methods.iter().enumerate() {
        let field = if method.overrides.gpus.is_some() || method.overrides.gpu_share.is_some() {
            format!("methods[{index}].overrides")
        } else {
            "search".to_string()
        };
        check_resources(locator, &field, &search.merged_with(&method.overrides))?;
    }
    let grid = GridSpec {
        name: name.to_string(),
        priority: raw.priority,
        datasets,
        methods,
        seeds,
        retries,
        search,
        evaluation: raw.evaluation,
    };
    check_set_keys(locator, &grid)?;
    Ok(grid)
}

/// Applies every `set` value, one key at a time, to the configs it reaches (each method's
/// search config on each dataset, and the evaluation config), so that an unknown key or a bad
/// value is an error at load, naming its line, and not when a worker starts the trial.
fn check_set_keys(locator: &Locator<'_>, grid: &GridSpec) -> Result<(), GridError> {
    let check = |table: &str,
                 settings: &RunSettings,
                 apply: &dyn Fn(&[String]) -> Result<(), ConfigError>| {
        for (key, value) in &settings.set {
            apply(&[format!("{key}={value}")]).map_err(|error| {
                locator.error(
                    &format!("{table}.set.{key}"),
                    format!(
                        "{error}; `set` takes the keys that `--set` takes (`prime config keys`)"
                    ),
                )
            })?;
        }
        Ok(())
    };
    for dataset in &grid.datasets {
        for (index, method) in grid.methods.iter().enumerate() {
            let search = |overrides: &[String]| -> Result<(), ConfigError> {
                if dataset.uses_perplexity() {
                    let preset = crate::presets::method_config(&method.preset, &[])?;
                    RnnSearchConfig::from_method(&preset)?.with_overrides(overrides)?;
                } else {
                    crate::presets::method_config(&method.preset, overrides)?;
                }
                Ok(())
            };
            check("search", &grid.search, &search)?;
            check(
                &format!("methods[{index}].overrides"),
                &method.overrides,
                &search,
            )?;
        }
        if let Some(evaluation) = &grid.evaluation {
            let evaluate = |overrides: &[String]| -> Result<(), ConfigError> {
                if dataset.uses_perplexity() {
                    RnnEvalConfig::default().with_overrides(overrides)?;
                } else {
                    EvalConfig::from_overrides(overrides)?;
                }
                Ok(())
            };
            check("evaluation.run", &evaluation.run, &evaluate)?;
        }
    }
    Ok(())
}

fn validate_datasets(locator: &Locator<'_>, names: &[String]) -> Result<Vec<Dataset>, GridError> {
    if names.is_empty() {
        return Err(locator.error("datasets", "list at least one dataset"));
    }
    let mut datasets = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let field = format!("datasets[{index}]");
        let dataset: Dataset = name
            .parse()
            .map_err(|message: String| locator.error(&field, message))?;
        if datasets.contains(&dataset) {
            return Err(locator.error(&field, format!("`{dataset}` is listed twice")));
        }
        datasets.push(dataset);
    }
    Ok(datasets)
}

fn validate_methods(
    locator: &Locator<'_>,
    methods: &[RawMethod],
) -> Result<Vec<MethodEntry>, GridError> {
    if methods.is_empty() {
        return Err(locator.error("methods", "list at least one method"));
    }
    let mut entries: Vec<MethodEntry> = Vec::new();
    for (index, method) in methods.iter().enumerate() {
        let preset = &method.preset;
        let field = format!("methods[{index}].preset");
        if !is_method(preset) {
            return Err(locator.error(
                &field,
                format!(
                    "unknown method preset `{preset}`: expected one of {}",
                    METHOD_NAMES.join(", ")
                ),
            ));
        }
        let label = method.label.clone().unwrap_or_else(|| preset.clone());
        if entries.iter().any(|entry| entry.label == label) {
            return Err(locator.error(
                &field,
                format!("two methods share the label `{label}`: give one a distinct `label`"),
            ));
        }
        let overrides = method.overrides.clone().unwrap_or_default();
        check_settings(locator, &format!("methods[{index}].overrides"), &overrides)?;
        entries.push(MethodEntry {
            preset: preset.clone(),
            label,
            overrides,
        });
    }
    Ok(entries)
}

fn validate_seeds(locator: &Locator<'_>, seeds: &[i64]) -> Result<Vec<u64>, GridError> {
    if seeds.is_empty() {
        return Err(locator.error("seeds", "list at least one search seed"));
    }
    if seeds.len() > limits::MAX_GRID_SEEDS {
        return Err(locator.error(
            "seeds",
            format!(
                "{} search seeds listed; a grid lists at most {}",
                seeds.len(),
                limits::MAX_GRID_SEEDS
            ),
        ));
    }
    let mut values = Vec::new();
    let mut seen = HashSet::new();
    for (index, seed) in seeds.iter().enumerate() {
        let field = format!("seeds[{index}]");
        let value = u64::try_from(*seed)
            .map_err(|_| locator.error(&field, "a seed is a non-negative integer"))?;
        if !seen.insert(value) {
            return Err(locator.error(&field, format!("seed {value} is listed twice")));
        }
        values.push(value);
    }
    Ok(values)
}

/// Checks every set field of `settings` against its range; `field` is the table's path.
fn check_settings(
    locator: &Locator<'_>,
    field: &str,
    settings: &RunSettings,
) -> Result<(), GridError> {
    let counts = [
        ("epochs", settings.epochs, &limits::EPOCHS),
        ("batch_size", settings.batch_size, &limits::BATCH_SIZE),
        ("init_channels", settings.init_channels, &limits::WIDTH),
        ("layers", settings.layers, &limits::LAYERS),
        (
            "train_samples",
            settings.train_samples,
            &limits::TRAIN_SAMPLES,
        ),
        ("gpus", settings.gpus, &limits::GPUS_PER_TRIAL),
        ("gpu_share", settings.gpu_share, &limits::GPU_SHARE),
    ];
    for (name, value, range) in counts {
        if let Some(value) = value {
            limits::check_count(value, range)
                .map_err(|message| locator.error(&format!("{field}.{name}"), message))?;
        }
    }
    if let Some(compat) = &settings.compat {
        if compat != "reference" && compat != "fixed" {
            return Err(locator.error(
                &format!("{field}.compat"),
                format!("unknown compat `{compat}`: expected `reference` or `fixed`"),
            ));
        }
    }
    if let Some(rho) = settings.rho {
        limits::check_real(rho, &limits::RHO)
            .map_err(|message| locator.error(&format!("{field}.rho"), message))?;
    }
    if settings.set.len() > MAX_SET_KEYS {
        return Err(locator.error(
            &format!("{field}.set"),
            format!(
                "{} config values set; a table sets at most {MAX_SET_KEYS}",
                settings.set.len()
            ),
        ));
    }
    Ok(())
}

/// Checks the GPUs a run of the table `field` asks for as a whole (each range is checked
/// with its table; this catches a shared multi-GPU request).
fn check_resources(
    locator: &Locator<'_>,
    field: &str,
    settings: &RunSettings,
) -> Result<(), GridError> {
    Resources::of(settings)
        .map(|_| ())
        .map_err(|error| locator.error(&format!("{field}.{}", error.field), error.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
name = "table1-cifar10"
priority = 5
datasets = ["cifar10", "cifar100"]
seeds = [101, 102]

[search]
epochs = 50

[[methods]]
preset = "darts"
label = "DARTS"

[[methods]]
preset = "darts-prime"
overrides = { rho = 0.2, epochs = 60 }

[evaluation]
seeds = 2
run = { epochs = 600 }
"#;

    #[test]
    fn parses_and_expands_a_grid() {
        let grid = GridSpec::parse("g.toml", GOOD).unwrap();
        assert_eq!(grid.name, "table1-cifar10");
        assert_eq!(grid.priority, 5);
        assert_eq!(grid.retries, DEFAULT_RETRIES);
        let trials = grid.search_trials();
        assert_eq!(trials.len(), 2 * 2 * 2);
        let prime = trials.iter().find(|t| t.method == "darts-prime").unwrap();
        assert_eq!(prime.settings.epochs, Some(60));
        assert_eq!(prime.settings.rho, Some(0.2));
        assert_eq!(prime.label, "darts-prime");
        let darts = &trials[0];
        assert_eq!(
            (darts.label.as_str(), darts.dataset, darts.search_seed),
            ("DARTS", Dataset::Cifar10, 101)
        );
        assert_eq!(darts.settings.epochs, Some(50));
        assert_eq!(darts.evaluation.as_ref().unwrap().seeds, 2);
    }

    fn error_of(text: &str) -> GridError {
        GridSpec::parse("bad.toml", text).unwrap_err()
    }

    #[test]
    fn unknown_preset_names_line_and_field() {
        let text = GOOD.replace("preset = \"darts-prime\"", "preset = \"dartz\"");
        let error = error_of(&text);
        assert_eq!(error.line, 16);
        assert_eq!(error.field, "methods[1].preset");
        assert!(error.to_string().starts_with("bad.toml:16:"), "{error}");
        assert!(error.message.contains("unknown method preset `dartz`"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let error = error_of(&GOOD.replace("epochs = 50", "epochs = 50\nepochz = 3"));
        assert_eq!(error.line, 10);
        assert_eq!(error.field, "search.epochz");
        assert!(error.message.contains("unknown field"), "{error}");
        let error = error_of(&GOOD.replace("priority = 5", "priority = 5\ncolour = \"red\""));
        assert_eq!((error.line, error.field.as_str()), (5, "colour"));
    }

    #[test]
    fn rejects_bad_values() {
        let error = error_of(&GOOD.replace("version = 1", "version = 2"));
        assert_eq!((error.line, error.field.as_str()), (2, "version"));
        let error = error_of(&GOOD.replace("\"cifar100\"", "\"mnist\""));
        assert_eq!((error.line, error.field.as_str()), (5, "datasets[1]"));
        let error = error_of(&GOOD.replace("[101, 102]", "[101, 101]"));
        assert_eq!(error.field, "seeds[1]");
        let error = error_of(&GOOD.replace("seeds = 2", "seeds = 0"));
        assert_eq!(error.field, "evaluation.seeds");
        let error = error_of(&GOOD.replace("rho = 0.2", "compat = \"new\""));
        assert_eq!(error.field, "methods[1].overrides.compat");
        let error = error_of(&GOOD.replace("name = \"table1-cifar10\"", "name = \"a b\""));
        assert_eq!(error.field, "name");
        let error = error_of("version = 1\nname = \"x\"\nseeds = [1]\ndatasets = [\"ptb\"]\n");
        assert!(error.message.contains("methods"), "{error}");
    }

    #[test]
    fn out_of_range_numbers_name_their_field_and_line() {
        let cases = [
            ("seeds = 2", "seeds = 4294967295", "evaluation.seeds", 20),
            ("seeds = 2", "seeds = 65", "evaluation.seeds", 20),
            ("epochs = 50", "epochs = 4294967295", "search.epochs", 9),
            (
                "epochs = 50",
                "batch_size = 4294967295",
                "search.batch_size",
                9,
            ),
            (
                "epochs = 50",
                "init_channels = 4096",
                "search.init_channels",
                9,
            ),
            ("epochs = 50", "layers = 4294967295", "search.layers", 9),
            (
                "epochs = 50",
                "train_samples = 0",
                "search.train_samples",
                9,
            ),
            (
                "epochs = 60 }",
                "epochs = 10001 }",
                "methods[1].overrides.epochs",
                17,
            ),
            ("rho = 0.2", "rho = 1e9", "methods[1].overrides.rho", 17),
            ("rho = 0.2", "rho = nan", "methods[1].overrides.rho", 17),
            (
                "{ epochs = 600 }",
                "{ layers = 0 }",
                "evaluation.run.layers",
                21,
            ),
            ("priority = 5", "retries = 101", "retries", 4),
        ];
        for (from, to, field, line) in cases {
            let error = error_of(&GOOD.replace(from, to));
            assert_eq!(
                (error.field.as_str(), error.line),
                (field, line),
                "{to}: {error}"
            );
            assert!(error.message.contains("must be"), "{error}");
        }
        let error = error_of(&GOOD.replace("seeds = 2", "seeds = 4294967295"));
        assert!(
            error.to_string().starts_with(
                "bad.toml:20:1: field `evaluation.seeds`: must be between 1 and 64, got 4294967295"
            ),
            "{error}"
        );
    }

    #[test]
    fn type_errors_name_the_field_not_the_value() {
        let error = error_of(&GOOD.replace("seeds = 2", "seeds = 4294967296"));
        assert_eq!(
            (error.field.as_str(), error.line),
            ("evaluation.seeds", 20),
            "{error}"
        );
        let error = error_of(&GOOD.replace("epochs = 50", "epochs = -1"));
        assert_eq!((error.field.as_str(), error.line), ("search.epochs", 9));
        let error = error_of(&GOOD.replace("epochs = 60 }", "epochs = 1.5 }"));
        assert_eq!(error.field, "methods[1].overrides.epochs", "{error}");
        let error = error_of(&GOOD.replace("priority = 5", "priority = 9999999999"));
        assert_eq!(error.field, "priority", "{error}");
    }

    #[test]
    fn a_grid_lists_at_most_a_thousand_seeds() {
        let seeds: Vec<String> = (0..=limits::MAX_GRID_SEEDS)
            .map(|s| s.to_string())
            .collect();
        let text = GOOD.replace("[101, 102]", &format!("[{}]", seeds.join(", ")));
        let error = error_of(&text);
        assert_eq!((error.field.as_str(), error.line), ("seeds", 6));
        assert!(error.message.contains("1001 search seeds"), "{error}");
        let text = GOOD.replace("[101, 102]", &format!("[{}]", seeds[1..].join(", ")));
        assert_eq!(GridSpec::parse("ok.toml", &text).unwrap().seeds.len(), 1000);
    }

    #[test]
    fn trial_count_counts_searches_and_the_evaluations_they_spawn() {
        let grid = GridSpec::parse("g.toml", GOOD).unwrap();
        assert_eq!(grid.trial_count(), 2 * 2 * 2 * (1 + 2));
        let searches_only = GridSpec {
            evaluation: None,
            ..grid
        };
        assert_eq!(searches_only.trial_count(), 8);
    }

    #[test]
    fn the_paper_grids_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/grids");
        let mut searches = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let grid = GridSpec::load(&path).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(grid.seeds, vec![101, 102, 103, 104], "{}", path.display());
            searches += grid.search_trials().len();
        }
        // Table 1: (5 + 4) methods, Table 2: 2, Table S1: 6 + 1; four seeds each.
        assert_eq!(searches, (5 + 4 + 2 + 6 + 1) * 4);
    }

    #[test]
    fn gpus_and_gpu_share_reach_the_trials_of_their_table() {
        let text = GOOD
            .replace("epochs = 50", "epochs = 50\ngpu_share = 4")
            .replace("seeds = 2\n", "seeds = 2\ngpus = 4\n");
        let grid = GridSpec::parse("g.toml", &text).unwrap();
        let search = &grid.search_trials()[0];
        assert_eq!(
            search.resources(),
            Resources {
                gpus: 1,
                gpu_share: 4
            }
        );
        let evaluation = &search.evaluation_trials(&serde_json::json!({})).unwrap()[0];
        assert_eq!(
            evaluation.resources(),
            Resources {
                gpus: 4,
                gpu_share: 1
            }
        );
        assert_eq!(evaluation.settings.epochs, Some(600));
    }

    #[test]
    fn bad_gpu_requests_name_their_field_and_line() {
        let cases = [
            (
                "epochs = 50",
                "gpus = 0",
                "search.gpus",
                9,
                "must be between 1 and 64",
            ),
            (
                "epochs = 50",
                "gpu_share = 65",
                "search.gpu_share",
                9,
                "must be between",
            ),
            (
                "epochs = 50",
                "gpus = 2\ngpu_share = 2",
                "search.gpu_share",
                10,
                "only single-GPU trials share",
            ),
            (
                "rho = 0.2",
                "gpus = 2, gpu_share = 3",
                "methods[1].overrides.gpu_share",
                17,
                "only single-GPU trials share",
            ),
            (
                "seeds = 2\n",
                "seeds = 2\ngpus = 99\n",
                "evaluation.gpus",
                21,
                "must be",
            ),
            (
                "{ epochs = 600 }",
                "{ gpus = 2 }",
                "evaluation.run.gpus",
                21,
                "directly under [evaluation]",
            ),
        ];
        for (from, to, field, line, message) in cases {
            let error = error_of(&GOOD.replace(from, to));
            assert_eq!((error.field.as_str(), error.line), (field, line), "{error}");
            assert!(error.message.contains(message), "{error}");
        }
    }

    #[test]
    fn a_syntax_error_has_a_line() {
        let error = error_of("version = 1\nname = \"x\n");
        assert_eq!(error.line, 2);
    }

    #[test]
    fn a_search_chains_to_its_evaluations() {
        let text = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [7]\n\
                    [[methods]]\npreset = \"pr\"\n[evaluation]\nseeds = 2\nfirst_seed = 3\n\
                    run = { epochs = 5 }\n";
        let search = GridSpec::parse("g.toml", text)
            .unwrap()
            .search_trials()
            .remove(0);
        let genotype = serde_json::json!({"normal": []});
        let evaluations = search.evaluation_trials(&genotype).unwrap();
        assert_eq!(evaluations.len(), 2);
        assert_eq!(evaluations[1].eval_seed, Some(4));
        assert_eq!(evaluations[0].kind, TrialKind::Evaluation);
        assert_eq!(evaluations[0].settings.epochs, Some(5));
        assert_eq!(evaluations[0].genotype.as_ref(), Some(&genotype));
        assert!(evaluations[0]
            .evaluation_trials(&genotype)
            .unwrap()
            .is_empty());
        let json = serde_json::to_string(&evaluations[0]).unwrap();
        assert_eq!(
            serde_json::from_str::<TrialSpec>(&json).unwrap(),
            evaluations[0]
        );
    }

    #[test]
    fn a_stored_spec_with_absurd_evaluation_seeds_spawns_nothing() {
        let text = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [7]\n\
                    [[methods]]\npreset = \"pr\"\n[evaluation]\nseeds = 2\n";
        let mut search = GridSpec::parse("g.toml", text)
            .unwrap()
            .search_trials()
            .remove(0);
        let genotype = serde_json::json!({"normal": []});
        // What a grid accepted before the limits: the coordinator aborted allocating ~1.4 TB.
        search.evaluation.as_mut().unwrap().seeds = u32::MAX;
        let error = search.evaluation_trials(&genotype).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("evaluation.seeds must be between 1 and 64"),
            "{error}"
        );
        let evaluation = search.evaluation.as_mut().unwrap();
        (evaluation.seeds, evaluation.first_seed) = (2, u64::MAX);
        let error = search.evaluation_trials(&genotype).unwrap_err();
        assert!(error.to_string().contains("overflows"), "{error}");
    }

    #[test]
    fn set_takes_the_keys_of_the_command_line_and_rejects_unknown_ones() {
        let head = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\", \"ptb\"]\nseeds = [7]\n\
                    [[methods]]\npreset = \"darts-prime\"\n";
        let grid = GridSpec::parse(
            "g.toml",
            &format!("{head}[search]\nepochs = 2\n[search.set]\n\"schedule.h0\" = 16.0\n"),
        )
        .unwrap();
        for trial in grid.search_trials() {
            assert_eq!(trial.settings.set_overrides(), ["schedule.h0=16.0"]);
        }
        let error = GridSpec::parse(
            "g.toml",
            &format!("{head}[search]\nepochs = 2\n[search.set]\n\"schedule.h_zero\" = 16.0\n"),
        )
        .unwrap_err();
        // The line of the quoted key itself, not of its table's header.
        assert_eq!(
            (error.line, error.field.as_str()),
            (10, "search.set.schedule.h_zero")
        );
        assert!(error.message.contains("h_zero"), "{error}");
    }

    #[test]
    fn set_takes_the_keys_of_the_recurrent_and_evaluation_configs() {
        let head = "version = 1\nname = \"g\"\ndatasets = [\"ptb\"]\nseeds = [7]\n\
                    [[methods]]\npreset = \"darts-prime\"\n";
        let grid = GridSpec::parse(
            "g.toml",
            &format!(
                "{head}[search.set]\n\"network.nhid\" = 64\n\"data.bptt\" = 20\n\
                 [evaluation.run.set]\n\"weights.nonmono\" = 3\n\"convergence\" = 0\n"
            ),
        )
        .unwrap();
        let evaluation = grid.evaluation.as_ref().unwrap();
        assert_eq!(
            evaluation.run_settings().set_overrides(),
            ["convergence=0", "weights.nonmono=3"]
        );
        let error = GridSpec::parse(
            "g.toml",
            &format!(
                "{head}[evaluation]\nseeds = 1\n[evaluation.run.set]\n\"network.dropout\" = 1.5\n"
            ),
        )
        .unwrap_err();
        assert_eq!(error.field, "evaluation.run.set.network.dropout");
        assert_eq!(error.line, head.lines().count() + 4, "{error}");
        assert!(error.message.contains("0 <= x < 1"), "{error}");
        let cifar = head.replace("ptb", "cifar10");
        GridSpec::parse(
            "g.toml",
            &format!(
                "{cifar}[evaluation.run.set]\n\"network.drop_path_prob\" = 0.3\n\
                 \"speed.autocast\" = \"bf16\"\n"
            ),
        )
        .unwrap();
        let error = GridSpec::parse(
            "g.toml",
            &format!("{cifar}[evaluation.run.set]\n\"weights.nonmono\" = 3\n"),
        )
        .unwrap_err();
        assert_eq!(error.field, "evaluation.run.set.weights.nonmono");
    }
}
