//! `prime submit GRID.toml`: validates a grid locally (file, line, field) and submits it.

use super::{connect, runtime, status_error};
use clap::Args;
use prime_core::grid::GridSpec;
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
    println!("{}", reply.grid);
    Ok(())
}
