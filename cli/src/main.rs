//! `prime`: the darts-prime command line.

mod commands;
mod config_choice;
mod device;
mod progress;
mod run_dir;

use clap::{Parser, Subcommand};
use std::sync::LazyLock;

/// As the `coordinator` binary's: `prime demo` and `prime bench coordinator` run a coordinator
/// in this process. libtorch's tensors keep their own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `prime --version`: the version, git commit and torch build variant.
static VERSION: LazyLock<String> = LazyLock::new(prime_nas::build_info::version_text);

/// darts-prime: differentiable architecture search (DARTS, DARTS-PRIME) on libtorch.
#[derive(Debug, Parser)]
#[command(name = "prime", version = VERSION.as_str(), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    access: commands::cluster::access::AccessArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an architecture search locally.
    Search(commands::search::SearchArgs),
    /// Retrain a genotype from scratch on CIFAR and report its test error.
    Eval(commands::eval::EvalArgs),
    /// Derive, show and count genotypes.
    #[command(subcommand)]
    Genotype(commands::genotype::GenotypeCommand),
    /// Dataset utilities.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Micro-benchmarks, printed as one JSON line.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// The paper's figures from a search run directory (SVG and PNG).
    #[command(subcommand)]
    Plot(commands::plot::PlotCommand),
    /// The resolved search configuration, and every key with its type, default and range.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// FIMT schedule tools: replay a FIMT sequence without training.
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCommand),
    /// Submit a grid file to the coordinator.
    Submit(commands::cluster::submit::SubmitArgs),
    /// Trial states and progress of a grid (or a summary of every grid).
    Status(commands::cluster::status::StatusArgs),
    /// Live progress bars of a grid until it is over.
    Watch(commands::cluster::status::WatchArgs),
    /// The paper's tables for a grid: mean ± std over seeds.
    Results(commands::cluster::results::ResultsArgs),
    /// Cancel a grid or one trial.
    Cancel(commands::cluster::manage::CancelArgs),
    /// Requeue failed or cancelled trials (one, or all of a grid) from their last checkpoint,
    /// or from the start with --fresh.
    Retry(commands::cluster::retry::RetryArgs),
    /// List workers; cordon, uncordon or drain one.
    Workers(commands::cluster::manage::WorkersArgs),
    /// A trial's log: assignments, checkpoints, outcomes.
    Logs(commands::cluster::manage::LogsArgs),
    /// Download a trial's (or every trial of a grid's) genotype, metrics and weights.
    Fetch(commands::cluster::fetch::FetchArgs),
    /// A coordinator and a worker in this process run a small grid end to end.
    Demo(commands::cluster::demo::DemoArgs),
    /// Tokens for a coordinator's --tokens file.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// A small CA with server and client certificates, for clusters without one.
    #[command(subcommand)]
    Certs(commands::certs::CertsCommand),
    /// Operations on the coordinator itself: online database backups.
    #[command(subcommand)]
    Admin(commands::cluster::admin::AdminCommand),
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log piped to a file or a journal stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    commands::cluster::access::set(cli.access);
    let result = match cli.command {
        Command::Search(args) => commands::search::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Genotype(command) => commands::genotype::run(command),
        Command::Data(command) => commands::data::run(command),
        Command::Bench(command) => commands::bench::run(command),
        Command::Plot(command) => commands::plot::run(command),
        Command::Config(command) => commands::config::run(command),
        Command::Schedule(command) => commands::schedule::run(command),
        Command::Submit(args) => commands::cluster::submit::run(args),
        Command::Status(args) => commands::cluster::status::run_status(args),
        Command::Watch(args) => commands::cluster::status::run_watch(args),
        Command::Results(args) => commands::cluster::results::run(args),
        Command::Cancel(args) => commands::cluster::manage::run_cancel(args),
        Command::Retry(args) => commands::cluster::retry::run(args),
        Command::Workers(args) => commands::cluster::manage::run_workers(args),
        Command::Logs(args) => commands::cluster::manage::run_logs(args),
        Command::Fetch(args) => commands::cluster::fetch::run(args),
        Command::Demo(args) => commands::cluster::demo::run(args),
        Command::Token(command) => commands::token::run(command),
        Command::Certs(command) => commands::certs::run(command),
        Command::Admin(command) => commands::cluster::admin::run(command),
    };
    if let Err(error) = result {
        if error.is::<progress::Interrupted>() {
            std::process::exit(130);
        }
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
