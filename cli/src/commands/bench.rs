//! `prime bench`.
use clap::Subcommand;

/// Subcommands of `prime bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {}

/// Runs `prime bench`.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {}
}
