//! `prime`: the darts-prime command line.

mod commands;

use clap::{Parser, Subcommand};

/// darts-prime: differentiable architecture search (DARTS, DARTS-PRIME) on libtorch.
#[derive(Debug, Parser)]
#[command(name = "prime", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an architecture search locally.
    Search(commands::search::SearchArgs),
    /// Derive, show and count genotypes.
    #[command(subcommand)]
    Genotype(commands::genotype::GenotypeCommand),
    /// Dataset utilities.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Micro-benchmarks, printed as one JSON line.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Search(args) => commands::search::run(args),
        Command::Genotype(command) => commands::genotype::run(command),
        Command::Data(command) => commands::data::run(command),
        Command::Bench(command) => commands::bench::run(command),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
