//! The paper's tables from a grid's trials (`prime results`, the dashboard's results table). Per method x dataset: mean ± std
//! over search seeds of the test error (or perplexity), parameters (M) and search cost (GPU-days
//! when every search of the row ran on a GPU, CPU-hours when all ran on a CPU, hours
//! otherwise), with n, the seeds, and notes on failed or missing seeds and on searches that
//! took too few alpha steps; a per-seed breakdown with the alpha steps of every search on
//! request.
//!
//! Each search seed contributes the mean of its genotype's evaluation runs; the std is the
//! sample standard deviation over seeds (ddof = 1, as papers report it), and a row with one
//! seed shows its value alone.

use crate::convert::ConvertError;
use crate::pb;
use prime_core::dataset::Dataset;
use prime_core::trial::{result_keys, TrialKind, TrialResult, TrialSpec};
use serde::Serialize;

/// Seconds in an hour.
const SECONDS_PER_HOUR: f64 = 3_600.0;

/// Decimals of every number column in Markdown.
const DECIMALS: usize = 2;

/// The line under a Markdown table that says what its numbers are.
pub const FOOTNOTE: &str = "mean ± sample standard deviation (ddof = 1) over search seeds; \
                            a row with n = 1 shows its one value";

/// A grid's trials that cannot make a table.
#[derive(Debug, thiserror::Error)]
#[error("trial {trial_id} has an unreadable spec: {source}")]
pub struct UnreadableSpec {
    /// The trial.
    pub trial_id: u64,
    /// What is wrong with its spec.
    pub source: ConvertError,
}

/// Output format of a results table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Markdown table.
    Md,
    /// CSV with a header line.
    Csv,
    /// One JSON document.
    Json,
}

/// Mean and sample standard deviation of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Arithmetic mean over the seeds.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); `None` for a single value.
    pub std: Option<f64>,
    /// How many values.
    pub n: usize,
}

impl Stat {
    fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let squares = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
            (squares / (n - 1) as f64).sqrt()
        });
        Some(Stat { mean, std, n })
    }
}

/// Where a row's searches ran, which sets the unit of its search cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchDevice {
    /// Every search on a GPU: GPU-days.
    Gpu,
    /// Every search on a CPU: CPU-hours.
    Cpu,
    /// Mixed, or not reported by the trainer: hours.
    Unknown,
}

impl SearchDevice {
    fn of(devices: impl Iterator<Item = Option<bool>>) -> SearchDevice {
        let devices: Vec<Option<bool>> = devices.collect();
        if !devices.is_empty() && devices.iter().all(|gpu| *gpu == Some(true)) {
            SearchDevice::Gpu
        } else if !devices.is_empty() && devices.iter().all(|gpu| *gpu == Some(false)) {
            SearchDevice::Cpu
        } else {
            SearchDevice::Unknown
        }
    }

    /// Column header and hours per unit.
    fn unit(self) -> (&'static str, f64) {
        match self {
            SearchDevice::Gpu => ("search GPU-days", 24.0),
            SearchDevice::Cpu => ("search CPU-hours", 1.0),
            SearchDevice::Unknown => ("search hours", 1.0),
        }
    }
}

/// One search seed's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedRow {
    /// The search seed.
    pub seed: u64,
    /// State of the search trial.
    pub search_state: String,
    /// Test error in % (CIFAR) or test perplexity (PTB), mean over evaluation runs.
    pub score: Option<f64>,
    /// Validation perplexity (PTB).
    pub valid_ppl: Option<f64>,
    /// Parameters in millions.
    pub params_m: Option<f64>,
    /// Search wall time in hours (succeeded searches).
    pub search_hours: Option<f64>,
    /// Whether the search ran on a GPU, when the trainer said.
    pub search_on_gpu: Option<bool>,
    /// Alpha steps the search took, when the trainer said.
    pub alpha_steps: Option<u64>,
    /// Evaluation runs finished for this seed.
    pub evaluations: usize,
}

impl SeedRow {
    /// Why this seed is not in its row's statistics, or why its number means little.
    fn note(&self) -> Option<String> {
        let seed = self.seed;
        if self.search_state != "succeeded" {
            return Some(format!("seed {seed}: search {}", self.search_state));
        }
        if let Some(steps) = self.alpha_steps {
            if steps < result_keys::FEW_ALPHA_STEPS {
                return Some(format!("seed {seed}: only {steps} alpha steps"));
            }
        }
        self.score
            .is_none()
            .then(|| format!("seed {seed}: no finished evaluation"))
    }
}

/// One method x dataset row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    /// The dataset the row's trials ran on.
    pub dataset: Dataset,
    /// Method label.
    pub method: String,
    /// Test error (%) or test perplexity.
    pub score: Option<Stat>,
    /// Validation perplexity (PTB only).
    pub valid_ppl: Option<Stat>,
    /// Parameters (M).
    pub params_m: Option<Stat>,
    /// Search wall time in hours.
    pub search_hours: Option<Stat>,
    /// Where the searches ran.
    pub search_device: SearchDevice,
    /// Seeds with a finished evaluation.
    pub n: usize,
    /// Those seeds.
    pub seeds: Vec<u64>,
    /// Failed or missing seeds, and searches with too few alpha steps.
    pub notes: Vec<String>,
    /// Per-seed numbers.
    pub per_seed: Vec<SeedRow>,
}

struct Parsed {
    view: pb::TrialView,
    spec: TrialSpec,
    result: Option<TrialResult>,
}

fn mean(values: &[f64]) -> Option<f64> {
    Stat::of(values).map(|stat| stat.mean)
}

/// The alpha steps a succeeded search reported, if its trainer counts them.
pub fn search_alpha_steps(view: &pb::TrialView) -> Option<u64> {
    if view.state != "succeeded" {
        return None;
    }
    let result = view.trial_result().ok().flatten()?;
    let steps = result.metrics.get(result_keys::ALPHA_STEPS)?;
    Some(*steps as u64)
}

/// Builds the table rows of a grid's trials.
pub fn build_rows(trials: &[pb::TrialView]) -> Result<Vec<ResultRow>, UnreadableSpec> {
    let mut parsed = Vec::new();
    for view in trials {
        let spec: TrialSpec = view.trial_spec().map_err(|source| UnreadableSpec {
            trial_id: view.trial_id,
            source,
        })?;
        let result = (view.state == "succeeded")
            .then(|| view.trial_result().ok().flatten())
            .flatten();
        parsed.push(Parsed {
            view: view.clone(),
            spec,
            result,
        });
    }
    let mut methods: Vec<String> = Vec::new();
    for trial in &parsed {
        if !methods.contains(&trial.spec.label) {
            methods.push(trial.spec.label.clone());
        }
    }
    let mut rows = Vec::new();
    for dataset in Dataset::ALL {
        for method in &methods {
            let searches: Vec<&Parsed> = parsed
                .iter()
                .filter(|t| {
                    t.spec.kind == TrialKind::Search
                        && t.spec.dataset == dataset
                        && t.spec.label == *method
                })
                .collect();
            if searches.is_empty() {
                continue;
            }
            let mut per_seed = Vec::new();
            for search in &searches {
                let evaluations: Vec<&TrialResult> = parsed
                    .iter()
                    .filter(|t| t.view.parent_id == search.view.trial_id)
                    .filter_map(|t| t.result.as_ref())
                    .collect();
                let values = |key: &str| -> Vec<f64> {
                    evaluations
                        .iter()
                        .filter_map(|r| r.metrics.get(key).copied())
                        .collect()
                };
                let score_key = if dataset.uses_perplexity() {
                    result_keys::TEST_PPL
                } else {
                    result_keys::TEST_ERROR
                };
                let search_metric = |key: &str| search.result.as_ref()?.metrics.get(key).copied();
                per_seed.push(SeedRow {
                    seed: search.spec.search_seed,
                    search_state: search.view.state.clone(),
                    score: mean(&values(score_key)),
                    valid_ppl: mean(&values(result_keys::VALID_PPL)),
                    params_m: mean(&values(result_keys::PARAMS_M)),
                    search_hours: search
                        .result
                        .is_some()
                        .then_some(search.view.run_seconds / SECONDS_PER_HOUR),
                    search_on_gpu: search_metric(result_keys::SEARCH_ON_GPU).map(|gpu| gpu > 0.5),
                    alpha_steps: search_alpha_steps(&search.view),
                    evaluations: evaluations.len(),
                });
            }
            per_seed.sort_by_key(|row| row.seed);
            let finished: Vec<&SeedRow> =
                per_seed.iter().filter(|row| row.score.is_some()).collect();
            let stat = |pick: fn(&SeedRow) -> Option<f64>| {
                Stat::of(
                    &finished
                        .iter()
                        .filter_map(|row| pick(row))
                        .collect::<Vec<_>>(),
                )
            };
            let searched: Vec<&SeedRow> = per_seed
                .iter()
                .filter(|row| row.search_hours.is_some())
                .collect();
            rows.push(ResultRow {
                dataset,
                method: method.clone(),
                score: stat(|row| row.score),
                valid_ppl: stat(|row| row.valid_ppl),
                params_m: stat(|row| row.params_m),
                search_hours: Stat::of(
                    &searched
                        .iter()
                        .filter_map(|row| row.search_hours)
                        .collect::<Vec<_>>(),
                ),
                search_device: SearchDevice::of(searched.iter().map(|row| row.search_on_gpu)),
                n: finished.len(),
                seeds: finished.iter().map(|row| row.seed).collect(),
                notes: per_seed.iter().filter_map(SeedRow::note).collect(),
                per_seed,
            });
        }
    }
    Ok(rows)
}

fn score_header(rows: &[ResultRow]) -> &'static str {
    if rows.iter().all(|row| row.dataset.uses_perplexity()) {
        "test ppl"
    } else if rows.iter().any(|row| row.dataset.uses_perplexity()) {
        "test error (%) / test ppl"
    } else {
        "test error (%)"
    }
}

fn seeds_text(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a column writes its numbers: one notation for the whole column, fixed decimals unless
/// some nonzero value would show only zeros (search costs of small runs), then scientific.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notation {
    Fixed,
    Scientific,
}

impl Notation {
    fn for_values(values: impl IntoIterator<Item = f64>) -> Notation {
        let smallest_shown = 0.5 * 10f64.powi(-(DECIMALS as i32));
        if values
            .into_iter()
            .any(|value| value != 0.0 && value.abs() < smallest_shown)
        {
            Notation::Scientific
        } else {
            Notation::Fixed
        }
    }

    fn number(self, value: f64) -> String {
        match self {
            Notation::Fixed => format!("{value:.DECIMALS$}"),
            Notation::Scientific => format!("{value:.1e}"),
        }
    }

    fn stat(self, stat: Option<Stat>) -> String {
        match stat {
            None => "–".to_string(),
            Some(Stat {
                mean, std: None, ..
            }) => self.number(mean),
            Some(Stat {
                mean,
                std: Some(std),
                ..
            }) => format!("{} ± {}", self.number(mean), self.number(std)),
        }
    }

    fn optional(self, value: Option<f64>) -> String {
        value.map_or("–".to_string(), |v| self.number(v))
    }
}

/// The notation of a column of statistics.
fn stat_notation<'a>(stats: impl Iterator<Item = &'a Option<Stat>>) -> Notation {
    Notation::for_values(
        stats
            .flatten()
            .flat_map(|stat| [Some(stat.mean), stat.std])
            .flatten(),
    )
}

/// The search cost of `row` in the unit of `device`.
fn cost(row: &ResultRow, device: SearchDevice) -> Option<Stat> {
    let per_unit = device.unit().1;
    row.search_hours.map(|stat| Stat {
        mean: stat.mean / per_unit,
        std: stat.std.map(|std| std / per_unit),
        n: stat.n,
    })
}

/// The summary table as the Markdown output shows it: column headers and the text of every
/// cell (the dashboard draws the same cells).
pub fn summary_table(rows: &[ResultRow]) -> (Vec<String>, Vec<Vec<String>>) {
    let device = search_device(rows);
    let (cost_header, _) = device.unit();
    let costs: Vec<Option<Stat>> = rows.iter().map(|row| cost(row, device)).collect();
    let score = stat_notation(rows.iter().map(|row| &row.score));
    let valid = stat_notation(rows.iter().map(|row| &row.valid_ppl));
    let params = stat_notation(rows.iter().map(|row| &row.params_m));
    let cost_notation = stat_notation(costs.iter());
    // Table 2 reports validation next to test perplexity.
    let perplexity = rows.iter().any(|row| row.dataset.uses_perplexity());
    let mut columns = vec!["task", "method", score_header(rows)];
    if perplexity {
        columns.push("valid ppl");
    }
    columns.extend(["params (M)", cost_header, "n", "seeds", "notes"]);
    let cells = rows
        .iter()
        .zip(&costs)
        .map(|(row, cost)| {
            let mut cells = vec![
                row.dataset.display_name().to_string(),
                row.method.clone(),
                score.stat(row.score),
            ];
            if perplexity {
                cells.push(valid.stat(row.valid_ppl));
            }
            cells.extend([
                params.stat(row.params_m),
                cost_notation.stat(*cost),
                row.n.to_string(),
                seeds_text(&row.seeds),
                row.notes.join("; "),
            ]);
            cells
        })
        .collect();
    (columns.into_iter().map(String::from).collect(), cells)
}

/// Where the searches of the table ran, which sets the unit of its cost column.
fn search_device(rows: &[ResultRow]) -> SearchDevice {
    SearchDevice::of(rows.iter().flat_map(|row| {
        row.per_seed
            .iter()
            .filter(|seed| seed.search_hours.is_some())
            .map(|seed| seed.search_on_gpu)
    }))
}

/// Renders the rows in `format`.
pub fn render(
    rows: &[ResultRow],
    format: Format,
    per_seed: bool,
) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    let (cost_header, per_unit) = search_device(rows).unit();
    match format {
        Format::Json => out = serde_json::to_string_pretty(rows)? + "\n",
        Format::Md => {
            let (columns, cells) = summary_table(rows);
            out.push_str(&format!("| {} |\n", columns.join(" | ")));
            out.push_str(&format!("|{}\n", " --- |".repeat(columns.len())));
            for row in &cells {
                out.push_str(&format!("| {} |\n", row.join(" | ")));
            }
            out.push_str(&format!("\n{FOOTNOTE}.\n"));
            if per_seed {
                let seeds = || rows.iter().flat_map(|row| &row.per_seed);
                let score = Notation::for_values(seeds().filter_map(|seed| seed.score));
                let params = Notation::for_values(seeds().filter_map(|seed| seed.params_m));
                let hours = Notation::for_values(
                    seeds().filter_map(|seed| seed.search_hours.map(|h| h / per_unit)),
                );
                out.push_str(&format!("\n| task | method | seed | search | alpha steps | score | params (M) | {cost_header} | evaluations |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"));
                for row in rows {
                    for seed in &row.per_seed {
                        out.push_str(&format!(
                            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                            row.dataset.display_name(),
                            row.method,
                            seed.seed,
                            seed.search_state,
                            seed.alpha_steps.map_or("–".to_string(), |n| n.to_string()),
                            score.optional(seed.score),
                            params.optional(seed.params_m),
                            hours.optional(seed.search_hours.map(|h| h / per_unit)),
                            seed.evaluations
                        ));
                    }
                }
            }
        }
        Format::Csv => {
            let text = |value: Option<f64>| value.map_or(String::new(), |v| v.to_string());
            if per_seed {
                out.push_str(
                    "task,method,seed,search_state,alpha_steps,score,valid_ppl,params_m,search_hours,search_on_gpu,evaluations\n",
                );
                for row in rows {
                    for seed in &row.per_seed {
                        out.push_str(&format!(
                            "{},{},{},{},{},{},{},{},{},{},{}\n",
                            row.dataset,
                            row.method,
                            seed.seed,
                            seed.search_state,
                            seed.alpha_steps.map_or(String::new(), |n| n.to_string()),
                            text(seed.score),
                            text(seed.valid_ppl),
                            text(seed.params_m),
                            text(seed.search_hours),
                            seed.search_on_gpu
                                .map_or(String::new(), |gpu| gpu.to_string()),
                            seed.evaluations
                        ));
                    }
                }
            } else {
                out.push_str("task,method,score_mean,score_std,params_m_mean,params_m_std,search_hours_mean,search_hours_std,n,seeds,notes\n");
                let pair = |stat: Option<Stat>| {
                    stat.map_or(",".to_string(), |s| format!("{},{}", s.mean, text(s.std)))
                };
                for row in rows {
                    out.push_str(&format!(
                        "{},{},{},{},{},{},{},\"{}\"\n",
                        row.dataset,
                        row.method,
                        pair(row.score),
                        pair(row.params_m),
                        pair(row.search_hours),
                        row.n,
                        seeds_text(&row.seeds),
                        row.notes.join("; ")
                    ));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::grid::GridSpec;

    fn view(
        id: u64,
        parent: u64,
        spec: &TrialSpec,
        result: Option<&str>,
        run_seconds: f64,
    ) -> pb::TrialView {
        pb::TrialView {
            trial_id: id,
            parent_id: parent,
            spec: Some(spec.into()),
            state: if result.is_some() {
                "succeeded"
            } else {
                "running"
            }
            .into(),
            result: result.map(|json| (&serde_json::from_str::<TrialResult>(json).unwrap()).into()),
            run_seconds,
            ..Default::default()
        }
    }

    #[test]
    fn perplexity_tables_show_valid_and_test_perplexity() {
        let grid = GridSpec::parse(
            "g.toml",
            "version = 1\nname = \"g\"\ndatasets = [\"ptb\"]\nseeds = [101, 102]\n\
             [[methods]]\npreset = \"darts-prime\"\nlabel = \"DARTS-PRIME\"\n[evaluation]\nseeds = 1\n",
        )
        .unwrap();
        let genotype = serde_json::json!({"recurrent": [], "concat": []});
        let search_result = r#"{"genotype":{"recurrent":[],"concat":[]},"metrics":{"alpha_steps":40,"search_on_gpu":1}}"#;
        let mut trials = Vec::new();
        for (index, search) in grid.search_trials().iter().enumerate() {
            let id = 10 * (index as u64 + 1);
            trials.push(view(id, 0, search, Some(search_result), 8_640.0));
            let (test, valid) = (60.0 + 2.0 * index as f64, 62.0 + 2.0 * index as f64);
            let json = format!(
                r#"{{"metrics":{{"test_ppl":{test},"valid_ppl":{valid},"params_m":22.96}}}}"#
            );
            let evaluation = &search.evaluation_trials(&genotype).unwrap()[0];
            trials.push(view(id + 1, id, evaluation, Some(&json), 100.0));
        }
        let rows = build_rows(&trials).unwrap();
        let markdown = render(&rows, Format::Md, false).unwrap();
        assert!(
            markdown.starts_with(
                "| task | method | test ppl | valid ppl | params (M) | search GPU-days | n | seeds | notes |"
            ),
            "{markdown}"
        );
        // Sample std of (60, 62) is sqrt(2); 8,640 s on a GPU is 0.1 GPU-days.
        assert!(
            markdown.contains(
                "| PTB | DARTS-PRIME | 61.00 ± 1.41 | 63.00 ± 1.41 | 22.96 ± 0.00 | 0.10 ± 0.00 | 2 | 101 102 |  |"
            ),
            "{markdown}"
        );
        assert!(markdown.contains("ddof = 1"), "{markdown}");
    }

    #[test]
    fn aggregates_over_search_seeds() {
        let grid = GridSpec::parse(
            "g.toml",
            "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [101, 102, 103]\n\
             [[methods]]\npreset = \"darts\"\nlabel = \"DARTS\"\n[evaluation]\nseeds = 2\n",
        )
        .unwrap();
        let searches = grid.search_trials();
        let genotype = serde_json::json!({"normal": []});
        let mut trials = Vec::new();
        for (index, search) in searches.iter().enumerate() {
            let id = 10 * (index as u64 + 1);
            let done = index < 2;
            // Seed 102's search took only 3 alpha steps, on a CPU.
            let search_result = format!(
                r#"{{"genotype":{{"normal":[]}},"metrics":{{"alpha_steps":{},"search_on_gpu":0}}}}"#,
                if index == 1 { 3 } else { 30 }
            );
            trials.push(view(
                id,
                0,
                search,
                done.then_some(search_result.as_str()),
                43_200.0,
            ));
            if done {
                for (offset, (error, params)) in
                    [(2.0 + index as f64, 3.0), (4.0 + index as f64, 3.5)]
                        .iter()
                        .enumerate()
                {
                    let evaluation = &search.evaluation_trials(&genotype).unwrap()[offset];
                    let json =
                        format!(r#"{{"metrics":{{"test_error":{error},"params_m":{params}}}}}"#);
                    trials.push(view(
                        id + 1 + offset as u64,
                        id,
                        evaluation,
                        Some(&json),
                        100.0,
                    ));
                }
            }
        }
        let rows = build_rows(&trials).unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!((row.n, row.seeds.clone()), (2, vec![101, 102]));
        // Seed 101: mean(2, 4) = 3; seed 102: mean(3, 5) = 4 -> 3.5 ± sqrt(0.5).
        let score = row.score.unwrap();
        assert_eq!((score.mean, score.n), (3.5, 2));
        assert!((score.std.unwrap() - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(row.params_m.unwrap().mean, 3.25);
        assert_eq!(row.search_hours.unwrap().mean, 12.0);
        assert_eq!(row.search_device, SearchDevice::Cpu);
        assert_eq!(row.per_seed.len(), 3);
        assert_eq!(row.per_seed[2].score, None);
        assert_eq!(row.per_seed[1].alpha_steps, Some(3));
        let markdown = render(&rows, Format::Md, true).unwrap();
        assert!(
            markdown.contains(
                "| CIFAR-10 | DARTS | 3.50 ± 0.71 | 3.25 ± 0.00 | 12.00 ± 0.00 | 2 | 101 102 | \
                 seed 102: only 3 alpha steps; seed 103: search running |"
            ),
            "{markdown}"
        );
        assert!(markdown.contains("search CPU-hours"), "{markdown}");
        assert!(!markdown.contains("GPU-days"), "{markdown}");
        assert!(
            markdown.contains("| CIFAR-10 | DARTS | 102 | succeeded | 3 | 4.00 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| CIFAR-10 | DARTS | 103 | running | – | – |"),
            "{markdown}"
        );
        let csv = render(&rows, Format::Csv, false).unwrap();
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("cifar10,DARTS,3.5,0.7071"),
            "{csv}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&rows, Format::Json, false).unwrap()).unwrap();
        assert_eq!(json[0]["score"]["mean"], 3.5);
    }

    #[test]
    fn one_seed_shows_its_value_alone_and_a_column_keeps_one_notation() {
        let grid = GridSpec::parse(
            "g.toml",
            "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [1]\n\
             [[methods]]\npreset = \"darts\"\n[[methods]]\npreset = \"pr\"\n[evaluation]\nseeds = 1\n",
        )
        .unwrap();
        let genotype = serde_json::json!({"normal": []});
        let mut trials = Vec::new();
        // DARTS searched 36 s (0.01 h), PR 3.6 s (0.001 h, below 2 decimals).
        for (index, (search, seconds)) in grid.search_trials().iter().zip([36.0, 3.6]).enumerate() {
            let id = 10 * (index as u64 + 1);
            let search_result =
                r#"{"genotype":{"normal":[]},"metrics":{"alpha_steps":20,"search_on_gpu":0}}"#;
            trials.push(view(id, 0, search, Some(search_result), seconds));
            let evaluation = &search.evaluation_trials(&genotype).unwrap()[0];
            let json = r#"{"metrics":{"test_error":2.5,"params_m":3.0}}"#;
            trials.push(view(id + 1, id, evaluation, Some(json), 100.0));
        }
        let markdown = render(&build_rows(&trials).unwrap(), Format::Md, false).unwrap();
        assert!(
            markdown.contains("| CIFAR-10 | darts | 2.50 | 3.00 | 1.0e-2 | 1 | 1 |  |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| CIFAR-10 | pr | 2.50 | 3.00 | 1.0e-3 | 1 | 1 |  |"),
            "{markdown}"
        );
        assert!(
            markdown
                .lines()
                .filter(|line| line.starts_with("| CIFAR"))
                .all(|line| !line.contains('±')),
            "{markdown}"
        );
    }
}
