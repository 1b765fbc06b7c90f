//! `coordinator`: the darts-prime coordinator daemon.

use anyhow::Context;
use clap::Parser;
use prime_coordinator::auth::{TokenSource, TokenTable};
use prime_coordinator::tls::ServerTls;
use prime_coordinator::CoordinatorConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Serving a thousand workers allocates and frees many small buffers (HTTP/2 frames, protobuf
/// messages, SQLite rows); mimalloc gave 20-30% more assignments and metric points per second
/// than the system allocator in `prime bench coordinator` at 1,000 workers (README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves grids to darts-prime workers; state lives in SQLite under --state.
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about)]
struct Args {
    /// Address to listen on (workers and clients dial it). Any address other than loopback
    /// needs --tokens (or --insecure).
    #[arg(long, default_value = "127.0.0.1:50051")]
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
    /// File of the accepted tokens, one `ROLE SHA256HEX` line each (from `prime token new`);
    /// re-read on SIGHUP. Without it every caller may do everything.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Serve without --tokens on a non-loopback address (anyone who can reach the port can
    /// then submit, cancel and act as a worker); a warning is logged every hour.
    #[arg(long)]
    insecure: bool,
    /// Serve TLS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require every caller to present a client certificate signed by this PEM CA (mutual
    /// TLS); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Serve /healthz, /readyz and /metrics (Prometheus) over HTTP on this address
    /// (e.g. 0.0.0.0:9090); off when not given.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Free space kept on the disk of --state: below it, new checkpoints, grids and backups
    /// are refused (sizes such as 1GiB or 500MiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    min_free_disk: bytesize::ByteSize,
    /// Largest checkpoint a worker may upload (sizes such as 4GiB).
    #[arg(long, value_name = "SIZE", default_value = "4GiB")]
    max_upload_bytes: bytesize::ByteSize,
}

/// How often the warning of an insecure coordinator is repeated.
const INSECURE_WARNING_EVERY: Duration = Duration::from_secs(3600);

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
    let tokens = match &args.tokens {
        Some(path) => {
            let source = TokenSource::open(path)?;
            log_tokens(&source.table(), path);
            Some(Arc::new(source))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    let addr = listener.local_addr()?;
    let open = tokens.is_none();
    anyhow::ensure!(
        !open || addr.ip().is_loopback() || args.insecure,
        "refusing to listen on {addr} without --tokens: anyone who can reach this port could \
         submit, cancel and act as a worker. Create tokens with `prime token new --role \
         admin|worker|viewer` and pass their hashes in --tokens FILE, listen on a loopback \
         address, or accept the risk with --insecure"
    );
    let config = CoordinatorConfig {
        lease: Duration::from_secs_f64(args.lease_secs),
        heartbeat: Duration::from_secs_f64(args.heartbeat_secs),
        keep_checkpoints: args.keep_checkpoints,
        max_grid_trials: args.max_grid_trials,
        tokens: tokens.clone(),
        tls: args
            .tls_cert
            .clone()
            .zip(args.tls_key.clone())
            .map(|(cert, key)| ServerTls {
                cert,
                key,
                client_ca: args.client_ca.clone(),
            }),
        max_upload_bytes: args.max_upload_bytes.as_u64(),
        min_free_disk: args.min_free_disk.as_u64(),
        http: args.http,
    };
    let coordinator = prime_coordinator::start(listener, &args.state, config).await?;
    // Data on stdout: the address actually bound (useful with port 0).
    println!("listening {}", coordinator.addr);
    if let Some(http) = coordinator.http_addr {
        println!("http {http}");
    }
    if open && !addr.ip().is_loopback() {
        tokio::spawn(warn_insecure(addr));
    }
    if let Some(tokens) = tokens {
        tokio::spawn(reload_on_sighup(tokens));
    }
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            result?;
            tracing::info!("shutting down");
        }
        result = wait_for_sigterm() => result?,
    }
    coordinator.shutdown().await
}

fn log_tokens(table: &TokenTable, path: &std::path::Path) {
    let counts: Vec<String> = table
        .counts()
        .into_iter()
        .map(|(role, count)| format!("{count} {role}"))
        .collect();
    tracing::info!(file = %path.display(), tokens = %counts.join(", "), "tokens loaded");
}

/// Logs the insecure warning now and every hour.
async fn warn_insecure(addr: std::net::SocketAddr) {
    let mut every = tokio::time::interval(INSECURE_WARNING_EVERY);
    loop {
        every.tick().await;
        tracing::warn!(
            %addr,
            "--insecure: serving without tokens on a non-loopback address; anyone who can \
             reach it can submit, cancel and act as a worker"
        );
    }
}

/// Re-reads the token file on every SIGHUP; a file that does not parse leaves the tokens in
/// force.
async fn reload_on_sighup(tokens: Arc<TokenSource>) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: tokens cannot be rotated");
        return;
    };
    while hangups.recv().await.is_some() {
        match tokens.reload() {
            Ok(table) => log_tokens(&table, tokens.path()),
            Err(error) => {
                tracing::error!(%error, "SIGHUP: token file not reloaded; the previous tokens stay in force")
            }
        }
    }
}

async fn wait_for_sigterm() -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    sigterm.recv().await;
    tracing::info!("SIGTERM: shutting down");
    Ok(())
}
