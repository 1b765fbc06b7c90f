//! `prime results`: the paper's tables from a grid's trials, built by
//! [`prime_proto::results`] (the dashboard shows the same table).

use super::{connect, runtime};
use clap::{Args, ValueEnum};
use prime_proto::results::{build_rows, render, Format};

/// Output format of `prime results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// A Markdown table.
    Md,
    /// CSV with a header line.
    Csv,
    /// One JSON document.
    Json,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Format {
        match format {
            FormatArg::Md => Format::Md,
            FormatArg::Csv => Format::Csv,
            FormatArg::Json => Format::Json,
        }
    }
}

/// Arguments of `prime results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The grid.
    pub grid: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Md)]
    pub format: FormatArg,
    /// Also list every search seed, with its alpha steps.
    #[arg(long)]
    pub per_seed: bool,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
    pub coordinator: String,
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
        render(&build_rows(&trials)?, args.format.into(), args.per_seed)?
    );
    Ok(())
}
