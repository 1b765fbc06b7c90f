//! `coordinator`: the darts-prime coordinator daemon.

use clap::Parser;
use prime_coordinator::CoordinatorConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Serves grids to darts-prime workers; state lives in SQLite under --state.
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about)]
struct Args {
    /// Address to listen on (workers and clients dial it).
    #[arg(long, default_value = "0.0.0.0:50051")]
    listen: String,
    /// Directory of the database and the checkpoint store.
    #[arg(long)]
    state: PathBuf,
    /// Seconds without a heartbeat after which a worker is lost and its trials requeued.
    #[arg(long, default_value_t = 30.0)]
    lease_secs: f64,
    /// Seconds between worker heartbeats.
    #[arg(long, default_value_t = 5.0)]
    heartbeat_secs: f64,
    /// Resumable checkpoints kept per trial, besides the best and the final one.
    #[arg(long, default_value_t = 2)]
    keep_checkpoints: usize,
    /// Trials one grid may hold (its searches plus the evaluations they spawn); larger grids
    /// are refused at submission.
    #[arg(long, default_value_t = prime_core::limits::DEFAULT_MAX_GRID_TRIALS)]
    max_grid_trials: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log piped to a file or a journal stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.heartbeat_secs > 0.0 && args.lease_secs > args.heartbeat_secs,
        "--lease-secs must exceed --heartbeat-secs, both positive"
    );
    let config = CoordinatorConfig {
        lease: Duration::from_secs_f64(args.lease_secs),
        heartbeat: Duration::from_secs_f64(args.heartbeat_secs),
        keep_checkpoints: args.keep_checkpoints,
        max_grid_trials: args.max_grid_trials,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let coordinator = prime_coordinator::start(listener, &args.state, config).await?;
    // Data on stdout: the address actually bound (useful with port 0).
    println!("listening {}", coordinator.addr);
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            result?;
            tracing::info!("shutting down");
        }
        result = wait_for_sigterm() => result?,
    }
    coordinator.shutdown().await
}

async fn wait_for_sigterm() -> anyhow::Result<()> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    sigterm.recv().await;
    tracing::info!("SIGTERM: shutting down");
    Ok(())
}
