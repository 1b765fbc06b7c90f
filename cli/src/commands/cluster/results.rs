//! `prime results`: the paper's tables from a grid's trials. Per method x dataset: mean ± std
//! over search seeds of the test error (or perplexity), parameters (M) and search cost in
//! GPU-days, with n and the seeds; a per-seed breakdown on request.
//!
//! Each search seed contributes the mean of its genotype's evaluation runs; the std is the
//! population standard deviation over seeds (numpy's default, as in the paper's scripts).

use super::{connect, runtime};
use anyhow::Context;
use clap::{Args, ValueEnum};
use prime_core::dataset::Dataset;
use prime_core::trial::{result_keys, TrialKind, TrialResult, TrialSpec};
use prime_proto::pb;
use serde::Serialize;

/// Seconds in a GPU-day.
const SECONDS_PER_DAY: f64 = 86_400.0;

/// Output format of `prime results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Markdown table.
    Md,
    /// CSV with a header line.
    Csv,
    /// One JSON document.
    Json,
}

/// Arguments of `prime results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The grid.
    pub grid: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    /// Also list every search seed.
    #[arg(long)]
    pub per_seed: bool,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator())]
    pub coordinator: String,
}

/// Mean and standard deviation of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Arithmetic mean over the seeds.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

impl Stat {
    fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Some(Stat {
            mean,
            std: variance.sqrt(),
        })
    }

    fn show(stat: Option<Stat>, decimals: usize) -> String {
        stat.map_or("–".to_string(), |s| {
            format!("{} ± {}", number(s.mean, decimals), number(s.std, decimals))
        })
    }
}

/// One search seed's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedRow {
    /// The search seed.
    pub seed: u64,
    /// Test error in % (CIFAR) or test perplexity (PTB), mean over evaluation runs.
    pub score: Option<f64>,
    /// Validation perplexity (PTB).
    pub valid_ppl: Option<f64>,
    /// Parameters in millions.
    pub params_m: Option<f64>,
    /// Search cost in GPU-days.
    pub search_gpu_days: Option<f64>,
    /// Evaluation runs finished for this seed.
    pub evaluations: usize,
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
    /// Search cost (GPU-days).
    pub search_gpu_days: Option<Stat>,
    /// Seeds with a finished evaluation.
    pub n: usize,
    /// Those seeds.
    pub seeds: Vec<u64>,
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

/// Builds the table rows of a grid's trials.
pub fn build_rows(trials: &[pb::TrialView]) -> anyhow::Result<Vec<ResultRow>> {
    let mut parsed = Vec::new();
    for view in trials {
        let spec: TrialSpec = view
            .trial_spec()
            .with_context(|| format!("trial {} has an unreadable spec", view.trial_id))?;
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
                per_seed.push(SeedRow {
                    seed: search.spec.search_seed,
                    score: mean(&values(score_key)),
                    valid_ppl: mean(&values(result_keys::VALID_PPL)),
                    params_m: mean(&values(result_keys::PARAMS_M)),
                    search_gpu_days: (search.view.state == "succeeded")
                        .then_some(search.view.run_seconds / SECONDS_PER_DAY),
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
            rows.push(ResultRow {
                dataset,
                method: method.clone(),
                score: stat(|row| row.score),
                valid_ppl: stat(|row| row.valid_ppl),
                params_m: stat(|row| row.params_m),
                search_gpu_days: Stat::of(
                    &per_seed
                        .iter()
                        .filter_map(|row| row.search_gpu_days)
                        .collect::<Vec<_>>(),
                ),
                n: finished.len(),
                seeds: finished.iter().map(|row| row.seed).collect(),
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

/// `value` with `decimals` decimals, or in scientific notation when that would show only
/// zeros (search costs of small runs).
fn number(value: f64, decimals: usize) -> String {
    if value != 0.0 && value.abs() < 0.5 * 10f64.powi(-(decimals as i32)) {
        format!("{value:.1e}")
    } else {
        format!("{value:.decimals$}")
    }
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or("–".to_string(), |v| number(v, decimals))
}

/// Renders the rows in `format`.
pub fn render(rows: &[ResultRow], format: Format, per_seed: bool) -> anyhow::Result<String> {
    let mut out = String::new();
    match format {
        Format::Json => out = serde_json::to_string_pretty(rows)? + "\n",
        Format::Md => {
            // Table 2 reports validation next to test perplexity.
            let perplexity = rows.iter().any(|row| row.dataset.uses_perplexity());
            let (valid_header, valid_rule) = if perplexity {
                (" valid ppl |", " --- |")
            } else {
                ("", "")
            };
            out.push_str(&format!(
                "| task | method | {} |{valid_header} params (M) | search GPU-days | n | seeds |\n| --- | --- | --- |{valid_rule} --- | --- | --- | --- |\n",
                score_header(rows)
            ));
            for row in rows {
                let valid = if perplexity {
                    format!(" {} |", Stat::show(row.valid_ppl, 2))
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "| {} | {} | {} |{valid} {} | {} | {} | {} |\n",
                    row.dataset.display_name(),
                    row.method,
                    Stat::show(row.score, 2),
                    Stat::show(row.params_m, 2),
                    Stat::show(row.search_gpu_days, 2),
                    row.n,
                    seeds_text(&row.seeds)
                ));
            }
            if per_seed {
                out.push_str("\n| task | method | seed | score | params (M) | search GPU-days | evaluations |\n| --- | --- | --- | --- | --- | --- | --- |\n");
                for row in rows {
                    for seed in &row.per_seed {
                        out.push_str(&format!(
                            "| {} | {} | {} | {} | {} | {} | {} |\n",
                            row.dataset.display_name(),
                            row.method,
                            seed.seed,
                            optional(seed.score, 2),
                            optional(seed.params_m, 2),
                            optional(seed.search_gpu_days, 2),
                            seed.evaluations
                        ));
                    }
                }
            }
        }
        Format::Csv => {
            if per_seed {
                out.push_str(
                    "task,method,seed,score,valid_ppl,params_m,search_gpu_days,evaluations\n",
                );
                for row in rows {
                    for seed in &row.per_seed {
                        out.push_str(&format!(
                            "{},{},{},{},{},{},{},{}\n",
                            row.dataset,
                            row.method,
                            seed.seed,
                            seed.score.map_or(String::new(), |v| v.to_string()),
                            seed.valid_ppl.map_or(String::new(), |v| v.to_string()),
                            seed.params_m.map_or(String::new(), |v| v.to_string()),
                            seed.search_gpu_days
                                .map_or(String::new(), |v| v.to_string()),
                            seed.evaluations
                        ));
                    }
                }
            } else {
                out.push_str("task,method,score_mean,score_std,params_m_mean,params_m_std,search_gpu_days_mean,search_gpu_days_std,n,seeds\n");
                let pair = |stat: Option<Stat>| {
                    stat.map_or(",".to_string(), |s| format!("{},{}", s.mean, s.std))
                };
                for row in rows {
                    out.push_str(&format!(
                        "{},{},{},{},{},{},{}\n",
                        row.dataset,
                        row.method,
                        pair(row.score),
                        pair(row.params_m),
                        pair(row.search_gpu_days),
                        row.n,
                        seeds_text(&row.seeds)
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Fetches a grid's trials and prints its table on stdout.
pub fn run(args: ResultsArgs) -> anyhow::Result<()> {
    let trials = runtime()?.block_on(async {
        let client = connect(&args.coordinator)?;
        prime_proto::paging::all_trials(&client, &args.grid)
            .await
            .map_err(super::status_error)
    })?;
    anyhow::ensure!(!trials.is_empty(), "no trials in grid `{}`", args.grid);
    print!(
        "{}",
        render(&build_rows(&trials)?, args.format, args.per_seed)?
    );
    Ok(())
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
        let search_result = r#"{"genotype":{"recurrent":[],"concat":[]}}"#;
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
                "| task | method | test ppl | valid ppl | params (M) | search GPU-days | n | seeds |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains(
                "| PTB | DARTS-PRIME | 61.00 ± 1.00 | 63.00 ± 1.00 | 22.96 ± 0.00 | 0.10 ± 0.00 | 2 | 101 102 |"
            ),
            "{markdown}"
        );
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
        let search_result = r#"{"genotype":{"normal":[]}}"#;
        for (index, search) in searches.iter().enumerate() {
            let id = 10 * (index as u64 + 1);
            let done = index < 2;
            trials.push(view(id, 0, search, done.then_some(search_result), 43_200.0));
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
        // Seed 101: mean(2, 4) = 3; seed 102: mean(3, 5) = 4 -> 3.5 ± 0.5.
        assert_eq!(
            row.score,
            Some(Stat {
                mean: 3.5,
                std: 0.5
            })
        );
        assert_eq!(row.params_m.unwrap().mean, 3.25);
        assert_eq!(row.search_gpu_days.unwrap().mean, 0.5);
        assert_eq!(row.per_seed.len(), 3);
        assert_eq!(row.per_seed[2].score, None);
        let markdown = render(&rows, Format::Md, true).unwrap();
        assert!(
            markdown.contains(
                "| CIFAR-10 | DARTS | 3.50 ± 0.50 | 3.25 ± 0.00 | 0.50 ± 0.00 | 2 | 101 102 |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains("| CIFAR-10 | DARTS | 103 | – |"),
            "{markdown}"
        );
        let csv = render(&rows, Format::Csv, false).unwrap();
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("cifar10,DARTS,3.5,0.5,3.25,0,"),
            "{csv}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&rows, Format::Json, false).unwrap()).unwrap();
        assert_eq!(json[0]["score"]["mean"], 3.5);
    }
}
