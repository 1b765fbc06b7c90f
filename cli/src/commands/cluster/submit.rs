//! `prime submit GRID.toml`: validates a grid locally (file, line, field) and submits it;
//! with `--dry-run`, prints its trials, their GPUs and a GPU-hours estimate instead.

use super::{connect, plan, runtime, status_error};
use clap::Args;
use prime_core::grid::GridSpec;
use prime_proto::paging::{all_trials, all_workers};
use prime_proto::pb;
use std::path::PathBuf;

/// Arguments of `prime submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The grid file.
    pub grid: PathBuf,
    /// Add the trials this file has and the submitted grid of the same name lacks (new seeds,
    /// methods or datasets); existing trials are left untouched and must keep their settings.
    #[arg(long)]
    pub extend: bool,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
    pub coordinator: String,
    /// Submit nothing: list the trials, the GPUs each asks for and an estimate of the
    /// GPU-hours from epoch times measured on the cluster (`unknown` where none were).
    #[arg(long)]
    pub dry_run: bool,
}

/// Submits a grid; returns its name.
pub async fn submit_text(
    coordinator: &str,
    file_name: &str,
    text: &str,
    extend: bool,
) -> anyhow::Result<pb::SubmitGridReply> {
    let mut client = connect(coordinator)?;
    let reply = client
        .submit_grid(pb::SubmitGridRequest {
            file_name: file_name.to_string(),
            toml: text.to_string(),
            extend,
        })
        .await
        .map_err(status_error)?;
    Ok(reply.into_inner())
}

/// Runs `prime submit`.
pub fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let file_name = args.grid.display().to_string();
    let text = std::fs::read_to_string(&args.grid)
        .map_err(|error| anyhow::anyhow!("{file_name}: cannot read the grid file: {error}"))?;
    let grid = GridSpec::parse(&file_name, &text)?;
    if args.dry_run {
        return dry_run(&args.coordinator, &grid);
    }
    let evaluations = grid.evaluation.as_ref().map_or(0, |e| e.seeds);
    let reply = runtime()?.block_on(submit_text(
        &args.coordinator,
        &file_name,
        &text,
        args.extend,
    ))?;
    if args.extend {
        eprintln!(
            "extended grid `{}`: {} new search trial(s); existing trials untouched",
            reply.grid, reply.search_trials
        );
        println!("{}", reply.grid);
        return Ok(());
    }
    eprintln!(
        "submitted grid `{}`: {} search trials ({} datasets x {} methods x {} seeds), {} evaluation(s) per genotype",
        reply.grid,
        reply.search_trials,
        grid.datasets.len(),
        grid.methods.len(),
        grid.seeds.len(),
        evaluations
    );
    for line in &reply.unplaceable {
        eprintln!("warning: {line}");
    }
    println!("{}", reply.grid);
    Ok(())
}

/// Prints the plan of `grid`, with the epoch times measured on the coordinator's cluster
/// where it can be reached, and the trials its workers cannot hold.
fn dry_run(coordinator: &str, grid: &GridSpec) -> anyhow::Result<()> {
    let trials = plan::planned_trials(grid)?;
    let cluster = runtime()?.block_on(async {
        let client = connect(coordinator)?;
        let listed = all_trials(&client, "").await.map_err(status_error)?;
        let workers = all_workers(&client).await.map_err(status_error)?;
        anyhow::Ok((listed, workers))
    });
    let costs = match &cluster {
        Ok((listed, _)) => plan::MeasuredCosts::from_trials(listed),
        Err(error) => {
            eprintln!("no measured epoch times: {error}");
            plan::MeasuredCosts::default()
        }
    };
    print!("{}", plan::render(&trials, &costs));
    if let Ok((_, workers)) = &cluster {
        let largest = workers.iter().map(|w| w.slots.len()).max().unwrap_or(0) as u32;
        for trial in trials.iter().filter(|t| t.resources.gpus > largest.max(1)) {
            eprintln!(
                "warning: {} cannot be placed yet: it needs {} GPUs on one worker and the \
                 largest registered worker has {largest}",
                trial.name, trial.resources.gpus
            );
        }
    }
    Ok(())
}
